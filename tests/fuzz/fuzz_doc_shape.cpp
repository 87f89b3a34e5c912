// Fuzzes the readers of documents from a source (ReadDocShape, attachment rewriting): any body, no crash, edits keep the rest.
#include <set>
#include <string>

#include "couchrepd/doc_shape.h"
#include "couchrepd/json_fields.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace couchrepd;
  using namespace couchrepd::fuzz;
  std::string_view json(reinterpret_cast<const char*>(data), size);
  auto shape = ReadDocShape(json);
  if (!shape.ok()) return 0;

  std::vector<std::string> ancestors;
  for (size_t i = 0; i < shape->rev_ids.size() && i < 3; ++i) {
    ancestors.push_back(std::to_string(shape->revisions_start - static_cast<int64_t>(i)) + "-" +
                        shape->rev_ids[i]);
  }
  int64_t known = KnownAncestorGeneration(*shape, ancestors);
  FUZZ_CHECK(known >= 0, "a negative known generation");
  (void)BytesToSend(*shape, known);

  std::set<std::string> follows;
  for (const auto& a : shape->attachments) follows.insert(a.name);
  auto rewritten = WithFollowsAttachments(json, follows);
  if (rewritten.ok()) {
    // Only _attachments changes: every other top-level member keeps its bytes.
    auto before = SplitObject(json);
    auto after = SplitObject(*rewritten);
    FUZZ_CHECK(before.ok() && after.ok(), "a rewritten document is not a JSON object");
    for (const auto& f : *before) {
      if (f.key == "_attachments") continue;
      FUZZ_CHECK(FindField(*after, f.key).has_value(), "rewriting attachments lost member " + f.key);
    }
    auto again = ReadDocShape(*rewritten);
    FUZZ_CHECK(again.ok(), "a rewritten document has no shape");
    FUZZ_CHECK(again->id == shape->id && again->rev == shape->rev &&
                   again->rev_ids == shape->rev_ids,
               "rewriting attachments changed id, rev or revisions");
  }
  return 0;
}

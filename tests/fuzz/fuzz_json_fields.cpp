// Fuzzes the JSON object surgery (SplitObject/JoinObject) and the state write-back on any replication document.
#include <optional>
#include <string>

#include "couchrepd/doc_processor.h"
#include "couchrepd/json.h"
#include "couchrepd/json_fields.h"
#include "couchrepd/state_fields.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace couchrepd;
  using namespace couchrepd::fuzz;
  Input in(data, size);
  uint8_t options = in.Byte();
  std::string_view json = in.Rest();

  auto fields = SplitObject(json);
  if (fields.ok()) {
    // Joining and splitting again gives the same members and raw values.
    std::string joined = JoinObject(*fields);
    auto again = SplitObject(joined);
    FUZZ_CHECK(again.ok(), "JoinObject made an invalid object: " + joined);
    FUZZ_CHECK(again->size() == fields->size(), "split/join changed the member count");
    for (size_t i = 0; i < fields->size(); ++i) {
      FUZZ_CHECK((*again)[i].key == (*fields)[i].key, "split/join changed a key");
      FUZZ_CHECK((*again)[i].raw_value == (*fields)[i].raw_value, "split/join changed a value");
    }
  }

  StateWrite write;
  if (options & 1) write.replication_id = "abc+continuous";
  static const char* const kStates[] = {"triggered", "completed", "error", "failed"};
  if (options & 2) write.state = kStates[(options >> 4) % 4];
  if (options & 4) write.reason = "`continuous` must be a boolean";
  if (options & 8) write.stats_json = "{\"docs_read\":1}";
  write.clear_reason = options & 64;
  auto written = ApplyStateWrite(json, write, 1700000000);
  if (written) {
    // A document only too deep (or with unpaired surrogates) for the parser
    // is written by structure: the output is still JSON by the grammar.
    auto out = fields.ok() ? SplitObject(*written) : SplitObjectByStructure(*written);
    FUZZ_CHECK(out.ok(), "a state write made an invalid object: " + *written);
    FUZZ_CHECK(fields.ok() || IsJsonText(*written), "a state write made invalid JSON: " + *written);
    // Applying the same write again changes nothing.
    FUZZ_CHECK(!ApplyStateWrite(*written, write, 1700000000).has_value(),
               "a state write is not idempotent");
    // Members we do not own keep their bytes.
    if (fields.ok()) {
      for (const auto& f : *fields) {
        if (f.key.rfind("_replication_", 0) == 0) continue;
        auto kept = FindField(*out, f.key);
        FUZZ_CHECK(kept.has_value(), "a state write dropped member " + f.key);
        FUZZ_CHECK(*kept == *FindField(*fields, f.key), "a state write changed member " + f.key);
      }
    }
  }
  return 0;
}

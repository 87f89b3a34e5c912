// Fuzzes ParseCheckpointDoc (a _local document from any server): render and re-parse keep it, the start decision is sane.
#include <optional>
#include <string>

#include "couchrepd/checkpoint.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace couchrepd;
  using namespace couchrepd::fuzz;
  std::string_view json(reinterpret_cast<const char*>(data), size);
  auto doc = ParseCheckpointDoc(json);
  if (!doc.ok()) {
    FUZZ_CHECK(doc.error().error == "bad_checkpoint" && !doc.error().temporary(),
               "a checkpoint error that is not a permanent bad_checkpoint: " + doc.error().Message());
    return 0;
  }
  // What we render from a parsed document parses back to the same thing.
  std::string rendered = RenderCheckpointDoc(*doc, doc->rev);
  auto back = ParseCheckpointDoc(rendered);
  FUZZ_CHECK(back.ok(), "a rendered checkpoint does not parse: " + rendered);
  FUZZ_CHECK(*back == *doc, "render + parse changed the checkpoint: " + rendered);

  // Both sides holding this document: the same session, or no decision.
  StartDecision same = DecideStartSeq(*doc, *doc);
  if (doc->session_id) {
    FUZZ_CHECK(same.basis == StartBasis::kSameSession, "identical documents are not the same session");
    FUZZ_CHECK(same.start_seq == doc->source_last_seq, "the same session does not resume at source_last_seq");
  }
  FUZZ_CHECK(!same.explanation.empty(), "a start decision without an explanation");
  StartDecision one_side = DecideStartSeq(*doc, std::nullopt);
  FUZZ_CHECK(one_side.basis == StartBasis::kNoCommonHistory && !one_side.start_seq,
             "a checkpoint on one side only was trusted");

  // The next checkpoint keeps at most the history bound, newest first.
  CheckpointUpdate update;
  update.session_id = "00000000000000000000000000000001";
  update.recorded_seq = "7";
  CheckpointDoc next = NextCheckpointDoc(*doc, update);
  FUZZ_CHECK(next.history.size() <= kMaxCheckpointHistory, "the history grew past its bound");
  FUZZ_CHECK(!next.history.empty() && next.history.front().session_id == update.session_id,
             "the newest history entry is not this session's");
  auto next_back = ParseCheckpointDoc(RenderCheckpointDoc(next));
  FUZZ_CHECK(next_back.ok(), "the next checkpoint does not parse");
  return 0;
}

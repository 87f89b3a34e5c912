// Fuzzes ChangesParser: any body, fed whole and in random pieces, gives the same rows and outcome.
#include <optional>
#include <string>
#include <vector>

#include "couchrepd/changes_parser.h"
#include "fuzz/fuzz_util.h"

namespace couchrepd::fuzz {
namespace {

struct Outcome {
  std::vector<ChangeRow> rows;
  std::optional<Error> error;
  std::optional<std::string> last_seq;
  std::optional<int64_t> pending;
  bool complete = false;
  uint64_t counted = 0;
};

std::string Describe(const Outcome& o) {
  std::string s = std::to_string(o.rows.size()) + " rows, ";
  s += o.error ? "error " + o.error->error + ": " + o.error->reason : "ok";
  return s;
}

bool SameRow(const ChangeRow& a, const ChangeRow& b) {
  return a.id == b.id && a.seq == b.seq && a.revs == b.revs && a.deleted == b.deleted &&
         a.doc == b.doc;
}

template <typename Chunks>
Outcome Parse(FeedKind kind, size_t max_row_bytes, size_t stop_after, Chunks&& chunks) {
  Outcome o;
  ChangesParser parser(kind, max_row_bytes);
  auto on_row = [&](ChangeRow&& row) {
    // Contract of a delivered row: an id and a seq.
    FUZZ_CHECK(!row.seq.empty(), "a row without seq was delivered");
    o.rows.push_back(std::move(row));
    return o.rows.size() < stop_after;
  };
  chunks([&](std::string_view piece) {
    Status s = parser.Feed(piece, on_row);
    if (!s.ok()) o.error = s.error();
    return s.ok();
  });
  if (!o.error) {
    Status s = parser.Finish();
    if (!s.ok()) o.error = s.error();
  }
  if (o.error) {
    // A failed parser stays failed with the same error.
    Status again = parser.Finish();
    FUZZ_CHECK(!again.ok() && again.error().error == o.error->error &&
                   again.error().reason == o.error->reason,
               "a failed parser did not keep its error");
  }
  o.last_seq = parser.last_seq();
  o.pending = parser.pending();
  o.complete = parser.complete();
  o.counted = parser.rows();
  return o;
}

}  // namespace
}  // namespace couchrepd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace couchrepd;
  using namespace couchrepd::fuzz;
  Input in(data, size);
  uint8_t options = in.Byte();
  FeedKind kind = (options & 1) ? FeedKind::kContinuous : FeedKind::kNormal;
  // Small row caps exercise the "row too large" path.
  size_t max_row_bytes = (options & 2) ? 16 + in.Byte() : ChangesParser::kDefaultMaxRowBytes;
  size_t stop_after = (options & 4) ? 1 + (in.Byte() % 4) : SIZE_MAX;
  uint64_t seed = in.Word();
  std::string_view body = in.Rest();

  Outcome whole = Parse(kind, max_row_bytes, stop_after, [&](auto&& feed) { feed(body); });
  Splitter splitter(seed);
  Outcome split = Parse(kind, max_row_bytes, stop_after,
                        [&](auto&& feed) { FeedInPieces(body, splitter, feed); });

  std::string what = "whole: " + Describe(whole) + " / split: " + Describe(split);
  FUZZ_CHECK(whole.rows.size() == split.rows.size(), what);
  for (size_t i = 0; i < whole.rows.size(); ++i) {
    FUZZ_CHECK(SameRow(whole.rows[i], split.rows[i]), "row " + std::to_string(i) + " differs; " + what);
  }
  FUZZ_CHECK(whole.error.has_value() == split.error.has_value(), what);
  if (whole.error) {
    FUZZ_CHECK(whole.error->error == split.error->error && whole.error->kind == split.error->kind &&
                   whole.error->reason == split.error->reason,
               what);
    FUZZ_CHECK(!whole.error->error.empty(), "an error without a code");
  }
  FUZZ_CHECK(whole.last_seq == split.last_seq, "last_seq differs; " + what);
  FUZZ_CHECK(whole.pending == split.pending, "pending differs; " + what);
  FUZZ_CHECK(whole.complete == split.complete, "complete differs; " + what);
  FUZZ_CHECK(whole.counted == whole.rows.size(), "rows() does not count the rows delivered");
  return 0;
}

#include "couchrepd/changes_parser.h"

#include <doctest/doctest.h>

#include "support/recordings.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace couchrepd {
namespace {

// --- Recorded CouchDB 3.4.3 exchanges (format: tests/fixtures/couchdb-3.4/README.md) ---

using testing::ReadFixture;
using testing::ResponseBody;

// Undoes HTTP/1.1 chunked framing; returns the chunks as the server sent them.
// The body may stop without the final zero-size chunk (the client hung up).
std::vector<std::string> Dechunk(std::string_view framed) {
  std::vector<std::string> chunks;
  size_t pos = 0;
  while (pos < framed.size()) {
    size_t eol = framed.find("\r\n", pos);
    REQUIRE(eol != std::string_view::npos);
    size_t size = std::stoul(std::string(framed.substr(pos, eol - pos)), nullptr, 16);
    if (size == 0) break;
    pos = eol + 2;
    REQUIRE(pos + size + 2 <= framed.size());
    chunks.emplace_back(framed.substr(pos, size));
    REQUIRE(framed.substr(pos + size, 2) == "\r\n");
    pos += size + 2;
  }
  return chunks;
}

// --- Running the parser over a body cut into pieces ---

struct Outcome {
  std::vector<ChangeRow> rows;
  std::optional<Error> error;  // the first error from Feed or Finish
  std::optional<std::string> last_seq;
  std::optional<int64_t> pending;
  bool complete = false;
  uint64_t row_count = 0;
};

Outcome ParsePieces(FeedKind kind, const std::vector<std::string_view>& pieces,
                    size_t max_row_bytes = ChangesParser::kDefaultMaxRowBytes) {
  Outcome out;
  ChangesParser parser(kind, max_row_bytes);
  auto on_row = [&out](ChangeRow&& row) {
    out.rows.push_back(std::move(row));
    return true;
  };
  for (std::string_view piece : pieces) {
    Status s = parser.Feed(piece, on_row);
    if (!s.ok()) {
      out.error = s.error();
      break;
    }
  }
  if (!out.error) {
    Status s = parser.Finish();
    if (!s.ok()) out.error = s.error();
  }
  out.last_seq = parser.last_seq();
  out.pending = parser.pending();
  out.complete = parser.complete();
  out.row_count = parser.rows();
  return out;
}

// Cuts `body` at the given increasing positions.
Outcome ParseCut(FeedKind kind, std::string_view body, std::vector<size_t> cuts,
                 size_t max_row_bytes = ChangesParser::kDefaultMaxRowBytes) {
  std::vector<std::string_view> pieces;
  size_t prev = 0;
  cuts.push_back(body.size());
  for (size_t cut : cuts) {
    pieces.push_back(body.substr(prev, cut - prev));
    prev = cut;
  }
  return ParsePieces(kind, pieces, max_row_bytes);
}

Outcome ParseWhole(FeedKind kind, std::string_view body,
                   size_t max_row_bytes = ChangesParser::kDefaultMaxRowBytes) {
  return ParseCut(kind, body, {}, max_row_bytes);
}

// One line per row, so a failed comparison shows what differs.
std::string Describe(const Outcome& o) {
  std::string s;
  for (const ChangeRow& r : o.rows) {
    s += "id=" + r.id + " seq=" + r.seq + " revs=";
    for (const std::string& rev : r.revs) s += rev + ",";
    s += r.deleted ? " deleted" : "";
    s += " doc=" + r.doc + "\n";
  }
  s += "last_seq=" + o.last_seq.value_or("<none>");
  s += " pending=" + (o.pending ? std::to_string(*o.pending) : std::string("<none>"));
  s += o.complete ? " complete" : " incomplete";
  s += " error=" + (o.error ? o.error->Message() : std::string("<none>"));
  return s;
}

// Every two-way split, a spread of three-way splits and one byte at a time
// all give exactly `want`.
void CheckAllSplits(FeedKind kind, std::string_view body, const Outcome& want) {
  const std::string expected = Describe(want);
  for (size_t a = 0; a <= body.size(); ++a) {
    Outcome got = ParseCut(kind, body, {a});
    if (Describe(got) != expected) {
      CAPTURE(a);
      CHECK(Describe(got) == expected);
      return;
    }
  }
  const size_t step_a = body.size() / 23 + 1;
  const size_t step_b = body.size() / 37 + 1;
  for (size_t a = 0; a <= body.size(); a += step_a) {
    for (size_t b = a; b <= body.size(); b += step_b) {
      Outcome got = ParseCut(kind, body, {a, b});
      if (Describe(got) != expected) {
        CAPTURE(a);
        CAPTURE(b);
        CHECK(Describe(got) == expected);
        return;
      }
    }
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < body.size(); ++i) bytes.push_back(body.substr(i, 1));
  CHECK(Describe(ParsePieces(kind, bytes)) == expected);
}

ChangeRow Row(std::string id, std::string seq, std::vector<std::string> revs, bool deleted = false,
              std::string doc = "") {
  return ChangeRow{std::move(id), std::move(seq), std::move(revs), deleted, std::move(doc)};
}

// Seqs of rec_db as recorded (opaque; raw JSON text including the quotes).
const std::string kSeqPlain =
    R"("1-g1AAAAB5eJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgTGXOBAuyJKUnJRsmW2DTgMSaPBUgyNACp_yDTEhmyAHJNIL4")";
const std::string kSeqGone =
    R"("3-g1AAAAB5eJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgTmXOBAuyJKUnJRsmW2DTgMSaPBUgyNACp_yDTEhmyAHLpIMA")";
const std::string kSeqWithatt =
    R"("6-g1AAAAB5eJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgT2XKBAuyJKUnJRsmW2DTgMSaPBUgyNACp_yDTEhmyAHPTIMM")";
const std::string kSeq9 =
    R"("9-g1AAAACbeJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgT2XKBAuyJKUnJRsmW2DTgMSaPBUgyNACp_1DTmMGmWZoZmFukpWLTlwUATIIowA")";

const std::string kRevPlain = "1-f88556ae0b4f200246d63900ebb1d666";
const std::string kRevGone = "2-c38229348cecf7952d3b52d9511f8056";
const std::string kRevWithattA = "2-f7204cfd976774221506005e1448e88a";
const std::string kRevWithattB = "2-c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
const std::string kRevConflictedA = "2-b576242b85502488ed3b71a80c5b6e8b";
const std::string kRevConflictedB = "2-b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

// The four rows of rec_db's all_docs feed since 0, as recorded in 03, 05, 06.
std::vector<ChangeRow> AllDocsRows() {
  return {Row("plain", kSeqPlain, {kRevPlain}), Row("gone", kSeqGone, {kRevGone}, true),
          Row("withatt", kSeqWithatt, {kRevWithattA, kRevWithattB}),
          Row("conflicted", kSeq9, {kRevConflictedA, kRevConflictedB})};
}

Outcome Want(std::vector<ChangeRow> rows, std::optional<std::string> last_seq,
             std::optional<int64_t> pending, bool complete) {
  Outcome o;
  o.row_count = rows.size();
  o.rows = std::move(rows);
  o.last_seq = std::move(last_seq);
  o.pending = pending;
  o.complete = complete;
  return o;
}

// --- Recorded feeds ---

TEST_CASE("normal feed 03 (style=all_docs since=0) in every split") {
  const std::string body = ResponseBody("03-changes-normal-all-docs.http");
  const Outcome want = Want(AllDocsRows(), kSeq9, 0, true);
  Outcome whole = ParseWhole(FeedKind::kNormal, body);
  CHECK(Describe(whole) == Describe(want));
  CHECK(whole.row_count == 4);
  CheckAllSplits(FeedKind::kNormal, body, want);
}

TEST_CASE("normal feed 04 (empty results) in every split") {
  const std::string body = ResponseBody("04-changes-normal-since-last-seq.http");
  CheckAllSplits(FeedKind::kNormal, body, Want({}, kSeq9, 0, true));
}

TEST_CASE("normal feeds 09 (doc_ids), 10 (selector), 11 (main_only) in every split") {
  SUBCASE("09 doc_ids: pending is 2") {
    CheckAllSplits(FeedKind::kNormal, ResponseBody("09-changes-post-doc-ids.http"),
                   Want({Row("gone", kSeqGone, {kRevGone}, true),
                         Row("conflicted", kSeq9, {kRevConflictedA, kRevConflictedB})},
                        kSeq9, 2, true));
  }
  SUBCASE("10 selector: the row seq differs from the unfiltered feed's") {
    CheckAllSplits(FeedKind::kNormal, ResponseBody("10-changes-post-selector.http"),
                   Want({Row("withatt", kSeq9, {kRevWithattA, kRevWithattB})}, kSeq9, 0, true));
  }
  SUBCASE("11 main_only: one rev per row") {
    CheckAllSplits(
        FeedKind::kNormal, ResponseBody("11-changes-main-only.http"),
        Want({Row("plain", kSeqPlain, {kRevPlain}), Row("gone", kSeqGone, {kRevGone}, true),
              Row("withatt", kSeqWithatt, {kRevWithattA}),
              Row("conflicted", kSeq9, {kRevConflictedA})},
             kSeq9, 0, true));
  }
}

TEST_CASE("continuous feed 05 (heartbeats, no last_seq: the client hung up)") {
  const std::string body = ResponseBody("05-changes-continuous-heartbeat-timeout.http");
  REQUIRE(body.ends_with("\n\n\n\n\n\n\n\n"));
  CheckAllSplits(FeedKind::kContinuous, body,
                 Want(AllDocsRows(), std::nullopt, std::nullopt, false));
}

TEST_CASE("continuous feed 06 (ends with a last_seq line)") {
  const std::string body = ResponseBody("06-changes-continuous-timeout-last-seq.http");
  CheckAllSplits(FeedKind::kContinuous, body, Want(AllDocsRows(), kSeq9, 0, true));
}

TEST_CASE("continuous feed 07, stored with its HTTP chunk framing") {
  const std::vector<std::string> chunks =
      Dechunk(ResponseBody("07-changes-continuous-raw-chunks.http"));
  REQUIRE(chunks.size() == 4);  // four rows together, then three 1-byte heartbeats
  CHECK(chunks[1] == "\n");
  // The same feed as 05 a moment later: the shards interleave differently, so
  // the order and the seqs of the rows differ.
  const Outcome want = Want(
      {Row("plain", kSeqPlain, {kRevPlain}),
       Row("conflicted",
           R"("4-g1AAAACbeJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgTGXOBAuyJKUnJRsmW2DTgMSaPBUgyNACp_1DTmMGmWZoZmFukpWLTlwUASlIouw")",
           {kRevConflictedA, kRevConflictedB}),
       Row("gone",
           R"("6-g1AAAACbeJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgTmXOBAuyJKUnJRsmW2DTgMSaPBUgyNACp_yimWZoZmFukpWLTlwUASzIovQ")",
           {kRevGone}, true),
       Row("withatt", kSeq9, {kRevWithattA, kRevWithattB})},
      std::nullopt, std::nullopt, false);
  std::vector<std::string_view> as_sent(chunks.begin(), chunks.end());
  CHECK(Describe(ParsePieces(FeedKind::kContinuous, as_sent)) == Describe(want));
  std::string body;
  for (const std::string& c : chunks) body += c;
  CheckAllSplits(FeedKind::kContinuous, body, want);
}

TEST_CASE("continuous feed 08 (_replicator with include_docs)") {
  const std::string body = ResponseBody("08-replicator-changes-continuous-include-docs.http");
  // Each row's doc is its last member: the raw text between "doc": and the
  // row's closing brace.
  std::vector<std::string> docs;
  std::istringstream lines(body);
  for (std::string line; std::getline(lines, line);) {
    size_t at = line.find(",\"doc\":");
    if (at != std::string::npos) docs.push_back(line.substr(at + 7, line.size() - at - 8));
  }
  REQUIRE(docs.size() == 4);
  CHECK(
      docs[0] ==
      R"({"_id":"probe","_rev":"2-adf48280f84b93c41b1186a72b06b445","owner":"admin","_deleted":true})");
  const std::string last =
      R"("6-g1AAAACbeJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgTGXOBAuwGaYkWiWZG2DTgMSaPBUgyNACp_1DTWMGmGZqmpZinmGHTlwUAKDwohQ")";
  const Outcome want = Want(
      {Row("probe",
           R"("2-g1AAAAB5eJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zEhnwKMpjAZIMDUDqP0htBnMiUy5QgN3QNC3FPMUMm74sAJVcIGg")",
           {"2-adf48280f84b93c41b1186a72b06b445"}, true, docs[0]),
       Row("rec_create_target",
           R"("3-g1AAAACbeJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgTGXOBAuwGaYkWiWZG2DTgMSaPBUgyNACp_1DTmMCmGZqmpZinmGHTlwUAJ9Yogg")",
           {"1-3af8c4189a6e79b1c408c7413670e0a3"}, false, docs[1]),
       Row("bar_perf",
           R"("5-g1AAAACbeJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgTGXOBAuwGaYkWiWZG2DTgMSaPBUgyNACp_1DTWMCmGZqmpZinmGHTlwUAKBoohA")",
           {"2-3305f404f0b44cc72403162456fb0549"}, false, docs[2]),
       Row("rec_valid", last, {"1-0253dc2df06086aada048ede117b4598"}, false, docs[3])},
      last, 0, true);
  CheckAllSplits(FeedKind::kContinuous, body, want);
}

// --- Layout independence ---

// rec_db's rows as one line with no whitespace at all.
std::string CompactRows() {
  return R"({"seq":)" + kSeqPlain + R"(,"id":"plain","changes":[{"rev":")" + kRevPlain +
         R"("}]},{"seq":)" + kSeqGone + R"(,"id":"gone","changes":[{"rev":")" + kRevGone +
         R"("}],"deleted":true},{"seq":)" + kSeqWithatt + R"(,"id":"withatt","changes":[{"rev":")" +
         kRevWithattA + R"("},{"rev":")" + kRevWithattB + R"("}]},{"seq":)" + kSeq9 +
         R"(,"id":"conflicted","changes":[{"rev":")" + kRevConflictedA + R"("},{"rev":")" +
         kRevConflictedB + R"("}]})";
}

TEST_CASE("normal feed with last_seq and pending before results and no newlines") {
  const std::string body =
      R"({"last_seq":)" + kSeq9 + R"(,"pending":0,"results":[)" + CompactRows() + "]}";
  CheckAllSplits(FeedKind::kNormal, body, Want(AllDocsRows(), kSeq9, 0, true));
}

TEST_CASE("normal feed with odd whitespace everywhere and members in another order") {
  std::string rows = CompactRows();
  // Whitespace inside rows too, where JSON allows it.
  std::string spaced;
  for (char c : rows) {
    spaced += c;
    if (c == ',' || c == ':') spaced += " \r\n\t";
  }
  const std::string body = "\r\n\t { \"pending\" :\t12 ,\n \"results\"\r\n:\n[ \n" + spaced +
                           " \n]\t,\"last_seq\"  :  " + kSeq9 + " \r\n} \r\n\n";
  CheckAllSplits(FeedKind::kNormal, body, Want(AllDocsRows(), kSeq9, 12, true));
}

TEST_CASE("numeric seqs (CouchDB 1.x) are kept as raw text, even split inside the number") {
  const std::string body =
      R"({"results":[{"seq":12345,"id":"a","changes":[{"rev":"1-a"}]},{"seq":-0.5e+3,"id":"b","changes":[]}],"last_seq":12346,"pending":789})";
  CheckAllSplits(FeedKind::kNormal, body,
                 Want({Row("a", "12345", {"1-a"}), Row("b", "-0.5e+3", {})}, "12346", 789, true));
  // A BigCouch-style array seq and a last_seq ending right at the brace.
  CheckAllSplits(
      FeedKind::kNormal,
      R"({"results":[{"seq":[3,"g1A"],"id":"x","changes":[{"rev":"1-x"}]}],"last_seq":7})",
      Want({Row("x", R"([3,"g1A"])", {"1-x"})}, "7", std::nullopt, true));
}

TEST_CASE("include_docs rows with tricky strings keep the doc's raw text exactly") {
  // Escaped quotes and backslashes (also right before a closing quote), braces
  // and brackets inside strings, raw 2/3/4-byte UTF-8, \u escapes incl. a
  // surrogate pair, nested arrays/objects and an inline base64 attachment.
  const std::string doc1 =
      R"({"_id":"t\"q","_rev":"1-a","s":"a \"quoted\" {not: [an object]} \\","t":"\\","u":"}]{[","nested":{"a":[1,{"b":[]},[[]]],"c":{}},"text":"caf)"
      "\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"
      R"(","esc":"\u00e9\ud83d\ude00\n\t\/","_attachments":{"a.bin":{"content_type":"application/octet-stream","data":"AAECA//+/Q0KLS1ub3RhYm91bmRhcnkNCn+AYmluYXJ5LWF0dC12MQAARU5E"}}})";
  const std::string doc2 = R"({"_id":"x","list":["]","[","}","{","\\\"",""]})";
  const std::string row1 =
      R"({"seq":"5-x\"y","id":"t\"q","changes":[{"rev":"1-a"}],"doc":)" + doc1 + "}";
  const std::string row2 =
      R"({"doc" : )" + doc2 +
      R"( ,"changes":[{"rev":"2-b","other":{"rev":"ignored"}}],"deleted":false,"id":"x","seq":"6"})";
  const Outcome want = Want(
      {Row("t\"q", R"("5-x\"y")", {"1-a"}, false, doc1), Row("x", R"("6")", {"2-b"}, false, doc2)},
      "\"6\"", 0, true);
  SUBCASE("continuous") {
    CheckAllSplits(FeedKind::kContinuous,
                   row1 + "\n" + row2 + "\n\n" + R"({"last_seq":"6","pending":0})" + "\n", want);
  }
  SUBCASE("normal") {
    CheckAllSplits(FeedKind::kNormal,
                   R"({"results":[)" + row1 + ",\r\n" + row2 + R"(],"last_seq":"6","pending":0})",
                   want);
  }
}

TEST_CASE("an escaped id and a doc that is null") {
  Outcome o = ParseWhole(
      FeedKind::kContinuous,
      R"({"seq":1,"id":"a\"b\\c\u00e9\/","changes":[{"rev":"1-a"}],"doc":null,"deleted":true})");
  REQUIRE(!o.error);
  REQUIRE(o.rows.size() == 1);
  CHECK(o.rows[0].id == "a\"b\\c\xc3\xa9/");
  CHECK(o.rows[0].doc == "null");
  CHECK(o.rows[0].deleted);
}

TEST_CASE("continuous: heartbeats of any whitespace, rows not separated by newlines") {
  const std::string body =
      "\n\r\n \t" + std::string(R"({"seq":1,"id":"a","changes":[{"rev":"1-a"}]})") +
      R"({"seq":2,"id":"b","changes":[{"rev":"1-b"}]})" + "\n\n \n" + R"({"last_seq":2})" + "\n";
  CheckAllSplits(FeedKind::kContinuous, body,
                 Want({Row("a", "1", {"1-a"}), Row("b", "2", {"1-b"})}, "2", std::nullopt, true));
}

TEST_CASE("continuous: a row is delivered as soon as its closing brace arrives") {
  ChangesParser parser(FeedKind::kContinuous);
  std::vector<std::string> ids;
  auto on_row = [&ids](ChangeRow&& row) {
    ids.push_back(row.id);
    return true;
  };
  CHECK(parser.Feed(R"({"seq":1,"id":"a","changes":[{"rev":"1-a"}])", on_row).ok());
  CHECK(ids.empty());
  CHECK(parser.Feed("}", on_row).ok());  // no newline yet
  CHECK(ids == std::vector<std::string>{"a"});
  CHECK(parser.rows() == 1);
  CHECK(!parser.complete());
  CHECK(parser.Finish().ok());  // dropped between rows: not an error
  CHECK(!parser.last_seq());
}

TEST_CASE("normal: rows are delivered before the feed ends") {
  ChangesParser parser(FeedKind::kNormal);
  int rows = 0;
  auto on_row = [&rows](ChangeRow&&) {
    ++rows;
    return true;
  };
  CHECK(parser.Feed(R"({"results":[{"seq":1,"id":"a","changes":[]})", on_row).ok());
  CHECK(rows == 1);
  CHECK(!parser.complete());
  CHECK(parser.Feed(R"(],"last_seq":1})", on_row).ok());
  CHECK(parser.complete());
  CHECK(parser.Finish().ok());
}

// --- Errors ---

void CheckError(const Outcome& o, ErrorKind kind, std::string_view code,
                std::string_view reason_part) {
  REQUIRE_MESSAGE(o.error.has_value(), Describe(o));
  CHECK(o.error->kind == kind);
  CHECK(o.error->error == code);
  CHECK_MESSAGE(o.error->reason.find(reason_part) != std::string::npos, o.error->reason);
}

TEST_CASE("garbage is a permanent error naming the byte and its offset") {
  CheckError(ParseWhole(FeedKind::kNormal, "<html>oops</html>"), ErrorKind::kPermanent,
             "bad_changes_feed",
             "unexpected '<', expected '{' opening the response object (at offset 0)");
  CheckError(ParseWhole(FeedKind::kContinuous, "\n\nxyz"), ErrorKind::kPermanent,
             "bad_changes_feed", "unexpected 'x', expected '{' opening a row (at offset 2)");
  CheckError(ParseWhole(FeedKind::kContinuous, R"({"seq":1,"id":"a","changes":[]} garbage)"),
             ErrorKind::kPermanent, "bad_changes_feed", "'g'");
  CheckError(ParseWhole(FeedKind::kNormal, R"({"results":[1]})"), ErrorKind::kPermanent,
             "bad_changes_feed", "expected '{' opening a row (at offset 12)");
  CheckError(ParseWhole(FeedKind::kNormal, R"({"results":{}})"), ErrorKind::kPermanent,
             "bad_changes_feed", "'[' opening \"results\"");
  CheckError(ParseWhole(FeedKind::kNormal, R"({"results":[] "last_seq":1})"), ErrorKind::kPermanent,
             "bad_changes_feed", "',' or '}' after a member");
  CheckError(ParseWhole(FeedKind::kNormal, R"({"results":[],"last_seq":nope})"),
             ErrorKind::kPermanent, "bad_changes_feed", "\"last_seq\" is not valid JSON");
  CheckError(ParseWhole(FeedKind::kNormal, R"({"results":[]}{})"), ErrorKind::kPermanent,
             "bad_changes_feed", "data after the end of the response object");
  CheckError(ParseWhole(FeedKind::kNormal, R"({"last_seq":1})"), ErrorKind::kPermanent,
             "bad_changes_feed", "no \"results\"");
  CheckError(ParseWhole(FeedKind::kContinuous, "{\"last_seq\":1}\n{\"seq\":2}"),
             ErrorKind::kPermanent, "bad_changes_feed", "data after the final last_seq object");
  CheckError(ParseWhole(FeedKind::kNormal, R"({"results":[],"results":[]})"), ErrorKind::kPermanent,
             "bad_changes_feed", "a second \"results\"");
}

TEST_CASE("rows that are not valid JSON or lack what a row needs") {
  CheckError(ParseWhole(FeedKind::kContinuous, R"({"seq":1,"id":"a",,"changes":[]})"),
             ErrorKind::kPermanent, "bad_changes_feed", "a row is not valid JSON");
  CheckError(ParseWhole(FeedKind::kContinuous, "{\"seq\":1,\"id\":\"a\xff\",\"changes\":[]}"),
             ErrorKind::kPermanent, "bad_changes_feed", "a row is not valid JSON");
  CheckError(
      ParseWhole(FeedKind::kContinuous, R"({"seq":1,"id":"a","changes":[],"doc":{"x":1 2}})"),
      ErrorKind::kPermanent, "bad_changes_feed", "a row is not valid JSON");
  CheckError(ParseWhole(FeedKind::kContinuous, "\n" + std::string(R"({"seq":1,"changes":[]})")),
             ErrorKind::kPermanent, "bad_changes_feed", "a row has no \"id\" (at offset 1)");
  CheckError(ParseWhole(FeedKind::kNormal, R"({"results":[{"seq":1,"changes":[]}]})"),
             ErrorKind::kPermanent, "bad_changes_feed", "a row has no \"id\" (at offset 12)");
  CheckError(ParseWhole(FeedKind::kNormal, R"({"results":[{"last_seq":1}]})"),
             ErrorKind::kPermanent, "bad_changes_feed", "a row has no \"id\"");
  CheckError(ParseWhole(FeedKind::kContinuous, R"({"seq":1,"id":"a"})"), ErrorKind::kPermanent,
             "bad_changes_feed", "the row for id \"a\" has no \"changes\"");
  CheckError(ParseWhole(FeedKind::kContinuous, R"({"id":"a","changes":[]})"), ErrorKind::kPermanent,
             "bad_changes_feed", "the row for id \"a\" has no \"seq\"");
  CheckError(ParseWhole(FeedKind::kContinuous, R"({"seq":1,"id":7,"changes":[]})"),
             ErrorKind::kPermanent, "bad_changes_feed", "\"id\" is not a string");
  CheckError(ParseWhole(FeedKind::kContinuous, R"({"seq":1,"id":"a","changes":{}})"),
             ErrorKind::kPermanent, "bad_changes_feed", "\"changes\" is not an array");
  CheckError(ParseWhole(FeedKind::kContinuous, R"({"seq":1,"id":"a","changes":[{"x":1}]})"),
             ErrorKind::kPermanent, "bad_changes_feed", "has no \"rev\"");
  CheckError(ParseWhole(FeedKind::kContinuous, R"({"seq":1,"id":"a","changes":[],"deleted":1})"),
             ErrorKind::kPermanent, "bad_changes_feed", "\"deleted\" is not a boolean");
  CheckError(ParseWhole(FeedKind::kContinuous, R"({"seq":1,"id":"a","changes":[]])"),
             ErrorKind::kPermanent, "bad_changes_feed", "a row is not valid JSON");
}

TEST_CASE("an error line from CouchDB is a temporary error with its error and reason") {
  const std::string body =
      std::string(R"({"seq":1,"id":"a","changes":[{"rev":"1-a"}]})") + "\n" +
      R"({"error":"timeout","reason":"The request could not be processed in a reasonable amount of time."})" +
      "\n";
  for (size_t a = 0; a <= body.size(); ++a) {
    Outcome o = ParseCut(FeedKind::kContinuous, body, {a});
    REQUIRE(o.error);
    CHECK(o.rows.size() == 1);
    CHECK(o.error->temporary());
    CHECK(o.error->error == "timeout");
    CHECK(o.error->reason == "The request could not be processed in a reasonable amount of time.");
  }
  // Inside a normal feed's results, and as the whole response object.
  Outcome in_results =
      ParseWhole(FeedKind::kNormal, R"({"results":[{"error":"badarg","reason":{"x":1}}]})");
  REQUIRE(in_results.error);
  CHECK(in_results.error->temporary());
  CHECK(in_results.error->error == "badarg");
  CHECK(in_results.error->reason == R"({"x":1})");
  Outcome whole = ParseWhole(FeedKind::kNormal, R"({"error":"not_found","reason":"missing"})");
  REQUIRE(whole.error);
  CHECK(whole.error->Message() == "not_found: missing");
}

TEST_CASE("a row larger than max_row_bytes is an error, however it is split") {
  const std::string small = R"({"seq":1,"id":"a","changes":[]})";
  const std::string big =
      R"({"seq":2,"id":"b","changes":[],"doc":{"pad":")" + std::string(200, 'x') + "\"}}";
  const std::string body = small + "\n" + big + "\n";
  for (size_t a = 0; a <= body.size(); ++a) {
    Outcome o = ParseCut(FeedKind::kContinuous, body, {a}, 100);
    CheckError(o, ErrorKind::kPermanent, "bad_changes_feed",
               "a row is larger than max_row_bytes (100 bytes) (at offset " +
                   std::to_string(small.size() + 1) + ")");
    CHECK(o.rows.size() == 1);
  }
  CheckError(ParseWhole(FeedKind::kNormal, R"({"last_seq":")" + std::string(200, '9') + "\"}", 100),
             ErrorKind::kPermanent, "bad_changes_feed", "a value is larger than max_row_bytes");
  // Exactly at the limit is fine.
  Outcome at_limit = ParseWhole(FeedKind::kContinuous, small, small.size());
  CHECK(!at_limit.error);
  CHECK(at_limit.rows.size() == 1);
}

TEST_CASE("a truncated normal feed is a temporary error at every cut") {
  const std::string body = ResponseBody("03-changes-normal-all-docs.http");
  const std::string_view closed(body.data(), body.rfind('}') + 1);
  for (size_t len = 0; len < closed.size(); ++len) {
    Outcome o = ParseWhole(FeedKind::kNormal, closed.substr(0, len));
    REQUIRE_MESSAGE(o.error, len);
    CHECK(o.error->temporary());
    CHECK(o.error->error == "bad_changes_feed");
    CHECK(o.error->reason.find("the body ended ") == 0);
    CHECK(!o.complete);
  }
  CHECK(ParseWhole(FeedKind::kNormal, "").error->reason ==
        "the body ended before the response object began (0 bytes received)");
  const std::string cut_in_number = R"({"results":[{"seq":1,"id":"a","changes":[]}],"last_seq":12)";
  CHECK(ParseWhole(FeedKind::kNormal, cut_in_number).error->reason ==
        "the body ended inside a value that started at offset " +
            std::to_string(cut_in_number.find("12")) + " (" + std::to_string(cut_in_number.size()) +
            " bytes received)");
  CHECK(ParseWhole(FeedKind::kNormal, closed).error == std::nullopt);
}

TEST_CASE("a continuous feed cut inside a row is an error; between rows it is not") {
  const std::string body = ResponseBody("06-changes-continuous-timeout-last-seq.http");
  for (size_t len = 0; len <= body.size(); ++len) {
    Outcome o = ParseWhole(FeedKind::kContinuous, std::string_view(body).substr(0, len));
    const bool between_rows =
        len == 0 || body[len - 1] == '\n' || (len < body.size() && body[len] == '\n');
    CAPTURE(len);
    CHECK(o.error.has_value() == !between_rows);
    if (o.error) {
      CHECK(o.error->temporary());
      CHECK(o.error->reason.find("the body ended inside a row that started at offset") == 0);
    }
  }
}

TEST_CASE("after an error the parser stays failed") {
  ChangesParser parser(FeedKind::kContinuous);
  int rows = 0;
  auto on_row = [&rows](ChangeRow&&) {
    ++rows;
    return true;
  };
  Status first = parser.Feed("x", on_row);
  REQUIRE(!first.ok());
  Status again = parser.Feed(R"({"seq":1,"id":"a","changes":[]})", on_row);
  REQUIRE(!again.ok());
  CHECK(again.error().reason == first.error().reason);
  CHECK(!parser.Finish().ok());
  CHECK(rows == 0);
}

TEST_CASE("a handler returning false stops the feed with an aborted error") {
  ChangesParser parser(FeedKind::kNormal);
  std::vector<std::string> ids;
  auto on_row = [&ids](ChangeRow&& row) {
    ids.push_back(row.id);
    return ids.size() < 2;
  };
  Status s = parser.Feed(ResponseBody("03-changes-normal-all-docs.http"), on_row);
  REQUIRE(!s.ok());
  CHECK(s.error().error == "aborted");
  CHECK(!s.error().temporary());
  CHECK(ids == std::vector<std::string>{"plain", "gone"});
  CHECK(parser.rows() == 2);
}

TEST_CASE("a big row with an inline attachment in many small chunks") {
  std::string data;
  for (int i = 0; i < 300000; ++i) data += "QUJDRA==\\/"[i % 10];
  const std::string doc = R"({"_id":"big","_attachments":{"b":{"data":")" + data + "\"}}}";
  const std::string body =
      R"({"seq":"1-x","id":"big","changes":[{"rev":"1-b"}],"doc":)" + doc + "}\n";
  std::vector<std::string_view> pieces;
  for (size_t i = 0; i < body.size(); i += 1000)
    pieces.push_back(std::string_view(body).substr(i, 1000));
  Outcome o = ParsePieces(FeedKind::kContinuous, pieces);
  REQUIRE(!o.error);
  REQUIRE(o.rows.size() == 1);
  CHECK(o.rows[0].doc == doc);
}

TEST_CASE("SeqToSinceParam") {
  CHECK(SeqToSinceParam(R"("12-g1AAAA")") == "12-g1AAAA");
  CHECK(SeqToSinceParam(kSeq9) == kSeq9.substr(1, kSeq9.size() - 2));
  CHECK(SeqToSinceParam("3") == "3");
  CHECK(SeqToSinceParam(" 42\n") == "42");
  CHECK(SeqToSinceParam(R"("a\"b\\c\u00e9\/")") == "a\"b\\c\xc3\xa9/");
  CHECK(SeqToSinceParam(R"([3,"g1AAA"])") == R"([3,"g1AAA"])");
  CHECK(SeqToSinceParam(R"( "now" )") == "now");
  CHECK(SeqToSinceParam("\"\"") == "");
  CHECK(SeqToSinceParam("\"unterminated") == "\"unterminated");
  CHECK(SeqToSinceParam("") == "");
}

}  // namespace
}  // namespace couchrepd

namespace couchrepd {
namespace {

// A document the parser cannot read itself (the server stores it anyway) must
// not stop a replicator database's feed: its row arrives with the document as
// raw text, for the document processor to reject, and the rows after it too.
TEST_CASE("a row whose doc is too deep or holds a lone surrogate is delivered with the raw doc") {
  const std::string deep = std::string(2000, '[') + std::string(2000, ']');
  const std::string deep_doc = R"({"_id":"d","_rev":"1-a","selector":)" + deep + "}";
  const std::string lone_doc = R"({"_id":"s","_rev":"1-b","source":"\ud800"})";
  const std::string body =
      R"({"seq":1,"id":"d","changes":[{"rev":"1-a"}],"doc":)" + deep_doc + "}\n" +
      R"({"seq":2,"id":"s","doc":)" + lone_doc + R"(,"changes":[{"rev":"1-b"}]})" + "\n" +
      R"({"seq":3,"id":"ok","changes":[{"rev":"1-c"}],"doc":{"_id":"ok"}})" + "\n";
  Outcome o = ParseWhole(FeedKind::kContinuous, body);
  INFO(Describe(o).substr(0, 400));
  REQUIRE_FALSE(o.error);
  REQUIRE(o.rows.size() == 3);
  CHECK(o.rows[0].id == "d");
  CHECK(o.rows[0].seq == "1");
  CHECK(o.rows[0].revs == std::vector<std::string>{"1-a"});
  CHECK(o.rows[0].doc == deep_doc);
  CHECK(o.rows[1].id == "s");
  CHECK(o.rows[1].revs == std::vector<std::string>{"1-b"});
  CHECK(o.rows[1].doc == lone_doc);
  CHECK(o.rows[2].doc == R"({"_id":"ok"})");
}

TEST_CASE("a row that is bad outside its doc still fails the feed") {
  const std::string body = R"({"seq":1,"id":"\ud800","changes":[{"rev":"1-a"}],"doc":{}})" "\n";
  Outcome o = ParseWhole(FeedKind::kContinuous, body);
  REQUIRE(o.error);
  CHECK(o.error->reason.find("not valid JSON") != std::string::npos);
  CHECK(o.rows.empty());
}

}  // namespace
}  // namespace couchrepd

namespace couchrepd {
namespace {
// Found by fuzz_changes_parser: {"error":""} made an error without a code.
TEST_CASE("an error line with an empty error still has an error code") {
  for (FeedKind kind : {FeedKind::kContinuous, FeedKind::kNormal}) {
    Outcome o = ParseWhole(kind, R"({"error":""})");
    REQUIRE(o.error);
    CHECK(o.error->error == "changes_feed_error");
    CHECK(o.error->temporary());
  }
}
}  // namespace
}  // namespace couchrepd

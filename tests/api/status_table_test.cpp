// `couchrepd status` rendering: the table, the detail view, the exit decision.
#include "couchrepd/status_table.h"

#include <doctest/doctest.h>

#include <string>

namespace couchrepd {
namespace {

const char* kDocs = R"({"total_rows":3,"offset":0,"docs":[
 {"database":"_replicator","doc_id":"backup","id":"abc+continuous","node":"n","source":"http://a/db/",
  "target":"http://b/db/","state":"running","info":{"revisions_checked":9,"docs_written":7,
  "changes_pending":2,"doc_write_failures":0},"error_count":0,"last_updated":"2026-12-03T06:00:00Z"},
 {"database":"team/_replicator","doc_id":"broken","id":null,"source":"http://c/x/","target":"y",
  "state":"crashing","info":{"error":"db_not_found: could not open http://c/x/\nretrying"},
  "error_count":3,"last_updated":"2026-12-03T06:01:00Z"},
 {"database":"_replicator","doc_id":"once","id":null,"source":"s","target":"t","state":"completed",
  "info":{"docs_written":5},"error_count":0,"last_updated":"2026-12-03T06:02:00Z"}]})";

TEST_CASE("status table: one line per document, errors on one line, counts at the end") {
  auto rows = ParseStatusDocs(kDocs);
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 3);
  CHECK((*rows)[0].docs_written == 7);
  CHECK((*rows)[0].changes_pending == 2);
  CHECK((*rows)[1].error_count == 3);
  CHECK(AnyNeedsAttention(*rows));
  std::string table = RenderStatusTable(*rows);
  CHECK(table ==
        "STATE      DOCUMENT                 SOURCE → TARGET              WRITTEN  PENDING  LAST ERROR\n"
        "running    _replicator/backup       http://a/db/ → http://b/db/  7        2\n"
        "crashing   team/_replicator/broken  http://c/x/ → y              -        -        "
        "db_not_found: could not open http://c/x/ retrying\n"
        "completed  _replicator/once         s → t                        5        -\n"
        "3 documents, 1 in error, failed or crashing\n");
  // Long errors are cut, with a mark.
  std::string narrow = RenderStatusTable(*rows, 12);
  CHECK(narrow.find("db_not_foun…\n") != std::string::npos);
  rows->erase(rows->begin() + 1);
  CHECK_FALSE(AnyNeedsAttention(*rows));
  CHECK(RenderStatusTable({}) == "STATE  DOCUMENT  SOURCE → TARGET  WRITTEN  PENDING  LAST ERROR\n"
                                 "0 documents, 0 in error, failed or crashing\n");
}

TEST_CASE("status table: answers that are not the status API's are errors") {
  CHECK_FALSE(ParseStatusDocs("<html>").ok());
  auto r = ParseStatusDocs(R"({"couchdb":"Welcome"})");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().reason.find("without a \"docs\" list") != std::string::npos);
  CHECK_FALSE(ParseStatusDoc("[1]").ok());
}

TEST_CASE("status detail: the document and its job's history") {
  auto row = ParseStatusDoc(
      R"({"database":"_replicator","doc_id":"backup","id":"abc","source":"http://a/db/",)"
      R"("target":"http://b/db/","state":"crashing","info":{"error":"boom"},"error_count":2,)"
      R"("last_updated":"2026-12-03T06:00:00Z"})");
  REQUIRE(row.ok());
  std::string out = RenderStatusDetail(
      *row, R"({"id":"abc","history":[{"timestamp":"2026-12-03T06:00:00Z","type":"crashed",)"
            R"("reason":"boom"},{"timestamp":"2026-12-03T05:59:00Z","type":"started"}]})");
  CHECK(out ==
        "document:     _replicator/backup\n"
        "state:        crashing\n"
        "job:          abc\n"
        "source:       http://a/db/\n"
        "target:       http://b/db/\n"
        "error:        boom\n"
        "errors:       2\n"
        "updated:      2026-12-03T06:00:00Z\n"
        "history (newest first):\n"
        "  2026-12-03T06:00:00Z  crashed    boom\n"
        "  2026-12-03T05:59:00Z  started\n");
  CHECK(AnyNeedsAttention({*row}));
}

}  // namespace
}  // namespace couchrepd

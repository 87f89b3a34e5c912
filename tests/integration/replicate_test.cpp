// `couchrepd replicate` end to end against a real CouchDB-compatible server:
// the full revision trees of a varied corpus, incremental runs, checkpoints.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "integration/replication_helpers.h"
#include "support/corpus.h"

using namespace couchrepd;
using namespace couchrepd::testing;

TEST_CASE("a varied corpus replicates completely, then incrementally") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("corpus-src");
  auto tgt = root.Database("corpus-tgt");
  REQUIRE(src.CreateDb().ok());
  auto corpus = BuildCorpus(src);
  REQUIRE(corpus.documents >= 2000);

  std::string first = ReplicateOk({server.url() + "/corpus-src", server.url() + "/corpus-tgt",
                                   "--create-target"});
  CHECK(JsonText(first, {"replication_id"}).find("+create_target") != std::string::npos);
  CHECK(JsonText(first, {"state"}) == "completed");
  CHECK(JsonInt(first, {"doc_write_failures"}) == 0);
  CHECK(JsonInt(first, {"docs_written"}) >= corpus.documents);
  CHECK(JsonInt(first, {"docs_written"}) == JsonInt(first, {"docs_read"}));
  CHECK(JsonInt(first, {"missing_revisions_found"}) == JsonInt(first, {"docs_written"}));
  // The target was empty: every revision was missing, none was asked about.
  auto RevsDiffs = [&] {
    return JsonInt(server.Request("GET", "/_test/requests?method=POST&path=%5E%2Fcorpus-tgt%2F_revs_diff")
                       .body,
                   {"count"});
  };
  CHECK(RevsDiffs() == 0);

  // Multi-megabyte attachments travelled as streamed multipart PUTs, not inline.
  auto puts = server.Request("GET", "/_test/requests?method=PUT&path=%5E%2Fcorpus-tgt%2Fatt-big-0%24");
  CHECK(JsonInt(puts.body, {"count"}) == 1);

  auto diffs = CompareDatabases(src, tgt);
  for (size_t i = 0; i < std::min<size_t>(diffs.size(), 5); ++i) INFO(diffs[i]);
  CHECK(diffs.empty());

  // The checkpoint: same document on both sides.
  std::string base = JsonText(first, {"replication_id"}).substr(0, 32);
  auto src_ckpt = src.GetLocal(base);
  auto tgt_ckpt = tgt.GetLocal(base);
  REQUIRE(src_ckpt.ok());
  REQUIRE(tgt_ckpt.ok());
  REQUIRE(src_ckpt->has_value());
  REQUIRE(tgt_ckpt->has_value());
  std::string session1 = JsonText(**src_ckpt, {"session_id"});
  CHECK(session1.size() == 32);
  CHECK(JsonText(**tgt_ckpt, {"session_id"}) == session1);
  CHECK(JsonText(**src_ckpt, {"source_last_seq"}) == JsonText(first, {"source_last_seq"}));
  CHECK(JsonInt(**src_ckpt, {"replication_id_version"}) == 4);

  // Change 10 documents: only those travel.
  for (int i = 0; i < 10; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "plain-%05d", i * 7);
    auto doc = src.GetDoc(id);
    REQUIRE(doc.ok());
    std::string rev = JsonText(*doc, {"_rev"});
    REQUIRE(src.PutDoc(id, std::string("{\"_rev\":\"") + rev + "\",\"changed\":true}").ok());
  }
  std::string second =
      ReplicateOk({server.url() + "/corpus-src", server.url() + "/corpus-tgt", "--create-target"});
  CHECK(RevsDiffs() > 0);  // resumed on a full target: _revs_diff again
  CHECK(JsonInt(second, {"docs_read"}) == 10);
  CHECK(JsonInt(second, {"docs_written"}) == 10);
  CHECK(JsonInt(second, {"revisions_checked"}) == 10);
  CHECK(JsonInt(second, {"cumulative", "docs_written"}) ==
        JsonInt(first, {"docs_written"}) + 10);
  auto src2 = src.GetLocal(base);
  auto tgt2 = tgt.GetLocal(base);
  REQUIRE(src2.ok());
  REQUIRE(tgt2.ok());
  std::string session2 = JsonText(**src2, {"session_id"});
  CHECK(session2 != session1);
  CHECK(JsonText(**tgt2, {"session_id"}) == session2);
  CHECK(JsonText(**src2, {"history"}).find(session1) != std::string::npos);
  CHECK(CompareDatabases(src, tgt).empty());

  // Nothing changed: nothing is read or written.
  std::string third =
      ReplicateOk({server.url() + "/corpus-src", server.url() + "/corpus-tgt", "--create-target"});
  CHECK(JsonInt(third, {"docs_read"}) == 0);
  CHECK(JsonInt(third, {"revisions_checked"}) == 0);
}

TEST_CASE("a target with documents is asked with _revs_diff even without a checkpoint") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("rd-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 40);
  std::string first = ReplicateOk({server.url() + "/rd-src", server.url() + "/rd-tgt",
                                   "--create-target", "--no-checkpoints"});
  CHECK(JsonInt(first, {"docs_written"}) == 40);
  PutPlainDocs(src, 40, 45);
  REQUIRE(server.Request("DELETE", "/_test/requests").status == 200);
  // No checkpoint, so from sequence 0, onto a target that has 40 of the 45.
  std::string second = ReplicateOk({server.url() + "/rd-src", server.url() + "/rd-tgt",
                                    "--no-checkpoints"});
  CHECK(JsonInt(second, {"revisions_checked"}) == 45);
  CHECK(JsonInt(second, {"missing_revisions_found"}) == 5);
  CHECK(JsonInt(second, {"docs_written"}) == 5);
  CHECK(JsonInt(server.Request("GET", "/_test/requests?method=POST&path=%5E%2Frd-tgt%2F_revs_diff")
                    .body,
                {"count"}) > 0);
  auto tgt = root.Database("rd-tgt");
  CHECK(CompareDatabases(src, tgt).empty());
}

TEST_CASE("a pre-existing CouchDB-format checkpoint with a matching session is honoured") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("ck-src");
  auto tgt = root.Database("ck-tgt");
  REQUIRE(src.CreateDb().ok());
  REQUIRE(tgt.CreateDb().ok());
  // An empty run tells us the replication id.
  std::string probe = ReplicateOk({server.url() + "/ck-src", server.url() + "/ck-tgt"});
  std::string base = JsonText(probe, {"replication_id"}).substr(0, 32);

  PutPlainDocs(src, 0, 100);
  // The first 60 changes are "already replicated" by someone else's CouchDB.
  std::string seq60;
  ChangesRequest req;
  req.limit = 60;
  ChangesResult res;
  auto rows = src.Changes(req, [&](ChangeRow&&) { return true; });
  REQUIRE(rows.ok());
  seq60 = *rows->last_seq;
  std::string checkpoint =
      R"({"session_id":"0123456789abcdef0123456789abcdef","source_last_seq":)" + seq60 +
      R"(,"replication_id_version":4,"history":[{"session_id":"0123456789abcdef0123456789abcdef",)"
      R"("start_time":"Mon, 23 Nov 2026 10:00:00 GMT","end_time":"Mon, 23 Nov 2026 10:00:05 GMT",)"
      R"("start_last_seq":0,"end_last_seq":)" + seq60 + R"(,"recorded_seq":)" + seq60 +
      R"(,"missing_checked":60,"missing_found":60,"docs_read":60,"docs_written":60,"doc_write_failures":0}]})";
  // Replace the probe's own checkpoints.
  for (auto* db : {&src, &tgt}) {
    auto old = db->GetLocal(base);
    REQUIRE(old.ok());
    std::string body = checkpoint;
    if (*old) body.insert(1, "\"_rev\":\"" + JsonText(**old, {"_rev"}) + "\",");
    REQUIRE(db->PutLocal(base, body).ok());
  }
  std::string run = ReplicateOk({server.url() + "/ck-src", server.url() + "/ck-tgt"});
  CHECK(JsonInt(run, {"docs_read"}) == 40);
  CHECK(JsonInt(run, {"docs_written"}) == 40);
  CHECK(JsonInt(run, {"cumulative", "docs_written"}) == 100);  // restored from the history
  CHECK(DocCount(tgt) == 40);  // the first 60 were never copied: the checkpoint was trusted
}

TEST_CASE("filters: doc_ids, selector, user filter with query_params, winning_revs_only, since_seq") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("f-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 50);
  REQUIRE(src.PutDoc("_design/app", R"({"filters":{"mod":"function(doc, req){ return doc.n % Number(req.query.m) == 0; }"}})").ok());
  REQUIRE(src.BulkDocs({R"({"_id":"doc1","_rev":"1-zzzz","branch":true})"}, false).ok());
  const std::string s = server.url() + "/f-src";

  auto ids = [&](const std::string& db) {
    auto c = root.Database(db);
    auto all = AllDocIds(c);
    return std::set<std::string>(all.begin(), all.end());
  };

  ReplicateOk({s, server.url() + "/f-ids", "--create-target", "--doc-ids", "doc3,doc7,nope"});
  CHECK(ids("f-ids") == std::set<std::string>{"doc3", "doc7"});

  ReplicateOk({s, server.url() + "/f-sel", "--create-target", "--selector", R"({"n":{"$gte":47}})"});
  CHECK(ids("f-sel") == std::set<std::string>{"doc47", "doc48", "doc49"});

  ReplicateOk({s, server.url() + "/f-user", "--create-target", "--filter", "app/mod",
               "--query-params", R"({"m":"20"})"});
  CHECK(ids("f-user") == std::set<std::string>{"doc0", "doc20", "doc40"});

  ReplicateOk({s, server.url() + "/f-win", "--create-target", "--winning-revs-only"});
  auto win = root.Database("f-win");
  auto leaves = LeafSummary(win, "doc1");
  CHECK(std::count(leaves.begin(), leaves.end(), '\n') == 1);  // only the winner
  auto all = root.Database("f-all");
  ReplicateOk({s, server.url() + "/f-all", "--create-target"});
  auto both = LeafSummary(all, "doc1");
  CHECK(std::count(both.begin(), both.end(), '\n') == 2);  // both leaves

  // since_seq: start after the first 45 changes.
  ChangesRequest req;
  req.limit = 45;
  auto r = src.Changes(req, [](ChangeRow&&) { return true; });
  REQUIRE(r.ok());
  ReplicateOk({s, server.url() + "/f-since", "--create-target", "--since-seq", *r->last_seq});
  auto since = ids("f-since");
  CHECK(since.size() == 6);  // doc46..49, the design doc and doc1 (moved by its new branch)
  CHECK(since.count("doc49") == 1);
  CHECK(since.count("doc10") == 0);
}

TEST_CASE("create_target: created when asked, db_not_found otherwise") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("ct-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 5);
  auto no = Replicate({server.url() + "/ct-src", server.url() + "/ct-missing"});
  CHECK(no.exit_code == 1);
  CHECK(no.err.find("db_not_found") != std::string::npos);
  CHECK(no.err.find("ct-missing") != std::string::npos);
  ReplicateOk({server.url() + "/ct-src", server.url() + "/ct-made", "--create-target"});
  auto made = root.Database("ct-made");
  CHECK(DocCount(made) == 5);
}

TEST_CASE("a target validation function rejects some documents: counted, the rest arrive") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("v-src");
  auto tgt = root.Database("v-tgt");
  REQUIRE(src.CreateDb().ok());
  REQUIRE(tgt.CreateDb().ok());
  REQUIRE(tgt.PutDoc("_design/vdu", R"({"validate_doc_update":"function(doc){ if (doc.reject) throw({forbidden: 'no rejects'}); if (doc.unauth) throw({unauthorized: 'no'}); }"})").ok());
  PutPlainDocs(src, 0, 20);
  REQUIRE(src.BulkDocs({R"({"_id":"bad1","reject":true})", R"({"_id":"bad2","reject":true})",
                        R"({"_id":"bad3","unauth":true})"},
                       true)
              .ok());
  std::string run = ReplicateOk({server.url() + "/v-src", server.url() + "/v-tgt"});
  CHECK(JsonInt(run, {"doc_write_failures"}) == 3);
  CHECK(JsonInt(run, {"docs_written"}) == 20);
  CHECK(JsonText(run, {"state"}) == "completed");
  CHECK(DocCount(tgt) == 21);  // 20 + the validation design doc
  CHECK_FALSE(tgt.GetDoc("bad1").ok());
}

TEST_CASE("without _bulk_get the source is read with open_revs; a 413 splits the write") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("fb-src");
  auto tgt = root.Database("fb-tgt");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 40);
  REQUIRE(src.BulkDocs({R"({"_id":"doc3","_rev":"1-cccc","branch":true})"}, false).ok());
  REQUIRE(src.PutDoc("att2", R"({"_attachments":{"a.txt":{"content_type":"text/plain","data":"aGVsbG8="}}})").ok());
  // The source "lacks" _bulk_get; the target refuses the first (big) write with 413.
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"([{"method":"POST","path":"^/fb-src/_bulk_get$","status":404,"count":100},)"
                         R"({"method":"POST","path":"^/fb-tgt/_bulk_docs$","status":413,"count":1}])")
              .status / 100 == 2);
  std::string run = ReplicateOk({server.url() + "/fb-src", server.url() + "/fb-tgt", "--create-target",
                                 "--worker-processes", "1"});
  CHECK(JsonInt(run, {"doc_write_failures"}) == 0);
  auto open_revs = server.Request("GET", "/_test/requests?method=GET&path=%5E%2Ffb-src%2F[^_]");
  CHECK(JsonInt(open_revs.body, {"count"}) >= 41);
  auto writes = server.Request("GET", "/_test/requests?method=POST&path=%5E%2Ffb-tgt%2F_bulk_docs%24");
  CHECK(JsonInt(writes.body, {"count"}) >= 3);  // the refused one, then two halves
  REQUIRE(server.Request("DELETE", "/_test/faults").status == 200);  // the comparison reads with _bulk_get
  CHECK(CompareDatabases(src, tgt).empty());
}

// Issue 8, reproduction 2: with one connection per endpoint the changes reader
// held it while the workers waited for one (stopped after 295 documents and
// hung). Feeds never take a pooled connection now.
TEST_CASE("http_connections 1: a 3,000-document replication completes") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("one-src");
  auto tgt = root.Database("one-tgt");
  REQUIRE(src.CreateDb().ok());
  for (int from = 0; from < 3000; from += 500) PutPlainDocs(src, from, from + 500);
  auto r = Replicate({server.url() + "/one-src", server.url() + "/one-tgt", "--create-target",
                      "--http-connections", "1", "--worker-processes", "4", "--worker-batch-size",
                      "100"},
                     {}, std::chrono::seconds(120));
  INFO("stdout: " << r.out << "\nstderr: " << r.err.substr(0, 2000));
  REQUIRE(r.exit_code == 0);
  CHECK(JsonInt(r.out, {"docs_written"}) == 3000);
  CHECK(DocCount(tgt) == 3000);
  CHECK(CompareDatabases(src, tgt).empty());
}

// Issue 8: attachments past attachment_stream_threshold_bytes wait in
// replication.temp_dir (they went to std::tmpfile() before, wherever that was).
TEST_CASE("replication.temp_dir holds streamed attachments; a missing one is a clear error") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("td-src");
  REQUIRE(src.CreateDb().ok());
  const std::string data(3 << 20, 'a');  // past the 1 MiB threshold: streamed
  REQUIRE(src.PutAttachment("big", "big.bin", "", "application/octet-stream", data.size(),
                            [&](const std::function<bool(std::string_view)>& sink) {
                              return sink(data);
                            })
              .ok());
  const std::string dir = "/tmp/couchrepd-temp-dir-test-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  const std::string config_path = dir + ".yaml";
  auto run = [&](const std::string& target) {
    std::ofstream(config_path) << "server:\n  url: " << server.url() << "\nreplication:\n  temp_dir: "
                               << dir << "\n  retries_per_request: 0\n";
    return Replicate({"--config", config_path, server.url() + "/td-src", server.url() + "/" + target,
                      "--create-target"});
  };
  auto missing = run("td-tgt-1");
  INFO("stdout: " << missing.out << "\nstderr: " << missing.err.substr(0, 1500));
  CHECK(missing.exit_code != 0);
  CHECK(JsonText(missing.out, {"reason"}).find("cannot create a temporary file in " + dir +
                                               " (replication.temp_dir)") != std::string::npos);
  std::filesystem::create_directories(dir);
  auto ok = run("td-tgt-2");
  INFO("stdout: " << ok.out);
  CHECK(ok.exit_code == 0);
  auto tgt = root.Database("td-tgt-2");
  CHECK(CompareDatabases(src, tgt).empty());
  CHECK(std::filesystem::is_empty(dir));  // unnamed files: nothing left behind
  std::filesystem::remove_all(dir);
  std::filesystem::remove(config_path);
}

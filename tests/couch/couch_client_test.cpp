// CouchClient against a real CouchDB-compatible server: every call the
// replicator makes.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <algorithm>
#include <map>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "couch/client_fixture.h"
#include "couchrepd/encoding.h"
#include "couchrepd/json.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

std::string Field(const std::string& json, const char* key) {
  simdjson::dom::parser p;
  simdjson::dom::element el;
  if (p.parse(json).get(el) != simdjson::SUCCESS) return "<bad json>";
  std::string_view s;
  if (el[key].get(s) == simdjson::SUCCESS) return std::string(s);
  int64_t n;
  if (el[key].get(n) == simdjson::SUCCESS) return std::to_string(n);
  return "<missing>";
}

}  // namespace

TEST_CASE("server info, database create/info/delete") {
  TestServer server;
  auto root = ServerClient(server);
  auto info = root.GetServerInfo();
  REQUIRE(info.ok());
  CHECK(info->uuid == server.uuid());
  CHECK_FALSE(info->version.empty());

  auto db = root.Database("client-db");
  auto missing = db.GetDbInfo();
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().error == "db_not_found");
  CHECK(missing.error().http_status == 404);
  CHECK_FALSE(missing.error().temporary());

  REQUIRE(db.CreateDb().ok());
  auto again = db.CreateDb();
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().http_status == 412);

  auto dbi = db.GetDbInfo();
  REQUIRE(dbi.ok());
  CHECK(dbi->db_name == "client-db");
  CHECK(dbi->doc_count == 0);
  CHECK_FALSE(dbi->update_seq.empty());
  if (server.opaque_seqs()) CHECK(dbi->update_seq.front() == '"');

  auto dbs = root.AllDbs();
  REQUIRE(dbs.ok());
  CHECK(std::count(dbs->begin(), dbs->end(), "client-db") == 1);

  REQUIRE(db.DeleteDb().ok());
  CHECK_FALSE(db.GetDbInfo().ok());
}

TEST_CASE("documents with special ids, design docs, delete") {
  TestServer server;
  auto db = ServerClient(server).Database("docs");
  REQUIRE(db.CreateDb().ok());
  const std::vector<std::string> ids = {"a/b", "a+b", "a%b", "a b", "ünï©ødé-日本", "a?b#c",
                                        "_design/app"};
  for (const auto& id : ids) {
    CAPTURE(id);
    std::string body = "{\"_id\":" + JsonQuote(id) + ",\"v\":" + JsonQuote(id) + "}";
    auto put = db.PutDoc(id, body);
    REQUIRE(put.ok());
    CHECK(put->ok);
    CHECK(put->rev.rfind("1-", 0) == 0);
    auto got = db.GetDoc(id);
    REQUIRE(got.ok());
    CHECK(Field(*got, "_id") == id);
    CHECK(Field(*got, "v") == id);
  }
  auto got = db.GetDoc("a/b");
  REQUIRE(got.ok());
  std::string rev = Field(*got, "_rev");
  auto del = db.DeleteDoc("a/b", rev);
  REQUIRE(del.ok());
  CHECK(del->rev.rfind("2-", 0) == 0);
  auto gone = db.GetDoc("a/b");
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().http_status == 404);

  auto conflict = db.PutDoc("a+b", R"({"v":"no rev"})");
  REQUIRE_FALSE(conflict.ok());
  CHECK(conflict.error().http_status == 409);
  CHECK(conflict.error().error == "conflict");
}

TEST_CASE("_local documents, _ensure_full_commit") {
  TestServer server;
  auto db = ServerClient(server).Database("locals");
  REQUIRE(db.CreateDb().ok());
  auto none = db.GetLocal("abc123");
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());
  auto put = db.PutLocal("abc123", R"({"session_id":"s1","source_last_seq":7,"history":[]})");
  REQUIRE(put.ok());
  auto got = db.GetLocal("abc123");
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  CHECK(Field(**got, "session_id") == "s1");
  CHECK(Field(**got, "_id") == "_local/abc123");
  auto commit = db.EnsureFullCommit();
  REQUIRE(commit.ok());
  CHECK_FALSE(commit->empty());
}

TEST_CASE("_bulk_docs new_edits=false, _revs_diff, _bulk_get and open_revs") {
  TestServer server;
  auto db = ServerClient(server).Database("revs");
  REQUIRE(db.CreateDb().ok());
  std::vector<std::string> docs = {
      R"({"_id":"c1","_rev":"3-ccc","v":"main","_revisions":{"start":3,"ids":["ccc","bbb","aaa"]}})",
      R"({"_id":"c1","_rev":"2-zzz","v":"branch","_revisions":{"start":2,"ids":["zzz","aaa"]}})",
      R"({"_id":"d1","_rev":"2-ddd","_deleted":true,"_revisions":{"start":2,"ids":["ddd","dd1"]}})",
      R"({"_id":"n1","_rev":"1-abc","x":1,"_attachments":{"hello.txt":{"content_type":"text/plain","data":"SGVsbG8gV29ybGQh"}}})",
  };
  auto written = db.BulkDocs(docs, /*new_edits=*/false);
  REQUIRE(written.ok());
  for (const auto& w : *written) CHECK_MESSAGE(w.error.empty(), w.id << ": " << w.reason);

  auto diff = db.RevsDiff({{"c1", {"3-ccc", "2-zzz", "4-new"}},
                           {"d1", {"2-ddd"}},
                           {"zz", {"1-x"}}});
  REQUIRE(diff.ok());
  std::map<std::string, std::vector<std::string>> missing;
  for (const auto& e : *diff) missing[e.id] = e.missing;
  CHECK(missing.size() == 2);
  CHECK(missing["c1"] == std::vector<std::string>{"4-new"});
  CHECK(missing["zz"] == std::vector<std::string>{"1-x"});

  auto bulk = db.BulkGet({{"c1", "3-ccc", {}}, {"c1", "2-zzz", {}}, {"n1", "1-abc", {}},
                          {"missing-doc", "1-x", {}}, {"n1", "9-nope", {}}});
  REQUIRE(bulk.ok());
  std::map<std::string, BulkGetDoc> by_rev;
  int errors = 0;
  for (const auto& d : *bulk) {
    if (d.ok) by_rev[d.rev] = d;
    else ++errors;
  }
  CHECK(errors == 2);
  REQUIRE(by_rev.count("3-ccc"));
  CHECK(Field(by_rev["3-ccc"].json, "v") == "main");
  CHECK(by_rev["3-ccc"].json.find(R"("_revisions")") != std::string::npos);
  REQUIRE(by_rev.count("2-zzz"));
  CHECK(Field(by_rev["2-zzz"].json, "v") == "branch");
  REQUIRE(by_rev.count("1-abc"));
  CHECK(by_rev["1-abc"].json.find("SGVsbG8gV29ybGQh") != std::string::npos);

  auto open = db.OpenRevs("c1", {});
  REQUIRE(open.ok());
  std::set<std::string> leaves;
  for (const auto& d : *open) leaves.insert(Field(d.json, "_rev"));
  CHECK(leaves == std::set<std::string>{"3-ccc", "2-zzz"});

  auto some = db.OpenRevs("c1", {"2-zzz", "9-missing"});
  REQUIRE(some.ok());
  REQUIRE(some->size() == 2);
  int missing_count = 0;
  for (const auto& d : *some) {
    if (d.missing) {
      ++missing_count;
      CHECK(d.missing_rev == "9-missing");
    } else {
      CHECK(Field(d.json, "v") == "branch");
    }
  }
  CHECK(missing_count == 1);

  auto deleted = db.OpenRevs("d1", {});
  REQUIRE(deleted.ok());
  REQUIRE(deleted->size() == 1);
  CHECK(deleted->front().json.find(R"("_deleted":true)") != std::string::npos);
}

TEST_CASE("open_revs splits long revision lists to keep URLs short") {
  TestServer server;
  auto db = ServerClient(server).Database("longrevs");
  REQUIRE(db.CreateDb().ok());
  REQUIRE(db.BulkDocs({R"({"_id":"x","_rev":"1-aaaa","v":1})"}, false).ok());
  std::vector<std::string> revs{"1-aaaa"};
  for (int i = 0; i < 300; ++i) revs.push_back("1-" + RandomHex32());
  auto r = db.OpenRevs("x", revs);
  REQUIRE(r.ok());
  CHECK(r->size() == revs.size());
  CHECK(std::count_if(r->begin(), r->end(), [](const OpenRevsDoc& d) { return !d.missing; }) == 1);
}

TEST_CASE("attachments stream both ways, byte-exact, and multipart PUT with new_edits=false") {
  TestServer server;
  auto db = ServerClient(server).Database("atts");
  REQUIRE(db.CreateDb().ok());
  std::string data;
  for (int i = 0; i < 3 * 1024 * 1024; ++i) data.push_back(static_cast<char>((i * 7919) & 0xFF));
  auto put = db.PutAttachment("doc/1", "dir/blob.bin", "", "application/octet-stream", data.size(),
                              [&](const std::function<bool(std::string_view)>& sink) {
                                for (size_t off = 0; off < data.size(); off += 65536) {
                                  if (!sink(std::string_view(data).substr(off, 65536))) return false;
                                }
                                return true;
                              });
  REQUIRE(put.ok());
  CHECK(put->rev.rfind("1-", 0) == 0);
  std::string got;
  size_t chunks = 0;
  auto info = db.GetAttachment("doc/1", "dir/blob.bin", put->rev, [&](std::string_view c) {
    got.append(c);
    ++chunks;
    return true;
  });
  REQUIRE(info.ok());
  CHECK(got == data);
  CHECK(chunks > 1);
  CHECK(info->content_type == "application/octet-stream");

  std::string text = "hello, multipart\r\n--not-a-boundary\r\n";
  std::vector<CouchClient::StreamedAttachment> atts;
  atts.push_back({"note.txt", "text/plain", "", text.size(),
                  [&](const std::function<bool(std::string_view)>& sink) { return sink(text); }});
  std::string doc =
      R"({"_id":"mp","_rev":"2-bbb","k":"v","_revisions":{"start":2,"ids":["bbb","aaa"]},)"
      R"("_attachments":{"note.txt":{"content_type":"text/plain","length":)" +
      std::to_string(text.size()) + R"(,"follows":true}}})";
  auto mp = db.PutDocMultipart("mp", doc, std::move(atts), /*new_edits=*/false);
  REQUIRE(mp.ok());
  std::string back;
  auto info2 = db.GetAttachment("mp", "note.txt", "2-bbb", [&](std::string_view c) {
    back.append(c);
    return true;
  });
  REQUIRE(info2.ok());
  CHECK(back == text);
  auto body = db.GetDoc("mp");
  REQUIRE(body.ok());
  CHECK(Field(*body, "_rev") == "2-bbb");
  CHECK(Field(*body, "k") == "v");
}

TEST_CASE("a connection to a closed port fails as temporary within the retry budget") {
  TestServer server;
  int port = server.port();
  server.Stop();
  Endpoint e;
  e.url = ParseUrl("http://127.0.0.1:" + std::to_string(port) + "/db/").value();
  HttpOptions o = FastOptions();
  o.retry.retries = 3;
  o.retry.initial_wait = std::chrono::milliseconds(20);
  int retries = 0;
  o.observer = [&](const HttpEvent& ev) {
    if (ev.kind == HttpEvent::Kind::kRetry) ++retries;
  };
  CouchClient client(e, o);
  auto t0 = std::chrono::steady_clock::now();
  auto r = client.GetDbInfo();
  auto elapsed = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().temporary());
  CHECK(r.error().error == "connection_failed");
  CHECK(r.error().reason.find("after 3 retries") != std::string::npos);
  CHECK(retries == 3);
  // 20 + 40 + 80 ms of waits; far below the 60 s budget.
  CHECK(elapsed < std::chrono::seconds(30));
}

TEST_CASE("5xx answers are retried, then succeed; 4xx are not retried") {
  TestServer server;
  auto root = ServerClient(server);
  auto db = root.Database("faulty");
  REQUIRE(db.CreateDb().ok());
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"({"method":"GET","path":"^/faulty/?$","status":503,"count":2})")
              .status / 100 == 2);
  auto before = server.Request("GET", "/_test/requests?path=%5E%2Ffaulty%2F%3F%24");
  auto info = db.GetDbInfo();
  REQUIRE(info.ok());
  auto after = server.Request("GET", "/_test/requests?path=%5E%2Ffaulty%2F%3F%24");
  CHECK(std::stoi(Field(after.body, "count")) - std::stoi(Field(before.body, "count")) == 3);

  REQUIRE(server.Request("POST", "/_test/faults",
                         R"({"method":"GET","path":"^/faulty/?$","status":400,"count":1})")
              .status / 100 == 2);
  auto bad = db.GetDbInfo();
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().http_status == 400);
  CHECK_FALSE(bad.error().temporary());
}

TEST_CASE("429 answers slow the endpoint down without spending retries") {
  TestServer server;
  auto root = ServerClient(server);
  auto db = root.Database("paced");
  REQUIRE(db.CreateDb().ok());
  HttpOptions o = FastOptions();
  o.retry.retries = 0;  // 429 must not need request retries
  int limited = 0;
  o.observer = [&](const HttpEvent& ev) {
    if (ev.kind == HttpEvent::Kind::kRateLimited) ++limited;
  };
  Endpoint e;
  e.url = ParseUrl(server.url() + "/paced/").value();
  CouchClient client(e, o);
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"({"method":"GET","path":"^/paced/?$","status":429,"count":4})")
              .status / 100 == 2);
  auto info = client.GetDbInfo();
  REQUIRE(info.ok());
  CHECK(limited == 4);
}

TEST_CASE("pooled connections unused for idle_connection_timeout are closed") {
  TestServer server;
  for (int timeout_ms : {600, 0}) {
    CAPTURE(timeout_ms);
    HttpOptions o = FastOptions();
    o.idle_connection_timeout = std::chrono::milliseconds(timeout_ms);
    CouchClient root = ServerClient(server, "", Credentials::Kind::kBasic, o);
    REQUIRE(root.GetServerInfo().ok());
    REQUIRE(root.AllDbs().ok());
    CHECK(EstablishedTo(server.port()) == 1);  // one pooled connection, kept alive
    // Idle for 2.5 s: closed by the reaper, or kept when the timeout is 0
    // (the test server itself keeps idle connections for 5 s).
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    CHECK(EstablishedTo(server.port()) == (timeout_ms > 0 ? 0 : 1));
    // The next request opens a new connection.
    CHECK(root.GetServerInfo().ok());
    CHECK(EstablishedTo(server.port()) == 1);
  }
}

// `couchrepd serve` end to end: replication documents in, jobs run, states
// written back (SPEC §1, §2, §5, §6).
#include "integration/serve_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

std::string RepDoc(const TestServer& s, const std::string& src, const std::string& tgt,
                   const std::string& extra = "") {
  return "{\"source\":\"" + s.url() + "/" + src + "\",\"target\":\"" + s.url() + "/" + tgt + "\"" +
         (extra.empty() ? "" : "," + extra) + "}";
}

}  // namespace

TEST_CASE("serve: a one-shot document is triggered, then completed with stats and the data") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("s1-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 200);
  ServeProcess serve(ServeConfig(server));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));  // created by couchrepd
  // The validation design document was installed.
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));

  REQUIRE(rep.PutDoc("one", RepDoc(server, "s1-src", "s1-tgt", "\"create_target\":true,\"keep\":\"me\"")).ok());
  REQUIRE(WaitForState(rep, "one", "completed"));
  auto doc = rep.GetDoc("one");
  REQUIRE(doc.ok());
  INFO(*doc);
  CHECK(JsonText(*doc, {"keep"}) == "me");  // other fields untouched
  CHECK(JsonText(*doc, {"_replication_id"}).find("+create_target") != std::string::npos);
  CHECK(JsonInt(*doc, {"_replication_stats", "docs_written"}) == 200);
  CHECK(JsonText(*doc, {"_replication_state_time"}).size() == 20);  // 2026-11-23T14:37:56Z
  auto tgt = root.Database("s1-tgt");
  CHECK(DocCount(tgt) == 200);
  // It went through `triggered` first (classic write-back): two write-backs.
  CHECK(JsonText(*doc, {"_rev"}).rfind("3-", 0) == 0);
}

TEST_CASE("serve: continuous documents follow the source; deleting the document stops the job") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("c-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 20);
  ServeProcess serve(ServeConfig(server));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
  REQUIRE(rep.PutDoc("cont", RepDoc(server, "c-src", "c-tgt", "\"create_target\":true,\"continuous\":true")).ok());
  REQUIRE(WaitForState(rep, "cont", "triggered"));
  auto tgt = root.Database("c-tgt");
  REQUIRE(WaitUntil([&] { return DocCount(tgt) == 20; }, 20s));
  REQUIRE(src.PutDoc("live-1", R"({"x":1})").ok());
  CHECK(WaitUntil([&] { return tgt.GetDoc("live-1").ok(); }, 5s));

  auto doc = rep.GetDoc("cont");
  REQUIRE(doc.ok());
  REQUIRE(rep.DeleteDoc("cont", JsonText(*doc, {"_rev"})).ok());
  std::this_thread::sleep_for(1s);  // SPEC: stopped within 1 s
  REQUIRE(src.PutDoc("after-delete", R"({"x":2})").ok());
  std::this_thread::sleep_for(3s);
  CHECK_FALSE(tgt.GetDoc("after-delete").ok());
  CHECK(rep.GetDoc("cont").ok() == false);  // not resurrected by a write-back
}

TEST_CASE("serve: invalid documents get error with a reason naming the field; others run") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("i-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 10);
  ServeProcess serve(ServeConfig(server));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
  struct Bad {
    const char* id;
    std::string body;
    const char* reason_part;
  };
  std::vector<Bad> bad = {
      {"no-source", "{\"target\":\"" + server.url() + "/x\"}", "source"},
      {"bad-continuous", RepDoc(server, "i-src", "i-tgt", "\"continuous\":\"yes\""), "continuous"},
      {"bad-url", "{\"source\":\"ftp://host/db\",\"target\":\"" + server.url() + "/x\"}", "source"},
      {"exclusive", RepDoc(server, "i-src", "i-tgt", "\"doc_ids\":[\"a\"],\"selector\":{\"a\":1}"),
       "mutually exclusive"},
  };
  for (const auto& b : bad) REQUIRE(rep.PutDoc(b.id, b.body).ok());
  REQUIRE(rep.PutDoc("good", RepDoc(server, "i-src", "i-good", "\"create_target\":true")).ok());
  for (const auto& b : bad) {
    CAPTURE(b.id);
    CHECK(WaitForState(rep, b.id, "error", 15s));
    auto doc = rep.GetDoc(b.id);
    REQUIRE(doc.ok());
    CHECK(JsonText(*doc, {"_replication_state_reason"}).find(b.reason_part) != std::string::npos);
  }
  CHECK(WaitForState(rep, "good", "completed"));
  // Fixing an invalid document makes it run.
  auto doc = rep.GetDoc("bad-continuous");
  REQUIRE(doc.ok());
  REQUIRE(rep.PutDoc("bad-continuous", "{\"_rev\":\"" + JsonText(*doc, {"_rev"}) + "\"," +
                                           RepDoc(server, "i-src", "i-fixed", "\"create_target\":true").substr(1))
              .ok());
  CHECK(WaitForState(rep, "bad-continuous", "completed"));
}

TEST_CASE("serve: duplicates get only the replication id; one takes over when the first goes") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("d-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 10);
  ServeProcess serve(ServeConfig(server));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
  std::string body = RepDoc(server, "d-src", "d-tgt", "\"create_target\":true,\"continuous\":true");
  REQUIRE(rep.PutDoc("first", body).ok());
  REQUIRE(WaitForState(rep, "first", "triggered"));
  REQUIRE(rep.PutDoc("second", body).ok());
  auto first = rep.GetDoc("first");
  REQUIRE(first.ok());
  std::string id = JsonText(*first, {"_replication_id"});
  REQUIRE(WaitUntil([&] {
    auto d = rep.GetDoc("second");
    return d.ok() && JsonText(*d, {"_replication_id"}) == id;
  }, 10s));
  CHECK(StateOf(rep, "second") == "");  // only the id
  REQUIRE(rep.DeleteDoc("first", JsonText(*first, {"_rev"})).ok());
  CHECK(WaitForState(rep, "second", "triggered", 15s));
  auto tgt = root.Database("d-tgt");
  REQUIRE(src.PutDoc("after-takeover", R"({"y":1})").ok());
  CHECK(WaitUntil([&] { return tgt.GetDoc("after-takeover").ok(); }, 10s));
}

TEST_CASE("serve: a missing source crashes with backoff and error, then recovers by itself") {
  TestServer server;
  auto root = ServerClient(server);
  ServeProcess serve(ServeConfig(server));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
  REQUIRE(rep.PutDoc("late", RepDoc(server, "late-src", "late-tgt", "\"create_target\":true")).ok());
  REQUIRE(WaitForState(rep, "late", "error", 20s));
  auto doc = rep.GetDoc("late");
  REQUIRE(doc.ok());
  CHECK(JsonText(*doc, {"_replication_state_reason"}).find("db_not_found") != std::string::npos);
  CHECK(JsonText(*doc, {"_replication_state_reason"}).find("late-src") != std::string::npos);
  // Backoff: several crashes, spaced out, in the log.
  auto src = root.Database("late-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 5);
  CHECK(WaitForState(rep, "late", "completed", 30s));
  auto tgt = root.Database("late-tgt");
  CHECK(DocCount(tgt) == 5);
  CHECK(serve.Log().find("crashed") != std::string::npos);
}

TEST_CASE("serve: an admin changing the target of a triggered document replaces the job") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("u-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 10);
  ServeProcess serve(ServeConfig(server));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
  REQUIRE(rep.PutDoc("upd", RepDoc(server, "u-src", "u-tgt1", "\"create_target\":true,\"continuous\":true")).ok());
  REQUIRE(WaitForState(rep, "upd", "triggered"));
  auto tgt1 = root.Database("u-tgt1");
  REQUIRE(WaitUntil([&] { return DocCount(tgt1) == 10; }, 20s));
  auto doc = rep.GetDoc("upd");
  REQUIRE(doc.ok());
  std::string old_id = JsonText(*doc, {"_replication_id"});
  REQUIRE(rep.PutDoc("upd", "{\"_rev\":\"" + JsonText(*doc, {"_rev"}) + "\"," +
                                RepDoc(server, "u-src", "u-tgt2", "\"create_target\":true,\"continuous\":true").substr(1))
              .ok());
  auto tgt2 = root.Database("u-tgt2");
  REQUIRE(WaitUntil([&] { return DocCount(tgt2) == 10; }, 20s));
  REQUIRE(WaitUntil([&] {
    auto d = rep.GetDoc("upd");
    return d.ok() && JsonText(*d, {"_replication_id"}) != old_id &&
           JsonText(*d, {"_replication_state"}) == "triggered";
  }, 10s));
  REQUIRE(src.PutDoc("after-update", R"({"z":1})").ok());
  CHECK(WaitUntil([&] { return tgt2.GetDoc("after-update").ok(); }, 10s));
  std::this_thread::sleep_for(1500ms);
  CHECK_FALSE(tgt1.GetDoc("after-update").ok());  // the old job is gone
}

TEST_CASE("serve: restart resumes from checkpoints; completed documents are left alone") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("r-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 20);
  auto big = root.Database("r-big");
  REQUIRE(big.CreateDb().ok());
  PutPlainDocs(big, 0, 8000);
  auto rep = root.Database("_replicator");
  std::string done_rev;
  {
    ServeProcess serve(ServeConfig(server));
    REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
    REQUIRE(rep.PutDoc("done", RepDoc(server, "r-src", "r-done", "\"create_target\":true")).ok());
    REQUIRE(WaitForState(rep, "done", "completed"));
    done_rev = JsonText(*rep.GetDoc("done"), {"_rev"});
    REQUIRE(rep.PutDoc("slow", RepDoc(server, "r-big", "r-slow", "\"create_target\":true,\"worker_processes\":1,\"worker_batch_size\":25")).ok());
    auto slow_tgt = root.Database("r-slow");
    REQUIRE(WaitUntil([&] { return DocCount(slow_tgt) > 1000; }, 30s));
    serve.process().Signal(SIGTERM);
    auto code = serve.process().Wait(15s);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    CHECK(DocCount(slow_tgt) < 8000);
  }
  ServeProcess again(ServeConfig(server));
  CHECK(WaitForState(rep, "slow", "completed", 60s));
  auto slow_doc = rep.GetDoc("slow");
  REQUIRE(slow_doc.ok());
  // The second run resumed: this run's stats are cumulative, but the log
  // says where it started.
  CHECK(again.Log().find("starting at sequence 0") == std::string::npos);
  CHECK(JsonText(*rep.GetDoc("done"), {"_rev"}) == done_rev);  // untouched
  auto slow_tgt = root.Database("r-slow");
  CHECK(DocCount(slow_tgt) == 8000);
}

TEST_CASE("serve: two replicator databases at once, terminal write-back") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("t-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 10);
  ServeProcess serve(ServeConfig(server,
                                 "  databases: [_replicator, team/_replicator]\n  write_back: terminal\n"));
  auto rep1 = root.Database("_replicator");
  auto rep2 = root.Database("team/_replicator");
  REQUIRE(WaitUntil([&] { return rep1.GetDbInfo().ok() && rep2.GetDbInfo().ok(); }, 10s));
  REQUIRE(rep1.PutDoc("a", RepDoc(server, "t-src", "t-a", "\"create_target\":true")).ok());
  REQUIRE(rep2.PutDoc("b", RepDoc(server, "t-src", "t-b", "\"create_target\":true")).ok());
  REQUIRE(rep2.PutDoc("c", RepDoc(server, "t-src", "t-c", "\"create_target\":true,\"continuous\":true")).ok());
  REQUIRE(rep1.PutDoc("bad", R"({"source":"nope nope"})").ok());
  CHECK(WaitForState(rep1, "a", "completed"));
  CHECK(WaitForState(rep2, "b", "completed"));
  CHECK(WaitForState(rep1, "bad", "failed"));
  auto tc = root.Database("t-c");
  CHECK(WaitUntil([&] { return DocCount(tc) == 10; }, 20s));
  CHECK(StateOf(rep2, "c") == "");  // terminal mode writes no transient state
  auto a = rep1.GetDoc("a");
  REQUIRE(a.ok());
  CHECK(JsonText(*a, {"_replication_id"}) == "<missing>");
}

TEST_CASE("serve: a burst of 1,000 replication documents all reach completed") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("burst-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 3);
  ServeProcess serve(ServeConfig(server));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
  std::vector<std::string> docs;
  for (int i = 0; i < 1000; ++i) {
    docs.push_back("{\"_id\":\"burst-" + std::to_string(i) + "\",\"source\":\"" + server.url() +
                   "/burst-src\",\"target\":\"" + server.url() + "/burst-tgt-" + std::to_string(i % 50) +
                   "\",\"create_target\":true,\"doc_ids\":[\"doc" + std::to_string(i % 3) + "\",\"x" +
                   std::to_string(i) + "\"]}");
  }
  REQUIRE(rep.BulkDocs(docs, true).ok());
  auto completed = [&] {
    int n = 0;
    ChangesRequest req;
    req.include_docs = true;
    auto r = rep.Changes(req, [&](ChangeRow&& row) {
      if (row.doc.find("\"_replication_state\":\"completed\"") != std::string::npos) ++n;
      return true;
    });
    return r.ok() ? n : -1;
  };
  CHECK(WaitUntil([&] { return completed() == 1000; }, 120s));
}

TEST_CASE("serve: SIGTERM exits 0 promptly; SIGHUP adds a replicator database") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("h-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 5);
  ServeProcess serve(ServeConfig(server));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
  auto other = root.Database("other/_replicator");
  REQUIRE(other.CreateDb().ok());
  REQUIRE(other.PutDoc("x", RepDoc(server, "h-src", "h-tgt", "\"create_target\":true")).ok());
  std::this_thread::sleep_for(1500ms);
  CHECK(StateOf(other, "x") == "");  // not followed yet
  serve.Rewrite(ServeConfig(server, "  databases: [_replicator, other/_replicator]\n"));
  serve.process().Signal(SIGHUP);
  CHECK(WaitForState(other, "x", "completed", 20s));
  auto t0 = std::chrono::steady_clock::now();
  serve.process().Signal(SIGTERM);
  auto code = serve.process().Wait(15s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}

TEST_CASE("serve: discovery follows */_replicator databases as they appear and disappear") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("disc-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 4);
  ServeProcess serve(ServeConfig(server, "  discover: true\n"));
  auto team = root.Database("team9/_replicator");
  REQUIRE(team.CreateDb().ok());
  REQUIRE(team.PutDoc("t", RepDoc(server, "disc-src", "disc-tgt", "\"create_target\":true,\"continuous\":true")).ok());
  CHECK(WaitForState(team, "t", "triggered", 20s));
  auto tgt = root.Database("disc-tgt");
  CHECK(WaitUntil([&] { return DocCount(tgt) == 4; }, 20s));
  // The database goes away: its jobs stop.
  REQUIRE(team.DeleteDb().ok());
  std::this_thread::sleep_for(4s);  // discovery polls every second here
  REQUIRE(src.PutDoc("after-drop", R"({"q":1})").ok());
  std::this_thread::sleep_for(3s);
  CHECK_FALSE(tgt.GetDoc("after-drop").ok());
  CHECK(serve.Log().find("no longer following replicator database team9/_replicator") !=
        std::string::npos);
}

// CouchDB's `_db_updates` answers from `since=0` unless told otherwise: a
// discovery that waited on it without `since` would get the whole history at
// once, list every database again and ask again, in a tight loop.
TEST_CASE("serve: discovery waits on _db_updates from where it left off, and falls back to polling") {
  auto Count = [](TestServer& s, const std::string& path) {
    auto r = s.Request("GET", "/_test/requests?path=" + path);
    return JsonInt(r.body, {"count"});
  };
  TestServer server;
  auto root = ServerClient(server);
  for (int i = 0; i < 5; ++i) {  // history before couchrepd starts
    REQUIRE(root.Database("old-" + std::to_string(i)).CreateDb().ok());
  }
  SUBCASE("_db_updates") {
    std::string config = ServeConfig(server, "  discover: true\n");
    config.replace(config.find("discover_interval: 1s"), 21, "discover_interval: 5s");
    ServeProcess serve(config);
    REQUIRE(WaitUntil([&] { return Count(server, "%5E%2F_db_updates") >= 1; }, 20s));
    // couchrepd's own start (the _replicator database, its design document)
    // wakes discovery a few times; then it is idle.
    REQUIRE(WaitUntil([&] { return serve.Log().find("validation function") != std::string::npos ||
                                   serve.Log().find("following replicator database _replicator") !=
                                       std::string::npos; },
                      20s));
    std::this_thread::sleep_for(2s);
    REQUIRE(server.Request("DELETE", "/_test/requests").status == 200);
    std::this_thread::sleep_for(4s);
    // Idle: one longpoll waits (its timeout is the 5 s interval), nothing else.
    INFO(server.Request("GET", "/_test/requests?list=true&path=%5E%2F_(db_updates|all_dbs)").body);
    CHECK(Count(server, "%5E%2F_db_updates") <= 2);
    CHECK(Count(server, "%5E%2F_all_dbs") <= 2);
    // A new replicator database wakes it at once, well inside the interval.
    auto start = std::chrono::steady_clock::now();
    REQUIRE(root.Database("team7/_replicator").CreateDb().ok());
    CHECK(WaitUntil(
        [&] {
          return serve.Log().find("following replicator database team7/_replicator") !=
                 std::string::npos;
        },
        10s));
    CHECK(std::chrono::steady_clock::now() - start < 4s);
  }
  SUBCASE("no _db_updates (no _global_changes): _all_dbs every interval") {
    REQUIRE(server.Request("POST", "/_test/db_updates", R"({"enabled":false})").status / 100 == 2);
    ServeProcess serve(ServeConfig(server, "  discover: true\n"));
    CHECK(WaitUntil(
        [&] { return serve.Log().find("_db_updates is not available") != std::string::npos; },
        20s));
    REQUIRE(root.Database("team8/_replicator").CreateDb().ok());
    CHECK(WaitUntil(
        [&] {
          return serve.Log().find("following replicator database team8/_replicator") !=
                 std::string::npos;
        },
        10s));
  }
}

// A backlog of state writes to a server that stopped answering must not hold
// the process past shutdown_timeout: queued writes are dropped at the
// deadline and the ones in flight cancelled (found by scripts/bench-scale:
// 1,000 jobs took 65 s to stop with a 30 s timeout).
TEST_CASE("serve: SIGTERM with state writes stuck on a silent server exits within shutdown_timeout") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("stuck-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 2);
  std::string config = ServeConfig(server);
  config.replace(config.find("shutdown_timeout: 10s"), 21, "shutdown_timeout: 3s");
  ServeProcess serve(config);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 20s));
  // Every write-back reads the document first: those reads now get no answer
  // for 60 s (each attempt times out after request_timeout and is retried).
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"({"method":"GET","path":"^/_replicator/stuck-","delay_ms":60000,)"
                         R"("count":1000})")
              .status / 100 == 2);
  for (int i = 0; i < 12; ++i) {
    REQUIRE(rep.PutDoc("stuck-" + std::to_string(i),
                       RepDoc(server, "stuck-src", "stuck-tgt-" + std::to_string(i),
                              "\"create_target\":true"))
                .ok());
  }
  REQUIRE(WaitUntil(
      [&] {
        auto r = server.Request("GET", "/_test/requests?method=GET&path=%5E%2F_replicator%2Fstuck-");
        return JsonInt(r.body, {"count"}) >= 4;  // every writer thread is stuck
      },
      20s));
  auto t0 = std::chrono::steady_clock::now();
  serve.process().Signal(SIGTERM);
  auto code = serve.process().Wait(60s);
  INFO(serve.Log().substr(serve.Log().size() > 3000 ? serve.Log().size() - 3000 : 0));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < 6s);
}

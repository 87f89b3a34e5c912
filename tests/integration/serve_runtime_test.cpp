// `couchrepd serve` runtime: continuous jobs whose source is on the watched
// server park between passes (no thread, no feed) and are woken by one
// _db_updates feed; without _db_updates they keep feeds of their own.
#include <dirent.h>
#include <httplib.h>

#include "integration/serve_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

std::string RepDoc(const TestServer& s, const std::string& src, const std::string& tgt) {
  return "{\"source\":\"" + s.url() + "/" + src + "\",\"target\":\"" + s.url() + "/" + tgt +
         "\",\"create_target\":true,\"continuous\":true}";
}

std::string WithReplication(std::string config, const std::string& keys) {
  const std::string at = "replication:\n";
  config.insert(config.find(at) + at.size(), keys);
  return config;
}

int Threads(pid_t pid) {
  int n = 0;
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
  if (!d) return -1;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

// Open sockets of a process.
int Sockets(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  int n = 0;
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  while (dirent* e = readdir(d)) {
    char target[256];
    ssize_t len = readlink((dir + "/" + e->d_name).c_str(), target, sizeof(target) - 1);
    if (len > 0 && std::string(target, static_cast<size_t>(len)).rfind("socket:", 0) == 0) ++n;
  }
  closedir(d);
  return n;
}

int64_t LiveFeeds(TestServer& server) {
  return JsonInt(server.Request("GET", "/_test/feeds").body, {"live_listeners"});
}

// The _changes requests the server saw, one path per request.
std::vector<std::string> ChangesPaths(TestServer& server) {
  auto r = server.Request("GET", "/_test/requests?list=true&path=%5E%2Fsrc-%5B0-9%5D%2B%2F_changes");
  std::vector<std::string> paths;
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  if (p.parse(r.body).get(doc) != simdjson::SUCCESS) return {"<bad answer>"};
  for (simdjson::dom::element req : doc["requests"]) {
    std::string_view path;
    if (req["path"].get(path) == simdjson::SUCCESS) paths.emplace_back(path);
  }
  return paths;
}

bool HasDoc(CouchClient& root, const std::string& db, const std::string& id) {
  return root.Database(db).GetDoc(id).ok();
}

// Continuous documents job-I: src-I -> tgt-I, I < jobs, once serve has set
// up _replicator.
void PutRepDocs(CouchClient& root, const TestServer& server, int jobs) {
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 20s));
  for (int i = 0; i < jobs; ++i) {
    std::string n = std::to_string(i);
    REQUIRE(rep.PutDoc("job-" + n, RepDoc(server, "src-" + n, "tgt-" + n)).ok());
  }
}

}  // namespace

TEST_CASE("serve runtime: idle continuous jobs park without a thread or a feed; a write wakes only its job") {
  constexpr int kJobs = 20;
  TestServer server;
  auto root = ServerClient(server);
  for (int i = 0; i < kJobs; ++i) {
    auto src = root.Database("src-" + std::to_string(i));
    REQUIRE(src.CreateDb().ok());
    REQUIRE(src.PutDoc("d0", R"({"n":0})").ok());
  }
  ServeProcess serve(WithReplication(ServeConfig(server), "  active_jobs: 2\n  idle_connection_timeout: 1s\n"));
  PutRepDocs(root, server, kJobs);
  INFO(serve.Log());
  REQUIRE(WaitUntil(
      [&] {
        for (int i = 0; i < kJobs; ++i) {
          if (!HasDoc(root, "tgt-" + std::to_string(i), "d0")) return false;
        }
        return true;
      },
      60s));
  // Checkpoints (1 s interval) are due once more after the first passes.
  std::this_thread::sleep_for(3s);

  // Idle: no job holds a _changes feed (only the _replicator feed is live),
  // and the process has its fixed threads, not 5 or more per job (each job
  // used to keep a runner, a reader and worker_processes workers).
  CHECK(LiveFeeds(server) <= 1);
  int threads = Threads(serve.process().pid());
  INFO("threads: " << threads);
  CHECK(threads > 0);
  CHECK(threads < 40);
  // Nor a socket: a parked job gives its connections back to the shared
  // pool, which closes them after idle_connection_timeout (1 s here); the
  // feeds of _replicator and _db_updates and the status API remain.
  int sockets = Sockets(serve.process().pid());
  INFO("sockets: " << sockets);
  CHECK(sockets >= 0);
  CHECK(sockets < 12);
  // And asks the sources nothing while nothing happens.
  REQUIRE(server.Request("DELETE", "/_test/requests").status == 200);
  std::this_thread::sleep_for(2s);
  CHECK(ChangesPaths(server).empty());

  // One write wakes exactly its job.
  REQUIRE(root.Database("src-7").PutDoc("d1", R"({"n":1})").ok());
  CHECK(WaitUntil([&] { return HasDoc(root, "tgt-7", "d1"); }, 10s));
  auto paths = ChangesPaths(server);
  CHECK(!paths.empty());
  for (const auto& p : paths) CHECK(p == "/src-7/_changes");

  // Every job is still `running` in the status API.
  httplib::Client status("127.0.0.1", StatusPort(serve));
  auto jobs = status.Get("/_scheduler/jobs");
  REQUIRE(jobs);
  CHECK(JsonInt(jobs->body, {"total_rows"}) == kJobs);
  CHECK(jobs->body.find("\"crashing\"") == std::string::npos);
}

TEST_CASE("serve runtime: parked jobs' passes reuse the shared keep-alive connections") {
  constexpr int kJobs = 20;
  TestServer server;
  auto root = ServerClient(server);
  for (int i = 0; i < kJobs; ++i) {
    REQUIRE(root.Database("src-" + std::to_string(i)).CreateDb().ok());
  }
  // At most 2 jobs × (reader + 1 worker + 1) connections at once: the
  // host's cap, 6.
  ServeProcess serve(
      WithReplication(ServeConfig(server), "  active_jobs: 2\n  worker_processes: 1\n"));
  PutRepDocs(root, server, kJobs);
  INFO(serve.Log());
  REQUIRE(WaitUntil(
      [&] {
        for (int i = 0; i < kJobs; ++i) {
          if (!root.Database("tgt-" + std::to_string(i)).GetDbInfo().ok()) return false;
        }
        return true;
      },
      60s));
  std::this_thread::sleep_for(3s);  // every job parked, its checkpoint done
  REQUIRE(server.Request("DELETE", "/_test/connections").status == 200);
  // One pass per job, one after the other: each reads the source and writes
  // the target. Jobs with connections of their own would open new ones for
  // every pass (at least one each); with the shared pool the passes take
  // the connections the earlier ones left.
  for (int i = 0; i < kJobs; ++i) {
    std::string n = std::to_string(i);
    REQUIRE(root.Database("src-" + n).PutDoc("w", R"({"n":1})").ok());
    REQUIRE(WaitUntil([&] { return HasDoc(root, "tgt-" + n, "w"); }, 20s));
  }
  std::string connections = server.Request("GET", "/_test/connections").body;
  int64_t accepted = JsonInt(connections, {"accepted"});
  int64_t open = JsonInt(connections, {"open"});
  INFO("connections accepted during " << kJobs << " passes: " << accepted << ", open: " << open);
  CHECK(accepted >= 1);  // this request's own
  CHECK(accepted < kJobs);
  // And the parked jobs keep none of their own: what is open is two shared
  // pools (the jobs' and the engine's own, which has other timeouts; at
  // most the cap, 6, each), the _replicator and _db_updates feeds, this
  // test's client and this request. A pool per job would keep one or more
  // per job.
  CHECK(open <= 2 * 6 + 4);
}

TEST_CASE("serve runtime: without _db_updates, parked jobs wait on one _changes longpoll each, on one thread") {
  constexpr int kJobs = 20;
  TestServer server;
  REQUIRE(server.Request("POST", "/_test/db_updates", R"({"enabled":false})").status / 100 == 2);
  auto root = ServerClient(server);
  for (int i = 0; i < kJobs; ++i) {
    REQUIRE(root.Database("src-" + std::to_string(i)).CreateDb().ok());
  }
  ServeProcess serve(WithReplication(ServeConfig(server), "  active_jobs: 2\n"));
  PutRepDocs(root, server, kJobs);
  INFO(serve.Log());
  // Twenty continuous jobs on two pool threads: none may hold a pool thread
  // for good, or most would never run. Each parked job has one longpoll.
  CHECK(WaitUntil([&] { return LiveFeeds(server) >= kJobs; }, 60s));
  for (int i = 0; i < kJobs; ++i) {
    REQUIRE(root.Database("src-" + std::to_string(i)).PutDoc("late", R"({"n":2})").ok());
  }
  for (int i = 0; i < kJobs; ++i) {
    CHECK(WaitUntil([&] { return HasDoc(root, "tgt-" + std::to_string(i), "late"); }, 30s));
  }
  std::this_thread::sleep_for(3s);
  int threads = Threads(serve.process().pid());
  INFO("threads: " << threads);
  CHECK(threads > 0);
  CHECK(threads < 40);  // a thread and feed each would be 40 and more
  CHECK(serve.Log().find("_db_updates is not available") != std::string::npos);
}

TEST_CASE("serve runtime: a continuous job from another server parks on a _changes longpoll") {
  TestServer server;
  TestServer remote;
  auto root = ServerClient(server);
  auto far = ServerClient(remote);
  REQUIRE(far.Database("far-src").CreateDb().ok());
  REQUIRE(far.Database("far-src").PutDoc("d0", R"({"n":0})").ok());
  ServeProcess serve(ServeConfig(server));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 20s));
  REQUIRE(rep.PutDoc("far", "{\"source\":\"" + remote.url() + "/far-src\",\"target\":\"" +
                                server.url() + "/near-tgt\",\"create_target\":true,"
                                "\"continuous\":true}")
              .ok());
  INFO(serve.Log());
  REQUIRE(WaitUntil([&] { return HasDoc(root, "near-tgt", "d0"); }, 30s));
  // Parked: one longpoll waits on the remote source, nothing polls it.
  CHECK(WaitUntil([&] { return LiveFeeds(remote) == 1; }, 10s));
  auto longpolls = remote.Request("GET", "/_test/requests?list=true&path=%5E%2Ffar-src%2F_changes");
  CHECK(longpolls.body.find("feed=longpoll") != std::string::npos);
  CHECK(longpolls.body.find("feed=continuous") == std::string::npos);
  REQUIRE(far.Database("far-src").PutDoc("d1", R"({"n":1})").ok());
  CHECK(WaitUntil([&] { return HasDoc(root, "near-tgt", "d1"); }, 10s));
}

TEST_CASE("serve runtime: a parked job that is stopped checkpoints what it wrote") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("src-0");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 10);
  std::string config = ServeConfig(server);
  // No checkpoint comes due while the test runs.
  config.replace(config.find("checkpoint_interval: 1s"), 23, "checkpoint_interval: 1h");
  ServeProcess serve(config);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 20s));
  REQUIRE(rep.PutDoc("job", RepDoc(server, "src-0", "tgt-0")).ok());
  INFO(serve.Log());
  REQUIRE(WaitUntil([&] { return root.Database("tgt-0").GetDbInfo().ok() &&
                                 root.Database("tgt-0").GetDbInfo()->doc_count == 10; },
                    30s));
  std::string id;
  REQUIRE(WaitUntil([&] {
    auto doc = rep.GetDoc("job");
    if (!doc.ok()) return false;
    id = JsonText(*doc, {"_replication_id"});
    return id.size() > 10 && id != "<missing>";
  }, 10s));
  std::string base = id.substr(0, id.find('+'));
  std::this_thread::sleep_for(1s);
  REQUIRE(server.Request("GET", "/src-0/_local/" + base).status == 404);  // parked, not checkpointed

  SUBCASE("its document deleted") {
    auto doc = rep.GetDoc("job");
    REQUIRE(doc.ok());
    REQUIRE(rep.DeleteDoc("job", JsonText(*doc, {"_rev"})).ok());
  }
  SUBCASE("couchrepd stopped") {
    serve.process().Signal(SIGTERM);
    CHECK(serve.process().Wait(20s).value_or(-1) == 0);
  }
  CHECK(WaitUntil([&] { return server.Request("GET", "/src-0/_local/" + base).status == 200; },
                  10s));
  auto local = server.Request("GET", "/tgt-0/_local/" + base);
  REQUIRE(local.status == 200);
  CHECK(JsonText(local.body, {"source_last_seq"}) ==
        JsonText(server.Request("GET", "/src-0").body, {"update_seq"}));
}

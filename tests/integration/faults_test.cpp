// Faults (issue 10): couchrepd under crashes, restarts, black holes, error and
// 429 storms, cut feeds, recreated databases, expiring sessions and a flooded
// status API. Every scenario runs real processes on loopback and ends with a
// full comparison of source and target and of the status API against the
// documents. The network faults come from tests/server/fault-proxy.js.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <map>
#include <random>
#include <set>
#include <sstream>

#include "integration/serve_helpers.h"
#include "integration/status_helpers.h"
#include "support/corpus.h"
#include "support/fault_proxy.h"
#include "support/test_pki.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t MsSince(SteadyClock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
}

// An open TCP connection to 127.0.0.1:port that sends nothing (-1 on failure).
int IdleConnection(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

struct Timed {
  int status = 0;
  int64_t ms = 0;
};

Timed TimedGet(int port, const std::string& path) {
  auto start = SteadyClock::now();
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(30, 0);
  auto res = c.Get(path);
  return {res ? res->status : 0, MsSince(start)};
}


// Writes documents prefix-from..prefix-(to-1), a few per request, until done or `stop`.
void WriteSlowly(CouchClient db, int from, int to, const std::string& prefix,
                 std::chrono::milliseconds pause, const std::atomic<bool>& stop) {
  for (int i = from; i < to && !stop; i += 5) {
    std::vector<std::string> docs;
    for (int k = i; k < std::min(to, i + 5); ++k) {
      docs.push_back("{\"_id\":\"" + prefix + std::to_string(k) + "\",\"n\":" + std::to_string(k) + "}");
    }
    while (!db.BulkDocs(docs, true).ok() && !stop) std::this_thread::sleep_for(100ms);
    std::this_thread::sleep_for(pause);
  }
}

std::string ProxiedServe(const TestServer& server, const FaultProxy& proxy,
                         const std::string& extra_top = "") {
  std::string config = ServeConfig(server, "", extra_top);
  size_t at = config.find(server.url());
  return config.replace(at, server.url().size(), proxy.url());
}
}  // namespace

TEST_SUITE("integration/faults") {

TEST_CASE("faults: the comparison itself finds a missing leaf, another body and another attachment") {
  TestServer server;
  auto root = ServerClient(server);
  auto a = root.Database("cmp-a");
  auto b = root.Database("cmp-b");
  REQUIRE(a.CreateDb().ok());
  REQUIRE(b.CreateDb().ok());
  PutPlainDocs(a, 0, 300);
  CHECK(CompareDatabases(a, b).size() == 300);  // every document missing
  ReplicateOk({server.url() + "/cmp-a", server.url() + "/cmp-b"});
  CHECK(CompareDatabases(a, b).empty());
  // A conflicting leaf only the source has.
  REQUIRE(a.BulkDocs({R"({"_id":"doc7","_rev":"1-ffffffffffffffffffffffffffffffff","n":-1})"}, false).ok());
  auto diffs = CompareDatabases(a, b);
  REQUIRE(diffs.size() == 1);
  CHECK(diffs[0].rfind("doc7:", 0) == 0);
  // The same revision id with another body.
  REQUIRE(b.BulkDocs({R"({"_id":"doc7","_rev":"1-ffffffffffffffffffffffffffffffff","n":-2})"}, false).ok());
  CHECK(CompareDatabases(a, b).size() == 1);
}

TEST_CASE("faults 7: a target deleted and recreated during a continuous replication gets everything again") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("t7-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 300);
  ServeProcess serve(ServeConfig(server));
  int port = StatusPort(serve);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
  REQUIRE(rep.PutDoc("t7", RepDocJson(server.url() + "/t7-src", server.url() + "/t7-tgt", true)).ok());
  auto tgt = root.Database("t7-tgt");
  REQUIRE(WaitUntil([&] { return DocCount(tgt) == 300; }, 30s));
  std::this_thread::sleep_for(2s);  // a checkpoint on the old target
  REQUIRE(tgt.DeleteDb().ok());
  REQUIRE(tgt.CreateDb().ok());
  PutPlainDocs(src, 300, 320);
  INFO(serve.Log().substr(serve.Log().size() > 6000 ? serve.Log().size() - 6000 : 0));
  // Not only the 20 new documents: the checkpoint of the old target is not trusted.
  CHECK(WaitUntil([&] { return DocCount(tgt) == 320; }, 60s));
  CheckSame(src, tgt);
  CHECK(WaitUntil([&] { return StatusAgainstDocuments(port, rep, "running").empty(); }, 20s));
}

TEST_CASE("faults 7b: a target recreated before the job's first checkpoint is not trusted either") {
  // No checkpoint document on the target when the job starts: the first checkpoint written on
  // the recreated target would claim everything before it (found by the soak).
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("t7b-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 40);
  std::string config = ServeConfig(server);
  config.replace(config.find("checkpoint_interval: 1s"), 23, "checkpoint_interval: 1h");
  auto rep = root.Database("_replicator");
  auto tgt = root.Database("t7b-tgt");
  {
    ServeProcess serve(config);
    REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
    REQUIRE(rep.PutDoc("t7b", RepDocJson(server.url() + "/t7b-src", server.url() + "/t7b-tgt", true)).ok());
    REQUIRE(WaitUntil([&] { return DocCount(tgt) == 40; }, 30s));
    REQUIRE(tgt.DeleteDb().ok());
    REQUIRE(tgt.CreateDb().ok());
    PutPlainDocs(src, 40, 45);
    REQUIRE(WaitUntil([&] { return DocCount(tgt) == 5; }, 30s));
    serve.process().Signal(SIGTERM);  // stopping checkpoints
    REQUIRE(serve.process().Wait(15s).has_value());
    INFO(serve.Log().substr(serve.Log().size() > 4000 ? serve.Log().size() - 4000 : 0));
  }
  ServeProcess serve(config);
  INFO(serve.Log().substr(serve.Log().size() > 4000 ? serve.Log().size() - 4000 : 0));
  CHECK(WaitUntil([&] { return DocCount(tgt) == 45; }, 30s));
  CheckSame(src, tgt);
}

TEST_CASE("faults: a state write-back that fails is retried until it lands") {
  // Found by faults 4: a job completed while the server answered 500, and the document
  // stayed "triggered" for good.
  TestServer server;
  FaultProxy proxy(server.url());
  auto root = ServerClient(server);
  auto src = root.Database("tw-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 10);
  ServeProcess serve(ProxiedServe(server, proxy));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
  // Every write of the document's state fails for a while (more than a request's retries).
  proxy.AddFaults(R"({"path":"^/_replicator/tw$","method":"PUT","status":500,"count":8})");
  REQUIRE(rep.PutDoc("tw", RepDocJson(server.url() + "/tw-src", server.url() + "/tw-tgt", false)).ok());
  auto tgt = root.Database("tw-tgt");
  REQUIRE(WaitUntil([&] { return DocCount(tgt) == 10; }, 30s));
  INFO(serve.Log().substr(serve.Log().size() > 4000 ? serve.Log().size() - 4000 : 0));
  CHECK(WaitForState(rep, "tw", "completed", 60s));
  CHECK(JsonInt(proxy.Stats(), {"faults", "status"}) == 8);
}

TEST_CASE("faults 4: 30 % of requests answered 500/503 for a while; the replication completes") {
  TestServer server;
  FaultProxy proxy(server.url());
  auto root = ServerClient(server);
  auto src = root.Database("t4-src");
  REQUIRE(src.CreateDb().ok());
  CorpusOptions corpus;
  corpus.plain_docs = 1500;
  corpus.big_attachment_bytes = 1 << 20;
  BuildCorpus(src, corpus);
  ServeProcess serve(ProxiedServe(server, proxy));
  int port = StatusPort(serve);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
  proxy.AddFaults(R"([{"probability":0.15,"status":500},{"probability":0.18,"status":503}])");
  REQUIRE(rep.PutDoc("t4", RepDocJson(proxy.url() + "/t4-src", proxy.url() + "/t4-tgt", false)).ok());
  std::this_thread::sleep_for(15s);
  std::string stats = proxy.Stats();
  INFO(stats);
  CHECK(JsonInt(stats, {"faults", "status"}) >= 10);  // the job backs off between attempts
  CHECK(JsonInt(stats, {"statuses", "500"}) > 0);
  CHECK(JsonInt(stats, {"statuses", "503"}) > 0);
  proxy.Clear();
  INFO(serve.Log().substr(serve.Log().size() > 6000 ? serve.Log().size() - 6000 : 0));
  REQUIRE(WaitForState(rep, "t4", "completed", 120s));
  auto tgt = root.Database("t4-tgt");
  CheckSame(src, tgt);
  // Most injected failures were retried in place (the others crashed the job, which backed off).
  CHECK(MetricSum(port, "couchrepd_http_retries_total") * 2 >= JsonInt(stats, {"faults", "status"}));
  CHECK(WaitUntil([&] { return StatusAgainstDocuments(port, rep, "completed").empty(); }, 20s));
}

TEST_CASE("faults 5: a 429 storm slows the requests down, fails no job, and the rate recovers") {
  TestServer server;
  FaultProxy proxy(server.url());
  auto root = ServerClient(server);
  auto src = root.Database("t5-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 100);
  ServeProcess serve(ProxiedServe(server, proxy));
  int port = StatusPort(serve);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
  REQUIRE(rep.PutDoc("t5", RepDocJson(proxy.url() + "/t5-src", proxy.url() + "/t5-tgt", true)).ok());
  auto tgt = root.Database("t5-tgt");
  REQUIRE(WaitUntil([&] { return DocCount(tgt) == 100; }, 30s));
  std::atomic<bool> stop{false};
  std::thread writer(WriteSlowly, root.Database("t5-src"), 100, 100000, "w", 100ms, std::cref(stop));
  double crashes_before = MetricSum(port, "couchrepd_job_crashes_total");

  // Requests to the source and target, per second, in [from, to) of the proxy's clock.
  auto rate = [&](int64_t from_ms, int64_t to_ms) {
    int n = 0;
    for (const auto& e : proxy.Log()) {
      if (e.t_ms >= from_ms && e.t_ms < to_ms && e.path.rfind("/t5-", 0) == 0) ++n;
    }
    return n * 1000.0 / static_cast<double>(to_ms - from_ms);
  };
  auto now_ms = [&] {
    auto log = proxy.Log();
    return log.empty() ? int64_t{0} : log.back().t_ms;
  };
  std::this_thread::sleep_for(3s);
  int64_t storm_start = now_ms();
  proxy.AddFaults(R"({"path":"^/t5-","status":429})");
  bool never_failed = true;
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(1s);
    std::string state = StatusDocs(port)["t5"];
    if (state != "running") never_failed = false;
  }
  int64_t storm_end = now_ms();
  proxy.Clear();
  std::this_thread::sleep_for(10s);
  int64_t after_end = now_ms();
  double before = rate(storm_start - 3000, storm_start);
  double early = rate(storm_start, storm_start + 3000);
  double late = rate(storm_end - 6000, storm_end);
  double after = rate(storm_end + 4000, after_end);
  stop = true;
  writer.join();
  INFO("requests/s before " << before << ", storm's first 3 s " << early << ", storm's last 6 s "
                            << late << ", after " << after);
  INFO(serve.Log().substr(serve.Log().size() > 6000 ? serve.Log().size() - 6000 : 0));
  CHECK(late < early / 3);          // the rate measurably dropped
  CHECK(never_failed);              // no job failed (or crashed) before max_backoff
  CHECK(MetricSum(port, "couchrepd_job_crashes_total") == crashes_before);
  CHECK(MetricSum(port, "couchrepd_http_rate_limited_total") > 5);
  CHECK(after > before / 2);        // and it recovered (not just a little: the pause decays)
  CHECK(WaitUntil([&] { return DocCount(tgt) == DocCount(src); }, 60s));
  CheckSame(src, tgt);
  CHECK(StatusAgainstDocuments(port, rep, "running").empty());
}

TEST_CASE("faults 6: the replicator feed cut again and again while documents come and go") {
  TestServer server;
  FaultProxy proxy(server.url());
  auto root = ServerClient(server);
  auto src = root.Database("t6-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 20);
  ServeProcess serve(ProxiedServe(server, proxy));
  int port = StatusPort(serve);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
  const std::string s = server.url();
  std::map<std::string, std::string> target_of;  // live documents
  // The feed past the design document first: its row (the validation function) is larger
  // than the cut below, so a feed still before it could never get past it.
  REQUIRE(rep.PutDoc("r0", RepDocJson(s + "/t6-src", s + "/t6-tgt-0", true)).ok());
  target_of["r0"] = "t6-tgt-0";
  REQUIRE(WaitUntil([&] { return StatusDocs(port).count("r0") == 1; }, 20s));
  // Every feed connection of the replicator database is cut mid-row after 1,500 bytes.
  proxy.AddFaults(R"({"path":"^/_replicator/_changes","cut_after_bytes":1500})");
  std::mt19937 rng(6);
  for (int i = 1; i < 40; ++i) {
    std::string id = "r" + std::to_string(i);
    std::string tgt = "t6-tgt-" + std::to_string(i);
    REQUIRE(rep.PutDoc(id, RepDocJson(s + "/t6-src", s + "/" + tgt, true)).ok());
    target_of[id] = tgt;
    if (i % 4 == 3) {  // change an earlier one's target
      std::string other = "r" + std::to_string(rng() % i);
      if (target_of.count(other)) {
        auto doc = rep.GetDoc(other);
        REQUIRE(doc.ok());
        std::string moved = target_of[other] + "-moved";
        std::string body = RepDocJson(s + "/t6-src", s + "/" + moved, true);
        body.insert(1, "\"_rev\":\"" + JsonText(*doc, {"_rev"}) + "\",");
        if (rep.PutDoc(other, body).ok()) target_of[other] = moved;
      }
    }
    if (i % 5 == 4) {  // delete one
      std::string gone = "r" + std::to_string(rng() % i);
      auto doc = rep.GetDoc(gone);
      if (doc.ok() && rep.DeleteDoc(gone, JsonText(*doc, {"_rev"})).ok()) target_of.erase(gone);
    }
    if (i % 3 == 0) proxy.Cut("^/_replicator/_changes");
    std::this_thread::sleep_for(150ms);
  }
  std::string stats = proxy.Stats();
  INFO(stats);
  CHECK(JsonInt(stats, {"faults", "cut"}) >= 10);
  proxy.Clear();
  INFO(serve.Log().substr(serve.Log().size() > 6000 ? serve.Log().size() - 6000 : 0));
  std::vector<std::string> diffs;
  CHECK(WaitUntil([&] { return (diffs = StatusAgainstDocuments(port, rep, "running")).empty(); }, 60s));
  INFO((diffs.empty() ? std::string() : diffs.front()));
  CHECK(diffs.empty());
  CHECK(StatusDocs(port).size() == target_of.size());
  // Each live document replicates to the target it names now.
  for (const auto& [id, tgt_name] : target_of) {
    CAPTURE(id);
    auto tgt = root.Database(tgt_name);
    CHECK(WaitUntil([&] { return DocCount(tgt) == 20; }, 30s));
    CHECK(JsonText(StatusGet(port, "/_scheduler/docs/_replicator/" + id).body, {"target"})
              .find(tgt_name) != std::string::npos);
  }
  auto first_target = root.Database(target_of.begin()->second);
  CheckSame(src, first_target);
  CHECK(MetricSum(port, "couchrepd_replicator_feed_reconnects_total") >= 10);
}

TEST_CASE("faults 2: the source server restarted mid-replication; crashing, backoff, resumed, completed") {
  TestServer server;
  TestServer source({.persistent = true});
  auto src = ServerClient(source).Database("t2-src");
  REQUIRE(src.CreateDb().ok());
  constexpr int kDocs = 20000;
  PutPlainDocs(src, 0, kDocs);
  auto root = ServerClient(server);
  std::string config = ServeConfig(server);
  config.insert(config.find("replication:\n") + 13, "  connection_timeout: 5s\n");
  ServeProcess serve(config);
  int port = StatusPort(serve);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
  REQUIRE(rep.PutDoc("t2", RepDocJson(source.url() + "/t2-src", server.url() + "/t2-tgt", false)).ok());
  auto tgt = root.Database("t2-tgt");
  REQUIRE(WaitUntil([&] { return DocCount(tgt) >= 3000; }, 60s));
  std::this_thread::sleep_for(1500ms);  // a checkpoint past 0
  source.Stop();
  int64_t copied = DocCount(tgt);
  INFO(serve.Log().substr(serve.Log().size() > 6000 ? serve.Log().size() - 6000 : 0));
  REQUIRE(copied < kDocs);
  std::string reason;
  CHECK(WaitUntil(
      [&] {
        if (StatusDocs(port)["t2"] != "crashing") return false;
        reason = JobField(port, "t2", {"info", "error"});
        return true;
      },
      30s));
  CAPTURE(reason);
  CHECK(reason.find(source.url()) != std::string::npos);
  std::this_thread::sleep_for(3s);  // backing off while the server is away
  CHECK(StatusDocs(port)["t2"] == "crashing");
  source.Start();
  CHECK(WaitForState(rep, "t2", "completed", 120s));
  // It resumed from a checkpoint: the restarted source was not read from 0.
  std::string first = FirstQuery(source, "%5E%2Ft2-src%2F_changes");
  CAPTURE(first);
  CHECK(!SinceOf(first).empty());
  CHECK(SinceOf(first) != "0");
  CHECK(DocCount(tgt) == kDocs);
  CheckSame(src, tgt);
  CHECK(serve.Log().find("[_replicator/t2") != std::string::npos);
  CHECK(MetricSum(port, "couchrepd_job_crashes_total") >= 1);
  CHECK(WaitUntil([&] { return StatusAgainstDocuments(port, rep, "completed").empty(); }, 20s));
}

TEST_CASE("faults 2b: after the watched server restarts, parked jobs still see new writes") {
  // The restarted server's _db_updates sequence starts over; an old `since` hid every event.
  // Twice: a restart that outlasts a request's retries (the wake feed sees it fail), and one
  // within them (a request retried across it just answers; found by the soak).
  bool long_retries = false;
  SUBCASE("the restart outlasts a request's retries") {}
  SUBCASE("the restart ends within a request's retries") { long_retries = true; }
  TestServer server({.persistent = true});
  auto root = ServerClient(server);
  auto src = root.Database("t2b-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 30);
  std::string config = ServeConfig(server);
  if (long_retries) {  // 30 retries from 200 ms, doubling up to the 5 s wait cap, within 60 s
    config.replace(config.find("retries_per_request: 2"), 22, "retries_per_request: 30");
    config.replace(config.find("request_budget: 5s"), 18, "request_budget: 60s");
    config.replace(config.find("request_initial_wait: 50ms"), 26, "request_initial_wait: 200ms");
  }
  ServeProcess serve(config);
  int port = StatusPort(serve);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
  REQUIRE(rep.PutDoc("t2b", RepDocJson(server.url() + "/t2b-src", server.url() + "/t2b-tgt", true)).ok());
  auto tgt = root.Database("t2b-tgt");
  REQUIRE(WaitUntil([&] { return DocCount(tgt) == 30; }, 30s));
  PutPlainDocs(src, 30, 60);  // the _db_updates sequence moves on
  REQUIRE(WaitUntil([&] { return DocCount(tgt) == 60; }, 30s));
  std::this_thread::sleep_for(3s);  // parked, checkpointed
  server.Stop();
  std::this_thread::sleep_for(1s);
  server.Start();
  PutPlainDocs(src, 60, 63);
  INFO(serve.Log().substr(serve.Log().size() > 6000 ? serve.Log().size() - 6000 : 0));
  CHECK(WaitUntil([&] { return DocCount(tgt) == 63; }, 30s));
  CheckSame(src, tgt);
  CHECK(WaitUntil([&] { return StatusAgainstDocuments(port, rep, "running").empty(); }, 30s));
}

TEST_CASE("faults 3: two minutes of black hole; timeouts, crashing with a reason, recovery by itself") {
  TestServer server;
  FaultProxy proxy(server.url());
  auto root = ServerClient(server);
  const int kJobs = 3;
  for (int i = 0; i < kJobs; ++i) {
    auto src = root.Database("t3-src-" + std::to_string(i));
    REQUIRE(src.CreateDb().ok());
    PutPlainDocs(src, 0, 50);
  }
  // A replication request times out after 5 s (replication.connection_timeout).
  std::string config = ProxiedServe(server, proxy);
  config.insert(config.find("replication:\n") + 13, "  connection_timeout: 5s\n");
  ServeProcess serve(config);
  int port = StatusPort(serve);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
  for (int i = 0; i < kJobs; ++i) {
    std::string n = std::to_string(i);
    REQUIRE(rep.PutDoc("t3-" + n, RepDocJson(proxy.url() + "/t3-src-" + n,
                                             proxy.url() + "/t3-tgt-" + n, true)).ok());
  }
  for (int i = 0; i < kJobs; ++i) {
    auto tgt = root.Database("t3-tgt-" + std::to_string(i));
    REQUIRE(WaitUntil([&] { return DocCount(tgt) == 50; }, 30s));
  }
  REQUIRE(WaitUntil([&] { return StatusGet(port, "/health").status == 200; }, 10s));
  const int64_t accepted_before = JsonInt(proxy.Stats(), {"connections_accepted"});
  auto hole = SteadyClock::now();
  proxy.Blackhole(true);
  // Writes meanwhile, straight to the sources.
  for (int i = 0; i < kJobs; ++i) {
    auto src = root.Database("t3-src-" + std::to_string(i));
    PutPlainDocs(src, 50, 80);
  }
  // Parked jobs hold no request: the _db_updates feed failing past the request budget
  // (request_timeout 5 s + request_budget 5 s, ServeConfig) makes each check its source,
  // which fails after connection_timeout (5 s) and the budget. So every job is crashing,
  // with a reason, within about 30 s; the replicator feed's silence shows in /health.
  bool all_crashing = WaitUntil(
      [&] {
        auto docs = StatusDocs(port);
        int n = 0;
        for (const auto& [id, state] : docs) n += state == "crashing";
        return n == kJobs;
      },
      45s);
  int64_t crashing_after = MsSince(hole);
  INFO(serve.Log().substr(serve.Log().size() > 8000 ? serve.Log().size() - 8000 : 0));
  CHECK(all_crashing);
  CHECK(crashing_after < 45000);
  std::string reason = JobField(port, "t3-0", {"info", "error"});
  CAPTURE(reason);
  CHECK(reason.find("127.0.0.1:" + std::to_string(proxy.port())) != std::string::npos);
  CHECK(WaitUntil([&] { return StatusGet(port, "/health").status == 503; }, 20s));
  std::this_thread::sleep_for(std::chrono::milliseconds(120000 - MsSince(hole)));
  // No request waited for the black hole to end: they timed out and were retried
  // on new connections all along.
  const int64_t accepted_during = JsonInt(proxy.Stats(), {"connections_accepted"}) - accepted_before;
  CHECK(accepted_during >= 2 * kJobs);
  CHECK(serve.process().running());
  proxy.Blackhole(false);
  auto back = SteadyClock::now();
  CHECK(WaitUntil([&] { return StatusAgainstDocuments(port, rep, "running").empty(); }, 60s));
  for (int i = 0; i < kJobs; ++i) {
    auto src = root.Database("t3-src-" + std::to_string(i));
    auto tgt = root.Database("t3-tgt-" + std::to_string(i));
    CHECK(WaitUntil([&] { return DocCount(tgt) == 80; }, 60s));
    CheckSame(src, tgt);
  }
  CHECK(WaitUntil([&] { return StatusGet(port, "/health").status == 200; }, 30s));
  MESSAGE("black hole: crashing after " << crashing_after << " ms; " << accepted_during
          << " new connections during it; recovered in " << MsSince(back) << " ms");
  // A new document is picked up: the replicator feed reconnected by itself.
  REQUIRE(rep.PutDoc("t3-late", RepDocJson(server.url() + "/t3-src-0", server.url() + "/t3-tgt-late", false)).ok());
  CHECK(WaitForState(rep, "t3-late", "completed", 30s));
}

TEST_CASE("faults 1: kill -9 five times during a 50,000-document replication; resumed each time") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("t1-src");
  REQUIRE(src.CreateDb().ok());
  constexpr int kDocs = 50000;
  PutPlainDocs(src, 0, kDocs);
  auto rep = root.Database("_replicator");
  auto tgt = root.Database("t1-tgt");
  std::mt19937 rng(std::random_device{}());
  int64_t copied = 0;
  // Five runs must not finish all 50,000 documents, however fast the machine is
  // against how fast this test polls: every write to the target waits 400 ms and
  // carries at most 100 documents, so with 4 workers at most 1,000 documents a
  // second arrive (a run takes a few seconds). The last run goes at full speed.
  std::string config = ServeConfig(server);
  config.insert(config.find("replication:\n") + 13, "  worker_processes: 4\n  worker_batch_size: 100\n");
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"({"method":"POST","path":"^/t1-tgt/_bulk_docs","delay_ms":400,"count":100000})")
              .status == 201);
  // The revision of the job's checkpoint document in `db` ("" while there is none).
  auto checkpoint_rev = [&](const std::string& db) -> std::string {
    auto doc = rep.GetDoc("t1");
    std::string id = doc.ok() ? JsonText(*doc, {"_replication_id"}) : "";
    if (id.empty()) return "";
    auto local = server.Request("GET", "/" + db + "/_local/" + id.substr(0, id.find('+')));
    return local.status == 200 ? JsonText(local.body, {"_rev"}) : "";
  };
  for (int kill = 0; kill < 5; ++kill) {
    CAPTURE(kill);
    REQUIRE(server.Request("DELETE", "/_test/requests").status == 200);
    ServeProcess serve(config);
    if (kill == 0) {
      REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
      REQUIRE(rep.PutDoc("t1", RepDocJson(server.url() + "/t1-src", server.url() + "/t1-tgt", false)).ok());
    }
    // Some progress and a checkpoint of this run on the source, then a random moment soon
    // after.
    // (The source's is written first: a target change after the source's means both have it.)
    const std::string rev_before = checkpoint_rev("t1-src");
    REQUIRE(WaitUntil([&] { return DocCount(tgt) >= copied + 2000; }, 60s));
    REQUIRE(WaitUntil([&] { return checkpoint_rev("t1-src") != rev_before; }, 60s));
    const std::string target_rev = checkpoint_rev("t1-tgt");
    REQUIRE(WaitUntil([&] { return checkpoint_rev("t1-tgt") != target_rev; }, 60s));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 500));
    serve.process().Signal(SIGKILL);
    REQUIRE(serve.process().Wait(10s).has_value());
    int64_t now = DocCount(tgt);
    CHECK(now > copied);
    copied = now;
    // The first _changes request of every run after the first resumed from a checkpoint.
    std::string first = FirstQuery(server, "%5E%2Ft1-src%2F_changes");
    CAPTURE(first);
    if (kill > 0) {
      CHECK(!SinceOf(first).empty());
      CHECK(SinceOf(first) != "0");
    }
  }
  REQUIRE(copied < kDocs);
  REQUIRE(server.Request("DELETE", "/_test/faults").status == 200);
  REQUIRE(server.Request("DELETE", "/_test/requests").status == 200);
  ServeProcess serve(config);
  int port = StatusPort(serve);
  REQUIRE(WaitForState(rep, "t1", "completed", 180s));
  std::string first = FirstQuery(server, "%5E%2Ft1-src%2F_changes");
  CAPTURE(first);
  CHECK(!SinceOf(first).empty());
  CHECK(SinceOf(first) != "0");
  CHECK(DocCount(tgt) == kDocs);
  CheckSame(src, tgt);
  CHECK(WaitUntil([&] { return StatusAgainstDocuments(port, rep, "completed").empty(); }, 20s));
}

TEST_CASE("faults TLS: an HTTPS source is refused without its CA, also with server.* loosened; "
          "replication.ca_file lets it replicate") {
  TestServer server;
  const auto& pki = TestPki::Get();
  FaultProxy tls(server.url(), {pki.Path("server.pem"), pki.Path("server.key")});
  REQUIRE(tls.url().rfind("https://127.0.0.1:", 0) == 0);
  auto root = ServerClient(server);
  auto src = root.Database("tls-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 100);
  auto rep = root.Database("_replicator");
  const std::string server_loosened =
      "  tls_verify: false\n  ca_file: " + pki.Path("ca.pem") + "\n";
  struct Case {
    const char* id;
    std::string config;
    bool trusted;
  };
  std::string plain = ServeConfig(server);
  std::string loosened = plain;
  loosened.insert(loosened.find("  request_timeout:"), server_loosened);
  std::string with_ca = plain;
  with_ca.insert(with_ca.find("replication:\n") + 13, "  ca_file: " + pki.Path("ca.pem") + "\n");
  for (const Case& c : {Case{"tls-plain", plain, false}, Case{"tls-server-loosened", loosened, false},
                        Case{"tls-ca-file", with_ca, true}}) {
    CAPTURE(c.id);
    ServeProcess serve(c.config);
    int port = StatusPort(serve);
    REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
    std::string tgt_name = std::string(c.id) + "-tgt";
    REQUIRE(rep.PutDoc(c.id, RepDocJson(tls.url() + "/tls-src", server.url() + "/" + tgt_name, false)).ok());
    INFO(serve.Log().substr(serve.Log().size() > 4000 ? serve.Log().size() - 4000 : 0));
    if (c.trusted) {
      CHECK(WaitForState(rep, c.id, "completed", 60s));
      auto tgt = root.Database(tgt_name);
      CheckSame(src, tgt);
    } else {
      std::string reason;
      CHECK(WaitUntil(
          [&] {
            reason = JobField(port, c.id, {"info", "error"});
            return reason.find("certificate is not trusted") != std::string::npos;
          },
          30s));
      CAPTURE(reason);
      CHECK(reason.find("ca_file") != std::string::npos);
      // Classic write-back: the document gets `error` (written after the crash the
      // status API already shows; deleting it before that write would race it).
      CHECK(WaitForState(rep, c.id, "error", 30s));
      CHECK(root.Database(tgt_name).GetDbInfo().ok() == false);  // nothing was written
      // Nothing reached the server through the TLS proxy: the handshake failed.
      for (const auto& e : tls.Log()) CHECK(e.path.find("/tls-src") != 0);
    }
    REQUIRE(rep.DeleteDoc(c.id, JsonText(*rep.GetDoc(c.id), {"_rev"})).ok());
  }
}

TEST_CASE("faults 8: cookie sessions expiring every 3 s during a replication: re-login, never anonymous") {
  TestServerOptions options;
  options.admin = "admin:S3ss10n-pw";
  options.session_timeout_s = 3;
  TestServer server(options);
  FaultProxy proxy(server.url());
  auto root = ServerClient(server, options.admin);
  auto src = root.Database("t8-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 100);
  std::string config = ProxiedServe(server, proxy);
  config.insert(config.find("  request_timeout:"), "  username: admin\n  auth: cookie\n");
  ServeProcess serve(config, {"COUCHREPD_SERVER_PASSWORD=S3ss10n-pw"});
  int port = StatusPort(serve);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 10s));
  // Local endpoints: couchrepd reaches them with the server's cookie session.
  REQUIRE(rep.PutDoc("t8", R"({"source":"t8-src","target":"t8-tgt","create_target":true,"continuous":true})").ok());
  auto tgt = root.Database("t8-tgt");
  REQUIRE(WaitUntil([&] { return DocCount(tgt) == 100; }, 30s));
  std::atomic<bool> stop{false};
  std::thread writer(WriteSlowly, root.Database("t8-src"), 100, 100000, "w", 200ms, std::cref(stop));
  std::this_thread::sleep_for(15s);  // five session lifetimes
  stop = true;
  writer.join();
  INFO(serve.Log().substr(serve.Log().size() > 6000 ? serve.Log().size() - 6000 : 0));
  CHECK(WaitUntil([&] { return DocCount(tgt) == DocCount(src); }, 30s));
  CheckSame(src, tgt);
  auto log = proxy.Log();
  int logins = 0;
  std::vector<std::string> anonymous;
  for (const auto& e : log) {
    if (e.path.rfind("/_session", 0) == 0) {
      logins += e.method == "POST";
      continue;
    }
    if (e.auth != "cookie") anonymous.push_back(e.method + " " + e.path + " (" + e.auth + ")");
  }
  INFO((anonymous.empty() ? std::string() : anonymous.front()));
  CHECK(anonymous.empty());
  CHECK(logins >= 4);  // the session was renewed as it expired
  std::string stats = proxy.Stats();
  MESSAGE("cookie expiry: " << log.size() << " requests, " << logins << " logins, "
          << JsonInt(stats, {"statuses", "401"}) << " answered 401");
  CHECK(MetricSum(port, "couchrepd_job_crashes_total") == 0);
  CHECK(StatusAgainstDocuments(port, rep, "running").empty());
  CHECK(serve.Log().find("S3ss10n-pw") == std::string::npos);
}

TEST_CASE("faults 9: the status API answers /health within 1 s under a flood of idle clients") {
  TestServer server;
  ServeProcess serve(ServeConfig(server));
  int port = StatusPort(serve);
  REQUIRE(WaitUntil([&] { return TimedGet(port, "/health").status == 200; }, 20s));

  constexpr int kIdle = 400;
  std::vector<int> idle;
  for (int i = 0; i < kIdle; ++i) {
    int fd = IdleConnection(port);
    if (fd >= 0) idle.push_back(fd);
  }
  REQUIRE(idle.size() == kIdle);
  // Some flooders also send half a request line and stop.
  for (int i = 0; i < 50; ++i) {
    const char partial[] = "GET /hea";
    CHECK(send(idle[i], partial, sizeof partial - 1, MSG_NOSIGNAL) > 0);
  }
  std::this_thread::sleep_for(500ms);  // the server has accepted them all
  for (int round = 0; round < 5; ++round) {
    CAPTURE(round);
    Timed health = TimedGet(port, "/health");
    CHECK(health.status == 200);
    CHECK(health.ms < 1000);
    Timed jobs = TimedGet(port, "/_scheduler/jobs");
    CHECK(jobs.status == 200);
    CHECK(jobs.ms < 1000);
    std::this_thread::sleep_for(1s);
  }
  for (int fd : idle) close(fd);
  // The service is unharmed.
  CHECK(serve.process().running());
  CHECK(TimedGet(port, "/health").status == 200);
}

}  // TEST_SUITE

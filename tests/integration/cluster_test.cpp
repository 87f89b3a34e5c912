// Several couchrepd instances against one test server (issue 11, SPEC §9):
// each replication document runs on exactly one live instance, decided by
// rendezvous hashing and lease documents in the coordination database; a
// killed instance's jobs move to the others and resume from their
// checkpoints. Real processes, real test server.
#include <simdjson.h>

#include <map>
#include <set>

#include "couchrepd/cluster.h"
#include "integration/serve_helpers.h"
#include "integration/status_helpers.h"
#include "support/fault_proxy.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

constexpr int kContinuous = 150;
constexpr int kOneShot = 150;
constexpr int kOneShotSources = 15;

std::string ClusterConfig(const TestServer& server, const std::string& id) {
  return ServeConfig(server, "", "cluster:\n  enabled: true\n  instance_id: " + id +
                                     "\n  database: couchrepd\n  heartbeat: 1s\n  lease_ttl: 4s\n");
}

std::string Num(int i) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%03d", i);
  return buf;
}

// couchrepd instances by name, with their status API ports.
struct Instances {
  std::map<std::string, std::unique_ptr<ServeProcess>> serves;
  std::map<std::string, int> ports;
  void Start(const std::string& name, const std::string& config) {
    serves[name] = std::make_unique<ServeProcess>(config);
    ports[name] = StatusPort(*serves[name]);
  }
};

// The documents an instance shows in its status API, with their states.
using Shown = std::map<std::string, std::string>;

// doc id -> the instances that show it.
std::map<std::string, std::vector<std::string>> WhoShows(const std::map<std::string, int>& ports) {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [name, port] : ports) {
    for (const auto& [doc, state] : StatusDocs(port)) out[doc].push_back(name);
  }
  return out;
}

// The members an instance's /_cluster lists as live.
std::set<std::string> LiveMembers(int port) {
  std::set<std::string> live;
  Got got = StatusGet(port, "/_cluster");
  simdjson::dom::parser parser;
  simdjson::dom::array members;
  if (got.status != 200 || parser.parse(got.body)["members"].get(members) != simdjson::SUCCESS) {
    return live;
  }
  for (auto m : members) {
    std::string_view id;
    bool is_live = false;
    if (m["instance_id"].get(id) == simdjson::SUCCESS && m["live"].get(is_live) == simdjson::SUCCESS &&
        is_live) {
      live.emplace(id);
    }
  }
  return live;
}

// Every instance lists all of them, and only them, as live members.
bool AllLive(const Instances& cluster) {
  std::set<std::string> names;
  for (const auto& [name, port] : cluster.ports) names.insert(name);
  for (const auto& [name, port] : cluster.ports) {
    if (LiveMembers(port) != names) return false;
  }
  return true;
}

// A test server and clustered instances `names` (ClusterConfig), all seeing each other live.
struct ClusterSetUp {
  TestServer server;
  CouchClient root = ServerClient(server);
  CouchClient rep = root.Database("_replicator");
  Instances cluster;
  explicit ClusterSetUp(const std::vector<std::string>& names) {
    for (const auto& name : names) cluster.Start(name, ClusterConfig(server, name));
    REQUIRE(WaitUntil([&] { return AllLive(cluster); }, 30s));
  }
};

// How many documents `member` owns by rendezvous hashing, as the instance at `port` sees it.
int Owns(int port, const std::string& member) {
  Got got = StatusGet(port, "/_cluster");
  simdjson::dom::parser parser;
  simdjson::dom::array members;
  if (got.status != 200 || parser.parse(got.body)["members"].get(members) != simdjson::SUCCESS) return -1;
  for (auto m : members) {
    std::string_view id;
    int64_t owns = 0;
    if (m["instance_id"].get(id) == simdjson::SUCCESS && id == member &&
        m["owns"].get(owns) == simdjson::SUCCESS) {
      return static_cast<int>(owns);
    }
  }
  return -1;
}

// The sources, the one-shot and continuous replication documents.
void SetUpDocuments(TestServer& server, CouchClient& rep) {
  auto root = ServerClient(server);
  for (int k = 0; k < kOneShotSources; ++k) {
    CouchClient src = root.Database("osrc-" + Num(k));
    REQUIRE(src.CreateDb().ok());
    PutPlainDocs(src, 0, 4, "o");
  }
  for (int i = 0; i < kContinuous; ++i) {
    CouchClient src = root.Database("csrc-" + Num(i));
    REQUIRE(src.CreateDb().ok());
    PutPlainDocs(src, 0, 3, "c");
  }
  std::vector<std::string> docs;
  for (int i = 0; i < kOneShot; ++i) {
    docs.push_back("{\"_id\":\"once-" + Num(i) + "\"," +
                   RepDocJson("osrc-" + Num(i % kOneShotSources), "otgt-" + Num(i), false).substr(1));
  }
  for (int i = 0; i < kContinuous; ++i) {
    docs.push_back("{\"_id\":\"cont-" + Num(i) + "\"," +
                   RepDocJson("csrc-" + Num(i), "ctgt-" + Num(i), true).substr(1));
  }
  auto put = rep.BulkDocs(docs, true);
  REQUIRE(put.ok());
}

// The timestamps (text log: the first word of the line) of the lines of
// `log` that contain `text` and end with `ending`, in order.
std::vector<std::string> LogTimes(const std::string& log, const std::string& text,
                                  const std::string& ending = "") {
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = log.find(text, at)) != std::string::npos) {
    size_t begin = log.rfind('\n', at);
    begin = begin == std::string::npos ? 0 : begin + 1;
    size_t end = log.find('\n', at);
    std::string line = log.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    if (line.size() >= ending.size() && line.compare(line.size() - ending.size(), ending.size(), ending) == 0) {
      out.push_back(line.substr(0, line.find(' ')));
    }
    at += text.size();
  }
  return out;
}

// When the job of `doc` started (each run) in an instance's log.
std::vector<std::string> Starts(const std::string& log, const std::string& doc) {
  return LogTimes(log, "[_replicator/" + doc + " ", "] started");
}

// Continuous replication documents cont-000.. with a source of 3 documents each.
void SetUpContinuous(TestServer& server, CouchClient& rep, int n) {
  auto root = ServerClient(server);
  std::vector<std::string> docs;
  for (int i = 0; i < n; ++i) {
    CouchClient src = root.Database("csrc-" + Num(i));
    REQUIRE(src.CreateDb().ok());
    PutPlainDocs(src, 0, 3, "c");
    docs.push_back("{\"_id\":\"cont-" + Num(i) + "\"," +
                   RepDocJson("csrc-" + Num(i), "ctgt-" + Num(i), true).substr(1));
  }
  REQUIRE(rep.BulkDocs(docs, true).ok());
}

// Every one of the n documents shown by exactly one instance, running, with a
// checkpoint past 0; `who` gets the owners.
bool AllRunningOnce(const std::map<std::string, int>& ports, int n,
                    std::map<std::string, std::string>& who) {
  who.clear();
  for (const auto& [name, port] : ports) {
    for (const auto& [doc, state] : StatusDocs(port)) {
      if (state != "running" || who.count(doc)) return false;
      who[doc] = name;
    }
  }
  if (static_cast<int>(who.size()) != n) return false;
  for (const auto& [doc, name] : who) {
    std::string seq = JobField(ports.at(name), doc, {"info", "checkpointed_source_seq"});
    if (seq.empty() || seq == "0" || seq[0] == '<') return false;
  }
  return true;
}

// A new document on each document's source arrives on its target.
bool NewDocumentsArrive(TestServer& server, const std::vector<std::string>& docs,
                        const std::string& id) {
  auto root = ServerClient(server);
  for (const auto& doc : docs) {
    CouchClient src = root.Database("csrc-" + doc.substr(5));
    REQUIRE(src.PutDoc(id, "{\"late\":true}").ok());
  }
  return WaitUntil([&] {
    for (const auto& doc : docs) {
      if (!root.Database("ctgt-" + doc.substr(5)).GetDoc(id).ok()) return false;
    }
    return true;
  }, 60s);
}

}  // namespace

TEST_CASE("cluster: 3 instances share 300 documents, each run by exactly one; kill -9 moves its jobs, resumed from their checkpoints") {
  ClusterSetUp set_up({"a", "b", "c"});
  auto& [server, root, rep, cluster] = set_up;
  auto& [serves, ports] = cluster;
  SetUpDocuments(server, rep);

  // Every document on exactly one instance: one-shot ones completed (in the
  // document, written back by their owner), continuous ones running.
  std::map<std::string, std::vector<std::string>> who;
  bool settled = WaitUntil([&] {
    who.clear();
    std::map<std::string, std::string> state;
    for (const auto& [name, port] : ports) {
      for (const auto& [doc, st] : StatusDocs(port)) {
        who[doc].push_back(name);
        state[doc] = st;
      }
    }
    if (who.size() != kOneShot + kContinuous) return false;
    for (const auto& [doc, names] : who) {
      if (names.size() != 1) return false;
      if (state[doc] != (doc.rfind("once-", 0) == 0 ? "completed" : "running")) return false;
    }
    return true;
  }, 90s);
  if (!settled) {
    int multiple = 0;
    std::map<std::string, int> states;
    for (const auto& [doc, names] : who) {
      multiple += names.size() != 1;
      for (const auto& n : names) ++states[StatusDocs(ports[n])[doc]];
    }
    std::string st;
    for (const auto& [k, v] : states) st += k + "=" + std::to_string(v) + " ";
    MESSAGE("shown: " << who.size() << ", by several: " << multiple << ", states: " << st);
    for (const auto& [name, port] : ports) MESSAGE(name << ": " << StatusGet(port, "/_cluster").body);
    MESSAGE(serves["a"]->Log().substr(0, 20000));
  }
  REQUIRE(settled);
  std::map<std::string, int> count;
  for (const auto& [doc, names] : who) ++count[names[0]];
  for (const auto& [name, n] : count) {
    INFO(name << " runs " << n);
    CHECK(n >= 80);  // 100 each: ±20 %
    CHECK(n <= 120);
  }
  CHECK(count.size() == 3);
  for (int i = 0; i < kOneShot; ++i) {
    CHECK(StateOf(rep, "once-" + Num(i)) == "completed");
  }
  // The coordination database holds one lease per document, each with its runner.
  CouchClient coord = root.Database("couchrepd");
  for (const std::string doc : {"once-000", "cont-000", "cont-149"}) {
    auto lease = coord.GetDoc("lease:_replicator:" + doc);
    REQUIRE(lease.ok());
    CHECK(JsonText(*lease, {"holder"}) == who[doc][0]);
  }
  // /metrics of each instance: its own leases.
  for (const auto& [name, port] : ports) {
    CHECK(MetricSum(port, "couchrepd_cluster_leases_held") == count[name]);
    CHECK(MetricSum(port, "couchrepd_cluster_members") == 3);
  }

  // Every continuous job of "c" has a checkpoint past the start.
  std::vector<std::string> moved;
  for (int i = 0; i < kContinuous; ++i) {
    if (who["cont-" + Num(i)][0] == "c") moved.push_back("cont-" + Num(i));
  }
  REQUIRE(!moved.empty());
  REQUIRE(WaitUntil([&] {
    for (const auto& doc : moved) {
      std::string seq = JobField(ports["c"], doc, {"info", "checkpointed_source_seq"});
      if (seq.empty() || seq == "0" || seq[0] == '<') return false;
    }
    return true;
  }, 60s));

  // kill -9 "c"; then write to the sources of its continuous documents.
  server.Request("DELETE", "/_test/requests");
  serves["c"]->process().Signal(SIGKILL);
  serves["c"]->process().Wait(10s);
  ports.erase("c");
  auto killed = std::chrono::steady_clock::now();
  for (const auto& doc : moved) {
    CouchClient src = root.Database("csrc-" + doc.substr(5));
    REQUIRE(src.PutDoc("after-kill", "{\"late\":true}").ok());
  }
  // Within lease_ttl (4 s) plus a heartbeat, plus the scheduler's pass, the
  // others run c's jobs and the new documents arrive.
  bool arrived = WaitUntil([&] {
    for (const auto& doc : moved) {
      CouchClient tgt = root.Database("ctgt-" + doc.substr(5));
      if (!tgt.GetDoc("after-kill").ok()) return false;
    }
    return true;
  }, 60s);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  MESSAGE("c's " << moved.size() << " continuous jobs moved and caught up " << took << " s after kill -9");
  REQUIRE(arrived);
  who = WhoShows(ports);
  CHECK(who.size() == kOneShot + kContinuous);
  for (const auto& [doc, names] : who) {
    INFO(doc);
    CHECK(names.size() == 1);
  }
  // Resumed from their checkpoints: the first _changes of each moved job's
  // source after the kill started past 0.
  for (const auto& doc : moved) {
    std::string since = SinceOf(FirstQuery(server, "%5E%2Fcsrc-" + doc.substr(5) + "%2F_changes"));
    INFO(doc << " since=" << since);
    CHECK(!since.empty());
    CHECK(since != "0");
  }
  for (const auto& [name, port] : ports) {
    CHECK(LiveMembers(port) == std::set<std::string>{"a", "b"});
  }
}

TEST_CASE("cluster: a fourth instance joins; each moved job checkpoints and stops on its old owner before it starts on the new one") {
  constexpr int kDocs = 80;
  ClusterSetUp set_up({"a", "b", "c"});
  auto& [server, root, rep, cluster] = set_up;
  auto& [serves, ports] = cluster;
  SetUpContinuous(server, rep, kDocs);
  std::map<std::string, std::string> before;
  REQUIRE(WaitUntil([&] { return AllRunningOnce(ports, kDocs, before); }, 90s));

  cluster.Start("d", ClusterConfig(server, "d"));
  std::map<std::string, std::string> after;
  // Settled: every instance sees the four, and each runs what it owns.
  bool moved_all = WaitUntil([&] {
    for (const auto& [name, port] : ports) {
      if (LiveMembers(port).size() != 4) return false;
    }
    if (!AllRunningOnce(ports, kDocs, after)) return false;
    for (const auto& [name, port] : ports) {
      int runs = std::count_if(after.begin(), after.end(), [&](const auto& e) { return e.second == name; });
      if (runs != Owns(port, name)) return false;
    }
    return true;
  }, 90s);
  INFO(serves["d"]->Log().substr(0, 5000));
  REQUIRE(moved_all);
  std::vector<std::string> moved;
  for (const auto& [doc, owner] : after) {
    // Rendezvous hashing: only documents the newcomer wins move, and only to it.
    if (owner != before[doc]) {
      CHECK(owner == "d");
      moved.push_back(doc);
    }
  }
  MESSAGE(moved.size() << " of " << kDocs << " documents moved to the fourth instance");
  CHECK(moved.size() >= static_cast<size_t>(kDocs / 4 * 0.6));
  CHECK(moved.size() <= static_cast<size_t>(kDocs / 4 * 1.4));
  for (const auto& doc : moved) {
    INFO(doc << " moved from " << before[doc]);
    auto stopped = LogTimes(serves[before[doc]]->Log(), "cluster: _replicator/" + doc + " stopped here");
    auto started = Starts(serves["d"]->Log(), doc);
    REQUIRE(stopped.size() == 1);
    REQUIRE(!started.empty());
    // RFC 3339 UTC with milliseconds, one machine's clock: text order is time order.
    CHECK(stopped[0] <= started.front());
  }
  // The moved jobs go on from where they were: new documents arrive.
  CHECK(NewDocumentsArrive(server, moved, "after-join"));
  for (const auto& [name, port] : ports) CHECK(LiveMembers(port).size() == 4);

  // SIGTERM: d gives its leases back (holder "") and deletes its heartbeat
  // document before it exits, so the others need not wait until they judge
  // it dead.
  serves["d"]->process().Signal(SIGTERM);
  REQUIRE(serves["d"]->process().Wait(15s).has_value());
  auto stopped = std::chrono::steady_clock::now();
  ports.erase("d");
  CouchClient coord = root.Database("couchrepd");
  CHECK_FALSE(coord.GetDoc("member:d").ok());
  for (const auto& doc : moved) {
    auto lease = coord.GetDoc("lease:_replicator:" + doc);
    REQUIRE(lease.ok());
    CHECK(JsonText(*lease, {"holder"}) != "d");
  }
  std::map<std::string, std::string> back;
  REQUIRE(WaitUntil([&] { return AllRunningOnce(ports, kDocs, back); }, 30s));
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  MESSAGE("after SIGTERM of d, all " << kDocs << " documents ran on a, b, c again " << took << " s later");
  CHECK(back == before);
}

TEST_CASE("cluster: an instance cut off from the server stops its jobs before its leases expire; the others take over; it rejoins without double runs") {
  constexpr int kDocs = 60;
  TestServer server;
  FaultProxy proxy(server.url());
  auto root = ServerClient(server);
  CouchClient rep = root.Database("_replicator");
  Instances cluster;
  auto& [serves, ports] = cluster;
  for (const std::string name : {"a", "b", "c"}) {
    std::string config = ClusterConfig(server, name);
    if (name == "c") config.replace(config.find(server.url()), server.url().size(), proxy.url());
    cluster.Start(name, config);
  }
  REQUIRE(WaitUntil([&] { return AllLive(cluster); }, 30s));
  SetUpContinuous(server, rep, kDocs);
  std::map<std::string, std::string> before;
  REQUIRE(WaitUntil([&] { return AllRunningOnce(ports, kDocs, before); }, 90s));
  std::vector<std::string> on_c;
  for (const auto& [doc, owner] : before) {
    if (owner == "c") on_c.push_back(doc);
  }
  REQUIRE(!on_c.empty());

  proxy.Blackhole(true);
  std::map<std::string, int> ab = {{"a", ports["a"]}, {"b", ports["b"]}};
  std::map<std::string, std::string> cut;
  bool taken = WaitUntil([&] { return AllRunningOnce(ab, kDocs, cut); }, 60s);
  INFO(serves["c"]->Log().substr(serves["c"]->Log().size() > 8000 ? serves["c"]->Log().size() - 8000 : 0));
  REQUIRE(taken);
  CHECK(StatusDocs(ports["c"]).empty());  // its status API still answers: no jobs
  for (const auto& doc : on_c) {
    INFO(doc);
    auto gave_up = LogTimes(serves["c"]->Log(), "cluster: _replicator/" + doc + ": could not renew its lease in time");
    auto started = Starts(serves[cut[doc]]->Log(), doc);
    REQUIRE(gave_up.size() == 1);
    REQUIRE(!started.empty());
    CHECK(gave_up[0] < started.back());
  }
  CHECK(NewDocumentsArrive(server, on_c, "while-cut"));

  // Back: it rejoins and gets its documents again, each after the instance
  // that ran it meanwhile stopped it.
  proxy.Blackhole(false);
  std::map<std::string, std::string> back;
  REQUIRE(WaitUntil([&] {
    return AllRunningOnce(ports, kDocs, back) && back == before;
  }, 90s));
  for (const auto& doc : on_c) {
    INFO(doc);
    auto stopped = LogTimes(serves[cut[doc]]->Log(), "cluster: _replicator/" + doc + " stopped here");
    auto started = Starts(serves["c"]->Log(), doc);
    REQUIRE(stopped.size() == 1);
    REQUIRE(started.size() >= 2);
    CHECK(stopped[0] <= started.back());
  }
  CHECK(NewDocumentsArrive(server, on_c, "after-rejoin"));
  if (const char* dump = std::getenv("COUCHREPD_TEST_DUMP_LOGS")) {
    for (auto& [name, serve] : serves) std::ofstream(std::string(dump) + "-" + name + ".log") << serve->Log();
  }
  CHECK(MetricSum(ports["c"], "couchrepd_cluster_leases_lost_total") == static_cast<double>(on_c.size()));
}

TEST_CASE("cluster: the heartbeat document of a member dead for 10 lease_ttl is deleted; it leaves /_cluster") {
  TestServer server;
  auto root = ServerClient(server);
  CouchClient coord = root.Database("couchrepd");
  REQUIRE(coord.CreateDb().ok());
  // A member that died long ago (its document never changes again).
  REQUIRE(coord.PutDoc("member:ghost", "{\"type\":\"member\",\"instance_id\":\"ghost\"}").ok());
  std::string config = ServeConfig(server, "", "cluster:\n  enabled: true\n  instance_id: a\n"
                                               "  heartbeat: 100ms\n  lease_ttl: 300ms\n");
  ServeProcess serve(config);
  int port = StatusPort(serve);
  // First listed as a member, then dead once 300 ms pass without a change (by this
  // instance's clock, from when it first saw the document), still listed...
  auto listed = [&] { return StatusGet(port, "/_cluster").body.find("\"ghost\"") != std::string::npos; };
  REQUIRE(WaitUntil(listed, 20s));
  CHECK(WaitUntil([&] { return LiveMembers(port) == std::set<std::string>{"a"} && listed(); }, 2s));
  // ... then, 3 s (10 x lease_ttl) after it was first seen, gone.
  REQUIRE(WaitUntil([&] { return !coord.GetDoc("member:ghost").ok(); }, 20s));
  CHECK(WaitUntil([&] { return StatusGet(port, "/_cluster").body.find("\"ghost\"") == std::string::npos; }, 5s));
  CHECK(serve.Log().find("member ghost has been dead for 3 s") != std::string::npos);
  // This instance's own document stays.
  CHECK(coord.GetDoc("member:a").ok());
}

TEST_CASE("cluster: two documents for one replication on two instances run it once; the duplicate takes over when the triggering document goes, and defers to it after a failover") {
  constexpr int kPairs = 8;
  ClusterSetUp set_up({"a", "b"});
  auto& [server, root, rep, cluster] = set_up;
  auto& [serves, ports] = cluster;

  // Pair i: x owned by a and y owned by b (rendezvous hashing over {a, b}),
  // both csrc-i -> ctgt-i, continuous: one replication id.
  auto owned_by = [](const std::string& prefix, const std::string& owner) {
    for (int n = 0;; ++n) {
      std::string id = prefix + "-" + std::to_string(n);
      if (*cluster::OwnerOf({"a", "b"}, DocKey{"_replicator", id}) == owner) return id;
    }
  };
  std::vector<std::string> xs, ys;
  for (int i = 0; i < kPairs; ++i) {
    xs.push_back(owned_by("x" + Num(i), "a"));
    ys.push_back(owned_by("y" + Num(i), "b"));
    CouchClient src = root.Database("csrc-" + Num(i));
    REQUIRE(src.CreateDb().ok());
    PutPlainDocs(src, 0, 3, "c");
    REQUIRE(rep.PutDoc(xs[i], RepDocJson("csrc-" + Num(i), "ctgt-" + Num(i), true)).ok());
  }
  auto checkpointed = [&](int port, const std::string& doc) {
    std::string seq = JobField(port, doc, {"info", "checkpointed_source_seq"});
    return !seq.empty() && seq != "0" && seq[0] != '<';
  };
  REQUIRE(WaitUntil([&] {
    for (const auto& x : xs) {
      if (!checkpointed(ports["a"], x)) return false;
    }
    return true;
  }, 60s));
  for (int i = 0; i < kPairs; ++i) {
    REQUIRE(rep.PutDoc(ys[i], RepDocJson("csrc-" + Num(i), "ctgt-" + Num(i), true)).ok());
  }

  // Each y is a duplicate on b: it gets the replication id in the document
  // (classic), no state, and b runs no job.
  bool deferred = WaitUntil([&] {
    auto shown = StatusDocs(ports["b"]);
    for (const auto& y : ys) {
      if (shown[y] != "duplicate") return false;
      auto doc = rep.GetDoc(y);
      if (!doc.ok() || JsonText(*doc, {"_replication_id"}) == "<missing>") return false;
    }
    return true;
  }, 60s);
  INFO(StatusGet(ports["b"], "/_scheduler/docs/_replicator").body);
  REQUIRE(deferred);
  for (int i = 0; i < kPairs; ++i) {
    INFO(ys[i]);
    std::string id = JobField(ports["a"], xs[i], {"id"});
    CHECK(JsonText(*rep.GetDoc(ys[i]), {"_replication_id"}) == id);
    CHECK(JsonText(*rep.GetDoc(ys[i]), {"_replication_state"}) == "<missing>");
    CHECK(JobField(ports["b"], ys[i], {"info", "reason"}) ==
          "replication " + id + " runs on instance a for _replicator/" + xs[i]);
    CHECK(root.Database("couchrepd").GetDoc("job:" + id).ok());
  }
  CHECK(JsonText(StatusGet(ports["b"], "/_scheduler/jobs").body, {"total_rows"}) == "0");
  CHECK(JsonText(StatusGet(ports["a"], "/_scheduler/jobs").body, {"total_rows"}) == std::to_string(kPairs));
  // The cluster view is published after each coordination pass.
  CHECK(WaitUntil([&] {
    return MetricSum(ports["a"], "couchrepd_cluster_job_leases_held") == kPairs &&
           MetricSum(ports["b"], "couchrepd_cluster_duplicates_elsewhere") == kPairs;
  }, 10s));
  CHECK(JsonText(StatusGet(ports["b"], "/_cluster").body, {"duplicates_elsewhere"}) == std::to_string(kPairs));
  CHECK(JsonText(StatusGet(ports["a"], "/_cluster").body, {"job_leases_held"}) == std::to_string(kPairs));

  // The triggering documents of the first half go: their duplicates take over
  // on b and continue from the checkpoints a wrote.
  constexpr int kHalf = kPairs / 2;
  server.Request("DELETE", "/_test/requests");
  for (int i = 0; i < kHalf; ++i) {
    auto doc = rep.GetDoc(xs[i]);
    REQUIRE(doc.ok());
    REQUIRE(rep.DeleteDoc(xs[i], JsonText(*doc, {"_rev"})).ok());
  }
  bool took_over = WaitUntil([&] {
    for (int i = 0; i < kHalf; ++i) {
      if (!checkpointed(ports["b"], ys[i])) return false;
    }
    return true;
  }, 60s);
  INFO(serves["b"]->Log().substr(serves["b"]->Log().size() > 8000 ? serves["b"]->Log().size() - 8000 : 0));
  REQUIRE(took_over);
  for (int i = 0; i < kHalf; ++i) {
    INFO(ys[i]);
    CHECK(StatusDocs(ports["b"])[ys[i]] == "running");
    std::string since = SinceOf(FirstQuery(server, "%5E%2Fcsrc-" + Num(i) + "%2F_changes"));
    CHECK(!since.empty());
    CHECK(since != "0");
    REQUIRE(root.Database("csrc-" + Num(i)).PutDoc("after-takeover", "{}").ok());
  }
  CHECK(WaitUntil([&] {
    for (int i = 0; i < kHalf; ++i) {
      if (!root.Database("ctgt-" + Num(i)).GetDoc("after-takeover").ok()) return false;
    }
    return true;
  }, 60s));
  CHECK(StatusDocs(ports["a"]).size() == kHalf);

  // kill -9 a: its triggering documents move to b and get their replications
  // back; their duplicates stay duplicates.
  serves["a"]->process().Signal(SIGKILL);
  serves["a"]->process().Wait(10s);
  ports.erase("a");
  bool moved = WaitUntil([&] {
    auto shown = StatusDocs(ports["b"]);
    for (int i = kHalf; i < kPairs; ++i) {
      if (shown[xs[i]] != "running" || shown[ys[i]] != "duplicate") return false;
    }
    return true;
  }, 60s);
  INFO(StatusGet(ports["b"], "/_scheduler/docs/_replicator").body);
  REQUIRE(moved);
  CHECK(JsonText(StatusGet(ports["b"], "/_scheduler/jobs").body, {"total_rows"}) == std::to_string(kPairs));
  for (int i = kHalf; i < kPairs; ++i) {
    REQUIRE(root.Database("csrc-" + Num(i)).PutDoc("after-failover", "{}").ok());
  }
  CHECK(WaitUntil([&] {
    for (int i = kHalf; i < kPairs; ++i) {
      if (!root.Database("ctgt-" + Num(i)).GetDoc("after-failover").ok()) return false;
    }
    return true;
  }, 60s));
}

TEST_CASE("cluster: slow lease writes (a busy server) do not delay the heartbeat: no lease is given up") {
  constexpr int kDocs = 10;
  TestServer server;
  auto root = ServerClient(server);
  CouchClient rep = root.Database("_replicator");
  Instances cluster;
  cluster.Start("a", ClusterConfig(server, "a"));
  REQUIRE(WaitUntil([&] { return AllLive(cluster); }, 30s));
  // Every lease and job lease write takes 3 s, more than lease_ttl - 2 x heartbeat (2 s);
  // the heartbeat (a PUT of member:a) is not slowed.
  auto faults = server.Request("POST", "/_test/faults",
                               R"({"method":"POST","path":"^/couchrepd/_bulk_docs","delay_ms":3000,"count":40})");
  REQUIRE(faults.status == 201);
  SetUpContinuous(server, rep, kDocs);
  std::map<std::string, std::string> who;
  REQUIRE(WaitUntil([&] { return AllRunningOnce(cluster.ports, kDocs, who); }, 60s));
  // A few more heartbeats with the writes still slow.
  auto more = server.Request("POST", "/_test/faults",
                             R"({"method":"POST","path":"^/couchrepd/_bulk_docs","delay_ms":3000,"count":40})");
  REQUIRE(more.status == 201);
  REQUIRE(rep.PutDoc("cont-extra", RepDocJson("csrc-000", "ctgt-extra", true)).ok());
  REQUIRE(WaitUntil([&] { return AllRunningOnce(cluster.ports, kDocs + 1, who); }, 60s));
  const std::string log = cluster.serves["a"]->Log();
  INFO(log.substr(log.size() > 6000 ? log.size() - 6000 : 0));
  CHECK(log.find("could not renew") == std::string::npos);
  CHECK(MetricSum(cluster.ports["a"], "couchrepd_cluster_leases_lost_total") == 0);
  CHECK(MetricSum(cluster.ports["a"], "couchrepd_cluster_leases_held") == kDocs + 1);
}

TEST_CASE("cluster: slow coordination writes between two reads do not make a live member look dead") {
  constexpr int kDocs = 20;
  ClusterSetUp set_up({"a", "b"});
  auto& [server, root, rep, cluster] = set_up;
  // Every lease write (takes, job leases, their release as one-shot jobs complete) takes
  // 4.5 s, longer than lease_ttl (4 s); the heartbeats are not slowed, so both members
  // stay live. A member that judged liveness after such a write, by the time it last read
  // the others' heartbeats, would see the other dead and take its documents.
  auto faults = server.Request("POST", "/_test/faults",
                               R"({"method":"POST","path":"^/couchrepd/_bulk_docs","delay_ms":4500,"count":200})");
  REQUIRE(faults.status == 201);
  CouchClient src = root.Database("osrc-000");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 4, "o");
  std::vector<std::string> docs;
  for (int i = 0; i < kDocs; ++i) {
    docs.push_back("{\"_id\":\"once-" + Num(i) + "\"," + RepDocJson("osrc-000", "otgt-" + Num(i), false).substr(1));
  }
  REQUIRE(rep.BulkDocs(docs, true).ok());
  bool done = WaitUntil([&] {
    for (int i = 0; i < kDocs; ++i) {
      if (StateOf(rep, "once-" + Num(i)) != "completed") return false;
    }
    return true;
  }, 120s);
  REQUIRE(done);
  // A few more passes with completions' job leases given back meanwhile.
  std::this_thread::sleep_for(6s);
  for (const auto& [name, serve] : cluster.serves) {
    const std::string log = serve->Log();
    INFO(name << ": " << log.substr(log.size() > 6000 ? log.size() - 6000 : 0));
    CHECK(log.find("taken by another member") == std::string::npos);
    CHECK(MetricSum(cluster.ports[name], "couchrepd_cluster_leases_lost_total") == 0);
  }
  CHECK(AllLive(cluster));
  auto who = WhoShows(cluster.ports);
  CHECK(who.size() == kDocs);
  for (const auto& [doc, names] : who) {
    INFO(doc);
    CHECK(names.size() == 1);
  }
}

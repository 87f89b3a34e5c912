// Several couchrepd instances against one test server (issue 11, SPEC §9):
// each replication document runs on exactly one live instance, decided by
// rendezvous hashing and lease documents in the coordination database; a
// killed instance's jobs move to the others and resume from their
// checkpoints. Real processes, real test server.
#include <simdjson.h>

#include <map>
#include <set>

#include "integration/serve_helpers.h"
#include "integration/status_helpers.h"

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

}  // namespace

TEST_CASE("cluster: 3 instances share 300 documents, each run by exactly one; kill -9 moves its jobs, resumed from their checkpoints") {
  TestServer server;
  auto root = ServerClient(server);
  CouchClient rep = root.Database("_replicator");
  std::map<std::string, std::unique_ptr<ServeProcess>> serves;
  std::map<std::string, int> ports;
  for (const std::string name : {"a", "b", "c"}) {
    serves[name] = std::make_unique<ServeProcess>(ClusterConfig(server, name));
    ports[name] = StatusPort(*serves[name]);
  }
  REQUIRE(WaitUntil([&] {
    for (const auto& [name, port] : ports) {
      if (LiveMembers(port) != std::set<std::string>{"a", "b", "c"}) return false;
    }
    return true;
  }, 30s));
  SetUpDocuments(server, rep);

  // Every document on exactly one instance: one-shot ones completed (in the
  // document, written back by their owner), continuous ones running.
  std::map<std::string, std::vector<std::string>> who;
  bool settled = WaitUntil([&] {
    who = WhoShows(ports);
    if (who.size() != kOneShot + kContinuous) return false;
    for (const auto& [doc, names] : who) {
      if (names.size() != 1) return false;
    }
    for (int i = 0; i < kOneShot; ++i) {
      if (StatusDocs(ports[who["once-" + Num(i)][0]]).at("once-" + Num(i)) != "completed") return false;
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

// The status API of a real `couchrepd serve` against a real test server
// (SPEC §7, §8): CouchDB-shaped `_scheduler/jobs`, `_scheduler/docs`,
// `_active_tasks`, operator actions, `/metrics`, `/health`, basic auth, and
// no credential anywhere.
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>

#include "couchrepd/encoding.h"
#include "couchrepd/http_metrics.h"
#include "couchrepd/url.h"
#include "integration/serve_helpers.h"
#include "support/prometheus_text.h"
#include "support/recordings.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

struct Reply {
  int status = 0;  // 0: no answer
  std::string body;
  std::string content_type;
  std::string www_authenticate;
};

class StatusClient {
 public:
  explicit StatusClient(int port, std::string user = "", std::string password = "")
      : port_(port), user_(std::move(user)), password_(std::move(password)) {}

  // `path` is sent exactly as given (escape it yourself).
  Reply Get(const std::string& path) { return Send("GET", path); }
  Reply Post(const std::string& path) { return Send("POST", path); }

 private:
  Reply Send(const std::string& method, const std::string& path) {
    httplib::Client c("127.0.0.1", port_);
    c.set_url_encode(false);
    c.set_read_timeout(20, 0);
    if (!user_.empty()) c.set_basic_auth(user_, password_);
    auto res = method == "GET" ? c.Get(path) : c.Post(path, "", "application/json");
    Reply r;
    if (!res) return r;
    r.status = res->status;
    r.body = res->body;
    r.content_type = res->get_header_value("Content-Type");
    r.www_authenticate = res->get_header_value("WWW-Authenticate");
    return r;
  }
  int port_;
  std::string user_, password_;
};

// Adds `extra` (indented YAML) to the config's status section.
std::string WithStatus(std::string config, const std::string& extra) {
  const std::string from = "status:\n  listen: 127.0.0.1:0\n";
  size_t at = config.find(from);
  REQUIRE(at != std::string::npos);
  return config.replace(at, from.size(), from + extra);
}

std::string WithBackoff(std::string config, const std::string& backoff) {
  const std::string from = "backoff: {initial: 1s, max: 2s}";
  size_t at = config.find(from);
  REQUIRE(at != std::string::npos);
  return config.replace(at, from.size(), backoff);
}

// JSON access by path; "[n]" steps into arrays. "<missing>" when absent;
// strings unquoted, anything else as compact JSON.
std::string J(const std::string& json, const std::vector<std::string>& path) {
  simdjson::dom::parser p;
  simdjson::dom::element el;
  if (p.parse(json).get(el) != simdjson::SUCCESS) return "<bad json>";
  for (const auto& k : path) {
    if (!k.empty() && k[0] == '[') {
      if (el.at(std::stoul(k.substr(1))).get(el) != simdjson::SUCCESS) return "<missing>";
    } else if (el.at_key(k).get(el) != simdjson::SUCCESS) {
      return "<missing>";
    }
  }
  std::string_view s;
  if (el.get(s) == simdjson::SUCCESS) return std::string(s);
  return std::string(simdjson::minify(el));
}

size_t ArraySize(const std::string& json, const std::vector<std::string>& path) {
  simdjson::dom::parser p;
  simdjson::dom::element el;
  if (p.parse(json).get(el) != simdjson::SUCCESS) return 0;
  for (const auto& k : path) {
    if (el.at_key(k).get(el) != simdjson::SUCCESS) return 0;
  }
  simdjson::dom::array a;
  if (el.get(a) != simdjson::SUCCESS) return 0;
  return a.size();
}

std::vector<std::string> Keys(const std::string& json) {
  simdjson::dom::parser p;
  simdjson::dom::object o;
  std::vector<std::string> keys;
  if (p.parse(json).get(o) != simdjson::SUCCESS) return keys;
  for (auto f : o) keys.emplace_back(f.key);
  return keys;
}

std::set<std::string> KeySet(const std::string& json) {
  auto k = Keys(json);
  return {k.begin(), k.end()};
}

std::set<std::string> Minus(std::set<std::string> a, const std::set<std::string>& b) {
  for (const auto& k : b) a.erase(k);
  return a;
}

// 2026-11-23T15:35:47Z
bool IsRfc3339(const std::string& s) {
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != 'Z') {
    return false;
  }
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18}) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// The object of `array_key` in `json` whose `key` is `value`.
std::string Find(const std::string& json, const std::string& array_key, const std::string& key,
                 const std::string& value) {
  size_t n = array_key.empty() ? 0 : ArraySize(json, {array_key});
  if (array_key.empty()) {
    simdjson::dom::parser p;
    simdjson::dom::array a;
    if (p.parse(json).get(a) == simdjson::SUCCESS) n = a.size();
  }
  for (size_t i = 0; i < n; ++i) {
    std::vector<std::string> at =
        array_key.empty() ? std::vector<std::string>{"[" + std::to_string(i) + "]"}
                          : std::vector<std::string>{array_key, "[" + std::to_string(i) + "]"};
    std::string item = J(json, at);
    if (J(item, {key}) == value) return item;
  }
  return "";
}

std::string DocState(StatusClient& status, const std::string& db_path, const std::string& doc) {
  Reply r = status.Get("/_scheduler/docs/" + db_path + "/" + doc);
  return r.status == 200 ? J(r.body, {"state"}) : "<" + std::to_string(r.status) + ">";
}

bool WaitForDocState(StatusClient& status, const std::string& doc, const std::string& state,
                     std::chrono::milliseconds timeout = 30s) {
  return WaitUntil([&] { return DocState(status, "_replicator", doc) == state; }, timeout);
}

std::string RepDoc(const TestServer& s, const std::string& src, const std::string& tgt,
                   const std::string& extra = "") {
  return "{\"source\":\"" + s.url() + "/" + src + "\",\"target\":\"" + s.url() + "/" + tgt + "\"" +
         (extra.empty() ? "" : "," + extra) + "}";
}

// Runs promtool when it is installed (Debian's `prometheus` package).
void CheckWithPromtool(const std::string& metrics) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    MESSAGE("promtool not installed: `promtool check metrics` skipped (the strict parser ran)");
    return;
  }
  char in_path[] = "/tmp/couchrepd-metrics-XXXXXX";
  int fd = mkstemp(in_path);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(in_path, std::ios::binary) << metrics;
  std::string out_path = std::string(in_path) + ".out";
  int rc = std::system(
      ("promtool check metrics < " + std::string(in_path) + " > " + out_path + " 2>&1").c_str());
  std::ifstream out_file(out_path);
  std::string output((std::istreambuf_iterator<char>(out_file)), std::istreambuf_iterator<char>());
  std::remove(in_path);
  std::remove(out_path.c_str());
  INFO("promtool: " << output);
  CHECK(rc == 0);
  CHECK(output.empty());  // no lint warnings either
}

}  // namespace

TEST_CASE("status API: jobs, docs and active tasks of real jobs, field by field") {
  TestServer server;
  auto root = ServerClient(server);
  auto one_src = root.Database("st-one-src");
  REQUIRE(one_src.CreateDb().ok());
  PutPlainDocs(one_src, 0, 30);
  auto cont_src = root.Database("st-cont-src");
  REQUIRE(cont_src.CreateDb().ok());
  PutPlainDocs(cont_src, 0, 20);
  ServeProcess serve(
      WithBackoff(ServeConfig(server, "  databases: [_replicator, team/_replicator]\n"),
                  "backoff: {initial: 60s, max: 120s}"));
  int port = StatusPort(serve);
  StatusClient status(port);
  auto rep = root.Database("_replicator");
  auto team = root.Database("team/_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok() && team.GetDbInfo().ok(); }, 15s));

  std::string cont_body =
      RepDoc(server, "st-cont-src", "st-cont-tgt", "\"create_target\":true,\"continuous\":true");
  REQUIRE(rep.PutDoc("once", RepDoc(server, "st-one-src", "st-one-tgt", "\"create_target\":true"))
              .ok());
  REQUIRE(rep.PutDoc("cont", cont_body).ok());
  REQUIRE(
      rep.PutDoc("crash", RepDoc(server, "st-nosuch-src", "st-crash-tgt", "\"create_target\":true"))
          .ok());
  REQUIRE(rep.PutDoc("bad", R"({"target":"http://127.0.0.1:1/x"})").ok());
  REQUIRE(WaitForState(rep, "cont", "triggered"));
  REQUIRE(rep.PutDoc("dup", cont_body).ok());
  REQUIRE(team.PutDoc("a/b", RepDoc(server, "st-one-src", "st-team-tgt", "\"create_target\":true"))
              .ok());

  REQUIRE(WaitForState(rep, "once", "completed"));
  REQUIRE(WaitForState(team, "a/b", "completed"));
  REQUIRE(WaitForDocState(status, "crash", "crashing"));
  REQUIRE(WaitForDocState(status, "bad", "failed"));
  REQUIRE(WaitForDocState(status, "dup", "duplicate"));
  REQUIRE(WaitForDocState(status, "cont", "running"));
  auto cont_tgt = root.Database("st-cont-tgt");
  REQUIRE(WaitUntil([&] { return DocCount(cont_tgt) == 20; }, 20s));
  std::string cont_id = JsonText(*rep.GetDoc("cont"), {"_replication_id"});
  std::string once_id = JsonText(*rep.GetDoc("once"), {"_replication_id"});
  REQUIRE(cont_id.find("+continuous+create_target") != std::string::npos);
  // The job's statistics settle once its batches are done, and the
  // completed jobs leave the scheduler (the status API shows a snapshot).
  REQUIRE(WaitUntil(
      [&] {
        Reply r = status.Get("/_scheduler/jobs");
        return J(Find(r.body, "jobs", "id", cont_id), {"info", "docs_written"}) == "20" &&
               J(r.body, {"total_rows"}) == "2";
      },
      15s));

  SUBCASE("_scheduler/jobs: the running and the crashing job, as CouchDB shows them") {
    Reply r = status.Get("/_scheduler/jobs");
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "application/json");
    INFO(r.body);
    CHECK(J(r.body, {"total_rows"}) == "2");  // completed jobs leave the scheduler
    CHECK(J(r.body, {"offset"}) == "0");
    CHECK(KeySet(r.body) == KeySet(ResponseBody("56-scheduler-jobs.http")));
    std::string cont = Find(r.body, "jobs", "id", cont_id);
    REQUIRE_FALSE(cont.empty());
    // Exactly CouchDB 3.4's members, in its order.
    CHECK(Keys(cont) == Keys(ResponseBody("57-scheduler-job-running.http")));
    CHECK(J(cont, {"database"}) == "_replicator");
    CHECK(J(cont, {"doc_id"}) == "cont");
    CHECK(J(cont, {"pid"}) == "null");
    CHECK(J(cont, {"user"}) == "null");
    CHECK(J(cont, {"node"}).rfind("couchrepd@", 0) == 0);
    CHECK(J(cont, {"source"}) == server.url() + "/st-cont-src/");
    CHECK(J(cont, {"target"}) == server.url() + "/st-cont-tgt/");
    CHECK(IsRfc3339(J(cont, {"start_time"})));
    std::string info = J(cont, {"info"});
    CHECK(KeySet(info) == Minus(KeySet(J(ResponseBody("57-scheduler-job-running.http"), {"info"})),
                                {"bulk_get_docs", "bulk_get_attempts"}));
    CHECK(J(info, {"docs_read"}) == "20");
    CHECK(J(info, {"docs_written"}) == "20");
    CHECK(J(info, {"revisions_checked"}) == "20");
    CHECK(J(info, {"missing_revisions_found"}) == "20");
    CHECK(J(info, {"doc_write_failures"}) == "0");
    CHECK(J(info, {"changes_pending"}) == "0");
    CHECK(J(info, {"source_seq"}) != "<missing>");
    CHECK(J(info, {"through_seq"}) == J(info, {"source_seq"}));
    CHECK(J(info, {"checkpointed_source_seq"}) != "<missing>");
    CHECK(J(cont, {"history", "[0]", "type"}) == "started");
    CHECK(J(cont, {"history", "[1]", "type"}) == "added");
    CHECK(IsRfc3339(J(cont, {"history", "[0]", "timestamp"})));
    CHECK(J(cont, {"history", "[0]", "reason"}) == "<missing>");

    std::string crash = Find(r.body, "jobs", "doc_id", "crash");
    REQUIRE_FALSE(crash.empty());
    CHECK(Keys(crash) == Keys(ResponseBody("58-scheduler-job-crashing.http")));
    CHECK(J(crash, {"info", "error"}).find("db_not_found") != std::string::npos);
    CHECK(J(crash, {"info", "error"}).find("st-nosuch-src") != std::string::npos);
    CHECK(J(crash, {"history", "[0]", "type"}) == "crashed");
    CHECK(J(crash, {"history", "[0]", "reason"}) == J(crash, {"info", "error"}));
    CHECK(J(crash, {"history", "[1]", "type"}) == "started");

    // One job, by id ('+' escaped as CouchDB clients send it, and raw).
    std::string escaped = cont_id;
    for (size_t at; (at = escaped.find('+')) != std::string::npos;) escaped.replace(at, 1, "%2B");
    Reply one = status.Get("/_scheduler/jobs/" + escaped);
    CHECK(one.status == 200);
    CHECK(J(one.body, {"id"}) == cont_id);
    CHECK(J(one.body, {"doc_id"}) == "cont");
    CHECK(status.Get("/_scheduler/jobs/" + cont_id).status == 200);
    Reply gone = status.Get("/_scheduler/jobs/" + once_id);
    CHECK(gone.status == 404);
    CHECK(gone.body == R"({"error":"not_found","reason":"unknown job id"})");
    CHECK(status.Get("/_scheduler/jobs/nosuchjob").status == 404);
  }

  SUBCASE("_scheduler/jobs pages with limit and skip, sorted by id") {
    Reply all = status.Get("/_scheduler/jobs");
    Reply first = status.Get("/_scheduler/jobs?limit=1");
    Reply second = status.Get("/_scheduler/jobs?limit=1&skip=1");
    CHECK(J(first.body, {"total_rows"}) == "2");
    CHECK(ArraySize(first.body, {"jobs"}) == 1);
    CHECK(J(second.body, {"offset"}) == "1");
    CHECK(J(first.body, {"jobs", "[0]", "id"}) == J(all.body, {"jobs", "[0]", "id"}));
    CHECK(J(second.body, {"jobs", "[0]", "id"}) == J(all.body, {"jobs", "[1]", "id"}));
    CHECK(J(all.body, {"jobs", "[0]", "id"}) < J(all.body, {"jobs", "[1]", "id"}));
    CHECK(ArraySize(status.Get("/_scheduler/jobs?skip=5").body, {"jobs"}) == 0);
    CHECK(status.Get("/_scheduler/jobs?limit=-1").status == 400);
    CHECK(status.Get("/_scheduler/jobs?skip=x").status == 400);
  }

  SUBCASE("_scheduler/docs: every document with its state") {
    Reply r = status.Get("/_scheduler/docs");
    REQUIRE(r.status == 200);
    INFO(r.body);
    CHECK(J(r.body, {"total_rows"}) == "6");
    std::map<std::string, std::string> states;
    for (size_t i = 0; i < ArraySize(r.body, {"docs"}); ++i) {
      std::string d = J(r.body, {"docs", "[" + std::to_string(i) + "]"});
      states[J(d, {"database"}) + "/" + J(d, {"doc_id"})] = J(d, {"state"});
    }
    CHECK(states == std::map<std::string, std::string>{{"_replicator/bad", "failed"},
                                                       {"_replicator/cont", "running"},
                                                       {"_replicator/crash", "crashing"},
                                                       {"_replicator/dup", "duplicate"},
                                                       {"_replicator/once", "completed"},
                                                       {"team/_replicator/a/b", "completed"}});
    std::string running = Find(r.body, "docs", "doc_id", "cont");
    const std::set<std::string> no_proxies = {"source_proxy", "target_proxy"};
    CHECK(KeySet(running) ==
          Minus(KeySet(ResponseBody("61-scheduler-doc-running.http")), no_proxies));
    CHECK(J(running, {"id"}) == cont_id);
    CHECK(J(running, {"source"}) == server.url() + "/st-cont-src/");
    CHECK(J(running, {"info", "docs_written"}) == "20");
    CHECK(J(running, {"error_count"}) == "0");
    CHECK(IsRfc3339(J(running, {"last_updated"})));
    CHECK(IsRfc3339(J(running, {"start_time"})));
    std::string crashing = Find(r.body, "docs", "doc_id", "crash");
    CHECK(KeySet(crashing) ==
          Minus(KeySet(ResponseBody("63-scheduler-doc-crashing.http")), no_proxies));
    CHECK(J(crashing, {"info", "error"}).find("db_not_found") != std::string::npos);
    CHECK(std::stoi(J(crashing, {"error_count"})) >= 1);
    std::string completed = Find(r.body, "docs", "doc_id", "once");
    CHECK(KeySet(completed) == KeySet(ResponseBody("62-scheduler-doc-completed.http")));
    CHECK(J(completed, {"id"}) == once_id);
    std::string bad = Find(r.body, "docs", "doc_id", "bad");
    CHECK(J(bad, {"id"}) == "null");
    CHECK(J(bad, {"info", "error"}).find("source") != std::string::npos);
    CHECK(J(bad, {"error_count"}) == "1");
    std::string dup = Find(r.body, "docs", "doc_id", "dup");
    CHECK(J(dup, {"id"}) == cont_id);
    CHECK(J(dup, {"info"}) == "null");

    Reply one = status.Get("/_scheduler/docs/_replicator/cont");
    CHECK(one.status == 200);
    CHECK(J(one.body, {"state"}) == "running");
    CHECK(status.Get("/_scheduler/docs/_replicator/nosuch").status == 404);
    CHECK(status.Get("/_scheduler/docs/nosuch%2F_replicator").status == 404);
    Reply db = status.Get("/_scheduler/docs/_replicator");
    CHECK(J(db.body, {"total_rows"}) == "5");
  }

  SUBCASE("_scheduler/docs: database names and document ids with '/', escaped or not") {
    for (const char* path :
         {"/_scheduler/docs/team/_replicator", "/_scheduler/docs/team%2F_replicator"}) {
      CAPTURE(path);
      Reply r = status.Get(path);
      CHECK(r.status == 200);
      CHECK(J(r.body, {"total_rows"}) == "1");
      CHECK(J(r.body, {"docs", "[0]", "doc_id"}) == "a/b");
      CHECK(J(r.body, {"docs", "[0]", "database"}) == "team/_replicator");
    }
    for (const char* path :
         {"/_scheduler/docs/team/_replicator/a%2Fb", "/_scheduler/docs/team%2F_replicator/a%2Fb",
          "/_scheduler/docs/team/_replicator/a/b"}) {
      CAPTURE(path);
      Reply r = status.Get(path);
      CHECK(r.status == 200);
      CHECK(J(r.body, {"doc_id"}) == "a/b");
      CHECK(J(r.body, {"state"}) == "completed");
    }
  }

  SUBCASE("_scheduler/docs: states= filters, then limit/skip page") {
    Reply r = status.Get("/_scheduler/docs?states=running,crashing");
    CHECK(J(r.body, {"total_rows"}) == "2");
    CHECK(J(r.body, {"docs", "[0]", "doc_id"}) == "cont");
    CHECK(J(r.body, {"docs", "[1]", "doc_id"}) == "crash");
    r = status.Get("/_scheduler/docs?states=completed&limit=1&skip=1");
    CHECK(J(r.body, {"total_rows"}) == "2");
    CHECK(J(r.body, {"offset"}) == "1");
    CHECK(ArraySize(r.body, {"docs"}) == 1);
    CHECK(J(r.body, {"docs", "[0]", "database"}) == "team/_replicator");
    r = status.Get("/_scheduler/docs/_replicator?states=failed,duplicate");
    CHECK(J(r.body, {"total_rows"}) == "2");
    r = status.Get("/_scheduler/docs?limit=2&skip=1");
    Reply all = status.Get("/_scheduler/docs");
    CHECK(J(r.body, {"docs", "[0]"}) == J(all.body, {"docs", "[1]"}));
    CHECK(J(r.body, {"docs", "[1]"}) == J(all.body, {"docs", "[2]"}));
    CHECK(status.Get("/_scheduler/docs?states=runing").status == 400);
    CHECK(J(status.Get("/_scheduler/docs?states=paused").body, {"total_rows"}) == "0");
  }

  SUBCASE("_active_tasks: the running job only") {
    Reply r = status.Get("/_active_tasks");
    REQUIRE(r.status == 200);
    INFO(r.body);
    CHECK(J(r.body, {"[1]"}) == "<missing>");
    std::string task = J(r.body, {"[0]"});
    std::string couch = J(ResponseBody("64-active-tasks.http"), {"[0]"});
    CHECK(KeySet(task) == Minus(KeySet(couch), {"bulk_get_attempts", "bulk_get_docs",
                                                "checkpoint_interval", "process_status"}));
    CHECK(J(task, {"type"}) == "replication");
    CHECK(J(task, {"replication_id"}) == cont_id);
    CHECK(J(task, {"doc_id"}) == "cont");
    CHECK(J(task, {"database"}) == "_replicator");
    CHECK(J(task, {"continuous"}) == "true");
    CHECK(J(task, {"docs_written"}) == "20");
    CHECK(J(task, {"changes_pending"}) == "0");
    CHECK(J(task, {"source"}) == server.url() + "/st-cont-src/");
    CHECK(std::stoll(J(task, {"updated_on"})) >= std::stoll(J(task, {"started_on"})));
    CHECK(J(task, {"progress"}) == "<missing>");  // continuous
  }

  SUBCASE("/metrics parses strictly and its counters are the jobs' statistics") {
    Reply r;
    PromParse m;
    std::string jobs;
    // Jobs and metrics come from snapshots a moment apart: retry until they agree.
    bool agree = WaitUntil(
        [&] {
          jobs = status.Get("/_scheduler/jobs").body;
          r = status.Get("/metrics");
          m = ParsePrometheusText(r.body);
          if (!m.ok()) return true;
          for (size_t i = 0; i < ArraySize(jobs, {"jobs"}); ++i) {
            std::string job = J(jobs, {"jobs", "[" + std::to_string(i) + "]"});
            std::string info = J(job, {"info"});
            if (J(info, {"docs_read"}) == "<missing>") continue;  // crashing: {"error":...}
            for (const char* stat : {"docs_read", "docs_written", "doc_write_failures",
                                     "revisions_checked", "missing_revisions_found"}) {
              auto v = m.Value(std::string("couchrepd_job_") + stat + "_total",
                               {{"replication_id", J(job, {"id"})}});
              if (!v || *v != std::stod(J(info, {stat}))) return false;
            }
            auto pending =
                m.Value("couchrepd_job_changes_pending", {{"replication_id", J(job, {"id"})}});
            if (!pending || *pending != std::stod(J(info, {"changes_pending"}))) return false;
          }
          return true;
        },
        10s);
    INFO(r.body);
    REQUIRE_MESSAGE(m.ok(), m.error);
    CHECK(agree);
    CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
    for (const auto& [name, family] : m.families) {
      CAPTURE(name);
      CHECK(name.rfind("couchrepd_", 0) == 0);
      for (const auto& sample : family.samples) {
        for (const auto& [label, value] : sample.labels) {
          CHECK(value.find("://") == std::string::npos);  // never URLs
        }
      }
    }
    CHECK(m.Value("couchrepd_job_docs_written_total", {{"replication_id", cont_id}}) == 20);
    CHECK(m.Value("couchrepd_jobs", {{"state", "running"}}) == 1);
    CHECK(m.Value("couchrepd_jobs", {{"state", "crashing"}}) == 1);
    CHECK(m.Value("couchrepd_jobs", {{"state", "pending"}}) == 0);
    CHECK(m.Value("couchrepd_replication_docs", {{"state", "completed"}}) == 2);
    CHECK(m.Value("couchrepd_replication_docs", {{"state", "failed"}}) == 1);
    CHECK(m.Value("couchrepd_replication_docs", {{"state", "duplicate"}}) == 1);
    CHECK(
        m.Value("couchrepd_job_checkpoint_age_seconds", {{"replication_id", cont_id}}).has_value());
    CHECK(m.Value("couchrepd_replicator_feed_connected", {{"database", "_replicator"}}) == 1);
    CHECK(m.Value("couchrepd_replicator_feed_connected", {{"database", "team/_replicator"}}) == 1);
    CHECK(m.Value("couchrepd_replicator_docs_processed_total", {{"database", "_replicator"}}) >= 5);
    CHECK(m.Value("couchrepd_build_info", {{"version", "0.1.0"}}) == 1);
    std::string host = "127.0.0.1:" + std::to_string(server.port());
    CHECK(m.Value("couchrepd_http_requests_total", {{"host", host}, {"class", "2xx"}}) > 50);
    CHECK(m.Value("couchrepd_http_requests_total", {{"host", host}, {"class", "4xx"}}) >=
          1);  // the 404 source
    CHECK(m.Value("couchrepd_http_retries_total", {{"host", host}}).has_value());
    CHECK(m.Value("couchrepd_job_starts_total") >= 4);
    CHECK(m.Value("couchrepd_job_crashes_total") >= 1);
    CHECK(m.Value("couchrepd_checkpoints_total", {{"result", "ok"}}).has_value());
    CheckWithPromtool(r.body);
  }

  SUBCASE("other paths and methods") {
    Reply page = status.Get("/");
    CHECK(page.status == 200);
    CHECK(page.content_type.rfind("text/html", 0) == 0);
    CHECK(status.Get("/nosuch").status == 404);
    CHECK(status.Post("/metrics").status == 405);
    CHECK(status.Get("/_scheduler/jobs/x/reset").status == 405);
    Reply health = status.Get("/health");
    CHECK(health.status == 200);
    CHECK(J(health.body, {"ok"}) == "true");
  }
}

TEST_CASE("status API: reset restarts a crashing job at once; pause stops it until resumed") {
  TestServer server;
  auto root = ServerClient(server);
  ServeProcess serve(WithBackoff(ServeConfig(server), "backoff: {initial: 60s, max: 120s}"));
  StatusClient status(StatusPort(serve));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 15s));
  REQUIRE(rep.PutDoc("late", RepDoc(server, "rs-src", "rs-tgt",
                                    "\"create_target\":true,\"continuous\":true"))
              .ok());
  REQUIRE(WaitForDocState(status, "late", "crashing"));
  std::string id = J(status.Get("/_scheduler/docs/_replicator/late").body, {"id"});
  REQUIRE(id.size() > 32);

  auto src = root.Database("rs-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 5);
  // The 60 s backoff holds it.
  std::this_thread::sleep_for(2500ms);
  CHECK(DocState(status, "_replicator", "late") == "crashing");

  Reply reset = status.Post("/_scheduler/jobs/" + id + "/reset");
  CHECK(reset.status == 200);
  CHECK(reset.body == R"({"ok":true})");
  CHECK(WaitForDocState(status, "late", "running", 10s));
  auto tgt = root.Database("rs-tgt");
  CHECK(WaitUntil([&] { return DocCount(tgt) == 5; }, 15s));
  std::string job = status.Get("/_scheduler/jobs/" + id).body;
  CHECK(job.find(R"("type":"reset")") != std::string::npos);
  CHECK(serve.Log().find("status API: anonymous (from 127.0.0.1) asked to reset job " + id +
                         ": done") != std::string::npos);

  Reply pause = status.Post("/_scheduler/jobs/" + id + "/pause");
  CHECK(pause.status == 200);
  CHECK(WaitForDocState(status, "late", "paused", 10s));
  CHECK(status.Get("/_active_tasks").body == "[]");
  REQUIRE(src.PutDoc("while-paused", R"({"p":1})").ok());
  std::this_thread::sleep_for(2s);
  CHECK_FALSE(tgt.GetDoc("while-paused").ok());
  CHECK(status.Post("/_scheduler/jobs/" + id + "/resume").status == 200);
  CHECK(WaitForDocState(status, "late", "running", 10s));
  CHECK(WaitUntil([&] { return tgt.GetDoc("while-paused").ok(); }, 15s));
  job = status.Get("/_scheduler/jobs/" + id).body;
  CHECK(job.find(R"("type":"paused")") != std::string::npos);
  CHECK(job.find(R"("type":"resumed")") != std::string::npos);

  Reply unknown = status.Post("/_scheduler/jobs/nosuchjob/reset");
  CHECK(unknown.status == 404);
  CHECK(unknown.body == R"({"error":"not_found","reason":"unknown job id"})");
  CHECK(serve.Log().find("asked to reset job nosuchjob: unknown job") != std::string::npos);
}

TEST_CASE("status API: basic auth; /health follows the server going away and coming back") {
  TestServer server;
  auto root = ServerClient(server);
  ServeProcess serve(WithStatus(ServeConfig(server), "  auth:\n    username: ops\n"),
                     {"COUCHREPD_STATUS_PASSWORD=St4tus-pw!"});
  int port = StatusPort(serve);
  StatusClient anonymous(port);
  StatusClient wrong(port, "ops", "nope");
  StatusClient ops(port, "ops", "St4tus-pw!");
  for (const char* path :
       {"/health", "/metrics", "/_scheduler/jobs", "/_scheduler/docs", "/_active_tasks", "/"}) {
    CAPTURE(path);
    Reply r = anonymous.Get(path);
    CHECK(r.status == 401);
    CHECK(r.www_authenticate == "Basic realm=\"couchrepd\"");
    CHECK(J(r.body, {"error"}) == "unauthorized");
    CHECK(wrong.Get(path).status == 401);
  }
  CHECK(anonymous.Post("/_scheduler/jobs/x/reset").status == 401);
  CHECK(StatusClient(port, "opz", "St4tus-pw!").Get("/health").status == 401);

  REQUIRE(WaitUntil([&] { return ops.Get("/health").status == 200; }, 15s));
  Reply healthy = ops.Get("/health");
  CHECK(J(healthy.body, {"ok"}) == "true");
  CHECK(ops.Get("/health/ready").status == 200);
  CHECK(ops.Get("/health/live").status == 200);
  CHECK(J(healthy.body, {"feeds", "[0]", "database"}) == "_replicator");
  CHECK(J(healthy.body, {"feeds", "[0]", "connected"}) == "true");
  CHECK(ops.Post("/_scheduler/jobs/nosuchjob/pause").status == 404);
  CHECK(WaitUntil(
      [&] {
        return serve.Log().find(
                   "status API: ops (from 127.0.0.1) asked to pause job nosuchjob: unknown job") !=
               std::string::npos;
      },
      5s));

  server.Stop();
  Reply down;
  CHECK(WaitUntil(
      [&] {
        down = ops.Get("/health");
        return down.status == 503;
      },
      20s));
  INFO(down.body);
  CHECK(J(down.body, {"ok"}) == "false");
  // Ready follows the feeds; live only the engine loop (a server away is no
  // reason to restart couchrepd).
  Reply ready = ops.Get("/health/ready");
  CHECK(ready.status == 503);
  CHECK(J(ready.body, {"reasons", "[0]"}).rfind("_replicator: ", 0) == 0);
  Reply live = ops.Get("/health/live");
  CHECK(live.status == 200);
  CHECK(J(live.body, {"ok"}) == "true");
  CHECK(std::stod(J(live.body, {"snapshot_age_seconds"})) < 5);
  CHECK(anonymous.Get("/health/live").status == 401);
  CHECK(J(down.body, {"reasons", "[0]"}).rfind("_replicator: ", 0) == 0);
  CHECK(J(down.body, {"feeds", "[0]", "connected"}) == "false");
  auto m = ParsePrometheusText(ops.Get("/metrics").body);
  REQUIRE_MESSAGE(m.ok(), m.error);
  CHECK(m.Value("couchrepd_replicator_feed_connected", {{"database", "_replicator"}}) == 0);
  std::string host = "127.0.0.1:" + std::to_string(server.port());
  CHECK(m.Value("couchrepd_http_requests_total", {{"host", host}, {"class", "connection_error"}}) >=
        1);

  server.Start();  // same port, no data: couchrepd creates _replicator again
  CHECK(WaitUntil([&] { return ops.Get("/health").status == 200; }, 30s));
  auto rep = root.Database("_replicator");
  CHECK(rep.GetDbInfo().ok());
  CHECK(serve.Log().find("St4tus-pw!") == std::string::npos);
}

// Sends `head` (request line and headers, no body) on a new connection and
// returns the status code of the answer, 0 when none came within 5 s.
int RawStatus(int port, const std::string& head) {
  int sock = socket(AF_INET, SOCK_STREAM, 0);
  if (sock < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  timeval tv{5, 0};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int status = 0;
  if (connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      send(sock, head.data(), head.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(head.size())) {
    char buf[256];
    ssize_t n = recv(sock, buf, sizeof buf - 1, 0);
    if (n > 12) status = std::atoi(std::string(buf, static_cast<size_t>(n)).substr(9, 3).c_str());
  }
  close(sock);
  return status;
}

// SPEC §10: the status API reads at most 64 KiB of a request body, and only
// after the credentials were checked (an anonymous client cannot make it read
// or hold anything).
TEST_CASE("status API: with health_public only the health probes answer without credentials") {
  TestServer server;
  ServeProcess serve(
      WithStatus(ServeConfig(server), "  health_public: true\n  auth:\n    username: ops\n"),
      {"COUCHREPD_STATUS_PASSWORD=St4tus-pw!"});
  int port = StatusPort(serve);
  StatusClient anonymous(port);
  StatusClient wrong(port, "ops", "nope");
  REQUIRE(WaitUntil([&] { return anonymous.Get("/health").status == 200; }, 15s));
  for (const char* path : {"/health", "/health/ready", "/health/live"}) {
    CAPTURE(path);
    CHECK(anonymous.Get(path).status == 200);
    CHECK(wrong.Get(path).status == 200);
  }
  CHECK(J(anonymous.Get("/health").body, {"ok"}) == "true");
  for (const char* path : {"/metrics", "/_scheduler/jobs", "/_scheduler/docs", "/_active_tasks", "/",
                           "/health/other", "/healthz"}) {
    CAPTURE(path);
    Reply r = anonymous.Get(path);
    CHECK(r.status == 401);
    CHECK(r.www_authenticate == "Basic realm=\"couchrepd\"");
  }
  CHECK(anonymous.Post("/health").status == 401);
  CHECK(anonymous.Post("/_scheduler/jobs/x/reset").status == 401);
  CHECK(StatusClient(port, "ops", "St4tus-pw!").Get("/metrics").status == 200);
}

TEST_CASE("status API: credentials are checked before a body is read; bodies over 64 KiB are refused") {
  TestServer server;
  ServeProcess serve(WithStatus(ServeConfig(server), "  auth:\n    username: ops\n"),
                     {"COUCHREPD_STATUS_PASSWORD=St4tus-pw!"});
  int port = StatusPort(serve);
  const std::string huge = "Content-Length: 1000000000\r\nContent-Type: application/json\r\n\r\n";
  // No body follows the headers: an answer at all shows nothing waited for it.
  CHECK(RawStatus(port, "POST /_scheduler/jobs/x/reset HTTP/1.1\r\nHost: a\r\n" + huge) == 401);
  const std::string auth = "Authorization: Basic " + Base64Encode("ops:St4tus-pw!") + "\r\n";
  CHECK(RawStatus(port, "POST /_scheduler/jobs/x/reset HTTP/1.1\r\nHost: a\r\n" + auth + huge) ==
        413);
  CHECK(RawStatus(port, "POST /_scheduler/jobs/x/reset HTTP/1.1\r\nHost: a\r\n" + auth +
                            "Content-Length: 70000\r\n\r\n") == 413);
  // A small body with the credentials is read and answered as before.
  CHECK(RawStatus(port, "POST /_scheduler/jobs/x/reset HTTP/1.1\r\nHost: a\r\n" + auth +
                            "Content-Length: 2\r\n\r\n{}") == 404);
  StatusClient ops(port, "ops", "St4tus-pw!");
  CHECK(ops.Get("/_scheduler/jobs").status == 200);
}

TEST_CASE("status API: a taken status address is a clear start-up error, before any work") {
  TestServer server;
  int sock = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(sock >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(sock, 1) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  int taken = ntohs(addr.sin_port);

  std::string config = ServeConfig(server);
  const std::string from = "listen: 127.0.0.1:0";
  config.replace(config.find(from), from.size(), "listen: 127.0.0.1:" + std::to_string(taken));
  ServeProcess serve(config);
  auto code = serve.process().Wait(15s);
  close(sock);
  INFO(serve.Log());
  REQUIRE(code.has_value());
  CHECK(*code == 1);
  CHECK(serve.Log().find("cannot listen on 127.0.0.1:" + std::to_string(taken) +
                         " for the status API (status.listen): Address already in use") !=
        std::string::npos);
  // Nothing was started: not even the replicator database was created.
  auto root = ServerClient(server);
  CHECK_FALSE(root.Database("_replicator").GetDbInfo().ok());
}

TEST_CASE(
    "status API: no credential in any status body, /metrics, the log or written-back states") {
  const std::string admin_pw = "Adm1n:p@ss/%w";
  TestServerOptions opts;
  opts.admin = "admin:" + admin_pw;
  TestServer server(opts);
  auto root = ServerClient(server, opts.admin);
  const std::string user = "repl";
  const std::string pw = "R3pl!pw:x@y%z/q";
  const std::string token = "tok-9f8e7d6c5b4a3f2e1d";
  REQUIRE(server.Request("PUT", "/_users/org.couchdb.user:repl",
                         "{\"name\":\"repl\",\"password\":\"" + pw +
                             "\",\"roles\":[],\"type\":\"user\"}")
                  .status /
              100 ==
          2);
  auto src = root.Database("sec-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 5);
  for (const char* t : {"sec-t1", "sec-t2", "sec-t3", "sec-t4"})
    REQUIRE(root.Database(t).CreateDb().ok());

  std::string config = ServeConfig(server);
  config.replace(config.find("\n  request_timeout"), 0, "\n  username: admin");
  ServeProcess serve(config, {"COUCHREPD_SERVER_PASSWORD=" + admin_pw});
  StatusClient status(StatusPort(serve));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 15s));

  const std::string host = "127.0.0.1:" + std::to_string(server.port());
  const std::string userinfo = user + ":" + PercentEncode(pw);
  const std::string basic = Base64Encode(user + ":" + pw);
  auto url = [&](const std::string& db) { return "http://" + host + "/" + db; };
  // Every way a document can carry credentials.
  std::map<std::string, std::string> docs = {
      {"userinfo", "{\"source\":\"http://" + userinfo + "@" + host +
                       "/sec-src\",\"target\":\"http://" + userinfo + "@" + host +
                       "/sec-t1\",\"continuous\":true}"},
      {"auth-basic", "{\"source\":{\"url\":\"" + url("sec-src") +
                         "\",\"auth\":{\"basic\":{\"username\":\"" + user + "\",\"password\":\"" +
                         pw + "\"}}},\"target\":{\"url\":\"" + url("sec-t2") +
                         "\",\"auth\":{\"basic\":{\"username\":\"" + user + "\",\"password\":\"" +
                         pw + "\"}}},\"continuous\":true}"},
      {"basic-header",
       "{\"source\":{\"url\":\"" + url("sec-src") + "\",\"headers\":{\"Authorization\":\"Basic " +
           basic + "\"}},\"target\":{\"url\":\"" + url("sec-t3") +
           "\",\"headers\":{\"Authorization\":\"Basic " + basic + "\"}},\"continuous\":true}"},
      {"bearer",
       "{\"source\":{\"url\":\"" + url("sec-src") + "\",\"headers\":{\"Authorization\":\"Bearer " +
           token + "\"}},\"target\":{\"url\":\"" + url("sec-t4") +
           "\",\"headers\":{\"Authorization\":\"Bearer " + token + "\"}},\"continuous\":true}"},
      {"crash-userinfo", "{\"source\":\"http://" + userinfo + "@" + host +
                             "/sec-nosuch\",\"target\":\"http://" + userinfo + "@" + host +
                             "/sec-t1\"}"},
      {"crash-bearer", "{\"source\":{\"url\":\"" + url("sec-nosuch2") +
                           "\",\"headers\":{\"Authorization\":\"Bearer " + token +
                           "\"}},\"target\":\"" + url("sec-t4") + "\"}"},
  };
  for (const auto& [id, body] : docs) REQUIRE_MESSAGE(rep.PutDoc(id, body).ok(), id);
  // The basic-credential forms run; the others run or crash: all get a state.
  for (const char* id : {"userinfo", "auth-basic", "basic-header"}) {
    CAPTURE(id);
    CHECK(WaitForDocState(status, id, "running"));
  }
  for (const char* id : {"crash-userinfo", "crash-bearer"}) {
    CAPTURE(id);
    CHECK(WaitForDocState(status, id, "crashing"));
  }
  CHECK(WaitUntil(
      [&] {
        std::string s = DocState(status, "_replicator", "bearer");
        return s == "running" || s == "crashing";
      },
      30s));
  for (const char* t : {"sec-t1", "sec-t2", "sec-t3"}) {
    auto db = root.Database(t);
    CHECK(WaitUntil([&] { return DocCount(db) == 5; }, 20s));
  }
  CHECK(WaitForState(rep, "crash-userinfo", "error"));

  // Everything couchrepd shows.
  std::vector<std::pair<std::string, std::string>> shown;
  for (const char* path : {"/_scheduler/jobs", "/_scheduler/docs", "/_scheduler/docs/_replicator",
                           "/_active_tasks", "/metrics", "/health"}) {
    Reply r = status.Get(path);
    CHECK(r.status == 200);
    shown.emplace_back(path, r.body);
  }
  std::string jobs = status.Get("/_scheduler/jobs").body;
  CHECK(J(jobs, {"total_rows"}) == "6");
  for (size_t i = 0; i < ArraySize(jobs, {"jobs"}); ++i) {
    std::string id = J(jobs, {"jobs", "[" + std::to_string(i) + "]", "id"});
    shown.emplace_back("job " + id, status.Get("/_scheduler/jobs/" + id).body);
  }
  for (const auto& [id, body] : docs) {
    shown.emplace_back("doc " + id, status.Get("/_scheduler/docs/_replicator/" + id).body);
  }
  // The user name shows in display URLs; the password never.
  CHECK(J(Find(jobs, "jobs", "doc_id", "userinfo"), {"source"}) ==
        "http://repl:*****@" + host + "/sec-src/");
  CHECK(J(Find(jobs, "jobs", "doc_id", "crash-userinfo"), {"info", "error"}).find("sec-nosuch") !=
        std::string::npos);
  // The `_replication_*` fields couchrepd wrote into the documents.
  for (const auto& [id, body] : docs) {
    auto doc = rep.GetDoc(id);
    REQUIRE(doc.ok());
    std::string written;
    for (const auto& key : Keys(*doc)) {
      if (key.rfind("_replication_", 0) == 0) written += key + "=" + J(*doc, {key}) + "\n";
    }
    shown.emplace_back("written back into " + id, written);
  }
  CHECK(shown.back().second.find("_replication_state=") != std::string::npos);
  serve.process().Signal(SIGTERM);
  CHECK(serve.process().Wait(20s) == 0);
  shown.emplace_back("the serve log", serve.Log() + serve.process().Stdout());
  // Not vacuous: the log has the crash reasons and the documents' URLs.
  CHECK(shown.back().second.find("sec-nosuch") != std::string::npos);
  CHECK(shown.back().second.find("[_replicator/bearer ") != std::string::npos);

  const std::vector<std::string> secrets = {pw,
                                            PercentEncode(pw),
                                            basic,
                                            token,
                                            admin_pw,
                                            PercentEncode(admin_pw),
                                            Base64Encode("admin:" + admin_pw)};
  for (const auto& [what, text] : shown) {
    for (const auto& secret : secrets) {
      CAPTURE(what);
      CAPTURE(secret);
      CHECK(text.find(secret) == std::string::npos);
    }
  }
}

TEST_CASE("http metrics: a client's responses, connection errors, retries and 429s by host") {
  ResetHttpMetrics();
  TestServer server;
  HttpOptions o = FastOptions();
  o.observer = RecordHttpEvent;
  Endpoint e;
  e.url = ParseUrl(server.url() + "/counted/").value();
  CouchClient db(e, o);
  const std::string host = "127.0.0.1:" + std::to_string(server.port());
  REQUIRE(db.CreateDb().ok());  // 201
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"([{"method":"GET","path":"^/counted/?$","status":503,"count":2},)"
                         R"({"method":"GET","path":"^/counted/?$","status":429,"count":3}])")
                  .status /
              100 ==
          2);
  REQUIRE(db.GetDbInfo().ok());            // 503, 503 (2 retries), 429 x3 (paced), 200
  CHECK_FALSE(db.GetDoc("missing").ok());  // 404
  HostHttpCounters c = HttpMetrics().hosts[host];
  CHECK(c.status_2xx == 2);
  CHECK(c.status_4xx == 4);  // the 429s and the 404
  CHECK(c.status_5xx == 2);
  CHECK(c.retries == 2);
  CHECK(c.rate_limited == 3);
  CHECK(c.connection_errors == 0);
  server.Stop();
  CHECK_FALSE(db.GetDbInfo().ok());
  c = HttpMetrics().hosts[host];
  CHECK(c.connection_errors >= 1);
  CHECK(c.retries >= 3);
  CHECK(c.status_2xx == 2);
  ResetHttpMetrics();
  CHECK(HttpMetrics().hosts.empty());
}

TEST_CASE("http metrics: hosts past the cap are counted as other") {
  ResetHttpMetrics();
  for (size_t i = 0; i < kMaxHostLabels + 36; ++i) {
    HttpEvent e;
    e.kind = HttpEvent::Kind::kConnectionError;
    e.host = "host-" + std::to_string(i) + ".example:5984";
    RecordHttpEvent(e);
    RecordHttpEvent(e);
  }
  HttpMetricsSnapshot m = HttpMetrics();
  CHECK(m.hosts.size() == kMaxHostLabels + 1);
  CHECK(m.hosts.count("host-0.example:5984") == 1);
  CHECK(m.hosts.count("host-63.example:5984") == 1);
  CHECK(m.hosts.count("host-64.example:5984") == 0);
  CHECK(m.hosts[kOtherHosts].connection_errors == 2 * 36);
  CHECK(m.hosts["host-5.example:5984"].connection_errors == 2);
  // A host that has its label keeps it.
  HttpEvent again;
  again.kind = HttpEvent::Kind::kResponse;
  again.status = 200;
  again.host = "host-5.example:5984";
  RecordHttpEvent(again);
  CHECK(HttpMetrics().hosts["host-5.example:5984"].status_2xx == 1);
  ResetHttpMetrics();
}

// Issue 12: the series of /metrics stay bounded whatever documents name.
TEST_CASE("serve /metrics: per-job series go with their job; document hosts are capped") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("card-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 3);
  ServeProcess serve(WithBackoff(ServeConfig(server), "backoff: {initial: 30s, max: 60s}"));
  StatusClient ops(StatusPort(serve));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
  REQUIRE(rep.PutDoc("card-job", "{\"source\":\"" + server.url() + "/card-src\",\"target\":\"" +
                                     server.url() + "/card-tgt\",\"create_target\":true," +
                                     "\"continuous\":true}")
              .ok());
  REQUIRE(WaitForState(rep, "card-job", "triggered"));
  std::string job_id = JsonText(*rep.GetDoc("card-job"), {"_replication_id"});
  auto metrics = [&] {
    auto m = ParsePrometheusText(ops.Get("/metrics").body);
    REQUIRE_MESSAGE(m.ok(), m.error);
    return m;
  };
  auto series_of_job = [&](const PromParse& m) {
    int n = 0;
    for (const auto& [name, f] : m.families) {
      for (const auto& sample : f.samples) {
        auto it = sample.labels.find("replication_id");
        n += it != sample.labels.end() && it->second == job_id;
      }
    }
    return n;
  };
  REQUIRE(WaitUntil([&] { return series_of_job(metrics()) >= 7; }, 10s));
  CHECK(metrics().Value("couchrepd_job_info", {{"replication_id", job_id},
                                               {"database", "_replicator"},
                                               {"doc_id", "card-job"},
                                               {"state", "running"}}) == 1);

  // 80 documents, each naming a host:port of its own (closed loopback ports).
  const int kHosts = static_cast<int>(kMaxHostLabels) + 16;
  for (int i = 0; i < kHosts; ++i) {
    std::string url = "http://127.0.0.1:" + std::to_string(1 + i) + "/x";
    REQUIRE(rep.PutDoc("far-" + std::to_string(i),
                       "{\"source\":\"" + url + "\",\"target\":\"" + server.url() + "/far-tgt\"}")
                .ok());
  }
  auto host_labels = [&](const PromParse& m) {
    std::set<std::string> hosts;
    auto f = m.families.find("couchrepd_http_requests_total");
    if (f == m.families.end()) return hosts;
    for (const auto& sample : f->second.samples) hosts.insert(sample.labels.at("host"));
    return hosts;
  };
  CHECK(WaitUntil([&] { return host_labels(metrics()).count("other") == 1; }, 60s));
  std::set<std::string> hosts = host_labels(metrics());
  CHECK(hosts.size() == kMaxHostLabels + 1);
  CHECK(hosts.count("127.0.0.1:" + std::to_string(server.port())) == 1);  // the server came first

  // Deleting the document removes every series of its job.
  REQUIRE(rep.DeleteDoc("card-job", JsonText(*rep.GetDoc("card-job"), {"_rev"})).ok());
  CHECK(WaitUntil([&] { return series_of_job(metrics()) == 0; }, 10s));
  // Its checkpoints stay counted: the ones before the delete, or the last
  // one of the stop, which may come just after its series are gone.
  CHECK(WaitUntil(
      [&] {
        auto ok = metrics().Value("couchrepd_checkpoints_total", {{"result", "ok"}});
        return ok && *ok >= 1;
      },
      10s));
}

// Issue 12: `couchrepd status` reads a running instance like `kubectl get`.
TEST_CASE("couchrepd status: a table of the documents, one in detail, JSON; exit 1 on trouble") {
  auto Contains = [](const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  };
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("cs-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 4);
  ServeProcess serve(WithStatus(ServeConfig(server), "  auth:\n    username: ops\n"),
                     {"COUCHREPD_STATUS_PASSWORD=St4tus-pw!"});
  const std::string api = "http://127.0.0.1:" + std::to_string(StatusPort(serve));
  StatusClient ops(StatusPort(serve), "ops", "St4tus-pw!");
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDbInfo().ok(); }, 10s));
  REQUIRE(rep.PutDoc("good", RepDoc(server, "cs-src", "cs-tgt", "\"create_target\":true")).ok());
  REQUIRE(WaitForDocState(ops, "good", "completed"));
  const std::vector<std::string> env = {"COUCHREPD_STATUS_PASSWORD=St4tus-pw!"};

  auto all_well = RunCouchrepd({"status", "--server", api, "--user", "ops"}, env);
  INFO("out: " << all_well.out << "\nerr: " << all_well.err);
  CHECK(all_well.exit_code == 0);
  CHECK(all_well.out.rfind("STATE  ", 0) == 0);
  CHECK(Contains(all_well.out.substr(0, all_well.out.find('\n')), "WRITTEN  PENDING  LAST ERROR"));
  CHECK(Contains(all_well.out.substr(0, all_well.out.find('\n')), "SOURCE → TARGET"));
  CHECK(Contains(all_well.out, "completed  _replicator/good  " + server.url() + "/cs-src/ → " +
                                   server.url() + "/cs-tgt/  4"));
  CHECK(Contains(all_well.out, "1 document, 0 in error, failed or crashing"));

  REQUIRE(rep.PutDoc("bad", RepDoc(server, "no-such-src", "cs-tgt2")).ok());
  REQUIRE(WaitUntil([&] {
    std::string s = DocState(ops, "_replicator", "bad");
    return s == "crashing" || s == "error";
  }, 30s));
  auto trouble = RunCouchrepd({"status", "--server", api, "--user", "ops"}, env);
  INFO("out: " << trouble.out);
  CHECK(trouble.exit_code == 1);
  CHECK(Contains(trouble.out, "_replicator/bad"));
  CHECK(Contains(trouble.out, "no-such-src"));
  CHECK(Contains(trouble.out, "2 documents, 1 in error, failed or crashing"));

  auto only = RunCouchrepd({"status", "--server", api, "--user", "ops", "--state", "completed"}, env);
  CHECK(only.exit_code == 0);
  CHECK(Contains(only.out, "_replicator/good"));
  CHECK_FALSE(Contains(only.out, "_replicator/bad"));

  auto json = RunCouchrepd({"status", "--server", api, "--user", "ops", "--json"}, env);
  CHECK(json.exit_code == 1);
  CHECK(J(json.out, {"docs", "[0]", "doc_id"}) == "bad");

  auto one = RunCouchrepd({"status", "--server", api, "--user", "ops", "good"}, env);
  INFO("one: " << one.out << one.err);
  CHECK(one.exit_code == 0);
  CHECK(Contains(one.out, "document:     _replicator/good\nstate:        completed\n"));

  // No password, or a wrong one: a clear error, exit 1, the password never shown.
  auto refused = RunCouchrepd({"status", "--server", api, "--user", "ops"},
                              {"COUCHREPD_STATUS_PASSWORD=wrong-pw"});
  CHECK(refused.exit_code == 1);
  CHECK(Contains(refused.err, "401"));
  CHECK_FALSE(Contains(refused.err, "wrong-pw"));
  auto usage = RunCouchrepd({"status", "--bogus"});
  CHECK(usage.exit_code == 2);
  CHECK(Contains(usage.err, "unknown option `--bogus`"));
}

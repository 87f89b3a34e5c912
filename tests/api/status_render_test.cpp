// Status rendering from a hand-built EngineSnapshot: every body exactly, the
// shapes against CouchDB 3.4's recorded answers, the Prometheus text through
// a strict parser, request paths, and the secret backstop.
#include "couchrepd/status_render.h"

#include <doctest/doctest.h>
#include <simdjson.h>

#include <set>
#include <string>
#include <vector>

#include "couchrepd/encoding.h"
#include "couchrepd/log.h"
#include "support/prometheus_text.h"
#include "support/recordings.h"

using namespace couchrepd;
using couchrepd::testing::ParsePrometheusText;
using couchrepd::testing::ResponseBody;

namespace {

constexpr double kNow = 1795448156;  // 2026-11-23T15:35:56Z
const TimePoint kSteadyNow = TimePoint{} + std::chrono::hours(100);
constexpr char kNode[] = "couchrepd@test";

const std::string kCont = "8d7f4a0543e534a4c03657d207fa3577+continuous+create_target";
const std::string kPend = "c0ffee00000000000000000000000000";
const std::string kCrash = "f462fb195495354e602c155f11451a11";
const std::string kSeq =
    "\"9-g1AAAACbeJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-"
    "zMpgT2XKBAuyJKUnJRsmW2DTgMSaPBUgy"
    "NACp_1DTmMGmWZoZmFukpWLTlwUATIIowA\"";
const std::string kCrashReason =
    "db_not_found: could not open http://127.0.0.1:5984/rec_nosuch_src/";

// The steady time point shown as `unix` seconds.
TimePoint At(double unix) {
  return kSteadyNow - std::chrono::duration_cast<TimePoint::duration>(
                          std::chrono::duration<double>(kNow - unix));
}

JobEvent Event(JobEvent::Type type, double unix, std::string reason = "") {
  return JobEvent{type, At(unix), std::move(reason)};
}

void AddJob(EngineSnapshot& s, JobView view, JobDescription d, std::optional<JobSnapshot> p) {
  s.jobs.push_back(std::move(view));
  s.descriptions.push_back(std::move(d));
  s.progress.push_back(std::move(p));
}

// Three jobs (running continuous, pending one-shot, crashing), six documents
// (failed, running, crashing, duplicate, completed, pending in a second
// replicator database), two feeds (one unauthorized).
EngineSnapshot Sample() {
  EngineSnapshot s;
  s.unix_now = kNow;
  s.taken_unix = kNow;
  s.steady_now = kSteadyNow;
  s.server_uuid = "c4e176401624544cdc0da1f84bb3bb9d";

  JobView cont;
  cont.info = {kCont, "_replicator", "rec_cont", true};
  cont.state = JobState::kRunning;
  cont.history = {Event(JobEvent::Type::kStarted, 1795448147),
                  Event(JobEvent::Type::kAdded, 1795448147)};
  cont.added_at = At(1795448147);
  cont.started_at = At(1795448147);
  JobDescription cont_d{kCont,
                        "_replicator",
                        "rec_cont",
                        "http://127.0.0.1:5984/rec_db/",
                        "http://127.0.0.1:5984/rec_cont_tgt/",
                        "",
                        true,
                        1795448147};
  JobSnapshot cont_p;
  cont_p.stats = {6, 6, 6, 6, 0};
  cont_p.run_stats = cont_p.stats;
  cont_p.source_seq = kSeq;
  cont_p.through_seq = kSeq;
  cont_p.checkpointed_seq = "\"0\"";
  cont_p.changes_pending = 0;
  cont_p.started_unix = 1795448147;
  cont_p.last_checkpoint_unix = 1795448151.5;
  cont_p.caught_up = true;
  cont_p.checkpoints_ok = 2;
  AddJob(s, cont, cont_d, cont_p);

  JobView pend;
  pend.info = {kPend, "team/_replicator", "a\"b/c", false};
  pend.state = JobState::kPending;
  pend.history = {Event(JobEvent::Type::kAdded, 1795448150)};
  pend.added_at = At(1795448150);
  JobDescription pend_d{
      kPend, "team/_replicator", "a\"b/c", "http://bob:*****@127.0.0.1:5984/x/", "y", "bob", false,
      0};
  AddJob(s, pend, pend_d, std::nullopt);

  JobView crash;
  crash.info = {kCrash, "_replicator", "rec_crash", false};
  crash.state = JobState::kCrashing;
  crash.history = {Event(JobEvent::Type::kCrashed, 1795448147, kCrashReason),
                   Event(JobEvent::Type::kStarted, 1795448147),
                   Event(JobEvent::Type::kAdded, 1795448147)};
  crash.consecutive_crashes = 1;
  crash.backoff_until = At(1795448207);
  crash.added_at = At(1795448147);
  crash.last_error = kCrashReason;
  JobDescription crash_d{kCrash,
                         "_replicator",
                         "rec_crash",
                         "http://127.0.0.1:5984/rec_nosuch_src/",
                         "http://127.0.0.1:5984/rec_tgt/",
                         "",
                         false,
                         1795448147};
  JobSnapshot crash_p;
  crash_p.started_unix = 1795448147;
  crash_p.checkpoints_failed = 1;
  AddJob(s, crash, crash_d, crash_p);

  auto doc = [&](std::string db, std::string id, std::string state, std::string job, double at) {
    DocView d;
    d.doc = {std::move(db), std::move(id)};
    d.state = std::move(state);
    d.job_id = std::move(job);
    d.last_updated = At(at);
    return d;
  };
  DocView bad = doc("_replicator", "rec_bad", "failed", "", 1795448140);
  bad.error = "`source` is missing";
  bad.error_count = 1;
  DocView running = doc("_replicator", "rec_cont", "job", kCont, 1795448147);
  running.source = cont_d.source;
  running.target = cont_d.target;
  running.continuous = true;
  DocView crashing = doc("_replicator", "rec_crash", "job", kCrash, 1795448147);
  crashing.error = kCrashReason;
  crashing.error_count = 1;
  crashing.source = crash_d.source;
  crashing.target = crash_d.target;
  DocView dup = doc("_replicator", "rec_dup", "duplicate", kCont, 1795448148);
  dup.source = cont_d.source;
  dup.target = cont_d.target;
  DocView once = doc("_replicator", "rec_once", "completed",
                     "82f55fd6c0e51574909e24061db04a38+create_target", 1795448147);
  once.source = "http://127.0.0.1:5984/rec_db/";
  once.target = "http://127.0.0.1:5984/rec_once_tgt/";
  DocView team = doc("team/_replicator", "a\"b/c", "job", kPend, 1795448150);
  team.source = pend_d.source;
  team.target = pend_d.target;
  s.docs = {bad, running, crashing, dup, once, team};

  FeedHealth main_feed;
  main_feed.db = "_replicator";
  main_feed.connected = true;
  main_feed.last_seq = "12";
  main_feed.reconnects = 1;
  main_feed.docs_processed = 6;
  FeedHealth team_feed;
  team_feed.db = "team/_replicator";
  team_feed.error = "unauthorized: You are not a server admin.";
  team_feed.reconnects = 3;
  team_feed.docs_processed = 1;
  s.feeds = {main_feed, team_feed};
  s.counters.jobs_started = 3;
  s.counters.jobs_crashed = 1;
  s.counters.checkpoints_ok = 2;
  s.counters.checkpoints_failed = 1;
  return s;
}

const std::string kContInfo =
    R"({"revisions_checked":6,"missing_revisions_found":6,"docs_read":6,"docs_written":6,)"
    R"("doc_write_failures":0,"changes_pending":0,"checkpointed_source_seq":"0","source_seq":)" +
    kSeq + R"(,"through_seq":)" + kSeq + "}";

const std::string kContJob =
    R"({"database":"_replicator","id":")" + kCont +
    R"(","pid":null,"source":"http://127.0.0.1:5984/rec_db/",)"
    R"("target":"http://127.0.0.1:5984/rec_cont_tgt/","user":null,"doc_id":"rec_cont","info":)" +
    kContInfo +
    R"(,"history":[{"timestamp":"2026-11-23T15:35:47Z","type":"started"},)"
    R"({"timestamp":"2026-11-23T15:35:47Z","type":"added"}],"node":"couchrepd@test",)"
    R"("start_time":"2026-11-23T15:35:47Z"})";

const std::string kPendJob =
    R"({"database":"team/_replicator","id":")" + kPend +
    R"(","pid":null,"source":"http://bob:*****@127.0.0.1:5984/x/","target":"y","user":"bob",)"
    R"("doc_id":"a\"b/c","info":null,"history":[{"timestamp":"2026-11-23T15:35:50Z","type":"added"}],)"
    R"("node":"couchrepd@test","start_time":"2026-11-23T15:35:50Z"})";

const std::string kCrashJob =
    R"({"database":"_replicator","id":")" + kCrash +
    R"(","pid":null,"source":"http://127.0.0.1:5984/rec_nosuch_src/",)"
    R"("target":"http://127.0.0.1:5984/rec_tgt/","user":null,"doc_id":"rec_crash",)"
    R"("info":{"error":")" +
    kCrashReason +
    R"("},"history":[{"timestamp":"2026-11-23T15:35:47Z","type":"crashed","reason":")" +
    kCrashReason +
    R"("},{"timestamp":"2026-11-23T15:35:47Z","type":"started"},)"
    R"({"timestamp":"2026-11-23T15:35:47Z","type":"added"}],"node":"couchrepd@test",)"
    R"("start_time":"2026-11-23T15:35:47Z"})";

const std::string kBadDoc =
    R"({"database":"_replicator","doc_id":"rec_bad","id":null,"source":"","target":"",)"
    R"("state":"failed","info":{"error":"`source` is missing"},"error_count":1,)"
    R"("last_updated":"2026-11-23T15:35:40Z","start_time":"2026-11-23T15:35:40Z"})";

const std::string kContDoc =
    R"({"database":"_replicator","doc_id":"rec_cont","id":")" + kCont +
    R"(","node":"couchrepd@test","source":"http://127.0.0.1:5984/rec_db/",)"
    R"("target":"http://127.0.0.1:5984/rec_cont_tgt/","state":"running","info":)" +
    kContInfo +
    R"(,"error_count":0,"last_updated":"2026-11-23T15:35:47Z","start_time":"2026-11-23T15:35:47Z"})";

const std::string kCrashDoc =
    R"({"database":"_replicator","doc_id":"rec_crash","id":")" + kCrash +
    R"(","node":"couchrepd@test","source":"http://127.0.0.1:5984/rec_nosuch_src/",)"
    R"("target":"http://127.0.0.1:5984/rec_tgt/","state":"crashing","info":{"error":")" +
    kCrashReason +
    R"("},"error_count":1,"last_updated":"2026-11-23T15:35:47Z","start_time":"2026-11-23T15:35:47Z"})";

const std::string kDupDoc =
    R"({"database":"_replicator","doc_id":"rec_dup","id":")" + kCont +
    R"(","source":"http://127.0.0.1:5984/rec_db/","target":"http://127.0.0.1:5984/rec_cont_tgt/",)"
    R"("state":"duplicate","info":null,"error_count":0,"last_updated":"2026-11-23T15:35:48Z",)"
    R"("start_time":"2026-11-23T15:35:48Z"})";

const std::string kOnceDoc =
    R"({"database":"_replicator","doc_id":"rec_once",)"
    R"("id":"82f55fd6c0e51574909e24061db04a38+create_target",)"
    R"("source":"http://127.0.0.1:5984/rec_db/","target":"http://127.0.0.1:5984/rec_once_tgt/",)"
    R"("state":"completed","info":null,"error_count":0,"last_updated":"2026-11-23T15:35:47Z",)"
    R"("start_time":"2026-11-23T15:35:47Z"})";

const std::string kTeamDoc =
    R"({"database":"team/_replicator","doc_id":"a\"b/c","id":")" + kPend +
    R"(","node":"couchrepd@test","source":"http://bob:*****@127.0.0.1:5984/x/","target":"y",)"
    R"("state":"pending","info":null,"error_count":0,"last_updated":"2026-11-23T15:35:50Z",)"
    R"("start_time":"2026-11-23T15:35:50Z"})";

// The member names of a JSON object, in order.
std::vector<std::string> Keys(const std::string& json) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  REQUIRE(parser.parse(json).get(obj) == simdjson::SUCCESS);
  std::vector<std::string> keys;
  for (auto field : obj) keys.emplace_back(field.key);
  return keys;
}

std::string Member(const std::string& json, const char* key) {
  simdjson::dom::parser parser;
  simdjson::dom::element el;
  REQUIRE(parser.parse(json).get(el) == simdjson::SUCCESS);
  simdjson::dom::element v;
  if (el.at_key(key).get(v) != simdjson::SUCCESS) return "<missing>";
  return std::string(simdjson::minify(v));
}

std::string FirstArrayElement(const std::string& json, const char* key) {
  simdjson::dom::parser parser;
  simdjson::dom::element el;
  REQUIRE(parser.parse(json).get(el) == simdjson::SUCCESS);
  if (key != nullptr) REQUIRE(el.at_key(key).get(el) == simdjson::SUCCESS);
  simdjson::dom::array arr;
  REQUIRE(el.get(arr) == simdjson::SUCCESS);
  REQUIRE(arr.size() > 0);
  return std::string(simdjson::minify(arr.at(0).value()));
}

// `ours` has every member of `couch` except `missing`, and nothing else but `extra`.
void CheckSameMembers(const std::string& ours, const std::string& couch,
                      const std::set<std::string>& missing,
                      const std::set<std::string>& extra = {}) {
  auto our_keys = Keys(ours);
  auto couch_keys = Keys(couch);
  std::set<std::string> mine(our_keys.begin(), our_keys.end());
  std::set<std::string> theirs(couch_keys.begin(), couch_keys.end());
  for (const auto& k : theirs) {
    CAPTURE(k);
    CHECK(mine.count(k) + missing.count(k) == 1);
  }
  for (const auto& k : mine) {
    CAPTURE(k);
    CHECK(theirs.count(k) + extra.count(k) == 1);
  }
}

}  // namespace

TEST_CASE("status render: _scheduler/jobs/{id}, exactly, for running, pending and crashing jobs") {
  EngineSnapshot s = Sample();
  CHECK(RenderSchedulerJob(s, kCont, kNode).value() == kContJob);
  CHECK(RenderSchedulerJob(s, kPend, kNode).value() == kPendJob);
  CHECK(RenderSchedulerJob(s, kCrash, kNode).value() == kCrashJob);
  CHECK_FALSE(RenderSchedulerJob(s, "82f55fd6c0e51574909e24061db04a38+create_target", kNode));
  CHECK_FALSE(RenderSchedulerJob(s, "", kNode));
}

TEST_CASE("status render: _scheduler/jobs lists by id with limit and skip") {
  EngineSnapshot s = Sample();
  CHECK(RenderSchedulerJobs(s, Page{}, kNode) == R"({"total_rows":3,"offset":0,"jobs":[)" +
                                                     kContJob + "," + kPendJob + "," + kCrashJob +
                                                     "]}");
  CHECK(RenderSchedulerJobs(s, Page{1, 1}, kNode) ==
        R"({"total_rows":3,"offset":1,"jobs":[)" + kPendJob + "]}");
  CHECK(RenderSchedulerJobs(s, Page{0, 0}, kNode) == R"({"total_rows":3,"offset":0,"jobs":[]})");
  CHECK(RenderSchedulerJobs(s, Page{100, 7}, kNode) == R"({"total_rows":3,"offset":7,"jobs":[]})");
  CHECK(RenderSchedulerJobs(EngineSnapshot{}, Page{}, kNode) ==
        R"({"total_rows":0,"offset":0,"jobs":[]})");
}

TEST_CASE("status render: jobs have CouchDB 3.4's members (recordings 56-58)") {
  EngineSnapshot s = Sample();
  // Running: CouchDB's info has bulk_get counters couchrepd does not keep.
  std::string couch_running = ResponseBody("57-scheduler-job-running.http");
  std::string ours = RenderSchedulerJob(s, kCont, kNode).value();
  CHECK(Keys(ours) == Keys(couch_running));
  CheckSameMembers(Member(ours, "info"), Member(couch_running, "info"),
                   {"bulk_get_docs", "bulk_get_attempts"});
  CHECK(Member(ours, "history") == Member(couch_running, "history"));
  CHECK(Member(ours, "source") == Member(couch_running, "source"));
  CHECK(Member(ours, "start_time") == Member(couch_running, "start_time"));
  CHECK(Member(ours, "user") == "null");
  CHECK(Member(ours, "pid") == "null");
  for (const char* k : {"source_seq", "through_seq", "checkpointed_source_seq", "docs_written"}) {
    CHECK(Member(Member(ours, "info"), k) == Member(Member(couch_running, "info"), k));
  }
  // Crashing: the same history; info says why (CouchDB has null here, and
  // {"error": reason} in _scheduler/docs).
  std::string couch_crashing = ResponseBody("58-scheduler-job-crashing.http");
  ours = RenderSchedulerJob(s, kCrash, kNode).value();
  CHECK(Keys(ours) == Keys(couch_crashing));
  CHECK(Member(ours, "history") == Member(couch_crashing, "history"));
  CHECK(Member(ours, "info") == R"({"error":")" + kCrashReason + "\"}");
  // The listing wraps the same objects.
  std::string couch_list = ResponseBody("56-scheduler-jobs.http");
  std::string list = RenderSchedulerJobs(s, Page{}, kNode);
  CHECK(Keys(list) == Keys(couch_list));
  CHECK(Keys(FirstArrayElement(list, "jobs")) == Keys(FirstArrayElement(couch_list, "jobs")));
}

TEST_CASE("status render: _scheduler/docs/{db}/{docid}, exactly, in every state") {
  EngineSnapshot s = Sample();
  CHECK(RenderSchedulerDoc(s, "_replicator", "rec_bad", kNode).value() == kBadDoc);
  CHECK(RenderSchedulerDoc(s, "_replicator", "rec_cont", kNode).value() == kContDoc);
  CHECK(RenderSchedulerDoc(s, "_replicator", "rec_crash", kNode).value() == kCrashDoc);
  CHECK(RenderSchedulerDoc(s, "_replicator", "rec_dup", kNode).value() == kDupDoc);
  CHECK(RenderSchedulerDoc(s, "_replicator", "rec_once", kNode).value() == kOnceDoc);
  CHECK(RenderSchedulerDoc(s, "team/_replicator", "a\"b/c", kNode).value() == kTeamDoc);
  CHECK_FALSE(RenderSchedulerDoc(s, "_replicator", "a\"b/c", kNode));
  CHECK_FALSE(RenderSchedulerDoc(s, "other/_replicator", "rec_bad", kNode));
}

TEST_CASE("status render: _scheduler/docs filters by database and states, then pages") {
  EngineSnapshot s = Sample();
  DocsQuery all;
  CHECK(RenderSchedulerDocs(s, all, kNode) == R"({"total_rows":6,"offset":0,"docs":[)" + kBadDoc +
                                                  "," + kContDoc + "," + kCrashDoc + "," + kDupDoc +
                                                  "," + kOnceDoc + "," + kTeamDoc + "]}");
  DocsQuery team;
  team.database = "team/_replicator";
  CHECK(RenderSchedulerDocs(s, team, kNode) ==
        R"({"total_rows":1,"offset":0,"docs":[)" + kTeamDoc + "]}");
  DocsQuery states;
  states.states = {"crashing", "running"};
  CHECK(RenderSchedulerDocs(s, states, kNode) ==
        R"({"total_rows":2,"offset":0,"docs":[)" + kContDoc + "," + kCrashDoc + "]}");
  states.page = Page{1, 1};
  CHECK(RenderSchedulerDocs(s, states, kNode) ==
        R"({"total_rows":2,"offset":1,"docs":[)" + kCrashDoc + "]}");
  DocsQuery none;
  none.states = {"paused"};
  CHECK(RenderSchedulerDocs(s, none, kNode) == R"({"total_rows":0,"offset":0,"docs":[]})");
  DocsQuery page;
  page.page = Page{2, 3};
  CHECK(RenderSchedulerDocs(s, page, kNode) ==
        R"({"total_rows":6,"offset":3,"docs":[)" + kDupDoc + "," + kOnceDoc + "]}");
}

TEST_CASE("status render: a document with a job takes the job's state") {
  EngineSnapshot s = Sample();
  CHECK(EffectiveDocState(s, s.docs[0]) == "failed");
  CHECK(EffectiveDocState(s, s.docs[1]) == "running");
  CHECK(EffectiveDocState(s, s.docs[2]) == "crashing");
  CHECK(EffectiveDocState(s, s.docs[3]) == "duplicate");
  CHECK(EffectiveDocState(s, s.docs[4]) == "completed");
  CHECK(EffectiveDocState(s, s.docs[5]) == "pending");
  s.jobs[0].state = JobState::kPaused;
  CHECK(EffectiveDocState(s, s.docs[1]) == "paused");
  DocView orphan = s.docs[1];
  orphan.job_id = "not-yet-added";
  CHECK(EffectiveDocState(s, orphan) == "initializing");
  for (const char* state : {"initializing", "running", "pending", "crashing", "error", "failed",
                            "completed", "duplicate", "paused"}) {
    CHECK(IsDocState(state));
  }
  CHECK_FALSE(IsDocState("job"));
  CHECK_FALSE(IsDocState("Running"));
}

TEST_CASE("status render: docs have CouchDB 3.4's members (recordings 60-63)") {
  EngineSnapshot s = Sample();
  // couchrepd has no HTTP proxies, so no source_proxy/target_proxy.
  std::string couch_running = ResponseBody("61-scheduler-doc-running.http");
  std::string ours = RenderSchedulerDoc(s, "_replicator", "rec_cont", kNode).value();
  CheckSameMembers(ours, couch_running, {"source_proxy", "target_proxy"});
  for (const char* k : {"database", "doc_id", "id", "source", "target", "state", "error_count",
                        "last_updated", "start_time"}) {
    CAPTURE(k);
    CHECK(Member(ours, k) == Member(couch_running, k));
  }
  std::string couch_crashing = ResponseBody("63-scheduler-doc-crashing.http");
  ours = RenderSchedulerDoc(s, "_replicator", "rec_crash", kNode).value();
  CheckSameMembers(ours, couch_crashing, {"source_proxy", "target_proxy"});
  for (const char* k : {"id", "state", "info", "error_count", "last_updated", "start_time"}) {
    CAPTURE(k);
    CHECK(Member(ours, k) == Member(couch_crashing, k));
  }
  // Completed: no node (no job); couchrepd keeps the replication id.
  std::string couch_completed = ResponseBody("62-scheduler-doc-completed.http");
  ours = RenderSchedulerDoc(s, "_replicator", "rec_once", kNode).value();
  CheckSameMembers(ours, couch_completed, {});
  CHECK(Member(ours, "state") == Member(couch_completed, "state"));
  std::string couch_list = ResponseBody("60-scheduler-docs.http");
  CHECK(Keys(RenderSchedulerDocs(s, DocsQuery{}, kNode)) == Keys(couch_list));
}

TEST_CASE("status render: _active_tasks, exactly, for running jobs only") {
  EngineSnapshot s = Sample();
  const std::string task =
      R"({"node":"couchrepd@test","pid":null,"type":"replication","replication_id":")" + kCont +
      R"(","doc_id":"rec_cont","database":"_replicator","user":null,)"
      R"("source":"http://127.0.0.1:5984/rec_db/","target":"http://127.0.0.1:5984/rec_cont_tgt/",)"
      R"("continuous":true,"revisions_checked":6,"missing_revisions_found":6,"docs_read":6,)"
      R"("docs_written":6,"doc_write_failures":0,"changes_pending":0,"checkpointed_source_seq":"0",)"
      R"("source_seq":)" +
      kSeq + R"(,"through_seq":)" + kSeq + R"(,"started_on":1795448147,"updated_on":1795448156})";
  CHECK(RenderActiveTasks(s, kNode) == "[" + task + "]");
  // CouchDB's members, less its internals (bulk_get_*, checkpoint_interval,
  // process_status), plus progress for one-shot jobs.
  std::string couch = FirstArrayElement(ResponseBody("64-active-tasks.http"), nullptr);
  CheckSameMembers(task, couch,
                   {"bulk_get_attempts", "bulk_get_docs", "checkpoint_interval", "process_status"});

  // A running one-shot job shows its progress in percent.
  s.jobs[1].state = JobState::kRunning;
  JobSnapshot p;
  p.run_stats.revisions_checked = 30;
  p.stats.revisions_checked = 130;
  p.changes_pending = 10;
  p.source_seq = "40";
  p.started_unix = 1795448151;
  s.progress[1] = p;
  std::string both = RenderActiveTasks(s, kNode);
  CHECK(both.find(R"("started_on":1795448151,"updated_on":1795448156,"progress":75})") !=
        std::string::npos);
  CHECK(both.find(R"("user":"bob")") != std::string::npos);
  s.progress[1]->source_seq.reset();  // nothing read yet
  CHECK(RenderActiveTasks(s, kNode).find(R"("progress":0})") != std::string::npos);
  s.progress[1]->source_seq = "40";
  s.progress[1]->run_stats.revisions_checked = 0;
  s.progress[1]->changes_pending = 0;  // an empty source
  CHECK(RenderActiveTasks(s, kNode).find(R"("progress":100})") != std::string::npos);
  CHECK(RenderActiveTasks(EngineSnapshot{}, kNode) == "[]");
}

TEST_CASE("status render: health is ok only when every replicator feed is connected") {
  EngineSnapshot s = Sample();
  HealthReport h = RenderHealth(s);
  CHECK_FALSE(h.ok);
  CHECK(h.body ==
        R"({"ok":false,"reasons":["team/_replicator: unauthorized: You are not a server admin."],)"
        R"("feeds":[{"database":"_replicator","connected":true,"last_seq":12,"reconnects":1,)"
        R"("docs_processed":6},{"database":"team/_replicator","connected":false,)"
        R"("error":"unauthorized: You are not a server admin.","last_seq":null,"reconnects":3,)"
        R"("docs_processed":1}]})");
  s.feeds.pop_back();
  h = RenderHealth(s);
  CHECK(h.ok);
  CHECK(h.body == R"({"ok":true,"feeds":[{"database":"_replicator","connected":true,"last_seq":12,)"
                  R"("reconnects":1,"docs_processed":6}]})");
  s.feeds[0].connected = false;
  s.feeds[0].error.clear();
  CHECK(RenderHealth(s).body.find(R"("reasons":["_replicator: not connected yet"])") !=
        std::string::npos);
  s.feeds[0].connected = true;
  s.shutting_down = true;
  CHECK(RenderHealth(s).body.rfind(R"({"ok":false,"reasons":["couchrepd is shutting down"])", 0) ==
        0);
  s.shutting_down = false;
  // Without the validation function, local endpoints get no credentials
  // (SPEC §1.3): not ready, and the reason says why.
  s.feeds[0].validation = "_design/_replicator was deleted";
  h = RenderHealth(s);
  CHECK_FALSE(h.ok);
  CHECK(h.body == R"({"ok":false,"reasons":["_replicator: the validation function is not in place: )"
                  R"(_design/_replicator was deleted"],"feeds":[{"database":"_replicator",)"
                  R"("connected":true,"validation":"_design/_replicator was deleted","last_seq":12,)"
                  R"("reconnects":1,"docs_processed":6}]})");
  h = RenderHealth(EngineSnapshot{});
  CHECK_FALSE(h.ok);
  CHECK(h.body ==
        R"({"ok":false,"reasons":["no replicator database is followed yet"],"feeds":[]})");
}

TEST_CASE("status render: liveness follows the age of the engine's last snapshot") {
  EngineSnapshot s;
  const TimePoint t0 = TimePoint{} + std::chrono::hours(1);
  HealthReport h = RenderLiveness(s, t0);
  CHECK_FALSE(h.ok);
  CHECK(h.body == R"({"ok":false,"reason":"the engine has not published its state yet",)"
                  R"("snapshot_age_seconds":0})");
  s.steady_now = t0;
  h = RenderLiveness(s, t0 + std::chrono::milliseconds(1500));
  CHECK(h.ok);
  CHECK(h.body == R"({"ok":true,"snapshot_age_seconds":1.5})");
  CHECK(RenderLiveness(s, t0 + kMaxSnapshotAge).ok);
  h = RenderLiveness(s, t0 + std::chrono::seconds(42));
  CHECK_FALSE(h.ok);
  CHECK(h.body == R"({"ok":false,"reason":"the engine loop has not answered for 42 s",)"
                  R"("snapshot_age_seconds":42})");
  // Feeds do not matter here: a disconnected server is not a reason to restart.
  s = Sample();
  s.steady_now = t0;
  CHECK_FALSE(RenderHealth(s).ok);
  CHECK(RenderLiveness(s, t0).ok);
}

TEST_CASE("status render: the service manager's status line and readiness") {
  EngineSnapshot s = Sample();
  CAPTURE(ServiceStatusLine(s));
  CHECK_FALSE(FeedsConnected(s));  // team/_replicator is not connected
  int running = 0, crashing = 0;
  for (const auto& j : s.jobs) {
    running += j.state == JobState::kRunning;
    crashing += j.state == JobState::kCrashing;
  }
  CHECK(ServiceStatusLine(s).rfind(std::to_string(running) + " running, ", 0) == 0);
  CHECK(ServiceStatusLine(s).find(std::to_string(crashing) + " crashing") != std::string::npos);
  CHECK(ServiceStatusLine(s).find("; 1/2 replicator feeds connected") != std::string::npos);
  s.feeds.pop_back();
  CHECK(FeedsConnected(s));
  CHECK(ServiceStatusLine(s).find("; 1/1 replicator feeds connected") != std::string::npos);
  CHECK_FALSE(FeedsConnected(EngineSnapshot{}));
  CHECK(ServiceStatusLine(EngineSnapshot{}) ==
        "0 running, 0 pending, 0 crashing, 0 paused; 0/0 replicator feeds connected");
}

TEST_CASE("status render: /metrics, exactly") {
  EngineSnapshot s = Sample();
  HttpMetricsSnapshot http;
  HostHttpCounters c;
  c.status_2xx = 40;
  c.status_4xx = 3;
  c.status_5xx = 1;
  c.connection_errors = 2;
  c.retries = 3;
  c.rate_limited = 1;
  http.hosts["127.0.0.1:5984"] = c;
  http.hosts["[::1]:6984"] = HostHttpCounters{1, 0, 0, 0, 0, 0, 0};
  const std::string id_cont = "{replication_id=\"" + kCont + "\"}";
  const std::string id_crash = "{replication_id=\"" + kCrash + "\"}";
  const std::string expected =
      "# HELP couchrepd_build_info couchrepd build information (always 1).\n"
      "# TYPE couchrepd_build_info gauge\n"
      "couchrepd_build_info{version=\"1.2.3\"} 1\n"
      "# HELP couchrepd_jobs Replication jobs by scheduler state.\n"
      "# TYPE couchrepd_jobs gauge\n"
      "couchrepd_jobs{state=\"pending\"} 1\n"
      "couchrepd_jobs{state=\"running\"} 1\n"
      "couchrepd_jobs{state=\"crashing\"} 1\n"
      "couchrepd_jobs{state=\"completed\"} 0\n"
      "couchrepd_jobs{state=\"failed\"} 0\n"
      "couchrepd_jobs{state=\"paused\"} 0\n"
      "# HELP couchrepd_replication_docs Replication documents by state.\n"
      "# TYPE couchrepd_replication_docs gauge\n"
      "couchrepd_replication_docs{state=\"initializing\"} 0\n"
      "couchrepd_replication_docs{state=\"pending\"} 1\n"
      "couchrepd_replication_docs{state=\"running\"} 1\n"
      "couchrepd_replication_docs{state=\"crashing\"} 1\n"
      "couchrepd_replication_docs{state=\"paused\"} 0\n"
      "couchrepd_replication_docs{state=\"error\"} 0\n"
      "couchrepd_replication_docs{state=\"failed\"} 1\n"
      "couchrepd_replication_docs{state=\"completed\"} 1\n"
      "couchrepd_replication_docs{state=\"duplicate\"} 1\n"
      "# HELP couchrepd_job_info 1 for each job: its replicator database, document and scheduler "
      "state.\n"
      "# TYPE couchrepd_job_info gauge\n"
      "couchrepd_job_info{replication_id=\"" + kCont +
      "\",database=\"_replicator\",doc_id=\"rec_cont\",state=\"running\"} 1\n"
      "couchrepd_job_info{replication_id=\"" + kPend +
      "\",database=\"team/_replicator\",doc_id=\"a\\\"b/c\",state=\"pending\"} 1\n"
      "couchrepd_job_info{replication_id=\"" + kCrash +
      "\",database=\"_replicator\",doc_id=\"rec_crash\",state=\"crashing\"} 1\n"
      "# HELP couchrepd_job_docs_read_total Revisions a job read from its source (kept across "
      "restarts).\n"
      "# TYPE couchrepd_job_docs_read_total counter\n"
      "couchrepd_job_docs_read_total" +
      id_cont +
      " 6\n"
      "couchrepd_job_docs_read_total" +
      id_crash +
      " 0\n"
      "# HELP couchrepd_job_docs_written_total Revisions a job wrote to its target (kept across "
      "restarts).\n"
      "# TYPE couchrepd_job_docs_written_total counter\n"
      "couchrepd_job_docs_written_total" +
      id_cont +
      " 6\n"
      "couchrepd_job_docs_written_total" +
      id_crash +
      " 0\n"
      "# HELP couchrepd_job_doc_write_failures_total Revisions the target refused to store (kept "
      "across restarts).\n"
      "# TYPE couchrepd_job_doc_write_failures_total counter\n"
      "couchrepd_job_doc_write_failures_total" +
      id_cont +
      " 0\n"
      "couchrepd_job_doc_write_failures_total" +
      id_crash +
      " 0\n"
      "# HELP couchrepd_job_revisions_checked_total Revisions a job asked its target about (kept "
      "across restarts).\n"
      "# TYPE couchrepd_job_revisions_checked_total counter\n"
      "couchrepd_job_revisions_checked_total" +
      id_cont +
      " 6\n"
      "couchrepd_job_revisions_checked_total" +
      id_crash +
      " 0\n"
      "# HELP couchrepd_job_missing_revisions_found_total Revisions the target lacked (kept across "
      "restarts).\n"
      "# TYPE couchrepd_job_missing_revisions_found_total counter\n"
      "couchrepd_job_missing_revisions_found_total" +
      id_cont +
      " 6\n"
      "couchrepd_job_missing_revisions_found_total" +
      id_crash +
      " 0\n"
      "# HELP couchrepd_job_changes_pending Source changes a job has not processed yet.\n"
      "# TYPE couchrepd_job_changes_pending gauge\n"
      "couchrepd_job_changes_pending" +
      id_cont +
      " 0\n"
      "couchrepd_job_changes_pending" +
      id_crash +
      " 0\n"
      "# HELP couchrepd_job_checkpoint_age_seconds Seconds since a running job's last checkpoint "
      "(since its start if none).\n"
      "# TYPE couchrepd_job_checkpoint_age_seconds gauge\n"
      "couchrepd_job_checkpoint_age_seconds" +
      id_cont +
      " 4.500\n"
      "# HELP couchrepd_checkpoints_total Checkpoints saved (ok) or not (failed) by every job run "
      "since start.\n"
      "# TYPE couchrepd_checkpoints_total counter\n"
      "couchrepd_checkpoints_total{result=\"ok\"} 2\n"
      "couchrepd_checkpoints_total{result=\"failed\"} 1\n"
      "# HELP couchrepd_job_starts_total Job runs started.\n"
      "# TYPE couchrepd_job_starts_total counter\n"
      "couchrepd_job_starts_total 3\n"
      "# HELP couchrepd_job_crashes_total Job runs that crashed.\n"
      "# TYPE couchrepd_job_crashes_total counter\n"
      "couchrepd_job_crashes_total 1\n"
      "# HELP couchrepd_http_requests_total HTTP requests to CouchDB endpoints by host and outcome "
      "(status class, or connection_error when no response came).\n"
      "# TYPE couchrepd_http_requests_total counter\n"
      "couchrepd_http_requests_total{host=\"127.0.0.1:5984\",class=\"2xx\"} 40\n"
      "couchrepd_http_requests_total{host=\"127.0.0.1:5984\",class=\"3xx\"} 0\n"
      "couchrepd_http_requests_total{host=\"127.0.0.1:5984\",class=\"4xx\"} 3\n"
      "couchrepd_http_requests_total{host=\"127.0.0.1:5984\",class=\"5xx\"} 1\n"
      "couchrepd_http_requests_total{host=\"127.0.0.1:5984\",class=\"connection_error\"} 2\n"
      "couchrepd_http_requests_total{host=\"[::1]:6984\",class=\"2xx\"} 1\n"
      "couchrepd_http_requests_total{host=\"[::1]:6984\",class=\"3xx\"} 0\n"
      "couchrepd_http_requests_total{host=\"[::1]:6984\",class=\"4xx\"} 0\n"
      "couchrepd_http_requests_total{host=\"[::1]:6984\",class=\"5xx\"} 0\n"
      "couchrepd_http_requests_total{host=\"[::1]:6984\",class=\"connection_error\"} 0\n"
      "# HELP couchrepd_http_request_failures_total HTTP requests that failed: 5xx answers and "
      "connection errors.\n"
      "# TYPE couchrepd_http_request_failures_total counter\n"
      "couchrepd_http_request_failures_total{host=\"127.0.0.1:5984\"} 3\n"
      "couchrepd_http_request_failures_total{host=\"[::1]:6984\"} 0\n"
      "# HELP couchrepd_http_retries_total HTTP requests sent again after a failure.\n"
      "# TYPE couchrepd_http_retries_total counter\n"
      "couchrepd_http_retries_total{host=\"127.0.0.1:5984\"} 3\n"
      "couchrepd_http_retries_total{host=\"[::1]:6984\"} 0\n"
      "# HELP couchrepd_http_rate_limited_total 429 Too Many Requests answers that slowed the "
      "request pacing down.\n"
      "# TYPE couchrepd_http_rate_limited_total counter\n"
      "couchrepd_http_rate_limited_total{host=\"127.0.0.1:5984\"} 1\n"
      "couchrepd_http_rate_limited_total{host=\"[::1]:6984\"} 0\n"
      "# HELP couchrepd_replicator_feed_connected 1 while the replicator database's _changes feed "
      "is "
      "connected.\n"
      "# TYPE couchrepd_replicator_feed_connected gauge\n"
      "couchrepd_replicator_feed_connected{database=\"_replicator\"} 1\n"
      "couchrepd_replicator_feed_connected{database=\"team/_replicator\"} 0\n"
      "# HELP couchrepd_replicator_feed_reconnects_total Times the replicator database's _changes "
      "feed was lost and reopened.\n"
      "# TYPE couchrepd_replicator_feed_reconnects_total counter\n"
      "couchrepd_replicator_feed_reconnects_total{database=\"_replicator\"} 1\n"
      "couchrepd_replicator_feed_reconnects_total{database=\"team/_replicator\"} 3\n"
      "# HELP couchrepd_replicator_docs_processed_total Replicator database changes (document "
      "updates) processed.\n"
      "# TYPE couchrepd_replicator_docs_processed_total counter\n"
      "couchrepd_replicator_docs_processed_total{database=\"_replicator\"} 6\n"
      "couchrepd_replicator_docs_processed_total{database=\"team/_replicator\"} 1\n";
  std::string text = RenderMetrics(s, http, "1.2.3");
  CHECK(text == expected);
  auto parsed = ParsePrometheusText(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error);
  for (const auto& [name, family] : parsed.families) CHECK(name.rfind("couchrepd_", 0) == 0);
  CHECK(parsed.Value("couchrepd_job_docs_written_total", {{"replication_id", kCont}}) == 6);
  CHECK(parsed.Value("couchrepd_jobs", {{"state", "crashing"}}) == 1);
}

TEST_CASE("status render: /metrics with nothing to show leaves empty families out") {
  std::string text = RenderMetrics(EngineSnapshot{}, HttpMetricsSnapshot{}, "0.1.0");
  auto parsed = ParsePrometheusText(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error);
  CHECK(parsed.families.count("couchrepd_job_docs_read_total") == 0);
  CHECK(parsed.families.count("couchrepd_http_requests_total") == 0);
  CHECK(parsed.Value("couchrepd_jobs", {{"state", "running"}}) == 0);
  CHECK(parsed.Value("couchrepd_build_info", {{"version", "0.1.0"}}) == 1);
}

TEST_CASE("status render: label values are escaped; ids with quotes and backslashes parse back") {
  CHECK(EscapeLabelValue("plain") == "plain");
  CHECK(EscapeLabelValue("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  EngineSnapshot s = Sample();
  s.jobs[0].info.id = "odd\"id\\with\nbreak";
  s.feeds[0].db = "q\"uote/_replicator";
  auto parsed = ParsePrometheusText(RenderMetrics(s, HttpMetricsSnapshot{}, "v\"1"));
  REQUIRE_MESSAGE(parsed.ok(), parsed.error);
  CHECK(parsed.Value("couchrepd_job_docs_read_total",
                     {{"replication_id", "odd\"id\\with\nbreak"}}) == 6);
  CHECK(parsed.Value("couchrepd_replicator_feed_connected",
                     {{"database", "q\"uote/_replicator"}}) == 1);
  CHECK(parsed.Value("couchrepd_build_info", {{"version", "v\"1"}}) == 1);
}

TEST_CASE("status render: a registered secret never reaches any body") {
  RegisterBasicCredentials("renderuser", "R3nder-Secret-pw");
  RegisterSecret("Bearer-tok-5f2c9a");
  EngineSnapshot s = Sample();
  // As if a display form or a reason had let one through.
  s.descriptions[0].source = "http://renderuser:R3nder-Secret-pw@127.0.0.1:5984/rec_db/";
  s.descriptions[0].target = "http://127.0.0.1:5984/x?token=Bearer-tok-5f2c9a";
  s.jobs[2].last_error = "could not open with R3nder-Secret-pw";
  s.jobs[2].history[0].reason = s.jobs[2].last_error;
  s.docs[0].error = "Authorization: Bearer Bearer-tok-5f2c9a";
  s.docs[2].error = s.jobs[2].last_error;
  s.feeds[1].error = "Bearer-tok-5f2c9a R3nder-Secret-pw";
  s.jobs[0].info.id = "R3nder-Secret-pw";  // absurd, but labels are scrubbed too
  s.descriptions[0].id = s.jobs[0].info.id;
  std::vector<std::string> bodies = {
      RenderSchedulerJobs(s, Page{}, kNode),
      RenderSchedulerDocs(s, DocsQuery{}, kNode),
      RenderActiveTasks(s, kNode),
      RenderHealth(s).body,
      RenderMetrics(s, HttpMetricsSnapshot{}, "0.1.0"),
  };
  for (const auto& body : bodies) {
    CHECK(body.find("R3nder-Secret-pw") == std::string::npos);
    CHECK(body.find("Bearer-tok-5f2c9a") == std::string::npos);
    CHECK(body.find(Base64Encode("renderuser:R3nder-Secret-pw")) == std::string::npos);
  }
  CHECK(bodies[0].find("http://renderuser:*****@127.0.0.1:5984/rec_db/") != std::string::npos);
}

TEST_CASE("status render: request paths name endpoints; database names may hold '/'") {
  using Kind = StatusRoute::Kind;
  const std::vector<std::string> known = {"_replicator", "other", "team/_replicator"};
  struct Case {
    const char* path;
    StatusRoute route;
  };
  auto R = [](Kind kind, std::string job = "", std::string action = "", std::string db = "",
              std::string doc = "") {
    StatusRoute r;
    r.kind = kind;
    r.job_id = std::move(job);
    r.action = std::move(action);
    r.db = std::move(db);
    r.doc_id = std::move(doc);
    return r;
  };
  std::vector<Case> cases = {
      {"/", R(Kind::kDashboard)},
      {"", R(Kind::kDashboard)},
      {"/_scheduler/jobs", R(Kind::kJobs)},
      {"/_scheduler/jobs/", R(Kind::kJobs)},
      {"/_scheduler/jobs/abc%2Bcontinuous", R(Kind::kJob, "abc+continuous")},
      {"/_scheduler/jobs/abc+continuous", R(Kind::kJob, "abc+continuous")},
      {"/_scheduler/jobs/abc/reset", R(Kind::kJobAction, "abc", "reset")},
      {"/_scheduler/jobs/abc/pause", R(Kind::kJobAction, "abc", "pause")},
      {"/_scheduler/jobs/abc/resume", R(Kind::kJobAction, "abc", "resume")},
      {"/_scheduler/jobs/abc/restart", R(Kind::kNotFound)},
      {"/_scheduler/jobs/abc/reset/x", R(Kind::kNotFound)},
      {"/_scheduler/docs", R(Kind::kDocs)},
      {"/_scheduler/docs/_replicator", R(Kind::kDatabaseDocs, "", "", "_replicator")},
      {"/_scheduler/docs/_replicator/rec_once", R(Kind::kDoc, "", "", "_replicator", "rec_once")},
      {"/_scheduler/docs/_replicator/a%2Fb", R(Kind::kDoc, "", "", "_replicator", "a/b")},
      {"/_scheduler/docs/_replicator/_design/x", R(Kind::kDoc, "", "", "_replicator", "_design/x")},
      {"/_scheduler/docs/team/_replicator", R(Kind::kDatabaseDocs, "", "", "team/_replicator")},
      {"/_scheduler/docs/team%2F_replicator", R(Kind::kDatabaseDocs, "", "", "team/_replicator")},
      {"/_scheduler/docs/team/_replicator/d1", R(Kind::kDoc, "", "", "team/_replicator", "d1")},
      {"/_scheduler/docs/team%2f_replicator/d%201",
       R(Kind::kDoc, "", "", "team/_replicator", "d 1")},
      {"/_scheduler/docs/other", R(Kind::kDatabaseDocs, "", "", "other")},
      {"/_scheduler/docs/other/doc", R(Kind::kDoc, "", "", "other", "doc")},
      // Unknown databases: the shortest prefix ending in /_replicator, else one segment.
      {"/_scheduler/docs/a/b/_replicator/c", R(Kind::kDoc, "", "", "a/b/_replicator", "c")},
      {"/_scheduler/docs/nosuch", R(Kind::kDatabaseDocs, "", "", "nosuch")},
      {"/_scheduler/docs/nosuch/doc/x", R(Kind::kDoc, "", "", "nosuch", "doc/x")},
      {"/_scheduler/docs/bad%zz", R(Kind::kBadPath)},
      {"/_scheduler/docs/bad%2", R(Kind::kBadPath)},
      {"/_active_tasks", R(Kind::kActiveTasks)},
      {"/metrics", R(Kind::kMetrics)},
      {"/health", R(Kind::kHealth)},
      {"/health/ready", R(Kind::kHealth)},
      {"/health/live", R(Kind::kHealthLive)},
      {"/health/x", R(Kind::kNotFound)},
      {"/health/live/x", R(Kind::kNotFound)},
      {"/_scheduler", R(Kind::kNotFound)},
      {"/_utils", R(Kind::kNotFound)},
  };
  for (const auto& c : cases) {
    CAPTURE(c.path);
    StatusRoute got = ParseStatusPath(c.path, known);
    CHECK(static_cast<int>(got.kind) == static_cast<int>(c.route.kind));
    CHECK(got.job_id == c.route.job_id);
    CHECK(got.action == c.route.action);
    CHECK(got.db == c.route.db);
    CHECK(got.doc_id == c.route.doc_id);
  }
  EngineSnapshot s = Sample();
  CHECK(KnownDatabases(s) == std::vector<std::string>{"_replicator", "team/_replicator"});
  CHECK(KnowsDatabase(s, "team/_replicator"));
  CHECK_FALSE(KnowsDatabase(s, "team"));
}

TEST_CASE("status render: error bodies") {
  CHECK(ErrorBody("not_found", "unknown job id") ==
        R"({"error":"not_found","reason":"unknown job id"})");
}

// The test's own parser must be strict, or the /metrics checks prove nothing.
TEST_CASE("prometheus text parser: accepts the format, rejects what it forbids") {
  const std::string ok =
      "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"a\\\\b\\\"c\\nd\"} 3\n"
      "a_total{x=\"2\",} 4 1700000000000\n"
      "# some comment\n\n# TYPE h histogram\n# HELP h Sizes.\nh_bucket{le=\"+Inf\"} 1\nh_sum 2.5\n"
      "h_count 1\n# HELP g A gauge.\n# TYPE g gauge\ng NaN\ng{k=\"v\"} -Inf\n";
  auto parsed = ParsePrometheusText(ok);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error);
  CHECK(parsed.Value("a_total", {{"x", "2"}}) == 4);
  CHECK(parsed.Value("a_total", {{"x", "1"}, {"y", "a\\b\"c\nd"}}) == 3);
  CHECK(parsed.families.at("h").samples.size() == 3);

  const char* bad[] = {
      "# HELP a A.\n# TYPE a gauge\na 1",                           // no final line feed
      "a 1\n",                                                      // no HELP/TYPE
      "# TYPE a gauge\na 1\n",                                      // no HELP
      "# HELP a A.\na 1\n",                                         // no TYPE
      "# HELP a A.\n# TYPE a gauge\na 1\n# HELP a again\n",         // HELP after samples
      "# HELP a A.\n# TYPE a gauge\n# TYPE a counter\na 1\n",       // two TYPEs
      "# HELP a A.\n# TYPE a gauges\na 1\n",                        // unknown type
      "# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n",                      // bad metric name
      "# HELP a A.\n# TYPE a gauge\na{1x=\"v\"} 1\n",               // bad label name
      "# HELP a A.\n# TYPE a gauge\na{__x=\"v\"} 1\n",              // reserved label name
      "# HELP a A.\n# TYPE a gauge\na{x=\"v\\t\"} 1\n",             // bad escape
      "# HELP a A.\n# TYPE a gauge\na{x=\"v} 1\n",                  // unterminated value
      "# HELP a A.\n# TYPE a gauge\na{x=\"v\",x=\"w\"} 1\n",        // duplicate label
      "# HELP a A.\n# TYPE a gauge\na{x=\"v\"} 1\na{x=\"v\"} 2\n",  // duplicate series
      "# HELP a A.\n# TYPE a gauge\na one\n",                       // bad value
      "# HELP a A.\n# TYPE a gauge\na 1 12.5\n",                    // bad timestamp
      "# HELP a A.\n# TYPE a gauge\na  1\n",                        // two spaces
      "# HELP a A.\n# TYPE a gauge\na_sum 1\n",                     // suffix on a gauge
      "# HELP a A\\x.\n# TYPE a gauge\na 1\n",                      // bad HELP escape
      // interleaved families
      "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\na 1\nb 1\n",
      "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
  };
  for (const char* text : bad) {
    CAPTURE(text);
    CHECK_FALSE(ParsePrometheusText(text).ok());
  }
  // CouchDB 3.4.3's own output glues TYPE onto HELP lines (recording 68):
  // its samples then have no TYPE, which this parser refuses.
  CHECK_FALSE(ParsePrometheusText(ResponseBody("68-prometheus-replicator-lines.http")).ok());
}

// Tests for the document processor (SPEC §2): what each replication document
// change and each job event turns into. Fake time, scripted randomness; every
// test asserts the exact list of actions.
#include "couchrepd/doc_processor.h"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace couchrepd {
namespace {

using WriteBack = Config::Replicator::WriteBack;
using std::chrono::milliseconds;

constexpr char kDb[] = "_replicator";
constexpr char kSrc[] = R"("source":"http://src.example/a")";
constexpr char kTgt[] = R"("target":"http://tgt.example/b")";

TimePoint At(int64_t ms) { return TimePoint{} + std::chrono::hours(1) + milliseconds(ms); }

// A document body: `_id`, `_rev`, then `fields` (JSON members, comma-separated).
std::string Body(const std::string& id, int rev, const std::string& fields) {
  return R"({"_id":")" + id + R"(","_rev":")" + std::to_string(rev) + "-abc\"," + fields + "}";
}
std::string Valid(const std::string& extra = "") {
  return std::string(kSrc) + "," + kTgt + (extra.empty() ? "" : "," + extra);
}

Result<ReplicationId> Id(const std::string& base, bool continuous = false) {
  return ReplicationId{base, base + (continuous ? "+continuous" : "")};
}

std::string Describe(const StateWrite& w) {
  std::string out = "{";
  auto add = [&](const std::string& part) { out += (out.size() > 1 ? "," : "") + part; };
  if (w.replication_id) add("id=" + *w.replication_id);
  if (w.state) add("state=" + *w.state);
  if (w.reason) add("reason=" + *w.reason);
  if (w.stats_json) add("stats=" + *w.stats_json);
  if (w.clear_reason) add("clear_reason");
  return out + "}";
}

// One line per action, " | " between them: "compute _replicator/a g1",
// "add _replicator/a X g1", "remove _replicator/a X", "write _replicator/a {...}",
// "retry _replicator/a g1 +500ms" (relative to At(0)).
std::string Describe(const std::vector<DocAction>& actions) {
  std::string out;
  for (const DocAction& a : actions) {
    if (!out.empty()) out += " | ";
    std::string doc = a.doc.db + "/" + a.doc.doc_id;
    std::string gen = " g" + std::to_string(a.generation);
    switch (a.type) {
      case DocAction::Type::kComputeId:
        out += "compute " + doc + gen;
        REQUIRE(a.spec != nullptr);
        break;
      case DocAction::Type::kAddJob:
        out += "add " + doc + " " + a.job_id + gen + (a.continuous ? " continuous" : "");
        REQUIRE(a.spec != nullptr);
        break;
      case DocAction::Type::kRemoveJob:
        out += "remove " + doc + " " + a.job_id;
        break;
      case DocAction::Type::kWriteState:
        out += "write " + doc + " " + Describe(a.write);
        break;
      case DocAction::Type::kClaimJob:
        out += "claim " + doc + " " + a.job_id + gen;
        break;
      case DocAction::Type::kRetryLater:
        out += "retry " + doc + gen + " +" +
               std::to_string(std::chrono::duration_cast<milliseconds>(a.at - At(0)).count()) +
               "ms";
        break;
    }
  }
  return out;
}

Endpoint Server() {
  Endpoint e;
  e.url = ParseUrl("http://127.0.0.1:5984/").value();
  e.credentials.kind = Credentials::Kind::kBasic;
  e.credentials.username = "admin";
  e.credentials.password = "server-secret";
  return e;
}

DocProcessorSettings Settings(WriteBack mode = WriteBack::kClassic, int error_after = 1) {
  DocProcessorSettings s;
  s.write_back = mode;
  s.error_after = error_after;
  s.doc_backoff_initial = std::chrono::seconds(1);
  s.doc_backoff_max = std::chrono::seconds(10);
  s.server = Server();
  return s;
}

// The processor plus short-hands that return described actions.
struct Harness {
  explicit Harness(DocProcessorSettings s = Settings()) : p(std::move(s)) {}

  std::string Change(const std::string& id, const std::string& body, int64_t ms = 0,
                     const std::string& db = kDb) {
    return Describe(p.OnChange(db, id, false, body, At(ms), Random()));
  }
  std::string Delete(const std::string& id, int64_t ms = 0, const std::string& db = kDb) {
    return Describe(p.OnChange(db, id, true, "", At(ms), Random()));
  }
  std::string Computed(const std::string& id, uint64_t gen, const Result<ReplicationId>& rid,
                       int64_t ms = 0, const std::string& db = kDb) {
    return Describe(p.OnIdComputed(DocKey{db, id}, gen, rid, At(ms), Random()));
  }
  std::string RetryDue(const std::string& id, uint64_t gen, int64_t ms = 0) {
    return Describe(p.OnRetryDue(DocKey{kDb, id}, gen, At(ms)));
  }
  std::string Started(const std::string& job, int64_t ms = 0) {
    return Describe(p.OnJobStarted(job, At(ms)));
  }
  std::string Crashed(const std::string& job, const std::string& reason, int n, int64_t ms = 0) {
    return Describe(p.OnJobCrashed(job, reason, n, At(ms)));
  }
  std::string Healthy(const std::string& job, int64_t ms = 0) {
    return Describe(p.OnJobHealthy(job, At(ms)));
  }
  std::string Completed(const std::string& job, const std::string& stats, int64_t ms = 0) {
    return Describe(p.OnJobCompleted(job, stats, At(ms)));
  }
  std::string Failed(const std::string& job, const std::string& reason, int64_t ms = 0) {
    return Describe(p.OnJobFailed(job, reason, At(ms)));
  }
  std::string Claim(const std::string& id, uint64_t gen, const std::string& job,
                    const std::optional<std::string>& elsewhere, int64_t ms = 0) {
    return Describe(p.OnJobClaim(DocKey{kDb, id}, gen, job, elsewhere, At(ms)));
  }
  std::string Freed(const std::string& job, int64_t ms = 0) {
    return Describe(p.OnJobFreed(job, At(ms)));
  }
  DocView View(const std::string& id, const std::string& db = kDb) {
    auto v = p.Doc(DocKey{db, id});
    REQUIRE(v.has_value());
    return *v;
  }

  // Scripted randomness: consumed in order; running out is a test bug.
  std::function<double()> Random() {
    return [this] {
      REQUIRE(next_random < randoms.size());
      return randoms[next_random++];
    };
  }

  DocProcessor p;
  std::vector<double> randoms;
  size_t next_random = 0;
};

// A document running job "X" (classic): a, generation 1.
void StartRunning(Harness& h, const std::string& doc = "a", const std::string& job = "X",
                  uint64_t gen = 1) {
  REQUIRE(h.Change(doc, Body(doc, 1, Valid())) ==
          "compute _replicator/" + doc + " g" + std::to_string(gen));
  REQUIRE(h.Computed(doc, gen, Id(job)) ==
          "add _replicator/" + doc + " " + job + " g" + std::to_string(gen));
}

TEST_CASE("a new valid document: id, job, triggered, and its echo does nothing") {
  Harness h;
  CHECK(h.Change("a", Body("a", 1, Valid(R"("continuous":true)"))) == "compute _replicator/a g1");
  DocView v = h.View("a");
  CHECK(v.state == "initializing");
  CHECK(v.job_id.empty());
  CHECK(v.source == "http://src.example/a/");
  CHECK(v.target == "http://tgt.example/b/");
  CHECK(v.continuous);
  CHECK(v.last_updated == At(0));

  CHECK(h.Computed("a", 1, Id("X", true), 10) == "add _replicator/a X+continuous g1 continuous");
  CHECK(h.View("a").state == "job");
  CHECK(h.View("a").job_id == "X+continuous");
  CHECK(h.p.OwnerOf("X+continuous") == DocKey{kDb, "a"});
  CHECK_FALSE(h.p.OwnerOf("X").has_value());

  CHECK(h.Started("X+continuous", 20) ==
        "write _replicator/a {id=X+continuous,state=triggered,clear_reason}");
  // Our write comes back through the feed.
  CHECK(h.Change("a",
                 Body("a", 2,
                      Valid(R"("continuous":true,"_replication_state":"triggered",)"
                            R"("_replication_id":"X+continuous",)"
                            R"("_replication_state_time":"2026-01-01T00:00:00Z")")),
                 30) == "");
  // Restarted later (rotation): the document already says so.
  CHECK(h.Started("X+continuous", 40) == "");
  CHECK(h.View("a").state == "job");
}

TEST_CASE("terminal mode writes nothing when a job starts") {
  Harness h(Settings(WriteBack::kTerminal));
  StartRunning(h);
  CHECK(h.Started("X") == "");
  CHECK(h.Crashed("X", "boom", 5) == "");
  CHECK(h.Healthy("X") == "");
}

TEST_CASE("an update that leaves the normalised replication unchanged does nothing") {
  Harness h;
  StartRunning(h);
  CHECK(h.Change("a", Body("a", 2, std::string(kTgt) + "," + kSrc)) == "");  // reordered
  CHECK(h.Change("a", Body("a", 3, Valid(R"("note":"hello","owner":"bob")"))) == "");
  CHECK(h.Change("a", Body("a", 4, Valid(R"("continuous":false,"worker_processes":"4")"))) == "");
  CHECK(h.View("a").state == "job");
}

TEST_CASE("a changed target replaces the job; the old generation's answer is stale") {
  Harness h;
  StartRunning(h);
  CHECK(h.Change("a", Body("a", 2, std::string(kSrc) + R"(,"target":"http://tgt.example/c")"), 5) ==
        "remove _replicator/a X | compute _replicator/a g2");
  CHECK(h.View("a").state == "initializing");
  CHECK(h.View("a").target == "http://tgt.example/c/");
  CHECK(h.Computed("a", 1, Id("X")) == "");  // stale
  CHECK(h.Started("X") == "");               // the removed job is no longer this doc's
  CHECK_FALSE(h.p.OwnerOf("X").has_value());
  CHECK(h.Computed("a", 2, Id("Y"), 6) == "add _replicator/a Y g2");
  CHECK(h.p.OwnerOf("Y") == DocKey{kDb, "a"});
  CHECK_FALSE(h.p.OwnerOf("X").has_value());
}

TEST_CASE("a credentials-only change replaces the job under the same id") {
  Harness h;
  StartRunning(h);
  CHECK(h.Change("a",
                 Body("a", 2, R"("source":"http://bob:pw@src.example/a",)" + std::string(kTgt))) ==
        "remove _replicator/a X | compute _replicator/a g2");
  CHECK(h.View("a").source == "http://bob:*****@src.example/a/");
  CHECK(h.Computed("a", 2, Id("X")) == "add _replicator/a X g2");
  CHECK(h.p.OwnerOf("X") == DocKey{kDb, "a"});
}

TEST_CASE("deleting a document stops its job, without write-back") {
  Harness h;
  StartRunning(h);
  CHECK(h.Delete("a") == "remove _replicator/a X");
  CHECK_FALSE(h.p.Doc(DocKey{kDb, "a"}).has_value());
  CHECK_FALSE(h.p.OwnerOf("X").has_value());
  CHECK(h.Delete("a") == "");
  CHECK(h.Delete("never-seen") == "");
  CHECK(h.Started("X") == "");
  CHECK(h.Crashed("X", "late", 1) == "");
  CHECK(h.Completed("X", "{}") == "");

  SUBCASE("while the id is being computed: the late answer is ignored") {
    CHECK(h.Change("b", Body("b", 1, Valid())) == "compute _replicator/b g2");
    CHECK(h.Delete("b") == "");
    CHECK(h.Computed("b", 2, Id("Y")) == "");
  }
  SUBCASE("re-created: a fresh generation") {
    CHECK(h.Change("a", Body("a", 3, Valid())) == "compute _replicator/a g2");
    CHECK(h.Computed("a", 1, Id("X")) == "");
    CHECK(h.Computed("a", 2, Id("X")) == "add _replicator/a X g2");
  }
}

TEST_CASE(
    "invalid documents: one error write naming the field; the echo does nothing; a fix runs") {
  struct Case {
    std::string fields;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {kTgt, "`source` is missing"},
      {Valid(R"("continuous":"yes")"), "`continuous` must be a boolean"},
      {R"("source":"ftp://src.example/a",)" + std::string(kTgt),
       "`source`: unsupported scheme `ftp` (only http and https)"},
      {R"("source":"http://[oops/a",)" + std::string(kTgt),
       "`source`: unterminated IPv6 address in the URL"},
      {Valid(R"("doc_ids":["x"],"filter":"d/f")"),
       "`doc_ids`, `filter` and `selector` are mutually exclusive"},
  };
  for (WriteBack mode : {WriteBack::kClassic, WriteBack::kTerminal}) {
    const std::string state = mode == WriteBack::kClassic ? "error" : "failed";
    for (const Case& c : cases) {
      CAPTURE(c.fields);
      CAPTURE(state);
      Harness h(Settings(mode));
      CHECK(h.Change("a", Body("a", 1, c.fields)) ==
            "write _replicator/a {state=" + state + ",reason=" + c.reason + "}");
      DocView v = h.View("a");
      CHECK(v.state == "failed");
      CHECK(v.error == c.reason);
      CHECK(v.error_count == 1);
      CHECK(v.job_id.empty());
      // The echo of our write: same body, new _rev and _replication_* fields.
      std::string echo = Body("a", 2,
                              c.fields + R"(,"_replication_state":")" + state +
                                  R"(","_replication_state_reason":"whatever",)" +
                                  R"("_replication_state_time":"2026-01-01T00:00:00Z")");
      CHECK(h.Change("a", echo) == "");
      CHECK(h.View("a").state == "failed");
      // The user fixes the document (and removes the state).
      CHECK(h.Change("a", Body("a", 3, Valid())) == "compute _replicator/a g1");
      CHECK(h.Computed("a", 1, Id("X")) == "add _replicator/a X g1");
    }
  }
}

TEST_CASE("an invalid document is written once, also across unrelated edits") {
  Harness h;
  std::string bad = Valid(R"("continuous":"yes")");
  CHECK(h.Change("a", Body("a", 1, bad)) ==
        "write _replicator/a {state=error,reason=`continuous` must be a boolean}");
  // A restart of couchrepd: the document already holds that state and reason.
  Harness restarted;
  std::string written = bad + R"(,"_replication_state":"error",)" +
                        R"("_replication_state_reason":"`continuous` must be a boolean")";
  CHECK(restarted.Change("a", Body("a", 2, written)) == "");
  CHECK(restarted.View("a").state == "failed");
  // An edit that keeps it invalid: re-parsed, but the same state is not rewritten.
  CHECK(restarted.Change("a", Body("a", 3, written + R"(,"note":"x")")) == "");
  // A different problem is.
  CHECK(restarted.Change("a", Body("a", 4, kTgt)) ==
        "write _replicator/a {state=error,reason=`source` is missing}");
}

TEST_CASE("a running document that becomes invalid loses its job") {
  Harness h;
  StartRunning(h);
  CHECK(h.Change("a", Body("a", 2, Valid(R"("continuous":1)"))) ==
        "remove _replicator/a X | write _replicator/a {state=error,reason=`continuous` must be a "
        "boolean}");
  CHECK_FALSE(h.p.OwnerOf("X").has_value());
}

TEST_CASE("completed, failed and design documents are left alone") {
  Harness h;
  CHECK(h.Change("c", Body("c", 3,
                           Valid(R"("_replication_state":"completed",)"
                                 R"("_replication_id":"X")"))) == "");
  DocView c = h.View("c");
  CHECK(c.state == "completed");
  CHECK(c.job_id == "X");
  CHECK(c.source == "http://src.example/a/");

  CHECK(h.Change("f", Body("f", 3,
                           R"("source":1,"_replication_state":"failed",)"
                           R"("_replication_state_reason":"bad http://u:pw@h/db")")) == "");
  DocView f = h.View("f");
  CHECK(f.state == "failed");
  CHECK(f.error == "bad http://u:*****@h/db");
  CHECK(f.error_count == 1);

  CHECK(h.Change("_design/_replicator",
                 R"({"_id":"_design/_replicator","validate_doc_update":1})") == "");
  CHECK(h.Change("_design/x", Body("_design/x", 1, Valid())) == "");
  CHECK(h.Delete("_design/x") == "");
  CHECK_FALSE(h.p.Doc(DocKey{kDb, "_design/x"}).has_value());
  CHECK(h.p.Docs().size() == 2);

  // Removing the state runs the document again.
  CHECK(h.Change("c", Body("c", 4, Valid())) == "compute _replicator/c g1");
}

TEST_CASE("a legacy triggered/error state from an earlier run restarts the document") {
  Harness h;
  CHECK(h.Change("a", Body("a", 5,
                           Valid(R"("_replication_state":"triggered",)"
                                 R"("_replication_id":"X")"))) == "compute _replicator/a g1");
  CHECK(h.Computed("a", 1, Id("X")) == "add _replicator/a X g1");
  CHECK(h.Started("X") == "");  // already says triggered with this id

  CHECK(h.Change("b", Body("b", 5,
                           Valid(R"("_replication_state":"error",)"
                                 R"("_replication_state_reason":"old")"))) ==
        "compute _replicator/b g2");
  CHECK(h.Computed("b", 2, Id("Y")) == "add _replicator/b Y g2");
  CHECK(h.Started("Y") == "write _replicator/b {id=Y,state=triggered,clear_reason}");
}

TEST_CASE("duplicates: the second document only gets the id, and takes over when the first goes") {
  Harness h;
  StartRunning(h);
  CHECK(h.Started("X") == "write _replicator/a {id=X,state=triggered,clear_reason}");
  // Two later documents for the same replication; `z` is older than `b`.
  CHECK(h.Change("z", Body("z", 1, Valid()), 10) == "compute _replicator/z g2");
  CHECK(h.Computed("z", 2, Id("X"), 11) == "write _replicator/z {id=X}");
  CHECK(h.Change("b", Body("b", 1, Valid()), 12) == "compute _replicator/b g3");
  CHECK(h.Computed("b", 3, Id("X"), 13) == "write _replicator/b {id=X}");
  DocView z = h.View("z");
  CHECK(z.state == "duplicate");
  CHECK(z.job_id == "X");
  CHECK(h.p.OwnerOf("X") == DocKey{kDb, "a"});
  // The echo of the id write does nothing; neither do job events.
  CHECK(h.Change("z", Body("z", 2, Valid(R"("_replication_id":"X")"))) == "");
  CHECK(h.Crashed("X", "boom", 1) == "write _replicator/a {id=X,state=error,reason=boom}");
  CHECK(h.View("z").state == "duplicate");

  CHECK(h.Delete("a", 20) == "remove _replicator/a X | add _replicator/z X g2");
  CHECK(h.p.OwnerOf("X") == DocKey{kDb, "z"});
  CHECK(h.View("z").state == "job");
  CHECK(h.View("z").last_updated == At(20));
  CHECK(h.Started("X") == "write _replicator/z {id=X,state=triggered,clear_reason}");
  CHECK(h.View("b").state == "duplicate");

  // Deleting a duplicate touches nothing.
  CHECK(h.Delete("b") == "");
  CHECK(h.Delete("z") == "remove _replicator/z X");
  CHECK_FALSE(h.p.OwnerOf("X").has_value());
}

TEST_CASE("duplicates in terminal mode get no write") {
  Harness h(Settings(WriteBack::kTerminal));
  StartRunning(h);
  CHECK(h.Change("b", Body("b", 1, Valid())) == "compute _replicator/b g2");
  CHECK(h.Computed("b", 2, Id("X")) == "");
  CHECK(h.View("b").state == "duplicate");
  CHECK(h.Delete("a") == "remove _replicator/a X | add _replicator/b X g2");
  CHECK(h.Started("X") == "");
}

DocProcessorSettings ClusterSettings() {
  DocProcessorSettings s = Settings();
  s.claim_jobs = true;
  return s;
}

TEST_CASE("several instances: a job runs only once its job lease is held here") {
  Harness h(ClusterSettings());
  CHECK(h.Change("a", Body("a", 1, Valid())) == "compute _replicator/a g1");
  CHECK(h.Computed("a", 1, Id("X"), 5) == "claim _replicator/a X g1");
  CHECK(h.View("a").state == "initializing");
  CHECK(h.View("a").job_id == "X");
  // Job events before the claim is answered are not this document's.
  CHECK(h.Started("X") == "");
  // A stale answer (another generation or id) changes nothing.
  CHECK(h.Claim("a", 7, "X", std::nullopt) == "");
  CHECK(h.Claim("a", 1, "Y", std::nullopt) == "");
  CHECK(h.Claim("a", 1, "X", std::nullopt, 10) == "add _replicator/a X g1");
  CHECK(h.View("a").state == "job");
  CHECK(h.Started("X") == "write _replicator/a {id=X,state=triggered,clear_reason}");
  // A local duplicate waits here as before, and claims when the first goes.
  CHECK(h.Change("b", Body("b", 1, Valid())) == "compute _replicator/b g2");
  CHECK(h.Computed("b", 2, Id("X")) == "write _replicator/b {id=X}");
  CHECK(h.Delete("a", 20) == "remove _replicator/a X | claim _replicator/b X g2");
  CHECK(h.View("b").state == "initializing");
  CHECK(h.Claim("b", 2, "X", std::nullopt) == "add _replicator/b X g2");
}

TEST_CASE("several instances: a replication another instance runs makes the document a duplicate until it is freed") {
  Harness h(ClusterSettings());
  CHECK(h.Change("b", Body("b", 1, Valid())) == "compute _replicator/b g1");
  CHECK(h.Computed("b", 1, Id("X")) == "claim _replicator/b X g1");
  const std::string where = "replication X runs on instance other for _replicator/a";
  CHECK(h.Claim("b", 1, "X", where, 10) == "write _replicator/b {id=X}");
  DocView b = h.View("b");
  CHECK(b.state == "duplicate");
  CHECK(b.error == where);
  CHECK(b.last_updated == At(10));
  CHECK_FALSE(h.p.OwnerOf("X").has_value());
  // A later document for it here claims too: it may be the one the replication runs
  // for (moved here after a failover). Not this time.
  CHECK(h.Change("c", Body("c", 1, Valid())) == "compute _replicator/c g2");
  CHECK(h.Computed("c", 2, Id("X")) == "claim _replicator/c X g2");
  CHECK(h.Claim("c", 2, "X", where) == "write _replicator/c {id=X}");
  CHECK(h.View("c").state == "duplicate");
  // A duplicate going away frees nothing: the replication is not this instance's.
  CHECK(h.Delete("c") == "");
  // Freed elsewhere: the oldest duplicate here claims it; a second answer "elsewhere"
  // (another instance was quicker) makes it a duplicate again.
  CHECK(h.Freed("X", 30) == "claim _replicator/b X g1");
  CHECK(h.View("b").state == "initializing");
  CHECK(h.View("b").error.empty());
  CHECK(h.Claim("b", 1, "X", where) == "");  // already wrote its id
  CHECK(h.View("b").state == "duplicate");
  CHECK(h.Freed("X", 40) == "claim _replicator/b X g1");
  CHECK(h.Claim("b", 1, "X", std::nullopt) == "add _replicator/b X g1");
  // Freed twice, or for an id not waited on: nothing.
  CHECK(h.Freed("X") == "");
  CHECK(h.Freed("Z") == "");
}

TEST_CASE("several instances: after a failover the triggering document gets its replication back, the duplicate stays one") {
  Harness h(ClusterSettings());
  // y waits for X, which another instance runs for x.
  CHECK(h.Change("y", Body("y", 1, Valid())) == "compute _replicator/y g1");
  CHECK(h.Computed("y", 1, Id("X")) == "claim _replicator/y X g1");
  CHECK(h.Claim("y", 1, "X", std::string("runs elsewhere for x")) == "write _replicator/y {id=X}");
  // That instance died: x moves here, claims X and gets it.
  CHECK(h.Change("x", Body("x", 1, Valid())) == "compute _replicator/x g2");
  CHECK(h.Computed("x", 2, Id("X")) == "claim _replicator/x X g2");
  CHECK(h.Claim("x", 2, "X", std::nullopt) == "add _replicator/x X g2");
  CHECK(h.View("y").state == "duplicate");
  CHECK(h.p.OwnerOf("X") == DocKey{kDb, "x"});
  // x deleted: the duplicate here takes over.
  CHECK(h.Delete("x") == "remove _replicator/x X | claim _replicator/y X g1");
}

TEST_CASE("several instances: a claiming document deleted or changed gives its claim back") {
  Harness h(ClusterSettings());
  CHECK(h.Change("a", Body("a", 1, Valid())) == "compute _replicator/a g1");
  CHECK(h.Computed("a", 1, Id("X")) == "claim _replicator/a X g1");
  CHECK(h.Change("a", Body("a", 2, R"("source":"http://src.example/other",)" + std::string(kTgt))) ==
        "remove _replicator/a X | compute _replicator/a g2");
  CHECK(h.Claim("a", 1, "X", std::nullopt) == "");  // stale
  CHECK(h.Computed("a", 2, Id("Y")) == "claim _replicator/a Y g2");
  CHECK(h.Delete("a") == "remove _replicator/a Y");
}

TEST_CASE("an owner whose document changes keeps its id while the new one is computed") {
  Harness h;
  StartRunning(h);
  CHECK(h.Change("b", Body("b", 1, Valid())) == "compute _replicator/b g2");
  CHECK(h.Computed("b", 2, Id("X")) == "write _replicator/b {id=X}");

  SUBCASE("same id (credentials changed): the owner gets it back") {
    CHECK(h.Change("a", Body("a", 2, Valid(R"("worker_processes":2)"))) ==
          "remove _replicator/a X | compute _replicator/a g3");
    CHECK(h.Computed("a", 3, Id("X")) == "add _replicator/a X g3");
    CHECK(h.View("b").state == "duplicate");
  }
  SUBCASE("another id: the duplicate takes the old one over") {
    CHECK(h.Change("a", Body("a", 2, Valid(R"("create_target":true)"))) ==
          "remove _replicator/a X | compute _replicator/a g3");
    CHECK(h.View("b").state == "duplicate");
    CHECK(h.Computed("a", 3, Id("Y")) == "add _replicator/a Y g3 | add _replicator/b X g2");
    CHECK(h.p.OwnerOf("X") == DocKey{kDb, "b"});
    CHECK(h.p.OwnerOf("Y") == DocKey{kDb, "a"});
  }
  SUBCASE("a temporary failure: the duplicate takes over") {
    h.randoms = {0.5};
    CHECK(h.Change("a", Body("a", 2, Valid(R"("filter":"d/f")"))) ==
          "remove _replicator/a X | compute _replicator/a g3");
    CHECK(h.Computed("a", 3, Error::Temporary("db_not_found", "no source")) ==
          "write _replicator/a {state=error,reason=db_not_found: no source} | "
          "retry _replicator/a g3 +1000ms | add _replicator/b X g2");
  }
  SUBCASE("deleted meanwhile: the duplicate takes over") {
    CHECK(h.Change("a", Body("a", 2, Valid(R"("create_target":true)"))) ==
          "remove _replicator/a X | compute _replicator/a g3");
    CHECK(h.Delete("a") == "add _replicator/b X g2");
  }
}

TEST_CASE("temporary id failures retry with randomised exponential backoff") {
  Harness h(Settings(WriteBack::kClassic, 2));
  // 1 s doubling, capped at 10 s, times (0.5 + random).
  h.randoms = {0.0, 0.5, 0.25, 0.999, 0.5, 0.0};
  CHECK(h.Change("a", Body("a", 1, Valid(R"("filter":"d/f")"))) == "compute _replicator/a g1");
  Error down = Error::Temporary("http_request_failed", "GET http://bob:pw@src.example/a/ refused");
  CHECK(h.Computed("a", 1, down, 0) == "retry _replicator/a g1 +500ms");
  DocView v = h.View("a");
  CHECK(v.state == "error");
  CHECK(v.error == "http_request_failed: GET http://bob:*****@src.example/a/ refused");
  CHECK(v.error_count == 1);
  CHECK(h.RetryDue("a", 2, 500) == "");  // not ours
  CHECK(h.RetryDue("a", 1, 500) == "compute _replicator/a g2");
  CHECK(h.View("a").state == "error");    // until it succeeds
  CHECK(h.RetryDue("a", 1, 500) == "");   // already done
  CHECK(h.Computed("a", 1, down) == "");  // stale
  // error_after = 2: the second consecutive failure is written (once).
  CHECK(h.Computed("a", 2, down, 1000) ==
        "write _replicator/a {state=error,reason=http_request_failed: GET "
        "http://bob:*****@src.example/a/ refused} | retry _replicator/a g2 +3000ms");
  CHECK(h.RetryDue("a", 2, 3000) == "compute _replicator/a g3");
  CHECK(h.Computed("a", 3, down, 3000) == "retry _replicator/a g3 +6000ms");  // 4 s × 0.75
  CHECK(h.RetryDue("a", 3) == "compute _replicator/a g4");
  CHECK(h.Computed("a", 4, down, 6000) == "retry _replicator/a g4 +17992ms");  // 8 s × 1.499
  CHECK(h.RetryDue("a", 4) == "compute _replicator/a g5");
  CHECK(h.Computed("a", 5, down, 20000) == "retry _replicator/a g5 +30000ms");  // capped: 10 s
  CHECK(h.View("a").error_count == 5);
  CHECK(h.RetryDue("a", 5) == "compute _replicator/a g6");
  CHECK(h.Computed("a", 6, Id("X"), 30000) == "add _replicator/a X g6");
  DocView ok = h.View("a");
  CHECK(ok.state == "job");
  CHECK(ok.error_count == 0);
  CHECK(ok.error.empty());
  // The document said `error`; the job's start says `triggered` again.
  CHECK(h.Started("X") == "write _replicator/a {id=X,state=triggered,clear_reason}");

  SUBCASE("a new failure streak starts from the initial backoff") {
    h.randoms = {0.5};
    h.next_random = 0;
    CHECK(h.Change("a", Body("a", 2, Valid(R"("filter":"d/g")"))) ==
          "remove _replicator/a X | compute _replicator/a g7");
    CHECK(h.Computed("a", 7, down) == "retry _replicator/a g7 +1000ms");
  }
  SUBCASE("an edit computes at once; older retries are stale") {
    CHECK(h.Change("a", Body("a", 2, Valid(R"("filter":"d/g")"))) ==
          "remove _replicator/a X | compute _replicator/a g7");
    CHECK(h.RetryDue("a", 6) == "");
  }
}

TEST_CASE("terminal mode: temporary failures are not written") {
  Harness h(Settings(WriteBack::kTerminal));
  h.randoms = {0.5};
  CHECK(h.Change("a", Body("a", 1, Valid())) == "compute _replicator/a g1");
  CHECK(h.Computed("a", 1, Error::Temporary("", "timeout")) == "retry _replicator/a g1 +1000ms");
}

TEST_CASE("a permanent id failure is written like an invalid document") {
  for (WriteBack mode : {WriteBack::kClassic, WriteBack::kTerminal}) {
    const std::string state = mode == WriteBack::kClassic ? "error" : "failed";
    Harness h(Settings(mode));
    std::string fields = Valid(R"("selector":{"a":1})");
    CHECK(h.Change("a", Body("a", 1, fields)) == "compute _replicator/a g1");
    CHECK(h.Computed("a", 1, Error::Permanent("bad_request", "invalid selector")) ==
          "write _replicator/a {state=" + state + ",reason=bad_request: invalid selector}");
    CHECK(h.View("a").state == "failed");
    CHECK(h.Change("a", Body("a", 2, fields + R"(,"_replication_state":")" + state + "\"")) == "");
    // Any edit tries again.
    CHECK(h.Change("a", Body("a", 3, fields + R"(,"note":1)")) == "compute _replicator/a g2");
  }
}

TEST_CASE("job crashes: error after error_after crashes, once per streak; healthy again") {
  SUBCASE("error_after = 1") {
    Harness h;
    StartRunning(h);
    CHECK(h.Started("X") == "write _replicator/a {id=X,state=triggered,clear_reason}");
    CHECK(h.Crashed("X", "db_not_found", 1, 5) ==
          "write _replicator/a {id=X,state=error,reason=db_not_found}");
    DocView v = h.View("a");
    CHECK(v.state == "job");
    CHECK(v.error == "db_not_found");
    CHECK(v.error_count == 1);
    CHECK(v.last_updated == At(5));
    // The echo of the error write.
    CHECK(h.Change("a", Body("a", 3,
                             Valid(R"("_replication_state":"error",)"
                                   R"("_replication_id":"X")"))) == "");
    CHECK(h.Started("X") == "");  // restarted after backoff: still `error` until healthy
    CHECK(h.Crashed("X", "timeout", 2) == "");
    CHECK(h.View("a").error_count == 2);
    CHECK(h.View("a").error == "timeout");
    CHECK(h.Started("X") == "");
    CHECK(h.Healthy("X") == "write _replicator/a {id=X,state=triggered,clear_reason}");
    CHECK(h.View("a").error_count == 0);
    CHECK(h.View("a").error.empty());
    CHECK(h.Healthy("X") == "");
    // A new streak writes again.
    CHECK(h.Crashed("X", "again", 1) == "write _replicator/a {id=X,state=error,reason=again}");
  }
  SUBCASE("error_after = 3") {
    Harness h(Settings(WriteBack::kClassic, 3));
    StartRunning(h);
    CHECK(h.Crashed("X", "e1", 1) == "");
    CHECK(h.Crashed("X", "e2", 2) == "");
    CHECK(h.View("a").error_count == 2);
    CHECK(h.Crashed("X", "e3", 3) == "write _replicator/a {id=X,state=error,reason=e3}");
    CHECK(h.Crashed("X", "e4", 4) == "");
    CHECK(h.Healthy("X") == "write _replicator/a {id=X,state=triggered,clear_reason}");
  }
  SUBCASE("healthy before error_after: nothing to undo") {
    Harness h(Settings(WriteBack::kClassic, 3));
    StartRunning(h);
    CHECK(h.Crashed("X", "e1", 1) == "");
    CHECK(h.Healthy("X") == "");
  }
  SUBCASE("reasons never carry credentials") {
    Harness h;
    StartRunning(h);
    CHECK(h.Crashed("X", "GET http://bob:secret@src.example/a/ failed", 1) ==
          "write _replicator/a {id=X,state=error,reason=GET http://bob:*****@src.example/a/ "
          "failed}");
    CHECK(h.View("a").error == "GET http://bob:*****@src.example/a/ failed");
  }
}

TEST_CASE("a completed job writes completed with stats; the document never runs again") {
  for (WriteBack mode : {WriteBack::kClassic, WriteBack::kTerminal}) {
    Harness h(Settings(mode));
    StartRunning(h);
    const std::string stats = R"({"docs_read":3,"docs_written":3})";
    CHECK(h.Completed("X", stats, 50) ==
          "remove _replicator/a X | write _replicator/a {state=completed,stats=" + stats +
              ",clear_reason}");
    DocView v = h.View("a");
    CHECK(v.state == "completed");
    CHECK(v.job_id == "X");
    CHECK(v.stats_json == stats);  // the status API shows the final statistics
    CHECK(v.last_updated == At(50));
    CHECK_FALSE(h.p.OwnerOf("X").has_value());
    // A late row of an older revision (our triggered write) changes nothing.
    CHECK(h.Change("a", Body("a", 2, Valid(R"("_replication_state":"triggered")"))) == "");
    // The echo of the completed write.
    CHECK(h.Change("a", Body("a", 3,
                             Valid(R"("_replication_state":"completed",)"
                                   R"("_replication_stats":{"docs_read":3})"))) == "");
    CHECK(h.View("a").state == "completed");
    CHECK(h.Completed("X", stats) == "");
    // The user removes the state: it runs again.
    CHECK(h.Change("a", Body("a", 4, Valid())) == "compute _replicator/a g2");
  }
}

TEST_CASE("a completed job passes to a waiting duplicate") {
  Harness h;
  StartRunning(h);
  CHECK(h.Change("b", Body("b", 1, Valid())) == "compute _replicator/b g2");
  CHECK(h.Computed("b", 2, Id("X")) == "write _replicator/b {id=X}");
  CHECK(h.Completed("X", "") ==
        "remove _replicator/a X | write _replicator/a {state=completed,clear_reason} | "
        "add _replicator/b X g2");
}

TEST_CASE("a failed job: error (classic) or failed (terminal), job removed") {
  SUBCASE("classic") {
    Harness h;
    StartRunning(h);
    CHECK(h.Failed("X", "unauthorized: http://u:pw@h/db/") ==
          "remove _replicator/a X | write _replicator/a {id=X,state=error,reason=unauthorized: "
          "http://u:*****@h/db/}");
    DocView v = h.View("a");
    CHECK(v.state == "failed");
    CHECK(v.error == "unauthorized: http://u:*****@h/db/");
    // Its echo does nothing; a change does.
    CHECK(h.Change("a", Body("a", 2, Valid(R"("_replication_state":"error")"))) == "");
    CHECK(h.Change("a", Body("a", 3, Valid(R"("worker_processes":1)"))) ==
          "compute _replicator/a g2");
  }
  SUBCASE("terminal") {
    Harness h(Settings(WriteBack::kTerminal));
    StartRunning(h);
    CHECK(h.Failed("X", "unauthorized") ==
          "remove _replicator/a X | write _replicator/a {state=failed,reason=unauthorized}");
    CHECK(h.Change("a", Body("a", 2,
                             Valid(R"("_replication_state":"failed",)"
                                   R"("_replication_state_reason":"unauthorized")"))) == "");
    CHECK(h.View("a").state == "failed");
    CHECK(h.View("a").error == "unauthorized");
  }
}

TEST_CASE("a user marking a running document completed stops its job") {
  Harness h;
  StartRunning(h);
  CHECK(h.Change("a", Body("a", 2, Valid(R"("_replication_state":"completed")"))) ==
        "remove _replicator/a X");
  CHECK(h.View("a").state == "completed");
}

TEST_CASE("a removed database: its jobs stop, duplicates elsewhere take over") {
  Harness h;
  const std::string db2 = "other/_replicator";
  CHECK(h.Change("a", Body("a", 1, Valid())) == "compute _replicator/a g1");
  CHECK(h.Computed("a", 1, Id("X")) == "add _replicator/a X g1");
  CHECK(h.Change("b", Body("b", 1, Valid(R"("continuous":true)"))) == "compute _replicator/b g2");
  CHECK(h.Computed("b", 2, Id("Y", true)) == "add _replicator/b Y+continuous g2 continuous");
  CHECK(h.Change("c", Body("c", 1, Valid())) == "compute _replicator/c g3");  // pending id
  CHECK(h.Change("d", Body("d", 1, Valid()), 0, db2) == "compute other/_replicator/d g4");
  CHECK(h.Computed("d", 4, Id("X"), 0, db2) == "write other/_replicator/d {id=X}");
  CHECK(h.Change("e", Body("e", 1, Valid()), 0, db2) == "compute other/_replicator/e g5");
  CHECK(h.Computed("e", 5, Id("Z"), 0, db2) == "add other/_replicator/e Z g5");
  CHECK(h.Change("f", Body("f", 1, Valid())) == "compute _replicator/f g6");
  CHECK(h.Computed("f", 6, Id("Z")) == "write _replicator/f {id=Z}");

  CHECK(
      Describe(h.p.OnDatabaseRemoved(kDb, At(100))) ==
      "remove _replicator/a X | remove _replicator/b Y+continuous | add other/_replicator/d X g4");
  std::vector<DocView> docs = h.p.Docs();
  REQUIRE(docs.size() == 2);
  CHECK(docs[0].doc == DocKey{db2, "d"});
  CHECK(docs[0].state == "job");
  CHECK(docs[1].doc == DocKey{db2, "e"});
  CHECK(h.Computed("c", 3, Id("W")) == "");  // forgotten
  CHECK(h.p.OwnerOf("X") == DocKey{db2, "d"});
  CHECK(Describe(h.p.OnDatabaseRemoved("nope", At(100))) == "");
}

TEST_CASE("local endpoints resolve against the server; views show names only") {
  Harness h;
  std::vector<DocAction> actions =
      h.p.OnChange(kDb, "a", false, Body("a", 1, R"("source":"foo","target":"bar")"), At(0), {});
  REQUIRE(actions.size() == 1);
  const ReplicationSpec& spec = *actions[0].spec;
  CHECK(spec.target.endpoint.url.WithoutCredentials() == "http://127.0.0.1:5984/bar/");
  CHECK(spec.target.endpoint.credentials.username == "admin");
  DocView v = h.View("a");
  CHECK(v.source == "foo");
  CHECK(v.target == "bar");
  // A changed server password changes the replication (new fingerprint).
  DocProcessorSettings s = Settings();
  s.server.credentials.password = "rotated";
  h.p.UpdateSettings(s);
  CHECK(h.Change("a", Body("a", 2, R"("source":"foo","target":"bar")")) ==
        "compute _replicator/a g2");
}

TEST_CASE("settings changes apply to the next event") {
  Harness h;
  StartRunning(h);
  h.p.UpdateSettings(Settings(WriteBack::kTerminal));
  CHECK(h.Started("X") == "");
  CHECK(h.Crashed("X", "boom", 1) == "");
}

TEST_CASE("hostile documents get an error write, never a crash") {
  std::string deep_bad = R"({"source":)";
  for (int i = 0; i < 5000; ++i) deep_bad += "[";
  for (int i = 0; i < 5000; ++i) deep_bad += "]";
  deep_bad += "}";
  std::string huge = R"({"_id":"a","source":")" + std::string(5 << 20, 'x') + "\"," + kTgt + "}";
  std::string many = "{";
  for (int i = 0; i < 10000; ++i)
    many += "\"f" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  many += kTgt + std::string("}");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"source":)", "the document is not valid JSON: "},
      {"[1,2]", "the document is not a JSON object"},
      {"", "the document is not valid JSON: "},
      {deep_bad, "the document is not valid JSON: "},
      {"{\"source\":\"\xff\xfe\"," + std::string(kTgt) + "}",
       "the document is not valid JSON: `source` contains invalid UTF-8"},
      {huge, "`source` is longer than 8192 bytes"},
      {many, "`source` is missing"},
      {R"({"source":{"url":{"x":[1,{"y":null}]}},"target":[[[]]],"continuous":{}})",
       "`source.url` must be a string"},
      {R"({"source":"http://a/","target":"http://b/","_replication_state":{"x":1},)"
       R"("worker_processes":1e400})",
       "the document is not valid JSON: "},
  };
  for (const auto& c : cases) {
    const std::string& doc = c.first;
    const std::string& reason_prefix = c.second;
    std::string shown = doc.substr(0, 80);
    CAPTURE(shown);
    Harness h;
    std::vector<DocAction> actions = h.p.OnChange(kDb, "a", false, doc, At(0), {});
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].type == DocAction::Type::kWriteState);
    CHECK(actions[0].write.state == "error");
    REQUIRE(actions[0].write.reason.has_value());
    CHECK(actions[0].write.reason->starts_with(reason_prefix));
    CHECK(actions[0].write.reason->size() < 1000);
    CHECK(h.View("a").state == "failed");
    // The same row again (a restart of the feed): nothing more.
    CHECK(h.Change("a", doc) == "");
  }
}

TEST_CASE("reasons written back or shown are cut to 1 KiB, mark included, and redacted") {
  // A server's 40 KB error text, with a credential near its start.
  const std::string huge = "GET http://bob:secret@src.example/a/ failed: " + std::string(40000, 'r');
  auto check = [&](const std::string& reason) {
    CAPTURE(reason.substr(0, 80));
    CHECK(reason.size() <= 1024);
    CHECK(reason.starts_with("GET http://bob:*****@src.example/a/ failed: rrrr"));
    CHECK(reason.find("(cut, " + std::to_string(huge.size()) + " bytes)") != std::string::npos);
    CHECK(reason.find("secret") == std::string::npos);
  };
  SUBCASE("a crashing job (classic)") {
    Harness h;
    StartRunning(h);
    auto actions = h.p.OnJobCrashed("X", huge, 1, At(0));
    REQUIRE(actions.size() == 1);
    REQUIRE(actions[0].write.reason.has_value());
    check(*actions[0].write.reason);
    check(h.View("a").error);
  }
  SUBCASE("a failed job (terminal)") {
    Harness h(Settings(WriteBack::kTerminal));
    StartRunning(h);
    auto actions = h.p.OnJobFailed("X", huge, At(0));
    REQUIRE(actions.size() == 2);
    REQUIRE(actions[1].write.reason.has_value());
    CHECK(actions[1].write.state == "failed");
    check(*actions[1].write.reason);
    check(h.View("a").error);
  }
  SUBCASE("a permanent failure computing the id") {
    Harness h;
    REQUIRE(h.Change("a", Body("a", 1, Valid())) == "compute _replicator/a g1");
    auto actions = h.p.OnIdComputed(DocKey{kDb, "a"}, 1, Error::Permanent("", huge), At(0), {});
    REQUIRE(actions.size() == 1);
    REQUIRE(actions[0].write.reason.has_value());
    check(*actions[0].write.reason);
  }
  SUBCASE("a temporary failure computing the id") {
    Harness h;
    h.randoms = {0.5};
    REQUIRE(h.Change("a", Body("a", 1, Valid())) == "compute _replicator/a g1");
    auto actions =
        h.p.OnIdComputed(DocKey{kDb, "a"}, 1, Error::Temporary("", huge), At(0), h.Random());
    REQUIRE(actions.size() == 2);
    REQUIRE(actions[0].write.reason.has_value());
    check(*actions[0].write.reason);
  }
  SUBCASE("a document a user marked failed with a huge reason") {
    Harness h;
    std::string reason_json = "\"" + huge + "\"";
    CHECK(h.Change("a", Body("a", 1, Valid(R"("_replication_state":"failed",)"
                                           R"("_replication_state_reason":)" + reason_json))) == "");
    check(h.View("a").error);
  }
  SUBCASE("short reasons are kept whole") {
    Harness h;
    StartRunning(h);
    std::string exact(1024, 'e');
    auto actions = h.p.OnJobCrashed("X", exact, 1, At(0));
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].write.reason == exact);
  }
}

TEST_CASE("deep but valid JSON in an unknown field is fine") {
  std::string deep;
  for (int i = 0; i < 500; ++i) deep += "[";
  for (int i = 0; i < 500; ++i) deep += "]";
  Harness h;
  CHECK(h.Change("a", Body("a", 1, Valid(R"("junk":)" + deep))) == "compute _replicator/a g1");
}

TEST_CASE("Docs() lists every document sorted by database and id") {
  Harness h;
  CHECK(h.Change("b", Body("b", 1, Valid())) == "compute _replicator/b g1");
  CHECK(h.Change("a", Body("a", 1, kTgt)) ==
        "write _replicator/a {state=error,reason=`source` is missing}");
  CHECK(h.Change("a", Body("a", 1, kTgt), 0, "a/_replicator") ==
        "write a/_replicator/a {state=error,reason=`source` is missing}");
  std::vector<DocView> docs = h.p.Docs();
  REQUIRE(docs.size() == 3);
  CHECK(docs[0].doc == DocKey{"_replicator", "a"});
  CHECK(docs[1].doc == DocKey{"_replicator", "b"});
  CHECK(docs[2].doc == DocKey{"a/_replicator", "a"});
  CHECK(docs[1].state == "initializing");
}

TEST_CASE("DocProcessorSettings::From takes the configured values") {
  Config config;
  config.replicator.write_back = WriteBack::kTerminal;
  config.scheduler.error_after = 4;
  config.scheduler.doc_backoff = {std::chrono::seconds(2), std::chrono::minutes(3)};
  config.replication.worker_processes = 7;
  DocProcessorSettings s = DocProcessorSettings::From(config, Server());
  CHECK(s.write_back == WriteBack::kTerminal);
  CHECK(s.error_after == 4);
  CHECK(s.doc_backoff_initial == std::chrono::seconds(2));
  CHECK(s.doc_backoff_max == std::chrono::minutes(3));
  CHECK(s.defaults.replication.worker_processes == 7);
  CHECK(s.server.credentials.username == "admin");
  CHECK_FALSE(s.proxy_auth.has_value());
  config.server.proxy_auth.enabled = true;
  config.server.proxy_auth.secret = "s";
  CHECK(DocProcessorSettings::From(config, Server()).proxy_auth.has_value());
}

}  // namespace
}  // namespace couchrepd

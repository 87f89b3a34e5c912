// The `_design/_replicator` validation function (SPEC §1.4) and state
// write-back (SPEC §2.1) against a real CouchDB-compatible server with a
// server admin and ordinary `_users` users. express-pouchdb runs
// validate_doc_update for every write except design and `_local` documents,
// passing the writer's userCtx like CouchDB.
#include "couchrepd/replicator_ddoc.h"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../../src/runtime/doc_writer.h"
#include "couchrepd/checkpoint.h"
#include "couchrepd/json.h"
#include "couchrepd/url.h"
#include "integration/replication_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

constexpr const char* kAdmin = "admin:adminpw";
constexpr const char* kTriggeredMessage =
    "Only the replicator can edit replication documents that are in the triggered state.";
constexpr int64_t kT0 = 1795444676;  // 2026-11-23T14:37:56Z

// A clock whose sleeps only advance it (and are recorded).
class TestClock final : public Clock {
 public:
  TimePoint Now() const override { return TimePoint(std::chrono::seconds(unix_.load())); }
  void SleepFor(Duration d) override {
    std::lock_guard<std::mutex> lock(mu_);
    sleeps_.push_back(d);
  }
  double UnixSeconds() const override { return static_cast<double>(unix_.load()); }
  void Set(int64_t unix_seconds) { unix_ = unix_seconds; }
  std::vector<Duration> sleeps() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sleeps_;
  }

 private:
  std::atomic<int64_t> unix_{kT0};
  mutable std::mutex mu_;
  std::vector<Duration> sleeps_;
};

double HalfRandom() { return 0.5; }

TestServerOptions AdminOptions() {
  TestServerOptions options;
  options.admin = kAdmin;
  return options;
}

// A server with an admin, an empty `_replicator` and users joe (role
// "reader") and bob (no roles).
struct Fixture {
  TestServer server{AdminOptions()};
  CouchClient admin = ServerClient(server, kAdmin).Database("_replicator");

  Fixture() {
    REQUIRE(admin.CreateDb().ok());
    AddUser("joe", "joepw", R"(["reader"])");
    AddUser("bob", "bobpw", "[]");
  }
  void AddUser(const std::string& name, const std::string& password, const std::string& roles) {
    auto r =
        server.Request("PUT", "/_users/org.couchdb.user:" + name,
                       R"({"name":)" + JsonQuote(name) + R"(,"password":)" + JsonQuote(password) +
                           R"(,"roles":)" + roles + R"(,"type":"user"})");
    INFO(r.body);
    REQUIRE(r.status == 201);
  }
  // A user holding the `_replicator` role, as couchrepd may write (SPEC 1.4).
  // The `_users` validation of CouchDB and of this server refuses roles
  // starting with '_' (only the server hands them out, e.g. through proxy
  // auth); an admin relaxes it here for this one role.
  void AddReplicatorUser(const std::string& name, const std::string& password) {
    auto auth = server.Request("GET", "/_users/_design/_auth");
    REQUIRE(auth.status == 200);
    const std::string check = "if (newDoc.roles[i][0] === '_')";
    std::string function = JsonText(auth.body, {"validate_doc_update"});
    size_t at = function.find(check);
    REQUIRE(at != std::string::npos);
    function.replace(at, check.size(),
                     "if (newDoc.roles[i][0] === '_' && newDoc.roles[i] !== '_replicator')");
    auto put = server.Request("PUT", "/_users/_design/_auth",
                              R"({"_rev":)" + JsonQuote(JsonText(auth.body, {"_rev"})) +
                                  R"(,"language":"javascript","validate_doc_update":)" +
                                  JsonQuote(function) + "}");
    INFO(put.body);
    REQUIRE(put.status == 201);
    AddUser(name, password, R"(["_replicator"])");
  }
  CouchClient As(const std::string& user_colon_password) {
    return ServerClient(server, user_colon_password).Database("_replicator");
  }
  CouchClient Anonymous() { return ServerClient(server).Database("_replicator"); }
  // Requests so far matching `method` and the raw path regex.
  int64_t Count(const std::string& method, const std::string& path_regex) {
    auto r = server.Request(
        "GET", "/_test/requests?method=" + method + "&path=" + EncodeQueryValue(path_regex));
    REQUIRE(r.status == 200);
    return JsonInt(r.body, {"count"});
  }
  void Fault(const std::string& json) {
    auto r = server.Request("POST", "/_test/faults", json);
    INFO(r.body);
    REQUIRE(r.status == 201);
  }
  std::string Get(const std::string& id) {
    auto got = admin.GetDoc(id);
    REQUIRE_MESSAGE(got.ok(), got.error().Message());
    return got.value();
  }
};

// A valid document for user joe, with `extra` members appended.
std::string JoeDoc(const std::string& extra = "") {
  return R"({"source":"http://src.example/a","target":{"url":"http://tgt.example/b",)"
         R"("headers":{"X-Token":"t"}},"user_ctx":{"name":"joe","roles":["reader"]})" +
         extra + "}";
}

// Expects a PUT to be refused with `status` and exactly `reason`.
void CheckRefused(const Result<DocWriteResult>& put, int status, const std::string& reason) {
  REQUIRE_FALSE(put.ok());
  CHECK(put.error().http_status == status);
  CHECK(put.error().error == (status == 401 ? "unauthorized" : "forbidden"));
  // The client's reason is "<request> answered HTTP <status>: <the server's reason>".
  const std::string& got = put.error().reason;
  std::string suffix = ": " + reason;
  CHECK_MESSAGE(got.size() >= suffix.size(), got);
  if (got.size() >= suffix.size()) {
    CHECK(got.substr(got.size() - suffix.size()) == suffix);
  }
}

// Joins a thread when the scope ends, also when a REQUIRE throws.
class Joiner {
 public:
  explicit Joiner(std::thread& t) : t_(t) {}
  ~Joiner() {
    if (t_.joinable()) t_.join();
  }

 private:
  std::thread& t_;
};

std::string WithRev(const std::string& doc_json, const std::string& rev) {
  return "{\"_rev\":" + JsonQuote(rev) + "," + doc_json.substr(1);
}

constexpr const char* kDdocPath = "^/_replicator/_design(/|%2F)_replicator$";

}  // namespace

TEST_CASE("replicator ddoc: installed once, updated only when its content differs") {
  Fixture f;
  REQUIRE(EnsureReplicatorDesignDoc(f.admin).ok());
  std::string first = f.Get("_design/_replicator");
  CHECK(JsonText(first, {"_rev"}).rfind("1-", 0) == 0);
  CHECK(JsonText(first, {"validate_doc_update"}) == ReplicatorValidateFunction());
  CHECK_FALSE(DesignDocNeedsUpdate(first));

  // A second call reads and writes nothing new.
  REQUIRE(EnsureReplicatorDesignDoc(f.admin).ok());
  CHECK(f.Count("PUT", kDdocPath) == 1);
  CHECK(JsonText(f.Get("_design/_replicator"), {"_rev"}) == JsonText(first, {"_rev"}));

  // Someone replaces it with an old function and adds a view: the function is
  // restored, the view kept; a 409 on the way is re-read and retried.
  std::string old = R"({"_rev":)" + JsonQuote(JsonText(first, {"_rev"})) +
                    R"(,"language":"javascript","validate_doc_update":"function(){}",)"
                    R"("views":{"v":{"map":"function(d){emit(d._id,null)}"}}})";
  REQUIRE(f.admin.PutDoc("_design/_replicator", old).ok());
  f.Fault(std::string(R"({"method":"PUT","path":")") + kDdocPath + R"(","status":409,"count":1})");
  REQUIRE(EnsureReplicatorDesignDoc(f.admin).ok());
  std::string fixed = f.Get("_design/_replicator");
  CHECK(JsonText(fixed, {"_rev"}).rfind("3-", 0) == 0);
  CHECK(JsonText(fixed, {"validate_doc_update"}) == ReplicatorValidateFunction());
  CHECK(JsonText(fixed, {"views", "v", "map"}) == "function(d){emit(d._id,null)}");
  CHECK(JsonInt(fixed, {std::string(kReplicatorDesignDocVersionField)}) ==
        kReplicatorDesignDocVersion);
  CHECK(f.Count("PUT", kDdocPath) == 4);  // install, tamper, injected 409, fix
  REQUIRE(EnsureReplicatorDesignDoc(f.admin).ok());
  CHECK(f.Count("PUT", kDdocPath) == 4);
}

TEST_CASE("replicator ddoc: what non-admin writers may and may not write") {
  Fixture f;
  REQUIRE(EnsureReplicatorDesignDoc(f.admin).ok());
  CouchClient joe = f.As("joe:joepw");
  TestClock clock;

  SUBCASE("identity: anonymous, missing or foreign user_ctx, roles the writer lacks") {
    CheckRefused(f.Anonymous().PutDoc("r", JoeDoc()), 401,
                 "Log in to create, change or delete replication documents.");
    CheckRefused(
        joe.PutDoc("r", R"({"source":"http://a/x","target":"http://b/y"})"), 403,
        R"(`user_ctx` is required: {"name": "<your user name>", "roles": [<roles you have>]})");
    CheckRefused(joe.PutDoc("r", R"({"source":"a","target":"b","user_ctx":{"name":"other"}})"), 403,
                 "`user_ctx.name` must be your own user name");
    CheckRefused(joe.PutDoc("r", R"({"source":"a","target":"b","user_ctx":{"roles":[]}})"), 403,
                 "`user_ctx.name` must be your own user name");
    CheckRefused(
        joe.PutDoc("r",
                   R"({"source":"a","target":"b","user_ctx":{"name":"joe","roles":["_admin"]}})"),
        403, R"(`user_ctx.roles`: you do not have the role "_admin")");
    CheckRefused(joe.PutDoc("r", R"({"source":"a","target":"b",)"
                                 R"("user_ctx":{"name":"joe","roles":["reader","writer"]}})"),
                 403, R"(`user_ctx.roles`: you do not have the role "writer")");
    CheckRefused(joe.PutDoc("r", R"({"source":"a","target":"b","user_ctx":"joe"})"), 403,
                 "`user_ctx` must be an object");
    auto ok = joe.PutDoc("r", JoeDoc());
    REQUIRE_MESSAGE(ok.ok(), ok.error().Message());
    auto no_roles = joe.PutDoc("r2", R"({"source":"a","target":"b","user_ctx":{"name":"joe"}})");
    CHECK_MESSAGE(no_roles.ok(), no_roles.error().Message());
    // bob may neither change nor delete joe's document.
    CouchClient bob = f.As("bob:bobpw");
    std::string bob_version = R"({"_rev":)" + JsonQuote(ok->rev) +
                              R"(,"source":"a","target":"b","user_ctx":{"name":"bob"}})";
    CheckRefused(bob.PutDoc("r", bob_version), 403,
                 "Only an admin or the user named in the stored `user_ctx.name` can change this "
                 "replication document.");
    auto del = bob.DeleteDoc("r", ok->rev);
    REQUIRE_FALSE(del.ok());
    CHECK(del.error().http_status == 403);
    // Nor documents an admin wrote without user_ctx.
    auto admins = f.admin.PutDoc("a", R"({"source":"a","target":"b"})");
    REQUIRE(admins.ok());
    CheckRefused(joe.PutDoc("a", WithRev(JoeDoc(), admins->rev)), 403,
                 "Only an admin or the user named in the stored `user_ctx.name` can change this "
                 "replication document.");
  }

  SUBCASE("field types (SPEC 1.1)") {
    struct Case {
      const char* fields;  // replaces source/target when it has them
      const char* reason;
    };
    const Case cases[] = {
        {R"("target":"b")", "`source` is required"},
        {R"("source":null,"target":"b")", "`source` is required"},
        {R"("source":"a")", "`target` is required"},
        {R"("source":"","target":"b")", "`source` must not be empty"},
        {R"("source":5,"target":"b")",
         "`source` must be a URL, a database name or an object with `url`"},
        {R"("source":["a"],"target":"b")",
         "`source` must be a URL, a database name or an object with `url`"},
        {R"("source":"a","target":{"headers":{}})", "`target.url` must be a non-empty string"},
        {R"("source":"a","target":{"url":""})", "`target.url` must be a non-empty string"},
        {R"("source":{"url":"http://a/b","headers":[]},"target":"b")",
         "`source.headers` must be an object"},
        {R"("source":{"url":"http://a/b","headers":{"X":1}},"target":"b")",
         "`source.headers.X` must be a string"},
        {R"("source":{"url":"http://a/b","auth":"x"},"target":"b")",
         "`source.auth` must be an object"},
        {R"("source":"a","target":"b","continuous":"true")", "`continuous` must be a boolean"},
        {R"("source":"a","target":"b","create_target":1)", "`create_target` must be a boolean"},
        {R"("source":"a","target":"b","winning_revs_only":"no")",
         "`winning_revs_only` must be a boolean"},
        {R"("source":"a","target":"b","use_checkpoints":0)", "`use_checkpoints` must be a boolean"},
        {R"("source":"a","target":"b","use_bulk_get":[])", "`use_bulk_get` must be a boolean"},
        {R"("source":"a","target":"b","create_target_params":"q=1")",
         "`create_target_params` must be an object"},
        {R"("source":"a","target":"b","query_params":[1])", "`query_params` must be an object"},
        {R"("source":"a","target":"b","selector":"x")", "`selector` must be an object"},
        {R"("source":"a","target":"b","worker_processes":"a few")",
         "`worker_processes` must be a positive integer"},
        {R"("source":"a","target":"b","worker_batch_size":0)",
         "`worker_batch_size` must be a positive integer"},
        {R"("source":"a","target":"b","http_connections":2.5)",
         "`http_connections` must be a positive integer"},
        {R"("source":"a","target":"b","checkpoint_interval":"5 s")",
         "`checkpoint_interval` must be a positive integer"},
        {R"("source":"a","target":"b","connection_timeout":true)",
         "`connection_timeout` must be a positive integer"},
        {R"("source":"a","target":"b","retries_per_request":-1)",
         "`retries_per_request` must be a non-negative integer"},
        {R"("source":"a","target":"b","doc_ids":"a")", "`doc_ids` must be an array of strings"},
        {R"("source":"a","target":"b","doc_ids":["a",1])", "`doc_ids` must be an array of strings"},
        {R"("source":"a","target":"b","filter":"")", "`filter` must be a non-empty string"},
        {R"("source":"a","target":"b","filter":{"a":1})", "`filter` must be a non-empty string"},
        {R"("source":"a","target":"b","doc_ids":["a"],"selector":{})",
         "`doc_ids`, `filter` and `selector` are mutually exclusive"},
        {R"("source":"a","target":"b","filter":"d/f","doc_ids":[])",
         "`doc_ids`, `filter` and `selector` are mutually exclusive"},
        {R"("source":"a","target":"b","socket_options":[])", "`socket_options` must be a string"},
        {R"("source":"a","target":"b","user_ctx":{"name":"joe","roles":"reader"})",
         "`user_ctx.roles` must be an array of strings"},
        {R"("source":"a","target":"b","user_ctx":{"name":"joe","roles":[1]})",
         "`user_ctx.roles` must be an array of strings"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.fields);
      std::string fields = c.fields;
      std::string doc = "{" + fields;
      if (fields.find("\"user_ctx\"") == std::string::npos) {
        doc += R"(,"user_ctx":{"name":"joe","roles":["reader"]})";
      }
      doc += "}";
      CheckRefused(joe.PutDoc("typed", doc), 403, c.reason);
    }
    // Accepted: every option with a good value, integer strings, nulls as absent.
    std::string good = JoeDoc(
        R"(,"continuous":true,"create_target":false,"create_target_params":{"q":1},)"
        R"("winning_revs_only":false,"use_checkpoints":true,"use_bulk_get":true,)"
        R"("filter":"app/f","query_params":{"k":"v"},"doc_ids":null,"selector":null,)"
        R"("since_seq":"12-g1AA","worker_processes":"2","worker_batch_size":100,)"
        R"("http_connections":"5","checkpoint_interval":5000,"connection_timeout":"30000",)"
        R"("retries_per_request":0,"socket_options":"[{keepalive, true}]","unknown":{"x":1})");
    auto put = joe.PutDoc("typed", good);
    CHECK_MESSAGE(put.ok(), put.error().Message());
    auto selector = joe.PutDoc("sel", JoeDoc(R"(,"selector":{"type":"a"})"));
    CHECK_MESSAGE(selector.ok(), selector.error().Message());
  }

  SUBCASE("_replication_* fields and the triggered state") {
    CheckRefused(joe.PutDoc("r", JoeDoc(R"(,"_replication_state":"completed")")), 403,
                 "Only the replicator can set or change `_replication_state`.");
    CheckRefused(joe.PutDoc("r", JoeDoc(R"(,"_replication_id":"x")")), 403,
                 "Only the replicator can set or change `_replication_id`.");
    auto created = joe.PutDoc("r", JoeDoc());
    REQUIRE(created.ok());
    CheckRefused(joe.PutDoc("r", WithRev(JoeDoc(R"(,"_replication_stats":{})"), created->rev)), 403,
                 "Only the replicator can set or change `_replication_stats`.");

    // The replicator (the admin) marks it triggered.
    StateWrite triggered;
    triggered.replication_id = "abc+continuous";
    triggered.state = "triggered";
    REQUIRE(WriteState(f.admin, "r", triggered, clock, HalfRandom).ok());
    std::string stored = f.Get("r");
    std::string rev = JsonText(stored, {"_rev"});
    CHECK(JsonText(stored, {"_replication_state"}) == "triggered");

    // joe may not edit it: keeping the state, removing it, or changing a field.
    CheckRefused(joe.PutDoc("r", WithRev(JoeDoc(R"(,"continuous":true)"), rev)), 403,
                 kTriggeredMessage);
    CheckRefused(joe.PutDoc("r", stored), 403, kTriggeredMessage);
    std::string same_fields =
        WithRev(JoeDoc(R"(,"_replication_id":"abc+continuous","_replication_state":"triggered",)"
                       R"("_replication_state_time":)" +
                       JsonQuote(JsonText(stored, {"_replication_state_time"})) + R"(,"x":1)"),
                rev);
    CheckRefused(joe.PutDoc("r", same_fields), 403, kTriggeredMessage);
    CHECK(JsonText(f.Get("r"), {"_rev"}) == rev);

    // The admin may.
    auto admin_edit =
        f.admin.PutDoc("r", WithRev(JoeDoc(R"(,"_replication_state":"triggered")"), rev));
    REQUIRE_MESSAGE(admin_edit.ok(), admin_edit.error().Message());
    // joe may delete it (and re-create it).
    auto del = joe.DeleteDoc("r", admin_edit->rev);
    REQUIRE_MESSAGE(del.ok(), del.error().Message());
    auto again = joe.PutDoc("r", JoeDoc());
    CHECK_MESSAGE(again.ok(), again.error().Message());
  }

  SUBCASE("after completed: joe may keep or remove the stored fields, not change them") {
    auto created = joe.PutDoc("c", JoeDoc());
    REQUIRE(created.ok());
    StateWrite completed;
    completed.replication_id = "abc";
    completed.state = "completed";
    completed.stats_json = R"({"docs_read":1,"docs_written":1})";
    REQUIRE(WriteState(f.admin, "c", completed, clock, HalfRandom).ok());
    std::string stored = f.Get("c");
    std::string rev = JsonText(stored, {"_rev"});
    std::string time = JsonText(stored, {"_replication_state_time"});
    CHECK(time == FormatRfc3339(kT0));

    std::string kept = R"(,"_replication_id":"abc","_replication_state":"completed",)"
                       R"("_replication_state_time":)" +
                       JsonQuote(time) +
                       R"(,"_replication_stats":{"docs_written":1,"docs_read":1})";
    CheckRefused(
        joe.PutDoc(
            "c",
            WithRev(JoeDoc(R"(,"_replication_id":"abc","_replication_state":"triggered")"), rev)),
        403, "Only the replicator can set or change `_replication_state`.");
    CheckRefused(joe.PutDoc("c", WithRev(JoeDoc(R"(,"_replication_id":"abd")"), rev)), 403,
                 "Only the replicator can set or change `_replication_id`.");
    auto keep = joe.PutDoc("c", WithRev(JoeDoc(kept + R"(,"note":"kept")"), rev));
    REQUIRE_MESSAGE(keep.ok(), keep.error().Message());
    // Removing the state (to run it again) is allowed.
    auto rerun = joe.PutDoc("c", WithRev(JoeDoc(), keep->rev));
    CHECK_MESSAGE(rerun.ok(), rerun.error().Message());
  }

}

TEST_CASE("replicator ddoc: a _replicator-role writer may change only _replication_* fields") {
  Fixture f;
  REQUIRE(EnsureReplicatorDesignDoc(f.admin).ok());
  f.AddReplicatorUser("repl", "replpw");
  CouchClient repl = f.As("repl:replpw");
  CouchClient joe = f.As("joe:joepw");
  TestClock clock;

  // Creating documents: held to every rule like any other writer.
  CheckRefused(
      repl.PutDoc("n", R"({"source":"secret","target":"copy"})"), 403,
      R"(`user_ctx` is required: {"name": "<your user name>", "roles": [<roles you have>]})");
  CheckRefused(
      repl.PutDoc("n",
                  R"({"source":"secret","target":"copy","user_ctx":{"name":"repl","roles":["_admin"]}})"),
      403, R"(`user_ctx.roles`: you do not have the role "_admin")");
  CheckRefused(repl.PutDoc("n", R"({"source":"a","target":"b","user_ctx":{"name":"joe"}})"), 403,
               "`user_ctx.name` must be your own user name");
  CheckRefused(repl.PutDoc("n", R"({"source":5,"target":"b","user_ctx":{"name":"repl"}})"), 403,
               "`source` must be a URL, a database name or an object with `url`");
  CheckRefused(repl.PutDoc("n", R"({"source":"a","target":"b","user_ctx":{"name":"repl"},)"
                                R"("_replication_state":"completed"})"),
               403, "Only the replicator can set or change `_replication_state`.");
  CheckRefused(repl.PutDoc("n", R"({"_replication_state":"error"})"), 403,
               "Only the replicator can set or change `_replication_state`.");
  auto own = repl.PutDoc("own", R"({"source":"a","target":"b","user_ctx":{"name":"repl"}})");
  CHECK_MESSAGE(own.ok(), own.error().Message());

  // Updating only the _replication_* fields of someone's document: allowed,
  // also in the triggered state and on an admin's document without user_ctx.
  auto created = joe.PutDoc("t", JoeDoc());
  REQUIRE(created.ok());
  StateWrite triggered;
  triggered.replication_id = "abc+continuous";
  triggered.state = "triggered";
  Status wrote = WriteState(repl, "t", triggered, clock, HalfRandom);
  REQUIRE_MESSAGE(wrote.ok(), wrote.error().Message());
  StateWrite error;
  error.state = "error";
  error.reason = "boom";
  wrote = WriteState(repl, "t", error, clock, HalfRandom);
  CHECK_MESSAGE(wrote.ok(), wrote.error().Message());
  std::string stored = f.Get("t");
  CHECK(JsonText(stored, {"_replication_state"}) == "error");
  CHECK(JsonText(stored, {"_replication_state_reason"}) == "boom");
  REQUIRE(f.admin.PutDoc("adm", R"({"source":"a"})").ok());
  wrote = WriteState(repl, "adm", error, clock, HalfRandom);
  CHECK_MESSAGE(wrote.ok(), wrote.error().Message());

  // Any other change of its is held to all four rules.
  wrote = WriteState(repl, "t", triggered, clock, HalfRandom);
  REQUIRE_MESSAGE(wrote.ok(), wrote.error().Message());
  stored = f.Get("t");
  std::string rev = JsonText(stored, {"_rev"});
  std::string with_state = R"(,"_replication_id":"abc+continuous","_replication_state":"triggered",)"
                           R"("_replication_state_time":)" +
                           JsonQuote(JsonText(stored, {"_replication_state_time"}));
  CheckRefused(repl.PutDoc("t", WithRev(JoeDoc(with_state + R"(,"continuous":true)"), rev)), 403,
               kTriggeredMessage);
  std::string stolen = R"({"_rev":)" + JsonQuote(rev) +
                       R"(,"source":"secret","target":"copy","user_ctx":{"name":"repl"}})";
  CheckRefused(repl.PutDoc("t", stolen), 403, kTriggeredMessage);
  std::string adm = f.Get("adm");
  std::string adm_changed = adm.substr(0, adm.rfind('}')) + R"(,"target":"copy"})";
  auto changed = repl.PutDoc("adm", adm_changed);
  REQUIRE_FALSE(changed.ok());
  CHECK(changed.error().http_status == 403);
  CHECK(JsonText(f.Get("adm"), {"_rev"}) == JsonText(adm, {"_rev"}));
  CHECK(JsonText(f.Get("t"), {"_rev"}) == rev);
}

TEST_CASE("write state: triggered, completed, no-op, other fields kept") {
  Fixture f;
  TestClock clock;
  const std::string body =
      R"({"source":{"url":"http://src.example/a","headers":{"Authorization":"Basic dTpw"},)"
      R"("auth":{"basic":{"username":"u","password":"p\u00e9\"x"}}},"target":"http://tgt.example/b",)"
      R"("nested":{"list":[1,2.5,{"k":null}],"s":"tab\tquote\"uni\u263a"},"n":123456789,)"
      R"("user_ctx":{"name":"joe","roles":[]}})";
  REQUIRE(f.admin.PutDoc("r1", body).ok());
  auto user_fields = [&](const std::string& doc) {
    std::string out;
    for (const char* k : {"source", "target", "nested", "n", "user_ctx"}) {
      out += JsonText(doc, {k}) + "|";
    }
    return out;
  };
  const std::string original = user_fields(f.Get("r1"));
  const char* put_path = "^/_replicator/r1$";

  StateWrite triggered;
  triggered.replication_id = "c0eb+continuous";
  triggered.state = "triggered";
  REQUIRE(WriteState(f.admin, "r1", triggered, clock, HalfRandom).ok());
  std::string doc = f.Get("r1");
  CHECK(JsonText(doc, {"_rev"}).rfind("2-", 0) == 0);
  CHECK(JsonText(doc, {"_replication_id"}) == "c0eb+continuous");
  CHECK(JsonText(doc, {"_replication_state"}) == "triggered");
  CHECK(JsonText(doc, {"_replication_state_time"}) == "2026-11-23T14:37:56Z");
  CHECK(user_fields(doc) == original);
  CHECK(f.Count("PUT", put_path) == 2);

  // The same write later: no PUT, no new revision, same time.
  clock.Set(kT0 + 60);
  REQUIRE(WriteState(f.admin, "r1", triggered, clock, HalfRandom).ok());
  CHECK(f.Count("PUT", put_path) == 2);
  CHECK(f.Get("r1") == doc);

  // An error (with a reason), then completed with stats.
  StateWrite error;
  error.state = "error";
  error.reason = "db_not_found: could not open http://tgt.example/b/";
  REQUIRE(WriteState(f.admin, "r1", error, clock, HalfRandom).ok());
  doc = f.Get("r1");
  CHECK(JsonText(doc, {"_replication_state"}) == "error");
  CHECK(JsonText(doc, {"_replication_state_reason"}) == *error.reason);
  CHECK(JsonText(doc, {"_replication_state_time"}) == "2026-11-23T14:38:56Z");

  clock.Set(kT0 + 120);
  StateWrite completed;
  completed.state = "completed";
  completed.stats_json =
      R"({"revisions_checked":5,"missing_revisions_found":5,"docs_read":5,"docs_written":5,)"
      R"("doc_write_failures":0,"changes_pending":0,"checkpointed_source_seq":5,)"
      R"("start_time":"2026-11-23T14:37:00Z"})";
  REQUIRE(WriteState(f.admin, "r1", completed, clock, HalfRandom).ok());
  doc = f.Get("r1");
  CHECK(JsonText(doc, {"_rev"}).rfind("4-", 0) == 0);
  CHECK(JsonText(doc, {"_replication_state"}) == "completed");
  CHECK(JsonText(doc, {"_replication_state_time"}) == "2026-11-23T14:39:56Z");
  CHECK(JsonText(doc, {"_replication_state_reason"}) == "<missing>");
  CHECK(JsonInt(doc, {"_replication_stats", "docs_written"}) == 5);
  CHECK(JsonText(doc, {"_replication_stats", "start_time"}) == "2026-11-23T14:37:00Z");
  CHECK(JsonText(doc, {"_replication_id"}) == "c0eb+continuous");
  CHECK(user_fields(doc) == original);
  CHECK(JsonText(doc, {"source", "auth", "basic", "password"}) == "p\xc3\xa9\"x");
  CHECK(clock.sleeps().empty());

  // Missing documents are not created.
  REQUIRE(WriteState(f.admin, "nope", triggered, clock, HalfRandom).ok());
  CHECK_FALSE(f.admin.GetDoc("nope").ok());
  CHECK(f.Count("PUT", "^/_replicator/nope$") == 0);
}

TEST_CASE("write state: conflicts are re-read and retried with backoff") {
  Fixture f;
  TestClock clock;
  REQUIRE(f.admin.PutDoc("r1", R"({"source":"a","target":"b"})").ok());
  const char* put_path = "^/_replicator/r1$";

  SUBCASE("an injected 409") {
    f.Fault(R"({"method":"PUT","path":"^/_replicator/r1$","status":409,"count":1})");
    StateWrite triggered;
    triggered.state = "triggered";
    REQUIRE(WriteState(f.admin, "r1", triggered, clock, HalfRandom).ok());
    CHECK(f.Count("PUT", put_path) == 3);  // create, 409, retry
    CHECK(f.Count("GET", put_path) == 2);
    CHECK(JsonText(f.Get("r1"), {"_replication_state"}) == "triggered");
    REQUIRE(clock.sleeps().size() == 1);
    CHECK(clock.sleeps()[0] == std::chrono::milliseconds(75));  // 50 ms * (1 + 0.5)
  }

  SUBCASE("a real concurrent update between the read and the write") {
    // Our PUT is held for a while; meanwhile someone updates the document
    // through _bulk_docs (a path the fault does not match). Our PUT then
    // carries a stale _rev and gets a real 409.
    f.Fault(R"({"method":"PUT","path":"^/_replicator/r1$","delay_ms":1500,"count":1})");
    StateWrite error;
    error.state = "error";
    error.reason = "boom";
    Status result = OkStatus();
    std::thread writer([&] { result = WriteState(f.admin, "r1", error, clock, HalfRandom); });
    Joiner joiner(writer);
    for (int i = 0; i < 300 && f.Count("PUT", put_path) < 2; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(f.Count("PUT", put_path) == 2);
    std::string current = f.Get("r1");
    std::string edited = current.substr(0, current.rfind('}')) + R"(,"user_edit":true})";
    auto bulk = f.admin.BulkDocs({edited}, true);
    REQUIRE_MESSAGE(bulk.ok(), bulk.error().Message());
    REQUIRE(bulk->size() == 1);
    CHECK((*bulk)[0].ok);
    writer.join();
    REQUIRE_MESSAGE(result.ok(), result.error().Message());
    std::string doc = f.Get("r1");
    CHECK(JsonText(doc, {"user_edit"}) == "true");
    CHECK(JsonText(doc, {"_replication_state"}) == "error");
    CHECK(JsonText(doc, {"_replication_state_reason"}) == "boom");
    CHECK(JsonText(doc, {"_rev"}).rfind("3-", 0) == 0);
    CHECK(f.Count("PUT", put_path) == 3);
    CHECK(clock.sleeps().size() == 1);
  }

  SUBCASE("a document deleted between the read and the write is not resurrected") {
    f.Fault(R"({"method":"PUT","path":"^/_replicator/r1$","delay_ms":1500,"count":1})");
    StateWrite triggered;
    triggered.state = "triggered";
    Status result = OkStatus();
    std::thread writer([&] { result = WriteState(f.admin, "r1", triggered, clock, HalfRandom); });
    Joiner joiner(writer);
    for (int i = 0; i < 300 && f.Count("PUT", put_path) < 2; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::string current = f.Get("r1");
    auto bulk = f.admin.BulkDocs({R"({"_id":"r1","_rev":)" +
                                  JsonQuote(JsonText(current, {"_rev"})) + R"(,"_deleted":true})"},
                                 true);
    REQUIRE_MESSAGE(bulk.ok(), bulk.error().Message());
    writer.join();
    REQUIRE_MESSAGE(result.ok(), result.error().Message());
    CHECK_FALSE(f.admin.GetDoc("r1").ok());
    CHECK(f.Count("PUT", put_path) == 2);  // the stale PUT only
  }

  SUBCASE("a deleted document is left alone") {
    std::string current = f.Get("r1");
    REQUIRE(f.admin.DeleteDoc("r1", JsonText(current, {"_rev"})).ok());
    StateWrite completed;
    completed.state = "completed";
    REQUIRE(WriteState(f.admin, "r1", completed, clock, HalfRandom).ok());
    CHECK_FALSE(f.admin.GetDoc("r1").ok());
    CHECK(f.Count("PUT", put_path) == 1);
  }

  SUBCASE("endless conflicts give up after the attempts, with doubling waits") {
    f.Fault(R"({"method":"PUT","path":"^/_replicator/r1$","status":409,"count":100})");
    StateWrite triggered;
    triggered.state = "triggered";
    Status s = WriteState(f.admin, "r1", triggered, clock, [] { return 0.0; });
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().http_status == 409);
    CHECK(s.error().temporary());
    CHECK(f.Count("PUT", put_path) == 1 + kStateWriteAttempts);
    std::vector<Duration> expected;
    for (int ms : {50, 100, 200, 400, 800, 1600, 2000, 2000, 2000}) {
      expected.push_back(std::chrono::milliseconds(ms));
    }
    CHECK(clock.sleeps() == expected);
    f.server.Request("DELETE", "/_test/faults");
  }

  SUBCASE("a refusal by the validation function is returned, not retried") {
    REQUIRE(EnsureReplicatorDesignDoc(f.admin).ok());
    CouchClient joe = f.As("joe:joepw");
    StateWrite triggered;
    triggered.state = "triggered";
    Status s = WriteState(joe, "r1", triggered, clock, HalfRandom);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().http_status == 403);
    CHECK(f.Count("PUT", put_path) == 2);
  }
}

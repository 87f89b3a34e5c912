// user_ctx and local endpoints (SPEC §1.3): a document written by a
// non-admin cannot make couchrepd read a database its writer cannot read.
#include <httplib.h>

#include "couchrepd/json.h"
#include "integration/serve_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

// ServeConfig with the server admin's name (password in the environment).
std::string AdminServeConfig(const TestServer& server, const std::string& extra_replicator = "") {
  std::string base = ServeConfig(server, extra_replicator);
  return "server:\n  url: " + server.url() + "\n  username: admin\n" +
         base.substr(base.find("\n  request_timeout"));
}

}  // namespace

TEST_CASE("serve: a non-admin's document cannot read a database its writer cannot read") {
  TestServerOptions opts;
  opts.admin = "admin:Adm1n-pw";
  TestServer server(opts);
  auto root = ServerClient(server, "admin:Adm1n-pw");
  auto secret = root.Database("secret-src");
  REQUIRE(secret.CreateDb().ok());
  REQUIRE(server.Request("PUT", "/secret-src/_security",
                         R"({"admins":{"names":[],"roles":[]},"members":{"names":["alice"],"roles":[]}})")
              .status / 100 == 2);
  PutPlainDocs(secret, 0, 5);
  REQUIRE(server.Request("PUT", "/_users/org.couchdb.user:bob",
                         R"({"name":"bob","password":"B0b-pass","roles":[],"type":"user"})")
              .status / 100 == 2);

  ServeProcess admin_serve(AdminServeConfig(server), {"COUCHREPD_SERVER_PASSWORD=Adm1n-pw"});
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 15s));

  Endpoint bob_ep;
  bob_ep.url = ParseUrl(server.url() + "/_replicator/").value();
  bob_ep.credentials.kind = Credentials::Kind::kBasic;
  bob_ep.credentials.username = "bob";
  bob_ep.credentials.password = "B0b-pass";
  CouchClient bob(bob_ep, FastOptions());
  auto put = bob.PutDoc("steal", R"({"source":"secret-src","target":"bob-copy","create_target":true,)"
                                 R"("user_ctx":{"name":"bob","roles":[]}})");
  REQUIRE_MESSAGE(put.ok(), put.error().Message());
  REQUIRE(WaitForState(rep, "steal", "error", 30s));
  auto doc = rep.GetDoc("steal");
  REQUIRE(doc.ok());
  CHECK(JsonText(*doc, {"_replication_state_reason"}).find("unauthorized") != std::string::npos);
  auto copy = root.Database("bob-copy");
  CHECK(DocCount(copy) <= 0);

  // The same replication written by the admin (no user_ctx) is allowed.
  REQUIRE(rep.PutDoc("admin-copy", R"({"source":"secret-src","target":"admin-copy","create_target":true})").ok());
  CHECK(WaitForState(rep, "admin-copy", "completed", 30s));
  auto admin_copy = root.Database("admin-copy");
  CHECK(DocCount(admin_copy) == 5);
  CHECK(admin_serve.Log().find("Adm1n-pw") == std::string::npos);
  CHECK(admin_serve.Log().find("B0b-pass") == std::string::npos);
}

TEST_CASE("serve: a deleted discovered replicator database is not re-created") {
  TestServer server;
  auto root = ServerClient(server);
  auto team = root.Database("team7/_replicator");
  REQUIRE(team.CreateDb().ok());
  ServeProcess serve(ServeConfig(server, "  discover: true\n  create_databases: true\n"));
  // The listed _replicator is created (it is configured); team7's is followed.
  REQUIRE(WaitUntil([&] { return team.GetDoc("_design/_replicator").ok(); }, 20s));
  CHECK(server.Request("GET", "/_replicator").status == 200);

  REQUIRE(team.DeleteDb().ok());
  REQUIRE(WaitUntil(
      [&] {
        return serve.Log().find("no longer following replicator database team7/_replicator") !=
               std::string::npos;
      },
      20s));
  std::this_thread::sleep_for(3s);
  CHECK(server.Request("GET", "/team7%2F_replicator").status == 404);
  std::string log = serve.Log();
  CHECK(log.find("created replicator database team7/_replicator") == std::string::npos);
  // Its feed stopped: nothing asks for the database any more.
  auto asked = [&] {
    auto r = server.Request("GET", "/_test/requests?path=" +
                                       EncodeQueryValue("^/team7(/|%2F)_replicator"));
    REQUIRE(r.status == 200);
    return JsonInt(r.body, {"count"});
  };
  int64_t before = asked();
  std::this_thread::sleep_for(7s);  // longer than a feed's retry wait (5 s)
  CHECK(asked() == before);
}

TEST_CASE("serve: no server credentials while the validation function is not in place") {
  TestServerOptions opts;
  opts.admin = "admin:Adm1n-pw";
  TestServer server(opts);
  auto root = ServerClient(server, "admin:Adm1n-pw");
  auto secret = root.Database("secret-src");
  REQUIRE(secret.CreateDb().ok());
  REQUIRE(server.Request("PUT", "/secret-src/_security",
                         R"({"admins":{"names":[],"roles":[]},"members":{"names":["alice"],"roles":[]}})")
              .status / 100 == 2);
  PutPlainDocs(secret, 0, 3);
  ServeProcess serve(AdminServeConfig(server), {"COUCHREPD_SERVER_PASSWORD=Adm1n-pw"});
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 15s));

  // In place: a document without user_ctx runs with the server's credentials.
  REQUIRE(rep.PutDoc("before", R"({"source":"secret-src","target":"copy-before","create_target":true})").ok());
  REQUIRE(WaitForState(rep, "before", "completed", 30s));
  auto before = root.Database("copy-before");
  CHECK(DocCount(before) == 3);

  // An admin replaces the validation function: from now on anyone who may
  // write to _replicator could write such a document.
  auto ddoc = rep.GetDoc("_design/_replicator");
  REQUIRE(ddoc.ok());
  REQUIRE(rep.PutDoc("_design/_replicator",
                     R"({"_rev":)" + JsonQuote(JsonText(*ddoc, {"_rev"})) +
                         R"(,"language":"javascript","validate_doc_update":"function(){}"})")
              .ok());
  REQUIRE(WaitUntil(
      [&] { return serve.Log().find("the validation function is not in place") != std::string::npos; },
      15s));
  CHECK(serve.Log().find("_design/_replicator was changed by someone") != std::string::npos);
  // /health says so, too: the service is not ready while it lasts.
  {
    httplib::Client status("127.0.0.1", StatusPort(serve));
    std::string body;
    // (The status API shows a snapshot: the feed's reconnect may show first.)
    int code = 0;
    CHECK(WaitUntil(
        [&] {
          auto res = status.Get("/health");
          body = res ? res->body : "";
          code = res ? res->status : 0;
          return res && res->status == 503 &&
                 body.find("_replicator: the validation function is not in place: "
                           "_design/_replicator was changed by someone") != std::string::npos;
        },
        10s));
    INFO(body);
    CHECK(code == 503);
  }

  REQUIRE(rep.PutDoc("after", R"({"source":"secret-src","target":"copy-after","create_target":true})").ok());
  REQUIRE(WaitForState(rep, "after", "error", 30s));
  auto doc = rep.GetDoc("after");
  REQUIRE(doc.ok());
  CHECK(JsonText(*doc, {"_replication_state_reason"}).find("unauthorized") != std::string::npos);
  auto after = root.Database("copy-after");
  CHECK(DocCount(after) <= 0);
  // The replacement is left alone (an admin chose it) and the earlier job is untouched.
  CHECK(JsonText(*rep.GetDoc("_design/_replicator"), {"validate_doc_update"}) == "function(){}");
  CHECK(StateOf(rep, "before") == "completed");
  CHECK(serve.Log().find("Adm1n-pw") == std::string::npos);
}

// Issue 8: every state write used to open its own session (with cookie auth,
// its own POST /_session). One session serves every write-back.
TEST_CASE("serve: state write-back reuses one session (one cookie login, not one per write)") {
  TestServerOptions opts;
  opts.admin = "admin:Adm1n-pw";
  TestServer server(opts);
  auto root = ServerClient(server, "admin:Adm1n-pw");
  auto src = root.Database("wb-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 3);
  std::string config = AdminServeConfig(server);
  const std::string user_line = "\n  username: admin";
  config.insert(config.find(user_line) + user_line.size(), "\n  auth: cookie");
  ServeProcess serve(config, {"COUCHREPD_SERVER_PASSWORD=Adm1n-pw"});
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 15s));
  constexpr int kDocs = 10;
  // URL endpoints with Basic credentials: the jobs themselves never log in.
  const std::string url = "http://admin:Adm1n-pw@" + server.url().substr(std::string("http://").size());
  for (int i = 0; i < kDocs; ++i) {
    REQUIRE(rep.PutDoc("wb-" + std::to_string(i),
                       R"({"source":")" + url + R"(/wb-src","target":")" + url + "/wb-tgt-" +
                           std::to_string(i) + R"(","create_target":true})")
                .ok());
  }
  for (int i = 0; i < kDocs; ++i) CHECK(WaitForState(rep, "wb-" + std::to_string(i), "completed", 30s));
  auto logins = server.Request("GET", "/_test/requests?method=POST&path=%5E%2F_session%24");
  INFO(logins.body);
  // triggered + completed for each document: 2 writes each, 20 in all; the
  // service's own logins (feed, server info, writer) stay a handful.
  CHECK(JsonInt(logins.body, {"count"}) >= 1);
  CHECK(JsonInt(logins.body, {"count"}) <= 4);
  CHECK(serve.Log().find("Adm1n-pw") == std::string::npos);
}

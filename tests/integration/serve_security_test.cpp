// user_ctx and local endpoints (SPEC §1.3): a document written by a
// non-admin cannot make couchrepd read a database its writer cannot read.
#include "integration/serve_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;

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

  ServeProcess admin_serve("server:\n  url: " + server.url() + "\n  username: admin\n" +
                               ServeConfig(server).substr(ServeConfig(server).find("\n  request_timeout")),
                           {"COUCHREPD_SERVER_PASSWORD=Adm1n-pw"});
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

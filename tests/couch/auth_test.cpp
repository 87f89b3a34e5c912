// Authentication against a server with an admin: basic, cookie (with a forced
// re-login), and a wrong password.
#include <doctest/doctest.h>

#include "couch/client_fixture.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {
}

TEST_CASE("admin party needs no credentials") {
  TestServer server;
  auto db = ServerClient(server).Database("party");
  CHECK(db.CreateDb().ok());
}

TEST_CASE("basic auth reaches protected operations; anonymous is refused") {
  TestServerOptions opts;
  opts.admin = kFixtureAdmin;
  TestServer server(opts);
  auto anon = ServerClient(server).Database("basic");
  auto created = anon.CreateDb();
  REQUIRE_FALSE(created.ok());
  CHECK(created.error().http_status == 401);
  auto admin = ServerClient(server, kFixtureAdmin).Database("basic");
  REQUIRE(admin.CreateDb().ok());
  CHECK(admin.GetDbInfo().ok());
}

TEST_CASE("wrong password gives a clear unauthorized error without the password") {
  TestServerOptions opts;
  opts.admin = kFixtureAdmin;
  TestServer server(opts);
  for (auto kind : {Credentials::Kind::kBasic, Credentials::Kind::kCookie}) {
    auto db = ServerClient(server, "admin:wrong-Passw0rd", kind).Database("x");
    auto r = db.CreateDb();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().http_status == 401);
    CHECK(r.error().error == "unauthorized");
    CHECK_FALSE(r.error().temporary());
    CHECK(r.error().Message().find("wrong-Passw0rd") == std::string::npos);
  }
}

TEST_CASE("cookie auth logs in once, and logs in again after the session is lost") {
  TestServerOptions opts;
  opts.admin = kFixtureAdmin;
  TestServer server(opts);
  auto root = ServerClient(server, kFixtureAdmin, Credentials::Kind::kCookie);
  auto db = root.Database("cookie");
  REQUIRE(db.CreateDb().ok());
  REQUIRE(db.PutDoc("a", R"({"x":1})").ok());
  auto logins = [&] {
    auto r = server.Request("GET", "/_test/requests?path=%5E%2F_session");
    return std::stoi(r.body.substr(r.body.find(':') + 1));
  };
  int before = logins();
  CHECK(before >= 1);
  REQUIRE(db.GetDoc("a").ok());
  CHECK(logins() == before);  // the cookie is reused

  // Make the server forget sessions: a 401 must trigger one re-login.
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"({"method":"GET","path":"^/cookie/a$","status":401,"count":1,)"
                         R"("body":"{\"error\":\"unauthorized\",\"reason\":\"session expired\"}"})")
              .status / 100 == 2);
  auto again = db.GetDoc("a");
  REQUIRE(again.ok());
  CHECK(logins() == before + 1);
}

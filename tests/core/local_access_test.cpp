// Tests for the credentials of local endpoints (SPEC §1.3): the decision with
// and without the validation function in place, and the resolved endpoints.
#include "couchrepd/local_access.h"

#include "couchrepd/doc_processor.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "core/spec_fixture.h"

using namespace couchrepd::testing;

namespace couchrepd {
namespace {

Endpoint ServerWithSecrets() {
  Endpoint e;
  e.url = ParseUrl("http://127.0.0.1:5984/").value().WithTrailingSlash();
  e.credentials.kind = Credentials::Kind::kBasic;
  e.credentials.username = "admin";
  e.credentials.password = "server-secret";
  e.headers = {{"X-Api-Key", "server-token"}};
  return e;
}

Config::ProxyAuth Proxy() {
  Config::ProxyAuth p;
  p.enabled = true;
  p.secret = "proxy-secret";
  p.username_header = "X-User";  // CouchDB's x_auth_* names changed
  p.roles_header = "X-Roles";
  p.token_header = "X-Token";
  return p;
}

UserCtx Ctx(bool present, std::optional<std::string> name, std::vector<std::string> roles) {
  UserCtx c;
  c.present = present;
  c.name = std::move(name);
  c.roles = std::move(roles);
  return c;
}

}  // namespace

TEST_CASE("local access: server credentials only while the validation function is in place") {
  const UserCtx none = Ctx(false, std::nullopt, {});
  const UserCtx admin = Ctx(true, "root", {"x", "_admin"});
  const UserCtx joe = Ctx(true, "joe", {"reader"});
  const UserCtx nameless = Ctx(true, std::nullopt, {"reader"});
  const UserCtx replicator = Ctx(true, "repl", {"_replicator"});
  struct Case {
    const UserCtx* ctx;
    bool in_place;
    bool proxy;
    LocalAccess expected;
  };
  const Case cases[] = {
      {&none, true, false, LocalAccess::kServerCredentials},
      {&none, true, true, LocalAccess::kServerCredentials},
      {&admin, true, false, LocalAccess::kServerCredentials},
      {&admin, true, true, LocalAccess::kServerCredentials},
      {&joe, true, false, LocalAccess::kAnonymous},
      {&joe, true, true, LocalAccess::kProxyAuth},
      {&nameless, true, true, LocalAccess::kAnonymous},
      {&replicator, true, false, LocalAccess::kAnonymous},
      {&replicator, true, true, LocalAccess::kProxyAuth},
      // Not in place: nobody gets the server's credentials.
      {&none, false, false, LocalAccess::kAnonymous},
      {&none, false, true, LocalAccess::kAnonymous},  // no name to proxy as
      {&admin, false, false, LocalAccess::kAnonymous},
      {&admin, false, true, LocalAccess::kProxyAuth},
      {&joe, false, false, LocalAccess::kAnonymous},
      {&joe, false, true, LocalAccess::kProxyAuth},
      {&nameless, false, true, LocalAccess::kAnonymous},
  };
  for (const Case& c : cases) {
    CAPTURE(c.ctx->name.value_or("<none>"));
    CAPTURE(c.ctx->present);
    CAPTURE(c.in_place);
    CAPTURE(c.proxy);
    CHECK(Name(DecideLocalAccess(*c.ctx, c.in_place, c.proxy)) == Name(c.expected));
  }
}

TEST_CASE("local access: resolved endpoints follow the decision") {
  const Config::ProxyAuth proxy = Proxy();
  const std::string admin_less = R"({"source":"foo","target":"a/b"})";

  SUBCASE("in place, no user_ctx: the server's credentials and headers") {
    ReplicationSpec s = ResolveLocalAccess(ParseSpec(admin_less), ServerWithSecrets(), &proxy, true);
    for (const EndpointSpec* e : {&s.source, &s.target}) {
      CHECK(e->endpoint.credentials.kind == Credentials::Kind::kBasic);
      CHECK(e->endpoint.credentials.username == "admin");
      CHECK(e->endpoint.credentials.password == "server-secret");
      CHECK(e->endpoint.headers == Headers{{"X-Api-Key", "server-token"}});
    }
    CHECK(s.source.endpoint.url.WithoutCredentials() == "http://127.0.0.1:5984/foo/");
    CHECK(s.target.endpoint.url.WithoutCredentials() == "http://127.0.0.1:5984/a%2Fb/");
    // The same as ResolveLocalEndpoints.
    ReplicationSpec old = ResolveLocalEndpoints(ParseSpec(admin_less), ServerWithSecrets(), &proxy);
    CHECK(Fingerprint(old) == Fingerprint(s));
  }

  SUBCASE("not in place, no user_ctx: anonymous, without the server's headers") {
    ReplicationSpec s = ResolveLocalAccess(ParseSpec(admin_less), ServerWithSecrets(), &proxy, false);
    for (const EndpointSpec* e : {&s.source, &s.target}) {
      CHECK(e->endpoint.credentials.kind == Credentials::Kind::kNone);
      CHECK(e->endpoint.credentials.password.empty());
      CHECK(e->endpoint.headers.empty());
    }
    CHECK(s.source.endpoint.url.WithoutCredentials() == "http://127.0.0.1:5984/foo/");
    // A different replication: another fingerprint (the job is replaced).
    CHECK(Fingerprint(s) != Fingerprint(ResolveLocalAccess(ParseSpec(admin_less), ServerWithSecrets(), &proxy, true)));
  }

  SUBCASE("not in place, _admin in user_ctx: proxy authentication as that user") {
    ReplicationSpec s = ResolveLocalAccess(
        ParseSpec(R"({"source":"foo","target":"http://b.example/t",)"
              R"("user_ctx":{"name":"root","roles":["_admin"]}})"),
        ServerWithSecrets(), &proxy, false);
    const Endpoint& src = s.source.endpoint;
    CHECK(src.credentials.kind == Credentials::Kind::kProxy);
    CHECK(src.credentials.proxy.name == "root");
    CHECK(src.credentials.proxy.roles == std::vector<std::string>{"_admin"});
    CHECK(src.credentials.proxy.secret == "proxy-secret");
    CHECK(src.credentials.proxy.username_header == "X-User");
    CHECK(src.credentials.proxy.roles_header == proxy.roles_header);
    CHECK(src.credentials.proxy.token_header == proxy.token_header);
    CHECK(src.headers.empty());
    CHECK(src.credentials.password.empty());
    // A URL endpoint is left as written.
    CHECK_FALSE(s.target.local);
    CHECK(s.target.endpoint.url.WithoutCredentials() == "http://b.example/t/");
    CHECK(s.target.endpoint.credentials.kind == Credentials::Kind::kNone);
  }

  SUBCASE("proxy off: anonymous") {
    ReplicationSpec s = ResolveLocalAccess(
        ParseSpec(R"({"source":"foo","target":"bar","user_ctx":{"name":"root","roles":["_admin"]}})"),
        ServerWithSecrets(), nullptr, false);
    CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kNone);
    CHECK(s.target.endpoint.credentials.kind == Credentials::Kind::kNone);
  }
}

TEST_CASE("local access: the doc processor lends the server's credentials per database") {
  DocProcessorSettings settings;
  settings.server = ServerWithSecrets();
  DocProcessor processor(settings);
  const std::string doc = R"({"source":"foo","target":"http://b.example/t"})";
  auto spec_of = [&](const std::string& db, const std::string& id) {
    auto actions = processor.OnChange(db, id, false, doc, TimePoint{}, [] { return 0.5; });
    REQUIRE(actions.size() == 1);
    REQUIRE(actions[0].type == DocAction::Type::kComputeId);
    REQUIRE(actions[0].spec);
    return *actions[0].spec;
  };
  CHECK(spec_of("_replicator", "a").source.endpoint.credentials.kind == Credentials::Kind::kBasic);

  processor.SetValidationInPlace("team/_replicator", false);
  ReplicationSpec restricted = spec_of("team/_replicator", "b");
  CHECK(restricted.source.endpoint.credentials.kind == Credentials::Kind::kNone);
  CHECK(restricted.source.endpoint.headers.empty());
  // Other databases are not affected.
  CHECK(spec_of("_replicator", "c").source.endpoint.credentials.kind == Credentials::Kind::kBasic);

  processor.SetValidationInPlace("team/_replicator", true);
  CHECK(spec_of("team/_replicator", "d").source.endpoint.credentials.kind ==
        Credentials::Kind::kBasic);
}

}  // namespace couchrepd

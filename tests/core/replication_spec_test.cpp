// Tests for parsing, validating and normalising replication documents
// (SPEC §1), local endpoint resolution (§1.3), the replication id inputs
// (§3, the SPEC vectors end to end) and the fingerprint (§2.3).
#include "couchrepd/replication_spec.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "couchrepd/encoding.h"
#include "core/spec_fixture.h"

using namespace couchrepd::testing;

namespace couchrepd {
namespace {

using Kind = ReplicationSpec::FilterKind;

// The reason of a document that must be rejected.
std::string Reason(std::string_view json) {
  auto r = ParseReplicationDoc(json, {});
  REQUIRE_MESSAGE(!r.ok(), "accepted: ", json);
  CHECK(r.error().error == "bad_doc");
  CHECK(r.error().kind == ErrorKind::kPermanent);
  return r.error().reason;
}

// A valid document with `extra` fields appended.
std::string Doc(std::string_view extra = "") {
  std::string out = R"({"source":"http://a.example/src","target":"http://b.example/tgt")";
  if (!extra.empty()) out += "," + std::string(extra);
  return out + "}";
}

std::string Base(const IdInputs& in) {
  auto r = ComputeReplicationId(in);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().Message()));
  return r->base;
}

std::string BaseOf(std::string_view json, const std::string& uuid,
                   const std::string& filter_source = "") {
  return Base(IdInputsFor(ParseSpec(json), uuid, filter_source));
}

Endpoint Server(std::string url = "http://127.0.0.1:5984/") {
  Endpoint e;
  e.url = ParseUrl(url).value().WithTrailingSlash();
  e.credentials.kind = Credentials::Kind::kBasic;
  e.credentials.username = "admin";
  e.credentials.password = "server-secret";
  e.headers = {{"X-Proxy-Token", "server-token"}};
  return e;
}

Config::ProxyAuth Proxy(bool enabled = true) {
  Config::ProxyAuth p;
  p.enabled = enabled;
  p.secret = "proxy-secret";
  return p;
}

// ---------------------------------------------------------------------------
// Basics and defaults
// ---------------------------------------------------------------------------

TEST_CASE("spec: a minimal document gets normalised endpoints and the defaults") {
  ReplicationSpec s = ParseSpec(Doc());
  CHECK_FALSE(s.source.local);
  CHECK(s.source.endpoint.url.WithoutCredentials() == "http://a.example/src/");
  CHECK(s.target.endpoint.url.WithoutCredentials() == "http://b.example/tgt/");
  CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kNone);
  CHECK(s.source.endpoint.headers.empty());
  CHECK_FALSE(s.continuous);
  CHECK_FALSE(s.create_target);
  CHECK(s.create_target_params.empty());
  CHECK(s.filter_kind == Kind::kNone);
  CHECK(s.query_params_json == "{}");
  CHECK(s.query_params.empty());
  CHECK_FALSE(s.since_seq_json.has_value());
  CHECK_FALSE(s.winning_revs_only);
  CHECK(s.use_checkpoints);
  CHECK(s.checkpoint_interval == std::chrono::seconds(30));
  CHECK(s.worker_processes == 4);
  CHECK(s.worker_batch_size == 500);
  CHECK(s.http_connections == 20);
  CHECK(s.retries_per_request == 5);
  CHECK(s.connection_timeout == std::chrono::seconds(30));
  CHECK(s.use_bulk_get);
  CHECK(s.socket_keepalive);
  CHECK(s.socket_nodelay);
  CHECK_FALSE(s.user_ctx.present);
  CHECK(s.warnings.empty());
}

TEST_CASE("spec: defaults come from the configuration; the document overrides them") {
  Config config;
  config.replication.worker_processes = 8;
  config.replication.worker_batch_size = 100;
  config.replication.http_connections = 5;
  config.replication.retries_per_request = 2;
  config.replication.connection_timeout = std::chrono::seconds(10);
  config.replication.checkpoint_interval = std::chrono::seconds(5);
  config.replication.use_bulk_get = false;
  config.replication.use_checkpoints = false;
  ReplicationDefaults d = ReplicationDefaults::From(config);
  ReplicationSpec s = ParseSpec(Doc(), d);
  CHECK(s.worker_processes == 8);
  CHECK(s.worker_batch_size == 100);
  CHECK(s.http_connections == 5);
  CHECK(s.retries_per_request == 2);
  CHECK(s.connection_timeout == std::chrono::seconds(10));
  CHECK(s.checkpoint_interval == std::chrono::seconds(5));
  CHECK_FALSE(s.use_bulk_get);
  CHECK_FALSE(s.use_checkpoints);
  s = ParseSpec(Doc(R"("worker_processes":2,"use_bulk_get":true,"connection_timeout":"1500")"), d);
  CHECK(s.worker_processes == 2);
  CHECK(s.use_bulk_get);
  CHECK(s.connection_timeout == std::chrono::milliseconds(1500));
}

TEST_CASE("spec: unknown fields and CouchDB's own fields are ignored") {
  ReplicationSpec s = ParseSpec(Doc(R"("_id":"r","_rev":"1-a","_replication_state":"error",)"
                                R"("owner":"bob","cancel":true,"whatever":{"x":[1,2]})"));
  CHECK(s.warnings.empty());
  s = ParseSpec(Doc(R"("proxy":"http://proxy:3128")"));
  REQUIRE(s.warnings.size() == 1);
  CHECK(s.warnings[0] ==
        "`proxy` is not supported and is ignored: couchrepd connects to the endpoints directly");
}

// ---------------------------------------------------------------------------
// Booleans and integers
// ---------------------------------------------------------------------------

TEST_CASE("spec: boolean fields take JSON booleans only") {
  for (const char* field :
       {"continuous", "create_target", "winning_revs_only", "use_checkpoints", "use_bulk_get"}) {
    CAPTURE(field);
    std::string f = std::string("\"") + field + "\":";
    ReplicationSpec t = ParseSpec(Doc(f + "true"));
    ReplicationSpec u = ParseSpec(Doc(f + "false"));
    std::string reason = std::string("`") + field + "` must be a boolean";
    for (const char* bad : {"\"true\"", "1", "0", "null", "[]", "{}"}) {
      CAPTURE(bad);
      CHECK(Reason(Doc(f + bad)) == reason);
    }
  }
  ReplicationSpec s =
      ParseSpec(Doc(R"("continuous":true,"create_target":true,"winning_revs_only":true,)"
                R"("use_checkpoints":false,"use_bulk_get":false)"));
  CHECK(s.continuous);
  CHECK(s.create_target);
  CHECK(s.winning_revs_only);
  CHECK_FALSE(s.use_checkpoints);
  CHECK_FALSE(s.use_bulk_get);
}

TEST_CASE("spec: integer options take integers and integer strings within bounds") {
  ReplicationSpec s = ParseSpec(Doc(R"("worker_processes":"2","worker_batch_size":100,)"
                                R"("http_connections":"007","retries_per_request":0,)"
                                R"("checkpoint_interval":5000,"connection_timeout":"60000")"));
  CHECK(s.worker_processes == 2);
  CHECK(s.worker_batch_size == 100);
  CHECK(s.http_connections == 7);
  CHECK(s.retries_per_request == 0);
  CHECK(s.checkpoint_interval == std::chrono::seconds(5));
  CHECK(s.connection_timeout == std::chrono::minutes(1));

  for (const char* bad : {"\"a few\"", "1.5", "4.0", "-1", "0", "\"-3\"", "\"5 \"", "\" 5\"",
                          "\"+5\"", "\"\"", "true", "null", "[4]", "{}", "\"0x10\""}) {
    CAPTURE(bad);
    CHECK(Reason(Doc(std::string(R"("worker_processes":)") + bad)) ==
          "`worker_processes` must be a positive integer");
  }
  CHECK(Reason(Doc(R"("retries_per_request":-1)")) ==
        "`retries_per_request` must be a non-negative integer");
  CHECK(Reason(Doc(R"("checkpoint_interval":0)")) ==
        "`checkpoint_interval` must be a positive integer (milliseconds)");
  CHECK(Reason(Doc(R"("connection_timeout":"soon")")) ==
        "`connection_timeout` must be a positive integer (milliseconds)");
  CHECK(Reason(Doc(R"("worker_processes":129)")) == "`worker_processes` must be at most 128");
  CHECK(Reason(Doc(R"("worker_batch_size":100001)")) ==
        "`worker_batch_size` must be at most 100000");
  CHECK(Reason(Doc(R"("http_connections":1000000)")) == "`http_connections` must be at most 1024");
  CHECK(Reason(Doc(R"("retries_per_request":"1001")")) ==
        "`retries_per_request` must be at most 1000");
  CHECK(Reason(Doc(R"("checkpoint_interval":86400001)")) ==
        "`checkpoint_interval` must be at most 86400000 (milliseconds)");
  // Beyond int64, as a number or as digits: still a plain "too large".
  CHECK(Reason(Doc(R"("worker_processes":18446744073709551615)")) ==
        "`worker_processes` must be at most 128");
  CHECK(Reason(Doc(R"("worker_processes":"99999999999999999999999999")")) ==
        "`worker_processes` must be at most 128");
  CHECK(Reason(Doc(R"("worker_processes":18446744073709551616)")) ==
        "`worker_processes` must be at most 128");
  CHECK(Reason(Doc(R"("worker_processes":-99999999999999999999)")) ==
        "`worker_processes` must be a positive integer");
  CHECK(ParseSpec(Doc(R"("worker_processes":128)")).worker_processes == 128);
}

TEST_CASE("spec: integers beyond 64 bits are valid JSON (CouchDB keeps them)") {
  ReplicationSpec s =
      ParseSpec(Doc(R"("note":[123456789012345678901234567890,-1e5,"12345678901234567890123"],)"
                R"("selector":{"n":{"$gt":-123456789012345678901234567890}},)"
                R"("since_seq":98765432109876543210987654321)"));
  CHECK(s.selector_json == R"({"n":{"$gt":-123456789012345678901234567890}})");
  CHECK(s.since_seq_json == "98765432109876543210987654321");
  CHECK(ComputeReplicationId(IdInputsFor(s, "u", "")).ok());
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

TEST_CASE("spec: endpoint presence and shape") {
  CHECK(Reason(R"({"target":"http://b/t"})") == "`source` is missing");
  CHECK(Reason(R"({"source":null,"target":"http://b/t"})") == "`source` is missing");
  CHECK(Reason(R"({"source":"http://a/s"})") == "`target` is missing");
  CHECK(Reason(R"({"source":42,"target":"http://b/t"})") ==
        "`source` must be a URL, a database name or an object with `url`");
  CHECK(Reason(R"({"source":["http://a/s"],"target":"http://b/t"})") ==
        "`source` must be a URL, a database name or an object with `url`");
  CHECK(Reason(R"({"source":{},"target":"http://b/t"})") == "`source.url` is missing");
  CHECK(Reason(R"({"source":{"url":null},"target":"http://b/t"})") == "`source.url` is missing");
  CHECK(Reason(R"({"source":{"url":5},"target":"http://b/t"})") == "`source.url` must be a string");
  CHECK(Reason(R"({"source":"","target":"http://b/t"})") == "`source` is empty");
  CHECK(Reason(R"({"source":{"url":""},"target":"http://b/t"})") == "`source.url` is empty");
  CHECK(Reason(R"({"source":"http://a/s","target":"ftp://b/t"})") ==
        "`target`: unsupported scheme `ftp` (only http and https)");
  CHECK(Reason(R"({"source":{"url":"gopher://x/y"},"target":"http://b/t"})") ==
        "`source.url`: unsupported scheme `gopher` (only http and https)");
  CHECK(Reason(R"({"source":"http://a:99999/s","target":"http://b/t"})") ==
        "`source`: the URL's port is out of range");
  CHECK(Reason(R"({"source":"http:///s","target":"http://b/t"})") ==
        "`source`: the URL has no host");
  CHECK(Reason(R"({"source":"http://a/s?x=1","target":"http://b/t"})") ==
        "`source`: the URL must not have a query string");
  CHECK(Reason(R"({"source":"://a/s","target":"http://b/t"})") == "`source` is not a valid URL");
  CHECK(Reason(R"({"source":"Big DB","target":"http://b/t"})") ==
        "`source` is neither an http(s) URL nor a valid database name");
  CHECK(Reason(R"({"source":"http:/a/s","target":"http://b/t"})") ==
        "`source` is neither an http(s) URL nor a valid database name");
}

TEST_CASE("spec: bare names are local databases") {
  ReplicationSpec s = ParseSpec(R"({"source":"foo","target":{"url":"a/b_$()+-9"}})");
  CHECK(s.source.local);
  CHECK(s.source.local_db == "foo");
  CHECK(s.source.Display() == "foo");
  CHECK(s.target.local);
  CHECK(s.target.local_db == "a/b_$()+-9");
  CHECK(ParseSpec(R"({"source":"_users","target":"x"})").source.local_db == "_users");
  for (const char* bad : {"Foo", "9db", "_", "db name", "db:x", "\u00e9t\u00e9"}) {
    CAPTURE(bad);
    CHECK(Reason(std::string(R"({"source":")") + bad + R"(","target":"x"})") ==
          "`source` is neither an http(s) URL nor a valid database name");
  }
  CHECK(Reason(std::string(R"({"source":")") + std::string(239, 'a') + R"(","target":"x"})") ==
        "`source` is neither an http(s) URL nor a valid database name");
  CHECK(Reason(R"({"source":{"url":"foo","headers":{"X":"y"}},"target":"x"})") ==
        "`source`: `headers` and `auth` apply only to http(s) URLs, not to a local database");
  CHECK(Reason(R"({"source":{"url":"foo","auth":{"basic":{"username":"u","password":"p"}}},)"
               R"("target":"x"})") ==
        "`source`: `headers` and `auth` apply only to http(s) URLs, not to a local database");
}

TEST_CASE("spec: headers are checked and kept in document order") {
  ReplicationSpec s = ParseSpec(R"({"source":{"url":"https://a/s","headers":{"X-B":"2","X-A":"1",)"
                            R"("Authorization":"Bearer tok"}},"target":"http://b/t"})");
  Headers expected = {{"X-B", "2"}, {"X-A", "1"}, {"Authorization", "Bearer tok"}};
  CHECK(s.source.endpoint.headers == expected);
  CHECK(s.source.headers_as_written == expected);
  CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kNone);
  CHECK(ParseSpec(R"({"source":{"url":"http://a/s","headers":null,"auth":null},"target":"x"})")
            .source.endpoint.headers.empty());

  auto with_headers = [](std::string_view headers) {
    return std::string(R"({"source":{"url":"http://a/s","headers":)") + std::string(headers) +
           R"(},"target":"x"})";
  };
  CHECK(Reason(with_headers("[]")) == "`source.headers` must be an object");
  CHECK(Reason(with_headers("\"X: y\"")) == "`source.headers` must be an object");
  CHECK(Reason(with_headers(R"({"X-N":5})")) == "`source.headers.X-N` must be a string");
  CHECK(Reason(with_headers(R"({"X-N":null})")) == "`source.headers.X-N` must be a string");
  CHECK(Reason(with_headers(R"({"X-N":"a\r\nX-Evil: 1"})")) ==
        "`source.headers.X-N` must not contain line breaks or control characters");
  CHECK(Reason(with_headers(R"({"X N":"v"})")) ==
        "`source.headers` has a name that is not a valid HTTP header name");
  CHECK(Reason(with_headers(R"({"Authorization: Basic dTpw":"v"})")) ==
        "`source.headers` has a name that is not a valid HTTP header name");
  CHECK(Reason(with_headers(R"({"":"v"})")) ==
        "`source.headers` has a name that is not a valid HTTP header name");
  CHECK(Reason(with_headers(R"({"content-length":"5"})")) ==
        "`source.headers.content-length` is set by couchrepd and cannot be given");
  CHECK(Reason(with_headers(R"({"Transfer-Encoding":"chunked"})")) ==
        "`source.headers.Transfer-Encoding` is set by couchrepd and cannot be given");
}

TEST_CASE("spec: headers, URLs and roles are bounded (SPEC §10)") {
  auto with_headers = [](const std::string& headers) {
    return R"({"source":{"url":"http://a/s","headers":)" + headers + R"(},"target":"x"})";
  };
  auto headers = [](size_t count) {
    std::string out = "{";
    for (size_t i = 0; i < count; ++i) out += (i ? ",\"X-" : "\"X-") + std::to_string(i) + "\":\"v\"";
    return out + "}";
  };
  CHECK(ParseSpec(with_headers(headers(kMaxEndpointHeaders))).source.endpoint.headers.size() ==
        kMaxEndpointHeaders);
  CHECK(Reason(with_headers(headers(kMaxEndpointHeaders + 1))) ==
        "`source.headers` has more than 100 headers");
  CHECK(Reason(with_headers(headers(100000))) == "`source.headers` has more than 100 headers");
  // One header: name and value together at most 8 KiB.
  std::string fits(kMaxHeaderBytes - 5, 'v');
  CHECK(ParseSpec(with_headers(R"({"X-Big":")" + fits + "\"}")).source.endpoint.headers.size() == 1);
  CHECK(Reason(with_headers(R"({"X-Big":")" + fits + "v\"}")) ==
        "`source.headers.X-Big` is longer than 8192 bytes");
  CHECK(Reason(with_headers("{\"" + std::string(100000, 'h') + "\":\"v\"}")) ==
        "`source.headers." + std::string(40, 'h') + "...` is longer than 8192 bytes");
  // An Authorization: Basic header is bounded too.
  CHECK(Reason(with_headers(R"({"Authorization":"Basic )" + std::string(9000, 'A') + "\"}")) ==
        "`source.headers.Authorization` is longer than 8192 bytes");

  std::string long_url = "http://a/" + std::string(kMaxUrlBytes - 9, 'd');
  CHECK(ParseSpec(R"({"source":")" + long_url + R"(","target":"x"})").source.endpoint.url.path.size() >
        kMaxUrlBytes - 9);
  CHECK(Reason(R"({"source":")" + long_url + R"(d","target":"x"})") ==
        "`source` is longer than 8192 bytes");
  CHECK(Reason(R"({"source":"http://a/s","target":{"url":"http://)" + std::string(300000, 'h') +
               R"(/db"}})") == "`target.url` is longer than 8192 bytes");

  auto roles = [](size_t count) {
    std::string out = R"("user_ctx":{"name":"joe","roles":[)";
    for (size_t i = 0; i < count; ++i) out += (i ? ",\"r" : "\"r") + std::to_string(i) + "\"";
    return out + "]}";
  };
  CHECK(ParseSpec(Doc(roles(kMaxUserCtxRoles))).user_ctx.roles.size() == kMaxUserCtxRoles);
  CHECK(Reason(Doc(roles(kMaxUserCtxRoles + 1))) == "`user_ctx.roles` has more than 100 roles");
}

TEST_CASE("spec: auth accepts basic only") {
  auto with_auth = [](std::string_view auth) {
    return std::string(R"({"source":{"url":"http://a/s","auth":)") + std::string(auth) +
           R"(},"target":"x"})";
  };
  const std::string basic_shape =
      "`source.auth.basic` must be an object with a non-empty string `username` and a string "
      "`password`";
  CHECK(Reason(with_auth("\"u:p\"")) == "`source.auth` must be an object");
  CHECK(Reason(with_auth(R"({"basic":"u:p"})")) == basic_shape);
  CHECK(Reason(with_auth(R"({"basic":{"username":"u"}})")) == basic_shape);
  CHECK(Reason(with_auth(R"({"basic":{"password":"p"}})")) == basic_shape);
  CHECK(Reason(with_auth(R"({"basic":{"username":"","password":"p"}})")) == basic_shape);
  CHECK(Reason(with_auth(R"({"basic":{"username":1,"password":"p"}})")) == basic_shape);
  CHECK(Reason(with_auth(R"({"session":{"cookie":"x"}})")) ==
        "`source.auth`: unsupported authentication `session` (only `basic` is supported)");
  CHECK(Reason(with_auth(R"({"basic":{"username":"u","password":"p"},"iam":{}})")) ==
        "`source.auth`: unsupported authentication `iam` (only `basic` is supported)");
  ReplicationSpec s = ParseSpec(with_auth("{}"));
  CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kNone);
  s = ParseSpec(with_auth(R"({"basic":{"username":"u","password":""}})"));
  CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kBasic);
  CHECK(s.source.endpoint.credentials.password.empty());
}

// ---------------------------------------------------------------------------
// Credentials: three ways in, one pair out, never shown
// ---------------------------------------------------------------------------

TEST_CASE("spec: userinfo, auth.basic and a Basic header give the same credentials") {
  const std::string password = "p@ss:w/rd%";
  const std::vector<std::string> docs = {
      // userinfo, percent-escaped
      R"({"source":"http://b%C3%B8b:p%40ss%3Aw%2Frd%25@db.example:5984/src","target":"tgt"})",
      // userinfo with a raw '@' and ':' in the password (the last '@' ends it)
      R"({"source":"http://b%C3%B8b:p@ss:w%2Frd%25@db.example:5984/src","target":"tgt"})",
      // auth.basic
      R"({"source":{"url":"http://db.example:5984/src","auth":{"basic":{"username":"bøb",)"
      R"("password":"p@ss:w/rd%"}}},"target":"tgt"})",
      // Authorization: Basic base64("bøb:p@ss:w/rd%")
      R"({"source":{"url":"http://db.example:5984/src","headers":{"Authorization":"Basic )" +
          Base64Encode("bøb:" + password) + R"("}},"target":"tgt"})",
      // the same, lower-case scheme word and header name
      R"({"source":{"url":"http://db.example:5984/src","headers":{"authorization":"basic )" +
          Base64Encode("bøb:" + password) + R"("}},"target":"tgt"})",
  };
  std::string first_id, first_fingerprint;
  for (const std::string& doc : docs) {
    CAPTURE(doc);
    ReplicationSpec s = ParseSpec(doc);
    const Endpoint& e = s.source.endpoint;
    CHECK(e.credentials.kind == Credentials::Kind::kBasic);
    CHECK(e.credentials.username == "bøb");
    CHECK(e.credentials.password == password);
    CHECK_FALSE(e.url.user.has_value());
    CHECK_FALSE(e.url.password.has_value());
    CHECK(e.url.WithoutCredentials() == "http://db.example:5984/src/");
    CHECK(e.headers.empty());  // the Basic header is not sent as written
    CHECK(s.warnings.empty());
    CHECK(s.source.Display() == "http://b%C3%B8b:*****@db.example:5984/src/");
    ReplicationSpec resolved = ResolveLocalEndpoints(s, Server(), nullptr);
    IdInputs in = IdInputsFor(resolved, "uuid", "");
    CHECK(in.source.user == "bøb");
    std::string id = Base(in);
    if (first_id.empty()) first_id = id;
    CHECK(id == first_id);
    std::string fp = Fingerprint(s);
    if (first_fingerprint.empty()) first_fingerprint = fp;
    CHECK(fp == first_fingerprint);
    CHECK(fp.find(password) == std::string::npos);
  }
}

TEST_CASE("spec: credential precedence is auth.basic, then userinfo, then the header") {
  std::string header = "Basic " + Base64Encode("hdr:hpw");
  ReplicationSpec s =
      ParseSpec(R"({"source":{"url":"http://url:upw@a/s","headers":{"Authorization":")" + header +
            R"("},"auth":{"basic":{"username":"auth","password":"apw"}}},)"
            R"("target":"x"})");
  CHECK(s.source.endpoint.credentials.username == "auth");
  CHECK(s.source.endpoint.credentials.password == "apw");
  CHECK(s.warnings == std::vector<std::string>{
                          "`source`: the user name and password in the URL are ignored because "
                          "`auth.basic` is set",
                          "`source`: the Basic authorization header is ignored because "
                          "`auth.basic` is set"});
  // The id sees the written headers (and drops the Basic one itself).
  CHECK(s.source.headers_as_written == Headers{{"Authorization", header}});

  s = ParseSpec(R"({"source":{"url":"http://url:upw@a/s","headers":{"Authorization":")" + header +
            R"("}},"target":"x"})");
  CHECK(s.source.endpoint.credentials.username == "url");
  CHECK(s.source.endpoint.credentials.password == "upw");
  CHECK(s.warnings == std::vector<std::string>{
                          "`source`: the Basic authorization header is ignored because the URL "
                          "has a user name and password"});

  // A user name without password: an empty password.
  s = ParseSpec(R"({"source":"http://solo@a/s","target":"x"})");
  CHECK(s.source.endpoint.credentials.username == "solo");
  CHECK(s.source.endpoint.credentials.password.empty());
  CHECK(s.source.Display() == "http://solo:*****@a/s/");

  // An undecodable Basic header is dropped with a warning, as CouchDB does.
  for (const char* bad : {"Basic !!!notbase64", "Basic bm9jb2xvbg=="}) {  // "nocolon"
    s = ParseSpec(std::string(R"({"source":{"url":"http://a/s","headers":{"Authorization":")") + bad +
              R"(","X-Keep":"1"}},"target":"x"})");
    CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kNone);
    CHECK(s.source.endpoint.headers == Headers{{"X-Keep", "1"}});
    CHECK(s.warnings ==
          std::vector<std::string>{"`source`: the Basic authorization header is not base64 of "
                                   "user:password and is ignored"});
  }
}

TEST_CASE("spec: no reason, warning or display contains a password") {
  const std::string secret = "S3cr3t-pw";
  std::vector<std::string> bad_docs = {
      R"({"source":"http://u:S3cr3t-pw@a:0/s","target":"x"})",
      R"({"source":"http://u:S3cr3t-pw@a/s?q=1","target":"x"})",
      R"({"source":"http://u:S3cr3t-pw@/s","target":"x"})",
      R"({"source":"u:S3cr3t-pw@a/s","target":"x"})",
      R"({"source":"ftp://u:S3cr3t-pw@a/s","target":"x"})",
      R"({"source":"http://u:S3cr3t-pw%zz@a/s","target":"x"})",
      R"({"source":{"url":"http://a/s","auth":{"basic":{"username":"u","password":"S3cr3t-pw"},)"
      R"("cookie":1}},"target":"x"})",
      R"({"source":{"url":"http://a/s","auth":{"basic":{"username":"u","password":5}}},)"
      R"("target":"x"})",
      R"({"source":{"url":"http://a/s","headers":{"Authorization: Basic S3cr3t-pw":"x"}},)"
      R"("target":"x"})",
      R"({"source":{"url":"http://a/s","headers":{"Authorization":"Bearer S3cr3t-pw\n"}},)"
      R"("target":"x"})",
  };
  for (const std::string& doc : bad_docs) {
    CAPTURE(doc);
    auto r = ParseReplicationDoc(doc, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().Message().find(secret) == std::string::npos);
  }
  ReplicationSpec s =
      ParseSpec(R"({"source":{"url":"http://u:S3cr3t-pw@a/s","auth":{"basic":)"
            R"({"username":"v","password":"S3cr3t-pw"}},"headers":{"Authorization":)"
            R"("Basic dTpTM2NyM3QtcHc="}},"target":"http://w:S3cr3t-pw@b/t"})");
  for (const auto& w : s.warnings) CHECK(w.find(secret) == std::string::npos);
  CHECK(s.source.Display().find(secret) == std::string::npos);
  CHECK(s.target.Display() == "http://w:*****@b/t/");
  CHECK(Fingerprint(s).find(secret) == std::string::npos);
}

// ---------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------

TEST_CASE("spec: doc_ids") {
  ReplicationSpec s = ParseSpec(Doc(R"("doc_ids":["b","a/b","a+b","100%","h\u00e9","_design/x","b"])"));
  CHECK(s.filter_kind == Kind::kDocIds);
  CHECK(s.doc_ids ==
        std::vector<std::string>{"b", "a/b", "a+b", "100%", "h\xc3\xa9", "_design/x", "b"});
  CHECK(ParseSpec(Doc(R"("doc_ids":[])")).filter_kind == Kind::kDocIds);
  CHECK(ParseSpec(Doc(R"("doc_ids":null)")).filter_kind == Kind::kNone);
  for (const char* bad : {"\"a\"", "[1]", "[\"a\",null]", "{}", "true", "[[\"a\"]]"}) {
    CAPTURE(bad);
    CHECK(Reason(Doc(std::string(R"("doc_ids":)") + bad)) ==
          "`doc_ids` must be an array of strings");
  }
}

TEST_CASE("spec: doc_ids, filter and selector are mutually exclusive") {
  const std::string reason = "`doc_ids`, `filter` and `selector` are mutually exclusive";
  CHECK(Reason(Doc(R"("doc_ids":["a"],"filter":"d/f")")) == reason);
  CHECK(Reason(Doc(R"("doc_ids":["a"],"selector":{})")) == reason);
  CHECK(Reason(Doc(R"("filter":"d/f","selector":{"a":1})")) == reason);
  CHECK(Reason(Doc(R"("doc_ids":"x","filter":5,"selector":[])")) == reason);
  // null does not count.
  CHECK(ParseSpec(Doc(R"("doc_ids":null,"filter":null,"selector":{"a":1})")).filter_kind ==
        Kind::kSelector);
}

TEST_CASE("spec: built-in and user filters") {
  ReplicationSpec s = ParseSpec(Doc(R"("filter":"_view","query_params":{"view":"d/v","z":1,"a":"x"})"));
  CHECK(s.filter_kind == Kind::kBuiltin);
  CHECK(s.filter == "_view");
  CHECK(s.query_params_json == R"({"view":"d/v","z":1,"a":"x"})");
  CHECK(s.query_params == QueryParams{{"view", "d/v"}, {"z", "1"}, {"a", "x"}});
  CHECK_FALSE(UserFilterLocation(s).has_value());
  CHECK(ParseSpec(Doc(R"("filter":"_design")")).filter_kind == Kind::kBuiltin);

  const std::string view = "`filter: _view` needs `query_params.view` as \"ddoc/view\"";
  CHECK(Reason(Doc(R"("filter":"_view")")) == view);
  CHECK(Reason(Doc(R"("filter":"_view","query_params":{})")) == view);
  CHECK(Reason(Doc(R"("filter":"_view","query_params":{"view":"dv"})")) == view);
  CHECK(Reason(Doc(R"("filter":"_view","query_params":{"view":"/v"})")) == view);
  CHECK(Reason(Doc(R"("filter":"_view","query_params":{"view":["d/v"]})")) == view);
  CHECK(Reason(Doc(R"("filter":"_bogus")")) ==
        "`filter`: unknown built-in filter `_bogus` (known: _design, _doc_ids, _selector, _view)");
  CHECK(Reason(Doc(R"("filter":"_design/app/even")")) ==
        "`filter`: write a design document's filter as \"ddoc/name\", without `_design/`");

  s = ParseSpec(Doc(R"("filter":"app/even","query_params":{"z":"1","a":"2"})"));
  CHECK(s.filter_kind == Kind::kUser);
  CHECK(s.filter == "app/even");
  auto where = UserFilterLocation(s);
  REQUIRE(where.has_value());
  CHECK(where->first == "_design/app");
  CHECK(where->second == "even");
  CHECK(UserFilterLocation(ParseSpec(Doc(R"("filter":"a/b/c")")))->second == "b/c");

  const std::string shape = "`filter` must be \"ddoc/name\" or a built-in filter such as `_view`";
  for (const char* bad : {"\"even\"", "\"/even\"", "\"app/\""}) {
    CHECK(Reason(Doc(std::string(R"("filter":)") + bad)) == shape);
  }
  CHECK(Reason(Doc(R"("filter":"")")) == "`filter` must be a non-empty string");
  CHECK(Reason(Doc(R"("filter":["a/b"])")) == "`filter` must be a non-empty string");
}

TEST_CASE("spec: query_params") {
  ReplicationSpec s = ParseSpec(
      Doc(R"("filter":"d/f","query_params": { "b" : 1.50 , "a" : [ 1 , 2 ] ,)"
          R"( "n" : null , "t" : true , "s" : "x\"y" , "big" : 123456789012345678901234567890 })"));
  // Compact, but keys in document order and numbers exactly as written.
  CHECK(
      s.query_params_json ==
      R"({"b":1.50,"a":[1,2],"n":null,"t":true,"s":"x\"y","big":123456789012345678901234567890})");
  CHECK(s.query_params == QueryParams{{"b", "1.50"},
                                      {"a", "[1,2]"},
                                      {"n", "null"},
                                      {"t", "true"},
                                      {"s", "x\"y"},
                                      {"big", "123456789012345678901234567890"}});
  CHECK(ParseSpec(Doc(R"("query_params":null)")).query_params_json == "{}");
  CHECK(Reason(Doc(R"("query_params":"view=d/v")")) == "`query_params` must be an object");
  CHECK(Reason(Doc(R"("query_params":[])")) == "`query_params` must be an object");
}

TEST_CASE("spec: selector") {
  ReplicationSpec s = ParseSpec(Doc(R"("selector": {"type": "foo", "n": {"$gt": 1.0}})"));
  CHECK(s.filter_kind == Kind::kSelector);
  CHECK(s.selector_json == R"({"type":"foo","n":{"$gt":1.0}})");
  CHECK(Reason(Doc(R"("selector":"type=foo")")) == "`selector` must be an object");
  CHECK(Reason(Doc(R"("selector":[{"a":1}])")) == "`selector` must be an object");
  std::string reason = Reason(Doc(R"("selector":{"a":{"$bogus":1}})"));
  CHECK(reason.rfind("`selector` is not a valid Mango selector: ", 0) == 0);
}

TEST_CASE("spec: since_seq and create_target_params") {
  CHECK(ParseSpec(Doc(R"("since_seq":"5-g1AAAA")")).since_seq_json == R"("5-g1AAAA")");
  CHECK(ParseSpec(Doc(R"("since_seq":42)")).since_seq_json == "42");
  CHECK(ParseSpec(Doc(R"("since_seq":[5, "x"])")).since_seq_json == R"([5,"x"])");
  CHECK(ParseSpec(Doc(R"("since_seq":123456789012345678901234567890)")).since_seq_json ==
        "123456789012345678901234567890");
  CHECK_FALSE(ParseSpec(Doc(R"("since_seq":null)")).since_seq_json.has_value());

  ReplicationSpec s = ParseSpec(Doc(R"("create_target":true,"create_target_params":{"q":1,"n":3,)"
                                R"("partitioned":true,"placement":"a:1"})"));
  CHECK(s.create_target_params ==
        QueryParams{{"q", "1"}, {"n", "3"}, {"partitioned", "true"}, {"placement", "a:1"}});
  CHECK(ParseSpec(Doc(R"("create_target_params":null)")).create_target_params.empty());
  CHECK(Reason(Doc(R"("create_target_params":"q=1")")) ==
        "`create_target_params` must be an object");
  CHECK(Reason(Doc(R"("create_target_params":[1])")) == "`create_target_params` must be an object");
}

// ---------------------------------------------------------------------------
// socket_options and user_ctx
// ---------------------------------------------------------------------------

TEST_CASE("spec: socket_options honours keepalive and nodelay, warns about the rest") {
  ReplicationSpec s = ParseSpec(Doc(R"("socket_options":"[{keepalive, false}, {nodelay, true}]")"));
  CHECK_FALSE(s.socket_keepalive);
  CHECK(s.socket_nodelay);
  CHECK(s.warnings.empty());
  s = ParseSpec(Doc(R"("socket_options":"  [ ]  ")"));
  CHECK(s.socket_keepalive);
  CHECK(s.socket_nodelay);  // our default (see ReplicationSpec::socket_nodelay)
  s = ParseSpec(Doc(R"("socket_options":"[{nodelay, false}]")"));
  CHECK_FALSE(s.socket_nodelay);
  s = ParseSpec(
      Doc(R"("socket_options":"[{recbuf,65536},{sndbuf, 65536},{priority,6},{recbuf,1},)"
          R"({nodelay,true},{tos,-1},{'linger',{true,5}},{buffer,\"x\"},{a,b},{c,d},keepalive]")"));
  CHECK(s.socket_nodelay);
  CHECK(s.warnings ==
        std::vector<std::string>{
            "`socket_options`: `recbuf`, `sndbuf`, `priority`, `tos`, `linger` and 3 "
            "more ignored (only keepalive and nodelay are honoured)",
            "`socket_options`: entries that are not {name, value} pairs are ignored"});
  const std::string malformed =
      "`socket_options` must be an Erlang list such as \"[{keepalive, true}, {nodelay, false}]\"";
  for (const char* bad : {"", "[", "[{keepalive, true}", "{keepalive, true}", "[{keepalive true}]",
                          "[{keepalive, true}].", "[{keepalive, true}] x", "[{Keepalive, true}]",
                          "[{a, \\\"unterminated}]", "[[[[[[[[[[[[]]]]]]]]]]]]", "[{-, 1}]"}) {
    CAPTURE(bad);
    CHECK(Reason(Doc(std::string(R"("socket_options":")") + bad + "\"")) == malformed);
  }
  CHECK(Reason(Doc(R"("socket_options":"[{keepalive, yes}]")")) ==
        "`socket_options`: `keepalive` must be true or false");
  CHECK(Reason(Doc(R"("socket_options":"[{nodelay, 1}]")")) ==
        "`socket_options`: `nodelay` must be true or false");
  CHECK(Reason(Doc(R"("socket_options":[["keepalive",true]])")) ==
        "`socket_options` must be a string");
}

TEST_CASE("spec: user_ctx") {
  ReplicationSpec s = ParseSpec(Doc(R"("user_ctx":{"name":"joe","roles":["erlanger","researcher"]})"));
  CHECK(s.user_ctx.present);
  CHECK(s.user_ctx.name == "joe");
  CHECK(s.user_ctx.roles == std::vector<std::string>{"erlanger", "researcher"});
  CHECK(s.user_ctx.HasRole("erlanger"));
  CHECK_FALSE(s.user_ctx.HasRole("_admin"));
  s = ParseSpec(Doc(R"("user_ctx":{})"));
  CHECK(s.user_ctx.present);
  CHECK_FALSE(s.user_ctx.name.has_value());
  CHECK(s.user_ctx.roles.empty());
  s = ParseSpec(Doc(R"("user_ctx":{"name":null,"roles":null})"));
  CHECK(s.user_ctx.present);
  CHECK_FALSE(s.user_ctx.name.has_value());

  CHECK(Reason(Doc(R"("user_ctx":null)")) == "`user_ctx` must be an object");
  CHECK(Reason(Doc(R"("user_ctx":"joe")")) == "`user_ctx` must be an object");
  for (const char* bad : {"5", "\"\"", "[\"joe\"]", "\"jo\\ne\""}) {
    CHECK(Reason(Doc(std::string(R"("user_ctx":{"name":)") + bad + "}")) ==
          "`user_ctx.name` must be a non-empty string or null");
  }
  CHECK(Reason(Doc(R"("user_ctx":{"roles":"_admin"})")) ==
        "`user_ctx.roles` must be an array of strings");
  CHECK(Reason(Doc(R"("user_ctx":{"roles":[1]})")) ==
        "`user_ctx.roles` must be an array of strings");
  const std::string role_chars =
      "`user_ctx.roles` entries must be non-empty, without commas or control characters";
  CHECK(Reason(Doc(R"("user_ctx":{"name":"joe","roles":["reader,_admin"]})")) == role_chars);
  CHECK(Reason(Doc(R"("user_ctx":{"name":"joe","roles":[""]})")) == role_chars);
  CHECK(Reason(Doc(R"("user_ctx":{"name":"joe","roles":["a\r\nb"]})")) == role_chars);
}

// ---------------------------------------------------------------------------
// Local endpoints (SPEC §1.3)
// ---------------------------------------------------------------------------

TEST_CASE("spec: local endpoints without user_ctx use the server's identity") {
  ReplicationSpec s =
      ResolveLocalEndpoints(ParseSpec(R"({"source":"foo","target":"a/b"})"), Server(), nullptr);
  const Endpoint& src = s.source.endpoint;
  CHECK(src.url.WithoutCredentials() == "http://127.0.0.1:5984/foo/");
  CHECK(src.credentials.kind == Credentials::Kind::kBasic);
  CHECK(src.credentials.username == "admin");
  CHECK(src.credentials.password == "server-secret");
  CHECK(src.headers == Headers{{"X-Proxy-Token", "server-token"}});
  CHECK(s.target.endpoint.url.WithoutCredentials() == "http://127.0.0.1:5984/a%2Fb/");
  CHECK(s.source.Display() == "foo");
  CHECK(s.source.local);
  CHECK_FALSE(MayWriteDesignDocs(s));  // SPEC §1.3: no design docs without user_ctx

  IdInputs in = IdInputsFor(s, "uuid", "");
  CHECK(in.source.user == "admin");
  CHECK(in.source.host == "127.0.0.1");
  CHECK(in.source.port == 5984);
  CHECK(in.source.path == "/foo/");
  CHECK(in.source.headers.empty());  // server headers are configuration, not the replication

  // A server behind a path prefix.
  s = ResolveLocalEndpoints(ParseSpec(R"({"source":"foo","target":"http://b/t"})"),
                            Server("https://proxy.example/couch"), nullptr);
  CHECK(s.source.endpoint.url.WithoutCredentials() == "https://proxy.example/couch/foo/");
  CHECK(s.target.endpoint.url.WithoutCredentials() == "http://b/t/");
}

TEST_CASE("spec: local endpoints with _admin in user_ctx use the server's identity") {
  Config::ProxyAuth proxy = Proxy();
  ReplicationSpec s = ResolveLocalEndpoints(
      ParseSpec(R"({"source":"foo","target":"bar","user_ctx":{"name":"root","roles":["x","_admin"]}})"),
      Server(), &proxy);
  CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kBasic);
  CHECK(s.target.endpoint.credentials.username == "admin");
  CHECK(MayWriteDesignDocs(s));
}

TEST_CASE("spec: other local endpoints use proxy authentication or nothing") {
  std::string doc =
      R"({"source":"foo","target":"bar","user_ctx":{"name":"joe","roles":["r1","r2"]}})";
  Config::ProxyAuth proxy = Proxy();
  ReplicationSpec s = ResolveLocalEndpoints(ParseSpec(doc), Server(), &proxy);
  for (const EndpointSpec* e : {&s.source, &s.target}) {
    const Credentials& c = e->endpoint.credentials;
    CHECK(c.kind == Credentials::Kind::kProxy);
    CHECK(c.proxy.name == "joe");
    CHECK(c.proxy.roles == std::vector<std::string>{"r1", "r2"});
    CHECK(c.proxy.secret == "proxy-secret");
    CHECK(c.username.empty());
    CHECK(e->endpoint.headers.empty());  // no server token for a delegated user
  }
  CHECK(MayWriteDesignDocs(s));  // the target's security decides
  CHECK(IdInputsFor(s, "u", "").source.user == "joe");

  Config::ProxyAuth off = Proxy(false);
  const Config::ProxyAuth* no_proxy[] = {nullptr, &off};
  for (const Config::ProxyAuth* p : no_proxy) {
    s = ResolveLocalEndpoints(ParseSpec(doc), Server(), p);
    CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kNone);
    CHECK(s.source.endpoint.headers.empty());
    CHECK(s.source.endpoint.url.WithoutCredentials() == "http://127.0.0.1:5984/foo/");
    CHECK_FALSE(IdInputsFor(s, "u", "").source.user.has_value());
  }
  // Proxy authentication needs a name.
  s = ResolveLocalEndpoints(ParseSpec(R"({"source":"foo","target":"bar","user_ctx":{"roles":["r"]}})"),
                            Server(), &proxy);
  CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kNone);
}

TEST_CASE("spec: user_ctx does not touch URL endpoints") {
  Config::ProxyAuth proxy = Proxy();
  std::string doc =
      R"({"source":"http://u:p@a/s","target":"http://b/t","user_ctx":{"name":"joe"}})";
  ReplicationSpec parsed = ParseSpec(doc);
  ReplicationSpec s = ResolveLocalEndpoints(parsed, Server(), &proxy);
  CHECK(s.source.endpoint.credentials.kind == Credentials::Kind::kBasic);
  CHECK(s.source.endpoint.credentials.username == "u");
  CHECK(s.target.endpoint.credentials.kind == Credentials::Kind::kNone);
  CHECK(Fingerprint(s) == Fingerprint(parsed));
  CHECK(MayWriteDesignDocs(s));
  CHECK(MayWriteDesignDocs(ParseSpec(R"({"source":"foo","target":"http://b/t"})")));
}

// ---------------------------------------------------------------------------
// Replication id: the SPEC §3 vectors from documents, end to end
// ---------------------------------------------------------------------------

TEST_CASE("spec: SPEC §3 vectors from documents") {
  const std::string uuid = "5a8d3b8e4b3f4b1c9d2e7f6a1b2c3d4e";
  auto doc = [](std::string_view extra) {
    std::string out =
        R"({"source":"http://user:pass@localhost:5984/src","target":"https://example.com/tgt")";
    if (!extra.empty()) out += "," + std::string(extra);
    return out + "}";
  };
  CHECK(BaseOf(doc(""), uuid) == "c5d62b5cd07c5ef17f1d278dcb5cb630");
  CHECK(BaseOf(doc(R"("doc_ids":["b","a"])"), uuid) == "78355456d5f12c2f0129db6f3d033e1b");
  CHECK(BaseOf(doc(R"("selector":{"type":"foo"})"), uuid) == "5cdb61621a5f5e8568ee122a193bccf0");
  CHECK(BaseOf(doc(R"("winning_revs_only":true)"), uuid) == "4400a756e6df83629dcfb9289051aafb");
  CHECK(BaseOf(doc(R"("filter":"_view","query_params":{"view":"d/v"})"), uuid) ==
        "8cfe4136120be61065b906191d812faf");
  CHECK(BaseOf(doc(R"("since_seq":"5-abc")"), uuid) == "ec44913519710bebacdb93b3f6cbad31");
  CHECK(BaseOf(R"({"source":{"url":"http://localhost:15984/src","headers":{"X-Foo":"bar"}},)"
               R"("target":"https://example.com/tgt"})",
               uuid) == "2691b1b35f597cbbf540a5ee3487013e");
  // The password is not part of the id; the other credential forms give the same id.
  CHECK(
      BaseOf(
          R"({"source":"http://user:other@localhost:5984/src","target":"https://example.com/tgt"})",
          uuid) == "c5d62b5cd07c5ef17f1d278dcb5cb630");
  CHECK(BaseOf(R"({"source":{"url":"http://localhost:5984/src","auth":{"basic":{"username":"user",)"
               R"("password":"pass"}}},"target":"https://example.com/tgt"})",
               uuid) == "c5d62b5cd07c5ef17f1d278dcb5cb630");
  CHECK(
      BaseOf(R"({"source":{"url":"http://localhost:5984/src","headers":{"Authorization":"Basic )" +
                 Base64Encode("user:pass") + R"("}},"target":"https://example.com/tgt"})",
             uuid) == "c5d62b5cd07c5ef17f1d278dcb5cb630");
  // Options and layout that do not enter the id.
  CHECK(BaseOf(R"({"worker_processes":1,"target":"https://example.com/tgt/",)"
               R"("source":"http://user:pass@localhost:5984/src/"})",
               uuid) == "c5d62b5cd07c5ef17f1d278dcb5cb630");
  auto full = ComputeReplicationId(
      IdInputsFor(ParseSpec(doc(R"("continuous":true,"create_target":true)")), uuid, ""));
  REQUIRE(full.ok());
  CHECK(full->full == "c5d62b5cd07c5ef17f1d278dcb5cb630+continuous+create_target");
}

TEST_CASE("spec: SPEC §3 vectors recorded from CouchDB 3.4.3") {
  const std::string uuid = "c4e176401624544cdc0da1f84bb3bb9d";
  const std::string src = R"("source":"http://admin:secret@127.0.0.1:5984/fx_src")";
  CHECK(BaseOf("{" + src + R"(,"target":"http://admin:secret@127.0.0.1:5984/fx_tgt"})", uuid) ==
        "63ed2616636fbe78c9f73444df4a87d8");
  auto t2 = [&src](std::string_view extra) {
    return "{" + src + R"(,"target":"http://admin:secret@127.0.0.1:5984/fx_t2",)" +
           std::string(extra) + "}";
  };
  CHECK(BaseOf(t2(R"("doc_ids":["plain-00002","plain-00001"])"), uuid) ==
        "d733f95b317696eb9868882a2124d51a");
  CHECK(BaseOf(t2(R"("selector":{"n":{"$gt":1990}})"), uuid) == "167c22deb0dd7657a2753e43593cae38");
  CHECK(BaseOf(t2(R"("winning_revs_only":true)"), uuid) == "1f2e9ab9acfa7fda422a89cd6c747a68");
  ReplicationSpec s = ParseSpec(t2(R"("filter":"app/even","query_params":{"z":"1","a":"2"})"));
  CHECK(UserFilterLocation(s)->first == "_design/app");
  CHECK(Base(IdInputsFor(s, uuid, "function(d, req){ return d.n % 2 == 0; }")) ==
        "7e2a4b298206687d8fe9d2c23f17300e");
}

// ---------------------------------------------------------------------------
// Fingerprint
// ---------------------------------------------------------------------------

TEST_CASE("spec: fingerprint ignores order that carries no meaning") {
  std::string a =
      R"({"source":{"url":"http://u:p@a/s","headers":{"X-A":"1","X-B":"2"}},)"
      R"("target":"tgt","continuous":true,"doc_ids":["x","y","x"],)"
      R"("create_target_params":{"q":1,"n":3},"user_ctx":{"name":"j","roles":["r","s"]}})";
  std::string b =
      R"({"user_ctx":{"roles":["s","r"],"name":"j"},"doc_ids":["y","x"],)"
      R"("create_target_params":{"n":3,"q":1},"continuous":true,)"
      R"("target":"tgt",   "source":{"headers":{"X-B":"2","X-A":"1"},"url":"http://u:p@a/s/"}})";
  std::string fa = Fingerprint(ParseSpec(a));
  CHECK(fa.size() == 32);
  CHECK(fa == Fingerprint(ParseSpec(b)));
  // Equivalent selectors.
  CHECK(Fingerprint(ParseSpec(Doc(R"("selector":{"a":1,"b":{"c":2}})"))) ==
        Fingerprint(ParseSpec(Doc(R"("selector":{"a":{"$eq":1},"b.c":{"$eq":2}})"))));
  CHECK(Fingerprint(ParseSpec(Doc(R"("selector":{"type":"foo"})"))) ==
        Fingerprint(ParseSpec(Doc(R"("selector":{"type":{"$eq":"foo"}})"))));
  // query_params order enters the replication id, so it counts.
  CHECK(Fingerprint(ParseSpec(Doc(R"("filter":"d/f","query_params":{"a":"1","b":"2"})"))) !=
        Fingerprint(ParseSpec(Doc(R"("filter":"d/f","query_params":{"b":"2","a":"1"})"))));
  // ...but whitespace does not.
  CHECK(Fingerprint(ParseSpec(Doc(R"("filter":"d/f","query_params":{"a":"1","b":"2"})"))) ==
        Fingerprint(ParseSpec(Doc(R"("filter":"d/f","query_params": { "a" : "1", "b" : "2" })"))));
}

TEST_CASE("spec: fingerprint changes with credentials and options") {
  std::string base = Fingerprint(ParseSpec(Doc()));
  const std::vector<std::string> changed = {
      R"({"source":"http://u:p@a.example/src","target":"http://b.example/tgt"})",
      R"({"source":"http://u:q@a.example/src","target":"http://b.example/tgt"})",
      R"({"source":"http://v:p@a.example/src","target":"http://b.example/tgt"})",
      R"({"source":{"url":"http://a.example/src","headers":{"X":"1"}},"target":"http://b.example/tgt"})",
      R"({"source":"https://a.example/src","target":"http://b.example/tgt"})",
      R"({"source":"src","target":"http://b.example/tgt"})",
      Doc(R"("continuous":true)"),
      Doc(R"("create_target":true)"),
      Doc(R"("create_target":false,"create_target_params":{"q":1})"),
      Doc(R"("doc_ids":[])"),
      Doc(R"("doc_ids":["a"])"),
      Doc(R"("filter":"d/f")"),
      Doc(R"("filter":"_design")"),
      Doc(R"("selector":{"a":1})"),
      Doc(R"("since_seq":0)"),
      Doc(R"("winning_revs_only":true)"),
      Doc(R"("use_checkpoints":false)"),
      Doc(R"("checkpoint_interval":1000)"),
      Doc(R"("worker_processes":1)"),
      Doc(R"("worker_batch_size":1)"),
      Doc(R"("http_connections":1)"),
      Doc(R"("retries_per_request":1)"),
      Doc(R"("connection_timeout":1000)"),
      Doc(R"("use_bulk_get":false)"),
      Doc(R"("socket_options":"[{nodelay,false}]")"),
      Doc(R"("user_ctx":{})"),
      Doc(R"("user_ctx":{"name":"j"})"),
      Doc(R"("user_ctx":{"roles":["_admin"]})"),
  };
  std::vector<std::string> seen = {base};
  for (const std::string& doc : changed) {
    CAPTURE(doc);
    std::string fp = Fingerprint(ParseSpec(doc));
    CHECK(std::find(seen.begin(), seen.end(), fp) == seen.end());
    seen.push_back(fp);
  }
  // Defaults written out explicitly change nothing.
  CHECK(Fingerprint(ParseSpec(Doc(R"("continuous":false,"worker_processes":4,"use_bulk_get":true,)"
                              R"("socket_options":"[{keepalive,true}]","doc_ids":null)"))) == base);
  // Only what the replication uses: query_params without a filter is unused.
  CHECK(Fingerprint(ParseSpec(Doc(R"("query_params":{"a":"1"})"))) == base);
  // Resolved credentials count too.
  Endpoint other = Server();
  other.credentials.password = "rotated";
  std::string local = R"({"source":"foo","target":"http://b/t"})";
  CHECK(Fingerprint(ResolveLocalEndpoints(ParseSpec(local), Server(), nullptr)) !=
        Fingerprint(ResolveLocalEndpoints(ParseSpec(local), other, nullptr)));
}

// ---------------------------------------------------------------------------
// Hostile documents
// ---------------------------------------------------------------------------

TEST_CASE("spec: documents that are not JSON objects") {
  CHECK(Reason("") == "the document is not valid JSON: it is empty");
  CHECK(Reason("   ") == "the document is not valid JSON: it is empty");
  CHECK(Reason("{").rfind("the document is not valid JSON: ", 0) == 0);
  CHECK(Reason(R"({"source":"a","target":"b",})").rfind("the document is not valid JSON: ", 0) ==
        0);
  CHECK(Reason(R"({"source":"a"} {"target":"b"})").rfind("the document is not valid JSON: ", 0) ==
        0);
  CHECK(Reason("[]") == "the document is not a JSON object");
  CHECK(Reason("\"http://a/s\"") == "the document is not a JSON object");
  CHECK(Reason("null") == "the document is not a JSON object");
  // Invalid text inside a member: the reason names the member.
  std::string invalid_utf8 = Doc(std::string(R"("note":"caf)") + "\xC3\x28" + "\"");
  CHECK(Reason(invalid_utf8) == "the document is not valid JSON: `note` contains invalid UTF-8");
  std::string overlong = std::string(R"({"source":"a)") + "\xC0\xAF" + R"(","target":"b"})";
  CHECK(Reason(overlong) == "the document is not valid JSON: `source` contains invalid UTF-8");
  std::string in_key = Doc(std::string("\"k\xFF\":1"));
  CHECK(Reason(in_key) == "the document is not valid JSON: a field name contains invalid UTF-8");
  CHECK(Reason(std::string(R"({"source":"a","target":"b","x":[1,")") + "\xFF" + "\"]}") ==
        "the document is not valid JSON: `x` contains invalid UTF-8");
  // Unpaired surrogate escapes (PouchDB and other servers store them).
  CHECK(Reason(Doc(R"("continuous":"\udc00")")) ==
        "the document is not valid JSON: `continuous` holds a string with an invalid escape "
        "(e.g. an unpaired surrogate such as \\ud800)");
  CHECK(Reason(R"({"source":"\ud800","target":"b"})").find("`source` holds a string with an "
                                                         "invalid escape") != std::string::npos);
  CHECK(Reason(Doc(R"("selector":{"a":{"$eq":"\ud800x"}})"))
            .find("`selector` holds a string with an invalid escape") != std::string::npos);
  // A member name is shown short.
  std::string long_key = Doc("\"" + std::string(5000, 'k') + "\":\"\\ud800\"");
  CHECK(Reason(long_key) == "the document is not valid JSON: `" + std::string(40, 'k') +
                                "...` holds a string with an invalid escape (e.g. an unpaired "
                                "surrogate such as \\ud800)");
  std::string nul_after = std::string(R"({"source":"a","target":"b"})") + '\0';
  CHECK(Reason(nul_after).rfind("the document is not valid JSON: ", 0) == 0);
  std::string nul_inside = std::string(R"({"source":"a)") + '\0' + R"(","target":"b"})";
  CHECK(Reason(nul_inside).rfind("the document is not valid JSON: ", 0) == 0);
  CHECK(Reason(Doc(R"("x":1e400)")).rfind("the document is not valid JSON: ", 0) == 0);
}

TEST_CASE("spec: deep nesting") {
  auto nest = [](size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK(Reason(Doc(R"("junk":)" + nest(5000))) ==
        "the document is not valid JSON: `junk` is nested more than 1024 levels deep");
  // The reason names the member that is too deep, wherever it is.
  std::string deep_query = R"("filter":"d/f","query_params":)";
  for (int i = 0; i < 5000; ++i) deep_query += R"({"q":)";
  deep_query += "1" + std::string(5000, '}');
  CHECK(Reason(Doc(deep_query)) ==
        "the document is not valid JSON: `query_params` is nested more than 1024 levels deep");
  std::string deep_selector_5000 = R"("selector":{"a":[)" + nest(5000) + "]}";
  CHECK(Reason(R"({"selector":{"a":[)" + nest(5000) + R"(]},"source":"http://a/s","target":"t"})") ==
        "the document is not valid JSON: `selector` is nested more than 1024 levels deep");
  CHECK(Reason(Doc(deep_selector_5000)) ==
        "the document is not valid JSON: `selector` is nested more than 1024 levels deep");
  // Deep as a whole, but no single member is: the document is named.
  CHECK(Reason("[" + nest(1100) + "]") ==
        "the document is not valid JSON: it is nested more than 1024 levels deep");
  // Unbalanced text is never read past its end.
  CHECK(Reason(R"({"source":"http://a/s","x":)" + std::string(3000, '[')).rfind(
            "the document is not valid JSON: ", 0) == 0);
  CHECK(Reason(R"({"source":"http://a/s","x":"\ud800)").rfind(
            "the document is not valid JSON: ", 0) == 0);
  // Deep, within simdjson's limit, in an ignored field: fine.
  CHECK(ParseSpec(Doc(R"("junk":)" + nest(1000))).warnings.empty());
  // Deep where the replication id would have to read it: a clear error up front.
  CHECK(Reason(Doc(R"("since_seq":)" + nest(1000))) ==
        "`since_seq` cannot be used: JSON nested too deeply");
  CHECK(Reason(Doc(R"("filter":"d/f","query_params":{"a":)" + nest(1000) + "}")) ==
        "`query_params` cannot be used: JSON nested too deeply");
  std::string deep_selector = R"("selector":)";
  for (int i = 0; i < 1000; ++i) deep_selector += R"({"a":)";
  deep_selector += "1" + std::string(1000, '}');
  CHECK(Reason(Doc(deep_selector)) == "`selector` cannot be used: JSON nested too deeply");
}

TEST_CASE("spec: 10,000 fields, duplicate keys and a huge document") {
  std::string many = "{";
  for (int i = 0; i < 10000; ++i)
    many += "\"f" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  many += R"("continuous":true,"source":"http://a/s","target":"t"})";
  ReplicationSpec s = ParseSpec(many);
  CHECK(s.continuous);
  CHECK(s.target.local);

  // Duplicate keys: the first wins (CouchDB's couch_util:get_value does the same).
  s = ParseSpec(R"({"source":"http://a/s","target":"t","continuous":true,"continuous":"no",)"
            R"("since_seq":1,"since_seq":2})");
  CHECK(s.continuous);
  CHECK(s.since_seq_json == "1");
  CHECK(Reason(R"({"source":"http://a/s","target":"t","continuous":"no","continuous":true})") ==
        "`continuous` must be a boolean");

  std::string huge = Doc(R"("blob":")" + std::string(8 << 20, 'x') + "\"");
  CHECK(ParseSpec(huge).warnings.empty());
  std::string many_ids = R"("doc_ids":[)";
  for (int i = 0; i < 100000; ++i) many_ids += (i ? ",\"" : "\"") + std::to_string(i) + "\"";
  CHECK(ParseSpec(Doc(many_ids + "]")).doc_ids.size() == 100000);
}

TEST_CASE("spec: wrong types everywhere never crash") {
  const std::vector<std::string> fields = {"source",
                                           "target",
                                           "continuous",
                                           "create_target",
                                           "create_target_params",
                                           "doc_ids",
                                           "filter",
                                           "query_params",
                                           "selector",
                                           "since_seq",
                                           "winning_revs_only",
                                           "use_checkpoints",
                                           "checkpoint_interval",
                                           "worker_processes",
                                           "worker_batch_size",
                                           "http_connections",
                                           "connection_timeout",
                                           "retries_per_request",
                                           "use_bulk_get",
                                           "user_ctx",
                                           "socket_options",
                                           "proxy"};
  const std::vector<std::string> values = {"null",
                                           "true",
                                           "false",
                                           "0",
                                           "-1",
                                           "1e400",
                                           "-0.0",
                                           "18446744073709551616",
                                           "\"\"",
                                           "\"x\"",
                                           "\"\\u0000\"",
                                           "\"\\ud800\"",
                                           "[]",
                                           "[null]",
                                           "{}",
                                           R"({"url":{}})",
                                           R"({"basic":{}})",
                                           R"({"$and":[]})",
                                           R"({"name":[],"roles":{}})",
                                           "\"[{\"",
                                           "\"_view\"",
                                           R"({"a":{"$gt":{"$lt":[]}}})"};
  int accepted = 0, rejected = 0;
  for (const auto& field : fields) {
    for (const auto& value : values) {
      std::string doc =
          R"({"source":"http://a/s","target":"http://b/t",")" + field + "\":" + value + "}";
      if (field == "source" || field == "target") {
        doc = "{\"" + field + "\":" + value + R"(,"source":"http://a/s","target":"http://b/t"})";
      }
      auto r = ParseReplicationDoc(doc, {});
      if (r.ok()) {
        ++accepted;
        (void)Fingerprint(r.value());
        ReplicationSpec resolved = ResolveLocalEndpoints(r.value(), Server(), nullptr);
        CHECK_MESSAGE(ComputeReplicationId(IdInputsFor(resolved, "u", "function(){}")).ok(), doc);
      } else {
        ++rejected;
        CHECK_FALSE(r.error().reason.empty());
        CHECK(r.error().error == "bad_doc");
      }
    }
  }
  CHECK(accepted > 0);
  CHECK(rejected > 0);
}

TEST_CASE("spec: random bytes and mutated documents never crash") {
  const std::string seed =
      R"({"source":{"url":"http://u:p@a/s","headers":{"X":"y"},"auth":{"basic":{"username":"u",)"
      R"("password":"p"}}},"target":"t","doc_ids":["a"],"query_params":{"v":"d/v"},)"
      R"("since_seq":[1,"x"],"socket_options":"[{keepalive,true}]","user_ctx":{"name":"n","roles":["r"]}})";
  uint32_t state = 12345;
  auto next = [&state]() {
    state = state * 1103515245u + 12345u;
    return (state >> 16) & 0x7fff;
  };
  const std::string alphabet = "{}[]\":,\\ a0-9/_$@%\x80\xff";
  for (int round = 0; round < 3000; ++round) {
    std::string doc = seed;
    int edits = 1 + next() % 4;
    for (int e = 0; e < edits; ++e) {
      size_t pos = next() % (doc.size() + 1);
      switch (next() % 3) {
        case 0:
          doc.insert(pos, 1, alphabet[next() % alphabet.size()]);
          break;
        case 1:
          if (pos < doc.size()) doc.erase(pos, 1);
          break;
        default:
          if (pos < doc.size()) doc[pos] = alphabet[next() % alphabet.size()];
          break;
      }
    }
    auto r = ParseReplicationDoc(doc, {});
    if (r.ok()) {
      (void)Fingerprint(r.value());
      (void)r->source.Display();
      ReplicationSpec resolved = ResolveLocalEndpoints(r.value(), Server(), nullptr);
      CHECK_MESSAGE(ComputeReplicationId(IdInputsFor(resolved, "u", "function(){}")).ok(), doc);
    } else {
      CHECK(r.error().Message().find("\"p\"") == std::string::npos);
    }
  }
}

}  // namespace
}  // namespace couchrepd

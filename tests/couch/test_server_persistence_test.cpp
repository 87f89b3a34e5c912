// The test server itself: TestServerOptions::persistent keeps every database across a restart
// (Stop()/Start() and Kill9()/Start()), so that tests can restart a source or target mid-way
// like a real CouchDB restart; without it a restart loses everything.
#include <doctest/doctest.h>
#include <httplib.h>
#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "support/test_server.h"

using couchrepd::testing::TestServer;
using couchrepd::testing::TestServerOptions;

namespace {

// The value at JSON pointer `pointer` ("/a/b") of `json`, minified ("<missing>" when absent),
// e.g. "\"text\"", "3", "true".
std::string At(const std::string& json, const std::string& pointer) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(json).get(root) != simdjson::SUCCESS) return "<bad json>";
  simdjson::dom::element value;
  if (root.at_pointer(pointer).get(value) != simdjson::SUCCESS) return "<missing>";
  return simdjson::minify(value);
}

// The string at `pointer` without quotes ("<missing>"/"<not a string>" otherwise).
std::string Str(const std::string& json, const std::string& pointer) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(json).get(root) != simdjson::SUCCESS) return "<bad json>";
  simdjson::dom::element value;
  if (root.at_pointer(pointer).get(value) != simdjson::SUCCESS) return "<missing>";
  std::string_view s;
  if (value.get(s) != simdjson::SUCCESS) return "<not a string>";
  return std::string(s);
}

// The strings of the JSON array at `pointer` (or the `key` member of each of its objects).
std::vector<std::string> List(const std::string& json, const std::string& pointer,
                              const char* key = nullptr) {
  std::vector<std::string> out;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(json).get(root) != simdjson::SUCCESS) return out;
  simdjson::dom::array array;
  if (root.at_pointer(pointer).get(array) != simdjson::SUCCESS) return out;
  for (simdjson::dom::element item : array) {
    std::string_view s;
    if (key != nullptr && item[key].get(item) != simdjson::SUCCESS) continue;
    if (item.get(s) == simdjson::SUCCESS) out.emplace_back(s);
  }
  return out;
}

// `last_seq` of a _changes answer as a `since` query value: the number, or the opaque string.
std::string SinceOf(const std::string& changes_body) {
  std::string s = Str(changes_body, "/last_seq");
  return s == "<not a string>" ? At(changes_body, "/last_seq") : s;
}

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// The AuthSession cookie ("AuthSession=...") of a POST /_session as name:password, or "".
std::string Login(const TestServer& server, const std::string& name, const std::string& password) {
  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Post("/_session",
                         "{\"name\":\"" + name + "\",\"password\":\"" + password + "\"}",
                         "application/json");
  if (!res || res->status != 200) return "";
  std::string cookie = res->get_header_value("Set-Cookie");
  return cookie.substr(0, cookie.find(';'));
}

// The userCtx name of GET /_session with `cookie` ("null" for an anonymous session).
std::string SessionUser(const TestServer& server, const std::string& cookie) {
  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Get("/_session", httplib::Headers{{"Cookie", cookie}});
  if (!res) return "<no answer>";
  if (res->status != 200) return "<status " + std::to_string(res->status) + ">";
  return At(res->body, "/userCtx/name");
}

// {.persistent = true, .admin = admin}, without -Wmissing-field-initializers noise.
TestServerOptions Persistent(const std::string& admin = "") {
  TestServerOptions options;
  options.persistent = true;
  options.admin = admin;
  return options;
}

std::string PutRev(TestServer& server, const std::string& path, const std::string& body) {
  auto put = server.Request("PUT", path, body);
  INFO(path << " -> " << put.status << " " << put.body);
  REQUIRE(put.status == 201);
  return Str(put.body, "/rev");
}

}  // namespace

TEST_SUITE("test server") {

TEST_CASE("a persistent test server keeps its data across Stop()/Start()") {
  TestServer server(Persistent("admin:secret"));
  INFO("server log: " << server.log_path());
  REQUIRE_FALSE(server.data_dir().empty());
  CHECK(std::filesystem::is_directory(server.data_dir()));
  CHECK(Str(server.Request("GET", "/").body, "/pouchdb-adapters/0") == "leveldb");

  REQUIRE(server.Request("PUT", "/persist").status == 201);
  const std::string plain = PutRev(server, "/persist/plain", R"({"v":1})");
  std::string updated = PutRev(server, "/persist/updated", R"({"v":1})");
  updated = PutRev(server, "/persist/updated", R"({"v":2,"_rev":")" + updated + "\"}");
  updated = PutRev(server, "/persist/updated", R"({"v":3,"_rev":")" + updated + "\"}");
  const std::string gone1 = PutRev(server, "/persist/gone", R"({"v":1})");
  auto del = server.Request("DELETE", "/persist/gone?rev=" + gone1);
  REQUIRE(del.status == 200);
  const std::string gone2 = Str(del.body, "/rev");
  const std::string att = PutRev(
      server, "/persist/att",
      R"({"_attachments":{"hello.txt":{"content_type":"text/plain","data":"aGVsbG8gd29ybGQ="}}})");
  const std::string digest =
      Str(server.Request("GET", "/persist/att").body, "/_attachments/hello.txt/digest");
  REQUIRE(digest.rfind("md5-", 0) == 0);
  auto local = server.Request("PUT", "/persist/_local/checkpoint", R"({"last":"x"})");
  REQUIRE(local.status == 201);
  REQUIRE(server.Request("PUT", "/persist/_security",
                         R"({"admins":{"names":[],"roles":[]},"members":{"names":["bob"],"roles":[]}})")
              .status == 200);
  PutRev(server, "/_users/org.couchdb.user:bob",
         R"({"name":"bob","password":"pw","roles":[],"type":"user"})");
  REQUIRE(server.Request("PUT", "/a%2F_replicator").status == 201);
  const std::string rep = PutRev(server, "/a%2F_replicator/rep1", R"({"source":"s","target":"t"})");

  const std::string info_before = server.Request("GET", "/persist").body;
  auto changes_before = server.Request("GET", "/persist/_changes");
  REQUIRE(changes_before.status == 200);
  const std::string since = SinceOf(changes_before.body);
  REQUIRE(List(changes_before.body, "/results", "id").size() == 4);
  const std::string admin_cookie = Login(server, "admin", "secret");
  const std::string bob_cookie = Login(server, "bob", "pw");
  REQUIRE_FALSE(admin_cookie.empty());
  REQUIRE_FALSE(bob_cookie.empty());
  const std::string uuid = server.uuid();
  const int port = server.port();

  server.Stop();
  CHECK_FALSE(server.running());
  server.Start();
  REQUIRE(server.running());
  CHECK(server.port() == port);
  CHECK(Str(server.Request("GET", "/").body, "/uuid") == uuid);

  // Databases, with their names as created.
  auto dbs = server.Request("GET", "/_all_dbs");
  CHECK(Contains(List(dbs.body, ""), "persist"));
  CHECK(Contains(List(dbs.body, ""), "a/_replicator"));
  CHECK(Contains(List(dbs.body, ""), "_users"));
  const std::string info_after = server.Request("GET", "/persist").body;
  CHECK(At(info_after, "/update_seq") == At(info_before, "/update_seq"));
  CHECK(At(info_after, "/doc_count") == "3");

  // Documents, revisions and revision histories.
  auto p = server.Request("GET", "/persist/plain");
  CHECK(p.status == 200);
  CHECK(Str(p.body, "/_rev") == plain);
  CHECK(At(p.body, "/v") == "1");
  auto u = server.Request("GET", "/persist/updated?revs=true");
  CHECK(Str(u.body, "/_rev") == updated);
  CHECK(At(u.body, "/v") == "3");
  CHECK(At(u.body, "/_revisions/start") == "3");
  CHECK(List(u.body, "/_revisions/ids").size() == 3);
  CHECK(server.Request("GET", "/persist/gone").status == 404);
  auto g = server.Request("GET", "/persist/gone?rev=" + gone2);
  CHECK(g.status == 200);
  CHECK(At(g.body, "/_deleted") == "true");
  auto a = server.Request("GET", "/persist/att");
  CHECK(Str(a.body, "/_rev") == att);
  CHECK(Str(a.body, "/_attachments/hello.txt/digest") == digest);
  auto data = server.Request("GET", "/persist/att/hello.txt");
  CHECK(data.status == 200);
  CHECK(data.body == "hello world");
  auto l = server.Request("GET", "/persist/_local/checkpoint");
  CHECK(l.status == 200);
  CHECK(Str(l.body, "/last") == "x");
  CHECK(List(server.Request("GET", "/persist/_security").body, "/members/names") ==
        std::vector<std::string>{"bob"});
  {
    httplib::Client anonymous("127.0.0.1", server.port());
    auto res = anonymous.Get("/persist/plain");
    REQUIRE(res);
    CHECK(res->status == 401);  // _security is still enforced
  }
  auto r = server.Request("GET", "/a%2F_replicator/rep1");
  CHECK(r.status == 200);
  CHECK(Str(r.body, "/_rev") == rep);
  CHECK(Str(r.body, "/source") == "s");

  // _users and AuthSession cookies (the secret and the admin's salt are kept).
  CHECK(server.Request("GET", "/_users/org.couchdb.user:bob").status == 200);
  CHECK(SessionUser(server, admin_cookie) == "\"admin\"");
  CHECK(SessionUser(server, bob_cookie) == "\"bob\"");
  CHECK_FALSE(Login(server, "bob", "pw").empty());

  // The update sequence goes on: since=<last seq before the restart> sees only later writes.
  auto none = server.Request("GET", "/persist/_changes?since=" + since);
  CHECK(none.status == 200);
  CHECK(List(none.body, "/results", "id").empty());
  CHECK(At(none.body, "/last_seq") == At(changes_before.body, "/last_seq"));
  PutRev(server, "/persist/after", R"({"v":1})");
  auto later = server.Request("GET", "/persist/_changes?since=" + since);
  CHECK(later.status == 200);
  CHECK(List(later.body, "/results", "id") == std::vector<std::string>{"after"});
  auto all = server.Request("GET", "/persist/_changes");
  std::vector<std::string> ids = List(all.body, "/results", "id");
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<std::string>{"after", "att", "gone", "plain", "updated"});
}

TEST_CASE("a persistent test server keeps acknowledged writes across Kill9()/Start()") {
  TestServer server(Persistent("admin:secret"));
  INFO("server log: " << server.log_path());
  REQUIRE(server.Request("PUT", "/doomed").status == 201);
  REQUIRE(server.Request("PUT", "/k%2F_replicator").status == 201);
  const std::string rev = PutRev(server, "/k%2F_replicator/doc", R"({"v":1})");
  REQUIRE(server.Request("DELETE", "/doomed").status == 200);
  // No pause: the kill lands right after the last answer.
  server.Kill9();
  CHECK_FALSE(server.running());
  server.Start();

  auto dbs = List(server.Request("GET", "/_all_dbs").body, "");
  CHECK(Contains(dbs, "k/_replicator"));
  CHECK_FALSE(Contains(dbs, "doomed"));
  CHECK(server.Request("GET", "/doomed").status == 404);
  auto doc = server.Request("GET", "/k%2F_replicator/doc");
  CHECK(doc.status == 200);
  CHECK(Str(doc.body, "/_rev") == rev);
  // The db can be written to and deleted after the restart.
  PutRev(server, "/k%2F_replicator/doc2", R"({"v":2})");
  CHECK(server.Request("DELETE", "/k%2F_replicator").status == 200);
  CHECK(server.Request("GET", "/k%2F_replicator").status == 404);
}

TEST_CASE("a persistent test server removes its data directory") {
  std::string dir;
  {
    TestServer server(Persistent());
    dir = server.data_dir();
    REQUIRE_FALSE(dir.empty());
    REQUIRE(server.Request("PUT", "/db").status == 201);
    CHECK(std::filesystem::is_directory(dir));
  }
  if (std::getenv("COUCHREPD_TEST_KEEP_LOGS") == nullptr) CHECK_FALSE(std::filesystem::exists(dir));
}

TEST_CASE("a test server without persistence loses its data on restart") {
  TestServerOptions options;
  options.admin = "admin:secret";
  TestServer server(options);
  CHECK(server.data_dir().empty());
  REQUIRE(server.Request("PUT", "/volatile").status == 201);
  server.Stop();
  server.Start();
  CHECK(server.Request("GET", "/volatile").status == 404);
}

}  // TEST_SUITE

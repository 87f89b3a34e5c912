#include <doctest/doctest.h>

#include "couchrepd/url.h"
#include "couchrepd/limits.h"

using namespace couchrepd;

TEST_CASE("ParseUrl splits and percent-decodes userinfo with @, : and escapes") {
  auto u = ParseUrl("http://bob:p%40ss%3Aw%2Frd@db.example.com:5984/my%2Fdb/");
  REQUIRE(u.ok());
  CHECK(u->scheme == "http");
  CHECK(*u->user == "bob");
  CHECK(*u->password == "p@ss:w/rd");
  CHECK(u->host == "db.example.com");
  CHECK(u->port == 5984);
  CHECK(u->path == "/my%2Fdb/");
  CHECK(u->Redacted() == "http://bob:*****@db.example.com:5984/my%2Fdb/");
  CHECK(u->WithoutCredentials() == "http://db.example.com:5984/my%2Fdb/");
}

TEST_CASE("ParseUrl takes the last @ as the end of a raw password") {
  auto u = ParseUrl("https://admin:se@cret@host/db");
  REQUIRE(u.ok());
  CHECK(*u->password == "se@cret");
  CHECK(u->host == "host");
  CHECK(u->port == 443);
  CHECK_FALSE(u->explicit_port);
  CHECK(u->WithTrailingSlash().path == "/db/");
}

TEST_CASE("ParseUrl handles IPv6, queries and defaults") {
  auto u = ParseUrl("http://[::1]:5984/db?x=1");
  REQUIRE(u.ok());
  CHECK(u->host == "::1");
  CHECK(u->HostForUrl() == "[::1]");
  CHECK(u->query == "x=1");
  CHECK(u->Origin() == "http://[::1]:5984");
  auto bare = ParseUrl("HTTP://Host");
  REQUIRE(bare.ok());
  CHECK(bare->scheme == "http");
  CHECK(bare->host == "Host");
  CHECK(bare->port == 80);
  CHECK(bare->path == "/");
}

TEST_CASE("ParseUrl rejects bad URLs with a plain reason and no password") {
  struct Case {
    const char* url;
    const char* reason_part;
  };
  for (auto c : {Case{"ftp://u:secretpw@host/db", "unsupported scheme"},
                 Case{"mydb", "not an absolute URL"}, Case{"http://u:secretpw@:80/", "no host"},
                 Case{"http://host:99999/", "port is out of range"},
                 Case{"http://host:abc/", "not a number"},
                 Case{"http://u:bad%zzsecretpw@host/", "percent-escape"},
                 Case{"http://host/a b", "space"}}) {
    CAPTURE(c.url);
    auto u = ParseUrl(c.url);
    REQUIRE_FALSE(u.ok());
    CHECK(u.error().Message().find(c.reason_part) != std::string::npos);
    CHECK(u.error().Message().find("secretpw") == std::string::npos);
  }
}

TEST_CASE("document ids, db names and attachment names are encoded for paths") {
  CHECK(EncodeDocId("a/b") == "a%2Fb");
  CHECK(EncodeDocId("a+b") == "a%2Bb");
  CHECK(EncodeDocId("a%b") == "a%25b");
  CHECK(EncodeDocId("a b") == "a%20b");
  CHECK(EncodeDocId("\xC3\xBC") == "%C3%BC");
  CHECK(EncodeDocId("_design/app") == "_design/app");
  CHECK(EncodeDocId("_design/a/b") == "_design/a%2Fb");
  CHECK(EncodeDocId("_local/x y") == "_local/x%20y");
  CHECK(EncodeDbName("team/_replicator") == "team%2F_replicator");
  CHECK(EncodeAttachmentName("dir/file name.txt") == "dir/file%20name.txt");
  CHECK(*PercentDecode(PercentEncode("ünï©ødé-日本 /+%?#")) == "ünï©ødé-日本 /+%?#");
  CHECK_FALSE(PercentDecode("%4").has_value());
  CHECK_FALSE(PercentDecode("%G0").has_value());
}

TEST_CASE("RedactSecrets masks URL passwords and auth headers in free text") {
  CHECK(RedactSecrets("GET http://bob:hunter2@host/db failed") ==
        "GET http://bob:*****@host/db failed");
  CHECK(RedactSecrets("src=https://bob:p%40ss@h:1/x tgt=http://al:p@w@h2/y") ==
        "src=https://bob:*****@h:1/x tgt=http://al:*****@h2/y");
  CHECK(RedactSecrets("Authorization: Basic Ym9iOmh1bnRlcjI=") == "Authorization: *****");
  CHECK(RedactSecrets(R"({"headers":{"Authorization":"Bearer abc.def"}})") ==
        R"({"headers":{"Authorization":"*****"}})");
  CHECK(RedactSecrets("Cookie: AuthSession=YWRtaW46NjU") == "Cookie: *****");
  CHECK(RedactSecrets("set AuthSession=abc; Path=/") == "set AuthSession=*****; Path=/");
  CHECK(RedactSecrets("http://host/db with no secret") == "http://host/db with no secret");
  CHECK(RedactSecrets("mail bob@example.com") == "mail bob@example.com");
  // Found by fuzz_redact: a URL right after a "://" that is not one.
  CHECK(RedactSecrets("R://http://bob:secret@h/").find("secret") == std::string::npos);
  CHECK(RedactSecrets("a://b:http://bob:secret@h/x").find("secret") == std::string::npos);
}

TEST_CASE("RedactSecrets is linear on hostile text: a 60 KB token value, long runs, many URLs") {
  // A server's 401 reason once crashed the process here (a backtracking
  // regex recursed once per character).
  std::string token = "x-auth-couchdb-token: " + std::string(60000, 'a');
  CHECK(RedactSecrets(token) == "x-auth-couchdb-token: *****");
  std::string quoted = "{\"reason\":\"Authorization: Basic " + std::string(200000, 'Z') + "\"}";
  CHECK(RedactSecrets(quoted) == "{\"reason\":\"Authorization: *****\"}");
  // Many URLs with passwords, each masked.
  std::string many;
  for (int i = 0; i < 5000; ++i) many += "http://u" + std::to_string(i) + ":pw" + std::to_string(i) + "@h/ ";
  std::string red = RedactSecrets(many);
  CHECK(red.find(":pw") == std::string::npos);
  CHECK(red.find("http://u4999:*****@h/") != std::string::npos);
  // One long userinfo without '@': left as it is.
  std::string no_at = "http://user:" + std::string(300000, 'p');
  CHECK(RedactSecrets(no_at) == no_at);
  // A long password runs to the last '@' before the userinfo ends.
  std::string long_pw = "http://user:" + std::string(100000, '@') + "host/db";
  CHECK(RedactSecrets(long_pw) == "http://user:*****@host/db");
  std::string cookies;
  for (int i = 0; i < 3000; ++i) cookies += "AuthSession=s" + std::to_string(i) + "; ";
  CHECK(RedactSecrets(cookies).find("AuthSession=s") == std::string::npos);
  // Names without a ':' or '=' after them are left alone.
  std::string words(100000, ' ');
  words += "cookie jar, authorization pending";
  CHECK(RedactSecrets(words) == words);
}

TEST_CASE("CapText cuts server text to 1 KiB on a UTF-8 boundary and says so") {
  CHECK(CapText("short") == "short");
  std::string exact(kMaxServerTextBytes, 'r');
  CHECK(CapText(exact) == exact);
  std::string big(40 * 1024, 'r');
  std::string capped = CapText(big);
  CHECK(capped.size() < kMaxServerTextBytes + 40);
  CHECK(capped.rfind(std::string(kMaxServerTextBytes, 'r'), 0) == 0);
  CHECK(capped.find("(cut, 40960 bytes)") != std::string::npos);
  // "é" is two bytes: the cut never splits it.
  std::string accents;
  while (accents.size() < 2000) accents += "\xC3\xA9";
  std::string cut = CapText("x" + accents);
  size_t kept = cut.find("\xE2\x80\xA6");
  REQUIRE(kept != std::string::npos);
  CHECK(kept % 2 == 1);  // "x" + whole two-byte characters
}

// Found by fuzz_redact: a header name inside another one's value was masked
// with it, and the real header after it went through in clear.
TEST_CASE("RedactSecrets: a header name inside another header's value") {
  const std::string out =
      RedactSecrets(R"({"authorization":"authorization":"Bearer T0kenPlanted9q"})");
  CHECK(out.find("T0kenPlanted9q") == std::string::npos);
  CHECK(RedactSecrets(out) == out);
  CHECK(RedactSecrets("x-auth-couchdb-token: cookie: AuthSession=abc, Authorization: Basic s3cret")
            .find("s3cret") == std::string::npos);
}

// Found by fuzz_redact: masking a cookie value ('/') let a URL's authority
// reach a later '@', so a second pass masked more (not idempotent).
TEST_CASE("RedactSecrets: one pass is enough (idempotent when masks uncover more)") {
  const std::string text = "a://AuthSession=/,b:pw-hidden@host e=set-cookie=AuthSession=x";
  const std::string once = RedactSecrets(text);
  CHECK(RedactSecrets(once) == once);
  CHECK(once.find("pw-hidden") == std::string::npos);
}

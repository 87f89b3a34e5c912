// A corpus of malformed replication documents through one running `couchrepd serve`
// (SPEC §1.2, §10): each ends `error` (classic) / `failed` (terminal) with a short reason
// naming the problem, while valid documents written between them still run.
#include <functional>

#include "integration/serve_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

// One malformed document: `body(url)` builds it for a server at `url`; every
// word of `words` must appear in its `_replication_state_reason`.
struct BadDocCase {
  std::string name;
  std::function<std::string(const std::string& url)> body;
  std::vector<std::string> words;
};

constexpr size_t kMaxReasonBytes = 1024;
// Nesting beyond simdjson's 1,024 levels. The test server (express-pouchdb)
// answers 500 "Maximum call stack size exceeded" to a PUT of 5,000 levels;
// 3,000 is the deepest it was seen to store.
constexpr int kDeep = 2000;

// A document with valid endpoints plus `extra` members.
std::function<std::string(const std::string&)> With(std::string extra) {
  return [extra](const std::string& url) {
    return "{\"source\":\"" + url + "/bd-src\",\"target\":\"" + url + "/bd-never\"," + extra + "}";
  };
}

// A document with `source` set to `source_json` and a valid target.
std::function<std::string(const std::string&)> Source(std::string source_json,
                                                      std::string extra = "") {
  return [source_json, extra](const std::string& url) {
    return "{\"source\":" + source_json + ",\"target\":\"" + url + "/bd-never\"" +
           (extra.empty() ? "" : "," + extra) + "}";
  };
}

// `source` as an object with the server's URL and `members` (headers, auth...).
std::function<std::string(const std::string&)> SourceObject(std::string members) {
  return [members](const std::string& url) {
    return "{\"source\":{\"url\":\"" + url + "/bd-src\"," + members + "},\"target\":\"" + url +
           "/bd-never\"}";
  };
}

std::string Nested(int depth, const std::string& key) {
  std::string out;
  for (int i = 0; i < depth; ++i) out += "{\"" + key + "\":";
  out += "1";
  out += std::string(depth, '}');
  return out;
}

std::vector<BadDocCase> Corpus() {
  std::vector<BadDocCase> c;
  auto add = [&c](std::string name, std::function<std::string(const std::string&)> body,
                  std::vector<std::string> words) {
    c.push_back({std::move(name), std::move(body), std::move(words)});
  };
  // Endpoints: missing, empty, wrong types.
  add("no-source", [](const std::string& u) { return "{\"target\":\"" + u + "/x\"}"; },
      {"`source`", "missing"});
  add("no-target", [](const std::string& u) { return "{\"source\":\"" + u + "/bd-src\"}"; },
      {"`target`", "missing"});
  add("null-source", Source("null"), {"`source`", "missing"});
  add("empty-source", Source("\"\""), {"`source`", "empty"});
  add("empty-target", [](const std::string& u) { return "{\"source\":\"" + u + "/bd-src\",\"target\":\"\"}"; },
      {"`target`", "empty"});
  add("number-source", Source("42"), {"`source`", "must be a URL"});
  add("array-source", Source("[\"http://a/b\"]"), {"`source`", "must be a URL"});
  add("bool-target", [](const std::string& u) { return "{\"source\":\"" + u + "/bd-src\",\"target\":true}"; },
      {"`target`", "must be a URL"});
  add("object-without-url", Source("{\"headers\":{}}"), {"`source.url`", "missing"});
  add("url-number", Source("{\"url\":5}"), {"`source.url`", "must be a string"});
  add("url-empty", Source("{\"url\":\"\"}"), {"`source.url`", "empty"});
  // Schemes and URLs.
  add("scheme-ftp", Source("\"ftp://127.0.0.1/db\""), {"`source`", "unsupported scheme", "ftp"});
  add("scheme-file", Source("\"file:///etc/passwd\""), {"`source`", "scheme"});
  add("scheme-javascript", Source("\"javascript:alert(1)\""),
      {"`source`", "neither an http(s) URL nor a valid database name"});
  add("scheme-garbage", Source("\"1ht tp://host/db\""), {"`source`", "not a valid URL"});
  add("url-no-host", Source("\"http:///db\""), {"`source`", "no host"});
  add("url-bad-port", Source("\"http://127.0.0.1:99999/db\""), {"`source`", "port"});
  add("url-port-text", Source("\"http://127.0.0.1:http/db\""), {"`source`", "port"});
  add("url-ipv6-open", Source("\"http://[::1/db\""), {"`source`", "IPv6"});
  add("url-space-host", Source("\"http://ho st/db\""), {"`source`", "host"});
  add("url-query", Source("\"http://127.0.0.1:5984/db?x=1\""), {"`source`", "query string"});
  add("url-bad-escape", Source("\"http://a%zz:pw@127.0.0.1/db\""), {"`source`", "percent-escape"});
  add("bad-local-name", Source("\"Not A Db\""), {"`source`", "valid database name"});
  add("local-with-headers", Source("{\"url\":\"bd-src\",\"headers\":{\"X\":\"y\"}}"),
      {"`source`", "only to http(s) URLs"});
  // Credentials in odd places.
  add("auth-string", SourceObject("\"auth\":\"basic\""), {"`source.auth`", "must be an object"});
  add("auth-array", SourceObject("\"auth\":[\"u\",\"p\"]"), {"`source.auth`", "must be an object"});
  add("auth-basic-string", SourceObject("\"auth\":{\"basic\":\"u:p\"}"),
      {"`source.auth.basic`", "username"});
  add("auth-user-number", SourceObject("\"auth\":{\"basic\":{\"username\":7,\"password\":\"p\"}}"),
      {"`source.auth.basic`", "username"});
  add("auth-password-number",
      SourceObject("\"auth\":{\"basic\":{\"username\":\"u\",\"password\":1234}}"),
      {"`source.auth.basic`", "password"});
  add("auth-user-empty", SourceObject("\"auth\":{\"basic\":{\"username\":\"\",\"password\":\"p\"}}"),
      {"`source.auth.basic`", "non-empty"});
  add("auth-cookie", SourceObject("\"auth\":{\"cookie\":{\"token\":\"t\"}}"),
      {"`source.auth`", "unsupported authentication", "cookie"});
  add("userinfo-and-bad-auth",
      [](const std::string& u) {
        std::string with_user = "http://bob:wrong@" + u.substr(7);
        return "{\"source\":{\"url\":\"" + with_user +
               "/bd-src\",\"auth\":{\"basic\":{\"username\":[\"bob\"],\"password\":\"right\"}}},"
               "\"target\":\"" + u + "/bd-never\"}";
      },
      {"`source.auth.basic`", "username"});
  add("headers-string", SourceObject("\"headers\":\"X-Api-Key: k\""),
      {"`source.headers`", "must be an object"});
  add("headers-array", SourceObject("\"headers\":[[\"X\",\"y\"]]"),
      {"`source.headers`", "must be an object"});
  add("header-value-number", SourceObject("\"headers\":{\"X-Api-Key\":12345}"),
      {"`source.headers.X-Api-Key`", "must be a string"});
  add("header-value-object", SourceObject("\"headers\":{\"Authorization\":{\"basic\":\"x\"}}"),
      {"`source.headers.Authorization`", "must be a string"});
  add("header-value-crlf", SourceObject("\"headers\":{\"X-A\":\"a\\r\\nX-Injected: 1\"}"),
      {"`source.headers.X-A`", "line breaks"});
  add("header-name-space", SourceObject("\"headers\":{\"Bad Header\":\"v\"}"),
      {"`source.headers`", "not a valid HTTP header name"});
  add("header-content-length", SourceObject("\"headers\":{\"Content-Length\":\"0\"}"),
      {"`source.headers.Content-Length`", "set by couchrepd"});
  // Mutually exclusive filters and bad filter fields.
  add("doc-ids-and-selector", With("\"doc_ids\":[\"a\"],\"selector\":{\"a\":1}"),
      {"mutually exclusive"});
  add("doc-ids-and-filter", With("\"doc_ids\":[\"a\"],\"filter\":\"d/f\""), {"mutually exclusive"});
  add("filter-and-selector", With("\"filter\":\"d/f\",\"selector\":{\"a\":1}"),
      {"mutually exclusive"});
  add("all-three", With("\"doc_ids\":[\"a\"],\"filter\":\"d/f\",\"selector\":{\"a\":1}"),
      {"`doc_ids`, `filter` and `selector`", "mutually exclusive"});
  add("doc-ids-string", With("\"doc_ids\":\"a,b\""), {"`doc_ids`", "array of strings"});
  add("doc-ids-numbers", With("\"doc_ids\":[1,2]"), {"`doc_ids`", "array of strings"});
  add("filter-number", With("\"filter\":7"), {"`filter`", "non-empty string"});
  add("filter-empty", With("\"filter\":\"\""), {"`filter`", "non-empty string"});
  add("filter-unknown-builtin", With("\"filter\":\"_everything\""),
      {"`filter`", "unknown built-in filter"});
  add("filter-no-slash", With("\"filter\":\"justname\""), {"`filter`", "ddoc/name"});
  add("filter-view-no-view", With("\"filter\":\"_view\""), {"`filter: _view`", "query_params.view"});
  add("query-params-array", With("\"filter\":\"d/f\",\"query_params\":[1]"),
      {"`query_params`", "must be an object"});
  add("selector-array", With("\"selector\":[{\"a\":1}]"), {"`selector`", "must be an object"});
  add("selector-bad-operator", With("\"selector\":{\"a\":{\"$nope\":1}}"),
      {"`selector`", "Mango selector"});
  // Booleans and objects with the wrong type.
  add("continuous-string", With("\"continuous\":\"yes\""), {"`continuous`", "must be a boolean"});
  add("create-target-number", With("\"create_target\":1"), {"`create_target`", "must be a boolean"});
  add("winning-revs-string", With("\"winning_revs_only\":\"true\""),
      {"`winning_revs_only`", "must be a boolean"});
  add("use-checkpoints-null", With("\"use_checkpoints\":null"),
      {"`use_checkpoints`", "must be a boolean"});
  add("use-bulk-get-array", With("\"use_bulk_get\":[]"), {"`use_bulk_get`", "must be a boolean"});
  add("create-target-params-array", With("\"create_target_params\":[\"q\",1]"),
      {"`create_target_params`", "must be an object"});
  add("socket-options-number", With("\"socket_options\":1"), {"`socket_options`", "must be a string"});
  add("socket-options-garbage", With("\"socket_options\":\"[{keepalive\""),
      {"`socket_options`", "Erlang list"});
  add("socket-options-bad-bool", With("\"socket_options\":\"[{nodelay, maybe}]\""),
      {"`socket_options`", "`nodelay`", "true or false"});
  add("user-ctx-string", With("\"user_ctx\":\"admin\""), {"`user_ctx`", "must be an object"});
  add("user-ctx-null", With("\"user_ctx\":null"), {"`user_ctx`", "must be an object"});
  add("user-ctx-name-number", With("\"user_ctx\":{\"name\":1,\"roles\":[]}"), {"`user_ctx.name`"});
  add("user-ctx-roles-string", With("\"user_ctx\":{\"name\":\"bob\",\"roles\":\"_admin\"}"),
      {"`user_ctx.roles`", "array of strings"});
  add("user-ctx-role-comma", With("\"user_ctx\":{\"name\":\"bob\",\"roles\":[\"a,_admin\"]}"),
      {"`user_ctx.roles`", "commas"});
  // Numbers: negative, zero, huge, fractional, not numbers.
  struct IntCase {
    const char* field;
    const char* min_words;  // the words of a value below the minimum
  };
  for (IntCase o : {IntCase{"worker_processes", "a positive integer"},
                    IntCase{"worker_batch_size", "a positive integer"},
                    IntCase{"http_connections", "a positive integer"},
                    IntCase{"connection_timeout", "a positive integer"},
                    IntCase{"checkpoint_interval", "a positive integer"}}) {
    std::string f = o.field;
    std::string key = "`" + f + "`";
    add(f + "-zero", With("\"" + f + "\":0"), {key, o.min_words});
    add(f + "-negative", With("\"" + f + "\":-3"), {key, o.min_words});
    // 2^53 - 1: the largest integer the test server (JavaScript) keeps exact.
    add(f + "-huge", With("\"" + f + "\":9007199254740991"), {key, "at most"});
  }
  add("retries-negative", With("\"retries_per_request\":-1"),
      {"`retries_per_request`", "a non-negative integer"});
  add("retries-huge", With("\"retries_per_request\":1000000000"), {"`retries_per_request`", "at most"});
  // Beyond 64 bits: the test server stores it as 1e+26, a fraction for JSON readers.
  add("workers-beyond-64-bits", With("\"worker_processes\":99999999999999999999999999"),
      {"`worker_processes`", "integer"});
  add("workers-fraction", With("\"worker_processes\":2.5"), {"`worker_processes`", "integer"});
  add("workers-float-huge", With("\"worker_processes\":1e300"), {"`worker_processes`", "integer"});
  add("batch-size-text", With("\"worker_batch_size\":\"lots\""), {"`worker_batch_size`", "integer"});
  add("timeout-huge-string", With("\"connection_timeout\":\"123456789012345678901234567890\""),
      {"`connection_timeout`", "at most"});
  add("interval-bool", With("\"checkpoint_interval\":true"), {"`checkpoint_interval`", "integer"});
  // Size and shape: many fields, deep nesting, long text, bad Unicode.
  add("ten-thousand-fields",
      [](const std::string& u) {
        std::string doc = "{";
        for (int i = 0; i < 10000; ++i) doc += "\"f" + std::to_string(i) + "\":" + std::to_string(i) + ",";
        return doc + "\"source\":\"" + u + "/bd-src\",\"target\":\"" + u +
               "/bd-never\",\"continuous\":\"no\"}";
      },
      {"`continuous`", "must be a boolean"});
  add("selector-600-deep", [](const std::string& u) { return With("\"selector\":" + Nested(600, "a"))(u); },
      {"`selector`", "nested too deeply"});
  add("long-unknown-filter",
      [](const std::string& u) { return With("\"filter\":\"_" + std::string(200000, 'z') + "\"")(u); },
      {"`filter`", "unknown built-in filter"});
  add("long-header-name",
      [](const std::string& u) {
        return SourceObject("\"headers\":{\"" + std::string(100000, 'h') + " \":\"v\"}")(u);
      },
      {"`source.headers`", "not a valid HTTP header name"});
  add("long-url",
      [](const std::string& u) { return Source("\"http://" + std::string(300000, 'h') + "/db\"")(u); },
      {"`source`", "longer than 8192 bytes"});
  add("long-header-value",
      [](const std::string& u) {
        return SourceObject("\"headers\":{\"X-Big\":\"" + std::string(1 << 20, 'v') + "\"}")(u);
      },
      {"`source.headers.X-Big`", "longer than 8192 bytes"});
  add("thousands-of-headers",
      [](const std::string& u) {
        std::string headers = "\"headers\":{";
        for (int i = 0; i < 5000; ++i) headers += (i ? ",\"X-" : "\"X-") + std::to_string(i) + "\":\"v\"";
        return SourceObject(headers + "}")(u);
      },
      {"`source.headers`", "more than 100 headers"});
  add("thousands-of-roles",
      [](const std::string& u) {
        std::string roles = "\"user_ctx\":{\"name\":\"bob\",\"roles\":[";
        for (int i = 0; i < 5000; ++i) roles += (i ? ",\"r" : "\"r") + std::to_string(i) + "\"";
        return With(roles + "]}")(u);
      },
      {"`user_ctx.roles`", "more than 100 roles"});
  // Invalid UTF-8 (the test server stores U+FFFD instead; the raw bytes are
  // covered by the unit tests of the parser).
  add("invalid-utf8-scheme", Source(std::string("\"ht\xC3\x28\xFFtp://127.0.0.1/db\"")),
      {"`source`", "not a valid URL"});
  add("invalid-utf8-continuous", With(std::string("\"continuous\":\"\xFF\xFE\"")),
      {"`continuous`", "must be a boolean"});
  add("nul-escape-in-header", SourceObject("\"headers\":{\"X-A\":\"a\\u0000b\"}"),
      {"`source.headers.X-A`", "control characters"});
  add("ten-mb-source",
      [](const std::string& u) {
        return "{\"source\":\"" + std::string(10 << 20, 'a') + "\",\"target\":\"" + u + "/bd-never\"}";
      },
      {"`source`", "longer than 8192 bytes"});
  add("ten-mb-document",
      [](const std::string& u) {
        return With("\"blob\":\"" + std::string(10 << 20, 'b') + "\",\"worker_processes\":0")(u);
      },
      {"`worker_processes`", "a positive integer"});
  // Last: documents that simdjson cannot read at all (nested deeper than its
  // limit, unpaired surrogate escapes), which the server stores nevertheless.
  add("deep-query-params",
      [](const std::string& u) {
        return With("\"filter\":\"d/f\",\"query_params\":" + Nested(kDeep, "q"))(u);
      },
      {"`query_params`", "nested"});
  add("deep-selector", [](const std::string& u) { return With("\"selector\":" + Nested(kDeep, "a"))(u); },
      {"`selector`", "nested"});
  add("deep-since-seq",
      [](const std::string& u) {
        return With("\"since_seq\":" + std::string(kDeep, '[') + std::string(kDeep, ']'))(u);
      },
      {"`since_seq`", "nested"});
  add("lone-surrogate-source", Source("\"\\ud800\""), {"`source`"});
  add("lone-surrogate-in-continuous", With("\"continuous\":\"\\udc00\""),
      {"`continuous`", "invalid escape"});
  return c;
}

// A valid one-shot document between the bad ones.
std::string GoodDoc(const std::string& url, const std::string& target, const std::string& extra = "") {
  return "{\"source\":\"" + url + "/bd-src\",\"target\":\"" + url + "/" + target +
         "\",\"create_target\":true" + (extra.empty() ? "" : "," + extra) + "}";
}

void RunCorpus(const std::string& write_back, const std::string& failure_state) {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("bd-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 20);
  ServeProcess serve(ServeConfig(server, "  write_back: " + write_back + "\n"));
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 15s));

  const std::vector<BadDocCase> corpus = Corpus();
  REQUIRE(corpus.size() >= 60);
  // A continuous job runs beside the whole corpus.
  REQUIRE(rep.PutDoc("good-continuous", GoodDoc(server.url(), "bd-cont", "\"continuous\":true")).ok());
  std::vector<std::pair<std::string, int64_t>> good_one_shot;  // id, documents it copies
  for (size_t i = 0; i < corpus.size(); ++i) {
    const BadDocCase& bad = corpus[i];
    CAPTURE(bad.name);
    auto put = rep.PutDoc(bad.name, bad.body(server.url()));
    REQUIRE_MESSAGE(put.ok(), put.error().Message());
    if (i % 10 == 9) {
      std::string id = "good-" + std::to_string(i);
      // Valid documents with what the bad ones got wrong, done right.
      bool all = i % 20 == 9;
      std::string extra =
          all ? "\"worker_processes\":\"2\",\"unknown\":{\"deep\":[[[1]]]}"
              : "\"doc_ids\":[\"doc1\",\"doc2\"],\"socket_options\":\"[{nodelay, false}]\"";
      REQUIRE(rep.PutDoc(id, GoodDoc(server.url(), "bd-" + id, extra)).ok());
      good_one_shot.emplace_back(id, all ? 20 : 2);
    }
  }

  // And one after all of them: nothing in the corpus may hold up the feed.
  REQUIRE(rep.PutDoc("good-last", GoodDoc(server.url(), "bd-good-last")).ok());
  good_one_shot.emplace_back("good-last", 20);

  for (const BadDocCase& bad : corpus) {
    CAPTURE(bad.name);
    CHECK(WaitForState(rep, bad.name, failure_state, 60s));
    auto doc = rep.GetDoc(bad.name);
    REQUIRE(doc.ok());
    std::string reason = JsonText(*doc, {"_replication_state_reason"});
    CAPTURE(reason.substr(0, 300));
    CHECK(reason.size() <= kMaxReasonBytes);
    for (const std::string& word : bad.words) {
      CAPTURE(word);
      CHECK(reason.find(word) != std::string::npos);
    }
  }
  for (const auto& [id, copied] : good_one_shot) {
    CAPTURE(id);
    CHECK(WaitForState(rep, id, "completed", 30s));
    auto tgt = root.Database("bd-" + id);
    CHECK(DocCount(tgt) == copied);
  }
  // The continuous job still follows its source.
  auto cont = root.Database("bd-cont");
  REQUIRE(src.PutDoc("after-corpus", R"({"late":true})").ok());
  CHECK(WaitUntil([&] { return cont.GetDoc("after-corpus").ok(); }, 20s));
  CHECK(DocCount(cont) == 21);

  // A bad document is written once and not retried until it changes.
  std::this_thread::sleep_for(2s);
  for (const BadDocCase& bad : corpus) {
    CAPTURE(bad.name);
    auto doc = rep.GetDoc(bad.name);
    REQUIRE(doc.ok());
    CHECK(JsonText(*doc, {"_rev"}).rfind("2-", 0) == 0);
  }
  CHECK(serve.process().running());
}

}  // namespace

TEST_CASE("bad documents: classic write-back marks each `error` with a reason; the rest run") {
  RunCorpus("classic", "error");
}

TEST_CASE("bad documents: terminal write-back marks each `failed` with a reason; the rest run") {
  RunCorpus("terminal", "failed");
}

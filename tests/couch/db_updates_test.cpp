// GET /_db_updates on the test server (tests/server/couch-test-server.js), against CouchDB 3.4's
// behaviour (shared/couchdb-3.4-recordings 47-49): admin only; rows {"db_name","type","seq"} for
// created/updated/deleted with one server-global sequence (integers or opaque strings); each
// (type, db) pair listed once at its latest seq; feeds normal, longpoll and continuous with
// since/timeout/heartbeat/limit; the 404 of a server without _global_changes (/_test/db_updates).
#include <doctest/doctest.h>
#include <httplib.h>
#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "couch/client_fixture.h"
#include "support/test_server.h"

using namespace couchrepd::testing;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

struct Update {
  std::string db_name;
  std::string type;
  std::string seq;  // the value as handed out, for since= (a string's text, or the integer)
  int64_t n = -1;   // its number (the "N" of "N-g1AAAA...")
};

struct Feed {
  std::vector<Update> results;
  std::string last_seq;
  int64_t last_n = -1;
};

// A seq value: an integer in int mode, "N-g1AAAA..." in opaque mode (nothing else accepted).
std::pair<std::string, int64_t> ReadSeq(simdjson::dom::element e, bool opaque) {
  if (opaque) {
    std::string_view s;
    REQUIRE_MESSAGE(e.get(s) == simdjson::SUCCESS, "opaque seq must be a string: " << e);
    std::string text(s);
    static const std::regex shape("^([0-9]+)-g1AAAA[A-Za-z0-9_-]+$");
    std::smatch m;
    REQUIRE_MESSAGE(std::regex_match(text, m, shape), "not an opaque seq: " << text);
    return {text, std::stoll(m[1].str())};
  }
  int64_t v = 0;
  REQUIRE_MESSAGE(e.get(v) == simdjson::SUCCESS, "int seq must be an integer: " << e);
  return {std::to_string(v), v};
}

Update ReadRow(simdjson::dom::element e, bool opaque) {
  simdjson::dom::object o;
  REQUIRE(e.get(o) == simdjson::SUCCESS);
  REQUIRE(o.size() == 3);  // db_name, type, seq and nothing else
  Update u;
  std::string_view s;
  REQUIRE(o["db_name"].get(s) == simdjson::SUCCESS);
  u.db_name = std::string(s);
  REQUIRE(o["type"].get(s) == simdjson::SUCCESS);
  u.type = std::string(s);
  simdjson::dom::element seq_value;
  REQUIRE(o["seq"].get(seq_value) == simdjson::SUCCESS);
  auto [seq, n] = ReadSeq(seq_value, opaque);
  u.seq = seq;
  u.n = n;
  return u;
}

// A normal/longpoll body: {"results":[...],"last_seq":X}.
Feed ParseFeed(const std::string& body, bool opaque) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  REQUIRE_MESSAGE(parser.parse(body).get(obj) == simdjson::SUCCESS, "not JSON: " << body);
  simdjson::dom::array results;
  REQUIRE(obj["results"].get(results) == simdjson::SUCCESS);
  Feed f;
  for (auto row : results) f.results.push_back(ReadRow(row, opaque));
  simdjson::dom::element last;
  REQUIRE(obj["last_seq"].get(last) == simdjson::SUCCESS);
  auto [seq, n] = ReadSeq(last, opaque);
  f.last_seq = seq;
  f.last_n = n;
  return f;
}

std::string Field(const std::string& json, const char* key) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json).get(doc) != simdjson::SUCCESS) return "<not json: " + json + ">";
  std::string_view s;
  if (doc[key].get(s) != simdjson::SUCCESS) return "<no string " + std::string(key) + ">";
  return std::string(s);
}

int64_t IntField(const std::string& json, const char* key) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  int64_t v = -1;
  if (parser.parse(json).get(doc) != simdjson::SUCCESS) return -1;
  if (doc[key].get(v) != simdjson::SUCCESS) return -1;
  return v;
}

std::vector<std::pair<std::string, std::string>> Pairs(const std::vector<Update>& rows) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : rows) out.emplace_back(r.db_name, r.type);
  return out;
}

using PairList = std::vector<std::pair<std::string, std::string>>;

void CheckIncreasing(const std::vector<Update>& rows) {
  for (size_t i = 1; i < rows.size(); ++i) CHECK(rows[i - 1].n < rows[i].n);
}

Feed GetFeed(TestServer& server, const std::string& query = "") {
  auto r = server.Request("GET", "/_db_updates" + query);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return ParseFeed(r.body, server.opaque_seqs());
}

void Must(TestServer& server, const std::string& method, const std::string& path, int status,
          const std::string& body = "", const std::string& type = "application/json") {
  auto r = server.Request(method, path, body, type);
  REQUIRE_MESSAGE(r.status == status, method << " " << path << " -> " << r.status << " " << r.body);
}

// GET as `userpass` ("" = anonymous; the tests' admin-party servers need nothing else), given
// up after `limit` (status 0) even while a feed keeps sending heartbeats, so that a broken
// feed fails the test instead of hanging it.
TestServer::Reply GetAs(const TestServer& server, const std::string& userpass,
                        const std::string& path, std::chrono::milliseconds limit = 20000ms) {
  httplib::Client client("127.0.0.1", server.port());
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(limit).count() + 1;
  client.set_read_timeout(secs, 0);
  if (!userpass.empty()) {
    auto colon = userpass.find(':');
    client.set_basic_auth(userpass.substr(0, colon), userpass.substr(colon + 1));
  }
  auto deadline = Clock::now() + limit;
  std::string body;
  auto res = client.Get(path, {{"Accept", "application/json"}}, [&](const char* data, size_t len) {
    body.append(data, len);
    return Clock::now() < deadline;
  });
  if (!res) return {0, "no complete answer within the limit (" + httplib::to_string(res.error()) + "): " + body};
  return {res->status, body};
}

template <typename F>
bool WaitFor(F pred, std::chrono::milliseconds timeout = 10000ms) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

int64_t FeedsField(TestServer& server, const char* key) {
  return IntField(server.Request("GET", "/_test/feeds").body, key);
}

// Reads a streamed feed in a thread, keeping every byte, until Stop() or the server ends it.
class StreamReader {
 public:
  StreamReader(const TestServer& server, const std::string& admin, std::string path)
      : thread_([this, port = server.port(), admin, path = std::move(path)] {
          httplib::Client client("127.0.0.1", port);
          client.set_read_timeout(15, 0);
          auto colon = admin.find(':');
          if (!admin.empty()) client.set_basic_auth(admin.substr(0, colon), admin.substr(colon + 1));
          auto res = client.Get(path, {{"Accept", "application/json"}},
                                [this](const char* data, size_t len) {
                                  std::lock_guard<std::mutex> lock(mu_);
                                  data_.append(data, len);
                                  return !stop_.load();
                                });
          if (res) status_ = res->status;
          ended_ = true;
        }) {}
  ~StreamReader() { Stop(); }

  std::string Text() {
    std::lock_guard<std::mutex> lock(mu_);
    return data_;
  }
  bool ended() const { return ended_; }
  int status() const { return status_; }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mu_;
  std::string data_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> ended_{false};
  std::atomic<int> status_{0};
  std::thread thread_;
};

struct Lines {
  std::vector<std::string> json;  // non-empty lines, in order
  int blank = 0;                  // heartbeat lines
  bool partial = false;           // text after the last newline
};

Lines SplitLines(const std::string& text) {
  Lines out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      out.partial = true;
      break;
    }
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      out.blank++;
    } else {
      out.json.push_back(line);
    }
    pos = nl + 1;
  }
  return out;
}

// Continuous-feed lines: event rows, and the final {"last_seq":X} if there is one.
std::vector<Update> RowsOf(const Lines& lines, bool opaque, std::string* last_seq = nullptr) {
  std::vector<Update> rows;
  simdjson::dom::parser parser;
  for (const auto& line : lines.json) {
    simdjson::dom::element el;
    simdjson::dom::object o;
    REQUIRE_MESSAGE(parser.parse(line).get(el) == simdjson::SUCCESS, "bad line: " << line);
    REQUIRE(el.get(o) == simdjson::SUCCESS);
    simdjson::dom::element last;
    if (o["last_seq"].get(last) == simdjson::SUCCESS) {
      REQUIRE(o.size() == 1);
      REQUIRE_MESSAGE(last_seq != nullptr, "unexpected last_seq line: " << line);
      *last_seq = ReadSeq(last, opaque).first;
      continue;
    }
    REQUIRE_MESSAGE((last_seq == nullptr || last_seq->empty()), "row after last_seq: " << line);
    rows.push_back(ReadRow(el, opaque));
  }
  return rows;
}

std::string RevOf(const std::string& reply_body) { return Field(reply_body, "rev"); }

// The whole normal-feed scenario, in one sequence mode.
void NormalFeedScenario(bool opaque) {
  TestServerOptions opts;
  opts.opaque_seqs = opaque;
  TestServer server(opts);
  REQUIRE(server.opaque_seqs() == opaque);

  // A fresh server has recorded nothing.
  auto empty = GetFeed(server);
  CHECK(empty.results.empty());
  CHECK(empty.last_n == 0);

  Must(server, "PUT", "/dbu-a", 201);
  Must(server, "PUT", "/dbu-a/doc1", 201, R"({"x":1})");
  Must(server, "POST", "/dbu-a/_bulk_docs", 201, R"({"docs":[{"_id":"doc2"},{"_id":"doc3"}]})");
  Must(server, "PUT", "/dbu-b", 201);
  Must(server, "PUT", "/team%2F_replicator", 201);
  Must(server, "PUT", "/team%2F_replicator/job", 201, R"({"source":"a","target":"b"})");
  Must(server, "DELETE", "/dbu-a", 200);

  auto all = GetFeed(server);
  // dbu-a was written twice but is listed once, at its latest update (CouchDB keeps one
  // _global_changes doc per type and db; recording 49 lists "_dbs" updated once).
  CHECK(Pairs(all.results) == PairList{{"dbu-a", "created"},
                                       {"dbu-a", "updated"},
                                       {"dbu-b", "created"},
                                       {"team/_replicator", "created"},
                                       {"team/_replicator", "updated"},
                                       {"dbu-a", "deleted"}});
  REQUIRE(all.results.size() == 6);
  CheckIncreasing(all.results);
  CHECK(all.results.front().n >= 1);
  CHECK(all.last_seq == all.results.back().seq);
  CHECK(all.last_n == all.results.back().n);

  // since=0 is the default; since=<a seq handed out> gives only later events.
  CHECK(Pairs(GetFeed(server, "?since=0").results) == Pairs(all.results));
  auto later = GetFeed(server, "?since=" + all.results[2].seq);
  CHECK(Pairs(later.results) == PairList{{"team/_replicator", "created"},
                                         {"team/_replicator", "updated"},
                                         {"dbu-a", "deleted"}});
  REQUIRE(later.results.size() == 3);
  CHECK(later.results[0].seq == all.results[3].seq);
  CHECK(later.last_seq == all.last_seq);
  auto none = GetFeed(server, "?since=" + all.last_seq);
  CHECK(none.results.empty());
  CHECK(none.last_seq == all.last_seq);
  auto now = GetFeed(server, "?since=now");
  CHECK(now.results.empty());
  CHECK(now.last_seq == all.last_seq);

  // limit: the first N rows, and last_seq where they end.
  auto two = GetFeed(server, "?limit=2");
  REQUIRE(two.results.size() == 2);
  CHECK(two.results[1].seq == all.results[1].seq);
  CHECK(two.last_seq == all.results[1].seq);

  // Every kind of document write gives exactly one "updated" row for its db ...
  std::string rev;
  auto one_update = [&](const std::string& what, const std::string& method,
                        const std::string& path, int status, const std::string& body = "",
                        const std::string& type = "application/json") {
    CAPTURE(what);
    auto before = GetFeed(server, "?since=now");
    auto r = server.Request(method, path, body, type);
    REQUIRE_MESSAGE(r.status == status, what << ": " << r.status << " " << r.body);
    if (r.body.find("\"rev\"") != std::string::npos) rev = RevOf(r.body);
    auto after = GetFeed(server, "?since=" + before.last_seq);
    CHECK(Pairs(after.results) == PairList{{"dbu-b", "updated"}});
    if (!after.results.empty()) {
      CHECK(after.results[0].n > before.last_n);
      CHECK(after.last_seq == after.results[0].seq);
    }
  };
  one_update("POST doc", "POST", "/dbu-b", 201, R"({"_id":"posted"})");
  one_update("PUT doc", "PUT", "/dbu-b/d", 201, R"({"v":1})");
  one_update("PUT doc update", "PUT", "/dbu-b/d", 201, R"({"v":2,"_rev":")" + rev + "\"}");
  one_update("PUT attachment", "PUT", "/dbu-b/d/a.txt?rev=" + rev, 201, "hello", "text/plain");
  one_update("DELETE attachment", "DELETE", "/dbu-b/d/a.txt?rev=" + rev, 200);
  one_update("DELETE doc", "DELETE", "/dbu-b/d?rev=" + rev, 200);
  one_update("PUT new_edits=false", "PUT", "/dbu-b/repl?new_edits=false", 201,
             R"({"_rev":"3-0123456789abcdef0123456789abcdef","v":3})");
  one_update("PUT design doc", "PUT", "/dbu-b/_design/app", 201,
             R"({"views":{"all":{"map":"function(d){emit(d._id)}"}}})");
  one_update("_bulk_docs new_edits=false", "POST", "/dbu-b/_bulk_docs", 201,
             R"({"new_edits":false,"docs":[{"_id":"r2","_rev":"1-aa","v":1}]})");

  // ... and what changes no document gives none (CouchDB: update_seq unchanged, no event).
  auto no_update = [&](const std::string& what, const std::string& method,
                       const std::string& path, int status, const std::string& body = "") {
    CAPTURE(what);
    auto before = GetFeed(server, "?since=now");
    auto r = server.Request(method, path, body);
    REQUIRE_MESSAGE(r.status == status, what << ": " << r.status << " " << r.body);
    auto after = GetFeed(server, "?since=" + before.last_seq);
    CHECK(after.results.empty());
    CHECK(after.last_seq == before.last_seq);
  };
  no_update("_local doc", "PUT", "/dbu-b/_local/ckpt", 201, R"({"seq":1})");
  no_update("conflict", "PUT", "/dbu-b/posted", 409, R"({"v":9})");
  no_update("known rev, new_edits=false", "PUT", "/dbu-b/repl?new_edits=false", 201,
            R"({"_rev":"3-0123456789abcdef0123456789abcdef","v":3})");
  no_update("existing db", "PUT", "/dbu-b", 412);
  no_update("view query", "GET", "/dbu-b/_design/app/_view/all", 200);
  no_update("missing db", "DELETE", "/no-such-db", 404);

  // The seq space is the server's, not a db's: in opaque mode the same N is a different string
  // in a db's _changes (dbu-b's rows are at seqs 1, 6, 7, 8, 9; those of `all` at 1, 3-7).
  auto changes = server.Request("GET", "/dbu-b/_changes?since=0");
  REQUIRE(changes.status == 200);
  CHECK(changes.body.find("\"seq\":" + std::string(opaque ? "\"7-" : "7")) != std::string::npos);
  if (opaque) {
    for (const auto& r : all.results) CHECK(changes.body.find(r.seq) == std::string::npos);
  }

  // Malformed requests.
  CHECK(server.Request("GET", "/_db_updates?since=garbage").status == 400);
  if (!opaque) {
    // An opaque seq is refused in int mode, as _changes does.
    CHECK(server.Request("GET", "/_db_updates?since=3-g1AAAAB5eJzLYWBgYMpg").status == 400);
  }
  auto bad_int = server.Request("GET", "/_db_updates?limit=-1");
  CHECK(bad_int.status == 400);
  CHECK(Field(bad_int.body, "reason") == "invalid_integer");
  CHECK(server.Request("GET", "/_db_updates?feed=sideways").status == 400);
  auto post = server.Request("POST", "/_db_updates", "{}");
  CHECK(post.status == 405);
  CHECK(Field(post.body, "error") == "method_not_allowed");
}

}  // namespace

TEST_CASE("_db_updates normal feed, integer seqs: events in order, since, limit, which writes count") {
  NormalFeedScenario(false);
}

TEST_CASE("_db_updates normal feed, opaque seqs: the same with N-g1AAAA... strings") {
  NormalFeedScenario(true);
}

TEST_CASE("_db_updates longpoll: old events at once, waits for a new one, times out empty") {
  TestServer server;
  const bool opaque = server.opaque_seqs();
  Must(server, "PUT", "/seed", 201);

  // Without since (= 0) the events recorded so far come back at once, as from CouchDB.
  auto t0 = Clock::now();
  auto r = GetAs(server, "", "/_db_updates?feed=longpoll&timeout=10000");
  CHECK(Clock::now() - t0 < 3s);
  REQUIRE(r.status == 200);
  auto old = ParseFeed(r.body, opaque);
  CHECK(Pairs(old.results) == PairList{{"seed", "created"}});

  // since=now: waits until another thread creates a db, then answers with that event.
  std::thread writer([&] {
    std::this_thread::sleep_for(500ms);
    server.Request("PUT", "/late");
  });
  t0 = Clock::now();
  r = GetAs(server, "", "/_db_updates?feed=longpoll&since=now&timeout=10000");
  auto waited = Clock::now() - t0;
  writer.join();
  CHECK(waited >= 400ms);
  CHECK(waited < 8s);
  REQUIRE(r.status == 200);
  auto got = ParseFeed(r.body, opaque);
  CHECK(Pairs(got.results) == PairList{{"late", "created"}});
  REQUIRE(got.results.size() == 1);
  CHECK(got.results[0].n > old.last_n);
  CHECK(got.last_seq == got.results[0].seq);

  // since=<latest>: nothing happens, so after the timeout it answers with no rows and the same seq.
  t0 = Clock::now();
  r = GetAs(server, "", "/_db_updates?feed=longpoll&since=" + got.last_seq + "&timeout=500");
  waited = Clock::now() - t0;
  CHECK(waited >= 450ms);
  CHECK(waited < 5s);
  REQUIRE(r.status == 200);
  auto idle = ParseFeed(r.body, opaque);
  CHECK(idle.results.empty());
  CHECK(idle.last_seq == got.last_seq);

  // With a heartbeat it sends newlines while it waits (and ignores the timeout).
  std::thread writer2([&] {
    std::this_thread::sleep_for(700ms);
    server.Request("PUT", "/late2");
  });
  t0 = Clock::now();
  r = GetAs(server, "", "/_db_updates?feed=longpoll&since=now&heartbeat=100&timeout=200");
  waited = Clock::now() - t0;
  writer2.join();
  CHECK(waited >= 600ms);
  REQUIRE(r.status == 200);
  auto beat = ParseFeed(r.body, opaque);
  CHECK(Pairs(beat.results) == PairList{{"late2", "created"}});
  auto open = r.body.find('[');
  auto row = r.body.find("{\"db_name\"");
  REQUIRE(open != std::string::npos);
  REQUIRE(row != std::string::npos);
  std::string between = r.body.substr(open + 1, row - open - 1);
  CHECK(between.find_first_not_of('\n') == std::string::npos);
  CHECK(between.size() >= 4);  // the first newline, then heartbeats every 100 ms for ~700 ms

  CHECK(WaitFor([&] { return FeedsField(server, "db_updates_listeners") == 0; }));
  CHECK(FeedsField(server, "open_feeds") == 0);
}

TEST_CASE("_db_updates continuous with heartbeat: streams events, keeps beating past the timeout") {
  TestServerOptions opts;
  opts.admin = kFixtureAdmin;
  TestServer server(opts);
  const bool opaque = server.opaque_seqs();
  Must(server, "PUT", "/before", 201);

  StreamReader reader(server, kFixtureAdmin,
                      "/_db_updates?feed=continuous&since=now&heartbeat=100&timeout=200");
  REQUIRE(WaitFor([&] { return FeedsField(server, "db_updates_listeners") == 1; }));
  CHECK(FeedsField(server, "open_feeds") == 1);

  Must(server, "PUT", "/live", 201);
  Must(server, "PUT", "/live/doc", 201, R"({"a":1})");
  Must(server, "DELETE", "/live", 200);
  REQUIRE(WaitFor([&] { return SplitLines(reader.Text()).json.size() >= 3; }));
  // Idle for well over the timeout: with a heartbeat the feed does not end.
  std::this_thread::sleep_for(800ms);
  CHECK_FALSE(reader.ended());
  auto lines = SplitLines(reader.Text());
  std::string last_seq;
  auto rows = RowsOf(lines, opaque, &last_seq);
  CHECK(last_seq.empty());  // no {"last_seq":...} line: it has not ended
  CHECK(Pairs(rows) == PairList{{"live", "created"}, {"live", "updated"}, {"live", "deleted"}});
  CheckIncreasing(rows);
  CHECK(lines.blank >= 4);  // ~100 ms heartbeats over ~1 s of idleness
  CHECK_FALSE(lines.partial);

  // The client goes away: the server drops its listener and the connection.
  reader.Stop();
  CHECK(WaitFor([&] { return FeedsField(server, "db_updates_listeners") == 0; }));
  CHECK(WaitFor([&] { return FeedsField(server, "open_feeds") == 0; }));
  // And the server carries on recording.
  Must(server, "PUT", "/after", 201);
  auto feed = GetFeed(server, "?since=" + rows.back().seq);
  CHECK(Pairs(feed.results) == PairList{{"after", "created"}});
}

TEST_CASE("_db_updates continuous without heartbeat ends with last_seq after the idle timeout (opaque)") {
  TestServerOptions opts;
  opts.opaque_seqs = true;
  TestServer server(opts);
  Must(server, "PUT", "/c1", 201);
  Must(server, "PUT", "/c1/doc", 201, "{}");

  auto t0 = Clock::now();
  auto r = GetAs(server, "", "/_db_updates?feed=continuous&since=0&timeout=600");
  auto took = Clock::now() - t0;
  REQUIRE(r.status == 200);
  CHECK(took >= 550ms);
  CHECK(took < 8s);
  auto lines = SplitLines(r.body);
  CHECK(lines.blank == 0);  // no heartbeat asked for, none sent
  CHECK_FALSE(lines.partial);
  REQUIRE(lines.json.size() == 3);
  CHECK(lines.json.back().rfind("{\"last_seq\":\"", 0) == 0);
  std::string last_seq;
  auto rows = RowsOf(lines, true, &last_seq);
  CHECK(Pairs(rows) == PairList{{"c1", "created"}, {"c1", "updated"}});
  REQUIRE(rows.size() == 2);
  CHECK(last_seq == rows.back().seq);

  // since=now and nothing happens: only the last_seq line, with the current seq.
  r = GetAs(server, "", "/_db_updates?feed=continuous&since=now&timeout=300");
  REQUIRE(r.status == 200);
  lines = SplitLines(r.body);
  std::string idle_seq;
  CHECK(RowsOf(lines, true, &idle_seq).empty());
  CHECK(idle_seq == rows.back().seq);

  // An event while it runs is streamed, and the timeout counts from the last row.
  std::thread writer([&] {
    std::this_thread::sleep_for(300ms);
    server.Request("PUT", "/c2");
  });
  t0 = Clock::now();
  r = GetAs(server, "", "/_db_updates?feed=continuous&since=now&timeout=500");
  took = Clock::now() - t0;
  writer.join();
  CHECK(took >= 750ms);
  std::string end_seq;
  auto streamed = RowsOf(SplitLines(r.body), true, &end_seq);
  CHECK(Pairs(streamed) == PairList{{"c2", "created"}});
  REQUIRE(streamed.size() == 1);
  CHECK(end_seq == streamed[0].seq);

  // limit ends the feed after that many rows, without waiting for the timeout.
  t0 = Clock::now();
  r = GetAs(server, "", "/_db_updates?feed=continuous&since=0&limit=2&timeout=10000");
  CHECK(Clock::now() - t0 < 3s);
  std::string limit_seq;
  auto limited = RowsOf(SplitLines(r.body), true, &limit_seq);
  CHECK(Pairs(limited) == PairList{{"c1", "created"}, {"c1", "updated"}});
  REQUIRE(limited.size() == 2);
  CHECK(limit_seq == limited[1].seq);
}

TEST_CASE("_db_updates is for server admins only") {
  TestServerOptions opts;
  opts.admin = kFixtureAdmin;
  TestServer server(opts);
  Must(server, "PUT", "/_users/org.couchdb.user:bob", 201,
       R"({"name":"bob","password":"bobs-pw","roles":[],"type":"user"})");

  auto anon = GetAs(server, "", "/_db_updates");
  CHECK(anon.status == 401);
  CHECK(Field(anon.body, "error") == "unauthorized");
  CHECK(Field(anon.body, "reason") == "You are not a server admin.");
  // An authenticated user who is not an admin is refused the same way, every feed kind.
  for (const char* q : {"", "?feed=longpoll&timeout=5000", "?feed=continuous&timeout=5000"}) {
    CAPTURE(q);
    auto bob = GetAs(server, "bob:bobs-pw", std::string("/_db_updates") + q, 4000ms);
    CHECK(bob.status == 401);
    CHECK(Field(bob.body, "reason") == "You are not a server admin.");
  }
  CHECK(GetAs(server, "admin:wrong", "/_db_updates").status == 401);
  auto admin = GetAs(server, kFixtureAdmin, "/_db_updates");
  CHECK(admin.status == 200);
  // bob's user doc was written to _users.
  auto feed = ParseFeed(admin.body, server.opaque_seqs());
  CHECK(Pairs(feed.results) == PairList{{"_users", "updated"}});

  // The 401 comes before the 404 of the disabled mode.
  Must(server, "POST", "/_test/db_updates", 200, R"({"enabled":false})");
  CHECK(GetAs(server, "bob:bobs-pw", "/_db_updates").status == 401);
  CHECK(GetAs(server, kFixtureAdmin, "/_db_updates").status == 404);

  // Admin party: everyone is an admin.
  TestServer party;
  CHECK(GetAs(party, "", "/_db_updates").status == 200);
}

TEST_CASE("_db_updates 404 mode (no _global_changes db) and request counting") {
  TestServer server;
  auto state = server.Request("GET", "/_test/db_updates");
  CHECK(state.body.find("\"enabled\":true") != std::string::npos);
  Must(server, "PUT", "/on", 201);
  CHECK(server.Request("GET", "/_db_updates").status == 200);

  Must(server, "POST", "/_test/db_updates", 200, R"({"enabled":false})");
  CHECK(server.Request("GET", "/_test/db_updates").body.find("\"enabled\":false") !=
        std::string::npos);
  int db_updates_requests = 1;
  for (const char* q : {"", "?feed=longpoll&since=now&timeout=10000",
                        "?feed=continuous&since=now&heartbeat=500&timeout=2000"}) {
    CAPTURE(q);
    auto t0 = Clock::now();
    auto r = GetAs(server, "", std::string("/_db_updates") + q, 5000ms);
    db_updates_requests++;
    CHECK(Clock::now() - t0 < 2s);  // at once, not a stream
    CHECK(r.status == 404);
    CHECK(r.body.find(R"({"error":"not_found","reason":"Database does not exist."})") == 0);
  }
  // Events still happen while it is off; they are listed once it is back.
  Must(server, "PUT", "/while-off", 201);
  Must(server, "POST", "/_test/db_updates", 200, R"({"enabled":true})");
  auto feed = GetFeed(server);
  db_updates_requests++;
  CHECK(Pairs(feed.results) == PairList{{"on", "created"}, {"while-off", "created"}});
  CHECK(server.Request("POST", "/_test/db_updates", R"({"enabled":"no"})").status == 400);

  auto counted = server.Request("GET", "/_test/requests?path=%5E%2F_db_updates%24");
  CHECK(IntField(counted.body, "count") == db_updates_requests);
  auto longpolls = server.Request("GET", "/_test/requests?path=%5E%2F_db_updates%24&query=longpoll");
  CHECK(IntField(longpolls.body, "count") == 1);
}

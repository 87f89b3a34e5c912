// ChangeWatcher: _changes longpolls of many databases on one thread, against the test server
// (and a small httplib peer for headers, redirects and bad answers).
#include "couchrepd/change_watcher.h"

#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "couch/client_fixture.h"
#include "couchrepd/encoding.h"

using namespace couchrepd;
using namespace couchrepd::testing;
using namespace std::chrono_literals;

namespace {

using SteadyClock = std::chrono::steady_clock;

// Records the callbacks of watches by tag; thread-safe. Declare it before the
// watcher so that it outlives it.
class Calls {
 public:
  std::function<void(Status)> Callback(int tag) {
    return [this, tag](Status s) {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.emplace_back(tag, std::move(s));
      cv_.notify_all();
    };
  }
  // The status `tag` was called with, waiting at most `timeout` for it.
  std::optional<Status> WaitFor(int tag, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    std::optional<Status> found;
    cv_.wait_for(lock, timeout, [&] {
      for (const auto& [t, s] : calls_) {
        if (t == tag) {
          found = s;
          return true;
        }
      }
      return false;
    });
    return found;
  }
  std::vector<int> Tags() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int> tags;
    for (const auto& c : calls_) tags.push_back(c.first);
    return tags;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<int, Status>> calls_;
};

Endpoint DbEndpoint(const std::string& base, const std::string& db, const std::string& user = "",
                    const std::string& password = "") {
  Endpoint e;
  e.url = ParseUrl(base + "/" + db + "/").value();
  if (!user.empty()) {
    e.credentials.kind = Credentials::Kind::kBasic;
    e.credentials.username = user;
    e.credentials.password = password;
  }
  return e;
}

void CreateDb(TestServer& server, const std::string& db) {
  auto r = server.Request("PUT", "/" + db);
  REQUIRE_MESSAGE(r.status == 201, r.body);
}

void PutDoc(TestServer& server, const std::string& db, const std::string& id) {
  auto r = server.Request("PUT", "/" + db + "/" + id, R"({"x":1})");
  REQUIRE_MESSAGE(r.status == 201, r.body);
}

// The database's update_seq as raw JSON (42 or "42-g1AAAA...").
std::string UpdateSeq(const TestServer& server, const std::string& db,
                      const std::string& admin = "") {
  auto info = ServerClient(server, admin).Database(db).GetDbInfo();
  REQUIRE_MESSAGE(info.ok(), info.error().Message());
  return info->update_seq;
}

int64_t JsonInt(const std::string& body, const char* key) {
  simdjson::dom::parser parser;
  int64_t v = -1;
  if (parser.parse(body)[key].get(v) != simdjson::SUCCESS) {
    throw std::runtime_error("no integer `" + std::string(key) + "` in " + body);
  }
  return v;
}

// How many requests the server received for paths matching `regex`.
int64_t RequestCount(TestServer& server, const std::string& regex) {
  return JsonInt(server.Request("GET", "/_test/requests?path=" + PercentEncode(regex)).body,
                 "count");
}

// The query strings of the requests for paths matching `regex`, in order.
std::vector<std::string> RequestQueries(TestServer& server, const std::string& regex) {
  auto r = server.Request("GET", "/_test/requests?list=true&path=" + PercentEncode(regex));
  simdjson::dom::parser parser;
  simdjson::dom::array list;
  REQUIRE(parser.parse(r.body)["requests"].get(list) == simdjson::SUCCESS);
  std::vector<std::string> out;
  for (auto e : list) out.emplace_back(std::string_view(e["query"]));
  return out;
}

int64_t OpenFeeds(TestServer& server) {
  return JsonInt(server.Request("GET", "/_test/feeds").body, "open_feeds");
}

// Waits until `pred` holds, at most `timeout`.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  auto end = SteadyClock::now() + timeout;
  while (SteadyClock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

size_t ThreadCount() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// A loopback port nothing listens on.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  close(fd);
  return ntohs(addr.sin_port);
}

// An httplib server on a loopback port, for answers the test server does not give.
class Peer {
 public:
  Peer() { server_.set_keep_alive_timeout(1); }
  ~Peer() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  httplib::Server& server() { return server_; }
  void Start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    REQUIRE(Eventually([this] { return server_.is_running(); }));
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

ChangeWatcher::Options QuickOptions() {
  ChangeWatcher::Options o;
  o.connect_timeout = 2s;
  return o;
}

}  // namespace

TEST_CASE("change watcher: a watch from the current update_seq fires after a write, not before") {
  TestServer server;
  CreateDb(server, "w1");
  PutDoc(server, "w1", "a");
  std::string since = UpdateSeq(server, "w1");

  Calls calls;
  ChangeWatcher watcher(QuickOptions());
  watcher.Watch(DbEndpoint(server.url(), "w1"), TlsSettings{}, since, calls.Callback(1));
  CHECK_FALSE(calls.WaitFor(1, 300ms).has_value());
  CHECK(watcher.watching() == 1);

  PutDoc(server, "w1", "b");
  auto fired = calls.WaitFor(1, 5s);
  REQUIRE(fired.has_value());
  CHECK(fired->ok());
  CHECK(watcher.watching() == 0);
  CHECK(calls.Tags().size() == 1);

  // The request: a longpoll for one change from `since` (a string's text, unquoted).
  auto queries = RequestQueries(server, "^/w1/_changes$");
  REQUIRE(!queries.empty());
  const std::string& q = queries.front();
  CHECK(q.find("feed=longpoll") != std::string::npos);
  CHECK(q.find("limit=1") != std::string::npos);
  CHECK(q.find("timeout=60000") != std::string::npos);
  CHECK(q.find("since=" + PercentEncode(SeqToSinceParam(since))) != std::string::npos);
  CHECK(q.find("%22") == std::string::npos);
}

TEST_CASE("change watcher: a watch from an older sequence fires at once") {
  TestServer server;
  CreateDb(server, "old");
  PutDoc(server, "old", "a");
  std::string older = UpdateSeq(server, "old");
  PutDoc(server, "old", "b");

  Calls calls;
  ChangeWatcher watcher(QuickOptions());
  auto start = SteadyClock::now();
  watcher.Watch(DbEndpoint(server.url(), "old"), TlsSettings{}, older, calls.Callback(1));
  watcher.Watch(DbEndpoint(server.url(), "old"), TlsSettings{}, "0", calls.Callback(2));
  auto a = calls.WaitFor(1, 3s);
  auto b = calls.WaitFor(2, 3s);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->ok());
  CHECK(b->ok());
  CHECK(SteadyClock::now() - start < 2s);
  CHECK(watcher.watching() == 0);
}

TEST_CASE("change watcher: 200 databases on one thread; a write to #137 fires only that one") {
  constexpr int kDbs = 200;
  TestServer server;
  std::vector<std::string> seqs;
  for (int i = 0; i < kDbs; ++i) {
    CreateDb(server, "cw" + std::to_string(i));
    seqs.push_back(UpdateSeq(server, "cw" + std::to_string(i)));
  }
  size_t threads_before = ThreadCount();

  Calls calls;
  ChangeWatcher watcher(QuickOptions());
  for (int i = 0; i < kDbs; ++i) {
    watcher.Watch(DbEndpoint(server.url(), "cw" + std::to_string(i)), TlsSettings{}, seqs[i],
                  calls.Callback(i));
  }
  REQUIRE(Eventually([&] { return RequestCount(server, "^/cw[0-9]+/_changes$") >= kDbs; }, 10s));
  CHECK(Eventually([&] { return OpenFeeds(server) == kDbs; }));
  size_t threads_after = ThreadCount();
  CHECK(threads_after <= threads_before + 2);
  CHECK(watcher.watching() == kDbs);
  CHECK(calls.Tags().empty());

  PutDoc(server, "cw137", "x");
  auto fired = calls.WaitFor(137, 5s);
  REQUIRE(fired.has_value());
  CHECK(fired->ok());
  std::this_thread::sleep_for(500ms);
  CHECK(calls.Tags() == std::vector<int>{137});
  CHECK(watcher.watching() == kDbs - 1);
  CHECK(ThreadCount() <= threads_before + 2);
}

TEST_CASE("change watcher: Cancel prevents the callback and closes the longpoll") {
  TestServer server;
  CreateDb(server, "c");
  std::string since = UpdateSeq(server, "c");

  Calls calls;
  ChangeWatcher watcher(QuickOptions());
  uint64_t id =
      watcher.Watch(DbEndpoint(server.url(), "c"), TlsSettings{}, since, calls.Callback(1));
  uint64_t kept =
      watcher.Watch(DbEndpoint(server.url(), "c"), TlsSettings{}, since, calls.Callback(2));
  CHECK(id != 0);
  CHECK(kept != id);
  REQUIRE(Eventually([&] { return OpenFeeds(server) == 2; }));
  watcher.Cancel(id);
  CHECK(watcher.watching() == 1);
  CHECK(Eventually([&] { return OpenFeeds(server) == 1; }));
  watcher.Cancel(987654);  // unknown: ignored

  PutDoc(server, "c", "a");
  REQUIRE(calls.WaitFor(2, 5s).has_value());
  std::this_thread::sleep_for(300ms);
  CHECK(calls.Tags() == std::vector<int>{2});
  watcher.Cancel(kept);  // finished: ignored
  CHECK(watcher.watching() == 0);

  // A watch cancelled at once never fires (whether or not its request had started).
  uint64_t quick =
      watcher.Watch(DbEndpoint(server.url(), "c"), TlsSettings{}, "0", calls.Callback(3));
  watcher.Cancel(quick);
  std::this_thread::sleep_for(300ms);
  CHECK(calls.Tags() == std::vector<int>{2});
}

TEST_CASE("change watcher: Cancel waits for a callback that is running") {
  TestServer server;
  CreateDb(server, "busy");
  PutDoc(server, "busy", "a");

  std::atomic<bool> started{false};
  std::atomic<bool> finished{false};
  ChangeWatcher watcher(QuickOptions());
  uint64_t id = watcher.Watch(DbEndpoint(server.url(), "busy"), TlsSettings{}, "0", [&](Status) {
    started = true;
    std::this_thread::sleep_for(300ms);
    finished = true;
  });
  REQUIRE(Eventually([&] { return started.load(); }));
  watcher.Cancel(id);
  CHECK(finished.load());
}

TEST_CASE("change watcher: an empty longpoll is sent again from last_seq; a later write fires") {
  TestServer server;
  CreateDb(server, "quiet");
  PutDoc(server, "quiet", "a");
  std::string since = UpdateSeq(server, "quiet");

  Calls calls;
  ChangeWatcher::Options options = QuickOptions();
  options.longpoll_timeout = 300ms;
  ChangeWatcher watcher(options);
  watcher.Watch(DbEndpoint(server.url(), "quiet"), TlsSettings{}, since, calls.Callback(1));
  std::this_thread::sleep_for(1300ms);
  CHECK(calls.Tags().empty());
  auto queries = RequestQueries(server, "^/quiet/_changes$");
  CHECK(queries.size() >= 3);
  for (const auto& q : queries) {
    CHECK(q.find("timeout=300") != std::string::npos);
    // Each again from the last_seq of the one before (the same point: nothing changed).
    CHECK(q.find("since=" + PercentEncode(SeqToSinceParam(since))) != std::string::npos);
  }

  PutDoc(server, "quiet", "b");
  auto fired = calls.WaitFor(1, 5s);
  REQUIRE(fired.has_value());
  CHECK(fired->ok());
}

TEST_CASE("change watcher: basic auth works; a wrong password is an Error without it") {
  TestServerOptions opts;
  opts.admin = kFixtureAdmin;
  TestServer server(opts);
  CreateDb(server, "private");
  // Members only: an anonymous longpoll is refused.
  auto sec = server.Request(
      "PUT", "/private/_security",
      R"({"admins":{"names":[],"roles":[]},"members":{"names":["admin"],"roles":[]}})");
  REQUIRE_MESSAGE(sec.status / 100 == 2, sec.body);
  std::string since = UpdateSeq(server, "private", kFixtureAdmin);

  Calls calls;
  ChangeWatcher watcher(QuickOptions());
  watcher.Watch(DbEndpoint(server.url(), "private", "admin", "s3cret-Pw"), TlsSettings{}, since,
                calls.Callback(1));
  watcher.Watch(DbEndpoint(server.url(), "private", "admin", "wrong-Passw0rd"), TlsSettings{},
                since, calls.Callback(2));
  watcher.Watch(DbEndpoint(server.url(), "private"), TlsSettings{}, since, calls.Callback(3));

  auto wrong = calls.WaitFor(2, 5s);
  REQUIRE(wrong.has_value());
  REQUIRE_FALSE(wrong->ok());
  CHECK(wrong->error().http_status == 401);
  CHECK_FALSE(wrong->error().temporary());
  CHECK(wrong->error().Message().find("wrong-Passw0rd") == std::string::npos);
  CHECK(wrong->error().Message().find("/private/_changes") != std::string::npos);
  auto anonymous = calls.WaitFor(3, 5s);
  REQUIRE(anonymous.has_value());
  REQUIRE_FALSE(anonymous->ok());
  CHECK(anonymous->error().http_status / 100 == 4);

  CHECK_FALSE(calls.WaitFor(1, 300ms).has_value());
  PutDoc(server, "private", "a");
  auto fired = calls.WaitFor(1, 5s);
  REQUIRE(fired.has_value());
  CHECK_MESSAGE(fired->ok(), fired->error().Message());
}

TEST_CASE("change watcher: a closed port gives a temporary Error naming the redacted URL") {
  int port = ClosedPort();
  Endpoint db = DbEndpoint("http://carol:url-Secret9@127.0.0.1:" + std::to_string(port), "gone",
                           "carol", "cred-Secret7");
  Calls calls;
  ChangeWatcher watcher(QuickOptions());
  watcher.Watch(db, TlsSettings{}, "5", calls.Callback(1));
  auto r = calls.WaitFor(1, 5s);
  REQUIRE(r.has_value());
  REQUIRE_FALSE(r->ok());
  CHECK(r->error().temporary());
  CHECK(r->error().http_status == 0);
  std::string message = r->error().Message();
  CHECK(message.find("127.0.0.1:" + std::to_string(port) + "/gone/_changes") != std::string::npos);
  CHECK(message.find("url-Secret9") == std::string::npos);
  CHECK(message.find("cred-Secret7") == std::string::npos);
  CHECK(watcher.watching() == 0);
}

TEST_CASE("change watcher: a server that stays silent past the timeout is a temporary Error") {
  TestServer server;
  CreateDb(server, "mute");
  std::string since = UpdateSeq(server, "mute");
  auto fault =
      server.Request("POST", "/_test/faults", R"({"path":"^/mute/_changes$","delay_ms":5000})");
  REQUIRE(fault.status == 201);

  Calls calls;
  ChangeWatcher::Options options = QuickOptions();
  options.longpoll_timeout = 200ms;
  options.answer_grace = 500ms;
  ChangeWatcher watcher(options);
  auto start = SteadyClock::now();
  watcher.Watch(DbEndpoint(server.url(), "mute"), TlsSettings{}, since, calls.Callback(1));
  auto r = calls.WaitFor(1, 4s);
  REQUIRE(r.has_value());
  REQUIRE_FALSE(r->ok());
  CHECK(r->error().temporary());
  CHECK(r->error().error == "timeout");
  CHECK(SteadyClock::now() - start < 3s);
}

TEST_CASE("change watcher: opaque sequences are sent back as CouchDB expects") {
  TestServerOptions opts;
  opts.opaque_seqs = true;
  TestServer server(opts);
  CreateDb(server, "opq");
  PutDoc(server, "opq", "a");
  std::string older = UpdateSeq(server, "opq");
  REQUIRE(older.front() == '"');
  PutDoc(server, "opq", "b");
  std::string current = UpdateSeq(server, "opq");

  Calls calls;
  ChangeWatcher::Options options = QuickOptions();
  options.longpoll_timeout = 300ms;
  ChangeWatcher watcher(options);
  watcher.Watch(DbEndpoint(server.url(), "opq"), TlsSettings{}, older, calls.Callback(1));
  auto at_once = calls.WaitFor(1, 3s);
  REQUIRE(at_once.has_value());
  CHECK(at_once->ok());

  watcher.Watch(DbEndpoint(server.url(), "opq"), TlsSettings{}, current, calls.Callback(2));
  CHECK_FALSE(calls.WaitFor(2, 800ms).has_value());  // past two empty longpolls
  PutDoc(server, "opq", "c");
  auto later = calls.WaitFor(2, 5s);
  REQUIRE(later.has_value());
  CHECK(later->ok());

  auto queries = RequestQueries(server, "^/opq/_changes$");
  REQUIRE(queries.size() >= 3);
  for (const auto& q : queries) CHECK(q.find("%22") == std::string::npos);
  CHECK(queries[1].find("since=" + PercentEncode(SeqToSinceParam(current))) != std::string::npos);
}

TEST_CASE("change watcher: the destructor with live watches returns promptly, calling nothing") {
  TestServer server;
  CreateDb(server, "live");
  std::string since = UpdateSeq(server, "live");
  Calls calls;
  auto start = SteadyClock::now();
  {
    ChangeWatcher watcher(QuickOptions());
    for (int i = 0; i < 20; ++i) {
      watcher.Watch(DbEndpoint(server.url(), "live"), TlsSettings{}, since, calls.Callback(i));
    }
    REQUIRE(Eventually([&] { return OpenFeeds(server) == 20; }));
    start = SteadyClock::now();
  }
  CHECK(SteadyClock::now() - start < 1s);
  CHECK(calls.Tags().empty());
  CHECK(Eventually([&] { return OpenFeeds(server) == 0; }));
  PutDoc(server, "live", "a");
  std::this_thread::sleep_for(200ms);
  CHECK(calls.Tags().empty());
}

TEST_CASE("change watcher: proxy auth and custom headers; redirects and bad answers are errors") {
  constexpr const char* kChange =
      R"({"results":[{"seq":"13-g1AAAA","id":"a","changes":[{"rev":"1-a"}]}],)"
      R"("last_seq":"13-g1AAAA","pending":0})";
  std::mutex mu;
  httplib::Headers seen_headers;
  std::map<std::string, std::string> seen_params;
  std::vector<std::string> empty_sinces;
  Peer peer;
  auto& s = peer.server();
  s.Get("/px/_changes", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    seen_headers = req.headers;
    for (const auto& [k, v] : req.params) seen_params[k] = v;
    res.set_content(kChange, "application/json");
  });
  s.Get("/redir/_changes", [](const httplib::Request&, httplib::Response& res) {
    res.status = 302;
    res.set_header("Location", "http://mallory:loc-Secret3@127.0.0.1:1/elsewhere/");
  });
  s.Get("/html/_changes", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html>hello</html>", "text/html");
  });
  s.Get("/big/_changes", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"results":[],"pad":")" + std::string(2 << 20, 'x') + "\"}",
                    "application/json");
  });
  s.Get("/down/_changes", [](const httplib::Request&, httplib::Response& res) {
    res.status = 503;
    res.set_content(R"({"error":"unavailable","reason":"maintenance"})", "application/json");
  });
  // Answers empty at once (does not wait): asked again at most once a second.
  s.Get("/eager/_changes", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    empty_sinces.push_back(req.get_param_value("since"));
    res.set_content(R"({"results":[],"last_seq":"7-g1AAAA","pending":0})", "application/json");
  });
  peer.Start();

  Calls calls;
  ChangeWatcher::Options options = QuickOptions();
  options.user_agent = "couchrepd-test/1";
  ChangeWatcher watcher(options);

  Endpoint px = DbEndpoint(peer.url(), "px");
  px.credentials.kind = Credentials::Kind::kProxy;
  px.credentials.proxy.name = "bob";
  px.credentials.proxy.roles = {"reader", "ops"};
  px.credentials.proxy.secret = "proxy-Secret5";
  px.headers = {{"X-Custom", "v1"}};
  watcher.Watch(px, TlsSettings{}, R"("12-g1AAAA")", calls.Callback(1));
  watcher.Watch(DbEndpoint(peer.url(), "redir"), TlsSettings{}, "0", calls.Callback(2));
  watcher.Watch(DbEndpoint(peer.url(), "html"), TlsSettings{}, "0", calls.Callback(3));
  watcher.Watch(DbEndpoint(peer.url(), "big"), TlsSettings{}, "0", calls.Callback(4));
  watcher.Watch(DbEndpoint(peer.url(), "down"), TlsSettings{}, "0", calls.Callback(5));
  Endpoint cookie = DbEndpoint(peer.url(), "px", "carol", "cookie-Secret1");
  cookie.credentials.kind = Credentials::Kind::kCookie;
  watcher.Watch(cookie, TlsSettings{}, "0", calls.Callback(6));
  watcher.Watch(DbEndpoint(peer.url(), "eager"), TlsSettings{}, "3", calls.Callback(7));

  auto proxied = calls.WaitFor(1, 5s);
  REQUIRE(proxied.has_value());
  CHECK(proxied->ok());
  {
    std::lock_guard<std::mutex> lock(mu);
    auto header = [&](const char* name) {
      auto it = seen_headers.find(name);
      return it == seen_headers.end() ? std::string("<none>") : it->second;
    };
    CHECK(header("X-Auth-CouchDB-UserName") == "bob");
    CHECK(header("X-Auth-CouchDB-Roles") == "reader,ops");
    CHECK(header("X-Auth-CouchDB-Token") == HmacSha256Hex("proxy-Secret5", "bob"));
    CHECK(header("X-Custom") == "v1");
    CHECK(header("User-Agent") == "couchrepd-test/1");
    CHECK(header("Authorization") == "<none>");
    CHECK(seen_params["since"] == "12-g1AAAA");
    CHECK(seen_params["feed"] == "longpoll");
    CHECK(seen_params["limit"] == "1");
  }

  auto redirect = calls.WaitFor(2, 5s);
  REQUIRE(redirect.has_value());
  REQUIRE_FALSE(redirect->ok());
  CHECK_FALSE(redirect->error().temporary());
  CHECK(redirect->error().http_status == 302);
  CHECK(redirect->error().Message().find("loc-Secret3") == std::string::npos);

  auto html = calls.WaitFor(3, 5s);
  REQUIRE(html.has_value());
  REQUIRE_FALSE(html->ok());
  CHECK(html->error().error == "bad_response");

  auto big = calls.WaitFor(4, 5s);
  REQUIRE(big.has_value());
  REQUIRE_FALSE(big->ok());
  CHECK(big->error().error == "response_too_large");
  CHECK_FALSE(big->error().temporary());

  auto down = calls.WaitFor(5, 5s);
  REQUIRE(down.has_value());
  REQUIRE_FALSE(down->ok());
  CHECK(down->error().temporary());
  CHECK(down->error().http_status == 503);
  CHECK(down->error().Message().find("maintenance") != std::string::npos);

  auto unsupported = calls.WaitFor(6, 5s);
  REQUIRE(unsupported.has_value());
  REQUIRE_FALSE(unsupported->ok());
  CHECK_FALSE(unsupported->error().temporary());
  CHECK(unsupported->error().Message().find("cookie") != std::string::npos);
  CHECK(unsupported->error().Message().find("cookie-Secret1") == std::string::npos);

  std::this_thread::sleep_for(1500ms);
  CHECK(watcher.watching() == 1);  // the eager one goes on
  std::lock_guard<std::mutex> lock(mu);
  CHECK(empty_sinces.size() >= 2);
  CHECK(empty_sinces.size() <= 3);
  REQUIRE(!empty_sinces.empty());
  CHECK(empty_sinces.front() == "3");
  if (empty_sinces.size() >= 2) CHECK(empty_sinces[1] == "7-g1AAAA");
}

// CouchClient transport features that the CouchDB test server cannot show:
// TLS verification, custom headers, redirects, proxy auth, inactivity
// timeouts, garbage answers and cut streams. The peer is a small in-process
// cpp-httplib server on 127.0.0.1, so these test our HTTP client, not
// CouchDB's behaviour.
#include <doctest/doctest.h>
#include <httplib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "couchrepd/couch_client.h"
#include "support/test_pki.h"

using namespace couchrepd;
using couchrepd::testing::TestPki;
using namespace std::chrono_literals;

namespace {

// One request as the peer saw it.
struct Seen {
  std::string method;
  std::string path;
  httplib::Headers headers;

  std::string Header(const char* name) const {
    auto it = headers.find(name);  // httplib's Headers compare names case-insensitively
    return it == headers.end() ? "<absent>" : it->second;
  }
  size_t Count(const char* name) const { return headers.count(name); }
};

// An httplib::Server (or SSLServer) on a free loopback port, run on its own
// thread. Register routes with server() before Start(). Handlers that stall
// wait on Stall(), which the destructor releases so that stop() never hangs.
class Peer {
 public:
  Peer() : Peer(std::make_unique<httplib::Server>(), "http") {}
  Peer(std::unique_ptr<httplib::Server> server, std::string scheme)
      : server_(std::move(server)), scheme_(std::move(scheme)) {
    server_->set_keep_alive_timeout(1);
  }
  ~Peer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  httplib::Server& server() { return *server_; }

  void Start() {
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("cannot bind a loopback port");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    for (int i = 0; i < 500 && !server_->is_running(); ++i) std::this_thread::sleep_for(2ms);
    if (!server_->is_running()) throw std::runtime_error("the peer did not start");
  }

  int port() const { return port_; }
  std::string origin() const { return scheme_ + "://127.0.0.1:" + std::to_string(port_); }

  // Records a request; thread-safe.
  void Record(const httplib::Request& req) {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(Seen{req.method, req.path, req.headers});
  }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  std::vector<Seen> seen(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Seen> out;
    for (const auto& s : seen_) {
      if (s.path == path) out.push_back(s);
    }
    return out;
  }

  // Blocks the calling handler until the peer is torn down (at most `limit`).
  void Stall(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, limit, [this] { return released_; });
  }

 private:
  std::unique_ptr<httplib::Server> server_;
  std::string scheme_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::vector<Seen> seen_;
};

constexpr const char* kWelcome = R"({"couchdb":"Welcome","uuid":"abc","version":"3.4.3"})";

void ServeWelcome(Peer& peer) {
  peer.server().Get("/", [&peer](const httplib::Request& req, httplib::Response& res) {
    peer.Record(req);
    res.set_content(kWelcome, "application/json");
  });
}

HttpOptions QuickOptions() {
  HttpOptions o;
  o.connect_timeout = 1s;
  o.inactivity_timeout = 2s;
  o.retry.retries = 1;
  o.retry.initial_wait = 20ms;
  o.retry.budget = 2s;
  return o;
}

CouchClient ClientFor(const std::string& origin, HttpOptions options = QuickOptions(),
                      Credentials credentials = {}, Headers headers = {}) {
  Endpoint e;
  e.url = ParseUrl(origin + "/").value();
  e.credentials = std::move(credentials);
  e.headers = std::move(headers);
  return CouchClient(e, std::move(options));
}

Credentials Basic(std::string user, std::string password) {
  Credentials c;
  c.kind = Credentials::Kind::kBasic;
  c.username = std::move(user);
  c.password = std::move(password);
  return c;
}

// Counts what the request loop reports.
struct EventCounts {
  std::atomic<int> responses{0};
  std::atomic<int> connection_errors{0};
  std::atomic<int> retries{0};
};

HttpOptions Observed(HttpOptions o, const std::shared_ptr<EventCounts>& counts) {
  o.observer = [counts](const HttpEvent& e) {
    switch (e.kind) {
      case HttpEvent::Kind::kResponse: ++counts->responses; break;
      case HttpEvent::Kind::kConnectionError: ++counts->connection_errors; break;
      case HttpEvent::Kind::kRetry: ++counts->retries; break;
      case HttpEvent::Kind::kRateLimited: break;
    }
  };
  return o;
}

std::string ReadCommand(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (!p) return out;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

std::unique_ptr<Peer> TlsPeer(const std::string& cert) {
  const auto& pki = TestPki::Get();
  auto server = std::make_unique<httplib::SSLServer>(pki.Path(cert + ".pem").c_str(),
                                                     pki.Path(cert + ".key").c_str());
  REQUIRE(server->is_valid());
  auto peer = std::make_unique<Peer>(std::move(server), "https");
  ServeWelcome(*peer);
  peer->Start();
  return peer;
}

// A normal _changes feed, rows a..e.
std::string Row(char id, int seq) {
  return std::string("{\"seq\":") + std::to_string(seq) + ",\"id\":\"" + id +
         "\",\"changes\":[{\"rev\":\"1-" + id + "\"}]}";
}

}  // namespace

TEST_SUITE("transport") {

TEST_CASE("TLS: certificates are verified unless turned off") {
  const auto& pki = TestPki::Get();
  auto counts = std::make_shared<EventCounts>();

  SUBCASE("an untrusted certificate fails permanently, without retries") {
    auto peer = TlsPeer("server");
    HttpOptions o = Observed(QuickOptions(), counts);
    o.retry.retries = 3;
    auto client = ClientFor(peer->origin(), o);  // verification on, system trust store
    auto info = client.GetServerInfo();
    REQUIRE_FALSE(info.ok());
    CAPTURE(info.error().Message());
    CHECK(info.error().error == "tls_verification_failed");
    CHECK_FALSE(info.error().temporary());
    CHECK(info.error().reason.find("certificate is not trusted") != std::string::npos);
    CHECK(info.error().reason.find("ca_file") != std::string::npos);
    CHECK(info.error().reason.find("https://127.0.0.1:" + std::to_string(peer->port())) !=
          std::string::npos);
    CHECK(counts->connection_errors == 1);
    CHECK(counts->retries == 0);
    CHECK(peer->seen().empty());
  }

  SUBCASE("the configured CA makes the server trusted") {
    auto peer = TlsPeer("server");
    HttpOptions o = QuickOptions();
    o.ca_file = pki.Path("ca.pem");
    auto client = ClientFor(peer->origin(), o);
    auto info = client.GetServerInfo();
    REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : info.error().Message()));
    CHECK(info->uuid == "abc");
    CHECK(info->version == "3.4.3");
    CHECK(peer->seen("/").size() == 1);
  }

  SUBCASE("the CA does not vouch for an unrelated certificate") {
    auto peer = TlsPeer("other");
    HttpOptions o = QuickOptions();
    o.ca_file = pki.Path("ca.pem");
    auto info = ClientFor(peer->origin(), o).GetServerInfo();
    REQUIRE_FALSE(info.ok());
    CAPTURE(info.error().Message());
    CHECK(info.error().error == "tls_verification_failed");
    CHECK_FALSE(info.error().temporary());
    CHECK(info.error().reason.find("not signed by the CA in " + pki.Path("ca.pem")) !=
          std::string::npos);
    CHECK(peer->seen().empty());
  }

  SUBCASE("a trusted certificate for another host name is refused") {
    auto peer = TlsPeer("wronghost");
    HttpOptions o = QuickOptions();
    o.ca_file = pki.Path("ca.pem");
    auto info = ClientFor(peer->origin(), o).GetServerInfo();
    REQUIRE_FALSE(info.ok());
    CAPTURE(info.error().Message());
    CHECK(info.error().error == "tls_verification_failed");
    CHECK_FALSE(info.error().temporary());
    CHECK(info.error().reason.find("https://127.0.0.1:") != std::string::npos);
    CHECK(info.error().reason.find("not valid for this host name") != std::string::npos);
    CHECK(peer->seen().empty());
  }

  SUBCASE("tls_verify=false accepts any certificate") {
    auto peer = TlsPeer("other");
    HttpOptions o = QuickOptions();
    o.tls_verify = false;
    auto client = ClientFor(peer->origin(), o);
    auto info = client.GetServerInfo();
    REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : info.error().Message()));
    CHECK(info->uuid == "abc");
    CHECK(peer->seen("/").size() == 1);
  }
}

TEST_CASE("custom headers, User-Agent and Accept-Encoding on every request") {
  Peer peer;
  ServeWelcome(peer);
  peer.server().Get("/_all_dbs", [&peer](const httplib::Request& req, httplib::Response& res) {
    peer.Record(req);
    res.set_content(R"(["a","b"])", "application/json");
  });
  peer.server().Post("/db/_revs_diff", [&peer](const httplib::Request& req,
                                               httplib::Response& res) {
    peer.Record(req);
    res.set_content("{}", "application/json");
  });
  peer.Start();
  auto client = ClientFor(peer.origin(), QuickOptions(), {},
                          {{"X-Api-Key", "k1"}, {"Authorization", "Bearer tok"}});
  REQUIRE(client.GetServerInfo().ok());
  auto dbs = client.AllDbs();
  REQUIRE(dbs.ok());
  CHECK(dbs->size() == 2);
  REQUIRE(client.Database("db").RevsDiff({{"x", {"1-a"}}}).ok());

  auto seen = peer.seen();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].path == "/");
  CHECK(seen[1].path == "/_all_dbs");
  CHECK(seen[2].path == "/db/_revs_diff");
  for (const auto& s : seen) {
    CAPTURE(s.method + " " + s.path);
    CHECK(s.Header("X-Api-Key") == "k1");
    CHECK(s.Count("X-Api-Key") == 1);
    CHECK(s.Header("Authorization") == "Bearer tok");
    CHECK(s.Count("Authorization") == 1);
    CHECK(s.Header("User-Agent") == "couchrepd");
    CHECK(s.Count("User-Agent") == 1);
    CHECK(s.Header("Accept-Encoding") == "identity");
    CHECK(s.Count("Accept-Encoding") == 1);
    CHECK(s.Header("Accept") == "application/json");
  }
}

TEST_CASE("redirects") {
  Peer a;
  Peer b;
  a.server().Get(R"(/r/(\d+))", [&a](const httplib::Request& req, httplib::Response& res) {
    a.Record(req);
    res.status = std::stoi(req.matches[1]);
    res.set_header("Location", "/final?x=1");
  });
  a.server().Get("/abs", [&a](const httplib::Request& req, httplib::Response& res) {
    a.Record(req);
    res.status = 307;
    res.set_header("Location", a.origin() + "/final?x=2");
  });
  a.server().Get("/final", [&a](const httplib::Request& req, httplib::Response& res) {
    a.Record(req);
    res.set_content(R"({"at":"a"})", "application/json");
  });
  a.server().Get("/away", [&a, &b](const httplib::Request& req, httplib::Response& res) {
    a.Record(req);
    res.status = 302;
    res.set_header("Location", b.origin() + "/landing?y=1");
  });
  a.server().Get("/loop", [&a](const httplib::Request& req, httplib::Response& res) {
    a.Record(req);
    res.status = 302;
    res.set_header("Location", "/loop");
  });
  b.server().Get("/landing", [&b](const httplib::Request& req, httplib::Response& res) {
    b.Record(req);
    res.set_content(R"({"at":"b"})", "application/json");
  });
  a.Start();
  b.Start();
  const std::string basic = "Basic dXNlcjpwYXNz";  // user:pass

  SUBCASE("same origin: followed with the credentials") {
    auto client = ClientFor(a.origin(), QuickOptions(), Basic("user", "pass"),
                            {{"X-Api-Key", "k1"}});
    for (int status : {301, 302, 307, 308}) {
      CAPTURE(status);
      HttpRequest req;
      req.path = "/r/" + std::to_string(status);
      auto r = client.Send(req);
      REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().Message()));
      CHECK(r->status == 200);
      CHECK(r->body == R"({"at":"a"})");
    }
    HttpRequest abs;
    abs.path = "/abs";
    auto r = client.Send(abs);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().Message()));
    CHECK(r->body == R"({"at":"a"})");

    auto finals = a.seen("/final");
    REQUIRE(finals.size() == 5);
    for (const auto& s : finals) {
      CHECK(s.Header("Authorization") == basic);
      CHECK(s.Header("X-Api-Key") == "k1");
    }
    CHECK(a.seen().size() == 10);  // each redirect and its target once
  }

  SUBCASE("another origin: followed without Basic credentials") {
    auto client = ClientFor(a.origin(), QuickOptions(), Basic("user", "pass"));
    HttpRequest req;
    req.path = "/away";
    auto r = client.Send(req);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().Message()));
    CHECK(r->body == R"({"at":"b"})");
    REQUIRE(a.seen("/away").size() == 1);
    CHECK(a.seen("/away")[0].Header("Authorization") == basic);
    auto landed = b.seen("/landing");
    REQUIRE(landed.size() == 1);
    CHECK(landed[0].Count("Authorization") == 0);
    CHECK(landed[0].Header("User-Agent") == "couchrepd");
  }

  SUBCASE("another origin: an Authorization header from the endpoint is not passed on") {
    auto client = ClientFor(a.origin(), QuickOptions(), {},
                            {{"authorization", "Bearer tok"}, {"X-Api-Key", "k1"}});
    HttpRequest req;
    req.path = "/away";
    auto r = client.Send(req);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().Message()));
    CHECK(r->body == R"({"at":"b"})");
    CHECK(a.seen("/away")[0].Header("Authorization") == "Bearer tok");
    auto landed = b.seen("/landing");
    REQUIRE(landed.size() == 1);
    CHECK(landed[0].Count("Authorization") == 0);
    CHECK(landed[0].Count("X-Api-Key") == 0);  // the endpoint's custom headers stay home too
  }

  SUBCASE("more than max_redirects is an error, not a loop") {
    HttpOptions o = QuickOptions();
    o.max_redirects = 3;
    auto client = ClientFor(a.origin(), o, Basic("user", "pass"));
    HttpRequest req;
    req.path = "/loop";
    auto start = std::chrono::steady_clock::now();
    auto r = client.Send(req);
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    REQUIRE_FALSE(r.ok());
    CAPTURE(r.error().Message());
    CHECK(r.error().http_status == 302);
    CHECK_FALSE(r.error().temporary());
    CHECK(a.seen("/loop").size() == 4);  // the request and 3 redirects
  }
}

TEST_CASE("proxy authentication headers") {
  Peer peer;
  ServeWelcome(peer);
  peer.Start();

  SUBCASE("HMAC-SHA256 known vector (RFC 4231 case 2)") {
    Credentials c;
    c.kind = Credentials::Kind::kProxy;
    c.proxy.name = "what do ya want for nothing?";
    c.proxy.secret = "Jefe";
    c.proxy.roles = {"_admin", "reader", "writer"};
    auto client = ClientFor(peer.origin(), QuickOptions(), c);
    REQUIRE(client.GetServerInfo().ok());
    REQUIRE(client.GetServerInfo().ok());
    auto seen = peer.seen("/");
    REQUIRE(seen.size() == 2);
    for (const auto& s : seen) {
      CHECK(s.Header("X-Auth-CouchDB-UserName") == "what do ya want for nothing?");
      CHECK(s.Header("X-Auth-CouchDB-Roles") == "_admin,reader,writer");
      CHECK(s.Header("X-Auth-CouchDB-Token") ==
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
      CHECK(s.Count("Authorization") == 0);
    }
  }

  SUBCASE("token matches openssl dgst -hmac") {
    std::string out = ReadCommand("printf %s alice | openssl dgst -sha256 -hmac 's3cr3t-42'");
    auto eq = out.rfind("= ");
    REQUIRE(eq != std::string::npos);
    std::string expected = out.substr(eq + 2, 64);
    REQUIRE(expected.size() == 64);
    Credentials c;
    c.kind = Credentials::Kind::kProxy;
    c.proxy.name = "alice";
    c.proxy.secret = "s3cr3t-42";
    c.proxy.roles = {"reader"};
    REQUIRE(ClientFor(peer.origin(), QuickOptions(), c).GetServerInfo().ok());
    auto seen = peer.seen("/");
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].Header("X-Auth-CouchDB-UserName") == "alice");
    CHECK(seen[0].Header("X-Auth-CouchDB-Roles") == "reader");
    CHECK(seen[0].Header("X-Auth-CouchDB-Token") == expected);
  }

  SUBCASE("the header names are configurable ([chttpd_auth] x_auth_*)") {
    Credentials c;
    c.kind = Credentials::Kind::kProxy;
    c.proxy.name = "alice";
    c.proxy.secret = "s3cr3t-42";
    c.proxy.roles = {"reader", "writer"};
    c.proxy.username_header = "X-User";
    c.proxy.roles_header = "X-Roles";
    c.proxy.token_header = "X-Token";
    REQUIRE(ClientFor(peer.origin(), QuickOptions(), c).GetServerInfo().ok());
    auto seen = peer.seen("/");
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].Header("X-User") == "alice");
    CHECK(seen[0].Header("X-Roles") == "reader,writer");
    CHECK(seen[0].Header("X-Token").size() == 64);
    CHECK(seen[0].Count("X-Auth-CouchDB-UserName") == 0);
    CHECK(seen[0].Count("X-Auth-CouchDB-Token") == 0);
  }
}

TEST_CASE("inactivity timeout: a stalled answer fails temporarily after the retries") {
  Peer peer;
  std::atomic<int> attempts{0};
  peer.server().Get("/", [&](const httplib::Request&, httplib::Response& res) {
    ++attempts;
    // Headers go out, then the body never comes (until teardown).
    res.set_chunked_content_provider("application/json",
                                     [&peer](size_t, httplib::DataSink&) {
                                       peer.Stall(5000ms);
                                       return false;
                                     });
  });
  peer.Start();
  HttpOptions o = QuickOptions();
  o.inactivity_timeout = 300ms;
  o.retry.retries = 1;
  o.retry.initial_wait = 20ms;
  o.retry.budget = 10s;
  auto client = ClientFor(peer.origin(), o);
  auto start = std::chrono::steady_clock::now();
  auto info = client.GetServerInfo();
  auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(info.ok());
  CAPTURE(info.error().Message());
  CHECK(info.error().temporary());
  CHECK(info.error().http_status == 0);
  CHECK(info.error().reason.find("after 1 retries") != std::string::npos);
  CHECK(attempts == 2);
  CHECK(elapsed >= 550ms);  // two attempts, each waiting out the 300 ms
  CHECK(elapsed < 2s);
}

TEST_CASE("a server answering garbage gives a clear error") {
  Peer peer;
  std::string body;
  peer.server().Get("/", [&](const httplib::Request& req, httplib::Response& res) {
    peer.Record(req);
    res.set_content(body, "application/json");
  });
  peer.Start();
  auto client = ClientFor(peer.origin());
  for (const char* garbage : {"<html><body>It works!</body></html>", "[1,2,3]",
                              R"({"couchdb":"Welc)", "", "\xff\xfe{}"}) {
    body = garbage;
    CAPTURE(body);
    auto info = client.GetServerInfo();
    REQUIRE_FALSE(info.ok());
    CAPTURE(info.error().Message());
    CHECK(info.error().error == "bad_response");
    CHECK(info.error().reason.find("GET " + peer.origin() + "/") != std::string::npos);
    CHECK(info.error().reason.find("not the JSON expected") != std::string::npos);
  }
  body = kWelcome;  // and the same client still works
  CHECK(client.GetServerInfo().ok());
}

TEST_CASE("a _changes feed cut mid-body") {
  Peer peer;
  const std::string full = "{\"results\":[\n" + Row('a', 1) + ",\n" + Row('b', 2) + ",\n" +
                           Row('c', 3) + "\n],\n\"last_seq\":3,\"pending\":0}\n";
  // Two complete rows, then half of the third.
  const std::string head = full.substr(0, full.find(Row('c', 3)) + 20);
  std::atomic<int> attempts{0};
  bool end_chunked_cleanly = false;
  peer.server().Get("/db/_changes", [&](const httplib::Request&, httplib::Response& res) {
    ++attempts;
    res.set_chunked_content_provider(
        "application/json", [&](size_t offset, httplib::DataSink& sink) {
          if (offset == 0) {
            sink.write(head.data(), head.size());
            if (end_chunked_cleanly) {
              sink.done();
              return true;
            }
          }
          return false;  // drops the connection without the final chunk
        });
  });
  peer.Start();
  auto client = ClientFor(peer.origin()).Database("db");
  std::vector<std::string> ids;
  auto on_row = [&](ChangeRow&& row) {
    ids.push_back(row.id);
    return true;
  };

  SUBCASE("the connection drops") {
    end_chunked_cleanly = false;
  }
  SUBCASE("the response ends early") {
    end_chunked_cleanly = true;
  }
  CAPTURE(end_chunked_cleanly);
  auto r = client.Changes(ChangesRequest{}, on_row);
  REQUIRE_FALSE(r.ok());
  CAPTURE(r.error().Message());
  CHECK(r.error().temporary());
  if (end_chunked_cleanly) {
    CHECK(r.error().error == "bad_changes_feed");  // the parser saw the feed end inside a row
  } else {
    CHECK(r.error().error == "connection_failed");
    CHECK(r.error().reason.find("GET " + peer.origin() + "/db/_changes") != std::string::npos);
    CHECK(r.error().reason.find("last sequence received: 2") != std::string::npos);
  }
  CHECK(ids == std::vector<std::string>{"a", "b"});
  CHECK(attempts == 1);  // rows were delivered: the request is not replayed
}

}  // TEST_SUITE

// SPEC §10: out of file descriptors is named, and a changes feed does not spin
// on it.
TEST_CASE("out of file descriptors: the error says too many open files") {
  Peer peer;
  ServeWelcome(peer);
  peer.Start();
  auto client = ClientFor(peer.origin());
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  // The limit is on descriptor numbers: below the lowest free one, nothing new fits.
  int lowest_free = dup(0);
  REQUIRE(lowest_free >= 0);
  close(lowest_free);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(lowest_free);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  auto r = client.GetServerInfo();
  REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
  REQUIRE_FALSE(r.ok());
  CAPTURE(r.error().Message());
  CHECK(r.error().error == "too_many_open_files");
  CHECK(r.error().reason.find("too many open files") != std::string::npos);
  CHECK(client.GetServerInfo().ok());  // fine again once descriptors are free
}

TEST_CASE("a continuous feed gives up once failures outlast the retry budget") {
  Peer peer;
  std::atomic<int> asked{0};
  peer.server().Get("/db/_changes", [&](const httplib::Request&, httplib::Response& res) {
    ++asked;
    res.status = 503;
    res.set_content(R"({"error":"unavailable","reason":"down for maintenance"})", "application/json");
  });
  peer.Start();
  HttpOptions o = QuickOptions();
  o.retry.budget = 1s;
  auto db = ClientFor(peer.origin(), o).Database("db");
  CancelToken cancel;
  ChangesRequest req;
  req.heartbeat = 200ms;
  std::vector<std::string> reconnects;
  auto t0 = std::chrono::steady_clock::now();
  auto r = db.FollowChanges(req, [](ChangeRow&&) { return true; }, cancel,
                            [&](const Error& e) { reconnects.push_back(e.Message()); });
  REQUIRE_FALSE(r.ok());  // before: reconnected forever, its job shown `running`
  CAPTURE(r.error().Message());
  CHECK(r.error().reason.find("kept failing past retry.request_budget") != std::string::npos);
  CHECK(r.error().reason.find("down for maintenance") != std::string::npos);
  CHECK(reconnects.size() >= 1);
  CHECK(asked.load() >= 2);
  CHECK(std::chrono::steady_clock::now() - t0 < 20s);
}

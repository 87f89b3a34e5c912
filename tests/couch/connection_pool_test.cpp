// The shared connection pool (src/couch/connection_pool.h) against a real
// CouchDB-compatible server: clients with the same origin, credentials and
// settings share keep-alive connections, the host cap bounds them all
// together, and the cap can neither deadlock nor stall a call.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "couch/client_fixture.h"
#include "integration/replication_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;
using namespace std::chrono_literals;

namespace {

int64_t Accepted(TestServer& server) {
  auto r = server.Request("GET", "/_test/connections");
  REQUIRE(r.status == 200);
  return JsonInt(r.body, {"accepted"});
}

HttpOptions CappedOptions(int cap, Duration connect_timeout) {
  HttpOptions o = FastOptions();
  o.max_host_connections = cap;
  o.connect_timeout = connect_timeout;
  return o;
}

}  // namespace

TEST_CASE("connection pool: clients of one server share connections; other credentials get their own") {
  TestServer server({.admin = "admin:secret"});
  // Two clients made apart (two sessions, as two jobs have), used one after
  // the other: the second takes the first one's idle connection.
  CouchClient a = ServerClient(server, "admin:secret");
  CouchClient b = ServerClient(server, "admin:secret");
  REQUIRE(a.GetServerInfo().ok());
  REQUIRE(b.GetServerInfo().ok());
  REQUIRE(a.Database("_users").GetDbInfo().ok());
  REQUIRE(b.AllDbs().ok());
  CHECK(EstablishedTo(server.port()) == 1);

  // Other credentials (here: none) never get a connection that carried the
  // admin's requests.
  CouchClient anonymous = ServerClient(server);
  REQUIRE(anonymous.GetServerInfo().ok());
  CHECK(EstablishedTo(server.port()) == 2);
  // Nor do clients whose connection settings differ.
  HttpOptions other = FastOptions();
  other.inactivity_timeout = 11s;
  CouchClient c = ServerClient(server, "admin:secret", Credentials::Kind::kBasic, other);
  REQUIRE(c.GetServerInfo().ok());
  CHECK(EstablishedTo(server.port()) == 3);
}

TEST_CASE("connection pool: the host cap bounds the connections of all clients together") {
  TestServer server;
  constexpr int kClients = 6;
  const HttpOptions o = CappedOptions(2, 30s);
  std::vector<CouchClient> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(ServerClient(server, "", Credentials::Kind::kBasic, o));
  int64_t before = Accepted(server);
  // Every GET / takes 400 ms: six at once would need six connections.
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"({"method":"GET","path":"^/$","delay_ms":400,"count":6})")
              .status / 100 == 2);
  std::atomic<int> ok{0};
  std::atomic<bool> done{false};
  int most = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      if (clients[i].GetServerInfo().ok()) ++ok;
    });
  }
  std::thread watch([&] {
    while (!done) {
      most = std::max(most, EstablishedTo(server.port()));
      std::this_thread::sleep_for(10ms);
    }
  });
  for (auto& t : threads) t.join();
  done = true;
  watch.join();
  CHECK(ok == kClients);
  CHECK(most >= 1);
  CHECK(most <= 2);
  // Two for the clients, two for the fixture (the faults POST and this GET).
  CHECK(Accepted(server) - before <= 2 + 2);
}

TEST_CASE("connection pool: a call that holds a connection gets a second one at the cap at once") {
  // An attachment streamed from a source into an upload to the same host
  // holds the upload's connection while it reads: with a cap of 1 it would
  // wait for itself.
  TestServer server;
  const HttpOptions o = CappedOptions(1, 20s);
  CouchClient uploader = ServerClient(server, "", Credentials::Kind::kBasic, o).Database("nest");
  CouchClient reader = ServerClient(server, "", Credentials::Kind::kBasic, o).Database("nest");
  REQUIRE(uploader.CreateDb().ok());
  REQUIRE(uploader.PutDoc("src", R"({"body":"from the other client"})").ok());
  std::string read;
  auto start = std::chrono::steady_clock::now();
  auto put = uploader.PutAttachment(
      "dst", "a.txt", "", "text/plain", 4, [&](const std::function<bool(std::string_view)>& sink) {
        auto doc = reader.GetDoc("src");
        if (!doc.ok()) return false;
        read = *doc;
        return sink("data");
      });
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(put.ok());
  CHECK(read.find("from the other client") != std::string::npos);
  // Not after waiting out the connect timeout (20 s) for its own connection.
  CHECK(took < 10s);
}

TEST_CASE("connection pool: a call waits for the cap at most the connect timeout, and a cancel ends the wait") {
  TestServer server;
  const HttpOptions o = CappedOptions(1, 1s);
  CouchClient slow = ServerClient(server, "", Credentials::Kind::kBasic, o);
  CouchClient fast = ServerClient(server, "", Credentials::Kind::kBasic, o);
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"({"method":"GET","path":"^/$","delay_ms":4000,"count":1})")
              .status / 100 == 2);
  std::atomic<bool> slow_done{false};
  std::atomic<bool> fast_first{false};
  std::thread t([&] {
    CHECK(slow.GetServerInfo().ok());
    slow_done = true;
  });
  REQUIRE(WaitUntil([&] { return EstablishedTo(server.port()) == 1; }, 5s));
  // The one connection is busy for 4 s: after 1 s the second call opens one
  // over the cap and is answered before the first.
  CHECK(fast.AllDbs().ok());
  fast_first = !slow_done;
  CHECK(fast_first);
  t.join();
  // The surplus connection was closed when it came back.
  CHECK(WaitUntil([&] { return EstablishedTo(server.port()) <= 1; }, 5s));

  // A cancel ends a wait for the cap (here a long one).
  const HttpOptions patient = CappedOptions(1, 60s);
  CouchClient holder = ServerClient(server, "", Credentials::Kind::kBasic, patient);
  CouchClient waiter = ServerClient(server, "", Credentials::Kind::kBasic, patient);
  REQUIRE(server.Request("POST", "/_test/faults",
                         R"({"method":"GET","path":"^/$","delay_ms":3000,"count":1})")
              .status / 100 == 2);
  std::thread h([&] { CHECK(holder.GetServerInfo().ok()); });
  REQUIRE(WaitUntil([&] { return EstablishedTo(server.port()) >= 1; }, 5s));
  std::this_thread::sleep_for(200ms);
  CancelToken cancel;
  waiter.SetCancel(&cancel);
  std::thread canceller([&] {
    std::this_thread::sleep_for(300ms);
    cancel.Cancel();
  });
  auto r = waiter.AllDbs();
  canceller.join();
  h.join();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().error == "cancelled");
}

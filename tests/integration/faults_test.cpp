// Faults (issue 10): couchrepd under crashes, restarts, black holes, error and
// 429 storms, cut feeds, recreated databases, expiring sessions and a flooded
// status API. Every scenario runs real processes on loopback and ends with a
// full comparison of source and target and of the status API against the
// documents. The network faults come from tests/server/fault-proxy.js.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <random>

#include "integration/serve_helpers.h"
#include "support/corpus.h"
#include "support/fault_proxy.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// An open TCP connection to 127.0.0.1:port that sends nothing (-1 on failure).
int IdleConnection(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

struct Timed {
  int status = 0;
  int64_t ms = 0;
};

Timed TimedGet(int port, const std::string& path) {
  auto start = Clock::now();
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(30, 0);
  auto res = c.Get(path);
  return {res ? res->status : 0, MsSince(start)};
}

}  // namespace

TEST_SUITE("integration/faults") {

TEST_CASE("faults 9: the status API answers /health within 1 s under a flood of idle clients") {
  TestServer server;
  ServeProcess serve(ServeConfig(server));
  int port = StatusPort(serve);
  REQUIRE(WaitUntil([&] { return TimedGet(port, "/health").status == 200; }, 20s));

  constexpr int kIdle = 400;
  std::vector<int> idle;
  for (int i = 0; i < kIdle; ++i) {
    int fd = IdleConnection(port);
    if (fd >= 0) idle.push_back(fd);
  }
  REQUIRE(idle.size() == kIdle);
  // Some flooders also send half a request line and stop.
  for (int i = 0; i < 50; ++i) {
    const char partial[] = "GET /hea";
    CHECK(send(idle[i], partial, sizeof partial - 1, MSG_NOSIGNAL) > 0);
  }
  std::this_thread::sleep_for(500ms);  // the server has accepted them all
  for (int round = 0; round < 5; ++round) {
    CAPTURE(round);
    Timed health = TimedGet(port, "/health");
    CHECK(health.status == 200);
    CHECK(health.ms < 1000);
    Timed jobs = TimedGet(port, "/_scheduler/jobs");
    CHECK(jobs.status == 200);
    CHECK(jobs.ms < 1000);
    std::this_thread::sleep_for(1s);
  }
  for (int fd : idle) close(fd);
  // The service is unharmed.
  CHECK(serve.process().running());
  CHECK(TimedGet(port, "/health").status == 200);
}

}  // TEST_SUITE

// `serve` under a service manager (issue 12): systemd's notify protocol,
// checked from a NOTIFY_SOCKET of the test's own (a Unix datagram socket).
#include <httplib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "integration/serve_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

// A bound datagram socket standing in for systemd's notify socket.
class NotifySocket {
 public:
  NotifySocket() {
    path_ = "/tmp/couchrepd-notify-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++);
    ::unlink(path_.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof addr.sun_path);
    path_.copy(addr.sun_path, path_.size());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

  // The next message, or "" when none came within `timeout`.
  std::string Next(std::chrono::milliseconds timeout) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }
  // Messages until one contains `what` (returned) or `timeout` passes ("").
  std::string WaitFor(const std::string& what, std::chrono::milliseconds timeout,
                      std::vector<std::string>* seen = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string m = Next(std::chrono::milliseconds(200));
      if (m.empty()) continue;
      if (seen) seen->push_back(m);
      if (m.find(what) != std::string::npos) return m;
    }
    return "";
  }

 private:
  static inline int counter_ = 0;
  std::string path_;
  int fd_ = -1;
};

}  // namespace

TEST_CASE("serve under systemd: READY once the feeds connect, STATUS, WATCHDOG, STOPPING") {
#ifndef COUCHREPD_HAVE_SYSTEMD
  MESSAGE("built without libsystemd: serve sends no notifications; nothing to check");
  return;
#else
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("sd-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 5);
  NotifySocket sock;
  ServeProcess serve(ServeConfig(server),
                     {"NOTIFY_SOCKET=" + sock.path(), "WATCHDOG_USEC=1000000"});
  std::vector<std::string> before_ready;
  std::string ready = sock.WaitFor("READY=1", 20s, &before_ready);
  INFO(serve.Log().substr(0, 3000));
  REQUIRE_FALSE(ready.empty());
  // Ready means: the status API listens and the replicator feed is connected.
  CHECK(ready.find("STATUS=") != std::string::npos);
  CHECK(ready.find("1/1 replicator feeds connected") != std::string::npos);
  CHECK(serve.Log().find("status API on http://127.0.0.1:") != std::string::npos);
  httplib::Client status("127.0.0.1", StatusPort(serve));
  auto health = status.Get("/health/ready");
  REQUIRE(health);
  CHECK(health->status == 200);
  before_ready.pop_back();  // the READY message itself
  for (const auto& m : before_ready) CHECK(m.find("READY=1") == std::string::npos);

  // Watchdog pings while the engine lives (WatchdogSec=1s: every 0.5 s).
  int pings = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < 2500ms) {
    if (sock.Next(300ms).find("WATCHDOG=1") != std::string::npos) ++pings;
  }
  CHECK(pings >= 3);

  // STATUS follows the jobs.
  auto rep = root.Database("_replicator");
  REQUIRE(rep.PutDoc("c", R"({"source":")" + server.url() + R"(/sd-src","target":")" + server.url() +
                              R"(/sd-tgt","create_target":true,"continuous":true})")
              .ok());
  CHECK_FALSE(sock.WaitFor("STATUS=1 running", 20s).empty());

  serve.process().Signal(SIGTERM);
  CHECK_FALSE(sock.WaitFor("STOPPING=1", 10s).empty());
  auto code = serve.process().Wait(15s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
#endif
}

// The shipped unit file (etc/systemd/couchrepd.service) is one systemd
// accepts: `systemd-analyze verify`, with ExecStart pointed at this build.
TEST_CASE("the systemd unit passes systemd-analyze verify") {
  if (std::system("command -v systemd-analyze >/dev/null 2>&1") != 0) {
    MESSAGE("systemd-analyze is not installed: the unit file was not verified");
    return;
  }
  std::ifstream in(COUCHREPD_SOURCE_DIR "/etc/systemd/couchrepd.service");
  REQUIRE(in);
  std::string unit((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(unit.find("Type=notify") != std::string::npos);
  CHECK(unit.find("ExecReload=/bin/kill -HUP $MAINPID") != std::string::npos);
  const std::string exec = "/usr/bin/couchrepd";
  size_t at = unit.find("ExecStart=" + exec);
  REQUIRE(at != std::string::npos);
  unit.replace(at + 10, exec.size(), COUCHREPD_BINARY);
  const std::string dir = "/tmp/couchrepd-unit-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/couchrepd.service") << unit;
  const std::string out_file = dir + "/verify.out";
  int rc = std::system(("systemd-analyze verify " + dir + "/couchrepd.service >" + out_file + " 2>&1").c_str());
  std::ifstream out(out_file);
  std::string said((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  INFO("systemd-analyze said: " << said);
  CHECK(rc == 0);
  CHECK(said.find("couchrepd.service") == std::string::npos);  // no complaint about it
  std::filesystem::remove_all(dir);
}

// A real `couchrepd serve` process against a real test server, for the
// service's integration scenarios.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "integration/replication_helpers.h"

namespace couchrepd::testing {

using namespace std::chrono_literals;

// Fast settings so scenarios take seconds, not minutes.
inline std::string ServeConfig(const TestServer& server, const std::string& extra_replicator = "",
                               const std::string& extra_top = "") {
  return "server:\n  url: " + server.url() +
         "\n  request_timeout: 5s\n  connect_timeout: 2s\n"
         "replicator:\n  heartbeat: 1s\n  discover_interval: 1s\n" + extra_replicator +
         "scheduler:\n  interval: 1s\n  backoff: {initial: 1s, max: 2s}\n  health_threshold: 3s\n"
         "replication:\n  checkpoint_interval: 1s\n  retries_per_request: 2\n"
         "retry:\n  request_initial_wait: 50ms\n  request_budget: 5s\n"
         "status:\n  listen: 127.0.0.1:0\n"
         "log:\n  level: debug\n"
         "shutdown_timeout: 10s\n" + extra_top;
}

class ServeProcess {
 public:
  explicit ServeProcess(const std::string& config_yaml, std::vector<std::string> env = {}) {
    char name[] = "/tmp/couchrepd-serve-XXXXXX";
    int fd = mkstemp(name);
    close(fd);
    path_ = name;
    Rewrite(config_yaml);
    process_ = std::make_unique<Process>(
        std::vector<std::string>{COUCHREPD_BINARY, "serve", "--config", path_}, std::move(env));
  }
  ~ServeProcess() {
    process_.reset();
    std::remove(path_.c_str());
  }
  void Rewrite(const std::string& config_yaml) { std::ofstream(path_) << config_yaml; }
  Process& process() { return *process_; }
  std::string Log() const { return process_->Stderr(); }

 private:
  std::string path_;
  std::unique_ptr<Process> process_;
};

// The `_replication_state` of a document ("" when none, "<gone>" when missing).
inline std::string StateOf(CouchClient& db, const std::string& id) {
  auto doc = db.GetDoc(id);
  if (!doc.ok()) return "<gone>";
  std::string s = JsonText(*doc, {"_replication_state"});
  return s == "<missing>" ? "" : s;
}

inline bool WaitForState(CouchClient& db, const std::string& id, const std::string& state,
                         std::chrono::milliseconds timeout = 30s) {
  return WaitUntil([&] { return StateOf(db, id) == state; }, timeout);
}

// The port of "status API on http://127.0.0.1:PORT/" in the serve log.
inline int StatusPort(ServeProcess& serve) {
  int port = 0;
  const std::string marker = "status API on http://127.0.0.1:";
  WaitUntil(
      [&] {
        std::string log = serve.Log();
        size_t at = log.find(marker);
        if (at == std::string::npos) return false;
        port = std::atoi(log.c_str() + at + marker.size());
        return true;
      },
      std::chrono::seconds(20));
  INFO(serve.Log());
  REQUIRE(port > 0);
  return port;
}

}  // namespace couchrepd::testing

// Test fixture: the fault-injecting HTTP proxy (tests/server/fault-proxy.js) between couchrepd
// and a test server, started as a child process on free loopback ports.
//
//   couchrepd::testing::FaultProxy proxy(server.url());
//   // ... point couchrepd at proxy.url() ...
//   proxy.AddFaults(R"({"path":"_changes","probability":0.3,"status":503})");
//   proxy.Blackhole(true);   // accept, never answer; in-flight answers freeze
//   proxy.Down(true);        // connections refused
//   proxy.Clear();           // every fault and mode off
//
// The script is COUCHREPD_FAULT_PROXY_JS when set, else COUCHREPD_SOURCE_DIR/tests/server/
// fault-proxy.js; `node` comes from PATH. The proxy dies with the test. See tests/server/README.md
// for the control API.
#ifndef COUCHREPD_TESTS_SUPPORT_FAULT_PROXY_H_
#define COUCHREPD_TESTS_SUPPORT_FAULT_PROXY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace couchrepd::testing {

class Process;

class FaultProxy {
 public:
  struct Options {
    std::string tls_cert;  // PEM files: the client side speaks HTTPS (upstream stays HTTP)
    std::string tls_key;
  };
  // One request as the proxy saw it (GET /log).
  struct Entry {
    int64_t t_ms = 0;     // since the proxy started
    std::string method;
    std::string path;     // raw path and query
    std::string auth;     // "basic", "cookie" or "none"
    int status = 0;       // 0 while pending or never answered
    std::string fault;    // "" or the fault's action
  };

  // Starts the proxy in front of `upstream` ("http://127.0.0.1:PORT") and waits (at most 20 s)
  // for its start line. Throws std::runtime_error with the proxy's output on failure.
  explicit FaultProxy(const std::string& upstream, Options options = {});
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  // "http://127.0.0.1:PORT" (https in TLS mode), without a trailing slash.
  const std::string& url() const { return url_; }
  int port() const { return port_; }

  // POST /faults with a rule object or an array of them (JSON text).
  void AddFaults(const std::string& rules_json);
  // DELETE /faults: no rules, black hole and down mode off.
  void Clear();
  void Blackhole(bool on);
  void Down(bool on);
  // Cuts every in-flight answer whose path+query matches `path_regex`; how many were cut.
  int Cut(const std::string& path_regex);
  // GET /stats as JSON text.
  std::string Stats() const;
  // Requests logged from index `since` on; `next` receives the index to ask from next time.
  std::vector<Entry> Log(int64_t since = 0, int64_t* next = nullptr) const;

  std::string Output() const;  // the proxy's stdout and stderr, for diagnostics

 private:
  std::string Control(const std::string& method, const std::string& path,
                      const std::string& body = "") const;

  std::unique_ptr<Process> process_;
  std::string url_;
  int port_ = 0;
  int control_port_ = 0;
};

}  // namespace couchrepd::testing

#endif  // COUCHREPD_TESTS_SUPPORT_FAULT_PROXY_H_

// ConnectionPool: keep-alive connections to one origin, shared by every
// HttpSession (so every job) with the same credentials and connection
// settings, capped per host and closed after the idle timeout.
//
// A session still caps its own requests in flight (HttpOptions::
// max_connections, a job's http_connections); the pool caps the connections
// all of them open to the host together (max_host_connections). A thread
// that already holds a connection of the pool (an attachment streamed from a
// source into an upload to the same host) is never made to wait for a
// second one, and no call waits for a free connection longer than the
// connect timeout: past it the pool opens one over the cap (and closes the
// surplus when it is returned), so a cap set too low slows jobs down but
// never stalls them. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "couchrepd/couch_client.h"

namespace httplib {
class Client;
}

namespace couchrepd {

// What decides whether two sessions may share connections. Compared whole;
// never logged (it holds the password).
struct PoolKey {
  std::string origin;  // scheme://host:port
  bool https = false;
  bool tls_verify = true;
  std::string ca_file;
  Duration connect_timeout{};
  Duration inactivity_timeout{};
  bool keepalive = true;
  bool nodelay = true;
  Duration idle_timeout{};
  int max_host_connections = 0;  // 0: no cap
  Credentials::Kind credentials = Credentials::Kind::kNone;
  std::string username;
  std::string password;
  std::string proxy_name;
  auto operator<=>(const PoolKey&) const = default;
};

PoolKey MakePoolKey(const Url& url, std::string origin, const Credentials& credentials,
                    const HttpOptions& options);

// A new httplib client for the key's origin and settings (pooled or not).
std::unique_ptr<httplib::Client> NewHttpClient(const PoolKey& key,
                                               std::optional<Duration> read_timeout,
                                               bool decompress);

class ConnectionPool {
 public:
  // The pool of `key`, shared while anyone holds it.
  static std::shared_ptr<ConnectionPool> For(const PoolKey& key);
  explicit ConnectionPool(PoolKey key);
  ~ConnectionPool();

  // A connection: an idle one (most recently used first) or a new one. Waits
  // while the host is at its cap (see above); null when `cancel` fires first.
  std::unique_ptr<httplib::Client> Acquire(CancelToken* cancel);
  // Gives a connection back: kept for reuse when `reusable` and the host is
  // not over its cap, else closed.
  void Release(std::unique_ptr<httplib::Client> client, bool reusable);
  // Closes connections idle since before `now` minus the idle timeout.
  void CloseIdle(std::chrono::steady_clock::time_point now);

 private:
  PoolKey key_;
  std::mutex mu_;
  std::condition_variable cv_;
  struct IdleConnection {
    std::unique_ptr<httplib::Client> client;
    std::chrono::steady_clock::time_point since;  // returned to the pool
  };
  std::vector<IdleConnection> idle_;  // oldest first
  int in_use_ = 0;
};

}  // namespace couchrepd

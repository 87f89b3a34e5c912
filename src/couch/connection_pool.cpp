// ConnectionPool: keep-alive connections shared per origin and credentials (see the header).
#include "connection_pool.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <csignal>
#include <iterator>
#include <map>
#include <thread>

namespace couchrepd {

namespace {

// Pooled connections this thread holds now (of any pool): such a thread
// never waits for another, so nested calls cannot deadlock on the cap.
thread_local int held_connections = 0;

constexpr auto kCancelCheck = std::chrono::milliseconds(100);

// The live pools, and one thread that closes their idle connections about
// once a second (replication.idle_connection_timeout): an idle job holds no
// sockets, and the pool holds none for long.
class Registry {
 public:
  static Registry& Get() {
    static Registry* registry = new Registry();  // never destroyed: pools may outlive main
    return *registry;
  }

  std::shared_ptr<ConnectionPool> For(const PoolKey& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = pools_[key];
    auto pool = slot.lock();
    if (!pool) {
      pool = std::make_shared<ConnectionPool>(key);
      slot = pool;
    }
    if (!reaper_started_) StartReaper();  // it also forgets pools no one holds
    return pool;
  }

 private:
  void StartReaper() {
    reaper_started_ = true;
    // The reaper takes no signals: a command that waits for SIGINT/SIGTERM
    // on a thread of its own may create the first pool before it blocks
    // them, and the reaper would inherit them unblocked and be the thread
    // the kernel picks (killing `replicate` without its checkpoint).
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    std::thread([this] { Loop(); }).detach();
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }

  void Loop() {
    while (true) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      std::vector<std::shared_ptr<ConnectionPool>> live;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto it = pools_.begin(); it != pools_.end();) {
          auto pool = it->second.lock();
          if (!pool) {
            it = pools_.erase(it);
            continue;
          }
          if (it->first.idle_timeout > Duration::zero()) live.push_back(std::move(pool));
          ++it;
        }
      }
      auto now = std::chrono::steady_clock::now();
      for (auto& pool : live) pool->CloseIdle(now);
      // The last reference to a pool may go here; its sockets close with it.
    }
  }

  std::mutex mu_;
  std::map<PoolKey, std::weak_ptr<ConnectionPool>> pools_;
  bool reaper_started_ = false;
};

}  // namespace

PoolKey MakePoolKey(const Url& url, std::string origin, const Credentials& credentials,
                    const HttpOptions& options) {
  PoolKey key;
  key.origin = std::move(origin);
  key.https = url.scheme == "https";
  key.tls_verify = options.tls_verify;
  key.ca_file = options.ca_file;
  key.connect_timeout = options.connect_timeout;
  key.inactivity_timeout = options.inactivity_timeout;
  key.keepalive = options.keepalive;
  key.nodelay = options.nodelay;
  key.idle_timeout = options.idle_connection_timeout;
  key.max_host_connections = options.max_host_connections;
  key.credentials = credentials.kind;
  key.username = credentials.username;
  key.password = credentials.password;
  key.proxy_name = credentials.proxy.name;
  return key;
}

std::unique_ptr<httplib::Client> NewHttpClient(const PoolKey& key,
                                               std::optional<Duration> read_timeout,
                                               bool decompress) {
  auto client = std::make_unique<httplib::Client>(key.origin);
  client->set_decompress(decompress);
  client->set_connection_timeout(key.connect_timeout);
  client->set_read_timeout(read_timeout.value_or(key.inactivity_timeout));
  client->set_write_timeout(key.inactivity_timeout);
  client->set_keep_alive(true);
  client->set_tcp_nodelay(key.nodelay);
  bool keepalive = key.keepalive;
  bool nodelay = key.nodelay;
  client->set_socket_options([keepalive, nodelay](socket_t sock) {
    int on = keepalive ? 1 : 0;
    setsockopt(sock, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    int nd = nodelay ? 1 : 0;
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &nd, sizeof nd);
  });
  client->set_follow_location(false);
  if (key.https) {
    client->enable_server_certificate_verification(key.tls_verify);
    if (!key.ca_file.empty()) client->set_ca_cert_path(key.ca_file);
  }
  return client;
}

std::shared_ptr<ConnectionPool> ConnectionPool::For(const PoolKey& key) {
  return Registry::Get().For(key);
}

ConnectionPool::ConnectionPool(PoolKey key) : key_(std::move(key)) {}
ConnectionPool::~ConnectionPool() = default;

std::unique_ptr<httplib::Client> ConnectionPool::Acquire(CancelToken* cancel) {
  std::unique_lock<std::mutex> lock(mu_);
  const int cap = key_.max_host_connections;
  if (cap > 0 && held_connections == 0) {
    auto deadline = std::chrono::steady_clock::now() + key_.connect_timeout;
    while (idle_.empty() && in_use_ >= cap) {
      if (cancel && cancel->cancelled()) return nullptr;
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) break;  // over the cap rather than a stall
      cv_.wait_until(lock, std::min(deadline, now + kCancelCheck));
    }
  }
  ++in_use_;
  ++held_connections;
  if (!idle_.empty()) {
    auto client = std::move(idle_.back().client);  // the most recently used
    idle_.pop_back();
    return client;
  }
  lock.unlock();
  return NewHttpClient(key_, std::nullopt, true);
}

void ConnectionPool::Release(std::unique_ptr<httplib::Client> client, bool reusable) {
  std::unique_ptr<httplib::Client> surplus;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --in_use_;
    --held_connections;
    const int cap = key_.max_host_connections;
    bool over = cap > 0 && in_use_ + static_cast<int>(idle_.size()) >= cap;
    if (reusable && client && !over) {
      idle_.push_back(IdleConnection{std::move(client), std::chrono::steady_clock::now()});
    } else {
      surplus = std::move(client);
    }
    cv_.notify_one();
  }
  // A surplus socket closes here, outside the lock.
}

void ConnectionPool::CloseIdle(std::chrono::steady_clock::time_point now) {
  std::vector<IdleConnection> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto cutoff = now - key_.idle_timeout;
    auto keep = std::find_if(idle_.begin(), idle_.end(),
                             [&](const IdleConnection& c) { return c.since > cutoff; });
    expired.assign(std::make_move_iterator(idle_.begin()), std::make_move_iterator(keep));
    idle_.erase(idle_.begin(), keep);
  }
  // The sockets close here, outside the lock.
}

}  // namespace couchrepd

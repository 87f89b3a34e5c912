#include "gated_http_server.h"

#include <netdb.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace couchrepd {

namespace {

// The largest request header looked for; a longer one goes to httplib, which
// refuses it.
constexpr size_t kPeekBytes = 16 * 1024;

bool WaitFor(socket_t sock, short events, std::chrono::milliseconds timeout) {
  pollfd p{sock, events, 0};
  int n;
  do {
    n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (n < 0 && errno == EINTR);
  return n > 0 && (p.revents & (events | POLLHUP | POLLERR)) != 0;
}

void CloseSocket(socket_t sock) {
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
}

// A plain socket as httplib's Stream, with the server's timeouts.
class SocketStream final : public httplib::Stream {
 public:
  SocketStream(socket_t sock, std::chrono::milliseconds read_timeout,
               std::chrono::milliseconds write_timeout)
      : sock_(sock), read_timeout_(read_timeout), write_timeout_(write_timeout) {}

  bool is_readable() const override { return WaitFor(sock_, POLLIN, read_timeout_); }
  bool is_writable() const override { return WaitFor(sock_, POLLOUT, write_timeout_); }

  // httplib reads a header one byte at a time: try without waiting first.
  ssize_t read(char* ptr, size_t size) override {
    for (bool waited = false;; waited = true) {
      ssize_t n = ::recv(sock_, ptr, size, MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if ((errno != EAGAIN && errno != EWOULDBLOCK) || waited || !is_readable()) return -1;
    }
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do {
      n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    Address(::getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    Address(::getsockname, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  template <typename F>
  void Address(F get, std::string& ip, int& port) const {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (get(sock_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return;
    std::array<char, NI_MAXHOST> host{};
    std::array<char, NI_MAXSERV> serv{};
    if (getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host.data(), host.size(),
                    serv.data(), serv.size(), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
      ip = host.data();
      port = std::atoi(serv.data());
    }
  }

  socket_t sock_;
  std::chrono::milliseconds read_timeout_;
  std::chrono::milliseconds write_timeout_;
};

enum class Peeked { kWaiting, kReady, kGone };

// Whether a whole request header is waiting on `sock`, without reading it.
Peeked PeekHeader(socket_t sock) {
  static thread_local std::array<char, kPeekBytes> buffer;
  ssize_t n;
  do {
    n = ::recv(sock, buffer.data(), buffer.size(), MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return Peeked::kGone;
  if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? Peeked::kWaiting : Peeked::kGone;
  std::string_view seen(buffer.data(), static_cast<size_t>(n));
  if (seen.find("\r\n\r\n") != std::string_view::npos || seen.find("\n\n") != std::string_view::npos ||
      static_cast<size_t>(n) == buffer.size()) {
    return Peeked::kReady;
  }
  return Peeked::kWaiting;
}

}  // namespace

GatedHttpServer::GatedHttpServer(Limits limits) : limits_(limits) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ >= 0 && wake_fd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  }
  room_ = std::thread([this] { RoomLoop(); });
  for (size_t i = 0; i < std::max<size_t>(1, limits_.workers); ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

GatedHttpServer::~GatedHttpServer() {
  StopGate();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void GatedHttpServer::StopGate() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && !room_.joinable()) return;
    stopping_ = true;
  }
  ready_cv_.notify_all();
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
  if (room_.joinable()) room_.join();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  while (!parked_.empty()) Drop(parked_.begin()->first);
  for (socket_t sock : ready_) CloseSocket(sock);
  ready_.clear();
}

size_t GatedHttpServer::parked() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return parked_.size();
}

// Called on httplib's pool for each accepted connection: park it at once, so
// that pool thread is free again.
bool GatedHttpServer::process_and_close_socket(socket_t sock) {
  Park(sock, Clock::now() + std::chrono::seconds(read_timeout_sec_) +
                 std::chrono::microseconds(read_timeout_usec_));
  return true;
}

void GatedHttpServer::Park(socket_t sock, Clock::time_point deadline) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_ || epoll_fd_ < 0) {
    CloseSocket(sock);
    return;
  }
  while (parked_.size() >= limits_.max_parked && !by_deadline_.empty()) {
    Drop(by_deadline_.begin()->second);
  }
  epoll_event ev{};
  // Edge-triggered: a header still incomplete wakes the room again only when
  // more bytes arrive.
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.fd = sock;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, sock, &ev) != 0) {
    CloseSocket(sock);
    return;
  }
  parked_[sock] = deadline;
  by_deadline_.emplace(deadline, sock);
}

bool GatedHttpServer::Unpark(socket_t sock) {
  auto it = parked_.find(sock);
  if (it == parked_.end()) return false;
  auto range = by_deadline_.equal_range(it->second);
  for (auto d = range.first; d != range.second; ++d) {
    if (d->second == sock) {
      by_deadline_.erase(d);
      break;
    }
  }
  parked_.erase(it);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, sock, nullptr);
  return true;
}

void GatedHttpServer::Drop(socket_t sock) {
  if (Unpark(sock)) CloseSocket(sock);
}

void GatedHttpServer::RoomLoop() {
  std::array<epoll_event, 64> events{};
  for (;;) {
    int timeout_ms = 1000;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      // Expired connections are closed; the next deadline bounds the wait.
      const auto now = Clock::now();
      while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
        Drop(by_deadline_.begin()->second);
      }
      if (!by_deadline_.empty()) {
        auto until = std::chrono::duration_cast<std::chrono::milliseconds>(
                         by_deadline_.begin()->first - now).count() + 1;
        timeout_ms = static_cast<int>(std::min<int64_t>(timeout_ms, until));
      }
    }
    int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR) return;
    bool handed = false;
    std::lock_guard<std::mutex> lock(mutex_);
    for (int i = 0; i < n; ++i) {
      socket_t sock = events[i].data.fd;
      if (sock == wake_fd_) continue;
      if (parked_.count(sock) == 0) continue;
      Peeked state = PeekHeader(sock);
      if (state == Peeked::kWaiting && (events[i].events & (EPOLLHUP | EPOLLERR)) == 0) continue;
      if (state == Peeked::kGone || (events[i].events & EPOLLERR) != 0) {
        Drop(sock);
        continue;
      }
      // A whole header (or a half-closed client with a request): serve it.
      Unpark(sock);
      ready_.push_back(sock);
      handed = true;
    }
    if (handed) ready_cv_.notify_all();
  }
}

void GatedHttpServer::WorkerLoop() {
  for (;;) {
    socket_t sock;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_cv_.wait(lock, [&] { return stopping_ || !ready_.empty(); });
      if (stopping_) return;
      sock = ready_.front();
      ready_.pop_front();
    }
    Serve(sock);
  }
}

void GatedHttpServer::Serve(socket_t sock) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  SocketStream stream(
      sock,
      duration_cast<milliseconds>(std::chrono::seconds(read_timeout_sec_) +
                                  std::chrono::microseconds(read_timeout_usec_)),
      duration_cast<milliseconds>(std::chrono::seconds(write_timeout_sec_) +
                                  std::chrono::microseconds(write_timeout_usec_)));
  bool connection_closed = false;
  bool ok = process_request(stream, /*close_connection=*/false, connection_closed, nullptr);
  if (!ok || connection_closed || !is_running()) {
    CloseSocket(sock);
    return;
  }
  Park(sock, Clock::now() + std::chrono::seconds(keep_alive_timeout_sec_));
}

}  // namespace couchrepd

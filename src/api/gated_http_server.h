// GatedHttpServer: a cpp-httplib server whose threads only ever work on
// connections that have a whole request header waiting.
//
// httplib gives every accepted connection a pool thread, which then blocks
// reading the request (up to the read timeout) or waiting for the next
// keep-alive request: a few hundred idle or half-sent connections take every
// thread, and /health stops answering. Here an accepted connection is parked in
// one epoll "waiting room" until its request header is complete (peeked, not
// read), then a worker serves that one request and parks the connection again
// for the next. A parked connection is closed when its deadline passes (the
// read timeout for a first request, the keep-alive timeout between requests),
// and when too many are parked the oldest go first.
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace couchrepd {

class GatedHttpServer : public httplib::Server {
 public:
  // The deadlines are httplib's own settings: the read timeout from connect
  // to a whole first header, the keep-alive timeout between requests.
  struct Limits {
    size_t max_parked = 4096;  // the oldest are closed beyond this
    size_t workers = 4;
  };
  explicit GatedHttpServer(Limits limits);
  GatedHttpServer() : GatedHttpServer(Limits{}) {}
  ~GatedHttpServer() override;

  // After httplib's stop(): ends the waiting room and the workers and closes
  // every parked connection. Idempotent.
  void StopGate();

  size_t parked() const;  // connections waiting now

 private:
  using Clock = std::chrono::steady_clock;
  bool process_and_close_socket(socket_t sock) override;
  void Park(socket_t sock, Clock::time_point deadline);
  void Serve(socket_t sock);
  void RoomLoop();
  void WorkerLoop();
  bool Unpark(socket_t sock);  // mutex held: forget it (false if not parked)
  void Drop(socket_t sock);    // mutex held: forget and close

  Limits limits_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: wakes the room to stop
  mutable std::mutex mutex_;
  std::condition_variable ready_cv_;
  bool stopping_ = false;
  // Parked sockets and their deadlines (both ways, for expiry and eviction).
  std::unordered_map<socket_t, Clock::time_point> parked_;
  std::multimap<Clock::time_point, socket_t> by_deadline_;
  std::deque<socket_t> ready_;
  std::thread room_;
  std::vector<std::thread> workers_;
};

}  // namespace couchrepd

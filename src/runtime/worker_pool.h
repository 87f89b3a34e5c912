// WorkerPool: fixed threads running posted tasks in FIFO order, serially per key
// (or from one shared queue).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace couchrepd {

// A simple FIFO worker pool with per-key ordering: `key` hashes tasks to a
// fixed thread. With `shared_queue`, every thread takes the oldest task
// (keys are ignored): no task waits behind a long one while a thread is free.
// A task that throws is logged and skipped.
class WorkerPool {
 public:
  WorkerPool(int threads, const char* name, bool shared_queue = false);
  ~WorkerPool() { Stop(); }
  void Post(size_t key, std::function<void()> task);
  // Before every queued task (of key's queue).
  void PostFront(size_t key, std::function<void()> task);
  // Runs the tasks already posted, then joins every thread. Past `allowed`,
  // the tasks not started are dropped and `at_deadline` is called (to cut
  // the ones running short) before joining.
  void Stop(std::chrono::steady_clock::duration allowed = std::chrono::steady_clock::duration::max(),
            const std::function<void()>& at_deadline = {});

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    bool stop = false;
  };
  void Run(Queue& q);
  const char* name_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<std::thread> threads_;
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  size_t running_ = 0;  // threads not yet returned from Run
};

}  // namespace couchrepd

// WorkerPool: per-key queues and the shared queue of the run pool.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "worker_pool.h"

namespace couchrepd {
namespace {

using namespace std::chrono_literals;

// A task that blocks until released.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return open; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
};

TEST_CASE("worker pool, shared queue: a long task does not hold up the others while a thread is free") {
  WorkerPool pool(2, "test", /*shared_queue=*/true);
  Gate gate;
  std::atomic<int> done{0};
  pool.Post(0, [&] { gate.Wait(); });
  for (int i = 0; i < 5; ++i) pool.Post(0, [&] { ++done; });
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (done.load() < 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK(done.load() == 5);
  gate.Open();
  pool.Stop();
}

TEST_CASE("worker pool, per-key queues: tasks of one key run in order behind a long one") {
  WorkerPool pool(2, "test");
  Gate gate;
  std::mutex mu;
  std::vector<std::string> order;
  pool.Post(0, [&] { gate.Wait(); std::lock_guard<std::mutex> l(mu); order.push_back("long"); });
  pool.Post(2, [&] { std::lock_guard<std::mutex> l(mu); order.push_back("same key"); });
  std::this_thread::sleep_for(100ms);
  {
    std::lock_guard<std::mutex> l(mu);
    CHECK(order.empty());  // key 2 shares key 0's thread
  }
  gate.Open();
  pool.Stop();
  CHECK(order == std::vector<std::string>{"long", "same key"});
}

TEST_CASE("worker pool: PostFront runs before the tasks already queued") {
  WorkerPool pool(1, "test", /*shared_queue=*/true);
  Gate gate;
  std::mutex mu;
  std::vector<int> order;
  pool.Post(0, [&] { gate.Wait(); });
  pool.Post(0, [&] { std::lock_guard<std::mutex> l(mu); order.push_back(1); });
  pool.PostFront(0, [&] { std::lock_guard<std::mutex> l(mu); order.push_back(2); });
  gate.Open();
  pool.Stop();
  CHECK(order == std::vector<int>{2, 1});
}

}  // namespace
}  // namespace couchrepd

// WorkerPool: the write-back and replication id threads of the engine.
#include "worker_pool.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

namespace couchrepd {

WorkerPool::WorkerPool(int threads, const char* name) : name_(name) {
  // Every queue exists before the first thread runs: a thread must never
  // read queues_ while it is still growing (found by TSan).
  for (int i = 0; i < threads; ++i) queues_.push_back(std::make_unique<Queue>());
  for (auto& q : queues_) {
    Queue* queue = q.get();
    threads_.emplace_back([this, queue] { Run(*queue); });
  }
}

void WorkerPool::Post(size_t key, std::function<void()> task) {
  Queue& q = *queues_[key % queues_.size()];
  std::lock_guard<std::mutex> lock(q.mu);
  q.tasks.push_back(std::move(task));
  q.cv.notify_one();
}

void WorkerPool::Stop() {
  for (auto& q : queues_) {
    std::lock_guard<std::mutex> lock(q->mu);
    q->stop = true;
    q->cv.notify_all();
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void WorkerPool::Run(Queue& q) {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(q.mu);
      q.cv.wait(lock, [&] { return q.stop || !q.tasks.empty(); });
      if (q.tasks.empty()) return;  // stopping and drained
      task = std::move(q.tasks.front());
      q.tasks.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      spdlog::error("{} task failed: {}", name_, e.what());
    }
  }
}

}  // namespace couchrepd

// WorkerPool: the write-back and replication id threads of the engine.
#include "worker_pool.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

namespace couchrepd {

WorkerPool::WorkerPool(int threads, const char* name, bool shared_queue) : name_(name) {
  // Every queue exists before the first thread runs: a thread must never
  // read queues_ while it is still growing (found by TSan).
  int queues = shared_queue ? 1 : threads;
  for (int i = 0; i < queues; ++i) queues_.push_back(std::make_unique<Queue>());
  running_ = static_cast<size_t>(threads);
  for (int i = 0; i < threads; ++i) {
    Queue* queue = queues_[static_cast<size_t>(i) % queues_.size()].get();
    threads_.emplace_back([this, queue] { Run(*queue); });
  }
}

void WorkerPool::PostFront(size_t key, std::function<void()> task) {
  Queue& q = *queues_[key % queues_.size()];
  std::lock_guard<std::mutex> lock(q.mu);
  q.tasks.push_front(std::move(task));
  q.cv.notify_one();
}

void WorkerPool::Post(size_t key, std::function<void()> task) {
  Queue& q = *queues_[key % queues_.size()];
  std::lock_guard<std::mutex> lock(q.mu);
  q.tasks.push_back(std::move(task));
  q.cv.notify_one();
}

void WorkerPool::Stop(std::chrono::steady_clock::duration allowed,
                      const std::function<void()>& at_deadline) {
  for (auto& q : queues_) {
    std::lock_guard<std::mutex> lock(q->mu);
    q->stop = true;
    q->cv.notify_all();
  }
  bool drained;
  {
    std::unique_lock<std::mutex> lock(done_mu_);
    auto done = [&] { return running_ == 0; };
    if (allowed == std::chrono::steady_clock::duration::max()) {
      done_cv_.wait(lock, done);
      drained = true;
    } else {
      drained = done_cv_.wait_for(lock, allowed, done);
    }
  }
  if (!drained) {
    size_t dropped = 0;
    for (auto& q : queues_) {
      std::lock_guard<std::mutex> lock(q->mu);
      dropped += q->tasks.size();
      q->tasks.clear();
    }
    spdlog::warn("{}: out of time, {} queued tasks dropped", name_, dropped);
    if (at_deadline) at_deadline();
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
      if (q.tasks.empty()) {  // stopping and drained
        std::lock_guard<std::mutex> done(done_mu_);
        --running_;
        done_cv_.notify_all();
        return;
      }
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

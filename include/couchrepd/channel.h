// Channel<T>: a bounded, closable multi-producer multi-consumer queue.
//
// The replication pipeline's threads talk only through channels: the changes
// reader pushes rows (blocking while the channel is full, which bounds memory),
// workers pop up to a batch of rows at a time. Close() wakes everyone: pushes
// fail and pops drain what is left, then return nothing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

namespace couchrepd {

template <typename T>
class Channel {
 public:
  explicit Channel(size_t capacity) : capacity_(capacity ? capacity : 1) {}

  // Blocks while full. False when the channel is closed.
  bool Push(T item) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
    if (closed_) return false;
    items_.push_back(std::move(item));
    if (filling_ == 0 || items_.size() >= filling_) not_empty_.notify_one();
    return true;
  }

  // Waits for at least one item (or close), then up to `linger` more for the
  // batch to fill, and takes up to `max` items. Empty result: closed and
  // drained. `on_take` runs under the channel's lock with the taken items, so
  // callers can number batches in feed order.
  template <typename F>
  std::vector<T> PopUpTo(size_t max, std::chrono::milliseconds linger, F&& on_take) {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      not_empty_.wait(lock, [&] { return closed_ || !items_.empty(); });
      if (!closed_ && items_.size() < max && linger.count() > 0) {
        filling_ = max;
        not_empty_.wait_for(lock, linger, [&] { return closed_ || items_.size() >= max; });
        filling_ = 0;
      }
      // While this popper lingered (the lock released), a rival may have
      // taken everything: wait again rather than report "closed".
      if (closed_ || !items_.empty()) break;
    }
    std::vector<T> out;
    while (!items_.empty() && out.size() < max) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
    if (!out.empty()) on_take(out);
    not_full_.notify_all();
    return out;
  }

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }

  // Drops everything queued (after a failure) and closes.
  void Abort() {
    std::lock_guard<std::mutex> lock(mu_);
    items_.clear();
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }

  // Empties and reopens the channel for another round; only while no thread
  // pushes or pops.
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    items_.clear();
    closed_ = false;
    filling_ = 0;
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<T> items_;
  size_t capacity_;
  size_t filling_ = 0;  // a popper lingers until this many items are queued
  bool closed_ = false;
};

}  // namespace couchrepd

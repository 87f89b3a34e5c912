// Channel: several consumers with bursty producers; every consumer stays
// alive until the channel is closed.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "couchrepd/channel.h"

using namespace couchrepd;

TEST_CASE("Channel::PopUpTo returns empty only once closed and drained, even with lingering rivals") {
  Channel<int> ch(64);
  constexpr int kConsumers = 4;
  std::atomic<int> early_exits{0};
  std::atomic<int> taken{0};
  std::atomic<bool> closed{false};
  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&] {
      while (true) {
        auto batch = ch.PopUpTo(8, std::chrono::milliseconds(5), [](const std::vector<int>&) {});
        if (batch.empty()) {
          if (!closed.load()) early_exits.fetch_add(1);
          return;
        }
        taken.fetch_add(static_cast<int>(batch.size()));
      }
    });
  }
  // Bursts of one or two items: while one consumer lingers for its batch to
  // fill, a rival wakes for the same items and takes them.
  int pushed = 0;
  for (int burst = 0; burst < 400; ++burst) {
    for (int k = 0; k < 1 + burst % 2; ++k) {
      REQUIRE(ch.Push(pushed++));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(burst % 3 == 0 ? 2000 : 50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  closed.store(true);
  ch.Close();
  for (auto& t : consumers) t.join();
  CHECK(early_exits.load() == 0);
  CHECK(taken.load() == pushed);
}

// Clock: the only way code reads the time or sleeps.
//
// The pure core takes time points as arguments; the runtime gets them from a
// Clock. Tests pass a FakeClock so that backoff and retry sequences are exact
// and no test sleeps. Implementations must be safe to call from any thread.
#pragma once

#include <chrono>

namespace couchrepd {

using Duration = std::chrono::milliseconds;
using TimePoint = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  // Sleeps for `d` (a fake clock advances its time instead).
  virtual void SleepFor(Duration d) = 0;
  // Wall-clock seconds since the Unix epoch, for timestamps shown to users.
  virtual double UnixSeconds() const = 0;
};

// The real clock (steady_clock for durations, system_clock for timestamps).
Clock& SystemClock();

}  // namespace couchrepd

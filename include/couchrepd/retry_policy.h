// Request-level retry and 429 pacing arithmetic (SPEC §2.4 level 1, §2.5).
//
// Failures are handled at three nested levels, each bounded by the one above:
//   1. request  — a failed HTTP request (connection error, timeout, 408, 5xx)
//                 is retried `retries` times, waiting `initial_wait` doubling
//                 up to `max_wait`, and never for longer than `budget` in all.
//                 429 answers do not spend retries: they slow the endpoint
//                 down through a Pacer instead.
//   2. job      — a job whose request gave up crashes and is restarted by the
//                 scheduler after its own exponential backoff (30 s .. 8 h).
//   3. document — a temporary failure before a job exists is retried by the
//                 document processor with randomised exponential backoff.
// This file holds level 1. Pure: callers pass the current time in.
#pragma once

#include <chrono>
#include <optional>

#include "couchrepd/clock.h"
#include "couchrepd/result.h"

namespace couchrepd {

using namespace std::chrono_literals;

struct RetrySettings {
  int retries = 5;                   // retries after the first attempt
  Duration initial_wait = 250ms;     // wait before the first retry
  Duration max_wait = 5min;          // cap of one wait
  Duration budget = 60s;             // total time from the first attempt
};

// True when retrying the request may succeed: no response (connection error,
// timeout) or an HTTP 408 / 5xx answer. 429 is not "retryable" here: it is
// paced (see Pacer).
bool IsRetryableFailure(const Error& e);

// The plan for one request: call NextWait after each failed attempt.
class RetryPlan {
 public:
  RetryPlan(const RetrySettings& settings, TimePoint first_attempt);

  // How long to wait before the next attempt, or nullopt to give up (the
  // error is not retryable, the retries are spent, or the wait would end
  // after the budget).
  std::optional<Duration> NextWait(const Error& e, TimePoint now);
  int retries_done() const { return retries_done_; }

 private:
  RetrySettings settings_;
  TimePoint first_attempt_;
  Duration next_wait_;
  int retries_done_ = 0;
};

struct PacingSettings {
  Duration initial = 20ms;   // first pause after a 429
  double factor = 1.2;       // multiplicative growth per 429
  Duration max = 25s;        // the pause never exceeds this
  Duration decrease = 20ms;  // additive shrink per success (the step below 100 ms)
};

// Additive-decrease / multiplicative-increase of the pause before each request
// to one endpoint and method, as CouchDB's replicator rate limiter does:
// - a 429 multiplies the pause by `factor` (at least `initial`, at most `max`);
// - a success takes `decrease` off, ×2 above 100 ms, ×5 above 1 s and ×50
//   above 10 s (20/40/100/1000 ms by default);
// - quiet time decays it: a success more than 1 s after the last update first
//   takes 2 ms off per ms beyond that second, so the pause of a long storm is
//   gone a request or two after the storm ends instead of hundreds;
// - updates less than 80 ms after the last are ignored (concurrent workers
//   hitting the same 429 or success count once).
// Not thread-safe: the owner locks.
class Pacer {
 public:
  explicit Pacer(PacingSettings settings = {}) : settings_(settings) {}
  Duration Pause() const { return pause_; }
  void OnRateLimited(TimePoint now);
  void OnSuccess(TimePoint now);
  // True once the pause has reached its maximum: a job that keeps hitting it
  // fails with `max_backoff` (SPEC §2.5).
  bool AtMax() const { return pause_ >= settings_.max; }

 private:
  // False (and nothing changes) within 80 ms of the last update.
  bool UpdateAllowed(TimePoint now) const;

  PacingSettings settings_;
  Duration pause_{0};
  std::optional<TimePoint> last_update_;
};

}  // namespace couchrepd

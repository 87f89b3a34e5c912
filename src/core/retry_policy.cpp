#include "couchrepd/retry_policy.h"

#include <algorithm>

namespace couchrepd {

bool IsRetryableFailure(const Error& e) {
  if (e.http_status == 0) return e.temporary();
  return e.http_status == 408 || e.http_status >= 500;
}

RetryPlan::RetryPlan(const RetrySettings& settings, TimePoint first_attempt)
    : settings_(settings), first_attempt_(first_attempt), next_wait_(settings.initial_wait) {}

std::optional<Duration> RetryPlan::NextWait(const Error& e, TimePoint now) {
  if (!IsRetryableFailure(e)) return std::nullopt;
  if (retries_done_ >= settings_.retries) return std::nullopt;
  Duration wait = std::min(next_wait_, settings_.max_wait);
  if (now + wait - first_attempt_ > settings_.budget) return std::nullopt;
  next_wait_ = std::min(next_wait_ * 2, settings_.max_wait);
  ++retries_done_;
  return wait;
}

namespace {
constexpr Duration kMinUpdateGap = std::chrono::milliseconds(80);
constexpr Duration kQuietThreshold = std::chrono::seconds(1);
constexpr int kQuietDecayFactor = 2;
}  // namespace

bool Pacer::UpdateAllowed(TimePoint now) const {
  return !last_update_ || now - *last_update_ >= kMinUpdateGap;
}

void Pacer::OnRateLimited(TimePoint now) {
  if (!UpdateAllowed(now)) return;
  last_update_ = now;
  if (pause_ < settings_.initial) {
    pause_ = settings_.initial;
  } else {
    auto grown = std::chrono::duration_cast<Duration>(pause_ * settings_.factor);
    pause_ = std::min(std::max(grown, pause_ + Duration(1)), settings_.max);
  }
}

void Pacer::OnSuccess(TimePoint now) {
  if (pause_ == Duration(0)) return;
  if (!UpdateAllowed(now)) return;
  Duration quiet = last_update_ ? std::chrono::duration_cast<Duration>(now - *last_update_) : Duration(0);
  last_update_ = now;
  if (quiet > kQuietThreshold) {
    Duration decay = (quiet - kQuietThreshold) * kQuietDecayFactor;
    pause_ = pause_ > decay ? pause_ - decay : Duration(0);
  }
  int steps = pause_ > std::chrono::seconds(10)        ? 50
              : pause_ > std::chrono::seconds(1)       ? 5
              : pause_ > std::chrono::milliseconds(100) ? 2
                                                        : 1;
  Duration step = settings_.decrease * steps;
  pause_ = pause_ > step ? pause_ - step : Duration(0);
}

}  // namespace couchrepd

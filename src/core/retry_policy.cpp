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

void Pacer::OnRateLimited() {
  if (pause_ < settings_.initial) {
    pause_ = settings_.initial;
  } else {
    auto grown = std::chrono::duration_cast<Duration>(pause_ * settings_.factor);
    pause_ = std::min(std::max(grown, pause_ + Duration(1)), settings_.max);
  }
}

void Pacer::OnSuccess() {
  pause_ = pause_ > settings_.decrease ? pause_ - settings_.decrease : Duration(0);
}

}  // namespace couchrepd

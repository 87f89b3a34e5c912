#include "couchrepd/http_metrics.h"

#include <mutex>

namespace couchrepd {

namespace {

struct Registry {
  std::mutex mu;
  HttpMetricsSnapshot counters;
};

Registry& TheRegistry() {
  static Registry* registry = new Registry();  // never destroyed: job threads may outlive main
  return *registry;
}

}  // namespace

void RecordHttpEvent(const HttpEvent& event) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto& hosts = r.counters.hosts;
  auto it = hosts.find(event.host);
  if (it == hosts.end()) {
    // kOtherHosts itself is created once the labelled ones are taken.
    bool full = hosts.size() - hosts.count(kOtherHosts) >= kMaxHostLabels;
    it = hosts.try_emplace(full ? std::string(kOtherHosts) : event.host).first;
  }
  HostHttpCounters& c = it->second;
  switch (event.kind) {
    case HttpEvent::Kind::kResponse:
      if (event.status >= 500) {
        ++c.status_5xx;
      } else if (event.status >= 400) {
        ++c.status_4xx;
      } else if (event.status >= 300) {
        ++c.status_3xx;
      } else {
        ++c.status_2xx;  // 1xx never reaches the caller
      }
      break;
    case HttpEvent::Kind::kConnectionError:
      ++c.connection_errors;
      break;
    case HttpEvent::Kind::kRetry:
      ++c.retries;
      break;
    case HttpEvent::Kind::kRateLimited:
      ++c.rate_limited;
      break;
  }
}

HttpMetricsSnapshot HttpMetrics() {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.counters;
}

void ResetHttpMetrics() {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.counters.hosts.clear();
}

}  // namespace couchrepd

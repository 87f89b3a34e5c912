// HttpMetrics: a process-wide count of the HTTP requests couchrepd makes, for
// the status API's `/metrics` (SPEC §7).
//
// Every CouchClient built with `HttpOptions::observer = RecordHttpEvent`
// reports each response (counted by its status class), connection error,
// retry and 429 pacing event here, keyed by the endpoint's `host:port` (never
// a URL, never credentials). The counters only grow; the renderer reads a
// copy (HttpMetrics()).
//
// Hosts come from replication documents, which anyone who may write one
// chooses: the first kMaxHostLabels hosts seen get a label of their own,
// every later one is counted under kOtherHosts, so the series stay bounded.
//
// Thread-safe: RecordHttpEvent is called from every job and feed thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "couchrepd/couch_client.h"

namespace couchrepd {

struct HostHttpCounters {
  // Requests by outcome: a response by its status class, or no response.
  uint64_t status_2xx = 0;
  uint64_t status_3xx = 0;
  uint64_t status_4xx = 0;
  uint64_t status_5xx = 0;
  uint64_t connection_errors = 0;  // refused, reset, timed out, TLS failure
  uint64_t retries = 0;            // requests sent again after a failure
  uint64_t rate_limited = 0;       // 429 answers that slowed the pacing down
  bool operator==(const HostHttpCounters&) const = default;
};

inline constexpr size_t kMaxHostLabels = 64;
inline constexpr const char* kOtherHosts = "other";

struct HttpMetricsSnapshot {
  std::map<std::string, HostHttpCounters> hosts;  // by "host:port"
};

// The observer to put in HttpOptions.
void RecordHttpEvent(const HttpEvent& event);
// A copy of every counter.
HttpMetricsSnapshot HttpMetrics();
// Forgets every counter (tests only).
void ResetHttpMetrics();

}  // namespace couchrepd

// Limits on what couchrepd accepts from the network (SPEC §10).
//
// Anyone who can write a replication document can point couchrepd at a server
// of their choosing, so text and bodies read from the network are bounded
// before they are kept, logged, written back or served. Pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace couchrepd {

// Text taken from a server (error reasons, bodies of failed requests) is cut
// to this many bytes before it is redacted, logged, written back or served.
inline constexpr size_t kMaxServerTextBytes = 1024;
// Default byte cap on a response read whole (limits.max_response_bytes), and
// on one row / part of a streamed response.
inline constexpr uint64_t kDefaultMaxResponseBytes = 64ull << 20;
// Bounds on the HTTP head of a response.
inline constexpr size_t kMaxResponseHeaders = 256;
// A document may carry at most this many revisions in one request or answer.
inline constexpr size_t kMaxRevsPerDoc = 10000;
// Nesting depth of JSON couchrepd handles (simdjson's own limit): a fetched
// document nested deeper is a write failure, not a job failure.
inline constexpr size_t kMaxJsonDepth = 1024;

// Cuts `text` to at most `max` bytes (never inside a UTF-8 sequence) and
// marks the cut: "<first bytes>… (cut, 40960 bytes)". Shorter text comes back
// unchanged.
std::string CapText(std::string_view text, size_t max = kMaxServerTextBytes);

}  // namespace couchrepd

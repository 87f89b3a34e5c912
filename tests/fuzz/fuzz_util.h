// Shared helpers of the libFuzzer targets: splitting the input and checking contracts.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace couchrepd::fuzz {

// A broken contract is a crash for libFuzzer: print what and abort, so the
// input is saved and the run fails.
#define FUZZ_CHECK(cond, what)                                                        \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "contract broken at %s:%d: %s\n  (%s)\n", __FILE__, __LINE__, \
                   std::string(what).c_str(), #cond);                                 \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

// Reads option bytes off the front of the input; what is left is the payload.
class Input {
 public:
  Input(const uint8_t* data, size_t size)
      : rest_(reinterpret_cast<const char*>(data), size) {}

  uint8_t Byte() {
    if (rest_.empty()) return 0;
    auto b = static_cast<uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }
  uint64_t Word() {
    uint64_t w = 0;
    for (int i = 0; i < 8; ++i) w = (w << 8) | Byte();
    return w;
  }
  // Up to the first '\n' (not included), at most `max` bytes; consumes the '\n'.
  std::string_view Line(size_t max) {
    size_t n = rest_.find('\n');
    if (n == std::string_view::npos || n > max) n = std::min(max, rest_.size());
    std::string_view line = rest_.substr(0, n);
    rest_.remove_prefix(n);
    if (!rest_.empty() && rest_.front() == '\n') rest_.remove_prefix(1);
    return line;
  }
  std::string_view Rest() const { return rest_; }

 private:
  std::string_view rest_;
};

// Deterministic chunk sizes for feeding a body in pieces (splitmix64).
class Splitter {
 public:
  explicit Splitter(uint64_t seed) : state_(seed) {}
  // The size of the next piece: mostly tiny (0..8 bytes, 0 included, to hit
  // every split position), sometimes up to 256.
  size_t Next() {
    uint64_t r = Mix();
    return (r & 7) == 0 ? static_cast<size_t>((r >> 8) % 257) : static_cast<size_t>((r >> 8) % 9);
  }

 private:
  uint64_t Mix() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

// Calls feed(piece) for consecutive pieces of `body` chosen by `splitter`,
// until the body is used up or feed returns false.
template <typename Feed>
void FeedInPieces(std::string_view body, Splitter& splitter, Feed&& feed) {
  size_t at = 0;
  while (at < body.size()) {
    size_t n = std::min(splitter.Next(), body.size() - at);
    if (!feed(body.substr(at, n))) return;
    at += n;
  }
}

inline bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

}  // namespace couchrepd::fuzz

#include "couchrepd/duration.h"

#include <array>
#include <cctype>
#include <cstdint>
#include <limits>

#include "couchrepd/encoding.h"

namespace couchrepd {

namespace {

struct Unit {
  std::string_view name;
  int64_t ms;
};

// Largest first: FormatDuration walks this list in order.
constexpr std::array<Unit, 5> kUnits = {{
    {"d", 24 * 60 * 60 * 1000},
    {"h", 60 * 60 * 1000},
    {"m", 60 * 1000},
    {"s", 1000},
    {"ms", 1},
}};

Error DurationError(std::string reason) {
  return Error::Permanent("bad_duration", std::move(reason));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  std::string_view s = TrimAsciiSpace(text);
  if (s.empty()) return DurationError("is empty; needs a number and a unit, e.g. 30s");
  if (s.front() == '-') return DurationError("must not be negative");
  if (s.front() == '+') s.remove_prefix(1);

  int64_t total = 0;
  size_t i = 0;
  while (i < s.size()) {
    if (!IsDigit(s[i])) {
      return DurationError(
          "must be a whole number followed by a unit (ms, s, m, h or d), e.g. 30s");
    }
    int64_t number = 0;
    for (; i < s.size() && IsDigit(s[i]); ++i) {
      int digit = s[i] - '0';
      if (number > (kMax - digit) / 10) return DurationError("is too large");
      number = number * 10 + digit;
    }
    if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
      return DurationError("must use whole numbers, e.g. 1500ms instead of 1.5s");
    }
    size_t unit_start = i;
    while (i < s.size() && IsLetter(s[i])) ++i;
    std::string_view unit_name = s.substr(unit_start, i - unit_start);
    if (unit_name.empty()) {
      if (i == s.size()) return DurationError("needs a unit, e.g. 30s");
      return DurationError(
          "must be a whole number followed by a unit (ms, s, m, h or d), e.g. 30s");
    }
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (u.name == unit_name) unit = &u;
    }
    if (unit == nullptr) {
      return DurationError("has an unknown unit \"" + std::string(unit_name) +
                           "\" (use ms, s, m, h or d)");
    }
    if (number > kMax / unit->ms) return DurationError("is too large");
    int64_t part = number * unit->ms;
    if (total > kMax - part) return DurationError("is too large");
    total += part;
  }
  return std::chrono::milliseconds(total);
}

std::string FormatDuration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  uint64_t rest;
  if (ms < 0) {
    out = "-";
    rest = static_cast<uint64_t>(-(ms + 1)) + 1;  // no overflow for the minimum
  } else {
    rest = static_cast<uint64_t>(ms);
  }
  for (const Unit& u : kUnits) {
    uint64_t n = rest / static_cast<uint64_t>(u.ms);
    if (n == 0) continue;
    out += std::to_string(n);
    out += u.name;
    rest -= n * static_cast<uint64_t>(u.ms);
  }
  return out;
}

}  // namespace couchrepd

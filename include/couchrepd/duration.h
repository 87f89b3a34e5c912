// Durations as people write them in configuration: "250ms", "30s", "5m".
//
// A duration is one or more groups of a whole number and a unit, written
// without spaces: `ms`, `s`, `m` (minutes), `h` or `d` (24 h), e.g. "250ms",
// "8h", "1m30s". A bare number is rejected because its unit would be a guess
// (CouchDB counts in milliseconds, most tools in seconds). Fractions and
// negative values are rejected too. Pure and thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "couchrepd/result.h"

namespace couchrepd {

// Parses `text` (surrounding whitespace ignored). The error is permanent, code
// "bad_duration", and its reason says what is wrong in plain words, e.g.
// "needs a unit, e.g. 30s"; it does not repeat the input.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

// The shortest exact spelling that ParseDuration reads back to `d`: "0s",
// "250ms", "2m", "1m30s", "1d2h". Negative values get a leading '-'.
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace couchrepd

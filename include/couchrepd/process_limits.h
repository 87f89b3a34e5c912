#pragma once
// Process-wide resource limits couchrepd adjusts at start (SPEC §10).

#include <cstdint>
#include <string>

namespace couchrepd {

struct FileLimit {
  uint64_t before = 0;  // soft limit found at start
  uint64_t soft = 0;    // soft limit now
  uint64_t hard = 0;
};

// Raises the soft limit on open files to the hard limit (every job holds
// sockets; the usual soft limit of 1,024 is reached with a few hundred jobs)
// and logs what it found and set.
FileLimit RaiseFileLimit();

}  // namespace couchrepd

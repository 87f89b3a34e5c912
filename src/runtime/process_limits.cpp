// Raises the open-files soft limit to the hard limit at start (SPEC §10).
#include "couchrepd/process_limits.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

namespace couchrepd {

FileLimit RaiseFileLimit() {
  FileLimit out;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return out;
  out.before = out.soft = static_cast<uint64_t>(lim.rlim_cur);
  out.hard = static_cast<uint64_t>(lim.rlim_max);
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) out.soft = out.hard;
  }
  if (out.soft != out.before) {
    spdlog::info("open files limit: soft raised from {} to {} (hard {})", out.before, out.soft, out.hard);
  } else {
    spdlog::info("open files limit: soft {}, hard {}", out.soft, out.hard);
  }
  return out;
}

}  // namespace couchrepd

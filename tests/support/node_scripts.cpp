#include "support/node_scripts.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <stdexcept>

#ifndef COUCHREPD_SOURCE_DIR
#define COUCHREPD_SOURCE_DIR ""
#endif

namespace couchrepd::testing {

std::string FindNode(const std::string& who) {
  const char* env = std::getenv("PATH");
  std::string path_env = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  std::stringstream dirs(path_env);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/node";
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  throw std::runtime_error(who + ": `node` was not found in PATH (" + path_env + ")");
}

std::string NodeScript(const std::string& who, const char* env_var, const std::string& file_name) {
  const char* env = std::getenv(env_var);
  std::string path = (env != nullptr && *env != '\0')
                         ? std::string(env)
                         : std::string(COUCHREPD_SOURCE_DIR) + "/tests/server/" + file_name;
  if (access(path.c_str(), R_OK) != 0) {
    throw std::runtime_error(who + ": cannot read the script " + path);
  }
  return path;
}

}  // namespace couchrepd::testing

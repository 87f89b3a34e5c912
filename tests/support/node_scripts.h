// Finding `node` and the Node.js test programs (tests/server/*.js) that the
// fixtures start as child processes.
#pragma once

#include <string>

namespace couchrepd::testing {

// The first executable `node` in PATH. Throws std::runtime_error naming `who`.
std::string FindNode(const std::string& who);

// The environment variable `env_var` when set, else
// COUCHREPD_SOURCE_DIR/tests/server/`file_name`; it must be readable. Throws
// std::runtime_error naming `who`.
std::string NodeScript(const std::string& who, const char* env_var, const std::string& file_name);

}  // namespace couchrepd::testing

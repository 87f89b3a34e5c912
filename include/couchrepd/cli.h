// The command-line front end: one function per subcommand.
//
// Each returns the process exit code: 0 success, 1 failure at run time,
// 2 bad usage or bad configuration.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace couchrepd {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Default configuration path when --config is not given.
constexpr const char* kDefaultConfigPath = "etc/couchrepd.yaml";

// Prints `command`'s help text (src/cli/help.cpp) on stdout and returns
// kExitOk: what `couchrepd COMMAND --help` does.
int PrintCommandHelp(std::string_view command);

int RunCheckConfig(const std::vector<std::string>& args);
int RunReplicate(const std::vector<std::string>& args);
int RunServe(const std::vector<std::string>& args);
int RunStatus(const std::vector<std::string>& args);

}  // namespace couchrepd

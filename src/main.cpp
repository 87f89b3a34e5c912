// couchrepd: runs CouchDB replications beside a CouchDB server.
// main only dispatches: args -> subcommand (src/cli) -> exit code.
#include <malloc.h>

#include <cstdio>
#include <string>
#include <vector>

#include "couchrepd/cli.h"
#include "couchrepd/log.h"

#ifndef COUCHREPD_VERSION
#define COUCHREPD_VERSION "dev"
#endif

namespace {

constexpr const char* kUsage = R"(couchrepd — CouchDB replication as a sidecar service

Usage:
  couchrepd serve [--config FILE]          follow _replicator and run its replications
  couchrepd replicate SOURCE TARGET [...]  run one replication in the foreground
  couchrepd check-config [--config FILE]   validate the configuration and reach the server
  couchrepd status [--server URL] [DOC_ID] what a running serve is doing (status --help)
  couchrepd --help | --version

FILE defaults to etc/couchrepd.yaml. Exit codes: 0 ok, 1 failure, 2 bad usage or
bad configuration.
)";

}  // namespace

int main(int argc, char** argv) {
  // Buffers of 1 MiB and more (response bodies) get their own mappings and go
  // back to the system when freed. glibc's default threshold adapts upwards to
  // 32 MiB, after which the buffers a growing 64 MiB body leaves behind stay
  // resident in the heap and double its peak (SPEC §10 memory bound).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? couchrepd::kExitUsage : couchrepd::kExitOk;
  }
  if (args[0] == "--version" || args[0] == "-V") {
    std::printf("couchrepd %s\n", COUCHREPD_VERSION);
    return couchrepd::kExitOk;
  }
  couchrepd::InitLogging("info", couchrepd::LogFormat::kText);
  std::string command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "check-config") return couchrepd::RunCheckConfig(rest);
  if (command == "replicate") return couchrepd::RunReplicate(rest);
  if (command == "serve") return couchrepd::RunServe(rest);
  if (command == "status") return couchrepd::RunStatus(rest);
  std::fprintf(stderr, "couchrepd: unknown command `%s`\n\n%s", command.c_str(), kUsage);
  return couchrepd::kExitUsage;
}

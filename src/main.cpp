// couchrepd: runs CouchDB replications beside a CouchDB server.
// main only dispatches: args -> subcommand (src/cli) -> exit code. Every help
// text comes from src/cli/help.cpp.
#include <malloc.h>

#include <cstdio>
#include <string>
#include <vector>

#include "couchrepd/cli.h"
#include "couchrepd/help.h"
#include "couchrepd/log.h"

#ifndef COUCHREPD_VERSION
#define COUCHREPD_VERSION "dev"
#endif

namespace {

// `couchrepd help [COMMAND]` (also `--help [COMMAND]`, `-h [COMMAND]`).
int Help(const std::vector<std::string>& args) {
  if (args.size() > 2) {
    std::fprintf(stderr, "couchrepd: help takes one COMMAND at most\n\n%s",
                 couchrepd::OverviewHelp().c_str());
    return couchrepd::kExitUsage;
  }
  if (args.size() < 2 || args[1] == "help" || args[1] == "--help" || args[1] == "-h") {
    std::fputs(couchrepd::OverviewHelp().c_str(), stdout);
    return couchrepd::kExitOk;
  }
  auto text = couchrepd::HelpFor(args[1]);
  if (!text.ok()) {
    std::fprintf(stderr, "couchrepd: help: %s\n", text.error().reason.c_str());
    return couchrepd::kExitUsage;
  }
  std::fputs(text->c_str(), stdout);
  return couchrepd::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // Buffers of 1 MiB and more (response bodies) get their own mappings and go
  // back to the system when freed. glibc's default threshold adapts upwards to
  // 32 MiB, after which the buffers a growing 64 MiB body leaves behind stay
  // resident in the heap and double its peak (SPEC §10 memory bound).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(couchrepd::OverviewHelp().c_str(), stderr);
    return couchrepd::kExitUsage;
  }
  if (args[0] == "help" || args[0] == "--help" || args[0] == "-h") return Help(args);
  if (args[0] == "--help-all") {  // hidden: every text, for help2man (the man page)
    std::fputs(couchrepd::ManualHelp().c_str(), stdout);
    return couchrepd::kExitOk;
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
  std::fprintf(stderr, "couchrepd: unknown command `%s`\n\n%s", command.c_str(),
               couchrepd::OverviewHelp().c_str());
  return couchrepd::kExitUsage;
}

// `couchrepd serve [--config FILE]`: the service. SIGTERM/SIGINT stop it
// gracefully (every running job checkpoints), SIGHUP reloads the config.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "couchrepd/cli.h"
#include "couchrepd/config.h"
#include "couchrepd/engine.h"
#include "couchrepd/log.h"
#include "couchrepd/server_connection.h"

namespace couchrepd {

namespace {

LogFormat FormatOf(const Config& c) {
  return c.log.format == Config::Log::Format::kJson ? LogFormat::kJson : LogFormat::kText;
}

}  // namespace

int RunServe(const std::vector<std::string>& args) {
  std::string path = kDefaultConfigPath;
  for (size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--config" || args[i] == "-c") && i + 1 < args.size()) {
      path = args[++i];
    } else if (args[i].rfind("--config=", 0) == 0) {
      path = args[i].substr(9);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: couchrepd serve [--config FILE]   (default %s)\n", kDefaultConfigPath);
      return kExitOk;
    } else {
      std::fprintf(stderr, "serve: unknown argument `%s`\n", args[i].c_str());
      return kExitUsage;
    }
  }
  auto config = LoadConfigFile(path, RealEnv);
  if (!config.ok()) {
    std::fprintf(stderr, "%s: invalid configuration:\n%s\n", path.c_str(),
                 config.error().reason.c_str());
    return kExitUsage;
  }
  RegisterConfigSecrets(*config);
  InitLogging(Name(config->log.level), FormatOf(*config));

  // Signals are taken by this thread only (every other thread inherits the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Engine engine(*config);
  Status started = engine.Start();
  if (!started.ok()) {
    spdlog::error("cannot start: {}", started.error().Message());
    return kExitFailure;
  }
  spdlog::info("couchrepd serving (config {})", path);
  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      auto next = LoadConfigFile(path, RealEnv);
      if (!next.ok()) {
        spdlog::error("SIGHUP: configuration not reloaded: {}", next.error().reason);
        continue;
      }
      engine.Reload(*next);
      continue;
    }
    spdlog::info("{} received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    break;
  }
  engine.Shutdown();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace couchrepd

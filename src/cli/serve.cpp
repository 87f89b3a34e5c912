// `couchrepd serve [--config FILE]`: the service. SIGTERM/SIGINT stop it
// gracefully (every running job checkpoints), SIGHUP reloads the config.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "couchrepd/cli.h"
#include "couchrepd/config.h"
#include "couchrepd/process_limits.h"
#include "couchrepd/engine.h"
#include "couchrepd/log.h"
#include "couchrepd/server_connection.h"
#include "couchrepd/status_server.h"

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
  RaiseFileLimit();

  // Signals are taken by this thread only (every other thread inherits the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Engine engine(*config);
  StatusHooks hooks;
  hooks.snapshot = [&engine] { return engine.Snapshot(); };
  hooks.reset = [&engine](const std::string& id) { return engine.ResetJob(id); };
  hooks.pause = [&engine](const std::string& id) { return engine.PauseJob(id); };
  hooks.resume = [&engine](const std::string& id) { return engine.ResumeJob(id); };
  StatusServer status(config->status, std::move(hooks));
  // A taken status address fails before the engine does any work; requests
  // are served only once the engine runs.
  Status bound = status.Bind();
  if (!bound.ok()) {
    spdlog::error("cannot start: {}", bound.error().Message());
    return kExitFailure;
  }
  Status started = engine.Start();
  if (!started.ok()) {
    spdlog::error("cannot start: {}", started.error().Message());
    return kExitFailure;
  }
  Status listening = status.Start();
  if (!listening.ok()) {
    spdlog::error("cannot start: {}", listening.error().Message());
    engine.Shutdown();
    return kExitFailure;
  }
  const std::string& host = config->status.listen_host;
  spdlog::info("status API on http://{}:{}/",
               host.find(':') != std::string::npos ? "[" + host + "]" : host, status.port());
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
  status.Stop();
  engine.Shutdown();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace couchrepd

// `couchrepd serve [--config FILE]`: the service. SIGTERM/SIGINT stop it
// gracefully (every running job checkpoints), SIGHUP reloads the config. Its
// help text is in src/cli/help.cpp.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "couchrepd/cli.h"
#include "couchrepd/config.h"
#include "couchrepd/process_limits.h"
#include "couchrepd/service_notify.h"
#include "couchrepd/status_render.h"
#include "couchrepd/engine.h"
#include "couchrepd/log.h"
#include "couchrepd/server_connection.h"
#include "couchrepd/status_server.h"

namespace couchrepd {

int RunServe(const std::vector<std::string>& args) {
  // --help wins over anything else on the line, mistakes included.
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") return PrintCommandHelp("serve");
  }
  std::string path = kDefaultConfigPath;
  for (size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--config" || args[i] == "-c") && i + 1 < args.size()) {
      path = args[++i];
    } else if (args[i].rfind("--config=", 0) == 0) {
      path = args[i].substr(9);
    } else {
      std::fprintf(stderr,
                   "serve: unknown argument `%s` (couchrepd serve --help shows the options)\n",
                   args[i].c_str());
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
  InitLoggingFromConfig(*config);
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

  // Under systemd (Type=notify): READY=1 once every replicator feed is
  // connected, STATUS= when the counts change, WATCHDOG=1 while the engine
  // loop is alive (a stuck loop lets systemd's watchdog restart us).
  ServiceNotifier notifier;
  bool ready = false;
  std::string last_status;
  auto notify = [&] {
    auto snap = engine.Snapshot();
    if (!snap) return;
    std::string line = ServiceStatusLine(*snap);
    if (!ready && FeedsConnected(*snap)) {
      ready = true;
      notifier.Ready(line);
      last_status = line;
    } else if (ready && line != last_status) {
      notifier.Status(line);
      last_status = line;
    }
    if (notifier.watchdog_interval() > Duration(0) &&
        RenderLiveness(*snap, std::chrono::steady_clock::now()).ok) {
      notifier.Watchdog();
    }
  };
  Duration tick = std::chrono::seconds(1);
  if (notifier.watchdog_interval() > Duration(0)) tick = std::min(tick, notifier.watchdog_interval());
  const timespec tick_spec{static_cast<time_t>(tick.count() / 1000),
                           static_cast<long>(tick.count() % 1000) * 1000000L};
  while (true) {
    if (notifier.enabled()) notify();
    int sig = sigtimedwait(&signals, nullptr, &tick_spec);
    if (sig < 0) continue;  // the tick passed (or EINTR)
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
  notifier.Stopping();
  status.Stop();
  engine.Shutdown();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace couchrepd

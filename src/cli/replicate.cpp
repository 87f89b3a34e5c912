// `couchrepd replicate SOURCE TARGET [options]`: one replication in the
// foreground with the service's engine and checkpoints. Its help text is
// src/cli/help.cpp's (ReplicateUsage() and examples).
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "couchrepd/checkpoint.h"
#include "couchrepd/cli.h"
#include "couchrepd/config.h"
#include "couchrepd/json.h"
#include "couchrepd/log.h"
#include "couchrepd/replicate_args.h"
#include "couchrepd/replication_job.h"
#include "couchrepd/replication_setup.h"
#include "couchrepd/replication_spec.h"
#include "couchrepd/replication_stats.h"
#include "couchrepd/server_connection.h"

namespace couchrepd {

namespace {

constexpr auto kProgressPeriod = std::chrono::milliseconds(250);

void RegisterSpecSecrets(const ReplicationSpec& spec) {
  for (const auto* e : {&spec.source.endpoint, &spec.target.endpoint}) {
    if (!e->credentials.password.empty()) {
      RegisterBasicCredentials(e->credentials.username, e->credentials.password);
    }
    for (const auto& [name, value] : e->headers) RegisterSecret(value);
  }
}

std::string FormatElapsed(double seconds) {
  int s = static_cast<int>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

// The server for bare database names and the replication id's uuid: --server,
// else the config's server (with --config), else the source's (or target's)
// own server.
Result<Endpoint> ChooseServer(const ReplicateArgs& args, const Config& config, bool have_config,
                              const ReplicationSpec& spec) {
  if (args.server_url) {
    Config c = config;
    c.server.url = *args.server_url;
    if (!have_config) {
      c.server.username.clear();
      c.server.password.clear();
    }
    return ServerEndpointFromConfig(c);
  }
  if (have_config) return ServerEndpointFromConfig(config);
  for (const auto* side : {&spec.source, &spec.target}) {
    if (side->local) continue;
    Endpoint e = side->endpoint;
    e.url.path.resize(1);  // the server root: "/"
    e.url.path[0] = '/';
    e.url.query.clear();
    return e;
  }
  return Error::Permanent("usage",
                          "both endpoints are bare database names: give --server URL or --config");
}

}  // namespace

int RunReplicate(const std::vector<std::string>& raw_args) {
  auto args = ParseReplicateArgs(raw_args);
  if (!args.ok()) {
    std::fprintf(stderr, "replicate: %s (couchrepd replicate --help shows the options)\n",
                 ScrubSecrets(args.error().reason).c_str());
    return kExitUsage;
  }
  if (args->help) return PrintCommandHelp("replicate");
  Config config;
  bool have_config = false;
  if (args->config_path) {
    auto loaded = LoadConfigFile(*args->config_path, RealEnv);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s: invalid configuration:\n%s\n", args->config_path->c_str(),
                   loaded.error().reason.c_str());
      return kExitUsage;
    }
    config = *loaded;
    have_config = true;
    RegisterConfigSecrets(config);
    InitLoggingFromConfig(config);
  }
  if (args->quiet) SetLogLevel("error");

  auto parsed = ParseReplicationDoc(args->doc_json, ReplicationDefaults::From(config));
  if (!parsed.ok()) {
    std::fprintf(stderr, "replicate: %s\n", ScrubSecrets(parsed.error().reason).c_str());
    return kExitUsage;
  }
  RegisterSpecSecrets(*parsed);
  // Whoever runs the CLI is the operator: local endpoints get the server's
  // credentials and design documents are written (SPEC §1.3's user_ctx rules
  // protect documents written by others, not the operator's own command).
  if (!parsed->user_ctx.present) {
    parsed->user_ctx.present = true;
    parsed->user_ctx.roles = {"_admin"};
  }
  auto server = ChooseServer(*args, config, have_config, *parsed);
  if (!server.ok()) {
    std::fprintf(stderr, "replicate: %s\n", ScrubSecrets(server.error().Message()).c_str());
    return kExitUsage;
  }
  ReplicationSpec spec = ResolveLocalEndpoints(*parsed, *server, &config.server.proxy_auth);
  HttpOptions http = HttpOptionsFromConfig(config);

  CouchClient server_client(*server, http);
  auto info = server_client.GetServerInfo();
  if (!info.ok()) {
    std::fprintf(stderr, "replicate: cannot reach the server %s: %s\n",
                 server_client.DisplayUrl().c_str(), ScrubSecrets(info.error().Message()).c_str());
    return kExitFailure;
  }
  const EndpointTlsPolicy tls = EndpointTlsPolicy::From(config);
  auto id = ComputeIdFor(spec, info->uuid, http, tls);
  if (!id.ok()) {
    std::fprintf(stderr, "replicate: %s\n", ScrubSecrets(id.error().Message()).c_str());
    return kExitFailure;
  }

  JobSettings settings;
  settings.spec = spec;
  settings.id = *id;
  settings.http = http;
  settings.tls = tls;
  settings.attachment_stream_threshold_bytes = config.replication.attachment_stream_threshold_bytes;
  settings.temp_dir = config.replication.temp_dir;
  settings.log_prefix = "[" + id->full + "]";
  ReplicationJob job(settings);

  // SIGINT/SIGTERM: stop gracefully with a checkpoint; a second one exits at once.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::atomic<bool> finished{false};
  std::atomic<bool> interrupted{false};
  std::thread signal_thread([&] {
    while (!finished.load()) {
      timespec timeout{0, 100 * 1000 * 1000};
      int sig = sigtimedwait(&signals, nullptr, &timeout);
      if (sig <= 0) continue;
      if (interrupted.exchange(true)) _exit(130);
      std::fprintf(stderr, "\nstopping: writing a checkpoint (again to abort)\n");
      job.Stop();
    }
  });

  const bool show_progress = !args->quiet && !args->json_output && isatty(STDERR_FILENO);
  std::thread progress;
  if (show_progress) {
    progress = std::thread([&] {
      auto t0 = std::chrono::steady_clock::now();
      int64_t last_written = 0;
      double rate = 0;
      auto last_t = t0;
      while (!finished.load()) {
        std::this_thread::sleep_for(kProgressPeriod);
        auto s = job.Snapshot();
        s.stats = s.run_stats;
        auto now = std::chrono::steady_clock::now();
        double dt = std::chrono::duration<double>(now - last_t).count();
        if (dt > 0) {
          double inst = static_cast<double>(s.stats.docs_written - last_written) / dt;
          rate = rate == 0 ? inst : 0.7 * rate + 0.3 * inst;
        }
        last_written = s.stats.docs_written;
        last_t = now;
        double elapsed = std::chrono::duration<double>(now - t0).count();
        std::fprintf(stderr, "\r\033[K%s  written %lld  pending %lld  %.0f docs/s  failures %lld",
                     FormatElapsed(elapsed).c_str(), static_cast<long long>(s.stats.docs_written),
                     static_cast<long long>(s.changes_pending), rate,
                     static_cast<long long>(s.stats.doc_write_failures));
      }
      std::fputs("\r\033[K", stderr);
    });
  }

  auto t0 = std::chrono::steady_clock::now();
  auto result = job.Run();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  finished.store(true);
  if (progress.joinable()) progress.join();
  signal_thread.join();

  JobSnapshot s = job.Snapshot();
  if (!result.ok()) {
    std::string reason = ScrubSecrets(result.error().Message());
    if (args->json_output) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(false).Key("replication_id").String(id->full);
      w.Key("error").String(result.error().error).Key("reason").String(reason).EndObject();
      std::printf("%s\n", w.str().c_str());
    }
    std::fprintf(stderr, "replication failed: %s\n", reason.c_str());
    return kExitFailure;
  }
  const char* how = *result == JobEnd::kCompleted ? "completed" : "stopped";
  if (args->json_output) {
    JsonWriter w;
    w.BeginObject().Key("ok").Bool(true).Key("state").String(how);
    w.Key("replication_id").String(id->full);
    // This run's work; `cumulative` adds earlier runs of the same replication
    // (restored from the checkpoint history, as the service reports them).
    WriteStatsCounters(w, s.run_stats);
    w.Key("cumulative").BeginObject();
    WriteStatsCounters(w, s.stats);
    w.EndObject();
    w.Key("source_last_seq").Raw(s.through_seq.value_or("0"));
    w.Key("checkpointed_source_seq").Raw(s.checkpointed_seq.value_or("0"));
    w.Key("elapsed_seconds").Double(elapsed);
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  }
  if (!args->quiet) {
    std::fprintf(stderr,
                 "replication %s %s: %lld docs written, %lld read, %lld write failures, "
                 "%lld revisions checked in %.1f s (%.0f docs/s)\n",
                 id->full.c_str(), how, static_cast<long long>(s.run_stats.docs_written),
                 static_cast<long long>(s.run_stats.docs_read),
                 static_cast<long long>(s.run_stats.doc_write_failures),
                 static_cast<long long>(s.run_stats.revisions_checked), elapsed,
                 elapsed > 0 ? static_cast<double>(s.run_stats.docs_written) / elapsed : 0.0);
  }
  return interrupted.load() ? 130 : kExitOk;
}

}  // namespace couchrepd

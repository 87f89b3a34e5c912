#include "couchrepd/server_connection.h"

#include <spdlog/spdlog.h>

#include <atomic>

#include "couchrepd/log.h"

namespace couchrepd {

HttpOptions HttpOptionsFromConfig(const Config& config) {
  HttpOptions o;
  o.connect_timeout = config.server.connect_timeout;
  o.inactivity_timeout = config.server.request_timeout;
  o.retry.retries = config.replication.retries_per_request;
  o.retry.initial_wait = config.retry.request_initial_wait;
  o.retry.max_wait = config.retry.request_max_wait;
  o.retry.budget = config.retry.request_budget;
  o.pacing.initial = config.retry.pacing.initial;
  o.pacing.factor = config.retry.pacing.factor;
  o.pacing.max = config.retry.pacing.max;
  o.pacing.decrease = config.retry.pacing.decrease;
  o.tls_verify = config.server.tls_verify;
  o.ca_file = config.server.ca_file;
  o.max_response_bytes = static_cast<uint64_t>(config.limits.max_response_bytes);
  o.idle_connection_timeout = config.replication.idle_connection_timeout;
  o.max_host_connections = HostConnectionCap(config);
  // SPEC §4.4: turning verification off is allowed, not silent (once per
  // process). It is for the watched server only (endpoint_tls.h).
  static std::atomic<bool> warned{false};
  if (!o.tls_verify && !warned.exchange(true)) {
    spdlog::warn("server.tls_verify is off: the TLS certificate of {} is not checked",
                 RedactSecrets(config.server.url));
  }
  return o;
}

Result<Endpoint> ServerEndpointFromConfig(const Config& config) {
  auto url = ParseUrl(config.server.url);
  if (!url.ok()) {
    Error e = url.error();
    e.reason = "server.url: " + e.reason;
    return e;
  }
  Endpoint e;
  e.url = url->WithTrailingSlash();
  std::string user = config.server.username;
  std::string password = config.server.password;
  if (user.empty() && e.url.user) {
    user = *e.url.user;
    password = e.url.password.value_or("");
  }
  e.url.user.reset();
  e.url.password.reset();
  if (!user.empty()) {
    e.credentials.kind = config.server.auth == Config::Server::Auth::kCookie
                             ? Credentials::Kind::kCookie
                             : Credentials::Kind::kBasic;
    e.credentials.username = user;
    e.credentials.password = password;
  }
  for (const auto& [name, value] : config.server.headers) e.headers.emplace_back(name, value);
  return e;
}

void InitLoggingFromConfig(const Config& config) {
  LogFormat format =
      config.log.format == Config::Log::Format::kJson ? LogFormat::kJson : LogFormat::kText;
  bool journal = config.log.output == Config::Log::Output::kJournal;
  if (!InitLogging(Name(config.log.level), format,
                   journal ? LogOutput::kJournal : LogOutput::kStderr)) {
    spdlog::warn("log.output is journal, but {}; logging to stderr",
#ifdef COUCHREPD_HAVE_SYSTEMD
                 "no systemd journal answers on this machine"
#else
                 "this couchrepd was built without libsystemd"
#endif
    );
  }
}

void RegisterConfigSecrets(const Config& config) {
  if (!config.server.password.empty()) {
    RegisterBasicCredentials(config.server.username, config.server.password);
  }
  for (const auto& [name, value] : config.server.headers) RegisterSecret(value);
  RegisterSecret(config.server.proxy_auth.secret);
  if (!config.status.auth.password.empty()) {
    RegisterBasicCredentials(config.status.auth.username, config.status.auth.password);
  }
}

}  // namespace couchrepd

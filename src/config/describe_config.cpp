// Renders a Config for people (`couchrepd check-config`) and names its enums.
// Output mirrors etc/couchrepd.yaml key for key; secrets and header values are
// masked, so the text is safe to paste into a bug report.
#include <charconv>
#include <string>

#include "couchrepd/config.h"
#include "couchrepd/duration.h"

namespace couchrepd {

namespace {

constexpr std::string_view kMask = "*****";

bool IsPlainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("_./:@+()$-").find(c) != std::string_view::npos;
}

// A string as a YAML scalar: plain when YAML would read it back as the same
// string, double-quoted otherwise.
std::string Scalar(std::string_view s) {
  bool plain = !s.empty() && std::string_view("_./").find(s[0]) != std::string_view::npos;
  plain = plain || (!s.empty() && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')));
  for (char c : s) plain = plain && IsPlainChar(c);
  for (std::string_view word : {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}) {
    if (s.size() == word.size()) {
      bool same = true;
      for (size_t i = 0; i < s.size(); ++i) same = same && (s[i] | 0x20) == word[i];
      plain = plain && !same;
    }
  }
  if (plain) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[(c >> 4) & 0xf];
      out += kHex[c & 0xf];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Secret(const std::string& s) { return s.empty() ? "\"\"" : std::string(kMask); }
std::string Bool(bool b) { return b ? "true" : "false"; }
std::string Dur(std::chrono::milliseconds d) { return FormatDuration(d); }

std::string Number(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

class Writer {
 public:
  void Line(int depth, std::string_view key, const std::string& value) {
    out_.append(static_cast<size_t>(depth) * 2, ' ');
    out_ += key;
    out_ += ':';
    if (!value.empty()) out_ += " " + value;
    out_ += '\n';
  }
  void Section(int depth, std::string_view key) { Line(depth, key, ""); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string_view Name(Config::Server::Auth auth) {
  switch (auth) {
    case Config::Server::Auth::kBasic:
      return "basic";
    case Config::Server::Auth::kCookie:
      return "cookie";
  }
  return "?";
}

std::string_view Name(Config::Replicator::WriteBack mode) {
  switch (mode) {
    case Config::Replicator::WriteBack::kClassic:
      return "classic";
    case Config::Replicator::WriteBack::kTerminal:
      return "terminal";
  }
  return "?";
}

std::string_view Name(Config::Log::Level level) {
  switch (level) {
    case Config::Log::Level::kTrace:
      return "trace";
    case Config::Log::Level::kDebug:
      return "debug";
    case Config::Log::Level::kInfo:
      return "info";
    case Config::Log::Level::kWarn:
      return "warn";
    case Config::Log::Level::kError:
      return "error";
  }
  return "?";
}

std::string_view Name(Config::Log::Format format) {
  switch (format) {
    case Config::Log::Format::kText:
      return "text";
    case Config::Log::Format::kJson:
      return "json";
  }
  return "?";
}

std::string_view Name(Config::Log::Output output) {
  switch (output) {
    case Config::Log::Output::kStderr:
      return "stderr";
    case Config::Log::Output::kJournal:
      return "journal";
  }
  return "?";
}

std::string DescribeConfig(const Config& c) {
  Writer w;
  const Config::Server& server = c.server;
  w.Section(0, "server");
  w.Line(1, "url", Scalar(server.url));
  w.Line(1, "username", Scalar(server.username));
  w.Line(1, "password", Secret(server.password));
  w.Line(1, "password_file", Scalar(server.password_file));
  w.Line(1, "auth", std::string(Name(server.auth)));
  w.Line(1, "ca_file", Scalar(server.ca_file));
  w.Line(1, "tls_verify", Bool(server.tls_verify));
  if (server.headers.empty()) {
    w.Line(1, "headers", "{}");
  } else {
    w.Section(1, "headers");
    for (const auto& header : server.headers) w.Line(2, Scalar(header.first), std::string(kMask));
  }
  w.Section(1, "proxy_auth");
  w.Line(2, "enabled", Bool(server.proxy_auth.enabled));
  std::string secret_file = Scalar(server.proxy_auth.secret_file);
  if (!server.proxy_auth.secret.empty()) secret_file += "  # secret: " + std::string(kMask);
  w.Line(2, "secret_file", secret_file);
  w.Line(2, "username_header", Scalar(server.proxy_auth.username_header));
  w.Line(2, "roles_header", Scalar(server.proxy_auth.roles_header));
  w.Line(2, "token_header", Scalar(server.proxy_auth.token_header));
  w.Line(1, "connect_timeout", Dur(server.connect_timeout));
  w.Line(1, "request_timeout", Dur(server.request_timeout));

  const Config::Replicator& replicator = c.replicator;
  w.Section(0, "replicator");
  std::string databases;
  for (const std::string& db : replicator.databases) {
    databases += (databases.empty() ? "" : ", ") + Scalar(db);
  }
  w.Line(1, "databases", "[" + databases + "]");
  w.Line(1, "discover", Bool(replicator.discover));
  w.Line(1, "discover_interval", Dur(replicator.discover_interval));
  w.Line(1, "create_databases", Bool(replicator.create_databases));
  w.Line(1, "write_back", std::string(Name(replicator.write_back)));
  w.Line(1, "heartbeat", Dur(replicator.heartbeat));
  if (replicator.shares.empty()) {
    w.Line(1, "shares", "{}");
  } else {
    w.Section(1, "shares");
    for (const auto& share : replicator.shares) {
      w.Line(2, Scalar(share.first), std::to_string(share.second));
    }
  }
  w.Line(1, "install_validation", Bool(replicator.install_validation));

  const Config::Scheduler& scheduler = c.scheduler;
  w.Section(0, "scheduler");
  w.Line(1, "max_jobs", std::to_string(scheduler.max_jobs));
  w.Line(1, "interval", Dur(scheduler.interval));
  w.Line(1, "max_churn", std::to_string(scheduler.max_churn));
  w.Line(1, "max_history", std::to_string(scheduler.max_history));
  w.Line(1, "health_threshold", Dur(scheduler.health_threshold));
  w.Line(
      1, "backoff",
      "{initial: " + Dur(scheduler.backoff.initial) + ", max: " + Dur(scheduler.backoff.max) + "}");
  w.Line(1, "error_after", std::to_string(scheduler.error_after));
  w.Line(1, "doc_backoff",
         "{initial: " + Dur(scheduler.doc_backoff.initial) +
             ", max: " + Dur(scheduler.doc_backoff.max) + "}");

  const Config::Replication& replication = c.replication;
  w.Section(0, "replication");
  w.Line(1, "worker_processes", std::to_string(replication.worker_processes));
  w.Line(1, "worker_batch_size", std::to_string(replication.worker_batch_size));
  w.Line(1, "http_connections", std::to_string(replication.http_connections));
  w.Line(1, "connection_timeout", Dur(replication.connection_timeout));
  w.Line(1, "retries_per_request", std::to_string(replication.retries_per_request));
  w.Line(1, "checkpoint_interval", Dur(replication.checkpoint_interval));
  w.Line(1, "use_bulk_get", Bool(replication.use_bulk_get));
  w.Line(1, "use_checkpoints", Bool(replication.use_checkpoints));
  w.Line(1, "attachment_stream_threshold_bytes",
         std::to_string(replication.attachment_stream_threshold_bytes));
  w.Line(1, "temp_dir", Scalar(replication.temp_dir));
  w.Line(1, "ca_file", Scalar(replication.ca_file));
  w.Line(1, "idle_connection_timeout", Dur(replication.idle_connection_timeout));
  w.Line(1, "active_jobs", std::to_string(replication.active_jobs));
  w.Line(1, "host_connections",
         replication.host_connections > 0
             ? std::to_string(replication.host_connections)
             : "0  # auto: " + std::to_string(HostConnectionCap(c)));

  const Config::Retry& retry = c.retry;
  w.Section(0, "retry");
  w.Line(1, "request_initial_wait", Dur(retry.request_initial_wait));
  w.Line(1, "request_max_wait", Dur(retry.request_max_wait));
  w.Line(1, "request_budget", Dur(retry.request_budget));
  w.Section(1, "pacing");
  w.Line(2, "initial", Dur(retry.pacing.initial));
  w.Line(2, "factor", Number(retry.pacing.factor));
  w.Line(2, "max", Dur(retry.pacing.max));
  w.Line(2, "decrease", Dur(retry.pacing.decrease));

  const Config::Status& status = c.status;
  w.Section(0, "status");
  bool v6 = status.listen_host.find(':') != std::string::npos;
  std::string host = v6 ? "[" + status.listen_host + "]" : status.listen_host;
  w.Line(1, "listen", Scalar(host + ":" + std::to_string(status.listen_port)));
  w.Section(1, "auth");
  w.Line(2, "username", Scalar(status.auth.username));
  w.Line(2, "password", Secret(status.auth.password));
  w.Line(2, "password_file", Scalar(status.auth.password_file));
  w.Line(1, "health_public", Bool(status.health_public));
  w.Line(1, "dashboard", Bool(status.dashboard));

  w.Section(0, "limits");
  w.Line(1, "max_response_bytes", std::to_string(c.limits.max_response_bytes));

  w.Section(0, "cluster");
  w.Line(1, "enabled", Bool(c.cluster.enabled));
  w.Line(1, "instance_id", Scalar(c.cluster.instance_id));
  w.Line(1, "database", Scalar(c.cluster.database));
  w.Line(1, "heartbeat", Dur(c.cluster.heartbeat));
  w.Line(1, "lease_ttl", Dur(c.cluster.lease_ttl));

  w.Section(0, "log");
  w.Line(1, "level", std::string(Name(c.log.level)));
  w.Line(1, "format", std::string(Name(c.log.format)));
  w.Line(1, "output", std::string(Name(c.log.output)));

  w.Line(0, "shutdown_timeout", Dur(c.shutdown_timeout));
  return w.Take();
}

}  // namespace couchrepd

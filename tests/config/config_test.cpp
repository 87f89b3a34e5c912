// Tests of the config loader, durations and DescribeConfig.
#include "couchrepd/config.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "couchrepd/duration.h"

namespace couchrepd {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr const char* kSecret = "hunter2-s3cret";

std::optional<std::string> NoEnv(const std::string&) { return std::nullopt; }

EnvLookup EnvWith(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

Config MustLoad(std::string_view yaml, const EnvLookup& env = NoEnv) {
  auto config = LoadConfigText(yaml, "test.yaml", env);
  if (!config.ok()) FAIL("unexpected error: " << config.error().Message());
  return config.value();
}

// The error text of a config that must be rejected.
std::string Problems(std::string_view yaml, const EnvLookup& env = NoEnv) {
  auto config = LoadConfigText(yaml, "test.yaml", env);
  REQUIRE_FALSE(config.ok());
  CHECK(config.error().error == "bad_config");
  CHECK_FALSE(config.error().temporary());
  return config.error().reason;
}

std::string ErrorText(const Result<Config>& r) { return r.ok() ? "" : r.error().Message(); }

bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

#define CHECK_PROBLEM(text, part) CHECK_MESSAGE(Contains(text, part), "in:\n" << (text))

// A scratch directory removed at scope end.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ =
        std::filesystem::temp_directory_path() /
        ("couchrepd-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string Write(const std::string& name, std::string_view content) const {
    std::filesystem::path file = path_ / name;
    std::ofstream(file, std::ios::binary) << content;
    return file.string();
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// --- durations -------------------------------------------------------------

TEST_CASE("ParseDuration reads numbers with units") {
  const std::pair<const char*, milliseconds> cases[] = {
      {"250ms", milliseconds(250)},
      {"30s", seconds(30)},
      {"5m", minutes(5)},
      {"8h", hours(8)},
      {"1d", hours(24)},
      {"1m30s", seconds(90)},
      {"1h30m", minutes(90)},
      {" 10s ", seconds(10)},
      {"0s", milliseconds(0)},
      {"1s500ms", milliseconds(1500)},
  };
  for (const auto& c : cases) {
    const char* text = c.first;  // no structured binding: doctest captures it in a lambda
    auto d = ParseDuration(text);
    REQUIRE_MESSAGE(d.ok(), text);
    CHECK_MESSAGE(*d == c.second, text);
  }
}

TEST_CASE("ParseDuration rejects with a reason") {
  const std::pair<const char*, const char*> cases[] = {
      {"60", "needs a unit, e.g. 30s"},
      {"", "is empty"},
      {"1.5s", "must use whole numbers"},
      {"-5s", "must not be negative"},
      {"30x", "unknown unit \"x\""},
      {"30S", "unknown unit \"S\""},
      {"5 minutes", "must be a whole number followed by a unit"},
      {"1m 30s", "must be a whole number followed by a unit"},
      {"s", "must be a whole number followed by a unit"},
      {"99999999999999999999d", "is too large"},
      {"9999999999999999d", "is too large"},
  };
  for (const auto& c : cases) {
    const char* text = c.first;
    std::string_view reason = c.second;
    auto d = ParseDuration(text);
    REQUIRE_MESSAGE(!d.ok(), text);
    CHECK(d.error().error == "bad_duration");
    CHECK_MESSAGE(Contains(d.error().reason, reason), text << " -> " << d.error().reason);
  }
}

TEST_CASE("FormatDuration prints the shortest exact form and round-trips") {
  CHECK(FormatDuration(milliseconds(0)) == "0s");
  CHECK(FormatDuration(milliseconds(250)) == "250ms");
  CHECK(FormatDuration(seconds(90)) == "1m30s");
  CHECK(FormatDuration(seconds(120)) == "2m");
  CHECK(FormatDuration(hours(8)) == "8h");
  CHECK(FormatDuration(hours(25)) == "1d1h");
  CHECK(FormatDuration(milliseconds(-1500)) == "-1s500ms");
  for (int64_t ms : {1LL, 999LL, 1000LL, 61001LL, 86400000LL, 90061001LL, 1LL << 40}) {
    auto back = ParseDuration(FormatDuration(milliseconds(ms)));
    REQUIRE(back.ok());
    CHECK(back->count() == ms);
  }
}

// --- valid files -----------------------------------------------------------

TEST_CASE("an empty or comment-only file gives all defaults") {
  CHECK(MustLoad("") == Config{});
  CHECK(MustLoad("# nothing here\n\n") == Config{});
  CHECK(MustLoad("server:\nscheduler:\n  max_jobs:\n") == Config{});
}

TEST_CASE("the sample file loads and equals the defaults") {
  auto config = LoadConfigFile(COUCHREPD_SOURCE_DIR "/etc/couchrepd.yaml", NoEnv);
  REQUIRE_MESSAGE(config.ok(), ErrorText(config));
  CHECK(config.value() == Config{});
  CHECK(config->server.url == "http://127.0.0.1:5984");
  CHECK(config->server.username.empty());
}

TEST_CASE("the sample file documents every key DescribeConfig prints") {
  std::ifstream in(COUCHREPD_SOURCE_DIR "/etc/couchrepd.yaml");
  std::string sample((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string described = DescribeConfig(Config{});
  size_t start = 0;
  while (start < described.size()) {
    size_t end = described.find('\n', start);
    std::string line = described.substr(start, end - start);
    start = end + 1;
    std::string key = line.substr(0, line.find(':') + 1);      // "  max_jobs:"
    if (key.find("password:") != std::string::npos) continue;  // inline password: discouraged
    CHECK_MESSAGE(Contains(sample, "\n" + key), key);
  }
}

TEST_CASE("a full file sets every key") {
  TempDir dir;
  std::string ca = dir.Write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
  std::string proxy_secret = dir.Write("proxy", "proxy-secret\n");
  std::string status_pw = dir.Write("status-pw", "status-pw\n");
  std::string yaml = R"(
server:
  url: https://couch.example.com:6984/prefix/
  username: admin
  password: inline-pw
  auth: cookie
  ca_file: )" + ca + R"(
  tls_verify: false
  headers: {X-Api-Key: abc, X-Other: "d e"}
  proxy_auth:
    enabled: true
    secret_file: )" + proxy_secret +
                     R"(
    username_header: X-User
    roles_header: X-Roles
    token_header: X-Token
  connect_timeout: 3s
  request_timeout: 1m
replicator:
  databases: [_replicator, team-a/_replicator]
  discover: true
  discover_interval: 30s
  create_databases: false
  write_back: terminal
  heartbeat: 5s
  shares: {_replicator: 1, team-a/_replicator: 3}
  install_validation: false
scheduler:
  max_jobs: 10
  interval: 5s
  max_churn: 0
  max_history: 50
  health_threshold: 2m
  backoff: {initial: 1s, max: 1h}
  error_after: 3
  doc_backoff:
    initial: 2s
    max: 5m
replication:
  worker_processes: 8
  worker_batch_size: "250"
  http_connections: 10
  connection_timeout: 45s
  retries_per_request: 0
  checkpoint_interval: 5s
  use_bulk_get: false
  use_checkpoints: no
  attachment_stream_threshold_bytes: 0
  temp_dir: /var/tmp/couchrepd
retry:
  request_initial_wait: 100ms
  request_max_wait: 10s
  request_budget: 2m
  pacing: {initial: 10ms, factor: 1.5, max: 1m, decrease: 5ms}
status:
  listen: "[::1]:0"
  auth:
    username: ops
    password_file: )" +
                     status_pw + R"(
  health_public: true
  dashboard: false
limits:
  max_response_bytes: 2097152
cluster:
  enabled: true
  instance_id: node-1
  database: repl-coord
  heartbeat: 2s
  lease_ttl: 10s
log:
  level: DEBUG
  format: json
  output: journal
shutdown_timeout: 1m30s
)";
  Config c = MustLoad(yaml);
  CHECK(c.server.url == "https://couch.example.com:6984/prefix");
  CHECK(c.server.username == "admin");
  CHECK(c.server.password == "inline-pw");
  CHECK(c.server.auth == Config::Server::Auth::kCookie);
  CHECK(c.server.ca_file == ca);
  CHECK_FALSE(c.server.tls_verify);
  CHECK(c.server.headers ==
        std::map<std::string, std::string>{{"X-Api-Key", "abc"}, {"X-Other", "d e"}});
  CHECK(c.server.proxy_auth.enabled);
  CHECK(c.server.proxy_auth.secret == "proxy-secret");
  CHECK(c.server.proxy_auth.username_header == "X-User");
  CHECK(c.server.proxy_auth.roles_header == "X-Roles");
  CHECK(c.server.proxy_auth.token_header == "X-Token");
  CHECK(c.server.connect_timeout == seconds(3));
  CHECK(c.server.request_timeout == minutes(1));
  CHECK(c.replicator.databases == std::vector<std::string>{"_replicator", "team-a/_replicator"});
  CHECK(c.replicator.discover);
  CHECK(c.replicator.discover_interval == seconds(30));
  CHECK_FALSE(c.replicator.create_databases);
  CHECK(c.replicator.write_back == Config::Replicator::WriteBack::kTerminal);
  CHECK(c.replicator.heartbeat == seconds(5));
  CHECK(c.replicator.shares ==
        std::map<std::string, int>{{"_replicator", 1}, {"team-a/_replicator", 3}});
  CHECK_FALSE(c.replicator.install_validation);
  CHECK(c.scheduler.max_jobs == 10);
  CHECK(c.scheduler.interval == seconds(5));
  CHECK(c.scheduler.max_churn == 0);
  CHECK(c.scheduler.max_history == 50);
  CHECK(c.scheduler.health_threshold == minutes(2));
  CHECK(c.scheduler.backoff == Config::Backoff{seconds(1), hours(1)});
  CHECK(c.scheduler.error_after == 3);
  CHECK(c.scheduler.doc_backoff == Config::Backoff{seconds(2), minutes(5)});
  CHECK(c.replication.worker_processes == 8);
  CHECK(c.replication.worker_batch_size == 250);
  CHECK(c.replication.http_connections == 10);
  CHECK(c.replication.connection_timeout == seconds(45));
  CHECK(c.replication.retries_per_request == 0);
  CHECK(c.replication.checkpoint_interval == seconds(5));
  CHECK_FALSE(c.replication.use_bulk_get);
  CHECK_FALSE(c.replication.use_checkpoints);
  CHECK(c.replication.attachment_stream_threshold_bytes == 0);
  CHECK(c.replication.temp_dir == "/var/tmp/couchrepd");
  CHECK(c.limits.max_response_bytes == 2097152);
  CHECK(c.cluster == Config::Cluster{true, "node-1", "repl-coord", seconds(2), seconds(10)});
  CHECK(c.retry.request_initial_wait == milliseconds(100));
  CHECK(c.retry.request_max_wait == seconds(10));
  CHECK(c.retry.request_budget == minutes(2));
  CHECK(c.retry.pacing.initial == milliseconds(10));
  CHECK(c.retry.pacing.factor == 1.5);
  CHECK(c.retry.pacing.max == minutes(1));
  CHECK(c.retry.pacing.decrease == milliseconds(5));
  CHECK(c.status.listen_host == "::1");
  CHECK(c.status.listen_port == 0);
  CHECK(c.status.auth.username == "ops");
  CHECK(c.status.auth.password == "status-pw");
  CHECK(c.status.health_public);
  CHECK_FALSE(c.status.dashboard);
  CHECK(c.log.level == Config::Log::Level::kDebug);
  CHECK(c.log.format == Config::Log::Format::kJson);
  CHECK(c.log.output == Config::Log::Output::kJournal);
  CHECK(c.shutdown_timeout == seconds(90));
}

TEST_CASE("status.listen accepts IPv4, host names and bracketed IPv6") {
  Config c = MustLoad("status: {listen: 0.0.0.0:8080}");
  CHECK(c.status.listen_host == "0.0.0.0");
  CHECK(c.status.listen_port == 8080);
  c = MustLoad("status: {listen: 'localhost:5986'}");
  CHECK(c.status.listen_host == "localhost");
  c = MustLoad("status: {listen: '[fe80::1]:5986'}");
  CHECK(c.status.listen_host == "fe80::1");
}

// --- invalid files ---------------------------------------------------------

TEST_CASE("unknown keys are rejected with their path and a suggestion") {
  CHECK_PROBLEM(Problems("sever:\n  url: http://x\n"), "sever: unknown key (did you mean server?)");
  CHECK_PROBLEM(Problems("server:\n  tls_verfy: false\n"),
                "server.tls_verfy: unknown key (did you mean tls_verify?)");
  CHECK_PROBLEM(Problems("scheduler:\n  backoff: {initail: 1s}\n"),
                "scheduler.backoff.initail: unknown key (did you mean initial?)");
  CHECK_PROBLEM(Problems("server:\n  proxy_auth:\n    enable: true\n"),
                "server.proxy_auth.enable: unknown key (did you mean enabled?)");
  std::string far = Problems("server:\n  colour: blue\n");
  CHECK_PROBLEM(far, "server.colour: unknown key");
  CHECK_FALSE(Contains(far, "did you mean"));
}

TEST_CASE("problems carry the file name and line") {
  CHECK_PROBLEM(Problems("# comment\nscheduler:\n  max_jobs: abc\n"),
                "test.yaml:3: scheduler.max_jobs: must be a positive integer, got \"abc\"");
}

TEST_CASE("wrong types are rejected") {
  CHECK_PROBLEM(Problems("scheduler:\n  max_jobs: abc\n"),
                "scheduler.max_jobs: must be a positive integer, got \"abc\"");
  CHECK_PROBLEM(Problems("scheduler:\n  max_jobs: [1]\n"),
                "scheduler.max_jobs: must be a positive integer, got a list");
  CHECK_PROBLEM(Problems("scheduler:\n  max_jobs: 1.5\n"),
                "scheduler.max_jobs: must be a positive integer, got \"1.5\"");
  CHECK_PROBLEM(Problems("server:\n  tls_verify: maybe\n"),
                "server.tls_verify: must be true or false, got \"maybe\"");
  CHECK_PROBLEM(Problems("server: 5\n"), "server: must be a map of settings, got \"5\"");
  CHECK_PROBLEM(Problems("replicator:\n  databases: _replicator\n"),
                "replicator.databases: must be a list of database names, e.g. [_replicator], "
                "got \"_replicator\"");
  CHECK_PROBLEM(Problems("server:\n  username: {a: b}\n"),
                "server.username: must be a string, got a map");
  CHECK_PROBLEM(Problems("- a\n- b\n"), "test.yaml:1: must be a map of sections");
  CHECK_PROBLEM(
      Problems("retry:\n  pacing: {factor: 1}\n"),
      "retry.pacing.factor: must be a number above 1 and at most 10, e.g. 1.2, got \"1\"");
}

TEST_CASE("integers are range-checked; integer strings are accepted") {
  CHECK_PROBLEM(Problems("scheduler: {max_jobs: 0}"),
                "scheduler.max_jobs: must be a positive integer, got \"0\"");
  CHECK_PROBLEM(Problems("scheduler: {max_jobs: -3}"),
                "scheduler.max_jobs: must be a positive integer, got \"-3\"");
  CHECK_PROBLEM(Problems("scheduler: {max_jobs: 99999999999}"),
                "scheduler.max_jobs: is too large, got \"99999999999\"");
  CHECK_PROBLEM(Problems("scheduler: {max_churn: -1}"),
                "scheduler.max_churn: must be a non-negative integer, got \"-1\"");
  CHECK_PROBLEM(Problems("replication: {worker_processes: 200}"),
                "replication.worker_processes: must be an integer from 1 to 128, got \"200\"");
  CHECK_PROBLEM(Problems("replication: {worker_batch_size: 0}"),
                "replication.worker_batch_size: must be an integer from 1 to 100000, got \"0\"");
  CHECK_PROBLEM(Problems("replication: {retries_per_request: -1}"),
                "replication.retries_per_request: must be an integer from 0 to 100, got \"-1\"");
  CHECK_PROBLEM(Problems("limits: {max_response_bytes: 1000}"),
                "limits.max_response_bytes: must be an integer from 1048576 to 4294967296, got "
                "\"1000\"");
  CHECK(MustLoad("replication: {worker_batch_size: \"500\", http_connections: '7'}")
            .replication.http_connections == 7);
}

TEST_CASE("durations need units and positive values") {
  CHECK_PROBLEM(Problems("scheduler:\n  interval: 60\n"),
                "scheduler.interval: needs a unit, e.g. 30s, got \"60\"");
  CHECK_PROBLEM(Problems("scheduler:\n  interval: 0s\n"),
                "scheduler.interval: must be a positive duration, got \"0s\"");
  CHECK_PROBLEM(Problems("scheduler:\n  interval: 5 minutes\n"),
                "scheduler.interval: must be a whole number followed by a unit");
  CHECK_PROBLEM(Problems("scheduler:\n  backoff: {initial: 30x}\n"),
                "scheduler.backoff.initial: has an unknown unit \"x\" (use ms, s, m, h or d), "
                "got \"30x\"");
  CHECK_PROBLEM(Problems("shutdown_timeout: -5s\n"),
                "shutdown_timeout: must not be negative, got \"-5s\"");
  CHECK_PROBLEM(Problems("scheduler:\n  backoff: {initial: 1h, max: 30m}\n"),
                "scheduler.backoff: initial (1h) must not exceed max (30m)");
  CHECK_PROBLEM(Problems("retry: {request_initial_wait: 10m}\n"),
                "retry: request_initial_wait (10m) must not exceed request_max_wait (5m)");
}

TEST_CASE("enum values are checked") {
  CHECK_PROBLEM(Problems("replicator:\n  write_back: sometimes\n"),
                "replicator.write_back: must be one of classic, terminal, got \"sometimes\"");
  CHECK_PROBLEM(Problems("log: {level: verbose}"),
                "log.level: must be one of trace, debug, info, warn, error, got \"verbose\"");
  CHECK_PROBLEM(Problems("log: {format: xml}"), "log.format: must be one of text, json");
  CHECK_PROBLEM(Problems("log: {output: syslog}"), "log.output: must be one of stderr, journal");
  CHECK(MustLoad("").log.output == Config::Log::Output::kStderr);
  CHECK_PROBLEM(Problems("server: {auth: digest}"), "server.auth: must be one of basic, cookie");
  CHECK(MustLoad("log: {level: Warn}").log.level == Config::Log::Level::kWarn);
}

TEST_CASE("server.url must be a plain http(s) URL") {
  CHECK_PROBLEM(Problems("server: {url: 'localhost:5984'}"), "server.url: ");
  CHECK_PROBLEM(Problems("server: {url: 'localhost:5984'}"), "got \"localhost:5984\"");
  CHECK_PROBLEM(Problems("server: {url: 'ftp://host/'}"),
                "server.url: unsupported scheme `ftp` (only http and https), got \"ftp://host/\"");
  CHECK_PROBLEM(Problems("server: {url: 'http://host:99999'}"),
                "server.url: the URL's port is out of range");
  CHECK_PROBLEM(Problems("server: {url: 'http://host:5984/?x=1'}"),
                "server.url: must not have a query string or fragment");
  std::string with_credentials =
      Problems("server: {url: 'http://admin:" + std::string(kSecret) + "@host:5984'}");
  CHECK_PROBLEM(with_credentials, "server.url: must not contain credentials");
  CHECK_FALSE(Contains(with_credentials, kSecret));
  CHECK(MustLoad("server: {url: 'http://[::1]:5984/'}").server.url == "http://[::1]:5984");
}

TEST_CASE("status.listen must be host:port") {
  CHECK_PROBLEM(
      Problems("status: {listen: 5986}"),
      "status.listen: must be host:port, e.g. 127.0.0.1:5986 or [::1]:5986, got \"5986\"");
  CHECK_PROBLEM(Problems("status: {listen: '::1:5986'}"),
                "status.listen: needs brackets around an IPv6 address");
  CHECK_PROBLEM(Problems("status: {listen: '127.0.0.1:70000'}"),
                "status.listen: has a port above 65535");
  CHECK_PROBLEM(Problems("status: {listen: '300.1.1.1:80'}"),
                "status.listen: has an invalid IPv4 address");
  CHECK_PROBLEM(Problems("status: {listen: '127.0.0.1:'}"),
                "status.listen: needs a port number after the colon");
  CHECK_PROBLEM(Problems("status: {listen: 'my host:80'}"),
                "status.listen: has an invalid host name");
}

TEST_CASE("replicator databases and shares are checked") {
  CHECK_PROBLEM(Problems("replicator: {databases: [_replicator, Foo]}"),
                "replicator.databases[1]: must be a database name");
  CHECK_PROBLEM(Problems("replicator: {databases: [_replicator, _replicator]}"),
                "replicator.databases[1]: lists \"_replicator\" a second time");
  CHECK_PROBLEM(Problems("replicator: {databases: []}"),
                "replicator.databases: is empty and discover is off");
  CHECK(MustLoad("replicator: {databases: [], discover: true}").replicator.databases.empty());
  CHECK_PROBLEM(Problems("replicator: {shares: {a/_replicator: 0}}"),
                "replicator.shares.a/_replicator: must be an integer from 1 to 1000000, got \"0\"");
  CHECK_PROBLEM(Problems("replicator: {shares: {BAD: 1}}"),
                "replicator.shares.BAD: is not a database name");
}

TEST_CASE("server headers are checked and never echoed") {
  CHECK_PROBLEM(Problems("server: {headers: {'bad header': x}}"),
                "test.yaml:1: server.headers: has an invalid header name");
  CHECK_PROBLEM(Problems("server: {headers: {Host: x}}"),
                "server.headers.Host: is managed by couchrepd and cannot be set");
  CHECK_PROBLEM(Problems("server: {headers: {X-A: a, x-a: b}}"),
                "server.headers.x-a: is set twice");
  std::string listed =
      Problems("server: {headers: [Authorization: Bearer " + std::string(kSecret) + "]}");
  CHECK_PROBLEM(listed, "server.headers: must map header names to values");
  CHECK_FALSE(Contains(listed, kSecret));
  std::string nested = Problems("server: {headers: {X-Token: [" + std::string(kSecret) + "]}}");
  CHECK_PROBLEM(nested, "server.headers.X-Token: must be a string");
  CHECK_FALSE(Contains(nested, kSecret));
}

TEST_CASE("a key set twice is rejected") {
  CHECK_PROBLEM(Problems("scheduler:\n  max_jobs: 1\n  max_jobs: 2\n"),
                "test.yaml:3: scheduler.max_jobs: is set twice");
}

TEST_CASE("YAML syntax errors give line and column") {
  std::string text =
      Problems("server:\n  url: http://x\n  username: [admin\nlog:\n  level: info\n");
  CHECK_PROBLEM(text, "test.yaml:");
  CHECK_PROBLEM(text, "invalid YAML");
  // The bracket opened on line 3 is never closed; the parser notices further down.
  bool has_line = Contains(text, "test.yaml:3:") || Contains(text, "test.yaml:4:") ||
                  Contains(text, "test.yaml:5:") || Contains(text, "test.yaml:6:");
  CHECK_MESSAGE(has_line, text);
  CHECK_PROBLEM(Problems("server:\n\turl: x\n"), "test.yaml:2:");
  CHECK_PROBLEM(Problems("a: 1\n---\nb: 2\n"), "holds more than one YAML document");
}

TEST_CASE("problems are listed in file order") {
  std::string text = Problems(
      "server: {username: admin, password_file: /nonexistent}\n"
      "scheduler: {max_jobs: x}\n",
      EnvWith({}));
  CHECK(text.find("test.yaml:1: server.password_file") < text.find("test.yaml:2: scheduler"));
}

TEST_CASE("all problems are reported at once, one per line") {
  std::string text = Problems(
      "server:\n  tls_verfy: false\nscheduler:\n  max_jobs: abc\n  interval: 60\n"
      "replicator:\n  write_back: sometimes\n");
  CHECK(std::count(text.begin(), text.end(), '\n') == 3);
  CHECK_PROBLEM(text, "test.yaml:2: server.tls_verfy: unknown key (did you mean tls_verify?)\n");
  CHECK_PROBLEM(text, "test.yaml:4: scheduler.max_jobs: must be a positive integer, got \"abc\"\n");
  CHECK_PROBLEM(text, "test.yaml:5: scheduler.interval: needs a unit, e.g. 30s, got \"60\"\n");
  CHECK_PROBLEM(text, "test.yaml:7: replicator.write_back: must be one of classic, terminal");
}

TEST_CASE("a missing config file names the path") {
  auto config = LoadConfigFile("/nonexistent/couchrepd.yaml", NoEnv);
  REQUIRE_FALSE(config.ok());
  CHECK(config.error().error == "bad_config");
  CHECK_PROBLEM(
      config.error().reason,
      "cannot read config file \"/nonexistent/couchrepd.yaml\": No such file or directory");
  TempDir dir;
  CHECK_FALSE(LoadConfigFile(dir.File(""), NoEnv).ok());  // a directory
}

// --- secrets ---------------------------------------------------------------

TEST_CASE("password_file is read, one trailing newline dropped") {
  TempDir dir;
  auto load = [&](std::string_view content) {
    std::string file = dir.Write("pw", content);
    return MustLoad("server: {username: admin, password_file: " + file + "}").server.password;
  };
  CHECK(load("s3cret\n") == "s3cret");
  CHECK(load("s3cret\r\n") == "s3cret");
  CHECK(load("s3cret") == "s3cret");
  CHECK(load("s3cret\n\n") == "s3cret\n");
  CHECK(load(" spaced pw ") == " spaced pw ");
}

TEST_CASE("relative password_file paths are relative to the config file") {
  TempDir dir;
  dir.Write("pw", "from-file\n");
  std::string config = dir.Write("couchrepd.yaml", "server: {username: admin, password_file: pw}");
  auto c = LoadConfigFile(config, NoEnv);
  REQUIRE_MESSAGE(c.ok(), ErrorText(c));
  CHECK(c->server.password == "from-file");
  CHECK(c->server.password_file == dir.File("pw"));
}

TEST_CASE("an unreadable password_file names the key and path") {
  CHECK_PROBLEM(Problems("server: {username: admin, password_file: /nonexistent/pw}"),
                "server.password_file: cannot read \"/nonexistent/pw\": No such file or directory");
  TempDir dir;
  std::string empty = dir.Write("empty", "\n");
  CHECK_PROBLEM(Problems("server: {username: admin, password_file: " + empty + "}"),
                "server.password_file: cannot read \"" + empty + "\": the file is empty");
  CHECK_PROBLEM(Problems("server: {ca_file: /nonexistent/ca.pem}"),
                "server.ca_file: cannot read \"/nonexistent/ca.pem\"");
}

TEST_CASE("COUCHREPD_SERVER_PASSWORD overrides password and password_file") {
  TempDir dir;
  std::string file = dir.Write("pw", "from-file\n");
  auto env = EnvWith({{"COUCHREPD_SERVER_PASSWORD", "from-env"}});
  CHECK(MustLoad("server: {username: admin, password_file: " + file + "}", env).server.password ==
        "from-env");
  CHECK(MustLoad("server: {username: admin, password: inline}", env).server.password == "from-env");
  // The file is not needed when the environment provides the password.
  CHECK(MustLoad("server: {username: admin, password_file: /nonexistent}", env).server.password ==
        "from-env");
  CHECK(MustLoad("server: {username: admin}", env).server.password == "from-env");
  // An empty variable counts as unset.
  auto empty_env = EnvWith({{"COUCHREPD_SERVER_PASSWORD", ""}});
  CHECK(MustLoad("server: {username: admin, password: inline}", empty_env).server.password ==
        "inline");
}

TEST_CASE("password and username must go together") {
  CHECK_PROBLEM(Problems("server: {password: x}"),
                "server.username: is empty but a password is given (server.password)");
  CHECK_PROBLEM(Problems("", EnvWith({{"COUCHREPD_SERVER_PASSWORD", "x"}})),
                "server.username: is empty but a password is given (COUCHREPD_SERVER_PASSWORD)");
  CHECK_PROBLEM(Problems("server: {username: admin}"),
                "server.username: is set but there is no password: set server.password_file or "
                "COUCHREPD_SERVER_PASSWORD");
  CHECK_PROBLEM(Problems("server: {username: admin, password: a, password_file: /x}"),
                "server.password_file: set only one of server.password and server.password_file");
  CHECK_PROBLEM(Problems("server: {auth: cookie}"), "server.auth: cookie needs server.username");
  CHECK_PROBLEM(Problems("server: {username: u, password: p, headers: {Authorization: x}}"),
                "server.headers: sets Authorization and server.username is set too");
}

TEST_CASE("status.auth takes its password from a file or COUCHREPD_STATUS_PASSWORD") {
  TempDir dir;
  std::string file = dir.Write("pw", "status-secret\n");
  Config c = MustLoad("status: {auth: {username: ops, password_file: " + file + "}}");
  CHECK(c.status.auth.password == "status-secret");
  c = MustLoad("status: {auth: {username: ops, password_file: " + file + "}}",
               EnvWith({{"COUCHREPD_STATUS_PASSWORD", "env-secret"}}));
  CHECK(c.status.auth.password == "env-secret");
  CHECK_PROBLEM(Problems("status: {auth: {username: ops}}"),
                "status.auth.username: is set but there is no password: set "
                "status.auth.password_file or COUCHREPD_STATUS_PASSWORD");
  CHECK_PROBLEM(Problems("status: {auth: {password_file: " + file + "}}"),
                "status.auth.username: is empty but a password is given");
  CHECK(MustLoad("status: {auth: {username: ''}}").status.auth == Config::Status::Auth{});
}

TEST_CASE("proxy_auth needs a secret when enabled") {
  CHECK_PROBLEM(Problems("server: {proxy_auth: {enabled: true}}"),
                "server.proxy_auth: is enabled but has no secret: set secret_file or "
                "COUCHREPD_PROXY_AUTH_SECRET");
  CHECK_PROBLEM(Problems("server: {proxy_auth: {enabled: true, secret_file: /nonexistent/s}}"),
                "server.proxy_auth.secret_file: cannot read \"/nonexistent/s\"");
  Config c = MustLoad("server: {proxy_auth: {enabled: true, secret_file: /nonexistent/s}}",
                      EnvWith({{"COUCHREPD_PROXY_AUTH_SECRET", "env-secret"}}));
  CHECK(c.server.proxy_auth.secret == "env-secret");
  // Disabled: the file is not read.
  CHECK(MustLoad("server: {proxy_auth: {secret_file: /nonexistent/s}}").server.proxy_auth.secret ==
        "");
}

TEST_CASE("secrets never appear in error text") {
  TempDir dir;
  std::string file = dir.Write("pw", std::string(kSecret) + "\n");
  const std::string s = kSecret;
  auto env = EnvWith({{"COUCHREPD_SERVER_PASSWORD", s},
                      {"COUCHREPD_STATUS_PASSWORD", s},
                      {"COUCHREPD_PROXY_AUTH_SECRET", s}});
  const std::string cases[] = {
      "server: {password: [" + s + "]}",
      "server: {password: {x: " + s + "}}",
      "server: {pasword: " + s + "}",
      "server: {password: " + s + "}",  // no username
      "server: {username: u, password: " + s + ", password_file: " + file + "}",
      "server: {url: 'http://admin:" + s + "@127.0.0.1:5984'}",
      "server: {url: 'htp://admin:" + s + "@127.0.0.1:5984'}",
      "server: {url: 'http://admin:" + s + "@127.0.0.1:99999'}",
      "server: {headers: {X-Token: [" + s + "]}}",
      "server: {headers: {X-Token: \"" + s + "\\nInjected: 1\"}}",
      "server: {headers: " + s + "}",
      "server: {password_file: " + file + "}\nscheduler: {max_jobs: 0}",
      "status: {auth: {password: [" + s + "]}}",
      "status: {auth: {password: " + s + "}}",
      "status: {auth: {pasword: " + s + "}}",
  };
  for (const std::string& yaml : cases) {
    for (const EnvLookup& lookup : {EnvLookup(NoEnv), env}) {
      auto config = LoadConfigText(yaml, "test.yaml", lookup);
      if (config.ok()) continue;  // e.g. the environment fixed it
      CHECK_MESSAGE(!Contains(config.error().Message(), s), yaml << "\n"
                                                                 << config.error().Message());
    }
  }
  // With the environment, an otherwise broken config still does not leak it.
  std::string text = Problems("scheduler: {max_jobs: x}", env);
  CHECK_FALSE(Contains(text, s));
}

// --- DescribeConfig --------------------------------------------------------

TEST_CASE("DescribeConfig masks secrets and header values") {
  TempDir dir;
  std::string proxy = dir.Write("proxy", "proxy-" + std::string(kSecret));
  Config c = MustLoad("server: {username: admin, password: " + std::string(kSecret) +
                      ", headers: {X-Token: tok-" + kSecret +
                      "}, proxy_auth: {enabled: true, "
                      "secret_file: " +
                      proxy +
                      "}}\n"
                      "status: {auth: {username: ops, password: st-" +
                      kSecret + "}}");
  std::string text = DescribeConfig(c);
  CHECK_FALSE(Contains(text, kSecret));
  CHECK_PROBLEM(text, "  password: *****\n");
  CHECK_PROBLEM(text, "    X-Token: *****\n");
  CHECK_PROBLEM(text, "    secret_file: " + proxy + "  # secret: *****\n");
  CHECK_PROBLEM(text, "    password: *****\n");
  CHECK_PROBLEM(text, "  username: admin\n");
}

TEST_CASE("DescribeConfig output loads back to the same config") {
  Config defaults;
  CHECK(MustLoad(DescribeConfig(defaults)) == defaults);
  Config c = MustLoad(R"(
server: {url: 'http://[::1]:5984/x', auth: basic}
replicator: {databases: [_replicator, "a$b/_replicator"], shares: {_replicator: 4}}
scheduler: {interval: 1m30s, backoff: {initial: 1500ms, max: 1d}}
retry: {pacing: {factor: 2.5}}
status: {listen: '[::]:9000'}
log: {level: trace, format: json}
)");
  std::string text = DescribeConfig(c);
  CHECK_PROBLEM(text, "  interval: 1m30s\n");
  CHECK_PROBLEM(text, "  listen: \"[::]:9000\"\n");
  CHECK(MustLoad(text) == c);
}

}  // namespace
}  // namespace couchrepd

namespace couchrepd {
TEST_CASE("config text with a control character is refused with its place (yaml-cpp loops on a NUL)") {
  auto r = LoadConfigText(std::string(",:r\0:", 6), "fuzz.yaml", NoEnv);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().reason.find("fuzz.yaml:1:4") != std::string::npos);
  CHECK(r.error().reason.find("control character") != std::string::npos);
}
}  // namespace couchrepd

namespace couchrepd {
// Found by fuzz_config: yaml-cpp never returns on the document "," (nor " ,",
// "[1],", "{a: 1},"): such a ',' is refused first, with its place.
TEST_CASE("a ',' outside a flow collection is refused before yaml-cpp sees it") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {",", "t.yaml:1:1"},           {"  ,", "t.yaml:1:3"},      {"# c\n,", "t.yaml:2:1"},
      {"[1],", "t.yaml:1:4"},        {"{a: 1},", "t.yaml:1:7"},  {",a", "t.yaml:1:1"},
      {"log:\n  level: ,", "t.yaml:2:10"}, {"- ,", "t.yaml:1:3"},
      {"&a b[\n,", "t.yaml:2:1"}};  // a '[' inside a plain scalar opens nothing
  for (const auto& [text, where] : cases) {
    CAPTURE(text);
    auto r = LoadConfigText(text, "t.yaml", NoEnv);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().reason.find(where + ": invalid YAML: a ',' outside a flow collection") !=
          std::string::npos);
  }
  // Commas inside flow collections, quotes, comments and plain scalars are fine.
  auto ok = LoadConfigText(
      "server: {url: \"http://a:5984\", headers: {X-A: 'x, y', X-C: \"p,q\"}}  # c, d\n"
      "replicator:\n  databases: [_replicator, team/_replicator]\n"
      "status:\n  auth:\n    username: a,b\n    password: p,w\n",
      "t.yaml", NoEnv);
  REQUIRE_MESSAGE(ok.ok(), (ok.ok() ? "" : ok.error().reason));
  CHECK(ok->server.headers.at("X-A") == "x, y");
  CHECK(ok->server.headers.at("X-C") == "p,q");
  CHECK(ok->status.auth.username == "a,b");
}
}  // namespace couchrepd

namespace couchrepd {
// Found by fuzz_config: yaml-cpp loops forever on "&a b [\n," (an anchor, a
// plain scalar, an unclosed flow sequence, a ','): refused, not hung.
TEST_CASE("text the YAML parser never finishes is refused, not waited for") {
  auto r = LoadConfigText("&a b [\n,", "t.yaml", NoEnv);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().reason == "t.yaml: invalid YAML: the YAML parser did not finish on this text "
                            "(it loops on some malformed YAML)");
  // Normal texts parse as before.
  CHECK(LoadConfigText("scheduler:\n  max_jobs: 3\n", "t.yaml", NoEnv)->scheduler.max_jobs == 3);
}

TEST_CASE("replication.idle_connection_timeout: a duration, 30 s by default") {
  CHECK(MustLoad("").replication.idle_connection_timeout == std::chrono::seconds(30));
  CHECK(MustLoad("replication: {idle_connection_timeout: 2m}").replication.idle_connection_timeout ==
        std::chrono::minutes(2));
  CHECK_PROBLEM(Problems("replication: {idle_connection_timeout: soon}"),
                "replication.idle_connection_timeout:");
}

TEST_CASE("replication.active_jobs: the run pool's size, 8 by default, 1 to 1024") {
  CHECK(MustLoad("").replication.active_jobs == 8);
  CHECK(MustLoad("replication: {active_jobs: 32}").replication.active_jobs == 32);
  CHECK_PROBLEM(Problems("replication: {active_jobs: 0}"), "replication.active_jobs:");
  CHECK_PROBLEM(Problems("replication: {active_jobs: many}"), "replication.active_jobs:");
}

TEST_CASE("replication.host_connections: a cap per host shared by all jobs, by default enough for every active job") {
  Config d = MustLoad("");
  CHECK(d.replication.host_connections == 0);
  CHECK(HostConnectionCap(d) == 8 * (4 + 2));
  CHECK(HostConnectionCap(MustLoad("replication: {active_jobs: 3, worker_processes: 2}")) == 12);
  Config set = MustLoad("replication: {host_connections: 100}");
  CHECK(HostConnectionCap(set) == 100);
  CHECK(DescribeConfig(d).find("host_connections: 0  # auto: 48") != std::string::npos);
  CHECK_PROBLEM(Problems("replication: {host_connections: -1}"), "replication.host_connections:");
  CHECK_PROBLEM(Problems("replication: {host_connections: lots}"), "replication.host_connections:");
}

TEST_CASE("cluster: off by default; database a name CouchDB accepts; lease_ttl at least 3 heartbeats") {
  Config d = MustLoad("");
  CHECK_FALSE(d.cluster.enabled);
  CHECK(d.cluster.instance_id.empty());
  CHECK(d.cluster.database == "couchrepd");
  CHECK(d.cluster.heartbeat == std::chrono::seconds(5));
  CHECK(d.cluster.lease_ttl == std::chrono::seconds(30));
  // CouchDB answers 400 illegal_database_name to PUT /_anything but its own databases.
  CHECK_PROBLEM(Problems("cluster: {database: _couchrepd}"), "cluster.database: must be a database name");
  CHECK_PROBLEM(Problems("cluster: {database: _replicator}"), "cluster.database: must be a database name");
  CHECK_PROBLEM(Problems("cluster: {heartbeat: 5s, lease_ttl: 14s}"),
                "cluster.lease_ttl: (14s) must be at least 3 heartbeats");
  CHECK(MustLoad("cluster: {heartbeat: 5s, lease_ttl: 15s}").cluster.lease_ttl == std::chrono::seconds(15));
  CHECK_PROBLEM(Problems("cluster: {instance_id: \"a b\"}"), "cluster.instance_id:");
  CHECK_PROBLEM(Problems("cluster: {enabled: maybe}"), "cluster.enabled:");
}

}  // namespace couchrepd

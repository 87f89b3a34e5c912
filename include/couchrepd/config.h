// Config: couchrepd's settings, read once from a YAML file into a plain struct.
//
// A default-constructed Config holds every default; etc/couchrepd.yaml spells
// out the same values with a comment per key. The loader rejects unknown keys
// and bad values, naming the key's dotted path and the reason, and collects
// all problems before failing. Secrets (the server password, the status API
// password, the proxy-auth secret) are resolved by the loader from the file,
// a `*_file` or the environment; the resolved value lives in the struct and
// must never be logged or shown — DescribeConfig masks it. A Config is a value:
// copy it freely; it is not shared mutable state. Only config_loader.cpp
// includes yaml-cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "couchrepd/result.h"

namespace couchrepd {

struct Config {
  // An exponential backoff: `initial` doubling per consecutive failure, capped at `max`.
  struct Backoff {
    std::chrono::milliseconds initial{};
    std::chrono::milliseconds max{};
    bool operator==(const Backoff&) const = default;
  };

  // CouchDB proxy authentication for local endpoints of non-admin documents (SPEC §1.3).
  struct ProxyAuth {
    // Off: such endpoints are accessed anonymously (and usually fail as unauthorized).
    bool enabled = false;
    // File holding the shared secret (CouchDB's [chttpd_auth] secret); env
    // COUCHREPD_PROXY_AUTH_SECRET overrides it. Required when enabled.
    std::string secret_file;
    std::string secret;  // resolved by the loader; never shown
    // Header names; change them only if CouchDB's [chttpd_auth] x_auth_* settings were changed.
    std::string username_header = "X-Auth-CouchDB-UserName";
    std::string roles_header = "X-Auth-CouchDB-Roles";
    std::string token_header = "X-Auth-CouchDB-Token";
    bool operator==(const ProxyAuth&) const = default;
  };

  // The CouchDB server being watched, and how couchrepd talks to it.
  struct Server {
    enum class Auth {
      kBasic,   // Authorization header on every request: simple, no extra round trips
      kCookie,  // POST /_session, then AuthSession cookie: cheaper checks on the server
    };
    // http(s) URL of the server root, without credentials and without a trailing '/'.
    std::string url = "http://127.0.0.1:5984";
    // Empty: anonymous requests (CouchDB "admin party"); fine only for a local demo.
    std::string username;
    // Resolved password: env COUCHREPD_SERVER_PASSWORD, else password_file, else the
    // inline `password` key (discouraged: the config file is often world-readable).
    std::string password;
    std::string password_file;  // path; one trailing newline of its content is dropped
    Auth auth = Auth::kBasic;
    // PEM file of CA certificates for https; empty uses the system's trust store.
    std::string ca_file;
    // Verify the server's TLS certificate. Turning this off allows interception.
    bool tls_verify = true;
    // Extra headers sent with every request to the server (e.g. a bearer token for a proxy).
    // Their values are treated as secrets.
    std::map<std::string, std::string> headers;
    ProxyAuth proxy_auth;
    // Giving up on a TCP/TLS connect sooner fails over faster but may fail on slow links.
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
    // A request silent this long is abandoned and retried; feeds use heartbeats to stay alive.
    std::chrono::milliseconds request_timeout = std::chrono::seconds(30);
    bool operator==(const Server&) const = default;
  };

  // Which replicator databases are followed and how states are written back (SPEC §2).
  struct Replicator {
    enum class WriteBack {
      kClassic,   // triggered/completed/error in the document (CouchDB 1.x style)
      kTerminal,  // only completed/failed; transient states in the status API only
    };
    // Replicator databases to follow. Empty is allowed only with `discover`.
    std::vector<std::string> databases = {"_replicator"};
    // Also follow every `_replicator` / `*/_replicator` found via _db_updates (or _all_dbs).
    bool discover = false;
    // How often _all_dbs is polled when _db_updates is unavailable: sooner finds new
    // databases faster at the cost of a listing request each time.
    std::chrono::milliseconds discover_interval = std::chrono::seconds(10);
    // Create listed databases that are missing (and install the validation design doc).
    bool create_databases = true;
    WriteBack write_back = WriteBack::kClassic;
    // Heartbeat of the _changes feeds; a feed silent for twice this long is reconnected.
    std::chrono::milliseconds heartbeat = std::chrono::seconds(10);
    // Fair share of running slots per database (name → positive weight); databases not
    // listed weigh 1, so empty means equal shares (SPEC §5).
    std::map<std::string, int> shares;
    // Keep `_design/_replicator` (validate_doc_update, SPEC §1.4) installed. Off leaves
    // document writers unchecked: only for servers where every writer is an admin.
    bool install_validation = true;
    bool operator==(const Replicator&) const = default;
  };

  // Job scheduling and job-level failure handling (SPEC §2.4 level 2, §5).
  struct Scheduler {
    // Running jobs at most: more use more connections and memory on both sides.
    int max_jobs = 500;
    // Rescheduling period: shorter rotates waiting jobs in sooner but restarts jobs more often.
    std::chrono::milliseconds interval = std::chrono::seconds(60);
    // Continuous jobs rotated out per period when jobs are waiting; 0 disables rotation.
    int max_churn = 20;
    // Events kept per job (shown in the status API).
    int max_history = 20;
    // A job running this long is healthy: its crash streak (and backoff) starts over.
    std::chrono::milliseconds health_threshold = std::chrono::seconds(120);
    // Restart delay of a crashed job.
    Backoff backoff{std::chrono::seconds(30), std::chrono::hours(8)};
    // Consecutive crashes before the document shows `error` (classic write-back).
    int error_after = 1;
    // Retry delay (randomised) of a document whose job could not be created because of a
    // temporary failure, e.g. fetching filter code (SPEC §2.4 level 3).
    Backoff doc_backoff{std::chrono::seconds(1), std::chrono::minutes(10)};
    bool operator==(const Scheduler&) const = default;
  };

  // Defaults for the replication options a document does not set (SPEC §1.1).
  struct Replication {
    int worker_processes = 4;     // parallel batches per job: faster, more load on both ends
    int worker_batch_size = 500;  // _changes rows per batch: bigger batches, more memory
    int http_connections = 20;    // connections per endpoint per job
    // A request silent this long is retried (inactivity, not total duration).
    std::chrono::milliseconds connection_timeout = std::chrono::seconds(30);
    int retries_per_request = 5;  // 0 fails the job at the first request failure
    // Checkpoint period: shorter loses less progress on a crash but writes more _local docs.
    std::chrono::milliseconds checkpoint_interval = std::chrono::seconds(30);
    bool use_bulk_get = true;     // _bulk_get (falls back to open_revs when missing)
    bool use_checkpoints = true;  // off: every restart replays from since_seq or 0
    // Attachments at least this big are streamed instead of held in memory.
    int64_t attachment_stream_threshold_bytes = 1 << 20;
    // Where those attachments wait between download and upload (unnamed files,
    // gone when closed); empty: $TMPDIR, else /tmp.
    std::string temp_dir;
    // CA bundle trusted (instead of the system store when set) for endpoints
    // named by URL in documents (SPEC §4.4); server.tls_verify/ca_file never
    // apply to them.
    std::string ca_file;
    // A pooled keep-alive connection unused this long is closed, so idle jobs
    // hold no sockets (continuous feeds have their own connection).
    std::chrono::milliseconds idle_connection_timeout = std::chrono::seconds(30);
    // Jobs that replicate at the same moment (threads of the run pool): a
    // one-shot job holds one for its whole run, a continuous job whose
    // source is on the watched server only while it has changes to write.
    // Each holds up to worker_processes + 1 more threads while it runs.
    int active_jobs = 8;
    // Connections open at once to one host (per credentials), shared by
    // all jobs; 0: active_jobs × (worker_processes + 2), enough for every
    // active job's reader and workers. A call waits at most the connect
    // timeout for one, then opens one over the cap (slower, never stalled).
    int host_connections = 0;
    bool operator==(const Replication&) const = default;
  };

  // Request-level retries and 429 pacing (SPEC §2.4 level 1, §2.5), bounded by the job
  // level above: a request that gives up crashes its job.
  struct Retry {
    std::chrono::milliseconds request_initial_wait = std::chrono::milliseconds(250);
    std::chrono::milliseconds request_max_wait = std::chrono::minutes(5);  // cap of one wait
    // Total time one request may spend retrying, whatever retries_per_request says.
    std::chrono::milliseconds request_budget = std::chrono::seconds(60);
    // Per endpoint and method: the pause before each request grows ×factor on a 429,
    // from `initial` up to `max`, and shrinks by `decrease` on each success.
    struct Pacing {
      std::chrono::milliseconds initial = std::chrono::milliseconds(20);
      double factor = 1.2;
      std::chrono::milliseconds max = std::chrono::seconds(25);
      std::chrono::milliseconds decrease = std::chrono::milliseconds(20);
      bool operator==(const Pacing&) const = default;
    };
    Pacing pacing;
    bool operator==(const Retry&) const = default;
  };

  // The status API and dashboard (SPEC §7).
  struct Status {
    // Bind address. Anything but loopback exposes job details: add `auth`.
    std::string listen_host = "127.0.0.1";  // IPv6 without brackets
    int listen_port = 5986;                 // 0 picks a free port
    // Basic auth for every endpoint; off while `username` is empty.
    struct Auth {
      std::string username;
      // Resolved: env COUCHREPD_STATUS_PASSWORD, else password_file, else inline `password`.
      std::string password;
      std::string password_file;
      bool operator==(const Auth&) const = default;
    };
    Auth auth;
    // With `auth`: GET /health, /health/ready and /health/live still answer
    // without credentials (for load balancers and orchestrator probes).
    bool health_public = false;
    bool dashboard = true;  // serve the HTML dashboard at GET /
    bool operator==(const Status&) const = default;
  };

  // Bounds on what is read from servers (SPEC §10).
  struct Limits {
    // Byte cap on a response read whole and on one streamed row or part; a
    // _bulk_get over it is split, a single revision over it is a write failure.
    int64_t max_response_bytes = int64_t{64} << 20;
    bool operator==(const Limits&) const = default;
  };

  // Several instances sharing the replication documents (SPEC §9): each
  // document's job runs on exactly one live instance, decided through lease
  // documents in `database` on the watched server.
  struct Cluster {
    // Off: this instance runs every document and writes nothing to `database`.
    bool enabled = false;
    // This instance's name among the members; empty: hostname:pid (a new
    // member after each restart). Unique per instance.
    std::string instance_id;
    // The coordination database (created if missing): members' heartbeats
    // and the leases. Every instance of one cluster names the same one.
    std::string database = "couchrepd";
    // Heartbeat period (a heartbeat renews all of this instance's leases):
    // shorter notices a dead instance sooner at the cost of one write and one
    // read of the coordination database per period.
    std::chrono::milliseconds heartbeat = std::chrono::seconds(5);
    // A member (or lease) unchanged this long is dead (free): the failover
    // time. At least 3 heartbeats, so a late renewal is not a failover.
    std::chrono::milliseconds lease_ttl = std::chrono::seconds(30);
    bool operator==(const Cluster&) const = default;
  };

  struct Log {
    enum class Level { kTrace, kDebug, kInfo, kWarn, kError };
    enum class Format {
      kText,  // one human-readable line per event
      kJson,  // one JSON object per line, for log collectors
    };
    enum class Output {
      kStderr,   // standard error (text or JSON lines)
      kJournal,  // systemd's journal, with the structured fields as journal fields
    };
    Level level = Level::kInfo;  // debug and trace are verbose (per request, per batch)
    Format format = Format::kText;
    Output output = Output::kStderr;
    bool operator==(const Log&) const = default;
  };

  Server server;
  Replicator replicator;
  Scheduler scheduler;
  Replication replication;
  Retry retry;
  Status status;
  Limits limits;
  Cluster cluster;
  Log log;
  // Graceful stop (SIGTERM): time to checkpoint running jobs before exiting anyway.
  std::chrono::milliseconds shutdown_timeout = std::chrono::seconds(30);

  bool operator==(const Config&) const = default;
};

// Looks up an environment variable; nullopt when unset. Injected so tests need
// not touch the process environment. An empty value counts as unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The process environment (std::getenv).
std::optional<std::string> RealEnv(const std::string& name);

// Loads and validates the file at `path`. An empty file gives all defaults.
// Relative paths (ca_file, *_file) are resolved against its directory. Every
// error is permanent with code "bad_config"; its reason lists one problem per
// line, in file order, e.g. `etc/couchrepd.yaml:12: scheduler.max_jobs: must
// be a positive integer, got "abc"`. Secret values never appear in errors.
Result<Config> LoadConfigFile(const std::string& path, const EnvLookup& env);

// Same for YAML text; `origin` names it in messages. Relative paths are
// resolved against the working directory.
Result<Config> LoadConfigText(std::string_view yaml, std::string_view origin, const EnvLookup& env);

// The effective configuration as YAML-like text, one key per line, every key
// shown; secrets and header values are shown as *****. For `check-config`.
std::string DescribeConfig(const Config& config);

// The connections one host may have open at once (replication.host_connections,
// or when 0 enough for every active job's reader and workers).
inline int HostConnectionCap(const Config& config) {
  const auto& r = config.replication;
  if (r.host_connections > 0) return r.host_connections;
  return r.active_jobs * (r.worker_processes + 2);
}

// Lower-case names as written in the config ("cookie", "terminal", "warn", "json").
std::string_view Name(Config::Server::Auth auth);
std::string_view Name(Config::Replicator::WriteBack mode);
std::string_view Name(Config::Log::Level level);
std::string_view Name(Config::Log::Format format);
std::string_view Name(Config::Log::Output output);

}  // namespace couchrepd

// Status rendering: every body the status API serves, from one EngineSnapshot
// (SPEC §7). Pure: no I/O, no clock (times come from the snapshot), no locks
// beyond the secret registry that ScrubSecrets reads.
//
// JSON shapes follow CouchDB 3.4's own endpoints, member for member (see the
// recordings in tests/fixtures/couchdb-3.4/56-*.http ... 64-*.http), with
// these differences: `pid` is always null; `node` is couchrepd's own name;
// `_scheduler/docs` keeps the replication id of completed documents;
// `_active_tasks` has `progress` (percent) for one-shot jobs; no
// `bulk_get_*`, `checkpoint_interval` or `*_proxy` members.
//
// Every string taken from the snapshot passes through ScrubSecrets (the
// snapshot already holds display URLs without passwords: this is a backstop).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "couchrepd/engine.h"
#include "couchrepd/http_metrics.h"

namespace couchrepd {

// `limit` and `skip` of a listing. CouchDB's default limit is 100.
struct Page {
  int64_t limit = 100;
  int64_t skip = 0;
};

struct DocsQuery {
  Page page;
  std::optional<std::string> database;  // only this replicator database
  std::vector<std::string> states;      // empty: every state
};

// The document states `states=` accepts, in the order the metrics list them.
const std::vector<std::string>& DocStates();
bool IsDocState(std::string_view state);

// {"error":..., "reason":...}
std::string ErrorBody(std::string_view error, std::string_view reason);

// `GET /_scheduler/jobs`: {"total_rows","offset","jobs":[...]}, by id.
std::string RenderSchedulerJobs(const EngineSnapshot& s, const Page& page, std::string_view node);
// `GET /_scheduler/jobs/{id}`; nullopt when the job is unknown.
std::optional<std::string> RenderSchedulerJob(const EngineSnapshot& s, std::string_view job_id,
                                              std::string_view node);

// `GET /_scheduler/docs[/{db}]`: {"total_rows","offset","docs":[...]}, by
// (database, doc id).
std::string RenderSchedulerDocs(const EngineSnapshot& s, const DocsQuery& query,
                                std::string_view node);
// `GET /_scheduler/docs/{db}/{docid}`; nullopt when the document is unknown.
std::optional<std::string> RenderSchedulerDoc(const EngineSnapshot& s, std::string_view db,
                                              std::string_view doc_id, std::string_view node);
// True when `db` is a followed replicator database or holds known documents.
bool KnowsDatabase(const EngineSnapshot& s, std::string_view db);
// A document's state as `_scheduler/docs` shows it: a document with a job
// takes the job's state (pending, running, crashing, paused, ...).
std::string EffectiveDocState(const EngineSnapshot& s, const DocView& doc);

// `GET /_active_tasks`: one object per running job.
std::string RenderActiveTasks(const EngineSnapshot& s, std::string_view node);
// GET /_cluster: {"enabled":bool} and, when enabled, this instance's id, the
// coordination database, documents known, leases held, lease conflicts and
// losses, the last coordination error, and the members it sees (instance_id,
// self, live, last_heartbeat, heartbeat_age_seconds, owns, leases).
std::string RenderCluster(const EngineSnapshot& s);

// `GET /health`: ok when every replicator feed is connected (and there is at
// least one, and the engine is not shutting down).
struct HealthReport {
  bool ok = false;
  std::string body;  // {"ok":true,"feeds":[...]} or {"ok":false,"reasons":[...],"feeds":[...]}
};
HealthReport RenderHealth(const EngineSnapshot& s);

// `GET /health/live`: ok while the engine loop keeps publishing snapshots
// (it does at least twice a second); a loop stuck for longer than
// `max_age` at `now` is not live. For a process supervisor: restart on 503.
inline constexpr Duration kMaxSnapshotAge = std::chrono::seconds(10);
HealthReport RenderLiveness(const EngineSnapshot& s, TimePoint now,
                            Duration max_age = kMaxSnapshotAge);

// For a service manager (systemd STATUS=, READY=1): whether every followed
// replicator feed is connected (and there is one), and one line of counts,
// e.g. "3 running, 1 pending, 1 crashing, 0 paused; 2/2 replicator feeds connected".
bool FeedsConnected(const EngineSnapshot& s);
std::string ServiceStatusLine(const EngineSnapshot& s);

// `GET /metrics`: Prometheus text exposition format 0.0.4, every name
// prefixed `couchrepd_`, every family with HELP and TYPE, families without
// samples left out. Per-job series are labelled by replication_id only.
std::string RenderMetrics(const EngineSnapshot& s, const HttpMetricsSnapshot& http,
                          std::string_view version);
// The Content-Type of RenderMetrics' output.
inline constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Escapes a label value (backslash, double quote, line feed) for the text format.
std::string EscapeLabelValue(std::string_view value);

// Which endpoint a request path names (the raw, still percent-encoded path,
// without the query string). Path segments are decoded one by one, so a
// `%2F` inside a database name or document id stays part of it. Replicator
// database names may also contain unescaped '/' (`/_scheduler/docs/team/
// _replicator/doc`): the database is the longest leading run of segments that
// is a known database (`known_dbs`), else the shortest one ending in
// `_replicator`, else the first segment; the rest is the document id.
struct StatusRoute {
  enum class Kind {
    kNotFound,
    kBadPath,       // an invalid percent escape
    kDashboard,     // /
    kJobs,          // /_scheduler/jobs
    kJob,           // /_scheduler/jobs/{id}
    kJobAction,     // /_scheduler/jobs/{id}/{reset|pause|resume}
    kDocs,          // /_scheduler/docs
    kDatabaseDocs,  // /_scheduler/docs/{db}
    kDoc,           // /_scheduler/docs/{db}/{docid}
    kActiveTasks,   // /_active_tasks
    kMetrics,       // /metrics
    kHealth,        // /health and /health/ready
    kHealthLive,    // /health/live
    kCluster,       // /_cluster
  };
  Kind kind = Kind::kNotFound;
  std::string job_id;
  std::string action;  // "reset", "pause", "resume"
  std::string db;
  std::string doc_id;
  bool operator==(const StatusRoute&) const = default;
};
StatusRoute ParseStatusPath(std::string_view raw_path, const std::vector<std::string>& known_dbs);
// Every database a snapshot knows (followed feeds and documents' databases).
std::vector<std::string> KnownDatabases(const EngineSnapshot& s);

}  // namespace couchrepd

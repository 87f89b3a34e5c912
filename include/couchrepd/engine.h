// Engine: the running service (`couchrepd serve`).
//
// Wires the pure core to the world. One engine thread owns the DocProcessor
// and the Scheduler and applies their actions; everything else talks to it
// through its event queue:
//   replicator feeds (one thread per replicator database, continuous
//     _changes with include_docs, reconnecting)  -> rows
//   discovery (optional: _db_updates, else polling _all_dbs) -> database set
//   id workers (replication ids need the server uuid and filter code) -> ids
//   job runners (one thread per running ReplicationJob) -> job ended
//   doc writers (write-back of _replication_* fields, per-document order)
//   operators (status API: reset, pause, resume), SIGHUP reloads, shutdown
// After each change it publishes an immutable EngineSnapshot that the status
// API reads without taking the engine's locks.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "couchrepd/cluster.h"
#include "couchrepd/config.h"
#include "couchrepd/doc_processor.h"
#include "couchrepd/replication_job.h"
#include "couchrepd/result.h"
#include "couchrepd/scheduler.h"

namespace couchrepd {

struct FeedHealth {
  std::string db;
  bool connected = false;
  std::string error;          // why not connected (no secrets)
  std::string validation;     // why the validation function is not in place ("" = it is)
  std::string last_seq;       // raw JSON
  uint64_t reconnects = 0;
  uint64_t docs_processed = 0;
};

struct JobDescription {
  std::string id;
  std::string database;
  std::string doc_id;
  std::string source;  // display forms, no credentials
  std::string target;
  std::string user;    // user_ctx.name or ""
  bool continuous = false;
  double start_unix = 0;  // of the current or last run
};

// Counters since the engine started; they only grow.
struct EngineCounters {
  uint64_t checkpoints_ok = 0;      // of ended runs and of the runs still going
  uint64_t checkpoints_failed = 0;
  uint64_t jobs_started = 0;
  uint64_t jobs_crashed = 0;
};

struct EngineSnapshot {
  double taken_unix = 0;
  std::string server_uuid;
  std::vector<JobView> jobs;                       // sorted by id
  std::vector<JobDescription> descriptions;        // same order as jobs
  std::vector<std::optional<JobSnapshot>> progress;  // same order: live or last known
  std::vector<DocView> docs;                       // sorted by (db, doc_id)
  std::vector<FeedHealth> feeds;
  EngineCounters counters;
  bool shutting_down = false;
  std::optional<cluster::ClusterView> cluster;  // cluster.enabled only
  // Wall-clock conversion for TimePoints in the views.
  TimePoint steady_now{};
  double unix_now = 0;
  double ToUnix(TimePoint t) const;
};

class Engine {
 public:
  explicit Engine(Config config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Connects to the server (uuid), prepares the replicator databases and
  // starts every thread. An Error when the server cannot be used at all.
  Status Start();
  // Stops taking work, stops every job with a checkpoint and joins all
  // threads, waiting at most `shutdown_timeout`.
  void Shutdown();
  // SIGHUP: scheduler settings, log level, replicator databases, write-back.
  void Reload(Config config);

  std::shared_ptr<const EngineSnapshot> Snapshot() const;

  // Operator actions; false when the job is unknown.
  bool ResetJob(const std::string& job_id);
  bool PauseJob(const std::string& job_id);
  bool ResumeJob(const std::string& job_id);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace couchrepd

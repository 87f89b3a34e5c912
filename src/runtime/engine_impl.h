// Engine::Impl: the engine's private state and methods, for the engine_*.cpp files only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "couchrepd/clock.h"
#include "couchrepd/couch_client.h"
#include "couchrepd/engine.h"
#include "couchrepd/local_access.h"
#include "couchrepd/log.h"
#include "worker_pool.h"

namespace couchrepd {

struct Engine::Impl {
  struct Event {
    enum class Kind {
      kRow,
      kFeedLost,
      kIdComputed,
      kJobEnded,
      kCommand,
      kReload,
      kDbSet,
      kWake,
      kShutdown
    };
    Kind kind = Kind::kWake;
    std::string db;
    ChangeRow row;
    DocKey key;
    uint64_t generation = 0;
    std::optional<Result<ReplicationId>> id;
    std::string job_id;
    uint64_t run = 0;
    std::optional<Result<JobEnd>> end;
    JobSnapshot progress;
    std::function<void()> command;
    std::shared_ptr<Config> config;
    std::set<std::string> dbs;
  };

  struct Feed {
    std::string db;
    CancelToken cancel;
    std::thread thread;
  };

  struct JobRecord {
    std::shared_ptr<const ReplicationSpec> spec;
    std::string database;
    std::string doc_id;
    bool reduced = false;  // restart with reduced settings after max_backoff (SPEC §2.5)
    std::optional<JobSnapshot> last_progress;
    double start_unix = 0;
  };

  struct Runner {
    uint64_t run = 0;
    std::string job_id;
    std::shared_ptr<ReplicationJob> job;
    std::thread thread;
  };

  explicit Impl(Config c);

  // --- state owned by the engine thread ---
  Config config;
  Endpoint server_endpoint;
  HttpOptions http;
  Scheduler scheduler;
  DocProcessor processor;
  std::map<std::string, JobRecord> jobs;
  std::map<std::string, Runner> runners;  // current run per job id
  std::vector<Runner> stopping;           // old runs still checkpointing
  std::set<std::string> deferred_starts;  // start once the old run ended
  std::multimap<TimePoint, std::pair<DocKey, uint64_t>> retries;
  uint64_t next_run = 1;
  std::set<std::string> followed;    // replicator databases followed
  std::set<std::string> discovered;  // as the last discovery found them
  TimePoint last_snapshot{};
  bool dirty = true;
  EngineCounters counters;
  uint64_t ended_checkpoints_ok = 0;  // of runs that have ended (OnJobEnded)
  uint64_t ended_checkpoints_failed = 0;

  // --- shared ---
  std::mutex events_mu;
  std::condition_variable events_cv;
  std::deque<Event> events;

  mutable std::mutex feeds_mu;
  std::map<std::string, std::unique_ptr<Feed>> feeds;
  std::map<std::string, FeedHealth> health;

  mutable std::mutex uuid_mu;
  std::string server_uuid;

  mutable std::mutex snapshot_mu;
  std::shared_ptr<const EngineSnapshot> snapshot = std::make_shared<EngineSnapshot>();

  std::unique_ptr<WorkerPool> writers;
  std::optional<CouchClient> writer_client;  // the writers' shared session
  CancelToken writes_cancel;  // cuts the state writes in flight at the shutdown deadline
  std::unique_ptr<WorkerPool> id_workers;
  std::thread engine_thread;
  std::thread discovery_thread;
  CancelToken discovery_cancel;
  std::atomic<bool> shutting_down{false};
  // Set by the engine thread (BeginShutdown) before it ends; read by
  // Shutdown after joining it.
  TimePoint shutdown_deadline{};

  Clock& clock = SystemClock();

  // --- engine.cpp: the event queue and the engine loop ---
  static double RandomUnit();
  void Post(Event e);
  CouchClient ServerClient();
  Result<std::string> Uuid();
  void Handle(Event& e, TimePoint now);
  void Loop();

  // --- engine_feeds.cpp: one thread per replicator database ---
  void SetHealth(const std::string& db, const std::function<void(FeedHealth&)>& f);
  void StartFeed(const std::string& db);
  void StopFeed(const std::string& db);
  Status PrepareDatabase(CouchClient& db, const std::string& name, const Config& cfg,
                         ValidationState& validation);
  void ReportValidation(const std::string& db, const ValidationState& state,
                        std::optional<ValidationState>& last);
  void RunFeed(Feed& feed);

  // --- engine_discovery.cpp: which replicator databases are followed ---
  void RunDiscovery();
  void SyncDatabases(const std::set<std::string>& found, TimePoint now);

  // --- engine_jobs.cpp: job runners and the actions of the core ---
  JobSettings SettingsFor(const std::string& job_id, const JobRecord& rec);
  void StartRunner(const std::string& job_id, TimePoint now);
  LogFields JobLogFields(const std::string& job_id, std::string job_state, std::string error);
  void StopRunner(const std::string& job_id);
  void jobs_progress_keep(const std::string& job_id, const JobSnapshot& s);
  void OnJobEnded(Event& e, TimePoint now);
  void Apply(const std::vector<SchedulerAction>& actions, TimePoint now);
  void Apply(const std::vector<DocAction>& actions, TimePoint now);

  // --- engine_snapshot.cpp ---
  void Publish(TimePoint now);

  // --- engine_operators.cpp: operator commands and reloads ---
  bool Operator(const std::string& job_id,
                std::function<std::vector<SchedulerAction>(Scheduler&, TimePoint)> f,
                const char* what);
  void ApplyReload(const Config& next, TimePoint now);

  // --- engine_shutdown.cpp: the engine loop's side of Shutdown ---
  TimePoint BeginShutdown(TimePoint now);
  void AbortRemainingRuns();
};

}  // namespace couchrepd

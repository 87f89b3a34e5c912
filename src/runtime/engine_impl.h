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

#include "couchrepd/change_watcher.h"
#include "couchrepd/clock.h"
#include "couchrepd/couch_client.h"
#include "couchrepd/engine.h"
#include "couchrepd/local_access.h"
#include "couchrepd/log.h"
#include "cluster_member.h"
#include "worker_pool.h"

namespace couchrepd {

// The one _db_updates feed that wakes parked jobs (engine_wake.cpp).
enum class WakeFeedState {
  kUnknown,  // not answered yet
  kUp,       // following from a point after which no event is missed
  kMissing,  // the server has no _db_updates: continuous jobs keep their own feeds
  kDown,     // it kept failing past retry.request_budget: the server may be away
};

// One `_db_updates` answer ({"results":[...],"last_seq":...}): the databases
// named, and last_seq as raw JSON text (integer or opaque string) to send
// back as `since`.
struct DbUpdatesPage {
  std::set<std::string> dbs;
  std::set<std::string> created_or_deleted;
  std::string last_seq;
};
Result<DbUpdatesPage> ReadDbUpdates(CouchClient& root, QueryParams query);
// CouchDB without _global_changes answers 404; other servers 400 or 405.
bool DbUpdatesMissing(const Error& e);
// "_replicator" or ".../_replicator".
bool IsReplicatorDbName(const std::string& name);

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
      kShutdown,
      kJobParked,   // a pass ended caught up (job_id, run, progress)
      kDbUpdated,   // databases on the watched server changed (dbs)
      kWakeFeed,    // the _db_updates feed (re)started or is missing (wake_feed)
      kWatchFired,  // a parked run's source changed, or watching it failed (job_id, run, watch_error)
      kLeaseGranted,  // cluster: this instance holds the lease of `key`: run it
      kLeaseRevoked,  // cluster: stop the job of `key`, then tell ClusterMember::Released
      kJobClaimed,    // cluster: the answer to ClaimJob (key, generation, job_id, elsewhere)
      kJobFreed       // cluster: the job lease of job_id, held elsewhere, may be claimed
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
    WakeFeedState wake_feed = WakeFeedState::kUnknown;
    std::optional<Error> watch_error;
    std::optional<std::string> elsewhere;
  };

  struct Feed {
    std::string db;
    CancelToken cancel;
    std::thread thread;
  };

  struct JobRecord {
    std::shared_ptr<const ReplicationSpec> spec;
    std::string source_display, target_display;  // spec's endpoints as shown (no secrets)
    std::string database;
    std::string doc_id;
    bool reduced = false;  // restart with reduced settings after max_backoff (SPEC §2.5)
    std::optional<JobSnapshot> last_progress;
    double start_unix = 0;
  };

  // What wakes a parked continuous run.
  enum class Waker {
    kNone,       // not parked: one-shot, or a thread and feed of its own
    kDbUpdates,  // its source is on the watched server: the _db_updates feed
    kWatcher,    // any other source: a longpoll of its own on the ChangeWatcher
  };

  // A run of a job: on its own thread (continuous jobs that cannot park), or
  // in passes on the run pool (one-shot jobs: one pass; continuous jobs: a
  // pass whenever their source changes).
  struct Runner {
    uint64_t run = 0;
    std::string job_id;
    std::shared_ptr<ReplicationJob> job;
    std::thread thread;
    bool pooled = false;
    bool queued = false;     // a pass is queued or running on the pool
    bool wake = false;       // the source changed while a pass was queued or running
    Waker waker = Waker::kNone;
    std::string source_db;   // kDbUpdates: the source's database name
    uint64_t watch = 0;      // kWatcher, parked: the ChangeWatcher's id (0: none)
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
  Duration publish_cost{};  // how long the last Publish took (real time)
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
  // The latest state write-back per "db/doc id": a write that failed is
  // retried until it lands, unless a newer one for the document supersedes it.
  std::mutex state_writes_mu;
  std::map<std::string, uint64_t> state_writes;
  std::unique_ptr<WorkerPool> id_workers;
  std::unique_ptr<WorkerPool> run_pool;  // replication.active_jobs threads running passes
  // Engine thread: the wake feed's state, the pooled continuous runs by
  // source database, and the checkpoint passes of parked runs.
  WakeFeedState wake_feed = WakeFeedState::kUnknown;
  std::map<std::string, std::set<std::string>> watched;
  // Passes due at a time: checkpoints of parked runs, retries of a watch.
  std::multimap<TimePoint, std::pair<std::string, uint64_t>> timed_passes;
  std::unique_ptr<ChangeWatcher> watcher;
  std::thread wake_thread;
  CancelToken wake_cancel;
  std::thread engine_thread;
  std::thread discovery_thread;
  CancelToken discovery_cancel;
  std::mutex discovery_mu;
  std::condition_variable discovery_cv;
  bool discovery_kicked = false;    // a replicator database came or went
  bool db_updates_missing = false;  // discovery polls
  std::atomic<bool> shutting_down{false};
  // Set by the engine thread (BeginShutdown) before it ends; read by
  // Shutdown after joining it.
  TimePoint shutdown_deadline{};

  Clock& clock = SystemClock();

  // --- cluster (config cluster.enabled; engine thread, except `cluster` itself) ---
  std::unique_ptr<ClusterMember> cluster;
  std::map<DocKey, ChangeRow> cluster_rows;  // the latest row of every replication document
  std::set<DocKey> leased;                   // documents this instance may run
  std::map<DocKey, std::set<uint64_t>> releasing;  // revoked: their runs still checkpointing
  std::map<std::string, std::set<uint64_t>> job_releasing;  // removed jobs: runs still checkpointing

  // --- engine.cpp: the event queue and the engine loop ---
  static double RandomUnit();
  void Post(Event e);
  CouchClient ServerClient();
  bool AnyRunActive() const;  // a run on its own thread, a pass queued or running
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
  // (_db_updates answers are read by engine_wake.cpp's ReadDbUpdates)
  void RunDiscovery();
  // Lists again at once (a replicator database came or went), or notes that
  // _db_updates is missing.
  void KickDiscovery(bool missing = false);
  void SyncDatabases(const std::set<std::string>& found, TimePoint now);

  // --- engine_jobs.cpp: job runners and the actions of the core ---
  JobSettings SettingsFor(const std::string& job_id, const JobRecord& rec);
  void StartRunner(const std::string& job_id, TimePoint now);
  LogFields JobLogFields(const std::string& job_id, std::string job_state, std::string error);
  void PostRunResult(ReplicationJob& job, const std::string& job_id, uint64_t run);
  void QueuePass(Runner& r, bool front);
  void StopRunner(const std::string& job_id);
  void jobs_progress_keep(const std::string& job_id, const JobSnapshot& s);
  void OnJobEnded(Event& e, TimePoint now);
  void Apply(const std::vector<SchedulerAction>& actions, TimePoint now);
  void Apply(const std::vector<DocAction>& actions, TimePoint now);

  // --- engine_wake.cpp: passes on the run pool, woken by one _db_updates feed ---
  std::string WatchedSourceDb(const ReplicationSpec& spec) const;
  void OnJobParked(Event& e, TimePoint now);
  void OnDbUpdated(const std::set<std::string>& dbs);
  void OnWakeFeed(WakeFeedState state, TimePoint now);
  void RunTimedPasses(TimePoint now);
  void CancelWatch(Runner& r);  // the ChangeWatcher's longpoll of a parked run
  void Unwatch(Runner& r);      // that, and its place in `watched`
  void StartWatch(Runner& r);
  void OnWatchFired(Event& e, TimePoint now);
  void RunWakeFeed();

  // --- engine_cluster.cpp: only the documents whose lease this instance holds ---
  void StartCluster();
  void OnClusterRow(const std::string& db, const ChangeRow& row, TimePoint now);
  void OnLeaseGranted(const DocKey& key, TimePoint now);
  void OnLeaseRevoked(const DocKey& key, TimePoint now);
  void OnClusterRunEnded(uint64_t run);
  void ClaimJob(const DocAction& a, TimePoint now);
  void ReleaseJob(const std::string& job_id);
  void LeaseFree(const DocKey& key);
  void ForgetClusterDatabase(const std::string& db);

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

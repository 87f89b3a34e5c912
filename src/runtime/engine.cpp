#include "couchrepd/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "couchrepd/couch_client.h"
#include "couchrepd/http_metrics.h"
#include "couchrepd/limits.h"
#include "couchrepd/local_access.h"
#include "couchrepd/log.h"
#include "couchrepd/replication_setup.h"
#include "couchrepd/replication_stats.h"
#include "couchrepd/replicator_ddoc.h"
#include "couchrepd/server_connection.h"
#include "doc_writer.h"

namespace couchrepd {

namespace {

using namespace std::chrono_literals;

// How often the snapshot is refreshed while jobs make progress.
constexpr Duration kSnapshotPeriod = 500ms;
// Wait before a replicator feed that failed permanently tries again.
constexpr Duration kFeedRetry = 5s;
constexpr int kWriterThreads = 4;
constexpr int kIdThreads = 2;

double RandomUnit() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

bool IsReplicatorDbName(const std::string& name) {
  return name == "_replicator" ||
         (name.size() > 12 && name.compare(name.size() - 12, 12, "/_replicator") == 0);
}

// A simple FIFO worker pool with per-key ordering when `key` hashes tasks to
// a fixed thread.
class WorkerPool {
 public:
  WorkerPool(int threads, const char* name) : name_(name) {
    // Every queue exists before the first thread runs: a thread must never
    // read queues_ while it is still growing (found by TSan).
    for (int i = 0; i < threads; ++i) queues_.push_back(std::make_unique<Queue>());
    for (auto& q : queues_) {
      Queue* queue = q.get();
      threads_.emplace_back([this, queue] { Run(*queue); });
    }
  }
  ~WorkerPool() { Stop(); }
  void Post(size_t key, std::function<void()> task) {
    Queue& q = *queues_[key % queues_.size()];
    std::lock_guard<std::mutex> lock(q.mu);
    q.tasks.push_back(std::move(task));
    q.cv.notify_one();
  }
  void Stop() {
    for (auto& q : queues_) {
      std::lock_guard<std::mutex> lock(q->mu);
      q->stop = true;
      q->cv.notify_all();
    }
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    bool stop = false;
  };
  void Run(Queue& q) {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(q.mu);
        q.cv.wait(lock, [&] { return q.stop || !q.tasks.empty(); });
        if (q.tasks.empty()) return;  // stopping and drained
        task = std::move(q.tasks.front());
        q.tasks.pop_front();
      }
      try {
        task();
      } catch (const std::exception& e) {
        spdlog::error("{} task failed: {}", name_, e.what());
      }
    }
  }
  const char* name_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<std::thread> threads_;
};

}  // namespace

double EngineSnapshot::ToUnix(TimePoint t) const {
  return unix_now - std::chrono::duration<double>(steady_now - t).count();
}

struct Engine::Impl {
  struct Event {
    enum class Kind { kRow, kFeedLost, kIdComputed, kJobEnded, kCommand, kReload, kDbSet, kWake, kShutdown };
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
    bool continuous = false;
    bool reduced = false;  // restart with reduced settings after max_backoff (SPEC §2.5)
    std::optional<JobSnapshot> last_progress;
    double start_unix = 0;
  };

  struct Runner {
    uint64_t run = 0;
    std::string job_id;
    std::shared_ptr<ReplicationJob> job;
    std::thread thread;
    bool stopping = false;
  };

  explicit Impl(Config c)
      : config(std::move(c)),
        scheduler(SchedulerSettings::From(config)),
        processor(DocProcessorSettings::From(config, Endpoint{})) {}

  // --- state owned by the engine thread ---
  Config config;
  Endpoint server_endpoint;
  HttpOptions http;
  Scheduler scheduler;
  DocProcessor processor;
  std::map<std::string, JobRecord> jobs;
  std::map<std::string, Runner> runners;         // current run per job id
  std::vector<Runner> stopping;                   // old runs still checkpointing
  std::set<std::string> deferred_starts;          // start once the old run ended
  std::multimap<TimePoint, std::pair<DocKey, uint64_t>> retries;
  uint64_t next_run = 1;
  std::set<std::string> followed;                 // replicator databases followed
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
  std::unique_ptr<WorkerPool> id_workers;
  std::thread engine_thread;
  std::thread discovery_thread;
  CancelToken discovery_cancel;
  std::atomic<bool> shutting_down{false};

  Clock& clock = SystemClock();

  void Post(Event e) {
    {
      std::lock_guard<std::mutex> lock(events_mu);
      events.push_back(std::move(e));
    }
    events_cv.notify_one();
  }

  CouchClient ServerClient() { return CouchClient(server_endpoint, http); }

  Result<std::string> Uuid() {
    {
      std::lock_guard<std::mutex> lock(uuid_mu);
      if (!server_uuid.empty()) return server_uuid;
    }
    auto info = ServerClient().GetServerInfo();
    if (!info.ok()) return info.error();
    std::lock_guard<std::mutex> lock(uuid_mu);
    server_uuid = info->uuid;
    return server_uuid;
  }

  // ---------------------------------------------------------------- feeds
  void SetHealth(const std::string& db, const std::function<void(FeedHealth&)>& f) {
    std::lock_guard<std::mutex> lock(feeds_mu);
    auto& h = health[db];
    h.db = db;
    f(h);
  }

  void StartFeed(const std::string& db) {
    std::lock_guard<std::mutex> lock(feeds_mu);
    if (feeds.count(db)) return;
    auto feed = std::make_unique<Feed>();
    feed->db = db;
    Feed* raw = feed.get();
    health[db].db = db;
    feed->thread = std::thread([this, raw] { RunFeed(*raw); });
    feeds[db] = std::move(feed);
    spdlog::info("following replicator database {}", db);
  }

  void StopFeed(const std::string& db) {
    std::unique_ptr<Feed> feed;
    {
      std::lock_guard<std::mutex> lock(feeds_mu);
      auto it = feeds.find(db);
      if (it == feeds.end()) return;
      feed = std::move(it->second);
      feeds.erase(it);
      health.erase(db);
    }
    feed->cancel.Cancel();
    if (feed->thread.joinable()) feed->thread.join();
    spdlog::info("no longer following replicator database {}", db);
  }

  // Only databases listed in the configuration are ever created; discovered
  // ones are only followed (a deleted one stays deleted). `validation` says
  // whether our `_design/_replicator` is in place afterwards (SPEC §1.3).
  Status PrepareDatabase(CouchClient& db, const std::string& name, const Config& cfg,
                         ValidationState& validation) {
    auto info = db.GetDbInfo();
    if (!info.ok()) {
      const auto& listed = cfg.replicator.databases;
      bool configured = std::find(listed.begin(), listed.end(), name) != listed.end();
      if (info.error().http_status == 404 && cfg.replicator.create_databases && configured) {
        Status created = db.CreateDb();
        if (!created.ok() && created.error().http_status != 412) return created.error();
        spdlog::info("created replicator database {}", name);
      } else {
        return info.error();
      }
    }
    if (cfg.replicator.install_validation) {
      Status s = EnsureReplicatorDesignDoc(db);
      if (s.ok()) {
        validation = {true, ""};
      } else {
        std::string reason = ScrubSecrets(s.error().Message());
        LogWith({.db = name, .error = reason}, spdlog::level::warn,
                "could not install _design/_replicator in {}: {}", name, reason);
        validation = {false, "_design/_replicator could not be installed: " + reason};
      }
      return OkStatus();
    }
    auto current = db.GetDoc(std::string(kReplicatorDesignDocId));
    if (current.ok()) {
      validation = ValidationOf(false, *current);
    } else if (current.error().http_status == 404) {
      validation = {false, "_design/_replicator is missing (replicator.install_validation is off)"};
    } else {
      validation = {false, "_design/_replicator could not be read: " +
                               ScrubSecrets(current.error().Message())};
    }
    return OkStatus();
  }

  // The validation state that a `_design/_replicator` row (or document) shows.
  static ValidationState ValidationOf(bool deleted, const std::string& doc_json) {
    if (deleted) return {false, "_design/_replicator was deleted"};
    if (DesignDocNeedsUpdate(doc_json)) {
      return {false, "_design/_replicator was changed by someone and no longer holds "
                     "couchrepd's validation function"};
    }
    return {true, ""};
  }

  // Tells the DocProcessor (through the event queue, so in feed order) when
  // the validation function of `db` comes or goes; logs why.
  void ReportValidation(const std::string& db, const ValidationState& state,
                        std::optional<ValidationState>& last) {
    if (last && *last == state) return;
    bool first = !last.has_value();
    last = state;
    {
      std::lock_guard<std::mutex> lock(feeds_mu);
      auto it = health.find(db);
      if (it != health.end()) it->second.validation = state.in_place ? "" : state.reason;
    }
    if (!state.in_place) {
      spdlog::warn("replicator database {}: the validation function is not in place ({}); "
                   "no document of it gets the server credentials for local endpoints",
                   db, state.reason);
    } else if (!first) {
      spdlog::info("replicator database {}: the validation function is in place again", db);
    }
    Event e;
    e.kind = Event::Kind::kCommand;
    e.db = db;
    bool in_place = state.in_place;
    e.command = [this, db, in_place] { processor.SetValidationInPlace(db, in_place); };
    Post(std::move(e));
  }

  void RunFeed(Feed& feed) {
    ScopedLogFields log_scope({.db = feed.db});
    CouchClient db = ServerClient().Database(feed.db);
    std::string since = "0";
    std::optional<ValidationState> validation_sent;
    while (!feed.cancel.cancelled()) {
      Config cfg;  // re-read: a SIGHUP may have listed or unlisted this database
      {
        std::lock_guard<std::mutex> lock(events_mu);
        cfg = config;
      }
      ValidationState validation;
      Status prepared = PrepareDatabase(db, feed.db, cfg, validation);
      if (!prepared.ok()) {
        std::string reason = ScrubSecrets(prepared.error().Message());
        SetHealth(feed.db, [&](FeedHealth& h) {
          h.connected = false;
          h.error = reason;
        });
        LogWith({.error = reason}, spdlog::level::warn, "replicator database {}: {}", feed.db,
                reason);
        if (prepared.error().http_status == 404) {
          Event e;
          e.kind = Event::Kind::kFeedLost;
          e.db = feed.db;
          Post(std::move(e));
          since = "0";
        }
        if (!SleepUnlessCancelled(clock, kFeedRetry, &feed.cancel)) break;
        continue;
      }
      // Going back to "in place" after a reconnect waits for the feed's own
      // `_design/_replicator` row: rows written while it was not in place come
      // first and must not get the server credentials.
      if (!validation.in_place || !validation_sent || since == "0") {
        ReportValidation(feed.db, validation, validation_sent);
      }
      ChangesRequest req;
      req.include_docs = true;
      req.style = "main_only";
      req.heartbeat = cfg.replicator.heartbeat;
      req.since = since;
      req.on_open = [&] {
        SetHealth(feed.db, [&](FeedHealth& h) {
          h.connected = true;
          h.error.clear();
        });
      };
      auto r = db.FollowChanges(
          req,
          [&](ChangeRow&& row) {
            since = row.seq;
            SetHealth(feed.db, [&](FeedHealth& h) {
              h.last_seq = row.seq;
              ++h.docs_processed;
            });
            if (row.id == kReplicatorDesignDocId) {
              ReportValidation(feed.db, ValidationOf(row.deleted, row.doc), validation_sent);
            }
            Event e;
            e.kind = Event::Kind::kRow;
            e.db = feed.db;
            e.row = std::move(row);
            Post(std::move(e));
            return true;
          },
          feed.cancel,
          [&](const Error& e) {
            std::string reason = ScrubSecrets(e.Message());
            SetHealth(feed.db, [&](FeedHealth& h) {
              h.connected = false;
              h.error = reason;
              ++h.reconnects;
            });
            LogWith({.error = reason}, spdlog::level::info, "replicator feed {} reconnecting: {}",
                    feed.db, reason);
          });
      if (feed.cancel.cancelled()) break;
      if (!r.ok()) {
        std::string reason = ScrubSecrets(r.error().Message());
        SetHealth(feed.db, [&](FeedHealth& h) {
          h.connected = false;
          h.error = reason;
          ++h.reconnects;
        });
        LogWith({.error = reason}, spdlog::level::warn, "replicator feed {} failed: {}", feed.db,
                reason);
        if (r.error().http_status == 404) {
          Event e;
          e.kind = Event::Kind::kFeedLost;
          e.db = feed.db;
          Post(std::move(e));
          since = "0";
        }
        if (!SleepUnlessCancelled(clock, kFeedRetry, &feed.cancel)) break;
      }
    }
  }

  // ------------------------------------------------------------ discovery
  void RunDiscovery() {
    Duration interval;
    {
      std::lock_guard<std::mutex> lock(events_mu);
      interval = config.replicator.discover_interval;
    }
    CouchClient root = ServerClient();
    bool db_updates_works = true;
    while (!discovery_cancel.cancelled()) {
      auto all = root.AllDbs();
      if (all.ok()) {
        Event e;
        e.kind = Event::Kind::kDbSet;
        for (const auto& name : *all) {
          if (IsReplicatorDbName(name)) e.dbs.insert(name);
        }
        Post(std::move(e));
      } else {
        spdlog::warn("database discovery: {}", ScrubSecrets(all.error().Message()));
      }
      if (db_updates_works) {
        // Wait for any database event, then list again.
        HttpRequest probe;
        probe.path = "/_db_updates";
        probe.query = {{"feed", "longpoll"}, {"timeout", std::to_string(interval.count())}};
        auto r = root.Send(probe);
        if (r.ok()) continue;
        if (r.error().http_status == 400 || r.error().http_status == 404 ||
            r.error().http_status == 405) {
          spdlog::info("_db_updates is not available ({}); polling _all_dbs every {} ms",
                       r.error().Message(), interval.count());
          db_updates_works = false;
        }
      }
      if (!SleepUnlessCancelled(clock, interval, &discovery_cancel)) break;
    }
  }

  // ------------------------------------------------------------- jobs
  JobSettings SettingsFor(const std::string& job_id, const JobRecord& rec) {
    JobSettings s;
    s.spec = *rec.spec;
    if (rec.reduced) {
      s.spec.worker_processes = std::min(s.spec.worker_processes, 2);
      s.spec.worker_batch_size = std::min(s.spec.worker_batch_size, 100);
      s.spec.http_connections = std::min(s.spec.http_connections, 5);
    }
    s.http = http;
    s.tls = EndpointTlsPolicy::From(config);
    s.attachment_stream_threshold_bytes = config.replication.attachment_stream_threshold_bytes;
    s.temp_dir = config.replication.temp_dir;
    s.heartbeat = config.replicator.heartbeat;
    ReplicationId id;
    id.full = job_id;
    id.base = job_id.substr(0, job_id.find('+'));
    s.id = id;
    s.log_prefix = "[" + rec.database + "/" + rec.doc_id + " " + id.base.substr(0, 8) + "]";
    s.log_fields.db = rec.database;
    s.log_fields.doc_id = rec.doc_id;
    return s;
  }

  void StartRunner(const std::string& job_id, TimePoint now) {
    auto rec = jobs.find(job_id);
    if (rec == jobs.end()) return;
    // Never two runs of one replication at once: an old run that still
    // checkpoints finishes first (OnJobEnded starts the new one).
    bool old_running = runners.count(job_id) > 0;
    for (const auto& old : stopping) old_running |= old.job_id == job_id;
    if (old_running) {
      deferred_starts.insert(job_id);
      return;
    }
    Runner r;
    r.run = next_run++;
    r.job_id = job_id;
    JobSettings settings = SettingsFor(job_id, rec->second);
    std::string prefix = settings.log_prefix;
    r.job = std::make_shared<ReplicationJob>(std::move(settings));
    rec->second.start_unix = clock.UnixSeconds();
    auto job = r.job;
    uint64_t run = r.run;
    r.thread = std::thread([this, job, job_id, run] {
      // Nothing a server sends may end the process: an allocation or a
      // thread that fails inside the job fails only the job (SPEC §10).
      Result<JobEnd> result = Error::Temporary("internal", "the job ended without a result");
      try {
        result = job->Run();
      } catch (const std::bad_alloc&) {
        result = Error::Temporary("out_of_memory", "the job ran out of memory");
      } catch (const std::exception& e) {
        result = Error::Temporary("internal", CapText(e.what()));
      }
      Event e;
      e.kind = Event::Kind::kJobEnded;
      e.job_id = job_id;
      e.run = run;
      e.progress = job->Snapshot();
      e.end = std::move(result);
      Post(std::move(e));
    });
    runners[job_id] = std::move(r);
    ++counters.jobs_started;
    LogWith({.db = rec->second.database,
             .doc_id = rec->second.doc_id,
             .replication_id = job_id,
             .job_state = "running"},
            spdlog::level::info, "{} started", prefix);
    Apply(processor.OnJobStarted(job_id, now), now);
  }

  // The structured log fields of a job's line written by the engine.
  LogFields JobLogFields(const std::string& job_id, std::string job_state, std::string error) {
    LogFields f;
    f.replication_id = job_id;
    f.job_state = std::move(job_state);
    f.error = std::move(error);
    auto rec = jobs.find(job_id);
    if (rec != jobs.end()) {
      f.db = rec->second.database;
      f.doc_id = rec->second.doc_id;
    }
    return f;
  }

  void StopRunner(const std::string& job_id) {
    auto it = runners.find(job_id);
    if (it == runners.end()) return;
    it->second.stopping = true;
    it->second.job->Stop();
    jobs_progress_keep(job_id, it->second.job->Snapshot());
    stopping.push_back(std::move(it->second));
    runners.erase(it);
  }

  void jobs_progress_keep(const std::string& job_id, const JobSnapshot& s) {
    auto rec = jobs.find(job_id);
    if (rec != jobs.end()) rec->second.last_progress = s;
  }

  void OnJobEnded(Event& e, TimePoint now) {
    // Join the finished thread.
    bool was_stopping = false;
    for (auto it = stopping.begin(); it != stopping.end(); ++it) {
      if (it->run == e.run) {
        if (it->thread.joinable()) it->thread.join();
        stopping.erase(it);
        was_stopping = true;
        break;
      }
    }
    bool current = false;
    auto rit = runners.find(e.job_id);
    if (rit != runners.end() && rit->second.run == e.run) {
      if (rit->second.thread.joinable()) rit->second.thread.join();
      runners.erase(rit);
      current = true;
    }
    jobs_progress_keep(e.job_id, e.progress);
    // The run's final counts move from the live sum to the ended total in
    // one step, so couchrepd_checkpoints_total never goes down.
    ended_checkpoints_ok += e.progress.checkpoints_ok;
    ended_checkpoints_failed += e.progress.checkpoints_failed;
    dirty = true;
    if (deferred_starts.erase(e.job_id)) {
      if (jobs.count(e.job_id) && scheduler.Job(e.job_id) &&
          scheduler.Job(e.job_id)->state == JobState::kRunning) {
        StartRunner(e.job_id, now);
      }
    }
    if (was_stopping || !current) return;  // we asked it to stop
    const Result<JobEnd>& end = *e.end;
    if (end.ok() && *end == JobEnd::kCompleted) {
      LogWith(JobLogFields(e.job_id, "completed", ""), spdlog::level::info,
              "[{}] completed: {} docs written", e.job_id, e.progress.stats.docs_written);
      ReplicationProgress p;
      p.stats = e.progress.stats;
      p.changes_pending = 0;
      p.checkpointed_source_seq = e.progress.checkpointed_seq.value_or("0");
      p.source_seq = e.progress.source_seq.value_or("0");
      p.through_seq = e.progress.through_seq.value_or("0");
      p.start_time = static_cast<int64_t>(e.progress.started_unix);
      Apply(scheduler.OnCompleted(e.job_id, now), now);
      Apply(processor.OnJobCompleted(e.job_id, RenderReplicationStatsField(p), now), now);
      return;
    }
    std::string reason = end.ok() ? std::string("the job stopped unexpectedly")
                                  : ScrubSecrets(end.error().Message());
    if (!end.ok() && end.error().error == "max_backoff") {
      auto rec = jobs.find(e.job_id);
      if (rec != jobs.end()) rec->second.reduced = true;
    }
    ++counters.jobs_crashed;
    LogWith(JobLogFields(e.job_id, "crashing", reason), spdlog::level::warn, "[{}] crashed: {}",
            e.job_id, reason);
    Apply(scheduler.OnCrashed(e.job_id, reason, now), now);
    int crashes = 1;
    if (auto view = scheduler.Job(e.job_id)) crashes = view->consecutive_crashes;
    Apply(processor.OnJobCrashed(e.job_id, reason, crashes, now), now);
  }

  // ---------------------------------------------------------- actions
  void Apply(const std::vector<SchedulerAction>& actions, TimePoint now) {
    for (const auto& a : actions) {
      dirty = true;
      switch (a.type) {
        case SchedulerAction::Type::kStart:
          StartRunner(a.job_id, now);
          break;
        case SchedulerAction::Type::kStop:
          StopRunner(a.job_id);
          break;
        case SchedulerAction::Type::kHealthy:
          Apply(processor.OnJobHealthy(a.job_id, now), now);
          break;
      }
    }
  }

  void Apply(const std::vector<DocAction>& actions, TimePoint now) {
    for (const auto& a : actions) {
      dirty = true;
      switch (a.type) {
        case DocAction::Type::kComputeId: {
          auto spec = a.spec;
          DocKey key = a.doc;
          uint64_t gen = a.generation;
          EndpointTlsPolicy tls = EndpointTlsPolicy::From(config);
          id_workers->Post(std::hash<std::string>{}(key.db + "/" + key.doc_id), [this, spec, key, gen, tls] {
            Event e;
            e.kind = Event::Kind::kIdComputed;
            e.key = key;
            e.generation = gen;
            auto uuid = Uuid();
            if (!uuid.ok()) {
              Error err = uuid.error();
              err.kind = ErrorKind::kTemporary;
              e.id = Result<ReplicationId>(err);
            } else {
              e.id = ComputeIdFor(*spec, *uuid, http, tls);
            }
            Post(std::move(e));
          });
          break;
        }
        case DocAction::Type::kAddJob: {
          JobRecord rec;
          rec.spec = a.spec;
          rec.database = a.doc.db;
          rec.doc_id = a.doc.doc_id;
          rec.continuous = a.continuous;
          auto old = jobs.find(a.job_id);
          if (old != jobs.end()) rec.last_progress = old->second.last_progress;
          jobs[a.job_id] = rec;
          Apply(scheduler.Add(JobInfo{a.job_id, a.doc.db, a.doc.doc_id, a.continuous}, now), now);
          break;
        }
        case DocAction::Type::kRemoveJob:
          Apply(scheduler.Remove(a.job_id, now), now);
          StopRunner(a.job_id);
          jobs.erase(a.job_id);
          break;
        case DocAction::Type::kWriteState: {
          if (shutting_down.load()) break;
          DocKey key = a.doc;
          StateWrite write = a.write;
          if (write.state == "error" || write.state == "failed") {
            std::string reason = write.reason.value_or("");
            LogWith({.db = key.db,
                     .doc_id = key.doc_id,
                     .replication_id = write.replication_id.value_or(""),
                     .job_state = *write.state,
                     .error = reason},
                    spdlog::level::warn, "{}/{}: {}: {}", key.db, key.doc_id, *write.state, reason);
          }
          writers->Post(std::hash<std::string>{}(key.db + "/" + key.doc_id), [this, key, write] {
            // One session (connections, cookie) serves every write-back.
            CouchClient db = writer_client->Database(key.db);
            Status s = WriteState(db, key.doc_id, write, clock, RandomUnit);
            if (!s.ok()) {
              std::string error = ScrubSecrets(s.error().Message());
              LogWith({.db = key.db, .doc_id = key.doc_id, .error = error}, spdlog::level::warn,
                      "could not write the state of {}/{}: {}", key.db, key.doc_id, error);
            }
          });
          break;
        }
        case DocAction::Type::kRetryLater:
          retries.emplace(a.at, std::make_pair(a.doc, a.generation));
          break;
      }
    }
  }

  void Handle(Event& e, TimePoint now) {
    switch (e.kind) {
      case Event::Kind::kRow:
        Apply(processor.OnChange(e.db, e.row.id, e.row.deleted, e.row.doc, now, RandomUnit), now);
        break;
      case Event::Kind::kFeedLost:
        Apply(processor.OnDatabaseRemoved(e.db, now), now);
        break;
      case Event::Kind::kIdComputed:
        Apply(processor.OnIdComputed(e.key, e.generation, *e.id, now, RandomUnit), now);
        break;
      case Event::Kind::kJobEnded:
        OnJobEnded(e, now);
        break;
      case Event::Kind::kCommand:
        e.command();
        break;
      case Event::Kind::kReload:
        ApplyReload(*e.config, now);
        break;
      case Event::Kind::kDbSet:
        SyncDatabases(e.dbs, now);
        break;
      case Event::Kind::kWake:
      case Event::Kind::kShutdown:
        break;
    }
  }

  std::set<std::string> WantedDatabases(const Config& cfg, const std::set<std::string>& discovered) {
    std::set<std::string> wanted(cfg.replicator.databases.begin(), cfg.replicator.databases.end());
    if (cfg.replicator.discover) wanted.insert(discovered.begin(), discovered.end());
    return wanted;
  }

  std::set<std::string> discovered;

  void SyncDatabases(const std::set<std::string>& found, TimePoint now) {
    discovered = found;
    auto wanted = WantedDatabases(config, discovered);
    for (const auto& db : std::set<std::string>(followed)) {
      if (!wanted.count(db)) {
        StopFeed(db);
        followed.erase(db);
        Apply(processor.OnDatabaseRemoved(db, now), now);
      }
    }
    for (const auto& db : wanted) {
      if (!followed.count(db)) {
        followed.insert(db);
        StartFeed(db);
      }
    }
  }

  void ApplyReload(const Config& next, TimePoint now) {
    InitLoggingFromConfig(next);
    RegisterConfigSecrets(next);
    {
      std::lock_guard<std::mutex> lock(events_mu);
      config = next;
    }
    scheduler.UpdateSettings(SchedulerSettings::From(next));
    processor.UpdateSettings(DocProcessorSettings::From(next, server_endpoint));
    SyncDatabases(discovered, now);
    Apply(scheduler.Tick(now), now);
    spdlog::info("configuration reloaded");
  }

  // ---------------------------------------------------------- snapshot
  void Publish(TimePoint now) {
    auto s = std::make_shared<EngineSnapshot>();
    s->steady_now = now;
    s->unix_now = clock.UnixSeconds();
    s->taken_unix = s->unix_now;
    {
      std::lock_guard<std::mutex> lock(uuid_mu);
      s->server_uuid = server_uuid;
    }
    s->jobs = scheduler.Jobs();
    for (const auto& view : s->jobs) {
      JobDescription d;
      d.id = view.info.id;
      d.database = view.info.database;
      d.doc_id = view.info.doc_id;
      d.continuous = view.info.continuous;
      std::optional<JobSnapshot> progress;
      auto rec = jobs.find(view.info.id);
      if (rec != jobs.end()) {
        d.source = rec->second.spec->source.Display();
        d.target = rec->second.spec->target.Display();
        d.user = rec->second.spec->user_ctx.name.value_or("");
        d.start_unix = rec->second.start_unix;
        progress = rec->second.last_progress;
      }
      auto run = runners.find(view.info.id);
      if (run != runners.end()) progress = run->second.job->Snapshot();
      s->descriptions.push_back(std::move(d));
      s->progress.push_back(std::move(progress));
    }
    s->docs = processor.Docs();
    {
      std::lock_guard<std::mutex> lock(feeds_mu);
      for (const auto& [db, h] : health) s->feeds.push_back(h);
    }
    s->counters = counters;
    s->counters.checkpoints_ok = ended_checkpoints_ok;
    s->counters.checkpoints_failed = ended_checkpoints_failed;
    auto add_live = [&](const Runner& r) {
      JobSnapshot live = r.job->Snapshot();
      s->counters.checkpoints_ok += live.checkpoints_ok;
      s->counters.checkpoints_failed += live.checkpoints_failed;
    };
    for (const auto& [id, r] : runners) add_live(r);
    for (const auto& r : stopping) add_live(r);
    s->shutting_down = shutting_down.load();
    std::lock_guard<std::mutex> lock(snapshot_mu);
    snapshot = std::move(s);
  }

  // ---------------------------------------------------------- operators
  // Runs `f` on the engine thread; false when the job is unknown.
  bool Operator(const std::string& job_id,
                std::function<std::vector<SchedulerAction>(Scheduler&, TimePoint)> f,
                const char* what) {
    if (!engine_thread.joinable() || shutting_down.load()) return false;
    auto done = std::make_shared<std::promise<bool>>();
    auto result = done->get_future();
    Event e;
    e.kind = Event::Kind::kCommand;
    e.command = [this, job_id, f, what, done] {
      if (!scheduler.Job(job_id)) {
        done->set_value(false);
        return;
      }
      TimePoint now = clock.Now();
      spdlog::info("operator: {} of job {}", what, job_id);
      Apply(f(scheduler, now), now);
      dirty = true;
      done->set_value(true);
    };
    Post(std::move(e));
    if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return false;
    return result.get();
  }

  // ---------------------------------------------------------- main loop
  void Loop() {
    TimePoint shutdown_deadline{};
    bool stopping_all = false;
    while (true) {
      TimePoint now = clock.Now();
      TimePoint wake = scheduler.NextWakeup(now);
      if (!retries.empty()) wake = std::min(wake, retries.begin()->first);
      wake = std::min(wake, now + kSnapshotPeriod);
      std::deque<Event> batch;
      {
        std::unique_lock<std::mutex> lock(events_mu);
        events_cv.wait_until(lock, wake, [&] { return !events.empty(); });
        batch.swap(events);
      }
      now = clock.Now();
      bool shutdown = false;
      for (auto& e : batch) {
        if (e.kind == Event::Kind::kShutdown) shutdown = true;
        // While stopping, only the ends of jobs matter: rows, ids and
        // commands arriving now must not start anything new.
        if (stopping_all && e.kind != Event::Kind::kJobEnded) continue;
        Handle(e, now);
      }
      if (shutdown && !stopping_all) {
        stopping_all = true;
        shutting_down = true;
        Duration timeout;
        {
          std::lock_guard<std::mutex> lock(events_mu);
          timeout = config.shutdown_timeout;
        }
        shutdown_deadline = now + timeout;
        // Feeds end first, so no row starts a job while the others stop.
        {
          std::lock_guard<std::mutex> lock(feeds_mu);
          for (auto& [db, feed] : feeds) feed->cancel.Cancel();
        }
        std::vector<std::string> ids;
        for (const auto& [id, r] : runners) ids.push_back(id);
        for (const auto& id : ids) StopRunner(id);
        spdlog::info("shutting down: stopping {} running jobs", ids.size());
      }
      if (stopping_all) {
        if (stopping.empty() && runners.empty()) break;
        if (now >= shutdown_deadline) {
          // Cancel the final checkpoints still running, then wait for their
          // threads: every request of theirs ends at once, and no thread
          // outlives the engine it reports to.
          spdlog::warn("shutdown timeout: {} jobs did not finish their checkpoint",
                       stopping.size() + runners.size());
          for (auto& [id, r] : runners) r.job->Abort();
          for (auto& r : stopping) r.job->Abort();
          for (auto& [id, r] : runners) {
            if (r.thread.joinable()) r.thread.join();
          }
          for (auto& r : stopping) {
            if (r.thread.joinable()) r.thread.join();
          }
          runners.clear();
          stopping.clear();
          break;
        }
        continue;
      }
      if (!batch.empty() || now >= wake) Apply(scheduler.Tick(now), now);
      while (!retries.empty() && retries.begin()->first <= now) {
        auto [key, gen] = retries.begin()->second;
        retries.erase(retries.begin());
        Apply(processor.OnRetryDue(key, gen, now), now);
      }
      if (dirty || now - last_snapshot >= kSnapshotPeriod) {
        Publish(now);
        last_snapshot = now;
        dirty = false;
      }
    }
    Publish(clock.Now());
  }
};

Engine::Engine(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Engine::~Engine() { Shutdown(); }

Status Engine::Start() {
  Impl& m = *impl_;
  auto endpoint = ServerEndpointFromConfig(m.config);
  if (!endpoint.ok()) return endpoint.error();
  m.server_endpoint = *endpoint;
  m.http = HttpOptionsFromConfig(m.config);
  m.http.observer = RecordHttpEvent;  // every client of the engine and its jobs feeds /metrics
  RegisterConfigSecrets(m.config);
  m.processor = DocProcessor(DocProcessorSettings::From(m.config, m.server_endpoint));
  auto uuid = m.Uuid();
  if (!uuid.ok()) {
    if (!uuid.error().temporary()) return uuid.error();
    spdlog::warn("the server is not reachable yet ({}); retrying in the background",
                 ScrubSecrets(uuid.error().Message()));
  } else {
    spdlog::info("server {} (uuid {})", m.server_endpoint.url.Redacted(), *uuid);
  }
  m.writer_client.emplace(m.server_endpoint, m.http);
  m.writers = std::make_unique<WorkerPool>(kWriterThreads, "write-back");
  m.id_workers = std::make_unique<WorkerPool>(kIdThreads, "replication id");
  m.SyncDatabases({}, m.clock.Now());
  if (m.config.replicator.discover) m.discovery_thread = std::thread([&m] { m.RunDiscovery(); });
  m.Publish(m.clock.Now());
  m.engine_thread = std::thread([&m] { m.Loop(); });
  return OkStatus();
}

void Engine::Shutdown() {
  Impl& m = *impl_;
  if (!m.engine_thread.joinable()) return;
  Impl::Event e;
  e.kind = Impl::Event::Kind::kShutdown;
  m.Post(std::move(e));
  m.engine_thread.join();
  m.discovery_cancel.Cancel();
  if (m.discovery_thread.joinable()) m.discovery_thread.join();
  std::vector<std::string> dbs;
  {
    std::lock_guard<std::mutex> lock(m.feeds_mu);
    for (const auto& [db, f] : m.feeds) dbs.push_back(db);
  }
  for (const auto& db : dbs) m.StopFeed(db);
  if (m.id_workers) m.id_workers->Stop();
  if (m.writers) m.writers->Stop();
}

void Engine::Reload(Config config) {
  Impl::Event e;
  e.kind = Impl::Event::Kind::kReload;
  e.config = std::make_shared<Config>(std::move(config));
  impl_->Post(std::move(e));
}

std::shared_ptr<const EngineSnapshot> Engine::Snapshot() const {
  std::lock_guard<std::mutex> lock(impl_->snapshot_mu);
  return impl_->snapshot;
}

bool Engine::ResetJob(const std::string& job_id) {
  return impl_->Operator(job_id, [job_id](Scheduler& s, TimePoint now) { return s.Reset(job_id, now); },
                         "reset");
}

bool Engine::PauseJob(const std::string& job_id) {
  return impl_->Operator(job_id, [job_id](Scheduler& s, TimePoint now) { return s.Pause(job_id, now); },
                         "pause");
}

bool Engine::ResumeJob(const std::string& job_id) {
  return impl_->Operator(job_id,
                         [job_id](Scheduler& s, TimePoint now) { return s.Resume(job_id, now); },
                         "resume");
}

}  // namespace couchrepd

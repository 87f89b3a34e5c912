// Engine: job runners, the scheduler's and DocProcessor's actions, id workers and write-back.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <new>
#include <utility>

#include "couchrepd/limits.h"
#include "couchrepd/log.h"
#include "couchrepd/replication_setup.h"
#include "couchrepd/replication_stats.h"
#include "doc_writer.h"
#include "engine_impl.h"

namespace couchrepd {

JobSettings Engine::Impl::SettingsFor(const std::string& job_id, const JobRecord& rec) {
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

void Engine::Impl::StartRunner(const std::string& job_id, TimePoint now) {
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
  // One-shot jobs run on the pool; continuous jobs too, parked between
  // passes and woken by _db_updates (source on the watched server) or by a
  // longpoll of their own. Only sources with cookie authentication, which
  // the watcher does not do, keep a thread and a feed of their own.
  if (settings.spec.continuous) {
    if (wake_feed != WakeFeedState::kMissing) r.source_db = WatchedSourceDb(settings.spec);
    if (!r.source_db.empty()) {
      r.waker = Waker::kDbUpdates;
    } else if (settings.spec.source.endpoint.credentials.kind != Credentials::Kind::kCookie) {
      r.waker = Waker::kWatcher;
    }
  }
  r.pooled = !settings.spec.continuous || r.waker != Waker::kNone;
  settings.park_when_idle = r.waker != Waker::kNone;
  r.job = std::make_shared<ReplicationJob>(std::move(settings));
  rec->second.start_unix = clock.UnixSeconds();
  if (r.pooled) {
    if (!r.source_db.empty()) watched[r.source_db].insert(job_id);
    Runner& placed = runners[job_id] = std::move(r);
    QueuePass(placed, false);
  } else {
    auto job = r.job;
    uint64_t run = r.run;
    r.thread = std::thread([this, job, job_id, run] { PostRunResult(*job, job_id, run); });
    runners[job_id] = std::move(r);
  }
  ++counters.jobs_started;
  LogWith({.db = rec->second.database,
           .doc_id = rec->second.doc_id,
           .replication_id = job_id,
           .job_state = "running"},
          spdlog::level::info, "{} started", prefix);
  Apply(processor.OnJobStarted(job_id, now), now);
}

// Runs the job (a whole run, or one pass) and posts how it ended. Nothing a
// server sends may end the process: an allocation or a thread that fails
// inside the job fails only the job (SPEC §10).
void Engine::Impl::PostRunResult(ReplicationJob& job, const std::string& job_id, uint64_t run) {
  Result<JobEnd> result = Error::Temporary("internal", "the job ended without a result");
  try {
    result = job.Run();
  } catch (const std::bad_alloc&) {
    result = Error::Temporary("out_of_memory", "the job ran out of memory");
  } catch (const std::exception& e) {
    result = Error::Temporary("internal", CapText(e.what()));
  }
  Event e;
  e.kind = result.ok() && *result == JobEnd::kIdle ? Event::Kind::kJobParked
                                                    : Event::Kind::kJobEnded;
  e.job_id = job_id;
  e.run = run;
  e.progress = job.Snapshot();
  e.end = std::move(result);
  Post(std::move(e));
}

// Queues a pass of a pooled run (at the front: a stopped run's checkpoint).
void Engine::Impl::QueuePass(Runner& r, bool front) {
  CancelWatch(r);
  r.queued = true;
  r.wake = false;
  auto job = r.job;
  std::string job_id = r.job_id;
  uint64_t run = r.run;
  auto task = [this, job, job_id, run] { PostRunResult(*job, job_id, run); };
  if (front) {
    run_pool->PostFront(0, std::move(task));
  } else {
    run_pool->Post(0, std::move(task));
  }
}

// The structured log fields of a job's line written by the engine.
LogFields Engine::Impl::JobLogFields(const std::string& job_id, std::string job_state,
                                     std::string error) {
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

void Engine::Impl::StopRunner(const std::string& job_id) {
  auto it = runners.find(job_id);
  if (it == runners.end()) return;
  it->second.job->Stop();
  Unwatch(it->second);
  // A parked run has no pass to end: one more checkpoints what it wrote.
  if (it->second.pooled && !it->second.queued) QueuePass(it->second, true);
  jobs_progress_keep(job_id, it->second.job->Snapshot());
  stopping.push_back(std::move(it->second));
  runners.erase(it);
}

void Engine::Impl::jobs_progress_keep(const std::string& job_id, const JobSnapshot& s) {
  auto rec = jobs.find(job_id);
  if (rec != jobs.end()) rec->second.last_progress = s;
}

void Engine::Impl::OnJobEnded(Event& e, TimePoint now) {
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
  if (was_stopping) OnClusterRunEnded(e.run);
  bool current = false;
  auto rit = runners.find(e.job_id);
  if (rit != runners.end() && rit->second.run == e.run) {
    if (rit->second.thread.joinable()) rit->second.thread.join();
    Unwatch(rit->second);
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

void Engine::Impl::Apply(const std::vector<SchedulerAction>& actions, TimePoint now) {
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

void Engine::Impl::Apply(const std::vector<DocAction>& actions, TimePoint now) {
  for (const auto& a : actions) {
    dirty = true;
    switch (a.type) {
      case DocAction::Type::kComputeId: {
        auto spec = a.spec;
        DocKey key = a.doc;
        uint64_t gen = a.generation;
        EndpointTlsPolicy tls = EndpointTlsPolicy::From(config);
        size_t shard = std::hash<std::string>{}(key.db + "/" + key.doc_id);
        id_workers->Post(shard, [this, spec, key, gen, tls] {
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
        rec.source_display = a.spec->source.Display();
        rec.target_display = a.spec->target.Display();
        rec.database = a.doc.db;
        rec.doc_id = a.doc.doc_id;
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
        ReleaseJob(a.job_id);
        break;
      case DocAction::Type::kClaimJob:
        ClaimJob(a, now);
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
        const std::string name = key.db + "/" + key.doc_id;
        uint64_t generation;
        {
          std::lock_guard<std::mutex> lock(state_writes_mu);
          generation = ++state_writes[name];
        }
        writers->Post(std::hash<std::string>{}(name), [this, key, write, name, generation] {
          // One session (connections, cookie) serves every write-back.
          CouchClient db = writer_client->Database(key.db);
          // A temporary failure is retried (1 s doubling to 1 min) until the
          // state lands, a newer state of the document supersedes it, or the
          // shutdown deadline cuts it: a state is never silently dropped.
          Duration wait = std::chrono::seconds(1);
          for (;;) {
            Status s = WriteState(db, key.doc_id, write, clock, RandomUnit);
            if (s.ok()) break;
            std::string error = ScrubSecrets(s.error().Message());
            bool again = s.error().temporary() && !writes_cancel.cancelled();
            if (again) {
              std::lock_guard<std::mutex> lock(state_writes_mu);
              again = state_writes[name] == generation;
            }
            LogWith({.db = key.db, .doc_id = key.doc_id, .error = error}, spdlog::level::warn,
                    "could not write the state of {}/{}: {}{}", key.db, key.doc_id, error,
                    again ? "; again in " + std::to_string(wait.count() / 1000) + " s" : std::string());
            if (!again || !SleepUnlessCancelled(clock, wait, &writes_cancel)) break;
            wait = std::min<Duration>(wait * 2, std::chrono::minutes(1));
          }
          std::lock_guard<std::mutex> lock(state_writes_mu);
          auto it = state_writes.find(name);
          if (it != state_writes.end() && it->second == generation) state_writes.erase(it);
        });
        break;
      }
      case DocAction::Type::kRetryLater:
        retries.emplace(a.at, std::make_pair(a.doc, a.generation));
        break;
    }
  }
}

}  // namespace couchrepd

// Scheduler: which replication jobs run, in the pure core (SPEC §5, §2.4).
//
// The scheduler owns no threads and does no I/O: the engine tells it what
// happened (a job was added, removed, crashed, completed, ...) with the
// current time, and it answers with actions (start this job, stop that one)
// that the engine carries out. It keeps at most `max_jobs` running, starts
// new jobs at once while slots are free, and every `interval` starts pending
// jobs into free slots (longest-waiting first, skipping jobs still backing
// off) and, when jobs are waiting, rotates up to `max_churn` of the
// longest-running *continuous* jobs out for them (one-shot jobs are never
// rotated out). A crashed job waits `backoff.initial` doubling per
// consecutive crash up to `backoff.max`; a job that ran `health_threshold`
// before crashing starts a new streak. Running slots are shared between
// replicator databases in proportion to their `shares` (default equal).
// Every job keeps its last `max_history` events, newest first.
//
// Not thread-safe: one owner (the engine loop) calls it.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "couchrepd/clock.h"
#include "couchrepd/config.h"

namespace couchrepd {

struct SchedulerSettings {
  int max_jobs = 500;
  Duration interval = std::chrono::seconds(60);
  int max_churn = 20;
  int max_history = 20;
  Duration health_threshold = std::chrono::seconds(120);
  Duration backoff_initial = std::chrono::seconds(30);
  Duration backoff_max = std::chrono::hours(8);
  std::map<std::string, int> shares;  // replicator database -> weight (absent: 1)

  static SchedulerSettings From(const Config& config);
};

enum class JobState {
  kPending,    // waiting for a slot
  kRunning,
  kCrashing,   // crashed, waiting out its backoff (or for a slot after it)
  kCompleted,  // one-shot job done
  kFailed,     // failed permanently; never restarted by the scheduler
  kPaused,     // stopped by an operator until resumed
};
std::string_view Name(JobState state);  // "pending", "running", ...

struct JobEvent {
  enum class Type { kAdded, kStarted, kStopped, kCrashed, kCompleted, kFailed, kReset, kPaused, kResumed };
  Type type;
  TimePoint time;
  std::string reason;  // crashed/failed: the error; stopped: "rotation", "paused", ...
};
std::string_view Name(JobEvent::Type type);  // "added", "started", "stopped", "crashed", ...

struct JobInfo {
  std::string id;        // the replication id with suffixes
  std::string database;  // replicator database ("" for jobs not from a document)
  std::string doc_id;
  bool continuous = false;
};

struct SchedulerAction {
  enum class Type {
    kStart,    // start the job now
    kStop,     // stop it (it checkpoints); `reason` says why: "rotation", "removed", "paused"
    kHealthy,  // a job that had crashed has now run health_threshold: its streak is over
  };
  Type type;
  std::string job_id;
  std::string reason;
  bool operator==(const SchedulerAction&) const = default;
};

struct JobView {
  JobInfo info;
  JobState state = JobState::kPending;
  std::deque<JobEvent> history;  // newest first, at most max_history
  int consecutive_crashes = 0;
  std::optional<TimePoint> backoff_until;  // while crashing
  std::optional<TimePoint> started_at;     // while running
  TimePoint added_at{};
  std::string last_error;
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerSettings settings);

  // SIGHUP: new limits apply from the next Tick (a lower max_jobs stops the
  // newest-started continuous jobs at that Tick, one-shot jobs are left to finish).
  void UpdateSettings(SchedulerSettings settings);
  const SchedulerSettings& settings() const { return settings_; }

  // A new job, pending; started at once (kStart) when a slot is free and its
  // database is within its share. Adding an existing id does nothing.
  std::vector<SchedulerAction> Add(JobInfo info, TimePoint now);
  // Forgets the job; kStop if it was running. Frees a slot (may start another).
  std::vector<SchedulerAction> Remove(const std::string& id, TimePoint now);

  // Reports from the engine about a running job.
  std::vector<SchedulerAction> OnCrashed(const std::string& id, const std::string& reason, TimePoint now);
  std::vector<SchedulerAction> OnCompleted(const std::string& id, TimePoint now);
  std::vector<SchedulerAction> OnFailed(const std::string& id, const std::string& reason, TimePoint now);

  // Periodic work: call at NextWakeup() (and whenever convenient; extra calls
  // are harmless). Starts jobs whose backoff ended, fills free slots,
  // rotates at each interval, reports kHealthy.
  std::vector<SchedulerAction> Tick(TimePoint now);
  TimePoint NextWakeup(TimePoint now) const;

  // Operator actions (status API).
  std::vector<SchedulerAction> Reset(const std::string& id, TimePoint now);   // clear backoff + streak
  std::vector<SchedulerAction> Pause(const std::string& id, TimePoint now);
  std::vector<SchedulerAction> Resume(const std::string& id, TimePoint now);

  std::optional<JobView> Job(const std::string& id) const;
  std::vector<JobView> Jobs() const;  // sorted by id
  size_t running() const;

 private:
  struct Entry;
  SchedulerSettings settings_;
  std::map<std::string, JobView> jobs_;
  TimePoint last_rotation_{};
  bool rotated_once_ = false;
  std::vector<SchedulerAction> FillSlots(TimePoint now);
};

}  // namespace couchrepd

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
// Waiting order: a job waits from when it became eligible (added, stopped by
// rotation or max_jobs, resumed, reset out of a backoff, or the end of its
// backoff); the longest-waiting starts first. Between databases, a free slot
// goes to the database with the lowest running/share among those with
// eligible jobs. Slots are never left idle for a database's share: a free slot
// means nobody eligible is waiting. Rotation first moves slots from databases
// over their share to those under it (each move only while it makes the split
// fairer, so a slot never moves back), then rotates each database's own
// longest-running continuous jobs out for its waiting ones, up to `max_churn`
// swaps in all. Stopped jobs go to the back of the queue.
//
// Not thread-safe: one owner (the engine loop) calls it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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
    kStop,     // stop it (it checkpoints); `reason` says why: "rotation", "removed", "paused",
               // "max_jobs" (max_jobs was lowered)
    kHealthy,  // a job that had crashed has now run health_threshold since its last start:
               // its streak is over (reported once per crash, from Tick; also after a
               // Reset cleared the streak, so a document in error learns it is healthy)
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
  int consecutive_crashes = 0;             // the current streak (0 after kHealthy or Reset)
  std::optional<TimePoint> backoff_until;  // while crashing (also once passed, until started)
  std::optional<TimePoint> started_at;     // while running
  TimePoint added_at{};
  std::string last_error;
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerSettings settings);

  // SIGHUP: new limits apply from the next Tick (a lower max_jobs stops the
  // newest-started continuous jobs at that Tick, those of databases over their
  // share first; one-shot jobs are left to finish). Shares and health_threshold
  // apply to running jobs too; a shorter max_history trims every history.
  void UpdateSettings(SchedulerSettings settings);
  // The settings in force (those given to UpdateSettings once a Tick applied them).
  const SchedulerSettings& settings() const { return settings_; }

  // A new job, pending; started at once (kStart) when a slot is free and its
  // database is within its share. Adding an existing id does nothing.
  // Every call below first lets jobs whose backoff ended join the queue, and
  // ends by filling free slots; ids that are unknown give no actions.
  std::vector<SchedulerAction> Add(JobInfo info, TimePoint now);
  // Forgets the job (and its history); kStop "removed" if it was running. Frees a
  // slot (may start another).
  std::vector<SchedulerAction> Remove(const std::string& id, TimePoint now);

  // Reports from the engine about a running job. OnCrashed is ignored unless the
  // job is running (e.g. it crashed while being stopped). OnCompleted accepts
  // any job not yet completed (a job may finish while stopping).
  std::vector<SchedulerAction> OnCrashed(const std::string& id, const std::string& reason, TimePoint now);
  std::vector<SchedulerAction> OnCompleted(const std::string& id, TimePoint now);

  // Periodic work: call at NextWakeup() (and whenever convenient; extra calls
  // are harmless). Starts jobs whose backoff ended, fills free slots,
  // rotates at each interval, reports kHealthy. Actions come as: kHealthy,
  // then kStop, then kStart. The interval counts from the previous rotation
  // (the first from the first call), whether or not it stopped anything.
  // Costs O(log n) per action, plus O(databases) when it rotates (and O(n) when
  // new settings change max_history, shares or health_threshold).
  std::vector<SchedulerAction> Tick(TimePoint now);
  // The next rotation, backoff end or kHealthy, or `now` if settings wait for a
  // Tick; never before `now`.
  TimePoint NextWakeup(TimePoint now) const;

  // Operator actions (status API); each adds its event (reset, paused, resumed).
  // They do nothing to completed or failed jobs.
  // Reset: clears backoff and streak; a crashing job becomes pending (waiting from
  // now if it was still backing off) and starts when a slot is free.
  std::vector<SchedulerAction> Reset(const std::string& id, TimePoint now);
  // Pause: kStop "paused" if running (history: stopped, then paused); the job
  // is not started again until Resume, which makes it pending (waiting from now).
  std::vector<SchedulerAction> Pause(const std::string& id, TimePoint now);
  std::vector<SchedulerAction> Resume(const std::string& id, TimePoint now);

  std::optional<JobView> Job(const std::string& id) const;
  std::vector<JobView> Jobs() const;  // sorted by id
  size_t running() const;

 private:
  struct Entry;
  // A job's place in one of the ordered sets below: by time, then by a sequence
  // number unique to the insertion (so equal times keep their arrival order).
  struct Slot {
    TimePoint time;
    uint64_t seq = 0;
    Entry* entry = nullptr;
    bool operator<(const Slot& o) const { return time != o.time ? time < o.time : seq < o.seq; }
  };
  // One replicator database: its share, its running count and its waiting queue.
  struct Db {
    std::string name;
    int share = 1;
    int running = 0;            // all running jobs of the database, one-shot included
    int jobs = 0;               // entries pointing here (the Db goes with the last one)
    std::set<Slot> waiting;     // eligible to start, longest-waiting first
    std::set<Slot> continuous;  // running continuous jobs, longest-running first
  };
  struct Entry {
    JobView view;
    Db* db = nullptr;
    TimePoint eligible_since{};  // while in db->waiting
    uint64_t queue_seq = 0;      // key in db->waiting or backoffs_
    uint64_t run_seq = 0;        // key in db->continuous and health_due_
    bool waiting = false;
    bool owes_healthy = false;  // crashed since its last healthy run: kHealthy is due
  };
  // Databases with waiting jobs, the one to start from first: lowest running/share,
  // then the longest-waiting head. Databases with running continuous jobs, the one to
  // take a slot from first: highest (running - 1)/share, then the longest-running job.
  // Both read the Db's fields: a Db is taken out (Unrank) before they change.
  struct StartOrder {
    bool operator()(const Db* a, const Db* b) const;
  };
  struct StopOrder {
    bool operator()(const Db* a, const Db* b) const;
  };
  using Actions = std::vector<SchedulerAction>;

  void Observe(TimePoint now);
  void ApplySettings();
  void Promote(TimePoint now);
  void Settle(TimePoint now, Actions& starts);
  void FillSlots(TimePoint now, Actions& starts);
  int StopExcess(TimePoint now, Actions& stops);
  void Rotate(TimePoint now, int budget, Actions& stops, Actions& starts);
  void RotateOut(Entry& e, TimePoint now, Actions& stops);
  void Start(Entry& e, TimePoint now, Actions& starts);
  void Stop(Entry& e, const std::string& reason, TimePoint now, Actions& stops);
  void Withdraw(Entry& e);
  void Enqueue(Entry& e, TimePoint since);
  void Record(Entry& e, JobEvent::Type type, TimePoint now, std::string reason = {});
  void Unrank(Db& db);
  void Rank(Db& db);
  Db& DbFor(const std::string& name);
  int ShareOf(const std::string& name) const;
  Duration BackoffFor(int crashes) const;
  Duration Interval() const;
  Entry* Find(const std::string& id);

  SchedulerSettings settings_;
  std::optional<SchedulerSettings> next_settings_;  // applied by the next Tick
  std::map<std::string, Entry> jobs_;
  std::map<std::string, Db> dbs_;
  std::set<Db*, StartOrder> start_rank_;  // dbs with waiting jobs
  std::set<Db*, StopOrder> stop_rank_;    // dbs with running continuous jobs
  std::set<Slot> backoffs_;               // crashing jobs by backoff_until
  std::set<Slot> health_due_;             // running jobs owing kHealthy, by when it is due
  size_t running_ = 0;
  uint64_t seq_ = 0;
  std::optional<TimePoint> period_start_;  // last rotation (or the first call)
};

}  // namespace couchrepd

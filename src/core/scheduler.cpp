#include "couchrepd/scheduler.h"

#include <algorithm>
#include <cstdint>
#include <utility>

namespace couchrepd {

namespace {

constexpr Duration kMinInterval{1};  // a zero interval would make NextWakeup spin

bool IsTerminal(JobState state) {
  return state == JobState::kCompleted || state == JobState::kFailed;
}

}  // namespace

std::string_view Name(JobState state) {
  switch (state) {
    case JobState::kPending:
      return "pending";
    case JobState::kRunning:
      return "running";
    case JobState::kCrashing:
      return "crashing";
    case JobState::kCompleted:
      return "completed";
    case JobState::kFailed:
      return "failed";
    case JobState::kPaused:
      return "paused";
  }
  return "unknown";
}

std::string_view Name(JobEvent::Type type) {
  switch (type) {
    case JobEvent::Type::kAdded:
      return "added";
    case JobEvent::Type::kStarted:
      return "started";
    case JobEvent::Type::kStopped:
      return "stopped";
    case JobEvent::Type::kCrashed:
      return "crashed";
    case JobEvent::Type::kCompleted:
      return "completed";
    case JobEvent::Type::kFailed:
      return "failed";
    case JobEvent::Type::kReset:
      return "reset";
    case JobEvent::Type::kPaused:
      return "paused";
    case JobEvent::Type::kResumed:
      return "resumed";
  }
  return "unknown";
}

SchedulerSettings SchedulerSettings::From(const Config& config) {
  const Config::Scheduler& s = config.scheduler;
  SchedulerSettings out;
  out.max_jobs = s.max_jobs;
  out.interval = s.interval;
  out.max_churn = s.max_churn;
  out.max_history = s.max_history;
  out.health_threshold = s.health_threshold;
  out.backoff_initial = s.backoff.initial;
  out.backoff_max = s.backoff.max;
  out.shares = config.replicator.shares;
  return out;
}

// Ratios running/share are compared by cross-multiplying, exactly.
bool Scheduler::StartOrder::operator()(const Db* a, const Db* b) const {
  int64_t lhs = int64_t{a->running} * b->share;
  int64_t rhs = int64_t{b->running} * a->share;
  if (lhs != rhs) return lhs < rhs;
  return *a->waiting.begin() < *b->waiting.begin();
}

bool Scheduler::StopOrder::operator()(const Db* a, const Db* b) const {
  int64_t lhs = int64_t{a->running - 1} * b->share;
  int64_t rhs = int64_t{b->running - 1} * a->share;
  if (lhs != rhs) return lhs > rhs;
  return *a->continuous.begin() < *b->continuous.begin();
}

Scheduler::Scheduler(SchedulerSettings settings) : settings_(std::move(settings)) {}

void Scheduler::UpdateSettings(SchedulerSettings settings) { next_settings_ = std::move(settings); }

// --- Bookkeeping -----------------------------------------------------------

Scheduler::Entry* Scheduler::Find(const std::string& id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

int Scheduler::ShareOf(const std::string& name) const {
  auto it = settings_.shares.find(name);
  return it == settings_.shares.end() ? 1 : std::max(1, it->second);
}

Scheduler::Db& Scheduler::DbFor(const std::string& name) {
  auto [it, inserted] = dbs_.try_emplace(name);
  if (inserted) {
    it->second.name = name;
    it->second.share = ShareOf(name);
  }
  return it->second;
}

Duration Scheduler::Interval() const { return std::max(settings_.interval, kMinInterval); }

Duration Scheduler::BackoffFor(int crashes) const {
  Duration wait = settings_.backoff_initial;
  for (int i = 1; i < crashes && wait > Duration{0} && wait < settings_.backoff_max; ++i) {
    wait = wait > settings_.backoff_max / 2 ? settings_.backoff_max : wait * 2;
  }
  return std::min(wait, settings_.backoff_max);
}

void Scheduler::Unrank(Db& db) {
  if (!db.waiting.empty()) start_rank_.erase(&db);
  if (!db.continuous.empty()) stop_rank_.erase(&db);
}

void Scheduler::Rank(Db& db) {
  if (!db.waiting.empty()) start_rank_.insert(&db);
  if (!db.continuous.empty()) stop_rank_.insert(&db);
}

void Scheduler::Record(Entry& e, JobEvent::Type type, TimePoint now, std::string reason) {
  auto& history = e.view.history;
  history.push_front(JobEvent{type, now, std::move(reason)});
  while (history.size() > static_cast<size_t>(std::max(0, settings_.max_history))) {
    history.pop_back();
  }
}

void Scheduler::Enqueue(Entry& e, TimePoint since) {
  Db& db = *e.db;
  Unrank(db);
  e.eligible_since = since;
  e.queue_seq = ++seq_;
  e.waiting = true;
  db.waiting.insert(Slot{since, e.queue_seq, &e});
  Rank(db);
}

// Takes the job out of whichever set holds it (waiting, backoff, running), without
// actions or events; its state is the caller's to set.
void Scheduler::Withdraw(Entry& e) {
  Db& db = *e.db;
  if (e.waiting) {
    Unrank(db);
    db.waiting.erase(Slot{e.eligible_since, e.queue_seq, &e});
    e.waiting = false;
    Rank(db);
  } else if (e.view.state == JobState::kCrashing && e.view.backoff_until) {
    backoffs_.erase(Slot{*e.view.backoff_until, e.queue_seq, &e});
  }
  if (e.view.state == JobState::kRunning) {
    TimePoint started = *e.view.started_at;
    Unrank(db);
    --db.running;
    --running_;
    if (e.view.info.continuous) db.continuous.erase(Slot{started, e.run_seq, &e});
    Rank(db);
    if (e.owes_healthy)
      health_due_.erase(Slot{started + settings_.health_threshold, e.run_seq, &e});
    e.view.started_at.reset();
  }
}

void Scheduler::Start(Entry& e, TimePoint now, Actions& starts) {
  Withdraw(e);
  Db& db = *e.db;
  Unrank(db);
  ++db.running;
  ++running_;
  e.view.state = JobState::kRunning;
  e.view.started_at = now;
  e.view.backoff_until.reset();
  e.run_seq = ++seq_;
  if (e.view.info.continuous) db.continuous.insert(Slot{now, e.run_seq, &e});
  Rank(db);
  if (e.owes_healthy) health_due_.insert(Slot{now + settings_.health_threshold, e.run_seq, &e});
  Record(e, JobEvent::Type::kStarted, now);
  starts.push_back({SchedulerAction::Type::kStart, e.view.info.id, ""});
}

void Scheduler::Stop(Entry& e, const std::string& reason, TimePoint now, Actions& stops) {
  Withdraw(e);
  Record(e, JobEvent::Type::kStopped, now, reason);
  stops.push_back({SchedulerAction::Type::kStop, e.view.info.id, reason});
}

// Stopped to make room: pending again, at the back of the queue.
void Scheduler::RotateOut(Entry& e, TimePoint now, Actions& stops) {
  Stop(e, "rotation", now, stops);
  e.view.state = JobState::kPending;
  Enqueue(e, now);
}

// --- Decisions -------------------------------------------------------------

void Scheduler::Observe(TimePoint now) {
  if (!period_start_) period_start_ = now;
  Promote(now);
}

// Crashed jobs whose backoff is over join the queue as of the moment it ended, so
// they compete with pending jobs by how long they have been waiting.
void Scheduler::Promote(TimePoint now) {
  while (!backoffs_.empty() && backoffs_.begin()->time <= now) {
    Entry& e = *backoffs_.begin()->entry;
    backoffs_.erase(backoffs_.begin());
    Enqueue(e, *e.view.backoff_until);
  }
}

void Scheduler::FillSlots(TimePoint now, Actions& starts) {
  while (running_ < static_cast<size_t>(std::max(0, settings_.max_jobs)) && !start_rank_.empty()) {
    Db& db = **start_rank_.begin();
    Start(*db.waiting.begin()->entry, now, starts);
  }
}

void Scheduler::Settle(TimePoint now, Actions& starts) {
  Promote(now);
  FillSlots(now, starts);
}

// Over max_jobs (it was lowered): the newest continuous jobs of the databases most
// over their share go first; one-shot jobs are left to finish.
int Scheduler::StopExcess(TimePoint now, Actions& stops) {
  int stopped = 0;
  while (running_ > static_cast<size_t>(std::max(0, settings_.max_jobs)) && !stop_rank_.empty()) {
    Db& db = **stop_rank_.begin();
    Entry& e = *std::prev(db.continuous.end())->entry;
    Stop(e, "max_jobs", now, stops);
    e.view.state = JobState::kPending;
    Enqueue(e, now);
    ++stopped;
  }
  return stopped;
}

// Called with no free slot. Each swap stops one running continuous job and starts
// one that was waiting, so the count of running jobs does not change. First swaps
// move slots from databases over their share to those under it (while that makes
// the split fairer: the taker's running/share stays below the giver's
// (running - 1)/share, so a slot never moves back). Then each database rotates its
// own longest-running jobs out for its waiting ones, longest-running first overall.
// Jobs stopped or started in this rotation (sequence >= floor) are not touched again.
void Scheduler::Rotate(TimePoint now, int budget, Actions& stops, Actions& starts) {
  const uint64_t floor = seq_ + 1;
  while (budget > 0 && !start_rank_.empty() && !stop_rank_.empty()) {
    Db& giver = **stop_rank_.begin();
    Db& taker = **start_rank_.begin();
    if (&giver == &taker) break;
    if (int64_t{taker.running} * giver.share >= int64_t{giver.running - 1} * taker.share) break;
    Entry& out = *giver.continuous.begin()->entry;
    Entry& in = *taker.waiting.begin()->entry;
    if (out.run_seq >= floor || in.queue_seq >= floor) break;
    RotateOut(out, now, stops);
    Start(in, now, starts);
    --budget;
  }

  std::set<std::pair<Slot, Db*>> candidates;  // by each database's longest-running job
  for (Db* db : start_rank_) {
    if (!db->continuous.empty()) candidates.insert({*db->continuous.begin(), db});
  }
  while (budget > 0 && !candidates.empty()) {
    Db& db = *candidates.begin()->second;
    candidates.erase(candidates.begin());
    Entry& out = *db.continuous.begin()->entry;
    Entry& in = *db.waiting.begin()->entry;
    if (out.run_seq >= floor || in.queue_seq >= floor) continue;
    RotateOut(out, now, stops);
    Start(in, now, starts);
    --budget;
    if (!db.continuous.empty()) candidates.insert({*db.continuous.begin(), &db});
  }
}

void Scheduler::ApplySettings() {
  SchedulerSettings old = std::move(settings_);
  settings_ = std::move(*next_settings_);
  next_settings_.reset();
  if (settings_.shares != old.shares) {
    for (auto& [name, db] : dbs_) {
      Unrank(db);
      db.share = ShareOf(name);
      Rank(db);
    }
  }
  if (settings_.health_threshold != old.health_threshold) {
    std::set<Slot> due;
    for (const Slot& slot : health_due_) {
      Entry& e = *slot.entry;
      due.insert(Slot{*e.view.started_at + settings_.health_threshold, e.run_seq, &e});
    }
    health_due_ = std::move(due);
  }
  if (settings_.max_history < old.max_history) {
    size_t keep = static_cast<size_t>(std::max(0, settings_.max_history));
    for (auto& [id, e] : jobs_) {
      if (e.view.history.size() > keep) e.view.history.resize(keep);
    }
  }
}

// --- Public API ------------------------------------------------------------

std::vector<SchedulerAction> Scheduler::Add(JobInfo info, TimePoint now) {
  Observe(now);
  if (jobs_.count(info.id)) return {};
  std::string id = info.id;
  Entry& e = jobs_[id];
  e.db = &DbFor(info.database);
  ++e.db->jobs;
  e.view.info = std::move(info);
  e.view.state = JobState::kPending;
  e.view.added_at = now;
  Record(e, JobEvent::Type::kAdded, now);
  Enqueue(e, now);
  Actions actions;
  Settle(now, actions);
  return actions;
}

std::vector<SchedulerAction> Scheduler::Remove(const std::string& id, TimePoint now) {
  Observe(now);
  Entry* e = Find(id);
  if (!e) return {};
  Actions actions;
  if (e->view.state == JobState::kRunning) {
    actions.push_back({SchedulerAction::Type::kStop, id, "removed"});
  }
  Withdraw(*e);
  Db* db = e->db;
  jobs_.erase(id);
  if (--db->jobs == 0) dbs_.erase(dbs_.find(db->name));  // nothing of it is ranked any more
  Settle(now, actions);
  return actions;
}

std::vector<SchedulerAction> Scheduler::OnCrashed(const std::string& id, const std::string& reason,
                                                  TimePoint now) {
  Observe(now);
  Entry* e = Find(id);
  if (!e || e->view.state != JobState::kRunning) return {};
  bool ran_healthy = now - *e->view.started_at >= settings_.health_threshold;
  Withdraw(*e);
  JobView& v = e->view;
  v.consecutive_crashes = ran_healthy ? 1 : v.consecutive_crashes + 1;
  v.state = JobState::kCrashing;
  v.last_error = reason;
  v.backoff_until = now + BackoffFor(v.consecutive_crashes);
  e->owes_healthy = true;
  e->queue_seq = ++seq_;
  backoffs_.insert(Slot{*v.backoff_until, e->queue_seq, e});
  Record(*e, JobEvent::Type::kCrashed, now, reason);
  Actions actions;
  Settle(now, actions);
  return actions;
}

std::vector<SchedulerAction> Scheduler::OnCompleted(const std::string& id, TimePoint now) {
  Observe(now);
  Entry* e = Find(id);
  if (!e || IsTerminal(e->view.state)) return {};
  Withdraw(*e);
  e->view.state = JobState::kCompleted;
  e->view.backoff_until.reset();
  Record(*e, JobEvent::Type::kCompleted, now);
  Actions actions;
  Settle(now, actions);
  return actions;
}


std::vector<SchedulerAction> Scheduler::Tick(TimePoint now) {
  Observe(now);
  Actions healthy, stops, starts;
  if (next_settings_) ApplySettings();
  int excess = StopExcess(now, stops);

  while (!health_due_.empty() && health_due_.begin()->time <= now) {
    Entry& e = *health_due_.begin()->entry;
    health_due_.erase(health_due_.begin());
    e.owes_healthy = false;
    e.view.consecutive_crashes = 0;
    healthy.push_back({SchedulerAction::Type::kHealthy, e.view.info.id, ""});
  }

  FillSlots(now, starts);
  if (now - *period_start_ >= Interval()) {
    period_start_ = now;
    Rotate(now, std::max(0, settings_.max_churn - excess), stops, starts);
  }

  healthy.insert(healthy.end(), stops.begin(), stops.end());
  healthy.insert(healthy.end(), starts.begin(), starts.end());
  return healthy;
}

TimePoint Scheduler::NextWakeup(TimePoint now) const {
  if (next_settings_) return now;
  TimePoint next = (period_start_ ? *period_start_ : now) + Interval();
  if (!backoffs_.empty()) next = std::min(next, backoffs_.begin()->time);
  if (!health_due_.empty()) next = std::min(next, health_due_.begin()->time);
  return std::max(next, now);
}

std::vector<SchedulerAction> Scheduler::Reset(const std::string& id, TimePoint now) {
  Observe(now);
  Entry* e = Find(id);
  if (!e || IsTerminal(e->view.state)) return {};
  JobView& v = e->view;
  v.consecutive_crashes = 0;
  if (v.state == JobState::kCrashing) {
    if (!e->waiting) {  // still backing off: eligible from now on
      Withdraw(*e);
      Enqueue(*e, now);
    }
    v.state = JobState::kPending;
    v.backoff_until.reset();
  }
  Record(*e, JobEvent::Type::kReset, now);
  Actions actions;
  Settle(now, actions);
  return actions;
}

std::vector<SchedulerAction> Scheduler::Pause(const std::string& id, TimePoint now) {
  Observe(now);
  Entry* e = Find(id);
  if (!e || IsTerminal(e->view.state) || e->view.state == JobState::kPaused) return {};
  Actions actions;
  if (e->view.state == JobState::kRunning) {
    Stop(*e, "paused", now, actions);
  } else {
    Withdraw(*e);
  }
  e->view.state = JobState::kPaused;
  e->view.backoff_until.reset();
  Record(*e, JobEvent::Type::kPaused, now);
  Settle(now, actions);
  return actions;
}

std::vector<SchedulerAction> Scheduler::Resume(const std::string& id, TimePoint now) {
  Observe(now);
  Entry* e = Find(id);
  if (!e || e->view.state != JobState::kPaused) return {};
  e->view.state = JobState::kPending;
  Record(*e, JobEvent::Type::kResumed, now);
  Enqueue(*e, now);
  Actions actions;
  Settle(now, actions);
  return actions;
}

std::optional<JobView> Scheduler::Job(const std::string& id) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second.view;
}

std::vector<JobView> Scheduler::Jobs() const {
  std::vector<JobView> out;
  out.reserve(jobs_.size());
  for (const auto& [id, e] : jobs_) out.push_back(e.view);
  return out;
}

size_t Scheduler::running() const { return running_; }

}  // namespace couchrepd

#include "couchrepd/scheduler.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

using namespace couchrepd;
using namespace std::chrono_literals;

namespace {

TimePoint At(Duration d) { return TimePoint{} + d; }
Duration Between(TimePoint from, TimePoint to) {
  return std::chrono::duration_cast<Duration>(to - from);
}

// "start a, stop b (rotation), healthy c": exact sequences read well in failures.
std::string Show(const std::vector<SchedulerAction>& actions) {
  std::string out;
  for (const SchedulerAction& a : actions) {
    if (!out.empty()) out += ", ";
    switch (a.type) {
      case SchedulerAction::Type::kStart:
        out += "start " + a.job_id;
        break;
      case SchedulerAction::Type::kStop:
        out += "stop " + a.job_id + " (" + a.reason + ")";
        break;
      case SchedulerAction::Type::kHealthy:
        out += "healthy " + a.job_id;
        break;
    }
  }
  return out;
}

// "started@40s, crashed@10s(boom)", newest first.
std::string ShowHistory(const JobView& view) {
  std::string out;
  for (const JobEvent& e : view.history) {
    if (!out.empty()) out += ", ";
    out += std::string(Name(e.type)) + "@" +
           std::to_string(
               std::chrono::duration_cast<std::chrono::seconds>(e.time - TimePoint{}).count()) +
           "s";
    if (!e.reason.empty()) out += "(" + e.reason + ")";
  }
  return out;
}

SchedulerSettings Settings(int max_jobs, int max_churn = 20, Duration interval = 60s) {
  SchedulerSettings s;
  s.max_jobs = max_jobs;
  s.max_churn = max_churn;
  s.interval = interval;
  return s;
}

// One step of a scripted scenario: at time `t`, do `op` on job `id` (in database `db`
// for adds) and expect exactly `expect`.
struct Step {
  Duration t;
  std::string op;  // add (continuous), add1 (one-shot), remove, crash, complete, fail,
                   // tick, pause, resume, reset
  std::string id;
  std::string expect;
  std::string db = "_replicator";
};

std::vector<SchedulerAction> Apply(Scheduler& s, const Step& step) {
  TimePoint now = At(step.t);
  if (step.op == "add") return s.Add(JobInfo{step.id, step.db, "doc-" + step.id, true}, now);
  if (step.op == "add1") return s.Add(JobInfo{step.id, step.db, "doc-" + step.id, false}, now);
  if (step.op == "remove") return s.Remove(step.id, now);
  if (step.op == "crash") return s.OnCrashed(step.id, "boom", now);
  if (step.op == "complete") return s.OnCompleted(step.id, now);
  if (step.op == "tick") return s.Tick(now);
  if (step.op == "pause") return s.Pause(step.id, now);
  if (step.op == "resume") return s.Resume(step.id, now);
  if (step.op == "reset") return s.Reset(step.id, now);
  FAIL("unknown op " << step.op);
  return {};
}

void Run(Scheduler& s, const std::vector<Step>& steps) {
  for (const Step& step : steps) {
    INFO("at " << step.t.count() << " ms: " << step.op << " " << step.id);
    CHECK(Show(Apply(s, step)) == step.expect);
  }
}

JobState StateOf(const Scheduler& s, const std::string& id) {
  auto job = s.Job(id);
  REQUIRE(job.has_value());
  return job->state;
}

}  // namespace

TEST_CASE("scheduler: names of states and events") {
  CHECK(Name(JobState::kPending) == "pending");
  CHECK(Name(JobState::kRunning) == "running");
  CHECK(Name(JobState::kCrashing) == "crashing");
  CHECK(Name(JobState::kCompleted) == "completed");
  CHECK(Name(JobState::kFailed) == "failed");
  CHECK(Name(JobState::kPaused) == "paused");
  CHECK(Name(JobEvent::Type::kAdded) == "added");
  CHECK(Name(JobEvent::Type::kStarted) == "started");
  CHECK(Name(JobEvent::Type::kStopped) == "stopped");
  CHECK(Name(JobEvent::Type::kCrashed) == "crashed");
  CHECK(Name(JobEvent::Type::kCompleted) == "completed");
  CHECK(Name(JobEvent::Type::kFailed) == "failed");
  CHECK(Name(JobEvent::Type::kReset) == "reset");
  CHECK(Name(JobEvent::Type::kPaused) == "paused");
  CHECK(Name(JobEvent::Type::kResumed) == "resumed");
}

TEST_CASE("scheduler: settings come from the configuration") {
  Config c;
  c.scheduler.max_jobs = 7;
  c.scheduler.interval = 5s;
  c.scheduler.max_churn = 3;
  c.scheduler.max_history = 9;
  c.scheduler.health_threshold = 90s;
  c.scheduler.backoff = {10s, 1h};
  c.replicator.shares = {{"a", 3}};
  SchedulerSettings s = SchedulerSettings::From(c);
  CHECK(s.max_jobs == 7);
  CHECK(s.interval == 5s);
  CHECK(s.max_churn == 3);
  CHECK(s.max_history == 9);
  CHECK(s.health_threshold == 90s);
  CHECK(s.backoff_initial == 10s);
  CHECK(s.backoff_max == 1h);
  CHECK(s.shares == std::map<std::string, int>{{"a", 3}});

  SchedulerSettings d = SchedulerSettings::From(Config{});
  CHECK(d.max_jobs == 500);
  CHECK(d.interval == 60s);
  CHECK(d.max_churn == 20);
  CHECK(d.max_history == 20);
  CHECK(d.health_threshold == 120s);
  CHECK(d.backoff_initial == 30s);
  CHECK(d.backoff_max == 8h);
}

TEST_CASE("scheduler: new jobs start at once up to max_jobs, the rest wait in arrival order") {
  Scheduler s(Settings(2));
  Run(s, {
             {0s, "add1", "z1", "start z1"},
             {1s, "add1", "y2", "start y2"},
             {2s, "add1", "x3", ""},
             {3s, "add1", "a4", ""},
             {3s, "add1", "z1", ""},  // an existing id: nothing
             {4s, "tick", "", ""},
             {10s, "complete", "y2", "start x3"},
             {11s, "complete", "z1", "start a4"},
             {12s, "complete", "x3", ""},
             {13s, "tick", "", ""},
         });
  CHECK(StateOf(s, "z1") == JobState::kCompleted);
  CHECK(StateOf(s, "y2") == JobState::kCompleted);
  CHECK(StateOf(s, "x3") == JobState::kCompleted);
  CHECK(StateOf(s, "a4") == JobState::kRunning);
  CHECK(s.Job("a4")->started_at == At(11s));
  CHECK(s.Job("a4")->added_at == At(3s));
  CHECK(s.running() == 1);
  std::vector<std::string> ids;
  for (const JobView& v : s.Jobs()) ids.push_back(v.info.id);
  CHECK(ids == std::vector<std::string>{"a4", "x3", "y2", "z1"});
  CHECK(s.Job("nope") == std::nullopt);
}

TEST_CASE("scheduler: completed jobs are never restarted; stray reports are ignored") {
  Scheduler s(Settings(1));
  Run(s, {
             {0s, "add", "j1", "start j1"},
             {1s, "complete", "j1", ""},
             {60s, "tick", "", ""},
             {9h, "tick", "", ""},
             {9h, "reset", "j1", ""},
             {9h, "resume", "j1", ""},
             {9h, "pause", "j1", ""},
             {9h, "crash", "j1", ""},
             {9h, "complete", "j1", ""},
             {9h, "crash", "unknown", ""},
             {9h, "complete", "unknown", ""},
             {9h, "add", "j2", "start j2"},
             {9h + 1s, "add", "j3", ""},
             {9h + 2s, "crash", "j3", ""},  // not running: ignored
         });
  CHECK(StateOf(s, "j1") == JobState::kCompleted);
  CHECK(ShowHistory(*s.Job("j1")) == "completed@1s, started@0s, added@0s");
  CHECK(StateOf(s, "j3") == JobState::kPending);
  CHECK(s.Job("j3")->consecutive_crashes == 0);
}

TEST_CASE("scheduler: rotation at each interval stops up to max_churn longest-running jobs") {
  struct Row {
    int max_churn;
    std::string at_60s;
    std::string at_120s;
  };
  const std::vector<Row> rows = {
      {0, "", ""},
      {1, "stop c1 (rotation), start c4", "stop c2 (rotation), start c5"},
      {2, "stop c1 (rotation), stop c2 (rotation), start c4, start c5",
       "stop c3 (rotation), stop c4 (rotation), start c6, start c1"},
      {3,
       "stop c1 (rotation), stop c2 (rotation), stop c3 (rotation), start c4, start c5, start c6",
       "stop c4 (rotation), stop c5 (rotation), stop c6 (rotation), start c1, start c2, start c3"},
      {20,
       "stop c1 (rotation), stop c2 (rotation), stop c3 (rotation), start c4, start c5, start c6",
       "stop c4 (rotation), stop c5 (rotation), stop c6 (rotation), start c1, start c2, start c3"},
  };
  for (const Row& row : rows) {
    CAPTURE(row.max_churn);
    Scheduler s(Settings(3, row.max_churn));
    Run(s, {
               {0s, "add", "c1", "start c1"},
               {1s, "add", "c2", "start c2"},
               {2s, "add", "c3", "start c3"},
               {3s, "add", "c4", ""},
               {4s, "add", "c5", ""},
               {5s, "add", "c6", ""},
               {59999ms, "tick", "", ""},
               {60s, "tick", "", row.at_60s},
               {61s, "tick", "", ""},
               {119s, "tick", "", ""},
               {120s, "tick", "", row.at_120s},
           });
    CHECK(s.running() == 3);
    if (row.max_churn > 0) {
      CHECK(StateOf(s, "c1") == (row.max_churn == 1 ? JobState::kPending : JobState::kRunning));
      CHECK(ShowHistory(*s.Job("c1")).rfind("stopped@60s(rotation), started@0s, added@0s") !=
            std::string::npos);
    }
  }
}

TEST_CASE(
    "scheduler: the interval counts from the last rotation, and nothing rotates with no one "
    "waiting") {
  Scheduler s(Settings(1, 1));
  Run(s, {
             {0s, "add", "c1", "start c1"},
             {60s, "tick", "", ""},  // nobody waiting
             {70s, "add", "c2", ""},
             {90s, "tick", "", ""},
             {120s, "tick", "", "stop c1 (rotation), start c2"},
             {179s, "tick", "", ""},
             {200s, "tick", "", "stop c2 (rotation), start c1"},  // late tick
             {259s, "tick", "", ""},
             {260s, "tick", "", "stop c1 (rotation), start c2"},
         });
  CHECK(s.NextWakeup(At(260s)) == At(320s));
}

TEST_CASE("scheduler: one-shot jobs are never rotated out") {
  Scheduler s(Settings(2));
  Run(s, {
             {0s, "add1", "o1", "start o1"},
             {1s, "add", "c1", "start c1"},
             {2s, "add", "c2", ""},
             {3s, "add", "c3", ""},
             {60s, "tick", "", "stop c1 (rotation), start c2"},
             {120s, "tick", "", "stop c2 (rotation), start c3"},
             {180s, "tick", "", "stop c3 (rotation), start c1"},
         });
  CHECK(s.Job("o1")->started_at == At(0s));

  Scheduler t(Settings(2));
  Run(t, {
             {0s, "add1", "o1", "start o1"},
             {1s, "add1", "o2", "start o2"},
             {2s, "add", "c1", ""},
             {60s, "tick", "", ""},
             {120s, "tick", "", ""},
             {130s, "complete", "o2", "start c1"},
         });
}

TEST_CASE(
    "scheduler: no starvation: with 2 slots and 5 continuous jobs each job waits a bounded time") {
  struct Row {
    int max_churn;
    Duration last_first_start;  // when the last of the five first starts
    Duration max_wait;          // longest time any job waited between two runs
  };
  for (const Row& row : std::vector<Row>{{1, 180s, 180s}, {2, 120s, 120s}, {20, 120s, 120s}}) {
    CAPTURE(row.max_churn);
    Scheduler s(Settings(2, row.max_churn));
    std::map<std::string, TimePoint> waiting_since;
    std::map<std::string, TimePoint> first_start;
    Duration max_wait{0};
    auto track = [&](const std::vector<SchedulerAction>& actions, TimePoint now) {
      for (const SchedulerAction& a : actions) {
        if (a.type == SchedulerAction::Type::kStop) waiting_since[a.job_id] = now;
        if (a.type == SchedulerAction::Type::kStart) {
          max_wait = std::max(max_wait, Between(waiting_since[a.job_id], now));
          first_start.try_emplace(a.job_id, now);
          waiting_since.erase(a.job_id);
        }
      }
    };
    for (int i = 1; i <= 5; ++i) {
      std::string id = "j" + std::to_string(i);
      waiting_since[id] = At(0s);
      track(s.Add(JobInfo{id, "_replicator", id, true}, At(0s)), At(0s));
    }
    for (int k = 1; k <= 50; ++k) {
      TimePoint now = At(k * 60s);
      track(s.Tick(now), now);
      CHECK(s.running() == 2);
    }
    CHECK(first_start.size() == 5);
    Duration last{0};
    for (const auto& [id, t] : first_start) last = std::max(last, Between(TimePoint{}, t));
    CHECK(last == row.last_first_start);
    CHECK(max_wait == row.max_wait);
  }
}

TEST_CASE("scheduler: crash backoff doubles from 30 s up to 8 h") {
  SchedulerSettings settings = Settings(1);
  settings.interval = 1000h;  // keep rotation out of NextWakeup
  Scheduler s(settings);
  CHECK(Show(s.Add(JobInfo{"j", "_replicator", "d", true}, At(0s))) == "start j");
  const std::vector<Duration> expected = {30s,   60s,   120s,   240s, 480s, 960s, 1920s,
                                          3840s, 7680s, 15360s, 8h,   8h,   8h};
  TimePoint now = At(0s);
  for (size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(i);
    now += 1s;  // ran one second: the streak goes on
    CHECK(Show(s.OnCrashed("j", "econnrefused", now)) == "");
    JobView v = *s.Job("j");
    CHECK(v.state == JobState::kCrashing);
    CHECK(v.consecutive_crashes == static_cast<int>(i + 1));
    CHECK(v.last_error == "econnrefused");
    REQUIRE(v.backoff_until.has_value());
    CHECK(*v.backoff_until == now + expected[i]);
    CHECK(s.NextWakeup(now) == now + expected[i]);
    TimePoint until = *v.backoff_until;
    CHECK(Show(s.Tick(until - 1ms)) == "");
    CHECK(StateOf(s, "j") == JobState::kCrashing);
    CHECK(Show(s.Tick(until)) == "start j");
    v = *s.Job("j");
    CHECK(v.state == JobState::kRunning);
    CHECK(v.backoff_until == std::nullopt);
    CHECK(v.started_at == until);
    now = until;
  }
}

TEST_CASE("scheduler: a healthy run ends the crash streak; kHealthy is reported once, on time") {
  SchedulerSettings settings = Settings(1);
  settings.interval = 1000h;
  Scheduler s(settings);
  Run(s, {
             {0s, "add", "j", "start j"},
             {10s, "crash", "j", ""},  // streak 1: back off 30 s
             {39s, "tick", "", ""},
             {40s, "tick", "", "start j"},
         });
  CHECK(s.NextWakeup(At(40s)) == At(160s));
  CHECK(s.Job("j")->consecutive_crashes == 1);
  Run(s, {
             {159s, "tick", "", ""},
             {160s, "tick", "", "healthy j"},
             {161s, "tick", "", ""},
         });
  CHECK(s.Job("j")->consecutive_crashes == 0);
  CHECK(s.NextWakeup(At(161s)) == At(1000h));

  Run(s, {
             {170s, "crash", "j", ""},  // streak 1 again: 30 s
             {200s, "tick", "", "start j"},
             {210s, "crash", "j", ""},  // ran 10 s: streak 2, 60 s
         });
  CHECK(s.Job("j")->consecutive_crashes == 2);
  CHECK(s.Job("j")->backoff_until == At(270s));
  // Runs 500 s with no Tick in between, then crashes: a new streak, and the owed
  // kHealthy is dropped.
  Run(s, {
             {270s, "tick", "", "start j"},
             {770s, "crash", "j", ""},
         });
  CHECK(s.Job("j")->consecutive_crashes == 1);
  CHECK(s.Job("j")->backoff_until == At(800s));
  // Exactly health_threshold counts as healthy.
  Run(s, {
             {800s, "tick", "", "start j"},
             {920s, "crash", "j", ""},
         });
  CHECK(s.Job("j")->consecutive_crashes == 1);
  Run(s, {
             {950s, "tick", "", "start j"},
             {951s, "crash", "j", ""},
             {1011s, "tick", "", "start j"},
             {1130s, "tick", "", ""},
             {1200s, "tick", "", "healthy j"},  // a late Tick still reports it, once
             {1300s, "tick", "", ""},
         });
  CHECK(s.Job("j")->consecutive_crashes == 0);
}

TEST_CASE("scheduler: a crashed job whose backoff ended competes by the time it became eligible") {
  SchedulerSettings settings = Settings(1);
  settings.interval = 1000h;
  Scheduler s(settings);
  Run(s, {
             {0s, "add1", "j1", "start j1"},
             {1s, "add1", "j0", ""},
             {10s, "crash", "j1", "start j0"},  // j1 eligible again at 40 s
             {20s, "add1", "j3", ""},
             {45s, "add1", "j4", ""},
             {50s, "tick", "", ""},
         });
  CHECK(StateOf(s, "j1") == JobState::kCrashing);  // until it starts
  Run(s, {
             {100s, "complete", "j0", "start j3"},
             {101s, "complete", "j3", "start j1"},
             {102s, "complete", "j1", "start j4"},
         });
}

TEST_CASE("scheduler: NextWakeup is the earliest of rotation, backoff end and health") {
  Scheduler s(Settings(1));
  CHECK(s.NextWakeup(At(5s)) == At(65s));
  s.Add(JobInfo{"j", "db", "d", true}, At(0s));
  CHECK(s.NextWakeup(At(0s)) == At(60s));
  s.OnCrashed("j", "boom", At(1s));
  CHECK(s.NextWakeup(At(1s)) == At(31s));
  CHECK(Show(s.Tick(At(31s))) == "start j");
  CHECK(s.NextWakeup(At(31s)) == At(60s));
  CHECK(Show(s.Tick(At(60s))) == "");
  CHECK(s.NextWakeup(At(60s)) == At(120s));
  CHECK(Show(s.Tick(At(120s))) == "");
  CHECK(s.NextWakeup(At(120s)) == At(151s));
  CHECK(s.NextWakeup(At(200s)) == At(200s));  // overdue: now
  CHECK(Show(s.Tick(At(151s))) == "healthy j");
  s.UpdateSettings(Settings(2));
  CHECK(s.NextWakeup(At(152s)) == At(152s));  // settings wait for a Tick
}

TEST_CASE("scheduler: removing running, pending and crashing jobs") {
  Scheduler s(Settings(2));
  Run(s, {
             {0s, "add", "c1", "start c1"},
             {1s, "add", "c2", "start c2"},
             {2s, "add", "c3", ""},
             {3s, "add", "c4", ""},
             {10s, "remove", "c1", "stop c1 (removed), start c3"},
             {11s, "remove", "c4", ""},
             {12s, "crash", "c2", ""},
         });
  CHECK(s.Job("c1") == std::nullopt);
  CHECK(s.Job("c4") == std::nullopt);
  CHECK(s.NextWakeup(At(12s)) == At(42s));
  Run(s, {
             {13s, "remove", "c2", ""},
             {13s, "remove", "unknown", ""},
             {42s, "tick", "", ""},
             {50s, "remove", "c3", "stop c3 (removed)"},
             {51s, "add", "c5", "start c5"},  // the database again, after its last job went
         });
  CHECK(s.NextWakeup(At(51s)) == At(60s));
  CHECK(s.running() == 1);
  CHECK(s.Jobs().size() == 1);

  // A crashed job whose backoff ended, waiting for a slot.
  Scheduler t(Settings(1));
  Run(t, {
             {0s, "add", "a", "start a"},
             {1s, "add", "b", ""},
             {2s, "crash", "a", "start b"},
             {40s, "tick", "", ""},
             {41s, "remove", "a", ""},
             {42s, "remove", "b", "stop b (removed)"},
             {43s, "add", "c", "start c"},
         });
}

TEST_CASE("scheduler: pause stops a job until it is resumed") {
  Scheduler s(Settings(2));
  Run(s, {
             {0s, "add", "c1", "start c1"},
             {1s, "add", "c2", "start c2"},
             {2s, "add", "c3", ""},
             {10s, "pause", "c1", "stop c1 (paused), start c3"},
             {60s, "tick", "", ""},  // c1 is not waiting: nothing to rotate in
             {70s, "complete", "c2", ""},
             {71s, "pause", "c1", ""},
             {72s, "resume", "c3", ""},
         });
  CHECK(StateOf(s, "c1") == JobState::kPaused);
  CHECK(s.running() == 1);
  CHECK(ShowHistory(*s.Job("c1")) == "paused@10s, stopped@10s(paused), started@0s, added@0s");
  Run(s, {
             {80s, "resume", "c1", "start c1"},
             {81s, "add", "c4", ""},
             {82s, "pause", "c4", ""},  // a pending job
             {83s, "crash", "c3", ""},
             {84s, "pause", "c3", ""},  // a crashing job: its backoff is dropped
         });
  CHECK(ShowHistory(*s.Job("c1")) ==
        "started@80s, resumed@80s, paused@10s, stopped@10s(paused), started@0s, added@0s");
  CHECK(StateOf(s, "c4") == JobState::kPaused);
  CHECK(StateOf(s, "c3") == JobState::kPaused);
  CHECK(s.Job("c3")->backoff_until == std::nullopt);
  CHECK(s.Job("c3")->consecutive_crashes == 1);
  CHECK(s.NextWakeup(At(84s)) == At(120s));
  Run(s, {
             {85s, "resume", "c3", "start c3"},
             {86s, "resume", "c4", ""},
             {120s, "tick", "", "stop c1 (rotation), start c4"},
         });
  CHECK(StateOf(s, "c4") == JobState::kRunning);
}

TEST_CASE("scheduler: reset clears backoff and streak and starts the job when a slot is free") {
  Scheduler s(Settings(1));
  Run(s, {
             {0s, "add1", "j1", "start j1"},
             {1s, "add1", "j2", ""},
             {5s, "crash", "j1", "start j2"},
             {10s, "reset", "j1", ""},  // no slot free
         });
  JobView v = *s.Job("j1");
  CHECK(v.state == JobState::kPending);
  CHECK(v.backoff_until == std::nullopt);
  CHECK(v.consecutive_crashes == 0);
  CHECK(ShowHistory(v) == "reset@10s, crashed@5s(boom), started@0s, added@0s");
  CHECK(s.NextWakeup(At(10s)) == At(60s));
  Run(s, {
             {20s, "complete", "j2", "start j1"},
             // The job still owes its kHealthy (it had crashed) after the threshold.
             {140s, "tick", "", "healthy j1"},
             {150s, "complete", "j1", ""},
             {151s, "reset", "j1", ""},  // completed: nothing
         });
  CHECK(ShowHistory(*s.Job("j1")).rfind("completed@150s", 0) == 0);

  Scheduler t(Settings(1));
  Run(t, {
             {0s, "add", "a", "start a"},
             {1s, "crash", "a", ""},
             {2s, "crash", "a", ""},  // not running: ignored
             {3s, "reset", "a", "start a"},
             {4s, "reset", "a", ""},  // running: the event only
             {5s, "add", "b", ""},
             {6s, "reset", "b", ""},  // pending: the event only
         });
  CHECK(t.Job("a")->consecutive_crashes == 0);
  CHECK(ShowHistory(*t.Job("a")) ==
        "reset@4s, started@3s, reset@3s, crashed@1s(boom), started@0s, added@0s");
  CHECK(ShowHistory(*t.Job("b")) == "reset@6s, added@5s");
}

TEST_CASE("scheduler: running slots are shared between databases by their shares") {
  struct Row {
    std::map<std::string, int> shares;
    int a_running;
    int b_running;
    std::string fill;  // starts when 4 slots open at once
  };
  const std::vector<Row> rows = {
      {{}, 2, 2, "start a1, start b1, start a2, start b2"},
      {{{"a", 3}, {"b", 1}}, 3, 1, "start a1, start b1, start a2, start a3"},
      {{{"a", 1}, {"b", 3}}, 1, 3, "start a1, start b1, start b2, start b3"},
  };
  auto count = [](const Scheduler& s, const std::string& db) {
    int n = 0;
    for (const JobView& v : s.Jobs()) n += v.info.database == db && v.state == JobState::kRunning;
    return n;
  };
  for (const Row& row : rows) {
    CAPTURE(row.a_running);
    CAPTURE(row.b_running);
    // Database a's jobs come first and take every slot; rotation rebalances.
    SchedulerSettings settings = Settings(4);
    settings.shares = row.shares;
    Scheduler s(settings);
    for (int i = 1; i <= 10; ++i) s.Add(JobInfo{"a" + std::to_string(i), "a", "d", true}, At(0s));
    for (int i = 1; i <= 10; ++i) s.Add(JobInfo{"b" + std::to_string(i), "b", "d", true}, At(0s));
    CHECK(count(s, "a") == 4);
    for (int k = 1; k <= 12; ++k) {
      CAPTURE(k);
      s.Tick(At(k * 60s));
      CHECK(count(s, "a") == row.a_running);
      CHECK(count(s, "b") == row.b_running);
    }
    // Within each database every job has had its turn.
    for (const JobView& v : s.Jobs()) {
      CAPTURE(v.info.id);
      CHECK(v.history.size() > 1);
    }

    // When slots open with both databases waiting, the lowest running/share goes first.
    SchedulerSettings closed = settings;
    closed.max_jobs = 0;
    Scheduler f(closed);
    for (int i = 1; i <= 10; ++i) f.Add(JobInfo{"a" + std::to_string(i), "a", "d", true}, At(0s));
    for (int i = 1; i <= 10; ++i) f.Add(JobInfo{"b" + std::to_string(i), "b", "d", true}, At(0s));
    f.UpdateSettings(settings);
    CHECK(Show(f.Tick(At(1s))) == row.fill);
  }
}

TEST_CASE("scheduler: equal shares, exact rotation between two databases") {
  Scheduler s(Settings(4));
  for (int i = 1; i <= 6; ++i) s.Add(JobInfo{"a" + std::to_string(i), "a", "d", true}, At(0s));
  for (int i = 1; i <= 6; ++i) s.Add(JobInfo{"b" + std::to_string(i), "b", "d", true}, At(0s));
  // First the slots move from a (over its share) to b, then a rotates within itself.
  CHECK(Show(s.Tick(At(60s))) ==
        "stop a1 (rotation), stop a2 (rotation), stop a3 (rotation), stop a4 (rotation), "
        "start b1, start b2, start a5, start a6");
  CHECK(Show(s.Tick(At(120s))) ==
        "stop b1 (rotation), stop b2 (rotation), stop a5 (rotation), stop a6 (rotation), "
        "start b3, start b4, start a1, start a2");

  // An odd slot stays where it is: moving it would only make the other side over.
  Scheduler odd(Settings(3));
  for (int i = 1; i <= 6; ++i) odd.Add(JobInfo{"a" + std::to_string(i), "a", "d", true}, At(0s));
  for (int i = 1; i <= 6; ++i) odd.Add(JobInfo{"b" + std::to_string(i), "b", "d", true}, At(0s));
  CHECK(Show(odd.Tick(At(60s))) ==
        "stop a1 (rotation), stop a2 (rotation), stop a3 (rotation), start b1, start a4, start a5");
  for (int k = 2; k <= 10; ++k) {
    CAPTURE(k);
    CHECK(odd.Tick(At(k * 60s)).size() == 6);  // a and b each rotate within themselves
    int a_running = 0;
    for (const JobView& v : odd.Jobs())
      a_running += v.info.database == "a" && v.state == JobState::kRunning;
    CHECK(a_running == 2);
    CHECK(odd.running() == 3);
  }
}

TEST_CASE("scheduler: lowering max_jobs stops the newest continuous jobs at the next Tick") {
  Scheduler s(Settings(4));
  Run(s, {
             {0s, "add1", "o1", "start o1"},
             {1s, "add", "c1", "start c1"},
             {2s, "add", "c2", "start c2"},
             {3s, "add", "c3", "start c3"},
             {4s, "add", "c4", ""},
         });
  s.UpdateSettings(Settings(2));
  CHECK(s.settings().max_jobs == 4);  // not before the next Tick
  CHECK(s.NextWakeup(At(5s)) == At(5s));
  Run(s, {{5s, "tick", "", "stop c3 (max_jobs), stop c2 (max_jobs)"}});
  CHECK(s.settings().max_jobs == 2);
  CHECK(s.running() == 2);
  CHECK(ShowHistory(*s.Job("c3")) == "stopped@5s(max_jobs), started@3s, added@3s");
  s.UpdateSettings(Settings(0));
  Run(s, {
             {6s, "tick", "", "stop c1 (max_jobs)"},  // the one-shot is left to finish
             {7s, "tick", "", ""},
         });
  CHECK(s.running() == 1);
  CHECK(StateOf(s, "o1") == JobState::kRunning);
  Run(s, {{8s, "complete", "o1", ""}});
  s.UpdateSettings(Settings(3));
  Run(s, {{9s, "tick", "", "start c4, start c3, start c2"}});

  // With shares, the database over its share gives first.
  SchedulerSettings shared = Settings(0);
  shared.shares = {{"a", 3}, {"b", 1}};
  Scheduler t(shared);
  for (int i = 1; i <= 4; ++i) t.Add(JobInfo{"a" + std::to_string(i), "a", "d", true}, At(0s));
  for (int i = 1; i <= 4; ++i) t.Add(JobInfo{"b" + std::to_string(i), "b", "d", true}, At(0s));
  shared.max_jobs = 4;
  t.UpdateSettings(shared);
  CHECK(Show(t.Tick(At(1s))) == "start a1, start b1, start a2, start a3");
  shared.max_jobs = 2;
  t.UpdateSettings(shared);
  CHECK(Show(t.Tick(At(2s))) == "stop a3 (max_jobs), stop a2 (max_jobs)");
}

TEST_CASE("scheduler: other settings apply from the next Tick") {
  Scheduler s(Settings(1, 20, 60s));
  Run(s, {
             {0s, "add", "c1", "start c1"},
             {1s, "add", "c2", ""},
         });
  s.UpdateSettings(Settings(1, 20, 10s));
  Run(s, {
             {5s, "tick", "", ""},
             {9s, "tick", "", ""},
             {10s, "tick", "", "stop c1 (rotation), start c2"},
         });
  CHECK(s.NextWakeup(At(10s)) == At(20s));

  // health_threshold and max_history.
  SchedulerSettings settings = Settings(1);
  Scheduler h(settings);
  Run(h, {
             {0s, "add", "j", "start j"},
             {1s, "crash", "j", ""},
             {31s, "tick", "", "start j"},
         });
  CHECK(h.NextWakeup(At(31s)) == At(60s));
  settings.health_threshold = 10s;
  settings.max_history = 2;
  h.UpdateSettings(settings);
  Run(h, {{32s, "tick", "", ""}});
  CHECK(h.NextWakeup(At(32s)) == At(41s));
  CHECK(ShowHistory(*h.Job("j")) == "started@31s, crashed@1s(boom)");
  Run(h, {{41s, "tick", "", "healthy j"}});
}

TEST_CASE("scheduler: history is newest first and trimmed to max_history") {
  SchedulerSettings settings = Settings(1);
  settings.max_history = 4;
  Scheduler s(settings);
  Run(s, {
             {0s, "add", "j", "start j"},
             {10s, "crash", "j", ""},
         });
  CHECK(ShowHistory(*s.Job("j")) == "crashed@10s(boom), started@0s, added@0s");
  Run(s, {
             {40s, "tick", "", "start j"},
             {50s, "pause", "j", "stop j (paused)"},
         });
  CHECK(ShowHistory(*s.Job("j")) ==
        "paused@50s, stopped@50s(paused), started@40s, crashed@10s(boom)");
  Run(s, {
             {55s, "resume", "j", "start j"},
             {56s, "reset", "j", ""},
             {57s, "complete", "j", ""},
         });
  CHECK(ShowHistory(*s.Job("j")) == "completed@57s, reset@56s, started@55s, resumed@55s");
  CHECK(s.Job("j")->history.size() == 4);
}

TEST_CASE("scheduler: 10,000 one-shot jobs run through 500 slots") {
  Scheduler s(Settings(500));
  std::vector<std::string> running;
  auto take = [&](const std::vector<SchedulerAction>& actions) {
    for (const SchedulerAction& a : actions) {
      REQUIRE(a.type == SchedulerAction::Type::kStart);
      running.push_back(a.job_id);
    }
  };
  for (int i = 0; i < 10000; ++i) {
    std::string db = "db" + std::to_string(i % 4);
    take(s.Add(JobInfo{"job" + std::to_string(i), db, "d", false}, At(0s)));
  }
  CHECK(running.size() == 500);
  int rounds = 0;
  int completed = 0;
  TimePoint now = At(0s);
  while (!running.empty()) {
    ++rounds;
    now += 1s;
    std::vector<std::string> batch;
    batch.swap(running);
    for (const std::string& id : batch) {
      take(s.OnCompleted(id, now));
      ++completed;
    }
    take(s.Tick(now));
    CHECK(s.running() <= 500);
  }
  CHECK(rounds == 20);
  CHECK(completed == 10000);
  CHECK(s.running() == 0);
}

TEST_CASE("scheduler: 10,000 continuous jobs rotate max_churn per interval") {
  Scheduler s(Settings(500, 20));
  for (int i = 0; i < 10000; ++i) {
    s.Add(JobInfo{"job" + std::to_string(i), "db" + std::to_string(i % 10), "d", true}, At(0s));
  }
  CHECK(s.running() == 500);
  for (int k = 1; k <= 100; ++k) {
    // Extra Ticks between intervals find nothing to do.
    for (int j = 1; j < 50; ++j) REQUIRE(s.Tick(At(k * 60s - 60s + j * 1s)).empty());
    std::vector<SchedulerAction> actions = s.Tick(At(k * 60s));
    REQUIRE(actions.size() == 40);
    CHECK(s.running() == 500);
  }
  std::map<std::string, int> per_db;
  for (const JobView& v : s.Jobs()) per_db[v.info.database] += v.state == JobState::kRunning;
  for (const auto& entry : per_db) {
    CAPTURE(entry.first);
    CHECK(entry.second == 50);
  }
}

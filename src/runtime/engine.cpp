// Engine: its construction, Start, and the engine thread's loop that dispatches the events.
#include "couchrepd/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "couchrepd/http_metrics.h"
#include "couchrepd/log.h"
#include "couchrepd/server_connection.h"
#include "engine_impl.h"

namespace couchrepd {

namespace {

using namespace std::chrono_literals;

// How often the snapshot is refreshed while jobs make progress.
constexpr Duration kSnapshotPeriod = 500ms;
// ... and while every job is parked (well inside kMaxSnapshotAge, liveness).
constexpr Duration kIdleSnapshotPeriod = 2s;
// A snapshot copies every document and job: with tens of thousands of them,
// one per event (jobs ending many times a second) would keep the engine's
// thread busy doing nothing else. So after one, the next waits nine times
// as long as it took (at most a tenth of the thread's time; with a few
// hundred documents that is well under a millisecond, so a change still
// shows at once).
constexpr int kSnapshotCostFactor = 9;
constexpr int kWriterThreads = 4;
constexpr int kIdThreads = 2;

}  // namespace

double Engine::Impl::RandomUnit() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

Engine::Impl::Impl(Config c)
    : config(std::move(c)),
      scheduler(SchedulerSettings::From(config)),
      processor(DocProcessorSettings::From(config, Endpoint{})) {}

void Engine::Impl::Post(Event e) {
  {
    std::lock_guard<std::mutex> lock(events_mu);
    events.push_back(std::move(e));
  }
  events_cv.notify_one();
}

bool Engine::Impl::AnyRunActive() const {
  if (!stopping.empty()) return true;
  for (const auto& [id, r] : runners) {
    if (!r.pooled || r.queued) return true;
  }
  return false;
}

CouchClient Engine::Impl::ServerClient() { return CouchClient(server_endpoint, http); }

Result<std::string> Engine::Impl::Uuid() {
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

void Engine::Impl::Handle(Event& e, TimePoint now) {
  switch (e.kind) {
    case Event::Kind::kRow:
      if (cluster) {
        OnClusterRow(e.db, e.row, now);
      } else {
        Apply(processor.OnChange(e.db, e.row.id, e.row.deleted, e.row.doc, now, RandomUnit), now);
      }
      break;
    case Event::Kind::kFeedLost:
      ForgetClusterDatabase(e.db);
      Apply(processor.OnDatabaseRemoved(e.db, now), now);
      break;
    case Event::Kind::kLeaseGranted:
      OnLeaseGranted(e.key, now);
      break;
    case Event::Kind::kLeaseRevoked:
      OnLeaseRevoked(e.key, now);
      break;
    case Event::Kind::kJobClaimed:
      Apply(processor.OnJobClaim(e.key, e.generation, e.job_id, e.elsewhere, now), now);
      break;
    case Event::Kind::kJobFreed:
      Apply(processor.OnJobFreed(e.job_id, now), now);
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
    case Event::Kind::kJobParked:
      OnJobParked(e, now);
      break;
    case Event::Kind::kDbUpdated:
      OnDbUpdated(e.dbs);
      break;
    case Event::Kind::kWakeFeed:
      OnWakeFeed(e.wake_feed, now);
      break;
    case Event::Kind::kWatchFired:
      OnWatchFired(e, now);
      break;
    case Event::Kind::kWake:
    case Event::Kind::kShutdown:
      break;
  }
}

void Engine::Impl::Loop() {
  bool stopping_all = false;
  while (true) {
    TimePoint now = clock.Now();
    TimePoint wake = scheduler.NextWakeup(now);
    if (!retries.empty()) wake = std::min(wake, retries.begin()->first);
    if (!timed_passes.empty()) wake = std::min(wake, timed_passes.begin()->first);
    wake = std::min(wake, now + kSnapshotPeriod);
    const Duration gap = publish_cost * kSnapshotCostFactor;
    if (dirty) wake = std::min(wake, std::max(now, last_snapshot + gap));
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
      // While stopping, only the ends of jobs (and of passes, which may
      // still owe a checkpoint) matter: rows, ids and commands arriving
      // now must not start anything new.
      if (stopping_all && e.kind != Event::Kind::kJobEnded &&
          e.kind != Event::Kind::kJobParked) {
        continue;
      }
      Handle(e, now);
    }
    if (shutdown && !stopping_all) {
      stopping_all = true;
      shutdown_deadline = BeginShutdown(now);
    }
    if (stopping_all) {
      if (stopping.empty() && runners.empty()) break;
      if (now >= shutdown_deadline) {
        AbortRemainingRuns();
        break;
      }
      continue;
    }
    if (!batch.empty() || now >= wake) Apply(scheduler.Tick(now), now);
    RunTimedPasses(now);
    while (!retries.empty() && retries.begin()->first <= now) {
      auto [key, gen] = retries.begin()->second;
      retries.erase(retries.begin());
      Apply(processor.OnRetryDue(key, gen, now), now);
    }
    // Progress changes only while a run is active: with every job parked
    // the snapshot is refreshed when something happened, else only often
    // enough for liveness (thousands of idle jobs cost almost no CPU).
    const auto since = now - last_snapshot;
    if ((dirty && since >= gap) || since >= std::max<Duration>(kIdleSnapshotPeriod, gap) ||
        (since >= std::max<Duration>(kSnapshotPeriod, gap) && AnyRunActive())) {
      auto started = std::chrono::steady_clock::now();
      Publish(now);
      publish_cost = std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - started);
      last_snapshot = now;
      dirty = false;
    }
  }
  Publish(clock.Now());
}

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
  m.writer_client->SetCancel(&m.writes_cancel);
  m.writers = std::make_unique<WorkerPool>(kWriterThreads, "write-back");
  m.id_workers = std::make_unique<WorkerPool>(kIdThreads, "replication id");
  m.run_pool = std::make_unique<WorkerPool>(m.config.replication.active_jobs, "job runs",
                                            /*shared_queue=*/true);
  m.watcher = std::make_unique<ChangeWatcher>();
  if (m.config.cluster.enabled) m.StartCluster();
  m.wake_thread = std::thread([&m] { m.RunWakeFeed(); });
  m.SyncDatabases({}, m.clock.Now());
  if (m.config.replicator.discover) m.discovery_thread = std::thread([&m] { m.RunDiscovery(); });
  m.Publish(m.clock.Now());
  m.engine_thread = std::thread([&m] { m.Loop(); });
  return OkStatus();
}

}  // namespace couchrepd

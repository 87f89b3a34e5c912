// Engine: Shutdown, stopping the feeds and every job with a checkpoint within shutdown_timeout.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine_impl.h"

namespace couchrepd {

// Stops the feeds and every running job; returns when to give up waiting for
// their final checkpoints.
TimePoint Engine::Impl::BeginShutdown(TimePoint now) {
  shutting_down = true;
  Duration timeout;
  {
    std::lock_guard<std::mutex> lock(events_mu);
    timeout = config.shutdown_timeout;
  }
  TimePoint deadline = now + timeout;
  // Feeds end first, so no row starts a job while the others stop.
  {
    std::lock_guard<std::mutex> lock(feeds_mu);
    for (auto& [db, feed] : feeds) feed->cancel.Cancel();
  }
  wake_cancel.Cancel();
  timed_passes.clear();
  std::vector<std::string> ids;
  for (const auto& [id, r] : runners) ids.push_back(id);
  for (const auto& id : ids) StopRunner(id);
  spdlog::info("shutting down: stopping {} running jobs", ids.size());
  return deadline;
}

// At the shutdown deadline, with runs still going.
void Engine::Impl::AbortRemainingRuns() {
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
}

void Engine::Shutdown() {
  Impl& m = *impl_;
  if (!m.engine_thread.joinable()) return;
  Impl::Event e;
  e.kind = Impl::Event::Kind::kShutdown;
  m.Post(std::move(e));
  m.engine_thread.join();
  m.discovery_cancel.Cancel();
  m.KickDiscovery();
  if (m.discovery_thread.joinable()) m.discovery_thread.join();
  m.wake_cancel.Cancel();
  if (m.wake_thread.joinable()) m.wake_thread.join();
  m.watcher.reset();
  // Every job has stopped: the leases go back and the others take over now.
  if (m.cluster) m.cluster->Stop(/*give_back=*/true);
  // Passes still queued belong to runs aborted at the deadline: they end at
  // once (their requests are cancelled).
  if (m.run_pool) m.run_pool->Stop();
  std::vector<std::string> dbs;
  {
    std::lock_guard<std::mutex> lock(m.feeds_mu);
    for (const auto& [db, f] : m.feeds) dbs.push_back(db);
  }
  for (const auto& db : dbs) m.StopFeed(db);
  // State writes and id computations still queued get what is left of
  // shutdown_timeout; then the queued ones are dropped (the feed brings the
  // documents back at the next start) and the writes in flight are cut.
  auto left = [&m] {
    auto d = m.shutdown_deadline - m.clock.Now();
    return std::max<std::chrono::steady_clock::duration>(d, std::chrono::milliseconds(100));
  };
  if (m.id_workers) m.id_workers->Stop(left());
  if (m.writers) m.writers->Stop(left(), [&m] { m.writes_cancel.Cancel(); });
}

}  // namespace couchrepd

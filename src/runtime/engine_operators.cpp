// Engine: operator commands (reset, pause, resume a job) and configuration reloads (SIGHUP).
#include <spdlog/spdlog.h>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <utility>

#include "couchrepd/server_connection.h"
#include "engine_impl.h"

namespace couchrepd {

// Runs `f` on the engine thread; false when the job is unknown.
bool Engine::Impl::Operator(const std::string& job_id,
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

bool Engine::ResetJob(const std::string& job_id) {
  return impl_->Operator(
      job_id, [job_id](Scheduler& s, TimePoint now) { return s.Reset(job_id, now); }, "reset");
}

bool Engine::PauseJob(const std::string& job_id) {
  return impl_->Operator(
      job_id, [job_id](Scheduler& s, TimePoint now) { return s.Pause(job_id, now); }, "pause");
}

bool Engine::ResumeJob(const std::string& job_id) {
  return impl_->Operator(
      job_id, [job_id](Scheduler& s, TimePoint now) { return s.Resume(job_id, now); }, "resume");
}

void Engine::Impl::ApplyReload(const Config& next, TimePoint now) {
  if (next.replication.active_jobs != config.replication.active_jobs) {
    spdlog::warn("replication.active_jobs changed from {} to {}: takes effect at the next start",
                 config.replication.active_jobs, next.replication.active_jobs);
  }
  if (HostConnectionCap(next) != HostConnectionCap(config)) {
    spdlog::warn("replication.host_connections changed from {} to {}: takes effect at the next start",
                 HostConnectionCap(config), HostConnectionCap(next));
  }
  InitLoggingFromConfig(next);
  RegisterConfigSecrets(next);
  {
    std::lock_guard<std::mutex> lock(events_mu);
    config = next;
  }
  scheduler.UpdateSettings(SchedulerSettings::From(next));
  DocProcessorSettings doc_settings = DocProcessorSettings::From(next, server_endpoint);
  doc_settings.claim_jobs = cluster != nullptr;  // cluster settings are read at start
  processor.UpdateSettings(std::move(doc_settings));
  SyncDatabases(discovered, now);
  Apply(scheduler.Tick(now), now);
  spdlog::info("configuration reloaded");
}

void Engine::Reload(Config config) {
  Impl::Event e;
  e.kind = Impl::Event::Kind::kReload;
  e.config = std::make_shared<Config>(std::move(config));
  impl_->Post(std::move(e));
}

}  // namespace couchrepd

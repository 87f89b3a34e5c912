// Engine: Publish, the immutable EngineSnapshot the status API renders from.
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "engine_impl.h"

namespace couchrepd {

double EngineSnapshot::ToUnix(TimePoint t) const {
  return unix_now - std::chrono::duration<double>(steady_now - t).count();
}

void Engine::Impl::Publish(TimePoint now) {
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
      d.source = rec->second.source_display;
      d.target = rec->second.target_display;
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
  if (cluster) s->cluster = cluster->View();
  std::lock_guard<std::mutex> lock(snapshot_mu);
  snapshot = std::move(s);
}

std::shared_ptr<const EngineSnapshot> Engine::Snapshot() const {
  std::lock_guard<std::mutex> lock(impl_->snapshot_mu);
  return impl_->snapshot;
}

}  // namespace couchrepd

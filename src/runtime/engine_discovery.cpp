// Engine: which replicator databases are followed (configured, and */_replicator discovered).
#include <spdlog/spdlog.h>

#include <mutex>
#include <string>
#include <utility>

#include "couchrepd/log.h"
#include "engine_impl.h"

namespace couchrepd {

namespace {

bool IsReplicatorDbName(const std::string& name) {
  return name == "_replicator" ||
         (name.size() > 12 && name.compare(name.size() - 12, 12, "/_replicator") == 0);
}

std::set<std::string> WantedDatabases(const Config& cfg, const std::set<std::string>& discovered) {
  std::set<std::string> wanted(cfg.replicator.databases.begin(), cfg.replicator.databases.end());
  if (cfg.replicator.discover) wanted.insert(discovered.begin(), discovered.end());
  return wanted;
}

}  // namespace

void Engine::Impl::RunDiscovery() {
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

void Engine::Impl::SyncDatabases(const std::set<std::string>& found, TimePoint now) {
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

}  // namespace couchrepd

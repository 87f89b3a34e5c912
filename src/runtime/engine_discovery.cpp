// Engine: which replicator databases are followed (configured, and */_replicator discovered).
#include <spdlog/spdlog.h>

#include <mutex>
#include <string>
#include <utility>

#include "couchrepd/limits.h"
#include "couchrepd/log.h"
#include "engine_impl.h"

namespace couchrepd {

namespace {


std::set<std::string> WantedDatabases(const Config& cfg, const std::set<std::string>& discovered) {
  std::set<std::string> wanted(cfg.replicator.databases.begin(), cfg.replicator.databases.end());
  if (cfg.replicator.discover) wanted.insert(discovered.begin(), discovered.end());
  return wanted;
}

}  // namespace

// Lists _all_dbs, then waits for the wake feed (engine_wake.cpp, the one
// _db_updates feed) to say a replicator database was created or deleted, or
// for discover_interval, and lists again. Where _db_updates is missing this
// is polling every interval.
void Engine::Impl::RunDiscovery() {
  Duration interval;
  {
    std::lock_guard<std::mutex> lock(events_mu);
    interval = config.replicator.discover_interval;
  }
  CouchClient root = ServerClient();
  root.SetCancel(&discovery_cancel);
  bool told_missing = false;
  while (!discovery_cancel.cancelled()) {
    auto all = root.AllDbs();
    if (all.ok()) {
      Event e;
      e.kind = Event::Kind::kDbSet;
      for (const auto& name : *all) {
        if (IsReplicatorDbName(name)) e.dbs.insert(name);
      }
      Post(std::move(e));
    } else if (!discovery_cancel.cancelled()) {
      spdlog::warn("database discovery: {}", ScrubSecrets(all.error().Message()));
    }
    std::unique_lock<std::mutex> lock(discovery_mu);
    discovery_cv.wait_for(lock, interval, [&] {
      return discovery_kicked || discovery_cancel.cancelled() ||
             (db_updates_missing && !told_missing);
    });
    discovery_kicked = false;
    if (db_updates_missing && !told_missing) {
      spdlog::info("_db_updates is not available; polling _all_dbs every {} ms", interval.count());
      told_missing = true;
    }
  }
}

void Engine::Impl::KickDiscovery(bool missing) {
  std::lock_guard<std::mutex> lock(discovery_mu);
  if (missing) {
    db_updates_missing = true;
  } else {
    discovery_kicked = true;
  }
  discovery_cv.notify_all();
}

bool IsReplicatorDbName(const std::string& name) {
  return name == "_replicator" ||
         (name.size() > 12 && name.compare(name.size() - 12, 12, "/_replicator") == 0);
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

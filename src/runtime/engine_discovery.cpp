// Engine: which replicator databases are followed (configured, and */_replicator discovered).
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <string>
#include <utility>

#include "couchrepd/limits.h"
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

// The `last_seq` of a `_db_updates` answer ({"results":[...],"last_seq":...}),
// as raw JSON text (integer or opaque string), to send back as `since`.
Result<std::string> DbUpdatesLastSeq(CouchClient& root, QueryParams query) {
  HttpRequest req;
  req.path = "/_db_updates";
  req.query = std::move(query);
  auto r = root.Send(req);
  if (!r.ok()) return r.error();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::element last_seq;
  if (parser.parse(r->body).get(doc) != simdjson::SUCCESS ||
      doc["last_seq"].get(last_seq) != simdjson::SUCCESS) {
    return Error::Temporary("bad_response", "_db_updates answered without a last_seq: " +
                                                CapText(r->body, 200));
  }
  std::string_view text;
  if (last_seq.get(text) == simdjson::SUCCESS) return std::string(text);
  return simdjson::minify(last_seq);
}

// CouchDB without _global_changes answers 404; other servers 400 or 405.
bool DbUpdatesMissing(const Error& e) {
  return e.http_status == 400 || e.http_status == 404 || e.http_status == 405;
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
  // Where the last _db_updates answer ended. CouchDB answers from since=0 (its
  // whole _global_changes history) by default: asked without `since`, every
  // longpoll would return at once and discovery would spin. Taken before the
  // listing, so an event between the two only costs one more listing.
  std::string since = "now";
  while (!discovery_cancel.cancelled()) {
    if (db_updates_works && since == "now") {
      auto at = DbUpdatesLastSeq(root, {{"feed", "normal"}, {"since", "now"}});
      if (at.ok()) {
        since = *at;
      } else if (DbUpdatesMissing(at.error())) {
        spdlog::info("_db_updates is not available ({}); polling _all_dbs every {} ms",
                     at.error().Message(), interval.count());
        db_updates_works = false;
      }
    }
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
    if (db_updates_works && since != "now") {
      // Wait for a database event after `since` (or the interval), then list again.
      auto next = DbUpdatesLastSeq(root, {{"feed", "longpoll"},
                                          {"since", since},
                                          {"timeout", std::to_string(interval.count())}});
      if (next.ok()) {
        since = *next;
        continue;
      }
      since = "now";  // start over from the present after an error
      if (DbUpdatesMissing(next.error())) {
        spdlog::info("_db_updates is not available ({}); polling _all_dbs every {} ms",
                     next.error().Message(), interval.count());
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

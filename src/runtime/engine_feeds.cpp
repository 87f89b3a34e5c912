// Engine: the replicator feeds, one thread per replicator database following its _changes.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "couchrepd/log.h"
#include "couchrepd/replicator_ddoc.h"
#include "doc_writer.h"
#include "engine_impl.h"

namespace couchrepd {

namespace {

using namespace std::chrono_literals;

// Wait before a replicator feed that failed permanently tries again.
constexpr Duration kFeedRetry = 5s;

// The validation state that a `_design/_replicator` row (or document) shows.
ValidationState ValidationOf(bool deleted, const std::string& doc_json) {
  if (deleted) return {false, "_design/_replicator was deleted"};
  if (DesignDocNeedsUpdate(doc_json)) {
    return {false, "_design/_replicator was changed by someone and no longer holds "
                   "couchrepd's validation function"};
  }
  return {true, ""};
}

}  // namespace

void Engine::Impl::SetHealth(const std::string& db, const std::function<void(FeedHealth&)>& f) {
  std::lock_guard<std::mutex> lock(feeds_mu);
  auto& h = health[db];
  h.db = db;
  f(h);
}

void Engine::Impl::StartFeed(const std::string& db) {
  std::lock_guard<std::mutex> lock(feeds_mu);
  if (feeds.count(db)) return;
  auto feed = std::make_unique<Feed>();
  feed->db = db;
  Feed* raw = feed.get();
  health[db].db = db;
  feed->thread = std::thread([this, raw] { RunFeed(*raw); });
  feeds[db] = std::move(feed);
  spdlog::info("following replicator database {}", db);
}

void Engine::Impl::StopFeed(const std::string& db) {
  std::unique_ptr<Feed> feed;
  {
    std::lock_guard<std::mutex> lock(feeds_mu);
    auto it = feeds.find(db);
    if (it == feeds.end()) return;
    feed = std::move(it->second);
    feeds.erase(it);
    health.erase(db);
  }
  feed->cancel.Cancel();
  if (feed->thread.joinable()) feed->thread.join();
  spdlog::info("no longer following replicator database {}", db);
}

// Only databases listed in the configuration are ever created; discovered
// ones are only followed (a deleted one stays deleted). `validation` says
// whether our `_design/_replicator` is in place afterwards (SPEC §1.3).
Status Engine::Impl::PrepareDatabase(CouchClient& db, const std::string& name, const Config& cfg,
                                     ValidationState& validation) {
  auto info = db.GetDbInfo();
  if (!info.ok()) {
    const auto& listed = cfg.replicator.databases;
    bool configured = std::find(listed.begin(), listed.end(), name) != listed.end();
    if (info.error().http_status == 404 && cfg.replicator.create_databases && configured) {
      Status created = db.CreateDb();
      if (!created.ok() && created.error().http_status != 412) return created.error();
      spdlog::info("created replicator database {}", name);
    } else {
      return info.error();
    }
  }
  if (cfg.replicator.install_validation) {
    Status s = EnsureReplicatorDesignDoc(db);
    if (s.ok()) {
      validation = {true, ""};
    } else {
      std::string reason = ScrubSecrets(s.error().Message());
      LogWith({.db = name, .error = reason}, spdlog::level::warn,
              "could not install _design/_replicator in {}: {}", name, reason);
      validation = {false, "_design/_replicator could not be installed: " + reason};
    }
    return OkStatus();
  }
  auto current = db.GetDoc(std::string(kReplicatorDesignDocId));
  if (current.ok()) {
    validation = ValidationOf(false, *current);
  } else if (current.error().http_status == 404) {
    validation = {false, "_design/_replicator is missing (replicator.install_validation is off)"};
  } else {
    validation = {false, "_design/_replicator could not be read: " +
                             ScrubSecrets(current.error().Message())};
  }
  return OkStatus();
}

// Tells the DocProcessor (through the event queue, so in feed order) when
// the validation function of `db` comes or goes; logs why.
void Engine::Impl::ReportValidation(const std::string& db, const ValidationState& state,
                                    std::optional<ValidationState>& last) {
  if (last && *last == state) return;
  bool first = !last.has_value();
  last = state;
  {
    std::lock_guard<std::mutex> lock(feeds_mu);
    auto it = health.find(db);
    if (it != health.end()) it->second.validation = state.in_place ? "" : state.reason;
  }
  if (!state.in_place) {
    spdlog::warn("replicator database {}: the validation function is not in place ({}); "
                 "no document of it gets the server credentials for local endpoints",
                 db, state.reason);
  } else if (!first) {
    spdlog::info("replicator database {}: the validation function is in place again", db);
  }
  Event e;
  e.kind = Event::Kind::kCommand;
  e.db = db;
  bool in_place = state.in_place;
  e.command = [this, db, in_place] { processor.SetValidationInPlace(db, in_place); };
  Post(std::move(e));
}

void Engine::Impl::RunFeed(Feed& feed) {
  ScopedLogFields log_scope({.db = feed.db});
  CouchClient db = ServerClient().Database(feed.db);
  std::string since = "0";
  std::optional<ValidationState> validation_sent;
  // The database or its feed failed: health and log say why; a database
  // that is gone ends its jobs, and the feed starts over from 0 if it comes back.
  auto Failed = [&](const Error& error, bool reconnect, const std::string& what) {
    std::string reason = ScrubSecrets(error.Message());
    SetHealth(feed.db, [&](FeedHealth& h) {
      h.connected = false;
      h.error = reason;
      if (reconnect) ++h.reconnects;
    });
    LogWith({.error = reason}, spdlog::level::warn, "{}: {}", what, reason);
    if (error.http_status == 404) {
      Event e;
      e.kind = Event::Kind::kFeedLost;
      e.db = feed.db;
      Post(std::move(e));
      since = "0";
    }
  };
  while (!feed.cancel.cancelled()) {
    Config cfg;  // re-read: a SIGHUP may have listed or unlisted this database
    {
      std::lock_guard<std::mutex> lock(events_mu);
      cfg = config;
    }
    ValidationState validation;
    Status prepared = PrepareDatabase(db, feed.db, cfg, validation);
    if (!prepared.ok()) {
      Failed(prepared.error(), false, "replicator database " + feed.db);
      if (!SleepUnlessCancelled(clock, kFeedRetry, &feed.cancel)) break;
      continue;
    }
    // Going back to "in place" after a reconnect waits for the feed's own
    // `_design/_replicator` row: rows written while it was not in place come
    // first and must not get the server credentials.
    if (!validation.in_place || !validation_sent || since == "0") {
      ReportValidation(feed.db, validation, validation_sent);
    }
    ChangesRequest req;
    req.include_docs = true;
    req.style = "main_only";
    req.heartbeat = cfg.replicator.heartbeat;
    req.since = since;
    req.on_open = [&] {
      SetHealth(feed.db, [&](FeedHealth& h) {
        h.connected = true;
        h.error.clear();
      });
    };
    auto r = db.FollowChanges(
        req,
        [&](ChangeRow&& row) {
          since = row.seq;
          SetHealth(feed.db, [&](FeedHealth& h) {
            h.last_seq = row.seq;
            ++h.docs_processed;
          });
          if (row.id == kReplicatorDesignDocId) {
            ReportValidation(feed.db, ValidationOf(row.deleted, row.doc), validation_sent);
          }
          Event e;
          e.kind = Event::Kind::kRow;
          e.db = feed.db;
          e.row = std::move(row);
          Post(std::move(e));
          return true;
        },
        feed.cancel,
        [&](const Error& e) {
          std::string reason = ScrubSecrets(e.Message());
          SetHealth(feed.db, [&](FeedHealth& h) {
            h.connected = false;
            h.error = reason;
            ++h.reconnects;
          });
          LogWith({.error = reason}, spdlog::level::info, "replicator feed {} reconnecting: {}",
                  feed.db, reason);
        });
    if (feed.cancel.cancelled()) break;
    if (!r.ok()) {
      Failed(r.error(), true, "replicator feed " + feed.db + " failed");
      if (!SleepUnlessCancelled(clock, kFeedRetry, &feed.cancel)) break;
    }
  }
}

}  // namespace couchrepd

// Engine: parked continuous jobs, woken by one _db_updates feed or a longpoll each.
//
// A continuous job runs in passes on the run pool (ReplicationJob
// park_when_idle): between passes it holds no thread. When its source is a
// database on the watched server it holds no connection either: one longpoll
// `_db_updates` feed per server names the databases that changed, and their
// jobs get a pass (or, when a pass is queued or running, one more after it).
// When the feed starts over from the present (first start, a refused
// `since`) every such job gets a pass, since events before that point are
// unknown. Other sources, and all of them where the server has no
// `_db_updates`, are watched by the ChangeWatcher: one `_changes` longpoll per
// parked job from what it has written, all on one thread. A parked job with
// written but uncheckpointed changes gets a pass when its checkpoint is due.
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "couchrepd/encoding.h"
#include "couchrepd/endpoint_tls.h"
#include "couchrepd/limits.h"
#include "couchrepd/log.h"
#include "engine_impl.h"

namespace couchrepd {

namespace {

using namespace std::chrono_literals;

// After the server said it has no _db_updates, ask again this often.
constexpr Duration kMissingRetry = 60s;
// After any other error, before asking again from the same `since`.
constexpr Duration kErrorRetry = 1s;
// After a failed watch of a parked job's source, before its next pass.
constexpr Duration kWatchRetry = 5s;

}  // namespace

Result<DbUpdatesPage> ReadDbUpdates(CouchClient& root, QueryParams query) {
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
  DbUpdatesPage page;
  std::string_view text;
  if (last_seq.get(text) == simdjson::SUCCESS) {
    page.last_seq = std::string(text);
  } else {
    page.last_seq = simdjson::minify(last_seq);
  }
  simdjson::dom::array results;
  if (doc["results"].get(results) == simdjson::SUCCESS) {
    for (simdjson::dom::element row : results) {
      std::string_view name;
      if (row["db_name"].get(name) != simdjson::SUCCESS) continue;
      page.dbs.emplace(name);
      std::string_view type;
      if (row["type"].get(type) == simdjson::SUCCESS && type != "updated") {
        page.created_or_deleted.emplace(name);
      }
    }
  }
  return page;
}

bool DbUpdatesMissing(const Error& e) {
  return e.http_status == 400 || e.http_status == 404 || e.http_status == 405;
}

// The database name of a source on the watched server (same scheme, host and
// port, under the server URL's path), or "" for any other source.
std::string Engine::Impl::WatchedSourceDb(const ReplicationSpec& spec) const {
  const Url& src = spec.source.endpoint.url;
  const Url& srv = server_endpoint.url;
  if (src.scheme != srv.scheme || src.port != srv.port ||
      AsciiLower(src.host) != AsciiLower(srv.host)) {
    return "";
  }
  std::string base = srv.path;
  if (base.empty() || base.back() != '/') base += '/';
  if (src.path.size() <= base.size() || src.path.compare(0, base.size(), base) != 0) return "";
  std::string rest = src.path.substr(base.size());
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find('/') != std::string::npos) return "";
  auto name = PercentDecode(rest);
  return name ? *name : "";
}

void Engine::Impl::CancelWatch(Runner& r) {
  if (r.watch == 0) return;
  watcher->Cancel(r.watch);
  r.watch = 0;
}

void Engine::Impl::Unwatch(Runner& r) {
  CancelWatch(r);
  if (r.source_db.empty()) return;
  auto it = watched.find(r.source_db);
  if (it == watched.end()) return;
  it->second.erase(r.job_id);
  if (it->second.empty()) watched.erase(it);
}

void Engine::Impl::OnJobParked(Event& e, TimePoint now) {
  dirty = true;
  // A run stopped after its pass had ended: one more pass checkpoints.
  for (auto& r : stopping) {
    if (r.run == e.run) {
      QueuePass(r, true);
      return;
    }
  }
  auto it = runners.find(e.job_id);
  if (it == runners.end() || it->second.run != e.run) return;
  Runner& r = it->second;
  r.queued = false;
  jobs_progress_keep(e.job_id, e.progress);
  if (r.waker == Waker::kNone) {
    // Lost its waker (no _db_updates, a cookie-authenticated source the
    // watcher cannot follow): restart it with a thread and feed of its own.
    StopRunner(e.job_id);
    StartRunner(e.job_id, now);
    return;
  }
  if (r.wake) {
    QueuePass(r, false);
    return;
  }
  if (r.waker == Waker::kWatcher) StartWatch(r);
  if (auto due = r.job->NextCheckpoint()) {
    timed_passes.emplace(*due, std::make_pair(e.job_id, e.run));
  }
}

// A longpoll on the source from what the run has written.
void Engine::Impl::StartWatch(Runner& r) {
  auto rec = jobs.find(r.job_id);
  if (rec == jobs.end()) return;
  const EndpointSpec& source = rec->second.spec->source;
  std::string since = r.job->Snapshot().through_seq.value_or("0");
  std::string job_id = r.job_id;
  uint64_t run = r.run;
  r.watch = watcher->Watch(source.endpoint, TlsFor(source, EndpointTlsPolicy::From(config)), since,
                           [this, job_id, run](Status s) {
                             Event e;
                             e.kind = Event::Kind::kWatchFired;
                             e.job_id = job_id;
                             e.run = run;
                             if (!s.ok()) e.watch_error = s.error();
                             Post(std::move(e));
                           });
}

void Engine::Impl::OnWatchFired(Event& e, TimePoint now) {
  auto it = runners.find(e.job_id);
  if (it == runners.end() || it->second.run != e.run || it->second.queued) return;
  Runner& r = it->second;
  if (r.watch == 0) return;  // cancelled meanwhile
  r.watch = 0;
  if (!e.watch_error) {
    QueuePass(r, false);
    return;
  }
  // The pass tells whether the source really fails (the job then crashes
  // and backs off); a little later, so a watch that keeps failing on a
  // source that works cannot spin.
  spdlog::debug("[{}] watching the source: {}", e.job_id, ScrubSecrets(e.watch_error->Message()));
  timed_passes.emplace(now + kWatchRetry, std::make_pair(e.job_id, e.run));
}

void Engine::Impl::OnDbUpdated(const std::set<std::string>& dbs) {
  for (const auto& db : dbs) {
    auto it = watched.find(db);
    if (it == watched.end()) continue;
    for (const auto& job_id : it->second) {
      auto r = runners.find(job_id);
      if (r == runners.end()) continue;
      if (r->second.queued) {
        r->second.wake = true;
      } else {
        QueuePass(r->second, false);
      }
    }
  }
}

void Engine::Impl::OnWakeFeed(WakeFeedState state, TimePoint now) {
  WakeFeedState before = wake_feed;
  wake_feed = state;
  std::vector<std::string> ids;
  for (const auto& [id, r] : runners) {
    if (r.waker == Waker::kDbUpdates) ids.push_back(id);
  }
  if (state == WakeFeedState::kDown) {
    // No event can come while the server does not answer: every parked job
    // makes a pass, which tells whether its source is away (the job then
    // shows crashing with the reason and backs off) or works after all.
    if (!ids.empty()) {
      spdlog::warn("_db_updates keeps failing: {} parked continuous jobs check their source",
                   ids.size());
    }
    for (const auto& id : ids) {
      Runner& r = runners[id];
      if (!r.queued) QueuePass(r, false);
    }
    return;
  }
  if (state == WakeFeedState::kUp) {
    // Events before this point are unknown: every parked job looks once.
    for (const auto& id : ids) {
      Runner& r = runners[id];
      if (r.queued) {
        r.wake = true;
      } else {
        QueuePass(r, false);
      }
    }
    return;
  }
  if (state != WakeFeedState::kMissing || before == WakeFeedState::kMissing) return;
  if (!ids.empty()) {
    spdlog::info("{} continuous jobs now wait on a _changes longpoll each", ids.size());
  }
  for (const auto& id : ids) {
    Runner& r = runners[id];
    Unwatch(r);
    r.source_db.clear();
    auto rec = jobs.find(id);
    bool cookie = rec != jobs.end() &&
                  rec->second.spec->source.endpoint.credentials.kind == Credentials::Kind::kCookie;
    r.waker = cookie ? Waker::kNone : Waker::kWatcher;
    if (r.queued) continue;  // when its pass ends (OnJobParked)
    if (cookie) {
      StopRunner(id);
      StartRunner(id, now);
    } else {
      StartWatch(r);
    }
  }
}

void Engine::Impl::RunTimedPasses(TimePoint now) {
  while (!timed_passes.empty() && timed_passes.begin()->first <= now) {
    auto [job_id, run] = timed_passes.begin()->second;
    timed_passes.erase(timed_passes.begin());
    auto it = runners.find(job_id);
    if (it == runners.end() || it->second.run != run || it->second.queued) continue;
    QueuePass(it->second, false);
  }
}

void Engine::Impl::RunWakeFeed() {
  // No retries inside a request: this loop retries, and must see every
  // failure. A request retried across a quick server restart would just
  // answer, from a server whose _db_updates sequence may have started over.
  HttpOptions options = http;
  options.retry.retries = 0;
  CouchClient root(server_endpoint, options);
  root.SetCancel(&wake_cancel);
  // A longpoll answers at once when a database changed; its timeout only
  // bounds how long a dead connection goes unnoticed, inside request_timeout.
  Duration timeout;
  {
    std::lock_guard<std::mutex> lock(events_mu);
    timeout = config.server.request_timeout / 2;
  }
  timeout = std::clamp<Duration>(timeout, 1s, 60s);
  auto report = [this](WakeFeedState state) {
    Event e;
    e.kind = Event::Kind::kWakeFeed;
    e.wake_feed = state;
    Post(std::move(e));
  };
  // Where the last answer ended; "now" = start over from the present.
  std::string since = "now";
  bool missing = false;
  // Failures past the request budget report the feed down (once); the next
  // answer starts over from the present, which reports it up again.
  Duration budget;
  {
    std::lock_guard<std::mutex> lock(events_mu);
    budget = config.retry.request_budget;
  }
  std::optional<TimePoint> failing_since;
  bool down = false;
  auto failed = [&] {
    TimePoint now = clock.Now();
    if (!failing_since) failing_since = now;
    if (!down && now - *failing_since >= budget) {
      down = true;
      report(WakeFeedState::kDown);
    }
  };
  while (!wake_cancel.cancelled()) {
    if (since == "now") {
      auto at = ReadDbUpdates(root, {{"feed", "normal"}, {"since", "now"}});
      if (at.ok()) {
        since = at->last_seq;
        missing = false;
        failing_since.reset();
        down = false;
        report(WakeFeedState::kUp);
        KickDiscovery();  // databases may have come and gone meanwhile
        continue;
      }
      if (wake_cancel.cancelled()) break;
      bool is_missing = DbUpdatesMissing(at.error());
      if (is_missing && !missing) {
        spdlog::info("_db_updates is not available ({})", ScrubSecrets(at.error().Message()));
        report(WakeFeedState::kMissing);
        KickDiscovery(/*missing=*/true);
      }
      missing = missing || is_missing;
      if (!is_missing) failed();
      if (!SleepUnlessCancelled(clock, is_missing ? kMissingRetry : kErrorRetry, &wake_cancel)) {
        break;
      }
      continue;
    }
    auto next = ReadDbUpdates(root, {{"feed", "longpoll"},
                                     {"since", since},
                                     {"timeout", std::to_string(timeout.count())}});
    if (next.ok() && failing_since) {
      // Answered again after any failure: the server may have restarted,
      // and its _db_updates sequence with it (an old `since` would then
      // hide every event until the new sequence passes it). Start over from
      // the present: every parked job looks once.
      since = "now";
      continue;
    }
    if (next.ok()) {
      since = next->last_seq;
      for (const auto& db : next->created_or_deleted) {
        if (IsReplicatorDbName(db)) {
          KickDiscovery();
          break;
        }
      }
      if (!next->dbs.empty()) {
        Event e;
        e.kind = Event::Kind::kDbUpdated;
        e.dbs = std::move(next->dbs);
        Post(std::move(e));
      }
      continue;
    }
    if (wake_cancel.cancelled()) break;
    // A refused `since` (or a vanished feed) starts over from the present;
    // any other error asks again from the same point, so no event is missed.
    if (DbUpdatesMissing(next.error())) {
      since = "now";
      continue;
    }
    spdlog::debug("_db_updates: {}", ScrubSecrets(next.error().Message()));
    failed();
    if (!SleepUnlessCancelled(clock, kErrorRetry, &wake_cancel)) break;
  }
}

}  // namespace couchrepd

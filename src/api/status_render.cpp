#include "couchrepd/status_render.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "couchrepd/checkpoint.h"
#include "couchrepd/json.h"
#include "couchrepd/log.h"
#include "couchrepd/replication_stats.h"
#include "couchrepd/url.h"

namespace couchrepd {

namespace {

constexpr JobState kJobStates[] = {JobState::kPending,   JobState::kRunning, JobState::kCrashing,
                                   JobState::kCompleted, JobState::kFailed,  JobState::kPaused};

double ToUnixSeconds(const EngineSnapshot& s, TimePoint t) {
  return s.unix_now - std::chrono::duration<double>(s.steady_now - t).count();
}

std::string Rfc3339(double unix_seconds) {
  return FormatRfc3339(static_cast<int64_t>(std::floor(unix_seconds)));
}

// Every string shown passes through the secret scrubber.
void Str(JsonWriter& w, std::string_view text) { w.String(ScrubSecrets(text)); }
void StrOrNull(JsonWriter& w, std::string_view text) {
  if (text.empty()) {
    w.Null();
  } else {
    Str(w, text);
  }
}

// Index of job `id` in the snapshot (jobs are sorted by id), or -1.
int64_t FindJob(const EngineSnapshot& s, std::string_view id) {
  auto it =
      std::lower_bound(s.jobs.begin(), s.jobs.end(), id,
                       [](const JobView& v, std::string_view key) { return v.info.id < key; });
  if (it == s.jobs.end() || it->info.id != id) return -1;
  return it - s.jobs.begin();
}

const JobDescription* DescriptionAt(const EngineSnapshot& s, int64_t i) {
  return static_cast<size_t>(i) < s.descriptions.size() ? &s.descriptions[i] : nullptr;
}

const JobSnapshot* ProgressAt(const EngineSnapshot& s, int64_t i) {
  if (static_cast<size_t>(i) >= s.progress.size() || !s.progress[i]) return nullptr;
  return &*s.progress[i];
}

ReplicationProgress ToProgress(const JobSnapshot& p) {
  ReplicationProgress out;
  out.stats = p.stats;
  out.changes_pending = p.changes_pending;
  out.checkpointed_source_seq = p.checkpointed_seq.value_or("");
  out.source_seq = p.source_seq.value_or("");
  out.through_seq = p.through_seq.value_or("");
  out.start_time = static_cast<int64_t>(p.started_unix);
  return out;
}

// When the job's current (or last) run started; when it was added if never.
double JobStartUnix(const EngineSnapshot& s, int64_t i) {
  const JobDescription* d = DescriptionAt(s, i);
  if (d != nullptr && d->start_unix > 0) return d->start_unix;
  return ToUnixSeconds(s, s.jobs[i].added_at);
}

bool ShowsError(JobState state) {
  return state == JobState::kCrashing || state == JobState::kFailed;
}

// A job's `info`: its progress, {"error": reason} while crashing or failed,
// null before it ever ran.
void WriteJobInfo(JsonWriter& w, const EngineSnapshot& s, int64_t i) {
  const JobView& v = s.jobs[i];
  if (ShowsError(v.state)) {
    w.BeginObject().Key("error");
    Str(w, v.last_error.empty() ? std::string("unknown error") : v.last_error);
    w.EndObject();
    return;
  }
  if (const JobSnapshot* p = ProgressAt(s, i)) {
    w.Raw(RenderProgressInfo(ToProgress(*p)));
    return;
  }
  w.Null();
}

void WriteJob(JsonWriter& w, const EngineSnapshot& s, int64_t i, std::string_view node) {
  const JobView& v = s.jobs[i];
  const JobDescription* d = DescriptionAt(s, i);
  w.BeginObject();
  w.Key("database");
  StrOrNull(w, v.info.database);
  w.Key("id");
  Str(w, v.info.id);
  w.Key("pid").Null();
  w.Key("source");
  Str(w, d ? d->source : "");
  w.Key("target");
  Str(w, d ? d->target : "");
  w.Key("user");
  StrOrNull(w, d ? d->user : "");
  w.Key("doc_id");
  StrOrNull(w, v.info.doc_id);
  w.Key("info");
  WriteJobInfo(w, s, i);
  w.Key("history").BeginArray();
  for (const JobEvent& e : v.history) {
    w.BeginObject();
    w.Key("timestamp").String(Rfc3339(ToUnixSeconds(s, e.time)));
    w.Key("type").String(Name(e.type));
    if (!e.reason.empty()) {
      w.Key("reason");
      Str(w, e.reason);
    }
    w.EndObject();
  }
  w.EndArray();
  w.Key("node");
  Str(w, node);
  w.Key("start_time").String(Rfc3339(JobStartUnix(s, i)));
  w.EndObject();
}

template <typename T>
std::pair<size_t, size_t> Window(const std::vector<T>& rows, const Page& page) {
  size_t skip = static_cast<size_t>(std::max<int64_t>(page.skip, 0));
  size_t limit = static_cast<size_t>(std::max<int64_t>(page.limit, 0));
  size_t begin = std::min(skip, rows.size());
  size_t end = begin + std::min(limit, rows.size() - begin);
  return {begin, end};
}

void WriteDoc(JsonWriter& w, const EngineSnapshot& s, const DocView& d, std::string_view node) {
  // Only the document that owns a job shows it (a duplicate names it but does not run it).
  int64_t job = d.state == "job" && !d.job_id.empty() ? FindJob(s, d.job_id) : -1;
  std::string state = EffectiveDocState(s, d);
  w.BeginObject();
  w.Key("database");
  Str(w, d.doc.db);
  w.Key("doc_id");
  Str(w, d.doc.doc_id);
  w.Key("id");
  StrOrNull(w, d.job_id);
  if (job >= 0) {
    w.Key("node");
    Str(w, node);
  }
  w.Key("source");
  Str(w, d.source);
  w.Key("target");
  Str(w, d.target);
  w.Key("state").String(state);
  w.Key("info");
  if (state == "crashing" || state == "error" || state == "failed") {
    std::string reason = d.error;
    if (reason.empty() && job >= 0) reason = s.jobs[job].last_error;
    if (reason.empty()) {
      w.Null();
    } else {
      w.BeginObject().Key("error");
      Str(w, reason);
      w.EndObject();
    }
  } else if (const JobSnapshot* p = job >= 0 ? ProgressAt(s, job) : nullptr) {
    w.Raw(RenderProgressInfo(ToProgress(*p)));
  } else if (state == "duplicate" && !d.error.empty()) {
    w.BeginObject().Key("reason");  // where the replication runs (another instance)
    Str(w, d.error);
    w.EndObject();
  } else if (state == "completed" && !d.stats_json.empty()) {
    w.Raw(d.stats_json);  // the final statistics, as CouchDB keeps them
  } else {
    w.Null();
  }
  w.Key("error_count").Int(d.error_count);
  w.Key("last_updated").String(Rfc3339(ToUnixSeconds(s, d.last_updated)));
  double start = job >= 0 ? JobStartUnix(s, job) : ToUnixSeconds(s, d.last_updated);
  w.Key("start_time").String(Rfc3339(start));
  w.EndObject();
}

// ------------------------------------------------------------ Prometheus text

std::string EscapeHelp(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

using Labels = std::vector<std::pair<std::string_view, std::string>>;

// One metric family; written only when it has samples.
class Family {
 public:
  Family(std::string_view name, std::string_view type, std::string_view help)
      : name_(name), type_(type), help_(help) {}

  void Add(const Labels& labels, std::string value) {
    std::string line(name_);
    if (!labels.empty()) {
      line += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) line += ',';
        line += labels[i].first;
        line += "=\"";
        line += EscapeLabelValue(ScrubSecrets(labels[i].second));
        line += '"';
      }
      line += '}';
    }
    line += ' ';
    line += value;
    line += '\n';
    lines_ += line;
  }
  void Add(const Labels& labels, uint64_t value) { Add(labels, std::to_string(value)); }
  void Add(const Labels& labels, int64_t value) { Add(labels, std::to_string(value)); }
  void Add(const Labels& labels, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", value);
    Add(labels, std::string(buf));
  }

  void AppendTo(std::string& out) const {
    if (lines_.empty()) return;
    out += "# HELP ";
    out += name_;
    out += ' ';
    out += EscapeHelp(help_);
    out += "\n# TYPE ";
    out += name_;
    out += ' ';
    out += type_;
    out += '\n';
    out += lines_;
  }

 private:
  std::string_view name_, type_, help_;
  std::string lines_;
};

}  // namespace

const std::vector<std::string>& DocStates() {
  static const std::vector<std::string> states = {"initializing", "pending",   "running",
                                                  "crashing",     "paused",    "error",
                                                  "failed",       "completed", "duplicate"};
  return states;
}

bool IsDocState(std::string_view state) {
  const auto& all = DocStates();
  return std::find(all.begin(), all.end(), state) != all.end();
}

std::string ErrorBody(std::string_view error, std::string_view reason) {
  JsonWriter w;
  w.BeginObject();
  w.Key("error");
  Str(w, error);
  w.Key("reason");
  Str(w, reason);
  w.EndObject();
  return w.Take();
}

std::string RenderSchedulerJobs(const EngineSnapshot& s, const Page& page, std::string_view node) {
  auto [begin, end] = Window(s.jobs, page);
  JsonWriter w;
  w.BeginObject();
  w.Key("total_rows").Uint(s.jobs.size());
  w.Key("offset").Int(std::max<int64_t>(page.skip, 0));
  w.Key("jobs").BeginArray();
  for (size_t i = begin; i < end; ++i) WriteJob(w, s, static_cast<int64_t>(i), node);
  w.EndArray();
  w.EndObject();
  return w.Take();
}

std::optional<std::string> RenderSchedulerJob(const EngineSnapshot& s, std::string_view job_id,
                                              std::string_view node) {
  int64_t i = FindJob(s, job_id);
  if (i < 0) return std::nullopt;
  JsonWriter w;
  WriteJob(w, s, i, node);
  return w.Take();
}

std::string EffectiveDocState(const EngineSnapshot& s, const DocView& doc) {
  if (doc.state != "job") return doc.state;
  int64_t i = doc.job_id.empty() ? -1 : FindJob(s, doc.job_id);
  if (i < 0) return "initializing";  // the job is being added
  return std::string(Name(s.jobs[i].state));
}

std::string RenderSchedulerDocs(const EngineSnapshot& s, const DocsQuery& query,
                                std::string_view node) {
  std::vector<const DocView*> rows;
  for (const DocView& d : s.docs) {
    if (query.database && d.doc.db != *query.database) continue;
    if (!query.states.empty()) {
      std::string state = EffectiveDocState(s, d);
      if (std::find(query.states.begin(), query.states.end(), state) == query.states.end())
        continue;
    }
    rows.push_back(&d);
  }
  auto [begin, end] = Window(rows, query.page);
  JsonWriter w;
  w.BeginObject();
  w.Key("total_rows").Uint(rows.size());
  w.Key("offset").Int(std::max<int64_t>(query.page.skip, 0));
  w.Key("docs").BeginArray();
  for (size_t i = begin; i < end; ++i) WriteDoc(w, s, *rows[i], node);
  w.EndArray();
  w.EndObject();
  return w.Take();
}

std::optional<std::string> RenderSchedulerDoc(const EngineSnapshot& s, std::string_view db,
                                              std::string_view doc_id, std::string_view node) {
  for (const DocView& d : s.docs) {
    if (d.doc.db == db && d.doc.doc_id == doc_id) {
      JsonWriter w;
      WriteDoc(w, s, d, node);
      return w.Take();
    }
  }
  return std::nullopt;
}

bool KnowsDatabase(const EngineSnapshot& s, std::string_view db) {
  for (const FeedHealth& f : s.feeds) {
    if (f.db == db) return true;
  }
  for (const DocView& d : s.docs) {
    if (d.doc.db == db) return true;
  }
  return false;
}

std::string RenderActiveTasks(const EngineSnapshot& s, std::string_view node) {
  JsonWriter w;
  w.BeginArray();
  for (size_t i = 0; i < s.jobs.size(); ++i) {
    const JobView& v = s.jobs[i];
    if (v.state != JobState::kRunning) continue;
    const JobDescription* d = DescriptionAt(s, static_cast<int64_t>(i));
    const JobSnapshot* p = ProgressAt(s, static_cast<int64_t>(i));
    JobSnapshot none;
    const JobSnapshot& progress = p ? *p : none;
    w.BeginObject();
    w.Key("node");
    Str(w, node);
    w.Key("pid").Null();
    w.Key("type").String("replication");
    w.Key("replication_id");
    Str(w, v.info.id);
    w.Key("doc_id");
    StrOrNull(w, v.info.doc_id);
    w.Key("database");
    StrOrNull(w, v.info.database);
    w.Key("user");
    StrOrNull(w, d ? d->user : "");
    w.Key("source");
    Str(w, d ? d->source : "");
    w.Key("target");
    Str(w, d ? d->target : "");
    w.Key("continuous").Bool(v.info.continuous);
    WriteProgressMembers(w, ToProgress(progress));
    double started = progress.started_unix > 0 ? progress.started_unix
                                               : JobStartUnix(s, static_cast<int64_t>(i));
    w.Key("started_on").Int(static_cast<int64_t>(started));
    w.Key("updated_on").Int(static_cast<int64_t>(s.taken_unix));
    if (!v.info.continuous) {
      // Changes handled in this run against those still to come.
      int64_t done = progress.run_stats.revisions_checked;
      int64_t left = std::max<int64_t>(progress.changes_pending, 0);
      int64_t percent = 0;
      if (progress.source_seq) percent = done + left == 0 ? 100 : done * 100 / (done + left);
      w.Key("progress").Int(std::clamp<int64_t>(percent, 0, 100));
    }
    w.EndObject();
  }
  w.EndArray();
  return w.Take();
}

std::string RenderCluster(const EngineSnapshot& s) {
  JsonWriter w;
  w.BeginObject();
  w.Key("enabled").Bool(s.cluster.has_value());
  if (s.cluster) {
    const cluster::ClusterView& c = *s.cluster;
    w.Key("instance_id");
    Str(w, c.self);
    w.Key("database");
    Str(w, c.database);
    w.Key("documents").Int(c.documents);
    w.Key("leases_held").Int(c.leases_held);
    w.Key("lease_conflicts").Uint(c.lease_conflicts);
    w.Key("leases_lost").Uint(c.leases_lost);
    w.Key("job_leases_held").Int(c.job_leases_held);
    w.Key("duplicates_elsewhere").Int(c.duplicates_elsewhere);
    w.Key("error");
    StrOrNull(w, ScrubSecrets(c.error));
    w.Key("members").BeginArray();
    for (const auto& m : c.members) {
      w.BeginObject();
      w.Key("instance_id");
      Str(w, m.id);
      w.Key("self").Bool(m.self);
      w.Key("live").Bool(m.live);
      w.Key("last_heartbeat").String(Rfc3339(m.last_heartbeat_unix));
      w.Key("heartbeat_age_seconds").Double(std::max(0.0, s.unix_now - m.last_heartbeat_unix));
      w.Key("owns").Int(m.owns);
      w.Key("leases").Int(m.leases);
      w.Key("jobs").Int(m.jobs);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  return w.Take();
}

HealthReport RenderHealth(const EngineSnapshot& s) {
  std::vector<std::string> reasons;
  if (s.shutting_down) reasons.push_back("couchrepd is shutting down");
  if (s.feeds.empty()) reasons.push_back("no replicator database is followed yet");
  for (const FeedHealth& f : s.feeds) {
    if (!f.connected) {
      reasons.push_back(f.db + ": " +
                        (f.error.empty() ? std::string("not connected yet") : f.error));
    }
    if (!f.validation.empty()) {
      reasons.push_back(f.db + ": the validation function is not in place: " + f.validation);
    }
  }
  HealthReport report;
  report.ok = reasons.empty();
  JsonWriter w;
  w.BeginObject();
  w.Key("ok").Bool(report.ok);
  if (!report.ok) {
    w.Key("reasons").BeginArray();
    for (const auto& r : reasons) Str(w, r);
    w.EndArray();
  }
  w.Key("feeds").BeginArray();
  for (const FeedHealth& f : s.feeds) {
    w.BeginObject();
    w.Key("database");
    Str(w, f.db);
    w.Key("connected").Bool(f.connected);
    if (!f.error.empty()) {
      w.Key("error");
      Str(w, f.error);
    }
    if (!f.validation.empty()) {
      w.Key("validation");
      Str(w, f.validation);
    }
    w.Key("last_seq");
    if (f.last_seq.empty()) {
      w.Null();
    } else {
      w.Raw(f.last_seq);
    }
    w.Key("reconnects").Uint(f.reconnects);
    w.Key("docs_processed").Uint(f.docs_processed);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  report.body = w.Take();
  return report;
}

bool FeedsConnected(const EngineSnapshot& s) {
  if (s.feeds.empty()) return false;
  for (const FeedHealth& f : s.feeds) {
    if (!f.connected) return false;
  }
  return true;
}

std::string ServiceStatusLine(const EngineSnapshot& s) {
  int running = 0, pending = 0, crashing = 0, paused = 0;
  for (const JobView& j : s.jobs) {
    running += j.state == JobState::kRunning;
    pending += j.state == JobState::kPending;
    crashing += j.state == JobState::kCrashing;
    paused += j.state == JobState::kPaused;
  }
  size_t connected = 0;
  for (const FeedHealth& f : s.feeds) connected += f.connected ? 1 : 0;
  return std::to_string(running) + " running, " + std::to_string(pending) + " pending, " +
         std::to_string(crashing) + " crashing, " + std::to_string(paused) + " paused; " +
         std::to_string(connected) + "/" + std::to_string(s.feeds.size()) +
         " replicator feeds connected";
}

HealthReport RenderLiveness(const EngineSnapshot& s, TimePoint now, Duration max_age) {
  const double age =
      s.steady_now == TimePoint{} ? -1 : std::chrono::duration<double>(now - s.steady_now).count();
  HealthReport report;
  report.ok = age >= 0 && now - s.steady_now <= max_age;
  JsonWriter w;
  w.BeginObject();
  w.Key("ok").Bool(report.ok);
  if (!report.ok) {
    w.Key("reason");
    Str(w, age < 0 ? std::string("the engine has not published its state yet")
                   : "the engine loop has not answered for " + std::to_string(static_cast<int64_t>(age)) +
                         " s");
  }
  w.Key("snapshot_age_seconds").Double(age < 0 ? 0 : std::round(age * 1000) / 1000);
  w.EndObject();
  report.body = w.Take();
  return report;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string RenderMetrics(const EngineSnapshot& s, const HttpMetricsSnapshot& http,
                          std::string_view version) {
  Family build("couchrepd_build_info", "gauge", "couchrepd build information (always 1).");
  build.Add({{"version", std::string(version)}}, uint64_t{1});

  Family jobs("couchrepd_jobs", "gauge", "Replication jobs by scheduler state.");
  for (JobState state : kJobStates) {
    uint64_t n = std::count_if(s.jobs.begin(), s.jobs.end(),
                               [&](const JobView& v) { return v.state == state; });
    jobs.Add({{"state", std::string(Name(state))}}, n);
  }
  Family docs("couchrepd_replication_docs", "gauge", "Replication documents by state.");
  for (const std::string& state : DocStates()) {
    uint64_t n = std::count_if(s.docs.begin(), s.docs.end(),
                               [&](const DocView& d) { return EffectiveDocState(s, d) == state; });
    docs.Add({{"state", state}}, n);
  }

  Family docs_read("couchrepd_job_docs_read_total", "counter",
                   "Revisions a job read from its source (kept across restarts).");
  Family docs_written("couchrepd_job_docs_written_total", "counter",
                      "Revisions a job wrote to its target (kept across restarts).");
  Family write_failures("couchrepd_job_doc_write_failures_total", "counter",
                        "Revisions the target refused to store (kept across restarts).");
  Family revs_checked("couchrepd_job_revisions_checked_total", "counter",
                      "Revisions a job asked its target about (kept across restarts).");
  Family missing_found("couchrepd_job_missing_revisions_found_total", "counter",
                       "Revisions the target lacked (kept across restarts).");
  Family pending("couchrepd_job_changes_pending", "gauge",
                 "Source changes a job has not processed yet.");
  Family checkpoint_age("couchrepd_job_checkpoint_age_seconds", "gauge",
                        "Seconds since a running job's last checkpoint (since its start if none).");
  // Per-job series exist while the job does: they are rendered from the
  // current jobs only, so a job's series disappear with its document.
  Family job_info("couchrepd_job_info", "gauge",
                  "1 for each job: its replicator database, document and scheduler state.");
  for (size_t i = 0; i < s.jobs.size(); ++i) {
    const JobView& v = s.jobs[i];
    job_info.Add({{"replication_id", v.info.id},
                  {"database", v.info.database},
                  {"doc_id", v.info.doc_id},
                  {"state", std::string(Name(v.state))}},
                 uint64_t{1});
    const JobSnapshot* p = ProgressAt(s, static_cast<int64_t>(i));
    if (p == nullptr) continue;
    Labels id = {{"replication_id", v.info.id}};
    docs_read.Add(id, p->stats.docs_read);
    docs_written.Add(id, p->stats.docs_written);
    write_failures.Add(id, p->stats.doc_write_failures);
    revs_checked.Add(id, p->stats.revisions_checked);
    missing_found.Add(id, p->stats.missing_revisions_found);
    pending.Add(id, p->changes_pending);
    if (s.jobs[i].state == JobState::kRunning) {
      double since = p->last_checkpoint_unix > 0 ? p->last_checkpoint_unix : p->started_unix;
      if (since > 0) checkpoint_age.Add(id, std::max(0.0, s.unix_now - since));
    }
  }
  Family checkpoints("couchrepd_checkpoints_total", "counter",
                     "Checkpoints saved (ok) or not (failed) by every job run since start.");
  checkpoints.Add({{"result", "ok"}}, s.counters.checkpoints_ok);
  checkpoints.Add({{"result", "failed"}}, s.counters.checkpoints_failed);
  Family started("couchrepd_job_starts_total", "counter", "Job runs started.");
  started.Add({}, s.counters.jobs_started);
  Family crashed("couchrepd_job_crashes_total", "counter", "Job runs that crashed.");
  crashed.Add({}, s.counters.jobs_crashed);

  Family requests("couchrepd_http_requests_total", "counter",
                  "HTTP requests to CouchDB endpoints by host and outcome (status class, or "
                  "connection_error when no response came).");
  Family failures("couchrepd_http_request_failures_total", "counter",
                  "HTTP requests that failed: 5xx answers and connection errors.");
  Family retries("couchrepd_http_retries_total", "counter",
                 "HTTP requests sent again after a failure.");
  Family limited("couchrepd_http_rate_limited_total", "counter",
                 "429 Too Many Requests answers that slowed the request pacing down.");
  for (const auto& [host, c] : http.hosts) {
    requests.Add({{"host", host}, {"class", "2xx"}}, c.status_2xx);
    requests.Add({{"host", host}, {"class", "3xx"}}, c.status_3xx);
    requests.Add({{"host", host}, {"class", "4xx"}}, c.status_4xx);
    requests.Add({{"host", host}, {"class", "5xx"}}, c.status_5xx);
    requests.Add({{"host", host}, {"class", "connection_error"}}, c.connection_errors);
    failures.Add({{"host", host}}, c.status_5xx + c.connection_errors);
    retries.Add({{"host", host}}, c.retries);
    limited.Add({{"host", host}}, c.rate_limited);
  }

  Family connected("couchrepd_replicator_feed_connected", "gauge",
                   "1 while the replicator database's _changes feed is connected.");
  Family reconnects("couchrepd_replicator_feed_reconnects_total", "counter",
                    "Times the replicator database's _changes feed was lost and reopened.");
  Family processed("couchrepd_replicator_docs_processed_total", "counter",
                   "Replicator database changes (document updates) processed.");
  for (const FeedHealth& f : s.feeds) {
    connected.Add({{"database", f.db}}, uint64_t{f.connected ? 1u : 0u});
    reconnects.Add({{"database", f.db}}, f.reconnects);
    processed.Add({{"database", f.db}}, f.docs_processed);
  }

  Family members("couchrepd_cluster_members", "gauge",
                 "Members of the cluster this instance sees, live or dead (cluster.enabled).");
  Family owned("couchrepd_cluster_documents_owned", "gauge",
               "Replication documents each live member owns by rendezvous hashing.");
  Family held("couchrepd_cluster_leases_held", "gauge", "Leases this instance holds.");
  Family conflicts("couchrepd_cluster_lease_conflicts_total", "counter",
                   "Lease takes and renewals another member won (409).");
  Family lost("couchrepd_cluster_leases_lost_total", "counter",
              "Leases given up because a renewal failed or came too late (their jobs stopped).");
  Family job_leases("couchrepd_cluster_job_leases_held", "gauge",
                    "Replications this instance holds the job lease of (runs or is about to run).");
  Family elsewhere("couchrepd_cluster_duplicates_elsewhere", "gauge",
                   "Replications another instance runs for another document while a duplicate "
                   "document here waits for it.");
  if (s.cluster) {
    uint64_t live = 0;
    for (const auto& m : s.cluster->members) {
      live += m.live ? 1 : 0;
      if (m.live) owned.Add({{"instance_id", m.id}}, static_cast<uint64_t>(m.owns));
    }
    members.Add({{"state", "live"}}, live);
    members.Add({{"state", "dead"}}, s.cluster->members.size() - live);
    held.Add({{"instance_id", s.cluster->self}}, static_cast<uint64_t>(s.cluster->leases_held));
    conflicts.Add({}, s.cluster->lease_conflicts);
    lost.Add({}, s.cluster->leases_lost);
    job_leases.Add({{"instance_id", s.cluster->self}},
                   static_cast<uint64_t>(s.cluster->job_leases_held));
    elsewhere.Add({}, static_cast<uint64_t>(s.cluster->duplicates_elsewhere));
  }

  std::string out;
  for (const Family* f :
       {&build,       &jobs,           &docs,         &job_info,      &docs_read,
        &docs_written, &write_failures, &revs_checked, &missing_found, &pending,
        &checkpoint_age, &checkpoints,  &started,      &crashed,       &requests,
        &failures,    &retries,        &limited,      &connected,     &reconnects,
        &processed}) {
    f->AppendTo(out);
  }
  if (s.cluster) {
    for (const Family* f : {&members, &owned, &held, &conflicts, &lost, &job_leases, &elsewhere}) {
      f->AppendTo(out);
    }
  }
  return out;
}

// ---------------------------------------------------------------- routing

std::vector<std::string> KnownDatabases(const EngineSnapshot& s) {
  std::vector<std::string> dbs;
  for (const FeedHealth& f : s.feeds) dbs.push_back(f.db);
  for (const DocView& d : s.docs) {
    if (dbs.empty() || dbs.back() != d.doc.db) dbs.push_back(d.doc.db);
  }
  std::sort(dbs.begin(), dbs.end());
  dbs.erase(std::unique(dbs.begin(), dbs.end()), dbs.end());
  return dbs;
}

StatusRoute ParseStatusPath(std::string_view raw_path, const std::vector<std::string>& known_dbs) {
  using Kind = StatusRoute::Kind;
  StatusRoute route;
  // Decoded segments; empty ones (a doubled or trailing '/') are dropped.
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos <= raw_path.size()) {
    size_t slash = raw_path.find('/', pos);
    if (slash == std::string_view::npos) slash = raw_path.size();
    std::string_view raw = raw_path.substr(pos, slash - pos);
    if (!raw.empty()) {
      auto decoded = PercentDecode(raw);
      if (!decoded) {
        route.kind = Kind::kBadPath;
        return route;
      }
      parts.push_back(std::move(*decoded));
    }
    pos = slash + 1;
  }
  auto join = [&](size_t from, size_t to) {
    std::string out;
    for (size_t i = from; i < to; ++i) {
      if (i > from) out += '/';
      out += parts[i];
    }
    return out;
  };
  const size_t n = parts.size();
  if (n == 0) {
    route.kind = Kind::kDashboard;
  } else if (n == 1 && parts[0] == "_active_tasks") {
    route.kind = Kind::kActiveTasks;
  } else if (n == 1 && parts[0] == "_cluster") {
    route.kind = Kind::kCluster;
  } else if (n == 1 && parts[0] == "metrics") {
    route.kind = Kind::kMetrics;
  } else if (n == 1 && parts[0] == "health") {
    route.kind = Kind::kHealth;
  } else if (n == 2 && parts[0] == "health" && parts[1] == "ready") {
    route.kind = Kind::kHealth;
  } else if (n == 2 && parts[0] == "health" && parts[1] == "live") {
    route.kind = Kind::kHealthLive;
  } else if (parts[0] == "_scheduler" && n >= 2 && parts[1] == "jobs") {
    if (n == 2) {
      route.kind = Kind::kJobs;
    } else if (n == 3) {
      route.kind = Kind::kJob;
      route.job_id = parts[2];
    } else if (n == 4 && (parts[3] == "reset" || parts[3] == "pause" || parts[3] == "resume")) {
      route.kind = Kind::kJobAction;
      route.job_id = parts[2];
      route.action = parts[3];
    }
  } else if (parts[0] == "_scheduler" && n >= 2 && parts[1] == "docs") {
    if (n == 2) {
      route.kind = Kind::kDocs;
      return route;
    }
    size_t db_end = 0;
    for (size_t k = n; k > 2 && db_end == 0; --k) {
      std::string candidate = join(2, k);
      if (std::find(known_dbs.begin(), known_dbs.end(), candidate) != known_dbs.end()) db_end = k;
    }
    for (size_t k = 3; k <= n && db_end == 0; ++k) {
      std::string candidate = join(2, k);
      std::string_view suffix = "/_replicator";
      if (candidate == "_replicator" ||
          (candidate.size() > suffix.size() &&
           std::string_view(candidate).substr(candidate.size() - suffix.size()) == suffix)) {
        db_end = k;
      }
    }
    if (db_end == 0) db_end = 3;
    route.db = join(2, db_end);
    if (db_end == n) {
      route.kind = Kind::kDatabaseDocs;
    } else {
      route.kind = Kind::kDoc;
      route.doc_id = join(db_end, n);
    }
  }
  return route;
}

}  // namespace couchrepd

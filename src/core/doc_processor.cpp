#include "couchrepd/doc_processor.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <string_view>
#include <utility>

#include "couchrepd/encoding.h"
#include "couchrepd/json_fields.h"
#include "couchrepd/local_access.h"
#include "couchrepd/limits.h"
#include "couchrepd/url.h"

namespace couchrepd {

enum class DocProcessor::Phase {
  kInitializing,  // the id is being computed (answer expected for `generation`)
  kRetryWait,     // temporary failure; kRetryLater pending for `generation`
  kInvalid,       // permanent failure before a job: waits for a different body
  kDuplicate,     // another document owns `job_id`
  kClaiming,      // owns `job_id` here; waits for its job lease across instances (OnJobClaim)
  kOwner,         // runs `job_id`
  kJobFailed,     // the job failed permanently: waits for a different replication
  kCompleted,     // done; never run again until the state is removed
  kFailedDoc,     // the body says `failed`
};

namespace {

using Phase = DocProcessor::Phase;

constexpr std::string_view kDesignPrefix = "_design/";
constexpr std::string_view kReplicationFieldPrefix = "_replication_";

// What a `_changes` row's document says about itself.
struct DocBody {
  bool readable = false;  // a JSON object whose fields could be read
  std::optional<std::string> state;
  std::optional<std::string> replication_id;
  std::optional<std::string> reason;
  // Digest of the body without `_rev` and `_replication_*`: our own writes
  // leave it unchanged, a user's edit changes it.
  std::string hash;
};

std::optional<std::string> StringValue(const std::optional<std::string>& raw) {
  if (!raw || raw->empty() || raw->front() != '"') return std::nullopt;
  simdjson::dom::parser parser;
  std::string_view s;
  if (parser.parse(*raw).get_string().get(s)) return std::nullopt;
  return std::string(s);
}

DocBody ReadBody(std::string_view json) {
  DocBody body;
  auto fields = SplitObject(json);
  if (!fields.ok()) {
    body.hash = HexEncode(Md5(json));
    return body;
  }
  body.readable = true;
  body.state = StringValue(FindField(*fields, "_replication_state"));
  body.replication_id = StringValue(FindField(*fields, "_replication_id"));
  body.reason = StringValue(FindField(*fields, "_replication_state_reason"));
  std::vector<JsonField> kept;
  kept.reserve(fields->size());
  for (auto& f : *fields) {
    if (f.key == "_rev" || std::string_view(f.key).starts_with(kReplicationFieldPrefix)) continue;
    kept.push_back(std::move(f));
  }
  body.hash = HexEncode(Md5(JoinObject(kept)));
  return body;
}

// Phases in which a row whose replication has the same fingerprint changes
// nothing: it is the echo of our own write or an irrelevant edit.
bool KeepsFingerprint(Phase phase) {
  switch (phase) {
    case Phase::kInitializing:
    case Phase::kRetryWait:
    case Phase::kDuplicate:
    case Phase::kClaiming:
    case Phase::kOwner:
    case Phase::kJobFailed:
    case Phase::kCompleted:
      return true;
    case Phase::kInvalid:
    case Phase::kFailedDoc:
      return false;
  }
  return false;
}

// `initial` doubling per consecutive failure up to `max`, times a jitter
// factor in [0.5, 1.5) so that documents failing together do not retry together.
Duration DocBackoff(const DocProcessorSettings& s, int failures, double random) {
  Duration base = s.doc_backoff_initial;
  for (int i = 1; i < failures && base < s.doc_backoff_max; ++i) base *= 2;
  base = std::min(base, s.doc_backoff_max);
  if (!(random >= 0.0 && random < 1.0)) random = 0.5;  // also NaN
  return Duration(std::llround(static_cast<double>(base.count()) * (0.5 + random)));
}

// A reason that is written back or shown: cut to 1 KiB in all, the cut mark
// included (SPEC §10), before and after redaction (masking can lengthen it),
// and without credentials. Job reasons may carry a server's text.
std::string ShortReason(std::string_view reason) {
  constexpr size_t kRoomForMark = 48;  // "... (cut, N bytes)"
  constexpr size_t kKept = kMaxServerTextBytes - kRoomForMark;
  std::string out = RedactSecrets(reason.size() > kMaxServerTextBytes ? CapText(reason, kKept)
                                                                      : std::string(reason));
  if (out.size() > kMaxServerTextBytes) out = CapText(out, kKept);
  return out;
}

StateWrite MakeWrite(std::optional<std::string> replication_id, std::optional<std::string> state,
                     std::optional<std::string> reason = std::nullopt, bool clear_reason = false) {
  StateWrite w;
  w.replication_id = std::move(replication_id);
  w.state = std::move(state);
  w.reason = std::move(reason);
  w.clear_reason = clear_reason;
  return w;
}

}  // namespace

struct DocProcessor::DocRecord {
  DocKey key;
  Phase phase = Phase::kInitializing;
  uint64_t generation = 0;
  std::shared_ptr<const ReplicationSpec> spec;
  std::string fingerprint;  // empty when there is no valid replication to compare with
  std::string body_hash;    // of the last body processed
  std::string job_id;       // the replication id once known
  std::string owned_id;     // the key in owners_ that points here, if any
  uint64_t duplicate_order = 0;
  std::string error;
  std::string stats_json;  // final statistics once completed
  int doc_errors = 0;  // consecutive temporary failures before a job exists
  int crashes = 0;     // consecutive job crashes
  // An `error` state was written for the current failure streak (classic).
  bool error_written = false;
  // The document's `_replication_*` fields, as last seen or written by us.
  std::optional<std::string> doc_state;
  std::optional<std::string> doc_replication_id;
  std::optional<std::string> doc_reason;
  TimePoint last_updated{};
  std::string source;
  std::string target;
  bool continuous = false;

  void SetSpec(std::shared_ptr<const ReplicationSpec> s) {
    spec = std::move(s);
    source = spec->source.Display();
    target = spec->target.Display();
    continuous = spec->continuous;
  }
};

DocProcessorSettings DocProcessorSettings::From(const Config& config, const Endpoint& server) {
  DocProcessorSettings s;
  s.write_back = config.replicator.write_back;
  s.error_after = config.scheduler.error_after;
  s.doc_backoff_initial = config.scheduler.doc_backoff.initial;
  s.doc_backoff_max = config.scheduler.doc_backoff.max;
  s.defaults = ReplicationDefaults::From(config);
  s.server = server;
  s.claim_jobs = config.cluster.enabled;
  if (config.server.proxy_auth.enabled) s.proxy_auth = config.server.proxy_auth;
  return s;
}

DocProcessor::DocProcessor(DocProcessorSettings settings) : settings_(std::move(settings)) {}

void DocProcessor::UpdateSettings(DocProcessorSettings settings) {
  settings_ = std::move(settings);
}

void DocProcessor::SetValidationInPlace(const std::string& db, bool in_place) {
  if (in_place) {
    validation_missing_.erase(db);
  } else {
    validation_missing_.insert(db);
  }
}

// ---------------------------------------------------------------- helpers

bool DocProcessor::Classic() const {
  return settings_.write_back == Config::Replicator::WriteBack::kClassic;
}

std::string DocProcessor::FailureState() const { return Classic() ? "error" : "failed"; }

const Config::ProxyAuth* DocProcessor::ProxyAuthOrNull() const {
  return settings_.proxy_auth ? &*settings_.proxy_auth : nullptr;
}

DocProcessor::DocRecord* DocProcessor::Find(const DocKey& key) const {
  auto it = docs_.find(key);
  return it == docs_.end() ? nullptr : it->second.get();
}

DocProcessor::DocRecord* DocProcessor::ActiveOwner(const std::string& job_id) const {
  auto owner = owners_.find(job_id);
  if (owner == owners_.end()) return nullptr;
  DocRecord* rec = Find(owner->second);
  return rec != nullptr && rec->phase == Phase::kOwner ? rec : nullptr;
}

DocAction DocProcessor::Action(DocAction::Type type, const DocRecord& rec) const {
  DocAction a;
  a.type = type;
  a.doc = rec.key;
  a.generation = rec.generation;
  return a;
}

void DocProcessor::Write(DocRecord& rec, StateWrite write, Actions& out) {
  if (write.replication_id) rec.doc_replication_id = write.replication_id;
  if (write.state) rec.doc_state = write.state;
  if (write.reason) rec.doc_reason = write.reason;
  if (write.clear_reason) rec.doc_reason.reset();
  DocAction a = Action(DocAction::Type::kWriteState, rec);
  a.write = std::move(write);
  out.push_back(std::move(a));
}

void DocProcessor::Release(DocRecord& rec, std::vector<std::string>& released) {
  if (rec.owned_id.empty()) return;
  auto owner = owners_.find(rec.owned_id);
  if (owner != owners_.end() && owner->second == rec.key) {
    owners_.erase(owner);
    released.push_back(rec.owned_id);
  }
  rec.owned_id.clear();
}

void DocProcessor::StopJob(DocRecord& rec, Actions& out, std::vector<std::string>& released) {
  if (rec.phase == Phase::kOwner || rec.phase == Phase::kClaiming) {
    DocAction a = Action(DocAction::Type::kRemoveJob, rec);
    a.job_id = rec.job_id;
    out.push_back(std::move(a));
  }
  Release(rec, released);
}

void DocProcessor::SetPhase(DocRecord& rec, Phase phase) {
  if (phase == Phase::kDuplicate) {
    duplicates_.insert(rec.key);
  } else if (rec.phase == Phase::kDuplicate) {
    duplicates_.erase(rec.key);
  }
  rec.phase = phase;
}

void DocProcessor::HandOver(const std::vector<std::string>& released, TimePoint now, Actions& out) {
  for (const std::string& id : released) {
    if (owners_.count(id) || elsewhere_.count(id)) continue;
    // Only the duplicates are looked at, not every document: a job ending
    // costs the same with 20 documents as with 20,000.
    DocRecord* next = nullptr;
    for (auto it = duplicates_.begin(); it != duplicates_.end();) {
      DocRecord* rec = Find(*it);
      if (rec == nullptr || rec->phase != Phase::kDuplicate) {
        it = duplicates_.erase(it);  // removed while a duplicate
        continue;
      }
      if (rec->job_id == id && (next == nullptr || rec->duplicate_order < next->duplicate_order)) {
        next = rec;
      }
      ++it;
    }
    if (next == nullptr) continue;
    next->error.clear();
    next->error_written = false;
    StartJob(*next, id, now, out);
  }
}

void DocProcessor::StartJob(DocRecord& rec, const std::string& job_id, TimePoint now, Actions& out) {
  owners_[job_id] = rec.key;
  rec.owned_id = job_id;
  rec.crashes = 0;
  rec.last_updated = now;
  if (!settings_.claim_jobs) {
    AddJob(rec, out);
    return;
  }
  SetPhase(rec, Phase::kClaiming);
  DocAction a = Action(DocAction::Type::kClaimJob, rec);
  a.job_id = job_id;
  out.push_back(std::move(a));
}

void DocProcessor::AddJob(DocRecord& rec, Actions& out) {
  SetPhase(rec, Phase::kOwner);
  DocAction a = Action(DocAction::Type::kAddJob, rec);
  a.job_id = rec.owned_id;
  a.spec = rec.spec;
  a.continuous = rec.continuous;
  out.push_back(std::move(a));
}

void DocProcessor::MarkInvalid(DocRecord& rec, const std::string& reason, bool skip_write,
                               TimePoint now, Actions& out) {
  SetPhase(rec, Phase::kInvalid);
  rec.fingerprint.clear();
  rec.job_id.clear();
  rec.error = reason;
  rec.crashes = 0;
  rec.last_updated = now;
  std::string state = FailureState();
  if (skip_write || (rec.doc_state == state && rec.doc_reason == reason)) return;
  Write(rec, MakeWrite(std::nullopt, state, reason), out);
}

// ---------------------------------------------------------------- documents

std::vector<DocAction> DocProcessor::OnChange(const std::string& db, const std::string& doc_id,
                                              bool deleted, const std::string& doc_json,
                                              TimePoint now,
                                              const std::function<double()>& /*random*/) {
  if (std::string_view(doc_id).starts_with(kDesignPrefix)) return {};
  DocKey key{db, doc_id};
  Actions out;
  std::vector<std::string> released;
  DocRecord* rec = Find(key);

  if (deleted) {
    if (rec == nullptr) return {};
    StopJob(*rec, out, released);
    docs_.erase(key);
    HandOver(released, now, out);
    return out;
  }

  DocBody body = ReadBody(doc_json);
  const bool known = rec != nullptr;
  if (!known) {
    auto created = std::make_shared<DocRecord>();
    created->key = key;
    rec = created.get();
    docs_.emplace(key, std::move(created));
  }
  const Phase previous = rec->phase;
  const std::string previous_error = rec->error;
  rec->doc_state = body.state;
  rec->doc_replication_id = body.replication_id;
  rec->doc_reason = body.reason;

  // Finished documents: never run again until the user removes the state.
  if (body.state == "completed" || body.state == "failed") {
    StopJob(*rec, out, released);
    bool completed = *body.state == "completed";
    SetPhase(*rec, completed ? Phase::kCompleted : Phase::kFailedDoc);
    rec->fingerprint.clear();
    rec->body_hash = body.hash;
    rec->crashes = 0;
    rec->doc_errors = 0;
    rec->error = completed ? "" : ShortReason(body.reason.value_or(""));
    if (body.replication_id) rec->job_id = *body.replication_id;
    if (!rec->spec) {  // only for the status view
      auto parsed = ParseReplicationDoc(doc_json, settings_.defaults);
      if (parsed.ok()) rec->SetSpec(std::make_shared<const ReplicationSpec>(std::move(*parsed)));
    }
    if (!known || previous != rec->phase) rec->last_updated = now;
    HandOver(released, now, out);
    return out;
  }

  if (known && previous == Phase::kInvalid && rec->body_hash == body.hash) return {};

  auto parsed = ParseReplicationDoc(doc_json, settings_.defaults);
  if (!parsed.ok()) {
    const Error& e = parsed.error();
    std::string reason = ShortReason(e.reason.empty() ? e.Message() : e.reason);
    // An unreadable body cannot tell what was written; do not write again
    // what we wrote for it last time.
    bool skip = !body.readable && known && previous == Phase::kInvalid && previous_error == reason;
    StopJob(*rec, out, released);
    rec->body_hash = body.hash;
    rec->doc_errors = 0;
    MarkInvalid(*rec, reason, skip, now, out);
    HandOver(released, now, out);
    return out;
  }

  auto spec = std::make_shared<const ReplicationSpec>(
      ResolveLocalAccess(std::move(*parsed), settings_.server, ProxyAuthOrNull(),
                         validation_missing_.count(db) == 0));
  std::string fingerprint = Fingerprint(*spec);
  rec->body_hash = body.hash;
  if (known && KeepsFingerprint(previous) && rec->fingerprint == fingerprint) return {};

  // A new or changed replication. A job is removed but its id stays reserved
  // for this document until the new id is known: when only credentials or
  // options changed the id is the same and the job comes back with its
  // checkpoint, instead of passing to a duplicate meanwhile. A claim of a job
  // lease (several instances) is given back the same way.
  if (rec->phase == Phase::kOwner || rec->phase == Phase::kClaiming) {
    DocAction a = Action(DocAction::Type::kRemoveJob, *rec);
    a.job_id = rec->job_id;
    out.push_back(std::move(a));
  }
  SetPhase(*rec, Phase::kInitializing);
  rec->generation = ++last_generation_;
  rec->SetSpec(std::move(spec));
  rec->fingerprint = std::move(fingerprint);
  rec->job_id.clear();
  rec->error.clear();
  rec->doc_errors = 0;
  rec->crashes = 0;
  rec->error_written = false;
  rec->last_updated = now;
  DocAction a = Action(DocAction::Type::kComputeId, *rec);
  a.spec = rec->spec;
  out.push_back(std::move(a));
  return out;
}

std::vector<DocAction> DocProcessor::OnIdComputed(const DocKey& doc, uint64_t generation,
                                                  const Result<ReplicationId>& id, TimePoint now,
                                                  const std::function<double()>& random) {
  DocRecord* rec = Find(doc);
  if (rec == nullptr || rec->phase != Phase::kInitializing || rec->generation != generation) {
    return {};
  }
  Actions out;
  std::vector<std::string> released;
  rec->last_updated = now;

  if (!id.ok()) {
    Release(*rec, released);
    std::string reason = ShortReason(id.error().Message());
    if (!id.error().temporary()) {
      rec->doc_errors = 0;
      MarkInvalid(*rec, reason, false, now, out);
      HandOver(released, now, out);
      return out;
    }
    ++rec->doc_errors;
    SetPhase(*rec, Phase::kRetryWait);
    rec->error = reason;
    if (Classic() && rec->doc_errors >= settings_.error_after && !rec->error_written) {
      rec->error_written = true;
      Write(*rec, MakeWrite(std::nullopt, "error", reason), out);
    }
    DocAction retry = Action(DocAction::Type::kRetryLater, *rec);
    retry.at = now + DocBackoff(settings_, rec->doc_errors, random ? random() : 0.5);
    out.push_back(std::move(retry));
    HandOver(released, now, out);
    return out;
  }

  const std::string& job_id = id->full;
  if (rec->owned_id != job_id) Release(*rec, released);
  rec->job_id = job_id;
  rec->error.clear();
  rec->doc_errors = 0;
  rec->error_written = false;
  auto owner = owners_.find(job_id);
  // A replication another instance runs is claimed all the same: the claim
  // tells whether this document is the one it runs for (it moved here after
  // a failover) or a duplicate.
  if (owner != owners_.end() && owner->second != rec->key) {
    BecomeDuplicate(*rec, out);
  } else {
    StartJob(*rec, job_id, now, out);
  }
  HandOver(released, now, out);
  return out;
}

void DocProcessor::BecomeDuplicate(DocRecord& rec, Actions& out) {
  SetPhase(rec, Phase::kDuplicate);
  rec.duplicate_order = ++last_duplicate_;
  if (Classic() && rec.doc_replication_id != rec.job_id) {
    Write(rec, MakeWrite(rec.job_id, std::nullopt), out);
  }
}

std::vector<DocAction> DocProcessor::OnJobClaim(const DocKey& doc, uint64_t generation,
                                                const std::string& job_id,
                                                const std::optional<std::string>& elsewhere,
                                                TimePoint now) {
  DocRecord* rec = Find(doc);
  if (rec == nullptr || rec->phase != Phase::kClaiming || rec->generation != generation ||
      rec->owned_id != job_id) {
    return {};  // stale: the kRemoveJob that ended this claim gives the lease back
  }
  Actions out;
  rec->last_updated = now;
  if (!elsewhere) {
    elsewhere_.erase(job_id);
    AddJob(*rec, out);
    return out;
  }
  std::vector<std::string> released;
  Release(*rec, released);
  elsewhere_.insert(job_id);
  rec->error = ShortReason(*elsewhere);
  BecomeDuplicate(*rec, out);
  return out;  // no hand-over: the replication runs elsewhere
}

std::vector<DocAction> DocProcessor::OnJobFreed(const std::string& job_id, TimePoint now) {
  if (!elsewhere_.erase(job_id)) return {};
  Actions out;
  HandOver({job_id}, now, out);
  return out;
}

std::vector<DocAction> DocProcessor::OnRetryDue(const DocKey& doc, uint64_t generation,
                                                TimePoint /*now*/) {
  DocRecord* rec = Find(doc);
  if (rec == nullptr || rec->phase != Phase::kRetryWait || rec->generation != generation) {
    return {};
  }
  SetPhase(*rec, Phase::kInitializing);  // still shown as `error` (doc_errors > 0)
  rec->generation = ++last_generation_;
  DocAction a = Action(DocAction::Type::kComputeId, *rec);
  a.spec = rec->spec;
  return {std::move(a)};
}

// ---------------------------------------------------------------- jobs

std::vector<DocAction> DocProcessor::OnJobStarted(const std::string& job_id, TimePoint now) {
  DocRecord* rec = ActiveOwner(job_id);
  if (rec == nullptr) return {};
  rec->last_updated = now;
  Actions out;
  // After a crash the document keeps `error` until the job is healthy again.
  if (Classic() && !rec->error_written &&
      !(rec->doc_state == "triggered" && rec->doc_replication_id == job_id)) {
    Write(*rec, MakeWrite(job_id, "triggered", std::nullopt, true), out);
  }
  return out;
}

std::vector<DocAction> DocProcessor::OnJobCrashed(const std::string& job_id,
                                                  const std::string& reason,
                                                  int consecutive_crashes, TimePoint now) {
  DocRecord* rec = ActiveOwner(job_id);
  if (rec == nullptr) return {};
  rec->crashes = consecutive_crashes;
  rec->error = ShortReason(reason);
  rec->last_updated = now;
  Actions out;
  if (Classic() && consecutive_crashes >= settings_.error_after && !rec->error_written) {
    rec->error_written = true;
    Write(*rec, MakeWrite(job_id, "error", rec->error), out);
  }
  return out;
}

std::vector<DocAction> DocProcessor::OnJobHealthy(const std::string& job_id, TimePoint now) {
  DocRecord* rec = ActiveOwner(job_id);
  if (rec == nullptr) return {};
  rec->crashes = 0;
  rec->error.clear();
  rec->last_updated = now;
  Actions out;
  if (rec->error_written && Classic()) {
    Write(*rec, MakeWrite(job_id, "triggered", std::nullopt, true), out);
  }
  rec->error_written = false;
  return out;
}

std::vector<DocAction> DocProcessor::OnJobCompleted(const std::string& job_id,
                                                    const std::string& stats_json, TimePoint now) {
  DocRecord* rec = ActiveOwner(job_id);
  if (rec == nullptr) return {};
  Actions out;
  std::vector<std::string> released;
  StopJob(*rec, out, released);  // the scheduler forgets it; a duplicate may run it again
  StateWrite write = MakeWrite(std::nullopt, "completed", std::nullopt, true);
  if (!stats_json.empty()) write.stats_json = stats_json;
  rec->stats_json = stats_json;
  Write(*rec, std::move(write), out);
  // The fingerprint is kept until the `completed` echo arrives, so that a
  // late row of an older revision does not run the replication again.
  SetPhase(*rec, Phase::kCompleted);
  rec->crashes = 0;
  rec->error.clear();
  rec->last_updated = now;
  HandOver(released, now, out);
  return out;
}

std::vector<DocAction> DocProcessor::OnJobFailed(const std::string& job_id,
                                                 const std::string& reason, TimePoint now) {
  DocRecord* rec = ActiveOwner(job_id);
  if (rec == nullptr) return {};
  Actions out;
  std::vector<std::string> released;
  StopJob(*rec, out, released);
  SetPhase(*rec, Phase::kJobFailed);
  rec->error = ShortReason(reason);
  rec->crashes = 0;
  rec->last_updated = now;
  StateWrite write = MakeWrite(std::nullopt, FailureState(), rec->error);
  if (Classic()) write.replication_id = job_id;
  Write(*rec, std::move(write), out);
  HandOver(released, now, out);
  return out;
}

std::vector<DocAction> DocProcessor::OnDatabaseRemoved(const std::string& db, TimePoint now) {
  Actions out;
  std::vector<std::string> released;
  auto it = docs_.lower_bound(DocKey{db, ""});
  while (it != docs_.end() && it->first.db == db) {
    StopJob(*it->second, out, released);
    it = docs_.erase(it);
  }
  HandOver(released, now, out);
  return out;
}

// ---------------------------------------------------------------- views

std::optional<DocView> DocProcessor::Doc(const DocKey& key) const {
  const DocRecord* rec = Find(key);
  if (rec == nullptr) return std::nullopt;
  DocView v;
  v.doc = rec->key;
  v.job_id = rec->job_id;
  v.last_updated = rec->last_updated;
  v.source = rec->source;
  v.target = rec->target;
  v.continuous = rec->continuous;
  // Permanent failures show `failed` in both modes, as CouchDB 3's
  // _scheduler/docs does; `error` means "will be retried".
  auto failed = [&] {
    v.state = "failed";
    v.error = rec->error;
    v.error_count = 1;
  };
  switch (rec->phase) {
    case Phase::kInitializing:
      v.state = rec->doc_errors > 0 ? "error" : "initializing";
      v.error = rec->error;
      v.error_count = rec->doc_errors;
      break;
    case Phase::kRetryWait:
      v.state = "error";
      v.error = rec->error;
      v.error_count = rec->doc_errors;
      break;
    case Phase::kInvalid:
    case Phase::kJobFailed:
    case Phase::kFailedDoc:
      failed();
      break;
    case Phase::kDuplicate:
      v.state = "duplicate";
      v.error = rec->error;  // where the replication runs, when on another instance
      break;
    case Phase::kClaiming:
      v.state = "initializing";
      break;
    case Phase::kOwner:
      v.state = "job";
      v.error = rec->error;
      v.error_count = rec->crashes;
      break;
    case Phase::kCompleted:
      v.state = "completed";
      v.stats_json = rec->stats_json;
      break;
  }
  return v;
}

std::vector<DocView> DocProcessor::Docs() const {
  std::vector<DocView> views;
  views.reserve(docs_.size());
  for (const auto& [key, rec] : docs_) views.push_back(*Doc(key));
  return views;
}

std::optional<DocKey> DocProcessor::OwnerOf(const std::string& job_id) const {
  const DocRecord* rec = ActiveOwner(job_id);
  if (rec == nullptr) return std::nullopt;
  return rec->key;
}

}  // namespace couchrepd

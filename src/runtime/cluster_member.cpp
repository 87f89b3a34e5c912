// ClusterMember: heartbeats, leases and ownership through the coordination database (see the header).
#include "cluster_member.h"

#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <utility>

#include "couchrepd/json.h"
#include "couchrepd/limits.h"
#include "couchrepd/log.h"

namespace couchrepd {

namespace {

constexpr int kConflict = 409;
constexpr int kNotFound = 404;
constexpr int kExists = 412;
constexpr std::string_view kMemberPrefix = "member:";
constexpr std::string_view kLeasePrefix = "lease:";
constexpr std::string_view kJobPrefix = "job:";
// Lease documents per _bulk_docs request (renewals, takes, releases).
constexpr size_t kBulkChunk = 500;
// Rows per _changes page of the coordination database.
constexpr int64_t kChangesPage = 2000;

// "lease:<db>:<doc id>" back to its document (database names have no ':').
std::optional<DocKey> LeaseKey(std::string_view id) {
  if (id.substr(0, kLeasePrefix.size()) != kLeasePrefix) return std::nullopt;
  id.remove_prefix(kLeasePrefix.size());
  auto colon = id.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  return DocKey{std::string(id.substr(0, colon)), std::string(id.substr(colon + 1))};
}

// A string member of a document, "" when absent or not a string.
std::string StringField(simdjson::dom::element doc, std::string_view key) {
  std::string_view v;
  if (doc[key].get(v) != simdjson::SUCCESS) return "";
  return std::string(v);
}

}  // namespace

std::string DefaultInstanceId() {
  char host[HOST_NAME_MAX + 1] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "host");
  return std::string(host) + ":" + std::to_string(getpid());
}

ClusterMember::ClusterMember(const Config::Cluster& config, std::string instance_id,
                             CouchClient server, Hooks hooks, Clock& clock)
    : config_(config),
      timing_{config.heartbeat, config.lease_ttl},
      self_(std::move(instance_id)),
      db_(server.Database(config.database)),
      hooks_(std::move(hooks)),
      clock_(clock),
      own_(timing_),
      members_(self_, timing_) {
  db_.SetCancel(&cancel_);
  view_.self = self_;
  view_.database = config_.database;
}

ClusterMember::~ClusterMember() {
  if (thread_.joinable()) Stop(false);
}

void ClusterMember::Start() {
  thread_ = std::thread([this] { Loop(); });
  beat_thread_ = std::thread([this] { BeatLoop(); });
  guard_ = std::thread([this] { Guard(); });
}

int ClusterMember::HeldCount() const {
  std::lock_guard<std::mutex> lock(lease_mu_);
  return static_cast<int>(own_.Held().size());
}

// Checks the leases' renewal deadlines ten times a heartbeat, whatever the
// main thread is waiting for.
void ClusterMember::Guard() {
  const Duration tick = std::max<Duration>(timing_.heartbeat / 10, std::chrono::milliseconds(10));
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_guard_.wait_for(lock, tick, [&] { return stop_; })) return;
    }
    GiveUpLate(clock_.Now());
  }
}

void ClusterMember::SetDoc(const DocKey& doc, bool exists) {
  std::lock_guard<std::mutex> lock(mu_);
  bool changed = exists ? docs_.insert(doc).second : docs_.erase(doc) > 0;
  if (changed) {
    kicked_ = true;
    cv_.notify_one();
  }
}

void ClusterMember::Released(const DocKey& doc) {
  std::lock_guard<std::mutex> lock(mu_);
  released_.insert(doc);
  kicked_ = true;
  cv_.notify_one();
}

void ClusterMember::ClaimJob(const std::string& job_id, const DocKey& doc, uint64_t generation) {
  std::lock_guard<std::mutex> lock(mu_);
  job_releases_.erase(job_id);
  claims_[job_id] = Claim{doc, generation};
  kicked_ = true;
  cv_.notify_one();
}

void ClusterMember::ReleaseJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  claims_.erase(job_id);
  job_releases_.insert(job_id);
  kicked_ = true;
  cv_.notify_one();
}

cluster::ClusterView ClusterMember::View() const {
  std::lock_guard<std::mutex> lock(mu_);
  return view_;
}

void ClusterMember::Fail(const std::string& what, const Error& e) {
  std::string text = what + ": " + ScrubSecrets(e.Message());
  if (text != error_) {
    LogWith({.db = config_.database, .error = text}, spdlog::level::warn, "cluster: {}", text);
  }
  error_ = std::move(text);
}

std::string ClusterMember::LeaseJson(const DocKey& doc, const std::string& holder,
                                     bool deleted) const {
  JsonWriter w;
  w.BeginObject();
  w.Key("_id").String(cluster::LeaseDocId(doc));
  if (auto rev = book_.Rev(doc)) w.Key("_rev").String(*rev);
  if (deleted) w.Key("_deleted").Bool(true);
  w.Key("type").String("lease");
  w.Key("db").String(doc.db);
  w.Key("doc_id").String(doc.doc_id);
  w.Key("holder").String(holder);
  w.Key("written_unix").Int(static_cast<int64_t>(clock_.UnixSeconds()));
  w.EndObject();
  return w.Take();
}

std::string ClusterMember::JobLeaseJson(const std::string& job_id, const std::string& holder,
                                        const DocKey& doc, bool deleted) const {
  JsonWriter w;
  w.BeginObject();
  w.Key("_id").String(cluster::JobLeaseDocId(job_id));
  const cluster::JobBook::Lease* seen = job_book_.Find(job_id);
  if (seen != nullptr) w.Key("_rev").String(seen->rev);
  if (deleted) w.Key("_deleted").Bool(true);
  w.Key("type").String("job");
  w.Key("replication_id").String(job_id);
  w.Key("holder").String(holder);
  w.Key("db").String(doc.db);
  w.Key("doc_id").String(doc.doc_id);
  w.Key("written_unix").Int(static_cast<int64_t>(clock_.UnixSeconds()));
  w.EndObject();
  return w.Take();
}

// This member's heartbeat document, written with its last revision (a 409
// means it does not know the revision: read it and write again). It renews
// all of this member's leases at once: a lease is its holder's while the
// holder's heartbeat is live.
void ClusterMember::Beat() {
  const std::string id = cluster::MemberDocId(self_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    JsonWriter w;
    w.BeginObject();
    w.Key("_id").String(id);
    if (!member_rev_.empty()) w.Key("_rev").String(member_rev_);
    w.Key("type").String("member");
    w.Key("instance_id").String(self_);
    w.Key("heartbeat_unix").Int(static_cast<int64_t>(clock_.UnixSeconds()));
    w.Key("leases").Int(static_cast<int64_t>(HeldCount()));
    w.EndObject();
    const TimePoint sent = clock_.Now();
    auto put = db_.PutDoc(id, w.str());
    if (put.ok() && put->ok) {
      member_rev_ = put->rev;
      {
        std::lock_guard<std::mutex> lock(mu_);
        beat_error_.clear();
      }
      // The others see this member live for lease_ttl from no earlier than
      // now: every lease it holds is renewed with it.
      std::lock_guard<std::mutex> lock(lease_mu_);
      own_.Renewed(sent);
      return;
    }
    if (!put.ok() && put.error().http_status == kConflict) {
      auto got = db_.GetDoc(id);
      simdjson::dom::parser parser;
      simdjson::dom::element doc;
      if (got.ok() && parser.parse(*got).get(doc) == simdjson::SUCCESS) {
        member_rev_ = StringField(doc, "_rev");
        continue;
      }
    }
    const Error e = put.ok() ? Error::Temporary(put->error, put->reason) : put.error();
    if (e.http_status == kNotFound) prepared_ = false;  // deleted: the other thread creates it again
    std::string text = "heartbeat: " + ScrubSecrets(e.Message());
    std::lock_guard<std::mutex> lock(mu_);
    if (text != beat_error_) {
      LogWith({.db = config_.database, .error = text}, spdlog::level::warn, "cluster: {}", text);
    }
    beat_error_ = std::move(text);
    return;
  }
}

// Waits on `cv` until `until` or a kick (then clears it); false once stopping.
bool ClusterMember::Wait(std::condition_variable& cv, bool& kicked, TimePoint until) {
  std::unique_lock<std::mutex> lock(mu_);
  cv.wait_until(lock, until, [&] { return stop_ || kicked; });
  if (stop_) return false;
  kicked = false;
  return true;
}

// The heartbeat, every `heartbeat` (at once when the coordination database
// has just been created).
void ClusterMember::BeatLoop() {
  TimePoint next = clock_.Now();
  while (Wait(cv_beat_, beat_kicked_, next)) {
    next = clock_.Now() + timing_.heartbeat;
    if (prepared_) Beat();
  }
}

// Everything the coordination database changed since the last read: who is
// alive, who holds what. False when the database could not be read.
bool ClusterMember::ReadChanges() {
  for (;;) {
    ChangesRequest req;
    req.since = since_;
    req.include_docs = true;
    req.style = "main_only";
    req.limit = kChangesPage;
    simdjson::dom::parser parser;
    uint64_t rows = 0;
    auto r = db_.Changes(req, [&](const ChangeRow& row) {
      ++rows;
      // When this instance saw it (not when the pass began: a request may
      // have waited long on an unreachable server, and a member seen
      // changing then must not look stale at once).
      const TimePoint now = clock_.Now();
      since_ = row.seq;
      simdjson::dom::element doc;
      bool parsed = !row.doc.empty() && parser.parse(row.doc).get(doc) == simdjson::SUCCESS;
      std::string rev = parsed ? StringField(doc, "_rev") : (row.revs.empty() ? "" : row.revs[0]);
      if (row.id.rfind(kMemberPrefix, 0) == 0) {
        std::string member = row.id.substr(kMemberPrefix.size());
        if (row.deleted) {
          if (member != self_) members_.Gone(member);
        } else {
          members_.Seen(member, rev, now);
        }
      } else if (row.id.rfind(kJobPrefix, 0) == 0) {
        std::optional<cluster::JobBook::Lease> lease;
        if (!row.deleted && parsed) {
          lease = cluster::JobBook::Lease{
              StringField(doc, "holder"),
              DocKey{StringField(doc, "db"), StringField(doc, "doc_id")}, rev};
        }
        ReadJobLease(row.id.substr(kJobPrefix.size()), lease);
      } else if (auto key = LeaseKey(row.id)) {
        std::string holder = row.deleted || !parsed ? "" : StringField(doc, "holder");
        if (row.deleted || !parsed) {
          book_.Missing(*key);
        } else {
          book_.Seen(*key, holder, rev);
        }
        if (holder != self_) taken_.push_back(*key);
      }
      return true;
    });
    if (!r.ok()) {
      Fail("reading " + config_.database + "/_changes", r.error());
      if (r.error().http_status == kNotFound) prepared_ = false;  // deleted: create it again
      return false;
    }
    if (r->last_seq) since_ = *r->last_seq;
    LoseTaken();
    if (rows > 0) spdlog::trace("cluster: {} changes of {} read", rows, config_.database);
    if (rows < static_cast<uint64_t>(kChangesPage)) return true;
  }
}

// Writes documents in _bulk_docs chunks and calls `on_result` with each
// document's index, answer and when its chunk was sent (a lease is at least
// that fresh). Returns how many documents were written before a chunk failed
// (all of them when none did; `what` names it in the error).
size_t ClusterMember::WriteBulk(const std::vector<std::pair<std::string, std::string>>& docs,
                                const std::string& what, const BulkResult& on_result) {
  for (size_t i = 0; i < docs.size(); i += kBulkChunk) {
    std::vector<std::string> body;
    std::map<std::string, size_t> by_id;
    for (size_t j = i; j < std::min(docs.size(), i + kBulkChunk); ++j) {
      body.push_back(docs[j].second);
      by_id[docs[j].first] = j;
    }
    const TimePoint sent = clock_.Now();
    auto r = db_.BulkDocs(body, true);
    if (!r.ok()) {
      Fail(what, r.error());
      return i;
    }
    for (const auto& w : *r) {
      auto it = by_id.find(w.id);
      if (it != by_id.end()) on_result(it->second, w, sent);
    }
  }
  return docs.size();
}

// Lease documents (`json` of each), through WriteBulk.
size_t ClusterMember::WriteLeases(const std::vector<DocKey>& docs,
                                  const std::function<std::string(const DocKey&)>& json,
                                  const std::string& what, const LeaseResult& on_result) {
  std::vector<std::pair<std::string, std::string>> body;
  body.reserve(docs.size());
  for (const auto& doc : docs) body.emplace_back(cluster::LeaseDocId(doc), json(doc));
  return WriteBulk(body, what, [&](size_t i, const DocWriteResult& w, TimePoint sent) {
    on_result(docs[i], w, sent);
  });
}

// A job lease read from the coordination database (nullopt: deleted).
void ClusterMember::ReadJobLease(const std::string& job_id,
                                 const std::optional<cluster::JobBook::Lease>& lease) {
  if (lease) {
    job_book_.Seen(job_id, lease->holder, lease->doc, lease->rev);
  } else {
    job_book_.Missing(job_id);
  }
  // Another member took it: it judged this one dead, and took its documents'
  // leases too (LoseTaken stops their jobs). It is no longer this one's to give back.
  if ((!lease || lease->holder != self_) && own_jobs_.erase(job_id)) {
    spdlog::warn("cluster: the job lease of replication {} was taken by another member", job_id);
  }
}

// Gives back the job leases of jobs that stopped here (all of them when
// stopping): the lease document is deleted, so a duplicate elsewhere may
// claim it at once.
void ClusterMember::WriteJobReleases(bool all) {
  std::set<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ids.swap(job_releases_);
  }
  if (all) {
    for (const auto& [id, doc] : own_jobs_) ids.insert(id);
  }
  std::vector<std::pair<std::string, std::string>> body;
  std::vector<std::string> order;
  for (const auto& id : ids) {
    auto held = own_jobs_.find(id);
    if (held == own_jobs_.end()) continue;
    body.emplace_back(cluster::JobLeaseDocId(id), JobLeaseJson(id, "", held->second, true));
    order.push_back(id);
  }
  size_t written = WriteBulk(body, "giving job leases back",
                             [&](size_t i, const DocWriteResult& w, TimePoint) {
                               if (w.ok || w.error == "conflict" || w.error == "not_found") {
                                 own_jobs_.erase(order[i]);
                               }
                               if (w.ok) job_book_.Missing(order[i]);
                             });
  // Not written: tried again at the next pass, unless claimed again meanwhile.
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t j = written; j < order.size(); ++j) {
    if (!claims_.count(order[j])) job_releases_.insert(order[j]);
  }
}

void ClusterMember::AnswerClaim(const std::string& job_id, const Claim& claim,
                                const std::optional<std::string>& elsewhere) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = claims_.find(job_id);
    if (it == claims_.end() || !(it->second == claim)) return;  // withdrawn or asked anew
    claims_.erase(it);
  }
  hooks_.claimed(claim.doc, claim.generation, job_id, elsewhere);
}

// Answers the claims of job leases: held here already, taken now (a
// conditional write: the 409 decides a race), held elsewhere (a duplicate),
// or to be asked again (the old owner of a document that moved here has not
// given it back yet; or a write lost a race and the next read tells who won).
void ClusterMember::ClaimJobs(const std::set<DocKey>& docs, TimePoint now) {
  std::map<std::string, Claim> claims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    claims = claims_;
  }
  std::vector<std::pair<std::string, std::string>> body;
  std::vector<std::string> order;
  for (const auto& [id, claim] : claims) {
    const cluster::JobBook::Lease* lease = job_book_.Find(id);
    switch (cluster::JudgeClaim(lease, claim.doc, self_, members_, docs, now)) {
      case cluster::ClaimVerdict::kMine:
        own_jobs_[id] = claim.doc;
        watching_.erase(id);
        AnswerClaim(id, claim, std::nullopt);
        break;
      case cluster::ClaimVerdict::kTake:
        body.emplace_back(cluster::JobLeaseDocId(id), JobLeaseJson(id, self_, claim.doc, false));
        order.push_back(id);
        break;
      case cluster::ClaimVerdict::kWait:
        break;
      case cluster::ClaimVerdict::kElsewhere:
        watching_.insert(id);
        AnswerClaim(id, claim,
                    "replication " + id + " runs on instance " + lease->holder + " for " +
                        lease->doc.db + "/" + lease->doc.doc_id);
        break;
    }
  }
  WriteBulk(body, "taking job leases", [&](size_t i, const DocWriteResult& w, TimePoint) {
    const std::string& id = order[i];
    const Claim& claim = claims[id];
    if (w.ok) {
      job_book_.Seen(id, self_, claim.doc, w.rev);
      own_jobs_[id] = claim.doc;
      watching_.erase(id);
      AnswerClaim(id, claim, std::nullopt);
    } else if (w.error == "conflict") {
      ++conflicts_;  // another member was first (or this one's view is old): the next read tells
    }
  });
}

// Job leases held elsewhere that a duplicate here waits for: once given back
// (or their holder dead), the duplicate may claim them.
void ClusterMember::WatchJobs(const std::set<DocKey>& docs, TimePoint now) {
  std::vector<std::string> freed;
  for (auto it = watching_.begin(); it != watching_.end();) {
    // As judged for a document other than the lease's own.
    auto verdict = cluster::JudgeClaim(job_book_.Find(*it), DocKey{}, self_, members_, docs, now);
    if (verdict == cluster::ClaimVerdict::kTake) {
      freed.push_back(*it);
      it = watching_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& id : freed) hooks_.freed(id);
}

// Gives up those of `docs` this instance holds (they count as lost) and
// stops their jobs at once.
void ClusterMember::Lose(const std::vector<DocKey>& docs, std::string_view why) {
  std::vector<DocKey> lost;
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    for (const auto& doc : docs) {
      if (!own_.Holds(doc)) continue;
      ++lost_;
      own_.Released(doc);
      revoking_.erase(doc);
      lost.push_back(doc);
    }
  }
  for (const auto& doc : lost) {
    LogWith({.db = doc.db, .doc_id = doc.doc_id}, spdlog::level::warn,
            "cluster: {}/{}: {}; stopping its job", doc.db, doc.doc_id, why);
    hooks_.revoked(doc);
  }
}

// Leases this instance holds that the coordination database shows with
// another holder (or none) were taken from it: another member judged it dead
// (its heartbeats did not reach the others in time).
void ClusterMember::LoseTaken() {
  Lose(taken_, "its lease was taken by another member");
  taken_.clear();
}

// Leases not renewed (no heartbeat landed) for so long that another member
// may judge this one dead before its next heartbeat: their jobs stop now
// (SPEC §9: never two runs for longer than one heartbeat).
void ClusterMember::GiveUpLate(TimePoint now) {
  std::vector<DocKey> late;
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    late = own_.MustStop(now);
  }
  Lose(late, "could not renew its lease in time (no heartbeat landed)");
}

// Takes the leases of the documents this instance now owns and gives back
// (after their jobs stop) those another live member owns.
void ClusterMember::Rebalance(const std::set<DocKey>& docs, TimePoint now) {
  const auto live = members_.Live(now);
  cluster::Assignment plan;
  std::vector<DocKey> revoke;
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    plan = cluster::Reconcile(self_, live, docs, own_.Held());
    for (const auto& doc : plan.release) {
      if (revoking_.insert(doc).second) revoke.push_back(doc);
    }
  }
  for (const auto& doc : revoke) hooks_.revoked(doc);
  std::vector<DocKey> take;
  for (const auto& doc : plan.take) {
    auto verdict = book_.Judge(doc, self_, live);
    if (verdict != cluster::LeaseBook::Verdict::kHeld) take.push_back(doc);
  }
  if (!take.empty() || !plan.release.empty()) {
    std::string names;
    for (const auto& m : live) names += (names.empty() ? "" : ",") + m;
    spdlog::debug("cluster: live members {}; taking {} leases, giving back {}", names, take.size(),
                  plan.release.size());
  }
  WriteLeases(take, [this](const DocKey& doc) { return LeaseJson(doc, self_, false); },
              "taking leases", [this](const DocKey& doc, const DocWriteResult& w, TimePoint sent) {
                if (w.ok) {
                  {
                    std::lock_guard<std::mutex> lock(lease_mu_);
                    own_.Written(doc, sent);
                  }
                  book_.Seen(doc, self_, w.rev);
                  hooks_.granted(doc);
                } else if (w.error == "conflict") {
                  ++conflicts_;  // another member was first; the next read of _changes tells who
                }
              });
}

// Gives back the leases of revoked documents whose jobs have stopped (all of
// them when stopping): holder "" (or the lease deleted along with its
// document), so the new owner starts at once.
void ClusterMember::WriteReleases(const std::set<DocKey>& docs, bool all) {
  std::set<DocKey> released;
  {
    std::lock_guard<std::mutex> lock(mu_);
    released.swap(released_);
  }
  std::vector<DocKey> give;
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    if (all) {
      for (const auto& doc : own_.Held()) released.insert(doc);
    }
    for (const auto& doc : released) {
      revoking_.erase(doc);
      if (own_.Holds(doc)) give.push_back(doc);
    }
  }
  auto json = [&](const DocKey& doc) { return LeaseJson(doc, "", docs.count(doc) == 0); };
  size_t written = WriteLeases(give, json, "giving leases back",
                               [this](const DocKey& doc, const DocWriteResult& w, TimePoint) {
                                 if (w.ok || w.error == "conflict") {
                                   std::lock_guard<std::mutex> lock(lease_mu_);
                                   own_.Released(doc);
                                 }
                                 if (w.ok) book_.Seen(doc, "", w.rev);
                               });
  // The ones not written are kept: the next pass tries again (they are
  // renewed meanwhile).
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t j = written; j < give.size(); ++j) released_.insert(give[j]);
}

// Heartbeat documents of members dead for 10 lease_ttl are deleted (by whoever sees it first; a 409 means another did), so a
// member gone for good leaves /_cluster. Its leases are not touched: they are
// free to take once expired anyway.
void ClusterMember::ForgetStale(TimePoint now) {
  const Duration age = 10 * timing_.lease_ttl;
  for (const auto& [member, rev] : members_.Stale(now, age)) {
    auto gone = db_.DeleteDoc(cluster::MemberDocId(member), rev);
    if (gone.ok() || gone.error().http_status == kConflict || gone.error().http_status == kNotFound) {
      members_.Gone(member);
      spdlog::info("cluster: member {} has been dead for {} s: its heartbeat document is deleted",
                   member, std::chrono::duration_cast<std::chrono::seconds>(age).count());
    }
  }
}

// `now`: when liveness is judged (Loop's judged_at_).
void ClusterMember::PublishView(const std::set<DocKey>& docs, TimePoint now) {
  cluster::ClusterView v;
  v.self = self_;
  v.database = config_.database;
  auto live = members_.Live(now);
  std::map<std::string, int> owns;
  for (const auto& doc : docs) {
    if (auto owner = cluster::OwnerOf(live, doc)) ++owns[*owner];
  }
  auto holds = book_.CountByHolder(live);
  auto jobs = job_book_.CountByHolder();
  const double unix_now = clock_.UnixSeconds();
  const TimePoint real_now = clock_.Now();
  for (const auto& m : members_.Members(now)) {
    cluster::ClusterView::Member out;
    out.id = m.id;
    out.live = m.live;
    out.self = m.self;
    out.last_heartbeat_unix =
        unix_now - std::chrono::duration<double>(real_now - m.last_change).count();
    out.owns = owns[m.id];
    out.leases = m.self ? HeldCount() : holds[m.id];
    out.jobs = m.self ? static_cast<int>(own_jobs_.size()) : jobs[m.id];
    v.members.push_back(std::move(out));
  }
  v.documents = static_cast<int>(docs.size());
  v.leases_held = HeldCount();
  v.job_leases_held = static_cast<int>(own_jobs_.size());
  v.duplicates_elsewhere = static_cast<int>(watching_.size());
  v.lease_conflicts = conflicts_;
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    v.leases_lost = lost_;
  }
  std::lock_guard<std::mutex> lock(mu_);
  v.error = error_.empty() ? beat_error_ : error_;
  view_ = std::move(v);
}

// A pass every heartbeat, or at once when kicked (a new document, a claim,
// a release): read the coordination database, then give back, take and
// claim leases. The heartbeat itself is BeatLoop's.
void ClusterMember::Loop() {
  TimePoint next_pass = clock_.Now();
  while (Wait(cv_, kicked_, next_pass)) {
    // Each step reads the clock anew: a request to an unreachable server may
    // have taken the whole request timeout.
    if (!prepared_) {
      Status created = db_.CreateDb();
      if (created.ok() || created.error().http_status == kExists) {
        prepared_ = true;
        std::lock_guard<std::mutex> lock(mu_);
        beat_kicked_ = true;  // the first heartbeat now
        cv_beat_.notify_one();
      } else {
        Fail("creating " + config_.database, created.error());
      }
    }
    const TimePoint start = clock_.Now();
    const bool beat = start >= next_pass;
    if (beat) next_pass = start + timing_.heartbeat;
    // Who is alive is judged as of when the last complete read began, not
    // as of now: a heartbeat written before that read is in it, one written
    // since may not have been read yet. The writes of a pass (thousands of
    // leases on a busy server) may take longer than lease_ttl; judged as of
    // their end, every other member would look dead.
    bool read = prepared_ && ReadChanges();
    if (read) judged_at_ = start;
    GiveUpLate(clock_.Now());
    const std::set<DocKey> docs = Docs();  // one copy per pass
    if (read) {
      error_.clear();
      WriteJobReleases(false);  // before the documents' leases: a moved job's new owner claims it next
      WriteReleases(docs, false);
      Rebalance(docs, judged_at_);
      ClaimJobs(docs, judged_at_);
      WatchJobs(docs, judged_at_);
      if (beat) ForgetStale(judged_at_);
    }
    PublishView(docs, judged_at_);
  }
}

std::set<DocKey> ClusterMember::Docs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return docs_;
}

void ClusterMember::Stop(bool give_back) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_one();
    cv_guard_.notify_one();
    cv_beat_.notify_one();
  }
  cancel_.Cancel();  // a request hanging on an unreachable server ends now
  if (thread_.joinable()) thread_.join();
  if (beat_thread_.joinable()) beat_thread_.join();
  if (guard_.joinable()) guard_.join();
  if (!give_back || !prepared_) return;
  db_.SetCancel(nullptr);
  // The jobs have stopped: every lease goes back, and the heartbeat document
  // goes so the others see this member gone at once.
  const std::set<DocKey> docs = Docs();
  WriteJobReleases(true);
  WriteReleases(docs, true);
  if (!member_rev_.empty()) {
    auto gone = db_.DeleteDoc(cluster::MemberDocId(self_), member_rev_);
    if (!gone.ok()) Fail("deleting the heartbeat document", gone.error());
  }
  PublishView(docs, judged_at_);
}

}  // namespace couchrepd

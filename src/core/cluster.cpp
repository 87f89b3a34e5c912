#include "couchrepd/cluster.h"

#include <algorithm>

namespace couchrepd::cluster {

namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t FnvAdd(uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= kFnvPrime;
  }
  return h;
}

uint64_t SplitMix64Finish(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t RendezvousScore(std::string_view member, const DocKey& doc) {
  constexpr std::string_view kSeparator("\0", 1);
  uint64_t h = FnvAdd(kFnvOffset, member);
  h = FnvAdd(h, kSeparator);
  h = FnvAdd(h, doc.db);
  h = FnvAdd(h, kSeparator);
  h = FnvAdd(h, doc.doc_id);
  return SplitMix64Finish(h);
}

std::optional<std::string> OwnerOf(const std::vector<std::string>& members, const DocKey& doc) {
  const std::string* best = nullptr;
  uint64_t best_score = 0;
  for (const auto& m : members) {
    uint64_t score = RendezvousScore(m, doc);
    if (!best || score > best_score || (score == best_score && m < *best)) {
      best = &m;
      best_score = score;
    }
  }
  if (!best) return std::nullopt;
  return *best;
}

std::string LeaseDocId(const DocKey& doc) { return "lease:" + doc.db + ":" + doc.doc_id; }

std::string MemberDocId(std::string_view member) { return "member:" + std::string(member); }

std::string JobLeaseDocId(std::string_view job_id) { return "job:" + std::string(job_id); }

bool Membership::Seen(const std::string& member, const std::string& rev, TimePoint now) {
  auto it = members_.find(member);
  if (it == members_.end()) {
    members_.emplace(member, Heartbeat{rev, now});
    return member != self_;
  }
  if (it->second.rev == rev) return false;  // no news: not a sign of life
  bool was_live = IsLive(it->second, now);
  it->second = Heartbeat{rev, now};
  return !was_live && member != self_;
}

void Membership::Gone(const std::string& member) {
  if (member != self_) members_.erase(member);
}

std::vector<std::string> Membership::Live(TimePoint now) const {
  std::vector<std::string> out;
  bool self_listed = false;
  for (const auto& [id, s] : members_) {
    if (id == self_) {
      self_listed = true;
      out.push_back(id);
    } else if (IsLive(s, now)) {
      out.push_back(id);
    }
  }
  if (!self_listed) out.insert(std::lower_bound(out.begin(), out.end(), self_), self_);
  return out;
}

std::vector<Membership::Member> Membership::Members(TimePoint now) const {
  std::vector<Member> out;
  for (const auto& [id, s] : members_) {
    out.push_back(Member{id, s.last_change, id == self_ || IsLive(s, now), id == self_});
  }
  return out;
}

std::optional<Duration> Membership::DeadFor(const std::string& member, TimePoint now) const {
  if (member == self_) return std::nullopt;
  auto it = members_.find(member);
  if (it == members_.end()) return Duration::max();
  if (IsLive(it->second, now)) return std::nullopt;
  return std::chrono::duration_cast<Duration>(now - it->second.last_change - timing_.lease_ttl);
}

std::vector<std::pair<std::string, std::string>> Membership::Stale(TimePoint now,
                                                                  Duration age) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [id, s] : members_) {
    if (id != self_ && now - s.last_change >= age) out.emplace_back(id, s.rev);
  }
  return out;
}

void LeaseBook::Seen(const DocKey& doc, const std::string& holder, const std::string& rev) {
  leases_[doc] = Lease{holder, rev};
}

void LeaseBook::Missing(const DocKey& doc) { leases_.erase(doc); }

LeaseBook::Verdict LeaseBook::Judge(const DocKey& doc, const std::string& self,
                                    const std::vector<std::string>& live) const {
  auto it = leases_.find(doc);
  if (it == leases_.end() || it->second.holder.empty()) return Verdict::kFree;
  const Lease& l = it->second;
  if (l.holder == self) return Verdict::kMine;
  return std::binary_search(live.begin(), live.end(), l.holder) ? Verdict::kHeld
                                                                 : Verdict::kExpired;
}

std::optional<std::string> LeaseBook::Rev(const DocKey& doc) const {
  auto it = leases_.find(doc);
  if (it == leases_.end()) return std::nullopt;
  return it->second.rev;
}

std::map<std::string, int> LeaseBook::CountByHolder(const std::vector<std::string>& live) const {
  std::map<std::string, int> count;
  for (const auto& [doc, l] : leases_) {
    if (std::binary_search(live.begin(), live.end(), l.holder)) ++count[l.holder];
  }
  return count;
}

std::optional<std::string> LeaseBook::Holder(const DocKey& doc) const {
  auto it = leases_.find(doc);
  if (it == leases_.end()) return std::nullopt;
  return it->second.holder;
}

void JobBook::Seen(const std::string& job_id, const std::string& holder, const DocKey& doc,
                   const std::string& rev) {
  leases_[job_id] = Lease{holder, doc, rev};
}

// Forgotten, not kept as a tombstone: replication ids come and go (every
// completed one-shot job deletes its lease), and a lease never seen is
// judged the same as a deleted one.
void JobBook::Missing(const std::string& job_id) { leases_.erase(job_id); }

const JobBook::Lease* JobBook::Find(const std::string& job_id) const {
  auto it = leases_.find(job_id);
  return it == leases_.end() ? nullptr : &it->second;
}

std::map<std::string, int> JobBook::CountByHolder() const {
  std::map<std::string, int> count;
  for (const auto& [id, l] : leases_) {
    if (!l.holder.empty()) ++count[l.holder];
  }
  return count;
}

ClaimVerdict JudgeClaim(const JobBook::Lease* lease, const DocKey& doc, const std::string& self,
                        const Membership& members, const std::set<DocKey>& docs, TimePoint now) {
  if (lease == nullptr || lease->holder.empty()) return ClaimVerdict::kTake;
  const bool same_doc = lease->doc == doc;
  if (lease->holder == self) return same_doc ? ClaimVerdict::kMine : ClaimVerdict::kTake;
  const std::optional<Duration> dead = members.DeadFor(lease->holder, now);
  if (!dead) return same_doc ? ClaimVerdict::kWait : ClaimVerdict::kElsewhere;
  if (same_doc || docs.count(lease->doc) == 0 || *dead >= members.timing().lease_ttl) {
    return ClaimVerdict::kTake;
  }
  return ClaimVerdict::kElsewhere;
}

void OwnLeases::Renewed(TimePoint now) {
  if (!last_renewal_ || *last_renewal_ < now) last_renewal_ = now;
  for (auto& [doc, written] : last_written_) written = std::max(written, now);
}

std::set<DocKey> OwnLeases::Held() const {
  std::set<DocKey> out;
  for (const auto& [doc, t] : last_written_) out.insert(doc);
  return out;
}

std::vector<DocKey> OwnLeases::MustStop(TimePoint now) const {
  std::vector<DocKey> out;
  const Duration margin = 2 * timing_.heartbeat;
  for (const auto& [doc, written] : last_written_) {
    if (now - written + margin >= timing_.lease_ttl) out.push_back(doc);
  }
  return out;
}

Assignment Reconcile(const std::string& self, const std::vector<std::string>& live,
                     const std::set<DocKey>& docs, const std::set<DocKey>& held) {
  Assignment a;
  for (const auto& doc : docs) {
    auto owner = OwnerOf(live, doc);
    bool mine = owner && *owner == self;
    bool holding = held.count(doc) != 0;
    if (mine && !holding) a.take.push_back(doc);
    if (!mine && holding) a.release.push_back(doc);
  }
  // Held leases of documents that are gone are released too.
  for (const auto& doc : held) {
    if (!docs.count(doc)) a.release.push_back(doc);
  }
  return a;
}

}  // namespace couchrepd::cluster

// Several couchrepd instances (SPEC §9, issue 11): the pure decisions.
//
// Instances coordinate only through documents in a coordination database on
// the watched server:
// - each heartbeats a membership document every `heartbeat`; a member whose
//   document has not changed (a new revision) for `lease_ttl`, by this
//   instance's own clock since it last saw it change, is dead, so clocks need
//   not agree (Membership);
// - each replication document belongs to the live member with the highest
//   rendezvous score of (member, database, document id): every instance
//   computes the same owner without talking, and a member coming or going
//   moves only the documents it wins or held (OwnerOf, Reconcile);
// - before running a job the owner takes the replication's lease document,
//   relying on the server's revision conflict (409) for mutual exclusion. A
//   lease stays its holder's while the holder's heartbeat is live: the
//   heartbeat renews all of a member's leases at once, so the cost per
//   heartbeat does not grow with the number of documents. A lease of a dead
//   member may be taken (LeaseBook), and an instance whose heartbeat writes
//   fail stops its jobs before the others may judge it dead
//   (OwnLeases::MustStop);
// - a document's owner also takes the lease of its replication id (a job
//   lease, "job:<id>") before the job runs, so that two documents describing
//   the same replication on different instances run it once: the first to
//   take it triggers the replication, the other document is a duplicate and
//   waits for the lease to be given back (JobBook, JudgeClaim).
// No I/O, no clock reads, no locks: callers pass the time in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "couchrepd/clock.h"
#include "couchrepd/doc_key.h"

namespace couchrepd::cluster {

using namespace std::chrono_literals;

struct Timing {
  Duration heartbeat = 5s;   // how often a member writes its heartbeat and renews its leases
  Duration lease_ttl = 30s;  // a heartbeat or lease unchanged this long is dead / free
};

using couchrepd::DocKey;

// The rendezvous score of a member for a document: FNV-1a (64 bit) over the
// member id, database and document id, NUL-separated, then splitmix64's
// finalizer to spread the bits. The same on every machine and build.
uint64_t RendezvousScore(std::string_view member, const DocKey& doc);

// The member with the highest score (ties, which need a 64-bit collision, go
// to the smaller id), or nullopt when there are no members.
std::optional<std::string> OwnerOf(const std::vector<std::string>& members, const DocKey& doc);

// The id of a lease document in the coordination database. Database names
// cannot contain ':', so the id is unambiguous.
std::string LeaseDocId(const DocKey& doc);
// The id of a member's heartbeat document.
std::string MemberDocId(std::string_view member);

// What this instance has seen of the members' heartbeat documents.
class Membership {
 public:
  Membership(std::string self, Timing timing) : self_(std::move(self)), timing_(timing) {}

  // A member's heartbeat document was seen with revision `rev`. Only a new
  // revision counts as a sign of life. True when the member was not live
  // before (new, or back after being dead): ownership must be recomputed.
  bool Seen(const std::string& member, const std::string& rev, TimePoint now);
  // A member's heartbeat document was deleted (it stopped cleanly).
  void Gone(const std::string& member);

  // The live members, sorted; this instance is always one of them.
  std::vector<std::string> Live(TimePoint now) const;

  struct Member {
    std::string id;
    TimePoint last_change;  // when this instance last saw its document change
    bool live = false;
    bool self = false;
  };
  std::vector<Member> Members(TimePoint now) const;

  // How long `member` has been dead: nullopt while live (this instance is),
  // Duration::max() when it is not known (never seen, or its heartbeat
  // document is gone).
  std::optional<Duration> DeadFor(const std::string& member, TimePoint now) const;
  const Timing& timing() const { return timing_; }

  // Members (never this instance) whose document has not changed for
  // `age`, with its revision: their heartbeat documents may be deleted so
  // that a member that died for good (kill -9, a lost machine; each restart
  // with the default id is a new member) does not stay listed forever.
  std::vector<std::pair<std::string, std::string>> Stale(TimePoint now, Duration age) const;

 private:
  struct Heartbeat {
    std::string rev;
    TimePoint last_change;
  };
  bool IsLive(const Heartbeat& s, TimePoint now) const { return now - s.last_change < timing_.lease_ttl; }

  std::string self_;
  Timing timing_;
  std::map<std::string, Heartbeat> members_;
};

// The id of a replication's job lease document.
std::string JobLeaseDocId(std::string_view job_id);

// What this instance has seen of job lease documents: which member runs
// which replication, for which document.
class JobBook {
 public:
  struct Lease {
    std::string holder;  // "" = given back
    DocKey doc;          // the document it runs for
    std::string rev;
  };
  void Seen(const std::string& job_id, const std::string& holder, const DocKey& doc,
            const std::string& rev);
  void Missing(const std::string& job_id);  // deleted: forgotten
  // nullptr when never seen or deleted.
  const Lease* Find(const std::string& job_id) const;
  // Job leases per holder (given-back ones not counted).
  std::map<std::string, int> CountByHolder() const;

 private:
  std::map<std::string, Lease> leases_;
};

// Whether document `doc` may run its replication (whose job lease is
// `lease`, nullptr when never seen) on this instance:
enum class ClaimVerdict {
  kMine,       // this instance holds it for `doc` already: run
  kTake,       // free, given back, or its holder is dead: take it (conditional write), then run
  kWait,       // another live member runs it for the same document (it moved here and
               // the old owner has not given it back yet): ask again later
  kElsewhere,  // another member runs it for another document: `doc` is a duplicate
};
// A dead holder's lease for another document that still exists is left to
// that document's new owner for one more lease_ttl, so that the triggering
// document keeps the replication after a failover; then anyone may take it.
// `docs`: the replication documents that exist.
ClaimVerdict JudgeClaim(const JobBook::Lease* lease, const DocKey& doc, const std::string& self,
                        const Membership& members, const std::set<DocKey>& docs, TimePoint now);

// What this instance has seen of lease documents (its own and others').
class LeaseBook {
 public:
  // A lease document seen: its holder ("" = released) and revision.
  void Seen(const DocKey& doc, const std::string& holder, const std::string& rev);
  // The lease document does not exist (deleted): forgotten, like one never
  // seen. Documents come and go, and their leases with them.
  void Missing(const DocKey& doc);

  enum class Verdict {
    kFree,         // never seen, deleted or released: create or update it (a
                   // conflict tells when it exists after all)
    kMine,         // already held by `self`
    kHeld,         // another member holds it and is live
    kExpired,      // another member holds it but is dead (or unknown): take it
  };
  // `live`: the live members, sorted (Membership::Live).
  Verdict Judge(const DocKey& doc, const std::string& self, const std::vector<std::string>& live) const;
  // The revision last seen (for the conditional update that takes it).
  std::optional<std::string> Rev(const DocKey& doc) const;
  std::optional<std::string> Holder(const DocKey& doc) const;
  // Leases per live holder.
  std::map<std::string, int> CountByHolder(const std::vector<std::string>& live) const;
  // How many lease documents are remembered.
  size_t Size() const { return leases_.size(); }

 private:
  struct Lease {
    std::string holder;
    std::string rev;
  };
  std::map<DocKey, Lease> leases_;  // the existing lease documents
};

// The leases this instance holds and when each was last written.
class OwnLeases {
 public:
  explicit OwnLeases(Timing timing) : timing_(timing) {}

  // Taken (its write sent) at `now`. It counts from the last heartbeat that
  // landed, not from the take: the others judge a lease by its holder's
  // heartbeat, however long the take's answer took (from `now` before the
  // first heartbeat).
  void Written(const DocKey& doc, TimePoint now) {
    last_written_[doc] = last_renewal_ ? *last_renewal_ : now;
  }
  // This member's heartbeat, sent at `now`, landed: every lease held is
  // renewed with it.
  void Renewed(TimePoint now);
  void Released(const DocKey& doc) { last_written_.erase(doc); }
  bool Holds(const DocKey& doc) const { return last_written_.count(doc) != 0; }
  std::set<DocKey> Held() const;

  // The leases last renewed so long ago that, without a heartbeat now,
  // another member could judge this one dead before its next heartbeat:
  // their jobs must stop (after a checkpoint attempt) and the leases count
  // as lost.
  // The margin is two heartbeats, so a job stops at least one heartbeat
  // before its lease can be taken.
  std::vector<DocKey> MustStop(TimePoint now) const;

 private:
  Timing timing_;
  std::optional<TimePoint> last_renewal_;  // when the last heartbeat that landed was sent
  std::map<DocKey, TimePoint> last_written_;
};

// What to do with this instance's jobs given the live members: take the
// documents it owns and does not hold, release the ones it holds that now
// belong to another live member (after checkpointing their jobs).
struct Assignment {
  std::vector<DocKey> take;
  std::vector<DocKey> release;
};
Assignment Reconcile(const std::string& self, const std::vector<std::string>& live,
                     const std::set<DocKey>& docs, const std::set<DocKey>& held);

// What the status API shows at /_cluster: the members this instance sees,
// their last heartbeats and how many documents each owns.
struct ClusterView {
  std::string self;
  std::string database;
  struct Member {
    std::string id;
    double last_heartbeat_unix = 0;  // when this instance last saw it change
    bool live = false;
    bool self = false;
    int owns = 0;    // documents it wins by rendezvous hashing (over the live members)
    int leases = 0;  // leases it holds (renewed within lease_ttl)
    int jobs = 0;    // job leases it holds: replications it runs
  };
  std::vector<Member> members;  // sorted by id
  int documents = 0;            // replication documents known
  int leases_held = 0;          // by this instance
  int job_leases_held = 0;      // by this instance
  int duplicates_elsewhere = 0; // replications whose document here waits for another instance
  uint64_t lease_conflicts = 0; // takes or renewals answered 409 (since start)
  uint64_t leases_lost = 0;     // stopped because a renewal failed or was too late
  std::string error;            // the last coordination failure, "" while fine
};

}  // namespace couchrepd::cluster

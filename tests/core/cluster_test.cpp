#include "couchrepd/cluster.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace couchrepd;
using namespace couchrepd::cluster;
using namespace std::chrono_literals;

namespace {

TimePoint At(Duration d) { return TimePoint{} + d; }

std::vector<DocKey> Docs(int n) {
  std::vector<DocKey> out;
  for (int i = 0; i < n; ++i) out.push_back({"_replicator", "rep-" + std::to_string(i)});
  return out;
}

std::map<std::string, int> Spread(const std::vector<std::string>& members,
                                  const std::vector<DocKey>& docs) {
  std::map<std::string, int> count;
  for (const auto& d : docs) ++count[*OwnerOf(members, d)];
  return count;
}

}  // namespace

TEST_CASE("cluster: the rendezvous score is fixed by its inputs") {
  DocKey d{"_replicator", "a"};
  CHECK(RendezvousScore("m1", d) == RendezvousScore("m1", d));
  CHECK(RendezvousScore("m1", d) != RendezvousScore("m2", d));
  CHECK(RendezvousScore("m1", d) != RendezvousScore("m1", DocKey{"_replicator", "b"}));
  // The parts are separated: moving a character from one part to the next changes it.
  CHECK(RendezvousScore("m1", DocKey{"ab", "c"}) != RendezvousScore("m1", DocKey{"a", "bc"}));
  CHECK(RendezvousScore("m", DocKey{"1x", "y"}) != RendezvousScore("m1", DocKey{"x", "y"}));
  // Pinned (values from an independent Python FNV-1a + splitmix64): instances of different
  // builds and machines must agree, so the function may never change.
  CHECK(RendezvousScore("", DocKey{"", ""}) == 0x7bc210046bd616ccull);
  CHECK(RendezvousScore("couchrepd-1", DocKey{"_replicator", "rep-0"}) == 0x5de24ba178a56abbull);
}

TEST_CASE("cluster: every member computes the same owner, whatever the order it lists members in") {
  std::vector<std::string> a{"m1", "m2", "m3"};
  std::vector<std::string> b{"m3", "m1", "m2"};
  for (const auto& d : Docs(200)) CHECK(*OwnerOf(a, d) == *OwnerOf(b, d));
  CHECK_FALSE(OwnerOf({}, DocKey{"_replicator", "x"}).has_value());
  CHECK(*OwnerOf({"only"}, DocKey{"_replicator", "x"}) == "only");
}

TEST_CASE("cluster: 3,000 documents over 3 and 4 members spread within ±10 % of even") {
  auto docs = Docs(3000);
  for (const auto& members : {std::vector<std::string>{"host-a:101", "host-b:202", "host-c:303"},
                              std::vector<std::string>{"m1", "m2", "m3", "m4"}}) {
    auto count = Spread(members, docs);
    const double even = 3000.0 / static_cast<double>(members.size());
    for (const auto& m : members) {
      CAPTURE(m);
      CHECK(count[m] > even * 0.9);
      CHECK(count[m] < even * 1.1);
    }
  }
}

TEST_CASE("cluster: a member joining takes only documents it wins; one leaving frees only its own") {
  auto docs = Docs(2000);
  std::vector<std::string> three{"m1", "m2", "m3"};
  std::vector<std::string> four{"m1", "m2", "m3", "m4"};
  int moved = 0;
  for (const auto& d : docs) {
    auto before = *OwnerOf(three, d);
    auto after = *OwnerOf(four, d);
    if (before != after) {
      ++moved;
      CHECK(after == "m4");  // nothing moves between the old members
    }
  }
  CHECK(moved > 2000 / 4 * 0.85);
  CHECK(moved < 2000 / 4 * 1.15);
  std::vector<std::string> without_m2{"m1", "m3"};
  for (const auto& d : docs) {
    auto before = *OwnerOf(three, d);
    if (before != "m2") CHECK(*OwnerOf(without_m2, d) == before);
  }
}

TEST_CASE("cluster: lease and member document ids") {
  CHECK(LeaseDocId({"_replicator", "a:b"}) == "lease:_replicator:a:b");
  CHECK(LeaseDocId({"x/_replicator", "a"}) == "lease:x/_replicator:a");
  CHECK(MemberDocId("host:42") == "member:host:42");
}

TEST_CASE("cluster membership: only a new revision is a sign of life, judged by the own clock") {
  Timing t{5s, 30s};
  Membership m("self", t);
  CHECK(m.Live(At(0s)) == std::vector<std::string>{"self"});
  CHECK(m.Seen("b", "1-x", At(0s)));       // new member
  CHECK_FALSE(m.Seen("b", "1-x", At(5s)));  // the same revision again: no news
  CHECK(m.Live(At(29s)) == std::vector<std::string>{"b", "self"});
  // Seen again and again with the same revision: still dead at 30 s after its last change.
  CHECK_FALSE(m.Seen("b", "1-x", At(29s)));
  CHECK(m.Live(At(30s)) == std::vector<std::string>{"self"});
  // A new revision brings it back, and that is news.
  CHECK(m.Seen("b", "2-y", At(40s)));
  CHECK_FALSE(m.Seen("b", "3-z", At(45s)));  // renewed while live: no news
  CHECK(m.Live(At(74s)) == std::vector<std::string>{"b", "self"});
  CHECK(m.Live(At(75s)) == std::vector<std::string>{"self"});
  // Its document deleted: gone at once.
  m.Seen("c", "1-c", At(75s));
  m.Gone("c");
  CHECK(m.Live(At(76s)) == std::vector<std::string>{"self"});
  // The instance itself is live whatever it has seen of its own document.
  m.Seen("self", "1-s", At(0s));
  CHECK(m.Live(At(1h)) == std::vector<std::string>{"self"});
  auto members = m.Members(At(1h));
  REQUIRE(members.size() == 2);
  CHECK(members[0].id == "b");
  CHECK_FALSE(members[0].live);
  CHECK(members[1].self);
  CHECK(members[1].live);
}

TEST_CASE("cluster leases: free, mine, held while its holder is live, expired once the holder is dead") {
  LeaseBook book;
  DocKey d{"_replicator", "r"};
  const std::vector<std::string> with_other{"me", "other"};
  const std::vector<std::string> alone{"me"};
  // Never seen: free (a conflict on taking it tells when it exists after all).
  CHECK(book.Judge(d, "me", with_other) == LeaseBook::Verdict::kFree);
  CHECK_FALSE(book.Rev(d).has_value());
  book.Seen(d, "other", "1-a");
  CHECK(book.Judge(d, "me", with_other) == LeaseBook::Verdict::kHeld);
  CHECK(*book.Holder(d) == "other");
  // Its holder's heartbeat went stale (Membership no longer lists it): free to take.
  CHECK(book.Judge(d, "me", alone) == LeaseBook::Verdict::kExpired);
  CHECK(*book.Rev(d) == "1-a");
  // Released: free for anyone, at once.
  book.Seen(d, "", "2-c");
  CHECK(book.Judge(d, "me", with_other) == LeaseBook::Verdict::kFree);
  book.Seen(d, "me", "3-d");
  CHECK(book.Judge(d, "me", alone) == LeaseBook::Verdict::kMine);
  // Deleted: free.
  book.Missing(d);
  CHECK(book.Judge(d, "me", with_other) == LeaseBook::Verdict::kFree);
}

TEST_CASE("cluster leases: a deleted lease is forgotten, so memory follows the existing leases") {
  // Documents come and go: each deleted document's lease is deleted with it.
  LeaseBook book;
  for (int i = 0; i < 1000; ++i) book.Seen(DocKey{"_replicator", "r" + std::to_string(i)}, "me", "1-a");
  CHECK(book.Size() == 1000);
  for (int i = 0; i < 1000; ++i) book.Missing(DocKey{"_replicator", "r" + std::to_string(i)});
  CHECK(book.Size() == 0);
  // A forgotten lease is free to take (created anew, without a revision).
  DocKey d{"_replicator", "r7"};
  CHECK(book.Judge(d, "me", {"me", "other"}) == LeaseBook::Verdict::kFree);
  CHECK_FALSE(book.Rev(d).has_value());
  CHECK_FALSE(book.Holder(d).has_value());
  CHECK(book.CountByHolder({"me"}).empty());
}

TEST_CASE("cluster membership: members dead for long are stale (their documents may go); never this instance") {
  Timing t{5s, 30s};
  Membership m("self", t);
  m.Seen("self", "1-s", At(0s));
  m.Seen("old", "4-o", At(0s));
  m.Seen("young", "1-y", At(0s));
  m.Seen("young", "2-y", At(250s));
  CHECK(m.Stale(At(299s), 300s).empty());
  CHECK(m.Stale(At(300s), 300s) == std::vector<std::pair<std::string, std::string>>{{"old", "4-o"}});
  CHECK(m.Stale(At(550s), 300s).size() == 2);
  m.Gone("old");
  CHECK(m.Stale(At(550s), 300s) == std::vector<std::pair<std::string, std::string>>{{"young", "2-y"}});
}

TEST_CASE("cluster leases: counted per live holder, not once it is dead or released") {
  LeaseBook book;
  book.Seen({"_replicator", "a"}, "one", "1-a");
  book.Seen({"_replicator", "b"}, "one", "1-b");
  book.Seen({"_replicator", "c"}, "two", "1-c");
  book.Seen({"_replicator", "d"}, "", "2-d");
  book.Missing({"_replicator", "e"});
  CHECK(book.CountByHolder({"one", "two"}) == std::map<std::string, int>{{"one", 2}, {"two", 1}});
  CHECK(book.CountByHolder({"two"}) == std::map<std::string, int>{{"two", 1}});
  CHECK(book.CountByHolder({}).empty());
}

TEST_CASE("cluster leases: a race for one lease has one winner (the conditional write decides)") {
  // Both saw the lease of a dead member at the same revision; each writes with that
  // revision. The server accepts the first and answers 409 to the second, which reads the
  // lease again and sees it held by a live member.
  LeaseBook a, b;
  DocKey d{"_replicator", "r"};
  a.Seen(d, "dead", "5-x");
  b.Seen(d, "dead", "5-x");
  CHECK(a.Judge(d, "a", {"a", "b"}) == LeaseBook::Verdict::kExpired);
  CHECK(b.Judge(d, "b", {"a", "b"}) == LeaseBook::Verdict::kExpired);
  CHECK(*a.Rev(d) == *b.Rev(d));  // both would write on 5-x; the server takes one
  a.Seen(d, "a", "6-a");  // a's write won
  b.Seen(d, "a", "6-a");  // b got 409 and read it again
  CHECK(a.Judge(d, "a", {"a", "b"}) == LeaseBook::Verdict::kMine);
  CHECK(b.Judge(d, "b", {"a", "b"}) == LeaseBook::Verdict::kHeld);
}

TEST_CASE("cluster own leases: the heartbeat renews them all; jobs stop two heartbeats before the member could be judged dead") {
  Timing t{5s, 30s};
  OwnLeases own(t);
  DocKey d1{"_replicator", "1"}, d2{"_replicator", "2"};
  own.Written(d1, At(0s));
  own.Written(d2, At(3s));
  own.Renewed(At(5s));  // a heartbeat landed: both count from 5 s
  CHECK(own.MustStop(At(24s)).empty());
  CHECK(own.MustStop(At(25s)) == std::vector<DocKey>{d1, d2});  // 5 s + 30 s - 2 × 5 s
  // A lease taken after the last heartbeat counts from that heartbeat (the others
  // judge it by the holder's heartbeat), even when the take's answer came late.
  DocKey d3{"_replicator", "3"};
  own.Written(d3, At(8s));
  CHECK(own.MustStop(At(24s)).empty());
  CHECK(own.MustStop(At(25s)).size() == 3);
  // Before any heartbeat landed, a lease counts from its take.
  OwnLeases fresh(t);
  fresh.Written(d1, At(8s));
  CHECK(fresh.MustStop(At(27s)).empty());
  CHECK(fresh.MustStop(At(28s)) == std::vector<DocKey>{d1});
  // Stopped before anyone else may take them: another member judges this one dead
  // lease_ttl after it last saw its heartbeat change, no earlier than when it was written.
  Membership other("them", t);
  other.Seen("me", "7-h", At(5s));
  CHECK(other.Live(At(25s)) == std::vector<std::string>{"me", "them"});
  CHECK(other.Live(At(35s)) == std::vector<std::string>{"them"});
  own.Released(d1);
  CHECK_FALSE(own.Holds(d1));
  CHECK(own.Held() == std::set<DocKey>{d2, d3});
  own.Renewed(At(40s));
  CHECK(own.MustStop(At(59s)).empty());
}

TEST_CASE("cluster reconcile: take what is mine and not held, release what moved or is gone") {
  auto docs = Docs(300);
  std::set<DocKey> all(docs.begin(), docs.end());
  std::vector<std::string> two{"a", "b"};
  std::set<DocKey> held;
  auto first = Reconcile("a", two, all, held);
  CHECK(first.release.empty());
  for (const auto& d : first.take) CHECK(*OwnerOf(two, d) == "a");
  held.insert(first.take.begin(), first.take.end());
  CHECK(Reconcile("a", two, all, held).take.empty());
  // A third member joins: a releases exactly the documents c wins, takes nothing.
  std::vector<std::string> three{"a", "b", "c"};
  auto after = Reconcile("a", three, all, held);
  CHECK(after.take.empty());
  CHECK_FALSE(after.release.empty());
  for (const auto& d : after.release) CHECK(*OwnerOf(three, d) == "c");
  // b dies: a takes the documents b held that a now wins.
  std::vector<std::string> a_and_c{"a", "c"};
  for (const auto& d : after.release) held.erase(d);
  auto takeover = Reconcile("a", a_and_c, all, held);
  CHECK(takeover.release.empty());
  for (const auto& d : takeover.take) {
    CHECK(*OwnerOf(three, d) == "b");
    CHECK(*OwnerOf(a_and_c, d) == "a");
  }
  // A document deleted: its lease is released.
  std::set<DocKey> fewer = all;
  DocKey gone = *held.begin();
  fewer.erase(gone);
  auto deleted = Reconcile("a", three, fewer, held);
  CHECK(std::count(deleted.release.begin(), deleted.release.end(), gone) == 1);
}

TEST_CASE("cluster membership: how long a member has been dead, by this instance's clock") {
  Timing t{5s, 30s};
  Membership m("self", t);
  m.Seen("b", "1-b", At(10s));
  CHECK_FALSE(m.DeadFor("self", At(1h)).has_value());
  CHECK_FALSE(m.DeadFor("b", At(39s)).has_value());
  CHECK(m.DeadFor("b", At(40s)) == Duration::zero());  // dead from now, for no time yet
  CHECK(m.DeadFor("b", At(55s)) == Duration(15s));
  CHECK(m.DeadFor("nobody", At(0s)) == Duration::max());
  m.Gone("b");
  CHECK(m.DeadFor("b", At(55s)) == Duration::max());
}

TEST_CASE("cluster job leases: one replication runs for one document; the others are duplicates") {
  Timing t{5s, 30s};
  Membership m("me", t);
  m.Seen("other", "1-o", At(0s));
  const DocKey x{"_replicator", "x"}, y{"_replicator", "y"};
  const std::set<DocKey> docs{x, y};
  JobBook book;
  const std::string id = "abc+continuous";
  CHECK(JobLeaseDocId(id) == "job:abc+continuous");

  // Never seen, or given back, or deleted: take it.
  CHECK(JudgeClaim(book.Find(id), y, "me", m, docs, At(1s)) == ClaimVerdict::kTake);
  book.Seen(id, "", x, "2-r");
  CHECK(JudgeClaim(book.Find(id), y, "me", m, docs, At(1s)) == ClaimVerdict::kTake);
  book.Missing(id);
  CHECK(book.Find(id) == nullptr);  // deleted leases are not kept
  CHECK(JudgeClaim(book.Find(id), y, "me", m, docs, At(1s)) == ClaimVerdict::kTake);

  // Another live member runs it for x: y is a duplicate; x itself (moved here) waits for it.
  book.Seen(id, "other", x, "3-o");
  CHECK(JudgeClaim(book.Find(id), y, "me", m, docs, At(1s)) == ClaimVerdict::kElsewhere);
  CHECK(JudgeClaim(book.Find(id), x, "me", m, docs, At(1s)) == ClaimVerdict::kWait);
  CHECK(book.CountByHolder() == std::map<std::string, int>{{"other", 1}});

  // Its holder died at 30 s: x's new owner takes it at once; y waits one more lease_ttl
  // (x keeps its replication after a failover) unless x is gone.
  CHECK(JudgeClaim(book.Find(id), x, "me", m, docs, At(30s)) == ClaimVerdict::kTake);
  CHECK(JudgeClaim(book.Find(id), y, "me", m, docs, At(30s)) == ClaimVerdict::kElsewhere);
  CHECK(JudgeClaim(book.Find(id), y, "me", m, docs, At(59s)) == ClaimVerdict::kElsewhere);
  CHECK(JudgeClaim(book.Find(id), y, "me", m, docs, At(60s)) == ClaimVerdict::kTake);
  CHECK(JudgeClaim(book.Find(id), y, "me", m, {y}, At(31s)) == ClaimVerdict::kTake);
  // A holder that left cleanly (heartbeat document deleted) gave it back; if not, take it.
  m.Gone("other");
  CHECK(JudgeClaim(book.Find(id), y, "me", m, docs, At(1s)) == ClaimVerdict::kTake);

  // Held by this instance: for the same document it runs; for another (a restart under
  // the same instance id, or a local duplicate taking over) it is rewritten.
  book.Seen(id, "me", x, "4-m");
  CHECK(JudgeClaim(book.Find(id), x, "me", m, docs, At(1s)) == ClaimVerdict::kMine);
  CHECK(JudgeClaim(book.Find(id), y, "me", m, docs, At(1s)) == ClaimVerdict::kTake);
  CHECK(book.CountByHolder() == std::map<std::string, int>{{"me", 1}});
}

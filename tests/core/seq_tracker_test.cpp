// Tests for the through-sequence tracker (SPEC §4.2): a checkpoint never
// skips a change whose batch is not done, whatever order batches finish in.
#include "couchrepd/seq_tracker.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace couchrepd {
namespace {

// Opaque CouchDB 2+/3 style sequence for batch n.
std::string Seq(int n) { return "\"" + std::to_string(n) + "-g1AAAA\""; }

TEST_CASE("before any batch the through seq is the start seq") {
  SeqTracker t(R"("7-g1AAAA")");
  CHECK(t.through_seq() == R"("7-g1AAAA")");
  CHECK(t.through_tag() == 0);
  CHECK(t.last_seq_seen() == R"("7-g1AAAA")");
  CHECK(t.highest_seq_done() == R"("7-g1AAAA")");
  CHECK(t.pending_batches() == 0);
  CHECK(t.idle());
  CHECK(SeqTracker().through_seq() == "0");
}

TEST_CASE("batches completed in feed order advance one by one") {
  SeqTracker t;
  for (int i = 1; i <= 3; ++i) CHECK(t.Register(Seq(i)) == static_cast<SeqTracker::Tag>(i));
  CHECK(t.pending_batches() == 3);
  CHECK(t.last_seq_seen() == Seq(3));
  for (int i = 1; i <= 3; ++i) {
    CHECK(t.Complete(i));
    CHECK(t.through_seq() == Seq(i));
    CHECK(t.through_tag() == static_cast<SeqTracker::Tag>(i));
  }
  CHECK(t.idle());
}

TEST_CASE("out-of-order completions: 3,1,2,5,4") {
  SeqTracker t("0");
  for (int i = 1; i <= 5; ++i) t.Register(Seq(i));
  struct Step {
    SeqTracker::Tag complete;
    std::string through;
    std::string highest_done;
    size_t pending;
  };
  const Step steps[] = {
      {3, "0", Seq(3), 4},     // 1 and 2 still running
      {1, Seq(1), Seq(3), 3},  // 2 still running
      {2, Seq(3), Seq(3), 2},  // 1..3 done
      {5, Seq(3), Seq(5), 1},  // 4 still running
      {4, Seq(5), Seq(5), 0},  // all done
  };
  for (const Step& s : steps) {
    CAPTURE(s.complete);
    CHECK(t.Complete(s.complete));
    CHECK(t.through_seq() == s.through);
    CHECK(t.highest_seq_done() == s.highest_done);
    CHECK(t.pending_batches() == s.pending);
    CHECK(t.last_seq_seen() == Seq(5));
  }
  CHECK(t.through_tag() == 5);
}

TEST_CASE("unknown and repeated completions change nothing") {
  SeqTracker t;
  t.Register(Seq(1));
  t.Register(Seq(2));
  CHECK_FALSE(t.Complete(0));
  CHECK_FALSE(t.Complete(3));
  CHECK_FALSE(t.Complete(99));
  CHECK(t.Complete(2));
  CHECK_FALSE(t.Complete(2));  // done, still waiting behind 1
  CHECK(t.Complete(1));
  CHECK_FALSE(t.Complete(1));  // done and passed
  CHECK(t.through_seq() == Seq(2));
  CHECK(t.pending_batches() == 0);
}

TEST_CASE("sequences are kept as raw text, never compared") {
  SeqTracker t("0");
  // Shard-interleaved CouchDB seqs are not ordered by their leading number.
  t.Register(R"("12-g1AAAA")");
  t.Register(R"("9-g1AAAB")");
  t.Register("[3, \"x\"]");
  CHECK(t.Complete(1));
  CHECK(t.Complete(2));
  CHECK(t.through_seq() == R"("9-g1AAAB")");
  CHECK(t.highest_seq_done() == R"("9-g1AAAB")");
  CHECK(t.Complete(3));
  CHECK(t.through_seq() == "[3, \"x\"]");
}

TEST_CASE("random completion orders: through seq is the longest done prefix") {
  std::mt19937 rng(20261123);
  for (int round = 0; round < 20; ++round) {
    const int n = 1 + static_cast<int>(rng() % 500);
    SeqTracker t("0");
    std::vector<int> order;
    for (int i = 1; i <= n; ++i) {
      t.Register(Seq(i));
      order.push_back(i);
    }
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<bool> done(n + 1, false);
    int prefix = 0;
    int highest = 0;
    for (size_t k = 0; k < order.size(); ++k) {
      REQUIRE(t.Complete(order[k]));
      done[order[k]] = true;
      highest = std::max(highest, order[k]);
      while (prefix < n && done[prefix + 1]) ++prefix;
      REQUIRE(t.through_seq() == (prefix == 0 ? std::string("0") : Seq(prefix)));
      REQUIRE(t.through_tag() == static_cast<SeqTracker::Tag>(prefix));
      REQUIRE(t.highest_seq_done() == Seq(highest));
      REQUIRE(t.pending_batches() == order.size() - k - 1);
    }
    CHECK(t.through_seq() == Seq(n));
  }
}

}  // namespace
}  // namespace couchrepd

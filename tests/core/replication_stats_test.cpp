// Tests for replication statistics: summing, restoring, and the JSON shapes
// of `_replication_stats` (SPEC §2.1), the status info (SPEC §4.5) and the
// CLI summary.
#include "couchrepd/replication_stats.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include "couchrepd/json.h"

namespace couchrepd {
namespace {

constexpr const char* kSeq =
    R"("9-g1AAAACbeJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQVCJDUv3___-zMpgT2XKBAuyJKUnJRsmW2DTgMSaPBUgyNACp_1DTmMGmWZoZmFukpWLTlwUATIIowA")";

TEST_CASE("Add sums field by field") {
  ReplicationStats a{1, 2, 3, 4, 5};
  a.Add(ReplicationStats{10, 20, 30, 40, 50});
  CHECK(a == ReplicationStats{11, 22, 33, 44, 55});
  CHECK(ReplicationStats{1, 1, 1, 1, 1} + ReplicationStats{1, 0, 2, 0, 3} ==
        ReplicationStats{2, 1, 3, 1, 4});
}

TEST_CASE("Add saturates instead of overflowing") {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  ReplicationStats a{kMax - 1, kMin + 1, 0, 0, 0};
  a.Add(ReplicationStats{5, -5, 1, 0, 0});
  CHECK(a == ReplicationStats{kMax, kMin, 1, 0, 0});
}

TEST_CASE("MaxWith restores counters field by field") {
  ReplicationStats kept{10, 2, 30, 4, 0};
  kept.MaxWith(ReplicationStats{5, 6, 7, 8, -1});
  CHECK(kept == ReplicationStats{10, 6, 30, 8, 0});
}

ReplicationProgress RecordedProgress() {
  ReplicationProgress p;
  p.stats = ReplicationStats{6, 6, 6, 6, 0};
  p.checkpointed_source_seq = kSeq;
  p.source_seq = kSeq;
  p.through_seq = kSeq;
  p.start_time = 1795448147;  // 2026-11-23T15:35:47Z
  return p;
}

TEST_CASE("_replication_stats has CouchDB 3.4's shape") {
  // Recording 65 minus CouchDB's bulk_get_docs/bulk_get_attempts.
  CHECK(RenderReplicationStatsField(RecordedProgress()) ==
        std::string(R"({"revisions_checked":6,"missing_revisions_found":6,"docs_read":6,)"
                    R"("docs_written":6,"changes_pending":null,"doc_write_failures":0,)"
                    R"("checkpointed_source_seq":)") +
            kSeq + R"(,"start_time":"2026-11-23T15:35:47Z"})");
}

TEST_CASE("progress info and CLI summary") {
  ReplicationProgress p;
  p.stats = ReplicationStats{113, 112, 111, 110, 1};
  p.changes_pending = 7;
  p.checkpointed_source_seq = "100";
  p.source_seq = "113";
  p.through_seq = "";  // unknown text is rendered as 0, never as invalid JSON
  p.start_time = 1795444676;
  const std::string members =
      R"("revisions_checked":113,"missing_revisions_found":112,"docs_read":111,)"
      R"("docs_written":110,"doc_write_failures":1,"changes_pending":7,)"
      R"("checkpointed_source_seq":100,"source_seq":113,"through_seq":0)";
  CHECK(RenderProgressInfo(p) == "{" + members + "}");
  CHECK(RenderStatsSummary(p) == "{" + members + R"(,"start_time":"2026-11-23T14:37:56Z"})");

  JsonWriter w;
  w.BeginObject().Key("ok").Bool(true);
  WriteStatsCounters(w, p.stats);
  w.EndObject();
  CHECK(w.str() ==
        R"({"ok":true,"revisions_checked":113,"missing_revisions_found":112,"docs_read":111,)"
        R"("docs_written":110,"doc_write_failures":1})");
}

TEST_CASE("a fresh progress renders zeros") {
  CHECK(RenderProgressInfo(ReplicationProgress{}) ==
        R"({"revisions_checked":0,"missing_revisions_found":0,"docs_read":0,"docs_written":0,)"
        R"("doc_write_failures":0,"changes_pending":null,"checkpointed_source_seq":0,)"
        R"("source_seq":0,"through_seq":0})");
}

}  // namespace
}  // namespace couchrepd

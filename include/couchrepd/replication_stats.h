// Replication statistics: what a job has done so far.
//
// A job counts revisions it asked the target about (revisions_checked), the
// ones the target lacked (missing_revisions_found), revisions fetched from the
// source (docs_read), written to the target (docs_written) and refused by it
// (doc_write_failures). Workers report per-batch increments that the job sums
// with Add; at start the job restores the counters of an earlier run of the
// same replication from the checkpoint history with MaxWith (as CouchDB does),
// so the numbers survive restarts (SPEC §4.5).
//
// ReplicationProgress adds the positions in the source's sequence and renders
// the JSON shapes users see: `_replication_stats` written into a completed
// replication document (SPEC §2.1), the `info` object of the status API
// (SPEC §4.5) and the `couchrepd replicate --json` summary. Sequences are
// opaque raw JSON text, emitted exactly as received.
//
// Plain values: no I/O, no clock, no locking; copy them between threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace couchrepd {

class JsonWriter;

struct ReplicationStats {
  int64_t revisions_checked = 0;        // revisions sent to target _revs_diff
  int64_t missing_revisions_found = 0;  // of those, revisions the target lacked
  int64_t docs_read = 0;                // revisions fetched from the source
  int64_t docs_written = 0;             // revisions the target accepted
  int64_t doc_write_failures = 0;       // revisions the target refused (401/403/413/415)

  // Adds `delta` field by field. Sums saturate at INT64_MAX/INT64_MIN instead
  // of overflowing (counters restored from a garbage checkpoint can be huge).
  ReplicationStats& Add(const ReplicationStats& delta);
  // Field-wise maximum: how counters restored from a checkpoint history are
  // merged with ones kept from an earlier run (CouchDB's max_stats).
  ReplicationStats& MaxWith(const ReplicationStats& other);

  friend bool operator==(const ReplicationStats&, const ReplicationStats&) = default;
};

// Field-wise saturating sum.
ReplicationStats operator+(ReplicationStats a, const ReplicationStats& b);

// A job's progress at one moment.
struct ReplicationProgress {
  ReplicationStats stats;
  // Changes left to process; nullopt when unknown (rendered as null, as
  // CouchDB does when it could not ask the source).
  std::optional<int64_t> changes_pending;
  // Raw JSON sequences. An empty string is rendered as 0 (CouchDB's lowest seq).
  std::string checkpointed_source_seq = "0";  // last seq written to the checkpoints
  std::string source_seq = "0";               // highest seq whose batch is done
  std::string through_seq = "0";              // seq the next checkpoint would record
  int64_t start_time = 0;                     // unix seconds the job started
};

// Writes the five counters as members of the object being written:
// "revisions_checked", "missing_revisions_found", "docs_read", "docs_written",
// "doc_write_failures".
void WriteStatsCounters(JsonWriter& w, const ReplicationStats& stats);

// Writes SPEC §4.5's fields as members of the object being written: the five
// counters, "changes_pending", "checkpointed_source_seq", "source_seq",
// "through_seq". For composing bigger objects (status API, CLI summary).
void WriteProgressMembers(JsonWriter& w, const ReplicationProgress& progress);

// `_replication_stats` of a completed replication document (SPEC §2.1), in
// CouchDB 3.4's member order:
//   {"revisions_checked":6,"missing_revisions_found":6,"docs_read":6,
//    "docs_written":6,"changes_pending":null,"doc_write_failures":0,
//    "checkpointed_source_seq":"9-g1AA...","start_time":"2026-11-23T15:35:47Z"}
// start_time is RFC 3339 UTC.
std::string RenderReplicationStatsField(const ReplicationProgress& progress);

// The status API's per-job `info` object: exactly WriteProgressMembers.
std::string RenderProgressInfo(const ReplicationProgress& progress);

// The `couchrepd replicate --json` summary: WriteProgressMembers plus
// "start_time" (RFC 3339 UTC).
std::string RenderStatsSummary(const ReplicationProgress& progress);

}  // namespace couchrepd

// Checkpoints: where a replication resumes (SPEC §4.1, §4.3).
//
// A job periodically writes the same document to `_local/<base id>` on both
// the source and the target, in CouchDB 3's format so that CouchDB's own
// replicator and couchrepd can resume from each other's checkpoints:
//
//   {"session_id":"<32 hex, one per job run>", "source_last_seq":<seq>,
//    "replication_id_version":4,
//    "history":[   // newest first, at most kMaxCheckpointHistory
//      {"session_id", "start_time", "end_time",       // RFC 1123 dates
//       "start_last_seq", "end_last_seq", "recorded_seq",
//       "missing_checked", "missing_found", "docs_read", "docs_written",
//       "doc_write_failures"}, ...]}
//
// At start both documents are read and compared (DecideStartSeq): a session
// recorded on both sides proves that both saw that checkpoint, so the job can
// resume from it. Sequences are opaque raw JSON text (`42`, `"12-g1AAA..."`):
// they are stored and emitted exactly as received and never compared by value.
//
// Everything here is pure (no I/O, no clock: times are unix seconds passed in).
// The caller reads and writes the documents and generates the session id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "couchrepd/replication_stats.h"
#include "couchrepd/result.h"

namespace couchrepd {

// History entries kept in a checkpoint document (CouchDB's ?MAX_HISTORY).
inline constexpr size_t kMaxCheckpointHistory = 50;
// The `replication_id_version` written (SPEC §3: CouchDB's v4 ids).
inline constexpr int64_t kCheckpointReplicationIdVersion = 4;

// One history entry: one checkpoint of one session (job run). Fields that were
// absent, or present with the wrong JSON type, are nullopt (counters: 0).
struct CheckpointHistoryEntry {
  std::optional<std::string> session_id;      // unescaped string
  std::optional<std::string> start_time;      // RFC 1123 text as stored
  std::optional<std::string> end_time;        // RFC 1123 text as stored
  std::optional<std::string> start_last_seq;  // raw JSON; a JSON null counts as absent
  std::optional<std::string> end_last_seq;    // raw JSON; idem
  std::optional<std::string> recorded_seq;    // raw JSON; idem
  // missing_checked -> revisions_checked, missing_found ->
  // missing_revisions_found, docs_read, docs_written, doc_write_failures.
  ReplicationStats stats;
  // Other members (CouchDB's bulk_get_docs, bulk_get_attempts, ...) as
  // {unescaped key, raw JSON value}, in document order. Rendered back after the
  // known members, so an entry written by someone else survives our rewrite.
  std::vector<std::pair<std::string, std::string>> extra_members;

  friend bool operator==(const CheckpointHistoryEntry&, const CheckpointHistoryEntry&) = default;
};

// A parsed checkpoint document.
struct CheckpointDoc {
  // `_rev` as stored (some servers want it back on the next PUT). Parse-only:
  // RenderCheckpointDoc takes the rev to send as a parameter.
  std::optional<std::string> rev;
  std::optional<std::string> session_id;       // unescaped string
  std::optional<std::string> source_last_seq;  // raw JSON; a JSON null counts as absent
  std::optional<int64_t> replication_id_version;
  // Newest first. Entries that are not JSON objects are dropped.
  std::vector<CheckpointHistoryEntry> history;

  friend bool operator==(const CheckpointDoc&, const CheckpointDoc&) = default;
};

// Parses the body of a `_local/<base>` document. Tolerant: missing members are
// fine and a member of the wrong type counts as absent; only a body that is
// not valid JSON (including invalid UTF-8 or nesting deeper than simdjson's
// limit) or not an object is an error (kPermanent, error "bad_checkpoint").
// The job then treats that side as having no checkpoint.
Result<CheckpointDoc> ParseCheckpointDoc(std::string_view json);

// Why DecideStartSeq chose what it chose.
enum class StartBasis {
  kNoCheckpoint,     // neither side has a checkpoint document
  kSameSession,      // both documents carry the same session_id
  kCommonHistory,    // a session was found in both histories
  kNoCommonHistory,  // documents differ and share no session (or one is missing)
};

struct StartDecision {
  StartBasis basis = StartBasis::kNoCheckpoint;
  // Raw JSON sequence to resume from. nullopt: start from the replication's
  // since_seq, or 0 (also when the matched record has no sequence).
  std::optional<std::string> start_seq;
  // The history entry resumed from: the source's newest entry for
  // kSameSession, the matched entry for kCommonHistory; nullopt otherwise.
  std::optional<CheckpointHistoryEntry> matched;
  // matched's counters (zero without a match), to merge with MaxWith into the
  // counters kept from an earlier run: statistics survive restarts (§4.5).
  ReplicationStats restored_stats;
  // One plain-words line for the job log, e.g. `resuming from session "ab12…"
  // (recorded on both sides) at "12-g1AAA…"` or `no common session in the
  // checkpoint histories: starting from since_seq or 0`. Values taken from
  // the documents are JSON-quoted and shortened.
  std::string explanation;
};

// The start decision of SPEC §4.1, following CouchDB 3's
// compare_replication_logs / compare_rep_history:
//   1. Both documents missing: no checkpoint (nullopt).
//   2. Both carry the same session_id: the source's source_last_seq.
//   3. Otherwise walk both histories in step, i = 0, 1, ...:
//      - if source[i]'s session is in target[i..], take source[i].recorded_seq;
//      - else if target[i]'s session is in source[i+1..], take
//        target[i].recorded_seq;
//      - when either list runs out: no common session (nullopt).
// A missing document has no session and an empty history. Entries without a
// session_id never match. One deliberate difference: CouchDB's
// `undefined == undefined` lets two documents that both lack session_id count
// as the same session; here an absent session_id never matches, so an
// unconfirmed source_last_seq is never trusted (two missing documents give the
// same result in both: start from since_seq or 0).
StartDecision DecideStartSeq(const std::optional<CheckpointDoc>& source,
                             const std::optional<CheckpointDoc>& target);

// What a new checkpoint records.
struct CheckpointUpdate {
  std::string session_id;       // this run's random 32-hex id (caller-generated)
  int64_t run_start_time = 0;   // unix seconds this run started
  int64_t now = 0;              // unix seconds of this checkpoint
  std::string start_seq = "0";  // raw JSON seq this run started from
  std::string recorded_seq;     // raw JSON through seq being checkpointed
  ReplicationStats stats;       // cumulative counters, including restored ones
};

// The next checkpoint document: session_id and source_last_seq (= the through
// seq) of this run, replication_id_version 4, and a history made of one entry
// for this checkpoint followed by `previous`'s history (normally the source's
// document as read at start, or the document last built), newest first, cut to
// kMaxCheckpointHistory entries.
//
// Repeated checkpoints of one session do not pile up: when `previous`'s newest
// entry belongs to `update.session_id`, the new entry replaces it. (CouchDB
// prepends one entry per checkpoint, so a long run can fill the 50 slots with
// itself and push out the earlier sessions that let the other side find a
// common ancestor.) Entries of earlier sessions are kept as they are, extra
// members included. The result has no rev (see RenderCheckpointDoc).
CheckpointDoc NextCheckpointDoc(const std::optional<CheckpointDoc>& previous,
                                const CheckpointUpdate& update);

// Compact JSON text of `doc` for `PUT <db>/_local/<base>`: "_rev" first when
// `rev` is given (the rev of the copy being replaced, on that side), then
// session_id, source_last_seq, replication_id_version, history; absent fields
// are omitted. No "_id": the URL names the document.
std::string RenderCheckpointDoc(const CheckpointDoc& doc,
                                std::optional<std::string_view> rev = std::nullopt);

// After a 409 on a checkpoint PUT the document is re-read; it "has the same
// content" (SPEC §4.3: counts as success) when its session_id and
// source_last_seq are present and equal (as text) to those of `written`.
bool SameCheckpointContent(const CheckpointDoc& stored, const CheckpointDoc& written);

// Date formatting from unix seconds, UTC. Times outside years 0000..9999 are
// clamped to that range (garbage never yields a malformed date).
// RFC 1123 / HTTP date, as in checkpoint histories: "Mon, 23 Nov 2026 15:31:02 GMT".
std::string FormatRfc1123(int64_t unix_seconds);
// RFC 3339 UTC without fractions, as in `_replication_state_time`:
// "2026-11-23T14:37:56Z".
std::string FormatRfc3339(int64_t unix_seconds);

}  // namespace couchrepd

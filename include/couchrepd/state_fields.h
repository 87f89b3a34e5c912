// State write-back into a replication document (SPEC §2.1), as pure text
// surgery on the document's JSON.
//
// couchrepd owns exactly five top-level fields of a replication document —
// the only `_replication_*` fields CouchDB 3.x accepts in a `_replicator`
// database. Everything else (unknown fields, `headers`, `auth`, `_id`,
// `_rev`, big numbers, string escapes, field order) is kept: values keep
// their exact bytes, keys their meaning (they are re-escaped minimally), and
// the whitespace between tokens is dropped. Pure and thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "couchrepd/doc_processor.h"

namespace couchrepd {

inline constexpr std::string_view kReplicationIdField = "_replication_id";
inline constexpr std::string_view kReplicationStateField = "_replication_state";
inline constexpr std::string_view kReplicationStateTimeField = "_replication_state_time";
inline constexpr std::string_view kReplicationStateReasonField = "_replication_state_reason";
inline constexpr std::string_view kReplicationStatsField = "_replication_stats";

// The document with `write` applied, or nullopt when nothing would change
// (then no PUT is needed). Also nullopt when `doc_json` is not a JSON object or
// is a deletion (`"_deleted": true`): a deleted document is never resurrected.
//
// Rules:
//   - `_replication_id` is set when write.replication_id is set.
//   - `_replication_state` is set when write.state is set.
//     `_replication_state_time` (FormatRfc3339(now_unix)) is set only when that
//     changes the stored state, or when the document has a state but no time.
//   - When write.state is set, the state decides the other two fields:
//       error/failed: `_replication_state_reason` = write.reason (when unset,
//                     a stored reason is kept);
//       otherwise:    the reason is removed;
//       completed:    `_replication_stats` = write.stats_json (when unset, the
//                     stored stats are kept);
//       otherwise:    the stats are removed (they describe a finished run only;
//                     CouchDB 3 does the same on triggered, error and failed).
//   - When write.state is unset, write.reason and write.stats_json are written
//     only if the stored state is error/failed, respectively completed.
//   - write.clear_reason removes `_replication_state_reason` whatever the
//     state, unless write.reason is set (a reason to write wins).
//   - write.stats_json must be a JSON object; anything else is not written.
//   - A field that already holds the value (strings compared unescaped,
//     objects after removing whitespace) is not a change. Fields present are
//     replaced in place; new ones are appended in the order id, state, time,
//     reason, stats. Duplicate keys of these five collapse into the first.
std::optional<std::string> ApplyStateWrite(std::string_view doc_json, const StateWrite& write,
                                           int64_t now_unix);

}  // namespace couchrepd

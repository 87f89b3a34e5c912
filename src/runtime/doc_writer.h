// DocWriter: the I/O side of state write-back (SPEC §2.1) and of the
// validation design document (SPEC §1.4), for one replicator database.
//
// WriteState re-reads the document, applies the write with ApplyStateWrite
// (which keeps every other field) and PUTs it with the revision it read. A
// document that is missing or deleted is left alone (never resurrected), and
// nothing is written when nothing would change. A 409 conflict (someone
// updated the document between the read and the write) is answered by
// reading it again and retrying after a short randomised backoff; this is a
// fourth, innermost retry loop beside the three of retry_policy.h, bounded by
// kStateWriteAttempts. Other errors (the request loop's retries are already
// spent, or a validation function refused the write) are returned to the
// caller, which logs them.
//
// Thread safety: stateless functions; safe to call concurrently for
// different documents (concurrent writes to one document just conflict and
// retry). They block the calling thread for the requests and backoff sleeps.
#pragma once

#include <functional>
#include <string>

#include "couchrepd/clock.h"
#include "couchrepd/couch_client.h"
#include "couchrepd/doc_processor.h"
#include "couchrepd/result.h"

namespace couchrepd {

// Attempts (read + write) of one state write before giving up on conflicts.
inline constexpr int kStateWriteAttempts = 10;
// Backoff before the retry after the n-th conflict (n = 0, 1, ...):
// kStateWriteBackoffInitial * 2^n, capped at kStateWriteBackoffMax, times a
// random factor in [1, 2) so that competing writers spread out.
inline constexpr Duration kStateWriteBackoffInitial = std::chrono::milliseconds(50);
inline constexpr Duration kStateWriteBackoffMax = std::chrono::seconds(2);
// Attempts of the design document installation (re-read at once on 409).
inline constexpr int kDesignDocAttempts = 5;

// The wait after the `conflicts`-th conflict (0-based), given random in [0, 1).
Duration StateWriteBackoff(int conflicts, double random);

// Writes `write` into document `doc_id` of `replicator_db` (a database
// client). OK also when the document is missing or deleted, or already holds
// the values. After kStateWriteAttempts conflicts: a temporary Error
// (http_status 409). `clock` provides the state time and the sleeps; `random`
// returns values in [0, 1).
Status WriteState(CouchClient& replicator_db, const std::string& doc_id, const StateWrite& write,
                  Clock& clock, const std::function<double()>& random);

// Installs or updates `_design/_replicator` in `replicator_db` when
// DesignDocNeedsUpdate says its content differs (no new revision otherwise).
// Fields someone else added to the design document are kept. Needs admin
// rights on the database.
Status EnsureReplicatorDesignDoc(CouchClient& replicator_db);

}  // namespace couchrepd

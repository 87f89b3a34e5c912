#include "doc_writer.h"

#include <algorithm>
#include <optional>

#include "couchrepd/replicator_ddoc.h"
#include "couchrepd/state_fields.h"

namespace couchrepd {

namespace {

constexpr int kConflict = 409;
constexpr int kNotFound = 404;

// The stored document, nullopt when it is missing or deleted.
Result<std::optional<std::string>> ReadDoc(CouchClient& db, std::string_view id) {
  auto got = db.GetDoc(id);
  if (got.ok()) return std::optional<std::string>(std::move(got.value()));
  if (got.error().http_status == kNotFound) return std::optional<std::string>();
  return got.error();
}

// A PUT answer as a Status (a 2xx answer with ok:false counts as a failure).
Status PutStatus(const Result<DocWriteResult>& put) {
  if (!put.ok()) return put.error();
  if (!put->ok) {
    int status = put->error == "conflict" ? kConflict : 0;
    return Error::Permanent(put->error, put->reason, status);
  }
  return OkStatus();
}

Error TooManyConflicts(std::string_view what, int attempts) {
  return Error::Temporary(
      "conflict",
      std::string(what) + ": still conflicting after " + std::to_string(attempts) + " attempts",
      kConflict);
}

}  // namespace

Duration StateWriteBackoff(int conflicts, double random) {
  Duration wait = kStateWriteBackoffInitial;
  for (int i = 0; i < conflicts && wait < kStateWriteBackoffMax; ++i) wait *= 2;
  wait = std::min(wait, kStateWriteBackoffMax);
  double factor = 1.0 + std::clamp(random, 0.0, 1.0);
  return Duration(static_cast<Duration::rep>(static_cast<double>(wait.count()) * factor));
}

Status WriteState(CouchClient& replicator_db, const std::string& doc_id, const StateWrite& write,
                  Clock& clock, const std::function<double()>& random) {
  for (int attempt = 0; attempt < kStateWriteAttempts; ++attempt) {
    if (attempt > 0) clock.SleepFor(StateWriteBackoff(attempt - 1, random()));
    auto current = ReadDoc(replicator_db, doc_id);
    if (!current.ok()) return current.error();
    if (!current.value()) return OkStatus();  // deleted meanwhile: never resurrect
    auto now = static_cast<int64_t>(clock.UnixSeconds());
    auto updated = ApplyStateWrite(**current, write, now);
    if (!updated) return OkStatus();  // nothing would change
    Status put = PutStatus(replicator_db.PutDoc(doc_id, *updated));
    if (put.ok() || put.error().http_status != kConflict) return put;
  }
  return TooManyConflicts("writing the state of " + doc_id, kStateWriteAttempts);
}

Status EnsureReplicatorDesignDoc(CouchClient& replicator_db) {
  for (int attempt = 0; attempt < kDesignDocAttempts; ++attempt) {
    auto current = ReadDoc(replicator_db, kReplicatorDesignDocId);
    if (!current.ok()) return current.error();
    std::string_view stored = current.value() ? std::string_view(**current) : std::string_view();
    if (!DesignDocNeedsUpdate(stored)) return OkStatus();
    Status put =
        PutStatus(replicator_db.PutDoc(kReplicatorDesignDocId, UpdatedReplicatorDesignDoc(stored)));
    if (put.ok() || put.error().http_status != kConflict) return put;
  }
  return TooManyConflicts("installing _design/_replicator", kDesignDocAttempts);
}

}  // namespace couchrepd

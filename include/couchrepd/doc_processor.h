// DocProcessor: what each replication document means, in the pure core
// (SPEC §1, §2).
//
// The engine feeds it every `_changes` row of the replicator databases and
// every job event; it answers with actions: compute a replication id (I/O the
// engine does, answered with OnIdComputed), add or remove a scheduler job,
// write `_replication_*` fields back into a document, retry a document later.
// It parses and validates documents (permanent failures are written back
// with a clear reason and not retried until the document changes), ignores
// design documents and documents already `completed` (or `failed`), does
// nothing when an update leaves the normalised replication unchanged
// (Fingerprint), replaces the job when it changes, stops the job when the
// document is deleted, resolves duplicates (the first document triggers the
// replication; later ones get only `_replication_id` and show `duplicate`,
// and one of them takes over when the triggering document goes away), and
// retries temporary failures before a job exists with randomised
// exponential backoff. Write-back follows the mode: classic (triggered,
// completed, error after `error_after` consecutive crashes, back to triggered
// once healthy) or terminal (completed and failed only).
//
// Not thread-safe: one owner (the engine loop). Time and randomness come in
// as arguments.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "couchrepd/clock.h"
#include "couchrepd/config.h"
#include "couchrepd/doc_key.h"
#include "couchrepd/endpoint.h"
#include "couchrepd/replication_id.h"
#include "couchrepd/replication_spec.h"
#include "couchrepd/result.h"

namespace couchrepd {

struct DocProcessorSettings {
  Config::Replicator::WriteBack write_back = Config::Replicator::WriteBack::kClassic;
  int error_after = 1;
  Duration doc_backoff_initial = std::chrono::seconds(1);
  Duration doc_backoff_max = std::chrono::minutes(10);
  ReplicationDefaults defaults;
  Endpoint server;                      // for local endpoints (SPEC §1.3)
  std::optional<Config::ProxyAuth> proxy_auth;  // set and enabled: proxy auth for non-admin docs
  // Several instances (cluster.enabled): a job runs only once this instance
  // holds its replication's job lease (kClaimJob, answered by OnJobClaim).
  bool claim_jobs = false;

  static DocProcessorSettings From(const Config& config, const Endpoint& server);
};

// The `_replication_*` fields to write into one document. Unset optionals
// mean "leave as is"; `clear_reason` removes `_replication_state_reason`.
struct StateWrite {
  std::optional<std::string> replication_id;  // `_replication_id` (full id)
  std::optional<std::string> state;           // "triggered" | "completed" | "error" | "failed"
  std::optional<std::string> reason;          // `_replication_state_reason` (no secrets!)
  std::optional<std::string> stats_json;      // `_replication_stats` object (completed)
  bool clear_reason = false;                  // remove `_replication_state_reason`
  bool operator==(const StateWrite&) const = default;
};

struct DocAction {
  enum class Type {
    kComputeId,   // compute the id of `spec` (fetch filter code...), answer OnIdComputed(doc, generation, ...)
    kAddJob,      // add scheduler job `job_id` running `spec` for `doc`
    kRemoveJob,   // remove scheduler job `job_id` (it stops and checkpoints)
    kWriteState,  // write `write` into `doc` (the writer re-reads, skips deleted docs and no-op writes)
    kRetryLater,  // call OnRetryDue(doc, generation) at `at`
    kClaimJob,    // cluster: take the job lease of `job_id` for `doc`, answer OnJobClaim(doc, generation, ...);
                  // a kRemoveJob of that id gives it back (or cancels the claim)
  };
  Type type;
  DocKey doc;
  uint64_t generation = 0;  // of the document's processing; stale answers are ignored
  std::string job_id;
  std::shared_ptr<const ReplicationSpec> spec;  // kComputeId, kAddJob (local endpoints resolved)
  bool continuous = false;                      // kAddJob
  StateWrite write;                             // kWriteState
  TimePoint at{};                               // kRetryLater
};

// Document states for the status API (SPEC §5): initializing, error, failed,
// duplicate, completed, or the job's state (pending, running, crashing, ...)
// which the status layer takes from the scheduler when `job_id` is set.
struct DocView {
  DocKey doc;
  std::string state;     // "initializing", "error", "failed", "duplicate", "completed", "job"
  std::string job_id;    // the replication id once known
  std::string error;     // reason of error/failed/crashing
  int error_count = 0;   // consecutive failures (doc level or job crashes)
  TimePoint last_updated{};
  std::string source;    // display form, no credentials
  std::string target;
  bool continuous = false;
  std::string stats_json;  // completed: the final `_replication_stats` object
};

class DocProcessor {
 public:
  explicit DocProcessor(DocProcessorSettings settings);
  void UpdateSettings(DocProcessorSettings settings);  // SIGHUP (write_back, error_after, backoff)

  // A `_changes` row of a replicator database. `doc_json` is the document
  // (include_docs=true), empty when deleted. `random` returns [0, 1) for
  // backoff jitter.
  std::vector<DocAction> OnChange(const std::string& db, const std::string& doc_id, bool deleted,
                                  const std::string& doc_json, TimePoint now,
                                  const std::function<double()>& random);
  // The answer to kComputeId.
  std::vector<DocAction> OnIdComputed(const DocKey& doc, uint64_t generation,
                                      const Result<ReplicationId>& id, TimePoint now,
                                      const std::function<double()>& random);
  std::vector<DocAction> OnRetryDue(const DocKey& doc, uint64_t generation, TimePoint now);

  // Several instances: the answer to kClaimJob. `elsewhere` unset: this
  // instance holds the job lease, the job runs (kAddJob). Set: another
  // instance runs that replication for another document; this one becomes
  // a duplicate (`elsewhere` says where, for the status API) until
  // OnJobFreed.
  std::vector<DocAction> OnJobClaim(const DocKey& doc, uint64_t generation, const std::string& job_id,
                                    const std::optional<std::string>& elsewhere, TimePoint now);
  // The job lease of `job_id`, held elsewhere, was given back or its holder
  // is dead: the oldest duplicate here claims it.
  std::vector<DocAction> OnJobFreed(const std::string& job_id, TimePoint now);

  // Job events, by job id (from the scheduler and the job runner).
  std::vector<DocAction> OnJobStarted(const std::string& job_id, TimePoint now);
  std::vector<DocAction> OnJobCrashed(const std::string& job_id, const std::string& reason,
                                      int consecutive_crashes, TimePoint now);
  std::vector<DocAction> OnJobHealthy(const std::string& job_id, TimePoint now);
  std::vector<DocAction> OnJobCompleted(const std::string& job_id, const std::string& stats_json,
                                        TimePoint now);
  std::vector<DocAction> OnJobFailed(const std::string& job_id, const std::string& reason, TimePoint now);

  // A replicator database went away (deleted, or no longer configured):
  // kRemoveJob for its jobs, no write-back; its documents are forgotten.
  std::vector<DocAction> OnDatabaseRemoved(const std::string& db, TimePoint now);

  // Whether the validation function of replicator database `db` is in place
  // (SPEC §1.3; the engine tells, in feed order; databases never told about
  // count as in place). While it is not, the documents of `db` processed from
  // now on get no server credentials for local endpoints (local_access.h).
  void SetValidationInPlace(const std::string& db, bool in_place);

  std::vector<DocView> Docs() const;  // sorted by (db, doc_id)
  std::optional<DocView> Doc(const DocKey& key) const;
  // The document that owns (triggered) a job.
  std::optional<DocKey> OwnerOf(const std::string& job_id) const;

  enum class Phase;  // of a document's record (doc_processor.cpp)

 private:
  struct DocRecord;
  // Every phase change goes through here (it keeps duplicates_).
  void SetPhase(DocRecord& rec, Phase phase);
  using Actions = std::vector<DocAction>;

  DocRecord* Find(const DocKey& key) const;
  // The record of the document whose job `job_id` is (not merely reserved).
  DocRecord* ActiveOwner(const std::string& job_id) const;
  // kRemoveJob if `rec` has a job; gives up its claim on a job id (returned
  // in `released` so that a duplicate can take it over afterwards).
  void StopJob(DocRecord& rec, Actions& out, std::vector<std::string>& released);
  void Release(DocRecord& rec, std::vector<std::string>& released);
  // The oldest duplicate of each released id takes it over (kAddJob).
  void HandOver(const std::vector<std::string>& released, TimePoint now, Actions& out);
  // `rec` owns `job_id` here: its job is added (kAddJob), or claimed first
  // across instances (kClaimJob) when settings_.claim_jobs.
  void StartJob(DocRecord& rec, const std::string& job_id, TimePoint now, Actions& out);
  void AddJob(DocRecord& rec, Actions& out);
  // Another document (here, or on another instance) runs `rec.job_id`.
  void BecomeDuplicate(DocRecord& rec, Actions& out);
  // A permanent failure before a job exists: written back, not retried until
  // the document body changes.
  void MarkInvalid(DocRecord& rec, const std::string& reason, bool skip_write, TimePoint now,
                   Actions& out);
  void Write(DocRecord& rec, StateWrite write, Actions& out);
  DocAction Action(DocAction::Type type, const DocRecord& rec) const;
  const Config::ProxyAuth* ProxyAuthOrNull() const;
  std::string FailureState() const;  // "error" (classic) or "failed" (terminal)
  bool Classic() const;

  DocProcessorSettings settings_;
  std::map<DocKey, std::shared_ptr<DocRecord>> docs_;
  std::map<std::string, DocKey> owners_;  // job id -> document holding it (running or reserved)
  std::set<DocKey> duplicates_;           // documents in the duplicate phase
  std::set<std::string> elsewhere_;       // job ids another instance runs (claim_jobs)
  uint64_t last_generation_ = 0;          // generations are unique across documents
  uint64_t last_duplicate_ = 0;           // order in which documents became duplicates
  std::set<std::string> validation_missing_;  // databases whose validation function is not in place
};

}  // namespace couchrepd

// ReplicationJob: runs one replication (source -> target) to completion, to
// a failure, or until stopped.
//
// Start: create the target when asked, read both databases' info and both
// `_local/<base>` checkpoints, and pick the start sequence (SPEC §4.1). Then a
// changes reader thread streams `_changes` rows into a bounded channel;
// `worker_processes` worker threads each take up to `worker_batch_size` rows,
// numbered in feed order, and run _revs_diff -> _bulk_get (or open_revs) ->
// _bulk_docs new_edits=false, streaming big attachments through multipart
// PUTs. The through sequence advances only over fully written prefixes of
// batches (SeqTracker) and is checkpointed to both sides every
// checkpoint_interval, at completion and on Stop().
//
// Passes (continuous jobs with `park_when_idle`): each Run() reads the
// source's changes up to now with a normal feed, writes them and returns
// kIdle, holding no thread and no feed; the caller runs it again when the
// source may have changed or when NextCheckpoint() is due. The first Run()
// also does the start; the job's state (checkpoint, session, statistics) is
// kept between passes. A Run() after Stop() only checkpoints.
//
// Thread safety: Run() blocks its caller; Stop() and Snapshot() may be called
// from any thread at any time.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "couchrepd/clock.h"
#include "couchrepd/couch_client.h"
#include "couchrepd/endpoint_tls.h"
#include "couchrepd/log.h"
#include "couchrepd/replication_id.h"
#include "couchrepd/replication_spec.h"
#include "couchrepd/replication_stats.h"
#include "couchrepd/result.h"

namespace couchrepd {

struct JobSettings {
  ReplicationSpec spec;      // local endpoints already resolved
  ReplicationId id;
  HttpOptions http;          // base options; the spec's per-job values override
  // TLS per endpoint (SPEC §4.4): server settings for local endpoints only,
  // URL endpoints always verified (with replication.ca_file).
  EndpointTlsPolicy tls;
  int64_t attachment_stream_threshold_bytes = 1 << 20;
  std::string temp_dir;  // replication.temp_dir ("" = $TMPDIR, else /tmp)
  Duration heartbeat = std::chrono::seconds(10);  // continuous source feed
  bool park_when_idle = false;  // continuous: run in passes (see above)
  std::string log_prefix;    // e.g. "[_replicator/mydoc]"
  // Structured log fields of every line the job's threads write: db and
  // doc_id of its document (serve); the job adds replication_id, source and
  // target (display URLs, no credentials).
  LogFields log_fields;
};

struct JobSnapshot {
  ReplicationStats stats;      // kept across runs (restored from the checkpoint history)
  ReplicationStats run_stats;  // this run only
  std::optional<std::string> source_seq;        // newest sequence seen from the feed
  std::optional<std::string> through_seq;       // everything up to here is written
  std::optional<std::string> checkpointed_seq;  // last checkpointed through_seq
  int64_t changes_pending = 0;
  double started_unix = 0;
  double last_checkpoint_unix = 0;  // 0: none yet
  bool caught_up = false;           // continuous: the feed has been drained once
  uint64_t checkpoints_ok = 0;
  uint64_t checkpoints_failed = 0;
};

enum class JobEnd {
  kCompleted,  // one-shot: everything up to the feed's last_seq is written
  kStopped,    // Stop() was called (after a checkpoint)
  kIdle,       // park_when_idle: caught up; Run() again for the next pass
};

class ReplicationJob {
 public:
  ReplicationJob(JobSettings settings, Clock& clock = SystemClock());
  ~ReplicationJob();
  ReplicationJob(const ReplicationJob&) = delete;
  ReplicationJob& operator=(const ReplicationJob&) = delete;

  Result<JobEnd> Run();
  // Stop: no new batches, the requests in flight are cancelled (SPEC §2.3),
  // then a checkpoint of what is fully written.
  void Stop();
  // Stop, and cancel the final checkpoint too (the shutdown deadline passed).
  void Abort();
  JobSnapshot Snapshot() const;
  // When a parked job must run a pass to checkpoint what it has written;
  // nullopt when everything written is checkpointed.
  std::optional<TimePoint> NextCheckpoint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace couchrepd

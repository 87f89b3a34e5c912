// ReplicateBatch: one batch of _changes rows through the replication
// protocol: _revs_diff on the target (skipped while the target is one the
// job found empty), fetch of the missing revisions from the
// source (_bulk_get, or open_revs when the source lacks it), and the write to
// the target (_bulk_docs new_edits=false, split on 413; big attachments
// streamed through multipart PUTs via temporary files, so memory is bounded
// by the batch, not by attachment size).
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "couchrepd/changes_parser.h"
#include "couchrepd/couch_client.h"
#include "couchrepd/replication_stats.h"

namespace couchrepd {

struct BatchContext {
  CouchClient* source = nullptr;
  CouchClient* target = nullptr;
  bool use_bulk_get = true;
  std::atomic<bool>* bulk_get_unsupported = nullptr;  // shared by a job's workers
  bool may_write_design_docs = true;
  int64_t stream_threshold_bytes = 1 << 20;
  std::string temp_dir;  // for streamed attachments ("" = $TMPDIR, else /tmp)
  std::string log_prefix;
  // The target was empty when the job started (and the job starts from
  // scratch): it lacks every revision the feed names, so no _revs_diff is
  // asked. Writes are new_edits=false, so if someone else wrote there
  // meanwhile, a revision sent twice costs bandwidth, never data.
  bool target_empty_at_start = false;
};

// Statistics of the batch (revisions_checked, missing_revisions_found,
// docs_read, docs_written, doc_write_failures). An Error fails the job.
Result<ReplicationStats> ReplicateBatch(const std::vector<ChangeRow>& rows, BatchContext& ctx);

}  // namespace couchrepd

#include "couchrepd/replication_job.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "batch_replicator.h"
#include "couchrepd/channel.h"
#include "couchrepd/checkpoint.h"
#include "couchrepd/encoding.h"
#include "couchrepd/limits.h"
#include "couchrepd/seq_tracker.h"

namespace couchrepd {

namespace {

// Rows buffered between the changes reader and the workers, in batches.
constexpr size_t kQueuedBatches = 2;
// How long a worker waits for a batch to fill before taking what is queued:
// fewer, fuller batches while the feed streams, barely any delay when idle.
constexpr std::chrono::milliseconds kBatchLinger{10};
// Attempts to resume a one-shot (normal) feed that broke mid-stream.
constexpr int kFeedResumeAttempts = 5;

HttpOptions EndpointOptions(const JobSettings& s) {
  HttpOptions o = s.http;
  o.max_connections = s.spec.http_connections;
  o.retry.retries = s.spec.retries_per_request;
  o.inactivity_timeout = s.spec.connection_timeout;
  o.keepalive = s.spec.socket_keepalive;
  o.nodelay = s.spec.socket_nodelay;
  return o;
}

}  // namespace

struct ReplicationJob::Impl {
  Impl(JobSettings s, Clock& c)
      : settings(std::move(s)),
        clock(c),
        source(settings.spec.source.endpoint,
               WithEndpointTls(EndpointOptions(settings), settings.spec.source, settings.tls), c),
        target(settings.spec.target.endpoint,
               WithEndpointTls(EndpointOptions(settings), settings.spec.target, settings.tls), c),
        rows(static_cast<size_t>(settings.spec.worker_batch_size) *
             (static_cast<size_t>(settings.spec.worker_processes) + kQueuedBatches)) {
    // Every request of the job (start, feed, batches) ends when the job is
    // stopped (SPEC §2.3), also while it waits on a slow server.
    source.SetCancel(&job_cancel);
    target.SetCancel(&job_cancel);
    log_fields = settings.log_fields;
    log_fields.replication_id = settings.id.full;
    log_fields.source = source.DisplayUrl();
    log_fields.target = target.DisplayUrl();
  }

  JobSettings settings;
  LogFields log_fields;  // set on each of the job's threads
  Clock& clock;
  CouchClient source;
  CouchClient target;
  Channel<ChangeRow> rows;
  CancelToken feed_cancel;      // the changes reader (ends on failure and stop)
  CancelToken job_cancel;       // every request until the final checkpoint (ends on stop)
  CancelToken final_cancel;     // the final checkpoint (ends at the shutdown deadline)
  std::atomic<bool> bulk_get_unsupported{false};

  mutable std::mutex mu;
  std::condition_variable cv;
  SeqTracker tracker;
  JobSnapshot snap;
  std::optional<Error> failure;
  bool stop_requested = false;
  bool feed_done = false;        // the reader ended (one-shot: after last_seq)
  int workers_running = 0;
  uint64_t rows_received = 0;
  uint64_t rows_done = 0;
  std::optional<int64_t> feed_pending;

  // Checkpoint state (job thread only).
  std::string session_id = RandomHex32();
  std::string start_seq = "0";
  double start_unix = 0;
  std::string source_instance, target_instance;
  bool target_empty_at_start = false;  // no _revs_diff (BatchContext)
  std::optional<std::string> source_rev, target_rev;
  std::optional<CheckpointDoc> previous;  // the source side's document
  bool started = false;                   // Start() done (passes: the first Run)
  TimePoint next_checkpoint{};            // guarded by mu

  void Fail(Error e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!failure) failure = std::move(e);
    }
    feed_cancel.Cancel();
    rows.Abort();
    cv.notify_all();
  }

  Status Start();
  void ReadFeed();
  void Work();
  void WorkBatches();
  void ReadFeedGuarded();
  void FailOnException(const char* where, const std::exception_ptr& ep);
  Status Checkpoint();
  bool Passes() const { return settings.spec.continuous && settings.park_when_idle; }
  void RunPass(bool& stopped);
  Result<JobEnd> Run();
};

Status ReplicationJob::Impl::Start() {
  const ReplicationSpec& spec = settings.spec;
  // The source first, as CouchDB does: a source that cannot be read leaves
  // no empty target behind.
  auto src_info = source.GetDbInfo();
  if (!src_info.ok()) return src_info.error();
  if (spec.create_target) {
    Status created = target.CreateDb(spec.create_target_params);
    if (!created.ok() && created.error().http_status != 412) {
      Error e = created.error();
      if (e.http_status == 401 || e.http_status == 403) {
        return Error::Permanent("unauthorized",
                                "could not create the target " + target.DisplayUrl() + ": " + e.reason,
                                e.http_status);
      }
      return e;
    }
  }
  auto tgt_info = target.GetDbInfo();
  if (!tgt_info.ok()) return tgt_info.error();
  source_instance = src_info->instance_start_time;
  target_instance = tgt_info->instance_start_time;

  std::optional<CheckpointDoc> src_doc, tgt_doc;
  bool target_has_checkpoint_doc = false;
  if (spec.use_checkpoints) {
    auto s = source.GetLocal(settings.id.base);
    if (!s.ok()) return s.error();
    auto t = target.GetLocal(settings.id.base);
    if (!t.ok()) return t.error();
    if (*s) {
      auto parsed = ParseCheckpointDoc(**s);
      if (parsed.ok()) src_doc = *parsed;
    }
    target_has_checkpoint_doc = t->has_value();
    if (*t) {
      auto parsed = ParseCheckpointDoc(**t);
      if (parsed.ok()) tgt_doc = *parsed;
    }
  }
  if (src_doc) source_rev = src_doc->rev;
  if (tgt_doc) target_rev = tgt_doc->rev;
  StartDecision decision = DecideStartSeq(src_doc, tgt_doc);
  previous = src_doc;
  if (decision.start_seq) {
    start_seq = *decision.start_seq;
  } else if (spec.since_seq_json) {
    start_seq = *spec.since_seq_json;
  }
  // A target without documents (not even deleted ones) that the job fills
  // from the start lacks every revision the source has.
  target_empty_at_start = !decision.start_seq && tgt_info->doc_count == 0 &&
                          tgt_info->doc_del_count == 0;
  spdlog::info("{} starting at sequence {}: {}{}", settings.log_prefix, start_seq,
               decision.explanation,
               target_empty_at_start ? " (the target is empty: no _revs_diff)" : "");
  start_unix = clock.UnixSeconds();
  if (spec.use_checkpoints && !target_has_checkpoint_doc) {
    // A checkpoint document on the target from the start, at the start
    // sequence: a target deleted and recreated before the first real
    // checkpoint would otherwise take that checkpoint (written without a
    // revision) as its own, claiming every change before it. With a
    // document there, its disappearance shows at the next checkpoint (409).
    CheckpointUpdate seed;
    seed.session_id = session_id;
    seed.run_start_time = static_cast<int64_t>(start_unix);
    seed.now = seed.run_start_time;
    seed.start_seq = start_seq;
    seed.recorded_seq = start_seq;
    seed.stats = decision.restored_stats;
    CheckpointDoc doc = NextCheckpointDoc(previous, seed);
    auto put = target.PutLocal(settings.id.base, RenderCheckpointDoc(doc, std::nullopt));
    if (!put.ok()) {
      Error e = put.error();
      e.reason = "checkpoint on " + target.DisplayUrl() + " failed: " + e.reason;
      return e;
    }
    if (!put->rev.empty()) target_rev = put->rev;
    previous = doc;
  }
  std::lock_guard<std::mutex> lock(mu);
  snap.stats.MaxWith(decision.restored_stats);
  snap.started_unix = start_unix;
  snap.through_seq = start_seq;
  snap.checkpointed_seq = decision.start_seq;
  tracker = SeqTracker(start_seq);
  return OkStatus();
}

void ReplicationJob::Impl::ReadFeed() {
  const ReplicationSpec& spec = settings.spec;
  ChangesRequest req;
  req.since = start_seq;
  req.style = spec.winning_revs_only ? "main_only" : "all_docs";
  switch (spec.filter_kind) {
    case ReplicationSpec::FilterKind::kDocIds:
      req.filter = "_doc_ids";
      req.doc_ids = spec.doc_ids;
      break;
    case ReplicationSpec::FilterKind::kSelector:
      req.filter = "_selector";
      req.selector_json = spec.selector_json;
      break;
    case ReplicationSpec::FilterKind::kBuiltin:
    case ReplicationSpec::FilterKind::kUser:
      req.filter = spec.filter;
      req.query_params = spec.query_params;
      break;
    case ReplicationSpec::FilterKind::kNone:
      break;
  }
  auto on_row = [&](ChangeRow&& row) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++rows_received;
      snap.source_seq = row.seq;
    }
    return rows.Push(std::move(row));
  };
  if (Passes()) {
    // Later passes read from what is fully written (all of the last pass).
    std::lock_guard<std::mutex> lock(mu);
    if (snap.through_seq) req.since = *snap.through_seq;
  }
  if (spec.continuous && !Passes()) {
    req.heartbeat = settings.heartbeat;
    // Drain once with a normal feed so "caught up" is known, then follow.
    ChangesRequest first = req;
    first.feed = ChangesRequest::Feed::kNormal;
    auto r = source.Changes(first, on_row, &feed_cancel);
    if (!r.ok()) {
      if (!feed_cancel.cancelled()) Fail(r.error());
      rows.Close();
      return;
    }
    if (r->last_seq) {
      req.since = r->last_seq;
      rows.Push(ChangeRow{"", *r->last_seq, {}, false, ""});
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      snap.caught_up = true;
    }
    auto f = source.FollowChanges(req, on_row, feed_cancel, [&](const Error& e) {
      spdlog::info("{} source feed reconnecting: {}", settings.log_prefix, e.Message());
    });
    if (!f.ok() && !feed_cancel.cancelled()) Fail(f.error());
    rows.Close();
    return;
  }
  req.feed = ChangesRequest::Feed::kNormal;
  for (int attempt = 0;; ++attempt) {
    uint64_t before;
    {
      std::lock_guard<std::mutex> lock(mu);
      before = rows_received;
    }
    std::optional<std::string> last_row;
    auto r = source.Changes(req, [&](ChangeRow&& row) {
      last_row = row.seq;
      return on_row(std::move(row));
    }, &feed_cancel);
    if (r.ok()) {
      std::string last = r->last_seq.value_or(last_row.value_or(*req.since));
      {
        std::lock_guard<std::mutex> lock(mu);
        feed_pending = r->pending;
        snap.source_seq = last;
      }
      rows.Push(ChangeRow{"", last, {}, false, ""});  // the end marker
      if (Passes()) {
        std::lock_guard<std::mutex> lock(mu);
        snap.caught_up = true;
      }
      break;
    }
    if (feed_cancel.cancelled()) break;
    bool progressed;
    {
      std::lock_guard<std::mutex> lock(mu);
      progressed = rows_received > before;
    }
    if (!r.error().temporary() || attempt + 1 >= kFeedResumeAttempts) {
      Fail(r.error());
      break;
    }
    if (progressed && last_row) req.since = last_row;
    spdlog::info("{} source feed broke ({}); resuming from {}", settings.log_prefix,
                 r.error().Message(), *req.since);
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    feed_done = true;
  }
  rows.Close();
  cv.notify_all();
}

// An exception on a job thread (an allocation that failed on a huge answer, a
// thread that could not start) fails the job, never the process (SPEC §10).
void ReplicationJob::Impl::FailOnException(const char* where, const std::exception_ptr& ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const std::bad_alloc&) {
    Fail(Error::Temporary("out_of_memory", std::string(where) + " ran out of memory"));
  } catch (const std::exception& e) {
    Fail(Error::Temporary("internal", std::string(where) + " failed: " + CapText(e.what())));
  }
}

void ReplicationJob::Impl::ReadFeedGuarded() {
  try {
    ReadFeed();
  } catch (...) {
    FailOnException("the changes reader", std::current_exception());
    rows.Close();
  }
}

void ReplicationJob::Impl::Work() {
  try {
    WorkBatches();
  } catch (...) {
    FailOnException("a batch", std::current_exception());
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    --workers_running;
  }
  cv.notify_all();
}

void ReplicationJob::Impl::WorkBatches() {
  BatchContext ctx;
  ctx.source = &source;
  ctx.target = &target;
  ctx.use_bulk_get = settings.spec.use_bulk_get;
  ctx.bulk_get_unsupported = &bulk_get_unsupported;
  ctx.may_write_design_docs = MayWriteDesignDocs(settings.spec);
  ctx.stream_threshold_bytes = settings.attachment_stream_threshold_bytes;
  ctx.temp_dir = settings.temp_dir;
  ctx.log_prefix = settings.log_prefix;
  ctx.target_empty_at_start = target_empty_at_start;
  const size_t batch_size = static_cast<size_t>(settings.spec.worker_batch_size);
  while (true) {
    uint64_t batch_id = 0;
    auto batch = rows.PopUpTo(batch_size, kBatchLinger, [&](const std::vector<ChangeRow>& taken) {
      std::lock_guard<std::mutex> lock(mu);
      batch_id = tracker.Register(taken.back().seq);
    });
    if (batch.empty()) break;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (failure) break;
    }
    auto r = ReplicateBatch(batch, ctx);
    if (!r.ok()) {
      // A stop cancels the batch's requests: not a failure of the job. The
      // batch stays incomplete, so the checkpoint stays before it.
      if (!job_cancel.cancelled()) Fail(r.error());
      break;
    }
    size_t real_rows = 0;
    for (const auto& row : batch) real_rows += row.id.empty() ? 0 : 1;
    {
      std::lock_guard<std::mutex> lock(mu);
      snap.stats.Add(*r);
      snap.run_stats.Add(*r);
      rows_done += real_rows;
      if (tracker.Complete(batch_id)) snap.through_seq = tracker.through_seq();
    }
    cv.notify_all();
  }
}

Status ReplicationJob::Impl::Checkpoint() {
  if (!settings.spec.use_checkpoints) return OkStatus();
  std::string through;
  ReplicationStats stats;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!snap.through_seq || snap.through_seq == snap.checkpointed_seq) return OkStatus();
    through = *snap.through_seq;
    stats = snap.stats;
  }
  for (auto* side : {&source, &target}) {
    auto instance = side->EnsureFullCommit();
    if (!instance.ok()) return instance.error();
    const std::string& at_start = side == &source ? source_instance : target_instance;
    if (*instance != "0" && !at_start.empty() && at_start != "0" && *instance != at_start) {
      return Error::Temporary("checkpoint_failed",
                              side->DisplayUrl() + " restarted during the replication "
                                                   "(instance_start_time changed)");
    }
  }
  CheckpointUpdate update;
  update.session_id = session_id;
  update.run_start_time = static_cast<int64_t>(start_unix);
  update.now = static_cast<int64_t>(clock.UnixSeconds());
  update.start_seq = start_seq;
  update.recorded_seq = through;
  update.stats = stats;
  CheckpointDoc next = NextCheckpointDoc(previous, update);
  for (auto* side : {&source, &target}) {
    auto& rev = side == &source ? source_rev : target_rev;
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto put = side->PutLocal(settings.id.base, RenderCheckpointDoc(next, rev));
      if (put.ok()) {
        if (!put->rev.empty()) rev = put->rev;
        break;
      }
      if (put.error().http_status != 409 || attempt == 2) {
        Error e = put.error();
        e.reason = "checkpoint on " + side->DisplayUrl() + " failed: " + e.reason;
        return e;
      }
      auto current = side->GetLocal(settings.id.base);
      if (!current.ok()) return current.error();
      if (!*current) {
        // The checkpoint this job read or wrote there is gone: the database
        // was deleted and recreated (or the document removed). Its data
        // cannot be trusted to match the checkpoint: the job restarts and
        // finds no common checkpoint.
        if (rev) {
          return Error::Temporary(
              "checkpoint_failed",
              "the checkpoint on " + side->DisplayUrl() +
                  " is gone (the database was deleted and recreated?): starting over without it");
        }
        continue;
      }
      auto parsed = ParseCheckpointDoc(**current);
      if (parsed.ok() && SameCheckpointContent(*parsed, next)) {
        rev = parsed->rev;
        break;
      }
      rev = parsed.ok() ? parsed->rev : std::nullopt;
    }
  }
  previous = next;
  std::lock_guard<std::mutex> lock(mu);
  snap.checkpointed_seq = through;
  snap.last_checkpoint_unix = clock.UnixSeconds();
  ++snap.checkpoints_ok;
  spdlog::debug("{} checkpointed at {}", settings.log_prefix, through);
  return OkStatus();
}

// One pass of the pipeline: the changes reader and the workers until the
// feed is written (one-shot, passes), a failure or a stop.
void ReplicationJob::Impl::RunPass(bool& stopped) {
  std::thread reader;
  std::vector<std::thread> workers;
  try {
    reader = std::thread([this] {
      ScopedLogFields log_scope(log_fields);
      ReadFeedGuarded();
    });
    for (int i = 0; i < settings.spec.worker_processes; ++i) {
      workers.emplace_back([this] {
        ScopedLogFields log_scope(log_fields);
        Work();
      });
    }
  } catch (const std::system_error& e) {
    // Out of threads: fail the job cleanly; the threads that did start end.
    {
      std::lock_guard<std::mutex> lock(mu);
      workers_running -= settings.spec.worker_processes - static_cast<int>(workers.size());
    }
    Fail(Error::Temporary("internal", std::string("could not start a job thread: ") + e.what()));
  }

  while (true) {
    std::unique_lock<std::mutex> lock(mu);
    // Sleep until the next checkpoint is due unless something happens (no
    // polling: hundreds of idle continuous jobs must cost no CPU).
    cv.wait_until(lock, TimePoint(next_checkpoint), [&] {
      return failure || stop_requested || workers_running == 0;
    });
    if (failure) break;
    if (stop_requested) {
      stopped = true;
      break;
    }
    if (workers_running == 0) break;
    bool due = clock.Now() >= next_checkpoint;
    lock.unlock();
    if (due) {
      Status s = Checkpoint();
      if (!s.ok() && job_cancel.cancelled()) {
        stopped = true;
        break;
      }
      if (!s.ok()) {
        {
          std::lock_guard<std::mutex> guard(mu);
          ++snap.checkpoints_failed;
        }
        Fail(s.error());
        break;
      }
      std::lock_guard<std::mutex> guard(mu);
      next_checkpoint = clock.Now() + settings.spec.checkpoint_interval;
    }
  }
  feed_cancel.Cancel();
  // A stop or failure drops queued rows that no batch took yet: they are not
  // registered with the tracker, so the through sequence stays correct.
  rows.Abort();
  if (reader.joinable()) reader.join();
  for (auto& w : workers) w.join();
}

Result<JobEnd> ReplicationJob::Impl::Run() {
  ScopedLogFields log_scope(log_fields);
  bool stopped = false;
  if (!started) {
    Status s = Start();
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stop_requested) return JobEnd::kStopped;  // also when Start() was interrupted
    }
    if (!s.ok()) return s.error();
    started = true;
    std::lock_guard<std::mutex> lock(mu);
    next_checkpoint = clock.Now() + settings.spec.checkpoint_interval;
  }
  {
    // A new pass (passes) or the only one: fresh feed state.
    std::lock_guard<std::mutex> lock(mu);
    if (failure) return *failure;
    stopped = stop_requested;
    // A pass after a quiet time: what it writes is checkpointed one
    // interval from now, not at once (a wake is answered with the writes
    // alone; the checkpoint comes later, on its own pass).
    if (Passes() && snap.through_seq == snap.checkpointed_seq) {
      next_checkpoint = std::max(next_checkpoint, clock.Now() + settings.spec.checkpoint_interval);
    }
    if (!stopped) {
      workers_running = settings.spec.worker_processes;
      feed_done = false;
      feed_cancel = CancelToken();
    }
  }
  // Not under mu: the workers take the channel's lock, then mu (found by
  // TSan as a lock-order inversion; no thread uses the channel here).
  if (!stopped) rows.Reset();
  if (!stopped) RunPass(stopped);

  std::optional<Error> failed;
  {
    std::lock_guard<std::mutex> lock(mu);
    failed = failure;
  }
  if (Passes() && !failed && !stopped) {
    // Caught up: checkpoint when due, then hand the thread back. Its
    // connections are already back in the shared pool (connection_pool.h),
    // which closes them after idle_connection_timeout.
    bool due;
    {
      std::lock_guard<std::mutex> lock(mu);
      due = clock.Now() >= next_checkpoint;
    }
    Status s = due ? Checkpoint() : OkStatus();
    if (s.ok()) {
      if (due) {
        std::lock_guard<std::mutex> lock(mu);
        next_checkpoint = clock.Now() + settings.spec.checkpoint_interval;
      }
      return JobEnd::kIdle;
    }
    if (!job_cancel.cancelled()) {
      std::lock_guard<std::mutex> lock(mu);
      ++snap.checkpoints_failed;
      return s.error();
    }
    stopped = true;
  }
  // Checkpoint what is fully written, whatever happened; a stop cancelled the
  // job's requests, so this one has a token of its own.
  source.SetCancel(&final_cancel);
  target.SetCancel(&final_cancel);
  Status final_checkpoint = Checkpoint();
  if (!final_checkpoint.ok()) {
    std::lock_guard<std::mutex> guard(mu);
    ++snap.checkpoints_failed;
  }
  if (failed) return *failed;
  if (!final_checkpoint.ok()) return final_checkpoint.error();
  if (stopped) return JobEnd::kStopped;
  return settings.spec.continuous ? JobEnd::kStopped : JobEnd::kCompleted;
}

ReplicationJob::ReplicationJob(JobSettings settings, Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(settings), clock)) {}

ReplicationJob::~ReplicationJob() = default;

Result<JobEnd> ReplicationJob::Run() { return impl_->Run(); }

void ReplicationJob::Stop() {
  CancelToken feed;  // a pass replaces the job's token under mu
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop_requested = true;
    feed = impl_->feed_cancel;
  }
  feed.Cancel();
  impl_->job_cancel.Cancel();
  impl_->cv.notify_all();
}

void ReplicationJob::Abort() {
  Stop();
  impl_->final_cancel.Cancel();
}

std::optional<TimePoint> ReplicationJob::NextCheckpoint() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->settings.spec.use_checkpoints || !impl_->snap.through_seq ||
      impl_->snap.through_seq == impl_->snap.checkpointed_seq) {
    return std::nullopt;
  }
  return impl_->next_checkpoint;
}

JobSnapshot ReplicationJob::Snapshot() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  JobSnapshot s = impl_->snap;
  s.changes_pending = static_cast<int64_t>(impl_->rows_received - impl_->rows_done) +
                      impl_->feed_pending.value_or(0);
  return s;
}

}  // namespace couchrepd

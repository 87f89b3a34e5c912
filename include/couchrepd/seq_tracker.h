// SeqTracker: the job's through sequence (SPEC §4.2).
//
// The changes reader cuts the feed into batches and workers process them in
// parallel, so batches finish out of order. A checkpoint may only record a
// sequence up to which *every* change has been written (or counted as a
// failure); otherwise a crash after the checkpoint would skip an unwritten
// change. The tracker enforces this:
//
//   - Register(last_seq) is called in feed order for each batch and returns
//     the batch's tag, a local counter 1, 2, 3, ... Ordering uses the tag,
//     never the sequence: sequences are opaque raw JSON text (`42`,
//     `"12-g1AAA..."`) and are only stored and handed back.
//   - Complete(tag) marks that batch done.
//   - through_seq() is the last sequence of the highest-tagged batch such that
//     it and every earlier batch are done; before that, the run's start seq.
//
// CouchDB keeps the through seq at a completed batch's tag while later batches
// that finished earlier are still recorded as done; it only catches up when
// nothing is in flight. This tracker advances over every contiguous done
// prefix at once, which is never earlier than CouchDB and equally safe.
//
// Not thread-safe: one owner (the job loop) calls it. Memory is one entry per
// batch between the oldest unfinished batch and the newest registered one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

namespace couchrepd {

class SeqTracker {
 public:
  using Tag = uint64_t;

  // `start_seq`: raw JSON of the sequence this run started from ("0" when
  // replicating from the beginning). It is the through seq until progress.
  explicit SeqTracker(std::string start_seq = "0");

  // Registers the next batch in feed order, ending at `last_seq` (raw JSON of
  // its last row's seq). Returns its tag (1 for the first, then increasing).
  Tag Register(std::string last_seq);

  // Marks batch `tag` done. Returns false, changing nothing, for a tag that
  // was never registered or is already done.
  bool Complete(Tag tag);

  // Raw JSON of the through seq (see above).
  const std::string& through_seq() const { return through_seq_; }
  // Tag whose seq through_seq() is; 0 while it is still the start seq. It
  // grows exactly when the through seq advances, so "progress since the last
  // checkpoint" is through_tag() > the tag checkpointed.
  Tag through_tag() const { return through_tag_; }

  // Raw JSON of the last seq registered (the newest position seen in the
  // feed); the start seq before any.
  const std::string& last_seq_seen() const { return last_seq_seen_; }
  // Raw JSON of the seq of the highest-tagged batch done so far, ignoring
  // gaps (CouchDB's `source_seq`, "highest_seq_done"); the start seq before any.
  const std::string& highest_seq_done() const { return highest_seq_done_; }

  // Batches registered and not yet completed (markers never count).
  size_t pending_batches() const { return pending_; }
  // True when every registered batch is done: through_seq() == last_seq_seen().
  bool idle() const { return pending_ == 0; }

 private:
  struct Entry {
    std::string seq;
    bool done = false;
  };

  void Advance();

  // Batches from tag through_tag_ + 1 up to next_tag_ - 1, oldest first.
  std::deque<Entry> window_;
  Tag next_tag_ = 1;
  Tag through_tag_ = 0;
  Tag highest_done_tag_ = 0;
  size_t pending_ = 0;
  std::string through_seq_;
  std::string last_seq_seen_;
  std::string highest_seq_done_;
};

}  // namespace couchrepd

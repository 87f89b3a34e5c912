#include "couchrepd/seq_tracker.h"

#include <utility>

namespace couchrepd {

SeqTracker::SeqTracker(std::string start_seq)
    : through_seq_(start_seq), last_seq_seen_(start_seq), highest_seq_done_(std::move(start_seq)) {}

SeqTracker::Tag SeqTracker::Register(std::string last_seq) {
  last_seq_seen_ = last_seq;
  window_.push_back(Entry{std::move(last_seq), false});
  ++pending_;
  return next_tag_++;
}

bool SeqTracker::Complete(Tag tag) {
  if (tag <= through_tag_ || tag >= next_tag_) return false;
  Entry& entry = window_[tag - through_tag_ - 1];
  if (entry.done) return false;
  entry.done = true;
  --pending_;
  if (tag > highest_done_tag_) {
    highest_done_tag_ = tag;
    highest_seq_done_ = entry.seq;
  }
  Advance();
  return true;
}

void SeqTracker::Advance() {
  while (!window_.empty() && window_.front().done) {
    through_seq_ = std::move(window_.front().seq);
    window_.pop_front();
    ++through_tag_;
  }
}

}  // namespace couchrepd

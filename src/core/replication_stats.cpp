#include "couchrepd/replication_stats.h"

#include <algorithm>
#include <limits>
#include <string_view>

#include "couchrepd/checkpoint.h"
#include "couchrepd/json.h"

namespace couchrepd {

namespace {

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (!__builtin_add_overflow(a, b, &sum)) return sum;
  return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

// A raw sequence that somebody left empty would make the output invalid JSON.
std::string_view SeqOrZero(const std::string& raw) {
  return raw.empty() ? std::string_view("0") : std::string_view(raw);
}

void WriteChangesPending(JsonWriter& w, const std::optional<int64_t>& pending) {
  w.Key("changes_pending");
  if (pending) {
    w.Int(*pending);
  } else {
    w.Null();
  }
}

}  // namespace

ReplicationStats& ReplicationStats::Add(const ReplicationStats& delta) {
  revisions_checked = SaturatingAdd(revisions_checked, delta.revisions_checked);
  missing_revisions_found = SaturatingAdd(missing_revisions_found, delta.missing_revisions_found);
  docs_read = SaturatingAdd(docs_read, delta.docs_read);
  docs_written = SaturatingAdd(docs_written, delta.docs_written);
  doc_write_failures = SaturatingAdd(doc_write_failures, delta.doc_write_failures);
  return *this;
}

ReplicationStats& ReplicationStats::MaxWith(const ReplicationStats& other) {
  revisions_checked = std::max(revisions_checked, other.revisions_checked);
  missing_revisions_found = std::max(missing_revisions_found, other.missing_revisions_found);
  docs_read = std::max(docs_read, other.docs_read);
  docs_written = std::max(docs_written, other.docs_written);
  doc_write_failures = std::max(doc_write_failures, other.doc_write_failures);
  return *this;
}

ReplicationStats operator+(ReplicationStats a, const ReplicationStats& b) { return a.Add(b); }

void WriteStatsCounters(JsonWriter& w, const ReplicationStats& stats) {
  w.Key("revisions_checked").Int(stats.revisions_checked);
  w.Key("missing_revisions_found").Int(stats.missing_revisions_found);
  w.Key("docs_read").Int(stats.docs_read);
  w.Key("docs_written").Int(stats.docs_written);
  w.Key("doc_write_failures").Int(stats.doc_write_failures);
}

void WriteProgressMembers(JsonWriter& w, const ReplicationProgress& progress) {
  WriteStatsCounters(w, progress.stats);
  WriteChangesPending(w, progress.changes_pending);
  w.Key("checkpointed_source_seq").Raw(SeqOrZero(progress.checkpointed_source_seq));
  w.Key("source_seq").Raw(SeqOrZero(progress.source_seq));
  w.Key("through_seq").Raw(SeqOrZero(progress.through_seq));
}

std::string RenderReplicationStatsField(const ReplicationProgress& progress) {
  const ReplicationStats& s = progress.stats;
  JsonWriter w;
  w.BeginObject();
  w.Key("revisions_checked").Int(s.revisions_checked);
  w.Key("missing_revisions_found").Int(s.missing_revisions_found);
  w.Key("docs_read").Int(s.docs_read);
  w.Key("docs_written").Int(s.docs_written);
  WriteChangesPending(w, progress.changes_pending);
  w.Key("doc_write_failures").Int(s.doc_write_failures);
  w.Key("checkpointed_source_seq").Raw(SeqOrZero(progress.checkpointed_source_seq));
  w.Key("start_time").String(FormatRfc3339(progress.start_time));
  w.EndObject();
  return w.Take();
}

std::string RenderProgressInfo(const ReplicationProgress& progress) {
  JsonWriter w;
  w.BeginObject();
  WriteProgressMembers(w, progress);
  w.EndObject();
  return w.Take();
}

std::string RenderStatsSummary(const ReplicationProgress& progress) {
  JsonWriter w;
  w.BeginObject();
  WriteProgressMembers(w, progress);
  w.Key("start_time").String(FormatRfc3339(progress.start_time));
  w.EndObject();
  return w.Take();
}

}  // namespace couchrepd

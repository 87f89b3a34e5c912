// `couchrepd status`: what a running instance's /_scheduler/docs says, as a
// table for the shell (like `kubectl get`), or one document in detail. Pure:
// JSON text in, text out.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "couchrepd/result.h"

namespace couchrepd {

struct StatusRow {
  std::string database;
  std::string doc_id;
  std::string job_id;
  std::string state;
  std::string source;  // as the status API shows it: no credentials
  std::string target;
  std::optional<int64_t> docs_written;
  std::optional<int64_t> changes_pending;
  std::string error;  // info.error, when crashing/error/failed
  int64_t error_count = 0;
  std::string last_updated;
};

// The `docs` of a /_scheduler/docs answer, or of one /_scheduler/docs/{db}/{id}.
Result<std::vector<StatusRow>> ParseStatusDocs(std::string_view json);
Result<StatusRow> ParseStatusDoc(std::string_view json);

// Columns STATE DOCUMENT SOURCE → TARGET WRITTEN PENDING LAST ERROR, one row
// per document (errors cut to `error_width`), and a count line at the end.
std::string RenderStatusTable(const std::vector<StatusRow>& rows, size_t error_width = 60);
// One document: its fields and, from /_scheduler/jobs/{id} when given, the
// job's history newest first.
std::string RenderStatusDetail(const StatusRow& row, std::string_view job_json);

// Whether anything needs an operator: a document in error, failed or crashing.
bool AnyNeedsAttention(const std::vector<StatusRow>& rows);

}  // namespace couchrepd

#include "couchrepd/state_fields.h"

#include <simdjson.h>

#include <memory>
#include <utility>
#include <vector>

#include "couchrepd/checkpoint.h"
#include "couchrepd/json.h"
#include "couchrepd/json_fields.h"

namespace couchrepd {

namespace {

// One intended change: set `key` to `raw_value`, or remove it (nullopt).
struct Edit {
  std::string_view key;
  std::optional<std::string> raw_value;
};

// The unescaped text of a raw JSON string value; nullopt for other values.
std::optional<std::string> StringOf(std::string_view raw) {
  if (raw.empty() || raw.front() != '"') return std::nullopt;
  simdjson::dom::parser parser;
  std::string_view s;
  if (parser.parse(raw.data(), raw.size()).get(s)) return std::nullopt;
  return std::string(s);
}

std::string Minified(std::string_view raw) {
  auto buffer = std::make_unique<char[]>(raw.size() + 1);
  size_t length = 0;
  if (simdjson::minify(raw.data(), raw.size(), buffer.get(), length)) return std::string(raw);
  return std::string(buffer.get(), length);
}

bool SameJson(std::string_view a, std::string_view b) {
  if (a == b) return true;
  auto sa = StringOf(a);
  auto sb = StringOf(b);
  if (sa || sb) return sa && sb && *sa == *sb;
  return Minified(a) == Minified(b);
}

bool IsJsonObject(std::string_view raw) {
  auto fields = SplitObject(raw);
  return fields.ok();
}

// Applies `edit` to `fields`; true when that changed anything.
bool ApplyEdit(std::vector<JsonField>& fields, const Edit& edit) {
  bool changed = false;
  bool seen = false;
  std::vector<JsonField> out;
  out.reserve(fields.size() + 1);
  for (auto& f : fields) {
    if (f.key != edit.key) {
      out.push_back(std::move(f));
      continue;
    }
    if (!edit.raw_value || seen) {  // removed, or a later duplicate
      changed = true;
      continue;
    }
    seen = true;
    if (!SameJson(f.raw_value, *edit.raw_value)) {
      f.raw_value = *edit.raw_value;
      changed = true;
    }
    out.push_back(std::move(f));
  }
  if (edit.raw_value && !seen) {
    out.push_back(JsonField{std::string(edit.key), *edit.raw_value});
    changed = true;
  }
  fields = std::move(out);
  return changed;
}

bool WithReason(const std::optional<std::string>& state) {
  return state && (*state == "error" || *state == "failed");
}

bool WithStats(const std::optional<std::string>& state) { return state && *state == "completed"; }

}  // namespace

std::optional<std::string> ApplyStateWrite(std::string_view doc_json, const StateWrite& write,
                                           int64_t now_unix) {
  // A document the parser refuses (the server stored it) still gets its
  // state, with every other value passed through as it is.
  auto split = SplitObject(doc_json);
  if (!split.ok() && simdjson::validate_utf8(doc_json.data(), doc_json.size()) &&
      IsJsonText(doc_json)) {
    split = SplitObjectByStructure(doc_json);
  }
  if (!split.ok()) return std::nullopt;
  std::vector<JsonField> fields = std::move(split.value());
  if (FindField(fields, "_deleted") == "true") return std::nullopt;

  std::optional<std::string> stored_state;
  if (auto raw = FindField(fields, kReplicationStateField)) stored_state = StringOf(*raw);
  const bool has_time = FindField(fields, kReplicationStateTimeField).has_value();
  std::optional<std::string> stats;
  if (write.stats_json && IsJsonObject(*write.stats_json)) stats = write.stats_json;

  std::vector<Edit> edits;
  if (write.replication_id) {
    edits.push_back({kReplicationIdField, JsonQuote(*write.replication_id)});
  }
  if (write.state) {
    edits.push_back({kReplicationStateField, JsonQuote(*write.state)});
    if (stored_state != write.state || !has_time) {
      edits.push_back({kReplicationStateTimeField, JsonQuote(FormatRfc3339(now_unix))});
    }
    if (!WithReason(write.state)) {
      edits.push_back({kReplicationStateReasonField, std::nullopt});
    } else if (write.reason) {
      edits.push_back({kReplicationStateReasonField, JsonQuote(*write.reason)});
    }
    if (!WithStats(write.state)) {
      edits.push_back({kReplicationStatsField, std::nullopt});
    } else if (stats) {
      edits.push_back({kReplicationStatsField, *stats});
    }
  } else {
    if (write.reason && WithReason(stored_state)) {
      edits.push_back({kReplicationStateReasonField, JsonQuote(*write.reason)});
    }
    if (stats && WithStats(stored_state)) edits.push_back({kReplicationStatsField, *stats});
  }
  if (write.clear_reason && !write.reason) {
    edits.push_back({kReplicationStateReasonField, std::nullopt});
  }

  bool changed = false;
  for (const Edit& edit : edits) changed |= ApplyEdit(fields, edit);
  if (!changed) return std::nullopt;
  return JoinObject(fields);
}

}  // namespace couchrepd

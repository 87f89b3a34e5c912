// Field-level access to JSON objects without re-serialising their values.
//
// Replication passes document bodies through as raw text. When couchrepd must
// change an object (a document's _attachments, the _replication_* fields of a
// replication document) it splits the object into (key, raw value) pairs,
// replaces what it owns and joins the pairs again, so every other value keeps
// its exact bytes (big numbers, escapes, key order). Pure, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "couchrepd/result.h"

namespace couchrepd {

struct JsonField {
  std::string key;        // unescaped
  std::string raw_value;  // the value's JSON text, exactly as in the input
};

// The top-level fields of a JSON object, in order. Error when `json` is not
// a valid JSON object.
Result<std::vector<JsonField>> SplitObject(std::string_view json);
// The same split by structure only, for an object a server stored whose
// values the parser refuses (nested past its limit, an unpaired surrogate
// escape): keys must be valid, values are taken as they are. Error when the
// text is not an object of that shape.
Result<std::vector<JsonField>> SplitObjectByStructure(std::string_view json);
// Joins fields back into compact JSON object text.
std::string JoinObject(const std::vector<JsonField>& fields);
// The raw value of `key`, or nullopt.
std::optional<std::string> FindField(const std::vector<JsonField>& fields, std::string_view key);

}  // namespace couchrepd

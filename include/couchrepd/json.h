// JSON text helpers.
//
// simdjson parses; it does not write. JsonWriter builds compact JSON text with
// correct string escaping and lets already-serialised JSON (a document body
// passed through untouched, an opaque sequence) be inserted raw. It does not
// check nesting: callers are expected to balance Begin/End calls.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace couchrepd {

// Appends `s` as a JSON string literal (with quotes) to `out`. Invalid UTF-8
// bytes are replaced by U+FFFD so the output is always valid JSON.
void AppendJsonString(std::string& out, std::string_view s);
std::string JsonQuote(std::string_view s);

// One member of a JSON object text found by ScanObjectMembers: `key` is the
// member name as written (quotes and escapes included), [value_begin,
// value_end) the value's text.
struct RawMember {
  std::string_view key;
  size_t value_begin = 0;
  size_t value_end = 0;
};

// Walks the top-level members of the object text `json` by its structure
// only (strings, escapes and brackets; no recursion, linear time, any depth),
// calling `on_member` for each until it returns false. Returns false when the
// text is not an object of that shape (a value is not checked beyond where it
// ends). For finding a member inside text a parser refuses (too deep,
// invalid escapes).
bool ScanObjectMembers(std::string_view json, const std::function<bool(const RawMember&)>& on_member);

// Whether `text` is one JSON value by the grammar of RFC 8259, at any depth
// (iterative, linear time): for text a parser refuses only for its nesting or
// for unpaired surrogate escapes (grammatical, but not Unicode). UTF-8 is
// not checked.
bool IsJsonText(std::string_view text);

// Whether the JSON text `json` nests arrays/objects more than `max_depth`
// levels (by structure: strings and escapes skipped; linear, no recursion).
bool NestedDeeperThan(std::string_view json, size_t max_depth);

class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view k);
  JsonWriter& String(std::string_view s);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Double(double v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  // Inserts `json` verbatim as one value; it must already be valid JSON.
  JsonWriter& Raw(std::string_view json);

  const std::string& str() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void Separate();
  std::string out_;
  bool need_comma_ = false;
};

}  // namespace couchrepd

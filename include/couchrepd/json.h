// JSON text helpers.
//
// simdjson parses; it does not write. JsonWriter builds compact JSON text with
// correct string escaping and lets already-serialised JSON (a document body
// passed through untouched, an opaque sequence) be inserted raw. It does not
// check nesting: callers are expected to balance Begin/End calls.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace couchrepd {

// Appends `s` as a JSON string literal (with quotes) to `out`. Invalid UTF-8
// bytes are replaced by U+FFFD so the output is always valid JSON.
void AppendJsonString(std::string& out, std::string_view s);
std::string JsonQuote(std::string_view s);

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

#include "couchrepd/json_fields.h"

#include <simdjson.h>

#include <optional>

#include "couchrepd/json.h"

namespace couchrepd {

namespace {

std::string_view TrimRight(std::string_view raw) {
  while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' ||
                          raw.back() == '\t')) {
    raw.remove_suffix(1);
  }
  return raw;
}

Error NotAnObject(std::string_view why) {
  return Error::Permanent("bad_json", "not a valid JSON object: " + std::string(why));
}

}  // namespace

Result<std::vector<JsonField>> SplitObject(std::string_view json) {
  // Validate the whole text first: ondemand only checks what it visits.
  simdjson::dom::parser validator;
  simdjson::dom::element root;
  auto err = validator.parse(json.data(), json.size()).get(root);
  if (err && err != simdjson::NUMBER_ERROR) {  // big numbers pass through as text
    return NotAnObject(simdjson::error_message(err));
  }
  // simdjson stops at the first error: past a number it cannot hold, the rest
  // must still be JSON by the grammar (found by fuzz_json_fields: `-1"x"`
  // then `{"a":}` went through).
  if (err == simdjson::NUMBER_ERROR && !IsJsonText(json)) {
    return NotAnObject("it is not JSON by the grammar");
  }
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(json);
  simdjson::ondemand::document doc;
  if (auto e = parser.iterate(padded).get(doc); e) return NotAnObject(simdjson::error_message(e));
  simdjson::ondemand::object obj;
  if (auto e = doc.get_object().get(obj); e) return NotAnObject(simdjson::error_message(e));
  std::vector<JsonField> fields;
  for (auto field : obj) {
    JsonField f;
    std::string_view key;
    if (auto e = field.unescaped_key().get(key); e) return NotAnObject(simdjson::error_message(e));
    f.key = std::string(key);
    simdjson::ondemand::value value;
    if (auto e = field.value().get(value); e) return NotAnObject(simdjson::error_message(e));
    simdjson::ondemand::json_type type;
    if (auto e = value.type().get(type); e) return NotAnObject(simdjson::error_message(e));
    std::string_view raw;
    if (type == simdjson::ondemand::json_type::object) {
      simdjson::ondemand::object o;
      if (value.get_object().get(o) || o.raw_json().get(raw)) return NotAnObject("bad member");
    } else if (type == simdjson::ondemand::json_type::array) {
      simdjson::ondemand::array a;
      if (value.get_array().get(a) || a.raw_json().get(raw)) return NotAnObject("bad member");
    } else {
      raw = value.raw_json_token();
    }
    f.raw_value = std::string(TrimRight(raw));
    fields.push_back(std::move(f));
  }
  return fields;
}

Result<std::vector<JsonField>> SplitObjectByStructure(std::string_view json) {
  simdjson::dom::parser key_parser;
  std::vector<JsonField> fields;
  std::optional<Error> bad;
  bool shaped = ScanObjectMembers(json, [&](const RawMember& m) {
    simdjson::padded_string key_text(m.key);
    std::string_view key;
    if (key_parser.parse(key_text).get_string().get(key)) {
      bad = NotAnObject("a member name is not a valid string");
      return false;
    }
    fields.push_back({std::string(key), std::string(json.substr(m.value_begin, m.value_end - m.value_begin))});
    return true;
  });
  if (bad) return *bad;
  if (!shaped) return NotAnObject("its structure is broken");
  return fields;
}

std::string JoinObject(const std::vector<JsonField>& fields) {
  std::string out = "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) out.push_back(',');
    AppendJsonString(out, fields[i].key);
    out.push_back(':');
    out += fields[i].raw_value;
  }
  out.push_back('}');
  return out;
}

std::optional<std::string> FindField(const std::vector<JsonField>& fields, std::string_view key) {
  for (const auto& f : fields) {
    if (f.key == key) return f.raw_value;
  }
  return std::nullopt;
}

}  // namespace couchrepd

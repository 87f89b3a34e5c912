#include "couchrepd/json.h"

#include <cmath>
#include <cstdio>

namespace couchrepd {

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  size_t len;
  uint32_t min;
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) {
    len = 2;
    min = 0x80;
  } else if ((b & 0xF0) == 0xE0) {
    len = 3;
    min = 0x800;
  } else if ((b & 0xF8) == 0xF0) {
    len = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  uint32_t cp = b & (0xFF >> (len + 1));
  for (size_t k = 1; k < len; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t n = Utf8SequenceLength(s, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD";
        ++i;
      } else {
        out.append(s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
}

std::string JsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  AppendJsonString(out, s);
  return out;
}

void JsonWriter::Separate() {
  if (need_comma_) out_.push_back(',');
  need_comma_ = true;
}

JsonWriter& JsonWriter::BeginObject() {
  Separate();
  out_.push_back('{');
  need_comma_ = false;
  return *this;
}
JsonWriter& JsonWriter::EndObject() {
  out_.push_back('}');
  need_comma_ = true;
  return *this;
}
JsonWriter& JsonWriter::BeginArray() {
  Separate();
  out_.push_back('[');
  need_comma_ = false;
  return *this;
}
JsonWriter& JsonWriter::EndArray() {
  out_.push_back(']');
  need_comma_ = true;
  return *this;
}
JsonWriter& JsonWriter::Key(std::string_view k) {
  Separate();
  AppendJsonString(out_, k);
  out_.push_back(':');
  need_comma_ = false;
  return *this;
}
JsonWriter& JsonWriter::String(std::string_view s) {
  Separate();
  AppendJsonString(out_, s);
  return *this;
}
JsonWriter& JsonWriter::Int(int64_t v) {
  Separate();
  out_ += std::to_string(v);
  return *this;
}
JsonWriter& JsonWriter::Uint(uint64_t v) {
  Separate();
  out_ += std::to_string(v);
  return *this;
}
JsonWriter& JsonWriter::Double(double v) {
  Separate();
  if (!std::isfinite(v)) {
    out_ += "null";
    return *this;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  out_ += buf;
  return *this;
}
JsonWriter& JsonWriter::Bool(bool v) {
  Separate();
  out_ += v ? "true" : "false";
  return *this;
}
JsonWriter& JsonWriter::Null() {
  Separate();
  out_ += "null";
  return *this;
}
JsonWriter& JsonWriter::Raw(std::string_view json) {
  Separate();
  out_.append(json);
  return *this;
}

bool ScanObjectMembers(std::string_view json, const std::function<bool(const RawMember&)>& on_member) {
  size_t i = 0;
  const size_t n = json.size();
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  auto skip_space = [&] {
    while (i < n && space(json[i])) ++i;
  };
  // One past the closing quote of the string starting at json[at] == '"'.
  auto string_end = [&](size_t at) -> size_t {
    for (size_t j = at + 1; j < n; ++j) {
      if (json[j] == '\\') {
        ++j;
      } else if (json[j] == '"') {
        return j + 1;
      }
    }
    return std::string_view::npos;
  };
  skip_space();
  if (i >= n || json[i] != '{') return false;
  ++i;
  skip_space();
  if (i < n && json[i] == '}') return true;
  while (true) {
    skip_space();
    if (i >= n || json[i] != '"') return false;
    size_t key_end = string_end(i);
    if (key_end == std::string_view::npos) return false;
    RawMember m;
    m.key = json.substr(i, key_end - i);
    i = key_end;
    skip_space();
    if (i >= n || json[i] != ':') return false;
    ++i;
    skip_space();
    m.value_begin = i;
    if (i < n && json[i] == '"') {
      i = string_end(i);
      if (i == std::string_view::npos) return false;
    } else if (i < n && (json[i] == '{' || json[i] == '[')) {
      size_t depth = 0;
      while (i < n) {
        char c = json[i];
        if (c == '"') {
          i = string_end(i);
          if (i == std::string_view::npos) return false;
          continue;
        }
        ++i;
        if (c == '{' || c == '[') {
          ++depth;
        } else if ((c == '}' || c == ']') && --depth == 0) {
          break;
        }
      }
      if (depth != 0) return false;
    } else {
      while (i < n && json[i] != ',' && json[i] != '}' && !space(json[i])) ++i;
    }
    m.value_end = i;
    if (m.value_end == m.value_begin) return false;
    if (!on_member(m)) return true;
    skip_space();
    if (i < n && json[i] == '}') return true;
    if (i >= n || json[i] != ',') return false;
    ++i;
  }
}

bool NestedDeeperThan(std::string_view json, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return true;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return false;
}

bool IsJsonText(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  std::string stack;  // '{' and '[' of the open containers
  auto digit = [&](size_t at) { return at < n && s[at] >= '0' && s[at] <= '9'; };
  auto hex = [&](size_t at) {
    return at < n && ((s[at] >= '0' && s[at] <= '9') || (s[at] >= 'a' && s[at] <= 'f') ||
                      (s[at] >= 'A' && s[at] <= 'F'));
  };
  auto skip_space = [&] {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  };
  auto string = [&] {  // at '"'
    for (++i; i < n; ++i) {
      auto c = static_cast<unsigned char>(s[i]);
      if (c == '"') {
        ++i;
        return true;
      }
      if (c < 0x20) return false;
      if (c != '\\') continue;
      if (++i >= n) return false;
      if (s[i] == 'u') {
        if (!hex(i + 1) || !hex(i + 2) || !hex(i + 3) || !hex(i + 4)) return false;
        i += 4;
      } else if (std::string_view("\"\\/bfnrt").find(s[i]) == std::string_view::npos) {
        return false;
      }
    }
    return false;
  };
  auto number = [&] {
    if (i < n && s[i] == '-') ++i;
    if (i < n && s[i] == '0') {
      ++i;
    } else if (digit(i)) {
      while (digit(i)) ++i;
    } else {
      return false;
    }
    if (i < n && s[i] == '.') {
      if (!digit(++i)) return false;
      while (digit(i)) ++i;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
      if (!digit(i)) return false;
      while (digit(i)) ++i;
    }
    return true;
  };
  auto literal = [&](std::string_view word) {
    if (s.substr(i, word.size()) != word) return false;
    i += word.size();
    return true;
  };
  enum class Expect { kValue, kValueOrClose, kKey, kKeyOrClose, kAfterValue };
  Expect expect = Expect::kValue;
  while (true) {
    skip_space();
    if (expect == Expect::kAfterValue) {
      if (stack.empty()) return i == n;
      if (i >= n) return false;
      const char open = stack.back();
      if (s[i] == ',') {
        ++i;
        expect = open == '{' ? Expect::kKey : Expect::kValue;
      } else if (s[i] == (open == '{' ? '}' : ']')) {
        ++i;
        stack.pop_back();
      } else {
        return false;
      }
      continue;
    }
    if (i >= n) return false;
    if (expect == Expect::kKey || expect == Expect::kKeyOrClose) {
      if (expect == Expect::kKeyOrClose && s[i] == '}') {
        ++i;
        stack.pop_back();
        expect = Expect::kAfterValue;
        continue;
      }
      if (s[i] != '"' || !string()) return false;
      skip_space();
      if (i >= n || s[i] != ':') return false;
      ++i;
      expect = Expect::kValue;
      continue;
    }
    // A value (or, after '[', the closing bracket).
    const char c = s[i];
    if (expect == Expect::kValueOrClose && c == ']') {
      ++i;
      stack.pop_back();
      expect = Expect::kAfterValue;
      continue;
    }
    if (c == '{' || c == '[') {
      stack.push_back(c);
      ++i;
      expect = c == '{' ? Expect::kKeyOrClose : Expect::kValueOrClose;
      continue;
    }
    bool ok = c == '"'   ? string()
              : c == 't' ? literal("true")
              : c == 'f' ? literal("false")
              : c == 'n' ? literal("null")
                         : number();
    if (!ok) return false;
    expect = Expect::kAfterValue;
  }
}

}  // namespace couchrepd

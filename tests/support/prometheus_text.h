// A strict parser of the Prometheus text exposition format 0.0.4, for tests
// of `/metrics`: it accepts only what the format allows, and more strictly
// than Prometheus itself, what a well-behaved exporter writes:
//   - metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
//     (not starting with "__"), label values "..." with only \\ \" \n escapes,
//     HELP text with only \\ \n escapes;
//   - values Go-style floats (incl. NaN, +Inf, -Inf), optional int64 timestamp;
//   - every family has exactly one HELP and one TYPE line, both before its
//     samples; a family's lines are contiguous (never interleaved with another
//     family's) and a name never comes back later;
//   - counter, gauge and untyped samples carry exactly the family name;
//     histogram/summary samples the name or name_bucket/_sum/_count;
//   - no duplicate label in a sample, no duplicate series;
//   - the text ends with a line feed.
// Parse() returns the families, or an error naming the line.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace couchrepd::testing {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromFamily {
  std::string name;
  std::string type;
  std::string help;
  std::vector<PromSample> samples;
};

struct PromParse {
  std::map<std::string, PromFamily> families;
  std::string error;  // empty when the text is valid
  bool ok() const { return error.empty(); }

  // The value of the sample of `name` with exactly `labels`, if any.
  std::optional<double> Value(const std::string& name,
                              const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& [fname, f] : families) {
      for (const auto& s : f.samples) {
        if (s.name == name && s.labels == labels) return s.value;
      }
    }
    return std::nullopt;
  }
};

namespace prom_detail {

inline bool IsNameStart(char c, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}
inline bool IsNameChar(char c, bool colon) {
  return IsNameStart(c, colon) || (c >= '0' && c <= '9');
}

inline bool ValidName(std::string_view s, bool colon) {
  if (s.empty() || !IsNameStart(s[0], colon)) return false;
  for (char c : s) {
    if (!IsNameChar(c, colon)) return false;
  }
  return true;
}

inline std::optional<double> ParseFloat(std::string_view s) {
  if (s == "NaN") return std::nan("");
  if (s == "+Inf" || s == "Inf") return HUGE_VAL;
  if (s == "-Inf") return -HUGE_VAL;
  if (s.empty()) return std::nullopt;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
      return std::nullopt;
    }
  }
  std::string text(s);
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return v;
}

inline bool ParseTimestamp(std::string_view s) {
  size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return s.size() <= 20;
}

// Unescapes HELP text (\\ and \n only).
inline std::optional<std::string> UnescapeHelp(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) return std::nullopt;
    if (s[i] == '\\') {
      out += '\\';
    } else if (s[i] == 'n') {
      out += '\n';
    } else {
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace prom_detail

inline PromParse ParsePrometheusText(std::string_view text) {
  using namespace prom_detail;
  PromParse r;
  if (!text.empty() && text.back() != '\n') {
    r.error = "the text does not end with a line feed";
    return r;
  }
  std::set<std::string> closed;  // families whose lines are over
  std::string current;           // the family whose lines are being read
  std::set<std::string> series;  // name + labels, for duplicates
  auto family_of = [&](const std::string& sample_name) -> std::string {
    if (r.families.count(sample_name)) return sample_name;
    for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (sample_name.size() > suffix.size() &&
          sample_name.compare(sample_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
        std::string base = sample_name.substr(0, sample_name.size() - suffix.size());
        auto it = r.families.find(base);
        if (it != r.families.end() &&
            (it->second.type == "histogram" || it->second.type == "summary")) {
          return base;
        }
      }
    }
    return sample_name;
  };
  auto enter = [&](const std::string& family, size_t line_no) -> bool {
    if (family == current) return true;
    if (closed.count(family)) {
      r.error = "line " + std::to_string(line_no) + ": family " + family +
                " continues after another family's lines";
      return false;
    }
    if (!current.empty()) closed.insert(current);
    current = family;
    return true;
  };

  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    auto fail = [&](const std::string& why) {
      r.error = "line " + std::to_string(line_no) + ": " + why + ": `" + std::string(line) + "`";
      return r;
    };
    if (line.empty()) continue;
    if (line[0] == '#') {
      // "# HELP name text" / "# TYPE name type"; other comments are ignored.
      if (line.substr(0, 7) != "# HELP " && line.substr(0, 7) != "# TYPE ") continue;
      bool help = line[2] == 'H';
      std::string_view rest = line.substr(7);
      size_t sp = rest.find(' ');
      std::string name(rest.substr(0, sp));
      std::string_view arg =
          sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
      if (!ValidName(name, true)) return fail("invalid metric name");
      if (!enter(name, line_no)) return r;
      PromFamily& f = r.families[name];
      f.name = name;
      if (!f.samples.empty()) return fail("HELP/TYPE after the family's samples");
      if (help) {
        if (!f.help.empty()) return fail("second HELP line");
        auto h = UnescapeHelp(arg);
        if (!h) return fail("invalid escape in HELP");
        if (h->empty()) return fail("empty HELP");
        f.help = *h;
      } else {
        if (!f.type.empty()) return fail("second TYPE line");
        if (arg != "counter" && arg != "gauge" && arg != "histogram" && arg != "summary" &&
            arg != "untyped") {
          return fail("unknown TYPE");
        }
        f.type = std::string(arg);
      }
      continue;
    }
    // A sample: name{labels} value [timestamp]
    size_t i = 0;
    while (i < line.size() && IsNameChar(line[i], true)) ++i;
    std::string name(line.substr(0, i));
    if (!ValidName(name, true)) return fail("invalid metric name");
    PromSample sample;
    sample.name = name;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        size_t start = i;
        while (i < line.size() && IsNameChar(line[i], false)) ++i;
        std::string label(line.substr(start, i - start));
        if (!ValidName(label, false)) return fail("invalid label name");
        if (label.rfind("__", 0) == 0) return fail("reserved label name");
        if (i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"')
          return fail("expected =\"");
        i += 2;
        std::string value;
        bool closed_quote = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '"') {
            closed_quote = true;
            break;
          }
          if (c == '\\') {
            if (i >= line.size()) return fail("dangling escape");
            char e = line[i++];
            if (e == '\\') {
              value += '\\';
            } else if (e == '"') {
              value += '"';
            } else if (e == 'n') {
              value += '\n';
            } else {
              return fail("invalid escape in a label value");
            }
            continue;
          }
          value += c;
        }
        if (!closed_quote) return fail("unterminated label value");
        if (!sample.labels.emplace(label, value).second) return fail("duplicate label " + label);
        if (i < line.size() && line[i] == ',') {
          ++i;
          continue;
        }
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        return fail("expected , or }");
      }
    }
    if (i >= line.size() || line[i] != ' ') return fail("expected a space before the value");
    ++i;
    std::string_view rest = line.substr(i);
    size_t sp = rest.find(' ');
    auto value = ParseFloat(rest.substr(0, sp));
    if (!value) return fail("invalid value");
    if (sp != std::string_view::npos && !ParseTimestamp(rest.substr(sp + 1))) {
      return fail("invalid timestamp");
    }
    sample.value = *value;
    std::string family = family_of(name);
    auto it = r.families.find(family);
    if (it == r.families.end() || it->second.type.empty() || it->second.help.empty()) {
      return fail("sample without HELP and TYPE before it");
    }
    if ((it->second.type == "counter" || it->second.type == "gauge" ||
         it->second.type == "untyped") &&
        name != family) {
      return fail("sample name differs from its family");
    }
    if (!enter(family, line_no)) return r;
    std::string key = name + "{";
    for (const auto& [k, v] : sample.labels) key += k + "=\"" + v + "\",";
    if (!series.insert(key).second) return fail("duplicate series");
    it->second.samples.push_back(std::move(sample));
  }
  return r;
}

}  // namespace couchrepd::testing

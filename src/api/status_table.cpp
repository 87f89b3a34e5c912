// `couchrepd status` rendering: /_scheduler/docs JSON to a table (pure).
#include "couchrepd/status_table.h"

#include <simdjson.h>

#include <algorithm>

namespace couchrepd {

namespace {

Error BadAnswer(std::string why) {
  return Error::Permanent("bad_status_answer", "the status API answered " + std::move(why));
}

std::string Text(simdjson::dom::element e) {
  std::string_view s;
  if (e.get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  return "";
}

std::optional<int64_t> Int(simdjson::dom::element e) {
  int64_t v;
  if (e.get_int64().get(v) == simdjson::SUCCESS) return v;
  return std::nullopt;
}

StatusRow RowOf(simdjson::dom::object doc) {
  StatusRow r;
  simdjson::dom::element e;
  if (doc["database"].get(e) == simdjson::SUCCESS) r.database = Text(e);
  if (doc["doc_id"].get(e) == simdjson::SUCCESS) r.doc_id = Text(e);
  if (doc["id"].get(e) == simdjson::SUCCESS) r.job_id = Text(e);
  if (doc["state"].get(e) == simdjson::SUCCESS) r.state = Text(e);
  if (doc["source"].get(e) == simdjson::SUCCESS) r.source = Text(e);
  if (doc["target"].get(e) == simdjson::SUCCESS) r.target = Text(e);
  if (doc["error_count"].get(e) == simdjson::SUCCESS) r.error_count = Int(e).value_or(0);
  if (doc["last_updated"].get(e) == simdjson::SUCCESS) r.last_updated = Text(e);
  simdjson::dom::object info;
  if (doc["info"].get_object().get(info) == simdjson::SUCCESS) {
    if (info["docs_written"].get(e) == simdjson::SUCCESS) r.docs_written = Int(e);
    if (info["changes_pending"].get(e) == simdjson::SUCCESS) r.changes_pending = Int(e);
    if (info["error"].get(e) == simdjson::SUCCESS) r.error = Text(e);
  }
  return r;
}

// Display width of UTF-8 text (code points; good enough for a terminal table).
size_t Width(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

// Cut to `max` code points, marking the cut; control characters become spaces.
std::string Cell(std::string_view s, size_t max) {
  std::string out;
  size_t points = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) != 0x80) {
      if (points == max) {
        while (!out.empty() && Width(out) > max - 1) {
          out.pop_back();
          while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
        }
        out += "…";
        return out;
      }
      ++points;
    }
    out += c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c);
  }
  return out;
}

std::string Pad(const std::string& s, size_t width) {
  size_t w = Width(s);
  return w >= width ? s : s + std::string(width - w, ' ');
}

}  // namespace

Result<std::vector<StatusRow>> ParseStatusDocs(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string text(json);
  simdjson::dom::element root;
  if (parser.parse(text).get(root) != simdjson::SUCCESS) return BadAnswer("something that is not JSON");
  simdjson::dom::array docs;
  if (root["docs"].get_array().get(docs) != simdjson::SUCCESS) {
    return BadAnswer("without a \"docs\" list (is it couchrepd's status API?)");
  }
  std::vector<StatusRow> rows;
  for (simdjson::dom::element d : docs) {
    simdjson::dom::object o;
    if (d.get_object().get(o) == simdjson::SUCCESS) rows.push_back(RowOf(o));
  }
  return rows;
}

Result<StatusRow> ParseStatusDoc(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string text(json);
  simdjson::dom::object o;
  if (parser.parse(text).get_object().get(o) != simdjson::SUCCESS) {
    return BadAnswer("something that is not a JSON object");
  }
  return RowOf(o);
}

std::string RenderStatusTable(const std::vector<StatusRow>& rows, size_t error_width) {
  const std::vector<std::string> head = {"STATE", "DOCUMENT", "SOURCE → TARGET", "WRITTEN",
                                         "PENDING", "LAST ERROR"};
  std::vector<std::vector<std::string>> cells;
  for (const StatusRow& r : rows) {
    cells.push_back({r.state, Cell(r.database + "/" + r.doc_id, 60),
                     Cell(r.source, 50) + " → " + Cell(r.target, 50),
                     r.docs_written ? std::to_string(*r.docs_written) : "-",
                     r.changes_pending ? std::to_string(*r.changes_pending) : "-",
                     r.error.empty() ? "" : Cell(r.error, error_width)});
  }
  std::vector<size_t> width(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    width[c] = Width(head[c]);
    for (const auto& row : cells) width[c] = std::max(width[c], Width(row[c]));
  }
  auto line = [&](const std::vector<std::string>& row) {
    std::string out;
    for (size_t c = 0; c < row.size(); ++c) {
      out += c + 1 < row.size() ? Pad(row[c], width[c]) + "  " : row[c];
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(head);
  for (const auto& row : cells) out += line(row);
  int attention = 0;
  for (const StatusRow& r : rows) {
    attention += r.state == "error" || r.state == "failed" || r.state == "crashing";
  }
  out += std::to_string(rows.size()) + (rows.size() == 1 ? " document" : " documents") + ", " +
         std::to_string(attention) + " in error, failed or crashing\n";
  return out;
}

std::string RenderStatusDetail(const StatusRow& r, std::string_view job_json) {
  std::string out;
  auto field = [&](std::string_view name, const std::string& value) {
    if (!value.empty()) out += Pad(std::string(name) + ":", 14) + Cell(value, 2000) + "\n";
  };
  field("document", r.database + "/" + r.doc_id);
  field("state", r.state);
  field("job", r.job_id);
  field("source", r.source);
  field("target", r.target);
  if (r.docs_written) field("written", std::to_string(*r.docs_written));
  if (r.changes_pending) field("pending", std::to_string(*r.changes_pending));
  field("error", r.error);
  if (r.error_count > 0) field("errors", std::to_string(r.error_count));
  field("updated", r.last_updated);
  if (job_json.empty()) return out;
  simdjson::dom::parser parser;
  simdjson::padded_string text(job_json);
  simdjson::dom::array history;
  if (parser.parse(text)["history"].get_array().get(history) != simdjson::SUCCESS) return out;
  out += "history (newest first):\n";
  for (simdjson::dom::element e : history) {
    simdjson::dom::element v;
    std::string when = e["timestamp"].get(v) == simdjson::SUCCESS ? Text(v) : "";
    std::string type = e["type"].get(v) == simdjson::SUCCESS ? Text(v) : "";
    std::string reason = e["reason"].get(v) == simdjson::SUCCESS ? Text(v) : "";
    out += "  " + Cell(when, 40) + "  " +
           (reason.empty() ? Cell(type, 20) : Pad(Cell(type, 20), 9) + "  " + Cell(reason, 200)) +
           "\n";
  }
  return out;
}

bool AnyNeedsAttention(const std::vector<StatusRow>& rows) {
  return std::any_of(rows.begin(), rows.end(), [](const StatusRow& r) {
    return r.state == "error" || r.state == "failed" || r.state == "crashing";
  });
}

}  // namespace couchrepd

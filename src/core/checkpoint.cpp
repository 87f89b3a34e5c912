#include "couchrepd/checkpoint.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <unordered_map>
#include <utility>

#include "couchrepd/json.h"

namespace couchrepd {

namespace {

namespace od = simdjson::ondemand;

constexpr const char* kBadCheckpoint = "bad_checkpoint";

// Values from a document quoted in a log line are cut to this many bytes.
constexpr size_t kShownValueBytes = 80;

// Clamping range of the date formatters: 0000-01-01T00:00:00Z and
// 9999-12-31T23:59:59Z.
constexpr int64_t kMinFormattedTime = -62167219200;
constexpr int64_t kMaxFormattedTime = 253402300799;

Error Bad(std::string reason) {
  return Error::Permanent(kBadCheckpoint, "checkpoint document " + std::move(reason));
}

std::string_view TrimJsonSpace(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// ---------------------------------------------------------------- parsing
//
// The body is validated in full with the DOM parser first; the on-demand
// parser then extracts members, because only it can hand out the raw text of
// a value (sequences must be kept exactly as received).

// Raw JSON text of `v` (of type `type`); consumes containers.
simdjson::error_code RawValue(od::value& v, od::json_type type, std::string& out) {
  std::string_view raw;
  simdjson::error_code err = simdjson::SUCCESS;
  if (type == od::json_type::object) {
    od::object o;
    err = v.get_object().get(o);
    if (!err) err = o.raw_json().get(raw);
  } else if (type == od::json_type::array) {
    od::array a;
    err = v.get_array().get(a);
    if (!err) err = a.raw_json().get(raw);
  } else {
    raw = v.raw_json_token();
  }
  if (!err) out = std::string(TrimJsonSpace(raw));
  return err;
}

// A sequence member: raw JSON, with null counting as absent.
simdjson::error_code ReadSeq(od::value& v, od::json_type type, std::optional<std::string>& out) {
  if (type == od::json_type::null) return simdjson::SUCCESS;
  std::string raw;
  simdjson::error_code err = RawValue(v, type, raw);
  if (!err) out = std::move(raw);
  return err;
}

simdjson::error_code ReadString(od::value& v, od::json_type type, std::optional<std::string>& out) {
  if (type != od::json_type::string) return simdjson::SUCCESS;
  std::string_view s;
  simdjson::error_code err = v.get_string().get(s);
  if (!err) out = std::string(s);
  return err;
}

// An integer that fits int64; anything else (fractions, exponents, too big,
// another type) counts as absent.
std::optional<int64_t> ReadInt(od::value& v, od::json_type type) {
  if (type != od::json_type::number) return std::nullopt;
  std::string_view token = TrimJsonSpace(v.raw_json_token());
  int64_t n = 0;
  const char* end = token.data() + token.size();
  auto [ptr, ec] = std::from_chars(token.data(), end, n);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return n;
}

// Known members are taken from their first occurrence, as CouchDB's
// couch_util:get_value does with duplicate keys.
class FirstSeen {
 public:
  bool First(std::string_view key) {
    if (std::find(seen_.begin(), seen_.end(), key) != seen_.end()) return false;
    seen_.emplace_back(key);
    return true;
  }

 private:
  std::vector<std::string> seen_;
};

simdjson::error_code ParseEntry(od::object& obj, CheckpointHistoryEntry& e) {
  FirstSeen seen;
  for (auto member : obj) {
    od::field field;
    simdjson::error_code err = std::move(member).get(field);
    std::string_view key_view;
    if (!err) err = field.unescaped_key().get(key_view);
    if (err) return err;
    std::string key(key_view);
    od::value v = field.value();
    od::json_type type;
    if ((err = v.type().get(type))) return err;

    const bool known = key == "session_id" || key == "start_time" || key == "end_time" ||
                       key == "start_last_seq" || key == "end_last_seq" || key == "recorded_seq" ||
                       key == "missing_checked" || key == "missing_found" || key == "docs_read" ||
                       key == "docs_written" || key == "doc_write_failures";
    if (!known) {
      std::string raw;
      if ((err = RawValue(v, type, raw))) return err;
      e.extra_members.emplace_back(std::move(key), std::move(raw));
      continue;
    }
    if (!seen.First(key)) continue;
    if (key == "session_id") {
      err = ReadString(v, type, e.session_id);
    } else if (key == "start_time") {
      err = ReadString(v, type, e.start_time);
    } else if (key == "end_time") {
      err = ReadString(v, type, e.end_time);
    } else if (key == "start_last_seq") {
      err = ReadSeq(v, type, e.start_last_seq);
    } else if (key == "end_last_seq") {
      err = ReadSeq(v, type, e.end_last_seq);
    } else if (key == "recorded_seq") {
      err = ReadSeq(v, type, e.recorded_seq);
    } else {
      int64_t n = ReadInt(v, type).value_or(0);
      if (key == "missing_checked") e.stats.revisions_checked = n;
      if (key == "missing_found") e.stats.missing_revisions_found = n;
      if (key == "docs_read") e.stats.docs_read = n;
      if (key == "docs_written") e.stats.docs_written = n;
      if (key == "doc_write_failures") e.stats.doc_write_failures = n;
    }
    if (err) return err;
  }
  return simdjson::SUCCESS;
}

simdjson::error_code ParseHistory(od::value& v, std::vector<CheckpointHistoryEntry>& history) {
  od::array arr;
  simdjson::error_code err = v.get_array().get(arr);
  if (err) return err;
  for (auto element : arr) {
    od::value item;
    od::json_type type;
    if ((err = std::move(element).get(item)) || (err = item.type().get(type))) return err;
    if (type != od::json_type::object) continue;  // CouchDB would crash on it; we drop it
    od::object obj;
    CheckpointHistoryEntry entry;
    if ((err = item.get_object().get(obj)) || (err = ParseEntry(obj, entry))) return err;
    history.push_back(std::move(entry));
  }
  return simdjson::SUCCESS;
}

simdjson::error_code ParseTop(od::object& obj, CheckpointDoc& doc) {
  FirstSeen seen;
  for (auto member : obj) {
    od::field field;
    simdjson::error_code err = std::move(member).get(field);
    std::string_view key_view;
    if (!err) err = field.unescaped_key().get(key_view);
    if (err) return err;
    std::string key(key_view);
    if (!seen.First(key)) continue;
    od::value v = field.value();
    od::json_type type;
    if ((err = v.type().get(type))) return err;
    if (key == "_rev") {
      err = ReadString(v, type, doc.rev);
    } else if (key == "session_id") {
      err = ReadString(v, type, doc.session_id);
    } else if (key == "source_last_seq") {
      err = ReadSeq(v, type, doc.source_last_seq);
    } else if (key == "replication_id_version") {
      doc.replication_id_version = ReadInt(v, type);
    } else if (key == "history" && type == od::json_type::array) {
      err = ParseHistory(v, doc.history);
    }
    if (err) return err;
  }
  return simdjson::SUCCESS;
}

// ---------------------------------------------------------------- rendering

// A raw sequence left empty by a caller would make the output invalid JSON.
std::string_view SeqOrZero(std::string_view raw) { return raw.empty() ? "0" : raw; }

void WriteEntry(JsonWriter& w, const CheckpointHistoryEntry& e) {
  w.BeginObject();
  if (e.session_id) w.Key("session_id").String(*e.session_id);
  if (e.start_time) w.Key("start_time").String(*e.start_time);
  if (e.end_time) w.Key("end_time").String(*e.end_time);
  if (e.start_last_seq) w.Key("start_last_seq").Raw(SeqOrZero(*e.start_last_seq));
  if (e.end_last_seq) w.Key("end_last_seq").Raw(SeqOrZero(*e.end_last_seq));
  if (e.recorded_seq) w.Key("recorded_seq").Raw(SeqOrZero(*e.recorded_seq));
  w.Key("missing_checked").Int(e.stats.revisions_checked);
  w.Key("missing_found").Int(e.stats.missing_revisions_found);
  w.Key("docs_read").Int(e.stats.docs_read);
  w.Key("docs_written").Int(e.stats.docs_written);
  w.Key("doc_write_failures").Int(e.stats.doc_write_failures);
  for (const auto& [key, raw] : e.extra_members) w.Key(key).Raw(SeqOrZero(raw));
  w.EndObject();
}

// ---------------------------------------------------------------- start decision

// A string from a document, quoted for a log line.
std::string ShownString(std::string_view s) {
  if (s.size() <= kShownValueBytes) return JsonQuote(s);
  return JsonQuote(s.substr(0, kShownValueBytes)) + "...";
}

// A raw sequence for a log line: control bytes blanked, shortened.
std::string ShownSeq(std::string_view raw) {
  std::string out(raw.substr(0, kShownValueBytes));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  if (raw.size() > kShownValueBytes) out += "...";
  return out;
}

// Index of the last entry of each session in a history.
using LastIndex = std::unordered_map<std::string_view, size_t>;

LastIndex LastIndexBySession(const std::vector<CheckpointHistoryEntry>& history) {
  LastIndex last;
  for (size_t i = 0; i < history.size(); ++i) {
    if (history[i].session_id) last[*history[i].session_id] = i;
  }
  return last;
}

// Whether `session` occurs in the history at an index >= `from`.
bool OccursFrom(const LastIndex& last, const std::optional<std::string>& session, size_t from) {
  if (!session) return false;
  auto it = last.find(*session);
  return it != last.end() && it->second >= from;
}

// Sets the sequence to resume from and the log line saying why.
void Resume(StartDecision& d, std::optional<std::string> seq, std::string why,
            std::string_view seq_field) {
  d.start_seq = std::move(seq);
  if (d.start_seq) {
    d.explanation = std::move(why) + " at " + ShownSeq(*d.start_seq);
  } else {
    d.explanation = std::move(why) + ", but it has no " + std::string(seq_field) +
                    ": starting from since_seq or 0";
  }
}

void Match(StartDecision& d, const CheckpointHistoryEntry& entry) {
  d.matched = entry;
  d.restored_stats = entry.stats;
}

// civil_from_days (H. Hinnant): days since 1970-01-01 -> proleptic Gregorian date.
struct CivilTime {
  int64_t year;
  unsigned month;    // 1..12
  unsigned day;      // 1..31
  unsigned weekday;  // 0 = Sunday
  unsigned hour, minute, second;
};

CivilTime ToCivil(int64_t unix_seconds) {
  int64_t t = std::clamp(unix_seconds, kMinFormattedTime, kMaxFormattedTime);
  int64_t days = t / 86400;
  int64_t secs = t % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  CivilTime c{};
  c.hour = static_cast<unsigned>(secs / 3600);
  c.minute = static_cast<unsigned>(secs / 60 % 60);
  c.second = static_cast<unsigned>(secs % 60);
  c.weekday = static_cast<unsigned>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday

  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  c.day = doy - (153 * mp + 2) / 5 + 1;
  c.month = mp < 10 ? mp + 3 : mp - 9;
  c.year = static_cast<int64_t>(yoe) + era * 400 + (c.month <= 2 ? 1 : 0);
  return c;
}

}  // namespace

Result<CheckpointDoc> ParseCheckpointDoc(std::string_view json) {
  simdjson::padded_string padded(json);
  {
    simdjson::dom::parser validator;
    simdjson::dom::element root;
    if (validator.parse(padded).get(root) != simdjson::SUCCESS) {
      return Bad("is not valid JSON");
    }
    if (!root.is_object()) return Bad("is not a JSON object");
  }
  od::parser parser;
  od::document document;
  od::object obj;
  CheckpointDoc doc;
  simdjson::error_code err = parser.iterate(padded).get(document);
  if (!err) err = document.get_object().get(obj);
  if (!err) err = ParseTop(obj, doc);
  if (err) return Bad(std::string("could not be read: ") + simdjson::error_message(err));
  return doc;
}

StartDecision DecideStartSeq(const std::optional<CheckpointDoc>& source,
                             const std::optional<CheckpointDoc>& target) {
  StartDecision d;
  if (!source && !target) {
    d.basis = StartBasis::kNoCheckpoint;
    d.explanation = "no checkpoint on source or target: starting from since_seq or 0";
    return d;
  }
  if (source && target && source->session_id && target->session_id &&
      *source->session_id == *target->session_id) {
    d.basis = StartBasis::kSameSession;
    // CouchDB restores statistics from the head of the source's history.
    if (!source->history.empty()) Match(d, source->history.front());
    Resume(d, source->source_last_seq,
           "resuming from session " + ShownString(*source->session_id) +
               " (the latest checkpoint on both sides)",
           "source_last_seq");
    return d;
  }

  static const std::vector<CheckpointHistoryEntry> kNone;
  const std::vector<CheckpointHistoryEntry>& s = source ? source->history : kNone;
  const std::vector<CheckpointHistoryEntry>& t = target ? target->history : kNone;
  const LastIndex last_in_s = LastIndexBySession(s);
  const LastIndex last_in_t = LastIndexBySession(t);
  for (size_t i = 0; i < s.size() && i < t.size(); ++i) {
    const CheckpointHistoryEntry* match = nullptr;
    if (OccursFrom(last_in_t, s[i].session_id, i)) {
      match = &s[i];
    } else if (OccursFrom(last_in_s, t[i].session_id, i + 1)) {
      match = &t[i];
    }
    if (match) {
      d.basis = StartBasis::kCommonHistory;
      Match(d, *match);
      Resume(d, match->recorded_seq,
             "resuming from session " + ShownString(*match->session_id) +
                 ", the newest found in both checkpoint histories (its record on the " +
                 (match == &s[i] ? "source" : "target") + ")",
             "recorded_seq");
      return d;
    }
  }
  d.basis = StartBasis::kNoCommonHistory;
  if (!source) {
    d.explanation = "no checkpoint on the source: starting from since_seq or 0";
  } else if (!target) {
    d.explanation = "no checkpoint on the target: starting from since_seq or 0";
  } else {
    d.explanation = "no common session in the checkpoint histories: starting from since_seq or 0";
  }
  return d;
}

CheckpointDoc NextCheckpointDoc(const std::optional<CheckpointDoc>& previous,
                                const CheckpointUpdate& update) {
  CheckpointDoc doc;
  doc.session_id = update.session_id;
  doc.source_last_seq = update.recorded_seq;
  doc.replication_id_version = kCheckpointReplicationIdVersion;

  CheckpointHistoryEntry entry;
  entry.session_id = update.session_id;
  entry.start_time = FormatRfc1123(update.run_start_time);
  entry.end_time = FormatRfc1123(update.now);
  entry.start_last_seq = update.start_seq;
  entry.end_last_seq = update.recorded_seq;
  entry.recorded_seq = update.recorded_seq;
  entry.stats = update.stats;
  doc.history.push_back(std::move(entry));

  if (previous) {
    auto it = previous->history.begin();
    if (it != previous->history.end() && it->session_id == update.session_id) ++it;
    for (; it != previous->history.end() && doc.history.size() < kMaxCheckpointHistory; ++it) {
      doc.history.push_back(*it);
    }
  }
  return doc;
}

std::string RenderCheckpointDoc(const CheckpointDoc& doc, std::optional<std::string_view> rev) {
  JsonWriter w;
  w.BeginObject();
  if (rev) w.Key("_rev").String(*rev);
  if (doc.session_id) w.Key("session_id").String(*doc.session_id);
  if (doc.source_last_seq) w.Key("source_last_seq").Raw(SeqOrZero(*doc.source_last_seq));
  if (doc.replication_id_version) w.Key("replication_id_version").Int(*doc.replication_id_version);
  w.Key("history").BeginArray();
  for (const CheckpointHistoryEntry& e : doc.history) WriteEntry(w, e);
  w.EndArray();
  w.EndObject();
  return w.Take();
}

bool SameCheckpointContent(const CheckpointDoc& stored, const CheckpointDoc& written) {
  return stored.session_id && written.session_id && *stored.session_id == *written.session_id &&
         stored.source_last_seq && written.source_last_seq &&
         *stored.source_last_seq == *written.source_last_seq;
}

std::string FormatRfc1123(int64_t unix_seconds) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const CivilTime c = ToCivil(unix_seconds);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04lld %02u:%02u:%02u GMT", kDays[c.weekday], c.day,
                kMonths[c.month - 1], static_cast<long long>(c.year), c.hour, c.minute, c.second);
  return buf;
}

std::string FormatRfc3339(int64_t unix_seconds) {
  const CivilTime c = ToCivil(unix_seconds);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02u:%02u:%02uZ", static_cast<long long>(c.year),
                c.month, c.day, c.hour, c.minute, c.second);
  return buf;
}

}  // namespace couchrepd

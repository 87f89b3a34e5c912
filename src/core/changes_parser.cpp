#include "couchrepd/changes_parser.h"

#include "couchrepd/json.h"
#include "couchrepd/limits.h"

#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <utility>

namespace couchrepd {

namespace {

namespace od = simdjson::ondemand;

constexpr const char* kFeedError = "bad_changes_feed";

// Buffers grown past this by one big row are released afterwards, so a
// long-lived continuous feed does not keep a 64 MB row's memory forever.
constexpr size_t kRetainedCapacity = size_t{4} << 20;

constexpr size_t kNpos = std::string_view::npos;

bool IsJsonSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Bytes that can continue a number or a true/false/null literal. Anything
// else ends the scalar; simdjson then checks what was captured.
bool IsScalarByte(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
         c == '+' || c == '.';
}

std::string_view TrimJsonSpace(std::string_view s) {
  while (!s.empty() && IsJsonSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsJsonSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string DescribeByte(char c) {
  auto u = static_cast<unsigned char>(c);
  char buf[16];
  if (u >= 0x20 && u < 0x7f) {
    std::snprintf(buf, sizeof buf, "'%c'", c);
  } else {
    std::snprintf(buf, sizeof buf, "byte 0x%02x", u);
  }
  return buf;
}

// What a row (or the continuous feed's final object) holds.
struct ObjectFields {
  ChangeRow row;
  bool has_id = false;
  bool has_seq = false;
  bool has_changes = false;
  std::optional<std::string> last_seq;
  std::optional<int64_t> pending;
  std::optional<std::string> error;
  std::optional<std::string> reason;
};

// Raw JSON text of `v`, without surrounding whitespace.
simdjson::error_code RawValue(od::value& v, std::string_view& out) {
  od::json_type type;
  simdjson::error_code err = v.type().get(type);
  if (err) return err;
  if (type == od::json_type::object) {
    od::object o;
    err = v.get_object().get(o);
    if (!err) err = o.raw_json().get(out);
  } else if (type == od::json_type::array) {
    od::array a;
    err = v.get_array().get(a);
    if (!err) err = a.raw_json().get(out);
  } else {
    out = v.raw_json_token();
  }
  if (!err) out = TrimJsonSpace(out);
  return err;
}

// A string member as its unescaped text; any other value as raw JSON.
simdjson::error_code TextValue(od::value& v, std::string& out) {
  od::json_type type;
  simdjson::error_code err = v.type().get(type);
  if (err) return err;
  std::string_view s;
  err = type == od::json_type::string ? v.get_string().get(s) : RawValue(v, s);
  if (!err) out.assign(s);
  return err;
}

// Extracts the members the replicator needs from one already validated
// object. Returns an empty string on success, else what is wrong.
std::string DecodeObject(od::parser& parser, const std::string& padded, size_t len,
                         ObjectFields& out) {
  od::document doc;
  simdjson::error_code err = parser.iterate(padded.data(), len, padded.size()).get(doc);
  if (err) return simdjson::error_message(err);
  od::object obj;
  if (doc.get_object().get(obj)) return "it is not a JSON object";
  for (auto field_result : obj) {
    od::field field;
    if ((err = std::move(field_result).get(field))) return simdjson::error_message(err);
    std::string_view key;
    if ((err = field.unescaped_key().get(key))) return simdjson::error_message(err);
    od::value& v = field.value();
    if (key == "id") {
      std::string_view id;
      if (v.get_string().get(id)) return "\"id\" is not a string";
      out.row.id.assign(id);
      out.has_id = true;
    } else if (key == "seq") {
      std::string_view raw;
      if ((err = RawValue(v, raw))) return simdjson::error_message(err);
      out.row.seq.assign(raw);
      out.has_seq = true;
    } else if (key == "changes") {
      od::array changes;
      if (v.get_array().get(changes)) return "\"changes\" is not an array";
      out.row.revs.clear();
      for (auto change_result : changes) {
        od::object change;
        if (change_result.get_object().get(change))
          return "an entry of \"changes\" is not an object";
        bool has_rev = false;
        for (auto change_field_result : change) {
          od::field change_field;
          if ((err = std::move(change_field_result).get(change_field))) {
            return simdjson::error_message(err);
          }
          std::string_view change_key;
          if ((err = change_field.unescaped_key().get(change_key))) {
            return simdjson::error_message(err);
          }
          if (change_key != "rev") continue;
          std::string_view rev;
          if (change_field.value().get_string().get(rev)) return "a \"rev\" is not a string";
          out.row.revs.emplace_back(rev);
          has_rev = true;
        }
        if (!has_rev) return "an entry of \"changes\" has no \"rev\"";
      }
      out.has_changes = true;
    } else if (key == "deleted") {
      if (v.get_bool().get(out.row.deleted)) return "\"deleted\" is not a boolean";
    } else if (key == "doc") {
      std::string_view raw;
      if ((err = RawValue(v, raw))) return simdjson::error_message(err);
      out.row.doc.assign(raw);
    } else if (key == "last_seq") {
      std::string_view raw;
      if ((err = RawValue(v, raw))) return simdjson::error_message(err);
      out.last_seq.emplace(raw);
    } else if (key == "pending") {
      int64_t pending;
      if (!v.get_int64().get(pending)) out.pending = pending;
    } else if (key == "error") {
      out.error.emplace();
      if ((err = TextValue(v, *out.error))) return simdjson::error_message(err);
    } else if (key == "reason") {
      out.reason.emplace();
      if ((err = TextValue(v, *out.reason))) return simdjson::error_message(err);
    }
  }
  return {};
}

// The row text with its top-level "doc" member's value replaced by null
// (padded for simdjson); `doc` receives the value's text, or stays empty when
// the row has no such member or is not an object.
std::string RowWithoutDoc(std::string_view row, std::optional<std::string>& doc) {
  std::string rest;
  ScanObjectMembers(row, [&](const RawMember& m) {
    if (m.key != "\"doc\"") return true;
    doc.emplace(row.substr(m.value_begin, m.value_end - m.value_begin));
    rest.reserve(row.size() + simdjson::SIMDJSON_PADDING);
    rest.append(row.substr(0, m.value_begin));
    rest.append("null");
    rest.append(row.substr(m.value_end));
    return false;
  });
  rest.append(simdjson::SIMDJSON_PADDING, ' ');
  return rest;
}

}  // namespace

enum class ChangesParser::State : uint8_t {
  // kNormal: {"results":[row,...],"last_seq":S,"pending":P}
  kStart,        // before the opening brace
  kFirstKey,     // after '{': a member name or '}'
  kKey,          // after ',': a member name
  kInKey,        // capturing a member name
  kColon,        // after a member name
  kValue,        // a member value
  kInValue,      // capturing a member value (other than results)
  kFirstRow,     // after "results":[ : a row or ']'
  kNextRow,      // after ',' in results: a row
  kAfterRow,     // ',' or ']'
  kAfterMember,  // ',' or '}'
  kDone,         // after the closing brace: whitespace only
  // kContinuous
  kBetweenRows,  // whitespace (heartbeats) or a row
  kEnded,        // after the last_seq object: whitespace only
  // Both
  kInRow,  // capturing a row
  kFailed,
};

enum class ChangesParser::CaptureKind : uint8_t { kContainer, kString, kScalar };

struct ChangesParser::Decoder {
  simdjson::dom::parser dom;        // full validation
  simdjson::ondemand::parser lazy;  // extraction with raw text positions
};

ChangesParser::ChangesParser(FeedKind kind, size_t max_row_bytes)
    : kind_(kind),
      max_row_bytes_(max_row_bytes),
      state_(kind == FeedKind::kNormal ? State::kStart : State::kBetweenRows),
      decoder_(std::make_unique<Decoder>()),
      cap_kind_(CaptureKind::kContainer) {}

ChangesParser::~ChangesParser() = default;
ChangesParser::ChangesParser(ChangesParser&&) noexcept = default;
ChangesParser& ChangesParser::operator=(ChangesParser&&) noexcept = default;

Status ChangesParser::Fail(Error error) {
  state_ = State::kFailed;
  error_ = std::move(error);
  return *error_;
}

Status ChangesParser::Malformed(uint64_t offset, std::string what) {
  return Fail(Error::Permanent(kFeedError, what + " (at offset " + std::to_string(offset) + ")"));
}

Status ChangesParser::Unexpected(char c, uint64_t offset, std::string_view expected) {
  return Malformed(offset, "unexpected " + DescribeByte(c) + ", expected " + std::string(expected));
}

// Appends captured bytes, growing the buffer in powers of two (plus room for
// simdjson's padding) up to the row cap: a row near the cap peaks at the cap,
// not at std::string's own overshoot to nearly twice it.
void ChangesParser::Append(std::string_view bytes) {
  const size_t need = buf_.size() + bytes.size() + simdjson::SIMDJSON_PADDING;
  if (need > buf_.capacity()) {
    size_t want = std::max<size_t>(size_t{1} << 12, buf_.capacity() + 1);
    while (want < need) want *= 2;
    buf_.reserve(std::min(want, std::max(need, max_row_bytes_ + simdjson::SIMDJSON_PADDING)));
  }
  buf_.append(bytes);
}

Status ChangesParser::Feed(std::string_view chunk, const RowHandler& on_row) {
  if (error_) return *error_;
  cap_start_ = 0;
  size_t i = 0;
  while (i < chunk.size()) {
    Status s = Step(chunk, i, on_row);
    if (!s.ok()) return s;
  }
  if (state_ == State::kInKey || state_ == State::kInValue || state_ == State::kInRow) {
    Append(chunk.substr(cap_start_));
  }
  offset_ += chunk.size();
  return OkStatus();
}

// Consumes at least one byte of chunk[i..], or all the rest.
Status ChangesParser::Step(std::string_view chunk, size_t& i, const RowHandler& on_row) {
  if (state_ == State::kInKey || state_ == State::kInValue || state_ == State::kInRow) {
    size_t end = ScanValue(chunk, i);
    size_t held = buf_.size() + ((end == kNpos ? chunk.size() : end) - cap_start_);
    if (held > max_row_bytes_) {
      return Malformed(cap_offset_, std::string(state_ == State::kInRow ? "a row" : "a value") +
                                        " is larger than max_row_bytes (" +
                                        std::to_string(max_row_bytes_) + " bytes)");
    }
    if (end == kNpos) {
      i = chunk.size();
      return OkStatus();
    }
    i = end;
    return CompleteValue(chunk, end, on_row);
  }

  while (i < chunk.size() && IsJsonSpace(chunk[i])) ++i;
  if (i == chunk.size()) return OkStatus();
  const char c = chunk[i];
  const uint64_t at = offset_ + i;
  switch (state_) {
    case State::kStart:
      if (c != '{') return Unexpected(c, at, "'{' opening the response object");
      ++i;
      state_ = State::kFirstKey;
      return OkStatus();
    case State::kFirstKey:
      if (c == '}') {
        ++i;
        return OnClosingBrace(at);
      }
      [[fallthrough]];
    case State::kKey:
      if (c != '"') return Unexpected(c, at, "a member name");
      state_ = State::kInKey;
      return StartValue(chunk, i);
    case State::kColon:
      if (c != ':') return Unexpected(c, at, "':' after a member name");
      ++i;
      state_ = State::kValue;
      return OkStatus();
    case State::kValue:
      if (key_ == "results") {
        if (seen_results_) return Malformed(at, "a second \"results\" member");
        if (c != '[') return Unexpected(c, at, "'[' opening \"results\"");
        seen_results_ = true;
        ++i;
        state_ = State::kFirstRow;
        return OkStatus();
      }
      state_ = State::kInValue;
      return StartValue(chunk, i);
    case State::kFirstRow:
      if (c == ']') {
        ++i;
        state_ = State::kAfterMember;
        return OkStatus();
      }
      [[fallthrough]];
    case State::kNextRow:
    case State::kBetweenRows:
      if (c != '{') return Unexpected(c, at, "'{' opening a row");
      state_ = State::kInRow;
      return StartValue(chunk, i);
    case State::kAfterRow:
      if (c == ',') {
        state_ = State::kNextRow;
      } else if (c == ']') {
        state_ = State::kAfterMember;
      } else {
        return Unexpected(c, at, "',' or ']' after a row");
      }
      ++i;
      return OkStatus();
    case State::kAfterMember:
      if (c == '}') {
        ++i;
        return OnClosingBrace(at);
      }
      if (c != ',') return Unexpected(c, at, "',' or '}' after a member");
      ++i;
      state_ = State::kKey;
      return OkStatus();
    case State::kDone:
      return Malformed(at, "data after the end of the response object");
    case State::kEnded:
      return Malformed(at, "data after the final last_seq object");
    case State::kInKey:
    case State::kInValue:
    case State::kInRow:
    case State::kFailed:
      break;
  }
  return Malformed(at, "internal error: unexpected parser state");
}

// Starts capturing the value whose first byte is chunk[i].
Status ChangesParser::StartValue(std::string_view chunk, size_t& i) {
  const char c = chunk[i];
  buf_.clear();
  cap_start_ = i;
  cap_offset_ = offset_ + i;
  depth_ = 0;
  in_string_ = false;
  escape_ = false;
  if (c == '{' || c == '[') {
    cap_kind_ = CaptureKind::kContainer;
    depth_ = 1;
  } else if (c == '"') {
    cap_kind_ = CaptureKind::kString;
    in_string_ = true;
  } else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n') {
    cap_kind_ = CaptureKind::kScalar;
  } else {
    return Unexpected(c, cap_offset_, "a JSON value");
  }
  ++i;
  return OkStatus();
}

// Finds where the value being captured ends: the index one past its last byte
// in `chunk`, or kNpos when it goes on past the chunk. Only the extent is
// found here (strings, escapes, nesting); simdjson validates the content.
size_t ChangesParser::ScanValue(std::string_view chunk, size_t i) {
  const char* p = chunk.data();
  const size_t n = chunk.size();
  if (cap_kind_ == CaptureKind::kScalar) {
    while (i < n && IsScalarByte(p[i])) ++i;
    return i < n ? i : kNpos;
  }
  while (i < n) {
    if (in_string_) {
      if (escape_) {
        escape_ = false;
        ++i;
        continue;
      }
      while (i < n && p[i] != '"' && p[i] != '\\') ++i;
      if (i == n) break;
      if (p[i++] == '\\') {
        escape_ = true;
        continue;
      }
      in_string_ = false;
      if (depth_ == 0) return i;
      continue;
    }
    switch (p[i++]) {
      case '"':
        in_string_ = true;
        break;
      case '{':
      case '[':
        ++depth_;
        break;
      case '}':
      case ']':
        if (--depth_ == 0) return i;
        break;
      default:
        break;
    }
  }
  return kNpos;
}

Status ChangesParser::CompleteValue(std::string_view chunk, size_t end, const RowHandler& on_row) {
  Append(chunk.substr(cap_start_, end - cap_start_));
  Status s = OkStatus();
  if (state_ == State::kInKey) {
    buf_.append(simdjson::SIMDJSON_PADDING, ' ');
    std::string_view key;
    if (decoder_->dom.parse(buf_.data(), buf_.size() - simdjson::SIMDJSON_PADDING, false)
            .get_string()
            .get(key)) {
      s = Malformed(cap_offset_, "invalid member name");
    } else {
      key_.assign(key);
      state_ = State::kColon;
    }
  } else if (state_ == State::kInValue) {
    s = OnMember();
  } else {
    s = OnObject(on_row);
  }
  if (buf_.capacity() > kRetainedCapacity) {
    std::string().swap(buf_);
    decoder_ = std::make_unique<Decoder>();
  } else {
    buf_.clear();
  }
  return s;
}

// A member of the normal feed's object other than results; its text is buf_.
Status ChangesParser::OnMember() {
  const size_t len = buf_.size();
  buf_.append(simdjson::SIMDJSON_PADDING, ' ');
  simdjson::dom::element value;
  if (auto err = decoder_->dom.parse(buf_.data(), len, false).get(value)) {
    return Malformed(cap_offset_, "the value of \"" + key_ +
                                      "\" is not valid JSON: " + simdjson::error_message(err));
  }
  if (key_ == "last_seq") {
    last_seq_.emplace(buf_.data(), len);
  } else if (key_ == "pending") {
    int64_t pending;
    if (value.get_int64().get(pending)) {
      pending_.reset();
    } else {
      pending_ = pending;
    }
  } else if (key_ == "error" || key_ == "reason") {
    std::string_view s;
    std::string text = value.get_string().get(s) ? std::string(buf_.data(), len) : std::string(s);
    (key_ == "error" ? top_error_ : top_reason_) = std::move(text);
  }
  state_ = State::kAfterMember;
  return OkStatus();
}

// A row, or the continuous feed's final object; its text is buf_.
Status ChangesParser::OnObject(const RowHandler& on_row) {
  const size_t len = buf_.size();
  buf_.append(simdjson::SIMDJSON_PADDING, ' ');
  ObjectFields fields;
  std::string problem;
  auto err = decoder_->dom.parse(buf_.data(), len, false).error();
  if (err && err != simdjson::DEPTH_ERROR && err != simdjson::STRING_ERROR) {
    return Malformed(cap_offset_,
                     std::string("a row is not valid JSON: ") + simdjson::error_message(err));
  }
  if (err) {
    // A stored document the parser refuses (nested past its limit, an
    // unpaired surrogate escape) must not stop the feed: the row is read
    // without it and the document is handed on as its raw text, for its
    // consumer to reject with a reason (SPEC §10).
    std::optional<std::string> raw_doc;
    std::string rest = RowWithoutDoc(std::string_view(buf_.data(), len), raw_doc);
    if (!raw_doc || decoder_->dom.parse(rest.data(), rest.size() - simdjson::SIMDJSON_PADDING, false)
                        .error()) {
      return Malformed(cap_offset_,
                       std::string("a row is not valid JSON: ") + simdjson::error_message(err));
    }
    problem = DecodeObject(decoder_->lazy, rest, rest.size() - simdjson::SIMDJSON_PADDING, fields);
    fields.row.doc = std::move(*raw_doc);
  } else {
    problem = DecodeObject(decoder_->lazy, buf_, len, fields);
  }
  if (!problem.empty()) return Malformed(cap_offset_, "bad row: " + problem);

  if (fields.has_id) {
    if (!fields.has_seq) {
      return Malformed(cap_offset_, "the row for id \"" + fields.row.id + "\" has no \"seq\"");
    }
    if (!fields.has_changes) {
      return Malformed(cap_offset_, "the row for id \"" + fields.row.id + "\" has no \"changes\"");
    }
    state_ = kind_ == FeedKind::kNormal ? State::kAfterRow : State::kBetweenRows;
    ++rows_;
    if (on_row && !on_row(std::move(fields.row))) {
      return Fail(Error::Permanent(
          "aborted",
          "the row handler stopped the changes feed at offset " + std::to_string(cap_offset_)));
    }
    return OkStatus();
  }
  if (fields.error) {
    // An error line from the server; an empty code still makes an error code.
    std::string code = fields.error->empty() ? "changes_feed_error" : CapText(*fields.error, 100);
    return Fail(Error::Temporary(std::move(code), CapText(fields.reason.value_or(""))));
  }
  if (kind_ == FeedKind::kContinuous && fields.last_seq) {
    last_seq_ = std::move(fields.last_seq);
    pending_ = fields.pending;
    complete_ = true;
    state_ = State::kEnded;
    return OkStatus();
  }
  return Malformed(cap_offset_, "a row has no \"id\"");
}

Status ChangesParser::OnClosingBrace(uint64_t offset) {
  if (!seen_results_) {
    if (top_error_) {
      std::string code = top_error_->empty() ? "changes_feed_error" : CapText(*top_error_, 100);
      return Fail(Error::Temporary(std::move(code), CapText(top_reason_.value_or(""))));
    }
    return Malformed(offset, "the response object has no \"results\" member");
  }
  complete_ = true;
  state_ = State::kDone;
  return OkStatus();
}

Status ChangesParser::Finish() {
  if (error_) return *error_;
  std::string where;
  switch (state_) {
    case State::kDone:
    case State::kBetweenRows:
    case State::kEnded:
      return OkStatus();
    case State::kStart:
      where = "before the response object began";
      break;
    case State::kInRow:
      where = "inside a row that started at offset " + std::to_string(cap_offset_);
      break;
    case State::kInKey:
    case State::kInValue:
      where = "inside a value that started at offset " + std::to_string(cap_offset_);
      break;
    default:
      where = "before the closing brace of the response object";
      break;
  }
  return Fail(Error::Temporary(
      kFeedError, "the body ended " + where + " (" + std::to_string(offset_) + " bytes received)"));
}

std::string SeqToSinceParam(std::string_view raw_seq) {
  std::string_view s = TrimJsonSpace(raw_seq);
  if (s.size() >= 2 && s.front() == '"') {
    simdjson::dom::parser parser;
    simdjson::padded_string padded(s);
    std::string_view text;
    if (!parser.parse(padded).get_string().get(text)) return std::string(text);
  }
  return std::string(s);
}

}  // namespace couchrepd

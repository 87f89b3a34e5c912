#include "couchrepd/multipart.h"
#include "couchrepd/encoding.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>

namespace couchrepd {

namespace {

constexpr const char* kMultipartError = "bad_multipart";

bool IsHeaderSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimHeaderSpace(std::string_view s) {
  while (!s.empty() && IsHeaderSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsHeaderSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && AsciiLower(a) == AsciiLower(b);
}

std::string At(uint64_t offset) { return " (at offset " + std::to_string(offset) + ")"; }

// Header values we write must not break the header block.
std::string SanitizeHeaderValue(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = ' ';
  }
  return out;
}

// Splits a header block (lines separated by CRLF, no final empty line) into
// fields. Returns false on a line that is not `name: value`.
bool ParseHeaderBlock(std::string_view block, MultipartHeaders& out, std::string& bad_line) {
  while (!block.empty()) {
    size_t eol = block.find("\r\n");
    std::string_view line = block.substr(0, eol);
    block = eol == std::string_view::npos ? std::string_view() : block.substr(eol + 2);
    if (!line.empty() && IsHeaderSpace(line.front()) && !out.fields.empty()) {
      // obs-fold: a continuation of the previous field's value.
      std::string_view more = TrimHeaderSpace(line);
      std::string& value = out.fields.back().second;
      if (!more.empty()) value += (value.empty() ? "" : " ") + std::string(more);
      continue;
    }
    size_t colon = line.find(':');
    std::string_view name = colon == std::string_view::npos ? std::string_view() : line.substr(0, colon);
    bool good_name = !name.empty();
    for (char c : name) {
      auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f) good_name = false;
    }
    if (!good_name) {
      bad_line = std::string(line.substr(0, 80));
      return false;
    }
    out.fields.emplace_back(AsciiLower(name), std::string(TrimHeaderSpace(line.substr(colon + 1))));
  }
  return true;
}

}  // namespace

// --- Header values ---

std::optional<std::string> HeaderParam(std::string_view value, std::string_view name) {
  size_t i = 0;
  const size_t n = value.size();
  // Skips to just after the next ';' that is not inside a quoted string.
  auto next_param = [&]() {
    bool quoted = false;
    for (; i < n; ++i) {
      char c = value[i];
      if (quoted) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          quoted = false;
        }
      } else if (c == '"') {
        quoted = true;
      } else if (c == ';') {
        ++i;
        return true;
      }
    }
    return false;
  };
  while (next_param()) {
    while (i < n && IsHeaderSpace(value[i])) ++i;
    size_t name_start = i;
    while (i < n && value[i] != '=' && value[i] != ';') ++i;
    std::string_view param = TrimHeaderSpace(value.substr(name_start, i - name_start));
    if (i >= n || value[i] != '=') continue;
    ++i;
    while (i < n && IsHeaderSpace(value[i])) ++i;
    std::string text;
    if (i < n && value[i] == '"') {
      for (++i; i < n && value[i] != '"'; ++i) {
        if (value[i] == '\\' && i + 1 < n) ++i;
        text.push_back(value[i]);
      }
      if (i < n) ++i;  // closing quote
    } else {
      size_t start = i;
      while (i < n && value[i] != ';') ++i;
      text = std::string(TrimHeaderSpace(value.substr(start, i - start)));
    }
    if (EqualsIgnoreCase(param, name)) return text;
  }
  return std::nullopt;
}

std::string MediaType(std::string_view content_type) {
  return AsciiLower(TrimHeaderSpace(content_type.substr(0, content_type.find(';'))));
}

std::optional<std::string> MultipartBoundary(std::string_view content_type) {
  std::optional<std::string> boundary = HeaderParam(content_type, "boundary");
  if (!boundary || boundary->empty() || boundary->find_first_of("\r\n") != std::string::npos) {
    return std::nullopt;
  }
  return boundary;
}

std::optional<std::string_view> MultipartHeaders::Get(std::string_view lower_name) const {
  for (const auto& [name, value] : fields) {
    if (name == lower_name) return std::string_view(value);
  }
  return std::nullopt;
}

// --- MultipartParser ---

enum class MultipartParser::State : uint8_t {
  kPreamble,      // before the first delimiter
  kDelimiterEnd,  // just after a delimiter: "--", padding or CRLF
  kPadding,       // transport padding before the CRLF
  kDelimiterCr,   // CR seen, LF expected
  kDash,          // one '-' seen, a second one closes the body
  kHeaders,       // a part's header section
  kBody,          // a part's data
  kEpilogue,      // after the closing delimiter
  kFailed,
};

MultipartParser::MultipartParser(std::string boundary, size_t max_header_bytes)
    : delimiter_("\r\n--" + boundary),
      max_header_bytes_(max_header_bytes),
      state_(State::kPreamble) {
  if (boundary.empty() || boundary.find_first_of("\r\n") != std::string::npos) {
    state_ = State::kFailed;
    error_ = Error::Permanent(kMultipartError, boundary.empty()
                                                   ? "missing multipart boundary"
                                                   : "the multipart boundary contains CR or LF");
  }
  // The first delimiter may start the body, without the CRLF before it.
  matched_ = 2;
}

Status MultipartParser::Fail(Error error) {
  state_ = State::kFailed;
  error_ = std::move(error);
  return *error_;
}

Status MultipartParser::Malformed(uint64_t offset, std::string what) {
  return Fail(Error::Permanent(kMultipartError, what + At(offset)));
}

Status MultipartParser::Aborted(uint64_t offset) {
  return Fail(Error::Permanent("aborted", "a multipart handler stopped parsing" + At(offset)));
}

Status MultipartParser::Feed(std::string_view chunk, const Handler& handler) {
  if (error_) return *error_;
  size_t i = 0;
  while (i < chunk.size()) {
    const char c = chunk[i];
    const uint64_t at = offset_ + i;
    Status s = OkStatus();
    switch (state_) {
      case State::kPreamble:
      case State::kBody:
        s = ScanForDelimiter(chunk, i, handler);
        break;
      case State::kDelimiterEnd:
        ++i;
        if (c == '-') {
          state_ = State::kDash;
        } else if (IsHeaderSpace(c)) {
          state_ = State::kPadding;
        } else if (c == '\r') {
          state_ = State::kDelimiterCr;
        } else {
          s = Malformed(at, "a delimiter line goes on with unexpected bytes");
        }
        break;
      case State::kPadding:
        ++i;
        if (c == '\r') {
          state_ = State::kDelimiterCr;
        } else if (!IsHeaderSpace(c)) {
          s = Malformed(at, "a delimiter line goes on with unexpected bytes");
        }
        break;
      case State::kDelimiterCr:
        ++i;
        if (c != '\n') {
          s = Malformed(at, "a delimiter line does not end with CRLF");
        } else {
          state_ = State::kHeaders;
          header_buf_ = "\r\n";
        }
        break;
      case State::kDash:
        ++i;
        if (c != '-') {
          s = Malformed(at, "a delimiter line goes on with unexpected bytes");
        } else {
          state_ = State::kEpilogue;
          done_ = true;
        }
        break;
      case State::kHeaders:
        s = ReadHeaders(chunk, i, handler);
        break;
      case State::kEpilogue:
        i = chunk.size();
        break;
      case State::kFailed:
        return *error_;
    }
    if (!s.ok()) return s;
  }
  offset_ += chunk.size();
  return OkStatus();
}

// Passes part data on (kBody) or skips it (kPreamble) up to the next
// delimiter, holding back a trailing partial match.
Status MultipartParser::ScanForDelimiter(std::string_view chunk, size_t& i,
                                         const Handler& handler) {
  const bool emit = state_ == State::kBody;
  const size_t n = chunk.size();
  const size_t d = delimiter_.size();
  auto deliver = [&](std::string_view data) {
    return !emit || data.empty() || !handler.on_part_data || handler.on_part_data(data);
  };
  if (matched_ > 0) {
    const uint64_t start = offset_ + i >= matched_ ? offset_ + i - matched_ : 0;
    while (matched_ < d && i < n && chunk[i] == delimiter_[matched_]) {
      ++matched_;
      ++i;
    }
    if (matched_ == d) {
      matched_ = 0;
      return OnDelimiter(start, handler);
    }
    if (i == n) return OkStatus();
    // Not a delimiter after all: the held bytes were data. A delimiter can
    // only start at a CR, which occurs in delimiter_ only at its start, so
    // no later part of the held bytes can begin one.
    if (!deliver(std::string_view(delimiter_).substr(0, matched_))) {
      return Aborted(offset_ + i);
    }
    matched_ = 0;
  }
  const size_t pos = chunk.find(delimiter_, i);
  if (pos != std::string_view::npos) {
    if (!deliver(chunk.substr(i, pos - i))) return Aborted(offset_ + pos);
    i = pos + d;
    return OnDelimiter(offset_ + pos, handler);
  }
  // Hold back the longest tail that is a prefix of the delimiter.
  size_t keep = n;
  for (size_t r = std::max(i, n >= d ? n - d + 1 : size_t{0}); r < n; ++r) {
    const void* cr = std::memchr(chunk.data() + r, '\r', n - r);
    if (cr == nullptr) break;
    r = static_cast<size_t>(static_cast<const char*>(cr) - chunk.data());
    if (delimiter_.compare(0, n - r, chunk.data() + r, n - r) == 0) {
      keep = r;
      break;
    }
  }
  if (!deliver(chunk.substr(i, keep - i))) return Aborted(offset_ + keep);
  matched_ = n - keep;
  i = n;
  return OkStatus();
}

Status MultipartParser::OnDelimiter(uint64_t offset, const Handler& handler) {
  if (state_ == State::kBody && handler.on_part_end && !handler.on_part_end()) {
    return Aborted(offset);
  }
  seen_delimiter_ = true;
  state_ = State::kDelimiterEnd;
  return OkStatus();
}

// Collects the header section (up to the empty line), then starts the part.
Status MultipartParser::ReadHeaders(std::string_view chunk, size_t& i, const Handler& handler) {
  // header_buf_ starts with the delimiter line's CRLF, so an empty header
  // section is found by the same search for CRLF CRLF.
  const size_t limit = max_header_bytes_ + 2;
  const size_t old = header_buf_.size();
  const size_t take = std::min(chunk.size() - i, limit > old ? limit - old : 0);
  header_buf_.append(chunk.data() + i, take);
  const size_t end = header_buf_.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
  // Where the header section starts in the body (after the delimiter line),
  // whatever the chunks: errors name the same offset for any split.
  const uint64_t section_offset = offset_ + i - (old - 2);
  if (end == std::string::npos) {
    if (header_buf_.size() >= limit) {
      return Malformed(section_offset, "a part's headers are larger than max_header_bytes (" +
                                           std::to_string(max_header_bytes_) + " bytes)");
    }
    i += take;
    return OkStatus();
  }
  i += end + 4 - old;
  MultipartHeaders headers;
  std::string bad_line;
  std::string_view block =
      end >= 2 ? std::string_view(header_buf_).substr(2, end - 2) : std::string_view();
  if (!ParseHeaderBlock(block, headers, bad_line)) {
    return Malformed(section_offset, "malformed part header line \"" + bad_line + "\"");
  }
  if (header_buf_.capacity() > 4 * kDefaultMaxHeaderBytes) {
    std::string().swap(header_buf_);
  } else {
    header_buf_.clear();
  }
  state_ = State::kBody;
  if (handler.on_part_begin && !handler.on_part_begin(headers)) return Aborted(offset_ + i);
  return OkStatus();
}

Status MultipartParser::Finish() {
  if (error_) return *error_;
  if (done_) return OkStatus();
  if (!seen_delimiter_) {
    return Fail(Error::Permanent(kMultipartError, "no multipart delimiter \"" +
                                                      delimiter_.substr(2) + "\" in the " +
                                                      std::to_string(offset_) + "-byte body"));
  }
  const char* where = state_ == State::kBody      ? "inside a part's data"
                      : state_ == State::kHeaders ? "inside a part's headers"
                                                  : "inside a delimiter line";
  return Fail(Error::Temporary(kMultipartError, std::string("the body ended ") + where +
                                                    " before the closing delimiter (" +
                                                    std::to_string(offset_) + " bytes received)"));
}

// --- Readers ---

namespace {

struct FollowsStub {
  std::string name;
  std::string content_type;
  std::string encoding;
  std::optional<uint64_t> length;  // bytes expected on the wire
};

// Parses a document's JSON and lists its "follows" attachments in order.
std::optional<std::string> ReadFollowsStubs(simdjson::dom::parser& parser, const std::string& json,
                                            std::vector<FollowsStub>& out) {
  simdjson::padded_string padded(json);
  simdjson::dom::object doc;
  if (auto err = parser.parse(padded).get_object().get(doc)) {
    return std::string("the document part is not a JSON object: ") + simdjson::error_message(err);
  }
  simdjson::dom::object atts;
  if (doc["_attachments"].get_object().get(atts)) return std::nullopt;
  for (auto [name, value] : atts) {
    simdjson::dom::object att;
    if (value.get_object().get(att)) continue;
    bool follows = false;
    if (att["follows"].get_bool().get(follows) || !follows) continue;
    FollowsStub stub;
    stub.name = std::string(name);
    std::string_view text;
    if (!att["content_type"].get_string().get(text)) stub.content_type = std::string(text);
    if (!att["encoding"].get_string().get(text)) stub.encoding = std::string(text);
    uint64_t length;
    if (!stub.encoding.empty() && !att["encoded_length"].get_uint64().get(length)) {
      stub.length = length;
    } else if (stub.encoding.empty() && !att["length"].get_uint64().get(length)) {
      stub.length = length;
    }
    out.push_back(std::move(stub));
  }
  return std::nullopt;
}

}  // namespace

struct MultipartRelatedReader::Impl {
  explicit Impl(std::string boundary, size_t max_header_bytes)
      : parser(std::move(boundary), max_header_bytes) {
    handler.on_part_begin = [this](const MultipartHeaders& h) { return OnBegin(h); };
    handler.on_part_data = [this](std::string_view data) {
      (part == 0 ? doc.json : doc.attachments.back().data).append(data);
      return true;
    };
    handler.on_part_end = [this]() { return OnEnd(); };
  }

  bool Reject(std::string what) {
    problem = Error::Permanent(kMultipartError, std::move(what));
    return false;
  }

  bool OnBegin(const MultipartHeaders& h) {
    ++part;
    std::string type = MediaType(h.Get("content-type").value_or(""));
    if (part == 0) {
      if (type != "application/json") {
        return Reject("the first part of a multipart/related document has Content-Type \"" + type +
                      "\", not application/json");
      }
      return true;
    }
    const size_t index = static_cast<size_t>(part - 1);
    if (index >= stubs.size()) {
      return Reject("attachment part " + std::to_string(part) + " has no attachment marked " +
                    "\"follows\" in the document (" + std::to_string(stubs.size()) + " are)");
    }
    const FollowsStub& stub = stubs[index];
    OpenRevsAttachment att;
    att.name = stub.name;
    att.content_type = std::string(h.Get("content-type").value_or(stub.content_type));
    const auto content_encoding = h.Get("content-encoding");
    att.encoding = content_encoding ? AsciiLower(*content_encoding) : stub.encoding;
    if (att.encoding == "identity") att.encoding.clear();
    expected_length = stub.length;
    if (auto cl = h.Get("content-length")) {
      uint64_t value = 0;
      bool good = !cl->empty() && cl->size() < 20;
      for (char c : *cl) {
        if (c < '0' || c > '9') good = false;
        value = value * 10 + static_cast<uint64_t>(c - '0');
      }
      if (!good) return Reject("attachment \"" + stub.name + "\" has a bad Content-Length");
      if (expected_length && *expected_length != value) {
        return Reject("attachment \"" + stub.name + "\": Content-Length " + std::to_string(value) +
                      " but the document says " + std::to_string(*expected_length) + " bytes");
      }
      expected_length = value;
    }
    doc.attachments.push_back(std::move(att));
    return true;
  }

  bool OnEnd() {
    if (part == 0) {
      if (auto bad = ReadFollowsStubs(json_parser, doc.json, stubs)) return Reject(*bad);
      return true;
    }
    const OpenRevsAttachment& att = doc.attachments.back();
    if (expected_length && *expected_length != att.data.size()) {
      return Reject("attachment \"" + att.name + "\" has " + std::to_string(att.data.size()) +
                    " bytes, expected " + std::to_string(*expected_length));
    }
    return true;
  }

  Status Take(Status s) {
    if (s.ok() || !problem) return s;
    Error e = *problem;
    failed = e;
    return e;
  }

  MultipartParser parser;
  MultipartParser::Handler handler;
  simdjson::dom::parser json_parser;
  OpenRevsDoc doc;
  std::vector<FollowsStub> stubs;
  int part = -1;
  std::optional<uint64_t> expected_length;
  std::optional<Error> problem;  // why a handler stopped the parser
  std::optional<Error> failed;
};

MultipartRelatedReader::MultipartRelatedReader(std::string boundary, size_t max_header_bytes)
    : impl_(std::make_unique<Impl>(std::move(boundary), max_header_bytes)) {}
MultipartRelatedReader::~MultipartRelatedReader() = default;
MultipartRelatedReader::MultipartRelatedReader(MultipartRelatedReader&&) noexcept = default;
MultipartRelatedReader& MultipartRelatedReader::operator=(MultipartRelatedReader&&) noexcept =
    default;

Status MultipartRelatedReader::Feed(std::string_view chunk) {
  if (impl_->failed) return *impl_->failed;
  return impl_->Take(impl_->parser.Feed(chunk, impl_->handler));
}

Result<OpenRevsDoc> MultipartRelatedReader::Finish() {
  if (impl_->failed) return *impl_->failed;
  Status s = impl_->parser.Finish();
  if (!s.ok()) return s.error();
  if (impl_->part < 0) {
    return Error::Permanent(kMultipartError, "a multipart/related document without parts");
  }
  const size_t received = impl_->doc.attachments.size();
  if (received != impl_->stubs.size()) {
    return Error::Permanent(kMultipartError, std::to_string(impl_->stubs.size()) +
                                                 " attachments are marked \"follows\" but " +
                                                 std::to_string(received) +
                                                 " attachment parts arrived");
  }
  return std::move(impl_->doc);
}

struct OpenRevsMultipartReader::Impl {
  explicit Impl(std::string boundary) : parser(std::move(boundary)) {
    handler.on_part_begin = [this](const MultipartHeaders& h) { return OnBegin(h); };
    handler.on_part_data = [this](std::string_view data) {
      if (!related) {
        json.append(data);
        return true;
      }
      Status s = related->Feed(data);
      if (s.ok()) return true;
      problem = InPart(s.error());
      return false;
    };
    handler.on_part_end = [this]() { return OnEnd(); };
  }

  // An error of the nested document in part `part`. Its body ended at an
  // outer delimiter, so a nested body cut short is malformed, not a dropped
  // connection.
  Error InPart(Error e) const {
    if (e.error == kMultipartError) {
      e.kind = ErrorKind::kPermanent;
      e.reason = "part " + std::to_string(part + 1) + " (multipart/related): " + e.reason;
    }
    return e;
  }

  bool OnBegin(const MultipartHeaders& h) {
    ++part;
    const std::string content_type(h.Get("content-type").value_or(""));
    const std::string type = MediaType(content_type);
    json.clear();
    related.reset();
    error_part = false;
    if (type == "application/json") {
      error_part = EqualsIgnoreCase(HeaderParam(content_type, "error").value_or(""), "true");
      return true;
    }
    if (type == "multipart/related") {
      std::optional<std::string> boundary = MultipartBoundary(content_type);
      if (!boundary) {
        problem = Error::Permanent(kMultipartError, "part " + std::to_string(part + 1) +
                                                        " is multipart/related without a boundary");
        return false;
      }
      related = std::make_unique<MultipartRelatedReader>(std::move(*boundary));
      return true;
    }
    problem = Error::Permanent(kMultipartError, "part " + std::to_string(part + 1) +
                                                    " has unexpected Content-Type \"" +
                                                    content_type + "\"");
    return false;
  }

  bool OnEnd() {
    if (related) {
      Result<OpenRevsDoc> doc = related->Finish();
      related.reset();
      if (!doc.ok()) {
        problem = InPart(doc.error());
        return false;
      }
      docs.push_back(std::move(doc).value());
      return true;
    }
    simdjson::padded_string padded(json);
    simdjson::dom::object obj;
    if (auto err = json_parser.parse(padded).get_object().get(obj)) {
      problem = Error::Permanent(kMultipartError,
                                 "part " + std::to_string(part + 1) +
                                     " is not a JSON object: " + simdjson::error_message(err));
      return false;
    }
    OpenRevsDoc doc;
    std::string_view text;
    if (obj["_id"].error() == simdjson::NO_SUCH_FIELD) {
      if (!obj["missing"].get_string().get(text)) {
        doc.missing = true;
        doc.missing_rev = std::string(text);
      } else if (error_part || obj["error"].error() != simdjson::NO_SUCH_FIELD) {
        // CouchDB reporting a failure for this revision in its own words.
        std::string error = obj["error"].get_string().get(text) ? "error" : std::string(text);
        std::string reason = obj["reason"].get_string().get(text) ? json : std::string(text);
        problem = Error::Temporary(std::move(error), std::move(reason));
        return false;
      }
    }
    doc.json = std::move(json);
    json.clear();
    docs.push_back(std::move(doc));
    return true;
  }

  MultipartParser parser;
  MultipartParser::Handler handler;
  simdjson::dom::parser json_parser;
  int part = -1;
  std::string json;
  bool error_part = false;
  std::unique_ptr<MultipartRelatedReader> related;
  std::vector<OpenRevsDoc> docs;
  std::optional<Error> problem;
  std::optional<Error> failed;
};

OpenRevsMultipartReader::OpenRevsMultipartReader(std::string outer_boundary)
    : impl_(std::make_unique<Impl>(std::move(outer_boundary))) {}
OpenRevsMultipartReader::~OpenRevsMultipartReader() = default;
OpenRevsMultipartReader::OpenRevsMultipartReader(OpenRevsMultipartReader&&) noexcept = default;
OpenRevsMultipartReader& OpenRevsMultipartReader::operator=(OpenRevsMultipartReader&&) noexcept =
    default;

Status OpenRevsMultipartReader::Feed(std::string_view chunk) {
  if (impl_->failed) return *impl_->failed;
  Status s = impl_->parser.Feed(chunk, impl_->handler);
  if (!s.ok() && impl_->problem) {
    impl_->failed = impl_->problem;
    return *impl_->failed;
  }
  return s;
}

Result<std::vector<OpenRevsDoc>> OpenRevsMultipartReader::Finish() {
  if (impl_->failed) return *impl_->failed;
  Status s = impl_->parser.Finish();
  if (!s.ok()) return s.error();
  return std::move(impl_->docs);
}

// --- Writer ---

MultipartRelatedWriter::MultipartRelatedWriter(std::string boundary)
    : boundary_(std::move(boundary)) {}

std::string MultipartRelatedWriter::ContentType() const {
  return "multipart/related; boundary=\"" + boundary_ + "\"";
}

std::string MultipartRelatedWriter::DocumentPart(std::string_view doc_json) const {
  std::string out = "--" + boundary_ + "\r\nContent-Type: application/json\r\n\r\n";
  out.append(doc_json);
  out += "\r\n";
  return out;
}

std::string MultipartRelatedWriter::AttachmentPartHeader(std::string_view name,
                                                         std::string_view content_type,
                                                         std::string_view encoding,
                                                         std::optional<uint64_t> length) const {
  std::string out = "--" + boundary_ + "\r\nContent-Disposition: attachment; filename=\"";
  for (char c : SanitizeHeaderValue(name)) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out += "\"\r\nContent-Type: ";
  out += content_type.empty() ? std::string("application/octet-stream")
                              : SanitizeHeaderValue(content_type);
  out += "\r\n";
  if (length) out += "Content-Length: " + std::to_string(*length) + "\r\n";
  if (!encoding.empty()) out += "Content-Encoding: " + SanitizeHeaderValue(encoding) + "\r\n";
  out += "\r\n";
  return out;
}

uint64_t MultipartRelatedWriter::BodyLength(size_t doc_json_size,
                                            const std::vector<AttachmentInfo>& attachments) const {
  uint64_t total = DocumentPart("").size() + doc_json_size + Closing().size();
  for (const AttachmentInfo& att : attachments) {
    total += AttachmentPartHeader(att.name, att.content_type, att.encoding, att.length).size() +
             att.length + AttachmentPartEnd().size();
  }
  return total;
}

}  // namespace couchrepd

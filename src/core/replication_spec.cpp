#include "couchrepd/replication_spec.h"

#include "couchrepd/local_access.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <set>

#include "couchrepd/encoding.h"
#include "couchrepd/erlang_term.h"
#include "couchrepd/json.h"
#include "couchrepd/url.h"

// Field rules follow CouchDB 3.x (couch_replicator_docs:parse_rep_doc,
// convert_options, check_options; couch_replicator_utils:normalize_basic_auth)
// except where stricter is clearer for the document writer; each such place
// says so.

namespace couchrepd {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

// ---------------------------------------------------------------------------
// Reasons.
// ---------------------------------------------------------------------------

// Every reason is built from field names and our own words, never from
// values; RedactSecrets is a second line of defence.
Error BadDoc(const std::string& reason) {
  return Error::Permanent("bad_doc", RedactSecrets(reason));
}

// User-written text (an object key) shown in a reason: short, cut at a
// character boundary, control characters as '?'.
std::string Echo(std::string_view s) {
  constexpr size_t kMaxEcho = 40;
  std::string out;
  size_t i = 0;
  for (; i < s.size() && out.size() < kMaxEcho; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    out.push_back(c < 0x20 || c == 0x7f ? '?' : s[i]);
  }
  if (i < s.size()) {
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
    out += "...";
  }
  return out;
}


// The top-level member of a JSON object text whose value alone fails to
// parse, found by a structural scan (strings, escapes and brackets only, no
// recursion, linear time): the key as a user would read it, or nullopt when
// the text is not an object of that shape or every value parses alone.
std::optional<std::string> FindBadMember(std::string_view json) {
  simdjson::dom::parser parser;
  std::optional<std::string> bad;
  ScanObjectMembers(json, [&](const RawMember& m) {
    simdjson::padded_string key_text(m.key);
    std::string_view key;
    if (parser.parse(key_text).get_string().get(key)) {
      bad = "a field name";
      return false;
    }
    std::string name = Backticked(Echo(key));  // before the parser's buffer is reused
    simdjson::padded_string value(json.substr(m.value_begin, m.value_end - m.value_begin));
    auto code = parser.parse(value).error();
    if (code && code != simdjson::NUMBER_ERROR) {
      bad = std::move(name);
      return false;
    }
    return true;
  });
  return bad;
}

// Why a document is not valid JSON; `json` is its text, for naming the
// member that holds the problem where the problem is inside one.
std::string NotJson(simdjson::error_code code, std::string_view json) {
  std::string what;
  std::optional<std::string> member;
  if (code == simdjson::UTF8_ERROR || code == simdjson::DEPTH_ERROR ||
      code == simdjson::STRING_ERROR || code == simdjson::UNESCAPED_CHARS) {
    member = FindBadMember(json);
  }
  std::string subject = member ? *member : "it";
  switch (code) {
    case simdjson::UTF8_ERROR:
      what = subject + " contains invalid UTF-8";
      break;
    case simdjson::DEPTH_ERROR:
      what = subject + " is nested more than " + std::to_string(simdjson::DEFAULT_MAX_DEPTH) +
             " levels deep";
      break;
    case simdjson::STRING_ERROR:
      what = subject +
             " holds a string with an invalid escape (e.g. an unpaired surrogate such as "
             "\\ud800)";
      break;
    case simdjson::UNESCAPED_CHARS:
      what = subject + " holds a string with an unescaped control character";
      break;
    case simdjson::EMPTY:
      what = "it is empty";
      break;
    case simdjson::CAPACITY:
      what = "it is too large";
      break;
    default:
      what = simdjson::error_message(code);
      if (!what.empty()) {
        what[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(what[0])));
      }
      break;
  }
  return "the document is not valid JSON: " + what;
}

// simdjson's DOM rejects integers beyond 64 bits; jiffy, and so CouchDB, keeps
// them. For the DOM's type checks each such integer is replaced by the 64-bit
// extreme of its sign (so a bound check still says "too large"); raw values
// are read from the original text. nullopt when there is none to replace.
std::optional<std::string> ClampBigIntegers(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  bool changed = false;
  for (size_t i = 0; i < json.size();) {
    char c = json[i];
    size_t j = i + 1;
    if (c == '"') {
      while (j < json.size() && json[j] != '"') j += json[j] == '\\' ? 2 : 1;
      j = std::min(j + 1, json.size());
    } else if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      while (j < json.size() &&
             (std::isdigit(static_cast<unsigned char>(json[j])) ||
              std::string_view(".eE+-").find(json[j]) != std::string_view::npos)) {
        ++j;
      }
      std::string_view token = json.substr(i, j - i);
      if (token.find_first_of(".eE") == std::string_view::npos) {
        const char* end = token.data() + token.size();
        int64_t i64 = 0;
        uint64_t u64 = 0;
        bool negative = c == '-';
        auto result = negative ? std::from_chars(token.data(), end, i64)
                               : std::from_chars(token.data(), end, u64);
        if (result.ec == std::errc::result_out_of_range) {
          out += negative ? "-9223372036854775808" : "18446744073709551615";
          changed = true;
          i = j;
          continue;
        }
      }
    }
    out.append(json.substr(i, j - i));
    i = j;
  }
  if (!changed) return std::nullopt;
  return out;
}

// ---------------------------------------------------------------------------
// Raw JSON text of some fields. The DOM re-serialises numbers; the replication
// id and the _changes request need them (and key order) exactly as written,
// so these come from an ondemand pass over the same, already validated, text.
// ---------------------------------------------------------------------------

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Removes whitespace outside strings; numbers, escapes and key order stay as written.
std::string Minify(std::string_view json) {
  while (!json.empty() && IsJsonSpace(json.back())) json.remove_suffix(1);
  std::string out(json.size(), '\0');
  size_t len = 0;
  if (simdjson::minify(json.data(), json.size(), out.data(), len) != simdjson::SUCCESS) {
    return std::string(json);
  }
  out.resize(len);
  return out;
}

std::optional<std::string> RawValue(simdjson::ondemand::value value) {
  simdjson::ondemand::json_type type;
  if (value.type().get(type)) return std::nullopt;
  std::string_view raw;
  if (type == simdjson::ondemand::json_type::object) {
    simdjson::ondemand::object o;
    if (value.get_object().get(o) || o.raw_json().get(raw)) return std::nullopt;
  } else if (type == simdjson::ondemand::json_type::array) {
    simdjson::ondemand::array a;
    if (value.get_array().get(a) || a.raw_json().get(raw)) return std::nullopt;
  } else {
    raw = value.raw_json_token();
  }
  return Minify(raw);
}

struct RawFields {
  std::optional<std::string> query_params;
  std::optional<std::string> selector;
  std::optional<std::string> since_seq;
  std::optional<std::string> create_target_params;
};

// First occurrence of each key wins, as with the DOM's at_key (and CouchDB's
// couch_util:get_value).
bool ExtractRawFields(const simdjson::padded_string& doc_text, RawFields& out) {
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  simdjson::ondemand::object object;
  if (parser.iterate(doc_text).get(doc) || doc.get_object().get(object)) return false;
  for (auto field_result : object) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) return false;
    std::optional<std::string>* slot = key == "query_params"           ? &out.query_params
                                       : key == "selector"             ? &out.selector
                                       : key == "since_seq"            ? &out.since_seq
                                       : key == "create_target_params" ? &out.create_target_params
                                                                       : nullptr;
    if (slot == nullptr || slot->has_value()) continue;
    auto raw = RawValue(field.value());
    if (!raw) return false;
    *slot = std::move(raw);
  }
  return true;
}

// The members of a JSON object (compact text) as parameters: strings
// unescaped, anything else as its JSON text.
std::optional<QueryParams> ObjectAsParams(std::string_view object_json) {
  simdjson::padded_string text(object_json);
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  simdjson::ondemand::object object;
  if (parser.iterate(text).get(doc) || doc.get_object().get(object)) return std::nullopt;
  QueryParams out;
  for (auto field_result : object) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) return std::nullopt;
    std::string name(key);
    simdjson::ondemand::json_type type;
    if (field.value().type().get(type)) return std::nullopt;
    if (type == simdjson::ondemand::json_type::string) {
      std::string_view s;
      if (field.value().get_string().get(s)) return std::nullopt;
      out.emplace_back(std::move(name), std::string(s));
    } else {
      auto raw = RawValue(field.value());
      if (!raw) return std::nullopt;
      out.emplace_back(std::move(name), std::move(*raw));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Scalars.
// ---------------------------------------------------------------------------

class Fields {
 public:
  explicit Fields(simdjson::dom::object object) : object_(object) {}
  // The field's value, null included; nullopt when absent.
  std::optional<element> Get(std::string_view key) const {
    element value;
    if (object_.at_key(key).get(value)) return std::nullopt;
    return value;
  }
  // Absent and null alike give nullopt.
  std::optional<element> GetNonNull(std::string_view key) const {
    auto value = Get(key);
    if (value && value->is_null()) return std::nullopt;
    return value;
  }

 private:
  simdjson::dom::object object_;
};

Status ReadBool(const Fields& doc, std::string_view key, bool& out) {
  auto value = doc.Get(key);
  if (!value) return OkStatus();
  bool b = false;
  if (value->get_bool().get(b)) return BadDoc(Backticked(key) + " must be a boolean");
  out = b;
  return OkStatus();
}

// A JSON integer or a string of decimal digits with an optional '-'
// (CouchDB's list_to_integer). Values beyond int64 saturate. nullopt for
// anything else (fractions, "5 ", "+5", "").
std::optional<int64_t> IntegerOf(const element& value) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t i = 0;
  std::string_view s;
  switch (value.type()) {
    case element_type::INT64:
      if (value.get_int64().get(i)) return std::nullopt;
      return i;
    case element_type::UINT64:
      return kMax;
    case element_type::STRING: {
      if (value.get_string().get(s)) return std::nullopt;
      bool negative = !s.empty() && s.front() == '-';
      std::string_view digits = negative ? s.substr(1) : s;
      if (digits.empty() || !std::all_of(digits.begin(), digits.end(),
                                         [](unsigned char c) { return std::isdigit(c); })) {
        return std::nullopt;
      }
      int64_t v = 0;
      if (std::from_chars(digits.data(), digits.data() + digits.size(), v).ec != std::errc()) {
        v = kMax;  // too many digits
      }
      return negative ? -v : v;
    }
    default:
      return std::nullopt;
  }
}

// An integer option in [min, max]. `unit` is appended to the type in the
// reason, e.g. " (milliseconds)".
Status ReadInt(const Fields& doc, std::string_view key, int64_t min, int64_t max,
               std::string_view unit, int64_t& out) {
  auto value = doc.Get(key);
  if (!value) return OkStatus();
  auto v = IntegerOf(*value);
  std::string type = min > 0 ? "a positive integer" : "a non-negative integer";
  if (!v || *v < min) return BadDoc(Backticked(key) + " must be " + type + std::string(unit));
  if (*v > max) {
    return BadDoc(Backticked(key) + " must be at most " + std::to_string(max) + std::string(unit));
  }
  out = *v;
  return OkStatus();
}

Status ReadInt(const Fields& doc, std::string_view key, int min, int max, int& out) {
  int64_t v = out;
  Status s = ReadInt(doc, key, min, max, "", v);
  out = static_cast<int>(v);
  return s;
}

Status ReadMillis(const Fields& doc, std::string_view key, std::chrono::milliseconds& out) {
  int64_t v = out.count();
  Status s = ReadInt(doc, key, 1, kMaxIntervalOption.count(), " (milliseconds)", v);
  out = std::chrono::milliseconds(v);
  return s;
}

bool HasControlChar(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

// ---------------------------------------------------------------------------
// Endpoints.
// ---------------------------------------------------------------------------

// CouchDB's database name rule (^[a-z][a-z0-9_$()+/-]*$, at most 238
// characters), plus a leading '_' for system databases such as _users.
bool IsDatabaseName(std::string_view name) {
  constexpr size_t kMaxDbNameLength = 238;
  if (name.empty() || name.size() > kMaxDbNameLength) return false;
  size_t i = name.front() == '_' ? 1 : 0;
  if (i >= name.size() || name[i] < 'a' || name[i] > 'z') return false;
  for (++i; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              std::string_view("_$()+-/").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// RFC 9110 token.
bool IsHeaderName(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

bool IsHeaderValue(std::string_view value) {
  return std::none_of(value.begin(), value.end(),
                      [](unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; });
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// The HTTP client frames requests itself; a document must not.
bool IsFramingHeader(std::string_view name) {
  return EqualsIgnoreCase(name, "Content-Length") || EqualsIgnoreCase(name, "Transfer-Encoding");
}

// couch_replicator_utils:maybe_remove_basic_auth: the word before the first
// space is "basic" (any case).
bool IsBasicAuthorization(std::string_view name, std::string_view value) {
  if (!EqualsIgnoreCase(name, "Authorization")) return false;
  size_t space = value.find(' ');
  return space != std::string_view::npos && EqualsIgnoreCase(value.substr(0, space), "basic");
}

// decode_basic_creds: base64 of "user:password", split at the first ':'.
std::optional<std::pair<std::string, std::string>> DecodeBasic(std::string_view value) {
  auto decoded = Base64Decode(value.substr(value.find(' ') + 1));
  if (!decoded) return std::nullopt;
  size_t colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  return std::make_pair(decoded->substr(0, colon), decoded->substr(colon + 1));
}

using Creds = std::optional<std::pair<std::string, std::string>>;

Result<Creds> ReadAuth(const std::string& field, const element& auth) {
  simdjson::dom::object object;
  if (auth.get_object().get(object)) return BadDoc(Backticked(field + ".auth") + " must be an object");
  Creds creds;
  for (auto [key, value] : object) {
    // Stricter than CouchDB (which hands other keys to auth plugins): without
    // such a plugin they would mean silently anonymous requests.
    if (key != "basic") {
      return BadDoc(Backticked(field + ".auth") + ": unsupported authentication " + Backticked(Echo(key)) +
                    " (only `basic` is supported)");
    }
    if (value.is_null() || creds) continue;
    std::string what = Backticked(field + ".auth.basic") +
                       " must be an object with a non-empty string `username` and a string "
                       "`password`";
    std::string_view user, password;
    if (!value.is_object() || value["username"].get(user) || value["password"].get(password) ||
        user.empty()) {
      return BadDoc(what);
    }
    creds.emplace(std::string(user), std::string(password));
  }
  return creds;
}

// `field` is "source" or "target"; `value` is the field's value.
Result<EndpointSpec> ReadEndpoint(const std::string& field, const element& value,
                                  std::vector<std::string>& warnings) {
  std::string_view text;
  std::optional<element> headers, auth;
  bool is_string = !value.get_string().get(text);
  if (!is_string) {
    if (!value.is_object()) {
      return BadDoc(Backticked(field) + " must be a URL, a database name or an object with `url`");
    }
    element url;
    if (value["url"].get(url) || url.is_null()) return BadDoc(Backticked(field + ".url") + " is missing");
    if (url.get_string().get(text)) return BadDoc(Backticked(field + ".url") + " must be a string");
    element e;
    if (!value["headers"].get(e) && !e.is_null()) headers = e;
    if (!value["auth"].get(e) && !e.is_null()) auth = e;
  }
  std::string shown = is_string ? field : field + ".url";
  if (text.empty()) return BadDoc(Backticked(shown) + " is empty");
  if (text.size() > kMaxUrlBytes) {
    return BadDoc(Backticked(shown) + " is longer than " + std::to_string(kMaxUrlBytes) + " bytes");
  }

  EndpointSpec spec;
  size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    // Never echo the text: "admin:secret@host/db" (a URL without scheme) lands here.
    if (!IsDatabaseName(text)) {
      return BadDoc(Backticked(shown) + " is neither an http(s) URL nor a valid database name");
    }
    if (headers || auth) {
      return BadDoc(Backticked(field) + ": `headers` and `auth` apply only to http(s) URLs, not to a " +
                    "local database");
    }
    spec.local = true;
    spec.local_db = std::string(text);
    return spec;
  }
  std::string_view scheme = text.substr(0, scheme_end);
  constexpr size_t kMaxSchemeLength = 16;
  if (scheme.empty() || scheme.size() > kMaxSchemeLength ||
      !std::isalpha(static_cast<unsigned char>(scheme[0])) ||
      !std::all_of(scheme.begin(), scheme.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '+' || c == '-' || c == '.';
      })) {
    return BadDoc(Backticked(shown) + " is not a valid URL");
  }
  auto url = ParseUrl(text);
  if (!url.ok()) return BadDoc(Backticked(shown) + ": " + url.error().reason);
  // Stricter than CouchDB, whose request paths would be appended after the
  // query string and so never work.
  if (!url->query.empty()) return BadDoc(Backticked(shown) + ": the URL must not have a query string");

  Creds from_userinfo;
  if (url->user) from_userinfo.emplace(*url->user, url->password.value_or(""));
  Creds from_auth;
  if (auth) {
    auto read = ReadAuth(field, *auth);
    if (!read.ok()) return read.error();
    from_auth = std::move(read.value());
  }
  Creds from_header;
  bool bad_header = false;
  if (headers) {
    simdjson::dom::object object;
    if (headers->get_object().get(object)) {
      return BadDoc(Backticked(field + ".headers") + " must be an object");
    }
    if (object.size() > kMaxEndpointHeaders) {
      return BadDoc(Backticked(field + ".headers") + " has more than " +
                    std::to_string(kMaxEndpointHeaders) + " headers");
    }
    for (auto [name, header_value] : object) {
      if (!IsHeaderName(name)) {
        return BadDoc(Backticked(field + ".headers") + " has a name that is not a valid HTTP header name");
      }
      std::string where = Backticked(field + ".headers." + Echo(name));
      std::string_view v;
      if (header_value.get_string().get(v)) return BadDoc(where + " must be a string");
      // Stricter than CouchDB: a line break would smuggle another header in.
      if (!IsHeaderValue(v)) {
        return BadDoc(where + " must not contain line breaks or control characters");
      }
      if (IsFramingHeader(name)) return BadDoc(where + " is set by couchrepd and cannot be given");
      if (name.size() + v.size() > kMaxHeaderBytes) {
        return BadDoc(where + " is longer than " + std::to_string(kMaxHeaderBytes) + " bytes");
      }
      spec.headers_as_written.emplace_back(std::string(name), std::string(v));
      if (IsBasicAuthorization(name, v)) {
        if (!from_header && !bad_header) {
          from_header = DecodeBasic(v);
          bad_header = !from_header;
        }
        continue;  // never sent as written: the credentials below are
      }
      spec.endpoint.headers.emplace_back(std::string(name), std::string(v));
    }
  }

  Creds chosen;
  if (from_auth) {
    chosen = from_auth;
    if (from_userinfo) {
      warnings.push_back(Backticked(field) +
                         ": the user name and password in the URL are ignored because "
                         "`auth.basic` is set");
    }
    if (from_header || bad_header) {
      warnings.push_back(Backticked(field) +
                         ": the Basic authorization header is ignored because "
                         "`auth.basic` is set");
    }
  } else if (from_userinfo) {
    chosen = from_userinfo;
    if (from_header || bad_header) {
      warnings.push_back(Backticked(field) +
                         ": the Basic authorization header is ignored because the URL "
                         "has a user name and password");
    }
  } else if (from_header) {
    chosen = from_header;
  } else if (bad_header) {
    warnings.push_back(Backticked(field) +
                       ": the Basic authorization header is not base64 of "
                       "user:password and is ignored");
  }
  if (chosen) {
    spec.endpoint.credentials.kind = Credentials::Kind::kBasic;
    spec.endpoint.credentials.username = std::move(chosen->first);
    spec.endpoint.credentials.password = std::move(chosen->second);
  }
  Url clean = std::move(url.value());
  clean.user.reset();
  clean.password.reset();
  spec.endpoint.url = clean.WithTrailingSlash();
  return spec;
}

// ---------------------------------------------------------------------------
// socket_options: an Erlang term list in a string, e.g.
// "[{keepalive, true}, {nodelay, false}]". Just enough of Erlang's term
// syntax to read what people write there: lists, tuples, atoms, integers,
// strings.
// ---------------------------------------------------------------------------

struct ErlTerm {
  enum class Kind { kAtom, kInteger, kString, kTuple, kList } kind = Kind::kAtom;
  std::string text;  // atom name, integer digits or string contents
  std::vector<ErlTerm> items;
};

class ErlTermReader {
 public:
  explicit ErlTermReader(std::string_view text) : text_(text) {}

  std::optional<ErlTerm> ReadOnly() {
    auto term = Read(0);
    SkipSpace();
    if (!term || pos_ != text_.size()) return std::nullopt;
    return term;
  }

 private:
  static constexpr int kMaxDepth = 8;

  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool Peek(char c) {
    SkipSpace();
    return pos_ < text_.size() && text_[pos_] == c;
  }

  // Elements up to `close`, separated by commas.
  std::optional<std::vector<ErlTerm>> ReadSequence(char close, int depth) {
    std::vector<ErlTerm> items;
    ++pos_;  // the opening bracket
    if (Peek(close)) {
      ++pos_;
      return items;
    }
    while (true) {
      auto item = Read(depth + 1);
      if (!item) return std::nullopt;
      items.push_back(std::move(*item));
      if (Peek(',')) {
        ++pos_;
      } else if (Peek(close)) {
        ++pos_;
        return items;
      } else {
        return std::nullopt;
      }
    }
  }

  std::optional<std::string> ReadQuoted(char quote) {
    std::string out;
    for (++pos_; pos_ < text_.size(); ++pos_) {
      char c = text_[pos_];
      if (c == quote) {
        ++pos_;
        return out;
      }
      if (c == '\\' && pos_ + 1 < text_.size()) c = text_[++pos_];
      out.push_back(c);
    }
    return std::nullopt;
  }

  std::optional<ErlTerm> Read(int depth) {
    if (depth > kMaxDepth) return std::nullopt;
    SkipSpace();
    if (pos_ >= text_.size()) return std::nullopt;
    ErlTerm term;
    char c = text_[pos_];
    if (c == '[' || c == '{') {
      auto items = ReadSequence(c == '[' ? ']' : '}', depth);
      if (!items) return std::nullopt;
      term.kind = c == '[' ? ErlTerm::Kind::kList : ErlTerm::Kind::kTuple;
      term.items = std::move(*items);
      return term;
    }
    if (c == '"' || c == '\'') {
      auto s = ReadQuoted(c);
      if (!s) return std::nullopt;
      term.kind = c == '"' ? ErlTerm::Kind::kString : ErlTerm::Kind::kAtom;
      term.text = std::move(*s);
      return term;
    }
    size_t start = pos_;
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      ++pos_;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
      term.kind = ErlTerm::Kind::kInteger;
      term.text = std::string(text_.substr(start, pos_ - start));
      if (term.text == "-") return std::nullopt;
      return term;
    }
    if (c >= 'a' && c <= 'z') {
      while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) ||
                                     text_[pos_] == '_' || text_[pos_] == '@')) {
        ++pos_;
      }
      term.kind = ErlTerm::Kind::kAtom;
      term.text = std::string(text_.substr(start, pos_ - start));
      return term;
    }
    return std::nullopt;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

Status ReadSocketOptions(std::string_view text, ReplicationSpec& spec) {
  const std::string malformed =
      "`socket_options` must be an Erlang list such as \"[{keepalive, true}, {nodelay, false}]\"";
  // Stricter than CouchDB, which falls back to its defaults on a string it cannot parse.
  auto term = ErlTermReader(text).ReadOnly();
  if (!term || term->kind != ErlTerm::Kind::kList) return BadDoc(malformed);
  std::set<std::string> ignored_names;
  std::vector<std::string> ignored;  // the first few, in order
  bool ignored_other = false;
  for (const ErlTerm& entry : term->items) {
    if (entry.kind != ErlTerm::Kind::kTuple || entry.items.size() != 2 ||
        entry.items[0].kind != ErlTerm::Kind::kAtom) {
      ignored_other = true;
      continue;
    }
    const std::string& name = entry.items[0].text;
    const ErlTerm& value = entry.items[1];
    if (name == "keepalive" || name == "nodelay") {
      bool is_bool =
          value.kind == ErlTerm::Kind::kAtom && (value.text == "true" || value.text == "false");
      if (!is_bool) return BadDoc("`socket_options`: `" + name + "` must be true or false");
      (name == "keepalive" ? spec.socket_keepalive : spec.socket_nodelay) = value.text == "true";
    } else if (ignored_names.insert(name).second) {
      constexpr size_t kMaxNamed = 5;
      if (ignored.size() < kMaxNamed) ignored.push_back(name);
    }
  }
  if (!ignored.empty()) {
    std::string list;
    for (const auto& name : ignored) list += (list.empty() ? "`" : ", `") + Echo(name) + "`";
    if (ignored_names.size() > ignored.size()) {
      list += " and " + std::to_string(ignored_names.size() - ignored.size()) + " more";
    }
    spec.warnings.push_back("`socket_options`: " + list +
                            " ignored (only keepalive and nodelay are honoured)");
  }
  if (ignored_other) {
    spec.warnings.push_back(
        "`socket_options`: entries that are not {name, value} pairs are ignored");
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------
// Filters and other structured options.
// ---------------------------------------------------------------------------

constexpr std::array<std::string_view, 4> kBuiltinFilters = {"_design", "_doc_ids", "_selector",
                                                             "_view"};

// "ddoc/view" with both parts non-empty.
bool IsDdocSlashName(std::string_view s) {
  size_t slash = s.find('/');
  return slash != std::string_view::npos && slash > 0 && slash + 1 < s.size();
}

// The raw text must also be acceptable to the replication id's EJSON reader
// (depth and number limits); otherwise the id could not be computed later.
Status CheckEjson(std::string_view key, const std::string& raw) {
  auto term = EjsonFromJson(raw);
  if (!term.ok()) return BadDoc(Backticked(key) + " cannot be used: " + term.error().reason);
  return OkStatus();
}

Status ReadFilter(const Fields& doc, const RawFields& raw, ReplicationSpec& spec) {
  auto doc_ids = doc.GetNonNull("doc_ids");
  auto filter = doc.GetNonNull("filter");
  auto selector = doc.GetNonNull("selector");
  if (int(doc_ids.has_value()) + int(filter.has_value()) + int(selector.has_value()) > 1) {
    return BadDoc("`doc_ids`, `filter` and `selector` are mutually exclusive");
  }

  auto query_params = doc.GetNonNull("query_params");
  if (query_params) {
    if (!query_params->is_object()) return BadDoc("`query_params` must be an object");
    spec.query_params_json = raw.query_params.value_or("{}");
    if (Status s = CheckEjson("query_params", spec.query_params_json); !s.ok()) return s;
    auto params = ObjectAsParams(spec.query_params_json);
    if (!params) return BadDoc("`query_params` must be an object");
    spec.query_params = std::move(*params);
  }

  if (doc_ids) {
    simdjson::dom::array ids;
    if (doc_ids->get_array().get(ids)) return BadDoc("`doc_ids` must be an array of strings");
    for (element id : ids) {
      std::string_view s;
      if (id.get_string().get(s)) return BadDoc("`doc_ids` must be an array of strings");
      spec.doc_ids.emplace_back(s);
    }
    spec.filter_kind = ReplicationSpec::FilterKind::kDocIds;
  } else if (filter) {
    std::string_view name;
    if (filter->get_string().get(name) || name.empty()) {
      return BadDoc("`filter` must be a non-empty string");
    }
    if (name.front() == '_') {
      if (name.rfind("_design/", 0) == 0) {
        return BadDoc(
            "`filter`: write a design document's filter as \"ddoc/name\", without "
            "`_design/`");
      }
      // Stricter than CouchDB, whose source would reject the unknown name at run time.
      if (std::find(kBuiltinFilters.begin(), kBuiltinFilters.end(), name) ==
          kBuiltinFilters.end()) {
        return BadDoc("`filter`: unknown built-in filter " + Backticked(Echo(name)) +
                      " (known: _design, _doc_ids, _selector, _view)");
      }
      if (name == "_view") {
        std::string_view view;
        if (!query_params || (*query_params)["view"].get(view) || !IsDdocSlashName(view)) {
          return BadDoc("`filter: _view` needs `query_params.view` as \"ddoc/view\"");
        }
      }
      spec.filter_kind = ReplicationSpec::FilterKind::kBuiltin;
    } else {
      if (!IsDdocSlashName(name)) {
        return BadDoc("`filter` must be \"ddoc/name\" or a built-in filter such as `_view`");
      }
      spec.filter_kind = ReplicationSpec::FilterKind::kUser;
    }
    spec.filter = std::string(name);
  } else if (selector) {
    if (!selector->is_object()) return BadDoc("`selector` must be an object");
    spec.selector_json = raw.selector.value_or("{}");
    if (Status s = CheckEjson("selector", spec.selector_json); !s.ok()) return s;
    auto normalised = NormaliseSelector(spec.selector_json);
    if (!normalised.ok()) {
      std::string why = normalised.error().reason;
      constexpr std::string_view kPrefix = "invalid selector: ";
      if (why.rfind(kPrefix, 0) == 0) why.erase(0, kPrefix.size());
      return BadDoc("`selector` is not a valid Mango selector: " + why);
    }
    spec.filter_kind = ReplicationSpec::FilterKind::kSelector;
  }
  return OkStatus();
}

Status ReadUserCtx(const Fields& doc, UserCtx& out) {
  auto value = doc.Get("user_ctx");
  if (!value) return OkStatus();
  // Stricter than CouchDB: a null user_ctx is not "absent", which would mean
  // the server's credentials for local endpoints.
  if (!value->is_object()) return BadDoc("`user_ctx` must be an object");
  out.present = true;
  element name;
  if (!(*value)["name"].get(name) && !name.is_null()) {
    std::string_view s;
    if (name.get_string().get(s) || s.empty() || HasControlChar(s)) {
      return BadDoc("`user_ctx.name` must be a non-empty string or null");
    }
    out.name = std::string(s);
  }
  element roles;
  if (!(*value)["roles"].get(roles) && !roles.is_null()) {
    simdjson::dom::array array;
    if (roles.get_array().get(array)) return BadDoc("`user_ctx.roles` must be an array of strings");
    if (array.size() > kMaxUserCtxRoles) {
      return BadDoc("`user_ctx.roles` has more than " + std::to_string(kMaxUserCtxRoles) +
                    " roles");
    }
    for (element role : array) {
      std::string_view s;
      if (role.get_string().get(s)) return BadDoc("`user_ctx.roles` must be an array of strings");
      // Roles travel comma-separated in a proxy-auth header: a comma would add a role.
      if (s.empty() || s.find(',') != std::string_view::npos || HasControlChar(s)) {
        return BadDoc(
            "`user_ctx.roles` entries must be non-empty, without commas or control "
            "characters");
      }
      out.roles.emplace_back(s);
    }
  }
  return OkStatus();
}

Status ReadOptions(const Fields& doc, const RawFields& raw, ReplicationSpec& spec) {
  for (auto [key, out] : {std::pair<std::string_view, bool*>{"continuous", &spec.continuous},
                          {"create_target", &spec.create_target},
                          {"winning_revs_only", &spec.winning_revs_only},
                          {"use_checkpoints", &spec.use_checkpoints},
                          {"use_bulk_get", &spec.use_bulk_get}}) {
    if (Status s = ReadBool(doc, key, *out); !s.ok()) return s;
  }
  if (auto params = doc.GetNonNull("create_target_params")) {
    if (!params->is_object()) return BadDoc("`create_target_params` must be an object");
    auto pairs = ObjectAsParams(raw.create_target_params.value_or("{}"));
    if (!pairs) return BadDoc("`create_target_params` must be an object");
    spec.create_target_params = std::move(*pairs);
  }
  if (Status s = ReadFilter(doc, raw, spec); !s.ok()) return s;
  if (doc.GetNonNull("since_seq")) {
    spec.since_seq_json = raw.since_seq.value_or("null");
    if (Status s = CheckEjson("since_seq", *spec.since_seq_json); !s.ok()) return s;
  }
  struct IntOption {
    std::string_view key;
    int min, max;
    int* out;
  };
  for (const IntOption& o :
       {IntOption{"worker_processes", 1, kMaxWorkerProcesses, &spec.worker_processes},
        IntOption{"worker_batch_size", 1, kMaxWorkerBatchSize, &spec.worker_batch_size},
        IntOption{"http_connections", 1, kMaxHttpConnections, &spec.http_connections},
        IntOption{"retries_per_request", 0, kMaxRetriesPerRequest, &spec.retries_per_request}}) {
    if (Status s = ReadInt(doc, o.key, o.min, o.max, *o.out); !s.ok()) return s;
  }
  for (auto [key, out] : {std::pair<std::string_view, std::chrono::milliseconds*>{
                              "checkpoint_interval", &spec.checkpoint_interval},
                          {"connection_timeout", &spec.connection_timeout}}) {
    if (Status s = ReadMillis(doc, key, *out); !s.ok()) return s;
  }
  if (auto options = doc.GetNonNull("socket_options")) {
    std::string_view text;
    if (options->get_string().get(text)) return BadDoc("`socket_options` must be a string");
    if (Status s = ReadSocketOptions(text, spec); !s.ok()) return s;
  }
  if (Status s = ReadUserCtx(doc, spec.user_ctx); !s.ok()) return s;
  for (std::string_view key : {"proxy", "source_proxy", "target_proxy"}) {
    if (doc.GetNonNull(key)) {
      spec.warnings.push_back(Backticked(key) +
                              " is not supported and is ignored: couchrepd connects "
                              "to the endpoints directly");
    }
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------
// Fingerprint: a length-prefixed, binary-safe canonical encoding, hashed.
// ---------------------------------------------------------------------------

class Canon {
 public:
  Canon& Str(std::string_view s) {
    out_ += std::to_string(s.size());
    out_ += ':';
    out_ += s;
    return *this;
  }
  Canon& Int(int64_t v) { return Str(std::to_string(v)); }
  Canon& Bool(bool v) { return Str(v ? "t" : "f"); }
  Canon& Pairs(std::vector<std::pair<std::string, std::string>> pairs) {
    std::stable_sort(pairs.begin(), pairs.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    Int(static_cast<int64_t>(pairs.size()));
    for (const auto& [k, v] : pairs) Str(k).Str(v);
    return *this;
  }
  Canon& Set(std::vector<std::string> items) {
    std::sort(items.begin(), items.end());
    items.erase(std::unique(items.begin(), items.end()), items.end());
    Int(static_cast<int64_t>(items.size()));
    for (const auto& item : items) Str(item);
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

void CanonEndpoint(Canon& c, const EndpointSpec& e) {
  const Credentials& cred = e.endpoint.credentials;
  c.Bool(e.local).Str(e.local_db).Str(e.endpoint.url.WithoutCredentials());
  c.Pairs(e.endpoint.headers);
  c.Int(static_cast<int>(cred.kind)).Str(cred.username).Str(cred.password);
  c.Str(cred.proxy.name).Set(cred.proxy.roles).Str(cred.proxy.secret);
}

}  // namespace

bool UserCtx::HasRole(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

std::string EndpointSpec::Display() const {
  if (local) return local_db;
  Url shown = endpoint.url;
  shown.user.reset();
  shown.password.reset();
  const Credentials& c = endpoint.credentials;
  if (c.kind == Credentials::Kind::kBasic || c.kind == Credentials::Kind::kCookie) {
    shown.user = c.username;
    shown.password = "";  // shown as *****
  }
  return shown.Redacted();
}

ReplicationDefaults ReplicationDefaults::From(const Config& config) {
  return ReplicationDefaults{config.replication};
}

Result<ReplicationSpec> ParseReplicationDoc(std::string_view doc_json,
                                            const ReplicationDefaults& defaults) {
  simdjson::padded_string text(doc_json);
  simdjson::dom::parser parser;
  element root;
  auto code = parser.parse(text).get(root);
  if (code == simdjson::NUMBER_ERROR) {
    if (auto clamped = ClampBigIntegers(doc_json)) code = parser.parse(*clamped).get(root);
  }
  if (code) return BadDoc(NotJson(code, doc_json));
  simdjson::dom::object object;
  if (root.get_object().get(object)) return BadDoc("the document is not a JSON object");
  RawFields raw;
  if (!ExtractRawFields(text, raw)) return BadDoc("the document is not valid JSON");
  Fields doc(object);

  ReplicationSpec spec;
  const Config::Replication& d = defaults.replication;
  spec.use_checkpoints = d.use_checkpoints;
  spec.checkpoint_interval = d.checkpoint_interval;
  spec.worker_processes = d.worker_processes;
  spec.worker_batch_size = d.worker_batch_size;
  spec.http_connections = d.http_connections;
  spec.retries_per_request = d.retries_per_request;
  spec.connection_timeout = d.connection_timeout;
  spec.use_bulk_get = d.use_bulk_get;

  for (auto [name, out] :
       {std::pair<std::string, EndpointSpec*>{"source", &spec.source}, {"target", &spec.target}}) {
    auto value = doc.GetNonNull(name);
    if (!value) return BadDoc(Backticked(name) + " is missing");
    auto endpoint = ReadEndpoint(name, *value, spec.warnings);
    if (!endpoint.ok()) return endpoint.error();
    *out = std::move(endpoint.value());
  }
  if (Status s = ReadOptions(doc, raw, spec); !s.ok()) return s.error();
  return spec;
}

ReplicationSpec ResolveLocalEndpoints(ReplicationSpec spec, const Endpoint& server,
                                      const Config::ProxyAuth* proxy) {
  return ResolveLocalAccess(std::move(spec), server, proxy, /*validation_in_place=*/true);
}

bool MayWriteDesignDocs(const ReplicationSpec& spec) {
  return !spec.target.local || spec.user_ctx.present;
}

IdInputs IdInputsFor(const ReplicationSpec& spec, const std::string& server_uuid,
                     const std::string& user_filter_source) {
  auto endpoint = [](const EndpointSpec& e) {
    IdEndpoint out;
    const Credentials& c = e.endpoint.credentials;
    switch (c.kind) {
      case Credentials::Kind::kBasic:
      case Credentials::Kind::kCookie:
        out.user = c.username;
        break;
      case Credentials::Kind::kProxy:
        out.user = c.proxy.name;
        break;
      case Credentials::Kind::kNone:
        break;
    }
    out.scheme = e.endpoint.url.scheme;
    out.host = e.endpoint.url.host;
    out.port = e.endpoint.url.port;
    out.path = e.endpoint.url.PathAndQuery();
    out.headers = e.headers_as_written;
    return out;
  };
  IdInputs in;
  in.server_uuid = server_uuid;
  in.source = endpoint(spec.source);
  in.target = endpoint(spec.target);
  using Kind = ReplicationSpec::FilterKind;
  switch (spec.filter_kind) {
    case Kind::kNone:
      break;
    case Kind::kDocIds:
      in.filter.kind = IdFilter::kDocIds;
      in.filter.doc_ids = spec.doc_ids;
      break;
    case Kind::kBuiltin:
      in.filter.kind = IdFilter::kBuiltin;
      in.filter.name = spec.filter;
      in.filter.query_params_json = spec.query_params_json;
      break;
    case Kind::kUser:
      in.filter.kind = IdFilter::kUser;
      in.filter.user_filter_source = user_filter_source;
      in.filter.query_params_json = spec.query_params_json;
      break;
    case Kind::kSelector:
      in.filter.kind = IdFilter::kSelector;
      in.filter.selector_json = spec.selector_json;
      break;
  }
  in.winning_revs_only = spec.winning_revs_only;
  in.since_seq_json = spec.since_seq_json;
  in.continuous = spec.continuous;
  in.create_target = spec.create_target;
  return in;
}

std::optional<std::pair<std::string, std::string>> UserFilterLocation(const ReplicationSpec& spec) {
  if (spec.filter_kind != ReplicationSpec::FilterKind::kUser) return std::nullopt;
  size_t slash = spec.filter.find('/');
  if (slash == std::string::npos) return std::nullopt;
  return std::make_pair("_design/" + spec.filter.substr(0, slash), spec.filter.substr(slash + 1));
}

std::string Fingerprint(const ReplicationSpec& spec) {
  using Kind = ReplicationSpec::FilterKind;
  Canon c;
  c.Str("couchrepd-spec-1");
  CanonEndpoint(c, spec.source);
  CanonEndpoint(c, spec.target);
  c.Bool(spec.continuous).Bool(spec.create_target).Pairs(spec.create_target_params);
  c.Int(static_cast<int>(spec.filter_kind));
  switch (spec.filter_kind) {
    case Kind::kNone:
      break;
    case Kind::kDocIds:
      c.Set(spec.doc_ids);
      break;
    case Kind::kBuiltin:
    case Kind::kUser:
      c.Str(spec.filter).Str(spec.query_params_json);
      break;
    case Kind::kSelector: {
      auto normalised = NormaliseSelector(spec.selector_json);
      c.Str(normalised.ok() ? normalised.value() : spec.selector_json);
      break;
    }
  }
  c.Bool(spec.since_seq_json.has_value()).Str(spec.since_seq_json.value_or(""));
  c.Bool(spec.winning_revs_only).Bool(spec.use_checkpoints).Int(spec.checkpoint_interval.count());
  c.Int(spec.worker_processes).Int(spec.worker_batch_size).Int(spec.http_connections);
  c.Int(spec.retries_per_request).Int(spec.connection_timeout.count()).Bool(spec.use_bulk_get);
  c.Bool(spec.socket_keepalive).Bool(spec.socket_nodelay);
  c.Bool(spec.user_ctx.present).Bool(spec.user_ctx.name.has_value());
  c.Str(spec.user_ctx.name.value_or("")).Set(spec.user_ctx.roles);
  return Md5Hex(c.str());
}

}  // namespace couchrepd

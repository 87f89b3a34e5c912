#include "couchrepd/url.h"
#include "couchrepd/encoding.h"

#include <algorithm>
#include <cctype>

namespace couchrepd {

namespace {

constexpr std::string_view kRedactedPassword = "*****";

bool IsUnreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Error UrlError(std::string reason) { return Error::Permanent("bad_url", std::move(reason)); }

}  // namespace

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (IsUnreserved(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = HexValue(s[i + 1]);
    int lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string EncodeDocId(std::string_view doc_id) {
  for (std::string_view prefix : {std::string_view("_design/"), std::string_view("_local/")}) {
    if (doc_id.substr(0, prefix.size()) == prefix) {
      return std::string(prefix) + PercentEncode(doc_id.substr(prefix.size()));
    }
  }
  return PercentEncode(doc_id);
}

std::string EncodeDbName(std::string_view db_name) { return PercentEncode(db_name); }

std::string EncodeAttachmentName(std::string_view name) {
  std::string out;
  size_t start = 0;
  while (true) {
    size_t slash = name.find('/', start);
    out += PercentEncode(name.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    out.push_back('/');
    start = slash + 1;
  }
  return out;
}

Result<Url> ParseUrl(std::string_view text) {
  Url url;
  size_t colon = text.find("://");
  if (colon == std::string_view::npos) {
    return UrlError("not an absolute URL (expected http:// or https://)");
  }
  url.scheme = AsciiLower(text.substr(0, colon));
  if (url.scheme != "http" && url.scheme != "https") {
    return UrlError("unsupported scheme `" + url.scheme + "` (only http and https)");
  }
  std::string_view rest = text.substr(colon + 3);
  size_t auth_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, auth_end);
  std::string_view tail = auth_end == std::string_view::npos ? "" : rest.substr(auth_end);

  // Userinfo ends at the LAST '@' of the authority: passwords may hold a raw '@'.
  size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t sep = userinfo.find(':');
    auto user = PercentDecode(userinfo.substr(0, sep));
    if (!user) return UrlError("malformed percent-escape in the URL's user name");
    url.user = std::move(*user);
    if (sep != std::string_view::npos) {
      auto password = PercentDecode(userinfo.substr(sep + 1));
      if (!password) return UrlError("malformed percent-escape in the URL's password");
      url.password = std::move(*password);
    }
  }
  if (authority.empty()) return UrlError("the URL has no host");
  std::string_view port_text;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return UrlError("unterminated IPv6 address in the URL");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return UrlError("unexpected text after the IPv6 address");
      port_text = after.substr(1);
      url.explicit_port = true;
    }
  } else {
    size_t pc = authority.rfind(':');
    url.host = std::string(authority.substr(0, pc));
    if (pc != std::string_view::npos) {
      port_text = authority.substr(pc + 1);
      url.explicit_port = true;
    }
  }
  if (url.host.empty()) return UrlError("the URL has no host");
  for (unsigned char c : url.host) {
    if (std::isspace(c) || c < 0x20) return UrlError("the URL's host contains a space or control character");
  }
  if (url.explicit_port) {
    if (port_text.empty() || port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(),
                     [](unsigned char c) { return std::isdigit(c); })) {
      return UrlError("the URL's port is not a number");
    }
    url.port = std::stoi(std::string(port_text));
    if (url.port < 1 || url.port > 65535) return UrlError("the URL's port is out of range");
  } else {
    url.port = url.scheme == "https" ? 443 : 80;
  }
  size_t hash = tail.find('#');
  if (hash != std::string_view::npos) tail = tail.substr(0, hash);
  size_t q = tail.find('?');
  std::string_view path = tail.substr(0, q);
  url.path = path.empty() ? "/" : std::string(path);
  if (q != std::string_view::npos) url.query = std::string(tail.substr(q + 1));
  for (unsigned char c : url.path) {
    if (c <= 0x20 || c == 0x7f) return UrlError("the URL's path contains a space or control character");
  }
  return url;
}

std::string Url::HostForUrl() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]";
  return host;
}

std::string Url::Origin() const {
  std::string out = scheme + "://" + HostForUrl();
  if (explicit_port) out += ":" + std::to_string(port);
  return out;
}

std::string Url::PathAndQuery() const { return query.empty() ? path : path + "?" + query; }

std::string Url::WithoutCredentials() const { return Origin() + PathAndQuery(); }

std::string Url::Redacted() const {
  std::string out = scheme + "://";
  if (user) {
    out += PercentEncode(*user);
    if (password) out += ":" + std::string(kRedactedPassword);
    out += "@";
  }
  out += HostForUrl();
  if (explicit_port) out += ":" + std::to_string(port);
  return out + PathAndQuery();
}

Url Url::WithTrailingSlash() const {
  Url copy = *this;
  if (copy.path.empty() || copy.path.back() != '/') copy.path += "/";
  return copy;
}

namespace {

// Every scanner below moves forward only: time and stack are linear in the
// input, whatever it holds (no backtracking regular expressions over text a
// server sent, SPEC §10).

constexpr std::string_view kMask = "*****";

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

bool IsSchemeChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '.' || c == '-';
}

// Ends a URL's userinfo: whitespace, '/', quotes and angle brackets.
bool EndsUserinfo(char c) {
  return IsSpace(c) || c == '/' || c == '"' || c == '\'' || c == '<' || c == '>';
}

// scheme://user:password@ -> scheme://user:*****@ (the password runs to the
// last '@' before the userinfo ends, as in ParseUrl).
std::string RedactUserinfo(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t copied = 0;  // in[0, copied) is in out
  size_t pos = 0;
  while ((pos = in.find("://", pos)) != std::string_view::npos) {
    // A scheme must stand right before "://".
    if (pos == 0 || !IsSchemeChar(in[pos - 1])) {
      pos += 3;
      continue;
    }
    size_t i = pos + 3;
    while (i < in.size() && !EndsUserinfo(in[i]) && in[i] != ':' && in[i] != '@') ++i;
    if (i >= in.size() || in[i] != ':') {
      pos += 3;  // a "://" may start at the character that ended this scan
      continue;
    }
    size_t password = i + 1;
    size_t end = password;
    size_t last_at = std::string_view::npos;
    while (end < in.size() && !EndsUserinfo(in[end])) {
      if (in[end] == '@') last_at = end;
      ++end;
    }
    if (last_at == std::string_view::npos) {
      pos += 3;
      continue;
    }
    out.append(in.substr(copied, password - copied));
    out.append(kMask);
    copied = last_at;  // keep the '@'
    pos = last_at + 1;
  }
  out.append(in.substr(copied));
  return out;
}

// `name: value`, `"name":"value"`, `name=value` for credential-bearing
// header names (case-insensitive): the value up to a quote, a line end, ','
// or '}' becomes *****.
std::string RedactHeaders(std::string_view in) {
  static constexpr std::string_view kNames[] = {"proxy-authorization", "authorization",
                                                "set-cookie", "cookie", "x-auth-couchdb-token"};
  auto starts_with_ci = [&](size_t at, std::string_view name) {
    if (in.size() - at < name.size()) return false;
    for (size_t k = 0; k < name.size(); ++k) {
      if (std::tolower(static_cast<unsigned char>(in[at + k])) != name[k]) return false;
    }
    return true;
  };
  // Values to mask are collected as merged ranges [mask_begin, mask_end):
  // a header name inside another one's value (`"authorization":"authorization":
  // "Bearer x"`) is still found, so names are looked for at every position,
  // and a value's end is scanned once (linear time, SPEC §10).
  std::string out;
  out.reserve(in.size());
  size_t copied = 0;
  bool masking = false;
  size_t mask_begin = 0, mask_end = 0;
  size_t scanned_end = 0;  // where the last value scan stopped
  auto flush = [&] {
    if (!masking) return;
    out.append(in.substr(copied, mask_begin - copied));
    out.append(kMask);
    copied = mask_end;
    masking = false;
  };
  size_t i = 0;
  while (i < in.size()) {
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(in[i])));
    if (c != 'p' && c != 'a' && c != 's' && c != 'c' && c != 'x') {
      ++i;
      continue;
    }
    std::string_view matched;
    for (auto name : kNames) {
      if (starts_with_ci(i, name)) {
        matched = name;
        break;
      }
    }
    if (matched.empty()) {
      ++i;
      continue;
    }
    size_t j = i + matched.size();
    if (j < in.size() && in[j] == '"') ++j;
    while (j < in.size() && IsSpace(in[j])) ++j;
    if (j >= in.size() || (in[j] != ':' && in[j] != '=')) {
      i = j > i + 1 ? j : i + 1;
      continue;
    }
    ++j;
    while (j < in.size() && IsSpace(in[j])) ++j;
    if (j < in.size() && in[j] == '"') ++j;
    // A value that starts inside the last one scanned ends where it ends.
    size_t value_end = j < scanned_end ? scanned_end : j;
    if (j >= scanned_end) {
      while (value_end < in.size() && in[value_end] != '"' && in[value_end] != '\r' &&
             in[value_end] != '\n' && in[value_end] != ',' && in[value_end] != '}') {
        ++value_end;
      }
      scanned_end = value_end;
    }
    if (masking && j <= mask_end) {
      mask_end = std::max(mask_end, value_end);
    } else {
      flush();
      masking = true;
      mask_begin = j;
      mask_end = value_end;
    }
    ++i;
  }
  flush();
  out.append(in.substr(copied));
  return out;
}

// AuthSession=<value> -> AuthSession=***** (value up to ';', whitespace,
// quotes or ',').
std::string RedactSessionCookies(std::string_view in) {
  static constexpr std::string_view kCookie = "AuthSession=";
  std::string out;
  out.reserve(in.size());
  size_t copied = 0;
  size_t pos = 0;
  while ((pos = in.find(kCookie, pos)) != std::string_view::npos) {
    size_t value = pos + kCookie.size();
    size_t end = value;
    while (end < in.size() && in[end] != ';' && !IsSpace(in[end]) && in[end] != '"' &&
           in[end] != '\'' && in[end] != ',') {
      ++end;
    }
    out.append(in.substr(copied, value - copied));
    out.append(kMask);
    copied = end;
    pos = end;
  }
  out.append(in.substr(copied));
  return out;
}

}  // namespace

std::string RedactSecrets(std::string_view text) {
  // One mask can make another form appear (found by fuzz_redact: a cookie
  // value that was a '/' ended a URL's authority; masked, the URL reached a
  // later '@' and showed a password): repeat until nothing changes.
  std::string out(text);
  for (int pass = 0; pass < 4; ++pass) {
    std::string next = RedactSessionCookies(RedactHeaders(RedactUserinfo(out)));
    if (next == out) break;
    out = std::move(next);
  }
  return out;
}

}  // namespace couchrepd

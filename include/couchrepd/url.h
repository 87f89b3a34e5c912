// Url: a parsed http(s) URL, percent-encoding, and credential redaction.
//
// Endpoints in replication documents and the server URL in the config are
// parsed into a Url. Userinfo is percent-decoded into `user`/`password`; the
// password must never be shown: Redacted() and RedactSecrets() are the only
// ways a URL or a free text containing one reaches a log, an error or the
// status API. All functions are pure and thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "couchrepd/result.h"

namespace couchrepd {

struct Url {
  std::string scheme;                   // "http" or "https", lower-case
  std::optional<std::string> user;      // percent-decoded
  std::optional<std::string> password;  // percent-decoded; never print
  std::string host;                     // as written (IPv6 without brackets)
  int port = 0;                         // explicit, or the scheme's default
  bool explicit_port = false;
  std::string path = "/";               // percent-encoded as written, starts with '/'
  std::string query;                    // without '?', as written; empty if none

  // scheme://host[:port] — the server root, without credentials.
  std::string Origin() const;
  // The full URL without userinfo (for connections and identity).
  std::string WithoutCredentials() const;
  // The URL as shown to people: http://user:*****@host:port/path/ (no password).
  std::string Redacted() const;
  // Host as it goes into a URL or a Host header: IPv6 in brackets.
  std::string HostForUrl() const;
  // Path and query: "/db/?a=b".
  std::string PathAndQuery() const;
  // Same URL with `/` appended to the path if it lacks one.
  Url WithTrailingSlash() const;
};

// Parses an absolute http(s) URL. Errors name the problem in plain words and
// never contain the password.
Result<Url> ParseUrl(std::string_view text);

// Percent-encodes everything except RFC 3986 unreserved characters.
std::string PercentEncode(std::string_view s);
// Decodes %XX escapes; returns nullopt on a malformed escape.
std::optional<std::string> PercentDecode(std::string_view s);

// Encodes a document id as a path segment the way CouchDB expects:
// `_design/x` and `_local/x` keep their slash, everything else is encoded.
std::string EncodeDocId(std::string_view doc_id);
// Encodes a database name as a path segment (a '/' inside becomes %2F).
std::string EncodeDbName(std::string_view db_name);
// Encodes an attachment name (each '/'-separated part encoded, slashes kept).
std::string EncodeAttachmentName(std::string_view name);
// Encodes a query-string value.
inline std::string EncodeQueryValue(std::string_view v) { return PercentEncode(v); }

// Replaces the password in every URL found in `text` with *****, and masks the
// value of Authorization / Cookie / X-Auth-CouchDB-Token headers and
// AuthSession cookies written as `name: value` or `name=value`.
std::string RedactSecrets(std::string_view text);

}  // namespace couchrepd

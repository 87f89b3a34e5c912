// Endpoint: where a CouchDB database or server is and how to authenticate.
//
// A plain value shared by the replication spec (which builds endpoints from
// replication documents and the CLI) and the CouchClient (which talks to
// them). Credentials are held here and nowhere else; Url::Redacted() is how
// an endpoint is shown.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "couchrepd/url.h"

namespace couchrepd {

using Headers = std::vector<std::pair<std::string, std::string>>;
using QueryParams = std::vector<std::pair<std::string, std::string>>;

struct ProxyAuth {
  std::string name;
  std::vector<std::string> roles;
  std::string secret;  // shared secret; token = hex HMAC-SHA256(name, secret)
  // CouchDB's [chttpd_auth] x_auth_* header names (server.proxy_auth.*_header).
  std::string username_header = "X-Auth-CouchDB-UserName";
  std::string roles_header = "X-Auth-CouchDB-Roles";
  std::string token_header = "X-Auth-CouchDB-Token";
};

struct Credentials {
  enum class Kind { kNone, kBasic, kCookie, kProxy };
  Kind kind = Kind::kNone;
  std::string username;
  std::string password;  // never logged
  ProxyAuth proxy;
};

struct Endpoint {
  Url url;           // no userinfo needed here: credentials live in `credentials`
  Headers headers;   // extra headers sent with every request (e.g. a bearer token)
  Credentials credentials;
};

}  // namespace couchrepd

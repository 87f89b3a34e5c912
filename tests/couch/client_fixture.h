// Helpers shared by the CouchClient integration tests.
#pragma once

#include <string>

#include "couchrepd/couch_client.h"
#include "support/test_server.h"

namespace couchrepd::testing {

inline HttpOptions FastOptions() {
  HttpOptions o;
  o.retry.initial_wait = std::chrono::milliseconds(50);
  o.connect_timeout = std::chrono::seconds(2);
  o.inactivity_timeout = std::chrono::seconds(10);
  return o;
}

// A client for the server root, as admin when the server has one.
inline CouchClient ServerClient(const TestServer& server, const std::string& admin = "",
                                Credentials::Kind kind = Credentials::Kind::kBasic,
                                HttpOptions options = FastOptions()) {
  Endpoint e;
  e.url = ParseUrl(server.url() + "/").value();
  if (!admin.empty()) {
    auto colon = admin.find(':');
    e.credentials.kind = kind;
    e.credentials.username = admin.substr(0, colon);
    e.credentials.password = admin.substr(colon + 1);
  }
  return CouchClient(e, options);
}

}  // namespace couchrepd::testing

// Helpers shared by the CouchClient integration tests.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "couchrepd/couch_client.h"
#include "support/test_server.h"

namespace couchrepd::testing {

// The admin ("name:password") of the test servers these tests start with one.
inline constexpr const char* kFixtureAdmin = "admin:s3cret-Pw";

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

// Client-side TCP connections of this machine to `port` in state ESTABLISHED
// (/proc/net/tcp and tcp6: remote port in hex, state 01).
inline int EstablishedTo(int port) {
  int n = 0;
  for (const char* path : {"/proc/self/net/tcp", "/proc/self/net/tcp6"}) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      auto colon = remote.rfind(':');
      if (colon == std::string::npos) continue;
      if (std::stoi(remote.substr(colon + 1), nullptr, 16) == port && state == "01") ++n;
    }
  }
  return n;
}

}  // namespace couchrepd::testing

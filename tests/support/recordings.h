// Reading the recorded CouchDB 3.4.3 exchanges in tests/fixtures/couchdb-3.4/
// (format: tests/fixtures/couchdb-3.4/README.md).
#pragma once

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace couchrepd::testing {

inline std::string ReadFixture(const std::string& name) {
  std::ifstream in(std::string(COUCHREPD_TEST_FIXTURES_DIR) + "/couchdb-3.4/" + name,
                   std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << name);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The response body of a recording without a request body: everything after
// the blank line that ends the response headers.
inline std::string ResponseBody(const std::string& name) {
  std::string data = ReadFixture(name);
  size_t request_end = data.find("\n\nHTTP/1.1 ");
  REQUIRE(request_end != std::string::npos);
  size_t head_end = data.find("\n\n", request_end + 2);
  REQUIRE(head_end != std::string::npos);
  return data.substr(head_end + 2);
}

}  // namespace couchrepd::testing

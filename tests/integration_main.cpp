// Integration tests: real HTTP against a CouchDB-compatible server that each
// test starts itself (tests/support/test_server.h). Run twice by scripts/test:
// COUCHREPD_TEST_SEQ_MODE=int and =opaque.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "couchrepd/log.h"

int main(int argc, char** argv) {
  couchrepd::InitLogging("warn", couchrepd::LogFormat::kText);
  doctest::Context context(argc, argv);
  return context.run();
}

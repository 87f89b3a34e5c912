// Helpers shared by the unit tests of replication documents.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <utility>

#include "couchrepd/replication_spec.h"

namespace couchrepd::testing {

// A replication document that must parse; the test stops with the reason if it does not.
inline ReplicationSpec ParseSpec(std::string_view json, const ReplicationDefaults& defaults = {}) {
  auto r = ParseReplicationDoc(json, defaults);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().Message()), " for ", json);
  return std::move(r).value();
}

}  // namespace couchrepd::testing

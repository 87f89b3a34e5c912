// DocKey: the identity of one replication document (its database and id).
#pragma once

#include <compare>
#include <string>

namespace couchrepd {

struct DocKey {
  std::string db;
  std::string doc_id;
  auto operator<=>(const DocKey&) const = default;
};

}  // namespace couchrepd

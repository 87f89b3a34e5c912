// Shared helpers for the replication integration tests: a server, clients,
// `couchrepd replicate` runs and JSON field access.
#pragma once

#include <doctest/doctest.h>
#include <simdjson.h>

#include <string>
#include <thread>
#include <vector>

#include "couch/client_fixture.h"
#include "support/process.h"
#include "couchrepd/json.h"

namespace couchrepd::testing {

// Polls `pred` every 25 ms for at most `timeout`.
template <typename F>
bool WaitUntil(F pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return pred();
}

inline std::string JsonText(const std::string& json, const std::vector<std::string>& path) {
  simdjson::dom::parser p;
  simdjson::dom::element el;
  if (p.parse(json).get(el) != simdjson::SUCCESS) {
    // A document the parser refuses (too deep, a lone surrogate): its
    // top-level member alone, found by structure.
    if (path.empty()) return "<bad json>";
    std::string member;
    bool found = false;
    ScanObjectMembers(json, [&](const RawMember& m) {
      if (m.key != JsonQuote(path[0])) return true;
      member = "{\"m\":" + json.substr(m.value_begin, m.value_end - m.value_begin) + "}";
      found = true;
      return false;
    });
    if (!found) return "<bad json>";
    std::vector<std::string> rest = {"m"};
    rest.insert(rest.end(), path.begin() + 1, path.end());
    return JsonText(member, rest);
  }
  for (const auto& k : path) {
    if (el.at_key(k).get(el) != simdjson::SUCCESS) return "<missing>";
  }
  std::string_view s;
  if (el.get(s) == simdjson::SUCCESS) return std::string(s);
  return std::string(simdjson::minify(el));
}

inline int64_t JsonInt(const std::string& json, const std::vector<std::string>& path) {
  std::string t = JsonText(json, path);
  try {
    return std::stoll(t);
  } catch (...) {
    return -1;
  }
}

// `couchrepd replicate --json --quiet ARGS`, asserting nothing.
inline RunResult Replicate(std::vector<std::string> args, std::vector<std::string> env = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(180)) {
  std::vector<std::string> all = {"replicate", "--json", "--quiet"};
  all.insert(all.end(), args.begin(), args.end());
  return RunCouchrepd(all, env, timeout);
}

// Same, requiring success; returns the JSON summary.
inline std::string ReplicateOk(std::vector<std::string> args, std::vector<std::string> env = {}) {
  auto r = Replicate(std::move(args), std::move(env));
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(JsonText(r.out, {"ok"}) == "true");
  return r.out;
}

inline int64_t DocCount(CouchClient& db) {
  auto info = db.GetDbInfo();
  if (!info.ok()) return -1;
  return info->doc_count;
}

inline void PutPlainDocs(CouchClient& db, int from, int to, const std::string& prefix = "doc") {
  std::vector<std::string> docs;
  for (int i = from; i < to; ++i) {
    docs.push_back("{\"_id\":\"" + prefix + std::to_string(i) + "\",\"n\":" + std::to_string(i) +
                   ",\"even\":" + (i % 2 ? "false" : "true") + "}");
    if (docs.size() == 1000 || i + 1 == to) {
      auto r = db.BulkDocs(docs, true);
      REQUIRE(r.ok());
      docs.clear();
    }
  }
}

}  // namespace couchrepd::testing

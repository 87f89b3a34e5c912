// The status API seen from a test (GET, its documents and jobs, /metrics)
// and comparisons of what it shows against the replicator database.
#pragma once

#include <httplib.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "integration/serve_helpers.h"
#include "support/corpus.h"

namespace couchrepd::testing {

// GET on the status API: status and body (0 when no answer).
struct Got {
  int status = 0;
  std::string body;
};
inline Got StatusGet(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(30, 0);
  auto res = c.Get(path);
  if (!res) return {};
  return {res->status, res->body};
}

// The status API's view of one replicator database: doc id -> state.
inline std::map<std::string, std::string> StatusDocs(int port, const std::string& db = "_replicator") {
  std::map<std::string, std::string> out;
  Got got = StatusGet(port, "/_scheduler/docs/" + db + "?limit=100000");
  if (got.status != 200) return out;
  simdjson::dom::parser parser;
  simdjson::dom::array docs;
  if (parser.parse(got.body)["docs"].get(docs) != simdjson::SUCCESS) return out;
  for (auto d : docs) {
    std::string_view id, state;
    if (d["doc_id"].get(id) == simdjson::SUCCESS && d["state"].get(state) == simdjson::SUCCESS) {
      out[std::string(id)] = std::string(state);
    }
  }
  return out;
}

// The status API's jobs: doc id -> {state of the last history event, its reason}.
inline std::string JobField(int port, const std::string& doc_id, const std::vector<std::string>& path) {
  Got got = StatusGet(port, "/_scheduler/docs/_replicator/" + doc_id);
  if (got.status != 200) return "<" + std::to_string(got.status) + ">";
  return JsonText(got.body, path);
}

// The sum of a Prometheus counter over all its series ("name{" or "name ").
inline double MetricSum(int port, const std::string& name) {
  Got got = StatusGet(port, "/metrics");
  double sum = 0;
  std::istringstream in(got.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) != 0) continue;
    char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    sum += std::atof(line.c_str() + line.rfind(' ') + 1);
  }
  return sum;
}

// The live replication documents (design documents left out).
inline std::set<std::string> LiveRepDocs(CouchClient& rep) {
  std::set<std::string> ids;
  ChangesRequest req;
  req.style = "main_only";
  auto r = rep.Changes(req, [&](ChangeRow&& row) {
    if (!row.deleted && row.id.rfind("_design/", 0) != 0) ids.insert(row.id);
    else ids.erase(row.id);
    return true;
  });
  REQUIRE(r.ok());
  return ids;
}

// Every live replication document has a job in `state`, and no other job is
// listed (a deleted document's job is gone). Empty when all agree.
inline std::vector<std::string> StatusAgainstDocuments(int port, CouchClient& rep, const std::string& state) {
  std::vector<std::string> diffs;
  auto live = LiveRepDocs(rep);
  auto shown = StatusDocs(port);
  for (const auto& id : live) {
    auto it = shown.find(id);
    if (it == shown.end()) diffs.push_back(id + ": live document without a job");
    else if (it->second != state) diffs.push_back(id + ": " + it->second + ", expected " + state);
  }
  for (const auto& [id, st] : shown) {
    if (!live.count(id)) diffs.push_back(id + ": job (" + st + ") for a deleted document");
  }
  return diffs;
}

inline std::string RepDocJson(const std::string& source, const std::string& target, bool continuous) {
  return "{\"source\":\"" + source + "\",\"target\":\"" + target + "\",\"create_target\":true" +
         (continuous ? ",\"continuous\":true" : "") + "}";
}

// Source and target hold the same documents (every leaf, body, attachment digest).
inline void CheckSame(CouchClient& source, CouchClient& target) {
  auto diffs = CompareDatabases(source, target);
  INFO((diffs.empty() ? std::string() : diffs.front()));
  CHECK(diffs.size() == 0);
}

// The query string of the first request the test server logged for paths matching
// `path_regex` (percent-encoded), or "<none>".
inline std::string FirstQuery(TestServer& server, const std::string& path_regex) {
  auto asked = server.Request("GET", "/_test/requests?list=true&path=" + path_regex);
  simdjson::dom::parser parser;
  simdjson::dom::array requests;
  if (parser.parse(asked.body)["requests"].get(requests) != simdjson::SUCCESS) return "<bad>";
  for (auto r : requests) {
    std::string_view q;
    if (r["query"].get(q) == simdjson::SUCCESS) return std::string(q);
  }
  return "<none>";
}

// The `since` parameter of a query string ("" when there is none).
inline std::string SinceOf(const std::string& query) {
  size_t at = query.find("since=");
  if (at == std::string::npos || (at > 0 && query[at - 1] != '&' && query[at - 1] != '?')) return "";
  at += 6;
  return query.substr(at, query.find('&', at) - at);
}

}  // namespace couchrepd::testing

// `couchrepd status`: reads a running instance's status API and prints its
// documents as a table (or JSON, or one document in detail); exit 1 when any
// document is in error, failed or crashing, so it works in scripts.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "couchrepd/cli.h"
#include "couchrepd/couch_client.h"
#include "couchrepd/encoding.h"
#include "couchrepd/log.h"
#include "couchrepd/status_table.h"
#include "couchrepd/url.h"

namespace couchrepd {

namespace {

constexpr const char* kStatusUsage = R"(Usage: couchrepd status [OPTIONS] [DOC_ID]

Shows what a running `couchrepd serve` is doing, from its status API.

  --server URL   the status API (default http://127.0.0.1:5986)
  --db NAME      the replicator database of DOC_ID (default _replicator)
  --state S      only documents in state S (repeatable, or S1,S2)
  --user NAME    Basic auth user (password from COUCHREPD_STATUS_PASSWORD)
  --json         print the status API's JSON instead of a table
  --help         this text

Exit status: 0 all well, 1 a document is in error, failed or crashing (or
the status API could not be read), 2 bad usage.

Examples:
  couchrepd status
  couchrepd status --state crashing,error
  couchrepd status --server http://10.0.0.5:5986 --user ops nightly-backup
)";

struct StatusArgs {
  std::string server = "http://127.0.0.1:5986";
  std::string db = "_replicator";
  std::vector<std::string> states;
  std::string user;
  std::string doc_id;
  bool json = false;
  bool help = false;
};

Result<StatusArgs> ParseStatusArgs(const std::vector<std::string>& args) {
  StatusArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* name) -> Result<std::string> {
      if (i + 1 >= args.size()) return Error::Permanent("usage", std::string(name) + " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      out.help = true;
    } else if (a == "--json") {
      out.json = true;
    } else if (a == "--server" || a == "--db" || a == "--state" || a == "--user") {
      auto v = value(a.c_str());
      if (!v.ok()) return v.error();
      if (a == "--server") out.server = *v;
      if (a == "--db") out.db = *v;
      if (a == "--user") out.user = *v;
      if (a == "--state") {
        size_t start = 0;
        while (start <= v->size()) {
          size_t comma = v->find(',', start);
          std::string s = v->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
          if (!s.empty()) out.states.push_back(s);
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
      }
    } else if (!a.empty() && a[0] == '-') {
      return Error::Permanent("usage", "unknown option `" + a + "`");
    } else if (out.doc_id.empty()) {
      out.doc_id = a;
    } else {
      return Error::Permanent("usage", "one DOC_ID at most");
    }
  }
  return out;
}

Result<std::string> Get(CouchClient& api, const std::string& path, const QueryParams& query = {}) {
  HttpRequest req;
  req.path = path;
  req.query = query;
  auto r = api.Send(req);
  if (!r.ok()) return r.error();
  return r->body;
}

}  // namespace

int RunStatus(const std::vector<std::string>& raw_args) {
  auto args = ParseStatusArgs(raw_args);
  if (!args.ok()) {
    std::fprintf(stderr, "status: %s\n\n%s", args.error().reason.c_str(), kStatusUsage);
    return kExitUsage;
  }
  if (args->help) {
    std::fputs(kStatusUsage, stdout);
    return kExitOk;
  }
  auto url = ParseUrl(args->server + (args->server.empty() || args->server.back() != '/' ? "/" : ""));
  if (!url.ok()) {
    std::fprintf(stderr, "status: --server: %s\n", url.error().reason.c_str());
    return kExitUsage;
  }
  Endpoint endpoint;
  endpoint.url = *url;
  if (!args->user.empty()) {
    const char* pw = std::getenv("COUCHREPD_STATUS_PASSWORD");
    endpoint.credentials.kind = Credentials::Kind::kBasic;
    endpoint.credentials.username = args->user;
    endpoint.credentials.password = pw ? pw : "";
    RegisterSecret(endpoint.credentials.password);
  }
  HttpOptions options;
  options.retry.retries = 1;
  options.connect_timeout = std::chrono::seconds(3);
  options.inactivity_timeout = std::chrono::seconds(10);
  CouchClient api(endpoint, options);
  const std::string shown = endpoint.url.Redacted();

  if (!args->doc_id.empty()) {
    auto doc = Get(api, "/_scheduler/docs/" + EncodeDbName(args->db) + "/" + PercentEncode(args->doc_id));
    if (!doc.ok()) {
      std::fprintf(stderr, "status: %s: %s\n", shown.c_str(), ScrubSecrets(doc.error().Message()).c_str());
      return kExitFailure;
    }
    auto row = ParseStatusDoc(*doc);
    if (!row.ok()) {
      std::fprintf(stderr, "status: %s\n", row.error().reason.c_str());
      return kExitFailure;
    }
    std::string job;
    if (!row->job_id.empty()) {
      auto j = Get(api, "/_scheduler/jobs/" + PercentEncode(row->job_id));
      if (j.ok()) job = *j;
    }
    if (args->json) {
      std::printf("{\"doc\":%s,\"job\":%s}\n", doc->c_str(), job.empty() ? "null" : job.c_str());
    } else {
      std::fputs(RenderStatusDetail(*row, job).c_str(), stdout);
    }
    return AnyNeedsAttention({*row}) ? kExitFailure : kExitOk;
  }

  QueryParams query = {{"limit", "1000000"}};
  if (!args->states.empty()) {
    std::string joined;
    for (const auto& s : args->states) joined += (joined.empty() ? "" : ",") + s;
    query.emplace_back("states", joined);
  }
  auto docs = Get(api, "/_scheduler/docs", query);
  if (!docs.ok()) {
    std::fprintf(stderr, "status: %s: %s\n", shown.c_str(), ScrubSecrets(docs.error().Message()).c_str());
    return kExitFailure;
  }
  auto rows = ParseStatusDocs(*docs);
  if (!rows.ok()) {
    std::fprintf(stderr, "status: %s\n", rows.error().reason.c_str());
    return kExitFailure;
  }
  if (args->json) {
    std::printf("%s\n", docs->c_str());
  } else {
    std::fputs(RenderStatusTable(*rows).c_str(), stdout);
  }
  return AnyNeedsAttention(*rows) ? kExitFailure : kExitOk;
}

}  // namespace couchrepd

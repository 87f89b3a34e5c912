// `couchrepd status`: reads a running instance's status API and prints its
// documents as a table (or JSON, or one document in detail); exit 1 when any
// document is in error, failed or crashing, so it works in scripts. Its help
// text is in src/cli/help.cpp.
#include <cstdio>
#include <cstdlib>
#include <optional>
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
  // --help wins over anything else on the line, mistakes included.
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      out.help = true;
      return out;
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    // `--flag=VALUE` is `--flag VALUE`.
    std::string a = args[i];
    std::optional<std::string> inline_value;
    if (size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a.resize(eq);
    }
    auto value = [&](const char* name) -> Result<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) return Error::Permanent("usage", std::string(name) + " needs a value");
      return args[++i];
    };
    if (a == "--json") {
      if (inline_value) return Error::Permanent("usage", "--json takes no value");
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
      // Only the name: a mistyped flag's value may be a URL with a password.
      return Error::Permanent("usage", "unknown option `" + a.substr(0, 40) + "`");
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
    std::fprintf(stderr, "status: %s (couchrepd status --help shows the options)\n",
                 args.error().reason.c_str());
    return kExitUsage;
  }
  if (args->help) return PrintCommandHelp("status");
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

// `couchrepd check-config [--config FILE]`: validates the configuration and
// tries to reach the server with it. Its help text is in src/cli/help.cpp.
#include <simdjson.h>

#include <cstdio>

#include "couchrepd/cli.h"
#include "couchrepd/config.h"
#include "couchrepd/log.h"
#include "couchrepd/server_connection.h"

namespace couchrepd {

int RunCheckConfig(const std::vector<std::string>& args) {
  // --help wins over anything else on the line, mistakes included.
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") return PrintCommandHelp("check-config");
  }
  std::string path = kDefaultConfigPath;
  for (size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--config" || args[i] == "-c") && i + 1 < args.size()) {
      path = args[++i];
    } else if (args[i].rfind("--config=", 0) == 0) {
      path = args[i].substr(9);
    } else {
      std::fprintf(stderr,
                   "check-config: unknown argument `%s` (couchrepd check-config --help shows the "
                   "options)\n",
                   args[i].c_str());
      return kExitUsage;
    }
  }
  auto config = LoadConfigFile(path, RealEnv);
  if (!config.ok()) {
    std::fprintf(stderr, "%s: invalid configuration:\n%s\n", path.c_str(),
                 config.error().reason.c_str());
    return kExitUsage;
  }
  RegisterConfigSecrets(*config);
  std::printf("configuration %s is valid:\n%s\n", path.c_str(), DescribeConfig(*config).c_str());

  auto endpoint = ServerEndpointFromConfig(*config);
  if (!endpoint.ok()) {
    std::fprintf(stderr, "%s\n", ScrubSecrets(endpoint.error().Message()).c_str());
    return kExitUsage;
  }
  HttpOptions options = HttpOptionsFromConfig(*config);
  options.retry.retries = 1;  // a quick answer: this is an interactive check
  CouchClient server(*endpoint, options);
  auto info = server.GetServerInfo();
  if (!info.ok()) {
    std::fprintf(stderr, "cannot reach the server %s: %s\n", server.DisplayUrl().c_str(),
                 ScrubSecrets(info.error().Message()).c_str());
    return kExitFailure;
  }
  std::printf("server %s answers: version %s, uuid %s%s%s\n", server.DisplayUrl().c_str(),
              info->version.c_str(), info->uuid.c_str(), info->vendor.empty() ? "" : ", vendor ",
              info->vendor.c_str());
  // Who the server thinks we are: catches a wrong password before `serve` does.
  HttpRequest session;
  session.path = "/_session";
  auto who = server.Send(session);
  if (!who.ok()) {
    std::fprintf(stderr, "the server refused our credentials: %s\n",
                 ScrubSecrets(who.error().Message()).c_str());
    return kExitFailure;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string name = "(anonymous)";
  std::string roles;
  if (parser.parse(who->body).get(doc) == simdjson::SUCCESS) {
    std::string_view s;
    if (doc["userCtx"]["name"].get(s) == simdjson::SUCCESS) name = std::string(s);
    simdjson::dom::array arr;
    if (doc["userCtx"]["roles"].get(arr) == simdjson::SUCCESS) {
      for (auto r : arr) {
        if (r.get(s) == simdjson::SUCCESS) roles += (roles.empty() ? "" : ",") + std::string(s);
      }
    }
  }
  std::printf("authenticated as %s (roles: %s)\n", name.c_str(), roles.empty() ? "none" : roles.c_str());
  if (roles.find("_admin") == std::string::npos) {
    std::printf("warning: without the _admin role couchrepd cannot install validation or "
                "read every replicator database\n");
  }
  return kExitOk;
}

}  // namespace couchrepd

// `serve` with `log.format: json`: every line one JSON object, with the
// structured fields of the document and job it is about (issue 12), and no
// credential in any of them.
#include <simdjson.h>

#include <map>
#include <sstream>

#include "integration/serve_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;

namespace {

// Every stderr line of the service parsed as JSON; a line that is not an
// object fails the test.
std::vector<std::map<std::string, std::string>> JsonLines(const std::string& log) {
  std::vector<std::map<std::string, std::string>> lines;
  std::istringstream in(log);
  std::string line;
  simdjson::dom::parser parser;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    simdjson::dom::object obj;
    INFO(line);
    REQUIRE(parser.parse(line).get(obj) == simdjson::SUCCESS);
    std::map<std::string, std::string> fields;
    for (auto [key, value] : obj) {
      std::string_view s;
      REQUIRE(value.get(s) == simdjson::SUCCESS);  // every field is a string
      fields[std::string(key)] = std::string(s);
    }
    lines.push_back(std::move(fields));
  }
  return lines;
}

// The first line whose msg contains `needle` (empty map when none).
std::map<std::string, std::string> LineWith(
    const std::vector<std::map<std::string, std::string>>& lines, const std::string& needle) {
  for (const auto& l : lines) {
    auto msg = l.find("msg");
    if (msg != l.end() && msg->second.find(needle) != std::string::npos) return l;
  }
  return {};
}

}  // namespace

TEST_CASE("serve: JSON log lines carry db, doc_id, replication_id, source, target and error") {
  TestServerOptions opts;
  opts.admin = "admin:Adm1n-pw";
  TestServer server(opts);
  auto root = ServerClient(server, "admin:Adm1n-pw");
  auto src = root.Database("logs-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 20);
  std::string config = ServeConfig(server);
  config = "server:\n  url: " + server.url() + "\n  username: admin\n" +
           config.substr(config.find("\n  request_timeout"));
  config.replace(config.find("log:\n  level: debug\n"), 20,
                 "log:\n  level: debug\n  format: json\n");
  ServeProcess serve(config, {"COUCHREPD_SERVER_PASSWORD=Adm1n-pw"});
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 20s));

  // A job whose URLs carry the admin's password, and a document that fails.
  std::string authed = "http://admin:Adm1n-pw@127.0.0.1:" + std::to_string(server.port());
  REQUIRE(rep.PutDoc("good", R"({"source":")" + authed + R"(/logs-src","target":")" + authed +
                                 R"(/logs-tgt","create_target":true,"user_ctx":{"roles":["_admin"]}})")
              .ok());
  REQUIRE(rep.PutDoc("broken", R"({"source":")" + authed +
                                   R"(/logs-src","target":42,"user_ctx":{"roles":["_admin"]}})")
              .ok());
  REQUIRE(WaitForState(rep, "good", "completed"));
  REQUIRE(WaitUntil([&] { return StateOf(rep, "broken") == "failed" || StateOf(rep, "broken") == "error"; },
                    20s));
  std::string good_doc = *rep.GetDoc("good");
  std::string replication_id = JsonText(good_doc, {"_replication_id"});
  REQUIRE(!replication_id.empty());
  WaitUntil([&] { return serve.Log().find("completed:") != std::string::npos; }, 10s);

  std::string log = serve.Log();
  INFO(log);
  CHECK(log.find("Adm1n-pw") == std::string::npos);
  auto lines = JsonLines(log);
  REQUIRE(lines.size() > 5);
  for (const auto& l : lines) {
    CHECK(l.count("ts") == 1);
    CHECK(l.count("level") == 1);
    CHECK(l.count("msg") == 1);
  }

  // The engine's line about the job starting: the document and the job.
  auto started = LineWith(lines, "started");
  CHECK(started["db"] == "_replicator");
  CHECK(started["doc_id"] == "good");
  CHECK(started["replication_id"] == replication_id);
  CHECK(started["job_state"] == "running");

  // A line written on the job's own threads: the job's endpoints, no password.
  auto starting = LineWith(lines, "starting at sequence");
  CHECK(starting["db"] == "_replicator");
  CHECK(starting["doc_id"] == "good");
  CHECK(starting["replication_id"] == replication_id);
  CHECK(starting["source"].find("127.0.0.1:" + std::to_string(server.port()) + "/logs-src") !=
        std::string::npos);
  CHECK(starting["target"].find("/logs-tgt") != std::string::npos);
  CHECK(starting["source"].find("Adm1n-pw") == std::string::npos);

  auto completed = LineWith(lines, "completed:");
  CHECK(completed["doc_id"] == "good");
  CHECK(completed["job_state"] == "completed");

  // The document that failed: its state and the reason as `error`.
  auto failed = LineWith(lines, "_replicator/broken: ");
  CHECK(failed["doc_id"] == "broken");
  CHECK((failed["job_state"] == "failed" || failed["job_state"] == "error"));
  CHECK(failed["error"].find("target") != std::string::npos);

  // Lines about the replicator database only carry db.
  auto following = LineWith(lines, "following replicator database");
  CHECK(following.count("doc_id") == 0);
}

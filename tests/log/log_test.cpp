#include <doctest/doctest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "couchrepd/encoding.h"
#include "couchrepd/log.h"

using namespace couchrepd;

TEST_CASE("registered secrets and their encoded forms are scrubbed") {
  RegisterBasicCredentials("carol", "Tr0ub4dor&3");
  std::string text = "password Tr0ub4dor&3 url-escaped Tr0ub4dor%263 basic " +
                     Base64Encode("carol:Tr0ub4dor&3") + " done";
  std::string out = ScrubSecrets(text);
  CHECK(out.find("Tr0ub4dor") == std::string::npos);
  CHECK(out.find(Base64Encode("carol:Tr0ub4dor&3")) == std::string::npos);
  CHECK(out.find("done") != std::string::npos);
  CHECK(ScrubSecrets("nothing here") == "nothing here");
}

TEST_CASE("log lines go through the redacting formatter, text and json") {
  InitLogging("debug", LogFormat::kText);
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto logger = spdlog::default_logger();
  logger->sinks().push_back(sink);
  InitLogging("debug", LogFormat::kText);  // re-applies the formatter to every sink
  spdlog::info("fetching http://dave:s3cr3t-pw@127.0.0.1:5984/db with Authorization: Basic abc");
  InitLogging("debug", LogFormat::kJson);
  spdlog::warn("json line for http://dave:s3cr3t-pw@host/");
  logger->sinks().pop_back();
  InitLogging("info", LogFormat::kText);
  std::string out = captured.str();
  CHECK(out.find("s3cr3t-pw") == std::string::npos);
  CHECK(out.find("http://dave:*****@127.0.0.1:5984/db") != std::string::npos);
  CHECK(out.find("Authorization: *****") != std::string::npos);
  CHECK(out.find(R"("level":"warning","msg":"json line for http://dave:*****@host/")") !=
        std::string::npos);
}

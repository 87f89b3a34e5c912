#include <doctest/doctest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <sstream>
#include <thread>

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

// A logger of the test's own whose lines land in `out`, formatted as InitLogging does.
std::shared_ptr<spdlog::logger> CapturingLogger(std::ostringstream& out, LogFormat format) {
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_formatter(MakeLogFormatter(format));
  auto logger = std::make_shared<spdlog::logger>("capture", sink);
  logger->set_level(spdlog::level::debug);
  return logger;
}

TEST_CASE("log lines go through the redacting formatter, text and json") {
  std::ostringstream captured;
  CapturingLogger(captured, LogFormat::kText)
      ->info("fetching http://dave:s3cr3t-pw@127.0.0.1:5984/db with Authorization: Basic abc");
  CapturingLogger(captured, LogFormat::kJson)->warn("json line for http://dave:s3cr3t-pw@host/");
  std::string out = captured.str();
  CHECK(out.find("s3cr3t-pw") == std::string::npos);
  CHECK(out.find("http://dave:*****@127.0.0.1:5984/db") != std::string::npos);
  CHECK(out.find("Authorization: *****") != std::string::npos);
  CHECK(out.find(R"("level":"warning","msg":"json line for http://dave:*****@host/")") !=
        std::string::npos);
}

TEST_CASE("JSON lines carry the thread's fields, scrubbed; inner scopes override, then restore") {
  RegisterSecret("t0ken-in-a-field");
  std::ostringstream captured;
  auto logger = CapturingLogger(captured, LogFormat::kJson);
  {
    ScopedLogFields job({.replication_id = "abc+continuous",
                         .source = "http://u:pw-in-url@127.0.0.1:5984/src/",
                         .target = "http://127.0.0.1:5984/tgt/"});
    {
      ScopedLogFields doc({.db = "_replicator", .doc_id = "d1", .error = "t0ken-in-a-field x"});
      logger->info("inner");
    }
    logger->info("outer");
    // Another thread has fields of its own (none here).
    std::thread([&] { logger->info("other thread"); }).join();
  }
  logger->info("after");
  std::string out = captured.str();
  INFO(out);
  CHECK(out.find(R"("msg":"inner","db":"_replicator","doc_id":"d1","replication_id":)"
                 R"("abc+continuous","source":"http://u:*****@127.0.0.1:5984/src/","target":)"
                 R"("http://127.0.0.1:5984/tgt/","error":"***** x"})") != std::string::npos);
  CHECK(out.find(R"("msg":"outer","replication_id":"abc+continuous","source":)") !=
        std::string::npos);
  CHECK(out.find(R"("msg":"other thread"})") != std::string::npos);
  CHECK(out.find(R"("msg":"after"})") != std::string::npos);
  CHECK(out.find("pw-in-url") == std::string::npos);
  CHECK(out.find("t0ken-in-a-field") == std::string::npos);
}

TEST_CASE("LogWith adds its fields to one line only; text lines keep their form") {
  std::ostringstream json;
  std::ostringstream text;
  auto json_logger = CapturingLogger(json, LogFormat::kJson);
  auto text_logger = CapturingLogger(text, LogFormat::kText);
  spdlog::set_default_logger(json_logger);
  LogWith({.doc_id = "d2", .job_state = "crashing"}, spdlog::level::warn, "crashed: {}", 7);
  spdlog::info("plain");
  spdlog::set_default_logger(text_logger);
  LogWith({.doc_id = "d2"}, spdlog::level::warn, "crashed: {}", 8);
  InitLogging("info", LogFormat::kText);  // back to the real default logger
  CHECK(json.str().find(R"("msg":"crashed: 7","doc_id":"d2","job_state":"crashing"})") !=
        std::string::npos);
  CHECK(json.str().find(R"("msg":"plain"})") != std::string::npos);
  CHECK(text.str().find("warning crashed: 8\n") != std::string::npos);
  CHECK(text.str().find("d2") == std::string::npos);
  CHECK(CurrentLogFields() == LogFields{});
}

TEST_CASE("journal entries: syslog priority, upper-case fields, secrets scrubbed") {
  RegisterSecret("j0urnal-secret");
  auto entry = JournalEntry(spdlog::level::warn, "lost j0urnal-secret",
                            {.db = "_replicator", .doc_id = "d3", .source = "http://a:b1c2@h/x/"});
  std::vector<std::string> want = {"MESSAGE=lost *****",    "PRIORITY=4",
                                   "SYSLOG_IDENTIFIER=couchrepd", "DB=_replicator",
                                   "DOC_ID=d3",             "SOURCE=http://a:*****@h/x/"};
  CHECK(entry == want);
  CHECK(JournalEntry(spdlog::level::err, "e", {})[1] == "PRIORITY=3");
  CHECK(JournalEntry(spdlog::level::info, "i", {})[1] == "PRIORITY=6");
  CHECK(JournalEntry(spdlog::level::debug, "d", {})[1] == "PRIORITY=7");
}

TEST_CASE("asking for the journal where none answers keeps stderr and says so") {
  bool journal = InitLogging("info", LogFormat::kText, LogOutput::kJournal);
  // No journald in the test environment (no /run/systemd/journal/socket).
  if (access("/run/systemd/journal/socket", W_OK) != 0) CHECK_FALSE(journal);
  CHECK(InitLogging("info", LogFormat::kText, LogOutput::kStderr));
}

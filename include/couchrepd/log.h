// Logging: spdlog set up so that no secret can reach a log line.
//
// Every formatted line passes through RedactSecrets (URL passwords,
// Authorization/Cookie values) and through a registry of known secret values
// (the server password, passwords and tokens found in replication documents,
// and their Basic-auth base64 forms), which are replaced by *****. Use the
// ordinary spdlog calls (spdlog::info(...)) after InitLogging.
//
// Structured fields: JSON lines and journal entries also carry the fields of
// the thread's current ScopedLogFields (db, doc_id, replication_id, job_state,
// source, target, error). A job's threads set the job's fields once; one-off
// lines use LogWith. The logger is synchronous, so a line is formatted on the
// thread that logs it and sees that thread's fields. Text lines keep their
// form (the message already names the document or job).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace couchrepd {

enum class LogFormat { kText, kJson };
// Where lines go: stderr (text or JSON), or systemd's journal with the
// structured fields as journal fields (needs libsystemd at build time).
enum class LogOutput { kStderr, kJournal };

// The structured fields of a log line; empty ones are left out. source and
// target are display URLs (credentials removed); every value is scrubbed of
// secrets again when written.
struct LogFields {
  std::string db{};
  std::string doc_id{};
  std::string replication_id{};
  std::string job_state{};
  std::string source{};
  std::string target{};
  std::string error{};
  bool operator==(const LogFields&) const = default;
};

// The fields in effect on this thread: every ScopedLogFields still alive on
// it, inner ones overriding outer ones field by field.
const LogFields& CurrentLogFields();

// Adds fields to this thread's log lines until it goes out of scope.
class ScopedLogFields {
 public:
  explicit ScopedLogFields(const LogFields& fields);
  ~ScopedLogFields();
  ScopedLogFields(const ScopedLogFields&) = delete;
  ScopedLogFields& operator=(const ScopedLogFields&) = delete;

 private:
  LogFields saved_;
};

// One line with extra fields: LogWith({.db = db, .doc_id = id}, spdlog::level::warn, "...", ...).
template <typename... Args>
void LogWith(const LogFields& fields, spdlog::level::level_enum level,
             spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (!spdlog::should_log(level)) return;
  ScopedLogFields scope(fields);
  spdlog::log(level, fmt, std::forward<Args>(args)...);
}

// One JSON log line (no newline): ts, level, msg, then the non-empty fields,
// every value already scrubbed by the caller. Pure; used by the formatter.
std::string RenderJsonLogLine(std::string_view ts, std::string_view level, std::string_view msg,
                              const LogFields& fields);
// The journal entry of a line: MESSAGE=, PRIORITY= (syslog), SYSLOG_IDENTIFIER=
// and one upper-case field per non-empty log field (DB=, DOC_ID=,
// REPLICATION_ID=, JOB_STATE=, SOURCE=, TARGET=, ERROR=), scrubbed. Pure.
std::vector<std::string> JournalEntry(spdlog::level::level_enum level, std::string_view msg,
                                      const LogFields& fields);

// The redacting formatter InitLogging puts on stderr (for tests' own sinks).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format);

// Installs the redacting formatter on spdlog's default logger (stderr, or the
// journal). `level` is trace|debug|info|warn|error. Safe to call again
// (SIGHUP reload). Returns false (and keeps stderr) when the journal was
// asked for but this build has no libsystemd or no journal answers.
bool InitLogging(std::string_view level, LogFormat format,
                 LogOutput output = LogOutput::kStderr);
void SetLogLevel(std::string_view level);

// Remembers a secret so that it is masked wherever it would appear in a log
// line. Also registers base64("user:secret") forms when given the user.
// Secrets shorter than 3 bytes are not registered (they would mask words).
void RegisterSecret(std::string_view secret);
void RegisterBasicCredentials(std::string_view user, std::string_view password);

// Masks the registered secrets and RedactSecrets patterns in `text`. Used by
// the logger, and by anything else that must show text that may hold one
// (error reasons written back to documents, the status API).
std::string ScrubSecrets(std::string_view text);

}  // namespace couchrepd

// Logging: spdlog set up so that no secret can reach a log line.
//
// Every formatted line passes through RedactSecrets (URL passwords,
// Authorization/Cookie values) and through a registry of known secret values
// (the server password, passwords and tokens found in replication documents,
// and their Basic-auth base64 forms), which are replaced by *****. Use the
// ordinary spdlog calls (spdlog::info(...)) after InitLogging.
#pragma once

#include <string>
#include <string_view>

namespace couchrepd {

enum class LogFormat { kText, kJson };

// Installs the redacting formatter on spdlog's default logger (stderr).
// `level` is trace|debug|info|warn|error. Safe to call again (SIGHUP reload).
void InitLogging(std::string_view level, LogFormat format);
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

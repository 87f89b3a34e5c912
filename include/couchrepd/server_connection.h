// The CouchClient for the watched server, built from the configuration.
//
// Translates Config::server (URL, credentials, TLS, headers, timeouts) and
// Config::retry into an Endpoint and HttpOptions, and registers every secret
// with the log scrubber before anything can be logged.
#pragma once

#include "couchrepd/config.h"
#include "couchrepd/couch_client.h"

namespace couchrepd {

HttpOptions HttpOptionsFromConfig(const Config& config);
Result<Endpoint> ServerEndpointFromConfig(const Config& config);
// Registers the config's secrets with the log scrubber (idempotent).
void RegisterConfigSecrets(const Config& config);
// Sets logging up as config.log says (level, format, output); when the
// journal was asked for but none answers, logs to stderr and warns.
void InitLoggingFromConfig(const Config& config);

}  // namespace couchrepd

// Turning a parsed replication spec into something a job can run: the
// replication id needs the server's uuid and, for a user filter, the filter's
// source code from the source database's design document (fetched here, so
// this does I/O; failures to fetch are temporary, SPEC §2.4 level 3).
#pragma once

#include <string>

#include "couchrepd/couch_client.h"
#include "couchrepd/endpoint_tls.h"
#include "couchrepd/replication_id.h"
#include "couchrepd/replication_spec.h"

namespace couchrepd {

// Fetches `filters.<name>` of the source's design document. `http` are the
// watched server's options; the source gets the TLS settings of `tls`
// (SPEC §4.4: a URL source is always verified).
Result<std::string> FetchUserFilterSource(const ReplicationSpec& spec, const HttpOptions& http,
                                          const EndpointTlsPolicy& tls);

// The replication id of `spec` (local endpoints already resolved).
Result<ReplicationId> ComputeIdFor(const ReplicationSpec& spec, const std::string& server_uuid,
                                   const HttpOptions& http, const EndpointTlsPolicy& tls);

// The same with the policy taken from `http`: its TLS settings for local
// endpoints, verification against the system store for URL endpoints.
Result<std::string> FetchUserFilterSource(const ReplicationSpec& spec, const HttpOptions& http);
Result<ReplicationId> ComputeIdFor(const ReplicationSpec& spec, const std::string& server_uuid,
                                   const HttpOptions& http);

}  // namespace couchrepd

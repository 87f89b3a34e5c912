// Which TLS settings an endpoint of a replication gets (SPEC §4.4).
//
// `server.tls_verify` and `server.ca_file` are for the watched server: the
// feeds, the write-back and the documents' local endpoints (bare database
// names, which are on that server). An endpoint named by URL in a document
// (anyone who can write a document chooses it) is always verified, against
// the system trust store plus `replication.ca_file` when set, and never
// inherits a weaker setting from `server`.
//
// Pure and thread-safe.
#pragma once

#include <string>

#include "couchrepd/config.h"
#include "couchrepd/couch_client.h"
#include "couchrepd/replication_spec.h"

namespace couchrepd {

struct TlsSettings {
  bool verify = true;
  std::string ca_file;  // empty: the system trust store
  bool operator==(const TlsSettings&) const = default;
};

struct EndpointTlsPolicy {
  TlsSettings server;     // the watched server and local endpoints
  TlsSettings documents;  // endpoints named by URL in documents: verify is always on

  static EndpointTlsPolicy From(const Config& config);
};

// The TLS settings of one endpoint of a replication.
TlsSettings TlsFor(const EndpointSpec& endpoint, const EndpointTlsPolicy& policy);

// `base` (a job's options) with the TLS settings of `endpoint`.
HttpOptions WithEndpointTls(HttpOptions base, const EndpointSpec& endpoint,
                            const EndpointTlsPolicy& policy);

}  // namespace couchrepd

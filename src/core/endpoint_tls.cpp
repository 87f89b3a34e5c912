// TLS settings per replication endpoint (SPEC §4.4).
#include "couchrepd/endpoint_tls.h"

namespace couchrepd {

EndpointTlsPolicy EndpointTlsPolicy::From(const Config& config) {
  EndpointTlsPolicy p;
  p.server.verify = config.server.tls_verify;
  p.server.ca_file = config.server.ca_file;
  p.documents.verify = true;
  p.documents.ca_file = config.replication.ca_file;
  return p;
}

TlsSettings TlsFor(const EndpointSpec& endpoint, const EndpointTlsPolicy& policy) {
  if (endpoint.local) return policy.server;
  TlsSettings tls = policy.documents;
  tls.verify = true;  // whatever the policy holds: a document never turns it off
  return tls;
}

HttpOptions WithEndpointTls(HttpOptions base, const EndpointSpec& endpoint,
                            const EndpointTlsPolicy& policy) {
  TlsSettings tls = TlsFor(endpoint, policy);
  base.tls_verify = tls.verify;
  base.ca_file = tls.ca_file;
  return base;
}

}  // namespace couchrepd

#include "couchrepd/replication_setup.h"

#include <simdjson.h>

namespace couchrepd {

namespace {

EndpointTlsPolicy PolicyOf(const HttpOptions& http) {
  EndpointTlsPolicy p;
  p.server.verify = http.tls_verify;
  p.server.ca_file = http.ca_file;
  return p;
}

}  // namespace

Result<std::string> FetchUserFilterSource(const ReplicationSpec& spec, const HttpOptions& http) {
  return FetchUserFilterSource(spec, http, PolicyOf(http));
}

Result<ReplicationId> ComputeIdFor(const ReplicationSpec& spec, const std::string& server_uuid,
                                   const HttpOptions& http) {
  return ComputeIdFor(spec, server_uuid, http, PolicyOf(http));
}

Result<std::string> FetchUserFilterSource(const ReplicationSpec& spec, const HttpOptions& http,
                                          const EndpointTlsPolicy& tls) {
  auto where = UserFilterLocation(spec);
  if (!where) return std::string();
  CouchClient source(spec.source.endpoint, WithEndpointTls(http, spec.source, tls));
  auto ddoc = source.GetDoc(where->first);
  if (!ddoc.ok()) {
    Error e = ddoc.error();
    if (e.http_status == 404) {
      return Error::Temporary("filter_not_found", "the filter `" + spec.filter + "` needs " +
                                                      where->first + " on the source, which is missing",
                              404);
    }
    e.kind = ErrorKind::kTemporary;
    e.reason = "could not fetch the filter `" + spec.filter + "` from the source: " + e.reason;
    return e;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view code;
  if (parser.parse(*ddoc).get(doc) != simdjson::SUCCESS ||
      doc["filters"][where->second].get(code) != simdjson::SUCCESS) {
    return Error::Temporary("filter_not_found", "the source's " + where->first +
                                                    " has no filter function `" + where->second + "`");
  }
  return std::string(code);
}

Result<ReplicationId> ComputeIdFor(const ReplicationSpec& spec, const std::string& server_uuid,
                                   const HttpOptions& http, const EndpointTlsPolicy& tls) {
  std::string filter_source;
  if (spec.filter_kind == ReplicationSpec::FilterKind::kUser) {
    auto code = FetchUserFilterSource(spec, http, tls);
    if (!code.ok()) return code.error();
    filter_source = *code;
  }
  return ComputeReplicationId(IdInputsFor(spec, server_uuid, filter_source));
}

}  // namespace couchrepd

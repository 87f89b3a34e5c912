#include "couchrepd/replication_setup.h"

#include <simdjson.h>

namespace couchrepd {

Result<std::string> FetchUserFilterSource(const ReplicationSpec& spec, const HttpOptions& http) {
  auto where = UserFilterLocation(spec);
  if (!where) return std::string();
  CouchClient source(spec.source.endpoint, http);
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
                                   const HttpOptions& http) {
  std::string filter_source;
  if (spec.filter_kind == ReplicationSpec::FilterKind::kUser) {
    auto code = FetchUserFilterSource(spec, http);
    if (!code.ok()) return code.error();
    filter_source = *code;
  }
  return ComputeReplicationId(IdInputsFor(spec, server_uuid, filter_source));
}

}  // namespace couchrepd

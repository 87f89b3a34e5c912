// How a document's local endpoints (bare database names) reach the watched
// server (SPEC §1.3): with the server's credentials, with proxy
// authentication as the document's `user_ctx`, or anonymously.
//
// The server's credentials are safe to lend only because the validation
// function (SPEC §1.4, replicator_ddoc.h) lets nobody but an admin write a
// document without `user_ctx` or with `_admin` in `user_ctx.roles`. While a
// replicator database's validation function is not in place (it could not be
// installed, or someone changed or deleted it) anyone allowed to write there
// could claim either, so no document of that database gets them.
//
// Pure and thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "couchrepd/config.h"
#include "couchrepd/endpoint.h"
#include "couchrepd/replication_spec.h"

namespace couchrepd {

// Whether a replicator database's `_design/_replicator` holds our validation
// function, and why not (for the log and the status API).
struct ValidationState {
  bool in_place = false;
  std::string reason;  // empty when in place, e.g. "_design/_replicator was changed by someone"
  bool operator==(const ValidationState&) const = default;
};

enum class LocalAccess {
  kServerCredentials,  // the server's credentials and headers
  kProxyAuth,          // proxy authentication as user_ctx.name with user_ctx.roles
  kAnonymous,          // no credentials, no server headers
};

std::string_view Name(LocalAccess access);

// The decision of SPEC §1.3:
//   - the server's credentials only when the validation function is in place
//     and the document has no `user_ctx` or `_admin` in `user_ctx.roles`;
//   - otherwise proxy authentication when it is enabled and `user_ctx.name`
//     is set;
//   - otherwise anonymous.
LocalAccess DecideLocalAccess(const UserCtx& ctx, bool validation_in_place, bool proxy_enabled);

// Resolves the local endpoints of `spec` to endpoints on `server` (URL root,
// its credentials and headers, as from ServerEndpointFromConfig) following
// DecideLocalAccess; like ResolveLocalEndpoints (replication_spec.h), which
// is this with `validation_in_place` true. `proxy` may be null (= off).
// Remote endpoints are returned unchanged.
ReplicationSpec ResolveLocalAccess(ReplicationSpec spec, const Endpoint& server,
                                   const Config::ProxyAuth* proxy, bool validation_in_place);

}  // namespace couchrepd

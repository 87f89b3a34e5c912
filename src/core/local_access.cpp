// Which credentials a document's local endpoints get (SPEC §1.3).
#include "couchrepd/local_access.h"

#include "couchrepd/url.h"

namespace couchrepd {

std::string_view Name(LocalAccess access) {
  switch (access) {
    case LocalAccess::kServerCredentials:
      return "server credentials";
    case LocalAccess::kProxyAuth:
      return "proxy authentication";
    case LocalAccess::kAnonymous:
      return "anonymous";
  }
  return "anonymous";
}

LocalAccess DecideLocalAccess(const UserCtx& ctx, bool validation_in_place, bool proxy_enabled) {
  if (validation_in_place && (!ctx.present || ctx.HasRole("_admin"))) {
    return LocalAccess::kServerCredentials;
  }
  if (proxy_enabled && ctx.present && ctx.name && !ctx.name->empty()) {
    return LocalAccess::kProxyAuth;
  }
  return LocalAccess::kAnonymous;
}

ReplicationSpec ResolveLocalAccess(ReplicationSpec spec, const Endpoint& server,
                                   const Config::ProxyAuth* proxy, bool validation_in_place) {
  const UserCtx& ctx = spec.user_ctx;
  bool proxy_enabled = proxy != nullptr && proxy->enabled;
  LocalAccess access = DecideLocalAccess(ctx, validation_in_place, proxy_enabled);
  for (EndpointSpec* e : {&spec.source, &spec.target}) {
    if (!e->local) continue;
    Endpoint resolved;
    resolved.url = server.url.WithTrailingSlash();
    resolved.url.user.reset();
    resolved.url.password.reset();
    resolved.url.query.clear();
    resolved.url.path += EncodeDbName(e->local_db) + "/";
    switch (access) {
      case LocalAccess::kServerCredentials:
        resolved.headers = server.headers;
        resolved.credentials = server.credentials;
        break;
      case LocalAccess::kProxyAuth:
        // Not the server's headers: they may carry an admin token.
        resolved.credentials.kind = Credentials::Kind::kProxy;
        resolved.credentials.proxy.name = *ctx.name;
        resolved.credentials.proxy.roles = ctx.roles;
        resolved.credentials.proxy.secret = proxy->secret;
        resolved.credentials.proxy.username_header = proxy->username_header;
        resolved.credentials.proxy.roles_header = proxy->roles_header;
        resolved.credentials.proxy.token_header = proxy->token_header;
        break;
      case LocalAccess::kAnonymous:
        break;
    }
    e->endpoint = std::move(resolved);
  }
  return spec;
}

}  // namespace couchrepd

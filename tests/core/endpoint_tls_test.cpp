// Tests for the TLS settings of replication endpoints (SPEC §4.4): the
// server's settings for local endpoints only, verification always on for
// endpoints named by URL in documents.
#include "couchrepd/endpoint_tls.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "core/spec_fixture.h"

using namespace couchrepd::testing;

namespace couchrepd {
namespace {

}  // namespace

TEST_CASE("endpoint tls: the server's settings never reach endpoints named in documents") {
  Config config;
  config.server.tls_verify = false;
  config.server.ca_file = "/etc/couchrepd/server-ca.pem";
  EndpointTlsPolicy policy = EndpointTlsPolicy::From(config);
  CHECK(policy.server == TlsSettings{false, "/etc/couchrepd/server-ca.pem"});
  CHECK(policy.documents == TlsSettings{true, ""});

  ReplicationSpec spec = ParseSpec(R"({"source":"local-db","target":"https://b.example/t"})");
  HttpOptions base;
  base.tls_verify = false;  // as HttpOptionsFromConfig gives for this config
  base.ca_file = config.server.ca_file;
  base.max_connections = 7;

  HttpOptions source = WithEndpointTls(base, spec.source, policy);
  CHECK_FALSE(source.tls_verify);
  CHECK(source.ca_file == "/etc/couchrepd/server-ca.pem");
  CHECK(source.max_connections == 7);

  HttpOptions target = WithEndpointTls(base, spec.target, policy);
  CHECK(target.tls_verify);
  CHECK(target.ca_file.empty());  // the system trust store
  CHECK(target.max_connections == 7);

  SUBCASE("replication.ca_file is for document endpoints") {
    config.replication.ca_file = "/etc/couchrepd/partners.pem";
    config.server.tls_verify = true;
    config.server.ca_file.clear();
    policy = EndpointTlsPolicy::From(config);
    CHECK(WithEndpointTls(base, spec.target, policy).ca_file == "/etc/couchrepd/partners.pem");
    CHECK(WithEndpointTls(base, spec.target, policy).tls_verify);
    CHECK(WithEndpointTls(base, spec.source, policy).ca_file.empty());
    CHECK(WithEndpointTls(base, spec.source, policy).tls_verify);
  }

  SUBCASE("a policy that says otherwise cannot turn verification off for them") {
    policy.documents.verify = false;
    CHECK(TlsFor(spec.target, policy).verify);
  }

  SUBCASE("a URL naming the watched server is still a document's URL") {
    ReplicationSpec same = ParseSpec(R"({"source":"http://127.0.0.1:5984/db","target":"x"})");
    CHECK(WithEndpointTls(base, same.source, policy).tls_verify);
    CHECK(WithEndpointTls(base, same.source, policy).ca_file.empty());
  }
}

}  // namespace couchrepd

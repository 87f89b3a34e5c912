// Fuzzes ParseReplicationDoc and what follows it (local endpoints, replication id, fingerprint); no credential leaks.
#include <string>
#include <string_view>

#include "couchrepd/encoding.h"
#include "couchrepd/replication_id.h"
#include "couchrepd/replication_spec.h"
#include "fuzz/fuzz_util.h"

namespace couchrepd::fuzz {
namespace {

constexpr std::string_view kUrlPassword = "UrlPwPlanted41";
constexpr std::string_view kAuthPassword = "AuthPwPlanted42";
constexpr std::string_view kHeaderPassword = "HdrPwPlanted43";

// A document with credentials in all three places; the fuzz input adds
// members (or breaks the document) after them.
std::string PlantedDoc(std::string_view members) {
  std::string basic = Base64Encode("carol:" + std::string(kHeaderPassword));
  return "{\"source\":{\"url\":\"http://bob:" + std::string(kUrlPassword) +
         "@src.example:5984/a\",\"headers\":{\"Authorization\":\"Basic " + basic +
         "\"}},\"target\":{\"url\":\"https://tgt.example/b\",\"auth\":{\"basic\":{\"username\":"
         "\"u\",\"password\":\"" + std::string(kAuthPassword) + "\"}}}" + std::string(members) + "}";
}

// `added` is the fuzz part of the document: a secret it spells itself is not
// a credential of the document's.
void CheckNoSecret(std::string_view text, std::string_view added, std::string_view where) {
  std::string basic = Base64Encode("carol:" + std::string(kHeaderPassword));
  for (std::string_view secret : {kUrlPassword, kAuthPassword, kHeaderPassword, std::string_view(basic)}) {
    if (Contains(added, secret)) continue;
    FUZZ_CHECK(!Contains(text, secret), std::string(where) + " shows a credential: " + std::string(text));
  }
}

}  // namespace
}  // namespace couchrepd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace couchrepd;
  using namespace couchrepd::fuzz;
  Input in(data, size);
  uint8_t options = in.Byte();
  bool planted = options & 1;
  std::string_view added = in.Rest();
  std::string doc = planted ? PlantedDoc(added) : std::string(added);

  ReplicationDefaults defaults;
  auto spec = ParseReplicationDoc(doc, defaults);
  if (!spec.ok()) {
    FUZZ_CHECK(spec.error().error == "bad_doc" && !spec.error().temporary(),
               "a document error that is not a permanent bad_doc: " + spec.error().Message());
    FUZZ_CHECK(!spec.error().reason.empty(), "a document error without a reason");
    if (planted) CheckNoSecret(spec.error().reason, added, "the error");
    return 0;
  }
  if (planted) {
    CheckNoSecret(spec->source.Display(), added, "source Display()");
    CheckNoSecret(spec->target.Display(), added, "target Display()");
    for (const auto& w : spec->warnings) CheckNoSecret(w, added, "a warning");
    CheckNoSecret(Fingerprint(*spec), added, "the fingerprint");
  }
  // Parsing is a function of the document.
  auto again = ParseReplicationDoc(doc, defaults);
  FUZZ_CHECK(again.ok() && Fingerprint(*again) == Fingerprint(*spec), "parsing is not deterministic");

  Endpoint server;
  server.url = *ParseUrl("http://127.0.0.1:5984/");
  server.credentials.kind = Credentials::Kind::kBasic;
  server.credentials.username = "admin";
  server.credentials.password = "serverpw";
  Config::ProxyAuth proxy;
  proxy.enabled = options & 2;
  proxy.secret = "proxysecret";
  ReplicationSpec resolved = ResolveLocalEndpoints(*spec, server, &proxy);
  for (const EndpointSpec* e : {&resolved.source, &resolved.target}) {
    FUZZ_CHECK(!e->endpoint.url.scheme.empty(), "an endpoint left unresolved");
    if (e->local && e->endpoint.credentials.kind == Credentials::Kind::kBasic) {
      // Server credentials only without user_ctx or with _admin (SPEC 1.3).
      FUZZ_CHECK(!resolved.user_ctx.present || resolved.user_ctx.HasRole("_admin"),
                 "server credentials given to a non-admin user_ctx");
    }
  }
  (void)MayWriteDesignDocs(resolved);
  std::string filter_source = UserFilterLocation(resolved) ? "function(doc, req) { return true; }" : "";
  auto id = ComputeReplicationId(IdInputsFor(resolved, "0123456789abcdef0123456789abcdef", filter_source));
  if (id.ok()) {
    FUZZ_CHECK(id->base.size() == 32, "a replication id base that is not 32 hex digits");
    FUZZ_CHECK(id->full.rfind(id->base, 0) == 0, "the full id does not start with the base");
  }
  return 0;
}

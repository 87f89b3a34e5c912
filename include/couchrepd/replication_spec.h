// The replication spec: one replication, parsed, validated and normalised.
//
// A replication is written as a JSON object with CouchDB's replication
// document fields (SPEC §1.1): a document in a replicator database, or one
// that `couchrepd replicate` builds from its flags (replicate_args.h). Both go
// through ParseReplicationDoc, which checks every field and produces a
// ReplicationSpec: endpoints with their credentials normalised into one pair,
// the filter classified, every option filled in from the configured defaults.
// A document that cannot become a job gives a permanent error, code
// "bad_doc", whose reason names the field and the problem in plain words and
// never contains a credential (SPEC §1.2, §8).
//
// After parsing: ResolveLocalEndpoints turns bare database names into URLs on
// the server with the identity SPEC §1.3 allows, IdInputsFor gives the inputs
// of the CouchDB-compatible replication id (replication_id.h), and
// Fingerprint tells whether an updated document changes the replication.
//
// Everything here is pure (no I/O, no clock) and thread-compatible; specs are
// plain values. A spec holds credentials: never log it, show endpoints with
// EndpointSpec::Display().
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "couchrepd/config.h"
#include "couchrepd/endpoint.h"
#include "couchrepd/replication_id.h"
#include "couchrepd/result.h"

namespace couchrepd {

// Upper bounds of the numeric options. CouchDB has none, but a document may
// be hostile: a million workers or connections would take the process down.
inline constexpr int kMaxWorkerProcesses = 128;
inline constexpr int kMaxWorkerBatchSize = 100000;
inline constexpr int kMaxHttpConnections = 1024;
inline constexpr int kMaxRetriesPerRequest = 1000;
inline constexpr std::chrono::milliseconds kMaxIntervalOption = std::chrono::hours(24);
// Bounds on what a document makes couchrepd send with every request (SPEC
// §10): an endpoint's `headers` (count, and bytes of one name plus value),
// the length of an endpoint URL, and `user_ctx.roles` (sent in a proxy
// authentication header).
inline constexpr size_t kMaxEndpointHeaders = 100;
inline constexpr size_t kMaxHeaderBytes = 8192;
inline constexpr size_t kMaxUrlBytes = 8192;
inline constexpr size_t kMaxUserCtxRoles = 100;

// The document's `user_ctx`: whom a local endpoint is accessed as (SPEC §1.3).
struct UserCtx {
  bool present = false;             // the document has a `user_ctx` object
  std::optional<std::string> name;  // null/absent -> nullopt
  std::vector<std::string> roles;   // none of them empty or holding ',' or control characters

  bool HasRole(std::string_view role) const;
};

// One side of the replication.
struct EndpointSpec {
  // A bare database name ("bar"): a database on the server (SPEC §1.3).
  // `endpoint` stays empty until ResolveLocalEndpoints fills it in.
  bool local = false;
  std::string local_db;  // the name as written (not URL-encoded) when local

  // Remote (or resolved local) endpoint: `url` has a trailing '/' and no
  // userinfo; `headers` are the document's headers minus any
  // `Authorization: Basic`; `credentials` hold the one basic credential pair.
  // The document may give that pair three ways; the first present wins, as
  // in CouchDB (couch_replicator_utils:normalize_basic_auth):
  //   1. `auth.basic.{username,password}`
  //   2. the URL's userinfo, percent-decoded (no ':' -> empty password)
  //   3. an `Authorization: Basic base64(user:password)` header
  // Losers are dropped with a warning; an undecodable Basic header is
  // dropped with a warning too (CouchDB ignores it the same way).
  Endpoint endpoint;

  // The `headers` object as written, Basic Authorization included, in
  // document order: what the replication id is computed from (IdEndpoint).
  std::vector<std::pair<std::string, std::string>> headers_as_written;

  // For people: the URL without password ("http://bob:*****@h/db/" when
  // there are basic credentials), or just the name of a local database.
  std::string Display() const;
};

struct ReplicationSpec {
  enum class FilterKind {
    kNone,
    kDocIds,    // `doc_ids`
    kBuiltin,   // `filter` "_view", "_design", "_doc_ids" or "_selector"
    kUser,      // `filter` "ddoc/name": a function in the source's _design/ddoc
    kSelector,  // `selector`
  };

  EndpointSpec source;
  EndpointSpec target;
  bool continuous = false;
  bool create_target = false;
  // Query parameters of the target's PUT, in document order; strings as
  // they are, any other value as its JSON text ({"q":1} -> q=1).
  QueryParams create_target_params;

  FilterKind filter_kind = FilterKind::kNone;
  std::vector<std::string> doc_ids;  // as written (not percent-decoded), in document order
  std::string filter;                // kBuiltin / kUser: as written
  // `query_params` as compact JSON text, keys in document order and numbers
  // as written ("{}" when absent): the replication id needs it verbatim.
  std::string query_params_json = "{}";
  // The same as parameters of the _changes request (string values as they
  // are, any other value as its compact JSON text).
  QueryParams query_params;
  std::string selector_json;                  // kSelector: compact JSON text, as written
  std::optional<std::string> since_seq_json;  // compact JSON text; null counts as absent

  bool winning_revs_only = false;
  bool use_checkpoints = Config::Replication{}.use_checkpoints;
  std::chrono::milliseconds checkpoint_interval = Config::Replication{}.checkpoint_interval;
  int worker_processes = Config::Replication{}.worker_processes;
  int worker_batch_size = Config::Replication{}.worker_batch_size;
  int http_connections = Config::Replication{}.http_connections;
  int retries_per_request = Config::Replication{}.retries_per_request;
  std::chrono::milliseconds connection_timeout = Config::Replication{}.connection_timeout;
  bool use_bulk_get = Config::Replication{}.use_bulk_get;
  bool socket_keepalive = true;  // socket_options {keepalive, Bool}
  // socket_options {nodelay, Bool}. Default on, unlike CouchDB: our HTTP
  // client writes a request's headers and body in two writes, and with Nagle
  // on, the server's delayed ACK then stalls every POST by ~40 ms.
  bool socket_nodelay = true;
  UserCtx user_ctx;

  // Things the document asked for that are ignored, in plain words and
  // without credentials, e.g. "`socket_options`: `recbuf` is ignored ...".
  std::vector<std::string> warnings;
};

// Values of the options a document does not set.
struct ReplicationDefaults {
  // worker_processes, worker_batch_size, http_connections,
  // connection_timeout, retries_per_request, checkpoint_interval,
  // use_bulk_get and use_checkpoints are taken from here.
  Config::Replication replication;
  static ReplicationDefaults From(const Config& config);
};

// Parses a replication document (or any JSON object with the same fields;
// unknown fields are ignored — the caller keeps the document untouched).
//
// Types are strict: booleans must be JSON booleans, integer options are
// integers or integer strings ("500") within bounds, `checkpoint_interval`
// and `connection_timeout` in milliseconds. `null` counts as absent for
// `doc_ids`, `filter`, `selector`, `query_params`, `create_target_params`,
// `since_seq`, `socket_options` and an endpoint's `headers`/`auth`, but not
// for a boolean, an integer or `user_ctx` (a null `user_ctx` would otherwise
// grant the server's credentials; SPEC §1.3). Endpoint `auth` supports only
// `basic`; any other method is an error rather than a silent anonymous
// request. A URL endpoint must not have a query string. `selector` must be a
// valid Mango selector.
//
// Errors are permanent, code "bad_doc", e.g. "`continuous` must be a
// boolean", "`source` is missing", "`doc_ids`, `filter` and `selector` are
// mutually exclusive", "`source`: unsupported scheme `ftp` (only http and
// https)". Any input is safe: invalid JSON or UTF-8 and documents nested too
// deeply give "the document is not valid JSON: ...", naming the top-level
// field that holds the problem ("`selector` is nested more than 1024 levels
// deep"). Endpoint headers, URLs and roles beyond the bounds above are
// refused with the bound in the reason.
Result<ReplicationSpec> ParseReplicationDoc(std::string_view doc_json,
                                            const ReplicationDefaults& defaults);

// Turns local endpoints into endpoints on `server` (URL root with a trailing
// '/', its headers and credentials, as from ServerEndpointFromConfig):
//   - no `user_ctx`, or `_admin` in its roles: the server's URL, headers and
//     credentials;
//   - otherwise, with `proxy` enabled and a `user_ctx.name`: proxy
//     authentication as that name with those roles (Credentials::kProxy);
//     the server's extra headers are NOT sent, as they may carry an admin
//     token;
//   - otherwise: anonymous, also without the server's headers.
// `proxy` may be null (= off). Remote endpoints are returned unchanged.
ReplicationSpec ResolveLocalEndpoints(ReplicationSpec spec, const Endpoint& server,
                                      const Config::ProxyAuth* proxy);

// Whether design documents may be written to the target (SPEC §1.3): not to
// a local target of a document without `user_ctx`; yes with `_admin` in its
// roles; with another `user_ctx` the target's own security decides (yes);
// remote targets: yes (their credentials decide).
bool MayWriteDesignDocs(const ReplicationSpec& spec);

// The replication id inputs (precondition: ResolveLocalEndpoints was applied).
// The endpoint user is the basic (or cookie) user name, the proxy name for a
// proxy-authenticated local endpoint, or none. `user_filter_source` is the
// filter function's source when filter_kind == kUser (the caller fetches it
// from UserFilterLocation on the source); ignored otherwise.
IdInputs IdInputsFor(const ReplicationSpec& spec, const std::string& server_uuid,
                     const std::string& user_filter_source);

// For a kUser filter "ddoc/name": {"_design/ddoc", "name"} (the name is
// everything after the first '/'); nullopt for other filter kinds.
std::optional<std::pair<std::string, std::string>> UserFilterLocation(const ReplicationSpec& spec);

// A digest (32 hex digits) of everything that defines the replication,
// credentials and options included, so that a document update that changes
// none of it can be ignored (SPEC §2.3) while no secret is kept in the clear.
// Orders that carry no meaning are canonicalised (top-level fields, header
// order, doc_ids order and duplicates, selector via its normal form,
// user_ctx roles, create_target_params); `query_params` key order is kept
// because it enters the replication id. Warnings are not part of it.
std::string Fingerprint(const ReplicationSpec& spec);

}  // namespace couchrepd

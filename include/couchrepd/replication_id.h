// The replication id, computed exactly as CouchDB 3.x does (version 4).
//
// A replication is identified by the MD5 of an Erlang term built from the
// server's uuid, the two endpoints (without passwords), the filter and a few
// options. couchrepd must produce the same id as CouchDB's own replicator so
// that each finds and reuses the other's `_local/<base>` checkpoints. The
// term, in the order CouchDB builds it (couch_replicator_ids.erl):
//
//   [ServerUUID, Src, Tgt | FilterPart] ++ [<<"winning_revs_only">>] ++ [SinceSeq]
//
// Src/Tgt = {remote, User, Host, Port, Path, Headers, undefined}, FilterPart
// per IdFilter below, the last two only when set. base = lowercase hex MD5 of
// term_to_binary(Term, [{minor_version, 1}]); full = base + "+continuous"
// (if continuous) + "+create_target" (if create_target).
//
// Pure functions: no I/O. The caller fetches the server uuid (`GET /` ->
// "uuid") and, for a user filter, the filter function source from the
// source's design document.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "couchrepd/result.h"

namespace couchrepd {

// What of an endpoint enters the id. Fill it from the *normalised* endpoint
// (CouchDB couch_replicator_docs:parse_rep_db + normalize_basic_auth).
struct IdEndpoint {
  // Basic-auth user name after credential normalisation: auth.basic.username,
  // else the URL userinfo (percent-decoded), else the user of an
  // `Authorization: Basic` header. nullopt if none. Encoded as a char list, or
  // the atom `undefined` when nullopt. The password never enters the id.
  std::optional<std::string> user;
  std::string scheme;  // "http" | "https"
  std::string host;    // as written in the URL, case kept, IPv6 without brackets
  int port = 0;        // explicit, or the scheme default (80/443)
  // Everything after the authority, query string included, no percent
  // decoding; CouchDB appends '/' to the URL unless it already ends with one
  // or contains '?' (so "http://h/db" -> "/db/", "http://h" -> "/").
  std::string path;
  // The endpoint's `headers` object as written in the document, in document
  // order. ComputeReplicationId applies CouchDB's header processing itself
  // (sorting, default-header and Basic Authorization removal).
  std::vector<std::pair<std::string, std::string>> headers;
};

struct IdFilter {
  enum Kind { kNone, kDocIds, kBuiltin, kUser, kSelector } kind = kNone;
  // kDocIds: as written in the document. CouchDB percent-decodes each id
  // ('+' becomes a space, couch_httpd:unquote), then sorts and de-duplicates;
  // ComputeReplicationId does all three (see UnquoteDocId).
  std::vector<std::string> doc_ids;
  // kBuiltin: the filter name as written, e.g. "_view".
  std::string name;
  // kUser: the function source, `filters.<name>` of `_design/<ddoc>` fetched
  // from the source database, untrimmed (see TrimFilterSource).
  std::string user_filter_source;
  // kBuiltin / kUser: the `query_params` object as raw JSON, in its original
  // key order (CouchDB does not sort it). Must be a JSON object.
  std::string query_params_json = "{}";
  // kSelector: the `selector` as raw JSON; normalised here (NormaliseSelector).
  std::string selector_json;
};

struct IdInputs {
  std::string server_uuid;  // `uuid` of GET / on the server
  IdEndpoint source;
  IdEndpoint target;
  IdFilter filter;
  bool winning_revs_only = false;
  // `since_seq` as raw JSON when the document has one (CouchDB >= 3.5.2 adds
  // it to the id as its EJSON value).
  std::optional<std::string> since_seq_json;
  bool continuous = false;
  bool create_target = false;
};

struct ReplicationId {
  std::string base;  // 32 lowercase hex digits; the checkpoint doc is _local/<base>
  std::string full;  // base + "+continuous" + "+create_target" as applicable
};

// Errors (kPermanent, error "bad_request") when query_params, the selector
// or since_seq is not valid JSON of the expected shape, or the selector is
// not one Mango accepts.
Result<ReplicationId> ComputeReplicationId(const IdInputs& in);

// Mango selector normalisation as CouchDB does it for the id
// (couch_replicator_filters:parse = ejsort(mango_selector:normalize(S))):
// operators validated, implicit $eq and $and made explicit, nested fields
// flattened into dotted keys, negations pushed down, then every object's
// keys sorted by bytes (stable) while array order is kept. Returns the
// normalised selector as compact JSON text. Example:
//   {"type":"foo"}          -> {"type":{"$eq":"foo"}}
//   {"a":{"b":1},"c":2}     -> {"$and":[{"a.b":{"$eq":1}},{"c":{"$eq":2}}]}
Result<std::string> NormaliseSelector(std::string_view selector_json);

// couch_replicator_filters:fetch trims the filter source with
// re:replace(Code, "^\s*(.*?)\s*$", "\\1") where, in an Erlang string, "\s" is
// a plain space: only spaces are trimmed, and a source with a line break
// other than one final '\n' does not match and is kept unchanged.
std::string TrimFilterSource(std::string_view source);

// couch_httpd:unquote (mochiweb_util:unquote): "%XX" decoded, '+' -> ' ',
// invalid escapes kept as written.
std::string UnquoteDocId(std::string_view id);

// Lowercase hex MD5 of `data`.
std::string Md5Hex(std::string_view data);

}  // namespace couchrepd

#include "couchrepd/replicator_ddoc.h"

#include <simdjson.h>

#include <vector>

#include "couchrepd/json.h"
#include "couchrepd/json_fields.h"

namespace couchrepd {

namespace {

// ES5 only, no CouchDB-specific helpers (isArray, log): the same text must run
// on SpiderMonkey, QuickJS and PouchDB's evaluator. Messages follow the
// document parser's wording (replication_spec.cpp) where both check the same
// thing, so a user sees one explanation whichever refuses the document.
constexpr std::string_view kValidateFunction = R"JS(function (newDoc, oldDoc, userCtx) {
  var writerRoles = (userCtx && userCtx.roles) || [];
  if (writerRoles.indexOf('_admin') !== -1) {
    return;
  }
  function forbid(reason) {
    throw({forbidden: reason});
  }
  function isArrayValue(v) {
    return Object.prototype.toString.call(v) === '[object Array]';
  }
  function isObjectValue(v) {
    return typeof v === 'object' && v !== null && !isArrayValue(v);
  }
  function present(v) {
    return typeof v !== 'undefined' && v !== null;
  }
  function hasOwn(o, k) {
    return Object.prototype.hasOwnProperty.call(o, k);
  }
  function sameValue(a, b) {
    var k;
    if (a === b) {
      return true;
    }
    if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null ||
        isArrayValue(a) !== isArrayValue(b)) {
      return false;
    }
    for (k in a) {
      if (hasOwn(a, k) && (!hasOwn(b, k) || !sameValue(a[k], b[k]))) {
        return false;
      }
    }
    for (k in b) {
      if (hasOwn(b, k) && !hasOwn(a, k)) {
        return false;
      }
    }
    return true;
  }
  // Equal apart from `_`-prefixed members (`_rev`, `_revisions`,
  // `_attachments`, the `_replication_*` fields...).
  function sameContent(a, b) {
    var k;
    for (k in a) {
      if (hasOwn(a, k) && k.charAt(0) !== '_' && (!hasOwn(b, k) || !sameValue(a[k], b[k]))) {
        return false;
      }
    }
    for (k in b) {
      if (hasOwn(b, k) && k.charAt(0) !== '_' && !hasOwn(a, k)) {
        return false;
      }
    }
    return true;
  }
  function integerOf(v) {
    if (typeof v === 'number') {
      return (isFinite(v) && Math.floor(v) === v) ? v : null;
    }
    if (typeof v === 'string' && /^-?[0-9]+$/.test(v)) {
      return parseInt(v, 10);
    }
    return null;
  }
  function quoted(name) {
    return '`' + name + '`';
  }

  if (!userCtx || typeof userCtx.name !== 'string' || userCtx.name.length === 0) {
    throw({unauthorized: 'Log in to create, change or delete replication documents.'});
  }
  var stored = (oldDoc && !oldDoc._deleted) ? oldDoc : null;
  var i, key;

  // The replicator (couchrepd) writes states into existing documents: a write
  // of its that changes nothing else is allowed whoever owns the document and
  // whatever it holds. Every other write of its is checked like anyone's.
  if (writerRoles.indexOf('_replicator') !== -1 && stored && !newDoc._deleted &&
      sameContent(newDoc, stored)) {
    return;
  }

  if (stored && !newDoc._deleted && stored._replication_state === 'triggered') {
    forbid('Only the replicator can edit replication documents that are in the triggered state.');
  }
  if (stored) {
    var owner = isObjectValue(stored.user_ctx) ? stored.user_ctx.name : null;
    if (owner !== userCtx.name) {
      forbid('Only an admin or the user named in the stored `user_ctx.name` can ' +
             (newDoc._deleted ? 'delete' : 'change') + ' this replication document.');
    }
  }
  if (newDoc._deleted) {
    return;
  }

  for (key in newDoc) {
    if (hasOwn(newDoc, key) && key.indexOf('_replication_') === 0 &&
        !(stored && hasOwn(stored, key) && sameValue(newDoc[key], stored[key]))) {
      forbid('Only the replicator can set or change ' + quoted(key) + '.');
    }
  }

  var endpoints = ['source', 'target'];
  for (i = 0; i < endpoints.length; i++) {
    var name = endpoints[i];
    var ep = newDoc[name];
    if (!present(ep)) {
      forbid(quoted(name) + ' is required');
    }
    if (typeof ep === 'string') {
      if (ep.length === 0) {
        forbid(quoted(name) + ' must not be empty');
      }
      continue;
    }
    if (!isObjectValue(ep)) {
      forbid(quoted(name) + ' must be a URL, a database name or an object with `url`');
    }
    if (typeof ep.url !== 'string' || ep.url.length === 0) {
      forbid(quoted(name + '.url') + ' must be a non-empty string');
    }
    if (present(ep.headers)) {
      if (!isObjectValue(ep.headers)) {
        forbid(quoted(name + '.headers') + ' must be an object');
      }
      for (key in ep.headers) {
        if (hasOwn(ep.headers, key) && typeof ep.headers[key] !== 'string') {
          forbid(quoted(name + '.headers.' + key) + ' must be a string');
        }
      }
    }
    if (present(ep.auth) && !isObjectValue(ep.auth)) {
      forbid(quoted(name + '.auth') + ' must be an object');
    }
  }

  var booleans = ['continuous', 'create_target', 'winning_revs_only', 'use_checkpoints',
                  'use_bulk_get'];
  for (i = 0; i < booleans.length; i++) {
    if (present(newDoc[booleans[i]]) && typeof newDoc[booleans[i]] !== 'boolean') {
      forbid(quoted(booleans[i]) + ' must be a boolean');
    }
  }
  var objects = ['create_target_params', 'query_params', 'selector'];
  for (i = 0; i < objects.length; i++) {
    if (present(newDoc[objects[i]]) && !isObjectValue(newDoc[objects[i]])) {
      forbid(quoted(objects[i]) + ' must be an object');
    }
  }
  var integers = [['worker_processes', 1], ['worker_batch_size', 1], ['http_connections', 1],
                  ['checkpoint_interval', 1], ['connection_timeout', 1],
                  ['retries_per_request', 0]];
  for (i = 0; i < integers.length; i++) {
    var value = newDoc[integers[i][0]];
    if (present(value)) {
      var n = integerOf(value);
      if (n === null || n < integers[i][1]) {
        forbid(quoted(integers[i][0]) + ' must be a ' +
               (integers[i][1] > 0 ? 'positive' : 'non-negative') + ' integer');
      }
    }
  }
  if (present(newDoc.doc_ids)) {
    if (!isArrayValue(newDoc.doc_ids)) {
      forbid('`doc_ids` must be an array of strings');
    }
    for (i = 0; i < newDoc.doc_ids.length; i++) {
      if (typeof newDoc.doc_ids[i] !== 'string') {
        forbid('`doc_ids` must be an array of strings');
      }
    }
  }
  if (present(newDoc.filter) && (typeof newDoc.filter !== 'string' || newDoc.filter.length === 0)) {
    forbid('`filter` must be a non-empty string');
  }
  if ((present(newDoc.doc_ids) ? 1 : 0) + (present(newDoc.filter) ? 1 : 0) +
      (present(newDoc.selector) ? 1 : 0) > 1) {
    forbid('`doc_ids`, `filter` and `selector` are mutually exclusive');
  }
  if (present(newDoc.socket_options) && typeof newDoc.socket_options !== 'string') {
    forbid('`socket_options` must be a string');
  }

  var ctx = newDoc.user_ctx;
  if (!present(ctx)) {
    forbid('`user_ctx` is required: {"name": "<your user name>", "roles": [<roles you have>]}');
  }
  if (!isObjectValue(ctx)) {
    forbid('`user_ctx` must be an object');
  }
  if (ctx.name !== userCtx.name) {
    forbid('`user_ctx.name` must be your own user name');
  }
  if (present(ctx.roles)) {
    if (!isArrayValue(ctx.roles)) {
      forbid('`user_ctx.roles` must be an array of strings');
    }
    for (i = 0; i < ctx.roles.length; i++) {
      if (typeof ctx.roles[i] !== 'string') {
        forbid('`user_ctx.roles` must be an array of strings');
      }
      if (writerRoles.indexOf(ctx.roles[i]) === -1) {
        forbid('`user_ctx.roles`: you do not have the role ' + JSON.stringify(ctx.roles[i]));
      }
    }
  }
})JS";

constexpr std::string_view kLanguage = "javascript";

// Our fields, in the order ReplicatorDesignDocJson writes them after `_id`.
std::vector<JsonField> OwnFields() {
  return {
      {"language", JsonQuote(kLanguage)},
      {std::string(kReplicatorDesignDocVersionField), std::to_string(kReplicatorDesignDocVersion)},
      {"validate_doc_update", JsonQuote(kValidateFunction)},
  };
}

}  // namespace

std::string_view ReplicatorValidateFunction() { return kValidateFunction; }

std::string ReplicatorDesignDocJson() {
  std::vector<JsonField> fields = {{"_id", JsonQuote(kReplicatorDesignDocId)}};
  for (auto& f : OwnFields()) fields.push_back(std::move(f));
  return JoinObject(fields);
}

bool DesignDocNeedsUpdate(std::string_view current_json_or_empty) {
  if (current_json_or_empty.empty()) return true;
  simdjson::dom::parser parser;
  simdjson::dom::object doc;
  if (parser.parse(current_json_or_empty.data(), current_json_or_empty.size()).get(doc)) {
    return true;
  }
  bool deleted = false;
  if (!doc["_deleted"].get(deleted) && deleted) return true;
  std::string_view function;
  if (doc["validate_doc_update"].get(function) || function != kValidateFunction) return true;
  simdjson::dom::element language;
  if (!doc["language"].get(language)) {
    std::string_view text;
    if (language.get(text) || text != kLanguage) return true;
  }
  int64_t version = 0;
  if (doc[kReplicatorDesignDocVersionField].get(version) ||
      version != kReplicatorDesignDocVersion) {
    return true;
  }
  return false;
}

std::string UpdatedReplicatorDesignDoc(std::string_view current_json_or_empty) {
  if (current_json_or_empty.empty()) return ReplicatorDesignDocJson();
  auto split = SplitObject(current_json_or_empty);
  if (!split.ok()) return ReplicatorDesignDocJson();
  std::vector<JsonField> fields = std::move(split.value());
  if (FindField(fields, "_deleted") == "true") return ReplicatorDesignDocJson();
  for (auto& own : OwnFields()) {
    bool replaced = false;
    for (auto& f : fields) {
      if (f.key == own.key) {
        f.raw_value = own.raw_value;
        replaced = true;
      }
    }
    if (!replaced) fields.push_back(std::move(own));
  }
  return JoinObject(fields);
}

}  // namespace couchrepd

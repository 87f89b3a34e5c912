// The `_design/_replicator` design document couchrepd installs in each
// replicator database it owns (SPEC §1.4).
//
// Its `validate_doc_update` lets writers with the `_admin` role do anything.
// A writer with the `_replicator` role (couchrepd may write as one) may change
// the `_replication_*` fields of an existing document and nothing else without
// further checks: a write of its that changes any other member (`_`-prefixed
// members such as `_rev` and `_attachments` aside), creates or deletes a
// document is checked like everyone else's. For everyone else:
//   - anonymous writers are refused (`unauthorized`, HTTP 401);
//   - a document stored with `_replication_state: "triggered"` may not be
//     edited (only deleted): `Only the replicator can edit replication
//     documents that are in the triggered state.`;
//   - a `_replication_*` field may not be set or changed (keeping the stored
//     value, or removing the field, is allowed: removing the state re-runs a
//     completed replication);
//   - the field types of SPEC §1.1, `source`/`target` present, `doc_ids`,
//     `filter` and `selector` mutually exclusive;
//   - `user_ctx` is mandatory, `user_ctx.name` is the writer's name and every
//     entry of `user_ctx.roles` is a role the writer has;
//   - a stored document may be changed or deleted only by the user named in
//     its `user_ctx` (so nobody takes over someone else's replication).
// Refusals are `forbidden` (HTTP 403) with a plain-words reason. Deletions
// are checked only for ownership. The function is plain ES5 so that every
// CouchDB JavaScript engine (SpiderMonkey, QuickJS) and PouchDB run it.
//
// The document carries a version number (kReplicatorDesignDocVersionField);
// bump kReplicatorDesignDocVersion whenever the function changes. Pure and
// thread-safe; the runtime (src/runtime/doc_writer.h) does the I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace couchrepd {

inline constexpr std::string_view kReplicatorDesignDocId = "_design/_replicator";
inline constexpr std::string_view kReplicatorDesignDocVersionField = "couchrepd_ddoc_version";
inline constexpr int64_t kReplicatorDesignDocVersion = 2;

// The JavaScript source of the validate_doc_update function.
std::string_view ReplicatorValidateFunction();

// The full design document, without `_rev`, as compact JSON. Deterministic:
// `_id`, `language`, the version field, `validate_doc_update`, in this order.
std::string ReplicatorDesignDocJson();

// True when the stored design document (its JSON, or empty when there is
// none) must be (re)written: it is missing, deleted or unparsable, or its
// `validate_doc_update`, `language` or version field differ from ours.
// `_rev` and any other field are ignored.
bool DesignDocNeedsUpdate(std::string_view current_json_or_empty);

// The body to PUT to install or update the design document over
// `current_json_or_empty`: the current fields (`_rev` included, so the PUT
// updates that revision; any field someone else added is kept) with ours
// replaced in place and the missing ones appended. An empty, deleted or
// unparsable current document gives ReplicatorDesignDocJson() (no `_rev`: a
// PUT without one re-creates a deleted document).
std::string UpdatedReplicatorDesignDoc(std::string_view current_json_or_empty);

}  // namespace couchrepd

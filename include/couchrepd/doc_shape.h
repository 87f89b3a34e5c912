// DocShape: what the replicator needs to know about a document revision
// without touching its body: id, rev, revision path and attachment stubs.
//
// Used to decide which attachments a target already has (those with revpos
// not newer than the newest possible ancestor on the document's revision
// path) and to rewrite `_attachments` for a streamed multipart upload. Pure.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "couchrepd/json_fields.h"
#include "couchrepd/result.h"

namespace couchrepd {

struct AttachmentMeta {
  std::string name;
  std::string content_type;
  std::string digest;
  std::string encoding;         // "" or e.g. "gzip"
  int64_t length = -1;          // identity length
  int64_t encoded_length = -1;  // when encoding is set
  int64_t revpos = 0;
  bool stub = false;
  bool has_data = false;  // inline base64 `data`
};

struct DocShape {
  std::string id;
  std::string rev;
  bool deleted = false;
  int64_t revisions_start = 0;        // _revisions.start (0 when absent)
  std::vector<std::string> rev_ids;   // _revisions.ids, newest first
  std::vector<AttachmentMeta> attachments;
};

Result<DocShape> ReadDocShape(std::string_view doc_json);

// Whether `rev` is the document's revision or one of its ancestors by
// `_revisions` (an answer to latest=true may be a descendant of what was asked).
bool OnRevisionPath(const DocShape& doc, std::string_view rev);

// The highest generation among `possible_ancestors` that lies on the
// document's revision path (0 when none does).
int64_t KnownAncestorGeneration(const DocShape& doc,
                                const std::vector<std::string>& possible_ancestors);

// Total bytes of attachments newer than `known_generation` (what must be sent).
int64_t BytesToSend(const DocShape& doc, int64_t known_generation);

// Rewrites every entry of `_attachments` with `edit(name, fields)`, which may
// change the entry's fields in place; other fields of the document keep their
// exact bytes.
Result<std::string> RewriteAttachments(
    std::string_view doc_json,
    const std::function<void(const std::string& name, std::vector<JsonField>& fields)>& edit);

// Rewrites `_attachments`: the attachments named in `follows` become
// multipart "follows" entries ({content_type, length, follows, revpos,
// digest, and encoding/encoded_length when encoded}); the others stay as
// they are. Other fields keep their exact bytes.
Result<std::string> WithFollowsAttachments(std::string_view doc_json,
                                           const std::set<std::string>& follows);

}  // namespace couchrepd

// A replication test corpus and a database comparison, for integration tests
// of the replication engine.
//
// BuildCorpus fills a database with every kind of document a replicator must
// carry: plain documents, multi-revision histories, conflicting branches
// (new_edits=false), deletions, deleted conflicts, a design document, ids
// with '/', '+', '%', spaces and non-ASCII, small and multi-megabyte
// attachments, and a revision that keeps an unchanged attachment.
// CompareDatabases checks that the target holds every revision tree of the
// source: for every document (deleted ones too) `open_revs=all&revs=true` on
// both sides must give the same leaves, bodies, revision paths and attachment
// digests.
#pragma once

#include <string>
#include <vector>

#include "couchrepd/couch_client.h"

namespace couchrepd::testing {

struct CorpusOptions {
  int plain_docs = 2000;
  size_t big_attachment_bytes = 3 << 20;  // 0: no big attachment
  std::string prefix;                     // prepended to generated ids
};

struct CorpusSummary {
  std::vector<std::string> ids;  // every document id created (deleted ones too)
  int documents = 0;
};

CorpusSummary BuildCorpus(CouchClient& db, const CorpusOptions& options = {});

// Every document id in `db`, deleted ones included (from _changes).
std::vector<std::string> AllDocIds(CouchClient& db);

// A canonical text of all leaves of `id`: rev, revision path, body with
// sorted keys, attachments (content_type, digest, length), deleted flag.
std::string LeafSummary(CouchClient& db, const std::string& id);

// Human-readable differences (empty when the target has everything).
std::vector<std::string> CompareDatabases(CouchClient& source, CouchClient& target);

// Canonical JSON text (object keys sorted) of `json`.
std::string CanonicalJson(const std::string& json);

}  // namespace couchrepd::testing

#include "couchrepd/doc_shape.h"

#include <simdjson.h>

#include "couchrepd/json.h"
#include "couchrepd/json_fields.h"

namespace couchrepd {

namespace {

Error BadDoc(std::string why) { return Error::Permanent("bad_doc_body", std::move(why)); }

int64_t GenerationOf(std::string_view rev) {
  int64_t g = 0;
  for (char c : rev) {
    if (c < '0' || c > '9') break;
    g = g * 10 + (c - '0');
    if (g > (int64_t{1} << 40)) break;
  }
  return g;
}

}  // namespace

Result<DocShape> ReadDocShape(std::string_view doc_json) {
  simdjson::dom::parser parser;
  simdjson::dom::object doc;
  auto err = parser.parse(doc_json.data(), doc_json.size()).get(doc);
  if (err) return BadDoc(std::string("document is not a JSON object: ") + simdjson::error_message(err));
  DocShape shape;
  std::string_view s;
  if (doc["_id"].get(s) == simdjson::SUCCESS) shape.id = std::string(s);
  if (doc["_rev"].get(s) == simdjson::SUCCESS) shape.rev = std::string(s);
  bool deleted = false;
  if (doc["_deleted"].get(deleted) == simdjson::SUCCESS) shape.deleted = deleted;
  simdjson::dom::object revisions;
  if (doc["_revisions"].get(revisions) == simdjson::SUCCESS) {
    int64_t start = 0;
    if (revisions["start"].get(start) == simdjson::SUCCESS) shape.revisions_start = start;
    simdjson::dom::array ids;
    if (revisions["ids"].get(ids) == simdjson::SUCCESS) {
      for (auto id : ids) {
        if (id.get(s) == simdjson::SUCCESS) shape.rev_ids.emplace_back(s);
      }
    }
  }
  simdjson::dom::object atts;
  if (doc["_attachments"].get(atts) == simdjson::SUCCESS) {
    for (auto [name, value] : atts) {
      AttachmentMeta m;
      m.name = std::string(name);
      if (value["content_type"].get(s) == simdjson::SUCCESS) m.content_type = std::string(s);
      if (value["digest"].get(s) == simdjson::SUCCESS) m.digest = std::string(s);
      if (value["encoding"].get(s) == simdjson::SUCCESS) m.encoding = std::string(s);
      int64_t n;
      if (value["length"].get(n) == simdjson::SUCCESS) m.length = n;
      if (value["encoded_length"].get(n) == simdjson::SUCCESS) m.encoded_length = n;
      if (value["revpos"].get(n) == simdjson::SUCCESS) m.revpos = n;
      bool b;
      if (value["stub"].get(b) == simdjson::SUCCESS) m.stub = b;
      m.has_data = value["data"].error() == simdjson::SUCCESS;
      shape.attachments.push_back(std::move(m));
    }
  }
  return shape;
}

namespace {

// Whether `rev` is listed in the document's `_revisions`.
bool InRevisions(const DocShape& doc, std::string_view rev) {
  int64_t g = GenerationOf(rev);
  size_t dash = rev.find('-');
  if (g <= 0 || dash == std::string_view::npos || g > doc.revisions_start) return false;
  size_t index = static_cast<size_t>(doc.revisions_start - g);
  return index < doc.rev_ids.size() && doc.rev_ids[index] == rev.substr(dash + 1);
}

}  // namespace

bool OnRevisionPath(const DocShape& doc, std::string_view rev) {
  return rev == doc.rev || InRevisions(doc, rev);
}

int64_t KnownAncestorGeneration(const DocShape& doc,
                                const std::vector<std::string>& possible_ancestors) {
  int64_t best = 0;
  for (const auto& rev : possible_ancestors) {
    if (InRevisions(doc, rev)) best = std::max(best, GenerationOf(rev));
  }
  return best;
}

int64_t BytesToSend(const DocShape& doc, int64_t known_generation) {
  int64_t total = 0;
  for (const auto& a : doc.attachments) {
    if (a.revpos > known_generation || a.revpos == 0) {
      total += a.encoded_length >= 0 ? a.encoded_length : std::max<int64_t>(a.length, 0);
    }
  }
  return total;
}

Result<std::string> RewriteAttachments(
    std::string_view doc_json,
    const std::function<void(const std::string& name, std::vector<JsonField>& fields)>& edit) {
  auto fields = SplitObject(doc_json);
  if (!fields.ok()) return fields.error();
  for (auto& field : *fields) {
    if (field.key != "_attachments") continue;
    auto atts = SplitObject(field.raw_value);
    if (!atts.ok()) return atts.error();
    for (auto& att : *atts) {
      auto meta = SplitObject(att.raw_value);
      if (!meta.ok()) return meta.error();
      edit(att.key, *meta);
      att.raw_value = JoinObject(*meta);
    }
    field.raw_value = JoinObject(*atts);
  }
  return JoinObject(*fields);
}

Result<std::string> WithFollowsAttachments(std::string_view doc_json,
                                           const std::set<std::string>& follows) {
  return RewriteAttachments(doc_json, [&](const std::string& name, std::vector<JsonField>& meta) {
    if (!follows.count(name)) return;
    std::erase_if(meta, [](const JsonField& f) {
      return f.key == "stub" || f.key == "data" || f.key == "follows";
    });
    meta.push_back({"follows", "true"});
  });
}

}  // namespace couchrepd

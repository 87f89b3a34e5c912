#include "support/corpus.h"

#include <simdjson.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <stdexcept>

#include "couchrepd/encoding.h"
#include "couchrepd/json.h"

namespace couchrepd::testing {

namespace {

void Check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("corpus: " + what);
}

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) throw std::runtime_error("corpus: " + what + ": " + r.error().Message());
  return std::move(r).value();
}

void Canonical(simdjson::dom::element el, std::string& out) {
  switch (el.type()) {
    case simdjson::dom::element_type::OBJECT: {
      std::map<std::string, simdjson::dom::element> sorted;
      for (auto [k, v] : simdjson::dom::object(el)) sorted.emplace(std::string(k), v);
      out.push_back('{');
      bool first = true;
      for (auto& [k, v] : sorted) {
        if (!first) out.push_back(',');
        first = false;
        AppendJsonString(out, k);
        out.push_back(':');
        Canonical(v, out);
      }
      out.push_back('}');
      break;
    }
    case simdjson::dom::element_type::ARRAY: {
      out.push_back('[');
      bool first = true;
      for (auto v : simdjson::dom::array(el)) {
        if (!first) out.push_back(',');
        first = false;
        Canonical(v, out);
      }
      out.push_back(']');
      break;
    }
    default:
      out += simdjson::minify(el);
  }
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

std::string Doc(const std::string& id, const std::string& body_fields) {
  return "{\"_id\":" + JsonQuote(id) + (body_fields.empty() ? "" : "," + body_fields) + "}";
}

std::string RevOf(const DocWriteResult& w) { return w.rev; }

}  // namespace

std::string CanonicalJson(const std::string& json) {
  simdjson::dom::parser parser;
  simdjson::dom::element el;
  if (parser.parse(json).get(el) != simdjson::SUCCESS) return "<invalid json: " + json + ">";
  std::string out;
  Canonical(el, out);
  return out;
}

CorpusSummary BuildCorpus(CouchClient& db, const CorpusOptions& o) {
  CorpusSummary summary;
  const std::string& p = o.prefix;
  auto add = [&](const std::string& id) { summary.ids.push_back(id); };

  // Plain documents, in bulk.
  std::vector<std::string> batch;
  for (int i = 0; i < o.plain_docs; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "plain-%05d", i);
    add(p + id);
    batch.push_back(Doc(p + id, "\"n\":" + std::to_string(i) + ",\"type\":\"" +
                                    (i % 2 ? "odd" : "even") + "\",\"payload\":\"" +
                                    std::string(100, static_cast<char>('a' + i % 26)) + "\""));
    if (batch.size() == 500 || i + 1 == o.plain_docs) {
      for (const auto& w : Must(db.BulkDocs(batch, true), "bulk insert")) {
        Check(w.error.empty(), "insert " + w.id + ": " + w.error);
      }
      batch.clear();
    }
  }

  // Multi-revision histories: 4 revisions each.
  for (int i = 0; i < 40; ++i) {
    std::string id = p + "history-" + std::to_string(i);
    add(id);
    auto w = Must(db.PutDoc(id, Doc(id, "\"v\":0")), "put " + id);
    for (int v = 1; v <= 3; ++v) {
      w = Must(db.PutDoc(id, Doc(id, "\"_rev\":" + JsonQuote(w.rev) + ",\"v\":" + std::to_string(v))),
               "update " + id);
    }
  }

  // Conflicting branches and deleted conflicts, written with new_edits=false.
  std::vector<std::string> branches;
  for (int i = 0; i < 30; ++i) {
    std::string id = p + "conflict-" + std::to_string(i);
    add(id);
    std::string a = "a" + std::to_string(i), b = "b" + std::to_string(i), c = "c" + std::to_string(i),
                d = "d" + std::to_string(i);
    branches.push_back(Doc(id, "\"_rev\":\"3-" + d + "\",\"side\":\"main\",\"_revisions\":{\"start\":3,\"ids\":[\"" +
                                   d + "\",\"" + b + "\",\"" + a + "\"]}"));
    bool deleted_branch = i % 3 == 0;
    branches.push_back(Doc(id, "\"_rev\":\"2-" + c + "\",\"side\":\"branch\"" +
                                   std::string(deleted_branch ? ",\"_deleted\":true" : "") +
                                   ",\"_revisions\":{\"start\":2,\"ids\":[\"" + c + "\",\"" + a + "\"]}"));
  }
  for (const auto& w : Must(db.BulkDocs(branches, false), "conflicts")) {
    Check(w.error.empty(), "conflict " + w.id + ": " + w.error);
  }

  // Deleted documents.
  for (int i = 0; i < 30; ++i) {
    std::string id = p + "deleted-" + std::to_string(i);
    add(id);
    auto w = Must(db.PutDoc(id, Doc(id, "\"doomed\":true")), "put " + id);
    Must(db.DeleteDoc(id, w.rev), "delete " + id);
  }

  // A design document.
  add("_design/app");
  Must(db.PutDoc("_design/app",
                 R"({"_id":"_design/app","views":{"by_n":{"map":"function(doc){ if (doc.n) emit(doc.n); }"}},)"
                 R"("filters":{"even":"function(doc, req){ return doc.n % 2 == 0; }"}})"),
       "design doc");

  // Awkward ids.
  for (std::string id : {"a/b", "a+b", "a%b", "a b", "ünï©ødé-日本", "x?y#z"}) {
    add(p + id);
    Must(db.PutDoc(p + id, Doc(p + id, "\"awkward\":" + JsonQuote(id))), "put " + id);
  }

  // Small attachments, inline.
  std::vector<std::string> with_atts;
  for (int i = 0; i < 20; ++i) {
    std::string id = p + "att-small-" + std::to_string(i);
    add(id);
    std::string text = "hello attachment " + std::to_string(i);
    std::string bin = RandomBytes(300 + static_cast<size_t>(i) * 50, static_cast<uint32_t>(i));
    with_atts.push_back(Doc(id, "\"_attachments\":{\"note.txt\":{\"content_type\":\"text/plain\",\"data\":\"" +
                                    Base64Encode(text) + "\"},\"blob.bin\":{\"content_type\":\"application/octet-stream\",\"data\":\"" +
                                    Base64Encode(bin) + "\"}}"));
  }
  for (const auto& w : Must(db.BulkDocs(with_atts, true), "attachments")) {
    Check(w.error.empty(), "attachment doc " + w.id + ": " + w.error);
  }

  // A revision that keeps an unchanged attachment from its parent.
  {
    std::string id = p + "att-shared";
    add(id);
    std::string data = RandomBytes(5000, 99);
    auto w1 = Must(db.PutDoc(id, Doc(id, "\"v\":1,\"_attachments\":{\"keep.bin\":{\"content_type\":"
                                         "\"application/octet-stream\",\"data\":\"" +
                                             Base64Encode(data) + "\"}}")),
                   "shared v1");
    auto body = Must(db.GetDoc(id), "get shared");
    simdjson::dom::parser parser;
    simdjson::dom::element el;
    Check(parser.parse(body).get(el) == simdjson::SUCCESS, "parse shared");
    std::string stub = simdjson::minify(el["_attachments"]);
    Must(db.PutDoc(id, Doc(id, "\"_rev\":" + JsonQuote(RevOf(w1)) + ",\"v\":2,\"_attachments\":" + stub)),
         "shared v2");
  }

  // Multi-megabyte attachments, streamed.
  if (o.big_attachment_bytes > 0) {
    for (int i = 0; i < 2; ++i) {
      std::string id = p + "att-big-" + std::to_string(i);
      add(id);
      std::string data = RandomBytes(o.big_attachment_bytes + static_cast<size_t>(i) * 1000,
                                     1000 + static_cast<uint32_t>(i));
      Must(db.PutAttachment(id, "big.bin", "", "application/octet-stream", data.size(),
                            [&](const std::function<bool(std::string_view)>& sink) {
                              for (size_t off = 0; off < data.size(); off += 1 << 16) {
                                if (!sink(std::string_view(data).substr(off, 1 << 16))) return false;
                              }
                              return true;
                            }),
           "big attachment");
    }
  }
  summary.documents = static_cast<int>(summary.ids.size());
  return summary;
}

std::vector<std::string> AllDocIds(CouchClient& db) {
  std::vector<std::string> ids;
  ChangesRequest req;
  auto r = db.Changes(req, [&](ChangeRow&& row) {
    ids.push_back(row.id);
    return true;
  });
  if (!r.ok()) throw std::runtime_error("AllDocIds: " + r.error().Message());
  std::sort(ids.begin(), ids.end());
  return ids;
}

namespace {

// The canonical text of one leaf revision's JSON (with _revisions); "" with
// `rev` unset when it cannot be read.
std::string LeafText(const std::string& json, std::string& rev) {
  simdjson::dom::parser parser;
  simdjson::dom::element el;
  if (parser.parse(json).get(el) != simdjson::SUCCESS) return "<bad json>";
  std::string_view rev_text;
  if (el["_rev"].get(rev_text) != simdjson::SUCCESS) return "<no _rev>";
  rev = std::string(rev_text);
  std::string out = "rev=" + rev;
  simdjson::dom::element revs;
  if (el["_revisions"].get(revs) == simdjson::SUCCESS) out += " path=" + CanonicalJson(std::string(simdjson::minify(revs)));
  simdjson::dom::object atts;
  if (el["_attachments"].get(atts) == simdjson::SUCCESS) {
    std::map<std::string, std::string> a;
    for (auto [name, meta] : atts) {
      std::string_view s;
      int64_t n = -1;
      std::string desc;
      if (meta["content_type"].get(s) == simdjson::SUCCESS) desc += std::string(s);
      if (meta["digest"].get(s) == simdjson::SUCCESS) desc += " " + std::string(s);
      if (meta["length"].get(n) == simdjson::SUCCESS) desc += " " + std::to_string(n);
      a[std::string(name)] = desc;
    }
    out += " atts={";
    for (auto& [k, v] : a) out += k + ":" + v + ";";
    out += "}";
  }
  std::map<std::string, std::string> body;
  for (auto [k, v] : simdjson::dom::object(el)) {
    std::string key(k);
    if (key == "_rev" || key == "_revisions" || key == "_attachments") continue;
    body[key] = CanonicalJson(std::string(simdjson::minify(v)));
  }
  out += " body={";
  for (auto& [k, v] : body) out += k + ":" + v + ",";
  out += "}";
  return out;
}

}  // namespace

std::string LeafSummary(CouchClient& db, const std::string& id) {
  OpenRevsOptions o;
  o.attachments = false;
  o.latest = false;
  auto r = db.OpenRevs(id, {}, o);
  if (!r.ok()) return "<error " + r.error().Message() + ">";
  std::map<std::string, std::string> leaves;
  for (const auto& d : *r) {
    if (d.missing) continue;
    std::string rev;
    std::string text = LeafText(d.json, rev);
    if (rev.empty()) return text;
    leaves[rev] = text;
  }
  std::string all;
  for (auto& [rev, text] : leaves) all += text + "\n";
  return all;
}

namespace {

// Every document's leaf revisions (deleted ones too), from _changes.
std::map<std::string, std::vector<std::string>> LeafRevs(CouchClient& db) {
  std::map<std::string, std::vector<std::string>> leaves;
  ChangesRequest req;
  auto r = db.Changes(req, [&](ChangeRow&& row) {
    leaves[row.id] = std::move(row.revs);
    return true;
  });
  if (!r.ok()) throw std::runtime_error("LeafRevs: " + r.error().Message());
  return leaves;
}

// LeafSummary of each of `ids`, with one _bulk_get for all of them.
std::map<std::string, std::string> LeafSummaries(
    CouchClient& db, const std::vector<std::string>& ids,
    const std::map<std::string, std::vector<std::string>>& leaves) {
  std::vector<BulkGetItem> items;
  for (const auto& id : ids) {
    auto it = leaves.find(id);
    if (it == leaves.end()) continue;
    for (const auto& rev : it->second) items.push_back({id, rev, {}});
  }
  std::map<std::string, std::map<std::string, std::string>> by_doc;
  auto got = db.BulkGet(items, /*attachments=*/false);
  if (!got.ok()) throw std::runtime_error("LeafSummaries: " + got.error().Message());
  for (const auto& d : *got) {
    std::string rev;
    std::string text = d.ok ? LeafText(d.json, rev) : "<" + d.error + " " + d.rev + ">";
    by_doc[d.id][rev.empty() ? d.rev : rev] = text;
  }
  std::map<std::string, std::string> out;
  for (auto& [id, revs] : by_doc) {
    std::string all;
    for (auto& [rev, text] : revs) all += text + "\n";
    out[id] = all;
  }
  return out;
}

}  // namespace

std::vector<std::string> CompareDatabases(CouchClient& source, CouchClient& target) {
  constexpr size_t kBatch = 200;
  std::vector<std::string> diffs;
  auto src_leaves = LeafRevs(source);
  auto tgt_leaves = LeafRevs(target);
  std::vector<std::string> both;
  for (const auto& [id, revs] : src_leaves) {
    if (!tgt_leaves.count(id)) {
      diffs.push_back(id + ": missing on the target");
      continue;
    }
    both.push_back(id);
  }
  for (size_t at = 0; at < both.size(); at += kBatch) {
    std::vector<std::string> ids(both.begin() + at, both.begin() + std::min(both.size(), at + kBatch));
    auto a = LeafSummaries(source, ids, src_leaves);
    auto b = LeafSummaries(target, ids, tgt_leaves);
    for (const auto& id : ids) {
      if (a[id] != b[id]) diffs.push_back(id + ":\n  source " + a[id] + "  target " + b[id]);
    }
  }
  return diffs;
}

}  // namespace couchrepd::testing

#include "batch_replicator.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>

#include "couchrepd/doc_shape.h"
#include "couchrepd/encoding.h"
#include "couchrepd/json.h"
#include "couchrepd/json_fields.h"
#include "couchrepd/limits.h"

namespace couchrepd {

namespace {

constexpr size_t kFileChunk = 64 * 1024;

struct Fetched {
  std::string id;
  std::string rev;
  std::string json;
  std::vector<std::string> possible_ancestors;
};

// A document body that failed to be written but may not fail the job
// (SPEC §4.2: 401/403 from a validation function, 413, 415).
bool IsDocLevelWriteFailure(std::string_view error) {
  return error == "forbidden" || error == "unauthorized" || error == "too_large" ||
         error == "request_entity_too_large" || error == "document_too_large" ||
         error == "bad_content_type" || error == "unsupported_media_type";
}

bool IsUnsupportedEndpoint(const Error& e) {
  return e.http_status == 400 || e.http_status == 404 || e.http_status == 405 ||
         e.http_status == 501;
}

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};
using TempFile = std::unique_ptr<FILE, FileCloser>;

// An unnamed read-write file in `dir` (replication.temp_dir; "" = $TMPDIR,
// else /tmp), gone when closed; the error names the directory.
Result<TempFile> OpenTempFile(const std::string& dir_setting) {
  std::string dir = dir_setting;
  if (dir.empty()) {
    const char* env = std::getenv("TMPDIR");
    dir = env && *env ? env : "/tmp";
  }
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
    // A file system without O_TMPFILE: a named file, unlinked at once.
    std::string path = dir + "/couchrepd-XXXXXX";
    fd = mkostemp(path.data(), O_CLOEXEC);
    if (fd >= 0) unlink(path.c_str());
  }
  if (fd < 0) {
    int err = errno;
    return Error::Temporary("temp_dir", "cannot create a temporary file in " + dir +
                                            " (replication.temp_dir): " + std::strerror(err) +
                                            (err == EMFILE || err == ENFILE ? " (too many open files)" : ""));
  }
  FILE* fp = fdopen(fd, "w+b");
  if (!fp) {
    close(fd);
    return Error::Temporary("temp_dir", "cannot open a temporary file in " + dir);
  }
  return TempFile(fp);
}

class BatchRun {
 public:
  BatchRun(const std::vector<ChangeRow>& rows, BatchContext& ctx) : rows_(rows), ctx_(ctx) {}

  Result<ReplicationStats> Run() {
    // 1. Every revision of every row, grouped by id in feed order.
    std::vector<std::pair<std::string, std::vector<std::string>>> revs;
    std::unordered_map<std::string, size_t> index;
    for (const auto& row : rows_) {
      if (row.id.empty()) continue;  // an end-of-feed marker
      auto [it, inserted] = index.emplace(row.id, revs.size());
      if (inserted) revs.push_back({row.id, {}});
      auto& list = revs[it->second].second;
      for (const auto& r : row.revs) {
        if (std::find(list.begin(), list.end(), r) == list.end()) list.push_back(r);
        ++stats_.revisions_checked;
      }
    }
    if (revs.empty()) return stats_;

    // 2. What the target lacks: everything, when it was empty at the start.
    Result<std::vector<RevsDiffEntry>> diff = std::vector<RevsDiffEntry>{};
    if (ctx_.target_empty_at_start) {
      for (auto& [id, list] : revs) diff->push_back({id, std::move(list), {}});
    } else {
      diff = ctx_.target->RevsDiff(revs);
    }
    if (!diff.ok()) return diff.error();
    std::vector<RevsDiffEntry> missing;
    for (auto& e : *diff) {
      if (e.missing.empty()) continue;
      stats_.missing_revisions_found += static_cast<int64_t>(e.missing.size());
      missing.push_back(std::move(e));
    }
    if (missing.empty()) return stats_;

    // 3. Fetch them (attachment stubs only, first).
    auto fetched = Fetch(missing, /*attachments=*/false);
    if (!fetched.ok()) return fetched.error();

    // 4. Sort by how attachments must travel.
    std::vector<Fetched> plain, inline_atts, streamed;
    for (auto& f : *fetched) {
      if (NestedDeeperThan(f.json, kMaxJsonDepth)) {
        // SPEC §10: over a bound is that document's failure, not the job's.
        ++stats_.doc_write_failures;
        spdlog::warn("{} {}@{} not written: nested more than {} levels deep", ctx_.log_prefix,
                     CapText(f.id, 200), CapText(f.rev, 100), kMaxJsonDepth);
        continue;
      }
      if (!ctx_.may_write_design_docs && f.id.rfind("_design/", 0) == 0) {
        ++stats_.doc_write_failures;
        spdlog::warn("{} {} not written: design documents need user_ctx with the _admin role "
                     "for a local target", ctx_.log_prefix, f.id);
        continue;
      }
      if (f.json.find("\"_attachments\"") == std::string::npos) {
        plain.push_back(std::move(f));
        continue;
      }
      auto shape = ReadDocShape(f.json);
      if (!shape.ok()) return shape.error();
      int64_t known = KnownAncestorGeneration(*shape, f.possible_ancestors);
      int64_t bytes = BytesToSend(*shape, known);
      bool any_needed = false;
      for (const auto& a : shape->attachments) {
        if (a.revpos > known || a.revpos == 0) any_needed = true;
      }
      if (!any_needed) {
        plain.push_back(std::move(f));
      } else if (bytes <= ctx_.stream_threshold_bytes) {
        inline_atts.push_back(std::move(f));
      } else {
        streamed.push_back(std::move(f));
      }
    }

    // 5. Small attachments: fetch again with their data inline.
    if (!inline_atts.empty()) {
      std::vector<RevsDiffEntry> again;
      for (const auto& f : inline_atts) {
        again.push_back({f.id, {f.rev}, f.possible_ancestors});
      }
      auto with_data = Fetch(again, /*attachments=*/true, /*count_reads=*/false);
      if (!with_data.ok()) return with_data.error();
      for (auto& f : *with_data) plain.push_back(std::move(f));
    }

    // 6. Write.
    if (!plain.empty()) {
      std::vector<std::string> docs;
      std::vector<std::string> ids;
      docs.reserve(plain.size());
      for (auto& f : plain) {
        ids.push_back(f.id);
        docs.push_back(std::move(f.json));
      }
      Status s = WriteDocs(docs, ids);
      if (!s.ok()) return s.error();
    }
    for (const auto& f : streamed) {
      Status s = WriteStreamed(f);
      if (!s.ok()) return s.error();
    }
    return stats_;
  }

 private:
  // Fetches the given revisions; docs that no longer exist are skipped.
  Result<std::vector<Fetched>> Fetch(const std::vector<RevsDiffEntry>& wanted, bool attachments,
                                     bool count_reads = true) {
    std::vector<Fetched> out;
    std::vector<RevsDiffEntry> by_open_revs;
    bool bulk = ctx_.use_bulk_get && !ctx_.bulk_get_unsupported->load();
    if (bulk) {
      std::vector<BulkGetItem> items;
      for (const auto& e : wanted) {
        for (const auto& rev : e.missing) items.push_back({e.id, rev, e.possible_ancestors});
      }
      Status s = FetchBulk(items, attachments, count_reads, wanted, out, by_open_revs);
      if (!s.ok()) return s.error();
    } else {
      by_open_revs = wanted;
    }
    for (const auto& e : by_open_revs) {
      Status s = FetchOpenRevs(e.id, e.missing, e.possible_ancestors, attachments, count_reads, out);
      if (!s.ok()) return s.error();
    }
    return out;
  }

  // One _bulk_get; what it cannot deliver is added to `by_open_revs`. An
  // answer over limits.max_response_bytes splits the request in halves; a
  // single revision over it is a write failure (SPEC §10).
  Status FetchBulk(const std::vector<BulkGetItem>& items, bool attachments, bool count_reads,
                   const std::vector<RevsDiffEntry>& wanted, std::vector<Fetched>& out,
                   std::vector<RevsDiffEntry>& by_open_revs) {
    if (items.empty()) return OkStatus();
    auto r = ctx_.source->BulkGet(items, attachments);
    if (!r.ok()) {
      const Error& e = r.error();
      if (e.error == "response_too_large") {
        if (items.size() == 1) {
          TooLarge(items[0].id, items[0].rev, e);
          return OkStatus();
        }
        auto mid = items.begin() + static_cast<std::ptrdiff_t>(items.size() / 2);
        Status a = FetchBulk({items.begin(), mid}, attachments, count_reads, wanted, out,
                             by_open_revs);
        if (!a.ok()) return a;
        return FetchBulk({mid, items.end()}, attachments, count_reads, wanted, out, by_open_revs);
      }
      if (e.error == "cancelled") return e;
      if (IsUnsupportedEndpoint(e)) {
        spdlog::info("{} the source has no usable _bulk_get ({}); using open_revs",
                     ctx_.log_prefix, e.Message());
        ctx_.bulk_get_unsupported->store(true);
      } else if (e.http_status >= 500 || e.error == "bad_json") {
        // SPEC 4.2: _bulk_get failed (after its retries): open_revs instead.
        spdlog::warn("{} _bulk_get failed ({}); fetching {} revisions with open_revs",
                     ctx_.log_prefix, e.Message(), items.size());
      } else {
        return e;
      }
      AddOpenRevs(items, wanted, by_open_revs);
      return OkStatus();
    }
    // Each requested revision is covered by an accepted answer or by "gone";
    // whatever is not (left out, failed, or answered with something else) is
    // fetched again through open_revs, never skipped silently.
    std::vector<bool> covered(items.size(), false);
    std::set<std::pair<std::string, std::string>> seen;
    for (auto& d : *r) {
      bool requested = false;
      for (const auto& i : items) requested |= i.id == d.id;
      if (!requested) {
        spdlog::warn("{} _bulk_get answered a document that was not asked for ({}); ignored",
                     ctx_.log_prefix, CapText(d.id, 200));
        continue;
      }
      if (!d.ok) {
        if (d.error == "not_found" || d.reason == "missing") {
          spdlog::debug("{} {}@{} not fetched: {} {}", ctx_.log_prefix, d.id, d.rev, d.error,
                        d.reason);
          for (size_t k = 0; k < items.size(); ++k) {  // gone meanwhile
            if (items[k].id == d.id && (d.rev.empty() || items[k].rev == d.rev)) covered[k] = true;
          }
          continue;
        }
        spdlog::info("{} {}@{} not delivered by _bulk_get ({}: {}); trying open_revs",
                     ctx_.log_prefix, d.id, d.rev, d.error, d.reason);
        continue;
      }
      std::vector<size_t> answers = AnsweredItems(d, items);
      if (answers.empty()) {
        spdlog::warn("{} _bulk_get answered {}@{}, which was not asked for; ignored",
                     ctx_.log_prefix, CapText(d.id, 200), CapText(d.rev, 100));
        continue;
      }
      for (size_t k : answers) covered[k] = true;
      // latest=true may answer the same newer leaf for several requests.
      if (!seen.insert({d.id, d.rev}).second) continue;
      if (count_reads) ++stats_.docs_read;
      out.push_back({d.id, d.rev, std::move(d.json), AncestorsOf(wanted, d.id)});
    }
    std::vector<BulkGetItem> retry;
    for (size_t k = 0; k < items.size(); ++k) {
      if (!covered[k]) retry.push_back(items[k]);
    }
    AddOpenRevs(retry, wanted, by_open_revs);
    return OkStatus();
  }

  // The requested items an answered revision stands for: the revision asked
  // for, or a newer leaf descending from it (latest=true). None: it is not
  // written (a source must not slip in revisions _revs_diff did not ask for).
  static std::vector<size_t> AnsweredItems(const BulkGetDoc& d,
                                           const std::vector<BulkGetItem>& items) {
    std::vector<size_t> out;
    std::optional<DocShape> shape;
    for (size_t k = 0; k < items.size(); ++k) {
      if (items[k].id != d.id || d.rev.empty()) continue;
      if (items[k].rev == d.rev) {
        out.push_back(k);
        continue;
      }
      if (!shape) {
        auto read = ReadDocShape(d.json);
        if (!read.ok() || read->rev != d.rev) continue;
        shape = std::move(*read);
      }
      if (OnRevisionPath(*shape, items[k].rev)) out.push_back(k);
    }
    return out;
  }

  static std::vector<std::string> AncestorsOf(const std::vector<RevsDiffEntry>& wanted,
                                              const std::string& id) {
    for (const auto& e : wanted) {
      if (e.id == id) return e.possible_ancestors;
    }
    return {};
  }

  static void AddOpenRevs(const std::vector<BulkGetItem>& items,
                          const std::vector<RevsDiffEntry>& wanted,
                          std::vector<RevsDiffEntry>& by_open_revs) {
    for (const auto& i : items) {
      auto it = std::find_if(by_open_revs.begin(), by_open_revs.end(),
                             [&](const RevsDiffEntry& e) { return e.id == i.id; });
      if (it == by_open_revs.end()) {
        by_open_revs.push_back({i.id, {}, AncestorsOf(wanted, i.id)});
        it = by_open_revs.end() - 1;
      }
      if (std::find(it->missing.begin(), it->missing.end(), i.rev) == it->missing.end()) {
        it->missing.push_back(i.rev);
      }
    }
  }

  void TooLarge(const std::string& id, const std::string& rev, const Error& e) {
    ++stats_.doc_write_failures;
    spdlog::warn("{} {}@{} not written: too_large: {}", ctx_.log_prefix, id, rev, e.Message());
  }

  // open_revs for one document; over the byte cap the revision list is split,
  // a single revision over it is a write failure.
  Status FetchOpenRevs(const std::string& id, const std::vector<std::string>& revs,
                       const std::vector<std::string>& ancestors, bool attachments,
                       bool count_reads, std::vector<Fetched>& out) {
    OpenRevsOptions o;
    o.atts_since = ancestors;
    o.attachments = attachments;
    auto r = ctx_.source->OpenRevs(id, revs, o);
    if (!r.ok()) {
      if (r.error().http_status == 404) return OkStatus();  // gone meanwhile
      if (r.error().error == "response_too_large") {
        if (revs.size() <= 1) {
          TooLarge(id, revs.empty() ? "" : revs[0], r.error());
          return OkStatus();
        }
        auto mid = revs.begin() + static_cast<std::ptrdiff_t>(revs.size() / 2);
        Status a = FetchOpenRevs(id, {revs.begin(), mid}, ancestors, attachments, count_reads, out);
        if (!a.ok()) return a;
        return FetchOpenRevs(id, {mid, revs.end()}, ancestors, attachments, count_reads, out);
      }
      return r.error();
    }
    std::set<std::string> seen;
    std::vector<bool> answered(revs.size(), false);
    for (auto& d : *r) {
      if (d.missing) {
        for (size_t k = 0; k < revs.size(); ++k) answered[k] = answered[k] || revs[k] == d.missing_rev;
        continue;
      }
      if (NestedDeeperThan(d.json, kMaxJsonDepth)) {
        // Unreadable here, and a write failure rather than the job's (SPEC
        // §10); it stands for one of the revisions asked for.
        ++stats_.doc_write_failures;
        spdlog::warn("{} {} not written: open_revs answered a revision nested more than {} "
                     "levels deep", ctx_.log_prefix, id, kMaxJsonDepth);
        auto open = std::find(answered.begin(), answered.end(), false);
        if (open != answered.end()) *open = true;
        continue;
      }
      auto shape = ReadDocShape(d.json);
      if (!shape.ok()) return shape.error();
      if (shape->id != id) {
        spdlog::warn("{} open_revs for {} answered another document ({}); ignored",
                     ctx_.log_prefix, id, CapText(shape->id, 200));
        continue;
      }
      bool asked = false;
      for (size_t k = 0; k < revs.size(); ++k) {
        if (OnRevisionPath(*shape, revs[k])) asked = answered[k] = true;
      }
      if (!asked) {
        spdlog::warn("{} open_revs for {} answered {}, which was not asked for; ignored",
                     ctx_.log_prefix, id, CapText(shape->rev, 100));
        continue;
      }
      if (!seen.insert(shape->rev).second) continue;
      if (count_reads) ++stats_.docs_read;
      if (!d.attachments.empty()) {
        // Multipart answer: put the attachment bodies back inline.
        auto inlined = InlineMultipartAttachments(d);
        if (!inlined.ok()) return inlined.error();
        d.json = std::move(*inlined);
      }
      out.push_back({id, shape->rev, std::move(d.json), ancestors});
    }
    // A revision the answer neither delivered nor called missing is counted,
    // never skipped silently (the checkpoint passes it).
    for (size_t k = 0; k < revs.size(); ++k) {
      if (answered[k]) continue;
      ++stats_.doc_write_failures;
      spdlog::warn("{} {}@{} not written: open_revs did not answer it", ctx_.log_prefix, id,
                   revs[k]);
    }
    return OkStatus();
  }

  static Result<std::string> InlineMultipartAttachments(const OpenRevsDoc& d);

  // _bulk_docs new_edits=false, split in halves on 413.
  Status WriteDocs(const std::vector<std::string>& docs, const std::vector<std::string>& ids) {
    auto r = ctx_.target->BulkDocs(docs, /*new_edits=*/false);
    if (!r.ok()) {
      if (r.error().http_status == 413) {
        if (docs.size() == 1) {
          ++stats_.doc_write_failures;
          spdlog::warn("{} {} not written: too large for the target ({})", ctx_.log_prefix,
                       ids[0], r.error().Message());
          return OkStatus();
        }
        size_t half = docs.size() / 2;
        auto mid = static_cast<std::ptrdiff_t>(half);
        Status a = WriteDocs({docs.begin(), docs.begin() + mid}, {ids.begin(), ids.begin() + mid});
        if (!a.ok()) return a;
        return WriteDocs({docs.begin() + mid, docs.end()}, {ids.begin() + mid, ids.end()});
      }
      return r.error();
    }
    int64_t failures = 0;
    for (const auto& w : *r) {
      if (w.error.empty()) continue;
      if (IsDocLevelWriteFailure(w.error)) {
        ++failures;
        spdlog::warn("{} {} not written: {}: {}", ctx_.log_prefix, w.id, w.error, w.reason);
        continue;
      }
      return Error::Permanent("write_failed", "the target refused " + w.id + ": " + w.error +
                                                  (w.reason.empty() ? "" : ": " + w.reason));
    }
    stats_.doc_write_failures += failures;
    stats_.docs_written += static_cast<int64_t>(docs.size()) - failures;
    return OkStatus();
  }

  // Big attachments: each downloaded to a temporary file, then one multipart
  // PUT with new_edits=false streaming from the files.
  Status WriteStreamed(const Fetched& f) {
    auto shape = ReadDocShape(f.json);
    if (!shape.ok()) return shape.error();
    int64_t known = KnownAncestorGeneration(*shape, f.possible_ancestors);
    std::vector<CouchClient::StreamedAttachment> atts;
    std::vector<TempFile> files;
    std::set<std::string> follows;
    std::map<std::string, std::pair<std::string, int64_t>> received;  // name -> encoding, bytes
    for (const auto& a : shape->attachments) {
      if (!(a.revpos > known || a.revpos == 0)) continue;
      auto file = OpenTempFile(ctx_.temp_dir);
      if (!file.ok()) return file.error();
      int64_t bytes = 0;
      FILE* fp = file->get();
      auto info = ctx_.source->GetAttachment(f.id, a.name, f.rev, [&](std::string_view chunk) {
        bytes += static_cast<int64_t>(chunk.size());
        return std::fwrite(chunk.data(), 1, chunk.size(), fp) == chunk.size();
      });
      if (!info.ok()) return info.error();
      std::fflush(fp);
      received[a.name] = {info->content_encoding, bytes};
      follows.insert(a.name);
      CouchClient::StreamedAttachment sa;
      sa.name = a.name;
      sa.content_type = a.content_type;
      sa.encoding = info->content_encoding;
      sa.length = static_cast<uint64_t>(bytes);
      sa.provider = [fp](const std::function<bool(std::string_view)>& sink) {
        std::rewind(fp);
        std::vector<char> buf(kFileChunk);
        size_t n;
        while ((n = std::fread(buf.data(), 1, buf.size(), fp)) > 0) {
          if (!sink(std::string_view(buf.data(), n))) return false;
        }
        return !std::ferror(fp);
      };
      atts.push_back(std::move(sa));
      files.push_back(std::move(*file));
    }
    auto doc = WithFollowsAttachments(f.json, follows);
    if (!doc.ok()) return doc.error();
    // The stubs must describe the bytes as they will be sent.
    auto fixed = DescribeSentBytes(*doc, received);
    if (!fixed.ok()) return fixed.error();
    auto r = ctx_.target->PutDocMultipart(f.id, *fixed, std::move(atts), /*new_edits=*/false);
    if (!r.ok()) {
      const Error& e = r.error();
      if (e.http_status == 401 || e.http_status == 403 || e.http_status == 413 ||
          e.http_status == 415) {
        ++stats_.doc_write_failures;
        spdlog::warn("{} {} not written: {}", ctx_.log_prefix, f.id, e.Message());
        return OkStatus();
      }
      return e;
    }
    ++stats_.docs_written;
    return OkStatus();
  }

  static Result<std::string> DescribeSentBytes(
      const std::string& doc_json,
      const std::map<std::string, std::pair<std::string, int64_t>>& received);

  const std::vector<ChangeRow>& rows_;
  BatchContext& ctx_;
  ReplicationStats stats_;
};

Result<std::string> BatchRun::InlineMultipartAttachments(const OpenRevsDoc& d) {
  return RewriteAttachments(d.json, [&](const std::string& name, std::vector<JsonField>& meta) {
    const OpenRevsAttachment* body = nullptr;
    for (const auto& a : d.attachments) {
      if (a.name == name) body = &a;
    }
    if (!body) return;
    std::erase_if(meta, [](const JsonField& f) {
      return f.key == "follows" || f.key == "stub" || f.key == "data";
    });
    meta.push_back({"data", JsonQuote(Base64Encode(body->data))});
  });
}

Result<std::string> BatchRun::DescribeSentBytes(
    const std::string& doc_json,
    const std::map<std::string, std::pair<std::string, int64_t>>& received) {
  return RewriteAttachments(doc_json, [&](const std::string& name, std::vector<JsonField>& meta) {
    auto it = received.find(name);
    if (it == received.end()) return;
    const auto& [encoding, bytes] = it->second;
    bool stored_encoded = std::any_of(meta.begin(), meta.end(),
                                      [](const JsonField& f) { return f.key == "encoding"; });
    std::vector<JsonField> out;
    for (auto& m : meta) {
      if (m.key == "encoding" || m.key == "encoded_length") continue;
      // A digest of the stored (encoded) bytes no longer matches when the
      // server sent them decoded.
      if (m.key == "digest" && stored_encoded && encoding.empty()) continue;
      if (m.key == "length" && encoding.empty()) {
        out.push_back({"length", std::to_string(bytes)});
        continue;
      }
      out.push_back(m);
    }
    if (!encoding.empty()) {
      out.push_back({"encoding", JsonQuote(encoding)});
      out.push_back({"encoded_length", std::to_string(bytes)});
    }
    meta = std::move(out);
  });
}

}  // namespace

Result<ReplicationStats> ReplicateBatch(const std::vector<ChangeRow>& rows, BatchContext& ctx) {
  BatchRun run(rows, ctx);
  return run.Run();
}

}  // namespace couchrepd

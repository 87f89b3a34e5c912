// Fuzzes the multipart parser and the open_revs readers: whole and split bodies give the same parts and documents.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "couchrepd/multipart.h"
#include "fuzz/fuzz_util.h"

namespace couchrepd::fuzz {
namespace {

struct Part {
  std::vector<std::pair<std::string, std::string>> headers;
  std::string data;
  bool ended = false;
};

struct PartsOutcome {
  std::vector<Part> parts;
  std::optional<Error> error;
  bool done = false;
};

template <typename Chunks>
PartsOutcome ParseParts(const std::string& boundary, size_t max_header_bytes, Chunks&& chunks) {
  PartsOutcome o;
  MultipartParser parser(boundary, max_header_bytes);
  MultipartParser::Handler h;
  h.on_part_begin = [&](const MultipartHeaders& headers) {
    FUZZ_CHECK(o.parts.empty() || o.parts.back().ended, "a part began before the last one ended");
    o.parts.push_back(Part{headers.fields, "", false});
    for (const auto& [name, value] : headers.fields) {
      for (char c : name) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), "a header name is not lower-cased");
    }
    return true;
  };
  h.on_part_data = [&](std::string_view piece) {
    FUZZ_CHECK(!o.parts.empty() && !o.parts.back().ended, "data outside a part");
    FUZZ_CHECK(!piece.empty(), "an empty data piece");
    o.parts.back().data.append(piece);
    return true;
  };
  h.on_part_end = [&] {
    FUZZ_CHECK(!o.parts.empty() && !o.parts.back().ended, "a part ended twice");
    o.parts.back().ended = true;
    return true;
  };
  chunks([&](std::string_view piece) {
    Status s = parser.Feed(piece, h);
    if (!s.ok()) o.error = s.error();
    return s.ok();
  });
  if (!o.error) {
    Status s = parser.Finish();
    if (!s.ok()) o.error = s.error();
  }
  o.done = parser.done();
  return o;
}

std::string ErrorText(const std::optional<Error>& e) {
  return e ? e->error + ": " + e->reason : "ok";
}

void CheckSameError(const std::optional<Error>& a, const std::optional<Error>& b) {
  std::string what = "whole: " + ErrorText(a) + " / split: " + ErrorText(b);
  FUZZ_CHECK(a.has_value() == b.has_value(), what);
  if (a) FUZZ_CHECK(a->error == b->error && a->kind == b->kind && a->reason == b->reason, what);
}

bool SameDoc(const OpenRevsDoc& a, const OpenRevsDoc& b) {
  if (a.json != b.json || a.missing != b.missing || a.missing_rev != b.missing_rev ||
      a.attachments.size() != b.attachments.size()) {
    return false;
  }
  for (size_t i = 0; i < a.attachments.size(); ++i) {
    const auto& x = a.attachments[i];
    const auto& y = b.attachments[i];
    if (x.name != y.name || x.content_type != y.content_type || x.encoding != y.encoding ||
        x.data != y.data) {
      return false;
    }
  }
  return true;
}

template <typename Reader, typename Chunks>
auto ReadDocs(Reader reader, Chunks&& chunks) {
  std::optional<Error> feed_error;
  chunks([&](std::string_view piece) {
    Status s = reader.Feed(piece);
    if (!s.ok()) feed_error = s.error();
    return s.ok();
  });
  auto result = reader.Finish();
  if (feed_error) {
    // A reader that failed while fed keeps that error.
    FUZZ_CHECK(!result.ok() && result.error().reason == feed_error->reason,
               "a failed reader did not keep its error");
  }
  return result;
}

}  // namespace
}  // namespace couchrepd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace couchrepd;
  using namespace couchrepd::fuzz;
  Input in(data, size);
  uint8_t options = in.Byte();
  uint64_t seed = in.Word();
  std::string boundary(in.Line(80));
  std::string_view body = in.Rest();
  auto whole = [&](auto&& feed) { feed(body); };
  Splitter splitter(seed);
  auto split = [&](auto&& feed) { FeedInPieces(body, splitter, feed); };

  switch (options % 3) {
    case 0: {  // the streaming layer
      size_t max_header = (options & 8) ? 8 + in.Byte() : MultipartParser::kDefaultMaxHeaderBytes;
      PartsOutcome a = ParseParts(boundary, max_header, whole);
      PartsOutcome b = ParseParts(boundary, max_header, split);
      CheckSameError(a.error, b.error);
      FUZZ_CHECK(a.parts.size() == b.parts.size(), "part counts differ");
      for (size_t i = 0; i < a.parts.size(); ++i) {
        FUZZ_CHECK(a.parts[i].headers == b.parts[i].headers, "headers of a part differ");
        FUZZ_CHECK(a.parts[i].data == b.parts[i].data, "data of a part differs");
        FUZZ_CHECK(a.parts[i].ended == b.parts[i].ended, "a part ended in one parse only");
      }
      FUZZ_CHECK(a.done == b.done, "done() differs");
      if (!a.error) FUZZ_CHECK(a.done, "Finish succeeded before the closing delimiter");
      break;
    }
    case 1: {  // one multipart/related document
      auto a = ReadDocs(MultipartRelatedReader(boundary), whole);
      auto b = ReadDocs(MultipartRelatedReader(boundary), split);
      CheckSameError(a.ok() ? std::nullopt : std::optional<Error>(a.error()),
                     b.ok() ? std::nullopt : std::optional<Error>(b.error()));
      if (a.ok()) FUZZ_CHECK(SameDoc(*a, *b), "the documents differ");
      break;
    }
    case 2: {  // a multipart/mixed open_revs answer
      auto a = ReadDocs(OpenRevsMultipartReader(boundary), whole);
      auto b = ReadDocs(OpenRevsMultipartReader(boundary), split);
      CheckSameError(a.ok() ? std::nullopt : std::optional<Error>(a.error()),
                     b.ok() ? std::nullopt : std::optional<Error>(b.error()));
      if (a.ok()) {
        FUZZ_CHECK(a->size() == b->size(), "document counts differ");
        for (size_t i = 0; i < a->size(); ++i) {
          FUZZ_CHECK(SameDoc((*a)[i], (*b)[i]), "document " + std::to_string(i) + " differs");
        }
      }
      break;
    }
  }
  // The header helpers on the first line taken as a Content-Type value.
  (void)MediaType(boundary);
  if (auto b = MultipartBoundary(boundary)) {
    FUZZ_CHECK(!b->empty() && b->find_first_of("\r\n") == std::string::npos,
               "MultipartBoundary gave an empty or CR/LF boundary");
  }
  return 0;
}

// Multipart bodies (RFC 2046) as CouchDB uses them for documents with
// attachments.
//
// Reading: `GET doc?open_revs=[...]&revs=true&latest=true` with
// `Accept: multipart/mixed` answers one outer part per revision: either
// `application/json` (a document without attachment bodies, or
// `{"missing":rev}` with `Content-Type: application/json; error="true"`), or a
// nested `multipart/related` whose first part is the document JSON (attachments
// marked `"follows":true`) and whose following parts are the bodies of those
// attachments in the order they appear in `_attachments`, each possibly with
// `Content-Encoding: gzip` (sent as stored, still compressed).
//
// Writing: `PUT db/doc?new_edits=false` with a `multipart/related` body in the
// same shape (document JSON first, then one part per "follows" attachment).
//
// MultipartParser is the streaming layer: it takes the body in chunks split
// anywhere and reports each part's headers, its data (in pieces, never
// buffered whole: only bytes that could be the start of a delimiter are held
// back, fewer than boundary length + 4) and its end. The preamble and the
// epilogue are ignored. Delimiter lines must end in CRLF, as RFC 2046 says.
// The readers on top of it collect documents and attachment bytes in memory.
//
// Errors use the code "bad_multipart" and name the problem and the byte
// offset: malformed framing or headers, a header section over
// max_header_bytes, parts that do not fit the CouchDB shape (permanent); a
// body that ends before the closing delimiter after one was seen (temporary:
// a dropped connection). A handler returning false gives "aborted". After an
// error a parser or reader stays failed and keeps returning it.
//
// All classes here are pure (no I/O) and not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "couchrepd/result.h"

namespace couchrepd {

// The value of parameter `name` (case-insensitive) in a header value such as
// `multipart/mixed; boundary="abc"` or `attachment; filename="a.bin"`; quoted
// strings are unquoted. nullopt if absent.
std::optional<std::string> HeaderParam(std::string_view header_value, std::string_view name);

// The lower-cased `type/subtype` of a Content-Type value, without parameters.
std::string MediaType(std::string_view content_type);

// The boundary of a multipart Content-Type (quoted or not); nullopt if absent,
// empty or containing CR/LF.
std::optional<std::string> MultipartBoundary(std::string_view content_type);

struct MultipartHeaders {
  // In order of appearance; names lower-cased, values without surrounding
  // whitespace (folded lines joined by one space).
  std::vector<std::pair<std::string, std::string>> fields;

  // The first field named `lower_name`; the view points into `fields`.
  std::optional<std::string_view> Get(std::string_view lower_name) const;
};

class MultipartParser {
 public:
  static constexpr size_t kDefaultMaxHeaderBytes = size_t{64} << 10;

  // `boundary` as in the Content-Type (without the leading "--"). An empty or
  // CR/LF-containing boundary makes every Feed/Finish fail. `max_header_bytes`
  // bounds each part's header section, its final empty line included.
  explicit MultipartParser(std::string boundary, size_t max_header_bytes = kDefaultMaxHeaderBytes);

  // Callbacks may be empty. Returning false stops parsing: Feed returns an
  // error with code "aborted". For each part: on_part_begin once, then
  // on_part_data zero or more times with non-empty pieces (valid only during
  // the call), then on_part_end once.
  struct Handler {
    std::function<bool(const MultipartHeaders&)> on_part_begin;
    std::function<bool(std::string_view data)> on_part_data;
    std::function<bool()> on_part_end;
  };

  // Consumes the next chunk of the body (any size).
  Status Feed(std::string_view chunk, const Handler& handler);
  // End of the body: an error unless the closing delimiter was seen.
  Status Finish();
  // The closing delimiter was seen (what follows is epilogue).
  bool done() const { return done_; }

 private:
  enum class State : uint8_t;

  Status Fail(Error error);
  Status Malformed(uint64_t offset, std::string what);
  Status Aborted(uint64_t offset);
  Status ScanForDelimiter(std::string_view chunk, size_t& i, const Handler& handler);
  Status OnDelimiter(uint64_t offset, const Handler& handler);
  Status ReadHeaders(std::string_view chunk, size_t& i, const Handler& handler);

  std::string delimiter_;  // CRLF "--" boundary
  size_t max_header_bytes_;
  State state_;
  std::optional<Error> error_;
  size_t matched_ = 0;      // delimiter_ bytes matched at the end of the input so far
  std::string header_buf_;  // CRLF + the header section received so far
  bool seen_delimiter_ = false;
  bool done_ = false;
  uint64_t offset_ = 0;  // body offset of the current chunk's first byte
};

struct OpenRevsAttachment {
  std::string name;          // the key in the document's _attachments
  std::string content_type;  // the part's Content-Type (else the JSON's content_type)
  std::string encoding;      // "" or the part's Content-Encoding, e.g. "gzip"
  std::string data;          // the bytes as sent (still compressed when encoding is set)
};

struct OpenRevsDoc {
  std::string json;      // raw JSON of the document (or of {"missing":rev})
  bool missing = false;  // CouchDB does not have this revision
  std::string missing_rev;
  std::vector<OpenRevsAttachment> attachments;  // "follows" attachments, JSON order
};

// Reads one multipart/related document: the JSON part, then one part per
// attachment marked "follows":true in its _attachments, in that order.
// Attachment names come from the JSON (CouchDB writes Content-Disposition
// filenames unescaped, so they are not relied on); each body's length is
// checked against the part's Content-Length and the stub's length (or
// encoded_length when it has an encoding).
class MultipartRelatedReader {
 public:
  explicit MultipartRelatedReader(
      std::string boundary, size_t max_header_bytes = MultipartParser::kDefaultMaxHeaderBytes);
  ~MultipartRelatedReader();
  MultipartRelatedReader(MultipartRelatedReader&&) noexcept;
  MultipartRelatedReader& operator=(MultipartRelatedReader&&) noexcept;

  Status Feed(std::string_view chunk);
  // The document once the closing delimiter was seen and every "follows"
  // attachment arrived.
  Result<OpenRevsDoc> Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads the multipart/mixed answer to GET doc?open_revs=[...] (Accept:
// multipart/mixed): one OpenRevsDoc per outer part, in the order received
// (CouchDB's order, not necessarily the requested one). A nested document
// that is malformed or cut short inside a complete outer part is a permanent
// error whose reason starts with "part N (multipart/related): ". An
// application/json part without "_id" holding "error"/"reason" (CouchDB
// failing that revision) is a temporary error with CouchDB's error and reason.
class OpenRevsMultipartReader {
 public:
  explicit OpenRevsMultipartReader(std::string outer_boundary);
  ~OpenRevsMultipartReader();
  OpenRevsMultipartReader(OpenRevsMultipartReader&&) noexcept;
  OpenRevsMultipartReader& operator=(OpenRevsMultipartReader&&) noexcept;

  Status Feed(std::string_view chunk);
  Result<std::vector<OpenRevsDoc>> Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Produces a multipart/related body for PUT db/doc?new_edits=false in pieces,
// so attachment bytes can be streamed between AttachmentPartHeader and
// AttachmentPartEnd. The body is, in order:
//   DocumentPart(json)
//   for each attachment marked "follows" in json's _attachments, same order:
//     AttachmentPartHeader(...), the attachment's bytes, AttachmentPartEnd()
//   Closing()
// This is byte for byte the framing CouchDB itself emits. The boundary must be
// 1-70 characters that cannot occur in the data after CRLF "--" (e.g. 32
// random hex digits); the caller supplies it (no randomness here).
class MultipartRelatedWriter {
 public:
  explicit MultipartRelatedWriter(std::string boundary);

  const std::string& boundary() const { return boundary_; }
  // multipart/related; boundary="..."
  std::string ContentType() const;
  // Delimiter, Content-Type: application/json, blank line, the JSON, CRLF.
  std::string DocumentPart(std::string_view doc_json) const;
  // Delimiter, Content-Disposition: attachment; filename="name", Content-Type,
  // Content-Length (when given), Content-Encoding (when not empty), blank
  // line. CR/LF and other control characters in the values are replaced so
  // they cannot break the header; an empty content type is sent as
  // application/octet-stream.
  std::string AttachmentPartHeader(std::string_view name, std::string_view content_type,
                                   std::string_view encoding,
                                   std::optional<uint64_t> length = std::nullopt) const;
  // CRLF ending an attachment's bytes.
  std::string AttachmentPartEnd() const { return "\r\n"; }
  // The final delimiter.
  std::string Closing() const { return "--" + boundary_ + "--"; }

  struct AttachmentInfo {
    std::string_view name;
    std::string_view content_type;
    std::string_view encoding;
    uint64_t length = 0;  // bytes that will be sent (encoded length when encoded)
  };
  // The exact body length (for Content-Length) when every attachment header
  // is written with its length.
  uint64_t BodyLength(size_t doc_json_size, const std::vector<AttachmentInfo>& attachments) const;

 private:
  std::string boundary_;
};

}  // namespace couchrepd

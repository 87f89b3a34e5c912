// ChangesParser: a streaming parser for CouchDB `_changes` responses.
//
// The changes reader gets the response body in whatever pieces the socket
// delivers. The parser takes those bytes in arbitrary chunks (split anywhere:
// inside a row, a string, an escape, a UTF-8 sequence or a number) and hands
// each complete row to a callback as soon as its last byte arrives, so a feed
// is never held whole in memory: only the row being received is buffered.
//
// The body is parsed as the JSON it is, never by its layout. Two shapes:
//   - kNormal (feed=normal and feed=longpoll): one object
//     {"results":[row,...],"last_seq":S,"pending":P}, members in any order
//     (last_seq may come before results), any JSON whitespace anywhere;
//   - kContinuous: top-level objects one after another (CouchDB puts a newline
//     after each), each a row; heartbeats are bare whitespace; the feed may end
//     with {"last_seq":S[,"pending":P]} (an object with last_seq and no id).
// A row is an object with a string "id", a "seq" and a "changes" array of
// {"rev":...}; "deleted" and "doc" (include_docs) are optional; other members
// are ignored. Each row is fully validated as JSON (simdjson) before use.
//
// Sequences are opaque: `seq` and `last_seq` are kept as the raw JSON text
// received (`3`, `"12-g1AAA..."`, `[3,"abc"]`), never converted or compared.
//
// Errors (error code "bad_changes_feed", reason naming the problem and the
// byte offset in the body):
//   - bytes that are not a valid feed (garbage, a non-object where a row
//     belongs, invalid JSON or UTF-8 in a row, a row without id/seq/changes,
//     a row larger than max_row_bytes, data after the end of the feed):
//     permanent;
//   - the body ending inside a value, or (kNormal) before the closing brace:
//     temporary, reported by Finish() (a dropped connection; resume from the
//     last row's seq);
//   - a row {"error":E,"reason":R} (CouchDB failing after the response
//     started): temporary, with CouchDB's error and reason as they are;
//   - the row handler returning false: permanent, error code "aborted".
// After any error the parser stays failed: Feed and Finish return the same
// error again.
//
// Not thread-safe; one parser per response. Pure: no I/O, clock or threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "couchrepd/result.h"

namespace couchrepd {

struct ChangeRow {
  std::string id;                 // unescaped document id
  std::string seq;                // raw JSON text of "seq", exactly as received
  std::vector<std::string> revs;  // "changes":[{"rev":..},...], in feed order
  bool deleted = false;           // "deleted":true
  std::string doc;                // raw JSON text of "doc" (include_docs), else empty
};

enum class FeedKind { kNormal, kContinuous };  // longpoll has the normal shape

class ChangesParser {
 public:
  static constexpr size_t kDefaultMaxRowBytes = size_t{64} << 20;

  // `max_row_bytes` bounds the memory held for one row (and for any other
  // top-level value, e.g. last_seq): a larger one is an error.
  explicit ChangesParser(FeedKind kind, size_t max_row_bytes = kDefaultMaxRowBytes);
  ~ChangesParser();
  ChangesParser(ChangesParser&&) noexcept;
  ChangesParser& operator=(ChangesParser&&) noexcept;
  ChangesParser(const ChangesParser&) = delete;
  ChangesParser& operator=(const ChangesParser&) = delete;

  // Called once per complete row, in feed order. Return false to stop early:
  // Feed then returns an "aborted" error and consumes nothing more.
  using RowHandler = std::function<bool(ChangeRow&&)>;

  // Consumes the next chunk of the body (any size, including empty) and calls
  // `on_row` for every row completed by it. `chunk` is not retained.
  Status Feed(std::string_view chunk, const RowHandler& on_row);

  // End of the body. An error when the body stopped inside a value or, for
  // kNormal, before the closing brace. For kContinuous, ending between rows
  // without a last_seq object is not an error (complete() stays false).
  Status Finish();

  // Raw JSON text of last_seq once seen (kNormal: the member; kContinuous:
  // the final object's), else nullopt.
  const std::optional<std::string>& last_seq() const { return last_seq_; }
  // "pending" when present and an integer.
  std::optional<int64_t> pending() const { return pending_; }
  // kNormal: the closing brace was seen. kContinuous: the last_seq object was.
  bool complete() const { return complete_; }
  // Rows handed to the handler so far.
  uint64_t rows() const { return rows_; }

 private:
  enum class State : uint8_t;
  enum class CaptureKind : uint8_t;
  struct Decoder;  // simdjson parsers, kept across rows for their buffers

  void Append(std::string_view bytes);
  Status Fail(Error error);
  Status Malformed(uint64_t offset, std::string what);
  Status Unexpected(char c, uint64_t offset, std::string_view expected);
  Status Step(std::string_view chunk, size_t& i, const RowHandler& on_row);
  Status StartValue(std::string_view chunk, size_t& i);
  size_t ScanValue(std::string_view chunk, size_t i);
  Status CompleteValue(std::string_view chunk, size_t end, const RowHandler& on_row);
  Status OnMember();
  Status OnObject(const RowHandler& on_row);
  Status OnClosingBrace(uint64_t offset);

  FeedKind kind_;
  size_t max_row_bytes_;
  State state_;
  std::unique_ptr<Decoder> decoder_;
  std::optional<Error> error_;

  // The value being captured: bytes from earlier chunks in buf_, the rest from
  // cap_start_ in the current chunk.
  CaptureKind cap_kind_;
  std::string buf_;
  size_t cap_start_ = 0;
  uint64_t cap_offset_ = 0;  // body offset of the value's first byte
  int depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;

  uint64_t offset_ = 0;  // body offset of the current chunk's first byte
  std::string key_;      // kNormal: the member whose value is being read
  bool seen_results_ = false;
  std::optional<std::string> top_error_;  // kNormal: an "error" member
  std::optional<std::string> top_reason_;

  std::optional<std::string> last_seq_;
  std::optional<int64_t> pending_;
  bool complete_ = false;
  uint64_t rows_ = 0;
};

// The text to send as the `since` query value (before URL encoding) for a raw
// JSON sequence: a JSON string gives its unescaped content, anything else
// (a number, an array) its raw text, trimmed of surrounding whitespace.
std::string SeqToSinceParam(std::string_view raw_seq);

}  // namespace couchrepd

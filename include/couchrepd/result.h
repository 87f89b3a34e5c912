// Result<T>: errors as values.
//
// Every operation that can fail for reasons outside the program (network, a
// remote server, user input) returns a Result. An Error says whether trying
// again may help (kTemporary: connection refused, timeout, 5xx, 408, 429) or
// not (kPermanent: 4xx, invalid input). The HTTP status and CouchDB's
// `error`/`reason` pair are kept when there was a response. Error messages never
// contain credentials: whoever builds one passes URLs through RedactUrl first.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace couchrepd {

enum class ErrorKind {
  kTemporary,  // retrying later may succeed
  kPermanent,  // retrying the same thing will fail the same way
};

struct Error {
  ErrorKind kind = ErrorKind::kPermanent;
  int http_status = 0;    // 0 when no HTTP response was received
  std::string error;      // CouchDB `error` field or our own short code
  std::string reason;     // CouchDB `reason` field or a plain-words explanation

  bool temporary() const { return kind == ErrorKind::kTemporary; }
  // "error: reason" (or whichever part is present).
  std::string Message() const {
    if (error.empty()) return reason;
    if (reason.empty()) return error;
    return error + ": " + reason;
  }

  static Error Temporary(std::string error, std::string reason, int status = 0) {
    return Error{ErrorKind::kTemporary, status, std::move(error), std::move(reason)};
  }
  static Error Permanent(std::string error, std::string reason, int status = 0) {
    return Error{ErrorKind::kPermanent, status, std::move(error), std::move(reason)};
  }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}      // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
struct Ok {};
using Status = Result<Ok>;
inline Status OkStatus() { return Ok{}; }

}  // namespace couchrepd

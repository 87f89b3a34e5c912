// HttpSession: the request loop shared by all CouchClients of one server.
//
// Holds the login state for cookie authentication, the per-method 429
// pacers and a cap on its own requests in flight; its keep-alive
// connections come from the ConnectionPool shared by every session with the
// same origin, credentials and connection settings (connection_pool.h).
// Execute() runs one logical request: pacing pause, authentication headers,
// the HTTP exchange (optionally streaming the response body and/or the
// request body), redirects, and retries with RetryPlan. Only this file's
// implementation includes httplib.h. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "connection_pool.h"
#include "couchrepd/couch_client.h"

namespace httplib {
class Client;
}

namespace couchrepd {

struct HttpCall {
  std::string method = "GET";
  std::string target;      // absolute path with encoded query: "/db/_changes?since=0"
  Headers headers;         // endpoint headers plus call-specific ones
  // How many of `headers` (at the front) are the endpoint's custom headers:
  // like credentials, they are dropped when a redirect leaves the origin.
  size_t endpoint_headers = 0;
  std::string body;
  std::string content_type;
  // Streaming upload (instead of body): total length and a writer that
  // pushes the bytes into the sink. Not retried once started.
  uint64_t upload_length = 0;
  std::function<bool(const std::function<bool(std::string_view)>&)> upload;
  // Streaming download: called with each body chunk of a 2xx answer; return
  // false to stop (the call then succeeds with what was read).
  std::function<bool(std::string_view)> on_data;
  // Called once with the status and headers before on_data.
  std::function<void(const HttpResponse&)> on_head;
  CancelToken* cancel = nullptr;
  // A dedicated connection (outside the pool), e.g. for a continuous feed,
  // with its own inactivity timeout.
  bool dedicated = false;
  // Pooled, but not counted against the session's max_connections.
  bool outside_session_cap = false;
  std::optional<Duration> read_timeout;
  // Deliver the body as the server encoded it (e.g. a gzip-stored attachment
  // stays gzip): asks for gzip and turns decompression off. Dedicated client.
  bool raw_body = false;
};

class HttpSession {
 public:
  HttpSession(const Url& url, Credentials credentials, HttpOptions options, Clock& clock);
  ~HttpSession();

  Result<HttpResponse> Execute(HttpCall& call);
  // The token used by calls that carry none (a job's clients take the job's
  // token, so a stop interrupts every request in flight). Null: none.
  void SetDefaultCancel(CancelToken* cancel) { default_cancel_.store(cancel); }
  const HttpOptions& options() const { return options_; }
  Clock& clock() { return clock_; }
  const std::string& origin() const { return origin_; }
  // host:port for metrics labels.
  const std::string& host_label() const { return host_label_; }
  const Credentials& credentials() const { return credentials_; }


 private:
  struct Attempt;
  // Null when `cancel` fires while waiting for the host's cap.
  std::unique_ptr<httplib::Client> Acquire(CancelToken* cancel, bool session_cap);
  void Release(std::unique_ptr<httplib::Client> client, bool reusable, bool session_cap);
  Result<HttpResponse> Once(HttpCall& call, const std::string& target, bool with_auth,
                            bool& streamed_any, httplib::Client* foreign);
  Status EnsureLogin(bool force);
  void AddAuthHeaders(Headers& headers);
  void NoteSetCookie(const HttpResponse& response);
  void Notify(HttpEvent::Kind kind, int status) const;
  Pacer& PacerFor(const std::string& method);

  Url url_;
  std::string origin_;
  std::string host_label_;
  Credentials credentials_;
  HttpOptions options_;
  Clock& clock_;

  PoolKey pool_key_;
  std::shared_ptr<ConnectionPool> pool_;
  std::mutex slots_mu_;
  std::condition_variable slots_cv_;
  int in_use_ = 0;  // this session's pooled calls in flight

  std::mutex auth_mu_;
  std::mutex login_mu_;  // held through a cookie login (single flight)
  std::string cookie_;          // "AuthSession=..."
  TimePoint cookie_expires_{};  // refresh before this

  std::atomic<CancelToken*> default_cancel_{nullptr};

  std::mutex pacing_mu_;
  std::map<std::string, Pacer> pacers_;
};

// Builds an Error from a non-2xx response (CouchDB's error/reason when the
// body has them). 408, 429 and 5xx are temporary.
Error ErrorFromResponse(const HttpResponse& response, std::string_view what);

// Makes room for `need` bytes in a body read whole, growing in powers of two
// up to `cap` (plus simdjson's padding), so a body near the cap peaks at the
// cap; `expected` is the announced length (0 when unknown).
void ReserveBody(std::string& body, size_t need, uint64_t expected, uint64_t cap);

}  // namespace couchrepd

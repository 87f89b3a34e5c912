#include "http_session.h"

#include <cerrno>
#include <httplib.h>
#include <openssl/x509.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <map>

#include "couchrepd/encoding.h"
#include "couchrepd/limits.h"

namespace couchrepd {

namespace {

constexpr Duration kSleepSlice = std::chrono::milliseconds(50);
// An error answer's body is kept up to this size (only error/reason are used).
constexpr size_t kMaxErrorBodyBytes = 64 * 1024;
// CouchDB's `error` codes are short words.
constexpr size_t kMaxErrorCodeBytes = 100;
// Refresh a session cookie when less than this share of its lifetime is left.
constexpr double kCookieRefreshShare = 0.1;
// CouchDB's default session lifetime when Max-Age is absent.
constexpr Duration kDefaultCookieLifetime = std::chrono::minutes(10);

HttpResponse HeadOf(const httplib::Response& res) {
  HttpResponse out;
  out.status = res.status;
  for (const auto& [name, value] : res.headers) out.headers.emplace_back(AsciiLower(name), value);
  return out;
}

// The response, its body moved (never copied: it may be 64 MiB).
HttpResponse ToResponse(httplib::Response& res) {
  HttpResponse out = HeadOf(res);
  out.body = std::move(res.body);
  return out;
}


bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::string FormEncode(std::string_view v) { return PercentEncode(v); }

// Headers that carry credentials (lower-case names). They are sent only to
// the endpoint's own origin, whether they come from the credentials or from
// the endpoint's custom headers (as curl does on a redirect to another host).
bool IsCredentialHeader(std::string_view lower_name) {
  return lower_name == "authorization" || lower_name == "proxy-authorization" ||
         lower_name == "cookie" || lower_name.rfind("x-auth-couchdb-", 0) == 0;
}

}  // namespace

struct CancelToken::State {
  std::mutex mu;
  bool cancelled = false;
  uint64_t next_id = 1;
  std::map<uint64_t, std::function<void()>> closers;
};

CancelToken::CancelToken() : state_(std::make_shared<State>()) {}

void CancelToken::Cancel() {
  // The closers run under the lock: RemoveCloser, called when a request
  // ends, waits for them, so a connection is never destroyed while being
  // closed.
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->cancelled = true;
  for (auto& [id, closer] : state_->closers) closer();
}

bool CancelToken::cancelled() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->cancelled;
}

uint64_t CancelToken::AddCloser(std::function<void()> closer) {
  std::lock_guard<std::mutex> lock(state_->mu);
  uint64_t id = state_->next_id++;
  state_->closers.emplace(id, std::move(closer));
  return id;
}

void CancelToken::RemoveCloser(uint64_t id) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->closers.erase(id);
}

std::optional<std::string> HttpResponse::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return std::nullopt;
}

bool SleepUnlessCancelled(Clock& clock, Duration d, CancelToken* cancel) {
  while (d > Duration(0)) {
    if (cancel && cancel->cancelled()) return false;
    Duration step = std::min(d, kSleepSlice);
    clock.SleepFor(step);
    d -= step;
  }
  return !(cancel && cancel->cancelled());
}

Error ErrorFromResponse(const HttpResponse& response, std::string_view what) {
  std::string error;
  std::string reason;
  if (!response.body.empty() && response.body.size() <= kMaxErrorBodyBytes) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(response.body).get(doc) == simdjson::SUCCESS && doc.is_object()) {
      std::string_view s;
      if (doc["error"].get(s) == simdjson::SUCCESS) error = CapText(s, kMaxErrorCodeBytes);
      if (doc["reason"].get(s) == simdjson::SUCCESS) reason = CapText(s);
    }
  }
  int status = response.status;
  if (error.empty()) {
    switch (status) {
      case 400: error = "bad_request"; break;
      case 401: error = "unauthorized"; break;
      case 403: error = "forbidden"; break;
      case 404: error = "not_found"; break;
      case 409: error = "conflict"; break;
      case 412: error = "file_exists"; break;
      case 413: error = "too_large"; break;
      case 415: error = "bad_content_type"; break;
      case 429: error = "too_many_requests"; break;
      default: error = "http_" + std::to_string(status);
    }
  }
  std::string full_reason = CapText(what) + " answered HTTP " + std::to_string(status);
  if (!reason.empty()) {
    full_reason += ": " + reason;
  } else if (!response.body.empty()) {
    // Not CouchDB's JSON (an HTML error page, plain text): say what it was.
    auto type = response.Header("content-type");
    full_reason += " with a " + CapText(type.value_or("untyped"), 100) + " body of " +
                   std::to_string(response.body.size()) + " bytes";
  }
  bool temporary = status == 408 || status == 429 || status >= 500;
  Error e = temporary ? Error::Temporary(error, RedactSecrets(full_reason), status)
                      : Error::Permanent(error, RedactSecrets(full_reason), status);
  return e;
}

HttpSession::HttpSession(const Url& url, Credentials credentials, HttpOptions options,
                         Clock& clock)
    : url_(url),
      origin_(url.Origin()),
      host_label_(url.HostForUrl() + ":" + std::to_string(url.port)),
      credentials_(std::move(credentials)),
      options_(std::move(options)),
      clock_(clock) {
  if (!url_.explicit_port) origin_ += ":" + std::to_string(url_.port);
  pool_key_ = MakePoolKey(url_, origin_, credentials_, options_);
  pool_ = ConnectionPool::For(pool_key_);
}

HttpSession::~HttpSession() = default;

void HttpSession::Notify(HttpEvent::Kind kind, int status) const {
  if (options_.observer) options_.observer(HttpEvent{kind, host_label_, status});
}

std::unique_ptr<httplib::Client> HttpSession::Acquire(CancelToken* cancel, bool session_cap) {
  if (!session_cap) return pool_->Acquire(cancel);
  {
    // The session's own cap (a job's http_connections) first, then the
    // host's (the shared pool).
    std::unique_lock<std::mutex> lock(slots_mu_);
    int max = std::max(1, options_.max_connections);
    slots_cv_.wait(lock, [&] { return in_use_ < max; });
    ++in_use_;
  }
  auto client = pool_->Acquire(cancel);
  if (!client) {
    std::lock_guard<std::mutex> lock(slots_mu_);
    --in_use_;
    slots_cv_.notify_one();
  }
  return client;
}

void HttpSession::Release(std::unique_ptr<httplib::Client> client, bool reusable,
                          bool session_cap) {
  pool_->Release(std::move(client), reusable);
  if (!session_cap) return;
  std::lock_guard<std::mutex> lock(slots_mu_);
  --in_use_;
  slots_cv_.notify_one();
}

Pacer& HttpSession::PacerFor(const std::string& method) {
  auto it = pacers_.find(method);
  if (it == pacers_.end()) it = pacers_.emplace(method, Pacer(options_.pacing)).first;
  return it->second;
}

void HttpSession::NoteSetCookie(const HttpResponse& response) {
  for (const auto& [name, value] : response.headers) {
    if (name != "set-cookie") continue;
    if (value.rfind("AuthSession=", 0) != 0) continue;
    std::string cookie = value.substr(0, value.find(';'));
    Duration lifetime = kDefaultCookieLifetime;
    std::string lower = AsciiLower(value);
    size_t ma = lower.find("max-age=");
    if (ma != std::string::npos) {
      long seconds = std::strtol(lower.c_str() + ma + 8, nullptr, 10);
      if (seconds > 0) lifetime = std::chrono::seconds(seconds);
    }
    std::lock_guard<std::mutex> lock(auth_mu_);
    if (cookie == "AuthSession=") continue;  // a logout, not a renewal
    cookie_ = cookie;
    cookie_expires_ = clock_.Now() + std::chrono::duration_cast<Duration>(
                                         lifetime * (1.0 - kCookieRefreshShare));
  }
}

Status HttpSession::EnsureLogin(bool force) {
  // One login at a time: threads that need a cookie at once wait for the
  // first one's instead of each logging in.
  std::lock_guard<std::mutex> single_flight(login_mu_);
  {
    std::lock_guard<std::mutex> lock(auth_mu_);
    if (!force && !cookie_.empty() && clock_.Now() < cookie_expires_) return OkStatus();
  }
  HttpCall login;
  login.method = "POST";
  login.target = "/_session";
  login.body = "name=" + FormEncode(credentials_.username) +
               "&password=" + FormEncode(credentials_.password);
  login.content_type = "application/x-www-form-urlencoded";
  login.headers.emplace_back("Accept", "application/json");
  bool streamed = false;
  auto res = Once(login, login.target, /*with_auth=*/false, streamed, nullptr);
  if (!res.ok()) return res.error();
  if (res->status == 401 || res->status == 403) {
    return Error::Permanent("unauthorized",
                            "cookie login to " + url_.Origin() + "/_session as `" +
                                credentials_.username + "` was refused (HTTP " +
                                std::to_string(res->status) + ")",
                            res->status);
  }
  if (res->status / 100 != 2) return ErrorFromResponse(*res, "cookie login to " + origin_);
  NoteSetCookie(*res);
  std::lock_guard<std::mutex> lock(auth_mu_);
  if (cookie_.empty()) {
    return Error::Permanent("unauthorized",
                            "cookie login to " + url_.Origin() +
                                "/_session returned no AuthSession cookie",
                            res->status);
  }
  return OkStatus();
}

void HttpSession::AddAuthHeaders(Headers& headers) {
  switch (credentials_.kind) {
    case Credentials::Kind::kNone:
      break;
    case Credentials::Kind::kBasic:
      headers.emplace_back("Authorization", "Basic " + Base64Encode(credentials_.username + ":" +
                                                                    credentials_.password));
      break;
    case Credentials::Kind::kCookie: {
      std::lock_guard<std::mutex> lock(auth_mu_);
      if (!cookie_.empty()) headers.emplace_back("Cookie", cookie_);
      break;
    }
    case Credentials::Kind::kProxy: {
      const ProxyAuth& p = credentials_.proxy;
      std::string roles;
      for (const auto& r : p.roles) roles += (roles.empty() ? "" : ",") + r;
      headers.emplace_back(p.username_header, p.name);
      headers.emplace_back(p.roles_header, roles);
      if (!p.secret.empty()) headers.emplace_back(p.token_header, HmacSha256Hex(p.secret, p.name));
      break;
    }
  }
}

Result<HttpResponse> HttpSession::Once(HttpCall& call, const std::string& target, bool with_auth,
                                       bool& streamed_any, httplib::Client* foreign) {
  std::unique_ptr<httplib::Client> owned;
  httplib::Client* client = foreign;
  bool pooled = false;
  if (!client) {
    if (call.dedicated || call.read_timeout || call.raw_body) {
      owned = NewHttpClient(pool_key_, call.read_timeout, !call.raw_body);
    } else {
      owned = Acquire(call.cancel, !call.outside_session_cap);
      if (!owned) return Error::Temporary("cancelled", "the request was cancelled");
      pooled = true;
    }
    client = owned.get();
  }
  uint64_t closer = 0;
  if (call.cancel) {
    closer = call.cancel->AddCloser([client] { client->stop(); });
    if (call.cancel->cancelled()) {
      call.cancel->RemoveCloser(closer);
      if (pooled) Release(std::move(owned), true, !call.outside_session_cap);
      return Error::Temporary("cancelled", "the request was cancelled");
    }
  }

  httplib::Headers headers;
  bool has_accept = false;
  for (size_t i = 0; i < call.headers.size(); ++i) {
    const auto& [name, value] = call.headers[i];
    std::string lower = AsciiLower(name);
    // Off the endpoint's origin: neither credentials nor its custom headers.
    if (!with_auth && (IsCredentialHeader(lower) || i < call.endpoint_headers)) continue;
    if (lower == "accept") has_accept = true;
    headers.emplace(name, value);
  }
  if (!has_accept) headers.emplace("Accept", "application/json");
  // JSON over compression costs CPU on both ends for no gain on a LAN; only
  // raw attachment downloads take the server's stored encoding as it is.
  headers.emplace("Accept-Encoding", call.raw_body ? "gzip" : "identity");
  headers.emplace("User-Agent", options_.user_agent);
  if (with_auth) {
    Headers auth;
    AddAuthHeaders(auth);
    for (auto& [n, v] : auth) headers.emplace(n, v);
  }

  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  bool ok;
  int send_errno = 0;
  int head_status = 0;
  uint64_t expected_length = 0;  // the answer's Content-Length, when it has one
  enum class OverCap { kNo, kBody, kErrorBody, kHeaders };
  OverCap over_cap = OverCap::kNo;
  if (call.upload) {
    uint64_t total = call.upload_length;
    auto upload = call.upload;
    httplib::ContentProvider provider = [upload](size_t offset, size_t, httplib::DataSink& sink) {
      if (offset != 0) return false;
      return upload([&sink](std::string_view data) {
        return sink.write(data.data(), data.size());
      });
    };
    httplib::Result r = call.method == "POST"
                            ? client->Post(target, headers, total, provider, call.content_type)
                            : client->Put(target, headers, total, provider, call.content_type);
    err = r.error();
    ok = static_cast<bool>(r);
    if (ok) res = r.value();
    streamed_any = true;  // never replay an upload
  } else {
    httplib::Request req;
    req.method = call.method;
    req.path = target;
    req.headers = headers;
    if (!call.body.empty() || call.method == "POST" || call.method == "PUT") {
      req.body = call.body;
      if (!call.content_type.empty()) {
        req.headers.emplace("Content-Type", call.content_type);
      } else if (call.method == "POST" || call.method == "PUT") {
        req.headers.emplace("Content-Type", "application/json");
      }
    }
    req.response_handler = [&](const httplib::Response& r) {
      head_status = r.status;
      if (r.headers.size() > kMaxResponseHeaders) {
        over_cap = OverCap::kHeaders;
        return false;
      }
      if (call.on_data && r.status / 100 == 2 && call.on_head) call.on_head(HeadOf(r));
      if (r.has_header("Content-Length")) {
        expected_length = r.get_header_value<uint64_t>("Content-Length");
      }
      return true;
    };
    // Every body is read through a receiver with a byte cap (SPEC §10):
    // a 2xx body read whole stops at max_response_bytes, an error body at
    // 64 KiB (what is kept then makes the error message).
    req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
      bool success = head_status / 100 == 2;
      if (call.on_data && success) {
        streamed_any = true;
        return call.on_data(std::string_view(data, len));
      }
      uint64_t cap = success ? options_.max_response_bytes : kMaxErrorBodyBytes;
      if (res.body.size() + len > cap) {
        ReserveBody(res.body, static_cast<size_t>(cap), expected_length, cap);
        res.body.append(data, static_cast<size_t>(cap - res.body.size()));
        over_cap = success ? OverCap::kBody : OverCap::kErrorBody;
        return false;
      }
      ReserveBody(res.body, res.body.size() + len, expected_length, cap);
      res.body.append(data, len);
      return true;
    };
    errno = 0;
    ok = client->send(req, res, err);
    send_errno = errno;
  }
  if (call.cancel) call.cancel->RemoveCloser(closer);

  if (!ok) {
    if (pooled) Release(nullptr, false, !call.outside_session_cap);
    if (call.cancel && call.cancel->cancelled()) {
      return Error::Temporary("cancelled", "the request was cancelled");
    }
    std::string what = call.method + " " + url_.Origin() + target.substr(0, target.find('?'));
    if (over_cap == OverCap::kErrorBody) {
      // An error answer with a huge body: its first 64 KiB make the error.
      Notify(HttpEvent::Kind::kResponse, head_status);
      HttpResponse cut = ToResponse(res);
      cut.status = head_status;
      return cut;
    }
    if (over_cap == OverCap::kBody) {
      Notify(HttpEvent::Kind::kResponse, head_status);
      return Error::Permanent("response_too_large",
                              RedactSecrets(CapText(what) + " answered more than " +
                                            std::to_string(options_.max_response_bytes) +
                                            " bytes (limits.max_response_bytes)"),
                              head_status);
    }
    if (over_cap == OverCap::kHeaders) {
      Notify(HttpEvent::Kind::kResponse, head_status);
      return Error::Permanent("bad_response",
                              RedactSecrets(CapText(what) + " answered more than " +
                                            std::to_string(kMaxResponseHeaders) + " headers"),
                              head_status);
    }
    if (err == httplib::Error::Canceled && head_status / 100 == 2) {
      // on_data asked to stop: a success with what was read.
      HttpResponse partial;
      partial.status = head_status;
      return partial;
    }
    Notify(HttpEvent::Kind::kConnectionError, 0);
    std::string reason = CapText(what) + " failed: " + httplib::to_string(err);
    if (err == httplib::Error::Read) reason += " (connection closed or silent past the timeout)";
    if (send_errno == EMFILE || send_errno == ENFILE) {
      // Out of file descriptors: say so, not just "connection failed" (SPEC §10).
      reason += " (too many open files: raise LimitNOFILE / ulimit -n, or lower max_jobs)";
      return Error::Temporary("too_many_open_files", RedactSecrets(reason));
    }
    if (err == httplib::Error::SSLServerVerification) {
      // httplib reports an untrusted chain and a host name mismatch alike;
      // OpenSSL's verify result tells them apart.
      long verify = client->get_openssl_verify_result();
      std::string why;
      if (verify != X509_V_OK) {
        why = "the server's certificate is not trusted (" +
              std::string(X509_verify_cert_error_string(verify)) + "); " +
              (options_.ca_file.empty()
                   ? "set ca_file to the CA that signed it, or turn tls_verify off"
                   : "it is not signed by the CA in " + options_.ca_file);
      } else {
        why = "the server's certificate is not valid for this host name";
      }
      return Error::Permanent("tls_verification_failed", RedactSecrets(what + " failed: " + why));
    }
    return Error::Temporary("connection_failed", RedactSecrets(reason));
  }
  if (pooled) Release(std::move(owned), true, !call.outside_session_cap);
  Notify(HttpEvent::Kind::kResponse, res.status);
  HttpResponse out = ToResponse(res);
  if (head_status != 0) out.status = head_status;
  return out;
}

Result<HttpResponse> HttpSession::Execute(HttpCall& call) {
  if (!call.cancel) call.cancel = default_cancel_.load();
  const bool cookie_auth = credentials_.kind == Credentials::Kind::kCookie;
  if (cookie_auth) {
    Status login = EnsureLogin(false);
    if (!login.ok() && !login.error().temporary()) return login.error();
  }
  RetryPlan plan(options_.retry, clock_.Now());
  std::string target = call.target;
  bool same_origin = true;
  std::unique_ptr<httplib::Client> foreign;
  int redirects = 0;
  bool relogged = false;

  while (true) {
    {
      Duration pause;
      {
        std::lock_guard<std::mutex> lock(pacing_mu_);
        pause = PacerFor(call.method).Pause();
      }
      if (pause > Duration(0) && !SleepUnlessCancelled(clock_, pause, call.cancel)) {
        return Error::Temporary("cancelled", "the request was cancelled");
      }
    }
    bool streamed_any = false;
    auto result = Once(call, target, same_origin, streamed_any, foreign.get());
    Error failure;
    if (result.ok()) {
      HttpResponse& response = *result;
      if (cookie_auth && same_origin) NoteSetCookie(response);
      if (response.status == 429) {
        Notify(HttpEvent::Kind::kRateLimited, 429);
        bool at_max;
        {
          std::lock_guard<std::mutex> lock(pacing_mu_);
          Pacer& pacer = PacerFor(call.method);
          pacer.OnRateLimited(clock_.Now());
          at_max = pacer.AtMax();
        }
        if (at_max) {
          return Error::Temporary("max_backoff",
                                  url_.Origin() + " kept answering 429 Too Many Requests", 429);
        }
        continue;  // 429 does not spend retries
      }
      {
        std::lock_guard<std::mutex> lock(pacing_mu_);
        PacerFor(call.method).OnSuccess(clock_.Now());
      }
      if (IsRedirect(response.status) && redirects < options_.max_redirects) {
        auto location = response.Header("location");
        if (location) {
          ++redirects;
          if (location->rfind("/", 0) == 0) {
            target = *location;
          } else {
            auto next = ParseUrl(*location);
            if (!next.ok()) return next.error();
            target = next->PathAndQuery();
            std::string next_origin = next->Origin();
            if (!next->explicit_port) next_origin += ":" + std::to_string(next->port);
            same_origin = next_origin == origin_;
            foreign.reset();
            if (!same_origin) {
              // Credentials are kept only for the same origin.
              PoolKey there = pool_key_;
              there.origin = next_origin;
              there.https = next->scheme == "https";
              foreign = NewHttpClient(there, call.read_timeout, !call.raw_body);
            }
          }
          continue;
        }
      }
      if (response.status == 401 && cookie_auth && same_origin && !relogged) {
        relogged = true;
        Status login = EnsureLogin(true);
        if (!login.ok()) return login.error();
        continue;
      }
      if (response.status < 500 && response.status != 408) return result;
      failure = ErrorFromResponse(response, call.method + " " + url_.Origin() +
                                                target.substr(0, target.find('?')));
    } else {
      failure = result.error();
      if (failure.error == "cancelled") return failure;
    }
    if (streamed_any) return failure;  // a stream cannot be replayed here
    auto wait = plan.NextWait(failure, clock_.Now());
    if (!wait) {
      if (plan.retries_done() > 0) {
        failure.reason += " (after " + std::to_string(plan.retries_done()) + " retries)";
      }
      return failure;
    }
    Notify(HttpEvent::Kind::kRetry, failure.http_status);
    if (!SleepUnlessCancelled(clock_, *wait, call.cancel)) {
      return Error::Temporary("cancelled", "the request was cancelled");
    }
  }
}

// Makes room for `need` bytes in a body read whole: the capacity doubles in
// powers of two up to `cap`, so a body near the cap peaks at the cap, not at
// twice it (std::string's own growth from 15 bytes overshoots 64 MiB to
// 120 MiB). `expected` is the announced Content-Length (0 when unknown).
void ReserveBody(std::string& body, size_t need, uint64_t expected, uint64_t cap) {
  if (need <= body.capacity()) return;
  uint64_t want = std::max<uint64_t>(uint64_t{1} << 16, body.capacity() + 1);
  if (expected >= need) want = std::max<uint64_t>(want, expected);
  while (want < need) want *= 2;
  // Room for simdjson's padding too, so the body is parsed where it is.
  body.reserve(static_cast<size_t>(std::min(want, std::max<uint64_t>(cap, need))) +
               simdjson::SIMDJSON_PADDING);
}

}  // namespace couchrepd

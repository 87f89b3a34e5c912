// ChangeWatcher: `_changes` longpolls of many databases on one thread (libcurl multi).
#include "couchrepd/change_watcher.h"

#include <curl/curl.h>
#include <pthread.h>
#include <simdjson.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <string_view>

#include "couchrepd/changes_parser.h"
#include "couchrepd/encoding.h"
#include "couchrepd/limits.h"
#include "couchrepd/url.h"
#include "http_session.h"

namespace couchrepd {

namespace {

using namespace std::chrono_literals;

// A longpoll answer with limit=1 is a few hundred bytes; anything this big is
// not CouchDB's.
constexpr size_t kMaxBodyBytes = 1 << 20;
// Receive buffer per transfer (libcurl's default is 16 KiB, kept per handle:
// with thousands of watches the default would cost megabytes for nothing).
constexpr long kReceiveBufferBytes = 4096;
// curl_multi_poll's wait when nothing is due (curl's own timers and
// curl_multi_wakeup end it sooner).
constexpr int kIdlePollMs = 60'000;
// An empty answer that came sooner than this (or half the longpoll timeout,
// whichever is shorter) after its request is asked again only then.
constexpr Duration kMinReissueSpacing = 1s;
// After curl_multi_poll failed, before the next round.
constexpr Duration kPollErrorPause = 10ms;
// TCP keep-alive: probe a connection idle this long, then this often.
constexpr long kKeepIdleSeconds = 30;
constexpr long kKeepIntervalSeconds = 10;

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool HasLineBreakOrNul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

}  // namespace

struct ChangeWatcher::Transfer {
  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    if (headers) curl_slist_free_all(headers);
  }

  uint64_t id = 0;
  std::function<void(Status)> done;
  std::optional<Error> failed;  // set by Watch(): finish at once with this
  std::string what;             // "GET <redacted db url>_changes", for errors
  std::string base_url;         // the request URL up to the since value
  std::string since;            // the `since` query value, not yet encoded
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;
  bool too_large = false;
  bool in_multi = false;
  TimePoint issued_at{};
  std::optional<TimePoint> deferred_until;
  char error_buffer[CURL_ERROR_SIZE] = {};
};

namespace {

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* body = static_cast<std::string*>(user);
  size_t n = size * count;
  if (body->size() + n > kMaxBodyBytes) {
    body->append(data, kMaxBodyBytes - body->size());
    return 0;  // CURLE_WRITE_ERROR: the transfer ends here
  }
  body->append(data, n);
  return n;
}

// Appends "Name: value" (curl sends "Name;" as a header with an empty value).
bool AddHeader(curl_slist*& list, const std::string& name, const std::string& value) {
  std::string line = value.empty() ? name + ";" : name + ": " + value;
  curl_slist* grown = curl_slist_append(list, line.c_str());
  if (!grown) return false;
  list = grown;
  return true;
}

// Sets every option of a longpoll but its URL. Returns an Error for settings
// that cannot work (they finish the watch at once).
std::optional<Error> Configure(CURL* easy, curl_slist*& headers, std::string* body,
                               char* error_buffer, const Endpoint& db, const TlsSettings& tls,
                               const ChangeWatcher::Options& options, const std::string& what) {
  const Credentials& c = db.credentials;
  if (c.kind == Credentials::Kind::kCookie) {
    return Error::Permanent("unsupported_auth",
                            RedactSecrets(what + ": cookie authentication is not supported by "
                                                 "the change watcher"));
  }
  bool headers_ok = AddHeader(headers, "Accept", "application/json");
  for (const auto& [name, value] : db.headers) {
    if (name.empty() || HasLineBreakOrNul(name) || HasLineBreakOrNul(value) ||
        name.find(':') != std::string::npos) {
      return Error::Permanent("bad_request",
                              RedactSecrets(what + ": a custom header has a bad name or value"));
    }
    headers_ok = headers_ok && AddHeader(headers, name, value);
  }
  if (c.kind == Credentials::Kind::kProxy) {
    // Exactly as HttpSession::AddAuthHeaders.
    const ProxyAuth& p = c.proxy;
    std::string roles;
    for (const auto& r : p.roles) roles += (roles.empty() ? "" : ",") + r;
    if (HasLineBreakOrNul(p.name) || HasLineBreakOrNul(roles)) {
      return Error::Permanent(
          "bad_request", RedactSecrets(what + ": the proxy user name or roles hold a line break"));
    }
    headers_ok = headers_ok && AddHeader(headers, p.username_header, p.name);
    headers_ok = headers_ok && AddHeader(headers, p.roles_header, roles);
    if (!p.secret.empty()) {
      headers_ok =
          headers_ok && AddHeader(headers, p.token_header, HmacSha256Hex(p.secret, p.name));
    }
  }
  if (!headers_ok) return Error::Temporary("out_of_memory", what + ": cannot build the request");

  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, options.user_agent.c_str());
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::max<int64_t>(1, options.connect_timeout.count())));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(std::max<int64_t>(1, options.longpoll_timeout.count()) +
                                     std::max<int64_t>(0, options.answer_grace.count())));
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPIDLE, kKeepIdleSeconds);
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPINTVL, kKeepIntervalSeconds);
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, kReceiveBufferBytes);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, tls.verify ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, tls.verify ? 2L : 0L);
  if (!tls.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, tls.ca_file.c_str());
  if (c.kind == Credentials::Kind::kBasic) {
    curl_easy_setopt(easy, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(easy, CURLOPT_USERNAME, c.username.c_str());
    curl_easy_setopt(easy, CURLOPT_PASSWORD, c.password.c_str());
  }
  return std::nullopt;
}

Error CurlError(const std::string& what, CURLcode code, const char* error_buffer) {
  std::string detail = error_buffer[0] ? error_buffer : curl_easy_strerror(code);
  std::string reason = RedactSecrets(what + " failed: " + CapText(detail));
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return Error::Temporary("timeout", reason);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return Error::Permanent("tls_verification_failed", reason);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
      return Error::Permanent("bad_request", reason);
    default:
      return Error::Temporary("connection_failed", reason);
  }
}

}  // namespace

ChangeWatcher::ChangeWatcher() : ChangeWatcher(Options{}) {}

ChangeWatcher::ChangeWatcher(Options options) : options_(std::move(options)) {
  GlobalInitOnce();
  CURLM* multi = curl_multi_init();
  // Every watch is one request that lasts until its database changes: no
  // cap, or watches would queue behind others (see the header).
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
  multi_ = multi;
  // The watcher takes no signals: the process waits for them with sigwait
  // on its main thread (as IdleReaper in http_session.cpp).
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  thread_ = std::thread([this] { Loop(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

ChangeWatcher::~ChangeWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  curl_multi_wakeup(multi_);
  if (thread_.joinable()) thread_.join();
  for (auto& [id, t] : transfers_) {
    if (t->in_multi) curl_multi_remove_handle(multi_, t->easy);
  }
  transfers_.clear();
  incoming_.clear();
  curl_multi_cleanup(multi_);
}

uint64_t ChangeWatcher::Watch(const Endpoint& db, const TlsSettings& tls, std::string since,
                              std::function<void(Status)> done) {
  auto t = std::make_unique<Transfer>();
  t->done = std::move(done);
  Url url = db.url.WithTrailingSlash();
  url.query.clear();
  t->what = "GET " + url.Redacted() + "_changes";
  t->since = SeqToSinceParam(since.empty() ? "0" : since);
  t->base_url = url.Origin() + url.path + "_changes?feed=longpoll&limit=1&timeout=" +
                std::to_string(std::max<int64_t>(1, options_.longpoll_timeout.count())) + "&since=";
  t->easy = curl_easy_init();
  if (!t->easy) {
    t->failed = Error::Temporary("out_of_memory", t->what + ": cannot start a request");
  } else {
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, static_cast<void*>(t.get()));
    t->failed =
        Configure(t->easy, t->headers, &t->body, t->error_buffer, db, tls, options_, t->what);
  }
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    if (stop_) return id;  // being destroyed: never called back
    t->id = id;
    live_.insert(id);
    incoming_.push_back(std::move(t));
  }
  curl_multi_wakeup(multi_);
  return id;
}

void ChangeWatcher::Cancel(uint64_t id) {
  std::unique_lock<std::mutex> lock(mu_);
  if (live_.erase(id) > 0) {
    cancelled_.push_back(id);
    lock.unlock();
    curl_multi_wakeup(multi_);
    return;
  }
  if (std::this_thread::get_id() == thread_.get_id()) return;
  callback_done_.wait(lock, [&] { return running_callback_ != id; });
}

size_t ChangeWatcher::watching() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_.size();
}

void ChangeWatcher::Loop() {
  CURLM* multi = multi_;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    TakeQueued();
    TimePoint now = std::chrono::steady_clock::now();
    while (!deferred_.empty() && deferred_.begin()->first <= now) {
      uint64_t id = deferred_.begin()->second;
      deferred_.erase(deferred_.begin());
      auto it = transfers_.find(id);
      if (it == transfers_.end()) continue;
      it->second->deferred_until.reset();
      StartTransfer(*it->second);
    }
    int running = 0;
    curl_multi_perform(multi, &running);
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      CURLcode code = msg->data.result;
      void* priv = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
      curl_multi_remove_handle(multi, easy);
      auto* t = static_cast<Transfer*>(priv);
      t->in_multi = false;
      OnTransferDone(*t, code);
    }
    if (curl_multi_poll(multi, nullptr, 0, PollTimeoutMs(), nullptr) != CURLM_OK) {
      std::this_thread::sleep_for(kPollErrorPause);  // cannot happen; never spin if it does
    }
  }
}

void ChangeWatcher::TakeQueued() {
  std::vector<std::unique_ptr<Transfer>> incoming;
  std::vector<uint64_t> cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming.swap(incoming_);
    cancelled.swap(cancelled_);
  }
  for (uint64_t id : cancelled) Drop(id);
  for (auto& t : incoming) {
    uint64_t id = t->id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (live_.count(id) == 0) continue;  // cancelled before it started
    }
    Transfer& ref = *t;
    transfers_[id] = std::move(t);
    if (ref.failed) {
      Finish(id, *ref.failed);
    } else {
      StartTransfer(ref);
    }
  }
}

void ChangeWatcher::StartTransfer(Transfer& t) {
  t.body.clear();
  t.too_large = false;
  t.error_buffer[0] = '\0';
  std::string url = t.base_url + EncodeQueryValue(t.since);
  curl_easy_setopt(t.easy, CURLOPT_URL, url.c_str());
  t.issued_at = std::chrono::steady_clock::now();
  CURLMcode added = curl_multi_add_handle(static_cast<CURLM*>(multi_), t.easy);
  if (added != CURLM_OK) {
    Finish(t.id, Error::Temporary("connection_failed", t.what + ": cannot start the request (" +
                                                           curl_multi_strerror(added) + ")"));
    return;
  }
  t.in_multi = true;
}

void ChangeWatcher::OnTransferDone(Transfer& t, int curl_code) {
  auto code = static_cast<CURLcode>(curl_code);
  long status = 0;
  curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
  t.too_large = code == CURLE_WRITE_ERROR && t.body.size() >= kMaxBodyBytes;
  if (code != CURLE_OK && !t.too_large) {
    Finish(t.id, CurlError(t.what, code, t.error_buffer));
    return;
  }
  int http_status = static_cast<int>(status);
  if (http_status / 100 == 3) {
    // The Location is not shown: it may hold credentials.
    Finish(t.id,
           Error::Permanent("redirect",
                            RedactSecrets(t.what + " answered HTTP " + std::to_string(http_status) +
                                          " (a redirect; the change watcher follows none)"),
                            http_status));
    return;
  }
  if (http_status / 100 != 2) {
    HttpResponse response;
    response.status = http_status;
    char* type = nullptr;
    if (curl_easy_getinfo(t.easy, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type) {
      response.headers.emplace_back("content-type", type);
    }
    response.body = std::move(t.body);
    Finish(t.id, ErrorFromResponse(response, t.what));
    return;
  }
  if (t.too_large) {
    Finish(t.id, Error::Permanent("response_too_large",
                                  RedactSecrets(t.what + " answered more than " +
                                                std::to_string(kMaxBodyBytes) + " bytes"),
                                  http_status));
    return;
  }
  auto bad = [&](const std::string& why) {
    return Error::Permanent("bad_response", RedactSecrets(t.what + " answered " + why),
                            http_status);
  };
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(t.body).get(doc) != simdjson::SUCCESS || !doc.is_object()) {
    Finish(t.id, bad("a body that is not a JSON object"));
    return;
  }
  simdjson::dom::array results;
  if (doc["results"].get(results) != simdjson::SUCCESS) {
    Finish(t.id, bad("without a `results` array"));
    return;
  }
  if (results.size() > 0) {
    Finish(t.id, OkStatus());
    return;
  }
  simdjson::dom::element last_seq;
  if (doc["last_seq"].get(last_seq) != simdjson::SUCCESS || last_seq.is_null()) {
    Finish(t.id, bad("no change and no `last_seq`"));
    return;
  }
  std::string_view text;
  if (last_seq.get(text) == simdjson::SUCCESS) {
    t.since = std::string(text);
  } else {
    t.since = SeqToSinceParam(simdjson::minify(last_seq));
  }
  // Ended empty: ask again from last_seq, at once unless the server did not wait.
  Duration spacing = std::min(options_.longpoll_timeout / 2, kMinReissueSpacing);
  TimePoint earliest = t.issued_at + spacing;
  if (std::chrono::steady_clock::now() < earliest) {
    t.deferred_until = earliest;
    deferred_.emplace(earliest, t.id);
    return;
  }
  StartTransfer(t);
}

void ChangeWatcher::Finish(uint64_t id, Status status) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  std::function<void(Status)> done = std::move(it->second->done);
  Drop(id);  // the connection goes back (or closes) before the callback runs
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (live_.erase(id) == 0) return;  // cancelled meanwhile
    if (stop_) return;                 // the destructor has begun: no new callback
    running_callback_ = id;
  }
  if (done) done(std::move(status));
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_callback_ = 0;
  }
  callback_done_.notify_all();
}

void ChangeWatcher::Drop(uint64_t id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  Transfer& t = *it->second;
  if (t.in_multi) curl_multi_remove_handle(static_cast<CURLM*>(multi_), t.easy);
  if (t.deferred_until) deferred_.erase({*t.deferred_until, id});
  transfers_.erase(it);
}

int ChangeWatcher::PollTimeoutMs() const {
  if (deferred_.empty()) return kIdlePollMs;
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(deferred_.begin()->first -
                                                           std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<int64_t>(wait.count(), 0, kIdlePollMs));
}

}  // namespace couchrepd

#include "couchrepd/status_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "couchrepd/dashboard.h"
#include "couchrepd/encoding.h"
#include "couchrepd/http_metrics.h"
#include "couchrepd/log.h"
#include "couchrepd/status_render.h"
#include "gated_http_server.h"

#ifndef COUCHREPD_VERSION
#define COUCHREPD_VERSION "unknown"
#endif

namespace couchrepd {

namespace {

constexpr char kJson[] = "application/json";
constexpr char kRealm[] = "Basic realm=\"couchrepd\"";
constexpr time_t kSocketTimeoutSeconds = 10;
// The largest request body the status API reads (its POSTs carry none).
constexpr size_t kMaxRequestBodyBytes = 64 * 1024;

std::string NodeName() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "couchrepd@localhost";
  return std::string("couchrepd@") + host;
}

// Compares without an early exit, so timing does not tell how much matched.
bool SameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

std::optional<int64_t> ParseCount(const std::string& text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

void Reply(httplib::Response& res, int status, const std::string& body,
           const char* content_type = kJson) {
  res.status = status;
  res.set_content(body, content_type);
}

void ReplyError(httplib::Response& res, int status, std::string_view error,
                std::string_view reason) {
  Reply(res, status, ErrorBody(error, reason));
}

}  // namespace

struct StatusServer::Impl {
  Config::Status settings;
  StatusHooks hooks;
  std::string node = NodeName();
  // Idle and half-sent connections wait in its epoll room, not on threads.
  GatedHttpServer server;
  std::thread thread;
  int port = 0;
  bool bound = false;

  // The authenticated user ("anonymous" without auth); nullopt when refused.
  std::optional<std::string> Authenticate(const httplib::Request& req) const {
    if (settings.auth.username.empty()) return std::string("anonymous");
    std::string header = req.get_header_value("Authorization");
    constexpr std::string_view kBasic = "Basic ";
    if (header.size() <= kBasic.size() || header.compare(0, kBasic.size(), kBasic) != 0) {
      return std::nullopt;
    }
    auto decoded = Base64Decode(std::string_view(header).substr(kBasic.size()));
    if (!decoded) return std::nullopt;
    size_t colon = decoded->find(':');
    if (colon == std::string::npos) return std::nullopt;
    std::string_view user = std::string_view(*decoded).substr(0, colon);
    std::string_view password = std::string_view(*decoded).substr(colon + 1);
    bool user_ok = SameSecret(user, settings.auth.username);
    bool password_ok = SameSecret(password, settings.auth.password);
    if (!user_ok || !password_ok) return std::nullopt;
    return std::string(user);
  }

  // Authenticate, except that the health probes are open with
  // `status.health_public`.
  std::optional<std::string> Admit(const httplib::Request& req) const {
    if (auto who = Authenticate(req)) return who;
    if (settings.health_public && (req.method == "GET" || req.method == "HEAD") &&
        (req.path == "/health" || req.path == "/health/ready" || req.path == "/health/live")) {
      return std::string("anonymous");
    }
    return std::nullopt;
  }

  std::shared_ptr<const EngineSnapshot> Snapshot() const {
    std::shared_ptr<const EngineSnapshot> s;
    if (hooks.snapshot) s = hooks.snapshot();
    if (!s) s = std::make_shared<EngineSnapshot>();
    return s;
  }

  // Reads limit/skip; false (with a 400 reply) when one is not a count.
  static bool ReadPage(const httplib::Request& req, httplib::Response& res, Page& page) {
    for (auto [name, field] : {std::pair<const char*, int64_t*>{"limit", &page.limit},
                               std::pair<const char*, int64_t*>{"skip", &page.skip}}) {
      if (!req.has_param(name)) continue;
      auto v = ParseCount(req.get_param_value(name));
      if (!v) {
        ReplyError(res, 400, "bad_request",
                   std::string("`") + name + "` must be a non-negative integer");
        return false;
      }
      *field = *v;
    }
    return true;
  }

  static bool ReadStates(const httplib::Request& req, httplib::Response& res,
                         std::vector<std::string>& states) {
    if (!req.has_param("states")) return true;
    std::string all = req.get_param_value("states");
    size_t pos = 0;
    while (pos <= all.size()) {
      size_t comma = all.find(',', pos);
      if (comma == std::string::npos) comma = all.size();
      std::string state = all.substr(pos, comma - pos);
      while (!state.empty() && state.front() == ' ') state.erase(state.begin());
      while (!state.empty() && state.back() == ' ') state.pop_back();
      if (!state.empty()) {
        if (!IsDocState(state)) {
          ReplyError(res, 400, "bad_request", "unknown replication state `" + state + "`");
          return false;
        }
        states.push_back(state);
      }
      pos = comma + 1;
    }
    return true;
  }

  void JobAction(const StatusRoute& route, const std::string& who, const httplib::Request& req,
                 httplib::Response& res) {
    const std::function<bool(const std::string&)>* hook = nullptr;
    if (route.action == "reset") hook = &hooks.reset;
    if (route.action == "pause") hook = &hooks.pause;
    if (route.action == "resume") hook = &hooks.resume;
    bool done = hook != nullptr && *hook && (*hook)(route.job_id);
    spdlog::info("status API: {} (from {}) asked to {} job {}: {}", who, req.remote_addr,
                 route.action, route.job_id, done ? "done" : "unknown job");
    if (!done) {
      ReplyError(res, 404, "not_found", "unknown job id");
      return;
    }
    Reply(res, 200, R"({"ok":true})");
  }

  void Handle(const httplib::Request& req, httplib::Response& res) {
    res.set_header("Cache-Control", "must-revalidate");
    auto who = Admit(req);
    if (!who) {
      res.set_header("WWW-Authenticate", kRealm);
      ReplyError(res, 401, "unauthorized", "Name or password is incorrect.");
      return;
    }
    auto snap = Snapshot();
    std::string raw_path = req.target.substr(0, req.target.find('?'));
    StatusRoute route = ParseStatusPath(raw_path, KnownDatabases(*snap));
    using Kind = StatusRoute::Kind;
    if (route.kind == Kind::kBadPath) {
      ReplyError(res, 400, "bad_request", "invalid percent-escape in the path");
      return;
    }
    if (route.kind == Kind::kNotFound || (route.kind == Kind::kDashboard && !settings.dashboard)) {
      ReplyError(res, 404, "not_found", "no such endpoint");
      return;
    }
    const bool is_get = req.method == "GET" || req.method == "HEAD";
    const bool want_post = route.kind == Kind::kJobAction;
    if (want_post ? req.method != "POST" : !is_get) {
      res.set_header("Allow", want_post ? "POST" : "GET, HEAD");
      ReplyError(res, 405, "method_not_allowed",
                 want_post ? "Only POST allowed" : "Only GET, HEAD allowed");
      return;
    }
    Page page;
    switch (route.kind) {
      case Kind::kDashboard:
        Reply(res, 200, DashboardHtml(), "text/html; charset=utf-8");
        return;
      case Kind::kJobs:
        if (!ReadPage(req, res, page)) return;
        Reply(res, 200, RenderSchedulerJobs(*snap, page, node));
        return;
      case Kind::kJob:
        if (auto body = RenderSchedulerJob(*snap, route.job_id, node)) {
          Reply(res, 200, *body);
        } else {
          ReplyError(res, 404, "not_found", "unknown job id");
        }
        return;
      case Kind::kJobAction:
        JobAction(route, *who, req, res);
        return;
      case Kind::kDocs:
      case Kind::kDatabaseDocs: {
        DocsQuery query;
        if (!ReadPage(req, res, query.page) || !ReadStates(req, res, query.states)) return;
        if (route.kind == Kind::kDatabaseDocs) {
          if (!KnowsDatabase(*snap, route.db)) {
            ReplyError(res, 404, "not_found", "unknown replicator database");
            return;
          }
          query.database = route.db;
        }
        Reply(res, 200, RenderSchedulerDocs(*snap, query, node));
        return;
      }
      case Kind::kDoc:
        if (auto body = RenderSchedulerDoc(*snap, route.db, route.doc_id, node)) {
          Reply(res, 200, *body);
        } else {
          ReplyError(res, 404, "not_found", "unknown replication document");
        }
        return;
      case Kind::kActiveTasks:
        Reply(res, 200, RenderActiveTasks(*snap, node));
        return;
      case Kind::kCluster:
        Reply(res, 200, RenderCluster(*snap));
        return;
      case Kind::kMetrics:
        Reply(res, 200, RenderMetrics(*snap, HttpMetrics(), COUCHREPD_VERSION),
              kMetricsContentType);
        return;
      case Kind::kHealth: {
        HealthReport report = RenderHealth(*snap);
        Reply(res, report.ok ? 200 : 503, report.body);
        return;
      }
      case Kind::kHealthLive: {
        HealthReport report = RenderLiveness(*snap, std::chrono::steady_clock::now());
        Reply(res, report.ok ? 200 : 503, report.body);
        return;
      }
      case Kind::kNotFound:
      case Kind::kBadPath:
        break;
    }
    ReplyError(res, 404, "not_found", "no such endpoint");
  }
};

StatusServer::StatusServer(Config::Status settings, StatusHooks hooks)
    : impl_(std::make_unique<Impl>()) {
  impl_->settings = std::move(settings);
  impl_->hooks = std::move(hooks);
}

StatusServer::~StatusServer() { Stop(); }

Status StatusServer::Bind() {
  Impl& m = *impl_;
  if (m.bound) return OkStatus();
  auto handler = [&m](const httplib::Request& req, httplib::Response& res) { m.Handle(req, res); };
  m.server.Get(".*", handler);
  m.server.Post(".*", handler);
  m.server.Put(".*", handler);
  m.server.Delete(".*", handler);
  m.server.Patch(".*", handler);
  m.server.Options(".*", handler);
  // SPEC §10: credentials are checked before any body is read (the
  // pre-routing handler runs first), and no body over 64 KiB is read (413).
  m.server.set_pre_routing_handler([&m](const httplib::Request& req, httplib::Response& res) {
    if (!m.Admit(req)) {
      res.set_header("Cache-Control", "must-revalidate");
      res.set_header("WWW-Authenticate", kRealm);
      ReplyError(res, 401, "unauthorized", "Name or password is incorrect.");
      return httplib::Server::HandlerResponse::Handled;
    }
    // An announced body over the limit is refused without reading any of it
    // (httplib's own limit would drain it first).
    if (req.has_header("Content-Length") &&
        req.get_header_value<uint64_t>("Content-Length") > kMaxRequestBodyBytes) {
      res.set_header("Cache-Control", "must-revalidate");
      ReplyError(res, 413, "too_large", "request bodies are limited to 64 KiB");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  m.server.set_payload_max_length(kMaxRequestBodyBytes);
  m.server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        ReplyError(res, 500, "unknown_error", "internal error in the status API");
      });
  // httplib's default SO_REUSEPORT would let a second couchrepd share the
  // port silently; SO_REUSEADDR alone still allows a quick restart.
  m.server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  m.server.set_read_timeout(kSocketTimeoutSeconds, 0);
  m.server.set_write_timeout(kSocketTimeoutSeconds, 0);
  const std::string& host = m.settings.listen_host;
  std::string shown = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                      std::to_string(m.settings.listen_port);
  errno = 0;
  int port = m.settings.listen_port;
  bool bound = false;
  if (port == 0) {
    port = m.server.bind_to_any_port(host);
    bound = port > 0;
  } else {
    bound = m.server.bind_to_port(host, port);
  }
  if (!bound) {
    std::string why = errno != 0 ? std::strerror(errno) : "the address is invalid or taken";
    return Error::Permanent("status_listen", "cannot listen on " + shown +
                                                 " for the status API (status.listen): " + why);
  }
  m.port = port;
  m.bound = true;
  return OkStatus();
}

Status StatusServer::Start() {
  Impl& m = *impl_;
  if (m.thread.joinable()) return OkStatus();
  Status bound = Bind();
  if (!bound.ok()) return bound;
  m.thread = std::thread([&m] { m.server.listen_after_bind(); });
  // Until the loop runs, stop() would not reach it (and Stop() would hang).
  for (int i = 0; i < 1000 && !m.server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return OkStatus();
}

void StatusServer::Stop() {
  Impl& m = *impl_;
  if (!m.thread.joinable()) return;
  m.server.stop();
  m.thread.join();
  m.server.StopGate();
}

int StatusServer::port() const { return impl_->port; }

}  // namespace couchrepd

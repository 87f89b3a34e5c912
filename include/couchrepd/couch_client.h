// CouchClient: the one façade for every CouchDB call couchrepd makes.
//
// A CouchClient talks to one endpoint: a server root (for GET /, _session,
// _all_dbs, _db_updates) or a database URL with a trailing '/' (for everything
// else). Database() derives a client for a database on the same server that
// shares the connection pool, the login session and the pacing state.
//
// Every call goes through the same request loop: authentication (basic,
// cookie session with re-login on expiry or 401, or CouchDB proxy auth),
// custom headers, keep-alive connection reuse (at most `max_connections`
// requests at once per endpoint; connections shared by all clients of the
// same origin and credentials, at most `max_host_connections`), connect and inactivity timeouts, redirects (credentials
// kept only for the same origin), request retries (RetryPlan) and 429 pacing
// (Pacer). Errors come back as values: temporary or permanent, with the HTTP
// status and CouchDB's error/reason, never with credentials.
//
// Thread safety: all methods may be called concurrently from many threads.
// Streaming calls deliver data on the calling thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "couchrepd/changes_parser.h"
#include "couchrepd/clock.h"
#include "couchrepd/endpoint.h"
#include "couchrepd/multipart.h"
#include "couchrepd/result.h"
#include "couchrepd/retry_policy.h"
#include "couchrepd/url.h"

namespace couchrepd {

// What the request loop reports for metrics; called on the requesting thread.
struct HttpEvent {
  enum class Kind { kResponse, kConnectionError, kRetry, kRateLimited };
  Kind kind;
  std::string host;  // host:port, never credentials
  int status = 0;    // for kResponse
};

struct HttpOptions {
  Duration connect_timeout = std::chrono::seconds(10);
  Duration inactivity_timeout = std::chrono::seconds(30);  // read/write silence limit
  RetrySettings retry;
  PacingSettings pacing;
  int max_connections = 20;  // requests in flight per endpoint (shared by Database() clients)
  // Connections open to one host by every client with the same origin,
  // credentials and settings together (the shared pool); 0: no cap. A call
  // waits at most connect_timeout for one, then opens one over the cap.
  int max_host_connections = 0;
  bool tls_verify = true;
  std::string ca_file;       // empty: the system's trust store
  bool keepalive = true;     // SO_KEEPALIVE
  bool nodelay = true;       // TCP_NODELAY (see ReplicationSpec::socket_nodelay)
  int max_redirects = 5;
  // Pooled keep-alive connections unused this long are closed (checked about
  // once a second); zero keeps them (replication.idle_connection_timeout).
  Duration idle_connection_timeout = std::chrono::seconds(30);
  // Byte cap on a response read whole (SPEC §10: limits.max_response_bytes).
  // Over it the call fails with error `response_too_large`.
  uint64_t max_response_bytes = 64ull << 20;
  std::string user_agent = "couchrepd";
  std::function<void(const HttpEvent&)> observer;  // optional
};

// A cooperative cancellation flag for calls. Copies share the flag.
// Cancel() also closes the connection of every call blocked on it (any
// number of threads may run calls with one token at once).
class CancelToken {
 public:
  CancelToken();
  void Cancel();
  bool cancelled() const;
  // Internal: a running call registers a closer; RemoveCloser waits for a
  // Cancel() that is running it.
  uint64_t AddCloser(std::function<void()> closer);
  void RemoveCloser(uint64_t id);

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// Sleeps on `clock` in short slices so that `cancel` can interrupt it.
// Returns false when cancelled.
bool SleepUnlessCancelled(Clock& clock, Duration d, CancelToken* cancel);

struct HttpRequest {
  std::string method = "GET";
  std::string path;        // relative to the endpoint URL ("_changes", "doc%2Fid"), or absolute from '/'
  QueryParams query;       // values are encoded by the client
  Headers headers;
  std::string body;
  std::string content_type;  // set when body is non-empty
};

struct HttpResponse {
  int status = 0;
  Headers headers;  // names lower-cased
  std::string body;
  std::optional<std::string> Header(std::string_view lower_name) const;
};

struct ServerInfo {
  std::string uuid;
  std::string version;
  std::string vendor;
  std::string json;  // the whole welcome document
};

struct DbInfo {
  std::string db_name;
  std::string update_seq;            // raw JSON (opaque)
  std::string instance_start_time;   // as a string ("0" on CouchDB 2+ clusters)
  int64_t doc_count = 0;
  int64_t doc_del_count = 0;
  std::string json;
};

struct ChangesRequest {
  enum class Feed { kNormal, kLongpoll, kContinuous };
  Feed feed = Feed::kNormal;
  std::optional<std::string> since;  // raw JSON sequence (opaque) or "now"
  std::string style = "all_docs";    // all_docs | main_only
  std::optional<Duration> heartbeat;
  std::optional<Duration> timeout;
  std::optional<int64_t> limit;
  bool include_docs = false;
  bool descending = false;
  std::string filter;                // "", "_doc_ids", "_selector", "_view", "ddoc/name"
  QueryParams query_params;          // extra filter parameters (query string)
  std::vector<std::string> doc_ids;  // with filter _doc_ids: sent in a POST body
  std::string selector_json;         // with filter _selector: sent in a POST body
  // Called (on the calling thread) each time the server accepts the request
  // (2xx headers arrived): a feed is connected.
  std::function<void()> on_open;
};

struct ChangesResult {
  std::optional<std::string> last_seq;  // raw JSON; the feed's own, or the last row's
  std::optional<int64_t> pending;
  uint64_t rows = 0;
  bool complete = false;  // the server ended the feed properly
};

struct RevsDiffEntry {
  std::string id;
  std::vector<std::string> missing;
  std::vector<std::string> possible_ancestors;
};

struct BulkGetItem {
  std::string id;
  std::string rev;
  std::vector<std::string> atts_since;
};

struct BulkGetDoc {
  std::string id;
  std::string rev;
  bool ok = false;
  std::string json;    // the document (with _revisions when revs=true) when ok
  std::string error;   // "not_found", ... when !ok
  std::string reason;
};

struct OpenRevsOptions {
  bool revs = true;
  bool latest = true;
  std::vector<std::string> atts_since;
  bool attachments = true;  // bodies included (multipart when the server can)
  bool allow_multipart = true;
};

struct DocWriteResult {
  std::string id;
  std::string rev;
  bool ok = false;
  std::string error;
  std::string reason;
};

struct AttachmentInfo {
  std::string content_type;
  std::string content_encoding;
  int64_t length = -1;  // -1 when unknown (chunked)
  std::string digest;   // from the ETag, without quotes
};

class HttpSession;  // the shared pool, auth and pacing state (src/couch)

class CouchClient {
 public:
  CouchClient(Endpoint endpoint, HttpOptions options, Clock& clock = SystemClock());
  ~CouchClient();
  CouchClient(const CouchClient&);
  CouchClient& operator=(const CouchClient&);

  // A client for database `name` on this endpoint's server, sharing its
  // session. `name` is encoded (so "a/b" works).
  CouchClient Database(std::string_view name) const;

  const Endpoint& endpoint() const { return endpoint_; }
  // The endpoint URL as safe to show (no password).
  std::string DisplayUrl() const { return endpoint_.url.Redacted(); }

  // --- server ---
  Result<ServerInfo> GetServerInfo();
  Result<std::vector<std::string>> AllDbs();

  // --- database ---
  Result<DbInfo> GetDbInfo();
  // 412 (exists) comes back as an Error with http_status 412.
  Status CreateDb(const QueryParams& params = {});
  Status DeleteDb();

  // Streams _changes; calls on_row for every row (return false to stop).
  // For continuous feeds a connection that drops without a last_seq line
  // ends the call with a temporary Error; see FollowChanges for reconnects.
  Result<ChangesResult> Changes(const ChangesRequest& request,
                                const ChangesParser::RowHandler& on_row,
                                CancelToken* cancel = nullptr);

  // Follows a continuous feed forever (until cancelled or on_row returns
  // false): reconnects from the last sequence seen, with backoff, when the
  // feed drops, fails temporarily or is silent for longer than twice the
  // heartbeat. A permanent error ends the call. `on_reconnect` (optional) is
  // told about each reconnect and its reason.
  Result<ChangesResult> FollowChanges(ChangesRequest request,
                                      const ChangesParser::RowHandler& on_row,
                                      CancelToken& cancel,
                                      const std::function<void(const Error&)>& on_reconnect = {});

  Result<std::vector<RevsDiffEntry>> RevsDiff(
      const std::vector<std::pair<std::string, std::vector<std::string>>>& revs);

  // POST _bulk_get?revs=true&latest=true. Understands CouchDB's and PouchDB's
  // error shapes. A server without _bulk_get answers with an Error (404/405/400).
  Result<std::vector<BulkGetDoc>> BulkGet(const std::vector<BulkGetItem>& items,
                                          bool attachments = true);

  // GET doc?open_revs=[...]; revs empty means open_revs=all.
  Result<std::vector<OpenRevsDoc>> OpenRevs(std::string_view doc_id,
                                            const std::vector<std::string>& revs,
                                            const OpenRevsOptions& options = {});

  // POST _bulk_docs. With new_edits=false CouchDB answers only the failures.
  Result<std::vector<DocWriteResult>> BulkDocs(const std::vector<std::string>& docs_json,
                                               bool new_edits);

  // _local documents (id without the "_local/" prefix). Missing -> nullopt.
  Result<std::optional<std::string>> GetLocal(std::string_view id);
  Result<DocWriteResult> PutLocal(std::string_view id, std::string_view json);

  // Documents (any id: design docs, ids with '/', '+', '%', spaces, non-ASCII).
  // Missing -> Error with http_status 404.
  Result<std::string> GetDoc(std::string_view id, const QueryParams& query = {});
  Result<DocWriteResult> PutDoc(std::string_view id, std::string_view json,
                                const QueryParams& query = {});
  Result<DocWriteResult> DeleteDoc(std::string_view id, std::string_view rev);

  // PUT doc?new_edits=false as multipart/related: the JSON (attachments marked
  // "follows") then each attachment body from its provider, streamed.
  struct StreamedAttachment {
    std::string name;
    std::string content_type;
    std::string encoding;  // "" or "gzip"
    uint64_t length = 0;
    // Fills the body: called with a sink; returns false on failure.
    std::function<bool(const std::function<bool(std::string_view)>& sink)> provider;
  };
  Result<DocWriteResult> PutDocMultipart(std::string_view id, std::string_view doc_json,
                                         std::vector<StreamedAttachment> attachments,
                                         bool new_edits);

  // Attachments, streamed both ways. GetAttachment delivers the bytes as the
  // server stores them: AttachmentInfo::content_encoding is "gzip" when they
  // are compressed (so digests and encodings can be passed on unchanged).
  Result<AttachmentInfo> GetAttachment(std::string_view doc_id, std::string_view name,
                                       std::string_view rev,
                                       const std::function<bool(std::string_view)>& sink,
                                       CancelToken* cancel = nullptr);
  Result<DocWriteResult> PutAttachment(std::string_view doc_id, std::string_view name,
                                       std::string_view rev, std::string_view content_type,
                                       uint64_t length,
                                       const std::function<bool(const std::function<bool(std::string_view)>&)>& provider);

  // POST _ensure_full_commit; returns the instance_start_time it reports.
  Result<std::string> EnsureFullCommit();

  // Any request through the same loop. Non-2xx answers become Errors.
  Result<HttpResponse> Send(const HttpRequest& request);

  // Every call of this client (and of the others sharing its session) that
  // is given no token of its own uses `cancel` (null: none).
  void SetCancel(CancelToken* cancel);

 private:
  CouchClient(Endpoint endpoint, std::shared_ptr<HttpSession> session);
  Endpoint endpoint_;
  std::shared_ptr<HttpSession> session_;
};

}  // namespace couchrepd

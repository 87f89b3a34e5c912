// Test fixture: the hostile HTTP peer (tests/server/hostile-peer.js), a CouchDB look-alike that
// misbehaves per database name (SPEC §10), started as a child process on a free loopback port.
//
//   couchrepd::testing::HostilePeer peer;
//   // ... replicate from peer.Url("token-401") ...
//   auto asked = peer.Log("token-401");  // every request couchrepd sent there
//
// The script is COUCHREPD_HOSTILE_PEER_JS when set in the environment, else
// COUCHREPD_SOURCE_DIR/tests/server/hostile-peer.js; `node` is taken from PATH. The peer dies with
// the test (PR_SET_PDEATHSIG).
#ifndef COUCHREPD_TESTS_SUPPORT_HOSTILE_PEER_H_
#define COUCHREPD_TESTS_SUPPORT_HOSTILE_PEER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace couchrepd::testing {

class HostilePeer {
 public:
  // What the peer saw of one request (GET /_peer/log).
  struct Request {
    std::string method;
    std::string path;   // within the database: "/" (the database itself), "/_changes", "/doc-1"
    std::string query;  // "?..." as sent, or ""
    int64_t docs = 0;   // entries in a _revs_diff / _bulk_get / _bulk_docs body
    std::vector<std::string> ids;  // the _ids of a _bulk_docs body
    bool aborted = false;          // the client went away before the answer was complete
    bool finished = false;         // the whole answer was sent (neither: still being sent)
    uint64_t bytes_sent = 0;
  };

  // Starts node on a free loopback port and waits (at most 20 s) until GET / answers with this
  // peer's uuid. Throws std::runtime_error (with the peer's output) on failure.
  HostilePeer();
  // SIGTERM, then SIGKILL after 2 s; always reaps the child.
  ~HostilePeer();
  HostilePeer(const HostilePeer&) = delete;
  HostilePeer& operator=(const HostilePeer&) = delete;

  // "http://127.0.0.1:PORT", without a trailing slash.
  const std::string& url() const { return url_; }
  int port() const { return port_; }
  const std::string& uuid() const { return uuid_; }
  // The URL of the database (scenario) `db`.
  std::string Url(const std::string& db) const { return url_ + "/" + db; }

  // Every request the peer received for database `db`, in arrival order. Throws
  // std::runtime_error when the peer does not answer.
  std::vector<Request> Log(const std::string& db) const;
  // How many of them had this method and path (path within the database, e.g. "/_bulk_get").
  size_t Count(const std::string& db, const std::string& method, const std::string& path) const;

  // The peer's stdout and stderr (last `max_bytes`), for diagnostics.
  std::string LogTail(size_t max_bytes = 4000) const;

 private:
  void Kill();

  std::string uuid_;
  std::string url_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string log_path_;
};

}  // namespace couchrepd::testing

#endif  // COUCHREPD_TESTS_SUPPORT_HOSTILE_PEER_H_

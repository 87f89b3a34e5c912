// Test fixture: a CouchDB-compatible server (tests/server/couch-test-server.js, express-pouchdb
// on in-memory PouchDB) started as a child process on a free loopback port.
//
//   couchrepd::testing::TestServer server({.admin = "admin:secret"});
//   auto reply = server.Request("PUT", "/db");          // as admin
//   // ... point the code under test at server.url() ...
//
// With `.persistent = true` the databases live on disk (leveldb, `--data-dir`) in a temporary
// directory of this object, so that Stop()/Start() (or Kill9()/Start()) is a server restart that
// keeps the data, like a CouchDB restart:
//
//   TestServer source({.persistent = true, .admin = "admin:secret"});
//   // ... replicate, then mid-way: ...
//   source.Stop();
//   source.Start();  // same port, uuid, databases, documents, update sequences
//
// The launcher script is COUCHREPD_TEST_SERVER_JS (set by the build; the environment variable of
// the same name overrides it); `node` is taken from PATH. Its node_modules must be installed
// (`npm ci --ignore-scripts` in tests/server). See tests/server/README.md for the server's
// behaviour, its differences from CouchDB 3.x and its /_test/ control endpoints.
#ifndef COUCHREPD_TESTS_SUPPORT_TEST_SERVER_H_
#define COUCHREPD_TESTS_SUPPORT_TEST_SERVER_H_

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>

namespace couchrepd::testing {

struct TestServerOptions {
  // Keep the data across Stop()/Start(): the server stores its databases (documents, revision
  // trees, attachments, _local docs, _security, _users, update sequences) in a temporary
  // directory (mkdtemp), removed by the destructor unless COUCHREPD_TEST_KEEP_LOGS is set.
  // AuthSession cookies stay valid too. What the server keeps only in memory starts afresh at
  // each Start(): the _db_updates log, /_test/ request log, fault rules and counters.
  // false = in memory: a restart loses everything. (Declared first, so that designated
  // initializers read `{.persistent = true, .admin = ...}`; they must follow this order.)
  bool persistent = false;
  std::string admin;                // "name:password"; empty = admin party
  std::string uuid;                 // server uuid (hex); empty = random 32 hex digits
  std::optional<bool> opaque_seqs;  // unset = from env COUCHREPD_TEST_SEQ_MODE ("opaque" => true)
  int session_timeout_s = 0;        // cookie session lifetime (--session-timeout); 0 = 600 s
};

class TestServer {
 public:
  // Starts node on a free loopback port and waits (at most 20 s) until GET / answers 200 with
  // this server's uuid. Throws std::runtime_error (with the server's output tail) on failure.
  explicit TestServer(TestServerOptions options = {});
  // SIGTERM, then SIGKILL after 2 s, then waitpid: never leaves a process behind. Removes the
  // data directory of a persistent server (unless COUCHREPD_TEST_KEEP_LOGS is set).
  ~TestServer();

  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  // "http://127.0.0.1:PORT", without a trailing slash.
  const std::string& url() const { return url_; }
  int port() const { return port_; }
  // The server uuid (GET / "uuid"); the same after Stop()/Start().
  const std::string& uuid() const { return uuid_; }
  // True when sequences are CouchDB-3-like opaque strings ("N-g1AAAA..."), false for integers.
  bool opaque_seqs() const { return opaque_seqs_; }
  // True while the child process is running.
  bool running() const { return pid_ > 0; }

  // Stops the server: SIGTERM (a persistent server closes its databases and exits), SIGKILL if
  // it is still there after 2 s. Its port is closed afterwards. No-op when already stopped.
  void Stop();
  // Kills the server with SIGKILL at once, without a clean shutdown (like a crash). A
  // persistent server still keeps every write it had answered. No-op when already stopped.
  void Kill9();
  // Starts it again on the SAME port and uuid. A persistent server finds all its data again;
  // otherwise all data is gone (the server is in-memory). No-op when already running. Throws
  // std::runtime_error on failure.
  void Start();

  // The data directory of a persistent server (given to node as --data-dir); empty otherwise.
  const std::string& data_dir() const { return data_dir_; }

  // Sends a request to the server, as the admin when one is configured (basic auth), with
  // "Accept: application/json". `path` is sent as given (percent-encode it yourself) and may
  // include a query string. A transport failure gives status 0 and the error text as body.
  struct Reply {
    int status;
    std::string body;
  };
  Reply Request(const std::string& method, const std::string& path, const std::string& body = "",
                const std::string& content_type = "application/json");

  // Path of the file holding the server's stdout and stderr (removed by the destructor unless
  // the environment variable COUCHREPD_TEST_KEEP_LOGS is set).
  const std::string& log_path() const { return log_path_; }
  // The last `max_bytes` bytes of that file, for test diagnostics.
  std::string LogTail(std::size_t max_bytes = 4000) const;

 private:
  // Spawns the launcher with `--port port` (0 = let it pick) and waits until it is ready.
  void Launch(int port);
  // Sends `first_signal` (SIGTERM: waits up to 2 s, then SIGKILL); always reaps the child.
  void Kill(int first_signal);

  TestServerOptions options_;
  std::string uuid_;
  bool opaque_seqs_ = false;
  int port_ = 0;
  std::string url_;
  pid_t pid_ = -1;
  std::string log_path_;
  std::string data_dir_;
};

}  // namespace couchrepd::testing

#endif  // COUCHREPD_TESTS_SUPPORT_TEST_SERVER_H_

// ChangeWatcher: waits, on one thread, for databases to change after a sequence.
//
// Thousands of idle continuous replication jobs must learn that their source
// database changed without holding a thread each. A Watch() is one `_changes`
// longpoll (`feed=longpoll&since=S&limit=1&timeout=T`) run by libcurl's multi
// interface; every watch of the process runs on the watcher's one thread,
// which calls the watch's callback once: with OkStatus() when the database
// has a change after S, or with an Error when a longpoll fails. A longpoll
// that ends empty (`"results":[]` after T) is sent again from its `last_seq`,
// so a watch lasts until a change, an error or Cancel(). Errors are reported,
// never retried: the caller decides what a failure means.
//
// Design notes:
// - Threads: one, started by the constructor with every signal blocked (the
//   process takes signals with sigwait on its main thread). Other threads
//   only queue work under a mutex and wake the loop with curl_multi_wakeup;
//   only the watcher thread touches curl handles. libcurl resolves host names
//   on short-lived threads of its own (none for IP literals).
// - Connections: each running longpoll holds one connection (an HTTP/1.1
//   request waits for its answer on it), so there is no cap on connections
//   (CURLMOPT_MAX_HOST_CONNECTIONS and _MAX_TOTAL_CONNECTIONS stay 0,
//   unlimited): a cap would queue watches behind longpolls that can last for
//   minutes and delay their news without bound. The number of connections is
//   the number of watches; the caller bounds it (and the open-files limit,
//   process_limits.h, must allow it). A longpoll that ends empty leaves its
//   connection in the multi handle's cache and the next longpoll reuses it.
// - Dead connections: no `heartbeat` is sent, because CouchDB ignores
//   `timeout` when `heartbeat` is given (the feed then never ends by itself)
//   and CURLOPT_LOW_SPEED_* measures whole bytes per second, which sparse
//   heartbeat newlines never reach. Instead a longpoll with no complete
//   answer after `longpoll_timeout + answer_grace` is abandoned (a temporary
//   Error), and TCP keep-alive probes idle connections.
// - A server that answers a longpoll empty at once (one that does not wait)
//   is asked again no sooner than min(longpoll_timeout / 2, 1 s) after the
//   previous request, so such a server cannot make the thread spin.
// - Requests: no redirects are followed (a 3xx is a permanent Error); basic
//   credentials go through CURLOPT_USERNAME/PASSWORD (never into the URL);
//   proxy authentication sends the ProxyAuth headers with the same token as
//   HttpSession; cookie authentication is not supported (the watch ends at
//   once with a permanent Error). Endpoint::headers go with every request.
//   Bodies are capped at 1 MiB. Error reasons name the database by its
//   redacted URL and never hold a password or token.
// - Scale: the loop uses curl_multi_poll over all transfers, which costs time
//   linear in the number of watches per wake-up; fine for thousands.
//
// Thread safety: Watch, Cancel and watching may be called from any thread,
// including from a callback. Callbacks run on the watcher thread, one at a
// time, and must not block for long (they delay every other watch); they must
// not destroy the watcher.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "couchrepd/clock.h"
#include "couchrepd/endpoint.h"
#include "couchrepd/endpoint_tls.h"
#include "couchrepd/result.h"

namespace couchrepd {

class ChangeWatcher {
 public:
  struct Options {
    // The `timeout=` of each longpoll; a longpoll that ends empty is sent
    // again. CouchDB caps it at its [chttpd] changes_timeout (60 s).
    Duration longpoll_timeout = std::chrono::seconds(60);
    Duration connect_timeout = std::chrono::seconds(10);
    // A longpoll with no complete answer after longpoll_timeout plus this is
    // abandoned: the connection is taken for dead (temporary Error).
    Duration answer_grace = std::chrono::seconds(15);
    std::string user_agent = "couchrepd";
  };

  ChangeWatcher();
  explicit ChangeWatcher(Options options);
  // Cancels every watch and joins the thread: once it has begun no callback
  // starts, one running is waited for, and none runs after it returns. Must
  // not be called from a callback.
  ~ChangeWatcher();

  ChangeWatcher(const ChangeWatcher&) = delete;
  ChangeWatcher& operator=(const ChangeWatcher&) = delete;

  // Watches the database `db` (its URL is the database URL, e.g.
  // http://host:5984/dbname/; its credentials and headers are used) for a
  // change after `since`, the raw JSON sequence as CouchDB sent it (42 or
  // "12-g1AAAA..."; empty means 0). Calls `done` once, on the watcher thread:
  // OkStatus() when there is a change after `since`, or an Error (temporary
  // or permanent as result.h says: connection refused, timeouts and 5xx are
  // temporary; 3xx, 4xx, a bad or over 1 MiB body, cookie authentication are
  // permanent). Returns the watch's id (never 0).
  uint64_t Watch(const Endpoint& db, const TlsSettings& tls, std::string since,
                 std::function<void(Status)> done);

  // Stops a watch. After Cancel returns, its callback is not running and will
  // not run: when the callback is running on the watcher thread right now,
  // Cancel waits for it to return, except when Cancel is called from a
  // callback (on the watcher thread itself), where it returns at once.
  // Unknown and finished ids are ignored.
  void Cancel(uint64_t id);

  // Watches not yet finished: neither called back nor cancelled.
  size_t watching() const;

 private:
  struct Transfer;  // one watch: its curl handle and state (watcher thread)

  void Loop();
  // Adds queued watches to the multi handle, drops cancelled ones.
  void TakeQueued();
  void StartTransfer(Transfer& t);
  void OnTransferDone(Transfer& t, int curl_code);
  void Finish(uint64_t id, Status status);
  // Removes a transfer from the multi handle and frees it.
  void Drop(uint64_t id);
  int PollTimeoutMs() const;

  const Options options_;
  void* multi_ = nullptr;  // CURLM*, used by the watcher thread (and curl_multi_wakeup)
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable callback_done_;
  bool stop_ = false;
  uint64_t next_id_ = 1;
  std::set<uint64_t> live_;                          // watched, not finished or cancelled
  std::vector<std::unique_ptr<Transfer>> incoming_;  // for the watcher thread to start
  std::vector<uint64_t> cancelled_;                  // for the watcher thread to drop
  uint64_t running_callback_ = 0;                    // id whose callback runs now

  // Watcher thread only.
  std::map<uint64_t, std::unique_ptr<Transfer>> transfers_;
  std::set<std::pair<TimePoint, uint64_t>> deferred_;  // re-issues held back (see notes)
};

}  // namespace couchrepd

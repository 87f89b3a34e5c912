// ClusterMember: this instance's part in a cluster of couchrepd instances
// (SPEC §9, config `cluster:`). The decisions are the pure core's
// (couchrepd/cluster.h); this is their I/O, on one thread of its own:
// every heartbeat it writes this member's document (which renews all its
// leases: a lease is its holder's while the holder's heartbeat is live),
// reads the coordination database's changes (heartbeats and leases of every
// member), gives up its leases when no heartbeat landed in time,
// and takes or gives back leases as rendezvous ownership over the live
// members says. A new replication document (SetDoc) is looked at at once,
// without waiting for the next heartbeat.
//
// The engine tells it which replication documents exist (SetDoc) and when
// the job of a document it was asked to give back has stopped (Released);
// it tells the engine which documents this instance may run (granted) and
// which it must stop (revoked). A lease is given back (holder "") only after
// Released: the new owner starts the job after the old one checkpointed.
//
// Job leases ("job:<replication id>"): before a document's job runs, the
// engine asks for its replication's job lease (ClaimJob). Held by another
// live member for another document, the answer is "elsewhere" (the document
// is a duplicate) and the lease is watched: once given back, or its holder
// dead, `freed` says so and a duplicate may claim it. The engine gives it
// back (ReleaseJob) once the job's runs have ended.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "couchrepd/cluster.h"
#include "couchrepd/config.h"
#include "couchrepd/couch_client.h"

namespace couchrepd {

class ClusterMember {
 public:
  struct Hooks {
    std::function<void(const DocKey&)> granted;  // this instance holds the lease: run it
    std::function<void(const DocKey&)> revoked;  // stop its job, then call Released
    // The answer to ClaimJob: `elsewhere` unset when this instance holds the
    // job lease, else where the replication runs.
    std::function<void(const DocKey&, uint64_t generation, const std::string& job_id,
                       const std::optional<std::string>& elsewhere)>
        claimed;
    std::function<void(const std::string& job_id)> freed;  // a watched job lease may be claimed
  };

  ClusterMember(const Config::Cluster& config, std::string instance_id, CouchClient server,
                Hooks hooks, Clock& clock = SystemClock());
  ~ClusterMember();
  ClusterMember(const ClusterMember&) = delete;
  ClusterMember& operator=(const ClusterMember&) = delete;

  // Starts the thread (it creates the coordination database if missing).
  void Start();
  // Joins the threads; with `give_back` (called after every job has
  // stopped), then gives every lease back and deletes this member's
  // heartbeat document, so the others take over at once instead of after
  // lease_ttl (best effort: one attempt each, within the requests' retries).
  void Stop(bool give_back);

  // A replication document exists (or no longer does).
  void SetDoc(const DocKey& doc, bool exists);
  // The job of a revoked document has stopped (or it had none).
  void Released(const DocKey& doc);
  // Document `doc` (processing `generation`) may run replication `job_id`
  // once this instance holds its job lease: answered by Hooks::claimed.
  void ClaimJob(const std::string& job_id, const DocKey& doc, uint64_t generation);
  // The job has stopped here (or its claim is withdrawn): the job lease goes back.
  void ReleaseJob(const std::string& job_id);

  cluster::ClusterView View() const;
  const std::string& instance_id() const { return self_; }

 private:
  bool Wait(std::condition_variable& cv, bool& kicked, TimePoint until);
  void Loop();
  void BeatLoop();
  void Guard();
  int HeldCount() const;
  void Beat();
  bool ReadChanges();
  void Lose(const std::vector<DocKey>& docs, std::string_view why);
  void LoseTaken();
  void GiveUpLate(TimePoint now);
  std::set<DocKey> Docs() const;
  void Rebalance(const std::set<DocKey>& docs, TimePoint now);
  void WriteReleases(const std::set<DocKey>& docs, bool all);
  void ForgetStale(TimePoint now);
  using LeaseResult = std::function<void(const DocKey&, const DocWriteResult&, TimePoint sent)>;
  // Writes documents ((id, JSON) pairs) in _bulk_docs chunks and calls
  // `on_result` with each one's index, answer and when its chunk was sent.
  using BulkResult = std::function<void(size_t, const DocWriteResult&, TimePoint sent)>;
  size_t WriteBulk(const std::vector<std::pair<std::string, std::string>>& docs,
                   const std::string& what, const BulkResult& on_result);
  size_t WriteLeases(const std::vector<DocKey>& docs,
                     const std::function<std::string(const DocKey&)>& json,
                     const std::string& what, const LeaseResult& on_result);
  std::string LeaseJson(const DocKey& doc, const std::string& holder, bool deleted) const;
  std::string JobLeaseJson(const std::string& job_id, const std::string& holder, const DocKey& doc,
                           bool deleted) const;
  void ReadJobLease(const std::string& job_id, const std::optional<cluster::JobBook::Lease>& lease);
  void WriteJobReleases(bool all);
  struct Claim {
    DocKey doc;
    uint64_t generation = 0;
    bool operator==(const Claim&) const = default;
  };
  void AnswerClaim(const std::string& job_id, const Claim& claim,
                   const std::optional<std::string>& elsewhere);
  void ClaimJobs(const std::set<DocKey>& docs, TimePoint now);
  void WatchJobs(const std::set<DocKey>& docs, TimePoint now);
  void Fail(const std::string& what, const Error& e);
  void PublishView(const std::set<DocKey>& docs, TimePoint now);

  Config::Cluster config_;
  cluster::Timing timing_;
  std::string self_;
  CouchClient db_;
  Hooks hooks_;
  Clock& clock_;
  CancelToken cancel_;
  std::thread thread_;
  // Writes the heartbeat every `heartbeat` on its own, so that however long
  // the thread above takes over reading and writing leases (thousands of
  // them while the server is busy), the heartbeat, and with it every lease
  // held, is renewed on time.
  std::thread beat_thread_;
  // Gives up leases not renewed in time even while the thread above hangs in
  // a request to an unreachable server.
  std::thread guard_;

  // Shared with the engine thread.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable cv_guard_;
  std::condition_variable cv_beat_;
  bool beat_kicked_ = false;
  std::string beat_error_;  // the heartbeat's last failure, "" while fine
  bool stop_ = false;
  bool kicked_ = false;
  std::set<DocKey> docs_;
  std::set<DocKey> released_;  // revoked and stopped: give back the lease
  std::map<std::string, Claim> claims_;    // job leases asked for, by job id
  std::set<std::string> job_releases_;     // job leases to give back
  cluster::ClusterView view_;

  // The leases held: the thread's and the guard's.
  mutable std::mutex lease_mu_;
  cluster::OwnLeases own_;
  std::set<DocKey> revoking_;  // revoked, waiting for Released
  uint64_t lost_ = 0;

  // The thread's own.
  cluster::Membership members_;
  cluster::LeaseBook book_;
  std::vector<DocKey> taken_;  // leases read with a holder other than this instance
  cluster::JobBook job_book_;
  std::map<std::string, DocKey> own_jobs_;  // job leases held: job id -> its document
  std::set<std::string> watching_;          // held elsewhere: a duplicate here waits
  std::string member_rev_;  // the heartbeat thread's
  std::string since_ = "0";
  TimePoint judged_at_{};  // when the last complete read of the coordination database began
  std::atomic<bool> prepared_{false};  // the coordination database exists
  uint64_t conflicts_ = 0;
  std::string error_;
};

// "hostname:pid", the default instance id.
std::string DefaultInstanceId();

}  // namespace couchrepd

// Engine: several instances (cluster.enabled). Every instance follows every
// replicator database, but only the documents whose lease it holds reach its
// DocProcessor: it runs their jobs and writes their state back. The rows of
// the others are kept, so a document whose lease arrives starts at once.
#include <spdlog/spdlog.h>

#include <utility>

#include "couchrepd/log.h"
#include "engine_impl.h"

namespace couchrepd {

void Engine::Impl::StartCluster() {
  std::string self =
      config.cluster.instance_id.empty() ? DefaultInstanceId() : config.cluster.instance_id;
  ClusterMember::Hooks hooks;
  hooks.granted = [this](const DocKey& key) {
    Event e;
    e.kind = Event::Kind::kLeaseGranted;
    e.key = key;
    Post(std::move(e));
  };
  hooks.revoked = [this](const DocKey& key) {
    Event e;
    e.kind = Event::Kind::kLeaseRevoked;
    e.key = key;
    Post(std::move(e));
  };
  hooks.claimed = [this](const DocKey& key, uint64_t generation, const std::string& job_id,
                         const std::optional<std::string>& elsewhere) {
    Event e;
    e.kind = Event::Kind::kJobClaimed;
    e.key = key;
    e.generation = generation;
    e.job_id = job_id;
    e.elsewhere = elsewhere;
    Post(std::move(e));
  };
  hooks.freed = [this](const std::string& job_id) {
    Event e;
    e.kind = Event::Kind::kJobFreed;
    e.job_id = job_id;
    Post(std::move(e));
  };
  cluster = std::make_unique<ClusterMember>(config.cluster, self, ServerClient(), std::move(hooks),
                                            clock);
  spdlog::info("cluster: member {} (coordination database {}, heartbeat {} ms, lease_ttl {} ms)",
               self, config.cluster.database, config.cluster.heartbeat.count(),
               config.cluster.lease_ttl.count());
  cluster->Start();
}

void Engine::Impl::OnClusterRow(const std::string& db, const ChangeRow& row, TimePoint now) {
  DocKey key{db, row.id};
  // Design documents are no replications: no lease (the processor ignores them).
  if (row.id.rfind("_design/", 0) != 0) {
    if (row.deleted) {
      cluster_rows.erase(key);
    } else {
      cluster_rows[key] = row;
    }
    cluster->SetDoc(key, !row.deleted);
    // Not ours: the owner runs it (a deletion of ours stops the job; the lease
    // goes back once ClusterMember sees the document gone).
    if (!leased.count(key)) return;
  }
  Apply(processor.OnChange(db, row.id, row.deleted, row.doc, now, RandomUnit), now);
}

void Engine::Impl::OnLeaseGranted(const DocKey& key, TimePoint now) {
  if (shutting_down.load()) return;
  leased.insert(key);
  auto row = cluster_rows.find(key);
  if (row == cluster_rows.end()) return;  // deleted meanwhile: the lease goes back
  LogWith({.db = key.db, .doc_id = key.doc_id}, spdlog::level::debug,
          "cluster: {}/{} is this instance's", key.db, key.doc_id);
  const ChangeRow& r = row->second;
  Apply(processor.OnChange(key.db, r.id, false, r.doc, now, RandomUnit), now);
}

// The document goes to another instance (or its lease was lost): its job
// stops with a checkpoint, as if the document were gone here (no state is
// written), and the lease is given back once every run of it has ended.
void Engine::Impl::OnLeaseRevoked(const DocKey& key, TimePoint now) {
  if (!leased.erase(key)) {
    cluster->Released(key);
    return;
  }
  std::string job_id;
  if (auto view = processor.Doc(key)) job_id = view->job_id;
  Apply(processor.OnChange(key.db, key.doc_id, true, "", now, RandomUnit), now);
  std::set<uint64_t> runs;
  if (!job_id.empty()) {
    for (const auto& r : stopping) {
      if (r.job_id == job_id) runs.insert(r.run);
    }
  }
  LogWith({.db = key.db, .doc_id = key.doc_id, .replication_id = job_id}, spdlog::level::info,
          "cluster: {}/{} moves to another instance{}", key.db, key.doc_id,
          runs.empty() ? "" : "; its job checkpoints and stops first");
  if (runs.empty()) {
    LeaseFree(key);
  } else {
    releasing[key] = std::move(runs);
  }
}

// The document's job has stopped here: its lease may go to its new owner.
void Engine::Impl::LeaseFree(const DocKey& key) {
  LogWith({.db = key.db, .doc_id = key.doc_id}, spdlog::level::info,
          "cluster: {}/{} stopped here; its lease goes back", key.db, key.doc_id);
  cluster->Released(key);
}

void Engine::Impl::OnClusterRunEnded(uint64_t run) {
  // Job leases first: a moved document's new owner claims its job lease next.
  for (auto it = job_releasing.begin(); it != job_releasing.end();) {
    it->second.erase(run);
    if (it->second.empty()) {
      cluster->ReleaseJob(it->first);
      it = job_releasing.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = releasing.begin(); it != releasing.end();) {
    it->second.erase(run);
    if (it->second.empty()) {
      LeaseFree(it->first);
      it = releasing.erase(it);
    } else {
      ++it;
    }
  }
}

// A document may run its job once this instance holds the replication's job
// lease, so that two documents for one replication on two instances run it
// once (the other is a duplicate). Without clustering (never the case when
// the processor asks) it may at once.
void Engine::Impl::ClaimJob(const DocAction& a, TimePoint now) {
  if (!cluster) {
    Apply(processor.OnJobClaim(a.doc, a.generation, a.job_id, std::nullopt, now), now);
    return;
  }
  job_releasing.erase(a.job_id);  // removed and added again: the lease stays
  cluster->ClaimJob(a.job_id, a.doc, a.generation);
}

// A job was removed (or its claim withdrawn): its job lease goes back once
// every run of it has ended (checkpointed).
void Engine::Impl::ReleaseJob(const std::string& job_id) {
  if (!cluster) return;
  std::set<uint64_t> runs;
  for (const auto& r : stopping) {
    if (r.job_id == job_id) runs.insert(r.run);
  }
  if (runs.empty()) {
    job_releasing.erase(job_id);
    cluster->ReleaseJob(job_id);
  } else {
    job_releasing[job_id] = std::move(runs);
  }
}

void Engine::Impl::ForgetClusterDatabase(const std::string& db) {
  if (!cluster) return;
  for (auto it = cluster_rows.lower_bound(DocKey{db, ""});
       it != cluster_rows.end() && it->first.db == db;) {
    cluster->SetDoc(it->first, false);
    it = cluster_rows.erase(it);
  }
}

}  // namespace couchrepd

// ReplicationJob in passes (park_when_idle): each Run() writes what the source
// has and returns kIdle without holding a thread; against the test server.
#include <doctest/doctest.h>

#include <string>

#include "couch/client_fixture.h"
#include "couchrepd/replication_job.h"
#include "couchrepd/replication_spec.h"
#include "integration/replication_helpers.h"
#include "support/test_server.h"

namespace couchrepd::testing {
namespace {

JobSettings PassSettings(const TestServer& server, std::chrono::milliseconds checkpoint_interval) {
  ReplicationDefaults defaults;
  defaults.replication.checkpoint_interval = checkpoint_interval;
  std::string doc = "{\"source\":\"" + server.url() + "/src\",\"target\":\"" + server.url() +
                    "/tgt\",\"continuous\":true}";
  auto spec = ParseReplicationDoc(doc, defaults);
  REQUIRE(spec.ok());
  JobSettings s;
  s.spec = *spec;
  s.id.base = "0123456789abcdef0123456789abcdef";
  s.id.full = s.id.base + "+continuous";
  s.http = FastOptions();
  s.park_when_idle = true;
  s.log_prefix = "[passes]";
  return s;
}

void PutDoc(TestServer& server, const std::string& db, const std::string& id) {
  auto r = server.Request("PUT", "/" + db + "/" + id, "{\"v\":\"" + id + "\"}");
  REQUIRE(r.status == 201);
}

int Status(TestServer& server, const std::string& path) { return server.Request("GET", path).status; }

TEST_CASE("job passes: each Run() catches up and parks; a later pass carries new writes") {
  TestServer server;
  REQUIRE(server.Request("PUT", "/src").status == 201);
  REQUIRE(server.Request("PUT", "/tgt").status == 201);
  PutDoc(server, "src", "a");
  PutDoc(server, "src", "b");
  ReplicationJob job(PassSettings(server, std::chrono::hours(1)));

  auto first = job.Run();
  REQUIRE(first.ok());
  CHECK(*first == JobEnd::kIdle);
  CHECK(Status(server, "/tgt/a") == 200);
  CHECK(Status(server, "/tgt/b") == 200);
  JobSnapshot snap = job.Snapshot();
  CHECK(snap.caught_up);
  CHECK(snap.stats.docs_written == 2);
  // Written but not checkpointed yet (the interval is an hour): a pass is
  // due then, and nothing is on the source's _local document.
  CHECK(job.NextCheckpoint().has_value());
  CHECK(Status(server, "/src/_local/0123456789abcdef0123456789abcdef") == 404);

  PutDoc(server, "src", "c");
  auto second = job.Run();
  REQUIRE(second.ok());
  CHECK(*second == JobEnd::kIdle);
  CHECK(Status(server, "/tgt/c") == 200);
  CHECK(job.Snapshot().stats.docs_written == 3);

  // Nothing new: a pass writes nothing.
  auto third = job.Run();
  REQUIRE(third.ok());
  CHECK(*third == JobEnd::kIdle);
  CHECK(job.Snapshot().stats.docs_written == 3);

  // Stopped while parked: the next Run() only checkpoints what is written.
  job.Stop();
  auto last = job.Run();
  REQUIRE(last.ok());
  CHECK(*last == JobEnd::kStopped);
  auto local = server.Request("GET", "/src/_local/0123456789abcdef0123456789abcdef");
  REQUIRE(local.status == 200);
  CHECK(JsonText(local.body, {"source_last_seq"}) == *job.Snapshot().through_seq);
  CHECK(!job.NextCheckpoint().has_value());
}

TEST_CASE("job passes: a pass checkpoints when the interval has passed, then nothing is due") {
  TestServer server;
  REQUIRE(server.Request("PUT", "/src").status == 201);
  REQUIRE(server.Request("PUT", "/tgt").status == 201);
  PutDoc(server, "src", "a");
  ReplicationJob job(PassSettings(server, std::chrono::milliseconds(0)));
  auto r = job.Run();
  REQUIRE(r.ok());
  CHECK(*r == JobEnd::kIdle);
  CHECK(!job.NextCheckpoint().has_value());
  auto local = server.Request("GET", "/tgt/_local/0123456789abcdef0123456789abcdef");
  REQUIRE(local.status == 200);
  CHECK(JsonText(local.body, {"source_last_seq"}) == *job.Snapshot().through_seq);
  CHECK(job.Snapshot().checkpoints_ok >= 1);

  // A later job starts from that checkpoint, not from 0.
  PutDoc(server, "src", "b");
  ReplicationJob next(PassSettings(server, std::chrono::milliseconds(0)));
  auto again = next.Run();
  REQUIRE(again.ok());
  CHECK(next.Snapshot().run_stats.docs_written == 1);
  CHECK(Status(server, "/tgt/b") == 200);
}

}  // namespace
}  // namespace couchrepd::testing

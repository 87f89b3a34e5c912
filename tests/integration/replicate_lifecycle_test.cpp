// `couchrepd replicate` interrupted, resumed, continuous, and failing.
#include <signal.h>

#include <thread>

#include "integration/replication_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> ReplicateArgv(std::vector<std::string> args) {
  std::vector<std::string> argv = {COUCHREPD_BINARY, "replicate", "--json", "--quiet"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

constexpr int kBigSource = 12000;

void InterruptAndResume(int sig) {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("big-src");
  auto tgt = root.Database("big-tgt");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, kBigSource);
  const std::vector<std::string> args = {server.url() + "/big-src", server.url() + "/big-tgt",
                                         "--create-target", "--worker-processes", "1",
                                         "--worker-batch-size", "50", "--checkpoint-interval", "100"};
  std::string base;
  {
    Process p(ReplicateArgv(args));
    // Wait until a checkpoint exists on the target and part of the data arrived.
    REQUIRE(WaitUntil(
        [&] {
          auto local = root.Database("big-tgt");
          int64_t n = DocCount(local);
          return n > 1000;
        },
        60s));
    std::this_thread::sleep_for(300ms);  // at least one more checkpoint interval
    p.Signal(sig);
    auto code = p.Wait(30s);
    REQUIRE(code.has_value());
    if (sig == SIGINT) {
      CHECK(*code == 130);
      CHECK(JsonText(p.Stdout(), {"state"}) == "stopped");
      base = JsonText(p.Stdout(), {"replication_id"}).substr(0, 32);
    } else {
      CHECK(*code == 128 + SIGKILL);
    }
  }
  int64_t copied = DocCount(tgt);
  CHECK(copied < kBigSource);
  std::string run = ReplicateOk(args);
  if (base.empty()) base = JsonText(run, {"replication_id"}).substr(0, 32);
  CHECK(DocCount(tgt) == kBigSource);
  // The second run started from a checkpoint above 0: it did not re-read everything.
  CHECK(JsonInt(run, {"docs_read"}) < kBigSource);
  CHECK(JsonInt(run, {"docs_read"}) >= kBigSource - copied);
  auto ckpt = tgt.GetLocal(base);
  REQUIRE(ckpt.ok());
  REQUIRE(ckpt->has_value());
  std::string history = JsonText(**ckpt, {"history"});
  // Two sessions: the interrupted one (checkpointed) and the resumed one.
  size_t sessions = 0;
  for (size_t pos = 0; (pos = history.find("\"session_id\"", pos)) != std::string::npos; ++pos) ++sessions;
  CHECK(sessions == 2);
}

}  // namespace

TEST_CASE("SIGINT stops with a checkpoint; running again resumes and completes") {
  InterruptAndResume(SIGINT);
}

TEST_CASE("SIGKILL mid-run; running again resumes from the last checkpoint") {
  InterruptAndResume(SIGKILL);
}

TEST_CASE("continuous: new source documents arrive within 2 s, also after the feed is cut") {
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("c-src");
  auto tgt = root.Database("c-tgt");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 100);
  Process p(ReplicateArgv({server.url() + "/c-src", server.url() + "/c-tgt", "--create-target",
                           "--continuous"}));
  REQUIRE(WaitUntil([&] { return DocCount(tgt) == 100; }, 30s));

  auto arrives = [&](const std::string& id) {
    REQUIRE(src.PutDoc(id, R"({"late":true})").ok());
    auto t0 = std::chrono::steady_clock::now();
    bool ok = WaitUntil([&] { return tgt.GetDoc(id).ok(); }, 5s);
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(ok);
    CHECK(took < 2s);
  };
  arrives("late-1");
  auto closed = server.Request("POST", "/_test/close_feeds");
  CHECK(closed.status == 200);
  CHECK(JsonInt(closed.body, {"closed"}) >= 1);
  arrives("late-2");
  CHECK(p.running());

  p.Signal(SIGINT);
  auto code = p.Wait(20s);
  REQUIRE(code.has_value());
  CHECK(*code == 130);
  CHECK(JsonText(p.Stdout(), {"replication_id"}).find("+continuous+create_target") !=
        std::string::npos);
}

TEST_CASE("failures: missing source, wrong password, server gone mid-run") {
  TestServerOptions opts;
  opts.admin = "admin:Rep-pass1";
  TestServer server(opts);
  auto root = ServerClient(server, "admin:Rep-pass1");
  auto src = root.Database("fail-src");
  REQUIRE(src.CreateDb().ok());
  REQUIRE(server.Request("PUT", "/fail-src/_security",
                         R"({"admins":{"names":[],"roles":[]},"members":{"names":["admin"],"roles":[]}})")
              .status / 100 == 2);
  PutPlainDocs(src, 0, 3000);
  std::string origin = server.url().substr(7);  // 127.0.0.1:PORT

  auto missing = Replicate({"http://admin:Rep-pass1@" + origin + "/nope",
                            "http://admin:Rep-pass1@" + origin + "/fail-tgt", "--create-target"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("db_not_found") != std::string::npos);
  CHECK(missing.err.find("Rep-pass1") == std::string::npos);
  CHECK(missing.out.find("Rep-pass1") == std::string::npos);

  auto wrong = Replicate({"http://admin:Wrong-pass2@" + origin + "/fail-src",
                          "http://admin:Rep-pass1@" + origin + "/fail-tgt", "--create-target"});
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.err.find("unauthorized") != std::string::npos);
  CHECK(wrong.err.find("Wrong-pass2") == std::string::npos);

  Process p(ReplicateArgv({"http://admin:Rep-pass1@" + origin + "/fail-src",
                           "http://admin:Rep-pass1@" + origin + "/fail-tgt2", "--create-target",
                           "--worker-processes", "1", "--worker-batch-size", "20",
                           "--retries-per-request", "2", "--connection-timeout", "2000"}));
  auto tgt = root.Database("fail-tgt2");
  REQUIRE(WaitUntil([&] { return DocCount(tgt) > 100; }, 30s));
  server.Stop();
  auto code = p.Wait(60s);
  REQUIRE(code.has_value());  // no hang
  CHECK(*code == 1);
  CHECK(JsonText(p.Stdout(), {"ok"}) == "false");
  CHECK_FALSE(JsonText(p.Stdout(), {"reason"}).empty());
  CHECK(p.Stderr().find("Rep-pass1") == std::string::npos);
}

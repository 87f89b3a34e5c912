// `couchrepd check-config` as a user runs it: a real process against a real server.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "support/test_server.h"

using namespace couchrepd::testing;

namespace {

struct Run {
  int exit_code;
  std::string output;
};

Run RunCouchrepd(const std::string& args, const std::string& env = "") {
  std::string cmd = env + " " COUCHREPD_BINARY " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string WriteTemp(const std::string& content) {
  char name[] = "/tmp/couchrepd-config-XXXXXX";
  int fd = mkstemp(name);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(name) << content;
  return name;
}

}  // namespace

TEST_CASE("check-config validates, reaches the server and shows who we are") {
  TestServerOptions opts;
  opts.admin = "admin:Ch3ck-pass";
  TestServer server(opts);
  auto path = WriteTemp("server:\n  url: " + server.url() + "\n  username: admin\n");
  auto ok = RunCouchrepd("check-config --config " + path, "COUCHREPD_SERVER_PASSWORD=Ch3ck-pass");
  CHECK(ok.exit_code == 0);
  CHECK(ok.output.find(server.uuid()) != std::string::npos);
  CHECK(ok.output.find("authenticated as admin") != std::string::npos);
  CHECK(ok.output.find("Ch3ck-pass") == std::string::npos);

  auto wrong = RunCouchrepd("check-config --config " + path, "COUCHREPD_SERVER_PASSWORD=nope-nope");
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.output.find("nope-nope") == std::string::npos);

  server.Stop();
  auto down = RunCouchrepd("check-config --config " + path, "COUCHREPD_SERVER_PASSWORD=Ch3ck-pass");
  CHECK(down.exit_code == 1);
  CHECK(down.output.find("cannot reach the server") != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("check-config rejects a bad configuration with exit code 2 and the key's path") {
  auto path = WriteTemp("scheduler:\n  max_jobs: lots\nreplicator:\n  write_back: sometimes\n");
  auto r = RunCouchrepd("check-config --config " + path);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("scheduler.max_jobs") != std::string::npos);
  CHECK(r.output.find("replicator.write_back") != std::string::npos);
  std::remove(path.c_str());
  auto missing = RunCouchrepd("check-config --config /nonexistent/couchrepd.yaml");
  CHECK(missing.exit_code == 2);
  CHECK(missing.output.find("/nonexistent/couchrepd.yaml") != std::string::npos);
}

TEST_CASE("--version and --help") {
  auto v = RunCouchrepd("--version");
  CHECK(v.exit_code == 0);
  CHECK(v.output.rfind("couchrepd ", 0) == 0);
  auto h = RunCouchrepd("--help");
  CHECK(h.exit_code == 0);
  CHECK(h.output.find("check-config") != std::string::npos);
  auto bad = RunCouchrepd("frobnicate");
  CHECK(bad.exit_code == 2);
}

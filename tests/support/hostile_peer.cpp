// Starts and stops tests/server/hostile-peer.js for the hostile-input integration tests.
#include "support/hostile_peer.h"

#include "support/node_scripts.h"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>


namespace couchrepd::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kHost[] = "127.0.0.1";
constexpr char kListeningPrefix[] = "hostile-peer listening on http://127.0.0.1:";
constexpr auto kStartTimeout = std::chrono::seconds(20);
constexpr auto kTermGrace = std::chrono::seconds(2);



std::string RandomHex32() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device device;
  std::mt19937 engine(device());
  std::uniform_int_distribution<int> pick(0, 15);
  std::string out;
  for (int i = 0; i < 32; ++i) out += kHex[pick(engine)];
  return out;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

HostilePeer::HostilePeer() : uuid_(RandomHex32()) {
  const std::string script = NodeScript("HostilePeer", "COUCHREPD_HOSTILE_PEER_JS", "hostile-peer.js");
  const std::string node = FindNode("HostilePeer");
  char tmpl[] = "/tmp/hostile-peer-XXXXXX.log";
  int fd = mkstemps(tmpl, 4);
  if (fd < 0)
    throw std::runtime_error(std::string("HostilePeer: mkstemps: ") + std::strerror(errno));
  close(fd);
  log_path_ = tmpl;

  std::vector<std::string> args = {node, script, "--port", "0", "--host", kHost, "--uuid", uuid_};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int log_fd = open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("HostilePeer: fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // dies with the test
    if (getppid() != parent) _exit(126);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  if (null_fd >= 0) close(null_fd);
  pid_ = pid;

  auto fail = [&](const std::string& why) {
    Kill();
    std::string output = ReadAll(log_path_);
    std::remove(log_path_.c_str());
    throw std::runtime_error("HostilePeer: " + why + " (" + script + ")\n--- peer output ---\n" +
                             output);
  };
  const auto deadline = Clock::now() + kStartTimeout;
  while (port_ == 0) {
    std::string out = ReadAll(log_path_);
    if (auto at = out.find(kListeningPrefix); at != std::string::npos) {
      port_ = std::atoi(out.c_str() + at + std::strlen(kListeningPrefix));
      break;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      fail("the peer exited during start-up");
    }
    if (Clock::now() >= deadline) fail("the peer did not announce its port within 20 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  url_ = std::string("http://") + kHost + ":" + std::to_string(port_);
  for (;;) {
    httplib::Client client(kHost, port_);
    client.set_connection_timeout(1, 0);
    client.set_read_timeout(2, 0);
    if (auto res = client.Get("/");
        res && res->status == 200 && res->body.find("\"" + uuid_ + "\"") != std::string::npos) {
      return;
    }
    if (Clock::now() >= deadline) fail("GET / did not answer with the peer's uuid within 20 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

HostilePeer::~HostilePeer() {
  Kill();
  if (!log_path_.empty() && std::getenv("COUCHREPD_TEST_KEEP_LOGS") == nullptr) {
    std::remove(log_path_.c_str());
  }
}

void HostilePeer::Kill() {
  if (pid_ <= 0) return;
  const pid_t pid = pid_;
  pid_ = -1;
  kill(pid, SIGTERM);
  const auto deadline = Clock::now() + kTermGrace;
  int status = 0;
  while (Clock::now() < deadline) {
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid || (done < 0 && errno == ECHILD)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGKILL);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

std::vector<HostilePeer::Request> HostilePeer::Log(const std::string& db) const {
  httplib::Client client(kHost, port_);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(10, 0);
  auto res = client.Get("/_peer/log?db=" + httplib::detail::encode_query_param(db));
  if (!res || res->status != 200) {
    throw std::runtime_error("HostilePeer: GET /_peer/log failed\n" + LogTail());
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array requests;
  if (parser.parse(res->body).get(doc) != simdjson::SUCCESS ||
      doc["requests"].get(requests) != simdjson::SUCCESS) {
    throw std::runtime_error("HostilePeer: /_peer/log was not JSON: " + res->body.substr(0, 200));
  }
  std::vector<Request> out;
  for (auto el : requests) {
    Request r;
    std::string_view s;
    if (el["method"].get(s) == simdjson::SUCCESS) r.method = std::string(s);
    if (el["path"].get(s) == simdjson::SUCCESS) r.path = std::string(s);
    if (el["query"].get(s) == simdjson::SUCCESS) r.query = std::string(s);
    int64_t n = 0;
    if (el["docs"].get(n) == simdjson::SUCCESS) r.docs = n;
    uint64_t bytes = 0;
    if (el["bytes_sent"].get(bytes) == simdjson::SUCCESS) r.bytes_sent = bytes;
    bool aborted = false;
    if (el["aborted"].get(aborted) == simdjson::SUCCESS) r.aborted = aborted;
    bool finished = false;
    if (el["finished"].get(finished) == simdjson::SUCCESS) r.finished = finished;
    simdjson::dom::array ids;
    if (el["ids"].get(ids) == simdjson::SUCCESS) {
      for (auto id : ids) {
        if (id.get(s) == simdjson::SUCCESS) r.ids.emplace_back(s);
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

size_t HostilePeer::Count(const std::string& db, const std::string& method,
                          const std::string& path) const {
  size_t n = 0;
  for (const auto& r : Log(db)) {
    if (r.method == method && r.path == path) ++n;
  }
  return n;
}

std::string HostilePeer::LogTail(size_t max_bytes) const {
  std::string all = ReadAll(log_path_);
  return all.size() > max_bytes ? all.substr(all.size() - max_bytes) : all;
}

}  // namespace couchrepd::testing

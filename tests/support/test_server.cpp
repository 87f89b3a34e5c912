#include "support/test_server.h"

#include "support/node_scripts.h"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef COUCHREPD_TEST_SERVER_JS
#define COUCHREPD_TEST_SERVER_JS ""
#endif

namespace couchrepd::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kHost[] = "127.0.0.1";
constexpr char kListeningPrefix[] = "couch-test-server listening on http://127.0.0.1:";
constexpr auto kStartTimeout = std::chrono::seconds(20);
constexpr auto kTermGrace = std::chrono::seconds(2);
constexpr auto kPortReuseTimeout = std::chrono::seconds(5);

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? std::string(value) : fallback;
}

std::string ScriptPath() {
  std::string path = EnvOr("COUCHREPD_TEST_SERVER_JS", COUCHREPD_TEST_SERVER_JS);
  if (path.empty()) {
    throw std::runtime_error(
        "TestServer: the launcher path is unknown: define COUCHREPD_TEST_SERVER_JS at build time "
        "or set the environment variable of that name");
  }
  if (access(path.c_str(), R_OK) != 0) {
    throw std::runtime_error("TestServer: cannot read the launcher " + path);
  }
  return path;
}

// Resolves `node` from PATH in the parent, so that the child only has to call execv().

std::string RandomHex(std::size_t digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device device;
  std::mt19937_64 engine((static_cast<std::uint64_t>(device()) << 32) ^ device());
  std::uniform_int_distribution<int> pick(0, 15);
  std::string out;
  for (std::size_t i = 0; i < digits; ++i) out += kHex[pick(engine)];
  return out;
}

std::string ReadFileFrom(const std::string& path, std::size_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size <= static_cast<std::streamoff>(offset)) return "";
  in.seekg(static_cast<std::streamoff>(offset));
  std::string data(static_cast<std::size_t>(size) - offset, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<std::size_t>(in.gcount()));
  return data;
}

std::size_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
}

// Returns the port announced by the launcher's first stdout line, or 0 when not there yet.
int ParsePort(const std::string& output) {
  std::size_t at = output.find(kListeningPrefix);
  if (at == std::string::npos) return 0;
  std::size_t begin = at + std::strlen(kListeningPrefix);
  std::size_t end = output.find('/', begin);
  if (end == std::string::npos) return 0;
  try {
    return std::stoi(output.substr(begin, end - begin));
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

TestServer::TestServer(TestServerOptions options) : options_(std::move(options)) {
  uuid_ = options_.uuid.empty() ? RandomHex(32) : options_.uuid;
  opaque_seqs_ = options_.opaque_seqs.has_value()
                     ? *options_.opaque_seqs
                     : EnvOr("COUCHREPD_TEST_SEQ_MODE", "int") == "opaque";

  std::string dir = EnvOr("TMPDIR", "/tmp");
  std::string tmpl = dir + "/couch-test-server-XXXXXX.log";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = mkstemps(buf.data(), 4);
  if (fd < 0) {
    throw std::runtime_error("TestServer: cannot create a log file in " + dir + ": " +
                             std::strerror(errno));
  }
  close(fd);
  log_path_ = buf.data();

  if (options_.persistent) {
    std::string data_tmpl = dir + "/couch-test-server-data-XXXXXX";
    std::vector<char> data_buf(data_tmpl.begin(), data_tmpl.end());
    data_buf.push_back('\0');
    if (mkdtemp(data_buf.data()) == nullptr) {
      int err = errno;
      unlink(log_path_.c_str());
      throw std::runtime_error("TestServer: cannot create a data directory in " + dir + ": " +
                               std::strerror(err));
    }
    data_dir_ = data_buf.data();
  }

  try {
    Launch(0);
  } catch (...) {
    unlink(log_path_.c_str());
    if (!data_dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(data_dir_, ignored);
    }
    throw;
  }
}

TestServer::~TestServer() {
  Kill(SIGTERM);
  if (std::getenv("COUCHREPD_TEST_KEEP_LOGS") == nullptr) {
    if (!log_path_.empty()) unlink(log_path_.c_str());
    if (!data_dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(data_dir_, ignored);
    }
  }
}

void TestServer::Stop() { Kill(SIGTERM); }

void TestServer::Kill9() { Kill(SIGKILL); }

void TestServer::Start() {
  if (pid_ > 0) return;
  // The port was ours a moment ago; if something grabbed it meanwhile, retry for a while.
  const auto deadline = Clock::now() + kPortReuseTimeout;
  for (;;) {
    try {
      Launch(port_);
      return;
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()).find("EADDRINUSE") == std::string::npos ||
          Clock::now() >= deadline) {
        throw;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

std::string TestServer::LogTail(std::size_t max_bytes) const {
  std::size_t size = FileSize(log_path_);
  return ReadFileFrom(log_path_, size > max_bytes ? size - max_bytes : 0);
}

void TestServer::Launch(int port) {
  const std::string script = ScriptPath();
  const std::string node = FindNode("TestServer");
  std::vector<std::string> args = {node,     script,   "--port",     std::to_string(port),
                                    "--host",  kHost,    "--uuid",     uuid_,
                                    "--seq-mode", opaque_seqs_ ? "opaque" : "int"};
  if (!options_.admin.empty()) {
    args.push_back("--admin");
    args.push_back(options_.admin);
  }
  if (options_.session_timeout_s > 0) {
    args.push_back("--session-timeout");
    args.push_back(std::to_string(options_.session_timeout_s));
  }
  if (!data_dir_.empty()) {
    args.push_back("--data-dir");
    args.push_back(data_dir_);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const std::size_t log_offset = FileSize(log_path_);
  int log_fd = open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (log_fd < 0) {
    throw std::runtime_error("TestServer: cannot open " + log_path_ + ": " + std::strerror(errno));
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();

  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(log_fd);
    if (null_fd >= 0) close(null_fd);
    throw std::runtime_error(std::string("TestServer: fork failed: ") + std::strerror(err));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until execv().
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // a crashing test never leaves a server behind
    if (getppid() != parent) _exit(126);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    if (close_range(3, ~0U, 0) != 0) {
      for (int fd = 3; fd < 4096; ++fd) close(fd);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  if (null_fd >= 0) close(null_fd);
  pid_ = pid;

  auto fail = [&](const std::string& why) {
    Kill(SIGTERM);
    std::string output = ReadFileFrom(log_path_, log_offset);
    if (output.size() > 4000) output = output.substr(output.size() - 4000);
    std::string hint;
    if (output.find("Cannot find module") != std::string::npos) {
      hint = "\n(hint: run `npm ci --ignore-scripts` in tests/server)";
    }
    throw std::runtime_error("TestServer: " + why + " (" + script + ")\n--- server output ---\n" +
                             output + hint);
  };

  const auto deadline = Clock::now() + kStartTimeout;
  int announced = 0;
  while (announced == 0) {
    int status = 0;
    pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      fail("the server exited during start-up");
    }
    announced = ParsePort(ReadFileFrom(log_path_, log_offset));
    if (announced != 0) break;
    if (Clock::now() >= deadline) fail("the server did not announce its port within 20 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  port_ = announced;
  url_ = std::string("http://") + kHost + ":" + std::to_string(port_);

  // Wait until GET / answers 200 with our uuid (so we never talk to someone else's server).
  for (;;) {
    httplib::Client client(kHost, port_);
    client.set_connection_timeout(1, 0);
    client.set_read_timeout(2, 0);
    if (auto res = client.Get("/"); res && res->status == 200 &&
                                    res->body.find("\"" + uuid_ + "\"") != std::string::npos) {
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      fail("the server exited during start-up");
    }
    if (Clock::now() >= deadline) fail("GET / did not answer 200 with the server uuid within 20 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void TestServer::Kill(int first_signal) {
  if (pid_ <= 0) return;
  const pid_t pid = pid_;
  pid_ = -1;
  kill(pid, first_signal);
  const auto deadline = Clock::now() + kTermGrace;
  for (;;) {
    int status = 0;
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid || (done < 0 && errno == ECHILD)) return;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

TestServer::Reply TestServer::Request(const std::string& method, const std::string& path,
                                      const std::string& body, const std::string& content_type) {
  httplib::Client client(kHost, port_);
  client.set_url_encode(false);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(60, 0);
  client.set_write_timeout(60, 0);
  if (!options_.admin.empty()) {
    std::size_t colon = options_.admin.find(':');
    client.set_basic_auth(options_.admin.substr(0, colon),
                          colon == std::string::npos ? "" : options_.admin.substr(colon + 1));
  }
  httplib::Request req;
  req.method = method;
  req.path = path;
  req.set_header("Accept", "application/json");
  if (!body.empty()) {
    req.body = body;
    req.set_header("Content-Type", content_type);
  }
  auto res = client.send(req);
  if (!res) return Reply{0, httplib::to_string(res.error())};
  return Reply{res->status, res->body};
}

}  // namespace couchrepd::testing

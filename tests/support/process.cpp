#include "support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace couchrepd::testing {

namespace {

std::string TempPath(const char* what) {
  std::string path = std::string("/tmp/couchrepd-test-") + what + "-XXXXXX";
  int fd = mkstemp(path.data());
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  close(fd);
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Process::Process(std::vector<std::string> argv, std::vector<std::string> env)
    : out_path_(TempPath("out")), err_path_(TempPath("err")) {
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // Signals blocked in the test's threads must not be inherited blocked.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int out = open(out_path_.c_str(), O_WRONLY | O_TRUNC);
    int err = open(err_path_.c_str(), O_WRONLY | O_TRUNC);
    int in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (running()) {
    kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(5));
  }
  std::remove(out_path_.c_str());
  std::remove(err_path_.c_str());
}

void Process::Signal(int sig) {
  if (!exit_code_) kill(pid_, sig);
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exit_code_) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return exit_code_;
}

bool Process::running() { return !Wait(std::chrono::milliseconds(0)).has_value(); }

std::string Process::Stdout() const { return ReadFile(out_path_); }
std::string Process::Stderr() const { return ReadFile(err_path_); }

long ProcStatusKb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::string prefix = field + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::strtol(line.c_str() + prefix.size(), nullptr, 10);
  }
  return -1;
}

RunResult RunCouchrepd(const std::vector<std::string>& args, const std::vector<std::string>& env,
                       std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {COUCHREPD_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, env);
  auto code = p.Wait(timeout);
  RunResult r;
  if (!code) {
    p.Signal(SIGKILL);
    p.Wait(std::chrono::seconds(5));
    r.exit_code = -1;
  } else {
    r.exit_code = *code;
  }
  r.out = p.Stdout();
  r.err = p.Stderr();
  return r;
}

}  // namespace couchrepd::testing

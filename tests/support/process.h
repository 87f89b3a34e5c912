// Runs couchrepd (or any program) as a child process for end-to-end tests:
// captured output, signals, bounded waits. The child dies with the test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace couchrepd::testing {

class Process {
 public:
  // Starts `argv` with extra environment entries ("NAME=value"). stdout and
  // stderr go to separate temporary files.
  Process(std::vector<std::string> argv, std::vector<std::string> env = {});
  ~Process();  // SIGKILL if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void Signal(int sig);
  // Exit code (128+signal when killed), or nullopt if still running after `timeout`.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool running();
  std::string Stdout() const;
  std::string Stderr() const;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string out_path_, err_path_;
};

// A "Vm...:" field of /proc/PID/status in KiB (e.g. "VmRSS", "VmHWM"), or -1 when the process
// is gone (or a zombie) or has no such field.
long ProcStatusKb(pid_t pid, const std::string& field);

// Runs couchrepd to completion (at most `timeout`) and returns exit code, stdout, stderr.
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
RunResult RunCouchrepd(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                       std::chrono::milliseconds timeout = std::chrono::seconds(120));

}  // namespace couchrepd::testing

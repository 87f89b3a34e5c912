// StatusServer: couchrepd's HTTP status API and dashboard (SPEC §7).
//
// Serves CouchDB-compatible `_scheduler/jobs`, `_scheduler/docs` and
// `_active_tasks`, operator actions (reset, pause, resume), Prometheus
// `/metrics`, `/health` and the dashboard at `/`, on `status.listen` with
// optional basic auth. Handlers only read the immutable EngineSnapshot the
// engine publishes (through `snapshot`), never the engine's own state; the
// operator actions call back into the engine. Nothing served contains a
// credential.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "couchrepd/config.h"
#include "couchrepd/engine.h"
#include "couchrepd/result.h"

namespace couchrepd {

struct StatusHooks {
  std::function<std::shared_ptr<const EngineSnapshot>()> snapshot;
  std::function<bool(const std::string& job_id)> reset;
  std::function<bool(const std::string& job_id)> pause;
  std::function<bool(const std::string& job_id)> resume;
};

class StatusServer {
 public:
  StatusServer(Config::Status settings, StatusHooks hooks);
  ~StatusServer();  // stops
  // Binds `status.listen` without serving yet, so that a taken or invalid
  // address fails before the engine starts any work. A clear error then.
  Status Bind();
  // Binds (unless Bind() did) and starts serving on a background thread.
  Status Start();
  void Stop();
  int port() const;  // the bound port (useful with listen port 0)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace couchrepd

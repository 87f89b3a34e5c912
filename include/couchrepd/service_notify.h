// Telling a service manager (systemd, Type=notify) how couchrepd is doing:
// READY=1 once the status API listens and every replicator feed is connected,
// STATUS= with the job counts, WATCHDOG=1 while the engine loop is alive,
// STOPPING=1 on shutdown. Sends nothing when NOTIFY_SOCKET is unset or
// couchrepd was built without libsystemd.
#pragma once

#include <string>

#include "couchrepd/clock.h"

namespace couchrepd {

class ServiceNotifier {
 public:
  ServiceNotifier();
  // Whether a service manager listens (NOTIFY_SOCKET) and support was built.
  bool enabled() const { return enabled_; }
  // The interval for WATCHDOG=1 (half of WatchdogSec); zero when off.
  Duration watchdog_interval() const { return watchdog_interval_; }

  void Ready(const std::string& status);
  void Status(const std::string& status);
  void Watchdog();
  void Stopping();

 private:
  void Send(const std::string& message);
  bool enabled_ = false;
  Duration watchdog_interval_{0};
};

}  // namespace couchrepd

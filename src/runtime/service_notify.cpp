// sd_notify for `serve` under systemd (Type=notify); a no-op without libsystemd.
#include "couchrepd/service_notify.h"

#include <cstdlib>

#ifdef COUCHREPD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace couchrepd {

ServiceNotifier::ServiceNotifier() {
#ifdef COUCHREPD_HAVE_SYSTEMD
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_interval_ = std::chrono::duration_cast<Duration>(std::chrono::microseconds(usec / 2));
    if (watchdog_interval_ <= Duration(0)) watchdog_interval_ = Duration(1);
  }
#endif
}

void ServiceNotifier::Send(const std::string& message) {
#ifdef COUCHREPD_HAVE_SYSTEMD
  if (enabled_) sd_notify(0, message.c_str());
#else
  (void)message;
#endif
}

void ServiceNotifier::Ready(const std::string& status) { Send("READY=1\nSTATUS=" + status); }
void ServiceNotifier::Status(const std::string& status) { Send("STATUS=" + status); }
void ServiceNotifier::Watchdog() { Send("WATCHDOG=1"); }
void ServiceNotifier::Stopping() { Send("STOPPING=1\nSTATUS=stopping"); }

}  // namespace couchrepd

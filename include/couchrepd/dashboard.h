// Dashboard: the HTML page the status API serves at `GET /` (SPEC §7).
//
// One self-contained page (no external assets) that reads the status API's
// JSON endpoints from the browser and refreshes itself. The status server
// serves it as is when `status.dashboard` is on.
#pragma once

#include <string>

namespace couchrepd {

// The complete page (text/html; charset=utf-8). Thread-safe.
std::string DashboardHtml();

}  // namespace couchrepd

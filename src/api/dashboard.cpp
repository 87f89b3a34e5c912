// The dashboard page: src/api/dashboard.html, embedded at build time by
// scripts/embed_html.py (a meson custom_target) as a raw string literal.
#include "couchrepd/dashboard.h"

#include "dashboard_html.h"

namespace couchrepd {

std::string DashboardHtml() {
  return std::string(embedded::kDashboardHtml, sizeof(embedded::kDashboardHtml) - 1);
}

}  // namespace couchrepd

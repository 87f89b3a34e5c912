// The dashboard (GET /, SPEC §7) in a real browser: a real `couchrepd serve`
// with real jobs (a completed one-shot, a running continuous one, a crashing
// one whose source is missing), then headless Chromium renders the page and
// we assert on the DOM it built from the JSON API, and keep a screenshot in
// test-artifacts/dashboard.png.
//
// Chromium is Debian's `chromium` (scripts/lib.sh installs it with the other
// packages); COUCHREPD_CHROMIUM may name another binary. Without it the test
// fails: it never passes silently.
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "integration/serve_helpers.h"

using namespace couchrepd;
using namespace couchrepd::testing;
namespace fs = std::filesystem;

namespace {

const char* const kAdmin = "admin:Dash-pw-7";
const char* const kPassword = "Dash-pw-7";

// The browser: $COUCHREPD_CHROMIUM, else `chromium` (or `chromium-browser`) on PATH.
std::string FindChromium() {
  if (const char* env = std::getenv("COUCHREPD_CHROMIUM"); env != nullptr && *env != '\0') {
    return access(env, X_OK) == 0 ? std::string(env) : std::string();
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (const char* name : {"chromium", "chromium-browser"}) {
    std::stringstream ss(dirs);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      if (dir.empty()) continue;
      std::string candidate = dir + "/" + name;
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  return "";
}

// A loopback port nobody listens on right now.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

struct Get {
  int status = 0;
  std::string body;
};
Get HttpGet(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  client.set_read_timeout(10);
  auto res = client.Get(path);
  if (!res) return {};
  return {res->status, res->body};
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh, empty Chromium profile directory, removed at the end.
struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/couchrepd-chromium-XXXXXX";
    REQUIRE(mkdtemp(name) != nullptr);
    path = name;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct BrowserRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Headless Chromium on `url` with `extra` flags (--dump-dom or --screenshot=...).
BrowserRun RunChromium(const std::string& chromium, const std::string& url,
                       const std::vector<std::string>& extra) {
  TempDir profile;
  std::vector<std::string> argv = {chromium,
                                   "--headless",
                                   "--no-sandbox",
                                   "--disable-gpu",
                                   "--no-first-run",
                                   "--disable-background-networking",
                                   "--disable-component-update",
                                   "--disable-sync",
                                   "--user-data-dir=" + profile.path,
                                   "--virtual-time-budget=8000"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  Process browser(argv);
  auto code = browser.Wait(std::chrono::seconds(90));
  BrowserRun run;
  run.exit_code = code ? *code : -1;
  run.out = browser.Stdout();
  run.err = browser.Stderr();
  if (run.err.size() > 3000) run.err = "..." + run.err.substr(run.err.size() - 3000);
  return run;
}

// The <tr>...</tr> whose document button reads exactly `doc_id` ("" when none).
std::string RowOf(const std::string& dom, const std::string& doc_id) {
  size_t at = dom.find(">" + doc_id + "</button>");
  if (at == std::string::npos) return "";
  size_t begin = dom.rfind("<tr", at);
  size_t end = dom.find("</tr>", at);
  if (begin == std::string::npos || end == std::string::npos) return "";
  return dom.substr(begin, end + 5 - begin);
}

// The element starting at the first `<tag` whose opening tag contains `marker`,
// up to its closing tag (no nesting of the same tag inside, enough here).
std::string ElementWith(const std::string& dom, const std::string& tag, const std::string& marker) {
  size_t pos = 0;
  while ((pos = dom.find("<" + tag, pos)) != std::string::npos) {
    size_t close = dom.find('>', pos);
    if (close == std::string::npos) return "";
    if (dom.substr(pos, close - pos).find(marker) != std::string::npos) {
      size_t end = dom.find("</" + tag + ">", close);
      return end == std::string::npos ? "" : dom.substr(pos, end + tag.size() + 3 - pos);
    }
    pos = close;
  }
  return "";
}

// The number of points in a path's `d` attribute: its M and L commands.
int PathPoints(const std::string& path_element) {
  size_t d = path_element.find(" d=\"");
  if (d == std::string::npos) return 0;
  size_t end = path_element.find('"', d + 4);
  std::string data = path_element.substr(d + 4, end - d - 4);
  int points = 0;
  for (char c : data) points += (c == 'M' || c == 'L') ? 1 : 0;
  return points;
}

// The text of each <td> of a row, tags removed.
std::vector<std::string> Cells(const std::string& row) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = row.find("<td", pos)) != std::string::npos) {
    size_t end = row.find("</td>", pos);
    if (end == std::string::npos) break;
    std::string text;
    bool in_tag = false;
    for (size_t i = pos; i < end; ++i) {
      if (row[i] == '<') in_tag = true;
      else if (row[i] == '>') in_tag = false;
      else if (!in_tag) text += row[i];
    }
    out.push_back(text);
    pos = end;
  }
  return out;
}

std::string Attribute(const std::string& element, const std::string& name) {
  size_t at = element.find(" " + name + "=\"");
  if (at == std::string::npos) return "";
  at += name.size() + 3;
  return element.substr(at, element.find('"', at) - at);
}

// Which state each document shows in `_scheduler/docs` ("" when absent).
std::string DocState(const std::string& docs_json, const std::string& doc_id) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(docs_json).get(root) != simdjson::SUCCESS) return "";
  simdjson::dom::array docs;
  if (root["docs"].get(docs) != simdjson::SUCCESS) return "";
  for (auto d : docs) {
    std::string_view id, state;
    if (d["doc_id"].get(id) == simdjson::SUCCESS && id == doc_id &&
        d["state"].get(state) == simdjson::SUCCESS) {
      return std::string(state);
    }
  }
  return "";
}

}  // namespace

TEST_CASE("dashboard: the page is self-contained and builds the DOM with textContent only") {
  std::string page = ReadFile(std::string(COUCHREPD_SOURCE_DIR) + "/src/api/dashboard.html");
  REQUIRE(page.size() > 1000);
  CHECK(page.find("innerHTML") == std::string::npos);
  CHECK(page.find("outerHTML") == std::string::npos);
  CHECK(page.find("insertAdjacentHTML") == std::string::npos);
  CHECK(page.find("document.write") == std::string::npos);
  CHECK(page.find("eval(") == std::string::npos);
  // No external assets: no linked stylesheets, scripts, fonts or images.
  CHECK(page.find("<link") == std::string::npos);
  CHECK(page.find("<script src") == std::string::npos);
  CHECK(page.find("@import") == std::string::npos);
  CHECK(page.find("url(") == std::string::npos);
  CHECK(page.find("src=\"http") == std::string::npos);
  CHECK(page.find("href=\"http") == std::string::npos);
}

TEST_CASE("dashboard: headless Chromium renders the jobs, the crashing job's error and the plot") {
  std::string chromium = FindChromium();
  if (chromium.empty()) {
    FAIL("chromium is not installed: the dashboard browser test needs Debian's `chromium` "
         "package (scripts/test installs it from APT_PACKAGES in scripts/lib.sh; or run "
         "`apt-get install -y chromium`, or set COUCHREPD_CHROMIUM to a Chromium binary)");
  }

  TestServerOptions options;
  options.admin = kAdmin;
  TestServer server(options);
  auto root = ServerClient(server, kAdmin);
  auto src = root.Database("dash-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 300);

  const int status_port = FreePort();
  std::string config = ServeConfig(server);
  // The crashing job stays crashing while the browser samples: with the
  // scenarios' 1-2 s backoff it is retried (running for a few ms) during the
  // page's refreshes, and the last one may catch it running.
  const std::string backoff = "backoff: {initial: 1s, max: 2s}";
  REQUIRE(config.find(backoff) != std::string::npos);
  config.replace(config.find(backoff), backoff.size(), "backoff: {initial: 60s, max: 120s}");
  const std::string any_port = "listen: 127.0.0.1:0";
  REQUIRE(config.find(any_port) != std::string::npos);
  config.replace(config.find(any_port), any_port.size(),
                 "listen: 127.0.0.1:" + std::to_string(status_port));
  config.replace(config.find("\n") + 1, 0, "  username: admin\n");  // under `server:`
  ServeProcess serve(config, {std::string("COUCHREPD_SERVER_PASSWORD=") + kPassword});
  INFO("couchrepd log tail: " << [&] {
    std::string log = serve.Log();
    return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
  }());

  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 20s));
  // Credentials in the documents' URLs: they must not reach the page.
  std::string base = server.url();
  std::string with_auth = "http://" + std::string(kAdmin) + "@" + base.substr(std::string("http://").size());
  REQUIRE(rep.PutDoc("dash-once", "{\"source\":\"" + with_auth + "/dash-src\",\"target\":\"" + with_auth +
                                      "/dash-once-tgt\",\"create_target\":true}")
              .ok());
  REQUIRE(rep.PutDoc("dash-cont", "{\"source\":\"" + with_auth + "/dash-src\",\"target\":\"" + with_auth +
                                      "/dash-cont-tgt\",\"create_target\":true,\"continuous\":true}")
              .ok());
  REQUIRE(rep.PutDoc("dash-crash", "{\"source\":\"" + with_auth + "/dash-no-such-db\",\"target\":\"" +
                                       with_auth + "/dash-crash-tgt\"}")
              .ok());

  // The API shows all three before the browser looks.
  Get docs;
  bool ready = WaitUntil(
      [&] {
        docs = HttpGet(status_port, "/_scheduler/docs");
        return docs.status == 200 && DocState(docs.body, "dash-once") == "completed" &&
               DocState(docs.body, "dash-cont") == "running" &&
               DocState(docs.body, "dash-crash") == "crashing";
      },
      45s);
  INFO("GET /_scheduler/docs: " << docs.status << " " << docs.body);
  REQUIRE(ready);

  // GET / serves the page from src/api/dashboard.html, embedded at build time.
  Get page = HttpGet(status_port, "/");
  REQUIRE(page.status == 200);
  CHECK(page.body == ReadFile(std::string(COUCHREPD_SOURCE_DIR) + "/src/api/dashboard.html"));

  // Keep the continuous job busy while the browser samples, so rates move.
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    auto feed_db = ServerClient(server, kAdmin).Database("dash-src");
    int n = 1000;
    while (writing) {
      std::vector<std::string> batch;
      for (int i = 0; i < 25; ++i, ++n) batch.push_back("{\"_id\":\"live" + std::to_string(n) + "\"}");
      (void)feed_db.BulkDocs(batch, true);
      std::this_thread::sleep_for(100ms);
    }
  });
  struct StopWriter {
    std::atomic<bool>& flag;
    std::thread& thread;
    ~StopWriter() {
      flag = false;
      if (thread.joinable()) thread.join();
    }
  } stop_writer{writing, writer};

  const std::string url = "http://127.0.0.1:" + std::to_string(status_port) + "/";

  // 1. The DOM: a row per job with its state, the error, the summary and the plot.
  {
    BrowserRun run = RunChromium(chromium, url, {"--dump-dom"});
    INFO("chromium exit " << run.exit_code << ", stderr tail: " << run.err);
    REQUIRE(run.exit_code == 0);
    const std::string& dom = run.out;
    INFO("DOM: " << (dom.size() > 20000 ? dom.substr(0, 20000) + "..." : dom));
    REQUIRE(dom.find("<table id=\"jobs\"") != std::string::npos);

    // It refreshed itself several times (every 2 s over 8 s of virtual time) without an error.
    CHECK(std::atoi(Attribute(ElementWith(dom, "html", "data-refreshes"), "data-refreshes").c_str()) >= 3);
    std::string banner = ElementWith(dom, "p", "id=\"banner\"");
    CHECK(banner.find("hidden") != std::string::npos);
    // One instance without cluster.enabled: no Cluster panel.
    std::string cluster = ElementWith(dom, "section", "id=\"cluster\"");
    CHECK(cluster.substr(0, cluster.find('>')).find("hidden") != std::string::npos);

    std::string once = RowOf(dom, "dash-once");
    std::string cont = RowOf(dom, "dash-cont");
    std::string crash = RowOf(dom, "dash-crash");
    REQUIRE_FALSE(once.empty());
    REQUIRE_FALSE(cont.empty());
    REQUIRE_FALSE(crash.empty());
    CHECK(once.find(">completed</span>") != std::string::npos);
    CHECK(cont.find(">running</span>") != std::string::npos);
    CHECK(crash.find(">crashing</span>") != std::string::npos);
    CHECK(once.find("badge s-completed") != std::string::npos);  // the colour class
    CHECK(cont.find("badge s-running") != std::string::npos);
    CHECK(crash.find("badge s-crashing") != std::string::npos);
    // Source -> target, by database name, on the server shown once.
    CHECK(cont.find(">dash-src</span>") != std::string::npos);
    CHECK(cont.find(">dash-cont-tgt</span>") != std::string::npos);
    // The crashing job's error, and its reset button (shown only there).
    CHECK(crash.find("db_not_found") != std::string::npos);
    CHECK(crash.find("dash-no-such-db") != std::string::npos);
    std::string reset = ElementWith(crash, "button", "Reset dash-crash");
    CHECK(reset.find(">Reset</button>") != std::string::npos);
    CHECK(reset.find("hidden") == std::string::npos);
    CHECK(ElementWith(cont, "button", "Reset dash-cont").find("hidden") != std::string::npos);
    // The continuous job's progress: docs written (grouped digits), a rate, a checkpoint age.
    std::vector<std::string> cells = Cells(cont);
    REQUIRE(cells.size() == 9);
    std::string written;
    for (char c : cells[3]) {
      if (c != ',') written += c;
    }
    CHECK(std::atoll(written.c_str()) >= 300);
    CHECK(cells[5] != "–");
    CHECK(cells[7] != "–");  // "3 s ago", "just now"

    // The summary counts.
    CHECK(dom.find("aria-label=\"running: 1,") != std::string::npos);
    CHECK(dom.find("aria-label=\"crashing: 1,") != std::string::npos);
    CHECK(dom.find("aria-label=\"completed: 1,") != std::string::npos);
    CHECK(dom.find("aria-label=\"All states: 3 replications") != std::string::npos);

    // The plot: an <svg> with the service's series drawn through several samples.
    std::string svg = ElementWith(dom, "svg", "id=\"plot\"");
    REQUIRE_FALSE(svg.empty());
    std::string series = ElementWith(svg, "path", "series-service");
    INFO("service series: " << series);
    CHECK(PathPoints(series) >= 2);
    CHECK(svg.find("<text") != std::string::npos);  // axis labels

    // No credential reaches the page: neither the password nor a masked userinfo.
    CHECK(dom.find(kPassword) == std::string::npos);
    CHECK(dom.find("admin:") == std::string::npos);
  }

  // 2. A selected job (#doc=...) gets its own series and its history.
  {
    BrowserRun run = RunChromium(chromium, url + "#doc=dash-cont", {"--dump-dom"});
    INFO("chromium exit " << run.exit_code << ", stderr tail: " << run.err);
    REQUIRE(run.exit_code == 0);
    const std::string& dom = run.out;
    INFO("DOM: " << (dom.size() > 20000 ? dom.substr(0, 20000) + "..." : dom));
    CHECK(RowOf(dom, "dash-cont").find("class=\"selected\"") != std::string::npos);
    std::string svg = ElementWith(dom, "svg", "id=\"plot\"");
    CHECK(PathPoints(ElementWith(svg, "path", "series-job")) >= 2);
    std::string history = ElementWith(dom, "ol", "id=\"d-history\"");
    CHECK(history.find(">started</strong>") != std::string::npos);
    CHECK(history.find(">added</strong>") != std::string::npos);
    CHECK(dom.find(kPassword) == std::string::npos);
  }

  // 3. A screenshot for people: test-artifacts/dashboard.png.
  {
    fs::path dir = fs::path(COUCHREPD_SOURCE_DIR) / "test-artifacts";
    fs::create_directories(dir);
    fs::path png = dir / "dashboard.png";
    std::error_code ec;
    fs::remove(png, ec);
    BrowserRun run = RunChromium(chromium, url + "#doc=dash-cont",
                                 {"--screenshot=" + png.string(), "--window-size=1400,900",
                                  "--hide-scrollbars"});
    INFO("chromium exit " << run.exit_code << ", stderr tail: " << run.err);
    REQUIRE(run.exit_code == 0);
    REQUIRE(fs::exists(png));
    std::string bytes = ReadFile(png.string());
    CHECK(bytes.size() > 30000);  // a blank 1400x900 page is a few kB
    REQUIRE(bytes.size() > 24);
    CHECK(bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    auto be32 = [&](size_t at) {
      return (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at])) << 24) |
             (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
             (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
             static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 3]));
    };
    CHECK(be32(16) == 1400);  // IHDR width
    CHECK(be32(20) == 900);   // IHDR height
  }
}

TEST_CASE("dashboard: with cluster.enabled a Cluster panel lists the members, their liveness and what they own") {
  std::string chromium = FindChromium();
  if (chromium.empty()) FAIL("chromium is not installed (see the test above)");
  TestServer server;
  auto root = ServerClient(server);
  auto src = root.Database("cl-src");
  REQUIRE(src.CreateDb().ok());
  PutPlainDocs(src, 0, 5);
  const int status_port = FreePort();
  std::string config = ServeConfig(server, "",
                                   "cluster:\n  enabled: true\n  instance_id: solo-1\n"
                                   "  heartbeat: 1s\n  lease_ttl: 4s\n");
  const std::string any_port = "listen: 127.0.0.1:0";
  config.replace(config.find(any_port), any_port.size(),
                 "listen: 127.0.0.1:" + std::to_string(status_port));
  ServeProcess serve(config);
  auto rep = root.Database("_replicator");
  REQUIRE(WaitUntil([&] { return rep.GetDoc("_design/_replicator").ok(); }, 20s));
  REQUIRE(rep.PutDoc("cl-cont", "{\"source\":\"cl-src\",\"target\":\"cl-tgt\",\"create_target\":true,"
                                "\"continuous\":true}")
              .ok());
  REQUIRE(WaitUntil([&] { return DocState(HttpGet(status_port, "/_scheduler/docs").body, "cl-cont") == "running"; }, 30s));

  BrowserRun run = RunChromium(chromium, "http://127.0.0.1:" + std::to_string(status_port) + "/", {"--dump-dom"});
  INFO("chromium exit " << run.exit_code << ", stderr tail: " << run.err);
  REQUIRE(run.exit_code == 0);
  const std::string& dom = run.out;
  INFO("DOM: " << (dom.size() > 20000 ? dom.substr(0, 20000) + "..." : dom));
  std::string panel = ElementWith(dom, "section", "id=\"cluster\"");
  REQUIRE_FALSE(panel.empty());
  CHECK(panel.substr(0, panel.find('>')).find("hidden") == std::string::npos);  // its opening tag
  size_t member = dom.find("data-member=\"solo-1\"");
  REQUIRE(member != std::string::npos);
  std::string item = dom.substr(member, dom.find("</li>", member) - member);
  CHECK(item.find("solo-1 (this one)") != std::string::npos);
  CHECK(item.find("live") != std::string::npos);
  CHECK(item.find("owns 1 · leases 1 · runs 1") != std::string::npos);
  CHECK(dom.find("this instance: solo-1, 1 of 1 documents") != std::string::npos);
}

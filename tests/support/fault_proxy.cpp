// Starts tests/server/fault-proxy.js and drives its control API.
#include "support/fault_proxy.h"

#include <httplib.h>
#include <simdjson.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "support/node_scripts.h"
#include "support/process.h"

namespace couchrepd::testing {
namespace {

constexpr char kStartLine[] = "fault-proxy listening on ";
constexpr char kControlMark[] = " control http://127.0.0.1:";



}  // namespace

FaultProxy::FaultProxy(const std::string& upstream, Options options) {
  std::vector<std::string> argv = {FindNode("FaultProxy"),
                                   NodeScript("FaultProxy", "COUCHREPD_FAULT_PROXY_JS", "fault-proxy.js"), "--upstream", upstream,
                                   "--port",   "0",          "--control-port", "0"};
  if (!options.tls_cert.empty()) {
    argv.insert(argv.end(), {"--tls-cert", options.tls_cert, "--tls-key", options.tls_key});
  }
  process_ = std::make_unique<Process>(argv);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    std::string out = process_->Stdout();
    size_t at = out.find(kStartLine);
    size_t ctl = out.find(kControlMark);
    if (at != std::string::npos && ctl != std::string::npos && out.find('\n', ctl) != std::string::npos) {
      size_t begin = at + sizeof kStartLine - 1;
      std::string first = out.substr(begin, out.find(' ', begin) - begin);  // http(s)://H:P/
      if (!first.empty() && first.back() == '/') first.pop_back();
      url_ = first;
      port_ = std::atoi(first.c_str() + first.rfind(':') + 1);
      control_port_ = std::atoi(out.c_str() + ctl + sizeof kControlMark - 1);
      break;
    }
    if (!process_->running() || std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("FaultProxy: no start line within 20 s\n" + Output());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (port_ <= 0 || control_port_ <= 0) {
    throw std::runtime_error("FaultProxy: cannot read the ports\n" + Output());
  }
}

FaultProxy::~FaultProxy() = default;

std::string FaultProxy::Output() const {
  return process_->Stdout() + process_->Stderr();
}

std::string FaultProxy::Control(const std::string& method, const std::string& path,
                                const std::string& body) const {
  httplib::Client client("127.0.0.1", control_port_);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(20, 0);
  httplib::Result res = method == "GET"      ? client.Get(path)
                        : method == "DELETE" ? client.Delete(path)
                                             : client.Post(path, body, "application/json");
  if (!res || res->status / 100 != 2) {
    throw std::runtime_error("FaultProxy: " + method + " " + path + " failed: " +
                             (res ? std::to_string(res->status) + " " + res->body
                                  : httplib::to_string(res.error())) +
                             "\n" + Output());
  }
  return res->body;
}

void FaultProxy::AddFaults(const std::string& rules_json) { Control("POST", "/faults", rules_json); }
void FaultProxy::Clear() { Control("DELETE", "/faults"); }
void FaultProxy::Blackhole(bool on) {
  Control("POST", "/blackhole", on ? R"({"on":true})" : R"({"on":false})");
}
void FaultProxy::Down(bool on) { Control("POST", "/down", on ? R"({"on":true})" : R"({"on":false})"); }

int FaultProxy::Cut(const std::string& path_regex) {
  // JSON-quote the regex (backslashes and quotes).
  std::string quoted = "\"";
  for (char c : path_regex) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  quoted += '"';
  std::string reply = Control("POST", "/cut", "{\"path\":" + quoted + "}");
  simdjson::dom::parser parser;
  int64_t cut = 0;
  if (parser.parse(reply)["cut"].get(cut) != simdjson::SUCCESS) return -1;
  return static_cast<int>(cut);
}

std::string FaultProxy::Stats() const { return Control("GET", "/stats"); }

std::vector<FaultProxy::Entry> FaultProxy::Log(int64_t since, int64_t* next) const {
  std::string reply = Control("GET", "/log?since=" + std::to_string(since));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array requests;
  if (parser.parse(reply).get(doc) != simdjson::SUCCESS ||
      doc["requests"].get(requests) != simdjson::SUCCESS) {
    throw std::runtime_error("FaultProxy: /log was not JSON: " + reply.substr(0, 200));
  }
  if (next != nullptr) {
    int64_t n = 0;
    *next = doc["next"].get(n) == simdjson::SUCCESS ? n : since;
  }
  std::vector<Entry> out;
  for (auto el : requests) {
    Entry e;
    std::string_view s;
    int64_t n = 0;
    double ms = 0;
    if (el["t_ms"].get(n) == simdjson::SUCCESS) e.t_ms = n;
    else if (el["t_ms"].get(ms) == simdjson::SUCCESS) e.t_ms = static_cast<int64_t>(ms);
    if (el["method"].get(s) == simdjson::SUCCESS) e.method = std::string(s);
    if (el["path"].get(s) == simdjson::SUCCESS) e.path = std::string(s);
    if (el["auth"].get(s) == simdjson::SUCCESS) e.auth = std::string(s);
    if (el["status"].get(n) == simdjson::SUCCESS) e.status = static_cast<int>(n);
    if (el["fault"].get(s) == simdjson::SUCCESS) e.fault = std::string(s);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace couchrepd::testing

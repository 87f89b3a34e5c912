// Reads the YAML config into a Config. The only file that includes yaml-cpp.
//
// The walk is declarative: each section is a table of known keys with a
// reader per key. Readers record a problem and keep the default instead of
// stopping, so one run reports everything that is wrong. Values of secret keys
// and of headers are never echoed in a problem.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include "couchrepd/config.h"
#include "couchrepd/encoding.h"
#include "couchrepd/duration.h"
#include "couchrepd/url.h"

namespace couchrepd {

namespace {

constexpr const char* kServerPasswordEnv = "COUCHREPD_SERVER_PASSWORD";
constexpr const char* kStatusPasswordEnv = "COUCHREPD_STATUS_PASSWORD";
constexpr const char* kProxySecretEnv = "COUCHREPD_PROXY_AUTH_SECRET";
constexpr size_t kMaxSecretFileBytes = 64 * 1024;
constexpr size_t kMaxQuotedValue = 80;
constexpr int64_t kNoLimit = std::numeric_limits<int>::max();

using Handler = std::function<void(const YAML::Node& value, const std::string& path)>;

struct Field {
  std::string key;
  Handler read;
};

std::string Join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

// A value as shown in a message: double-quoted, escaped, shortened.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  size_t n = std::min(s.size(), kMaxQuotedValue);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n < s.size()) out += "...";
  return out + "\"";
}

std::string Got(const YAML::Node& node) {
  if (node.IsScalar()) return "got " + Quote(node.Scalar());
  if (node.IsSequence()) return "got a list";
  if (node.IsMap()) return "got a map";
  return "got nothing";
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string Suggestion(std::string_view key, const std::vector<Field>& fields) {
  std::string lower = AsciiLower(key);
  const Field* best = nullptr;
  size_t best_distance = 3;  // suggest only close misspellings
  for (const Field& f : fields) {
    size_t d = EditDistance(lower, f.key);
    if (d < best_distance && d < f.key.size()) {
      best = &f;
      best_distance = d;
    }
  }
  return best ? " (did you mean " + best->key + "?)" : "";
}

// CouchDB's rule for database names, plus the system database `_replicator`.
bool IsDatabaseName(std::string_view name) {
  if (name == "_replicator") return true;
  if (name.empty() || !(name[0] >= 'a' && name[0] <= 'z')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           std::string_view("_$()+-/").find(c) != std::string_view::npos;
  });
}

bool IsHeaderToken(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

std::optional<int64_t> ParseInteger(std::string_view text) {
  text = TrimAsciiSpace(text);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// "host:port" or "[v6]:port". Returns the reason when malformed.
std::optional<std::string> ParseListen(std::string_view text, std::string& host, int& port) {
  const std::string kForm = "must be host:port, e.g. 127.0.0.1:5986 or [::1]:5986";
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return "has an unterminated IPv6 address";
    host = std::string(text.substr(1, close - 1));
    if (host.empty() || host.find(':') == std::string::npos ||
        !std::all_of(host.begin(), host.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
        })) {
      return "has an invalid IPv6 address";
    }
    if (close + 1 >= text.size() || text[close + 1] != ':') return kForm;
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return kForm;
    host = std::string(text.substr(0, colon));
    if (host.find(':') != std::string::npos) {
      return "needs brackets around an IPv6 address, e.g. [::1]:5986";
    }
    if (host.empty()) return kForm;
    bool dotted = std::all_of(host.begin(), host.end(), [](char c) {
      return std::isdigit(static_cast<unsigned char>(c)) || c == '.';
    });
    if (dotted) {
      int parts = 0;
      size_t start = 0;
      while (start <= host.size()) {
        size_t dot = std::min(host.find('.', start), host.size());
        auto octet = ParseInteger(std::string_view(host).substr(start, dot - start));
        if (!octet || *octet > 255 || dot - start > 3) return "has an invalid IPv4 address";
        ++parts;
        start = dot + 1;
      }
      if (parts != 4) return "has an invalid IPv4 address";
    } else if (!std::all_of(host.begin(), host.end(), [](char c) {
                 return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
               })) {
      return "has an invalid host name";
    }
    port_text = text.substr(colon + 1);
  }
  auto value = ParseInteger(port_text);
  if (!value || port_text.front() == '-' || port_text.front() == '+') {
    return "needs a port number after the colon";
  }
  if (*value > 65535) return "has a port above 65535";
  port = static_cast<int>(*value);
  return std::nullopt;
}

// Reads a secret file; one trailing newline (LF or CRLF) is dropped. The reason
// names the path and the system error, never the content.
Result<std::string> ReadSecretFile(const std::string& path) {
  auto fail = [&](std::string reason) {
    return Error::Permanent("bad_config", "cannot read " + Quote(path) + ": " + reason);
  };
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return fail(std::strerror(errno));
  std::string content;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && content.size() <= kMaxSecretFileBytes) {
    content.append(buf, n);
  }
  bool failed = std::ferror(f) != 0;
  int saved_errno = errno;
  std::fclose(f);
  if (failed) return fail(std::strerror(saved_errno));
  if (content.size() > kMaxSecretFileBytes) return fail("larger than 64 KiB; expected one secret");
  if (!content.empty() && content.back() == '\n') {
    content.pop_back();
    if (!content.empty() && content.back() == '\r') content.pop_back();
  }
  if (content.empty()) return fail("the file is empty");
  return content;
}

class Loader {
 public:
  Loader(std::string_view origin, const EnvLookup& env, std::filesystem::path base_dir)
      : origin_(origin), env_(env), base_dir_(std::move(base_dir)) {}

  Result<Config> Load(std::string_view yaml);

 private:
  void Problem(const YAML::Node& at, const std::string& path, const std::string& reason);
  void Problem(const std::string& path, const std::string& reason);
  void AddLine(int line, const std::string& path, const std::string& reason);
  void Section(const YAML::Node& node, const std::string& path, const std::vector<Field>& fields);

  // Field makers: each binds a key to a reader and the member it fills.
  Field Sub(std::string key, std::vector<Field> fields);
  Field String(std::string key, std::string& out);
  Field Secret(std::string key, std::string& out);
  Field Path(std::string key, std::string& out);
  Field Bool(std::string key, bool& out);
  template <typename T>
  Field Int(std::string key, T& out, int64_t min, int64_t max);
  Field Dur(std::string key, std::chrono::milliseconds& out);
  template <typename E>
  Field Enum(std::string key, E& out, std::vector<E> values);
  Field Custom(std::string key, Handler read) { return {std::move(key), std::move(read)}; }

  // Readers with more to check than a scalar.
  void ReadUrl(const YAML::Node& n, const std::string& path, std::string& out);
  void ReadListen(const YAML::Node& n, const std::string& path, Config::Status& out);
  void ReadFactor(const YAML::Node& n, const std::string& path, double& out);
  void ReadDatabases(const YAML::Node& n, const std::string& path, std::vector<std::string>& out);
  void ReadShares(const YAML::Node& n, const std::string& path, std::map<std::string, int>& out);
  void ReadHeaders(const YAML::Node& n, const std::string& path,
                   std::map<std::string, std::string>& out);

  std::vector<Field> Fields(Config& c);
  void CheckConsistency(const Config& c);
  void CheckReadable(const std::string& path, const std::string& file);
  void CheckCluster(const Config::Cluster& cluster);
  void ResolveSecrets(Config& c);
  void ResolvePassword(const std::string& section, const std::string& username,
                       const char* env_name, std::string& password,
                       const std::string& password_file);
  std::optional<std::string> Env(const char* name) const;

  std::string origin_;
  const EnvLookup& env_;
  std::filesystem::path base_dir_;
  std::map<std::string, int> lines_;                   // dotted path → line of its key
  std::vector<std::pair<int, std::string>> problems_;  // (line or 0, text)
};

void Loader::AddLine(int line, const std::string& path, const std::string& reason) {
  std::string out = origin_;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!path.empty()) out += path + ": ";
  problems_.emplace_back(line, out + reason);
}

void Loader::Problem(const YAML::Node& at, const std::string& path, const std::string& reason) {
  YAML::Mark mark = at.Mark();
  AddLine(mark.is_null() ? 0 : mark.line + 1, path, reason);
}

void Loader::Problem(const std::string& path, const std::string& reason) {
  auto it = lines_.find(path);
  AddLine(it == lines_.end() ? 0 : it->second, path, reason);
}

void Loader::Section(const YAML::Node& node, const std::string& path,
                     const std::vector<Field>& fields) {
  if (node.IsNull()) return;  // a section with everything commented out
  if (!node.IsMap()) {
    Problem(node, path, "must be a map of settings, " + Got(node));
    return;
  }
  std::set<std::string> seen;
  for (const auto& entry : node) {
    const YAML::Node& key = entry.first;
    if (!key.IsScalar()) {
      Problem(key, path, "has a key that is not a plain name");
      continue;
    }
    std::string child = Join(path, key.Scalar());
    if (!seen.insert(key.Scalar()).second) {
      Problem(key, child, "is set twice");
      continue;
    }
    auto field = std::find_if(fields.begin(), fields.end(),
                              [&](const Field& f) { return f.key == key.Scalar(); });
    if (field == fields.end()) {
      Problem(key, child, "unknown key" + Suggestion(key.Scalar(), fields));
      continue;
    }
    lines_[child] = key.Mark().is_null() ? 0 : key.Mark().line + 1;
    field->read(entry.second, child);
  }
}

Field Loader::Sub(std::string key, std::vector<Field> fields) {
  return {std::move(key),
          [this, fields = std::move(fields)](const YAML::Node& n, const std::string& p) {
            Section(n, p, fields);
          }};
}

// A null value (`key:` with nothing after it) keeps the default everywhere.
Field Loader::String(std::string key, std::string& out) {
  return {std::move(key), [this, &out](const YAML::Node& n, const std::string& p) {
            if (n.IsNull()) return;
            if (!n.IsScalar()) return Problem(n, p, "must be a string, " + Got(n));
            out = n.Scalar();
          }};
}

Field Loader::Secret(std::string key, std::string& out) {
  return {std::move(key), [this, &out](const YAML::Node& n, const std::string& p) {
            if (n.IsNull()) return;
            if (!n.IsScalar()) return Problem(n, p, "must be a string");  // no echo
            out = n.Scalar();
          }};
}

Field Loader::Path(std::string key, std::string& out) {
  return {std::move(key), [this, &out](const YAML::Node& n, const std::string& p) {
            if (n.IsNull()) return;
            if (!n.IsScalar()) return Problem(n, p, "must be a file path, " + Got(n));
            std::string text(TrimAsciiSpace(n.Scalar()));
            if (!text.empty() && !base_dir_.empty() && std::filesystem::path(text).is_relative()) {
              text = (base_dir_ / text).lexically_normal().string();
            }
            out = text;
          }};
}

Field Loader::Bool(std::string key, bool& out) {
  return {std::move(key), [this, &out](const YAML::Node& n, const std::string& p) {
            if (n.IsNull()) return;
            std::string v = n.IsScalar() ? AsciiLower(TrimAsciiSpace(n.Scalar())) : "";
            if (v == "true" || v == "yes" || v == "on") {
              out = true;
            } else if (v == "false" || v == "no" || v == "off") {
              out = false;
            } else {
              Problem(n, p, "must be true or false, " + Got(n));
            }
          }};
}

template <typename T>
Field Loader::Int(std::string key, T& out, int64_t min, int64_t max) {
  return {std::move(key), [this, &out, min, max](const YAML::Node& n, const std::string& p) {
            if (n.IsNull()) return;
            std::string want;
            if (min == 1 && max == kNoLimit) {
              want = "must be a positive integer";
            } else if (min == 0 && max == kNoLimit) {
              want = "must be a non-negative integer";
            } else {
              want =
                  "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
            }
            // Integer strings ("500") are accepted like integers, as in documents (SPEC §1.1).
            auto v = n.IsScalar() ? ParseInteger(n.Scalar()) : std::nullopt;
            if (!v || *v < min) return Problem(n, p, want + ", " + Got(n));
            if (*v > max) {
              return Problem(n, p, (max == kNoLimit ? "is too large" : want) + ", " + Got(n));
            }
            out = static_cast<T>(*v);
          }};
}

Field Loader::Dur(std::string key, std::chrono::milliseconds& out) {
  return {std::move(key), [this, &out](const YAML::Node& n, const std::string& p) {
            if (n.IsNull()) return;
            if (!n.IsScalar()) return Problem(n, p, "must be a duration such as 30s, " + Got(n));
            auto d = ParseDuration(n.Scalar());
            if (!d.ok()) return Problem(n, p, d.error().reason + ", " + Got(n));
            if (d->count() <= 0) return Problem(n, p, "must be a positive duration, " + Got(n));
            out = *d;
          }};
}

template <typename E>
Field Loader::Enum(std::string key, E& out, std::vector<E> values) {
  return {std::move(key),
          [this, &out, values = std::move(values)](const YAML::Node& n, const std::string& p) {
            if (n.IsNull()) return;
            std::string v = n.IsScalar() ? AsciiLower(TrimAsciiSpace(n.Scalar())) : "";
            std::string names;
            for (E e : values) {
              if (v == Name(e)) {
                out = e;
                return;
              }
              names += (names.empty() ? "" : ", ") + std::string(Name(e));
            }
            Problem(n, p, "must be one of " + names + ", " + Got(n));
          }};
}

void Loader::ReadUrl(const YAML::Node& n, const std::string& path, std::string& out) {
  if (n.IsNull()) return;
  if (!n.IsScalar()) return Problem(n, path, "must be an http(s) URL, " + Got(n));
  std::string_view text = TrimAsciiSpace(n.Scalar());
  // Userinfo may hold a password: such a value is never echoed.
  bool may_hold_secret = text.find('@') != std::string_view::npos;
  std::string got = may_hold_secret ? "" : ", " + Got(n);
  auto url = ParseUrl(text);
  if (!url.ok()) return Problem(n, path, url.error().reason + got);
  if (url->user || url->password) {
    return Problem(n, path,
                   "must not contain credentials; use server.username and "
                   "server.password_file (or COUCHREPD_SERVER_PASSWORD)");
  }
  if (!url->query.empty() || text.find_first_of("?#") != std::string_view::npos) {
    return Problem(n, path, "must not have a query string or fragment" + got);
  }
  while (text.size() > 1 && text.back() == '/') text.remove_suffix(1);
  out = std::string(text);
}

void Loader::ReadListen(const YAML::Node& n, const std::string& path, Config::Status& out) {
  if (n.IsNull()) return;
  if (!n.IsScalar()) return Problem(n, path, "must be host:port, " + Got(n));
  std::string host;
  int port = 0;
  if (auto reason = ParseListen(TrimAsciiSpace(n.Scalar()), host, port)) {
    return Problem(n, path, *reason + ", " + Got(n));
  }
  out.listen_host = host;
  out.listen_port = port;
}

void Loader::ReadFactor(const YAML::Node& n, const std::string& path, double& out) {
  if (n.IsNull()) return;
  const std::string want = "must be a number above 1 and at most 10, e.g. 1.2, ";
  if (!n.IsScalar()) return Problem(n, path, want + Got(n));
  std::string_view text = TrimAsciiSpace(n.Scalar());
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || !std::isfinite(v) ||
      v <= 1.0 || v > 10.0) {
    return Problem(n, path, want + Got(n));
  }
  out = v;
}

void Loader::ReadDatabases(const YAML::Node& n, const std::string& path,
                           std::vector<std::string>& out) {
  if (n.IsNull()) return;
  if (!n.IsSequence()) {
    return Problem(n, path, "must be a list of database names, e.g. [_replicator], " + Got(n));
  }
  std::vector<std::string> names;
  bool ok = true;
  for (size_t i = 0; i < n.size(); ++i) {
    const YAML::Node& item = n[i];
    std::string item_path = path + "[" + std::to_string(i) + "]";
    std::string name = item.IsScalar() ? std::string(TrimAsciiSpace(item.Scalar())) : "";
    if (!IsDatabaseName(name)) {
      Problem(item, item_path,
              "must be a database name (a-z first, then a-z 0-9 _$()+-/), " + Got(item));
      ok = false;
    } else if (std::find(names.begin(), names.end(), name) != names.end()) {
      Problem(item, item_path, "lists " + Quote(name) + " a second time");
      ok = false;
    } else {
      names.push_back(name);
    }
  }
  if (ok) out = std::move(names);
}

void Loader::ReadShares(const YAML::Node& n, const std::string& path,
                        std::map<std::string, int>& out) {
  if (n.IsNull()) return;
  if (!n.IsMap()) {
    return Problem(n, path, "must map database names to weights, e.g. {_replicator: 2}, " + Got(n));
  }
  std::map<std::string, int> shares;
  for (const auto& entry : n) {
    std::string name = entry.first.IsScalar() ? entry.first.Scalar() : "";
    std::string item_path = Join(path, name);
    if (!IsDatabaseName(name)) {
      Problem(entry.first, item_path, "is not a database name (a-z first, then a-z 0-9 _$()+-/)");
      continue;
    }
    if (shares.count(name)) {
      Problem(entry.first, item_path, "is set twice");
      continue;
    }
    int weight = 1;
    size_t before = problems_.size();
    Int("", weight, 1, 1000000).read(entry.second, item_path);
    if (problems_.size() == before) shares[name] = weight;
  }
  out = std::move(shares);
}

void Loader::ReadHeaders(const YAML::Node& n, const std::string& path,
                         std::map<std::string, std::string>& out) {
  if (n.IsNull()) return;
  if (!n.IsMap()) {
    // A list or a scalar may hold a token: say what is expected, not what was found.
    return Problem(n, path, "must map header names to values, e.g. {X-Api-Key: ...}");
  }
  std::set<std::string> seen;  // lower-case: header names are case-insensitive
  for (const auto& entry : n) {
    std::string name = entry.first.IsScalar() ? entry.first.Scalar() : "";
    std::string item_path = Join(path, name);
    if (!IsHeaderToken(name)) {
      // Not echoed: a malformed name may be a whole "Authorization: ..." line.
      Problem(entry.first, path,
              "has an invalid header name (allowed: letters, digits and !#$%&'*+-.^_`|~)");
      continue;
    }
    std::string lower = AsciiLower(name);
    if (!seen.insert(lower).second) {
      Problem(entry.first, item_path, "is set twice (header names ignore case)");
      continue;
    }
    if (lower == "host" || lower == "content-length" || lower == "transfer-encoding" ||
        lower == "connection") {
      Problem(entry.first, item_path, "is managed by couchrepd and cannot be set");
      continue;
    }
    const YAML::Node& value = entry.second;
    if (!value.IsScalar()) {
      Problem(value, item_path, "must be a string");
      continue;
    }
    if (value.Scalar().find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      Problem(value, item_path, "must not contain line breaks");
      continue;
    }
    out[name] = value.Scalar();
  }
}

std::vector<Field> Loader::Fields(Config& c) {
  using Auth = Config::Server::Auth;
  using WriteBack = Config::Replicator::WriteBack;
  using Level = Config::Log::Level;
  using Format = Config::Log::Format;
  using Output = Config::Log::Output;
  Config::Server& server = c.server;
  Config::Replicator& replicator = c.replicator;
  Config::Scheduler& scheduler = c.scheduler;
  Config::Replication& replication = c.replication;
  Config::Retry& retry = c.retry;
  Config::Status& status = c.status;
  return {
      Sub("server",
          {
              Custom("url", [&](auto& n, auto& p) { ReadUrl(n, p, server.url); }),
              String("username", server.username),
              Secret("password", server.password),
              Path("password_file", server.password_file),
              Enum("auth", server.auth, {Auth::kBasic, Auth::kCookie}),
              Path("ca_file", server.ca_file),
              Bool("tls_verify", server.tls_verify),
              Custom("headers", [&](auto& n, auto& p) { ReadHeaders(n, p, server.headers); }),
              Sub("proxy_auth",
                  {
                      Bool("enabled", server.proxy_auth.enabled),
                      Path("secret_file", server.proxy_auth.secret_file),
                      String("username_header", server.proxy_auth.username_header),
                      String("roles_header", server.proxy_auth.roles_header),
                      String("token_header", server.proxy_auth.token_header),
                  }),
              Dur("connect_timeout", server.connect_timeout),
              Dur("request_timeout", server.request_timeout),
          }),
      Sub("replicator",
          {
              Custom("databases",
                     [&](auto& n, auto& p) { ReadDatabases(n, p, replicator.databases); }),
              Bool("discover", replicator.discover),
              Dur("discover_interval", replicator.discover_interval),
              Bool("create_databases", replicator.create_databases),
              Enum("write_back", replicator.write_back,
                   {WriteBack::kClassic, WriteBack::kTerminal}),
              Dur("heartbeat", replicator.heartbeat),
              Custom("shares", [&](auto& n, auto& p) { ReadShares(n, p, replicator.shares); }),
              Bool("install_validation", replicator.install_validation),
          }),
      Sub("scheduler",
          {
              Int("max_jobs", scheduler.max_jobs, 1, kNoLimit),
              Dur("interval", scheduler.interval),
              Int("max_churn", scheduler.max_churn, 0, kNoLimit),
              Int("max_history", scheduler.max_history, 1, 1000),
              Dur("health_threshold", scheduler.health_threshold),
              Sub("backoff",
                  {Dur("initial", scheduler.backoff.initial), Dur("max", scheduler.backoff.max)}),
              Int("error_after", scheduler.error_after, 1, kNoLimit),
              Sub("doc_backoff", {Dur("initial", scheduler.doc_backoff.initial),
                                  Dur("max", scheduler.doc_backoff.max)}),
          }),
      Sub("replication",
          {
              Int("worker_processes", replication.worker_processes, 1, 128),
              Int("worker_batch_size", replication.worker_batch_size, 1, 100000),
              Int("http_connections", replication.http_connections, 1, 1000),
              Dur("connection_timeout", replication.connection_timeout),
              Int("retries_per_request", replication.retries_per_request, 0, 100),
              Dur("checkpoint_interval", replication.checkpoint_interval),
              Bool("use_bulk_get", replication.use_bulk_get),
              Bool("use_checkpoints", replication.use_checkpoints),
              Int("attachment_stream_threshold_bytes",
                  replication.attachment_stream_threshold_bytes, 0, int64_t{1} << 30),
              Path("temp_dir", replication.temp_dir),
              Path("ca_file", replication.ca_file),
              Dur("idle_connection_timeout", replication.idle_connection_timeout),
              Int("active_jobs", replication.active_jobs, 1, 1024),
              Int("host_connections", replication.host_connections, 0, 65536),
          }),
      Sub("retry",
          {
              Dur("request_initial_wait", retry.request_initial_wait),
              Dur("request_max_wait", retry.request_max_wait),
              Dur("request_budget", retry.request_budget),
              Sub("pacing",
                  {
                      Dur("initial", retry.pacing.initial),
                      Custom("factor",
                             [&](auto& n, auto& p) { ReadFactor(n, p, retry.pacing.factor); }),
                      Dur("max", retry.pacing.max),
                      Dur("decrease", retry.pacing.decrease),
                  }),
          }),
      Sub("status",
          {
              Custom("listen", [&](auto& n, auto& p) { ReadListen(n, p, status); }),
              Sub("auth",
                  {
                      String("username", status.auth.username),
                      Secret("password", status.auth.password),
                      Path("password_file", status.auth.password_file),
                  }),
              Bool("health_public", status.health_public),
              Bool("dashboard", status.dashboard),
          }),
      Sub("limits",
          {
              Int("max_response_bytes", c.limits.max_response_bytes, int64_t{1} << 20,
                  int64_t{1} << 32),
          }),
      Sub("cluster",
          {
              Bool("enabled", c.cluster.enabled),
              String("instance_id", c.cluster.instance_id),
              String("database", c.cluster.database),
              Dur("heartbeat", c.cluster.heartbeat),
              Dur("lease_ttl", c.cluster.lease_ttl),
          }),
      Sub("log",
          {
              Enum("level", c.log.level,
                   {Level::kTrace, Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}),
              Enum("format", c.log.format, {Format::kText, Format::kJson}),
              Enum("output", c.log.output, {Output::kStderr, Output::kJournal}),
          }),
      Dur("shutdown_timeout", c.shutdown_timeout),
  };
}

void Loader::CheckConsistency(const Config& c) {
  auto check_order = [&](const std::string& path, std::chrono::milliseconds low,
                         std::string_view low_name, std::chrono::milliseconds high,
                         std::string_view high_name) {
    if (low > high) {
      Problem(path, std::string(low_name) + " (" + FormatDuration(low) + ") must not exceed " +
                        std::string(high_name) + " (" + FormatDuration(high) + ")");
    }
  };
  check_order("scheduler.backoff", c.scheduler.backoff.initial, "initial", c.scheduler.backoff.max,
              "max");
  check_order("scheduler.doc_backoff", c.scheduler.doc_backoff.initial, "initial",
              c.scheduler.doc_backoff.max, "max");
  check_order("retry", c.retry.request_initial_wait, "request_initial_wait",
              c.retry.request_max_wait, "request_max_wait");
  check_order("retry.pacing", c.retry.pacing.initial, "initial", c.retry.pacing.max, "max");

  if (c.replicator.databases.empty() && !c.replicator.discover) {
    Problem("replicator.databases", "is empty and discover is off: nothing would be replicated");
  }
  if (c.server.auth == Config::Server::Auth::kCookie && c.server.username.empty()) {
    Problem("server.auth", "cookie needs server.username");
  }
  bool has_authorization =
      std::any_of(c.server.headers.begin(), c.server.headers.end(),
                  [](const auto& h) { return AsciiLower(h.first) == "authorization"; });
  if (has_authorization && !c.server.username.empty()) {
    Problem("server.headers", "sets Authorization and server.username is set too; keep one");
  }
  for (const auto* header :
       {&c.server.proxy_auth.username_header, &c.server.proxy_auth.roles_header,
        &c.server.proxy_auth.token_header}) {
    if (!IsHeaderToken(*header)) {
      std::string key = header == &c.server.proxy_auth.username_header ? "username_header"
                        : header == &c.server.proxy_auth.roles_header  ? "roles_header"
                                                                       : "token_header";
      Problem("server.proxy_auth." + key, "must be a header name, got " + Quote(*header));
    }
  }
  CheckReadable("server.ca_file", c.server.ca_file);
  CheckReadable("replication.ca_file", c.replication.ca_file);
  CheckCluster(c.cluster);
}

void Loader::CheckCluster(const Config::Cluster& cluster) {
  // Not `_replicator` (its documents are replications) nor any name CouchDB
  // refuses: names starting with '_' are reserved for its own databases.
  if (!IsDatabaseName(cluster.database) || cluster.database == "_replicator") {
    Problem("cluster.database",
            "must be a database name (a-z first, then a-z 0-9 _$()+-/), got " +
                Quote(cluster.database));
  }
  if (cluster.lease_ttl < 3 * cluster.heartbeat) {
    Problem("cluster.lease_ttl", "(" + FormatDuration(cluster.lease_ttl) +
                                     ") must be at least 3 heartbeats (3 x " +
                                     FormatDuration(cluster.heartbeat) +
                                     "): a job stops 2 heartbeats before its lease can expire");
  }
  if (cluster.heartbeat < std::chrono::milliseconds(100)) {
    Problem("cluster.heartbeat", "must be at least 100ms, got " + FormatDuration(cluster.heartbeat));
  }
  bool printable = std::all_of(cluster.instance_id.begin(), cluster.instance_id.end(), [](char ch) {
    return static_cast<unsigned char>(ch) > 0x20 && static_cast<unsigned char>(ch) < 0x7f;
  });
  if (!printable || cluster.instance_id.size() > 200) {
    Problem("cluster.instance_id", "must be up to 200 printable ASCII characters without spaces, got " +
                                       Quote(cluster.instance_id));
  }
}

void Loader::CheckReadable(const std::string& path, const std::string& file) {
  if (file.empty()) return;
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) {
    Problem(path, "cannot read " + Quote(file) + ": " + std::strerror(errno));
    return;
  }
  std::fclose(f);
}

std::optional<std::string> Loader::Env(const char* name) const {
  if (!env_) return std::nullopt;
  auto value = env_(name);
  if (value && value->empty()) return std::nullopt;
  return value;
}

// Precedence: environment, then the *_file, then the inline key.
void Loader::ResolvePassword(const std::string& section, const std::string& username,
                             const char* env_name, std::string& password,
                             const std::string& password_file) {
  const std::string file_key = section + ".password_file";
  if (!password.empty() && !password_file.empty()) {
    Problem(file_key, "set only one of " + section + ".password and " + file_key);
  }
  if (auto from_env = Env(env_name)) {
    password = *from_env;
  } else if (!password_file.empty()) {
    auto content = ReadSecretFile(password_file);
    if (!content.ok()) return Problem(file_key, content.error().reason);
    password = std::move(content.value());
  }
  if (!password.empty() && username.empty()) {
    std::string source = Env(env_name)            ? std::string(env_name)
                         : !password_file.empty() ? file_key
                                                  : section + ".password";
    Problem(section + ".username", "is empty but a password is given (" + source + ")");
  }
  if (password.empty() && password_file.empty() && !username.empty()) {
    Problem(section + ".username",
            "is set but there is no password: set " + file_key + " or " + env_name);
  }
}

void Loader::ResolveSecrets(Config& c) {
  ResolvePassword("server", c.server.username, kServerPasswordEnv, c.server.password,
                  c.server.password_file);
  ResolvePassword("status.auth", c.status.auth.username, kStatusPasswordEnv, c.status.auth.password,
                  c.status.auth.password_file);

  Config::ProxyAuth& proxy = c.server.proxy_auth;
  if (!proxy.enabled) return;
  if (auto from_env = Env(kProxySecretEnv)) {
    proxy.secret = *from_env;
  } else if (!proxy.secret_file.empty()) {
    auto content = ReadSecretFile(proxy.secret_file);
    if (!content.ok()) return Problem("server.proxy_auth.secret_file", content.error().reason);
    proxy.secret = std::move(content.value());
  } else {
    Problem("server.proxy_auth",
            std::string("is enabled but has no secret: set secret_file or ") + kProxySecretEnv);
  }
}

// Where a ',' begins a token outside any flow collection ([...] or {...}):
// never valid YAML, and yaml-cpp loops forever on some of them (found by
// fuzz_config: the document ","; also " ,", "[1],", "&a b[\n,"). 1-based line and
// column, or nullopt. Quoted scalars and comments are skipped.
std::optional<std::pair<size_t, size_t>> StrayFlowEntry(std::string_view yaml) {
  size_t line = 1, column = 0;
  int depth = 0;
  char last = '\0';       // last non-space character on this line ('\0': none)
  bool space_before = true;
  for (size_t i = 0; i < yaml.size(); ++i) {
    char c = yaml[i];
    ++column;
    if (c == '\n') {
      ++line;
      column = 0;
      last = '\0';
      space_before = true;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      space_before = true;
      continue;
    }
    const bool token_start = space_before || last == '\0' || last == '[' || last == '{' ||
                             last == ',';
    if (c == '#' && space_before) {
      while (i + 1 < yaml.size() && yaml[i + 1] != '\n') ++i;
      continue;
    }
    if ((c == '"' || c == '\'') && token_start) {
      for (++i; i < yaml.size(); ++i) {
        if (yaml[i] == '\n') {
          ++line;
          column = 0;
        } else {
          ++column;
        }
        if (c == '"' && yaml[i] == '\\') {
          ++i;
          ++column;
        } else if (yaml[i] == c) {
          if (c == '\'' && i + 1 < yaml.size() && yaml[i + 1] == '\'') {
            ++i;
            ++column;
            continue;
          }
          break;
        }
      }
      last = c;
      space_before = false;
      continue;
    }
    if ((c == '[' || c == '{') && (depth > 0 || token_start)) {
      ++depth;  // (inside a plain scalar, "b[" opens nothing)
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    } else if (c == ',' && depth == 0 &&
               (last == '\0' || last == ']' || last == '}' ||
                ((last == ':' || last == '-' || last == '?') && space_before))) {
      return std::make_pair(line, column);
    }
    last = c;
    space_before = false;
  }
  return std::nullopt;
}

// yaml-cpp never returns on some malformed texts (fuzz_config found several,
// e.g. "&a b [\n,"), and a parser in a loop cannot be stopped from outside.
// So the text is parsed once in a child process with a time limit first; a
// config file is small, the fork costs a millisecond. True when the parser
// finishes (or the check cannot run: then the parse runs here as before).
bool YamlParserFinishes(const std::string& text) {
  constexpr auto kLimit = std::chrono::seconds(5);
  pid_t pid = fork();
  if (pid < 0) return true;
  if (pid == 0) {
    try {
      YAML::LoadAll(text);
    } catch (...) {
    }
    _exit(0);
  }
  const auto deadline = std::chrono::steady_clock::now() + kLimit;
  auto pause = std::chrono::microseconds(200);
  while (true) {
    int status = 0;
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) return true;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  return false;
}

Result<Config> Loader::Load(std::string_view yaml) {
  Config config;
  std::vector<YAML::Node> documents;
  // yaml-cpp can loop on control characters (found by fuzz_config: a NUL):
  // a config file is text, so refuse them first, naming where.
  size_t line = 1, column = 1;
  for (char ch : yaml) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      return Error::Permanent("bad_config", origin_ + ":" + std::to_string(line) + ":" +
                                                std::to_string(column) +
                                                ": invalid YAML: a control character (byte " +
                                                std::to_string(c) + ")");
    }
    if (c == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  if (auto at = StrayFlowEntry(yaml)) {
    return Error::Permanent("bad_config", origin_ + ":" + std::to_string(at->first) + ":" +
                                              std::to_string(at->second) +
                                              ": invalid YAML: a ',' outside a flow collection "
                                              "([...] or {...})");
  }
  if (!YamlParserFinishes(std::string(yaml))) {
    return Error::Permanent("bad_config", origin_ +
                                              ": invalid YAML: the YAML parser did not finish on "
                                              "this text (it loops on some malformed YAML)");
  }
  try {
    documents = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::Exception& e) {
    std::string where = origin_;
    if (!e.mark.is_null()) {
      where += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    }
    return Error::Permanent("bad_config", where + ": invalid YAML: " + e.msg);
  }
  if (documents.size() > 1) {
    Problem(documents[1], "", "holds more than one YAML document (a second `---`)");
  }
  try {
    if (!documents.empty()) {
      const YAML::Node& root = documents[0];
      if (!root.IsNull() && !root.IsMap()) {
        Problem(root, "",
                "must be a map of sections (server:, replicator:, scheduler:, ...), " + Got(root));
      } else {
        Section(root, "", Fields(config));
      }
    }
  } catch (const YAML::Exception& e) {  // not expected: the walk only reads scalars
    Problem("", std::string("cannot be read: ") + e.what());
  }
  CheckConsistency(config);
  ResolveSecrets(config);
  if (!problems_.empty()) {
    // In file order; problems without a line (e.g. from the environment) last.
    std::stable_sort(problems_.begin(), problems_.end(), [](const auto& a, const auto& b) {
      auto key = [](int line) { return line == 0 ? std::numeric_limits<int>::max() : line; };
      return key(a.first) < key(b.first);
    });
    std::string reason;
    for (const auto& p : problems_) reason += (reason.empty() ? "" : "\n") + p.second;
    return Error::Permanent("bad_config", reason);
  }
  return config;
}

}  // namespace

std::optional<std::string> RealEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

Result<Config> LoadConfigText(std::string_view yaml, std::string_view origin,
                              const EnvLookup& env) {
  return Loader(origin, env, {}).Load(yaml);
}

Result<Config> LoadConfigFile(const std::string& path, const EnvLookup& env) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Error::Permanent("bad_config",
                            "cannot read config file " + Quote(path) + ": " + std::strerror(errno));
  }
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  bool failed = std::ferror(f) != 0;
  int saved_errno = errno;
  std::fclose(f);
  if (failed) {
    return Error::Permanent(
        "bad_config", "cannot read config file " + Quote(path) + ": " + std::strerror(saved_errno));
  }
  std::filesystem::path base_dir = std::filesystem::path(path).parent_path();
  return Loader(path, env, base_dir).Load(text);
}

}  // namespace couchrepd

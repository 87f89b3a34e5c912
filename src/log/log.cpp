#include "couchrepd/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <shared_mutex>

#include "couchrepd/encoding.h"
#include "couchrepd/json.h"
#include "couchrepd/url.h"

namespace couchrepd {

namespace {

constexpr size_t kMinSecretBytes = 3;

// Longest first so that a secret containing another is masked whole.
struct LongestFirst {
  bool operator()(const std::string& a, const std::string& b) const {
    return a.size() != b.size() ? a.size() > b.size() : a < b;
  }
};

struct SecretRegistry {
  std::shared_mutex mu;
  std::set<std::string, LongestFirst> secrets;
};

SecretRegistry& Registry() {
  static SecretRegistry registry;
  return registry;
}

void MaskAll(std::string& text, const std::string& secret) {
  size_t pos = 0;
  while ((pos = text.find(secret, pos)) != std::string::npos) {
    text.replace(pos, secret.size(), "*****");
    pos += 5;
  }
}

class RedactingFormatter final : public spdlog::formatter {
 public:
  explicit RedactingFormatter(LogFormat format)
      : format_(format),
        inner_(std::make_unique<spdlog::pattern_formatter>(
            format == LogFormat::kJson ? "%v" : "%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v",
            spdlog::pattern_time_type::utc, "")) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    spdlog::memory_buf_t raw;
    inner_->format(msg, raw);
    std::string text = ScrubSecrets(std::string_view(raw.data(), raw.size()));
    if (format_ == LogFormat::kJson) {
      spdlog::memory_buf_t ts;
      spdlog::pattern_formatter ts_formatter("%Y-%m-%dT%H:%M:%S.%fZ", spdlog::pattern_time_type::utc,
                                             "");
      ts_formatter.format(msg, ts);
      JsonWriter w;
      w.BeginObject()
          .Key("ts")
          .String(std::string_view(ts.data(), ts.size()))
          .Key("level")
          .String(spdlog::level::to_string_view(msg.level).data())
          .Key("msg")
          .String(text)
          .EndObject();
      text = w.Take();
    }
    text.push_back('\n');
    dest.append(text.data(), text.data() + text.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<RedactingFormatter>(format_);
  }

 private:
  LogFormat format_;
  std::unique_ptr<spdlog::pattern_formatter> inner_;
};

spdlog::level::level_enum ParseLevel(std::string_view level) {
  if (level == "trace") return spdlog::level::trace;
  if (level == "debug") return spdlog::level::debug;
  if (level == "warn" || level == "warning") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  return spdlog::level::info;
}

}  // namespace

void InitLogging(std::string_view level, LogFormat format) {
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = spdlog::stderr_color_mt("couchrepd");
    spdlog::set_default_logger(logger);
  });
  spdlog::default_logger()->set_formatter(std::make_unique<RedactingFormatter>(format));
  SetLogLevel(level);
}

void SetLogLevel(std::string_view level) { spdlog::set_level(ParseLevel(level)); }

void RegisterSecret(std::string_view secret) {
  if (secret.size() < kMinSecretBytes) return;
  auto& r = Registry();
  std::unique_lock lock(r.mu);
  r.secrets.emplace(secret);
  // Also the forms a secret takes inside URLs and JSON text.
  std::string encoded = PercentEncode(secret);
  if (encoded != secret) r.secrets.insert(encoded);
  std::string quoted = JsonQuote(secret);
  quoted = quoted.substr(1, quoted.size() - 2);
  if (quoted != secret) r.secrets.insert(quoted);
}

void RegisterBasicCredentials(std::string_view user, std::string_view password) {
  RegisterSecret(password);
  if (password.empty()) return;
  std::string pair = std::string(user) + ":" + std::string(password);
  auto& r = Registry();
  std::unique_lock lock(r.mu);
  r.secrets.insert(Base64Encode(pair));
}

std::string ScrubSecrets(std::string_view text) {
  std::string out = RedactSecrets(text);
  auto& r = Registry();
  std::shared_lock lock(r.mu);
  for (const auto& s : r.secrets) MaskAll(out, s);
  return out;
}

}  // namespace couchrepd

#include "couchrepd/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef COUCHREPD_HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#endif

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

// The line's fields, scrubbed like the message.
LogFields ScrubbedFields(const LogFields& in) {
  LogFields out;
  out.db = ScrubSecrets(in.db);
  out.doc_id = ScrubSecrets(in.doc_id);
  out.replication_id = ScrubSecrets(in.replication_id);
  out.job_state = ScrubSecrets(in.job_state);
  out.source = ScrubSecrets(in.source);
  out.target = ScrubSecrets(in.target);
  out.error = ScrubSecrets(in.error);
  return out;
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
      text = RenderJsonLogLine(std::string_view(ts.data(), ts.size()),
                               spdlog::level::to_string_view(msg.level).data(), text,
                               ScrubbedFields(CurrentLogFields()));
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

#ifdef COUCHREPD_HAVE_SYSTEMD
constexpr const char* kJournalSocket = "/run/systemd/journal/socket";

// Sends each line to the journal as its own entry, the structured fields as
// journal fields (formatter unused: the journal keeps its own time stamps).
class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::vector<std::string> entry =
        JournalEntry(msg.level, std::string_view(msg.payload.data(), msg.payload.size()),
                     CurrentLogFields());
    std::vector<iovec> iov(entry.size());
    for (size_t i = 0; i < entry.size(); ++i) {
      iov[i].iov_base = entry[i].data();
      iov[i].iov_len = entry[i].size();
    }
    sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
  }
  void flush_() override {}
};

bool JournalAnswers() { return ::access(kJournalSocket, W_OK) == 0; }
#endif

// The default logger's sinks: stderr always, the journal when built with
// libsystemd; InitLogging turns the one not in use off (sink levels are
// atomic, so a SIGHUP reload may switch while other threads log).
struct Sinks {
  std::shared_ptr<spdlog::sinks::sink> stderr_sink;
  std::shared_ptr<spdlog::sinks::sink> journal_sink;
};

Sinks& TheSinks() {
  static Sinks* sinks = [] {
    auto* s = new Sinks();  // never destroyed: threads may log during exit
    s->stderr_sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    std::vector<spdlog::sink_ptr> all{s->stderr_sink};
#ifdef COUCHREPD_HAVE_SYSTEMD
    s->journal_sink = std::make_shared<JournalSink>();
    s->journal_sink->set_level(spdlog::level::off);
    all.push_back(s->journal_sink);
#endif
    auto logger = std::make_shared<spdlog::logger>("couchrepd", all.begin(), all.end());
    spdlog::register_logger(logger);
    spdlog::set_default_logger(logger);
    return s;
  }();
  return *sinks;
}

spdlog::level::level_enum ParseLevel(std::string_view level) {
  if (level == "trace") return spdlog::level::trace;
  if (level == "debug") return spdlog::level::debug;
  if (level == "warn" || level == "warning") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  return spdlog::level::info;
}

}  // namespace

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format) {
  return std::make_unique<RedactingFormatter>(format);
}

bool InitLogging(std::string_view level, LogFormat format, LogOutput output) {
  Sinks& sinks = TheSinks();
  sinks.stderr_sink->set_formatter(std::make_unique<RedactingFormatter>(format));
  bool journal = false;
#ifdef COUCHREPD_HAVE_SYSTEMD
  journal = output == LogOutput::kJournal && JournalAnswers();
  sinks.journal_sink->set_level(journal ? spdlog::level::trace : spdlog::level::off);
#endif
  sinks.stderr_sink->set_level(journal ? spdlog::level::off : spdlog::level::trace);
  SetLogLevel(level);
  return journal || output == LogOutput::kStderr;
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

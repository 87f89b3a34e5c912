// Structured log fields: the thread's current fields, and the two renderings
// that carry them (a JSON line, a journal entry). Pure apart from the
// thread-local current fields.
#include <algorithm>
#include <cctype>

#include "couchrepd/json.h"
#include "couchrepd/log.h"

namespace couchrepd {

namespace {

thread_local LogFields current_fields;

void Override(std::string& field, const std::string& value) {
  if (!value.empty()) field = value;
}

// The fields in their output order, with their JSON names.
template <typename Fn>
void ForEachField(const LogFields& f, Fn&& fn) {
  fn("db", f.db);
  fn("doc_id", f.doc_id);
  fn("replication_id", f.replication_id);
  fn("job_state", f.job_state);
  fn("source", f.source);
  fn("target", f.target);
  fn("error", f.error);
}

// syslog priorities, as the journal wants them.
char Priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical:
      return '2';
    case spdlog::level::err:
      return '3';
    case spdlog::level::warn:
      return '4';
    case spdlog::level::info:
      return '6';
    default:
      return '7';
  }
}

}  // namespace

const LogFields& CurrentLogFields() { return current_fields; }

ScopedLogFields::ScopedLogFields(const LogFields& fields) : saved_(current_fields) {
  Override(current_fields.db, fields.db);
  Override(current_fields.doc_id, fields.doc_id);
  Override(current_fields.replication_id, fields.replication_id);
  Override(current_fields.job_state, fields.job_state);
  Override(current_fields.source, fields.source);
  Override(current_fields.target, fields.target);
  Override(current_fields.error, fields.error);
}

ScopedLogFields::~ScopedLogFields() { current_fields = std::move(saved_); }

std::string RenderJsonLogLine(std::string_view ts, std::string_view level, std::string_view msg,
                              const LogFields& fields) {
  JsonWriter w;
  w.BeginObject().Key("ts").String(ts).Key("level").String(level).Key("msg").String(msg);
  ForEachField(fields, [&](std::string_view name, const std::string& value) {
    if (!value.empty()) w.Key(name).String(value);
  });
  w.EndObject();
  return w.Take();
}

std::vector<std::string> JournalEntry(spdlog::level::level_enum level, std::string_view msg,
                                      const LogFields& fields) {
  std::vector<std::string> entry;
  entry.push_back("MESSAGE=" + ScrubSecrets(msg));
  entry.push_back(std::string("PRIORITY=") + Priority(level));
  entry.emplace_back("SYSLOG_IDENTIFIER=couchrepd");
  ForEachField(fields, [&](std::string_view name, const std::string& value) {
    if (value.empty()) return;
    std::string key(name);
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    entry.push_back(key + "=" + ScrubSecrets(value));
  });
  return entry;
}

}  // namespace couchrepd

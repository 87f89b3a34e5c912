#include "couchrepd/replicate_args.h"

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <string_view>
#include <utility>

#include "couchrepd/encoding.h"
#include "couchrepd/erlang_term.h"
#include "couchrepd/json.h"
#include "couchrepd/url.h"

namespace couchrepd {

namespace {

Error Usage(const std::string& reason) { return Error::Permanent("usage", RedactSecrets(reason)); }

// Flags without a value, and the document field each sets.
const std::map<std::string_view, std::pair<std::string_view, bool>>& BoolFlags() {
  static const std::map<std::string_view, std::pair<std::string_view, bool>> kFlags = {
      {"--continuous", {"continuous", true}},
      {"--create-target", {"create_target", true}},
      {"--winning-revs-only", {"winning_revs_only", true}},
      {"--no-checkpoints", {"use_checkpoints", false}},
      {"--no-bulk-get", {"use_bulk_get", false}},
  };
  return kFlags;
}

// Flags with a whole-number value, and their document field.
const std::map<std::string_view, std::string_view>& NumberFlags() {
  static const std::map<std::string_view, std::string_view> kFlags = {
      {"--checkpoint-interval", "checkpoint_interval"},
      {"--connection-timeout", "connection_timeout"},
      {"--worker-processes", "worker_processes"},
      {"--worker-batch-size", "worker_batch_size"},
      {"--http-connections", "http_connections"},
      {"--retries-per-request", "retries_per_request"},
  };
  return kFlags;
}

// Flags with a JSON value, their document field, and whether it must be an object.
const std::map<std::string_view, std::pair<std::string_view, bool>>& JsonFlags() {
  static const std::map<std::string_view, std::pair<std::string_view, bool>> kFlags = {
      {"--create-target-params", {"create_target_params", true}},
      {"--selector", {"selector", true}},
      {"--query-params", {"query_params", true}},
      {"--since-seq", {"since_seq", false}},
  };
  return kFlags;
}

bool IsRepeatable(std::string_view flag) {
  return flag == "--doc-ids" || flag == "--user-ctx-roles" || flag == "--header" ||
         flag == "--source-header" || flag == "--target-header";
}

bool TakesValue(std::string_view flag) {
  return NumberFlags().count(flag) || JsonFlags().count(flag) || IsRepeatable(flag) ||
         flag == "--filter" || flag == "--user-ctx-name" || flag == "--server" ||
         flag == "--config";
}

// Comma-separated items, empty ones skipped ("a,,b," -> a, b).
std::vector<std::string> SplitList(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = std::min(s.find(',', start), s.size());
    std::string_view item = TrimAsciiSpace(s.substr(start, comma - start));
    if (!item.empty()) out.emplace_back(item);
    start = comma + 1;
  }
  return out;
}

// `value` as compact-enough JSON text: valid JSON (of object shape when
// `object`), trimmed. nullopt when it is not.
std::optional<std::string> JsonValue(std::string_view value, bool object) {
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  simdjson::padded_string text(value);
  auto code = parser.parse(text).get(element);
  if (code == simdjson::NUMBER_ERROR) {
    // Integers beyond 64 bits are valid JSON (and kept by CouchDB), not for the DOM.
    auto term = EjsonFromJson(value);
    if (!term.ok() || (object && !term->IsObject())) return std::nullopt;
    return std::string(TrimAsciiSpace(value));
  }
  if (code || (object && !element.is_object())) return std::nullopt;
  return std::string(TrimAsciiSpace(value));
}

struct Collected {
  std::vector<std::string> positional;
  std::map<std::string, std::string> single;  // flag -> value (flags given once)
  std::map<std::string, std::vector<std::string>> repeated;
  std::vector<std::pair<std::string_view, bool>> bools;  // field, value
};

Status Collect(const std::vector<std::string>& args, Collected& out) {
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    std::string flag = arg;
    std::optional<std::string> value;
    size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (flag == "-h") flag = "--help";
    if (flag == "-q") flag = "--quiet";
    if (flag == "-c") flag = "--config";
    if (flag == "--help" || flag == "--json" || flag == "--quiet" || BoolFlags().count(flag)) {
      if (value) return Usage(Backticked(flag) + " takes no value");
      if (flag == "--json" || flag == "--quiet") out.single[flag] = "";
      if (auto it = BoolFlags().find(flag); it != BoolFlags().end()) {
        out.bools.push_back(it->second);
      }
      continue;
    }
    constexpr size_t kMaxEcho = 40;
    if (!TakesValue(flag)) return Usage("unknown option " + Backticked(flag.substr(0, kMaxEcho)));
    if (!value) {
      if (i + 1 >= args.size()) return Usage(Backticked(flag) + " needs a value");
      value = args[++i];
    }
    if (IsRepeatable(flag)) {
      out.repeated[flag].push_back(std::move(*value));
    } else if (!out.single.emplace(flag, std::move(*value)).second) {
      return Usage(Backticked(flag) + " is given more than once");
    }
  }
  return OkStatus();
}

// "Name: value" from --header, --source-header, --target-header.
Status AddHeaders(const Collected& c, std::string_view flag,
                  std::vector<std::pair<std::string, std::string>>& headers) {
  auto it = c.repeated.find(std::string(flag));
  if (it == c.repeated.end()) return OkStatus();
  for (const std::string& h : it->second) {
    size_t colon = h.find(':');
    std::string_view name =
        colon == std::string::npos ? "" : TrimAsciiSpace(std::string_view(h).substr(0, colon));
    if (name.empty()) return Usage(Backticked(flag) + " needs \"Name: value\"");
    headers.emplace_back(std::string(name),
                         std::string(TrimAsciiSpace(std::string_view(h).substr(colon + 1))));
  }
  return OkStatus();
}

void WriteEndpoint(JsonWriter& w, std::string_view field, const std::string& location,
                   const std::vector<std::pair<std::string, std::string>>& headers) {
  w.Key(field);
  if (headers.empty()) {
    w.String(location);
    return;
  }
  w.BeginObject().Key("url").String(location).Key("headers").BeginObject();
  for (const auto& [name, value] : headers) w.Key(name).String(value);
  w.EndObject().EndObject();
}

}  // namespace

Result<ReplicateArgs> ParseReplicateArgs(const std::vector<std::string>& args) {
  ReplicateArgs out;
  // --help wins over anything else on the line, mistakes included.
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (arg == "--help" || arg == "-h") {
      out.help = true;
      return out;
    }
  }
  Collected c;
  if (Status s = Collect(args, c); !s.ok()) return s.error();
  if (c.positional.size() < 2) return Usage("SOURCE and TARGET are required");
  if (c.positional.size() > 2) {
    // Not echoed: an argument may be a URL with a password.
    return Usage("expected SOURCE and TARGET, got " + std::to_string(c.positional.size()) +
                 " arguments");
  }
  auto single = [&c](std::string_view flag) -> const std::string* {
    auto it = c.single.find(std::string(flag));
    return it == c.single.end() ? nullptr : &it->second;
  };
  out.json_output = single("--json") != nullptr;
  out.quiet = single("--quiet") != nullptr;
  if (const std::string* server = single("--server")) {
    auto url = ParseUrl(*server);
    if (!url.ok()) return Usage("`--server`: " + url.error().reason);
    out.server_url = *server;
  }
  if (const std::string* config = single("--config")) {
    if (config->empty()) return Usage("`--config` needs a file name");
    out.config_path = *config;
  }
  int selections = (c.repeated.count("--doc-ids") ? 1 : 0) + (single("--filter") ? 1 : 0) +
                   (single("--selector") ? 1 : 0);
  if (selections > 1)
    return Usage("`--doc-ids`, `--filter` and `--selector` are mutually exclusive");

  std::vector<std::pair<std::string, std::string>> source_headers, target_headers;
  for (auto* headers : {&source_headers, &target_headers}) {
    if (Status s = AddHeaders(c, "--header", *headers); !s.ok()) return s.error();
  }
  if (Status s = AddHeaders(c, "--source-header", source_headers); !s.ok()) return s.error();
  if (Status s = AddHeaders(c, "--target-header", target_headers); !s.ok()) return s.error();

  JsonWriter w;
  w.BeginObject();
  WriteEndpoint(w, "source", c.positional[0], source_headers);
  WriteEndpoint(w, "target", c.positional[1], target_headers);
  for (const auto& [field, value] : c.bools) w.Key(field).Bool(value);
  for (const auto& [flag, field] : NumberFlags()) {
    const std::string* value = single(flag);
    if (value == nullptr) continue;
    std::string_view digits = TrimAsciiSpace(*value);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(),
                                       [](unsigned char ch) { return std::isdigit(ch); })) {
      return Usage(Backticked(flag) + " needs a whole number" +
                   (field.find("interval") != std::string_view::npos ||
                            field.find("timeout") != std::string_view::npos
                        ? " of milliseconds"
                        : ""));
    }
    // As an integer string: ParseReplicationDoc accepts it and reports any
    // size problem with the field's own bounds.
    w.Key(field).String(digits);
  }
  for (const auto& [flag, shape] : JsonFlags()) {
    const std::string* value = single(flag);
    if (value == nullptr) continue;
    auto json = JsonValue(*value, shape.second);
    if (!json && flag == "--since-seq") json = JsonQuote(TrimAsciiSpace(*value));  // 5-g1AAA... as written
    if (!json) return Usage(Backticked(flag) + " needs a JSON " + (shape.second ? "object" : "value"));
    w.Key(shape.first).Raw(*json);
  }
  if (auto it = c.repeated.find("--doc-ids"); it != c.repeated.end()) {
    w.Key("doc_ids").BeginArray();
    for (const std::string& list : it->second) {
      for (const std::string& id : SplitList(list)) w.String(id);
    }
    w.EndArray();
  }
  if (const std::string* filter = single("--filter")) w.Key("filter").String(*filter);
  const std::string* name = single("--user-ctx-name");
  auto roles = c.repeated.find("--user-ctx-roles");
  if (name != nullptr || roles != c.repeated.end()) {
    w.Key("user_ctx").BeginObject().Key("name");
    if (name != nullptr) {
      w.String(*name);
    } else {
      w.Null();
    }
    w.Key("roles").BeginArray();
    if (roles != c.repeated.end()) {
      for (const std::string& list : roles->second) {
        for (const std::string& role : SplitList(list)) w.String(role);
      }
    }
    w.EndArray().EndObject();
  }
  w.EndObject();
  out.doc_json = w.Take();
  return out;
}

std::string ReplicateUsage() {
  return R"(Usage: couchrepd replicate SOURCE TARGET [OPTIONS]

Runs one replication in the foreground with the service's engine and
checkpoints, then prints a summary. SOURCE and TARGET are http(s) URLs
(credentials may be given as user:password@ in the URL) or bare database
names on the server (--server or the config's server.url).

Replication (each sets the replication document field of the same name):
  --continuous                     keep following the source's changes
  --create-target                  create the target database first
  --create-target-params JSON      query parameters of that PUT, e.g. '{"q":1}'
  --doc-ids A,B                    only these document ids (repeatable)
  --selector JSON                  only documents matching this Mango selector
  --filter DDOC/NAME               a filter function, or a built-in such as
                                   _view
  --query-params JSON              parameters of the filter, e.g.
                                   '{"view":"d/v"}'
  --since-seq SEQ                  start here when there is no checkpoint (JSON,
                                   or taken as a string)
  --winning-revs-only              replicate winning revisions only
  --no-checkpoints                 do not read or write checkpoints
  --checkpoint-interval MS         checkpoint period in milliseconds
  --worker-processes N             parallel batch workers
  --worker-batch-size N            changes per batch
  --http-connections N             connections per endpoint
  --connection-timeout MS          inactivity timeout of a request in
                                   milliseconds
  --retries-per-request N          retries of one failed request
  --no-bulk-get                    fetch documents with open_revs, not _bulk_get
  --user-ctx-name NAME             the user that bare database names are
                                   accessed as (without it and --user-ctx-roles,
                                   the server's credentials)
  --user-ctx-roles A,B             that user's roles (repeatable)
  --header "NAME: VALUE"           an extra header for both endpoints
                                   (repeatable)
  --source-header "NAME: VALUE"    an extra header for the source only
  --target-header "NAME: VALUE"    an extra header for the target only

Program:
  --server URL                     the CouchDB server (for bare names and its
                                   uuid)
  -c, --config FILE                defaults, server and credentials from FILE
  --json                           print the summary as JSON
  -q, --quiet                      no progress bar
  -h, --help                       this text

`--doc-ids`, `--filter` and `--selector` are mutually exclusive. Exit codes:
0 ok, 1 the replication failed, 2 bad usage or bad configuration.
)";
}

}  // namespace couchrepd

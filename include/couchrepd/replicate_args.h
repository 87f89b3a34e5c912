// `couchrepd replicate` flags, turned into a replication document.
//
// The foreground command runs the replication the service would run for a
// document with the same fields, so its flags become that document (JSON
// text), which then goes through ParseReplicationDoc like any other: one set
// of field rules, one set of messages. This file only checks the flags
// themselves — known names, values present, JSON values well-formed and of
// the right shape, numbers numeric; the field rules (bounds, URL syntax,
// filter syntax) are ParseReplicationDoc's. Pure.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "couchrepd/result.h"

namespace couchrepd {

struct ReplicateArgs {
  // A replication document built from SOURCE, TARGET and the flags; give it
  // to ParseReplicationDoc. It holds any credentials the URLs or headers hold.
  std::string doc_json;
  std::optional<std::string> server_url;   // --server: for bare names and the server uuid
  std::optional<std::string> config_path;  // --config: defaults and server from a config file
  bool json_output = false;                // --json: a JSON summary instead of text
  bool quiet = false;                      // --quiet: no progress bar
  bool help = false;                       // --help: the other fields are not filled in
};

// `args` are the arguments after `replicate`. Options may come before, after
// or between SOURCE and TARGET, as `--flag VALUE` or `--flag=VALUE`; `--`
// ends the options. Usage errors are permanent, code "usage", and the reason
// names the flag; it never repeats a value (it might be a credential).
Result<ReplicateArgs> ParseReplicateArgs(const std::vector<std::string>& args);

// The help text of `couchrepd replicate`.
std::string ReplicateUsage();

}  // namespace couchrepd

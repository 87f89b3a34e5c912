// The help texts of every command, in one table: `couchrepd help COMMAND`,
// `couchrepd COMMAND --help` and the man page (help2man over --help-all)
// all come from here. replicate's options are ReplicateUsage(), which lives
// beside its parser; this file adds what the parser does not know (examples).
#include "couchrepd/help.h"

#include <algorithm>
#include <string_view>

#include "couchrepd/replicate_args.h"

namespace couchrepd {

namespace {

// Every text starts "Usage: couchrepd NAME ..." and ends with "Examples:";
// options take their value as `--flag VALUE` or `--flag=VALUE`.

constexpr std::string_view kServeHelp = R"(Usage: couchrepd serve [OPTIONS]

The service: follows every replicator database of the configuration
(replicator.databases, default _replicator) with a continuous _changes feed,
runs a job for each replication document, writes the _replication_* fields
back into the documents and serves the status API and the dashboard
(status.listen, default 127.0.0.1:5986). Under systemd (Type=notify) it sends
READY=1 once every feed is connected, and WATCHDOG=1 while its engine loop is
alive.

Options:
  -c, --config FILE  the configuration (default etc/couchrepd.yaml)
  -h, --help         show this help and exit

Signals: SIGTERM or SIGINT stop it gracefully (every running job checkpoints
within shutdown_timeout); SIGHUP reloads the configuration file (when the new
file does not load, the error is logged and the running configuration kept).

Exit status: 0 stopped by a signal, 1 could not start (e.g. the status address
is taken), 2 bad usage or an invalid configuration.

Examples:
  couchrepd serve --config /etc/couchrepd/couchrepd.yaml
  systemctl reload couchrepd        # SIGHUP: reload the configuration
)";

constexpr std::string_view kReplicateExamples = R"(
SIGINT or SIGTERM stop it after a checkpoint, with exit status 130: running
the same command again resumes (a second signal exits at once).

Examples:
  couchrepd replicate src tgt --server http://127.0.0.1:5984 --create-target
  couchrepd replicate http://db-a:5984/orders http://db-b:5984/orders --json
  couchrepd replicate -c couchrepd.yaml orders archive --continuous --quiet
  couchrepd replicate -c couchrepd.yaml src tgt --selector '{"year":2024}'
)";

constexpr std::string_view kCheckConfigHelp = R"(Usage: couchrepd check-config [OPTIONS]

Validates the configuration file and prints the effective configuration
(secrets shown as *****), then reaches the server with it: prints the server's
version and uuid, and the user and roles the server sees (with a warning when
the _admin role is missing). A bad key or value is reported with its path and
the reason.

Options:
  -c, --config FILE  the configuration (default etc/couchrepd.yaml)
  -h, --help         show this help and exit

Exit status: 0 valid and the server accepts the credentials, 1 valid but the
server cannot be reached or refuses the credentials, 2 bad usage or an invalid
configuration.

Examples:
  couchrepd check-config --config /etc/couchrepd/couchrepd.yaml
  couchrepd check-config -c new.yaml && cp new.yaml couchrepd.yaml
)";

constexpr std::string_view kStatusHelp = R"(Usage: couchrepd status [OPTIONS] [DOC_ID]

Shows what a running `couchrepd serve` is doing, from its status API: every
replication document and its state as a table, or with DOC_ID one document in
detail with its job's history.

Options:
  --server URL   the status API (default http://127.0.0.1:5986)
  --db NAME      the replicator database of DOC_ID (default _replicator)
  --state S      only documents in state S (repeatable, or S1,S2)
  --user NAME    Basic auth user (password from COUCHREPD_STATUS_PASSWORD)
  --json         print the status API's JSON instead of a table
  -h, --help     show this help and exit

Exit status: 0 all well, 1 a document is in error, failed or crashing (or the
status API could not be read), 2 bad usage.

Examples:
  couchrepd status
  couchrepd status --state crashing,error
  couchrepd status --server http://10.0.0.5:5986 --user ops nightly-backup
)";

constexpr std::string_view kOverviewIntro = R"(
couchrepd runs CouchDB replications beside a CouchDB server or cluster: it
follows the _replicator database, runs each replication document as a job over
the CouchDB replication protocol, writes the job's state back into the document
and serves that state to dashboards. Exit status: 0 ok, 1 failure, 2 bad usage
or bad configuration.

Commands:
)";

constexpr std::string_view kOverviewOptions = R"(
Options:
  -h, --help     show this help and exit
  -V, --version  print the version and exit

`couchrepd help COMMAND` or `couchrepd COMMAND --help` shows the options and
examples of a command. Options take their value as `--flag VALUE` or
`--flag=VALUE`.
)";

constexpr std::string_view kUsagePrefix = "Usage: ";
constexpr size_t kMaxEcho = 40;  // of an unknown command's name in an error

std::string_view FirstLine(std::string_view text) { return text.substr(0, text.find('\n')); }

}  // namespace

const std::vector<CommandHelp>& HelpCommands() {
  static const std::vector<CommandHelp> kCommands = {
      {"serve", "the service: follow _replicator and run its replications",
       std::string(kServeHelp)},
      {"replicate", "run one replication in the foreground",
       ReplicateUsage() + std::string(kReplicateExamples)},
      {"check-config", "validate the configuration and reach the server",
       std::string(kCheckConfigHelp)},
      {"status", "show what a running `couchrepd serve` is doing", std::string(kStatusHelp)},
  };
  return kCommands;
}

const std::string& OverviewHelp() {
  static const std::string kOverview = [] {
    // The synopses, help2man's way: "Usage: A" then "  or:  B" lines.
    std::string out;
    for (const CommandHelp& c : HelpCommands()) {
      out += out.empty() ? std::string(kUsagePrefix) : "  or:  ";
      out += std::string(FirstLine(c.text).substr(kUsagePrefix.size())) + "\n";
    }
    out += "  or:  couchrepd help [COMMAND]\n";
    out += "  or:  couchrepd --version\n";
    out += kOverviewIntro;
    size_t width = 4;  // "help"
    for (const CommandHelp& c : HelpCommands()) width = std::max(width, c.name.size());
    auto row = [&out, width](std::string_view name, std::string_view summary) {
      out += "  " + std::string(name) + std::string(width + 2 - name.size(), ' ') +
             std::string(summary) + "\n";
    };
    for (const CommandHelp& c : HelpCommands()) row(c.name, c.summary);
    row("help", "show the help of a command (as COMMAND --help does)");
    out += kOverviewOptions;
    return out;
  }();
  return kOverview;
}

Result<std::string> HelpFor(std::string_view command) {
  for (const CommandHelp& c : HelpCommands()) {
    if (c.name == command) return c.text;
  }
  std::string names;
  for (const CommandHelp& c : HelpCommands()) names += (names.empty() ? "" : ", ") + c.name;
  return Error::Permanent("usage", "no command `" + std::string(command.substr(0, kMaxEcho)) +
                                       "` (commands: " + names + ")");
}

std::string ManualHelp() {
  std::string out = OverviewHelp();
  for (const CommandHelp& c : HelpCommands()) {
    // help2man: "*Name*" starts a section; a line ending in ':' followed by an
    // indented line is a subsection, except "Options:" (the OPTIONS section,
    // kept for the global options) and "Examples:" (all examples go to
    // EXAMPLES, where lines starting "$ " stay verbatim).
    out += "\n*couchrepd " + c.name + "*\n";
    bool examples = false;
    std::string_view text = c.text;
    while (!text.empty()) {
      size_t eol = text.find('\n');
      std::string_view line = text.substr(0, eol);
      text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
      if (line == "Options:") {
        out += "Options of couchrepd " + c.name + ":\n";
        continue;
      }
      if (line == "Examples:") examples = true;
      if (examples && line.size() > 2 && line.substr(0, 2) == "  " && line[2] != ' ') {
        out += "  $ " + std::string(line.substr(2)) + "\n";
        continue;
      }
      out += std::string(line) + "\n";
    }
  }
  return out;
}

}  // namespace couchrepd

// The command-line help: one table of commands and their texts.
//
// `couchrepd help COMMAND`, `couchrepd COMMAND --help` and the couchrepd(8)
// man page (help2man over the hidden `couchrepd --help-all`) all print from
// this table, so they cannot differ. Pure: no I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "couchrepd/result.h"

namespace couchrepd {

struct CommandHelp {
  std::string name;     // "check-config"
  std::string summary;  // one line for the overview's command list
  // The whole text: "Usage: couchrepd NAME ...", a description, the options
  // (every flag the command's parser accepts), exit status, and Examples last.
  std::string text;
};

// Every command, in the overview's order.
const std::vector<CommandHelp>& HelpCommands();

// `couchrepd help` and `couchrepd --help`: the synopses, the commands and the
// global options.
const std::string& OverviewHelp();

// The text of `couchrepd help COMMAND`. A permanent "usage" error naming
// `command` when there is no such command.
Result<std::string> HelpFor(std::string_view command);

// The hidden `couchrepd --help-all`: the overview, then every command's text
// shaped for help2man (a "*couchrepd NAME*" section each; "Options:" renamed
// so that help2man keeps each command's options in its own section; examples
// marked "$ " so that they go verbatim into EXAMPLES).
std::string ManualHelp();

}  // namespace couchrepd

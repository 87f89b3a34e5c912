// Tests for the help table (src/cli/help.cpp): every command has a text in
// the expected shape, each text names every flag its command's parser accepts
// (read from the parsers' sources, so a new flag without help fails here),
// unknown commands are usage errors, and --help-all is shaped for help2man.
#include "couchrepd/help.h"

#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "couchrepd/cli.h"
#include "couchrepd/replicate_args.h"

namespace couchrepd {
namespace {

using Flags = std::set<std::string>;

// The parsers of each command: where its flags are compared.
const std::map<std::string, std::vector<std::string>>& ParserSources() {
  static const std::map<std::string, std::vector<std::string>> kSources = {
      {"serve", {"src/cli/serve.cpp"}},
      {"replicate", {"src/core/replicate_args.cpp", "src/cli/replicate.cpp"}},
      {"check-config", {"src/cli/check_config.cpp"}},
      {"status", {"src/cli/status.cpp"}},
  };
  return kSources;
}

// Flags every version of the parsers has accepted: a floor for the scan below.
const std::map<std::string, Flags>& KnownFlags() {
  static const std::map<std::string, Flags> kFlags = {
      {"serve", {"--config", "-c", "--help", "-h"}},
      {"check-config", {"--config", "-c", "--help", "-h"}},
      {"status", {"--server", "--db", "--state", "--user", "--json", "--help", "-h"}},
      {"replicate",
       {"--continuous", "--create-target", "--create-target-params", "--doc-ids", "--selector",
        "--filter", "--query-params", "--since-seq", "--winning-revs-only", "--no-checkpoints",
        "--checkpoint-interval", "--worker-processes", "--worker-batch-size",
        "--http-connections", "--connection-timeout", "--retries-per-request", "--no-bulk-get",
        "--user-ctx-name", "--user-ctx-roles", "--header", "--source-header", "--target-header",
        "--server", "--config", "-c", "--json", "--quiet", "-q", "--help", "-h"}},
  };
  return kFlags;
}

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(COUCHREPD_SOURCE_DIR) + "/" + relative);
  REQUIRE_MESSAGE(in.good(), relative);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every string literal of the parser that is a flag: "--name", "-x" or the
// prefix "--name=".
Flags FlagsInParser(const std::string& command) {
  static const std::regex kLiteral(R"re("(--?[A-Za-z][A-Za-z0-9-]*)=?")re");
  Flags flags;
  for (const std::string& file : ParserSources().at(command)) {
    const std::string source = ReadSource(file);
    for (std::sregex_iterator it(source.begin(), source.end(), kLiteral), end; it != end; ++it) {
      flags.insert((*it)[1]);
    }
  }
  return flags;
}

// The flags a help text names: words starting with '-' in its option lines
// (indented lines of the options headings, before "Examples:").
Flags FlagsInHelp(const std::string& text) {
  static const std::regex kFlag(R"re((?:^|[\s,\[(])(--?[A-Za-z][A-Za-z0-9-]*))re");
  Flags flags;
  std::string before_examples = text.substr(0, text.find("\nExamples:\n"));
  std::istringstream lines(before_examples);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  -", 0) != 0) continue;  // an option line starts "  -"
    std::string tag = line.substr(0, line.find("  ", 2));  // up to its description
    for (std::sregex_iterator it(tag.begin(), tag.end(), kFlag), end; it != end; ++it) {
      flags.insert((*it)[1]);
    }
  }
  return flags;
}

bool Mentions(const std::string& text, const std::string& flag) {
  const std::regex word("(^|[\\s,\\[(`])" + flag + "(?![A-Za-z0-9-])");
  return std::regex_search(text, word);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("help: every command has a text in the expected shape") {
  std::vector<std::string> names;
  for (const CommandHelp& c : HelpCommands()) names.push_back(c.name);
  CHECK(names == std::vector<std::string>{"serve", "replicate", "check-config", "status"});
  for (const CommandHelp& c : HelpCommands()) {
    CAPTURE(c.name);
    auto text = HelpFor(c.name);
    REQUIRE(text.ok());
    CHECK(*text == c.text);
    CHECK(text->rfind("Usage: couchrepd " + c.name + " ", 0) == 0);
    CHECK(text->back() == '\n');
    CHECK_FALSE(c.summary.empty());
    CHECK(Mentions(*text, "--help"));
    CHECK(Mentions(*text, "-h"));
    // Examples come last (--help-all sends them to the man page's EXAMPLES):
    // after the heading only indented command lines.
    size_t examples = text->find("\nExamples:\n");
    REQUIRE(examples != std::string::npos);
    auto after = Lines(text->substr(examples + 11));
    CHECK_FALSE(after.empty());
    for (const std::string& line : after) {
      CAPTURE(line);
      CHECK((line.rfind("  couchrepd ", 0) == 0 || line.rfind("  systemctl ", 0) == 0));
    }
    for (const std::string& line : Lines(*text)) {
      CAPTURE(line);
      CHECK(line.size() <= 80);
    }
  }
  CHECK(HelpFor("serve")->find(kDefaultConfigPath) != std::string::npos);
  CHECK(HelpFor("check-config")->find(kDefaultConfigPath) != std::string::npos);
  CHECK(HelpFor("replicate")->find(ReplicateUsage()) == 0);
}

TEST_CASE("help: each text names every flag its parser accepts, and no other") {
  for (const CommandHelp& c : HelpCommands()) {
    CAPTURE(c.name);
    const Flags in_parser = FlagsInParser(c.name);
    const Flags in_help = FlagsInHelp(c.text);
    for (const std::string& flag : KnownFlags().at(c.name)) {
      CAPTURE(flag);
      CHECK(in_parser.count(flag) == 1);  // the scan still finds the parser's flags
    }
    for (const std::string& flag : in_parser) {
      CAPTURE(flag);
      CHECK(Mentions(c.text, flag));
      CHECK(in_help.count(flag) == 1);  // in an option line, not only in prose
    }
    for (const std::string& flag : in_help) {
      CAPTURE(flag);
      CHECK(in_parser.count(flag) == 1);  // documented flags exist
    }
  }
}

TEST_CASE("help: the replicate parser accepts every flag its help names") {
  for (const std::string& flag : FlagsInHelp(*HelpFor("replicate"))) {
    CAPTURE(flag);
    auto parsed = ParseReplicateArgs({"src", "tgt", flag, "1"});
    // A flag without a value makes "1" a third argument: still not unknown.
    if (!parsed.ok()) CHECK(parsed.error().reason.find("unknown option") == std::string::npos);
  }
  auto bogus = ParseReplicateArgs({"src", "tgt", "--bogus"});
  REQUIRE_FALSE(bogus.ok());
  CHECK(bogus.error().reason.find("unknown option") != std::string::npos);
}

TEST_CASE("help: an unknown command is a usage error naming it") {
  for (const char* name : {"nosuchcmd", "", "Serve", "help", "--help"}) {
    CAPTURE(name);
    auto text = HelpFor(name);
    REQUIRE_FALSE(text.ok());
    CHECK(text.error().error == "usage");
    CHECK(text.error().kind == ErrorKind::kPermanent);
    CHECK(text.error().reason.find("`" + std::string(name) + "`") != std::string::npos);
    CHECK(text.error().reason.find("serve, replicate, check-config, status") != std::string::npos);
  }
  auto long_name = HelpFor(std::string(500, 'x'));
  REQUIRE_FALSE(long_name.ok());
  CHECK(long_name.error().reason.size() < 150);
}

TEST_CASE("help: the overview lists every command with its synopsis and summary") {
  const std::string& overview = OverviewHelp();
  CHECK(overview.rfind("Usage: couchrepd serve ", 0) == 0);
  for (const CommandHelp& c : HelpCommands()) {
    CAPTURE(c.name);
    std::string synopsis = c.text.substr(7, c.text.find('\n') - 7);  // after "Usage: "
    CHECK(overview.find(synopsis + "\n") != std::string::npos);
    CHECK(overview.find("  " + c.name + " ") != std::string::npos);
    CHECK(overview.find(c.summary) != std::string::npos);
  }
  CHECK(overview.find("  or:  couchrepd help [COMMAND]\n") != std::string::npos);
  CHECK(overview.find("  or:  couchrepd --version\n") != std::string::npos);
  CHECK(Mentions(overview, "--help"));
  CHECK(Mentions(overview, "--version"));
  for (const std::string& line : Lines(overview)) {
    CAPTURE(line);
    CHECK(line.size() <= 80);
  }
}

TEST_CASE("help: --help-all is the overview, then every text shaped for help2man") {
  const std::string manual = ManualHelp();
  REQUIRE(manual.rfind(OverviewHelp(), 0) == 0);
  const std::string commands = manual.substr(OverviewHelp().size());
  for (const CommandHelp& c : HelpCommands()) {
    CAPTURE(c.name);
    CHECK(commands.find("\n*couchrepd " + c.name + "*\n") != std::string::npos);
    // Every line of the text is there, options and examples reworded only.
    for (const std::string& line : Lines(c.text)) {
      CAPTURE(line);
      if (line == "Options:") {
        CHECK(commands.find("\nOptions of couchrepd " + c.name + ":\n") != std::string::npos);
      } else if (line.rfind("  couchrepd ", 0) == 0 || line.rfind("  systemctl ", 0) == 0) {
        CHECK(commands.find("\n  $ " + line.substr(2) + "\n") != std::string::npos);
      } else {
        CHECK(commands.find(line) != std::string::npos);
      }
    }
  }
  // Only the global options go to help2man's OPTIONS section.
  for (const std::string& line : Lines(commands)) CHECK(line != "Options:");
}

}  // namespace couchrepd

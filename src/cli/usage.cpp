// `couchrepd COMMAND --help`: prints the command's text from the help table
// (src/cli/help.cpp), the same text as `couchrepd help COMMAND`.
#include <cstdio>

#include "couchrepd/cli.h"
#include "couchrepd/help.h"

namespace couchrepd {

int PrintCommandHelp(std::string_view command) {
  auto text = HelpFor(command);
  if (!text.ok()) {  // a command without help text is a bug in the table
    std::fprintf(stderr, "couchrepd: %s\n", text.error().reason.c_str());
    return kExitFailure;
  }
  std::fputs(text->c_str(), stdout);
  return kExitOk;
}

}  // namespace couchrepd

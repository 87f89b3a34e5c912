// Fuzzes the config loader on YAML text: never crashes, and no secret value reaches an error or the description.
#include <optional>
#include <string>
#include <string_view>

#include "couchrepd/config.h"
#include "fuzz/fuzz_util.h"

namespace couchrepd::fuzz {
namespace {

constexpr std::string_view kPassword = "CfgPwPlanted51";
constexpr std::string_view kHeaderValue = "CfgHdrPlanted52";
constexpr std::string_view kStatusPassword = "CfgStPlanted53";

// Secrets first, then whatever the input adds (more keys, or broken YAML).
std::string PlantedYaml(std::string_view more) {
  return "server:\n  url: http://127.0.0.1:5984\n  username: admin\n  password: " +
         std::string(kPassword) + "\n  headers:\n    X-Api-Key: " + std::string(kHeaderValue) +
         "\nstatus:\n  auth:\n    username: ops\n    password: \"" + std::string(kStatusPassword) +
         "\"\n" + std::string(more);
}

// `added` is the fuzz part of the text: a secret it spells itself is not one
// of the config's.
void CheckNoSecret(std::string_view text, std::string_view added, std::string_view where) {
  for (std::string_view secret : {kPassword, kHeaderValue, kStatusPassword}) {
    if (Contains(added, secret)) continue;
    FUZZ_CHECK(!Contains(text, secret), std::string(where) + " shows a secret: " + std::string(text));
  }
}

}  // namespace
}  // namespace couchrepd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace couchrepd;
  using namespace couchrepd::fuzz;
  Input in(data, size);
  bool planted = in.Byte() & 1;
  std::string_view added = in.Rest();
  std::string yaml = planted ? PlantedYaml(added) : std::string(added);
  EnvLookup no_env = [](const std::string&) { return std::optional<std::string>(); };

  auto config = LoadConfigText(yaml, "fuzz.yaml", no_env);
  if (!config.ok()) {
    FUZZ_CHECK(config.error().error == "bad_config" && !config.error().temporary(),
               "a config error that is not a permanent bad_config: " + config.error().Message());
    FUZZ_CHECK(!config.error().reason.empty(), "a config error without a reason");
    if (planted) CheckNoSecret(config.error().reason, added, "the error");
    return 0;
  }
  std::string described = DescribeConfig(*config);
  if (planted) CheckNoSecret(described, added, "DescribeConfig");
  // Loading is a function of the text.
  auto again = LoadConfigText(yaml, "fuzz.yaml", no_env);
  FUZZ_CHECK(again.ok() && *again == *config, "loading the same text twice differs");
  return 0;
}

// Fuzzes redaction (RedactSecrets, the logger's ScrubSecrets, CapText): a secret planted in any text never comes out.
#include <string>
#include <string_view>

#include "couchrepd/encoding.h"
#include "couchrepd/limits.h"
#include "couchrepd/log.h"
#include "couchrepd/url.h"
#include "fuzz/fuzz_util.h"

namespace couchrepd::fuzz {
namespace {

// Planted secrets: characters that end none of the secret syntaxes (no
// separators, quotes, '@', ':' or '/'), so every form below must be masked.
constexpr std::string_view kPassword = "Pw0rdPlanted7x";
constexpr std::string_view kToken = "T0kenPlanted9q";
constexpr std::string_view kCookie = "C00kiePlanted3z";
// Registered with the logger's secret registry, never written in a pattern.
constexpr std::string_view kRegistered = "Reg1steredSecret5k";
constexpr std::string_view kRegisteredUser = "fuzzuser";

// How the planted secret is written into the text.
std::string Plant(uint8_t form) {
  switch (form % 8) {
    case 0: return "http://bob:" + std::string(kPassword) + "@db.example:5984/x";
    case 1: return "https://" + std::string("al%40ice:") + std::string(kPassword) + "@h/";
    case 2: return "Authorization: Basic " + std::string(kToken);
    case 3: return "\"authorization\":\"Bearer " + std::string(kToken) + "\"";
    case 4: return "X-Auth-CouchDB-Token: " + std::string(kToken);
    case 5: return "Cookie: AuthSession=" + std::string(kCookie);
    case 6: return "set-cookie=AuthSession=" + std::string(kCookie) + "; Path=/";
    default: return "http://u:" + std::string(kPassword) + "@[::1]:5984/db";
  }
}

}  // namespace
}  // namespace couchrepd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace couchrepd;
  using namespace couchrepd::fuzz;
  static const bool registered = [] {
    RegisterBasicCredentials(kRegisteredUser, kRegistered);
    return true;
  }();
  (void)registered;

  Input in(data, size);
  uint8_t form = in.Byte();
  uint8_t cut = in.Byte();
  std::string_view rest = in.Rest();
  // The text around the secret comes from the input: prefix | secret | suffix.
  size_t split = rest.empty() ? 0 : cut % (rest.size() + 1);
  std::string_view prefix = rest.substr(0, split);
  std::string_view suffix = rest.substr(split);

  // Any text: redaction is total and idempotent on its own output.
  std::string once = RedactSecrets(rest);
  FUZZ_CHECK(RedactSecrets(once) == once, "RedactSecrets is not idempotent");

  // A planted secret never survives, whatever surrounds it (unless the input
  // itself spells the secret outside the secret's syntax).
  std::string secret_form = Plant(form);
  std::string text = std::string(prefix) + secret_form + std::string(suffix);
  for (std::string_view secret : {kPassword, kToken, kCookie}) {
    if (!Contains(secret_form, secret) || Contains(prefix, secret) || Contains(suffix, secret)) {
      continue;
    }
    std::string out = RedactSecrets(text);
    FUZZ_CHECK(!Contains(out, secret), "RedactSecrets let the planted secret through: " + out);
    std::string scrubbed = ScrubSecrets(text);
    FUZZ_CHECK(!Contains(scrubbed, secret), "ScrubSecrets let the planted secret through: " + scrubbed);
  }

  // A registered secret (and its Basic form) is masked anywhere.
  std::string basic = Base64Encode(std::string(kRegisteredUser) + ":" + std::string(kRegistered));
  for (const std::string& secret : {std::string(kRegistered), basic}) {
    if (Contains(rest, secret)) continue;
    std::string anywhere = std::string(prefix) + secret + std::string(suffix);
    std::string scrubbed = ScrubSecrets(anywhere);
    FUZZ_CHECK(!Contains(scrubbed, secret), "ScrubSecrets kept a registered secret: " + scrubbed);
  }

  // CapText: unchanged when short; else a prefix of at most the cap, cut
  // only at a UTF-8 sequence start, then the marker.
  size_t max = 1 + cut;
  std::string capped = CapText(rest, max);
  if (rest.size() <= max) {
    FUZZ_CHECK(capped == rest, "CapText changed a short text");
  } else {
    std::string marker = "\xE2\x80\xA6 (cut, " + std::to_string(rest.size()) + " bytes)";
    FUZZ_CHECK(capped.size() >= marker.size() &&
                   capped.compare(capped.size() - marker.size(), marker.size(), marker) == 0,
               "CapText did not mark the cut");
    size_t kept = capped.size() - marker.size();
    FUZZ_CHECK(kept <= max, "CapText kept more than the cap");
    FUZZ_CHECK(rest.substr(0, kept) == std::string_view(capped).substr(0, kept),
               "CapText's kept text is not a prefix");
    auto continuation = [&](size_t i) { return (static_cast<unsigned char>(rest[i]) & 0xC0) == 0x80; };
    FUZZ_CHECK(kept == 0 || !continuation(kept), "CapText cut inside a UTF-8 sequence");
    for (size_t i = kept + 1; i <= max; ++i) {
      FUZZ_CHECK(continuation(i), "CapText cut earlier than needed");
    }
  }
  return 0;
}

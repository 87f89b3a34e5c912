// CapText: bounded server text (SPEC §10).
#include "couchrepd/limits.h"

namespace couchrepd {

std::string CapText(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  size_t cut = max;
  // Back up to the start of a UTF-8 sequence (continuation bytes are 10xxxxxx).
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  std::string out(text.substr(0, cut));
  out += "\xE2\x80\xA6 (cut, " + std::to_string(text.size()) + " bytes)";
  return out;
}

}  // namespace couchrepd

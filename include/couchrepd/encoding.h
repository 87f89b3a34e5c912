// Byte encodings and digests used by the protocol (OpenSSL underneath).
//
// Base64 for Basic auth and inline attachment data, hex, MD5 (attachment
// digests, replication ids) and HMAC-SHA256 (CouchDB proxy authentication
// tokens). Pure functions, thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace couchrepd {

std::string Base64Encode(std::string_view bytes);
// Accepts standard base64 with or without padding and ignores whitespace;
// nullopt when the text is not base64.
std::optional<std::string> Base64Decode(std::string_view text);
std::string HexEncode(std::string_view bytes);
// ASCII letters to lower case, every other byte as it is (no locale).
std::string AsciiLower(std::string_view text);
std::string Md5(std::string_view bytes);  // 16 raw bytes
std::string HmacSha256Hex(std::string_view key, std::string_view message);
// 32 random lowercase hex characters (session ids, boundaries).
std::string RandomHex32();
// `text` without leading and trailing ASCII whitespace (space, \t \n \v \f \r).
std::string_view TrimAsciiSpace(std::string_view text);
// `name` between backticks, as messages name a field or a flag.
std::string Backticked(std::string_view name);

}  // namespace couchrepd

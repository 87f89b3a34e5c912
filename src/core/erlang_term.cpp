#include "couchrepd/erlang_term.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace couchrepd {

namespace {

// External term format tags (erts/emulator/beam/external.h).
constexpr uint8_t kVersionMagic = 131;
constexpr uint8_t kNewFloatExt = 70;
constexpr uint8_t kSmallIntegerExt = 97;
constexpr uint8_t kIntegerExt = 98;
constexpr uint8_t kAtomExt = 100;
constexpr uint8_t kSmallTupleExt = 104;
constexpr uint8_t kLargeTupleExt = 105;
constexpr uint8_t kNilExt = 106;
constexpr uint8_t kStringExt = 107;
constexpr uint8_t kListExt = 108;
constexpr uint8_t kBinaryExt = 109;
constexpr uint8_t kSmallBigExt = 110;
constexpr uint8_t kLargeBigExt = 111;
constexpr size_t kMaxStringExtLength = 65535;

// ---- integer magnitudes: little-endian base 256, no trailing zero bytes ----

std::vector<uint8_t> MagnitudeOf(uint64_t v) {
  std::vector<uint8_t> m;
  while (v != 0) {
    m.push_back(static_cast<uint8_t>(v & 0xFF));
    v >>= 8;
  }
  return m;
}

// Fits int64_t: |v| <= 2^63 - 1, or 2^63 when negative.
bool MagnitudeFitsInt64(const std::vector<uint8_t>& m, bool negative, int64_t* out) {
  if (m.size() > 8) return false;
  uint64_t u = 0;
  for (size_t i = m.size(); i-- > 0;) u = (u << 8) | m[i];
  constexpr uint64_t kMaxPositive = static_cast<uint64_t>(INT64_MAX);
  if (!negative) {
    if (u > kMaxPositive) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (u > kMaxPositive + 1) return false;
  *out = u == kMaxPositive + 1 ? INT64_MIN : -static_cast<int64_t>(u);
  return true;
}

void PutU16(std::string& out, size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
  out.push_back(static_cast<char>(v & 0xFF));
}

void PutU32(std::string& out, uint64_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void PutByte(std::string& out, uint8_t b) { out.push_back(static_cast<char>(b)); }

void EncodeBig(std::string& out, bool negative, const std::vector<uint8_t>& magnitude) {
  if (magnitude.size() <= 255) {
    PutByte(out, kSmallBigExt);
    PutByte(out, static_cast<uint8_t>(magnitude.size()));
  } else {
    PutByte(out, kLargeBigExt);
    PutU32(out, magnitude.size());
  }
  PutByte(out, negative ? 1 : 0);
  out.append(reinterpret_cast<const char*>(magnitude.data()), magnitude.size());
}

void EncodeInteger(std::string& out, const Term& t) {
  if (t.fits_int64()) {
    int64_t v = t.small_value();
    if (v >= 0 && v <= 255) {
      PutByte(out, kSmallIntegerExt);
      PutByte(out, static_cast<uint8_t>(v));
      return;
    }
    if (v >= INT32_MIN && v <= INT32_MAX) {
      PutByte(out, kIntegerExt);
      PutU32(out, static_cast<uint32_t>(static_cast<int32_t>(v)));
      return;
    }
  }
  EncodeBig(out, t.negative(), t.Magnitude());
}

// Erlang writes a list as STRING_EXT when it is non-empty, at most 65535
// long and every element is an integer 0..255 (external.c, is_external_string).
bool IsByteList(const std::vector<Term>& elements) {
  if (elements.empty() || elements.size() > kMaxStringExtLength) return false;
  return std::all_of(elements.begin(), elements.end(), [](const Term& e) {
    return e.kind() == Term::Kind::kInteger && e.fits_int64() && e.small_value() >= 0 &&
           e.small_value() <= 255;
  });
}

void EncodeCharBytes(std::string& out, std::string_view bytes) {
  if (bytes.empty()) {
    PutByte(out, kNilExt);
  } else if (bytes.size() <= kMaxStringExtLength) {
    PutByte(out, kStringExt);
    PutU16(out, bytes.size());
    out.append(bytes);
  } else {  // too long for STRING_EXT: a proper list of small integers
    PutByte(out, kListExt);
    PutU32(out, bytes.size());
    for (char c : bytes) {
      PutByte(out, kSmallIntegerExt);
      PutByte(out, static_cast<uint8_t>(c));
    }
    PutByte(out, kNilExt);
  }
}

void Encode(std::string& out, const Term& t) {
  switch (t.kind()) {
    case Term::Kind::kAtom:
      // minor_version 1 keeps ATOM_EXT (Latin-1, 2-byte length); version 2,
      // the default since OTP 26, would write UTF-8 atom tags instead.
      PutByte(out, kAtomExt);
      PutU16(out, t.name().size());
      out.append(t.name());
      return;
    case Term::Kind::kInteger:
      EncodeInteger(out, t);
      return;
    case Term::Kind::kFloat: {
      // minor_version >= 1: NEW_FLOAT_EXT, IEEE 754 double big-endian.
      uint64_t bits;
      double d = t.float_value();
      std::memcpy(&bits, &d, sizeof bits);
      PutByte(out, kNewFloatExt);
      for (int shift = 56; shift >= 0; shift -= 8) {
        out.push_back(static_cast<char>((bits >> shift) & 0xFF));
      }
      return;
    }
    case Term::Kind::kBinary:
      PutByte(out, kBinaryExt);
      PutU32(out, t.bytes().size());
      out.append(t.bytes());
      return;
    case Term::Kind::kCharList:
      EncodeCharBytes(out, t.bytes());
      return;
    case Term::Kind::kList: {
      const auto& el = t.elements();
      if (el.empty()) {
        PutByte(out, kNilExt);
      } else if (IsByteList(el)) {
        PutByte(out, kStringExt);
        PutU16(out, el.size());
        for (const Term& e : el) PutByte(out, static_cast<uint8_t>(e.small_value()));
      } else {
        PutByte(out, kListExt);
        PutU32(out, el.size());
        for (const Term& e : el) Encode(out, e);
        PutByte(out, kNilExt);  // proper list tail
      }
      return;
    }
    case Term::Kind::kTuple: {
      const auto& el = t.elements();
      if (el.size() <= 255) {
        PutByte(out, kSmallTupleExt);
        PutByte(out, static_cast<uint8_t>(el.size()));
      } else {
        PutByte(out, kLargeTupleExt);
        PutU32(out, el.size());
      }
      for (const Term& e : el) Encode(out, e);
      return;
    }
  }
}

// ---- JSON text output ----

void AppendQuoted(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out.push_back(kHex[u >> 4]);
          out.push_back(kHex[u & 0xF]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

void AppendDouble(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d);
  std::string_view text(buf, static_cast<size_t>(res.ptr - buf));
  out += text;
  // Keep it a float when read back (jiffy reads "1" as an integer).
  if (text.find_first_of(".eE") == std::string_view::npos) out += ".0";
}

void WriteJson(std::string& out, const Term& t) {
  switch (t.kind()) {
    case Term::Kind::kAtom:
      if (t.IsAtom("true") || t.IsAtom("false") || t.IsAtom("null")) {
        out += t.name();
      } else {
        AppendQuoted(out, t.name());
      }
      return;
    case Term::Kind::kInteger:
      out += t.DecimalString();
      return;
    case Term::Kind::kFloat:
      AppendDouble(out, t.float_value());
      return;
    case Term::Kind::kBinary:
    case Term::Kind::kCharList:
      AppendQuoted(out, t.bytes());
      return;
    case Term::Kind::kList:
      out.push_back('[');
      for (size_t i = 0; i < t.elements().size(); ++i) {
        if (i) out.push_back(',');
        WriteJson(out, t.elements()[i]);
      }
      out.push_back(']');
      return;
    case Term::Kind::kTuple:
      if (t.IsObject()) {
        out.push_back('{');
        const auto& pairs = t.ObjectPairs();
        for (size_t i = 0; i < pairs.size(); ++i) {
          if (i) out.push_back(',');
          AppendQuoted(out, pairs[i].elements()[0].bytes());
          out.push_back(':');
          WriteJson(out, pairs[i].elements()[1]);
        }
        out.push_back('}');
      } else {  // not EJSON; written as an array so the output stays JSON
        out.push_back('[');
        for (size_t i = 0; i < t.elements().size(); ++i) {
          if (i) out.push_back(',');
          WriteJson(out, t.elements()[i]);
        }
        out.push_back(']');
      }
      return;
  }
}

// ---- JSON text input ----

Error BadJson(std::string_view what) { return Error::Permanent("bad_request", std::string(what)); }

// JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool IsJsonNumber(std::string_view s, bool* is_integer) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (i < s.size() && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  *is_integer = true;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return false;
    *is_integer = false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
    *is_integer = false;
  }
  return i == s.size();
}

Result<Term> NumberTerm(std::string_view raw) {
  while (!raw.empty() &&
         (raw.back() == ' ' || raw.back() == '\t' || raw.back() == '\n' || raw.back() == '\r')) {
    raw.remove_suffix(1);
  }
  bool is_integer = false;
  if (!IsJsonNumber(raw, &is_integer)) return BadJson("invalid number in JSON");
  if (is_integer) {
    // jiffy: no fraction and no exponent means an integer of any size.
    size_t digits = raw.size() - (raw[0] == '-' ? 1 : 0);
    if (digits > kMaxEjsonIntegerDigits) return BadJson("integer too long in JSON");
    return Term::IntegerFromDecimal(raw);
  }
  double d = 0;
  auto res = std::from_chars(raw.data(), raw.data() + raw.size(), d);
  if (res.ec != std::errc() || res.ptr != raw.data() + raw.size() || !std::isfinite(d)) {
    return BadJson("number out of range in JSON");
  }
  return Term::Float(d);
}

Result<Term> ConvertValue(simdjson::ondemand::value v, size_t depth) {
  using simdjson::ondemand::json_type;
  if (depth > kMaxEjsonDepth) return BadJson("JSON nested too deeply");
  json_type type;
  if (v.type().get(type)) return BadJson("invalid JSON");
  switch (type) {
    case json_type::object: {
      simdjson::ondemand::object obj;
      if (v.get_object().get(obj)) return BadJson("invalid JSON object");
      std::vector<std::pair<std::string, Term>> members;
      for (auto field_result : obj) {
        simdjson::ondemand::field field;
        if (std::move(field_result).get(field)) return BadJson("invalid JSON object");
        std::string_view key;
        if (field.unescaped_key().get(key)) return BadJson("invalid JSON object key");
        std::string key_copy(key);
        auto value = ConvertValue(field.value(), depth + 1);
        if (!value.ok()) return value.error();
        members.emplace_back(std::move(key_copy), std::move(value).value());
      }
      return Term::Object(std::move(members));
    }
    case json_type::array: {
      simdjson::ondemand::array arr;
      if (v.get_array().get(arr)) return BadJson("invalid JSON array");
      std::vector<Term> elements;
      for (auto element_result : arr) {
        simdjson::ondemand::value element;
        if (std::move(element_result).get(element)) return BadJson("invalid JSON array");
        auto value = ConvertValue(element, depth + 1);
        if (!value.ok()) return value.error();
        elements.push_back(std::move(value).value());
      }
      return Term::List(std::move(elements));
    }
    case json_type::number:
      return NumberTerm(v.raw_json_token());
    case json_type::string: {
      std::string_view s;
      if (v.get_string().get(s)) return BadJson("invalid JSON string");
      return Term::Binary(s);
    }
    case json_type::boolean: {
      bool b = false;
      if (v.get_bool().get(b)) return BadJson("invalid JSON literal");
      return Term::Atom(b ? "true" : "false");
    }
    case json_type::null: {
      bool is_null = false;
      if (v.is_null().get(is_null) || !is_null) return BadJson("invalid JSON literal");
      return Term::Atom("null");
    }
  }
  return BadJson("invalid JSON");
}

}  // namespace

// ---- Term ----

Term Term::Atom(std::string_view name) {
  Term t;
  t.kind_ = Kind::kAtom;
  t.bytes_ = std::string(name);
  return t;
}

Term Term::Integer(int64_t value) {
  Term t;
  t.kind_ = Kind::kInteger;
  t.int_ = value;
  return t;
}

Result<Term> Term::IntegerFromDecimal(std::string_view text) {
  bool negative = !text.empty() && text[0] == '-';
  std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty() ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return Error::Permanent("bad_request", "invalid integer");
  }
  // Base 2^32 limbs, little-endian; fed 9 decimal digits at a time.
  std::vector<uint32_t> limbs;
  size_t pos = 0;
  while (pos < digits.size()) {
    size_t n = std::min<size_t>(9, digits.size() - pos);
    uint64_t chunk = 0, scale = 1;
    for (size_t i = 0; i < n; ++i) {
      chunk = chunk * 10 + static_cast<uint64_t>(digits[pos + i] - '0');
      scale *= 10;
    }
    pos += n;
    uint64_t carry = chunk;
    for (uint32_t& limb : limbs) {
      uint64_t x = static_cast<uint64_t>(limb) * scale + carry;
      limb = static_cast<uint32_t>(x);
      carry = x >> 32;
    }
    if (carry) limbs.push_back(static_cast<uint32_t>(carry));
  }
  std::vector<uint8_t> magnitude;
  for (uint32_t limb : limbs) {
    for (int b = 0; b < 4; ++b) magnitude.push_back(static_cast<uint8_t>(limb >> (8 * b)));
  }
  while (!magnitude.empty() && magnitude.back() == 0) magnitude.pop_back();
  int64_t small = 0;
  if (MagnitudeFitsInt64(magnitude, negative, &small)) return Integer(small);
  Term t;
  t.kind_ = Kind::kInteger;
  t.negative_ = negative;
  t.magnitude_ = std::move(magnitude);
  return t;
}

Term Term::Float(double value) {
  Term t;
  t.kind_ = Kind::kFloat;
  t.float_ = value;
  return t;
}

Term Term::Binary(std::string_view bytes) {
  Term t;
  t.kind_ = Kind::kBinary;
  t.bytes_ = std::string(bytes);
  return t;
}

Term Term::CharList(std::string_view chars) {
  Term t;
  t.kind_ = Kind::kCharList;
  t.bytes_ = std::string(chars);
  return t;
}

Term Term::List(std::vector<Term> elements) {
  Term t;
  t.kind_ = Kind::kList;
  t.elements_ = std::move(elements);
  return t;
}

Term Term::Tuple(std::vector<Term> elements) {
  Term t;
  t.kind_ = Kind::kTuple;
  t.elements_ = std::move(elements);
  return t;
}

Term Term::Object(std::vector<std::pair<std::string, Term>> members) {
  std::vector<Term> pairs;
  pairs.reserve(members.size());
  for (auto& [key, value] : members) pairs.push_back(Tuple({Binary(key), std::move(value)}));
  return Tuple({List(std::move(pairs))});
}

bool Term::negative() const { return fits_int64() ? int_ < 0 : negative_; }

std::vector<uint8_t> Term::Magnitude() const {
  if (!fits_int64()) return magnitude_;
  uint64_t u = int_ < 0 ? static_cast<uint64_t>(0) - static_cast<uint64_t>(int_)
                        : static_cast<uint64_t>(int_);
  return MagnitudeOf(u);
}

std::string Term::DecimalString() const {
  if (fits_int64()) return std::to_string(int_);
  // Repeated division of the base-2^32 value by 10^9.
  std::vector<uint32_t> limbs((magnitude_.size() + 3) / 4, 0);
  for (size_t i = 0; i < magnitude_.size(); ++i) {
    limbs[i / 4] |= static_cast<uint32_t>(magnitude_[i]) << (8 * (i % 4));
  }
  std::vector<uint32_t> chunks;  // base 10^9, little-endian
  while (!limbs.empty()) {
    uint64_t rem = 0;
    for (size_t i = limbs.size(); i-- > 0;) {
      uint64_t cur = (rem << 32) | limbs[i];
      limbs[i] = static_cast<uint32_t>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    chunks.push_back(static_cast<uint32_t>(rem));
    while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
  }
  std::string out = negative_ ? "-" : "";
  out += std::to_string(chunks.back());
  for (size_t i = chunks.size() - 1; i-- > 0;) {
    std::string part = std::to_string(chunks[i]);
    out.append(9 - part.size(), '0');
    out += part;
  }
  return out;
}

bool Term::IsEmptyList() const {
  return (kind_ == Kind::kList && elements_.empty()) ||
         (kind_ == Kind::kCharList && bytes_.empty());
}

bool Term::IsObject() const {
  if (kind_ != Kind::kTuple || elements_.size() != 1) return false;
  const Term& list = elements_[0];
  if (list.IsEmptyList()) return true;
  if (list.kind_ != Kind::kList) return false;
  return std::all_of(list.elements_.begin(), list.elements_.end(), [](const Term& p) {
    return p.kind_ == Kind::kTuple && p.elements_.size() == 2 &&
           p.elements_[0].kind_ == Kind::kBinary;
  });
}

bool operator==(const Term& a, const Term& b) {
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case Term::Kind::kAtom:
    case Term::Kind::kBinary:
    case Term::Kind::kCharList:
      return a.bytes_ == b.bytes_;
    case Term::Kind::kInteger:
      return a.fits_int64() == b.fits_int64() && a.int_ == b.int_ && a.negative_ == b.negative_ &&
             a.magnitude_ == b.magnitude_;
    case Term::Kind::kFloat:
      return a.float_ == b.float_;
    case Term::Kind::kList:
    case Term::Kind::kTuple:
      return a.elements_ == b.elements_;
  }
  return false;
}

// ---- free functions ----

std::string TermToBinary(const Term& term) {
  std::string out;
  PutByte(out, kVersionMagic);
  Encode(out, term);
  return out;
}

Result<Term> EjsonFromJson(std::string_view json) {
  // Wrapping the text in an array lets scalars at the root go through the same
  // path as nested values; exactly one element must come out of it.
  std::string wrapped;
  wrapped.reserve(json.size() + 2);
  wrapped += '[';
  wrapped += json;
  wrapped += ']';
  simdjson::padded_string padded(wrapped);
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  if (parser.iterate(padded).get(doc)) return BadJson("invalid JSON");
  simdjson::ondemand::array arr;
  if (doc.get_array().get(arr)) return BadJson("invalid JSON");
  std::vector<Term> values;
  for (auto element_result : arr) {
    simdjson::ondemand::value element;
    if (std::move(element_result).get(element)) return BadJson("invalid JSON");
    if (!values.empty()) return BadJson("invalid JSON: more than one value");
    auto value = ConvertValue(element, 1);
    if (!value.ok()) return value.error();
    values.push_back(std::move(value).value());
  }
  // Anything after the closing bracket (e.g. from `1],[2`) is an error;
  // current_location() reports OUT_OF_BOUNDS once the whole input is used.
  const char* rest = nullptr;
  if (values.size() != 1 || doc.current_location().get(rest) != simdjson::OUT_OF_BOUNDS) {
    return BadJson("invalid JSON");
  }
  return std::move(values[0]);
}

std::string EjsonToJson(const Term& term) {
  std::string out;
  WriteJson(out, term);
  return out;
}

}  // namespace couchrepd

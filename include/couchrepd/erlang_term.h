// Erlang terms and their external term format, just enough for CouchDB ids.
//
// CouchDB computes replication ids as the MD5 of `term_to_binary(Term,
// [{minor_version, 1}])`, so reproducing its ids means reproducing Erlang's
// serialisation byte for byte. A Term is an immutable value of one of the
// shapes that appear in those ids: atoms, integers of any size, floats,
// binaries, lists (including char lists, Erlang's strings) and tuples.
//
// JSON reaches Erlang as "EJSON" (the jiffy decoding CouchDB uses): an object
// is a 1-tuple holding a list of {KeyBinary, Value} 2-tuples in document order
// (duplicates kept), a string is a UTF-8 binary, an integer is an integer of
// any size, a number with a fraction or exponent is a float, true/false/null
// are atoms and an array is a list. EjsonFromJson and EjsonToJson convert
// between JSON text and that shape.
//
// Everything here is pure and thread-compatible; Terms are plain values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "couchrepd/result.h"

namespace couchrepd {

class Term {
 public:
  enum class Kind {
    kAtom,      // name(): Latin-1 bytes
    kInteger,   // any size; small_value() when fits_int64()
    kFloat,     // float_value()
    kBinary,    // bytes(): <<...>>
    kCharList,  // bytes(): an Erlang string, i.e. the list of those byte values
    kList,      // elements(): a proper list
    kTuple,     // elements()
  };

  // The empty list [] (NIL).
  Term() : kind_(Kind::kList) {}

  static Term Atom(std::string_view name);
  static Term Integer(int64_t value);
  // An integer of any size from its decimal text: an optional '-' then at
  // least one digit. Returns an error for anything else.
  static Result<Term> IntegerFromDecimal(std::string_view text);
  static Term Float(double value);
  static Term Binary(std::string_view bytes);
  // The Erlang string "abc", which is the list [97, 98, 99].
  static Term CharList(std::string_view chars);
  static Term List(std::vector<Term> elements);
  static Term Tuple(std::vector<Term> elements);
  // EJSON object {[{<<"k">>, V}, ...]} with the pairs in the given order.
  static Term Object(std::vector<std::pair<std::string, Term>> members);

  Kind kind() const { return kind_; }
  const std::string& name() const { return bytes_; }               // kAtom
  const std::string& bytes() const { return bytes_; }              // kBinary, kCharList
  const std::vector<Term>& elements() const { return elements_; }  // kList, kTuple
  double float_value() const { return float_; }
  // kInteger: whether the value fits in int64_t, and that value.
  bool fits_int64() const { return magnitude_.empty(); }
  int64_t small_value() const { return int_; }
  // kInteger: sign and magnitude (little-endian base 256, no leading zero
  // bytes). Valid for every integer, small or not.
  bool negative() const;
  std::vector<uint8_t> Magnitude() const;
  // kInteger: the value in decimal.
  std::string DecimalString() const;

  bool IsAtom(std::string_view name) const { return kind_ == Kind::kAtom && bytes_ == name; }
  bool IsBoolean() const { return IsAtom("true") || IsAtom("false"); }
  bool IsNumber() const { return kind_ == Kind::kInteger || kind_ == Kind::kFloat; }
  // True for [] and "" (both are the empty list).
  bool IsEmptyList() const;
  bool IsListLike() const { return kind_ == Kind::kList || kind_ == Kind::kCharList; }
  // An EJSON object: a 1-tuple whose element is a list of {Binary, Term}.
  bool IsObject() const;
  // kTuple of size 1 produced by Object(): its {Key, Value} 2-tuples.
  const std::vector<Term>& ObjectPairs() const { return elements_[0].elements_; }

  friend bool operator==(const Term& a, const Term& b);

 private:
  Kind kind_;
  int64_t int_ = 0;
  double float_ = 0.0;
  bool negative_ = false;           // big integers only
  std::vector<uint8_t> magnitude_;  // big integers only (outside int64_t)
  std::string bytes_;
  std::vector<Term> elements_;
};

// term_to_binary(Term, [{minor_version, 1}]): version byte 131 then the
// term. Tags used: SMALL_INTEGER 97, INTEGER 98, NEW_FLOAT 70, ATOM 100,
// SMALL_TUPLE 104 / LARGE_TUPLE 105, NIL 106, STRING 107 (a non-empty list of
// at most 65535 integers 0..255, whether built as a char list or as a list of
// integers), LIST 108, BINARY 109, SMALL_BIG 110 / LARGE_BIG 111.
std::string TermToBinary(const Term& term);

// Parses JSON text into EJSON (see above). Errors (kPermanent) on invalid
// JSON, on a number that does not fit a double, on integers longer than
// kMaxEjsonIntegerDigits digits and on arrays/objects nested deeper than
// kMaxEjsonDepth. jiffy has neither limit; ours keep absurd input from costing
// quadratic time or the stack (every Term function recurses per level).
inline constexpr size_t kMaxEjsonIntegerDigits = 10000;
inline constexpr size_t kMaxEjsonDepth = 512;
Result<Term> EjsonFromJson(std::string_view json);

// Writes an EJSON term as compact JSON. Binaries are written as strings
// (bytes as they are, with JSON escaping), char lists as strings too, atoms
// true/false/null as literals and other atoms as strings.
std::string EjsonToJson(const Term& term);

}  // namespace couchrepd

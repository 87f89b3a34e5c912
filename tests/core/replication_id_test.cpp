// Tests for the Erlang term encoder, EJSON conversion, Mango selector
// normalisation and the CouchDB v4 replication id (SPEC §3).
#include "couchrepd/replication_id.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "couchrepd/erlang_term.h"

namespace couchrepd {
namespace {

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

Term Json(std::string_view json) {
  auto t = EjsonFromJson(json);
  REQUIRE_MESSAGE(t.ok(), json);
  return t.value();
}

std::string Normalised(std::string_view selector) {
  auto r = NormaliseSelector(selector);
  REQUIRE_MESSAGE(r.ok(), selector);
  return r.value();
}

IdEndpoint Endpoint(std::optional<std::string> user, std::string scheme, std::string host, int port,
                    std::string path,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
  IdEndpoint e;
  e.user = std::move(user);
  e.scheme = std::move(scheme);
  e.host = std::move(host);
  e.port = port;
  e.path = std::move(path);
  e.headers = std::move(headers);
  return e;
}

std::string Base(const IdInputs& in) {
  auto r = ComputeReplicationId(in);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().Message()));
  return r->base;
}

// SPEC §3 vectors, first set: uuid 5a8d..., source
// http://user:pass@localhost:5984/src, target https://example.com/tgt.
IdInputs SpecInputs() {
  IdInputs in;
  in.server_uuid = "5a8d3b8e4b3f4b1c9d2e7f6a1b2c3d4e";
  in.source = Endpoint("user", "http", "localhost", 5984, "/src/");
  in.target = Endpoint(std::nullopt, "https", "example.com", 443, "/tgt/");
  return in;
}

// Produced by a real CouchDB 3.4.3: source
// http://admin:secret@127.0.0.1:5984/fx_src, target .../fx_tgt.
IdInputs CouchDbInputs() {
  IdInputs in;
  in.server_uuid = "c4e176401624544cdc0da1f84bb3bb9d";
  in.source = Endpoint("admin", "http", "127.0.0.1", 5984, "/fx_src/");
  in.target = Endpoint("admin", "http", "127.0.0.1", 5984, "/fx_tgt/");
  return in;
}

IdInputs CouchDbT2Inputs() {
  IdInputs in = CouchDbInputs();
  in.target.path = "/fx_t2/";
  return in;
}

// The endpoint tuple written out by hand, to check structure independently.
Term RemoteTerm(std::optional<std::string> user, std::string host, Term port, std::string path,
                std::vector<std::pair<std::string, std::string>> headers = {}) {
  std::vector<Term> hs;
  for (auto& [k, v] : headers) hs.push_back(Term::Tuple({Term::CharList(k), Term::CharList(v)}));
  return Term::Tuple({Term::Atom("remote"), user ? Term::CharList(*user) : Term::Atom("undefined"),
                      Term::CharList(host), std::move(port), Term::CharList(path),
                      Term::List(std::move(hs)), Term::Atom("undefined")});
}

std::string HashOf(std::vector<Term> list) {
  return Md5Hex(TermToBinary(Term::List(std::move(list))));
}

Term SpecSourceTerm() { return RemoteTerm("user", "localhost", Term::Atom("default"), "/src/"); }
Term SpecTargetTerm() {
  return RemoteTerm(std::nullopt, "example.com", Term::Atom("default"), "/tgt/");
}

// ---------------------------------------------------------------------------
// term_to_binary(Term, [{minor_version, 1}])
// ---------------------------------------------------------------------------

TEST_CASE("term_to_binary: binaries, atoms, tuples") {
  CHECK(TermToBinary(Term::Binary("a")) == Bytes({131, 109, 0, 0, 0, 1, 97}));
  CHECK(TermToBinary(Term::Binary("")) == Bytes({131, 109, 0, 0, 0, 0}));
  CHECK(TermToBinary(Term::Atom("foo")) == Bytes({131, 100, 0, 3, 'f', 'o', 'o'}));
  CHECK(TermToBinary(Term::Tuple({Term::Atom("a")})) == Bytes({131, 104, 1, 100, 0, 1, 97}));
  CHECK(TermToBinary(Term::Tuple({})) == Bytes({131, 104, 0}));
  std::vector<Term> many(256, Term::Integer(1));
  std::string large = TermToBinary(Term::Tuple(many));
  CHECK(large.substr(0, 6) == Bytes({131, 105, 0, 0, 1, 0}));
  CHECK(large.size() == 6 + 256 * 2);
}

TEST_CASE("term_to_binary: lists, strings and NIL") {
  CHECK(TermToBinary(Term()) == Bytes({131, 106}));
  CHECK(TermToBinary(Term::List({})) == Bytes({131, 106}));
  CHECK(TermToBinary(Term::CharList("")) == Bytes({131, 106}));
  CHECK(TermToBinary(Term::CharList("ab")) == Bytes({131, 107, 0, 2, 97, 98}));
  // A list of small integers is a string to Erlang, however it was built.
  CHECK(TermToBinary(Term::List({Term::Integer(97), Term::Integer(98)})) ==
        Bytes({131, 107, 0, 2, 97, 98}));
  CHECK(TermToBinary(Term::List({Term::Integer(0), Term::Integer(255)})) ==
        Bytes({131, 107, 0, 2, 0, 255}));
  // ...but not when one element is outside 0..255 or not an integer.
  CHECK(TermToBinary(Term::List({Term::Integer(300)})) ==
        Bytes({131, 108, 0, 0, 0, 1, 98, 0, 0, 1, 44, 106}));
  CHECK(TermToBinary(Term::List({Term::Integer(-1)})) ==
        Bytes({131, 108, 0, 0, 0, 1, 98, 255, 255, 255, 255, 106}));
  CHECK(TermToBinary(Term::List({Term::Binary("a"), Term::Integer(1)})) ==
        Bytes({131, 108, 0, 0, 0, 2, 109, 0, 0, 0, 1, 97, 97, 1, 106}));
  CHECK(TermToBinary(Term::List({Term::List({})})) == Bytes({131, 108, 0, 0, 0, 1, 106, 106}));
  // Longer than STRING_EXT allows: a proper list of SMALL_INTEGER_EXT.
  std::string long_chars(65536, 'x');
  std::string encoded = TermToBinary(Term::CharList(long_chars));
  CHECK(encoded.substr(0, 6) == Bytes({131, 108, 0, 1, 0, 0}));
  CHECK(encoded.substr(6, 2) == Bytes({97, 'x'}));
  CHECK(encoded.size() == 6 + 65536 * 2 + 1);
  CHECK(encoded.back() == 106);
  std::string max_chars(65535, 'y');
  CHECK(TermToBinary(Term::CharList(max_chars)).substr(0, 4) == Bytes({131, 107, 255, 255}));
}

TEST_CASE("term_to_binary: integers") {
  CHECK(TermToBinary(Term::Integer(0)) == Bytes({131, 97, 0}));
  CHECK(TermToBinary(Term::Integer(255)) == Bytes({131, 97, 255}));
  CHECK(TermToBinary(Term::Integer(256)) == Bytes({131, 98, 0, 0, 1, 0}));
  CHECK(TermToBinary(Term::Integer(300)) == Bytes({131, 98, 0, 0, 1, 44}));
  CHECK(TermToBinary(Term::Integer(-1)) == Bytes({131, 98, 255, 255, 255, 255}));
  CHECK(TermToBinary(Term::Integer(INT32_MAX)) == Bytes({131, 98, 127, 255, 255, 255}));
  CHECK(TermToBinary(Term::Integer(INT32_MIN)) == Bytes({131, 98, 128, 0, 0, 0}));
  // Outside int32: SMALL_BIG_EXT, n, sign, little-endian magnitude.
  CHECK(TermToBinary(Term::Integer(int64_t{1} << 31)) == Bytes({131, 110, 4, 0, 0, 0, 0, 128}));
  CHECK(TermToBinary(Term::Integer(-(int64_t{1} << 31) - 1)) ==
        Bytes({131, 110, 4, 1, 1, 0, 0, 128}));
  CHECK(TermToBinary(Term::Integer(int64_t{1} << 40)) == Bytes({131, 110, 6, 0, 0, 0, 0, 0, 0, 1}));
  CHECK(TermToBinary(Term::Integer(-(int64_t{1} << 40))) ==
        Bytes({131, 110, 6, 1, 0, 0, 0, 0, 0, 1}));
  CHECK(TermToBinary(Term::Integer(INT64_MIN)) ==
        Bytes({131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128}));
  CHECK(TermToBinary(Term::Integer(INT64_MAX)) ==
        Bytes({131, 110, 8, 0, 255, 255, 255, 255, 255, 255, 255, 127}));
}

TEST_CASE("term_to_binary: integers beyond int64") {
  auto two_64 = Term::IntegerFromDecimal("18446744073709551616");
  REQUIRE(two_64.ok());
  CHECK_FALSE(two_64->fits_int64());
  CHECK(TermToBinary(*two_64) == Bytes({131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  CHECK(two_64->DecimalString() == "18446744073709551616");
  auto minus = Term::IntegerFromDecimal("-18446744073709551616");
  REQUIRE(minus.ok());
  CHECK(TermToBinary(*minus) == Bytes({131, 110, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  CHECK(minus->DecimalString() == "-18446744073709551616");
  // Values that fit int64 come back small, whatever their spelling.
  auto min = Term::IntegerFromDecimal("-9223372036854775808");
  REQUIRE(min.ok());
  CHECK(min->fits_int64());
  CHECK(min->small_value() == INT64_MIN);
  auto padded = Term::IntegerFromDecimal("000300");
  REQUIRE(padded.ok());
  CHECK(*padded == Term::Integer(300));
  CHECK_FALSE(Term::IntegerFromDecimal("-9223372036854775809")->fits_int64());
  CHECK_FALSE(Term::IntegerFromDecimal("").ok());
  CHECK_FALSE(Term::IntegerFromDecimal("-").ok());
  CHECK_FALSE(Term::IntegerFromDecimal("1x").ok());
  // More than 255 magnitude bytes: LARGE_BIG_EXT with a 4-byte length.
  std::string ten_700 = "1" + std::string(700, '0');
  auto huge = Term::IntegerFromDecimal(ten_700);
  REQUIRE(huge.ok());
  std::string enc = TermToBinary(*huge);
  CHECK(enc.substr(0, 7) == Bytes({131, 111, 0, 0, 1, 35, 0}));  // 291 bytes, positive
  CHECK(enc.size() == 7 + 291);
  CHECK(enc.substr(7, 3) == Bytes({0, 0, 0}));
  CHECK(enc.substr(enc.size() - 3) == Bytes({0xc9, 0xc6, '('}));
  CHECK(huge->DecimalString() == ten_700);
}

TEST_CASE("term_to_binary: floats are NEW_FLOAT_EXT") {
  CHECK(TermToBinary(Term::Float(1.5)) == Bytes({131, 70, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}));
  CHECK(TermToBinary(Term::Float(0.1)) ==
        Bytes({131, 70, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a}));
  CHECK(TermToBinary(Term::Float(-0.0)) == Bytes({131, 70, 0x80, 0, 0, 0, 0, 0, 0, 0}));
}

TEST_CASE("term_to_binary: EJSON object shape") {
  // {[{<<"a">>, 1}]}
  CHECK(TermToBinary(Json(R"({"a":1})")) ==
        Bytes({131, 104, 1, 108, 0, 0, 0, 1, 104, 2, 109, 0, 0, 0, 1, 97, 97, 1, 106}));
  // {[]}
  CHECK(TermToBinary(Json("{}")) == Bytes({131, 104, 1, 106}));
  CHECK(TermToBinary(Json("[true,null]")) ==
        Bytes({131, 108, 0,   0, 0, 2,   100, 0,   4,   't', 'r',
               'u', 'e', 100, 0, 4, 'n', 'u', 'l', 'l', 106}));
  // An array of small integers is encoded as a string, exactly as Erlang does.
  CHECK(TermToBinary(Json("[1,2]")) == Bytes({131, 107, 0, 2, 1, 2}));
}

// ---------------------------------------------------------------------------
// JSON -> EJSON
// ---------------------------------------------------------------------------

TEST_CASE("EJSON: scalars follow jiffy") {
  CHECK(Json(R"("x")") == Term::Binary("x"));
  CHECK(Json(R"("\u00e9\n")") == Term::Binary("\xc3\xa9\n"));
  CHECK(Json("true") == Term::Atom("true"));
  CHECK(Json("false") == Term::Atom("false"));
  CHECK(Json(" null ") == Term::Atom("null"));
  CHECK(Json("42") == Term::Integer(42));
  CHECK(Json("-0") == Term::Integer(0));
  CHECK(Json("1.0") == Term::Float(1.0));
  CHECK(Json("1e2") == Term::Float(100.0));
  CHECK(Json("-2.5E-1") == Term::Float(-0.25));
  CHECK(Json("123456789012345678901234567890").DecimalString() == "123456789012345678901234567890");
  CHECK(Json("-9223372036854775808") == Term::Integer(INT64_MIN));
  CHECK_FALSE(Json("9223372036854775808").fits_int64());
}

TEST_CASE("EJSON: objects keep key order and duplicates; arrays are lists") {
  Term t = Json(R"({"z":1,"a":{"y":[1,"s"],"b":null},"z":2})");
  REQUIRE(t.IsObject());
  const auto& pairs = t.ObjectPairs();
  REQUIRE(pairs.size() == 3);
  CHECK(pairs[0].elements()[0] == Term::Binary("z"));
  CHECK(pairs[1].elements()[0] == Term::Binary("a"));
  CHECK(pairs[2].elements()[1] == Term::Integer(2));
  CHECK(EjsonToJson(t) == R"({"z":1,"a":{"y":[1,"s"],"b":null},"z":2})");
  CHECK(Json("[]") == Term::List({}));
  CHECK(Json("{}").IsObject());
}

TEST_CASE("EJSON: invalid JSON is an error") {
  for (const char* bad : {"", " ", "{", "[1,2", "[1],[2]", "1 2", "01", "1.", ".5", "+1", "tru",
                          "nul", R"({"a"})", R"({"a":})", R"("\x")", "[1,]", "1e999", "\"\xff\""}) {
    CAPTURE(bad);
    auto r = EjsonFromJson(bad);
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK(r.error().kind == ErrorKind::kPermanent);
  }
  CHECK_FALSE(EjsonFromJson(std::string(kMaxEjsonIntegerDigits + 1, '7')).ok());
  CHECK(EjsonFromJson(std::string(kMaxEjsonIntegerDigits, '7')).ok());
  CHECK(EjsonFromJson("-" + std::string(kMaxEjsonIntegerDigits, '7')).ok());
}

TEST_CASE("EJSON: nesting depth is bounded") {
  CHECK_FALSE(EjsonFromJson(std::string(100000, '[') + std::string(100000, ']')).ok());
  CHECK(EjsonFromJson(std::string(kMaxEjsonDepth, '[') + std::string(kMaxEjsonDepth, ']')).ok());
  CHECK_FALSE(
      EjsonFromJson(std::string(kMaxEjsonDepth + 1, '[') + std::string(kMaxEjsonDepth + 1, ']'))
          .ok());
  std::string deep;
  for (int i = 0; i < 500; ++i) deep += R"({"a":)";
  deep += "1" + std::string(500, '}');
  auto normal = NormaliseSelector(deep);
  REQUIRE(normal.ok());
  std::string path = "a";
  for (int i = 1; i < 500; ++i) path += ".a";
  CHECK(*normal == R"({")" + path + R"(":{"$eq":1}})");
}

TEST_CASE("EJSON -> JSON text") {
  CHECK(EjsonToJson(Term::Float(1.0)) == "1.0");
  CHECK(EjsonToJson(Term::Float(0.25)) == "0.25");
  CHECK(EjsonToJson(Term::Binary("a\"b\\c\x01")) == R"("a\"b\\c\u0001")");
  CHECK(EjsonToJson(Term::Integer(-7)) == "-7");
  CHECK(EjsonToJson(Json("[1.5,-3,[],{}]")) == "[1.5,-3,[],{}]");
}

// ---------------------------------------------------------------------------
// Mango selector normalisation
// ---------------------------------------------------------------------------

TEST_CASE("selector: implicit $eq, no $and around a single field") {
  CHECK(Normalised(R"({"type":"foo"})") == R"({"type":{"$eq":"foo"}})");
  CHECK(Normalised(R"({"n":{"$gt":1990}})") == R"({"n":{"$gt":1990}})");
  CHECK(Normalised(R"({"a":[1,2]})") == R"({"a":{"$eq":[1,2]}})");
  CHECK(Normalised(R"({"a":{}})") == R"({"a":{"$eq":{}}})");
  CHECK(Normalised(R"({"a":null})") == R"({"a":{"$eq":null}})");
  CHECK(Normalised("{}") == "{}");
}

TEST_CASE("selector: implicit $and keeps member order") {
  CHECK(Normalised(R"({"b":1,"a":2})") == R"({"$and":[{"b":{"$eq":1}},{"a":{"$eq":2}}]})");
  CHECK(Normalised(R"({"a":{"$gt":1,"$lt":5}})") ==
        R"({"$and":[{"a":{"$gt":1}},{"a":{"$lt":5}}]})");
}

TEST_CASE("selector: nested fields become dotted paths") {
  CHECK(Normalised(R"({"a":{"b":{"c":1}}})") == R"({"a.b.c":{"$eq":1}})");
  CHECK(Normalised(R"({"a":{"z":1,"b":{"$in":[2]}}})") ==
        R"({"$and":[{"a.z":{"$eq":1}},{"a.b":{"$in":[2]}}]})");
  CHECK(Normalised(R"({"a":{"$or":[{"b":1},{"c":2}]}})") ==
        R"({"$or":[{"a.b":{"$eq":1}},{"a.c":{"$eq":2}}]})");
}

TEST_CASE("selector: operators") {
  CHECK(Normalised(R"({"$or":[{"a":1},{"b":2}]})") ==
        R"({"$or":[{"a":{"$eq":1}},{"b":{"$eq":2}}]})");
  CHECK(Normalised(R"({"$and":[{"a":1}]})") == R"({"$and":[{"a":{"$eq":1}}]})");
  CHECK(Normalised(R"({"a":{"$in":[1,"x"]}})") == R"({"a":{"$in":[1,"x"]}})");
  CHECK(Normalised(R"({"a":{"$nin":[]}})") == R"({"a":{"$nin":[]}})");
  CHECK(Normalised(R"({"a":{"$exists":true}})") == R"({"a":{"$exists":true}})");
  CHECK(Normalised(R"({"a":{"$type":"string"}})") == R"({"a":{"$type":"string"}})");
  CHECK(Normalised(R"({"a":{"$mod":[3,1]}})") == R"({"a":{"$mod":[3,1]}})");
  CHECK(Normalised(R"({"a":{"$regex":"^x"}})") == R"({"a":{"$regex":"^x"}})");
  CHECK(Normalised(R"({"a":{"$size":0}})") == R"({"a":{"$size":0}})");
  CHECK(Normalised(R"({"a":{"$all":[1]}})") == R"({"a":{"$all":[1]}})");
  CHECK(Normalised(R"({"a":{"$beginsWith":"x"}})") == R"({"a":{"$beginsWith":"x"}})");
  CHECK(Normalised(R"({"$text":"foo"})") == R"({"$default":{"$text":"foo"}})");
  // From mango_selector.erl's own comment on $elemMatch.
  CHECK(Normalised(R"({"tags":{"$elemMatch":{"$gte":80,"$lt":85}}})") ==
        R"({"tags":{"$elemMatch":{"$and":[{"":{"$gte":80}},{"":{"$lt":85}}]}}})");
  CHECK(Normalised(R"({"a":{"$allMatch":{"b":1}}})") == R"({"a":{"$allMatch":{"b":{"$eq":1}}}})");
  CHECK(Normalised(R"({"a":{"$keyMapMatch":{"$eq":"k"}}})") ==
        R"({"a":{"$keyMapMatch":{"":{"$eq":"k"}}}})");
}

TEST_CASE("selector: negations are pushed down") {
  CHECK(Normalised(R"({"a":{"$not":{"$gt":5}}})") == R"({"a":{"$lte":5}})");
  CHECK(Normalised(R"({"a":{"$not":{"$eq":5}}})") == R"({"a":{"$ne":5}})");
  CHECK(Normalised(R"({"a":{"$not":{"$in":[1]}}})") == R"({"a":{"$nin":[1]}})");
  CHECK(Normalised(R"({"a":{"$not":{"$exists":true}}})") == R"({"a":{"$exists":false}})");
  CHECK(Normalised(R"({"a":{"$not":{"$regex":"x"}}})") == R"({"a":{"$not":{"$regex":"x"}}})");
  CHECK(Normalised(R"({"$not":{"$not":{"a":1}}})") == R"({"a":{"$eq":1}})");
  CHECK(Normalised(R"({"$not":{"$and":[{"a":{"$gt":10}},{"b":{"$lt":5}}]}})") ==
        R"({"$or":[{"a":{"$lte":10}},{"b":{"$gte":5}}]})");
  CHECK(Normalised(R"({"$nor":[{"a":1},{"b":{"$lte":2}}]})") ==
        R"({"$and":[{"a":{"$ne":1}},{"b":{"$gt":2}}]})");
}

TEST_CASE("selector: keys sorted by bytes everywhere, arrays kept, duplicates reversed") {
  CHECK(Normalised(R"({"a":{"$eq":{"z":1,"B":2,"b":[{"y":1,"x":2}]}}})") ==
        R"({"a":{"$eq":{"B":2,"b":[{"x":2,"y":1}],"z":1}}})");
  // ejsort_props accumulates in reverse before its stable keysort.
  CHECK(Normalised(R"({"a":{"$eq":{"k":1,"k":2}}})") == R"({"a":{"$eq":{"k":2,"k":1}}})");
}

TEST_CASE("selector: invalid selectors are errors") {
  for (const char* bad : {R"({"a":{"$in":5}})",
                          R"({"$gt":5})",
                          R"({"a":{"$where":"x"}})",
                          R"({"a":{"$foo":1}})",
                          R"({"a":{"$size":-1}})",
                          R"({"a":{"$size":1.5}})",
                          R"({"a":{"$mod":[1]}})",
                          R"({"a":{"$mod":[1,2.0]}})",
                          R"({"a":{"$exists":"yes"}})",
                          R"({"a":{"$type":1}})",
                          R"({"$and":{}})",
                          R"({"$or":1})",
                          R"({"a":{"$not":1}})",
                          R"({"a":{"$elemMatch":[1]}})",
                          R"({"a":{"$text":[]}})",
                          R"({"a":{"$default":1}})",
                          R"({"$default":1})",
                          "[1]",
                          "\"x\"",
                          "5",
                          "not json",
                          R"({"a":{"$not":{"$text":"x"}}})"}) {
    CAPTURE(bad);
    auto r = NormaliseSelector(bad);
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK(r.error().kind == ErrorKind::kPermanent);
  }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

TEST_CASE("Md5Hex") {
  CHECK(Md5Hex("") == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(Md5Hex("abc") == "900150983cd24fb0d6963f7d28e17f72");
}

TEST_CASE("TrimFilterSource: only spaces, and only without inner line breaks") {
  CHECK(TrimFilterSource("  function(d){}  ") == "function(d){}");
  CHECK(TrimFilterSource("function(d){}") == "function(d){}");
  CHECK(TrimFilterSource("   ") == "");
  CHECK(TrimFilterSource("") == "");
  CHECK(TrimFilterSource("\tf() ") == "\tf()");     // "\s" in Erlang is a space
  CHECK(TrimFilterSource("  f()  \n") == "f()\n");  // '$' before a final newline
  CHECK(TrimFilterSource(" a\nb ") == " a\nb ");    // '.' stops at '\n': no match
  CHECK(TrimFilterSource("f()\n\n") == "f()\n\n");
}

TEST_CASE("UnquoteDocId follows mochiweb_util:unquote") {
  CHECK(UnquoteDocId("plain") == "plain");
  CHECK(UnquoteDocId("a%20b") == "a b");
  CHECK(UnquoteDocId("a+b") == "a b");
  CHECK(UnquoteDocId("a%2Bb") == "a+b");
  CHECK(UnquoteDocId("%41%4a") == "AJ");
  CHECK(UnquoteDocId("%zz%4") == "%zz%4");
  CHECK(UnquoteDocId("100%") == "100%");
}

// ---------------------------------------------------------------------------
// Replication id: SPEC §3 vectors
// ---------------------------------------------------------------------------

TEST_CASE("replication id: SPEC vectors (uuid 5a8d..., localhost -> example.com)") {
  SUBCASE("plain") { CHECK(Base(SpecInputs()) == "c5d62b5cd07c5ef17f1d278dcb5cb630"); }
  SUBCASE("doc_ids [b, a]") {
    IdInputs in = SpecInputs();
    in.filter.kind = IdFilter::kDocIds;
    in.filter.doc_ids = {"b", "a"};
    CHECK(Base(in) == "78355456d5f12c2f0129db6f3d033e1b");
  }
  SUBCASE("selector {type: foo}") {
    IdInputs in = SpecInputs();
    in.filter.kind = IdFilter::kSelector;
    in.filter.selector_json = R"({"type":"foo"})";
    CHECK(Base(in) == "5cdb61621a5f5e8568ee122a193bccf0");
  }
  SUBCASE("winning_revs_only") {
    IdInputs in = SpecInputs();
    in.winning_revs_only = true;
    CHECK(Base(in) == "4400a756e6df83629dcfb9289051aafb");
  }
  SUBCASE("filter _view with query_params") {
    IdInputs in = SpecInputs();
    in.filter.kind = IdFilter::kBuiltin;
    in.filter.name = "_view";
    in.filter.query_params_json = R"({"view":"d/v"})";
    CHECK(Base(in) == "8cfe4136120be61065b906191d812faf");
  }
  SUBCASE("since_seq") {
    IdInputs in = SpecInputs();
    in.since_seq_json = R"("5-abc")";
    CHECK(Base(in) == "ec44913519710bebacdb93b3f6cbad31");
  }
  SUBCASE("source on port 15984 with a header, no credentials") {
    IdInputs in = SpecInputs();
    in.source = Endpoint(std::nullopt, "http", "localhost", 15984, "/src/", {{"X-Foo", "bar"}});
    CHECK(Base(in) == "2691b1b35f597cbbf540a5ee3487013e");
  }
}

TEST_CASE("replication id: vectors from a real CouchDB 3.4.3") {
  SUBCASE("plain, and the create_target suffix") {
    IdInputs in = CouchDbInputs();
    CHECK(Base(in) == "63ed2616636fbe78c9f73444df4a87d8");
    in.create_target = true;
    auto id = ComputeReplicationId(in);
    REQUIRE(id.ok());
    CHECK(id->base == "63ed2616636fbe78c9f73444df4a87d8");
    CHECK(id->full == "63ed2616636fbe78c9f73444df4a87d8+create_target");
  }
  SUBCASE("doc_ids") {
    IdInputs in = CouchDbT2Inputs();
    in.filter.kind = IdFilter::kDocIds;
    in.filter.doc_ids = {"plain-00002", "plain-00001"};
    CHECK(Base(in) == "d733f95b317696eb9868882a2124d51a");
  }
  SUBCASE("selector $gt") {
    IdInputs in = CouchDbT2Inputs();
    in.filter.kind = IdFilter::kSelector;
    in.filter.selector_json = R"({"n":{"$gt":1990}})";
    CHECK(Base(in) == "167c22deb0dd7657a2753e43593cae38");
  }
  SUBCASE("winning_revs_only") {
    IdInputs in = CouchDbT2Inputs();
    in.winning_revs_only = true;
    CHECK(Base(in) == "1f2e9ab9acfa7fda422a89cd6c747a68");
  }
  SUBCASE("user filter app/even with query_params in document order") {
    IdInputs in = CouchDbT2Inputs();
    in.filter.kind = IdFilter::kUser;
    in.filter.user_filter_source = "function(d, req){ return d.n % 2 == 0; }";
    in.filter.query_params_json = R"({"z":"1","a":"2"})";
    CHECK(Base(in) == "7e2a4b298206687d8fe9d2c23f17300e");
    // The source is trimmed of surrounding spaces before hashing.
    in.filter.user_filter_source = "  function(d, req){ return d.n % 2 == 0; } ";
    CHECK(Base(in) == "7e2a4b298206687d8fe9d2c23f17300e");
    // Key order of query_params is part of the id (CouchDB does not sort it).
    in.filter.query_params_json = R"({"a":"2","z":"1"})";
    CHECK(Base(in) != "7e2a4b298206687d8fe9d2c23f17300e");
  }
}

// ---------------------------------------------------------------------------
// Replication id: rules
// ---------------------------------------------------------------------------

TEST_CASE("replication id: the hashed term is [UUID, Src, Tgt | ...] as written by hand") {
  Term uuid = Term::Binary("5a8d3b8e4b3f4b1c9d2e7f6a1b2c3d4e");
  CHECK(Base(SpecInputs()) == HashOf({uuid, SpecSourceTerm(), SpecTargetTerm()}));

  IdInputs in = SpecInputs();
  in.winning_revs_only = true;
  in.since_seq_json = "42";
  in.filter.kind = IdFilter::kBuiltin;
  in.filter.name = "_doc_ids";
  CHECK(Base(in) ==
        HashOf({uuid, SpecSourceTerm(), SpecTargetTerm(), Term::Binary("_doc_ids"),
                Term::Object({}), Term::Binary("winning_revs_only"), Term::Integer(42)}));
}

TEST_CASE("replication id: suffixes") {
  IdInputs in = SpecInputs();
  auto check = [&in](bool continuous, bool create_target, const std::string& suffix) {
    in.continuous = continuous;
    in.create_target = create_target;
    auto id = ComputeReplicationId(in);
    REQUIRE(id.ok());
    CHECK(id->base == "c5d62b5cd07c5ef17f1d278dcb5cb630");  // options never change the base
    CHECK(id->full == id->base + suffix);
  };
  check(false, false, "");
  check(true, false, "+continuous");
  check(false, true, "+create_target");
  check(true, true, "+continuous+create_target");
}

TEST_CASE("replication id: the password never influences the id") {
  // The user comes in without a password; a Basic Authorization header (the
  // third place credentials can come from) is dropped whatever its password.
  IdInputs in = SpecInputs();
  in.source.headers = {{"Authorization", "Basic dXNlcjpwYXNzMQ=="}};  // user:pass1
  CHECK(Base(in) == "c5d62b5cd07c5ef17f1d278dcb5cb630");
  in.source.headers = {{"authorization", "bAsIc dXNlcjpwYXNzMg=="}};  // user:pass2
  CHECK(Base(in) == "c5d62b5cd07c5ef17f1d278dcb5cb630");
  // The user name, on the other hand, is part of it.
  in.source.headers.clear();
  in.source.user = "other";
  CHECK(Base(in) != "c5d62b5cd07c5ef17f1d278dcb5cb630");
  in.source.user = std::nullopt;
  CHECK(Base(in) != "c5d62b5cd07c5ef17f1d278dcb5cb630");
}

TEST_CASE("replication id: port atom `default`") {
  Term uuid = Term::Binary("u");
  auto base_for = [&uuid](std::string scheme, int port) {
    IdInputs in;
    in.server_uuid = "u";
    in.source = Endpoint(std::nullopt, scheme, "h", port, "/db/");
    in.target = Endpoint(std::nullopt, "http", "h", 80, "/t/");
    return Base(in);
  };
  Term tgt = RemoteTerm(std::nullopt, "h", Term::Atom("default"), "/t/");
  auto expect = [&](Term port) {
    return HashOf({uuid, RemoteTerm(std::nullopt, "h", std::move(port), "/db/"), tgt});
  };
  CHECK(base_for("http", 80) == expect(Term::Atom("default")));
  CHECK(base_for("http", 5984) == expect(Term::Atom("default")));
  CHECK(base_for("https", 443) == expect(Term::Atom("default")));
  CHECK(base_for("https", 5984) == expect(Term::Integer(5984)));
  CHECK(base_for("http", 443) == expect(Term::Integer(443)));
  CHECK(base_for("https", 80) == expect(Term::Integer(80)));
  CHECK(base_for("http", 15984) == expect(Term::Integer(15984)));
}

TEST_CASE("replication id: headers") {
  Term uuid = Term::Binary("u");
  Term tgt = RemoteTerm(std::nullopt, "h", Term::Atom("default"), "/t/");
  auto base_for = [](std::vector<std::pair<std::string, std::string>> headers) {
    IdInputs in;
    in.server_uuid = "u";
    in.source = Endpoint(std::nullopt, "http", "h", 80, "/db/", std::move(headers));
    in.target = Endpoint(std::nullopt, "http", "h", 80, "/t/");
    return Base(in);
  };
  auto expect = [&](std::vector<std::pair<std::string, std::string>> headers) {
    return HashOf(
        {uuid, RemoteTerm(std::nullopt, "h", Term::Atom("default"), "/db/", headers), tgt});
  };
  SUBCASE("sorted by name bytes; first of equal names kept") {
    CHECK(base_for({{"b", "1"}, {"X-A", "2"}, {"C", "3"}, {"b", "4"}}) ==
          expect({{"C", "3"}, {"X-A", "2"}, {"b", "1"}}));
  }
  SUBCASE("the two default headers are dropped only on an exact match") {
    CHECK(base_for({{"Accept", "application/json"},
                    {"User-Agent", "CouchDB-Replicator/3.4.3"},
                    {"X", "y"}}) == expect({{"X", "y"}}));
    CHECK(base_for({{"Accept", "text/plain"}}) == expect({{"Accept", "text/plain"}}));
    CHECK(base_for({{"User-Agent", "curl/8"}}) == expect({{"User-Agent", "curl/8"}}));
    CHECK(base_for({{"accept", "application/json"}}) == expect({{"accept", "application/json"}}));
  }
  SUBCASE("a Basic Authorization header is removed, a Bearer one kept") {
    CHECK(base_for({{"Authorization", "Basic dXNlcjpwYXNzMQ=="}, {"X", "y"}}) ==
          expect({{"X", "y"}}));
    CHECK(base_for({{"Authorization", "Basic"}}) == expect({{"Authorization", "Basic"}}));
  }
  SUBCASE("with any Authorization header the list is in mochiweb order") {
    // mochiweb_headers orders by lowercased name and keeps the names' case.
    CHECK(base_for({{"b", "1"}, {"Authorization", "Bearer t"}, {"C", "3"}, {"a", "0"}}) ==
          expect({{"a", "0"}, {"Authorization", "Bearer t"}, {"b", "1"}, {"C", "3"}}));
    CHECK(base_for({{"b", "1"}, {"Authorization", "Basic x"}, {"C", "3"}}) ==
          expect({{"b", "1"}, {"C", "3"}}));
    // Names equal but for case are merged into one header there.
    CHECK(base_for({{"X-A", "1"}, {"x-a", "2"}, {"Authorization", "Bearer t"}}) ==
          expect({{"Authorization", "Bearer t"}, {"X-A", "1, 2"}}));
  }
}

TEST_CASE("replication id: doc_ids are unquoted, sorted and de-duplicated") {
  Term uuid = Term::Binary("5a8d3b8e4b3f4b1c9d2e7f6a1b2c3d4e");
  IdInputs in = SpecInputs();
  in.filter.kind = IdFilter::kDocIds;
  in.filter.doc_ids = {"b", "a", "b", "a%2Bc", "a+c", "%41"};
  Term ids = Term::List({Term::Binary("A"), Term::Binary("a"), Term::Binary("a c"),
                         Term::Binary("a+c"), Term::Binary("b")});
  CHECK(Base(in) == HashOf({uuid, SpecSourceTerm(), SpecTargetTerm(), ids}));
  in.filter.doc_ids = {};
  CHECK(Base(in) == HashOf({uuid, SpecSourceTerm(), SpecTargetTerm(), Term::List({})}));
}

TEST_CASE("replication id: selectors that normalise alike share an id") {
  IdInputs a = SpecInputs();
  a.filter.kind = IdFilter::kSelector;
  a.filter.selector_json = R"({"type":"foo"})";
  IdInputs b = a;
  b.filter.selector_json = R"({"type":{"$eq":"foo"}})";
  CHECK(Base(a) == Base(b));
  b.filter.selector_json = R"({"$not":{"type":{"$ne":"foo"}}})";
  CHECK(Base(a) == Base(b));
  b.filter.selector_json = R"({ "type" : { "$eq" : "foo" } } )";
  CHECK(Base(a) == Base(b));
}

TEST_CASE("replication id: invalid inputs are errors") {
  IdInputs in = SpecInputs();
  in.filter.kind = IdFilter::kSelector;
  in.filter.selector_json = R"({"a":{"$in":1}})";
  CHECK_FALSE(ComputeReplicationId(in).ok());
  in.filter.selector_json = "{";
  CHECK_FALSE(ComputeReplicationId(in).ok());

  in = SpecInputs();
  in.filter.kind = IdFilter::kBuiltin;
  in.filter.name = "_view";
  in.filter.query_params_json = "[1]";
  CHECK_FALSE(ComputeReplicationId(in).ok());
  in.filter.query_params_json = "{";
  CHECK_FALSE(ComputeReplicationId(in).ok());

  in = SpecInputs();
  in.since_seq_json = "5-abc";  // not JSON
  auto r = ComputeReplicationId(in);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::kPermanent);
}

}  // namespace
}  // namespace couchrepd

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "couchrepd/encoding.h"
#include "couchrepd/json.h"

using namespace couchrepd;

TEST_CASE("JsonQuote escapes control characters, quotes and invalid UTF-8") {
  CHECK(JsonQuote("a\"b\\c") == R"("a\"b\\c")");
  CHECK(JsonQuote("line\nnext\t\x01") == R"("line\nnext\t\u0001")");
  CHECK(JsonQuote("日本") == "\"日本\"");
  CHECK(JsonQuote("bad\xFFutf8") == "\"bad\xEF\xBF\xBDutf8\"");
  CHECK(JsonQuote("\xED\xA0\x80") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");  // surrogate
}

TEST_CASE("JsonWriter builds nested compact JSON with raw values") {
  JsonWriter w;
  w.BeginObject()
      .Key("a")
      .Int(-3)
      .Key("b")
      .BeginArray()
      .Bool(true)
      .Null()
      .String("x")
      .EndArray()
      .Key("seq")
      .Raw(R"("12-g1AA")")
      .Key("empty")
      .BeginObject()
      .EndObject()
      .EndObject();
  CHECK(w.str() == R"({"a":-3,"b":[true,null,"x"],"seq":"12-g1AA","empty":{}})");
}

TEST_CASE("base64, hex, md5 and hmac match known values") {
  CHECK(Base64Encode("user:pass") == "dXNlcjpwYXNz");
  CHECK(Base64Encode("") == "");
  CHECK(*Base64Decode("dXNlcjpwYXNz") == "user:pass");
  CHECK(*Base64Decode("YQ") == "a");
  CHECK(*Base64Decode("YWI=") == "ab");
  CHECK_FALSE(Base64Decode("not base64!").has_value());
  CHECK(HexEncode(Md5("")) == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(HmacSha256Hex("key", "The quick brown fox jumps over the lazy dog") ==
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
  auto a = RandomHex32();
  CHECK(a.size() == 32);
  CHECK(a != RandomHex32());
}

TEST_CASE("ScanObjectMembers finds members by structure, at any depth, in linear time") {
  std::vector<std::string> seen;
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  std::string text = R"( { "a" : 1 , "b\"c":"x}\"{" ,"deep":)" + deep + R"(,"o":{"k":[1,{"z":"]"}]}} )";
  CHECK(ScanObjectMembers(text, [&](const RawMember& m) {
    seen.push_back(std::string(m.key) + "=" +
                   std::string(text.substr(m.value_begin, std::min<size_t>(m.value_end - m.value_begin, 12))));
    return true;
  }));
  CHECK(seen == std::vector<std::string>{R"("a"=1)", R"("b\"c"="x}\"{")", "\"deep\"=[[[[[[[[[[[[",
                                         R"("o"={"k":[1,{"z")"});
  // Stopping early, an empty object, and texts of another shape.
  int calls = 0;
  CHECK(ScanObjectMembers(R"({"a":1,"b":2})", [&](const RawMember&) { return ++calls < 1; }));
  CHECK(calls == 1);
  CHECK(ScanObjectMembers("{}", [](const RawMember&) { return true; }));
  CHECK_FALSE(ScanObjectMembers("[1]", [](const RawMember&) { return true; }));
  CHECK_FALSE(ScanObjectMembers(R"({"a":[1,2)", [](const RawMember&) { return true; }));
  CHECK_FALSE(ScanObjectMembers(R"({"a" 1})", [](const RawMember&) { return true; }));
  CHECK_FALSE(ScanObjectMembers(R"({"a":"unterminated})", [](const RawMember&) { return true; }));
}

TEST_CASE("NestedDeeperThan counts brackets outside strings") {
  CHECK_FALSE(NestedDeeperThan(R"({"a":[1,{"b":2}]})", 3));
  CHECK(NestedDeeperThan(R"({"a":[1,{"b":2}]})", 2));
  CHECK_FALSE(NestedDeeperThan(R"({"s":"[[[[\"[[[["})", 1));
  CHECK(NestedDeeperThan(std::string(100000, '[') + std::string(100000, ']'), 1024));
  CHECK_FALSE(NestedDeeperThan(std::string(1024, '[') + std::string(1024, ']'), 1024));
}

TEST_CASE("IsJsonText follows the grammar at any depth") {
  for (const char* ok : {"{}", "[]", " 1 ", "-0.5e+10", "\"a\\u00e9\\n\"", "\"\\ud800\"", "true",
                         R"({"a":[1,{"b":null}],"c":"x"})", "[1, 2 ,3]"}) {
    CAPTURE(ok);
    CHECK(IsJsonText(ok));
  }
  for (const char* bad : {"", "{", "[1,]", "{\"a\":1,}", "1e9UUU", "01", "1.", "-", "\"\\x\"",
                          "\"\\u12\"", "{\"a\" 1}", "{1:2}", "[1 2]", "tru", "\"a\x01\"", "[]]",
                          "{} {}", "nul"}) {
    CAPTURE(bad);
    CHECK_FALSE(IsJsonText(bad));
  }
  const std::string deep = std::string(100000, '[') + "\"\\udc00\"" + std::string(100000, ']');
  CHECK(IsJsonText(deep));
  CHECK_FALSE(IsJsonText(deep + "]"));
  CHECK_FALSE(IsJsonText(std::string(100000, '[') + std::string(99999, ']')));
}

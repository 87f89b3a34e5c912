// Tests for ApplyStateWrite (SPEC §2.1): exact output text, preservation of
// every other field, when the state time changes, reason and stats rules, and
// no-op detection.
#include "couchrepd/state_fields.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <string>

namespace couchrepd {
namespace {

constexpr int64_t kNow = 1795444676;  // 2026-11-23T14:37:56Z
constexpr int64_t kLater = kNow + 3600;
constexpr const char* kNowText = R"("2026-11-23T14:37:56Z")";

StateWrite Triggered(std::string id = "abc+continuous") {
  StateWrite w;
  w.replication_id = std::move(id);
  w.state = "triggered";
  return w;
}

StateWrite State(std::string state, std::optional<std::string> reason = std::nullopt,
                 std::optional<std::string> stats = std::nullopt) {
  StateWrite w;
  w.state = std::move(state);
  w.reason = std::move(reason);
  w.stats_json = std::move(stats);
  return w;
}

// Every value kind whose bytes a re-serialisation would change.
constexpr const char* kUserFields =
    R"("source":"http://u:p@a.example/db","target":{"url":"http://b/db","headers":{"X-Y":"z"},)"
    R"("auth":{"basic":{"username":"u","password":"p\u00e9"}}},"big":123456789012345678901234567890,)"
    R"("neg":-0.000000000000000000001e-300,"float":2.50,"esc":"a\u00e9\"\/b\ud83d\ude00",)"
    R"("arr":[ 1 , 2 ],"unknown_field":{"deep":[{"x":null}]},"_replication_other":7)";

std::string StoredDoc(const std::string& extra = "") {
  return std::string(R"({"_id":"r1","_rev":"3-abc",)") + kUserFields + extra + "}";
}

TEST_CASE("triggered on a fresh document: id, state and time appended, the rest untouched") {
  auto out = ApplyStateWrite(StoredDoc(), Triggered(), kNow);
  REQUIRE(out);
  CHECK(*out == StoredDoc(std::string(R"(,"_replication_id":"abc+continuous",)") +
                    R"("_replication_state":"triggered","_replication_state_time":)" + kNowText));
}

TEST_CASE("whitespace between tokens goes, bytes inside values stay") {
  auto out = ApplyStateWrite("{ \"_id\" : \"r\" ,\n \"a\" :\t[ 1, 2 ] , \"n\": 1.0E+2 }",
                             State("completed", std::nullopt, R"({"docs_read":1})"), kNow);
  REQUIRE(out);
  CHECK(*out ==
        std::string(R"({"_id":"r","a":[ 1, 2 ],"n":1.0E+2,"_replication_state":"completed",)") +
            R"("_replication_state_time":)" + kNowText +
            R"(,"_replication_stats":{"docs_read":1}})");
}

TEST_CASE("writing the same state again is a no-op and keeps the time") {
  auto first = ApplyStateWrite(StoredDoc(), Triggered(), kNow);
  REQUIRE(first);
  CHECK_FALSE(ApplyStateWrite(*first, Triggered(), kLater));
  CHECK_FALSE(ApplyStateWrite(*first, State("triggered"), kLater));
  StateWrite nothing;
  CHECK_FALSE(ApplyStateWrite(*first, nothing, kLater));
  // A new id with the same state: the id changes, the time does not.
  auto other = ApplyStateWrite(*first, Triggered("def"), kLater);
  REQUIRE(other);
  CHECK(*other == StoredDoc(std::string(R"(,"_replication_id":"def",)") +
                      R"("_replication_state":"triggered","_replication_state_time":)" + kNowText));
}

TEST_CASE("triggered -> completed: state replaced in place, new time, stats appended") {
  std::string doc =
      StoredDoc(std::string(R"(,"_replication_id":"abc","_replication_state":"triggered",)") +
          R"("_replication_state_time":"2020-01-01T00:00:00Z","tail":true)");
  const char* stats =
      R"({"revisions_checked":3,"missing_revisions_found":3,"docs_read":3,"docs_written":3,)"
      R"("doc_write_failures":0,"changes_pending":0,"checkpointed_source_seq":"3-g1AA",)"
      R"("start_time":"2026-11-23T14:30:00Z"})";
  auto out = ApplyStateWrite(doc, State("completed", std::nullopt, stats), kNow);
  REQUIRE(out);
  CHECK(*out == StoredDoc(std::string(R"(,"_replication_id":"abc","_replication_state":"completed",)") +
                    R"("_replication_state_time":)" + kNowText + R"(,"tail":true,)" +
                    R"("_replication_stats":)" + stats));
  // Completed again with the same stats, differently spaced: nothing to do.
  std::string spaced =
      R"({ "revisions_checked": 3, "missing_revisions_found":3,"docs_read":3,)"
      R"("docs_written":3,"doc_write_failures":0,"changes_pending":0,)"
      R"("checkpointed_source_seq":"3-g1AA","start_time":"2026-11-23T14:30:00Z" })";
  CHECK_FALSE(ApplyStateWrite(*out, State("completed", std::nullopt, spaced), kLater));
  // Completed without stats keeps the stored ones.
  CHECK_FALSE(ApplyStateWrite(*out, State("completed"), kLater));
  // Different stats replace them, the time stays.
  auto restats =
      ApplyStateWrite(*out, State("completed", std::nullopt, R"({"docs_read":4})"), kLater);
  REQUIRE(restats);
  CHECK(restats->find(R"("_replication_stats":{"docs_read":4})") != std::string::npos);
  CHECK(restats->find(kNowText) != std::string::npos);
}

TEST_CASE("leaving completed removes the stats; error keeps a reason, other states drop it") {
  std::string completed = StoredDoc(std::string(R"(,"_replication_state":"completed",)") +
                              R"("_replication_state_time":"2020-01-01T00:00:00Z",)" +
                              R"("_replication_stats":{"docs_read":1})");
  auto error = ApplyStateWrite(completed, State("error", "`source` is missing"), kNow);
  REQUIRE(error);
  CHECK(*error == StoredDoc(std::string(R"(,"_replication_state":"error","_replication_state_time":)") +
                      kNowText + R"(,"_replication_state_reason":"`source` is missing")"));

  // Same state, new reason: the reason changes, the time does not.
  auto reason2 = ApplyStateWrite(*error, State("error", "db_not_found: \"tgt\"\n"), kLater);
  REQUIRE(reason2);
  CHECK(*reason2 == StoredDoc(std::string(R"(,"_replication_state":"error","_replication_state_time":)") +
                        kNowText + R"(,"_replication_state_reason":"db_not_found: \"tgt\"\n")"));
  CHECK_FALSE(ApplyStateWrite(*reason2, State("error", "db_not_found: \"tgt\"\n"), kLater));
  // error without a reason keeps the stored one.
  CHECK_FALSE(ApplyStateWrite(*reason2, State("error"), kLater));

  // error -> failed (terminal): new time, reason replaced.
  auto failed = ApplyStateWrite(*reason2, State("failed", "bad doc"), kLater);
  REQUIRE(failed);
  CHECK(*failed == StoredDoc(R"(,"_replication_state":"failed","_replication_state_time":)"
                       R"("2026-11-23T15:37:56Z","_replication_state_reason":"bad doc")"));

  // error -> triggered: the reason goes, even when one is passed.
  auto back = ApplyStateWrite(*reason2, State("triggered", "ignored"), kLater);
  REQUIRE(back);
  CHECK(*back == StoredDoc(R"(,"_replication_state":"triggered","_replication_state_time":)"
                     R"("2026-11-23T15:37:56Z")"));
  // completed with a stored reason: removed; stats passed with error: not written.
  auto odd = ApplyStateWrite(*reason2, State("completed"), kLater);
  REQUIRE(odd);
  CHECK(odd->find("_replication_state_reason") == std::string::npos);
  auto no_stats = ApplyStateWrite(completed, State("error", "x", R"({"docs_read":9})"), kNow);
  REQUIRE(no_stats);
  CHECK(no_stats->find("_replication_stats") == std::string::npos);
}

TEST_CASE("writes without a state follow the stored state") {
  std::string error = StoredDoc(R"(,"_replication_state":"error","_replication_state_reason":"old")");
  StateWrite reason_only;
  reason_only.reason = "new";
  auto out = ApplyStateWrite(error, reason_only, kNow);
  REQUIRE(out);
  CHECK(*out == StoredDoc(R"(,"_replication_state":"error","_replication_state_reason":"new")"));

  StateWrite stats_only;
  stats_only.stats_json = R"({"docs_read":2})";
  CHECK_FALSE(ApplyStateWrite(error, stats_only, kNow));   // not completed
  CHECK_FALSE(ApplyStateWrite(StoredDoc(), reason_only, kNow));  // no state at all
  std::string completed = StoredDoc(R"(,"_replication_state":"completed")");
  auto stats = ApplyStateWrite(completed, stats_only, kNow);
  REQUIRE(stats);
  CHECK(*stats == StoredDoc(R"(,"_replication_state":"completed","_replication_stats":{"docs_read":2})"));

  // Only an id (a duplicate document): no state, no time.
  StateWrite id_only;
  id_only.replication_id = "abc";
  auto id = ApplyStateWrite(StoredDoc(), id_only, kNow);
  REQUIRE(id);
  CHECK(*id == StoredDoc(R"(,"_replication_id":"abc")"));
  CHECK_FALSE(ApplyStateWrite(*id, id_only, kLater));

  StateWrite clear;
  clear.clear_reason = true;
  auto cleared = ApplyStateWrite(error, clear, kNow);
  REQUIRE(cleared);
  CHECK(*cleared == StoredDoc(R"(,"_replication_state":"error")"));
  CHECK_FALSE(ApplyStateWrite(*cleared, clear, kNow));
}

TEST_CASE("a stored state without a time gets one; escaped stored values compare unescaped") {
  auto out = ApplyStateWrite(StoredDoc(R"(,"_replication_state":"triggered")"), State("triggered"), kNow);
  REQUIRE(out);
  CHECK(*out == StoredDoc(std::string(R"(,"_replication_state":"triggered","_replication_state_time":)") +
                    kNowText));
  std::string escaped =
      StoredDoc(R"(,"_replication_id":"a\u0062c","_replication_state":"\u0074riggered",)"
          R"("_replication_state_time":"2020-01-01T00:00:00Z")");
  CHECK_FALSE(ApplyStateWrite(escaped, Triggered("abc"), kNow));
  // A stored state that is not a string counts as different.
  auto fixed = ApplyStateWrite(StoredDoc(R"(,"_replication_state":1,"_replication_state_time":"t")"),
                               State("triggered"), kNow);
  REQUIRE(fixed);
  CHECK(*fixed ==
        StoredDoc(std::string(R"(,"_replication_state":"triggered","_replication_state_time":)") +
            kNowText));
}

TEST_CASE("duplicate keys of our fields collapse into the first; others are kept") {
  std::string doc =
      R"({"_id":"d","_replication_state":"error","x":1,"_replication_state":"triggered",)"
      R"("x":2,"_replication_state_reason":"a","_replication_state_reason":"b"})";
  auto out = ApplyStateWrite(doc, State("completed"), kNow);
  REQUIRE(out);
  CHECK(*out == std::string(R"({"_id":"d","_replication_state":"completed","x":1,"x":2,)") +
                    R"("_replication_state_time":)" + kNowText + "}");
}

TEST_CASE("strings written are escaped; invalid UTF-8 becomes U+FFFD") {
  auto out = ApplyStateWrite(
      R"({"_id":"d"})", State("error", std::string("quote \" back \\ nl \n bad \xff end")), kNow);
  REQUIRE(out);
  CHECK(*out ==
        std::string(R"({"_id":"d","_replication_state":"error","_replication_state_time":)") +
            kNowText + R"(,"_replication_state_reason":"quote \" back \\ nl \n bad )" +
            "\xef\xbf\xbd" + R"( end"})");
}

TEST_CASE("no write for deleted documents, non-objects, invalid JSON or bad stats") {
  CHECK_FALSE(ApplyStateWrite(R"({"_id":"d","_rev":"2-x","_deleted":true})", Triggered(), kNow));
  CHECK_FALSE(ApplyStateWrite("", Triggered(), kNow));
  CHECK_FALSE(ApplyStateWrite("[1]", Triggered(), kNow));
  CHECK_FALSE(ApplyStateWrite(R"({"_id":"d",)", Triggered(), kNow));
  CHECK_FALSE(ApplyStateWrite("{\"_id\":\"\xff\"}", Triggered(), kNow));
  // `_deleted: false` is an ordinary document.
  CHECK(ApplyStateWrite(R"({"_id":"d","_deleted":false})", Triggered(), kNow));
  // Stats that are not a JSON object are not written (the state still is).
  std::string completed =
      R"({"_id":"d","_replication_state":"completed","_replication_state_time":"t"})";
  for (const char* bad : {"[1]", "3", "{\"a\":", "", "null", "{} {}"}) {
    CAPTURE(bad);
    CHECK_FALSE(ApplyStateWrite(completed, State("completed", std::nullopt, bad), kNow));
    auto fresh = ApplyStateWrite(R"({"_id":"d"})", State("completed", std::nullopt, bad), kNow);
    REQUIRE(fresh);
    CHECK(*fresh == std::string(R"({"_id":"d","_replication_state":"completed",)") +
                        R"("_replication_state_time":)" + kNowText + "}");
  }
}

// A replication document the parser refuses (the server stores it) is marked
// like any other; its unreadable values pass through byte for byte.
// Found by fuzz_json_fields: a number simdjson cannot hold made the split
// stop checking, and invalid text after it was written back.
TEST_CASE("no write for text that is invalid after a number simdjson cannot hold") {
  CHECK_FALSE(ApplyStateWrite(R"({"_id":"r","t":-1"1000","s":{"docs_read":}})", Triggered(), kNow));
  // A big number alone still passes through as it is.
  auto out = ApplyStateWrite(R"({"_id":"r","big":123456789012345678901234567890})", Triggered(), kNow);
  REQUIRE(out);
  CHECK(out->find("123456789012345678901234567890") != std::string::npos);
}

TEST_CASE("a document nested too deeply or with a lone surrogate still gets its state") {
  const std::string deep = std::string(3000, '[') + std::string(3000, ']');
  const std::string doc =
      R"({"_id":"d","_rev":"1-a","selector":)" + deep + R"(,"source":"\ud800"})";
  auto out = ApplyStateWrite(doc, State("error", "`selector` is nested too deeply"), kNow);
  REQUIRE(out);
  CHECK(*out == R"({"_id":"d","_rev":"1-a","selector":)" + deep +
                    R"(,"source":"\ud800","_replication_state":"error","_replication_state_time":)" +
                    kNowText + R"(,"_replication_state_reason":"`selector` is nested too deeply"})");
  // Text that is not an object even by its structure gets nothing.
  CHECK_FALSE(ApplyStateWrite(R"({"a":[1,2})", State("error", "x"), kNow));
  // Found by fuzz_json_fields: a member the structure scan passes but the
  // grammar refuses (a broken number) made an invalid document.
  CHECK_FALSE(ApplyStateWrite(
      R"({"a":1e9UUUUUUplication_state":"error","_replica!ion_state_reason":"x",)"
      R"("_replication_state":"failed"})",
      State("error", "x"), kNow));
}

}  // namespace
}  // namespace couchrepd

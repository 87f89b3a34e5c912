// Tests for the `_design/_replicator` document text and the "does it need an
// update" decision (SPEC §1.4). The validation function itself runs against a
// real server in tests/integration/replicator_ddoc_test.cpp.
#include "couchrepd/replicator_ddoc.h"

#include <doctest/doctest.h>
#include <simdjson.h>

#include <string>

#include "couchrepd/json.h"

namespace couchrepd {
namespace {

// Replaces the first occurrence of `from` in `s` (which must contain it).
std::string Replace(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  return s.replace(pos, from.size(), to);
}

TEST_CASE("the design document is deterministic compact JSON with our fields in order") {
  std::string doc = ReplicatorDesignDocJson();
  CHECK(doc == ReplicatorDesignDocJson());
  std::string prefix =
      R"({"_id":"_design/_replicator","language":"javascript","couchrepd_ddoc_version":)" +
      std::to_string(kReplicatorDesignDocVersion) + R"(,"validate_doc_update":)";
  CHECK(doc == prefix + JsonQuote(ReplicatorValidateFunction()) + "}");
  CHECK(doc.find("\"_rev\"") == std::string::npos);

  simdjson::dom::parser parser;
  simdjson::dom::element root;
  REQUIRE(parser.parse(doc).get(root) == simdjson::SUCCESS);
  std::string_view function;
  REQUIRE(root["validate_doc_update"].get(function) == simdjson::SUCCESS);
  CHECK(function == ReplicatorValidateFunction());
  CHECK(function.rfind("function", 0) == 0);
  CHECK(function.back() == '}');  // PouchDB strips a trailing ';', CouchDB needs none
  CHECK(
      function.find("Only the replicator can edit replication documents that are in the triggered "
                    "state.") != std::string_view::npos);
}

TEST_CASE("DesignDocNeedsUpdate compares function, language and version, nothing else") {
  std::string ours = ReplicatorDesignDocJson();
  CHECK(DesignDocNeedsUpdate(""));
  CHECK(DesignDocNeedsUpdate("not json"));
  CHECK(DesignDocNeedsUpdate("[]"));
  CHECK_FALSE(DesignDocNeedsUpdate(ours));

  // _rev, other fields, order and spacing do not matter.
  std::string stored = Replace(ours, R"("_id":"_design/_replicator",)",
                               R"("_id":"_design/_replicator","_rev":"7-abc","views":{},)");
  CHECK_FALSE(DesignDocNeedsUpdate(stored));
  CHECK_FALSE(DesignDocNeedsUpdate(
      R"({ "validate_doc_update" : )" + JsonQuote(ReplicatorValidateFunction()) +
      R"(, "couchrepd_ddoc_version" : )" + std::to_string(kReplicatorDesignDocVersion) +
      R"(, "_rev": "1-a" })"));  // no language: CouchDB's default is javascript

  CHECK(DesignDocNeedsUpdate(Replace(ours, "function (newDoc", "function(newDoc")));
  CHECK(DesignDocNeedsUpdate(
      Replace(ours, R"("couchrepd_ddoc_version":)", R"("couchrepd_ddoc_version":1000,"x":)")));
  CHECK(DesignDocNeedsUpdate(Replace(ours, R"("couchrepd_ddoc_version":)", R"("other":)")));
  CHECK(
      DesignDocNeedsUpdate(Replace(ours, R"("language":"javascript")", R"("language":"erlang")")));
  CHECK(DesignDocNeedsUpdate(Replace(ours, "{", R"({"_deleted":true,)")));
  // The 1.x/3.0 validation function of another replicator.
  CHECK(DesignDocNeedsUpdate(R"({"_id":"_design/_replicator","_rev":"1-x","language":"javascript",)"
                             R"("validate_doc_update":"function(newDoc, oldDoc, userCtx) {}"})"));
}

TEST_CASE("UpdatedReplicatorDesignDoc keeps _rev and foreign fields, replaces ours") {
  CHECK(UpdatedReplicatorDesignDoc("") == ReplicatorDesignDocJson());
  CHECK(UpdatedReplicatorDesignDoc("garbage") == ReplicatorDesignDocJson());
  CHECK(
      UpdatedReplicatorDesignDoc(R"({"_id":"_design/_replicator","_rev":"2-d","_deleted":true})") ==
      ReplicatorDesignDocJson());

  std::string old =
      R"({"_id":"_design/_replicator","_rev":"1-x","language":"javascript",)"
      R"("validate_doc_update":"function(){}","views":{"v":{"map":"function(d){}"}}})";
  std::string updated = UpdatedReplicatorDesignDoc(old);
  CHECK(updated == R"({"_id":"_design/_replicator","_rev":"1-x","language":"javascript",)"
                   R"("validate_doc_update":)" +
                       JsonQuote(ReplicatorValidateFunction()) +
                       R"(,"views":{"v":{"map":"function(d){}"}},"couchrepd_ddoc_version":)" +
                       std::to_string(kReplicatorDesignDocVersion) + "}");
  CHECK_FALSE(DesignDocNeedsUpdate(updated));

  std::string current = Replace(ReplicatorDesignDocJson(), R"("_id":"_design/_replicator",)",
                                R"("_id":"_design/_replicator","_rev":"4-y",)");
  CHECK(UpdatedReplicatorDesignDoc(current) == current);
}

}  // namespace
}  // namespace couchrepd

// Tests for `couchrepd replicate` flags: usage errors, and flags turning into
// the same replication as the equivalent document.
#include "couchrepd/replicate_args.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "couchrepd/replication_spec.h"

namespace couchrepd {
namespace {

using Args = std::vector<std::string>;

ReplicateArgs ParseOk(const Args& args) {
  auto r = ParseReplicateArgs(args);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().Message()));
  return std::move(r).value();
}

std::string UsageReason(const Args& args) {
  auto r = ParseReplicateArgs(args);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().error == "usage");
  CHECK(r.error().kind == ErrorKind::kPermanent);
  return r.error().reason;
}

ReplicationSpec SpecOf(const std::string& doc_json) {
  auto r = ParseReplicationDoc(doc_json, {});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().Message()), " for ", doc_json);
  return std::move(r).value();
}

ReplicationSpec SpecOf(const Args& args) { return SpecOf(ParseOk(args).doc_json); }

TEST_CASE("replicate args: SOURCE and TARGET alone") {
  ReplicateArgs a = ParseOk({"http://u:p@a/s", "tgt"});
  CHECK(a.doc_json == R"({"source":"http://u:p@a/s","target":"tgt"})");
  CHECK_FALSE(a.server_url.has_value());
  CHECK_FALSE(a.config_path.has_value());
  CHECK_FALSE(a.json_output);
  CHECK_FALSE(a.quiet);
  CHECK_FALSE(a.help);
}

TEST_CASE("replicate args: program options") {
  ReplicateArgs a =
      ParseOk({"--json", "s", "-q", "t", "--server", "http://127.0.0.1:5984", "-c", "etc/x.yaml"});
  CHECK(a.json_output);
  CHECK(a.quiet);
  CHECK(a.server_url == "http://127.0.0.1:5984");
  CHECK(a.config_path == "etc/x.yaml");
  a = ParseOk({"s", "t", "--server=https://h", "--config=c.yaml", "--quiet"});
  CHECK(a.server_url == "https://h");
  CHECK(a.config_path == "c.yaml");
  CHECK(a.quiet);
  CHECK(ParseOk({"--help"}).help);
  CHECK(ParseOk({"s", "-h", "--bogus"}).help);
  CHECK(ParseOk({"--", "s", "t"}).doc_json == R"({"source":"s","target":"t"})");
  CHECK_FALSE(ReplicateUsage().empty());
  CHECK(ReplicateUsage().find("--doc-ids") != std::string::npos);
}

TEST_CASE("replicate args: usage errors name the flag") {
  CHECK(UsageReason({}) == "SOURCE and TARGET are required");
  CHECK(UsageReason({"s"}) == "SOURCE and TARGET are required");
  CHECK(UsageReason({"s", "t", "http://u:secret@x/y"}) ==
        "expected SOURCE and TARGET, got 3 arguments");
  CHECK(UsageReason({"s", "t", "--bogus"}) == "unknown option `--bogus`");
  CHECK(UsageReason({"s", "t", "--bogus=secret"}) == "unknown option `--bogus`");
  CHECK(UsageReason({"s", "t", "--selector"}) == "`--selector` needs a value");
  CHECK(UsageReason({"s", "t", "--continuous=yes"}) == "`--continuous` takes no value");
  CHECK(UsageReason({"s", "t", "--filter", "a/b", "--filter", "c/d"}) ==
        "`--filter` is given more than once");
  CHECK(UsageReason({"s", "t", "--worker-processes", "four"}) ==
        "`--worker-processes` needs a whole number");
  CHECK(UsageReason({"s", "t", "--worker-processes=-1"}) ==
        "`--worker-processes` needs a whole number");
  CHECK(UsageReason({"s", "t", "--checkpoint-interval", "30s"}) ==
        "`--checkpoint-interval` needs a whole number of milliseconds");
  CHECK(UsageReason({"s", "t", "--connection-timeout", ""}) ==
        "`--connection-timeout` needs a whole number of milliseconds");
  CHECK(UsageReason({"s", "t", "--selector", "{type: foo}"}) == "`--selector` needs a JSON object");
  CHECK(UsageReason({"s", "t", "--selector", "[1]"}) == "`--selector` needs a JSON object");
  CHECK(UsageReason({"s", "t", "--query-params", "view=d/v"}) ==
        "`--query-params` needs a JSON object");
  CHECK(UsageReason({"s", "t", "--create-target-params", "\"q=1\""}) ==
        "`--create-target-params` needs a JSON object");
  CHECK(UsageReason({"s", "t", "--doc-ids", "a", "--selector", "{}"}) ==
        "`--doc-ids`, `--filter` and `--selector` are mutually exclusive");
  CHECK(UsageReason({"s", "t", "--filter", "d/f", "--selector", "{}"}) ==
        "`--doc-ids`, `--filter` and `--selector` are mutually exclusive");
  CHECK(UsageReason({"s", "t", "--header", "no colon"}) == "`--header` needs \"Name: value\"");
  CHECK(UsageReason({"s", "t", "--source-header", ": v"}) ==
        "`--source-header` needs \"Name: value\"");
  CHECK(UsageReason({"s", "t", "--server", "ftp://h"}) ==
        "`--server`: unsupported scheme `ftp` (only http and https)");
  CHECK(UsageReason({"s", "t", "--config="}) == "`--config` needs a file name");
  // Never a credential in the reason.
  for (const Args& args :
       {Args{"http://u:secret@a/s", "t", "x"}, Args{"s", "t", "--server", "http://u:secret@h:x"},
        Args{"s", "t", "--header", "Authorization secret"}}) {
    CHECK(UsageReason(args).find("secret") == std::string::npos);
  }
}

TEST_CASE("replicate args: flags round trip into the same spec as the equivalent document") {
  ReplicationSpec s = SpecOf(Args{"http://u:p%40ss@a.example:5984/src",
                                  "http://b.example/tgt",
                                  "--continuous",
                                  "--create-target",
                                  "--create-target-params",
                                  R"({"q":1,"n":3})",
                                  "--filter",
                                  "app/even",
                                  "--query-params",
                                  R"( {"z":"1", "a":2} )",
                                  "--since-seq",
                                  "5-g1AAAA",
                                  "--winning-revs-only",
                                  "--no-checkpoints",
                                  "--checkpoint-interval",
                                  "5000",
                                  "--worker-processes",
                                  "2",
                                  "--worker-batch-size=100",
                                  "--http-connections",
                                  "7",
                                  "--connection-timeout",
                                  "60000",
                                  "--retries-per-request",
                                  "0",
                                  "--no-bulk-get",
                                  "--user-ctx-name",
                                  "joe",
                                  "--user-ctx-roles",
                                  "r1,r2",
                                  "--user-ctx-roles",
                                  "r3",
                                  "--header",
                                  "X-Both: 1",
                                  "--source-header",
                                  "X-Src:  two words ",
                                  "--target-header",
                                  "X-Tgt: 3"});
  ReplicationSpec d = SpecOf(std::string(
      R"({"source":{"url":"http://a.example:5984/src","auth":{"basic":{"username":"u","password":"p@ss"}},)"
      R"("headers":{"X-Both":"1","X-Src":"two words"}},)"
      R"("target":{"url":"http://b.example/tgt","headers":{"X-Both":"1","X-Tgt":"3"}},)"
      R"("continuous":true,"create_target":true,"create_target_params":{"q":1,"n":3},)"
      R"("filter":"app/even","query_params":{"z":"1","a":2},"since_seq":"5-g1AAAA",)"
      R"("winning_revs_only":true,"use_checkpoints":false,"checkpoint_interval":5000,)"
      R"("worker_processes":2,"worker_batch_size":100,"http_connections":7,)"
      R"("connection_timeout":60000,"retries_per_request":0,"use_bulk_get":false,)"
      R"("user_ctx":{"name":"joe","roles":["r1","r2","r3"]}})"));
  CHECK(Fingerprint(s) == Fingerprint(d));
  CHECK(s.source.endpoint.credentials.password == "p@ss");
  CHECK(s.source.endpoint.headers == Headers{{"X-Both", "1"}, {"X-Src", "two words"}});
  CHECK(s.target.endpoint.headers == Headers{{"X-Both", "1"}, {"X-Tgt", "3"}});
  CHECK(s.query_params_json == R"({"z":"1","a":2})");
  CHECK(s.since_seq_json == R"("5-g1AAAA")");
  CHECK(s.checkpoint_interval == std::chrono::seconds(5));
  CHECK(s.retries_per_request == 0);
  CHECK(s.user_ctx.roles == std::vector<std::string>{"r1", "r2", "r3"});
  CHECK(IdInputsFor(s, "u", "f").filter.query_params_json ==
        IdInputsFor(d, "u", "f").filter.query_params_json);

  // doc_ids: comma-separated, repeatable, empty items skipped.
  s = SpecOf(Args{"a", "b", "--doc-ids", "x,y,", "--doc-ids=z", "--doc-ids", "a/b+c"});
  CHECK(s.filter_kind == ReplicationSpec::FilterKind::kDocIds);
  CHECK(s.doc_ids == std::vector<std::string>{"x", "y", "z", "a/b+c"});
  CHECK(Fingerprint(s) ==
        Fingerprint(SpecOf(R"({"source":"a","target":"b","doc_ids":["x","y","z","a/b+c"]})")));

  // selector and since_seq as JSON.
  s = SpecOf(Args{"a", "b", "--selector", R"({"n":{"$gt":1}})", "--since-seq", "42"});
  CHECK(s.selector_json == R"({"n":{"$gt":1}})");
  CHECK(s.since_seq_json == "42");
  CHECK(SpecOf(Args{"a", "b", "--since-seq", R"("now")"}).since_seq_json == R"("now")");
  // roles without a name.
  s = SpecOf(Args{"a", "b", "--user-ctx-roles", "_admin"});
  CHECK(s.user_ctx.present);
  CHECK_FALSE(s.user_ctx.name.has_value());
  CHECK(s.user_ctx.HasRole("_admin"));
}

TEST_CASE("replicate args: field rules are the document's") {
  // Flags only check syntax; bounds and URL rules come from ParseReplicationDoc.
  auto r = ParseReplicationDoc(
      ParseOk({"s", "t", "--worker-processes", "100000000000000000000"}).doc_json, {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().reason == "`worker_processes` must be at most 128");
  r = ParseReplicationDoc(ParseOk({"ftp://x/y", "t"}).doc_json, {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().reason == "`source`: unsupported scheme `ftp` (only http and https)");
  r = ParseReplicationDoc(ParseOk({"s", "t", "--filter", "nofilter"}).doc_json, {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().reason == "`filter` must be \"ddoc/name\" or a built-in filter such as `_view`");
}

}  // namespace
}  // namespace couchrepd

// _changes through CouchClient: every feed kind, filters, and a continuous
// feed that the server drops mid-stream.
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "couch/client_fixture.h"
#include "couchrepd/json.h"

using namespace couchrepd;
using namespace couchrepd::testing;
using namespace std::chrono_literals;

namespace {

void PutDocs(CouchClient& db, int from, int to) {
  std::vector<std::string> docs;
  for (int i = from; i < to; ++i) {
    docs.push_back("{\"_id\":\"doc" + std::to_string(i) + "\",\"n\":" + std::to_string(i) +
                   ",\"type\":\"" + (i % 2 ? "odd" : "even") + "\"}");
  }
  auto r = db.BulkDocs(docs, true);
  REQUIRE(r.ok());
}

std::vector<ChangeRow> Collect(CouchClient& db, const ChangesRequest& req,
                               ChangesResult* result = nullptr) {
  std::vector<ChangeRow> rows;
  auto r = db.Changes(req, [&](ChangeRow&& row) {
    rows.push_back(std::move(row));
    return true;
  });
  REQUIRE_MESSAGE(r.ok(), r.error().Message());
  if (result) *result = *r;
  return rows;
}

std::set<std::string> Ids(const std::vector<ChangeRow>& rows) {
  std::set<std::string> ids;
  for (const auto& r : rows) ids.insert(r.id);
  return ids;
}

}  // namespace

TEST_CASE("normal feed: since, limit, include_docs, style=all_docs and resuming by sequence") {
  TestServer server;
  auto db = ServerClient(server).Database("feed");
  REQUIRE(db.CreateDb().ok());
  PutDocs(db, 0, 10);
  REQUIRE(db.BulkDocs({R"({"_id":"doc0","_rev":"1-zzzz","branch":true})"}, false).ok());

  ChangesRequest req;
  ChangesResult result;
  auto rows = Collect(db, req, &result);
  CHECK(rows.size() == 10);
  CHECK(result.complete);
  REQUIRE(result.last_seq.has_value());
  for (const auto& r : rows) {
    if (server.opaque_seqs()) CHECK(r.seq.front() == '"');
    if (r.id == "doc0") CHECK(r.revs.size() == 2);  // both leaves with style=all_docs
  }

  req.limit = 4;
  req.include_docs = true;
  auto first = Collect(db, req, &result);
  REQUIRE(first.size() == 4);
  CHECK(first[0].doc.find("\"_id\"") != std::string::npos);
  req.since = result.last_seq;
  req.limit.reset();
  auto rest = Collect(db, req);
  CHECK(rest.size() == 6);
  auto all = Ids(first);
  for (auto& id : Ids(rest)) CHECK(all.insert(id).second);
  CHECK(all.size() == 10);

  ChangesRequest main_only;
  main_only.style = "main_only";
  for (const auto& r : Collect(db, main_only)) CHECK(r.revs.size() == 1);
}

TEST_CASE("filters: _doc_ids and _selector by POST, user filter with query params, _view") {
  TestServer server;
  auto db = ServerClient(server).Database("filtered");
  REQUIRE(db.CreateDb().ok());
  PutDocs(db, 0, 8);
  REQUIRE(db.PutDoc("_design/app", R"({
    "filters": {"bytype": "function(doc, req) { return doc.type === req.query.type; }"},
    "views": {"big": {"map": "function(doc) { if (doc.n >= 6) emit(doc._id); }"}}})")
              .ok());

  ChangesRequest ids;
  ids.filter = "_doc_ids";
  ids.doc_ids = {"doc2", "doc5", "nope"};
  CHECK(Ids(Collect(db, ids)) == std::set<std::string>{"doc2", "doc5"});

  ChangesRequest sel;
  sel.filter = "_selector";
  sel.selector_json = R"({"n":{"$gt":5}})";
  CHECK(Ids(Collect(db, sel)) == std::set<std::string>{"doc6", "doc7"});

  ChangesRequest user;
  user.filter = "app/bytype";
  user.query_params = {{"type", "odd"}};
  CHECK(Ids(Collect(db, user)) == std::set<std::string>{"doc1", "doc3", "doc5", "doc7"});

  ChangesRequest view;
  view.filter = "_view";
  view.query_params = {{"view", "app/big"}};
  CHECK(Ids(Collect(db, view)) == std::set<std::string>{"doc6", "doc7"});

  ChangesRequest bad;
  bad.filter = "app/nosuchfilter";
  auto r = db.Changes(bad, [](ChangeRow&&) { return true; });
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().http_status == 404);
  // The server survived the bad request.
  CHECK(db.GetDbInfo().ok());
}

TEST_CASE("longpoll waits for a change; continuous with timeout ends with last_seq") {
  TestServer server;
  auto db = ServerClient(server).Database("live");
  REQUIRE(db.CreateDb().ok());
  PutDocs(db, 0, 3);

  ChangesRequest lp;
  lp.feed = ChangesRequest::Feed::kLongpoll;
  lp.since = "now";
  lp.timeout = 300ms;
  ChangesResult result;
  auto none = Collect(db, lp, &result);
  CHECK(none.empty());
  REQUIRE(result.last_seq.has_value());

  std::thread writer([&] {
    std::this_thread::sleep_for(200ms);
    auto w = ServerClient(server).Database("live");
    PutDocs(w, 3, 4);
  });
  lp.since = result.last_seq;
  lp.timeout = 10s;
  auto one = Collect(db, lp);
  writer.join();
  CHECK(Ids(one) == std::set<std::string>{"doc3"});

  ChangesRequest cont;
  cont.feed = ChangesRequest::Feed::kContinuous;
  cont.timeout = 300ms;
  auto rows = Collect(db, cont, &result);
  CHECK(rows.size() == 4);
  CHECK(result.complete);
  CHECK(result.last_seq == rows.back().seq);

  cont.limit = 2;
  CHECK(Collect(db, cont).size() == 2);
}

TEST_CASE("a continuous feed with heartbeats that the server drops is resumed from the last sequence") {
  TestServer server;
  auto db = ServerClient(server).Database("follow");
  REQUIRE(db.CreateDb().ok());
  PutDocs(db, 0, 5);

  std::mutex mu;
  std::vector<ChangeRow> rows;
  std::vector<std::string> reconnects;
  CancelToken cancel;
  ChangesRequest req;
  req.heartbeat = 200ms;
  req.include_docs = true;
  auto follower = std::thread([&] {
    auto r = db.FollowChanges(
        req,
        [&](ChangeRow&& row) {
          std::lock_guard<std::mutex> lock(mu);
          rows.push_back(std::move(row));
          return true;
        },
        cancel, [&](const Error& e) {
          std::lock_guard<std::mutex> lock(mu);
          reconnects.push_back(e.Message());
        });
    CHECK(r.ok());
  });
  auto wait_rows = [&](size_t n) {
    for (int i = 0; i < 200; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (rows.size() >= n) return true;
      }
      std::this_thread::sleep_for(25ms);
    }
    return false;
  };
  REQUIRE(wait_rows(5));
  auto closed = server.Request("POST", "/_test/close_feeds");
  CHECK(closed.status == 200);
  auto writer = ServerClient(server).Database("follow");
  PutDocs(writer, 5, 8);
  REQUIRE(wait_rows(8));
  std::this_thread::sleep_for(300ms);  // heartbeats keep it alive; nothing is repeated
  cancel.Cancel();
  follower.join();

  std::lock_guard<std::mutex> lock(mu);
  CHECK(rows.size() == 8);
  std::set<std::string> ids;
  for (const auto& r : rows) ids.insert(r.id);
  CHECK(ids.size() == 8);
  CHECK(reconnects.size() >= 1);
}

TEST_CASE("cancelling a continuous feed returns promptly") {
  TestServer server;
  auto db = ServerClient(server).Database("cancel");
  REQUIRE(db.CreateDb().ok());
  CancelToken cancel;
  ChangesRequest req;
  req.heartbeat = 10s;
  auto t0 = std::chrono::steady_clock::now();
  std::thread canceller([&] {
    std::this_thread::sleep_for(200ms);
    cancel.Cancel();
  });
  auto r = db.FollowChanges(req, [](ChangeRow&&) { return true; }, cancel);
  canceller.join();
  CHECK(r.ok());
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}

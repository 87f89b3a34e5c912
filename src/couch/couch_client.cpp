#include "couchrepd/couch_client.h"

#include <simdjson.h>

#include <algorithm>
#include <optional>

#include "couchrepd/encoding.h"
#include "couchrepd/json.h"
#include "couchrepd/limits.h"
#include "http_session.h"

namespace couchrepd {

namespace {

// Keep GET URLs below this many bytes (CouchDB and proxies refuse longer ones).
constexpr size_t kMaxUrlBytes = 7000;
// FollowChanges reconnect backoff.
constexpr Duration kFeedRetryInitial = std::chrono::milliseconds(250);
constexpr Duration kFeedRetryMax = std::chrono::seconds(30);

std::string BuildQuery(const QueryParams& query) {
  std::string out;
  for (const auto& [k, v] : query) {
    out += out.empty() ? "?" : "&";
    out += PercentEncode(k) + "=" + EncodeQueryValue(v);
  }
  return out;
}

std::string JsonStringArray(const std::vector<std::string>& items) {
  JsonWriter w;
  w.BeginArray();
  for (const auto& s : items) w.String(s);
  w.EndArray();
  return w.Take();
}

Error BadJson(std::string_view what) {
  return Error::Temporary("bad_response", std::string(what) + " was not the JSON expected");
}

std::string ToString(std::string_view s) { return std::string(s); }

// Raw JSON text of an ondemand value (consumes it).
std::string RawJson(simdjson::ondemand::value v) {
  std::string_view raw;
  simdjson::ondemand::json_type type;
  if (v.type().get(type) != simdjson::SUCCESS) return "";
  if (type == simdjson::ondemand::json_type::object) {
    simdjson::ondemand::object o;
    if (v.get_object().get(o) != simdjson::SUCCESS || o.raw_json().get(raw) != simdjson::SUCCESS) {
      return "";
    }
  } else if (type == simdjson::ondemand::json_type::array) {
    simdjson::ondemand::array a;
    if (v.get_array().get(a) != simdjson::SUCCESS || a.raw_json().get(raw) != simdjson::SUCCESS) {
      return "";
    }
  } else {
    raw = v.raw_json_token();
  }
  while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' ||
                          raw.back() == '\t' || raw.back() == ',')) {
    raw.remove_suffix(1);
  }
  return std::string(raw);
}

Result<DocWriteResult> ParseWriteResult(const HttpResponse& r) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  DocWriteResult out;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) return BadJson("a write answer");
  if (doc.is_array()) {  // PouchDB answers `[]` to PUT ?new_edits=false
    out.ok = true;
    return out;
  }
  std::string_view s;
  if (doc["id"].get(s) == simdjson::SUCCESS) out.id = ToString(s);
  if (doc["rev"].get(s) == simdjson::SUCCESS) out.rev = ToString(s);
  bool ok = false;
  out.ok = doc["ok"].get(ok) == simdjson::SUCCESS && ok;
  return out;
}

}  // namespace

CouchClient::CouchClient(Endpoint endpoint, HttpOptions options, Clock& clock)
    : endpoint_(std::move(endpoint)) {
  endpoint_.url = endpoint_.url.WithTrailingSlash();
  endpoint_.url.user.reset();
  endpoint_.url.password.reset();
  session_ = std::make_shared<HttpSession>(endpoint_.url, endpoint_.credentials,
                                           std::move(options), clock);
}

CouchClient::CouchClient(Endpoint endpoint, std::shared_ptr<HttpSession> session)
    : endpoint_(std::move(endpoint)), session_(std::move(session)) {}

CouchClient::~CouchClient() = default;
CouchClient::CouchClient(const CouchClient&) = default;
CouchClient& CouchClient::operator=(const CouchClient&) = default;

CouchClient CouchClient::Database(std::string_view name) const {
  Endpoint e = endpoint_;
  e.url.path += EncodeDbName(name) + "/";
  e.url.query.clear();
  return CouchClient(std::move(e), session_);
}

namespace {

// Joins the endpoint path with a relative path ("" = the endpoint itself).
std::string Target(const Endpoint& e, std::string_view relative, const QueryParams& query) {
  std::string target;
  if (!relative.empty() && relative.front() == '/') {
    target = std::string(relative);
  } else {
    target = e.url.path + std::string(relative);
  }
  std::string q = BuildQuery(query);
  if (!e.url.query.empty()) {
    q = (q.empty() ? "?" : q + "&") + e.url.query;
  }
  return target + q;
}

HttpCall MakeCall(const Endpoint& e, std::string method, std::string_view relative,
                  const QueryParams& query = {}) {
  HttpCall call;
  call.method = std::move(method);
  call.target = Target(e, relative, query);
  call.headers = e.headers;
  call.endpoint_headers = e.headers.size();
  return call;
}

// `text` as simdjson input without a copy when its capacity has room for the
// padding (bodies read whole are reserved so), else a padded copy in `copy`.
simdjson::padded_string_view Padded(const std::string& text, simdjson::padded_string& copy) {
  if (text.capacity() - text.size() >= simdjson::SIMDJSON_PADDING) {
    return simdjson::padded_string_view(text.data(), text.size(), text.capacity());
  }
  copy = simdjson::padded_string(text);
  return simdjson::padded_string_view(copy.data(), copy.size(), copy.size() + simdjson::SIMDJSON_PADDING);
}

std::string What(const HttpCall& call, const Endpoint& e) {
  return call.method + " " + e.url.Origin() + call.target.substr(0, call.target.find('?'));
}

Result<HttpResponse> Expect2xx(HttpSession& session, HttpCall& call, const Endpoint& e) {
  auto r = session.Execute(call);
  if (!r.ok()) return r.error();
  if (r->status / 100 != 2) return ErrorFromResponse(*r, What(call, e));
  return r;
}

}  // namespace

void CouchClient::SetCancel(CancelToken* cancel) { session_->SetDefaultCancel(cancel); }

Result<HttpResponse> CouchClient::Send(const HttpRequest& request) {
  HttpCall call = MakeCall(endpoint_, request.method, request.path, request.query);
  for (const auto& h : request.headers) call.headers.push_back(h);
  call.body = request.body;
  call.content_type = request.content_type;
  return Expect2xx(*session_, call, endpoint_);
}

Result<ServerInfo> CouchClient::GetServerInfo() {
  HttpCall call = MakeCall(endpoint_, "GET", "/");
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r->body).get(doc) != simdjson::SUCCESS || !doc.is_object()) {
    return BadJson("GET " + endpoint_.url.Origin() + "/");
  }
  ServerInfo info;
  std::string_view s;
  if (doc["uuid"].get(s) == simdjson::SUCCESS) info.uuid = ToString(s);
  if (doc["version"].get(s) == simdjson::SUCCESS) info.version = ToString(s);
  simdjson::dom::element vendor;
  if (doc["vendor"].get(vendor) == simdjson::SUCCESS && vendor["name"].get(s) == simdjson::SUCCESS) {
    info.vendor = ToString(s);
  }
  info.json = r->body;
  return info;
}

Result<std::vector<std::string>> CouchClient::AllDbs() {
  HttpCall call = MakeCall(endpoint_, "GET", "/_all_dbs");
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  simdjson::dom::parser parser;
  simdjson::dom::array arr;
  if (parser.parse(r->body).get(arr) != simdjson::SUCCESS) return BadJson("_all_dbs");
  std::vector<std::string> out;
  for (auto el : arr) {
    std::string_view s;
    if (el.get(s) == simdjson::SUCCESS) out.emplace_back(s);
  }
  return out;
}

Result<DbInfo> CouchClient::GetDbInfo() {
  HttpCall call = MakeCall(endpoint_, "GET", "");
  auto r = session_->Execute(call);
  if (!r.ok()) return r.error();
  if (r->status == 404) {
    return Error::Permanent("db_not_found", "could not open " + DisplayUrl(), 404);
  }
  if (r->status == 401 || r->status == 403) {
    Error e = ErrorFromResponse(*r, What(call, endpoint_));
    return Error::Permanent("unauthorized", "could not open " + DisplayUrl() + ": " + e.reason,
                            r->status);
  }
  if (r->status / 100 != 2) return ErrorFromResponse(*r, What(call, endpoint_));
  simdjson::ondemand::parser parser;
  simdjson::padded_string copy;
  simdjson::padded_string_view body = Padded(r->body, copy);
  DbInfo info;
  info.json = r->body;
  auto doc = parser.iterate(body);
  simdjson::ondemand::object obj;
  if (doc.get_object().get(obj) != simdjson::SUCCESS) return BadJson("db info");
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS) return BadJson("db info");
    simdjson::ondemand::value v = field.value();
    if (key == "db_name") {
      std::string_view s;
      if (v.get_string().get(s) == simdjson::SUCCESS) info.db_name = ToString(s);
    } else if (key == "update_seq") {
      info.update_seq = RawJson(v);
    } else if (key == "instance_start_time") {
      std::string raw = RawJson(v);
      if (raw.size() >= 2 && raw.front() == '"') raw = raw.substr(1, raw.size() - 2);
      info.instance_start_time = raw;
    } else if (key == "doc_count") {
      int64_t n;
      if (v.get_int64().get(n) == simdjson::SUCCESS) info.doc_count = n;
    } else if (key == "doc_del_count") {
      int64_t n;
      if (v.get_int64().get(n) == simdjson::SUCCESS) info.doc_del_count = n;
    }
  }
  if (info.update_seq.empty()) return BadJson("db info (no update_seq)");
  return info;
}

Status CouchClient::CreateDb(const QueryParams& params) {
  HttpCall call = MakeCall(endpoint_, "PUT", "", params);
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  return OkStatus();
}

Status CouchClient::DeleteDb() {
  HttpCall call = MakeCall(endpoint_, "DELETE", "");
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  return OkStatus();
}

Result<ChangesResult> CouchClient::Changes(const ChangesRequest& request,
                                           const ChangesParser::RowHandler& on_row,
                                           CancelToken* cancel) {
  QueryParams q;
  switch (request.feed) {
    case ChangesRequest::Feed::kNormal: q.emplace_back("feed", "normal"); break;
    case ChangesRequest::Feed::kLongpoll: q.emplace_back("feed", "longpoll"); break;
    case ChangesRequest::Feed::kContinuous: q.emplace_back("feed", "continuous"); break;
  }
  q.emplace_back("style", request.style);
  if (request.since) {
    q.emplace_back("since", *request.since == "now" ? "now" : SeqToSinceParam(*request.since));
  }
  if (request.heartbeat) q.emplace_back("heartbeat", std::to_string(request.heartbeat->count()));
  if (request.timeout) q.emplace_back("timeout", std::to_string(request.timeout->count()));
  if (request.limit) q.emplace_back("limit", std::to_string(*request.limit));
  if (request.include_docs) q.emplace_back("include_docs", "true");
  if (request.descending) q.emplace_back("descending", "true");
  if (!request.filter.empty()) q.emplace_back("filter", request.filter);
  for (const auto& p : request.query_params) q.push_back(p);

  HttpCall call = MakeCall(endpoint_, "GET", "_changes", q);
  if (request.filter == "_doc_ids") {
    call.method = "POST";
    call.body = "{\"doc_ids\":" + JsonStringArray(request.doc_ids) + "}";
    call.content_type = "application/json";
  } else if (request.filter == "_selector") {
    call.method = "POST";
    call.body = "{\"selector\":" + request.selector_json + "}";
    call.content_type = "application/json";
  }
  const bool continuous = request.feed == ChangesRequest::Feed::kContinuous;
  // A feed does not count against the session's cap: a reader blocked on
  // a full queue would hold a slot while the workers that drain the queue
  // wait for one (with http_connections: 1 the job would never end). A
  // normal feed takes a pooled connection (a job's pass reuses what the
  // last one left); the host's cap never stalls (connection_pool.h).
  call.outside_session_cap = true;
  if (continuous || request.feed == ChangesRequest::Feed::kLongpoll) {
    // Long-lived: a connection of its own.
    call.dedicated = true;
    if (request.heartbeat) {
      // A feed silent for twice the heartbeat is dead.
      call.read_timeout = *request.heartbeat * 2;
    } else if (request.timeout) {
      call.read_timeout = *request.timeout + session_->options().inactivity_timeout;
    }
  }
  ChangesParser parser(continuous ? FeedKind::kContinuous : FeedKind::kNormal,
                       static_cast<size_t>(session_->options().max_response_bytes));
  ChangesResult result;
  std::optional<Error> parse_error;
  bool stopped = false;
  std::optional<std::string> last_row_seq;
  auto row_handler = [&](ChangeRow&& row) {
    last_row_seq = row.seq;
    ++result.rows;
    if (!on_row(std::move(row))) {
      stopped = true;
      return false;
    }
    return true;
  };
  call.cancel = cancel;
  if (request.on_open) {
    call.on_head = [&](const HttpResponse&) { request.on_open(); };
  }
  call.on_data = [&](std::string_view chunk) {
    Status s = parser.Feed(chunk, row_handler);
    if (!s.ok()) {
      if (!stopped) parse_error = s.error();
      return false;
    }
    return !stopped;
  };
  auto r = session_->Execute(call);
  auto finish = [&]() {
    result.last_seq = parser.last_seq() ? parser.last_seq() : last_row_seq;
    result.pending = parser.pending();
    result.complete = parser.complete();
  };
  if (parse_error) return *parse_error;
  if (!r.ok()) {
    if (stopped) {
      finish();
      return result;
    }
    Error e = r.error();
    if (last_row_seq) e.reason += " (last sequence received: " + *last_row_seq + ")";
    return e;
  }
  if (r->status / 100 != 2) return ErrorFromResponse(*r, What(call, endpoint_));
  if (!stopped) {
    Status s = parser.Finish();
    if (!s.ok()) {
      Error e = s.error();
      e.kind = ErrorKind::kTemporary;  // a cut stream: try again from the last sequence
      return e;
    }
  }
  finish();
  if (continuous && !stopped && !result.complete) {
    return Error::Temporary("feed_dropped", "the continuous _changes feed of " + DisplayUrl() +
                                                " ended without a last_seq line");
  }
  return result;
}

Result<ChangesResult> CouchClient::FollowChanges(ChangesRequest request,
                                                 const ChangesParser::RowHandler& on_row,
                                                 CancelToken& cancel,
                                                 const std::function<void(const Error&)>& on_reconnect) {
  request.feed = ChangesRequest::Feed::kContinuous;
  Duration wait = kFeedRetryInitial;
  ChangesResult total;
  bool stopped = false;
  // Reconnecting is for a feed that was cut, not for a server that stays
  // away: failures without a row in between end the feed (its job crashes,
  // and is visibly `crashing`) once they outlast retry.request_budget.
  bool failing = false;  // since failing_since, without a row
  TimePoint failing_since{};
  auto handler = [&](ChangeRow&& row) {
    request.since = row.seq;
    total.last_seq = row.seq;
    ++total.rows;
    if (!on_row(std::move(row))) {
      stopped = true;
      return false;
    }
    return true;
  };
  while (!cancel.cancelled()) {
    uint64_t rows_before = total.rows;
    auto r = Changes(request, handler, &cancel);
    if (stopped || cancel.cancelled()) return total;
    Error reason;
    if (total.rows > rows_before) failing = false;
    if (r.ok()) {
      failing = false;
      if (r->last_seq) request.since = r->last_seq;
      total.last_seq = request.since;
      if (!request.heartbeat && request.timeout) {
        // A feed with a timeout and no heartbeat ends by design: go on.
        wait = kFeedRetryInitial;
        continue;
      }
      reason = Error::Temporary("feed_ended", "the server ended the continuous feed");
    } else {
      // Out of file descriptors: retrying at once only spins (SPEC §10).
      if (!r.error().temporary() || r.error().error == "too_many_open_files") return r.error();
      reason = r.error();
      const TimePoint now = session_->clock().Now();
      if (!failing) {
        failing = true;
        failing_since = now;
      } else if (now - failing_since > session_->options().retry.budget) {
        Error e = reason;
        e.reason = "the changes feed kept failing past retry.request_budget: " + e.reason;
        return e;
      }
    }
    if (total.rows > rows_before) wait = kFeedRetryInitial;
    if (on_reconnect) on_reconnect(reason);
    if (!SleepUnlessCancelled(session_->clock(), wait, &cancel)) return total;
    wait = std::min(wait * 2, kFeedRetryMax);
  }
  return total;
}

Result<std::vector<RevsDiffEntry>> CouchClient::RevsDiff(
    const std::vector<std::pair<std::string, std::vector<std::string>>>& revs) {
  JsonWriter w;
  w.BeginObject();
  for (const auto& [id, list] : revs) {
    w.Key(id).BeginArray();
    for (const auto& rev : list) w.String(rev);
    w.EndArray();
  }
  w.EndObject();
  HttpCall call = MakeCall(endpoint_, "POST", "_revs_diff");
  call.body = w.Take();
  call.content_type = "application/json";
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(r->body).get(obj) != simdjson::SUCCESS) return BadJson("_revs_diff");
  std::vector<RevsDiffEntry> out;
  for (auto [key, value] : obj) {
    RevsDiffEntry e;
    e.id = ToString(key);
    simdjson::dom::array arr;
    if (value["missing"].get(arr) == simdjson::SUCCESS) {
      for (auto el : arr) {
        std::string_view s;
        if (el.get(s) == simdjson::SUCCESS) e.missing.emplace_back(s);
      }
    }
    if (value["possible_ancestors"].get(arr) == simdjson::SUCCESS) {
      for (auto el : arr) {
        std::string_view s;
        if (el.get(s) == simdjson::SUCCESS) e.possible_ancestors.emplace_back(s);
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<BulkGetDoc>> CouchClient::BulkGet(const std::vector<BulkGetItem>& items,
                                                     bool attachments) {
  JsonWriter w;
  w.BeginObject().Key("docs").BeginArray();
  for (const auto& item : items) {
    w.BeginObject().Key("id").String(item.id);
    if (!item.rev.empty()) w.Key("rev").String(item.rev);
    if (!item.atts_since.empty()) {
      w.Key("atts_since").BeginArray();
      for (const auto& a : item.atts_since) w.String(a);
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndArray().EndObject();
  QueryParams q{{"revs", "true"}, {"latest", "true"}};
  if (attachments) q.emplace_back("attachments", "true");
  HttpCall call = MakeCall(endpoint_, "POST", "_bulk_get", q);
  call.body = w.Take();
  call.content_type = "application/json";
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();

  simdjson::ondemand::parser parser;
  simdjson::padded_string copy;
  simdjson::padded_string_view body = Padded(r->body, copy);
  std::vector<BulkGetDoc> out;
  auto doc = parser.iterate(body);
  simdjson::ondemand::array results;
  if (doc["results"].get_array().get(results) != simdjson::SUCCESS) return BadJson("_bulk_get");
  for (auto result_value : results) {
    simdjson::ondemand::object result;
    if (result_value.get_object().get(result) != simdjson::SUCCESS) return BadJson("_bulk_get");
    std::string id;
    std::string_view s;
    simdjson::ondemand::array docs;
    bool have_docs = false;
    for (auto field : result) {
      std::string_view key;
      if (field.unescaped_key().get(key) != simdjson::SUCCESS) return BadJson("_bulk_get");
      if (key == "id") {
        if (field.value().get_string().get(s) == simdjson::SUCCESS) id = ToString(s);
      } else if (key == "docs") {
        if (field.value().get_array().get(docs) != simdjson::SUCCESS) return BadJson("_bulk_get");
        have_docs = true;
        for (auto entry_value : docs) {
          simdjson::ondemand::object entry;
          if (entry_value.get_object().get(entry) != simdjson::SUCCESS) return BadJson("_bulk_get");
          BulkGetDoc d;
          d.id = id;
          bool any = false;
          for (auto ef : entry) {
            std::string_view ek;
            if (ef.unescaped_key().get(ek) != simdjson::SUCCESS) return BadJson("_bulk_get");
            any = true;
            if (ek == "ok") {
              d.ok = true;
              d.json = RawJson(ef.value());
            } else if (ek == "error") {
              // CouchDB: {"error":{"id","rev","error","reason"}}
              simdjson::ondemand::object err;
              if (ef.value().get_object().get(err) == simdjson::SUCCESS) {
                for (auto f : err) {
                  std::string_view k2, v2;
                  if (f.unescaped_key().get(k2) != simdjson::SUCCESS) continue;
                  if (f.value().get_string().get(v2) != simdjson::SUCCESS) continue;
                  if (k2 == "id") d.id = ToString(v2);
                  if (k2 == "rev") d.rev = ToString(v2);
                  if (k2 == "error") d.error = CapText(v2, 100);
                  if (k2 == "reason") d.reason = CapText(v2);
                }
              }
            } else if (ek == "missing") {
              // PouchDB: {"missing": rev}
              if (ef.value().get_string().get(s) == simdjson::SUCCESS) d.rev = ToString(s);
              d.error = "not_found";
              d.reason = "missing";
            }
          }
          if (!any) {  // PouchDB: {} for a missing document
            d.error = "not_found";
            d.reason = "missing";
          }
          if (d.ok) {
            // The rev of an ok doc, for callers matching requests to answers.
            simdjson::dom::parser p2;
            simdjson::dom::element el;
            if (p2.parse(d.json).get(el) == simdjson::SUCCESS &&
                el["_rev"].get(s) == simdjson::SUCCESS) {
              d.rev = ToString(s);
            }
          }
          out.push_back(std::move(d));
        }
      }
    }
    if (!have_docs) return BadJson("_bulk_get (a result without docs)");
  }
  return out;
}

Result<std::vector<OpenRevsDoc>> CouchClient::OpenRevs(std::string_view doc_id,
                                                       const std::vector<std::string>& revs,
                                                       const OpenRevsOptions& options) {
  QueryParams q;
  if (options.revs) q.emplace_back("revs", "true");
  if (options.latest) q.emplace_back("latest", "true");
  q.emplace_back("open_revs", revs.empty() ? "all" : JsonStringArray(revs));
  if (!options.atts_since.empty()) q.emplace_back("atts_since", JsonStringArray(options.atts_since));
  if (options.attachments) q.emplace_back("attachments", "true");
  HttpCall call = MakeCall(endpoint_, "GET", EncodeDocId(doc_id), q);
  if (call.target.size() > kMaxUrlBytes && revs.size() > 1) {
    // Split the revision list so every URL stays short enough.
    std::vector<OpenRevsDoc> all;
    size_t half = revs.size() / 2;
    for (auto part : {std::vector<std::string>(revs.begin(), revs.begin() + static_cast<long>(half)),
                      std::vector<std::string>(revs.begin() + static_cast<long>(half), revs.end())}) {
      auto r = OpenRevs(doc_id, part, options);
      if (!r.ok()) return r.error();
      for (auto& d : *r) all.push_back(std::move(d));
    }
    return all;
  }
  call.headers.emplace_back("Accept", options.allow_multipart && options.attachments
                                          ? "multipart/mixed, application/json"
                                          : "application/json");
  std::optional<OpenRevsMultipartReader> reader;
  std::string json_body;
  std::optional<Error> reader_error;
  call.on_head = [&](const HttpResponse& head) {
    auto ct = head.Header("content-type");
    if (ct && ct->rfind("multipart/mixed", 0) == 0) {
      auto boundary = MultipartBoundary(*ct);
      if (boundary) reader.emplace(*boundary);
    }
  };
  // SPEC §10: the whole answer is capped like any response read whole (the
  // caller splits the revisions on response_too_large).
  const uint64_t cap = session_->options().max_response_bytes;
  uint64_t received = 0;
  call.on_data = [&](std::string_view chunk) {
    received += chunk.size();
    if (received > cap) {
      reader_error = Error::Permanent(
          "response_too_large", RedactSecrets(CapText(What(call, endpoint_))) +
                                    " answered more than " + std::to_string(cap) +
                                    " bytes (limits.max_response_bytes)");
      return false;
    }
    if (reader) {
      Status s = reader->Feed(chunk);
      if (!s.ok()) {
        reader_error = s.error();
        return false;
      }
      return true;
    }
    ReserveBody(json_body, json_body.size() + chunk.size(), 0, cap);
    json_body.append(chunk);
    return true;
  };
  auto r = session_->Execute(call);
  if (reader_error) return *reader_error;
  if (!r.ok()) return r.error();
  if (r->status / 100 != 2) return ErrorFromResponse(*r, What(call, endpoint_));
  if (reader) return reader->Finish();

  simdjson::ondemand::parser parser;
  simdjson::padded_string copy;
  simdjson::padded_string_view body = Padded(json_body, copy);
  std::vector<OpenRevsDoc> out;
  auto doc = parser.iterate(body);
  simdjson::ondemand::array arr;
  if (doc.get_array().get(arr) != simdjson::SUCCESS) return BadJson("open_revs");
  for (auto item_value : arr) {
    simdjson::ondemand::object item;
    if (item_value.get_object().get(item) != simdjson::SUCCESS) return BadJson("open_revs");
    OpenRevsDoc d;
    for (auto f : item) {
      std::string_view k;
      if (f.unescaped_key().get(k) != simdjson::SUCCESS) return BadJson("open_revs");
      if (k == "ok") {
        d.json = RawJson(f.value());
      } else if (k == "missing") {
        std::string_view s;
        d.missing = true;
        if (f.value().get_string().get(s) == simdjson::SUCCESS) d.missing_rev = ToString(s);
      }
    }
    if (d.missing) d.json = "{\"missing\":" + JsonQuote(d.missing_rev) + "}";
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::vector<DocWriteResult>> CouchClient::BulkDocs(const std::vector<std::string>& docs_json,
                                                          bool new_edits) {
  std::string body = new_edits ? "{\"docs\":[" : "{\"new_edits\":false,\"docs\":[";
  size_t total = body.size() + 2;
  for (const auto& d : docs_json) total += d.size() + 1;
  body.reserve(total);
  for (size_t i = 0; i < docs_json.size(); ++i) {
    if (i) body.push_back(',');
    body += docs_json[i];
  }
  body += "]}";
  HttpCall call = MakeCall(endpoint_, "POST", "_bulk_docs");
  call.body = std::move(body);
  call.content_type = "application/json";
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  simdjson::dom::parser parser;
  simdjson::dom::array arr;
  if (parser.parse(r->body).get(arr) != simdjson::SUCCESS) return BadJson("_bulk_docs");
  std::vector<DocWriteResult> out;
  for (auto el : arr) {
    DocWriteResult w;
    std::string_view s;
    if (el["id"].get(s) == simdjson::SUCCESS) w.id = ToString(s);
    if (el["rev"].get(s) == simdjson::SUCCESS) w.rev = ToString(s);
    if (el["error"].get(s) == simdjson::SUCCESS) w.error = CapText(s, 100);
    if (el["reason"].get(s) == simdjson::SUCCESS) w.reason = CapText(s);
    bool ok = false;
    w.ok = w.error.empty() && (el["ok"].get(ok) != simdjson::SUCCESS || ok);
    out.push_back(std::move(w));
  }
  return out;
}

Result<std::optional<std::string>> CouchClient::GetLocal(std::string_view id) {
  HttpCall call = MakeCall(endpoint_, "GET", "_local/" + PercentEncode(id));
  auto r = session_->Execute(call);
  if (!r.ok()) return r.error();
  if (r->status == 404) return std::optional<std::string>();
  if (r->status / 100 != 2) return ErrorFromResponse(*r, What(call, endpoint_));
  return std::optional<std::string>(r->body);
}

Result<DocWriteResult> CouchClient::PutLocal(std::string_view id, std::string_view json) {
  HttpCall call = MakeCall(endpoint_, "PUT", "_local/" + PercentEncode(id));
  call.body = std::string(json);
  call.content_type = "application/json";
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  return ParseWriteResult(*r);
}

Result<std::string> CouchClient::GetDoc(std::string_view id, const QueryParams& query) {
  HttpCall call = MakeCall(endpoint_, "GET", EncodeDocId(id), query);
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  return std::move(r->body);
}

Result<DocWriteResult> CouchClient::PutDoc(std::string_view id, std::string_view json,
                                           const QueryParams& query) {
  HttpCall call = MakeCall(endpoint_, "PUT", EncodeDocId(id), query);
  call.body = std::string(json);
  call.content_type = "application/json";
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  return ParseWriteResult(*r);
}

Result<DocWriteResult> CouchClient::DeleteDoc(std::string_view id, std::string_view rev) {
  HttpCall call = MakeCall(endpoint_, "DELETE", EncodeDocId(id), {{"rev", std::string(rev)}});
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  return ParseWriteResult(*r);
}

Result<DocWriteResult> CouchClient::PutDocMultipart(std::string_view id, std::string_view doc_json,
                                                    std::vector<StreamedAttachment> attachments,
                                                    bool new_edits) {
  MultipartRelatedWriter writer(RandomHex32());
  std::string head = writer.DocumentPart(doc_json);
  std::vector<std::string> part_heads;
  uint64_t total = head.size() + writer.Closing().size();
  for (const auto& a : attachments) {
    part_heads.push_back(writer.AttachmentPartHeader(a.name, a.content_type, a.encoding, a.length));
    total += part_heads.back().size() + a.length + writer.AttachmentPartEnd().size();
  }
  QueryParams q;
  if (!new_edits) q.emplace_back("new_edits", "false");
  HttpCall call = MakeCall(endpoint_, "PUT", EncodeDocId(id), q);
  call.content_type = writer.ContentType();
  call.upload_length = total;
  call.upload = [&](const std::function<bool(std::string_view)>& sink) {
    if (!sink(head)) return false;
    for (size_t i = 0; i < attachments.size(); ++i) {
      if (!sink(part_heads[i])) return false;
      uint64_t sent = 0;
      bool ok = attachments[i].provider([&](std::string_view data) {
        sent += data.size();
        return sent <= attachments[i].length && sink(data);
      });
      if (!ok || sent != attachments[i].length) return false;
      if (!sink(writer.AttachmentPartEnd())) return false;
    }
    return sink(writer.Closing());
  };
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  return ParseWriteResult(*r);
}

Result<AttachmentInfo> CouchClient::GetAttachment(std::string_view doc_id, std::string_view name,
                                                  std::string_view rev,
                                                  const std::function<bool(std::string_view)>& sink,
                                                  CancelToken* cancel) {
  QueryParams q;
  if (!rev.empty()) q.emplace_back("rev", std::string(rev));
  HttpCall call =
      MakeCall(endpoint_, "GET", EncodeDocId(doc_id) + "/" + EncodeAttachmentName(name), q);
  call.headers.emplace_back("Accept", "*/*");
  call.cancel = cancel;
  call.raw_body = true;
  AttachmentInfo info;
  call.on_head = [&](const HttpResponse& head) {
    info.content_type = head.Header("content-type").value_or("application/octet-stream");
    info.content_encoding = head.Header("content-encoding").value_or("");
    if (auto len = head.Header("content-length")) info.length = std::strtoll(len->c_str(), nullptr, 10);
    if (auto etag = head.Header("etag")) {
      std::string e = *etag;
      e.erase(std::remove(e.begin(), e.end(), '"'), e.end());
      info.digest = e;
    }
  };
  bool sink_failed = false;
  call.on_data = [&](std::string_view chunk) {
    if (!sink(chunk)) {
      sink_failed = true;
      return false;
    }
    return true;
  };
  auto r = session_->Execute(call);
  if (!r.ok()) return r.error();
  if (r->status / 100 != 2) return ErrorFromResponse(*r, What(call, endpoint_));
  if (sink_failed) return Error::Permanent("aborted", "the attachment's receiver stopped");
  return info;
}

Result<DocWriteResult> CouchClient::PutAttachment(
    std::string_view doc_id, std::string_view name, std::string_view rev,
    std::string_view content_type, uint64_t length,
    const std::function<bool(const std::function<bool(std::string_view)>&)>& provider) {
  QueryParams q;
  if (!rev.empty()) q.emplace_back("rev", std::string(rev));
  HttpCall call =
      MakeCall(endpoint_, "PUT", EncodeDocId(doc_id) + "/" + EncodeAttachmentName(name), q);
  call.content_type = std::string(content_type);
  call.upload_length = length;
  call.upload = provider;
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  return ParseWriteResult(*r);
}

Result<std::string> CouchClient::EnsureFullCommit() {
  HttpCall call = MakeCall(endpoint_, "POST", "_ensure_full_commit");
  call.content_type = "application/json";
  auto r = Expect2xx(*session_, call, endpoint_);
  if (!r.ok()) return r.error();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r->body).get(doc) != simdjson::SUCCESS) return BadJson("_ensure_full_commit");
  std::string_view s;
  if (doc["instance_start_time"].get(s) == simdjson::SUCCESS) return ToString(s);
  int64_t n;
  if (doc["instance_start_time"].get(n) == simdjson::SUCCESS) return std::to_string(n);
  return std::string("0");
}

}  // namespace couchrepd

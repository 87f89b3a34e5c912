#include "couchrepd/replication_id.h"

#include <openssl/evp.h>

#include <algorithm>
#include <map>

#include "couchrepd/erlang_term.h"

// Where the rules come from (Apache CouchDB 3.x sources):
//   couch_replicator_ids.erl      replication_id/2 (v4), get_v4_endpoint,
//                                 get_non_default_port, maybe_append_filters
//   couch_replicator_docs.erl     parse_rep_db (header sort/merge with the
//                                 defaults), convert_options (doc_ids)
//   couch_replicator_utils.erl    remove_basic_auth_from_headers (mochiweb)
//   couch_replicator_filters.erl  parse (ejsort of the normalised selector),
//                                 fetch_internal (filter source trimming)
//   mango_selector.erl            normalize: norm_ops, norm_fields,
//                                 norm_negations, negate

namespace couchrepd {

namespace {

Error BadRequest(std::string reason) { return Error::Permanent("bad_request", std::move(reason)); }

// ---------------------------------------------------------------------------
// Endpoint headers.
// ---------------------------------------------------------------------------

using Header = std::pair<std::string, std::string>;

// (#httpdb{})#httpdb.headers: Accept and CouchDB's own User-Agent
// ("CouchDB-Replicator/" ++ couch_server:get_version()). The version belongs
// to whichever CouchDB computed the id, so any CouchDB-Replicator/ value is
// taken to be the default.
constexpr std::string_view kDefaultUserAgentPrefix = "CouchDB-Replicator/";

bool IsDefaultHeader(const Header& h) {
  if (h.first == "Accept") return h.second == "application/json";
  if (h.first == "User-Agent") return h.second.rfind(kDefaultUserAgentPrefix, 0) == 0;
  return false;
}

// string:to_lower/1 on a char list: ASCII and Latin-1 capitals.
std::string LowerLatin1(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 0xC0 && u <= 0xD6) || (u >= 0xD8 && u <= 0xDE)) {
      c = static_cast<char>(u + 32);
    }
  }
  return out;
}

// mochiweb_headers:make/1 then to_list/1: names compared case-insensitively,
// a repeated name keeps its first spelling and joins the values with ", ",
// and the result is ordered by lowercased name.
std::map<std::string, Header> MochiwebHeaders(const std::vector<Header>& headers) {
  std::map<std::string, Header> tree;
  for (const auto& h : headers) {
    auto [it, inserted] = tree.emplace(LowerLatin1(h.first), h);
    if (!inserted) it->second.second += ", " + h.second;
  }
  return tree;
}

// couch_replicator_utils:maybe_remove_basic_auth: the value up to the first
// space, lowercased, must be "basic" and a space must follow.
bool IsBasicAuthorization(std::string_view value) {
  size_t space = value.find(' ');
  if (space == std::string_view::npos) return false;
  return LowerLatin1(value.substr(0, space)) == "basic";
}

std::vector<Header> IdHeaders(const std::vector<Header>& given) {
  // parse_rep_db: lists:ukeysort(1, Headers) -- sorted by name bytes, of equal
  // names only the first kept -- then lists:ukeymerge(1, Headers, Defaults):
  // a header named exactly like a default replaces it.
  std::vector<Header> headers = given;
  std::stable_sort(headers.begin(), headers.end(),
                   [](const Header& a, const Header& b) { return a.first < b.first; });
  headers.erase(std::unique(headers.begin(), headers.end(),
                            [](const Header& a, const Header& b) { return a.first == b.first; }),
                headers.end());
  const Header defaults[] = {{"Accept", "application/json"},
                             {"User-Agent", std::string(kDefaultUserAgentPrefix)}};
  for (const Header& d : defaults) {
    auto pos = std::lower_bound(headers.begin(), headers.end(), d,
                                [](const Header& a, const Header& b) { return a.first < b.first; });
    if (pos == headers.end() || pos->first != d.first) headers.insert(pos, d);
  }

  // normalize_basic_auth -> remove_basic_auth_from_headers: only when some
  // Authorization header exists does the list go through mochiweb_headers,
  // which re-orders it (lowercased names) and merges same-named headers; a
  // Basic one is then dropped (its user became the endpoint's user).
  bool has_authorization = std::any_of(headers.begin(), headers.end(), [](const Header& h) {
    return LowerLatin1(h.first) == "authorization";
  });
  if (has_authorization) {
    auto tree = MochiwebHeaders(headers);
    auto auth = tree.find("authorization");
    if (IsBasicAuthorization(auth->second.second)) tree.erase(auth);
    headers.clear();
    for (auto& entry : tree) headers.push_back(std::move(entry.second));
  }

  // get_rep_endpoint: Headers -- DefaultHeaders (exact name and value).
  bool removed_accept = false, removed_agent = false;
  std::vector<Header> out;
  for (auto& h : headers) {
    if (IsDefaultHeader(h)) {
      bool& removed = h.first == "Accept" ? removed_accept : removed_agent;
      if (!removed) {
        removed = true;
        continue;
      }
    }
    out.push_back(std::move(h));
  }
  return out;
}

// {remote, User, Host, Port, Path, Headers, undefined}
Term EndpointTerm(const IdEndpoint& ep) {
  std::string scheme = LowerLatin1(ep.scheme);
  // get_non_default_port: https:443, http:80 and http:5984 are `default`.
  bool default_port = (scheme == "https" && ep.port == 443) ||
                      (scheme == "http" && (ep.port == 80 || ep.port == 5984));
  std::vector<Term> headers;
  for (const auto& [name, value] : IdHeaders(ep.headers)) {
    headers.push_back(Term::Tuple({Term::CharList(name), Term::CharList(value)}));
  }
  return Term::Tuple({
      Term::Atom("remote"),
      ep.user ? Term::CharList(*ep.user) : Term::Atom("undefined"),   // User
      Term::CharList(ep.host),                                        // Host
      default_port ? Term::Atom("default") : Term::Integer(ep.port),  // Port
      Term::CharList(ep.path),                                        // Path
      Term::List(std::move(headers)),                                 // Headers
      Term::Atom("undefined"),  // the old OAuth slot, kept so ids stay stable
  });
}

// ---------------------------------------------------------------------------
// Mango selector normalisation (mango_selector:normalize/1), on EJSON terms.
// Each function mirrors the Erlang function of the same name clause by clause.
// ---------------------------------------------------------------------------

// The single {Key, Value} of a one-member object, or null.
const Term* SinglePair(const Term& t) {
  if (!t.IsObject() || t.ObjectPairs().size() != 1) return nullptr;
  return &t.ObjectPairs()[0];
}

Term Obj1(std::string key, Term value) {
  std::vector<std::pair<std::string, Term>> m;
  m.emplace_back(std::move(key), std::move(value));
  return Term::Object(std::move(m));
}

bool StartsWithDollar(const std::string& key) { return !key.empty() && key[0] == '$'; }

Error MangoError(std::string what) { return BadRequest("invalid selector: " + what); }

template <typename F>
Result<Term> MapList(const Term& list, F f) {
  std::vector<Term> out;
  for (const Term& e : list.elements()) {
    auto r = f(e);
    if (!r.ok()) return r.error();
    out.push_back(std::move(r).value());
  }
  return Term::List(std::move(out));
}

bool IsList(const Term& t) { return t.kind() == Term::Kind::kList; }
bool IsInteger(const Term& t) { return t.kind() == Term::Kind::kInteger; }
bool IsBinary(const Term& t) { return t.kind() == Term::Kind::kBinary; }

// Convert each operator into its normalised version and make implicit
// operators explicit; validates operator arguments.
Result<Term> NormOps(const Term& sel) {
  if (const Term* pair = SinglePair(sel)) {
    const std::string& op = pair->elements()[0].bytes();
    const Term& arg = pair->elements()[1];
    auto bad_arg = [&op] { return MangoError("bad argument to " + op); };
    if (op == "$and" || op == "$or" || op == "$nor") {
      if (!IsList(arg)) return bad_arg();
      auto args = MapList(arg, NormOps);
      if (!args.ok()) return args.error();
      return Obj1(op, std::move(args).value());
    }
    if (op == "$not" || op == "$elemMatch" || op == "$allMatch" || op == "$keyMapMatch") {
      if (!arg.IsObject()) return bad_arg();
      auto inner = NormOps(arg);
      if (!inner.ok()) return inner.error();
      return Obj1(op, std::move(inner).value());
    }
    if (op == "$in" || op == "$nin" || op == "$all")
      return IsList(arg) ? Result<Term>(sel) : bad_arg();
    if (op == "$exists") return arg.IsBoolean() ? Result<Term>(sel) : bad_arg();
    if (op == "$type") return IsBinary(arg) ? Result<Term>(sel) : bad_arg();
    if (op == "$mod") {
      bool ok = IsList(arg) && arg.elements().size() == 2 && IsInteger(arg.elements()[0]) &&
                IsInteger(arg.elements()[1]);
      return ok ? Result<Term>(sel) : bad_arg();
    }
    // CouchDB also checks that re:compile/1 (PCRE) accepts the pattern; we
    // have no PCRE here and accept any string rather than reject valid ones.
    if (op == "$regex") return IsBinary(arg) ? Result<Term>(sel) : bad_arg();
    if (op == "$size") return IsInteger(arg) && !arg.negative() ? Result<Term>(sel) : bad_arg();
    if (op == "$text") {
      if (!(IsBinary(arg) || arg.IsNumber() || arg.IsBoolean())) return bad_arg();
      return Obj1("$default", sel);
    }
    // Strings from JSON are valid UTF-8 already (couch_util:validate_utf8).
    if (op == "$beginsWith") return IsBinary(arg) ? Result<Term>(sel) : bad_arg();
    if (op == "$default" || op == "$lt" || op == "$lte" || op == "$eq" || op == "$ne" ||
        op == "$gte" || op == "$gt") {
      return sel;
    }
    if (op == "$where" || op == "$geoWithin" || op == "$geoIntersects" || op == "$near" ||
        op == "$nearSphere") {
      return MangoError("operator " + op + " is not supported");
    }
    if (StartsWithDollar(op)) return MangoError("invalid operator " + op);
    auto cond = NormOps(arg);  // a {Field: Cond} pair
    if (!cond.ok()) return cond.error();
    return Obj1(op, std::move(cond).value());
  }
  if (sel.IsObject() && sel.ObjectPairs().size() >= 2) {  // an implicit $and
    std::vector<Term> args;
    for (const Term& p : sel.ObjectPairs()) {
      auto r = NormOps(Term::Tuple({Term::List({p})}));
      if (!r.ok()) return r.error();
      args.push_back(std::move(r).value());
    }
    return Obj1("$and", Term::List(std::move(args)));
  }
  return Obj1("$eq", sel);  // a bare value means equality (also {})
}

Result<Term> NormFields(const Term& sel, const std::string& path);

// norm_fields/1
Result<Term> NormFields(const Term& sel) {
  if (sel.IsObject() && sel.ObjectPairs().empty()) return sel;
  return NormFields(sel, "");
}

// Push field names down through $and/$or/$not/$nor and join nested field
// names into one dotted path at each terminal operator.
Result<Term> NormFields(const Term& sel, const std::string& path) {
  if (const Term* pair = SinglePair(sel)) {
    const std::string& key = pair->elements()[0].bytes();
    const Term& arg = pair->elements()[1];
    if (key == "$and" || key == "$or" || key == "$nor") {
      if (!IsList(arg)) return MangoError("bad field");
      auto args = MapList(arg, [&path](const Term& a) { return NormFields(a, path); });
      if (!args.ok()) return args.error();
      return Obj1(key, std::move(args).value());
    }
    if (key == "$not") {
      auto inner = NormFields(arg, path);
      if (!inner.ok()) return inner.error();
      return Obj1(key, std::move(inner).value());
    }
    if (key == "$elemMatch" || key == "$allMatch" || key == "$keyMapMatch") {
      auto inner = NormFields(arg);  // normalised independently, from an empty path
      if (!inner.ok()) return inner.error();
      return Obj1(path, Obj1(key, std::move(inner).value()));
    }
    if (key == "$default") {  // only at the root, and only with $text
      const Term* text = SinglePair(arg);
      if (path.empty() && text && text->elements()[0].bytes() == "$text") return sel;
      return MangoError("bad field $default");
    }
    if (StartsWithDollar(key)) return Obj1(path, sel);  // a terminal operator
    return NormFields(arg, path.empty() ? key : path + "." + key);
  }
  if (sel.IsObject() && sel.ObjectPairs().empty()) {
    // norm_fields({[]}, Path) -> {Path, {[]}}: a 2-tuple, not an object
    // (unreachable after norm_ops, kept for fidelity).
    return Term::Tuple({Term::Binary(path), sel});
  }
  return MangoError("bad field");
}

Result<Term> Negate(const Term& sel);

// Move negations as far down the tree as possible.
Result<Term> NormNegations(const Term& sel) {
  const Term* pair = SinglePair(sel);
  if (!pair) return sel;
  const std::string& key = pair->elements()[0].bytes();
  const Term& arg = pair->elements()[1];
  if (key == "$not") return Negate(arg);
  if ((key == "$nor" || key == "$and" || key == "$or") && !IsList(arg))
    return MangoError("bad argument");
  if (key == "$nor") {
    auto args = MapList(arg, Negate);
    if (!args.ok()) return args.error();
    return Obj1("$and", std::move(args).value());
  }
  if (key == "$and" || key == "$or") {
    auto args = MapList(arg, NormNegations);
    if (!args.ok()) return args.error();
    return Obj1(key, std::move(args).value());
  }
  if (key == "$elemMatch" || key == "$allMatch" || key == "$keyMapMatch") {
    auto inner = NormNegations(arg);
    if (!inner.ok()) return inner.error();
    return Obj1(key, std::move(inner).value());
  }
  return sel;
}

Result<Term> Negate(const Term& sel) {
  const Term* pair = SinglePair(sel);
  if (!pair) return MangoError("cannot negate this expression");
  const std::string& key = pair->elements()[0].bytes();
  const Term& arg = pair->elements()[1];
  if (key == "$not") return NormNegations(arg);
  if ((key == "$nor" || key == "$and" || key == "$or") && !IsList(arg))
    return MangoError("bad argument");
  if (key == "$nor") {
    auto args = MapList(arg, NormNegations);
    if (!args.ok()) return args.error();
    return Obj1("$or", std::move(args).value());
  }
  if (key == "$and" || key == "$or") {  // De Morgan
    auto args = MapList(arg, Negate);
    if (!args.ok()) return args.error();
    return Obj1(key == "$and" ? "$or" : "$and", std::move(args).value());
  }
  if (key == "$default") return MangoError("bad argument to $not");
  static const std::pair<std::string_view, std::string_view> kOpposites[] = {
      {"$lt", "$gte"}, {"$lte", "$gt"}, {"$eq", "$ne"},  {"$ne", "$eq"},
      {"$gte", "$lt"}, {"$gt", "$lte"}, {"$in", "$nin"}, {"$nin", "$in"},
  };
  for (const auto& [op, opposite] : kOpposites) {
    if (key == op) return Obj1(std::string(opposite), arg);
  }
  if (key == "$exists") return Obj1(key, Term::Atom(arg.IsAtom("true") ? "false" : "true"));
  if (StartsWithDollar(key)) return Obj1("$not", sel);
  auto cond = Negate(arg);  // negating a field negates its condition
  if (!cond.ok()) return cond.error();
  return Obj1(key, std::move(cond).value());
}

Result<Term> MangoNormalize(const Term& selector) {
  if (selector.IsObject() && selector.ObjectPairs().empty()) return selector;
  auto ops = NormOps(selector);
  if (!ops.ok()) return ops.error();
  auto fields = NormFields(ops.value());
  if (!fields.ok()) return fields.error();
  auto result = NormNegations(fields.value());
  if (!result.ok()) return result.error();
  if (!result->IsObject()) return MangoError("bad selector");
  for (const Term& p : result->ObjectPairs()) {
    if (p.elements()[0].bytes().empty()) return MangoError("missing field name");
  }
  return result;
}

// couch_replicator_filters:ejsort/1. ejsort_props accumulates the members in
// reverse and then lists:keysort/2 (stable) sorts them, so equal keys end up
// in reverse document order.
Term EjSort(const Term& t) {
  if (t.kind() == Term::Kind::kList) {
    std::vector<Term> out;
    for (const Term& e : t.elements()) out.push_back(EjSort(e));
    return Term::List(std::move(out));
  }
  if (!t.IsObject()) return t;
  std::vector<Term> pairs;
  for (const Term& p : t.ObjectPairs()) {
    pairs.push_back(Term::Tuple({p.elements()[0], EjSort(p.elements()[1])}));
  }
  std::reverse(pairs.begin(), pairs.end());
  std::stable_sort(pairs.begin(), pairs.end(), [](const Term& a, const Term& b) {
    return a.elements()[0].bytes() < b.elements()[0].bytes();
  });
  return Term::Tuple({Term::List(std::move(pairs))});
}

Result<Term> NormalisedSelectorTerm(std::string_view selector_json) {
  auto selector = EjsonFromJson(selector_json);
  if (!selector.ok()) return BadRequest("`selector` is not valid JSON");
  // convert_options: "parameter `selector` must be a JSON object".
  if (!selector->IsObject()) return BadRequest("`selector` must be a JSON object");
  auto normal = MangoNormalize(selector.value());
  if (!normal.ok()) return normal.error();
  return EjSort(normal.value());
}

Result<Term> QueryParamsTerm(const std::string& json) {
  auto params = EjsonFromJson(json);
  if (!params.ok() || !params->IsObject()) return BadRequest("`query_params` must be an object");
  return params;
}

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

}  // namespace

std::string Md5Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xF]);
  }
  return out;
}

std::string TrimFilterSource(std::string_view source) {
  // "^ *(.*?) *$" without multiline/dotall: '.' stops at '\n' and '$' matches
  // at the end or before a final '\n', so there is a match only when '\n'
  // occurs nowhere or just once at the very end (which then stays).
  size_t newline = source.find('\n');
  bool final_newline = false;
  if (newline != std::string_view::npos) {
    if (newline != source.size() - 1) return std::string(source);
    final_newline = true;
    source.remove_suffix(1);
  }
  size_t begin = source.find_first_not_of(' ');
  if (begin == std::string_view::npos) return final_newline ? "\n" : "";
  size_t end = source.find_last_not_of(' ');
  std::string out(source.substr(begin, end - begin + 1));
  if (final_newline) out.push_back('\n');
  return out;
}

std::string UnquoteDocId(std::string_view id) {
  std::string out;
  out.reserve(id.size());
  for (size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < id.size() && IsHexDigit(id[i + 1]) && IsHexDigit(id[i + 2])) {
      out.push_back(static_cast<char>(HexValue(id[i + 1]) * 16 + HexValue(id[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<std::string> NormaliseSelector(std::string_view selector_json) {
  auto term = NormalisedSelectorTerm(selector_json);
  if (!term.ok()) return term.error();
  return EjsonToJson(term.value());
}

Result<ReplicationId> ComputeReplicationId(const IdInputs& in) {
  std::vector<Term> parts;
  parts.push_back(Term::Binary(in.server_uuid));
  parts.push_back(EndpointTerm(in.source));
  parts.push_back(EndpointTerm(in.target));

  // maybe_append_filters / couch_replicator_filters:parse.
  const IdFilter& f = in.filter;
  switch (f.kind) {
    case IdFilter::kNone:
      break;
    case IdFilter::kDocIds: {
      // convert_options: lists:usort([l2b(couch_httpd:unquote(Id)) || ...]).
      std::vector<std::string> ids;
      for (const auto& id : f.doc_ids) ids.push_back(UnquoteDocId(id));
      std::sort(ids.begin(), ids.end());
      ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
      std::vector<Term> id_terms;
      for (const auto& id : ids) id_terms.push_back(Term::Binary(id));
      parts.push_back(Term::List(std::move(id_terms)));  // one element: the list
      break;
    }
    case IdFilter::kBuiltin:
    case IdFilter::kUser: {
      auto params = QueryParamsTerm(f.query_params_json);
      if (!params.ok()) return params.error();
      parts.push_back(Term::Binary(
          f.kind == IdFilter::kBuiltin ? f.name : TrimFilterSource(f.user_filter_source)));
      parts.push_back(std::move(params).value());
      break;
    }
    case IdFilter::kSelector: {
      auto selector = NormalisedSelectorTerm(f.selector_json);
      if (!selector.ok()) return selector.error();
      parts.push_back(std::move(selector).value());
      break;
    }
  }
  if (in.winning_revs_only) parts.push_back(Term::Binary("winning_revs_only"));
  if (in.since_seq_json) {
    auto seq = EjsonFromJson(*in.since_seq_json);
    if (!seq.ok()) return BadRequest("`since_seq` is not valid JSON");
    parts.push_back(std::move(seq).value());
  }

  ReplicationId id;
  id.base = Md5Hex(TermToBinary(Term::List(std::move(parts))));
  // maybe_append_options([continuous, create_target], Options).
  id.full = id.base;
  if (in.continuous) id.full += "+continuous";
  if (in.create_target) id.full += "+create_target";
  return id;
}

}  // namespace couchrepd

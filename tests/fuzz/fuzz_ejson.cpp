// Fuzzes the EJSON reader used for replication ids (query_params, since_seq) and selector normalisation.
#include <simdjson.h>

#include <set>
#include <string>

#include "couchrepd/erlang_term.h"
#include "couchrepd/replication_id.h"
#include "fuzz/fuzz_util.h"

namespace {

// Whether any object in `e` repeats a key. Selectors with repeated keys are
// left out of the idempotence check: what CouchDB makes of them depends on
// the order it meets them (noted in issue 8's closing note).
bool RepeatsKeys(simdjson::dom::element e) {
  simdjson::dom::object o;
  if (e.get_object().get(o) == simdjson::SUCCESS) {
    std::set<std::string_view> keys;
    for (auto field : o) {
      if (!keys.insert(field.key).second || RepeatsKeys(field.value)) return true;
    }
    return false;
  }
  simdjson::dom::array a;
  if (e.get_array().get(a) == simdjson::SUCCESS) {
    for (auto v : a) {
      if (RepeatsKeys(v)) return true;
    }
  }
  return false;
}

bool RepeatsKeys(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string text(json);
  simdjson::dom::element root;
  return parser.parse(text).get(root) != simdjson::SUCCESS || RepeatsKeys(root);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace couchrepd;
  using namespace couchrepd::fuzz;
  std::string_view json(reinterpret_cast<const char*>(data), size);
  auto term = EjsonFromJson(json);
  if (term.ok()) {
    // Written back and read again, a term is the same term (same external format).
    std::string text = EjsonToJson(*term);
    auto back = EjsonFromJson(text);
    FUZZ_CHECK(back.ok(), "EjsonToJson wrote what EjsonFromJson refuses: " + text);
    FUZZ_CHECK(TermToBinary(*back) == TermToBinary(*term), "EJSON round trip changed the term: " + text);
  }
  auto selector = NormaliseSelector(json);
  if (selector.ok() && !RepeatsKeys(*selector)) {
    auto twice = NormaliseSelector(*selector);
    FUZZ_CHECK(twice.ok() && *twice == *selector, "selector normalisation is not idempotent: " + *selector);
  }
  return 0;
}

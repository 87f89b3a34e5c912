// Fuzzes the EJSON reader used for replication ids (query_params, since_seq) and selector normalisation.
#include <string>

#include "couchrepd/erlang_term.h"
#include "couchrepd/replication_id.h"
#include "fuzz/fuzz_util.h"

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
  if (selector.ok()) {
    auto twice = NormaliseSelector(*selector);
    FUZZ_CHECK(twice.ok() && *twice == *selector, "selector normalisation is not idempotent: " + *selector);
  }
  return 0;
}

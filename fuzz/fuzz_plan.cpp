// libFuzzer target: precision-plan JSON (any version), then the plan's own consumers: summary,
// selected blocks, re-serialization and a second parse of that (must round-trip).
#include <string>

#include "dptq/plan.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  dptq::fuzz::expect_clean([&] {
    const dptq::Plan p = dptq::plan_from_json(text, "fuzz.plan.json");
    (void)dptq::plan_summary(p);
    (void)dptq::selected_blocks(p);
    const std::string again = dptq::plan_to_json(p);
    const dptq::Plan q = dptq::plan_from_json(again, "fuzz.plan.json (re-serialized)");
    if (dptq::plan_to_json(q) != again) {
      std::fprintf(stderr, "plan JSON does not round-trip\n");
      std::abort();
    }
  });
  return 0;
}

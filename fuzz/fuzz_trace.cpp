// libFuzzer target: the HDF5 trace reader (format 1.x) on arbitrary bytes, then the plans made
// from whatever it accepted (the trace's consumers must not trust it either).
#include "dptq/plan.hpp"
#include "dptq/trace.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = dptq::fuzz::put("trace.h5", data, size);
  dptq::fuzz::expect_clean([&] {
    const dptq::Trace t = dptq::read_trace(path);
    dptq::PlanOptions o;
    o.budget = 2;
    (void)dptq::make_plan(t, o);
  });
  return 0;
}

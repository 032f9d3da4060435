// libFuzzer target: the HDF5 trace reader (format 2.x) on arbitrary bytes, then the plans made from
// whatever it accepted (the trace's consumers must not trust it either).
// By default the product's path, read_trace: HDF5 reads in a child process and this process reads
// back a well-formed copy (the child's coverage is not seen). DPTQ_FUZZ_TRACE_IN_PROCESS=1 fuzzes
// read_trace_in_process instead, with full coverage of the reader — and of HDF5 1.10's own
// crashes on crafted object headers, which the child contains in the product.
#include <cstdlib>

#include "dptq/plan.hpp"
#include "dptq/trace.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = dptq::fuzz::put("trace.h5", data, size);
  dptq::fuzz::expect_clean([&] {
    static const bool in_process = std::getenv("DPTQ_FUZZ_TRACE_IN_PROCESS") != nullptr;
    const dptq::Trace t = in_process ? dptq::read_trace_in_process(path) : dptq::read_trace(path);
    dptq::PlanOptions o;
    o.budget = 2;
    (void)dptq::make_plan(t, o);
  });
  return 0;
}

// libFuzzer target: the safetensors header (JSON, dtypes, shapes, offsets) and reading every
// small tensor as fp32.
#include "dptq/safetensors.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = dptq::fuzz::put("model.safetensors", data, size);
  dptq::fuzz::expect_clean([&] {
    const dptq::SafetensorsFile f(path);
    for (const auto& t : f.tensors()) {
      if (t.numel() > (int64_t{1} << 16)) continue;
      if (t.dtype == "F32" || t.dtype == "F16" || t.dtype == "BF16" || t.dtype == "F64") (void)f.to_float32(t);
    }
    (void)f.metadata();
  });
  return 0;
}

// libFuzzer target: a quantized checkpoint's quant_config.json (with its embedded plan).
#include <string_view>

#include "dptq/quant_config.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  dptq::fuzz::expect_clean([&] { (void)dptq::parse_quant_config(text, "ckpt/quant_config.json"); });
  return 0;
}

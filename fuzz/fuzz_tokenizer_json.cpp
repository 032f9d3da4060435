// libFuzzer target: an HF folder's tokenizer.json (+ a fixed tokenizer_config.json) into a
// tokenizer, then one encode/decode.
#include <cstring>

#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* cfg = R"({"add_bos_token": false})";  // vocabulary-independent
  static const auto folder =
      dptq::fuzz::put("hf/tokenizer_config.json", reinterpret_cast<const uint8_t*>(cfg), std::strlen(cfg)).parent_path();
  dptq::fuzz::put("hf/tokenizer.json", data, size);
  dptq::fuzz::expect_clean([&] { dptq::fuzz::encode_decode(dptq::load_hf_tokenizer_spec(folder)); });
  return 0;
}

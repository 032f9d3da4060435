// libFuzzer target: an HF folder's tokenizer.json (+ a fixed tokenizer_config.json) into a
// tokenizer, then one encode/decode.
#include <cstring>

#include "dptq/tokenizer.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto folder = [] {
    const auto d = dptq::fuzz::scratch() / "hf";
    std::filesystem::create_directories(d);
    const char* cfg = R"({"add_bos_token": false})";  // vocabulary-independent
    std::filesystem::rename(dptq::fuzz::put("cfg", reinterpret_cast<const uint8_t*>(cfg), std::strlen(cfg)),
                            d / "tokenizer_config.json");
    return d;
  }();
  std::filesystem::rename(dptq::fuzz::put("tok", data, size), folder / "tokenizer.json");
  dptq::fuzz::expect_clean([&] {
    const dptq::TokenizerSpec spec = dptq::load_hf_tokenizer_spec(folder);
    const auto tok = dptq::make_tokenizer(spec);
    const auto ids = tok->encode("Hello world, 123 caf\xc3\xa9 \xff", true);
    (void)tok->decode(ids);
  });
  return 0;
}

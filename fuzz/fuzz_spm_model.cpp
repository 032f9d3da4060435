// libFuzzer target: an HF folder with a SentencePiece tokenizer.model (a serialized ModelProto)
// and no tokenizer.json.
#include "dptq/tokenizer.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto folder = [] {
    const auto d = dptq::fuzz::scratch() / "spm";
    std::filesystem::create_directories(d);
    return d;
  }();
  std::filesystem::rename(dptq::fuzz::put("model", data, size), folder / "tokenizer.model");
  dptq::fuzz::expect_clean([&] {
    const dptq::TokenizerSpec spec = dptq::load_hf_tokenizer_spec(folder);
    const auto tok = dptq::make_tokenizer(spec);
    const auto ids = tok->encode("Hello world, 123 caf\xc3\xa9", true);
    (void)tok->decode(ids);
  });
  return 0;
}

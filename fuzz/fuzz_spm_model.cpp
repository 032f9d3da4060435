// libFuzzer target: an HF folder with a SentencePiece tokenizer.model (a serialized ModelProto)
// and no tokenizer.json.
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto folder = dptq::fuzz::put("spm/tokenizer.model", data, size).parent_path();
  dptq::fuzz::expect_clean([&] { dptq::fuzz::encode_decode(dptq::load_hf_tokenizer_spec(folder)); });
  return 0;
}

// libFuzzer target: the GGUF reader (header, metadata, tensor directory), dequantization of the
// small tensors and the tokenizer a GGUF carries.
#include <vector>

#include "dptq/gguf.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = dptq::fuzz::put("model.gguf", data, size);
  dptq::fuzz::expect_clean([&] {
    dptq::GgufFile f(path);
    for (const auto& t : f.tensors()) {
      if (t.numel() > (int64_t{1} << 16)) continue;
      std::vector<float> out(static_cast<size_t>(t.numel()));
      f.dequantize(t, out.data());
    }
    if (!f.find("tokenizer.ggml.model")) return;
    dptq::fuzz::encode_decode(dptq::read_gguf_tokenizer_spec(f));
  });
  return 0;
}

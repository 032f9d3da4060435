// GGUF reader: block dequantization against hand-computed values, metadata, and every malformed
// input the loader must reject with one clear Error.
#include "dptq/gguf.hpp"

#include <ATen/ATen.h>

#include "dptq/error.hpp"
#include "dptq/half.hpp"
#include "dptq/model_torch.hpp"
#include "gguf_builder.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using dptq::test::GgufBuilder;

namespace {
void put_f16(std::vector<uint8_t>& b, size_t at, float v) {
  const uint16_t h = dptq::fp32_to_fp16(v);
  std::memcpy(b.data() + at, &h, 2);
}
std::string error_of(const fs::path& p) {
  try {
    dptq::load_model(p);
  } catch (const dptq::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("dequantize Q8_0, Q4_0, Q4_1 blocks") {
  std::vector<uint8_t> q8(34);
  put_f16(q8, 0, 0.5f);
  for (int j = 0; j < 32; ++j) q8[2 + j] = uint8_t(int8_t(j - 16));
  std::vector<float> out(32);
  dptq::dequantize_gguf(uint32_t(dptq::GgmlType::Q8_0), q8.data(), 32, out.data());
  for (int j = 0; j < 32; ++j) CHECK(out[j] == doctest::Approx(0.5 * (j - 16)));

  std::vector<uint8_t> q4(18);
  put_f16(q4, 0, 2.0f);
  for (int j = 0; j < 16; ++j) q4[2 + j] = uint8_t((j & 15) | ((15 - j) << 4));
  dptq::dequantize_gguf(uint32_t(dptq::GgmlType::Q4_0), q4.data(), 32, out.data());
  for (int j = 0; j < 16; ++j) {
    CHECK(out[j] == doctest::Approx(2.0 * (j - 8)));             // low nibbles: first half
    CHECK(out[j + 16] == doctest::Approx(2.0 * ((15 - j) - 8)));  // high nibbles: second half
  }

  std::vector<uint8_t> q41(20);
  put_f16(q41, 0, 0.25f);
  put_f16(q41, 2, -1.0f);
  for (int j = 0; j < 16; ++j) q41[4 + j] = uint8_t(j | (j << 4));
  dptq::dequantize_gguf(uint32_t(dptq::GgmlType::Q4_1), q41.data(), 32, out.data());
  for (int j = 0; j < 16; ++j) {
    CHECK(out[j] == doctest::Approx(0.25 * j - 1.0));
    CHECK(out[j + 16] == doctest::Approx(0.25 * j - 1.0));
  }
}

TEST_CASE("tiny synthetic GGUF loads, un-permutes Q/K, and runs") {
  const fs::path dir = dptq::test::scratch_dir("gguf_tiny");
  auto g = dptq::test::tiny_llama_gguf();
  g.write(dir / "tiny.gguf");
  const dptq::Model m = dptq::load_model(dir / "tiny.gguf");
  CHECK(m.config().n_layers == 2);
  CHECK(m.config().head_dim == 8);
  CHECK(m.config().tied_embeddings);
  CHECK(m.info().stored_types.at("F32") == int64_t(g.tensors.size()));
  // Row r of the stored (llama.cpp-permuted) q weight = head h, position i, pair p laid out as
  // (h, p, i) in HF order. Check one row moved where the inverse permutation says.
  const auto& src = g.tensors[3];  // blk.0.attn_q.weight, dims {32, 32}
  REQUIRE(src.name == "blk.0.attn_q.weight");
  const float* stored = reinterpret_cast<const float*>(src.bytes.data());
  const at::Tensor wq = m.impl().w.layers[0].wq;
  // HF row (h=1, p=0, i=2) = 1*8 + 0*4 + 2 = 10 was stored at row (h=1, i=2, p=0) = 1*8 + 2*2 + 0 = 12.
  for (int c = 0; c < 32; ++c) CHECK(wq[10][c].item<float>() == stored[12 * 32 + c]);
  const at::Tensor logits = dptq::forward_logits(m, at::tensor(std::vector<int64_t>{1, 2, 3, 4, 5}, at::kLong));
  CHECK(logits.size(0) == 5);
  CHECK(logits.size(1) == 256);
  CHECK(at::isfinite(logits).all().item<bool>());
}

TEST_CASE("malformed GGUF files give one clear error naming the file") {
  const fs::path dir = dptq::test::scratch_dir("gguf_bad");
  const auto good = dptq::test::tiny_llama_gguf();
  const size_t full = good.bytes().size();

  SUBCASE("missing file") {
    const std::string e = error_of(dir / "nope.gguf");
    CHECK(e.find("nope.gguf") != std::string::npos);
    CHECK(e.find("no such file") != std::string::npos);
  }
  SUBCASE("truncated in the data section") {
    good.write(dir / "trunc.gguf", full - 100);
    const std::string e = error_of(dir / "trunc.gguf");
    CHECK(e.find("trunc.gguf: truncated GGUF") != std::string::npos);
    CHECK(e.find("beyond the end of the file") != std::string::npos);
  }
  SUBCASE("truncated in the metadata") {
    good.write(dir / "trunc_meta.gguf", 300);
    CHECK(error_of(dir / "trunc_meta.gguf").find("truncated") != std::string::npos);
  }
  SUBCASE("not a GGUF file") {
    std::ofstream(dir / "text.gguf") << "hello, this is not a model file at all";
    CHECK(error_of(dir / "text.gguf").find("bad magic") != std::string::npos);
  }
  SUBCASE("unknown version") {
    auto g = good;
    g.version = 7;
    g.write(dir / "v7.gguf");
    CHECK(error_of(dir / "v7.gguf").find("unsupported GGUF version 7") != std::string::npos);
  }
  SUBCASE("unknown architecture") {
    auto g = good;
    for (auto& kv : g.kvs)
      if (kv.key == "general.architecture") kv.value = std::string("mamba");
    g.write(dir / "arch.gguf");
    CHECK(error_of(dir / "arch.gguf").find("unsupported architecture 'mamba'") != std::string::npos);
  }
  SUBCASE("unknown tensor type") {
    auto g = good;
    g.tensors[0].type = 99;
    g.write(dir / "type.gguf");
    CHECK(error_of(dir / "type.gguf").find("unknown GGUF tensor type 99") != std::string::npos);
  }
  SUBCASE("known but unsupported tensor type") {
    auto g = good;
    REQUIRE(g.tensors[3].name == "blk.0.attn_q.weight");
    g.tensors[3].type = uint32_t(dptq::GgmlType::Q4_K);  // 1024 elements = 4 blocks of 256
    g.tensors[3].bytes.assign(4 * 144, 0);
    g.write(dir / "q4k.gguf");
    CHECK(error_of(dir / "q4k.gguf").find("'blk.0.attn_q.weight' has type Q4_K, which is not supported") != std::string::npos);
  }
  SUBCASE("shape mismatch with the config") {
    auto g = good;
    REQUIRE(g.tensors[4].name == "blk.0.attn_k.weight");
    g.tensors[4].dims = {32, 8};  // should be {32, 16}
    g.tensors[4].bytes.resize(32 * 8 * 4);
    g.write(dir / "shape.gguf");
    const std::string e = error_of(dir / "shape.gguf");
    CHECK(e.find("self_attn.k_proj.weight' has shape [8, 32], but the config implies [16, 32]") != std::string::npos);
  }
  SUBCASE("missing metadata key") {
    auto g = good;
    std::erase_if(g.kvs, [](auto& kv) { return kv.key == "llama.block_count"; });
    g.write(dir / "nokey.gguf");
    CHECK(error_of(dir / "nokey.gguf").find("missing metadata key 'llama.block_count'") != std::string::npos);
  }
}

// The integer engine (dptq/int_engine.hpp; issue 13, acceptance 1): activation codes times
// weight codes in int8 with int32 accumulation must give the fake-quant model's numbers.
//   - codes: scale · (codes + offset) is exactly fake_quant's output, for 4 and 8 bits, asym/sym;
//   - one layer: the int32 accumulator equals the exact integer sum, and the layer's output
//     equals the fp32 GEMM on dequantized values within fp32 accumulation rounding;
//   - a model: logits of the int and fake engines agree (synthetic, every method, plans with 8-bit
//     blocks), and the default model's W4A4KV4 perplexity on 2 windows agrees within 1e-4.
#include "dptq/int_engine.hpp"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <fstream>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/perplexity.hpp"
#include "dptq/quant.hpp"
#include "dptq/quantize.hpp"
#include "dptq/synthetic.hpp"
#include "dptq/weight_quant.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace {

at::Tensor randn_tensor(std::vector<int64_t> shape, uint32_t seed, float std = 1.0f) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  const std::vector<float> v = dptq::test::randn(size_t(n), seed, std);
  return at::tensor(v, at::kFloat).view(shape).clone();
}

// A row with a massive channel (as a residual stream has), so the 4-bit scale is stretched.
at::Tensor activations(int64_t T, int64_t K, uint32_t seed) {
  at::Tensor x = randn_tensor({T, K}, seed);
  x.select(1, 3).mul_(40.0);
  x.select(0, 1).zero_();  // an all-zero row: the quantizer's [-1, 1] fallback
  return x;
}

dptq::SyntheticSpec small_spec() {
  dptq::SyntheticSpec s;
  s.n_layers = 6;  // the planted massive activation appears after block 2 and vanishes in block 5
  s.d_model = 64;
  s.d_ff = 160;  // not a power of two: QuaRot's online d_ff rotation is a k·2^n Hadamard
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.seed = 11;
  return s;
}

double rel_max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

}  // namespace

TEST_CASE("activation codes: scale * (codes + offset) is exactly the fake-quant output") {
  c10::InferenceMode guard;
  const at::Tensor x = activations(9, 67, 1);  // odd sizes
  for (int bits : {4, 8})
    for (bool asym : {true, false}) {
      CAPTURE(bits);
      CAPTURE(asym);
      const dptq::ActQuantConfig cfg{bits, asym, bits == 4 ? 0.9 : 1.0, 0};
      const dptq::ActCodes a = dptq::quant_act_codes(x, cfg);
      REQUIRE((a.codes.scalar_type() == at::kChar));
      const at::Tensor back = a.scale.unsqueeze(1) * (a.codes.to(at::kInt) + a.offset.unsqueeze(1)).to(at::kFloat);
      CHECK(at::equal(back, dptq::fake_quant(x, cfg)));
      // The codes span the quantizer's levels moved into int8.
      const int levels = 1 << bits;
      CHECK(a.codes.max().item<int>() - a.codes.min().item<int>() <= levels - 1);
      CHECK(a.codes.max().item<int>() - a.codes.min().item<int>() >= levels / 2);
    }
  CHECK_THROWS_AS(dptq::quant_act_codes(x, {4, true, 0.9, 16}), dptq::Error);
}

TEST_CASE("one layer: exact int32 sums and the fake-quant GEMM's output") {
  c10::InferenceMode guard;
  const int64_t T = 13, K = 96, N = 37;
  dptq::WeightQuantConfig wc;
  wc.bits = 4;
  wc.symmetric = true;
  const dptq::QuantizedWeight w = dptq::rtn_quantize(randn_tensor({N, K}, 2, 0.05f), wc);
  const at::Tensor bias = randn_tensor({N}, 3);
  dptq::IntLinear il;
  REQUIRE(dptq::make_int_linear({&w}, {bias}, il) == "");
  const at::Tensor x = activations(T, K, 4);
  for (int bits : {4, 8}) {
    CAPTURE(bits);
    const dptq::ActQuantConfig cfg{bits, true, bits == 4 ? 0.9 : 1.0, 0};
    const dptq::ActCodes a = dptq::quant_act_codes(x, cfg);
    // Exact: Σ_k (q'[t,k] + o_t) c[n,k] in int64 against the engine's int32 epilogue input.
    const at::Tensor q = (a.codes.to(at::kLong) + a.offset.to(at::kLong).unsqueeze(1));
    const at::Tensor exact = at::matmul(q, w.codes.to(at::kLong).t());
    const at::Tensor via = at::_int_mm(a.codes, il.codes.t()).to(at::kLong) +
                           a.offset.to(at::kLong).unsqueeze(1) * il.colsum.to(at::kLong).unsqueeze(0);
    CHECK(at::equal(exact, via));
    // The layer against the fake-quant reference (fp32 GEMM on dequantized values).
    const at::Tensor fake = at::linear(dptq::fake_quant(x, cfg), w.dequantize(), bias);
    const at::Tensor got = dptq::int_linear(x, il, cfg);
    // Both are fp32 roundings of the same exact sum: a few ulps of the largest partial sums.
    const at::Tensor ref64 = at::linear(dptq::fake_quant(x, cfg).to(at::kDouble), w.dequantize().to(at::kDouble),
                                        bias.to(at::kDouble));
    CHECK(rel_max_diff(got.to(at::kDouble), ref64) < 1e-6);
    CHECK(rel_max_diff(fake.to(at::kDouble), ref64) < 1e-5);
  }
}

TEST_CASE("fused layers: q/k/v stacked along the output, splits and refusals") {
  c10::InferenceMode guard;
  dptq::WeightQuantConfig wc;
  const dptq::QuantizedWeight a = dptq::rtn_quantize(randn_tensor({8, 32}, 5), wc);
  const dptq::QuantizedWeight b = dptq::rtn_quantize(randn_tensor({5, 32}, 6), wc);
  dptq::IntLinear il;
  REQUIRE(dptq::make_int_linear({&a, &b}, {at::Tensor(), randn_tensor({5}, 7)}, il) == "");
  CHECK(il.splits == std::vector<int64_t>{8, 5});
  REQUIRE(il.bias.defined());
  CHECK(il.bias.narrow(0, 0, 8).abs().max().item<float>() == 0.0f);  // the missing bias is zero
  const at::Tensor x = activations(6, 32, 8);
  const dptq::ActQuantConfig cfg{4, true, 0.9, 0};
  const at::Tensor y = dptq::int_linear(x, il, cfg);
  CHECK(y.size(1) == 13);
  const at::Tensor ref_b = at::linear(dptq::fake_quant(x, cfg), b.dequantize(), il.bias.narrow(0, 8, 5));
  CHECK(rel_max_diff(y.narrow(1, 8, 5), ref_b) < 1e-5);

  dptq::WeightQuantConfig asym = wc;
  asym.symmetric = false;
  const dptq::QuantizedWeight c = dptq::rtn_quantize(randn_tensor({8, 32}, 9), asym);
  CHECK(dptq::make_int_linear({&c}, {}, il).find("asymmetric") != std::string::npos);
  const dptq::QuantizedWeight d = dptq::rtn_quantize(randn_tensor({8, 16}, 10), wc);
  CHECK(dptq::make_int_linear({&a, &d}, {}, il) != "");
  CHECK_THROWS_AS(dptq::int_linear(activations(3, 16, 1), il, cfg), dptq::Error);
}

TEST_CASE("model: int and fake engines give the same logits (every method, plans with 8-bit blocks)") {
  c10::InferenceMode guard;
  const at::Tensor ids = at::arange(0, 48, at::kLong).remainder(small_spec().vocab_size);
  for (const char* method : {"rtn", "quarot-rtn", "gptq", "quarot-gptq"}) {
    CAPTURE(method);
    dptq::Model m = dptq::make_synthetic_model(small_spec());
    dptq::Plan plan = dptq::uniform_plan(m, method, 4);
    plan.blocks[1].bits = {8, 8, 8, 8};
    plan.blocks[2].bits.down = 8;
    dptq::QuantizeOptions o;
    o.method = method;
    o.calib_samples = 2;
    o.calib_seqlen = 32;
    dptq::quantize_model(m, plan, o);
    REQUIRE((dptq::model_engine(m) == dptq::Engine::Int));  // quantize_model picks it where supported
    const at::Tensor li = dptq::forward_logits(m, ids);
    REQUIRE(dptq::set_engine(m, dptq::Engine::Fake) == dptq::Engine::Fake);
    const at::Tensor lf = dptq::forward_logits(m, ids);
    // Rounding differences can flip a 4-bit code of a later layer now and then; the logits must
    // still agree far below the quantization error (int vs FP differs by ~1e-1 here).
    CHECK(rel_max_diff(li, lf) < 2e-3);
    CHECK((li - lf).abs().mean().item<double>() < 1e-4 * lf.abs().mean().item<double>() + 1e-6);
    // Switching back reuses the same codes.
    REQUIRE(dptq::set_engine(m, dptq::Engine::Int) == dptq::Engine::Int);
    CHECK(at::equal(dptq::forward_logits(m, ids), li));
  }
}

TEST_CASE("engine selection: FP and weight-only models stay on fake, with the reason") {
  c10::InferenceMode guard;
  dptq::Model fp = dptq::make_synthetic_model(small_spec());
  std::string why;
  CHECK(dptq::set_engine(fp, dptq::Engine::Int, &why) == dptq::Engine::Fake);
  CHECK(why.find("not quantized") != std::string::npos);
  dptq::Model w4a16 = dptq::make_synthetic_model(small_spec());
  dptq::QuantizeOptions o;
  o.method = "rtn";
  o.quantize_activations = false;
  dptq::quantize_model(w4a16, dptq::uniform_plan(w4a16, "rtn", 4), o);
  CHECK(dptq::model_engine(w4a16) == dptq::Engine::Fake);
  CHECK(dptq::set_engine(w4a16, dptq::Engine::Int, &why) == dptq::Engine::Fake);
  CHECK(why.find("weight-only") != std::string::npos);
  CHECK(dptq::parse_engine("int") == dptq::Engine::Int);
  CHECK_THROWS_AS(dptq::parse_engine("int4"), dptq::Error);
}

TEST_CASE("default model: W4A4KV4 QuaRot-RTN perplexity of the int engine equals fake within 1e-4") {
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed");
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::wikitext()), "../shared/data not available");
  dptq::Model m = dptq::load_model(dptq::test::default_model());
  dptq::QuantizeOptions o;
  o.method = "quarot-rtn";
  dptq::quantize_model(m, dptq::uniform_plan(m, "quarot-rtn", 4), o);
  REQUIRE(dptq::model_engine(m) == dptq::Engine::Int);
  std::ifstream in(dptq::test::wikitext());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<int32_t> ids = m.tokenizer().encode(text.substr(0, 60000), true);
  REQUIRE(ids.size() >= 4096);
  ids.resize(4096);
  const dptq::PerplexityResult ri = dptq::perplexity(m, ids, {2048, 2});
  dptq::set_engine(m, dptq::Engine::Fake);
  const dptq::PerplexityResult rf = dptq::perplexity(m, ids, {2048, 2});
  MESSAGE("2 x 2048 WikiText-2 tokens, quarot-rtn W4A4KV4: int " << ri.ppl << " (" << ri.tokens_per_s << " tok/s), fake "
                                                                 << rf.ppl << " (" << rf.tokens_per_s << " tok/s)");
  CHECK(std::abs(ri.ppl - rf.ppl) / rf.ppl < 1e-4);
}

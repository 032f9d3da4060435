// The W4A4KV4 engine (dptq/quantize.hpp): rotations leave FP logits unchanged, plans change exactly
// the blocks they select, GPTQ beats RTN, checkpoints reload to the same model and reject bad files.
#include "dptq/quantize.hpp"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/perplexity.hpp"
#include "dptq/rotation.hpp"
#include "dptq/safetensors.hpp"
#include "dptq/synthetic.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using dptq::test::default_model;

namespace {

// A synthetic model whose rotations need every construction: d = 72 (Paley I), d_ff = 144
// (2 · Paley 72), 9 query heads (no Hadamard: random orthogonal), head_dim 8 (Sylvester).
dptq::Model nine_head_model(bool plant = true) {
  dptq::SyntheticSpec s;
  s.plant = plant;
  s.n_layers = 4;
  s.d_model = 72;
  s.d_ff = 144;
  s.n_heads = 9;
  s.n_kv_heads = 3;
  s.emerge_block = 1;
  s.vanish_block = 3;
  s.seed = 5;
  return dptq::make_synthetic_model(s);
}

at::Tensor some_ids(int64_t n, int64_t vocab, uint64_t seed) {
  at::Tensor ids = at::empty({n}, at::kLong);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < n; ++i) ids[i] = int64_t(rng() % uint64_t(vocab));
  return ids;
}

double rel_max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

dptq::QuantizeOptions rotation_only(const std::string& method) {
  dptq::QuantizeOptions o;
  o.method = method;
  o.quantize_weights = false;
  o.quantize_activations = false;
  return o;
}

std::vector<int32_t> wikitext_ids(const dptq::Model& m, size_t n) {
  std::ifstream in(dptq::test::wikitext());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<int32_t> ids = m.tokenizer().encode(text.substr(0, 400000), true);
  ids.resize(std::min(ids.size(), n));
  return ids;
}

}  // namespace

TEST_CASE("factored online rotations equal the dense seeded rotations of rotation.hpp") {
  for (int64_t n : {8, 9, 12, 64, 72, 144, 576, 1536}) {
    INFO("order " << n);
    const dptq::Rotation r = dptq::make_random_rotation(n, 11);
    const at::Tensor want = dptq::random_hadamard(n, 11).to(at::kFloat);
    CHECK((r.dense() - want).abs().max().item<double>() < 1e-6);
    // apply() on a batch equals x·R, for 2-D and 3-D inputs.
    const at::Tensor x = at::randn({5, 3, n}, at::kFloat);
    CHECK(at::allclose(r.apply(x), at::matmul(x, want), 1e-4, 1e-4));
  }
  CHECK(dptq::make_random_rotation(9, 1).kind == "random_orthogonal");
  CHECK(dptq::make_random_rotation(1536, 1).kind == "random_hadamard");
}

TEST_CASE("QuaRot rotations alone leave the logits unchanged (9 heads, Paley and Sylvester orders)") {
  c10::InferenceMode guard;
  // No planted activation here: its magnitude (2000) alone costs fp32 ~1e-4 of the logit scale.
  dptq::Model fp = nine_head_model(false);
  const at::Tensor ids = some_ids(48, 256, 3);
  const at::Tensor want = dptq::forward_logits(fp, ids);
  dptq::Model rot = nine_head_model(false);
  dptq::quantize_model(rot, dptq::uniform_plan(rot, "quarot-rtn"), rotation_only("quarot-rtn"));
  CHECK(rot.impl().quant->heads.kind == "random_orthogonal");
  CHECK_FALSE(rot.config().tied_embeddings);
  // The weights did change (γ folded, rotated), the function did not.
  CHECK_FALSE(at::allclose(rot.impl().w.layers[0].wq, fp.impl().w.layers[0].wq));
  const double d = rel_max_diff(dptq::forward_logits(rot, ids), want);
  MESSAGE("synthetic 9-head model: max |Δlogit| / max |logit| = " << d);
  CHECK(d <= 1e-4);
}

TEST_CASE("QuaRot rotations alone leave the default model's logits unchanged (576, 1536, 64, 9 heads)") {
  DPTQ_SKIP_UNLESS(fs::exists(default_model()), "default model not installed");
  c10::InferenceMode guard;
  dptq::Model fp = dptq::load_model(default_model());
  const at::Tensor ids = some_ids(96, 49152, 4);
  const at::Tensor want = dptq::forward_logits(fp, ids);
  dptq::quantize_model(fp, dptq::uniform_plan(fp, "quarot-rtn"), rotation_only("quarot-rtn"));
  const dptq::QuantState& q = *fp.impl().quant;
  CHECK(q.down.size() == 1536);
  CHECK(q.heads.size() == 9);
  CHECK(q.k.size() == 64);
  CHECK(q.r1.size(0) == 576);
  const double d = rel_max_diff(dptq::forward_logits(fp, ids), want);
  MESSAGE("SmolLM2-135M: max |Δlogit| / max |logit| = " << d);
  CHECK(d <= 1e-4);
}

TEST_CASE("external rotations (SpinQuant R1 / R2 in safetensors) load, keep logits, and are checked") {
  c10::InferenceMode guard;
  const fs::path dir = dptq::test::scratch_dir("quantize_spinquant");
  dptq::Model fp = nine_head_model(false);
  const at::Tensor ids = some_ids(32, 256, 8);
  const at::Tensor want = dptq::forward_logits(fp, ids);
  const at::Tensor r1 = dptq::random_orthogonal(72, 21).to(at::kFloat).contiguous();
  const at::Tensor r2 = dptq::random_orthogonal(8, 22).to(at::kFloat).contiguous();
  auto write = [&](const fs::path& p, const at::Tensor& a, const at::Tensor& b) {
    dptq::write_safetensors(p, {{"R1", "F32", a.sizes().vec(), a.data_ptr(), size_t(a.nbytes())},
                                {"model.layers.1.self_attn.R2", "F32", b.sizes().vec(), b.data_ptr(), size_t(b.nbytes())}});
  };
  write(dir / "rot.safetensors", r1, r2);
  dptq::QuantizeOptions o = rotation_only("quarot-rtn");
  o.rotation_file = dir / "rot.safetensors";
  dptq::quantize_model(fp, dptq::uniform_plan(fp, "quarot-rtn"), o);
  CHECK(at::allclose(fp.impl().quant->r1, r1));
  CHECK(at::allclose(fp.impl().quant->r2[1], r2));  // per-layer R2 for block 1, seeded elsewhere
  CHECK_FALSE(at::allclose(fp.impl().quant->r2[0], r2));
  CHECK(rel_max_diff(dptq::forward_logits(fp, ids), want) <= 1e-4);

  auto expect_error = [&](const at::Tensor& a, const at::Tensor& b, const std::string& what) {
    write(dir / "bad.safetensors", a, b);
    dptq::Model m = nine_head_model(false);
    dptq::QuantizeOptions bad = rotation_only("quarot-rtn");
    bad.rotation_file = dir / "bad.safetensors";
    try {
      dptq::quantize_model(m, dptq::uniform_plan(m, "quarot-rtn"), bad);
      FAIL("expected an error: " << what);
    } catch (const dptq::Error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find("bad.safetensors") != std::string::npos);
      CHECK(std::string(e.what()).find(what) != std::string::npos);
    }
  };
  const at::Tensor r1_small = dptq::random_orthogonal(64, 1).to(at::kFloat).contiguous();
  expect_error(r1_small, r2, "expected [72, 72]");
  const at::Tensor not_orth = (r1 * 1.5f).contiguous();
  expect_error(not_orth, r2, "not orthogonal");
}

TEST_CASE("a plan switches exactly its selected blocks to 8 bits; more bits, closer to FP") {
  c10::InferenceMode guard;
  dptq::Model fp = nine_head_model();
  const at::Tensor ids = some_ids(40, 256, 9);
  const at::Tensor want = dptq::forward_logits(fp, ids);
  dptq::Model m = nine_head_model();
  dptq::QuantizeOptions o;
  o.method = "quarot-rtn";
  dptq::quantize_model(m, dptq::uniform_plan(m, "quarot-rtn", 4), o);
  CHECK(dptq::quant_summary(m) == "quarot-rtn W4A4KV4, no 8-bit blocks");
  const dptq::RopeTables rope = dptq::rope_tables(m, 40);
  auto streams = [&] {
    std::vector<at::Tensor> h{dptq::embed_tokens(m, ids)};
    for (int64_t l = 0; l < 4; ++l) h.push_back(dptq::decoder_block(m, l, h.back(), rope));
    return h;
  };
  const std::vector<at::Tensor> h4 = streams();
  const double err4 = rel_max_diff(dptq::forward_logits(m, ids), want);

  dptq::Plan p = dptq::uniform_plan(m, "quarot-rtn", 4);
  p.policy.manual_blocks = {2};
  p.blocks[2].selected = true;
  p.blocks[2].rank = 1;
  p.blocks[2].bits = {8, 8, 8, 8};
  dptq::set_activation_plan(m, p);
  CHECK(dptq::quant_summary(m) == "quarot-rtn W4A4KV4, 8-bit activations in block 2 (1 of 4)");
  const std::vector<at::Tensor> h8 = streams();
  for (int l = 0; l <= 2; ++l) CHECK(at::equal(h8[size_t(l)], h4[size_t(l)]));  // inputs of blocks 0..2
  CHECK_FALSE(at::equal(h8[3], h4[3]));  // block 2's output changed

  dptq::set_activation_plan(m, dptq::uniform_plan(m, "quarot-rtn", 8));
  const double err8 = rel_max_diff(dptq::forward_logits(m, ids), want);
  MESSAGE("relative logit error: A4 " << err4 << ", A8 " << err8);
  CHECK(err8 < err4);

  // A plan for another model, or with an unknown site width, is refused.
  dptq::Plan other = dptq::uniform_plan(m, "quarot-rtn", 4);
  other.model_fingerprint = std::string(64, 'a');
  CHECK_THROWS_AS(dptq::set_activation_plan(m, other), dptq::Error);
  dptq::Plan six = dptq::uniform_plan(m, "quarot-rtn", 4);
  six.blocks[1].bits.o = 6;
  CHECK_THROWS_AS(dptq::set_activation_plan(m, six), dptq::Error);
}

TEST_CASE("GPTQ beats RTN on the default model (weight-only, held-out text)") {
  DPTQ_SKIP_UNLESS(fs::exists(default_model()), "default model not installed");
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::wikitext()), "../shared/data not available");
  auto ppl_of = [](const std::string& method) {
    dptq::Model m = dptq::load_model(default_model());
    dptq::QuantizeOptions o;
    o.method = method;
    o.quantize_activations = false;
    o.calib_samples = 4;
    o.calib_seqlen = 512;
    dptq::quantize_model(m, dptq::uniform_plan(m, method), o);
    return dptq::perplexity(m, wikitext_ids(m, 1024), {512, -1}).ppl;
  };
  const double rtn = ppl_of("quarot-rtn"), gptq = ppl_of("quarot-gptq");
  MESSAGE("W4A16 ppl on 2 x 512 WikiText-2 tokens: quarot-rtn " << rtn << ", quarot-gptq " << gptq);
  CHECK(gptq < rtn);
}

TEST_CASE("checkpoint: reload equals the simulated model, int4 bytes, bad files refused") {
  c10::InferenceMode guard;
  const fs::path dir = dptq::test::scratch_dir("quantize_checkpoint");
  dptq::Model m = nine_head_model();
  dptq::QuantizeOptions o;
  o.method = "quarot-rtn";
  dptq::Plan plan = dptq::uniform_plan(m, "quarot-rtn", 4);
  plan.policy.manual_blocks = {0};
  plan.blocks[0].selected = true;
  plan.blocks[0].rank = 1;
  plan.blocks[0].bits = {8, 8, 8, 8};
  dptq::quantize_model(m, plan, o);
  const fs::path out = dir / "ckpt";
  const dptq::CheckpointStats st = dptq::save_quantized_checkpoint(m, out);
  MESSAGE("linear weights: " << st.linear_bytes << " bytes vs " << st.linear_fp16_bytes << " fp16 bytes");
  CHECK(double(st.linear_bytes) <= 0.30 * double(st.linear_fp16_bytes));
  CHECK(fs::exists(out / "quant_config.json"));
  CHECK_FALSE(fs::exists(dir / ("ckpt.tmp-" + std::to_string(::getpid()))));
  CHECK(dptq::is_quantized_checkpoint(out));

  dptq::Model r = dptq::load_model(out);
  CHECK(r.info().fingerprint == m.info().fingerprint);
  CHECK(r.info().format == "dptq-quantized");
  CHECK(dptq::quant_summary(r) == dptq::quant_summary(m));
  for (int64_t l = 0; l < 4; ++l) {  // weights are exactly the simulated ones
    CHECK(at::equal(r.impl().w.layers[size_t(l)].w_down, m.impl().w.layers[size_t(l)].w_down));
    CHECK(at::equal(r.impl().w.layers[size_t(l)].wq, m.impl().w.layers[size_t(l)].wq));
  }
  CHECK(r.impl().quant->heads.kind == "random_orthogonal");  // rebuilt from its seed
  CHECK(r.impl().quant->down.kind == "random_hadamard");
  const at::Tensor ids = some_ids(40, 256, 1);
  const double d = rel_max_diff(dptq::forward_logits(r, ids), dptq::forward_logits(m, ids));
  MESSAGE("reloaded vs simulated: max |Δlogit| / max |logit| = " << d);
  CHECK(d < 1e-6);

  // The target exists: refused, untouched.
  try {
    dptq::save_quantized_checkpoint(m, out);
    FAIL("expected an error");
  } catch (const dptq::Error& e) {
    CHECK(std::string(e.what()).find("already exists") != std::string::npos);
  }
  CHECK(fs::exists(out / "model.safetensors"));

  // Wrong version, not a checkpoint, truncated tensors: one clear error naming the file.
  auto expect_error = [](const fs::path& p, const std::string& what, dptq::ErrorKind kind) {
    try {
      dptq::load_model(p);
      FAIL("expected an error for " << p);
    } catch (const dptq::Error& e) {
      INFO(e.what());
      CHECK(e.kind() == kind);
      CHECK(std::string(e.what()).find(what) != std::string::npos);
    }
  };
  const fs::path v2 = dir / "v2";
  fs::copy(out, v2, fs::copy_options::recursive);
  {
    std::ifstream in(v2 / "quant_config.json");
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(in);
    j["version"] = "2.0";
    std::ofstream(v2 / "quant_config.json") << j.dump(2);
  }
  expect_error(v2, "unsupported checkpoint version 2.0", dptq::ErrorKind::Version);
  const fs::path trunc = dir / "trunc";
  fs::copy(out, trunc, fs::copy_options::recursive);
  fs::resize_file(trunc / "model.safetensors", fs::file_size(trunc / "model.safetensors") / 2);
  expect_error(trunc, "model.safetensors", dptq::ErrorKind::Format);
  const fs::path bad_json = dir / "badjson";
  fs::copy(out, bad_json, fs::copy_options::recursive);
  fs::resize_file(bad_json / "quant_config.json", 100);
  expect_error(bad_json, "quant_config.json", dptq::ErrorKind::Format);
}

TEST_CASE("GPTQ weights do not depend on the plan: an all-4-bit GPTQ checkpoint + a plan = GPTQ under that plan") {
  // scripts/results.sh runs GPTQ once per method and applies every plan to that checkpoint.
  c10::InferenceMode guard;
  const fs::path dir = dptq::test::scratch_dir("quantize_gptq_plan");
  dptq::QuantizeOptions o;
  o.method = "quarot-gptq";
  o.calib_samples = 2;
  o.calib_seqlen = 48;
  dptq::Model direct = nine_head_model();
  dptq::Plan plan = dptq::uniform_plan(direct, "quarot-gptq", 4);
  plan.policy.manual_blocks = {0, 2};
  for (int64_t l : {0, 2}) {
    plan.blocks[size_t(l)].selected = true;
    plan.blocks[size_t(l)].rank = l == 0 ? 1 : 2;
    plan.blocks[size_t(l)].bits = {8, 8, 8, 8};
  }
  dptq::quantize_model(direct, plan, o);
  dptq::Model all4 = nine_head_model();
  dptq::quantize_model(all4, dptq::uniform_plan(all4, "quarot-gptq", 4), o);
  const at::Tensor ids = some_ids(48, 256, 3);
  const at::Tensor logits4 = dptq::forward_logits(all4, ids);
  dptq::save_quantized_checkpoint(all4, dir / "ckpt");
  dptq::Model r = dptq::load_model(dir / "ckpt");
  dptq::set_activation_plan(r, plan);
  for (size_t l = 0; l < 4; ++l)
    for (auto w : {&dptq::LayerWeights::wq, &dptq::LayerWeights::wk, &dptq::LayerWeights::wo, &dptq::LayerWeights::w_up,
                   &dptq::LayerWeights::w_down}) {
      CHECK(at::equal(r.impl().w.layers[l].*w, direct.impl().w.layers[l].*w));
    }
  const at::Tensor want = dptq::forward_logits(direct, ids);
  const double d = rel_max_diff(dptq::forward_logits(r, ids), want);
  const double plan_effect = rel_max_diff(logits4, want);
  MESSAGE("checkpoint + plan vs GPTQ under the plan: " << d << "; the plan itself moves the logits by " << plan_effect);
  CHECK(d < 1e-6);
  CHECK(plan_effect > 100 * d + 1e-5);  // the comparison is sensitive to the plan
}

TEST_CASE("spearman: perfect, reversed, ties, NaN pairs dropped") {
  CHECK(dptq::spearman({1, 2, 3, 4}, {10, 20, 30, 40}) == doctest::Approx(1.0));
  CHECK(dptq::spearman({1, 2, 3, 4}, {4, 3, 2, 1}) == doctest::Approx(-1.0));
  // Average ranks for ties: x ranks (1.5, 1.5, 3, 4), y ranks (1, 2, 3, 4) -> 0.9486833.
  CHECK(dptq::spearman({1, 1, 2, 3}, {1, 2, 3, 4}) == doctest::Approx(0.9486833));
  CHECK(dptq::spearman({1, NAN, 2, 3, 4}, {1, 5, 2, 3, 4}) == doctest::Approx(1.0));
  CHECK(std::isnan(dptq::spearman({1, 2}, {1, 2})));
}

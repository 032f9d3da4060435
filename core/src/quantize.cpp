// The W4A4KV4 engine: QuaRot rotations, RTN / GPTQ weights, plan-driven activation bits
// (dptq/quantize.hpp). The forward that uses the result is decoder_block (forward.cpp).
#include "dptq/quantize.hpp"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "dptq/error.hpp"
#include "dptq/proxies.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/profiler.hpp"
#include "dptq/rotation.hpp"
#include "dptq/safetensors.hpp"
#include "dptq/weight_quant.hpp"

namespace fs = std::filesystem;

namespace dptq {

Rotation make_dense_rotation(const at::Tensor& R, std::string kind, uint64_t seed) {
  Rotation r;
  r.B = R.to(at::kFloat).contiguous();
  r.kind = std::move(kind);
  r.seed = seed;
  return r;
}

Rotation make_random_rotation(int64_t n, uint64_t seed) {
  if (!hadamard_exists(n)) return make_dense_rotation(random_orthogonal(n, seed), "random_orthogonal", seed);
  // random_hadamard(n, seed) = diag(s)·(S_a ⊗ H_m)/√n with the same sign stream (rotation.cpp).
  std::mt19937_64 rng(seed);
  std::vector<float> s(static_cast<size_t>(n));
  for (auto& v : s) v = (rng() & 1) ? 1.f : -1.f;
  const int64_t m = hadamard_base_order(n), a = n / m;
  Rotation r;
  r.signs = at::from_blob(s.data(), {n}, at::kFloat).clone();
  if (m == 1) {
    r.B = hadamard_matrix(n).to(at::kFloat);  // pure Sylvester: one GEMM
  } else {
    if (a > 1) r.A = hadamard_matrix(a).to(at::kFloat);
    r.B = hadamard_matrix(m).to(at::kFloat);
  }
  r.scale = 1.0 / std::sqrt(double(n));
  r.kind = "random_hadamard";
  r.seed = seed;
  return r;
}

namespace {

std::string blocks_text(const std::vector<int64_t>& b) {
  std::string s;
  for (int64_t x : b) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

QuantState& state_of(Model& model) {
  if (!model.impl().quant) throw Error(ErrorKind::InvalidArgument, "", "the model is not quantized");
  return *model.impl().quant;
}

// ------------------------------------------------------------------------------ rotations

struct RotationSet {
  at::Tensor r1;               // [d, d] fp64
  std::vector<at::Tensor> r2;  // per block [hd, hd] fp64
  std::string source;
};

at::Tensor check_orthogonal(const at::Tensor& R, int64_t n, const std::string& file, const std::string& name) {
  if (R.dim() != 2 || R.size(0) != n || R.size(1) != n)
    throw Error(ErrorKind::Shape, file, "rotation '" + name + "' has shape [" + std::to_string(R.size(0)) +
                (R.dim() > 1 ? ", " + std::to_string(R.size(1)) : std::string()) + "], expected [" + std::to_string(n) +
                ", " + std::to_string(n) + "]");
  const at::Tensor Rd = R.to(at::kDouble);
  const double err = (at::matmul(Rd, Rd.transpose(0, 1)) - at::eye(n, at::kDouble)).abs().max().item<double>();
  if (!(err <= 1e-3))
    throw Error(ErrorKind::InvalidArgument, file, "rotation '" + name + "' is not orthogonal (max |R·Rᵀ - I| = " +
                std::to_string(err) + ")");
  return Rd;
}

RotationSet make_rotations(const Model& model, const QuantizeOptions& o) {
  const ModelConfig& c = model.config();
  RotationSet r;
  if (o.rotation_file.empty()) {
    r.r1 = random_hadamard(c.d_model, o.rotation_seed);
    r.r2.assign(size_t(c.n_layers), random_hadamard(c.head_dim, o.rotation_seed + 3));
    r.source = "random_hadamard";
    return r;
  }
  const std::string file = o.rotation_file.string();
  SafetensorsFile f(o.rotation_file);
  auto load = [&](const std::string& name) {
    const auto& e = f.get(name);
    at::Tensor t = at::empty(e.shape, at::kFloat);
    f.to_float32(e, t.data_ptr<float>());
    return t;
  };
  r.r1 = check_orthogonal(load("R1"), c.d_model, file, "R1");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string per = "model.layers." + std::to_string(l) + ".self_attn.R2";
    if (f.find(per)) r.r2.push_back(check_orthogonal(load(per), c.head_dim, file, per));
    else if (f.find("R2")) r.r2.push_back(check_orthogonal(load("R2"), c.head_dim, file, "R2"));
    else r.r2.push_back(random_hadamard(c.head_dim, o.rotation_seed + 3));
  }
  r.source = "file";
  return r;
}

// QuaRot's offline part: fold the RMSNorm γ, fuse R1 and R2, fuse the online rotations' inverses
// into down_proj / o_proj. Computed in fp64, stored back in the model dtype.
void rotate_model(Model& model, QuantState& qs, const RotationSet& rs) {
  Model::Impl& impl = model.impl();
  ModelConfig& c = impl.info.config;
  ModelWeights& w = impl.w;
  const auto dt = impl.dtype;
  const auto dev = impl.device;
  auto D = [](const at::Tensor& t) { return t.to(at::kCPU, at::kDouble); };
  auto back = [&](const at::Tensor& t) { return t.to(dev, dt).contiguous(); };
  const at::Tensor R1 = rs.r1;

  // lm_head reads RMSNorm(h_L)·γ_final: fold γ, then the rotated stream.
  at::Tensor head = D(w.lm_head) * D(w.final_norm).unsqueeze(0);
  w.lm_head = back(at::matmul(head, R1));
  w.embed = back(at::matmul(D(w.embed), R1));
  w.final_norm = at::ones_like(w.final_norm);
  c.tied_embeddings = false;

  // On the host like R1 and R2 (the online rotations may already live on the model's device).
  const at::Tensor Rh = qs.heads.dense().to(at::kCPU, at::kDouble);
  const at::Tensor Rff = qs.down.dense().to(at::kCPU, at::kDouble);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[size_t(l)];
    const at::Tensor g1 = D(L.attn_norm).unsqueeze(0), g2 = D(L.mlp_norm).unsqueeze(0);
    auto in_rot = [&](const at::Tensor& W, const at::Tensor& g) { return at::matmul(D(W) * g, R1); };
    L.wq = back(in_rot(L.wq, g1));
    L.wk = back(in_rot(L.wk, g1));
    // v_proj rows per KV head: v_h -> v_h·R2 (rows R2ᵀ·W_h); its bias likewise.
    const at::Tensor R2 = rs.r2[size_t(l)];
    at::Tensor wv = in_rot(L.wv, g1).view({c.n_kv_heads, c.head_dim, c.d_model});
    L.wv = back(at::matmul(R2.transpose(0, 1), wv).reshape({c.n_kv_heads * c.head_dim, c.d_model}));
    if (L.bv.defined()) L.bv = back(at::matmul(D(L.bv).view({c.n_kv_heads, c.head_dim}), R2).reshape({-1}));
    // o_proj: output rotated by R1ᵀ; input (heads ⊗ R2) — R2 from V, the head mix online.
    L.wo = back(at::matmul(at::matmul(R1.transpose(0, 1), D(L.wo)), at::kron(Rh, R2)));
    L.w_gate = back(in_rot(L.w_gate, g2));
    L.w_up = back(in_rot(L.w_up, g2));
    L.w_down = back(at::matmul(at::matmul(R1.transpose(0, 1), D(L.w_down)), Rff));
    L.attn_norm = at::ones_like(L.attn_norm);
    L.mlp_norm = at::ones_like(L.mlp_norm);
  }
  qs.r1 = rs.r1.to(at::kFloat);
  qs.r2.clear();
  for (const auto& r : rs.r2) qs.r2.push_back(r.to(at::kFloat));
}

// ------------------------------------------------------------------------------ weights

constexpr const auto& kLinears = kLinearWeights;

std::string linear_name(int64_t l, const char* suffix) {
  return "model.layers." + std::to_string(l) + "." + suffix;
}

// Scales in fp16 (what the checkpoint stores), then the weight becomes its dequantized value.
void install(Model& model, QuantState& qs, int64_t l, const LinearRef& ref, QuantizedWeight qw) {
  qw.scales = qw.scales.to(at::kHalf).to(at::kFloat);
  if (qw.zeros.defined()) qw.zeros = qw.zeros.to(at::kHalf).to(at::kFloat);
  at::Tensor& W = model.impl().w.layers[size_t(l)].*(ref.member);
  W = qw.dequantize().to(W.device(), W.scalar_type()).contiguous();
  qw.codes = qw.codes.to(at::kCPU);
  qw.scales = qw.scales.to(at::kCPU);
  if (qw.zeros.defined()) qw.zeros = qw.zeros.to(at::kCPU);
  qs.qweights[linear_name(l, ref.name)] = std::move(qw);
}

WeightQuantConfig weight_config(const QuantState& qs, const QuantizeOptions& o) {
  WeightQuantConfig cfg;
  cfg.bits = qs.settings.weight_bits;
  cfg.symmetric = qs.settings.weight_symmetric;
  cfg.mse_clip = o.weight_mse_clip;
  return cfg;
}

void rtn_weights(Model& model, QuantState& qs, const QuantizeOptions& o, Progress* progress) {
  const int64_t L = model.config().n_layers;
  const WeightQuantConfig cfg = weight_config(qs, o);
  if (progress) { progress->set_total(L); progress->set_done(0); }
  for (int64_t l = 0; l < L; ++l) {
    if (progress) {
      progress->throw_if_cancelled();
      progress->set_stage("RTN block " + std::to_string(l));
    }
    for (const LinearRef& ref : kLinears)
      install(model, qs, l, ref, rtn_quantize(model.impl().w.layers[size_t(l)].*(ref.member), cfg));
    if (progress) progress->set_done(l + 1);
  }
}

// Collects one linear-layer input of one block into a Hessian, then stops the block early: the
// rest of the block is not needed for this stage (thrown through decoder_block, caught below).
struct StopBlock {};
class HessianTap final : public ForwardTaps {
 public:
  HessianTap(TapPoint point, HessianAccumulator& acc) : point_(point), acc_(acc) {}
  uint32_t wants(int64_t) const override { return point_; }
  void collect(int64_t, TapPoint, const at::Tensor& x) override {
    acc_.add(x);
    throw StopBlock{};
  }

 private:
  TapPoint point_;
  HessianAccumulator& acc_;
};

// GPTQ layer by layer in QuaRot's order (k/v/q, then o, then up/gate, then down), each group's
// Hessian taken from inputs computed with the groups before it already quantized; the next
// block's inputs come from this block fully quantized. Activations are not quantized meanwhile.
void gptq_weights(Model& model, QuantState& qs, const QuantizeOptions& o, Progress* progress) {
  ProfileOptions po;
  po.calib = o.calib;
  po.samples = o.calib_samples;
  po.seqlen = o.calib_seqlen;
  po.seed = o.calib_seed;
  po.holdout_tokens = o.calib_holdout_tokens;
  const auto windows = calibration_windows(model, po);
  const ModelConfig& c = model.config();
  const RopeTables rope = rope_tables(model, o.calib_seqlen);
  std::vector<at::Tensor> hs;
  for (const auto& w : windows)
    hs.push_back(embed_tokens(model, at::tensor(at::ArrayRef<int32_t>(w), at::kInt).to(at::kLong)));
  const WeightQuantConfig cfg = weight_config(qs, o);
  GptqConfig g;
  g.damp = o.gptq_damp;
  g.block = o.gptq_block;
  g.act_order = o.gptq_act_order;
  struct Stage { TapPoint point; std::vector<int> linears; const char* what; };
  const Stage stages[] = {{kTapQkv, {1, 2, 0}, "q/k/v"}, {kTapO, {3}, "o"}, {kTapGateUp, {5, 4}, "gate/up"}, {kTapDown, {6}, "down"}};
  if (progress) { progress->set_total(c.n_layers * 5); progress->set_done(0); }
  int64_t step = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (const Stage& st : stages) {
      if (progress) {
        progress->throw_if_cancelled();
        progress->set_stage("GPTQ block " + std::to_string(l) + " " + st.what);
      }
      const at::Tensor& W0 = model.impl().w.layers[size_t(l)].*(kLinears[st.linears[0]].member);
      HessianAccumulator acc(W0.size(1), W0.device());
      HessianTap tap(st.point, acc);
      for (const auto& h : hs) {
        try {
          decoder_block(model, l, h, rope, &tap);
        } catch (const StopBlock&) {
        }
      }
      const at::Tensor H = acc.hessian();
      for (int i : st.linears) {
        const LinearRef& ref = kLinears[i];
        QuantizedWeight qw;
        try {
          qw = gptq_quantize(model.impl().w.layers[size_t(l)].*(ref.member), H, cfg, g);
        } catch (const Error& e) {
          throw Error(e.kind(), "", linear_name(l, ref.name) + ": " + e.message());
        }
        install(model, qs, l, ref, std::move(qw));
      }
      if (progress) progress->set_done(++step);
    }
    for (auto& h : hs) h = decoder_block(model, l, h, rope);
    if (progress) progress->set_done(++step);
  }
}

}  // namespace

// ------------------------------------------------------------------------------ public API

Plan uniform_plan(const Model& model, const std::string& method, int act_bits) {
  Plan p;
  p.model_fingerprint = model.info().fingerprint;
  p.model_name = model.info().name;
  p.base_method = method;
  p.policy.name = "manual";
  p.created_utc = "1970-01-01T00:00:00Z";
  const int64_t L = model.config().n_layers;
  p.blocks.resize(size_t(L));
  for (int64_t l = 0; l < L; ++l) {
    PlanBlock& b = p.blocks[size_t(l)];
    b.index = l;
    b.bits = SiteBits{act_bits, act_bits, act_bits, act_bits};
    if (act_bits == 8) {
      b.selected = true;
      b.rank = int(l) + 1;
      b.reason = "every block at 8 bits";
      p.policy.manual_blocks.push_back(l);
    }
  }
  return p;
}

bool is_quantized(const Model& model) { return model.impl().quant != nullptr; }

const Plan& model_plan(const Model& model) {
  if (!model.impl().quant) throw Error(ErrorKind::InvalidArgument, "", "the model is not quantized");
  return model.impl().quant->plan;
}

std::string quant_summary(const Model& model) {
  const QuantState* q = model.impl().quant.get();
  if (!q) return "FP (not quantized)";
  const QuantizerSettings& s = q->settings;
  std::vector<int64_t> eight;
  for (const PlanBlock& b : q->plan.blocks)
    if (b.bits.qkv == 8 || b.bits.o == 8 || b.bits.gate_up == 8 || b.bits.down == 8) eight.push_back(b.index);
  std::string out = q->method + " W" + (q->qweights.empty() ? std::string("16") : std::to_string(s.weight_bits)) + "A" +
                    (q->act_quant ? std::to_string(s.act_bits) + "KV" + std::to_string(s.kv_bits) : std::string("16KV16"));
  if (!q->act_quant) return out;
  if (eight.empty()) return out + ", no 8-bit blocks";
  return out + ", 8-bit activations in block" + (eight.size() > 1 ? "s " : " ") + blocks_text(eight) + " (" +
         std::to_string(eight.size()) + " of " + std::to_string(q->plan.blocks.size()) + ")";
}

void set_activation_plan(Model& model, const Plan& plan, const std::string& where) {
  QuantState& qs = state_of(model);
  validate_plan(plan, where);
  check_plan_matches(plan, model.info().fingerprint, model.config().n_layers, where);
  if (!qs.qweights.empty() && plan.quantizer.weight_bits != qs.settings.weight_bits)
    throw Error(ErrorKind::InvalidArgument, where, "plan asks for " + std::to_string(plan.quantizer.weight_bits) +
                "-bit weights, the model's are " + std::to_string(qs.settings.weight_bits) + "-bit");
  qs.settings = plan.quantizer;
  qs.act_bits.clear();
  for (const PlanBlock& b : plan.blocks) qs.act_bits.push_back(qs.act_quant ? b.bits : SiteBits{16, 16, 16, 16});
  qs.kv_quant = qs.act_quant;
  qs.plan = plan;
  qs.plan.base_method = qs.method;
}

void quantize_model(Model& model, const Plan& plan, const QuantizeOptions& o, Progress* progress,
                    const std::string& plan_where) {
  c10::InferenceMode guard;
  if (!is_quant_method(o.method))
    throw Error(ErrorKind::InvalidArgument, "", "unknown method '" + o.method + "' (known: " + quant_method_list() + ")");
  if (model.impl().quant) throw Error(ErrorKind::InvalidArgument, "", "the model is already quantized");
  validate_plan(plan, plan_where);
  check_plan_matches(plan, model.info().fingerprint, model.config().n_layers, plan_where);
  const ModelConfig& c = model.config();
  const bool quarot = o.method.rfind("quarot-", 0) == 0;
  const bool gptq = o.method == "gptq" || o.method == "quarot-gptq";
  // Rotations first (a bad rotation file fails before any work).
  RotationSet rs;
  if (quarot) rs = make_rotations(model, o);

  auto qs = std::make_shared<QuantState>();
  qs->method = o.method;
  qs->rotated = quarot;
  qs->rotation_seed = o.rotation_seed;
  qs->settings = plan.quantizer;
  qs->act_bits.assign(size_t(c.n_layers), SiteBits{16, 16, 16, 16});
  qs->kv_quant = false;
  qs->act_quant = o.quantize_activations;
  qs->plan = plan;
  if (quarot) {
    const auto dev = model.impl().device;
    // Online rotations stay fp32 (Rotation::apply computes in fp32), so the fused inverses match.
    qs->down = make_random_rotation(c.d_ff, o.rotation_seed + 1).to(dev, at::kFloat);
    qs->heads = make_random_rotation(c.n_heads, o.rotation_seed + 2).to(dev, at::kFloat);
    qs->k = make_random_rotation(c.head_dim, o.rotation_seed + 3).to(dev, at::kFloat);
    qs->r1_source = rs.source == "file" ? "file " + o.rotation_file.string()
                                        : "random_hadamard seed " + std::to_string(o.rotation_seed);
    if (progress) progress->set_stage("rotating");
    rotate_model(model, *qs, rs);
  }
  // DESIGN §5: embeddings, lm_head, norms (and biases) are 16-bit: round them to fp16 here, so the
  // simulated model is exactly what a checkpoint stores and reloads (only with quantized weights:
  // a checkpoint needs them; rotation-only models stay exact for the invariance tests).
  if (o.quantize_weights) {
    ModelWeights& w = model.impl().w;
    auto f16 = [](at::Tensor& t) { if (t.defined()) t = t.to(at::kHalf).to(t.scalar_type()); };
    const bool tied = w.lm_head.defined() && w.lm_head.is_same(w.embed);
    f16(w.embed);
    if (tied) w.lm_head = w.embed; else f16(w.lm_head);
    f16(w.final_norm);
    for (LayerWeights& L : w.layers)
      for (at::Tensor* t : {&L.attn_norm, &L.mlp_norm, &L.bq, &L.bk, &L.bv}) f16(*t);
  }
  model.impl().quant = qs;
  // On an exception (cancel, bad calibration text) the model is left half-quantized; callers drop it.
  if (o.quantize_weights) {
    if (gptq) gptq_weights(model, *qs, o, progress);
    else rtn_weights(model, *qs, o, progress);
  }
  set_activation_plan(model, plan, plan_where);
}

// ------------------------------------------------------------------------------ oracle

namespace {

// Windows as token tensors, their rope tables and the per-block input cache of one configuration.
struct OracleEval {
  Model& model;
  std::vector<at::Tensor> ids;
  RopeTables rope;
  std::vector<std::vector<at::Tensor>> cache;  // [window][l] = input of block l (l = 0..L)
  int64_t predicted = 0;

  OracleEval(Model& m, const std::vector<std::vector<int32_t>>& windows) : model(m) {
    int64_t T = 0;
    for (const auto& w : windows) {
      ids.push_back(at::tensor(at::ArrayRef<int32_t>(w), at::kInt).to(at::kLong));
      T = std::max<int64_t>(T, int64_t(w.size()));
      predicted += int64_t(w.size()) - 1;
    }
    rope = rope_tables(model, T);
    cache.resize(windows.size());
  }
  // Re-runs blocks from..L-1 of the current configuration into the cache.
  void refresh(int64_t from) {
    const int64_t L = model.config().n_layers;
    for (size_t w = 0; w < ids.size(); ++w) {
      auto& c = cache[w];
      if (c.empty()) {
        c.resize(size_t(L + 1));
        c[0] = embed_tokens(model, ids[w]);
        from = 0;
      }
      for (int64_t l = from; l < L; ++l) c[size_t(l + 1)] = decoder_block(model, l, c[size_t(l)], rope);
    }
  }
  double ppl_from_cache() const {
    double nll = 0;
    for (size_t w = 0; w < ids.size(); ++w) nll += stream_nll_sum(model, cache[w].back(), ids[w]);
    return std::exp(nll / double(predicted));
  }
  // Perplexity when blocks from..L-1 run under the current bits, starting from the cached input.
  double ppl_from(int64_t from) const {
    const int64_t L = model.config().n_layers;
    double nll = 0;
    for (size_t w = 0; w < ids.size(); ++w) {
      at::Tensor h = cache[w][size_t(from)];
      for (int64_t l = from; l < L; ++l) h = decoder_block(model, l, h, rope);
      nll += stream_nll_sum(model, h, ids[w]);
    }
    return std::exp(nll / double(predicted));
  }
};

}  // namespace

OracleResult oracle_plan(Model& model, const OracleOptions& o, Progress* progress) {
  c10::InferenceMode guard;
  QuantState& qs = state_of(model);
  const int64_t L = model.config().n_layers;
  if (o.budget < 1 || o.budget > L)
    throw Error(ErrorKind::InvalidArgument, "", "oracle budget " + std::to_string(o.budget) + " is out of range 1.." + std::to_string(L));
  if (o.windows.empty()) throw Error(ErrorKind::InvalidArgument, "", "oracle needs at least one held-out window");
  const std::vector<SiteBits> base_bits = qs.act_bits;
  const Plan base_plan = qs.plan;
  OracleResult r;
  OracleEval ev(model, o.windows);
  std::vector<bool> chosen(size_t(L), false);
  std::vector<int64_t> order;
  int64_t total = 1, done = 0;
  for (int64_t k = 0; k < o.budget; ++k) total += L - k;
  if (progress) { progress->set_total(total); progress->set_done(0); }
  try {
    ev.refresh(0);
    r.base_ppl = ev.ppl_from_cache();
    if (progress) progress->set_done(++done);
    for (int64_t step = 0; step < o.budget; ++step) {
      int64_t best = -1;
      double best_ppl = 0;
      for (int64_t l = 0; l < L; ++l) {
        if (chosen[size_t(l)]) continue;
        if (progress) {
          progress->throw_if_cancelled();
          progress->set_stage("oracle step " + std::to_string(step + 1) + ", block " + std::to_string(l));
        }
        const SiteBits saved = qs.act_bits[size_t(l)];
        qs.act_bits[size_t(l)] = SiteBits{8, 8, 8, 8};
        const double p = ev.ppl_from(l);
        qs.act_bits[size_t(l)] = saved;
        if (step == 0) {
          r.single_ppl.resize(size_t(L));
          r.single_ppl[size_t(l)] = p;
        }
        if (best < 0 || p < best_ppl) { best = l; best_ppl = p; }
        if (progress) progress->set_done(++done);
      }
      chosen[size_t(best)] = true;
      order.push_back(best);
      qs.act_bits[size_t(best)] = SiteBits{8, 8, 8, 8};
      ev.refresh(best);
      r.step_ppl.push_back(best_ppl);
    }
  } catch (...) {
    qs.act_bits = base_bits;
    throw;
  }
  qs.act_bits = base_bits;
  for (double p : r.single_ppl) r.single_gain.push_back(r.base_ppl - p);

  Plan p = base_plan;
  p.policy = PlanPolicy{};
  p.policy.name = "oracle";
  p.policy.budget = o.budget;
  for (PlanBlock& b : p.blocks) {
    b.selected = false;
    b.rank = 0;
    b.reason.clear();
    b.bits = SiteBits{};
    b.score = r.single_gain[size_t(b.index)];
  }
  double prev = r.base_ppl;
  for (size_t i = 0; i < order.size(); ++i) {
    PlanBlock& b = p.blocks[size_t(order[i])];
    b.selected = true;
    b.rank = int(i) + 1;
    b.bits = SiteBits{8, 8, 8, 8};
    char buf[160];
    std::snprintf(buf, sizeof buf, "oracle step %zu: held-out ppl %.3f -> %.3f (alone: gain %.3f)", i + 1, prev,
                  r.step_ppl[i], r.single_gain[size_t(order[i])]);
    b.reason = buf;
    prev = r.step_ppl[i];
  }
  r.plan = std::move(p);
  return r;
}

double spearman(const std::vector<double>& a_in, const std::vector<double>& b_in) {
  std::vector<double> a, b;
  for (size_t i = 0; i < std::min(a_in.size(), b_in.size()); ++i)
    if (!std::isnan(a_in[i]) && !std::isnan(b_in[i])) { a.push_back(a_in[i]); b.push_back(b_in[i]); }
  return rank_spearman(a, b);  // proxies.hpp: average ranks; NaN for < 3 pairs or no variation
}

}  // namespace dptq

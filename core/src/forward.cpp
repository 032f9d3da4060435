// LLaMA-family decoder forward in LibTorch (fp32 on CPU): RMSNorm, rotate-half RoPE (with llama3
// frequency scaling or GGUF frequency factors), grouped-query attention, SwiGLU MLP.
#include <ATen/ATen.h>

#include <c10/core/InferenceMode.h>

#include <cmath>
#include <functional>

#include "dptq/device_ops.hpp"
#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/op_times.hpp"
#include "dptq/quant.hpp"

namespace dptq {

at::Tensor rms_norm(const at::Tensor& h, const at::Tensor& gamma, double eps) {
  const at::Tensor x = h.to(at::kFloat);
  const at::Tensor inv = at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (x * inv).to(h.scalar_type()) * gamma;
}

namespace {

// Inverse RoPE frequencies in double, with the model's scaling applied.
std::vector<double> inv_frequencies(const Model& model) {
  const ModelConfig& c = model.config();
  const int64_t half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
  if (c.rope_scaling && c.rope_scaling->type == "llama3") {
    // Same piecewise rule as HF `_compute_llama3_parameters` (LLaMA-3.1): long wavelengths are
    // divided by `factor`, short ones kept, the band in between interpolated smoothly.
    const RopeScaling& s = *c.rope_scaling;
    const double old_ctx = double(s.original_max_position);
    const double low_wavelen = old_ctx / s.low_freq_factor;
    const double high_wavelen = old_ctx / s.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  const at::Tensor& ff = model.impl().w.rope_freq_factors;
  if (ff.defined()) {
    const at::Tensor f32 = ff.to(at::kCPU, at::kFloat).contiguous();  // read on the host
    for (int64_t i = 0; i < half; ++i) inv[i] /= double(f32.data_ptr<float>()[i]);
  }
  return inv;
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

RopeTables rope_tables(const Model& model, int64_t n_positions) {
  // HF computes the angles in fp32 (inv_freq fp32 times positions fp32); doing the same keeps
  // logits bit-close to the reference at long positions.
  const std::vector<double> inv = inv_frequencies(model);
  std::vector<float> invf(inv.begin(), inv.end());
  const at::Tensor inv_t = at::from_blob(invf.data(), {int64_t(invf.size())}, at::kFloat).clone();
  const at::Tensor pos = at::arange(n_positions, at::kFloat);
  const at::Tensor freqs = at::outer(pos, inv_t);
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  const auto& impl = model.impl();
  return {emb.cos().to(impl.device, impl.dtype), emb.sin().to(impl.device, impl.dtype)};
}

at::Tensor embed_tokens(const Model& model, const at::Tensor& ids) {
  const auto& impl = model.impl();
  return at::embedding(impl.w.embed, ids.to(impl.device, at::kLong));
}

namespace {

// The activation quantizer of one site: per token, `bits` (>= 16: off), the plan's clip ratios.
ActQuantConfig act_config(const QuantState& q, int bits) {
  const QuantizerSettings& s = q.settings;
  return {bits, s.act_asymmetric, bits <= 4 ? s.act_clip_4bit : s.act_clip_8bit, 0};
}

at::Tensor quant_act(const QuantState* q, const at::Tensor& x, int bits) {
  if (!q || bits >= 16) return x;
  OpTimer timer("act fake-quant");
  return fake_quant(x, act_config(*q, bits));
}

// One site's linear layer(s) on x = the site's (unquantized) input: the integer engine when it is
// on and the site is quantized, else fake quantization and fp32 GEMMs with `weights` (fused
// along the output dimension like the integer layer). Taps the site's quantized input.
std::vector<at::Tensor> site_linear(const QuantState* qs, const IntLinear* il, const at::Tensor& x, int bits,
                                    std::initializer_list<std::pair<const at::Tensor*, const at::Tensor*>> weights,
                                    const std::function<void(const at::Tensor&)>& tap) {
  std::vector<at::Tensor> ys;
  if (il && qs && bits < 16) {
    if (tap) tap(quant_act(qs, x, bits));
    const at::Tensor y = int_linear(x, *il, act_config(*qs, bits)).to(x.scalar_type());
    int64_t at = 0;
    for (int64_t n : il->splits) {
      ys.push_back(y.narrow(-1, at, n));
      at += n;
    }
    return ys;
  }
  const at::Tensor xq = quant_act(qs, x, bits);
  if (tap) tap(xq);
  OpTimer timer("linear (float)");
  for (const auto& [w, b] : weights) ys.push_back(b && b->defined() ? at::linear(xq, *w, *b) : at::linear(xq, *w));
  return ys;
}

// The KV-cache quantizer on [heads, T, hd]: groups of min(128, hd) (or the plan's group size).
at::Tensor quant_kv(const QuantState* q, const at::Tensor& x) {
  if (!q || !q->kv_quant || q->settings.kv_bits >= 16) return x;
  OpTimer timer("kv fake-quant");
  const QuantizerSettings& s = q->settings;
  const int64_t hd = x.size(-1);
  ActQuantConfig cfg{s.kv_bits, true, s.kv_clip, s.kv_group_size > 0 ? s.kv_group_size : std::min<int64_t>(128, hd)};
  return fake_quant(x, cfg);
}

}  // namespace

at::Tensor Rotation::apply(const at::Tensor& x) const {
  if (!defined()) return x;
  const int64_t n = size(), b = B.size(0), a = n / b;
  if (x.size(-1) != n)
    throw Error(ErrorKind::Shape, "", "rotation of order " + std::to_string(n) + " applied to rows of " + std::to_string(x.size(-1)));
  // CUDA: the fast Walsh-Hadamard kernel (fp32 math, one rounding to x's dtype) for the random
  // Hadamard rotations — the same diag(s)·(S_a ⊗ H_m)·scale as the factored GEMMs below.
  if (x.is_cuda() && kind == "random_hadamard" && device_ops::cuda_kernels_built())
    return device_ops::hadamard_rotate(x, signs, scale);
  const auto sizes = x.sizes().vec();
  // Plain 2-D GEMMs (batched tiny matmuls are far slower on CPU): X·B on rows of b, then Aᵀ·X as
  // (Xᵀ·A)ᵀ on the transposed [N, b, a] view.
  at::Tensor y = x.reshape({-1, n}).to(at::kFloat);  // fp32 even on a bf16 GPU model: bf16 is not orthogonal enough
  if (signs.defined()) y = y * signs;
  y = at::mm(y.reshape({-1, b}), B);
  if (A.defined()) {
    const int64_t N = y.numel() / n;
    y = at::mm(y.view({N, a, b}).transpose(1, 2).reshape({-1, a}), A).view({N, b, a}).transpose(1, 2);
  }
  if (scale != 1.0) y = y * scale;
  return y.reshape(sizes).to(x.scalar_type());
}

at::Tensor Rotation::dense() const {
  const int64_t n = size();
  return apply(at::eye(n, B.options()));
}

Rotation Rotation::to(at::Device device, at::ScalarType dtype) const {
  Rotation r = *this;
  for (at::Tensor* t : {&r.signs, &r.A, &r.B})
    if (t->defined()) *t = t->to(device, dtype);
  return r;
}

namespace {
// Throws Error(Format) naming the model, the block, the first site (in forward order) whose output
// holds a NaN or an infinity, and the first such token: "block 3, site down (...), token 17: NaN".
[[noreturn]] void report_non_finite(const Model& model, int64_t layer,
                                    std::initializer_list<std::pair<const char*, at::Tensor>> sites) {
  for (const auto& [name, x] : sites) {
    const at::Tensor bad_rows = at::isfinite(x).logical_not_().reshape({x.size(0), -1}).any(1);
    if (!bad_rows.any().item<bool>()) continue;
    const int64_t token = bad_rows.nonzero()[0][0].item<int64_t>();
    const at::Tensor row = x.reshape({x.size(0), -1})[token];
    const bool nan = at::isnan(row).any().item<bool>();
    throw Error(ErrorKind::Format, model.info().path.string(),
                "non-finite activation (" + std::string(nan ? "NaN" : "Inf") + ") in block " + std::to_string(layer) +
                    ", site " + name + ", token " + std::to_string(token) + " of the window");
  }
  throw Error(ErrorKind::Format, model.info().path.string(),
              "non-finite activation in block " + std::to_string(layer) + " (output)");
}
}  // namespace

at::Tensor decoder_block(const Model& model, int64_t layer, const at::Tensor& h, const RopeTables& rope,
                         ForwardTaps* taps, const AttentionLayout* layout) {
  const ModelConfig& c = model.config();
  const LayerWeights& L = model.impl().w.layers.at(size_t(layer));
  const QuantState* qs = model.impl().quant.get();
  const SiteBits bits = qs ? qs->act_bits.at(size_t(layer)) : SiteBits{16, 16, 16, 16};
  const int64_t T = h.size(0), hd = c.head_dim;
  const uint32_t want = taps ? taps->wants(layer) : 0u;
  auto tap = [&](TapPoint p, const at::Tensor& x) {
    if (want & p) taps->collect(layer, p, x);
  };

  tap(kTapBlockInput, h);
  const IntBlock* ib = qs && !qs->int_blocks.empty() ? &qs->int_blocks.at(size_t(layer)) : nullptr;
  auto site_tap = [&](TapPoint p) -> std::function<void(const at::Tensor&)> {
    if (!(want & p)) return {};
    return [&, p](const at::Tensor& x) { taps->collect(layer, p, x); };
  };
  const int64_t nq = c.n_heads * hd;
  at::Tensor xn;
  {
    OpTimer timer("rms_norm");
    xn = rms_norm(h, L.attn_norm, c.rms_eps);
  }
  const std::vector<at::Tensor> qkv = site_linear(qs, ib ? &ib->qkv : nullptr, xn, bits.qkv,
                                                  {{&L.wq, &L.bq}, {&L.wk, &L.bk}, {&L.wv, &L.bv}}, site_tap(kTapQkv));
  at::Tensor q = qkv[0].reshape({T, c.n_heads, hd}).transpose(0, 1);
  at::Tensor k = qkv[1].reshape({T, c.n_kv_heads, hd}).transpose(0, 1);
  at::Tensor v = qkv[2].reshape({T, c.n_kv_heads, hd}).transpose(0, 1);
  {
    OpTimer timer("rope");
    const at::Tensor cos = layout ? rope.cos.index_select(0, layout->positions) : rope.cos.narrow(0, 0, T);
    const at::Tensor sin = layout ? rope.sin.index_select(0, layout->positions) : rope.sin.narrow(0, 0, T);
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
  }
  if (qs) {
    // QuaRot: a head-wise rotation of queries and keys after RoPE leaves q·kᵀ unchanged and
    // spreads the keys' outliers before the KV-cache quantizer; V is rotated offline (R2 in v/o).
    {
      OpTimer timer("online rotation");
      q = qs->k.apply(q);
      k = qs->k.apply(k);
    }
    k = quant_kv(qs, k);
    v = quant_kv(qs, v);
  }
  if (want & kTapK) tap(kTapK, k.transpose(0, 1).reshape({T, c.n_kv_heads * hd}));
  if (want & kTapV) tap(kTapV, v.transpose(0, 1).reshape({T, c.n_kv_heads * hd}));
  at::Tensor o;
  {
    OpTimer timer("attention");
    // Causal attention; Mistral's sliding window additionally hides keys more than `window` back.
    std::optional<at::Tensor> mask;
    if (layout) {
      mask = layout->mask;
    } else if (c.sliding_window > 0 && T > c.sliding_window) {
      const at::Tensor i = at::arange(T, at::TensorOptions().device(h.device())).unsqueeze(1);
      const at::Tensor j = at::arange(T, at::TensorOptions().device(h.device())).unsqueeze(0);
      mask = (j <= i).logical_and(i - j < c.sliding_window);
    }
    const at::Tensor attn = at::scaled_dot_product_attention(
        q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), mask, /*dropout_p=*/0.0,
        /*is_causal=*/!mask.has_value(), /*scale=*/1.0 / std::sqrt(double(hd)), /*enable_gqa=*/true);
    o = attn.squeeze(0).transpose(0, 1).reshape({T, nq});
  }
  if (qs && qs->heads.defined()) {  // online rotation across heads: o [T, nh, hd] -> mix the nh axis
    OpTimer timer("online rotation");
    o = qs->heads.apply(o.view({T, c.n_heads, hd}).transpose(1, 2)).transpose(1, 2).reshape({T, nq});
  }
  at::Tensor a = site_linear(qs, ib ? &ib->o : nullptr, o, bits.o, {{&L.wo, nullptr}}, site_tap(kTapO))[0];
  {
    OpTimer timer("residual add");
    a = h + a;
  }
  tap(kTapAttnResidual, a);

  at::Tensor yn;
  {
    OpTimer timer("rms_norm");
    yn = rms_norm(a, L.mlp_norm, c.rms_eps);
  }
  const std::vector<at::Tensor> gu = site_linear(qs, ib ? &ib->gate_up : nullptr, yn, bits.gate_up,
                                    {{&L.w_gate, nullptr}, {&L.w_up, nullptr}}, site_tap(kTapGateUp));
  at::Tensor g;
  {
    OpTimer timer("silu * up");
    g = at::silu(gu[0]) * gu[1];
  }
  if (qs && qs->down.defined()) {
    OpTimer timer("online rotation");
    g = qs->down.apply(g);
  }
  at::Tensor out = site_linear(qs, ib ? &ib->down : nullptr, g, qs ? bits.down : 16, {{&L.w_down, nullptr}},
                               site_tap(kTapDown))[0];
  {
    OpTimer timer("residual add");
    out = a + out;
  }
  // One reduction per block; only when it fails are the block's intermediates searched for the
  // first site that went non-finite (a NaN must never propagate silently into a trace or a ppl).
  {
    OpTimer timer("finite check");
    if (!at::isfinite(out).all().item<bool>())
      report_non_finite(model, layer, {{"qkv (q/k/v_proj output)", qkv[0]}, {"qkv (q/k/v_proj output)", qkv[1]},
                                       {"qkv (q/k/v_proj output)", qkv[2]}, {"attention output", o},
                                       {"o (o_proj output + residual)", a}, {"gate_up (gate/up_proj output)", gu[0]},
                                       {"gate_up (gate/up_proj output)", gu[1]}, {"down (down_proj output + residual)", out}});
  }
  tap(kTapBlockOutput, out);
  return out;
}

at::Tensor final_norm(const Model& model, const at::Tensor& h) {
  return rms_norm(h, model.impl().w.final_norm, model.config().rms_eps);
}

namespace {
// h_L [T, d], the residual stream after the last block (before the final norm).
at::Tensor last_stream(const Model& model, const at::Tensor& ids) {
  const int64_t T = ids.size(0);
  if (T > model.config().max_context && model.config().max_context > 0)
    throw Error(ErrorKind::InvalidArgument, "", "sequence of " + std::to_string(T) +
                " tokens exceeds the model context " + std::to_string(model.config().max_context));
  const RopeTables rope = rope_tables(model, T);
  at::Tensor h = embed_tokens(model, ids);
  for (int64_t l = 0; l < model.config().n_layers; ++l) h = decoder_block(model, l, h, rope);
  return h;
}
}  // namespace

at::Tensor forward_logits(const Model& model, const at::Tensor& ids) {
  c10::InferenceMode inference_mode;
  return at::linear(final_norm(model, last_stream(model, ids)), model.impl().w.lm_head).to(at::kFloat);
}

double window_nll_sum(const Model& model, const at::Tensor& ids) {
  c10::InferenceMode inference_mode;
  return stream_nll_sum(model, last_stream(model, ids), ids);
}

double stream_nll_sum(const Model& model, const at::Tensor& h_last, const at::Tensor& ids) {
  c10::InferenceMode inference_mode;
  const at::Tensor hidden = final_norm(model, h_last);
  const at::Tensor targets = ids.to(hidden.device(), at::kLong);
  const int64_t T = ids.size(0);
  constexpr int64_t kChunk = 512;  // [512, V] logits at a time
  double total = 0;
  for (int64_t s = 0; s < T - 1; s += kChunk) {
    const int64_t n = std::min(kChunk, T - 1 - s);
    at::Tensor logits;
    {
      OpTimer timer("lm_head");
      logits = at::linear(hidden.narrow(0, s, n), model.impl().w.lm_head).to(at::kFloat);
    }
    OpTimer timer("log_softmax + nll");
    const at::Tensor logp = at::log_softmax(logits, -1);
    const at::Tensor tgt = targets.narrow(0, s + 1, n).unsqueeze(1);
    total -= logp.gather(1, tgt).sum().to(at::kDouble).item<double>();
  }
  return total;
}

}  // namespace dptq

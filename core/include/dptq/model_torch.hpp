// dptq/model_torch.hpp — the LibTorch side of a loaded model: weights and the decoder forward.
// Include only from translation units that need tensors (they share core's precompiled header).
//
// Layout: one internal layout for every source. Linear weights are [out, in] as in HF, Q/K rows in
// HF's rotate-half RoPE order (GGUF's llama.cpp permutation is undone at load).
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "dptq/model.hpp"

namespace dptq {

struct LayerWeights {
  at::Tensor attn_norm;            // [d]   RMSNorm γ in front of attention
  at::Tensor wq, wk, wv, wo;       // [nh*hd, d], [nkv*hd, d], [nkv*hd, d], [d, nh*hd]
  at::Tensor bq, bk, bv;           // Qwen2 biases (undefined otherwise)
  at::Tensor mlp_norm;             // [d]   RMSNorm γ in front of the MLP
  at::Tensor w_gate, w_up, w_down; // [ff, d], [ff, d], [d, ff]
};

struct ModelWeights {
  at::Tensor embed;       // [V, d]
  at::Tensor final_norm;  // [d]
  at::Tensor lm_head;     // [V, d]; aliases `embed` when tied
  at::Tensor rope_freq_factors;  // [hd/2] divisors of the RoPE frequencies (GGUF rope_freqs), or undefined
  std::vector<LayerWeights> layers;
};

struct Model::Impl {
  ModelInfo info;
  TokenizerSpec tokenizer_spec;  // kept to write the tokenizer back out (save_hf_folder)
  std::unique_ptr<Tokenizer> tokenizer;
  ModelWeights w;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
};

// Name -> tensor in HF naming ("model.layers.3.self_attn.q_proj.weight", ...), for writers.
std::vector<std::pair<std::string, at::Tensor>> named_weights(const Model& model);

// RoPE cos/sin tables [T, hd] (rotate-half layout), in the model dtype on the model device.
struct RopeTables { at::Tensor cos, sin; };
RopeTables rope_tables(const Model& model, int64_t n_positions);

// h [T, d] -> RMSNorm(h) * γ, computed in fp32.
at::Tensor rms_norm(const at::Tensor& h, const at::Tensor& gamma, double eps);

// Instrumentation (ask / collect): the decoder asks wants(layer) once per block and calls
// collect() only for the points in the returned mask, so a forward without taps costs nothing.
// Tensors passed to collect are [T, C] views valid during the call.
enum TapPoint : uint32_t {
  kTapBlockInput = 1u << 0,    // h_l                      [T, d]
  kTapAttnResidual = 1u << 1,  // a_l = h_l + attn(h_l)    [T, d]
  kTapBlockOutput = 1u << 2,   // h_{l+1}                  [T, d]
  kTapQkv = 1u << 3,           // input of q/k/v_proj      [T, d]   (RMSNorm(h_l)·γ)
  kTapO = 1u << 4,             // input of o_proj          [T, nh*hd]
  kTapGateUp = 1u << 5,        // input of gate/up_proj    [T, d]   (RMSNorm(a_l)·γ)
  kTapDown = 1u << 6,          // input of down_proj       [T, ff]
  kTapK = 1u << 7,             // keys after RoPE          [T, nkv*hd]
  kTapV = 1u << 8,             // values                   [T, nkv*hd]
};
struct ForwardTaps {
  virtual ~ForwardTaps() = default;
  virtual uint32_t wants(int64_t layer) const = 0;
  virtual void collect(int64_t layer, TapPoint point, const at::Tensor& x) = 0;
};

// Embeddings of `ids` ([T] int64) -> h_0 [T, d].
at::Tensor embed_tokens(const Model& model, const at::Tensor& ids);
// One decoder block: h_l [T, d] -> h_{l+1} [T, d].
at::Tensor decoder_block(const Model& model, int64_t layer, const at::Tensor& h, const RopeTables& rope,
                         ForwardTaps* taps = nullptr);
// Final RMSNorm of the last residual stream.
at::Tensor final_norm(const Model& model, const at::Tensor& h);
// Logits [T, V] of `ids` [T] (fp32).
at::Tensor forward_logits(const Model& model, const at::Tensor& ids);
// Sum of next-token NLL over positions 0..T-2 of `ids` [T], computing logits in chunks so the
// [T, V] matrix never exists at once.
double window_nll_sum(const Model& model, const at::Tensor& ids);

}  // namespace dptq

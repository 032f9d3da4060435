// dptq/model_torch.hpp — the LibTorch side of a loaded model: weights and the decoder forward.
// Include only from translation units that need tensors (they share core's precompiled header).
//
// Layout: one internal layout for every source. Linear weights are [out, in] as in HF, Q/K rows in
// HF's rotate-half RoPE order (GGUF's llama.cpp permutation is undone at load).
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dptq/int_engine.hpp"
#include "dptq/model.hpp"
#include "dptq/plan.hpp"
#include "dptq/weight_quant.hpp"

namespace dptq {

struct LayerWeights {
  at::Tensor attn_norm;            // [d]   RMSNorm γ in front of attention
  at::Tensor wq, wk, wv, wo;       // [nh*hd, d], [nkv*hd, d], [nkv*hd, d], [d, nh*hd]
  at::Tensor bq, bk, bv;           // Qwen2 biases (undefined otherwise)
  at::Tensor mlp_norm;             // [d]   RMSNorm γ in front of the MLP
  at::Tensor w_gate, w_up, w_down; // [ff, d], [ff, d], [d, ff]
};

// The seven linear layers of a block: HF name suffix (after "model.layers.N.") and member.
struct LinearRef {
  const char* name;
  at::Tensor LayerWeights::*member;
};
inline constexpr LinearRef kLinearWeights[] = {
    {"self_attn.q_proj", &LayerWeights::wq},  {"self_attn.k_proj", &LayerWeights::wk},
    {"self_attn.v_proj", &LayerWeights::wv},  {"self_attn.o_proj", &LayerWeights::wo},
    {"mlp.gate_proj", &LayerWeights::w_gate}, {"mlp.up_proj", &LayerWeights::w_up},
    {"mlp.down_proj", &LayerWeights::w_down},
};

struct ModelWeights {
  at::Tensor embed;       // [V, d]
  at::Tensor final_norm;  // [d]
  at::Tensor lm_head;     // [V, d]; aliases `embed` when tied
  at::Tensor rope_freq_factors;  // [hd/2] divisors of the RoPE frequencies (GGUF rope_freqs), or undefined
  std::vector<LayerWeights> layers;
};

// An orthogonal map x -> x·R applied to the last dimension at run time (QuaRot's online
// rotations). R = diag(signs) · (A ⊗ B) · scale, applied as (x ⊙ signs) viewed [.., a, b] -> Aᵀ X B:
// a Sylvester-times-Paley Hadamard of order 1536 costs two small matmuls instead of a 1536² one.
// A dense orthogonal matrix is the case a = 1 (A undefined). Undefined R (B undefined) = identity.
struct Rotation {
  at::Tensor signs;  // [n] ±1, or undefined
  at::Tensor A;      // [a, a], or undefined (a = 1)
  at::Tensor B;      // [b, b]; undefined = no rotation
  double scale = 1.0;
  std::string kind;  // "random_hadamard" | "random_orthogonal" | "matrix" (recorded in checkpoints)
  uint64_t seed = 0;

  bool defined() const { return B.defined(); }
  int64_t size() const { return B.defined() ? B.size(0) * (A.defined() ? A.size(0) : 1) : 0; }
  at::Tensor apply(const at::Tensor& x) const;  // x [..., n] -> x·R (x's dtype)
  at::Tensor dense() const;                     // R [n, n] fp32
  Rotation to(at::Device device, at::ScalarType dtype) const;
};

// The seeded random Hadamard diag(±1)·H/√n of rotation.hpp in factored form (same matrix as
// random_hadamard(n, seed)), or the seeded random orthogonal fallback when no Hadamard order fits.
Rotation make_random_rotation(int64_t n, uint64_t seed);
Rotation make_dense_rotation(const at::Tensor& R, std::string kind, uint64_t seed = 0);

// Per-block activation and KV quantizers of a quantized model plus its online rotations. Weights
// are already rotated and replaced by their dequantized 4-bit values in ModelWeights; `qweights`
// keeps the codes and scales for the checkpoint writer.
struct QuantState {
  std::string method;     // "rtn" | "gptq" | "quarot-rtn" | "quarot-gptq" | "none"
  bool rotated = false;   // QuaRot rotations folded in
  std::string r1_source;  // "random_hadamard seed N" | "file PATH" (provenance)
  uint64_t rotation_seed = 0;
  QuantizerSettings settings;     // plan's quantizer settings (clips, KV, weight bits)
  std::vector<SiteBits> act_bits; // per block; a site with bits >= 16 is not quantized
  bool kv_quant = true;
  bool act_quant = true;  // false: weight-only (activations and KV cache stay FP, whatever the plan)
  Rotation down;   // online, input of down_proj
  Rotation heads;  // online across heads, input of o_proj
  Rotation k;      // online on queries and keys after RoPE (head-wise)
  std::vector<at::Tensor> r2;  // per block [hd, hd] fused into v/o (provenance for checkpoints)
  at::Tensor r1;               // [d, d] fused (provenance)
  Plan plan;                   // the plan whose bits are in act_bits
  std::map<std::string, QuantizedWeight> qweights;  // HF weight name -> codes / scales
  std::vector<IntBlock> int_blocks;  // per block when the integer engine is on (set_engine), else empty
};

struct Model::Impl {
  ModelInfo info;
  TokenizerSpec tokenizer_spec;  // kept to write the tokenizer back out (save_hf_folder)
  std::unique_ptr<Tokenizer> tokenizer;
  ModelWeights w;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  std::shared_ptr<QuantState> quant;  // set by quantize_model / a quantized checkpoint
};

// Name -> tensor in HF naming ("model.layers.3.self_attn.q_proj.weight", ...), for writers.
std::vector<std::pair<std::string, at::Tensor>> named_weights(const Model& model);

// Throws Error(Format) naming `file` and the tensor when `t` holds a NaN or an infinity (with the
// flat index of the first one): every loader checks each weight it reads.
void check_finite(const at::Tensor& t, const std::string& file, const std::string& tensor_name);

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
// A non-causal token layout (zero-shot packing, dptq/zeroshot.hpp): each token's RoPE position,
// and which tokens it attends to. Without one, token t sits at position t and sees tokens <= t.
struct AttentionLayout {
  at::Tensor positions;  // [T] int64, indices into the RoPE tables
  at::Tensor mask;       // [T, T] bool, true = may attend
};
// One decoder block: h_l [T, d] -> h_{l+1} [T, d].
at::Tensor decoder_block(const Model& model, int64_t layer, const at::Tensor& h, const RopeTables& rope,
                         ForwardTaps* taps = nullptr, const AttentionLayout* layout = nullptr);
// Final RMSNorm of the last residual stream.
at::Tensor final_norm(const Model& model, const at::Tensor& h);
// Logits [T, V] of `ids` [T] (fp32).
at::Tensor forward_logits(const Model& model, const at::Tensor& ids);
// Sum of next-token NLL over positions 0..T-2 of `ids` [T], computing logits in chunks so the
// [T, V] matrix never exists at once.
double window_nll_sum(const Model& model, const at::Tensor& ids);
// The same from the last residual stream h_L [T, d] (before the final norm) of `ids`.
double stream_nll_sum(const Model& model, const at::Tensor& h_last, const at::Tensor& ids);

}  // namespace dptq

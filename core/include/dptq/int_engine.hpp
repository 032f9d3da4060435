// dptq/int_engine.hpp — the integer engine of a quantized model (DESIGN §5, docs/benchmarks.md):
// its linear layers multiply per-token activation codes by per-channel weight codes exactly, u8 x
// s8 with int32 accumulation (FBGEMM, the int8 GEMM library LibTorch ships and exports), instead
// of fp32 GEMMs on dequantized values (the "fake" engine). Include only from translation units that
// need tensors.
//
// With activation codes q (per token t: scale s_t, zero point z_t) and symmetric weight codes c
// (per output channel n: scale w_n), the fake engine computes in fp32
//     y[t, n] = Σ_k s_t (q[t, k] - z_t) · w_n c[n, k]
// and the integer engine the same sum exactly:
//     y[t, n] = float(Σ_k u[t, k] c[n, k] + o_t · Σ_k c[n, k]) · (s_t · w_n) (+ bias[n])
// where u = q − minq are the codes moved to 0 .. 2^b − 1 (uint8) and o_t = minq − z_t (ActCodes).
// The integer sum is exact, so the two engines differ only by the fp32 rounding of the fake
// GEMM's accumulation (tests/test_int_engine.cpp) — per layer. Across a W4A4KV4 model such
// differences flip a few 4-bit codes downstream, and those flips add up (docs/benchmarks.md).
//
// Exactness bound: on AVX2, FBGEMM adds pairs of u8 · s8 products in int16 (vpmaddubsw), so
// 2 · (2^b_act − 1) · max|c| must stay below 2^15: weights of at most 4 bits (|c| <= 8) with
// activations of at most 8 bits. make_int_linear refuses wider weights.
//
// Layers sharing an input run as one GEMM: q/k/v (one [nq + 2 nkv, d] matrix) and gate/up.
// Sites whose activations are not quantized (bits >= 16) keep the fp32 path.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "dptq/quant.hpp"

namespace dptq {

struct QuantState;
struct QuantizedWeight;

struct PackedCodes;  // the weight codes in FBGEMM's packed layout (int_engine.cpp)

// One integer linear layer (possibly several fused along the output dimension).
struct IntLinear {
  at::Tensor codes;   // int8 [N, K], row-major (the GEMM reads it as the K x N operand codesᵀ)
  std::shared_ptr<const PackedCodes> packed;  // codes packed once for the GEMM
  at::Tensor scale;   // fp32 [N], per output channel
  at::Tensor colsum;  // int32 [N], Σ_k codes[n, k]
  at::Tensor bias;    // fp32 [N] or undefined
  std::vector<int64_t> splits;  // output widths of the fused layers, in order
};

struct IntBlock {
  IntLinear qkv, o, gate_up, down;
};

// Whether this CPU runs the integer GEMM ("" if so, else why not: FBGEMM needs AVX2).
std::string int_engine_unsupported();

// Symmetric per-channel weights stacked along the output dimension (biases optional, may be
// undefined individually: zeros are used where one is missing and another is present). Returns
// an empty reason and fills `out`, or the reason it cannot (asymmetric or grouped weights, more
// than 4 bits, mismatched inputs).
// `device`: CPU packs the codes for FBGEMM; a CUDA device keeps the plain codes, scales, column
// sums and biases there for device_ops::int8_gemm (kernels/int8_gemm.cuh).
std::string make_int_linear(const std::vector<const QuantizedWeight*>& parts, const std::vector<at::Tensor>& biases,
                            IntLinear& out, const at::Device& device = at::kCPU);

// acc [T, N] int32 = Σ_k a.codes[t, k] · w.codes[n, k], exactly (the GEMM alone).
at::Tensor int_accumulate(const ActCodes& a, const IntLinear& w);
// y [T, N] fp32 = the integer product of act codes of x [T, K] under `cfg` with `w` (on x's
// device: FBGEMM on CPU, device_ops::int8_gemm on CUDA).
at::Tensor int_linear(const at::Tensor& x, const IntLinear& w, const ActQuantConfig& cfg);
// The same from codes already computed (for layers sharing an input).
at::Tensor int_linear(const ActCodes& a, const IntLinear& w);

}  // namespace dptq

// dptq/weight_quant.hpp — weight quantizers: RTN with MSE clip search, GPTQ, int4 packing
// (DESIGN §5). Conventions are QuaRot's (fake_quant/quant_utils.py WeightQuantizer and
// fake_quant/gptq_utils.py GPTQ, both derived from the GPTQ repository), so numbers are comparable.
//
// Contents
//   WeightQuantConfig    bits, symmetric, MSE clip search (grid, max shrink, norm), group size
//   QuantizedWeight      int8 codes + fp32 scales (+ zeros) and dequantize()
//   find_weight_params   per-row scale / zero of a [rows, n] matrix (the clip search)
//   rtn_quantize         round-to-nearest with those parameters (per row, or per row and group)
//   fake_quant_weight    rtn_quantize(W).dequantize() in W's dtype
//   HessianAccumulator   GPTQ's running H = 2/n · Σ XᵀX over calibration inputs
//   GptqConfig / gptq_quantize
//   pack_int4 / unpack_int4   checkpoint layout: two codes per byte, low nibble first
//
// Per row r (or per row and group) of W, with maxq = 2^(b-1) - 1 (symmetric) or 2^b - 1:
//   xmin = min(min(w_r), 0), xmax = max(max(w_r), 0)          (the range always contains 0)
//   symmetric:  m = max(|xmin|, xmax, 1e-5); scale = m / maxq; zero = 0;
//               q = clamp(round(w / scale), -(maxq + 1), maxq);        ŵ = scale · q
//   asymmetric: a row of zeros uses [-1, 1]; scale = max(xmax - xmin, 1e-5) / maxq;
//               zero = round(-xmin / scale); q = clamp(round(w / scale) + zero, 0, maxq);
//               ŵ = scale · (q - zero)
//   mse_clip:   for i = 0 .. int(max_shrink · grid) - 1, p = 1 - i / grid: the same with m·p
//               (symmetric) or xmin·p, xmax·p (asymmetric, no 1e-5 floor); keep, per row, the p
//               with the smallest Σ |ŵ - w|^norm (the first on ties, so p = 1 when no shrink
//               helps — the search never increases that error over no clipping).
// All arithmetic is fp32 tensor ops in the order QuaRot uses (round = half to even), so on CPU the
// codes and scales of RTN and GPTQ equal QuaRot's bit for bit
// (tests/golden/weight_quant_quarot.json; GPTQ's BLAS sums could round differently on another
// build), and dequantize() equals its fake-quantized weight in value (QuaRot may hold -0.0 where a
// code holds 0). Every function runs on the device of its input (CPU or CUDA); pack/unpack go
// through the CPU. Cost: the clip search is 80 passes over the weight (QuaRot runs it on the GPU);
// GPTQ adds an [in, in] Cholesky. Bad arguments throw dptq::Error (InvalidArgument or Shape) with a
// one-line message.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace dptq {

struct WeightQuantConfig {
  int bits = 4;             // 2..8; asymmetric codes must fit int8, so asymmetric is 2..7
  bool symmetric = true;    // DESIGN §5: symmetric per output channel
  bool mse_clip = true;     // search a shrink factor per row (QuaRot --w_clip)
  int grid = 100;           // shrink step 1/grid
  double max_shrink = 0.8;  // in (0, 1]: tries int(max_shrink·grid) factors from 1 down
  double norm = 2.4;        // > 0: exponent of the clip-search error
  int64_t group_size = 0;   // 0: one scale per output channel; else per group of input columns
};

// Throws InvalidArgument for a bad value, Shape when there are no columns or group_size does not
// divide `cols`.
void validate_weight_quant(const WeightQuantConfig& cfg, int64_t cols);

// Per-row quantization parameters of a [rows, n] matrix: scale and zero, fp32 [rows] each (zero
// is all 0 when symmetric). cfg.group_size is ignored (the caller slices the groups).
struct WeightQuantParams {
  at::Tensor scale;
  at::Tensor zero;
};
WeightQuantParams find_weight_params(const at::Tensor& W, const WeightQuantConfig& cfg);

struct QuantizedWeight {
  at::Tensor codes;   // int8 [out, in]: signed [-2^(b-1), 2^(b-1)-1], or [0, 2^b-1] asymmetric
  at::Tensor scales;  // fp32 [out] (group_size 0) or [out, in / group_size]
  at::Tensor zeros;   // fp32, shape of scales; undefined when symmetric
  int bits = 4;
  bool symmetric = true;
  int64_t group_size = 0;  // 0: per output channel
  // fp32 [out, in] on the codes' device: scale · (code - zero), exactly the fake-quantized weight.
  at::Tensor dequantize() const;
};

// Round-to-nearest with find_weight_params per row (per row and group when group_size > 0; QuaRot
// itself only does per channel for RTN). W: [out, in], any floating dtype (computed in fp32).
QuantizedWeight rtn_quantize(const at::Tensor& W, const WeightQuantConfig& cfg);
// rtn_quantize(W, cfg).dequantize(), in W's dtype and device.
at::Tensor fake_quant_weight(const at::Tensor& W, const WeightQuantConfig& cfg);

// GPTQ's Hessian of one linear layer: after adds of inputs X_k, H = 2/n · Σ_k X_kᵀ X_k (fp32,
// [in, in]), updated as GPTQ does (H ← H·n/(n+m); n ← n+m; H += (√(2/n)·X)ᵀ(√(2/n)·X)), where n
// counts samples as GPTQ does: a 2-D input [T, in] is one sample (a sequence), a 3-D input
// [B, T, in] is B. The scale of H does not change GPTQ's result; only its shape does.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t columns, at::Device device = at::kCPU);
  // x: [T, in] or [B, T, in], any floating dtype, any device (moved to the accumulator's).
  void add(const at::Tensor& x);
  at::Tensor hessian() const;  // a copy; all zeros before the first add
  int64_t samples() const noexcept { return samples_; }
  int64_t columns() const noexcept { return columns_; }

 private:
  int64_t columns_;
  int64_t samples_ = 0;
  at::Tensor H_;
};

struct GptqConfig {
  double damp = 0.01;          // add damp · mean(diag H) to the diagonal (GPTQ percdamp)
  int64_t block = 128;         // columns per lazy-update block
  bool act_order = true;       // quantize columns by decreasing diag(H)
  bool static_groups = false;  // group_size > 0: find every group's parameters before the loop
};

// GPTQ (Frantar et al.; QuaRot's gptq_utils.py fasterquant). W: [out, in]; H: [in, in] from a
// HessianAccumulator. Per channel, the (MSE-clipped) parameters come from the whole original row
// before the loop. With groups they come from the partially updated W at each group's first column
// (as the reference does, in-block updates not yet applied), or from the original W with
// static_groups; act_order with groups needs static_groups, else the groups would not be contiguous
// columns of the result. Columns with H_jj = 0 are dead: their weights become 0. Throws
// InvalidArgument when H is not positive definite after dampening, Shape on mismatched shapes.
QuantizedWeight gptq_quantize(const at::Tensor& W, const at::Tensor& H,
                              const WeightQuantConfig& cfg, const GptqConfig& gcfg);

// int4 checkpoint layout (kmath::pack_nibbles, shared with the CUDA kernels): codes int8 [...,
// cols] with values in [-8, 7] or [0, 15] -> uint8 [..., (cols + 1) / 2]; element 2j in the low
// nibble, 2j+1 in the high nibble, an odd row ends with a zero high nibble. unpack_int4 is the
// inverse (is_signed: sign-extend the nibbles). Results are on the input's device.
at::Tensor pack_int4(const at::Tensor& codes);
at::Tensor unpack_int4(const at::Tensor& packed, int64_t cols, bool is_signed);

}  // namespace dptq

// dptq/quant.hpp — fake (simulated) quantizers on tensors, QuaRot conventions (DESIGN §5).
//
// The arithmetic is kernels/include/dptq/kernels/quant_math.hpp (one source of truth for CPU, CUDA
// and tests); see its header for the exact conventions. In short, per token (last dimension):
//   asymmetric: lo = min(min(x), 0)·clip, hi = max(max(x), 0)·clip (the range always contains 0);
//               a row with lo = hi = 0 uses [-1, 1]; scale = (hi - lo)/(2^b - 1);
//               zero = round(-lo/scale); q = clamp(round(x/scale) + zero, 0, 2^b - 1);
//               x̂ = (q - zero)·scale.
//   symmetric:  m = max(|lo|, hi); scale = m/(2^(b-1) - 1) (1 when m = 0);
//               q = clamp(round(x/scale), -2^(b-1), 2^(b-1) - 1); x̂ = q·scale.
// Groups (group_size > 0, the KV cache) use the group's own [min, max] without forcing 0 in, as
// QuaRot's groupwise quantizer does. Rounding is round-half-to-even (torch.round).
#pragma once
#include <ATen/ATen.h>

#include "dptq/kernels/quant_math.hpp"

namespace dptq {

struct ActQuantConfig {
  int bits = 4;
  bool asymmetric = true;
  double clip_ratio = 0.9;  // DESIGN §5: 0.9 at 4 bits, 1.0 at 8 bits
  int64_t group_size = 0;   // 0: whole row; else quantize each group of the last dim separately
};

// Default activation quantizer for `bits` (clip 0.9 at 4 bits, 1.0 otherwise, asymmetric).
ActQuantConfig default_act_quant(int bits);
// KV-cache quantizer: 4-bit asymmetric, group min(128, head_dim), clip 0.95.
ActQuantConfig default_kv_quant(int64_t head_dim, int bits = 4);

// The shared-math config for `cfg` on rows of `cols`; throws InvalidArgument when invalid.
kmath::ActQuantConfig to_kmath(const ActQuantConfig& cfg, int64_t cols);

// Dequantized x̂ (same shape and dtype as x).
at::Tensor fake_quant(const at::Tensor& x, const ActQuantConfig& cfg);
// Integer codes (int64, 0..2^b-1 for asymmetric, signed for symmetric) — for code histograms.
at::Tensor quant_codes(const at::Tensor& x, const ActQuantConfig& cfg);

// Per-token codes for the integer engine (group_size must be 0): x [rows, cols] ->
//   codes  uint8 [rows, cols] = q − minq, the quantizer's code moved to 0 .. 2^b − 1 (minq = 0
//                               asymmetric, −2^(b−1) symmetric)
//   scale  fp32 [rows]        the quantizer's scale
//   offset int32 [rows]       minq − zero
// so that x̂[r, c] = scale[r] · (codes[r, c] + offset[r]) exactly as fake_quant computes it.
struct ActCodes {
  at::Tensor codes, scale, offset;
};
ActCodes quant_act_codes(const at::Tensor& x, const ActQuantConfig& cfg);
// The same codes, scales and offsets computed with tensor operations on x's device (the integer
// engine on CUDA tensors): the same fp32 operations in the same order (true divisions, round half
// to even), so equal bit for bit to quant_act_codes (tests/test_int_engine.cpp checks it on CPU).
// Also takes group quantizers (the profiler's KV sites): then one row per group of group_size
// ([rows · cols / g, g], scale and offset per group), equal to quant_codes − minq.
ActCodes quant_act_codes_on_device(const at::Tensor& x, const ActQuantConfig& cfg);

}  // namespace dptq

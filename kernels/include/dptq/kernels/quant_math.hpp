// dptq/kernels/quant_math.hpp — per-token activation fake quantization and int4 packing: the
// arithmetic shared by the CUDA kernels, their CPU references and dptq_core. Torch-free; plain C++
// under g++, __host__ __device__ under nvcc.
//
// Contents
//   ActQuantConfig          bits, symmetric or not, clip ratio, group size
//   validate_act_quant      nullptr or a one-line problem with a config (shared by CPU and GPU)
//   quant_maxq/quant_minq   code range: asym [0, 2^b-1], sym [-2^(b-1), 2^(b-1)-1]
//   round_half_even         torch.round semantics (ties to even)
//   act_quant_params        scale and zero point of one row / group from its min and max
//   segment_quant_params    the same from the row / group itself (min / max pass + act_quant_params)
//   quant_code / dequant    x -> integer code -> value
//   act_fake_quant_rows_ref CPU reference of kernels/act_quant.cuh
//   pack_nibbles / unpack_lo / unpack_hi, pack_int4_rows_ref / unpack_int4_rows_ref
//
// Conventions are QuaRot's (fake_quant/quant_utils.py, ActQuantizer), read from its source:
//   per token (group_size 0): xmin = min(min(row), 0) * clip, xmax = max(max(row), 0) * clip
//     (the range always contains 0);
//     asym: a row of zeros uses [-1, 1]; scale = (xmax - xmin) / (2^b - 1),
//           zero = round(-xmin / scale), q = clamp(round(x / scale) + zero, 0, 2^b - 1),
//           x^ = scale * (q - zero);
//     sym:  m = max(|xmin|, xmax); scale = m / (2^(b-1) - 1), or 1 when m == 0;
//           q = clamp(round(x / scale), -2^(b-1), 2^(b-1) - 1), x^ = scale * q.
//   groups (group_size g > 0, QuaRot's find_params_per_token_groupwise, used for the KV cache):
//     the same per contiguous group of g elements, except that the range does NOT include 0
//     (xmin = min(group) * clip, xmax = max(group) * clip). Deviation: a constant non-zero group
//     (xmin == xmax != 0) would give scale 0 and NaN in QuaRot; here its range is widened to
//     include 0, so the constant is represented exactly.
//   round() is round-half-to-even (torch.round); x / scale is an IEEE division (no fast math).
//   All arithmetic is fp32, so the CUDA kernel and the CPU reference agree bit for bit.
//   NaN inputs give unspecified results.
#pragma once
#include <math.h>

#include <cstdint>

#include "dptq/kernels/hd.hpp"

namespace dptq::kmath {

struct ActQuantConfig {
  int bits = 4;              // 2..8 (the project uses 4 and 8)
  bool sym = false;          // false: asymmetric with zero point (the project's default)
  float clip_ratio = 1.0f;   // in (0, 1]; DESIGN §5: 0.9 at 4 bits, 1.0 at 8 bits
  int64_t group_size = 0;    // 0: one group per row (per token); else divides the row length
};

// nullptr when `cfg` can quantize rows of `cols` elements, else a one-line reason.
inline const char* validate_act_quant(const ActQuantConfig& cfg, int64_t cols) {
  if (cfg.bits < 2 || cfg.bits > 8) return "bits must be in [2, 8]";
  if (!(cfg.clip_ratio > 0.0f && cfg.clip_ratio <= 1.0f)) return "clip_ratio must be in (0, 1]";
  if (cfg.group_size < 0) return "group_size must be >= 0";
  if (cfg.group_size > 0 && cols % cfg.group_size != 0) return "group_size must divide the row length";
  return nullptr;
}

DPTQ_HD inline int quant_maxq(int bits, bool sym) { return sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1; }
DPTQ_HD inline int quant_minq(int bits, bool sym) { return sym ? -(1 << (bits - 1)) : 0; }

// torch.round: nearest integer, ties to even (rintf in the default rounding mode; unlike
// nearbyintf it compiles to one roundps, so host loops over rows vectorize).
DPTQ_HD inline float round_half_even(float v) { return rintf(v); }

// clamp without fminf/fmaxf, whose NaN rules keep host compilers from vectorizing.
DPTQ_HD inline float clamp_code(float q, float lo, float hi) { return q < lo ? lo : (q > hi ? hi : q); }

// x -> code as a float (the vectorizable core of quant_code).
DPTQ_HD inline float quant_code_f(float x, float scale, float zero, float lo, float hi) {
  return clamp_code(round_half_even(x / scale) + zero, lo, hi);
}

struct QuantParams {
  float scale = 1.0f;
  float zero = 0.0f;  // 0 when symmetric
};

// Scale and zero point of one row (include_zero = true, per token) or one group (false) whose
// smallest and largest elements are vmin and vmax.
DPTQ_HD inline QuantParams act_quant_params(float vmin, float vmax, int bits, bool sym, float clip,
                                            bool include_zero) {
  if (include_zero || vmin == vmax) {  // see the header comment for the vmin == vmax case
    vmin = fminf(vmin, 0.0f);
    vmax = fmaxf(vmax, 0.0f);
  }
  vmin *= clip;
  vmax *= clip;
  const float maxq = static_cast<float>(quant_maxq(bits, sym));
  QuantParams p;
  if (sym) {
    const float m = fmaxf(fabsf(vmin), vmax);
    p.scale = m == 0.0f ? 1.0f : m / maxq;
    p.zero = 0.0f;
    return p;
  }
  if (vmin == 0.0f && vmax == 0.0f) {
    vmin = -1.0f;
    vmax = 1.0f;
  }
  p.scale = (vmax - vmin) / maxq;
  p.zero = round_half_even(-vmin / p.scale);
  return p;
}

// Scale and zero point of one contiguous segment of n >= 1 elements: the whole row when
// cfg.group_size == 0 (range includes 0), one group otherwise. Sequential fminf / fmaxf over the
// segment; the kernels reduce the same two values in another order, which gives the same result
// (min and max are exact and order-free for non-NaN input).
DPTQ_HD inline QuantParams segment_quant_params(const float* xs, int64_t n, const ActQuantConfig& cfg) {
  float vmin = xs[0], vmax = xs[0];
  for (int64_t c = 1; c < n; ++c) {
    vmin = fminf(vmin, xs[c]);
    vmax = fmaxf(vmax, xs[c]);
  }
  return act_quant_params(vmin, vmax, cfg.bits, cfg.sym, cfg.clip_ratio, cfg.group_size == 0);
}

// Integer code of x (in [quant_minq, quant_maxq]).
DPTQ_HD inline int quant_code(float x, QuantParams p, int bits, bool sym) {
  return static_cast<int>(quant_code_f(x, p.scale, p.zero, static_cast<float>(quant_minq(bits, sym)),
                                       static_cast<float>(quant_maxq(bits, sym))));
}

DPTQ_HD inline float dequant(int code, QuantParams p) { return p.scale * (static_cast<float>(code) - p.zero); }

// CPU reference. y[r, :] = fake-quantized x[r, :] (y may alias x exactly). Optional outputs (may be
// nullptr): codes (int8, needs bits <= 7 when asymmetric), scales / zeros per (row, group),
// row-major [rows][cols / group] (one per row when group_size == 0). Call validate_act_quant first.
inline void act_fake_quant_rows_ref(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t cols,
                                    const ActQuantConfig& cfg, int8_t* codes = nullptr, int64_t ldc = 0,
                                    float* scales = nullptr, float* zeros = nullptr) {
  const int64_t g = cfg.group_size > 0 ? cfg.group_size : cols;
  const int64_t groups = cols > 0 ? cols / g : 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const float* xs = x + r * ldx + gi * g;
      const QuantParams p = segment_quant_params(xs, g, cfg);
      float* ys = y + r * ldy + gi * g;
      for (int64_t c = 0; c < g; ++c) {
        const int q = quant_code(xs[c], p, cfg.bits, cfg.sym);
        if (codes) codes[r * ldc + gi * g + c] = static_cast<int8_t>(q);
        ys[c] = dequant(q, p);
      }
      if (scales) scales[r * groups + gi] = p.scale;
      if (zeros) zeros[r * groups + gi] = p.zero;
    }
  }
}

// ---- int4 packing: two codes per byte, element 2i in the low nibble, 2i+1 in the high nibble
// (QuaRot's pack_i4 layout). Codes are stored as their low 4 bits, so signed codes in [-8, 7]
// (two's complement) and unsigned codes in [0, 15] both round-trip; unpack says which.

DPTQ_HD inline uint8_t pack_nibbles(int lo, int hi) {
  return static_cast<uint8_t>((lo & 0xf) | ((hi & 0xf) << 4));
}
DPTQ_HD inline int unpack_nibble(int nibble, bool is_signed) { return is_signed && nibble >= 8 ? nibble - 16 : nibble; }
DPTQ_HD inline int unpack_lo(uint8_t b, bool is_signed) { return unpack_nibble(b & 0xf, is_signed); }
DPTQ_HD inline int unpack_hi(uint8_t b, bool is_signed) { return unpack_nibble(b >> 4, is_signed); }

// Bytes of one packed row of `cols` codes (an odd row ends with a zero high nibble).
DPTQ_HD inline int64_t int4_packed_cols(int64_t cols) { return (cols + 1) / 2; }

inline void pack_int4_rows_ref(const int8_t* codes, int64_t ldc, uint8_t* packed, int64_t ldp, int64_t rows,
                               int64_t cols) {
  const int64_t pc = int4_packed_cols(cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < pc; ++j) {
      const int8_t* c = codes + r * ldc + 2 * j;
      packed[r * ldp + j] = pack_nibbles(c[0], 2 * j + 1 < cols ? c[1] : 0);
    }
}

inline void unpack_int4_rows_ref(const uint8_t* packed, int64_t ldp, int8_t* codes, int64_t ldc, int64_t rows,
                                 int64_t cols, bool is_signed) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const uint8_t b = packed[r * ldp + c / 2];
      codes[r * ldc + c] = static_cast<int8_t>((c & 1) ? unpack_hi(b, is_signed) : unpack_lo(b, is_signed));
    }
}

}  // namespace dptq::kmath

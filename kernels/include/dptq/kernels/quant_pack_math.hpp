// dptq/kernels/quant_pack_math.hpp — quantization to stored codes (packed int4 or one byte per
// code) + scales / zero points: the arithmetic shared by kernels/act_quant_packed.cuh (per token),
// kernels/kv_quant.cuh (group-wise, the KV cache) and their CPU references. Torch-free; plain C++
// under g++, __host__ __device__ under nvcc.
//
// Contents
//   code_bytes_per_row     storage of one row of codes
//   store_code / load_code one code in a row of storage (nibble or byte)
//   quant_pack_rows_ref    CPU reference of both kernels (cfg.group_size 0: per token, else groups)
//   dequant_packed_rows_ref  the inverse: codes + scales / zeros -> values
//
// Storage: bits <= 4: two codes per byte, element 2j in the low nibble (quant_math.hpp's
// pack_nibbles; signed codes as two's complement nibbles); an odd row ends with a zero high
// nibble. bits 5..8: one byte per code (asymmetric codes as uint8 in [0, 2^b − 1], symmetric ones
// as int8's two's complement bits). Scales and zeros: fp32 [rows][groups] (groups = 1 per token).
// Codes, scales and zeros are exactly those of act_fake_quant_rows_ref (quant_math.hpp).
#pragma once
#include <cstdint>

#include "dptq/kernels/hd.hpp"
#include "dptq/kernels/quant_math.hpp"

namespace dptq::kmath {

DPTQ_HD inline int64_t code_bytes_per_row(int64_t cols, int bits) { return bits <= 4 ? int4_packed_cols(cols) : cols; }

DPTQ_HD inline uint8_t code_byte(int q) { return static_cast<uint8_t>(q & 0xff); }

// Code c of a row of storage, decoded (sign-extended when sym).
DPTQ_HD inline int load_code(const uint8_t* row, int64_t c, int bits, bool sym) {
  if (bits <= 4) {
    const uint8_t b = row[c / 2];
    return (c & 1) ? unpack_hi(b, sym) : unpack_lo(b, sym);
  }
  const uint8_t b = row[c];
  return sym ? static_cast<int>(static_cast<int8_t>(b)) : static_cast<int>(b);
}

// x [rows][cols] (row stride ldx) -> codes [rows][code_bytes_per_row] (stride ldc), scales and
// zeros [rows][groups]. Call validate_act_quant first; group-wise packed int4 needs an even group.
inline void quant_pack_rows_ref(const float* x, int64_t ldx, int64_t rows, int64_t cols, const ActQuantConfig& cfg,
                                uint8_t* codes, int64_t ldc, float* scales, float* zeros) {
  const int64_t g = cfg.group_size > 0 ? cfg.group_size : cols;
  const int64_t groups = cols > 0 ? cols / g : 0;
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* cr = codes + r * ldc;
    for (int64_t j = 0; j < code_bytes_per_row(cols, cfg.bits); ++j) cr[j] = 0;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const float* xs = x + r * ldx + gi * g;
      const QuantParams p = segment_quant_params(xs, g, cfg);
      for (int64_t c = 0; c < g; ++c) {
        const int q = quant_code(xs[c], p, cfg.bits, cfg.sym);
        const int64_t col = gi * g + c;
        if (cfg.bits <= 4)
          cr[col / 2] = static_cast<uint8_t>(cr[col / 2] | ((q & 0xf) << ((col & 1) * 4)));
        else
          cr[col] = code_byte(q);
      }
      if (scales) scales[r * groups + gi] = p.scale;
      if (zeros) zeros[r * groups + gi] = p.zero;
    }
  }
}

inline void dequant_packed_rows_ref(const uint8_t* codes, int64_t ldc, int64_t rows, int64_t cols,
                                    const ActQuantConfig& cfg, const float* scales, const float* zeros, float* y,
                                    int64_t ldy) {
  const int64_t g = cfg.group_size > 0 ? cfg.group_size : cols;
  const int64_t groups = cols > 0 ? cols / g : 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      QuantParams p;
      p.scale = scales[r * groups + c / g];
      p.zero = zeros ? zeros[r * groups + c / g] : 0.0f;
      y[r * ldy + c] = dequant(load_code(codes + r * ldc, c, cfg.bits, cfg.sym), p);
    }
}

}  // namespace dptq::kmath

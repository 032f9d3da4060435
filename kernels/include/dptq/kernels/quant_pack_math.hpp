// dptq/kernels/quant_pack_math.hpp — quantization to stored codes (packed int4 or one byte per
// code) + scales / zero points: the arithmetic shared by kernels/quant_pack.cuh (quant_pack per
// token, kv_quant group-wise for the KV cache, dequant_packed) and their CPU references.
// Torch-free; plain C++ under g++, __host__ __device__ under nvcc.
//
// Contents
//   validate_quant_pack    validate_act_quant plus the storage rule (even groups when packed)
//   code_bytes_per_row     storage of one row of codes
//   segment_code_byte      byte j of the storage of one row / group (what each kernel thread writes)
//   load_code              one code of a row of storage (nibble or byte), decoded
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

// nullptr when rows of `cols` elements can be stored under `cfg`, else a one-line reason. Packed
// groups (bits <= 4, group_size > 0) must be even so that every group starts on a byte.
inline const char* validate_quant_pack(const ActQuantConfig& cfg, int64_t cols) {
  if (const char* why = validate_act_quant(cfg, cols)) return why;
  if (cfg.bits <= 4 && cfg.group_size > 0 && cfg.group_size % 2 != 0)
    return "packed 2..4-bit codes need an even group_size";
  return nullptr;
}

// Byte j of the stored codes of one segment of n elements (a row, or a group starting on a byte;
// load(i) returns element i as fp32) quantized with p: bits <= 4, codes 2j (low nibble) and
// 2j + 1 (high nibble, 0 past the end); bits 5..8, code j.
template <typename Load>
DPTQ_HD inline uint8_t segment_code_byte(Load load, int64_t n, int64_t j, QuantParams p, int bits, bool sym) {
  if (bits <= 4) {
    const int lo = quant_code(load(2 * j), p, bits, sym);
    const int hi = 2 * j + 1 < n ? quant_code(load(2 * j + 1), p, bits, sym) : 0;
    return pack_nibbles(lo, hi);
  }
  return code_byte(quant_code(load(j), p, bits, sym));
}

// The loader of fp32 segments (a functor, not a lambda: nvcc compiles it for both sides).
struct F32Load {
  const float* p;
  DPTQ_HD float operator()(int64_t i) const { return p[i]; }
};

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
// zeros [rows][groups] (each may be nullptr). Call validate_quant_pack first.
inline void quant_pack_rows_ref(const float* x, int64_t ldx, int64_t rows, int64_t cols, const ActQuantConfig& cfg,
                                uint8_t* codes, int64_t ldc, float* scales, float* zeros) {
  const int64_t g = cfg.group_size > 0 ? cfg.group_size : cols;
  const int64_t groups = cols > 0 ? cols / g : 0;
  const int64_t seg_bytes = code_bytes_per_row(g, cfg.bits);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const float* xs = x + r * ldx + gi * g;
      const QuantParams p = segment_quant_params(xs, g, cfg);
      uint8_t* cs = codes + r * ldc + gi * seg_bytes;
      for (int64_t j = 0; j < seg_bytes; ++j)
        cs[j] = segment_code_byte(F32Load{xs}, g, j, p, cfg.bits, cfg.sym);
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

// dptq/half.hpp — IEEE binary16 (fp16) and bfloat16 <-> float32 conversion. Torch-free.
//
// Contents
//   fp16_to_fp32 / fp32_to_fp16    binary16 bits <-> float (exact / round-to-nearest-even)
//   bf16_to_fp32 / fp32_to_bf16    bfloat16 bits <-> float (exact / round-to-nearest-even)
//   *_n variants                   the same over arrays (src and dst may not overlap)
//
// Widening is exact. Narrowing rounds to nearest, ties to even, like torch's .half()/.bfloat16():
// overflow gives ±inf, fp16 underflow gives subnormals then ±0, NaN stays NaN (quiet, sign kept).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dptq {

namespace half_detail {
inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace half_detail

// binary16 bits -> float (exact, subnormals included).
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return half_detail::float_of(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp != 0) return half_detail::float_of(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return half_detail::float_of(sign);  // ±0
  // Subnormal: man * 2^-24. Normalize so the leading 1 becomes the implicit bit.
  uint32_t e = 113;  // exponent (biased for fp32) of 2^-14
  while ((man & 0x400u) == 0) {
    man <<= 1;
    --e;
  }
  return half_detail::float_of(sign | (e << 23) | ((man & 0x3ffu) << 13));
}

// float -> binary16 bits, round to nearest even.
inline uint16_t fp32_to_fp16(float f) {
  const uint32_t x = half_detail::bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u)  // NaN: keep the top payload bits, force quiet
    return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 (or inf) -> inf
  if (ax >= 0x38800000u) {  // normal half range [2^-14, 65520)
    // Rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even; a mantissa
    // carry correctly bumps the exponent.
    const uint32_t rounded = ax + 0xfffu + ((ax >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  // Subnormal half (or zero): value / 2^-24 rounded to an integer in [0, 1024].
  const uint32_t e = ax >> 23;
  if (e < 102) return sign;  // < 2^-25: rounds to ±0 (2^-25 itself ties to even 0 below)
  const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;  // in [14, 24]
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (q & 1u))) ++q;  // q == 0x400 is the smallest normal
  return static_cast<uint16_t>(sign | q);
}

// bfloat16 bits -> float (exact).
inline float bf16_to_fp32(uint16_t b) { return half_detail::float_of(static_cast<uint32_t>(b) << 16); }

// float -> bfloat16 bits, round to nearest even.
inline uint16_t fp32_to_bf16(float f) {
  const uint32_t x = half_detail::bits_of(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline void fp16_to_fp32_n(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}
inline void fp32_to_fp16_n(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}
inline void bf16_to_fp32_n(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}
inline void fp32_to_bf16_n(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = fp32_to_bf16(src[i]);
}

}  // namespace dptq

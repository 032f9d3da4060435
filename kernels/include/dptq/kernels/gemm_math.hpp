// dptq/kernels/gemm_math.hpp — the integer linear layer: activation codes × int8 weight codes with
// int32 accumulation and one dequantization epilogue. The epilogue is the CPU integer engine's
// (core/src/int_engine.cpp calls int_gemm_epilogue) and is kept here, __host__ __device__, for the
// CUDA int8 GEMM still to come (docs/kernels.md):
//     y[t, n] = float(Σ_k a[t, k] · w[n, k] + o_t · colsum[n]) · (s_t · w_n) (+ bias[n])
// with a the activation codes (uint8 q − minq in the CPU engine; any shift works as long as o_t =
// shift − zero point matches it), colsum[n] = Σ_k w[n, k], s_t the activation scale and w_n the
// weight scale. Torch-free.
//
// Contents
//   int_gemm_epilogue   one output from its int32 sum
//   int8_gemm_rows_ref  CPU reference of the whole layer (int8 activation codes)
#pragma once
#include <cstdint>

#include "dptq/kernels/hd.hpp"

namespace dptq::kmath {

DPTQ_HD inline float int_gemm_epilogue(int32_t acc, int32_t offset, int32_t colsum, float a_scale, float w_scale,
                                       const float* bias, int64_t n) {
  const float v = static_cast<float>(acc + offset * colsum) * (a_scale * w_scale);
  return bias ? v + bias[n] : v;
}

// y [M][N] (stride ldy) = epilogue(a [M][K] (lda) · w [N][K]ᵀ (ldw)). a_offset may be nullptr (0).
inline void int8_gemm_rows_ref(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t M, int64_t N,
                               int64_t K, const int32_t* a_offset, const float* a_scale, const int32_t* w_colsum,
                               const float* w_scale, const float* bias, float* y, int64_t ldy) {
  for (int64_t t = 0; t < M; ++t)
    for (int64_t n = 0; n < N; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += int32_t(a[t * lda + k]) * int32_t(w[n * ldw + k]);
      y[t * ldy + n] = int_gemm_epilogue(acc, a_offset ? a_offset[t] : 0, w_colsum[n], a_scale[t], w_scale[n], bias, n);
    }
}

// Σ_k w[n, k] per row of w (the colsum the epilogue needs), exact in int32.
inline void int8_row_sums_ref(const int8_t* w, int64_t ldw, int64_t N, int64_t K, int32_t* out) {
  for (int64_t n = 0; n < N; ++n) {
    int32_t s = 0;
    for (int64_t k = 0; k < K; ++k) s += w[n * ldw + k];
    out[n] = s;
  }
}

}  // namespace dptq::kmath

// dptq/kernels/norm_math.hpp — RMSNorm arithmetic shared by the CUDA kernel and the CPU reference.
// Torch-free; plain C++ under g++, __host__ __device__ under nvcc.
//
// Contents
//   rms_inv              1 / sqrt(sum_sq / n + eps)
//   rms_norm_rows_ref    CPU reference of kernels/rms_norm.cuh (double accumulation)
//
// Definition (HF LlamaRMSNorm in fp32): y = x * rsqrt(mean(x^2) + eps) * gamma, per row.
#pragma once
#include <math.h>

#include <cstdint>

#include "dptq/kernels/hd.hpp"

namespace dptq::kmath {

// Reciprocal RMS of a row of `n` elements whose squares sum to `sum_sq`.
DPTQ_HD inline float rms_inv(float sum_sq, int64_t n, float eps) {
#if defined(__CUDA_ARCH__)
  return rsqrtf(sum_sq / static_cast<float>(n) + eps);
#else
  return 1.0f / sqrtf(sum_sq / static_cast<float>(n) + eps);
#endif
}

// y[r, :] = x[r, :] * rms_inv * gamma for `rows` rows of `cols` floats; ldx / ldy are the row
// strides in elements (>= cols). x and y may alias exactly (in place).
inline void rms_norm_rows_ref(const float* x, int64_t ldx, const float* gamma, float* y, int64_t ldy, int64_t rows,
                              int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    double sum_sq = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum_sq += static_cast<double>(xr[c]) * xr[c];
    const float inv = static_cast<float>(1.0 / sqrt(sum_sq / static_cast<double>(cols) + eps));
    float* yr = y + r * ldy;
    for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] * inv) * gamma[c];
  }
}

}  // namespace dptq::kmath

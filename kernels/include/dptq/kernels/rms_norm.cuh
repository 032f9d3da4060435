// dptq/kernels/rms_norm.cuh — fused RMSNorm over rows (CUDA). Torch-free host entry point.
//
// y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * gamma, fp32, row-major; ldx / ldy are row
// strides in elements (>= cols), so row slices of a larger matrix work. Pointers are device
// memory; y may alias x exactly. Asynchronous on `stream`. CPU reference:
// dptq::kmath::rms_norm_rows_ref (norm_math.hpp). Throws dptq::Error (InvalidArgument for bad
// arguments, Unsupported for CUDA failures).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dptq::cuda {

void rms_norm_f32(const float* x, int64_t ldx, const float* gamma, float* y, int64_t ldy, int64_t rows,
                  int64_t cols, float eps, cudaStream_t stream);

}  // namespace dptq::cuda

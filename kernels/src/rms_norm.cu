// Fused RMSNorm: one block per row; the sum of squares is reduced in fp32 across the block.
#include <limits>

#include "cuda_check.cuh"
#include "dptq/kernels/norm_math.hpp"
#include "dptq/kernels/rms_norm.cuh"
#include "reduce.cuh"

namespace dptq::cuda {

namespace {
constexpr int kBlock = 256;
}

static __global__ void rms_norm_f32_kernel(const float* x, int64_t ldx, const float* __restrict__ gamma,
                                           float* y, int64_t ldy, int64_t cols, float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * ldx;
  float sum_sq = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum_sq += xr[c] * xr[c];
  sum_sq = detail::block_reduce(sum_sq, detail::SumOp{}, 0.0f, scratch);
  const float inv = kmath::rms_inv(sum_sq, cols, eps);
  float* yr = y + row * ldy;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = (xr[c] * inv) * gamma[c];
}

static void launch_rms_norm_f32(const float* x, int64_t ldx, const float* gamma, float* y, int64_t ldy, int64_t rows,
                                int64_t cols, float eps, cudaStream_t stream) {
  // Small rows do not need 256 threads; keep a whole number of warps.
  const int threads = cols >= kBlock ? kBlock : static_cast<int>((cols + 31) / 32 * 32);
  rms_norm_f32_kernel<<<static_cast<unsigned>(rows), threads, 0, stream>>>(x, ldx, gamma, y, ldy, cols, eps);
  CUDA_CHECK(cudaGetLastError());
}

void rms_norm_f32(const float* x, int64_t ldx, const float* gamma, float* y, int64_t ldy, int64_t rows,
                  int64_t cols, float eps, cudaStream_t stream) {
  constexpr const char* op = "rms_norm_f32";
  if (rows < 0 || cols < 0) detail::throw_invalid(op, "negative shape");
  if (rows == 0 || cols == 0) return;
  if (!x || !gamma || !y) detail::throw_invalid(op, "null pointer");
  if (ldx < cols || ldy < cols) detail::throw_invalid(op, "row stride smaller than the row length");
  if (rows > std::numeric_limits<int32_t>::max()) detail::throw_invalid(op, "more than 2^31-1 rows");
  if (!(eps >= 0.0f)) detail::throw_invalid(op, "eps must be >= 0");
  if (x == y && ldx != ldy) detail::throw_invalid(op, "in place needs ldx == ldy");
  if (x != y && ((x < y + ldy * (rows - 1) + cols) && (y < x + ldx * (rows - 1) + cols)))
    detail::throw_invalid(op, "x and y overlap without being the same buffer");
  launch_rms_norm_f32(x, ldx, gamma, y, ldy, rows, cols, eps, stream);
}

}  // namespace dptq::cuda

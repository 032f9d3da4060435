// Private to dptq_kernels: the scale and zero point of one row / group, computed by a whole block
// (every thread must call it; all get the result). The block reduces min and max of the segment
// (exact, so the order of the reduction does not matter), then one thread applies
// kmath::act_quant_params, the arithmetic the CPU reference uses (kmath::segment_quant_params).
#pragma once
#include "convert.cuh"
#include "dptq/kernels/quant_math.hpp"
#include "reduce.cuh"

namespace dptq::cuda::detail {

template <typename T>
__device__ kmath::QuantParams block_segment_params(const T* xs, int64_t n, const kmath::ActQuantConfig& cfg,
                                                   float* scratch, float* out_scale, float* out_zero) {
  __shared__ float s_scale, s_zero;
  float vmin = INFINITY, vmax = -INFINITY;
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
    const float v = to_f32(xs[c]);
    vmin = fminf(vmin, v);
    vmax = fmaxf(vmax, v);
  }
  vmin = block_reduce(vmin, MinOp{}, INFINITY, scratch);
  vmax = block_reduce(vmax, MaxOp{}, -INFINITY, scratch);
  if (threadIdx.x == 0) {
    const kmath::QuantParams q =
        kmath::act_quant_params(vmin, vmax, cfg.bits, cfg.sym, cfg.clip_ratio, cfg.group_size == 0);
    s_scale = q.scale;
    s_zero = q.zero;
    if (out_scale) *out_scale = q.scale;
    if (out_zero) *out_zero = q.zero;
  }
  __syncthreads();
  kmath::QuantParams p;
  p.scale = s_scale;
  p.zero = s_zero;
  return p;
}

// Threads for a block that walks a segment of n elements: a whole number of warps, at most 256.
inline int segment_threads(int64_t n) {
  constexpr int kBlock = 256;
  return n >= kBlock ? kBlock : static_cast<int>((n + 31) / 32 * 32 > 0 ? (n + 31) / 32 * 32 : 32);
}

// Whether byte ranges [a, a + na) and [b, b + nb) overlap.
inline bool bytes_overlap(const void* a, int64_t na, const void* b, int64_t nb) {
  const char* ca = static_cast<const char*>(a);
  const char* cb = static_cast<const char*>(b);
  return ca < cb + nb && cb < ca + na;
}

}  // namespace dptq::cuda::detail

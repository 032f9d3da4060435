// Private to dptq_kernels: fp32 <-> storage type conversions and the dtype dispatch that every
// multi-dtype entry point uses (an unknown dtype is an InvalidArgument, never a fall-through).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_check.cuh"
#include "dptq/kernels/dtype.hpp"

namespace dptq::cuda::detail {

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

}  // namespace dptq::cuda::detail

// Calls fn.template operator()<T>() with T the storage type of `dtype`, or throws.
#define DPTQ_DISPATCH_DTYPE(op, dtype, ...)                                                   \
  do {                                                                                      \
    switch (dtype) {                                                                        \
      case ::dptq::kmath::DType::F32: { using scalar_t = float; __VA_ARGS__(); break; }     \
      case ::dptq::kmath::DType::F16: { using scalar_t = __half; __VA_ARGS__(); break; }    \
      case ::dptq::kmath::DType::BF16: { using scalar_t = __nv_bfloat16; __VA_ARGS__(); break; } \
      default: ::dptq::cuda::detail::throw_invalid(op, "unsupported dtype");                \
    }                                                                                       \
  } while (0)

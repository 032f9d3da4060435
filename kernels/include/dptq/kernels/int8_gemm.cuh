// dptq/kernels/int8_gemm.cuh — the integer linear layer on the GPU (CUDA): int8 activation codes
// × int8 weight codes with exact int32 accumulation (cuBLASLt's IMMA GEMM, or a tiled fallback
// kernel), then the dequantization epilogue of the CPU integer engine (gemm_math.hpp):
//     y[t, n] = float(acc[t, n] + a_offset[t] · w_colsum[n]) · (a_scale[t] · w_scale[n]) (+ bias[n])
// acc[t, n] = Σ_k a[t, k] · w[n, k]. Torch-free host entry points.
//
// Matching the CPU engine (core/src/int_engine.cpp, u8 codes u = q − minq and o_t = minq − z_t):
// pass a = u − 128 (int8) and a_offset = o_t + 128; the int32 sum acc + a_offset · colsum is then
// the CPU engine's exactly, and the epilogue is the same fp32 operations (the kernels build with
// --fmad=false), so y is bit for bit the CPU engine's. CPU reference: kmath::int8_gemm_rows_ref.
//
// Row-major: a [M][K] (lda), w [N][K] (ldw), acc int32 [M][N] (ldacc, a caller-provided device
// workspace), y fp32 [M][N] (ldy). a_offset and bias may be nullptr (0). K <= 65536 keeps every
// int32 sum exact. cuBLASLt runs when int8_gemm_cublaslt_eligible holds (its IMMA rules: K and
// N multiples of 4, lda / ldw / ldacc multiples of 4, 4-byte aligned pointers); Auto falls back
// to the tiled kernel otherwise or when cuBLASLt offers no algorithm. Device pointers;
// asynchronous on `stream`. Throws dptq::Error (InvalidArgument for bad arguments, Unsupported
// for CUDA / cuBLASLt failures or a CublasLt request it cannot serve).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dptq::cuda {

enum class Int8GemmPath : int32_t { Auto = 0, CublasLt = 1, Tiled = 2 };

struct Int8GemmEpilogue {
  const int32_t* a_offset = nullptr;  // [M] or nullptr
  const float* a_scale = nullptr;     // [M], required
  const int32_t* w_colsum = nullptr;  // [N] = Σ_k w[n, k], required
  const float* w_scale = nullptr;     // [N], required
  const float* bias = nullptr;        // [N] or nullptr
};

constexpr int64_t kInt8GemmMaxK = 65536;

// Whether cuBLASLt's int8 GEMM can take this problem (argument rules only, no device query).
bool int8_gemm_cublaslt_eligible(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t N, int64_t K,
                                 const int32_t* acc, int64_t ldacc);

// acc = a · wᵀ (int32, exact). Returns the path that ran (CublasLt or Tiled).
Int8GemmPath int8_gemm_accumulate(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t M, int64_t N,
                                  int64_t K, int32_t* acc, int64_t ldacc, Int8GemmPath path, cudaStream_t stream);

// y = epilogue(acc); acc as int8_gemm_accumulate leaves it.
void int8_gemm_epilogue(const int32_t* acc, int64_t ldacc, int64_t M, int64_t N, const Int8GemmEpilogue& ep, float* y,
                        int64_t ldy, cudaStream_t stream);

// Both: the whole layer. Returns the path that ran.
Int8GemmPath int8_gemm(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t M, int64_t N, int64_t K,
                       const Int8GemmEpilogue& ep, float* y, int64_t ldy, int32_t* acc, int64_t ldacc,
                       Int8GemmPath path, cudaStream_t stream);

}  // namespace dptq::cuda

// The int8 GEMM: cuBLASLt (IMMA tensor cores, "TN" in its column-major terms) when the problem
// meets its rules, else a 16 × 16 shared-memory tiled kernel; then the epilogue kernel, one
// thread per output, with the CPU engine's kmath::int_gemm_epilogue.
//
// Row-major y[M][N] = a[M][K] · w[N][K]ᵀ is, column-major, the N × M matrix wᵀ_cm · a_cm, where
// w_cm is w read as a K × N column-major matrix (ld = ldw) and a_cm is a as K × M (ld = lda): a
// cuBLASLt matmul with m = N, n = M, k = K, A = w (transposed), B = a (not transposed).
#include <cublasLt.h>

#include <algorithm>
#include <limits>
#include <mutex>

#include "cuda_check.cuh"
#include "dptq/kernels/gemm_math.hpp"
#include "dptq/kernels/int8_gemm.cuh"

namespace dptq::cuda {

namespace {

constexpr int kTile = 16;
constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 65535;

[[noreturn]] void throw_cublas(cublasStatus_t s, const char* call) {
  throw Error(ErrorKind::Unsupported, "",
              std::string("cuBLASLt error in ") + call + ": " + cublasLtGetStatusString(s));
}

#define CUBLASLT_CHECK(call)                                     \
  do {                                                           \
    const cublasStatus_t dptq_s_ = (call);                       \
    if (dptq_s_ != CUBLAS_STATUS_SUCCESS) throw_cublas(dptq_s_, #call); \
  } while (0)

// One cuBLASLt handle per process, created on first use (the handle holds no device state that
// ties it to one stream; cuBLASLt allows concurrent use from several threads).
cublasLtHandle_t lt_handle() {
  static cublasLtHandle_t handle = nullptr;
  static std::once_flag once;
  std::call_once(once, [] { CUBLASLT_CHECK(cublasLtCreate(&handle)); });
  return handle;
}

// RAII for the descriptors of one call.
struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

bool aligned4(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; }

}  // namespace

static __global__ void int8_gemm_tiled_kernel(const int8_t* __restrict__ a, int64_t lda, const int8_t* __restrict__ w,
                                              int64_t ldw, int64_t M, int64_t N, int64_t K, int32_t* acc,
                                              int64_t ldacc) {
  __shared__ int32_t sa[kTile][kTile + 1];  // [row of a][k]
  __shared__ int32_t sw[kTile][kTile + 1];  // [row of w][k]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile, col0 = static_cast<int64_t>(blockIdx.x) * kTile;
  int32_t sum = 0;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    const int64_t kk = k0 + tx;
    sa[ty][tx] = (row0 + ty < M && kk < K) ? int32_t(a[(row0 + ty) * lda + kk]) : 0;
    sw[ty][tx] = (col0 + ty < N && kk < K) ? int32_t(w[(col0 + ty) * ldw + kk]) : 0;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kTile; ++j) sum += sa[ty][j] * sw[tx][j];
    __syncthreads();
  }
  if (row0 + ty < M && col0 + tx < N) acc[(row0 + ty) * ldacc + col0 + tx] = sum;
}

static __global__ void int8_gemm_epilogue_kernel(const int32_t* __restrict__ acc, int64_t ldacc, int64_t M, int64_t N,
                                                 Int8GemmEpilogue ep, float* __restrict__ y, int64_t ldy) {
  const int64_t n_out = M * N;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n_out;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / N, n = i % N;
    y[t * ldy + n] = kmath::int_gemm_epilogue(acc[t * ldacc + n], ep.a_offset ? ep.a_offset[t] : 0, ep.w_colsum[n],
                                              ep.a_scale[t], ep.w_scale[n], ep.bias, n);
  }
}

static void launch_int8_gemm_tiled(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t M, int64_t N,
                                   int64_t K, int32_t* acc, int64_t ldacc, cudaStream_t stream) {
  const dim3 block(kTile, kTile);
  const dim3 grid(static_cast<unsigned>((N + kTile - 1) / kTile), static_cast<unsigned>((M + kTile - 1) / kTile));
  int8_gemm_tiled_kernel<<<grid, block, 0, stream>>>(a, lda, w, ldw, M, N, K, acc, ldacc);
  CUDA_CHECK(cudaGetLastError());
}

// false when cuBLASLt offers no algorithm or refuses the problem (NOT_SUPPORTED); throws on
// other failures.
static bool launch_int8_gemm_cublaslt(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t M,
                                      int64_t N, int64_t K, int32_t* acc, int64_t ldacc, cudaStream_t stream) {
  LtDescs d;
  CUBLASLT_CHECK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32I, CUDA_R_32I));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)));
  CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)));
  CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&d.a, CUDA_R_8I, uint64_t(K), uint64_t(N), ldw));    // w as K × N
  CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&d.b, CUDA_R_8I, uint64_t(K), uint64_t(M), lda));    // a as K × M
  CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&d.c, CUDA_R_32I, uint64_t(N), uint64_t(M), ldacc));  // acc as N × M
  CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&d.pref));
  const size_t workspace = 0;
  CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                      sizeof(workspace)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t hs =
      cublasLtMatmulAlgoGetHeuristic(lt_handle(), d.op, d.a, d.b, d.c, d.c, d.pref, 1, &result, &found);
  if (hs == CUBLAS_STATUS_NOT_SUPPORTED || (hs == CUBLAS_STATUS_SUCCESS && found == 0)) return false;
  if (hs != CUBLAS_STATUS_SUCCESS) throw_cublas(hs, "cublasLtMatmulAlgoGetHeuristic");
  const int32_t alpha = 1, beta = 0;
  const cublasStatus_t ms = cublasLtMatmul(lt_handle(), d.op, &alpha, w, d.a, a, d.b, &beta, acc, d.c, acc, d.c,
                                           &result.algo, nullptr, 0, stream);
  if (ms == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  if (ms != CUBLAS_STATUS_SUCCESS) throw_cublas(ms, "cublasLtMatmul");
  return true;
}

bool int8_gemm_cublaslt_eligible(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t N, int64_t K,
                                 const int32_t* acc, int64_t ldacc) {
  return K % 4 == 0 && N % 4 == 0 && lda % 4 == 0 && ldw % 4 == 0 && ldacc % 4 == 0 && aligned4(a) && aligned4(w) &&
         aligned4(acc);
}

static void validate_gemm(const char* op, const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t M,
                          int64_t N, int64_t K, const int32_t* acc, int64_t ldacc) {
  if (M < 0 || N < 0 || K < 0) detail::throw_invalid(op, "negative shape");
  if (K > kInt8GemmMaxK) detail::throw_invalid(op, "K above 65536: int32 sums could overflow");
  if (M == 0 || N == 0) return;
  if (!acc || (K > 0 && (!a || !w))) detail::throw_invalid(op, "null pointer");
  if (lda < K || ldw < K) detail::throw_invalid(op, "row stride of a or w smaller than K");
  if (ldacc < N) detail::throw_invalid(op, "row stride of acc smaller than N");
  if ((M + kTile - 1) / kTile > kMaxBlocks) detail::throw_invalid(op, "more than 65535 · 16 rows");
}

Int8GemmPath int8_gemm_accumulate(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t M, int64_t N,
                                  int64_t K, int32_t* acc, int64_t ldacc, Int8GemmPath path, cudaStream_t stream) {
  constexpr const char* op = "int8_gemm";
  if (path != Int8GemmPath::Auto && path != Int8GemmPath::CublasLt && path != Int8GemmPath::Tiled)
    detail::throw_invalid(op, "unknown path");
  validate_gemm(op, a, lda, w, ldw, M, N, K, acc, ldacc);
  const bool eligible = K > 0 && int8_gemm_cublaslt_eligible(a, lda, w, ldw, N, K, acc, ldacc);
  if (path == Int8GemmPath::CublasLt && !eligible)
    detail::throw_invalid(op, "cuBLASLt needs K, N, lda, ldw, ldacc multiples of 4 and 4-byte aligned pointers");
  if (M == 0 || N == 0) return path == Int8GemmPath::CublasLt ? path : Int8GemmPath::Tiled;
  if (path != Int8GemmPath::Tiled && eligible) {
    if (launch_int8_gemm_cublaslt(a, lda, w, ldw, M, N, K, acc, ldacc, stream)) return Int8GemmPath::CublasLt;
    if (path == Int8GemmPath::CublasLt)
      throw Error(ErrorKind::Unsupported, "", std::string(op) + ": cuBLASLt offers no int8 algorithm for this problem");
  }
  launch_int8_gemm_tiled(a, lda, w, ldw, M, N, K, acc, ldacc, stream);
  return Int8GemmPath::Tiled;
}

void int8_gemm_epilogue(const int32_t* acc, int64_t ldacc, int64_t M, int64_t N, const Int8GemmEpilogue& ep, float* y,
                        int64_t ldy, cudaStream_t stream) {
  constexpr const char* op = "int8_gemm_epilogue";
  if (M < 0 || N < 0) detail::throw_invalid(op, "negative shape");
  if (M == 0 || N == 0) return;
  if (!acc || !y || !ep.a_scale || !ep.w_colsum || !ep.w_scale) detail::throw_invalid(op, "null pointer");
  if (ldacc < N || ldy < N) detail::throw_invalid(op, "row stride smaller than N");
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((M * N + kBlock - 1) / kBlock, kMaxBlocks));
  int8_gemm_epilogue_kernel<<<blocks, kBlock, 0, stream>>>(acc, ldacc, M, N, ep, y, ldy);
  CUDA_CHECK(cudaGetLastError());
}

Int8GemmPath int8_gemm(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t M, int64_t N, int64_t K,
                       const Int8GemmEpilogue& ep, float* y, int64_t ldy, int32_t* acc, int64_t ldacc,
                       Int8GemmPath path, cudaStream_t stream) {
  if (M > 0 && N > 0 && (!y || !ep.a_scale || !ep.w_colsum || !ep.w_scale))
    detail::throw_invalid("int8_gemm", "null pointer");
  if (M > 0 && N > 0 && ldy < N) detail::throw_invalid("int8_gemm", "row stride of y smaller than N");
  const Int8GemmPath ran = int8_gemm_accumulate(a, lda, w, ldw, M, N, K, acc, ldacc, path, stream);
  int8_gemm_epilogue(acc, ldacc, M, N, ep, y, ldy, stream);
  return ran;
}

}  // namespace dptq::cuda

// Fast Walsh–Hadamard transform: one block per row, the row in dynamic shared memory. The base
// step reads the row from global memory (each input m times, from L1) straight into shared
// memory; then log2(n / m) butterfly stages with a barrier between them; then one scaled store.
#include <limits>

#include "convert.cuh"
#include "cuda_check.cuh"
#include "dptq/kernels/fwht.cuh"
#include "dptq/kernels/fwht_math.hpp"

namespace dptq::cuda {

namespace {
constexpr int kBlock = 256;
constexpr int64_t kMaxBase = 1024;
}  // namespace

template <typename T>
static __global__ void fwht_kernel(const T* x, int64_t ldx, T* y, int64_t ldy, int64_t n, int64_t m,
                                   const int8_t* __restrict__ base, const float* __restrict__ sign, float scale) {
  extern __shared__ float z[];
  const T* xr = x + static_cast<int64_t>(blockIdx.x) * ldx;
  if (m == 1) {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float v = detail::to_f32(xr[j]);
      z[j] = sign ? v * sign[j] : v;
    }
  } else {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const int64_t a = j / m, b = j % m;
      z[j] = kmath::fwht_base_dot(
          [&](int64_t k) {
            const int64_t idx = a * m + k;
            const float v = detail::to_f32(xr[idx]);
            return sign ? v * sign[idx] : v;
          },
          base, m, b);
    }
  }
  __syncthreads();  // also orders every read of x before the writes of y (in place)
  for (int64_t stride = m; stride < n; stride *= 2) {
    for (int64_t p = threadIdx.x; p < n / 2; p += blockDim.x) {
      int64_t i, j;
      kmath::fwht_pair_index(p, stride, i, j);
      kmath::butterfly(z[i], z[j]);
    }
    __syncthreads();
  }
  T* yr = y + static_cast<int64_t>(blockIdx.x) * ldy;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = detail::from_f32<T>(z[j] * scale);
}

template <typename T>
static void launch_fwht(const T* x, int64_t ldx, T* y, int64_t ldy, int64_t rows, const FwhtParams& p,
                        size_t smem, cudaStream_t stream) {
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(fwht_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int64_t half = p.n / 2 > 0 ? p.n / 2 : 1;
  const int threads = half >= kBlock ? kBlock : static_cast<int>((half + 31) / 32 * 32);
  fwht_kernel<T><<<static_cast<unsigned>(rows), threads, smem, stream>>>(x, ldx, y, ldy, p.n, p.m, p.base, p.sign,
                                                                          p.scale);
  CUDA_CHECK(cudaGetLastError());
}

void fwht(const void* x, int64_t ldx, void* y, int64_t ldy, int64_t rows, kmath::DType dtype, const FwhtParams& p,
          cudaStream_t stream) {
  constexpr const char* op = "fwht";
  const int64_t es = kmath::dtype_size(dtype);
  if (es == 0) detail::throw_invalid(op, "unsupported dtype");
  if (rows < 0 || p.n < 0) detail::throw_invalid(op, "negative shape");
  if (rows == 0 || p.n == 0) return;
  if (p.m < 1 || p.m > kMaxBase) detail::throw_invalid(op, "base order must be in [1, 1024]");
  if (p.n % p.m != 0) detail::throw_invalid(op, "base order does not divide n");
  const int64_t pow2 = p.n / p.m;
  if ((pow2 & (pow2 - 1)) != 0) detail::throw_invalid(op, "n / m must be a power of two");
  if (p.m > 1 && !p.base) detail::throw_invalid(op, "base matrix missing for m > 1");
  if (!x || !y) detail::throw_invalid(op, "null pointer");
  if (ldx < p.n || ldy < p.n) detail::throw_invalid(op, "row stride smaller than the row length");
  if (x == y && ldx != ldy) detail::throw_invalid(op, "in place needs ldx == ldy");
  const char* xb = static_cast<const char*>(x);
  const char* yb = static_cast<const char*>(y);
  if (x != y && xb < yb + es * (ldy * (rows - 1) + p.n) && yb < xb + es * (ldx * (rows - 1) + p.n))
    detail::throw_invalid(op, "x and y overlap without being the same buffer");
  if (rows > std::numeric_limits<int32_t>::max()) detail::throw_invalid(op, "more than 2^31-1 rows");
  const size_t smem = static_cast<size_t>(p.n) * sizeof(float);
  int device = 0, optin = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (smem > static_cast<size_t>(optin))
    throw Error(ErrorKind::Unsupported, "",
                std::string(op) + ": a row of " + std::to_string(p.n) + " floats exceeds the device's " +
                    std::to_string(optin) + " bytes of shared memory per block");
  DPTQ_DISPATCH_DTYPE(op, dtype, [&] {
    launch_fwht<scalar_t>(static_cast<const scalar_t*>(x), ldx, static_cast<scalar_t*>(y), ldy, rows, p, smem, stream);
  });
}

}  // namespace dptq::cuda

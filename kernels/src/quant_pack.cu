// Quantization to stored codes: one block per (row, group). The block reduces the segment's min
// and max (segment_params.cuh), then each thread writes whole bytes of codes
// (kmath::segment_code_byte: two codes per byte at <= 4 bits), so no two threads share a byte.
// dequant_packed: one thread per element, grid-stride.
#include <algorithm>
#include <limits>

#include "convert.cuh"
#include "cuda_check.cuh"
#include "dptq/kernels/quant_pack.cuh"
#include "dptq/kernels/quant_pack_math.hpp"
#include "segment_params.cuh"

namespace dptq::cuda {

namespace {
constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 65535;
}  // namespace

template <typename T>
static __global__ void quant_pack_kernel(const T* x, int64_t ldx, int64_t group, int64_t groups,
                                         kmath::ActQuantConfig cfg, uint8_t* codes, int64_t ldc, float* scales,
                                         float* zeros) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x / groups;
  const int64_t gi = blockIdx.x % groups;
  const T* xs = x + row * ldx + gi * group;
  const kmath::QuantParams p = detail::block_segment_params(xs, group, cfg, scratch, scales ? scales + blockIdx.x : nullptr,
                                                            zeros ? zeros + blockIdx.x : nullptr);
  const int64_t seg_bytes = kmath::code_bytes_per_row(group, cfg.bits);
  uint8_t* cs = codes + row * ldc + gi * seg_bytes;
  for (int64_t j = threadIdx.x; j < seg_bytes; j += blockDim.x)
    cs[j] = kmath::segment_code_byte([xs](int64_t i) { return detail::to_f32(xs[i]); }, group, j, p, cfg.bits,
                                     cfg.sym);
}

template <typename T>
static __global__ void dequant_packed_kernel(const uint8_t* codes, int64_t ldc, int64_t rows, int64_t cols,
                                             int64_t group, int64_t groups, int bits, bool sym,
                                             const float* __restrict__ scales, const float* __restrict__ zeros, T* y,
                                             int64_t ldy) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    kmath::QuantParams p;
    p.scale = scales[r * groups + c / group];
    p.zero = zeros ? zeros[r * groups + c / group] : 0.0f;
    y[r * ldy + c] = detail::from_f32<T>(kmath::dequant(kmath::load_code(codes + r * ldc, c, bits, sym), p));
  }
}

template <typename T>
static void launch_quant_pack(const T* x, int64_t ldx, int64_t rows, int64_t cols, const kmath::ActQuantConfig& cfg,
                              uint8_t* codes, int64_t ldc, float* scales, float* zeros, cudaStream_t stream) {
  const int64_t group = cfg.group_size > 0 ? cfg.group_size : cols;
  const int64_t groups = cols / group;
  // Threads walk bytes (half the elements when packed); at least one warp.
  const int threads = detail::segment_threads(kmath::code_bytes_per_row(group, cfg.bits));
  quant_pack_kernel<T><<<static_cast<unsigned>(rows * groups), threads, 0, stream>>>(x, ldx, group, groups, cfg, codes,
                                                                                    ldc, scales, zeros);
  CUDA_CHECK(cudaGetLastError());
}

template <typename T>
static void launch_dequant_packed(const uint8_t* codes, int64_t ldc, int64_t rows, int64_t cols,
                                  const kmath::ActQuantConfig& cfg, const float* scales, const float* zeros, T* y,
                                  int64_t ldy, cudaStream_t stream) {
  const int64_t group = cfg.group_size > 0 ? cfg.group_size : cols;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((rows * cols + kBlock - 1) / kBlock, kMaxBlocks));
  dequant_packed_kernel<T><<<blocks, kBlock, 0, stream>>>(codes, ldc, rows, cols, group, cols / group, cfg.bits, cfg.sym,
                                                          scales, zeros, y, ldy);
  CUDA_CHECK(cudaGetLastError());
}

static void checked_quant_pack(const char* op, const void* x, int64_t ldx, int64_t rows, int64_t cols,
                               kmath::DType dtype, const kmath::ActQuantConfig& cfg, uint8_t* codes, int64_t ldc,
                               float* scales, float* zeros, cudaStream_t stream) {
  const int64_t es = kmath::dtype_size(dtype);
  if (es == 0) detail::throw_invalid(op, "unsupported dtype");
  if (rows < 0 || cols < 0) detail::throw_invalid(op, "negative shape");
  if (const char* why = kmath::validate_quant_pack(cfg, cols)) detail::throw_invalid(op, why);
  if (rows == 0 || cols == 0) return;
  if (!x || !codes) detail::throw_invalid(op, "null pointer");
  if (ldx < cols) detail::throw_invalid(op, "row stride smaller than the row length");
  const int64_t row_bytes = kmath::code_bytes_per_row(cols, cfg.bits);
  if (ldc < row_bytes) detail::throw_invalid(op, "codes row stride smaller than a row of codes");
  if (detail::bytes_overlap(x, es * (ldx * (rows - 1) + cols), codes, ldc * (rows - 1) + row_bytes))
    detail::throw_invalid(op, "x and codes overlap");
  const int64_t groups = cfg.group_size > 0 ? cols / cfg.group_size : 1;
  if (rows > std::numeric_limits<int32_t>::max() / groups) detail::throw_invalid(op, "more than 2^31-1 groups");
  DPTQ_DISPATCH_DTYPE(op, dtype, [&] {
    launch_quant_pack<scalar_t>(static_cast<const scalar_t*>(x), ldx, rows, cols, cfg, codes, ldc, scales, zeros,
                                stream);
  });
}

void quant_pack(const void* x, int64_t ldx, int64_t rows, int64_t cols, kmath::DType dtype,
                const kmath::ActQuantConfig& cfg, uint8_t* codes, int64_t ldc, float* scales, float* zeros,
                cudaStream_t stream) {
  checked_quant_pack("quant_pack", x, ldx, rows, cols, dtype, cfg, codes, ldc, scales, zeros, stream);
}

void kv_quant(const void* x, int64_t ldx, int64_t rows, int64_t cols, kmath::DType dtype,
              const kmath::ActQuantConfig& cfg, uint8_t* codes, int64_t ldc, float* scales, float* zeros,
              cudaStream_t stream) {
  if (cfg.group_size <= 0) detail::throw_invalid("kv_quant", "group_size must be > 0 (e.g. the head dimension)");
  checked_quant_pack("kv_quant", x, ldx, rows, cols, dtype, cfg, codes, ldc, scales, zeros, stream);
}

void dequant_packed(const uint8_t* codes, int64_t ldc, int64_t rows, int64_t cols, const kmath::ActQuantConfig& cfg,
                    const float* scales, const float* zeros, void* y, int64_t ldy, kmath::DType dtype,
                    cudaStream_t stream) {
  constexpr const char* op = "dequant_packed";
  if (kmath::dtype_size(dtype) == 0) detail::throw_invalid(op, "unsupported dtype");
  if (rows < 0 || cols < 0) detail::throw_invalid(op, "negative shape");
  if (const char* why = kmath::validate_quant_pack(cfg, cols)) detail::throw_invalid(op, why);
  if (rows == 0 || cols == 0) return;
  if (!codes || !scales || !y) detail::throw_invalid(op, "null pointer");
  if (!cfg.sym && !zeros) detail::throw_invalid(op, "asymmetric codes need zeros");
  if (ldc < kmath::code_bytes_per_row(cols, cfg.bits)) detail::throw_invalid(op, "codes row stride smaller than a row of codes");
  if (ldy < cols) detail::throw_invalid(op, "row stride smaller than the row length");
  DPTQ_DISPATCH_DTYPE(op, dtype, [&] {
    launch_dequant_packed<scalar_t>(codes, ldc, rows, cols, cfg, scales, zeros, static_cast<scalar_t*>(y), ldy, stream);
  });
}

}  // namespace dptq::cuda

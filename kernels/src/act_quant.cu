// Activation fake quantization: one block per (row, group). The block reduces min and max of its
// segment and turns them into scale / zero point with the shared quant_math.hpp arithmetic
// (segment_params.cuh), then every thread quantizes and dequantizes its elements. The second pass
// re-reads the segment, from L1/L2 for the rows of today's models (a row of 576..8192 elements).
#include <limits>

#include "convert.cuh"
#include "cuda_check.cuh"
#include "dptq/kernels/act_quant.cuh"
#include "segment_params.cuh"

namespace dptq::cuda {

template <typename T>
static __global__ void act_fake_quant_kernel(const T* x, int64_t ldx, T* y, int64_t ldy, int64_t group,
                                             int64_t groups, kmath::ActQuantConfig cfg, int8_t* codes, int64_t ldc,
                                             float* scales, float* zeros) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x / groups;
  const int64_t gi = blockIdx.x % groups;
  const T* xs = x + row * ldx + gi * group;
  const kmath::QuantParams p = detail::block_segment_params(xs, group, cfg, scratch, scales ? scales + blockIdx.x : nullptr,
                                                            zeros ? zeros + blockIdx.x : nullptr);
  T* ys = y + row * ldy + gi * group;
  int8_t* cs = codes ? codes + row * ldc + gi * group : nullptr;
  for (int64_t c = threadIdx.x; c < group; c += blockDim.x) {
    const int q = kmath::quant_code(detail::to_f32(xs[c]), p, cfg.bits, cfg.sym);
    if (cs) cs[c] = static_cast<int8_t>(q);
    ys[c] = detail::from_f32<T>(kmath::dequant(q, p));
  }
}

template <typename T>
static void launch_act_fake_quant(const T* x, int64_t ldx, T* y, int64_t ldy, int64_t rows, int64_t cols,
                                  const kmath::ActQuantConfig& cfg, int8_t* codes, int64_t ldc, float* scales,
                                  float* zeros, cudaStream_t stream) {
  const int64_t group = cfg.group_size > 0 ? cfg.group_size : cols;
  const int64_t groups = cols / group;
  act_fake_quant_kernel<T><<<static_cast<unsigned>(rows * groups), detail::segment_threads(group), 0, stream>>>(
      x, ldx, y, ldy, group, groups, cfg, codes, ldc, scales, zeros);
  CUDA_CHECK(cudaGetLastError());
}

// The validating entry point behind both public names (op names the caller in messages).
static void checked_act_fake_quant(const char* op, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t rows,
                                   int64_t cols, kmath::DType dtype, const kmath::ActQuantConfig& cfg, int8_t* codes,
                                   int64_t ldc, float* scales, float* zeros, cudaStream_t stream) {
  const int64_t es = kmath::dtype_size(dtype);
  if (es == 0) detail::throw_invalid(op, "unsupported dtype");
  if (rows < 0 || cols < 0) detail::throw_invalid(op, "negative shape");
  if (const char* why = kmath::validate_act_quant(cfg, cols)) detail::throw_invalid(op, why);
  if (rows == 0 || cols == 0) return;
  if (!x || !y) detail::throw_invalid(op, "null pointer");
  if (ldx < cols || ldy < cols || (codes && ldc < cols))
    detail::throw_invalid(op, "row stride smaller than the row length");
  if (x == y && ldx != ldy) detail::throw_invalid(op, "in place needs ldx == ldy");
  if (x != y && detail::bytes_overlap(x, es * (ldx * (rows - 1) + cols), y, es * (ldy * (rows - 1) + cols)))
    detail::throw_invalid(op, "x and y overlap without being the same buffer");
  if (codes && !cfg.sym && cfg.bits > 7) detail::throw_invalid(op, "int8 codes need bits <= 7 when asymmetric");
  const int64_t groups = cfg.group_size > 0 ? cols / cfg.group_size : 1;
  if (rows > std::numeric_limits<int32_t>::max() / groups) detail::throw_invalid(op, "more than 2^31-1 groups");
  DPTQ_DISPATCH_DTYPE(op, dtype, [&] {
    launch_act_fake_quant<scalar_t>(static_cast<const scalar_t*>(x), ldx, static_cast<scalar_t*>(y), ldy, rows, cols,
                                    cfg, codes, ldc, scales, zeros, stream);
  });
}

void act_fake_quant(const void* x, int64_t ldx, void* y, int64_t ldy, int64_t rows, int64_t cols, kmath::DType dtype,
                    const kmath::ActQuantConfig& cfg, int8_t* codes, int64_t ldc, float* scales, float* zeros,
                    cudaStream_t stream) {
  checked_act_fake_quant("act_fake_quant", x, ldx, y, ldy, rows, cols, dtype, cfg, codes, ldc, scales, zeros, stream);
}

void act_fake_quant_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t cols,
                        const kmath::ActQuantConfig& cfg, int8_t* codes, int64_t ldc, float* scales, float* zeros,
                        cudaStream_t stream) {
  checked_act_fake_quant("act_fake_quant_f32", x, ldx, y, ldy, rows, cols, kmath::DType::F32, cfg, codes, ldc, scales,
                         zeros, stream);
}

}  // namespace dptq::cuda

// Activation fake quantization: one block per (row, group). The block reduces min and max of its
// segment, thread 0 turns them into scale / zero point with the shared quant_math.hpp arithmetic,
// then every thread quantizes and dequantizes its elements.
#include <limits>

#include "cuda_check.cuh"
#include "dptq/kernels/act_quant.cuh"
#include "reduce.cuh"

namespace dptq::cuda {

namespace {
constexpr int kBlock = 256;
}

static __global__ void act_fake_quant_f32_kernel(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t group,
                                                 int64_t groups, kmath::ActQuantConfig cfg, int8_t* codes,
                                                 int64_t ldc, float* scales, float* zeros) {
  __shared__ float scratch[32];
  __shared__ float s_scale, s_zero;
  const int64_t row = blockIdx.x / groups;
  const int64_t gi = blockIdx.x % groups;
  const float* xs = x + row * ldx + gi * group;
  float vmin = INFINITY, vmax = -INFINITY;
  for (int64_t c = threadIdx.x; c < group; c += blockDim.x) {
    vmin = fminf(vmin, xs[c]);
    vmax = fmaxf(vmax, xs[c]);
  }
  vmin = detail::block_reduce(vmin, detail::MinOp{}, INFINITY, scratch);
  vmax = detail::block_reduce(vmax, detail::MaxOp{}, -INFINITY, scratch);
  if (threadIdx.x == 0) {
    const kmath::QuantParams q = kmath::act_quant_params(vmin, vmax, cfg.bits, cfg.sym, cfg.clip_ratio,
                                                         cfg.group_size == 0);
    s_scale = q.scale;
    s_zero = q.zero;
    if (scales) scales[blockIdx.x] = q.scale;
    if (zeros) zeros[blockIdx.x] = q.zero;
  }
  __syncthreads();
  kmath::QuantParams p;
  p.scale = s_scale;
  p.zero = s_zero;
  float* ys = y + row * ldy + gi * group;
  int8_t* cs = codes ? codes + row * ldc + gi * group : nullptr;
  for (int64_t c = threadIdx.x; c < group; c += blockDim.x) {
    const int q = kmath::quant_code(xs[c], p, cfg.bits, cfg.sym);
    if (cs) cs[c] = static_cast<int8_t>(q);
    ys[c] = kmath::dequant(q, p);
  }
}

static void launch_act_fake_quant_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t cols,
                                      const kmath::ActQuantConfig& cfg, int8_t* codes, int64_t ldc, float* scales,
                                      float* zeros, cudaStream_t stream) {
  const int64_t group = cfg.group_size > 0 ? cfg.group_size : cols;
  const int64_t groups = cols / group;
  const int threads = group >= kBlock ? kBlock : static_cast<int>((group + 31) / 32 * 32);
  act_fake_quant_f32_kernel<<<static_cast<unsigned>(rows * groups), threads, 0, stream>>>(
      x, ldx, y, ldy, group, groups, cfg, codes, ldc, scales, zeros);
  CUDA_CHECK(cudaGetLastError());
}

void act_fake_quant_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t cols,
                        const kmath::ActQuantConfig& cfg, int8_t* codes, int64_t ldc, float* scales, float* zeros,
                        cudaStream_t stream) {
  constexpr const char* op = "act_fake_quant_f32";
  if (rows < 0 || cols < 0) detail::throw_invalid(op, "negative shape");
  if (const char* why = kmath::validate_act_quant(cfg, cols)) detail::throw_invalid(op, why);
  if (rows == 0 || cols == 0) return;
  if (!x || !y) detail::throw_invalid(op, "null pointer");
  if (ldx < cols || ldy < cols || (codes && ldc < cols))
    detail::throw_invalid(op, "row stride smaller than the row length");
  if (x == y && ldx != ldy) detail::throw_invalid(op, "in place needs ldx == ldy");
  if (x != y && ((x < y + ldy * (rows - 1) + cols) && (y < x + ldx * (rows - 1) + cols)))
    detail::throw_invalid(op, "x and y overlap without being the same buffer");
  if (codes && !cfg.sym && cfg.bits > 7) detail::throw_invalid(op, "int8 codes need bits <= 7 when asymmetric");
  const int64_t groups = cfg.group_size > 0 ? cols / cfg.group_size : 1;
  if (rows > std::numeric_limits<int32_t>::max() / groups) detail::throw_invalid(op, "more than 2^31-1 groups");
  launch_act_fake_quant_f32(x, ldx, y, ldy, rows, cols, cfg, codes, ldc, scales, zeros, stream);
}

}  // namespace dptq::cuda

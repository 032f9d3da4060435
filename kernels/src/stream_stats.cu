// Residual-stream statistics: one block per token (row).
//
// stream_stats: each thread walks its columns once, keeping Σv², max|v|, a Welford accumulator
// and its own sorted top-k list (kmath::topk_insert), raising the channel absmax and counting the
// histogram with atomics (an atomic only when the value beats what the channel holds). Then block
// reductions: sums and maxima (reduce.cuh), Welford by Chan's merge (kmath::welford_merge), and
// the top-k by k rounds of a block-wide "best head" selection under kmath::topk_before, a total
// order, so the list equals the CPU's sequential one exactly.
//
// pair_terms: pass 1 reduces the five norms and the min / max of P u, one thread turns min / max
// into the 4- and 8-bit quantizer parameters (kmath::act_quant_params), pass 2 sums the
// quantization noise (kmath::quant_sq_error). The second pass re-reads u from L1/L2.
#include <limits>

#include "convert.cuh"
#include "cuda_check.cuh"
#include "dptq/kernels/stream_stats.cuh"
#include "reduce.cuh"
#include "segment_params.cuh"

namespace dptq::cuda {

namespace {

// Chan's merge of a warp's Welford accumulators into lane 0 (shuffles; the other lanes hold partials).
__device__ kmath::Welford warp_welford(kmath::Welford w, int lane) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    kmath::Welford o;
    o.n = __shfl_down_sync(detail::kFullMask, w.n, offset);
    o.mean = __shfl_down_sync(detail::kFullMask, w.mean, offset);
    o.m2 = __shfl_down_sync(detail::kFullMask, w.m2, offset);
    if (lane + offset < 32) w = kmath::welford_merge(w, o);
  }
  return w;
}

// Chan's merge of Welford accumulators down to lane 0 of each warp, then across the warps'
// results in warp 0. Only thread 0's result is meaningful (the merge is not bitwise symmetric).
__device__ kmath::Welford block_welford(kmath::Welford w, kmath::Welford* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  w = warp_welford(w, lane);
  __syncthreads();
  if (lane == 0) scratch[warp] = w;
  __syncthreads();
  if (warp == 0) {
    w = lane < n_warps ? scratch[lane] : kmath::Welford{};
    w = warp_welford(w, lane);
  }
  return w;
}

__device__ kmath::TopKEntry shfl_xor_entry(const kmath::TopKEntry& e, int offset) {
  kmath::TopKEntry o;
  o.abs = __shfl_xor_sync(detail::kFullMask, e.abs, offset);
  o.value = __shfl_xor_sync(detail::kFullMask, e.value, offset);
  o.index = __shfl_xor_sync(detail::kFullMask, static_cast<long long>(e.index), offset);
  return o;
}

__device__ kmath::TopKEntry better(const kmath::TopKEntry& a, const kmath::TopKEntry& b) {
  return kmath::topk_before(b, a) ? b : a;
}

// The first entry under topk_before among every thread's candidate; all threads get it.
// topk_before is a strict total order on distinct indices, so the result does not depend on
// the reduction's shape.
__device__ kmath::TopKEntry block_best(kmath::TopKEntry e, kmath::TopKEntry* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  for (int offset = 16; offset > 0; offset >>= 1) e = better(e, shfl_xor_entry(e, offset));
  __syncthreads();
  if (lane == 0) scratch[warp] = e;
  __syncthreads();
  e = lane < n_warps ? scratch[lane] : kmath::TopKEntry{};
  for (int offset = 16; offset > 0; offset >>= 1) e = better(e, shfl_xor_entry(e, offset));
  return e;
}

// Raises *addr to v (v >= 0, not NaN). For non-negative floats the int bit patterns order as
// the values do, and a negative value held (sign bit set) compares below every v >= 0.
__device__ void atomic_max_nonneg(float* addr, float v) {
  if (v > *addr) atomicMax(reinterpret_cast<int*>(addr), __float_as_int(v));
}

}  // namespace

template <typename T>
static __global__ void stream_stats_kernel(const T* x, int64_t ldx, int64_t cols, kmath::StreamRowStats* row_stats,
                                           float* channel_absmax, kmath::TopKEntry* topk, int k, uint32_t* abs_hist) {
  __shared__ float scratch[32];
  __shared__ kmath::Welford w_scratch[32];
  __shared__ kmath::TopKEntry t_scratch[32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * ldx;
  float l2sq = 0.0f, linf = 0.0f;
  kmath::Welford w;
  kmath::TopKEntry list[kmath::kMaxTopK];
  int n = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = detail::to_f32(xr[c]), av = fabsf(v);
    l2sq += v * v;
    linf = av > linf ? av : linf;
    kmath::welford_add(w, double(v));
    if (channel_absmax) atomic_max_nonneg(channel_absmax + c, av);
    if (topk) kmath::topk_insert(list, n, k, kmath::TopKEntry{av, v, row * cols + c});
    if (abs_hist) atomicAdd(abs_hist + kmath::abs_hist_bin(av), 1u);
  }
  l2sq = detail::block_reduce(l2sq, detail::SumOp{}, 0.0f, scratch);
  linf = detail::block_reduce(linf, detail::MaxOp{}, 0.0f, scratch);
  w = block_welford(w, w_scratch);
  if (threadIdx.x == 0) {
    kmath::StreamRowStats s;
    s.l2sq = l2sq;
    s.linf = linf;
    s.moments = w;
    row_stats[row] = s;
  }
  if (topk) {
    int head = 0;
    for (int i = 0; i < k; ++i) {
      const kmath::TopKEntry best = block_best(head < n ? list[head] : kmath::TopKEntry{}, t_scratch);
      if (best.index >= 0 && head < n && list[head].index == best.index) ++head;  // indices are unique
      if (threadIdx.x == 0) topk[row * k + i] = best;
    }
  }
}

template <typename T>
static __global__ void pair_terms_kernel(const T* h, int64_t ldh, const T* u, int64_t ldu, int64_t cols,
                                         const float* __restrict__ gamma, kmath::ActQuantConfig q4,
                                         kmath::ActQuantConfig q8, kmath::PairTerms* out) {
  __shared__ float scratch[32];
  __shared__ float s_p[4];
  const int64_t row = blockIdx.x;
  const T* hr = h + row * ldh;
  const T* ur = u + row * ldu;
  kmath::PairTerms t;
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float hv = detail::to_f32(hr[c]), uv = detail::to_f32(ur[c]);
    const float d = uv - hv, ah = fabsf(hv), ad = fabsf(d);
    t.h_l2sq += hv * hv;
    t.h_linf = ah > t.h_linf ? ah : t.h_linf;
    t.d_l2sq += d * d;
    t.d_linf = ad > t.d_linf ? ad : t.d_linf;
    const float ph = kmath::pair_project(hv, gamma, c), pu = kmath::pair_project(uv, gamma, c);
    t.hist_sq += ph * ph;
    lo = fminf(lo, pu);
    hi = fmaxf(hi, pu);
  }
  t.h_l2sq = detail::block_reduce(t.h_l2sq, detail::SumOp{}, 0.0f, scratch);
  t.h_linf = detail::block_reduce(t.h_linf, detail::MaxOp{}, 0.0f, scratch);
  t.d_l2sq = detail::block_reduce(t.d_l2sq, detail::SumOp{}, 0.0f, scratch);
  t.d_linf = detail::block_reduce(t.d_linf, detail::MaxOp{}, 0.0f, scratch);
  t.hist_sq = detail::block_reduce(t.hist_sq, detail::SumOp{}, 0.0f, scratch);
  lo = detail::block_reduce(lo, detail::MinOp{}, INFINITY, scratch);
  hi = detail::block_reduce(hi, detail::MaxOp{}, -INFINITY, scratch);
  if (threadIdx.x == 0) {
    const kmath::QuantParams p4 = kmath::act_quant_params(lo, hi, q4.bits, q4.sym, q4.clip_ratio, true);
    const kmath::QuantParams p8 = kmath::act_quant_params(lo, hi, q8.bits, q8.sym, q8.clip_ratio, true);
    s_p[0] = p4.scale;
    s_p[1] = p4.zero;
    s_p[2] = p8.scale;
    s_p[3] = p8.zero;
  }
  __syncthreads();
  kmath::QuantParams p4, p8;
  p4.scale = s_p[0];
  p4.zero = s_p[1];
  p8.scale = s_p[2];
  p8.zero = s_p[3];
  const float lo4 = float(kmath::quant_minq(q4.bits, q4.sym)), hi4 = float(kmath::quant_maxq(q4.bits, q4.sym));
  const float lo8 = float(kmath::quant_minq(q8.bits, q8.sym)), hi8 = float(kmath::quant_maxq(q8.bits, q8.sym));
  float noise4 = 0.0f, noise8 = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float pu = kmath::pair_project(detail::to_f32(ur[c]), gamma, c);
    noise4 += kmath::quant_sq_error(pu, p4, lo4, hi4);
    noise8 += kmath::quant_sq_error(pu, p8, lo8, hi8);
  }
  t.noise4 = detail::block_reduce(noise4, detail::SumOp{}, 0.0f, scratch);
  t.noise8 = detail::block_reduce(noise8, detail::SumOp{}, 0.0f, scratch);
  if (threadIdx.x == 0) out[row] = t;
}

template <typename T>
static void launch_stream_stats(const T* x, int64_t ldx, int64_t rows, int64_t cols, const StreamStatsOutputs& o,
                                cudaStream_t stream) {
  const int threads = detail::segment_threads(cols);
  stream_stats_kernel<T><<<static_cast<unsigned>(rows), threads, 0, stream>>>(x, ldx, cols, o.row_stats,
                                                                             o.channel_absmax, o.topk, o.k, o.abs_hist);
  CUDA_CHECK(cudaGetLastError());
}

template <typename T>
static void launch_pair_terms(const T* h, int64_t ldh, const T* u, int64_t ldu, int64_t rows, int64_t cols,
                              const float* gamma, const kmath::ActQuantConfig& q4, const kmath::ActQuantConfig& q8,
                              kmath::PairTerms* out, cudaStream_t stream) {
  const int threads = detail::segment_threads(cols);
  pair_terms_kernel<T><<<static_cast<unsigned>(rows), threads, 0, stream>>>(h, ldh, u, ldu, cols, gamma, q4, q8, out);
  CUDA_CHECK(cudaGetLastError());
}

void stream_stats(const void* x, int64_t ldx, int64_t rows, int64_t cols, kmath::DType dtype,
                  const StreamStatsOutputs& out, cudaStream_t stream) {
  constexpr const char* op = "stream_stats";
  if (kmath::dtype_size(dtype) == 0) detail::throw_invalid(op, "unsupported dtype");
  if (rows < 0 || cols < 0) detail::throw_invalid(op, "negative shape");
  if (out.topk && (out.k < 1 || out.k > kmath::kMaxTopK))
    detail::throw_invalid(op, "k must be in [1, " + std::to_string(kmath::kMaxTopK) + "]");
  if (rows == 0 || cols == 0) return;
  if (!x || !out.row_stats) detail::throw_invalid(op, "null pointer");
  if (ldx < cols) detail::throw_invalid(op, "row stride smaller than the row length");
  if (rows > std::numeric_limits<int32_t>::max()) detail::throw_invalid(op, "more than 2^31-1 rows");
  DPTQ_DISPATCH_DTYPE(op, dtype, [&] {
    launch_stream_stats<scalar_t>(static_cast<const scalar_t*>(x), ldx, rows, cols, out, stream);
  });
}

void pair_terms(const void* h, int64_t ldh, const void* u, int64_t ldu, int64_t rows, int64_t cols,
                kmath::DType dtype, const float* gamma, const kmath::ActQuantConfig& q4,
                const kmath::ActQuantConfig& q8, kmath::PairTerms* out, cudaStream_t stream) {
  constexpr const char* op = "pair_terms";
  if (kmath::dtype_size(dtype) == 0) detail::throw_invalid(op, "unsupported dtype");
  if (rows < 0 || cols < 0) detail::throw_invalid(op, "negative shape");
  for (const kmath::ActQuantConfig* q : {&q4, &q8}) {
    if (const char* why = kmath::validate_act_quant(*q, cols)) detail::throw_invalid(op, why);
    if (q->group_size != 0) detail::throw_invalid(op, "the HSNR quantizers are per token (group_size 0)");
  }
  if (rows == 0 || cols == 0) return;
  if (!h || !u || !out) detail::throw_invalid(op, "null pointer");
  if (ldh < cols || ldu < cols) detail::throw_invalid(op, "row stride smaller than the row length");
  if (rows > std::numeric_limits<int32_t>::max()) detail::throw_invalid(op, "more than 2^31-1 rows");
  DPTQ_DISPATCH_DTYPE(op, dtype, [&] {
    launch_pair_terms<scalar_t>(static_cast<const scalar_t*>(h), ldh, static_cast<const scalar_t*>(u), ldu, rows, cols,
                                gamma, q4, q8, out, stream);
  });
}

}  // namespace dptq::cuda

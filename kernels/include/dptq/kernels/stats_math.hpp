// dptq/kernels/stats_math.hpp — residual-stream statistics: the arithmetic shared by
// kernels/stream_stats.cuh and its CPU references. Torch-free; plain C++ under g++,
// __host__ __device__ under nvcc. Definitions: docs/metrics.md §1, §3, §4 (this project's reading
// of the DynamicPTQ abstract, DESIGN §4).
//
// Contents
//   TopKEntry, topk_before, topk_insert, topk_merge   top-k |v| lists, sorted by |v| descending,
//                                                     ties by the smaller flat index first
//   Welford, welford_add, welford_merge              running count / mean / M2 (Chan et al.)
//   abs_hist_bin                                     bin of |v| in dptq::LogHistogram
//   StreamRowStats, stream_stats_rows_ref            per token Σv², max|v|, Welford, top-k;
//                                                    per channel running absmax; |v| histogram
//   PairTerms, pair_terms_rows_ref                   the per-token sums JR / JR∞ / HSNR(4, 8)
//                                                    are made of, for a pair (h_l, u)
//   jump_ratio, jump_ratio_inf, hsnr_db              the metrics from those sums
//
// Ordering of top-k: a before b when |a| > |b|, or |a| == |b| and a.index < b.index. The order is
// total, so the kernel's tree of merges and the CPU's sequential merge give the same list.
#pragma once
#include <math.h>

#include <cstdint>
#include <cstring>

#include "dptq/kernels/hd.hpp"
#include "dptq/kernels/quant_math.hpp"

namespace dptq::kmath {

constexpr int kMaxTopK = 16;  // per-row candidates the stream-stats kernel can keep

struct TopKEntry {
  float abs = -1.0f;   // |v|; -1 marks an empty slot
  float value = 0.0f;  // v with its sign
  int64_t index = -1;  // flat index (row · cols + column)
};

DPTQ_HD inline bool topk_before(const TopKEntry& a, const TopKEntry& b) {
  return a.abs > b.abs || (a.abs == b.abs && a.index >= 0 && (b.index < 0 || a.index < b.index));
}

// Inserts e into the sorted list (n entries, capacity k); n grows up to k.
DPTQ_HD inline void topk_insert(TopKEntry* list, int& n, int k, const TopKEntry& e) {
  if (k <= 0) return;
  if (n == k && !topk_before(e, list[n - 1])) return;
  int pos = n < k ? n : k - 1;
  while (pos > 0 && topk_before(e, list[pos - 1])) {
    list[pos] = list[pos - 1];
    --pos;
  }
  list[pos] = e;
  if (n < k) ++n;
}

// Merges sorted lists a (na) and b (nb) into out (at most k entries; out must not alias a or b).
// Returns the length of out.
DPTQ_HD inline int topk_merge(const TopKEntry* a, int na, const TopKEntry* b, int nb, TopKEntry* out, int k) {
  int i = 0, j = 0, n = 0;
  while (n < k && (i < na || j < nb)) {
    if (j >= nb || (i < na && topk_before(a[i], b[j])))
      out[n++] = a[i++];
    else
      out[n++] = b[j++];
  }
  return n;
}

// Running mean and sum of squared deviations. merge is Chan, Golub & LeVeque's pairwise update,
// exact in exact arithmetic and stable in floating point (no Σx² − (Σx)² cancellation).
struct Welford {
  double n = 0.0;
  double mean = 0.0;
  double m2 = 0.0;
};

DPTQ_HD inline void welford_add(Welford& w, double x) {
  w.n += 1.0;
  const double d = x - w.mean;
  w.mean += d / w.n;
  w.m2 += d * (x - w.mean);
}

DPTQ_HD inline Welford welford_merge(const Welford& a, const Welford& b) {
  if (a.n == 0.0) return b;
  if (b.n == 0.0) return a;
  Welford r;
  r.n = a.n + b.n;
  const double d = b.mean - a.mean;
  r.mean = a.mean + d * (b.n / r.n);
  r.m2 = a.m2 + b.m2 + d * d * (a.n * b.n / r.n);
  return r;
}

DPTQ_HD inline double welford_variance(const Welford& w) { return w.n > 0.0 ? w.m2 / w.n : 0.0; }

// dptq::LogHistogram bins |v| by its float bit pattern: bin = bits(|v|) >> 17 (64 bins per
// octave), 2^14 bins. tests/test_kernel_math_ops.cpp checks the constants against histogram.hpp.
constexpr int kAbsHistShift = 17;
constexpr int64_t kAbsHistBins = int64_t(1) << (31 - kAbsHistShift);

DPTQ_HD inline uint32_t abs_hist_bin(float abs_v) {
  uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = __float_as_uint(abs_v);
#else
  std::memcpy(&bits, &abs_v, 4);
#endif
  return (bits & 0x7fffffffu) >> kAbsHistShift;
}

// Per-token results of one stream tap.
struct StreamRowStats {
  float l2sq = 0.0f;  // Σ_c v²
  float linf = 0.0f;  // max_c |v| (the profiler's position absmax)
  Welford moments;    // count, mean, M2 of the row's entries
};

// CPU reference of dptq::cuda::stream_stats for fp32 rows: fills row_stats[rows] and, when not
// nullptr, raises channel_absmax[cols] (running: max with what it holds), writes per-row top-k
// candidates topk[rows][k] (flat indices r · cols + c, empty slots have index -1) and adds one
// count per entry to abs_hist[kAbsHistBins]. NaN entries give unspecified results.
inline void stream_stats_rows_ref(const float* x, int64_t ldx, int64_t rows, int64_t cols, StreamRowStats* row_stats,
                                  float* channel_absmax, TopKEntry* topk, int k, uint32_t* abs_hist) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    StreamRowStats s;
    TopKEntry* list = topk ? topk + r * k : nullptr;
    int n = 0;
    if (list)
      for (int i = 0; i < k; ++i) list[i] = TopKEntry{};
    for (int64_t c = 0; c < cols; ++c) {
      const float v = xr[c], av = fabsf(v);
      s.l2sq += v * v;
      s.linf = av > s.linf ? av : s.linf;
      welford_add(s.moments, double(v));
      if (channel_absmax && av > channel_absmax[c]) channel_absmax[c] = av;
      if (list) topk_insert(list, n, k, TopKEntry{av, v, r * cols + c});
      if (abs_hist) ++abs_hist[abs_hist_bin(av)];
    }
    row_stats[r] = s;
  }
}

// Per-token sums of a pair (h_l, u) with u = h_{l+1} (block) or a_l (MLP sublayer), in the next
// quantizer's basis P x = γ ⊙ x (gamma nullptr: P = identity, e.g. after a Hadamard rotation).
struct PairTerms {
  float h_l2sq = 0.0f;   // ‖h‖₂²
  float h_linf = 0.0f;   // ‖h‖∞
  float d_l2sq = 0.0f;   // ‖u − h‖₂²
  float d_linf = 0.0f;   // ‖u − h‖∞
  float hist_sq = 0.0f;  // ‖P h‖₂²   (HSNR numerator)
  float noise4 = 0.0f;   // ‖Q_4(P u) − P u‖₂²  (HSNR denominator at 4 bits, config q4)
  float noise8 = 0.0f;   // ‖Q_8(P u) − P u‖₂²
};

DPTQ_HD inline float pair_project(float v, const float* gamma, int64_t c) { return gamma ? v * gamma[c] : v; }

// Σ (Q(x) − x)² of one element under params p (the profiler's quant_noise, per element).
DPTQ_HD inline float quant_sq_error(float x, const QuantParams& p, float qlo, float qhi) {
  const float q = quant_code_f(x, p.scale, p.zero, qlo, qhi);
  const float e = p.scale * (q - p.zero) - x;
  return e * e;
}

// CPU reference of dptq::cuda::pair_terms: per token (per-token quantizers: q4 / q8 must have
// group_size 0). Sums run in fp32 in column order; the kernel sums in another order, so its sums
// agree to rounding, its maxima and the quantizer parameters exactly.
inline void pair_terms_rows_ref(const float* h, int64_t ldh, const float* u, int64_t ldu, int64_t rows, int64_t cols,
                                const float* gamma, const ActQuantConfig& q4, const ActQuantConfig& q8, PairTerms* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* hr = h + r * ldh;
    const float* ur = u + r * ldu;
    PairTerms t;
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) {
      const float hv = hr[c], d = ur[c] - hv, ah = fabsf(hv), ad = fabsf(d);
      t.h_l2sq += hv * hv;
      t.h_linf = ah > t.h_linf ? ah : t.h_linf;
      t.d_l2sq += d * d;
      t.d_linf = ad > t.d_linf ? ad : t.d_linf;
      const float ph = pair_project(hv, gamma, c), pu = pair_project(ur[c], gamma, c);
      t.hist_sq += ph * ph;
      lo = fminf(lo, pu);
      hi = fmaxf(hi, pu);
    }
    const QuantParams p4 = act_quant_params(lo, hi, q4.bits, q4.sym, q4.clip_ratio, true);
    const QuantParams p8 = act_quant_params(lo, hi, q8.bits, q8.sym, q8.clip_ratio, true);
    const float lo4 = float(quant_minq(q4.bits, q4.sym)), hi4 = float(quant_maxq(q4.bits, q4.sym));
    const float lo8 = float(quant_minq(q8.bits, q8.sym)), hi8 = float(quant_maxq(q8.bits, q8.sym));
    for (int64_t c = 0; c < cols; ++c) {
      const float pu = pair_project(ur[c], gamma, c);
      t.noise4 += quant_sq_error(pu, p4, lo4, hi4);
      t.noise8 += quant_sq_error(pu, p8, lo8, hi8);
    }
    out[r] = t;
  }
}

// JR = ‖Δ‖₂ / ‖h‖₂, JR∞ = ‖Δ‖∞ / ‖h‖∞ (docs/metrics.md §3), HSNR in dB (§4; +inf when the
// quantizer reproduces the token exactly).
DPTQ_HD inline double jump_ratio(const PairTerms& t) { return sqrt(double(t.d_l2sq)) / sqrt(double(t.h_l2sq)); }
DPTQ_HD inline double jump_ratio_inf(const PairTerms& t) { return double(t.d_linf) / double(t.h_linf); }
DPTQ_HD inline double hsnr_db(double hist_sq, double noise) { return 10.0 * log10(hist_sq / noise); }

}  // namespace dptq::kmath

// dptq/kernels/stream_stats.cuh — residual-stream statistics of one tap (CUDA), one pass over the
// stream: per token Σv², max|v| and Welford moments, per channel running absmax, per token top-k
// |v|, the |v| histogram; and, for a pair (h_l, u), the per-token sums JR / JR∞ / HSNR(4, 8) are
// made of. Torch-free host entry points; definitions in stats_math.hpp (docs/metrics.md).
//
// x, h, u: fp32 / fp16 / bf16 (dtype), row-major with row strides in elements; every output is
// device memory. CPU references: dptq::kmath::stream_stats_rows_ref and pair_terms_rows_ref on
// the fp32 values of the inputs. Maxima, top-k lists, histogram counts, channel absmax and the
// quantizer parameters agree exactly; sums and moments agree to rounding (the kernel adds in a
// tree). NaN inputs give unspecified results. Asynchronous on `stream`. Throws dptq::Error
// (InvalidArgument for bad arguments, Unsupported for CUDA failures).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dptq/kernels/dtype.hpp"
#include "dptq/kernels/stats_math.hpp"

namespace dptq::cuda {

struct StreamStatsOutputs {
  kmath::StreamRowStats* row_stats = nullptr;  // [rows], required
  float* channel_absmax = nullptr;             // [cols], raised (max with what it holds), or nullptr
  kmath::TopKEntry* topk = nullptr;            // [rows][k] (flat indices r · cols + c), or nullptr
  int k = 0;                                   // 1..kMaxTopK when topk is set
  uint32_t* abs_hist = nullptr;                // [kmath::kAbsHistBins], incremented, or nullptr
};

void stream_stats(const void* x, int64_t ldx, int64_t rows, int64_t cols, kmath::DType dtype,
                  const StreamStatsOutputs& out, cudaStream_t stream);

// out[rows]: the sums of (h, u) per token; gamma [cols] (fp32) or nullptr; q4 / q8 per-token
// quantizer configs (group_size 0).
void pair_terms(const void* h, int64_t ldh, const void* u, int64_t ldu, int64_t rows, int64_t cols,
                kmath::DType dtype, const float* gamma, const kmath::ActQuantConfig& q4,
                const kmath::ActQuantConfig& q8, kmath::PairTerms* out, cudaStream_t stream);

}  // namespace dptq::cuda

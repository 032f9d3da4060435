// dptq/device_ops.hpp — one entry per kernel operation, dispatched on the tensor's device: the
// CUDA kernel (kernels/, docs/kernels.md) for CUDA tensors when this build has the kernels, the
// CPU reference of the same shared arithmetic otherwise. Results agree bit for bit between the two
// (the kernels' suites check it on a GPU). Include only from translation units that need tensors.
//
// Contents
//   cuda_kernels_built   whether dptq_kernels is linked (built with nvcc)
//   fake_quant_on_device per-token / per-group quantize-dequantize (quant_math.hpp)
//   hadamard_rotate      x · diag(sign) · H_n · scale along the last dimension (fwht_math.hpp),
//                        H_n the core's hadamard_matrix(n)
//   int8_gemm            int8 codes × int8 weight codes, exact int32 sums, the integer engine's
//                        epilogue (gemm_math.hpp); the integer engine's GEMM on CUDA tensors
//   stream_stats         one residual-stream tap: per token Σv², max|v|, moments; per channel
//                        absmax; the |v| histogram (stats_math.hpp); the profiler's stream taps
//   pair_terms           the per-token sums JR / HSNR(4, 8) are made of, for a pair (h, u); the
//                        profiler's Historical SNR
//
// Called by dptq::fake_quant (every activation and KV quantizer) and Rotation::apply (QuaRot's
// online Hadamard rotations) for CUDA tensors; see docs/kernels.md for what else dispatches.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "dptq/kernels/stats_math.hpp"
#include "dptq/quant.hpp"

namespace dptq::device_ops {

bool cuda_kernels_built();

// The fake quantizer's entry is dptq::fake_quant (quant.hpp), which every quantizer of the forward
// pass (activations, KV cache) calls; for CUDA tensors it calls this, its CUDA half:
// cuda::act_fake_quant on the current stream, true and y set when x is a CUDA tensor the kernel
// takes (fp32 / fp16 / bf16) and this build has the kernels, false otherwise (y untouched).
bool fake_quant_on_device(const at::Tensor& x, const ActQuantConfig& cfg, at::Tensor& y);

// y = (x ⊙ sign) · H_n · scale over the last dimension n (sign: [n] of ±1, or undefined). Same
// shape, dtype and device as x. CUDA: cuda::fwht (fp32 math, rounded once to x's dtype); CPU:
// kmath::fwht_rows_ref in fp32. Throws InvalidArgument when no Hadamard matrix of order n exists.
at::Tensor hadamard_rotate(const at::Tensor& x, const at::Tensor& sign, double scale);

// The integer linear layer (kernels/int8_gemm.cuh):
//   y[t, n] = float(Σ_k a[t, k] w[n, k] + a_offset[t] · w_colsum[n]) · (a_scale[t] · w_scale[n]) (+ bias[n])
// a int8 [T, K], a_offset int32 [T] (or undefined: 0), a_scale fp32 [T], w int8 [N, K], w_colsum
// int32 [N], w_scale fp32 [N], bias fp32 [N] or undefined; all on one device. Returns y fp32
// [T, N] there. CUDA: cuda::int8_gemm (cuBLASLt IMMA or the tiled kernel); CPU: the reference
// kmath::int8_gemm_rows_ref (exact int32 sums, a plain loop: for tests, not speed).
at::Tensor int8_gemm(const at::Tensor& a, const at::Tensor& a_offset, const at::Tensor& a_scale, const at::Tensor& w,
                     const at::Tensor& w_colsum, const at::Tensor& w_scale, const at::Tensor& bias);

// One tap of the residual stream, x [T, C] (fp32 / fp16 / bf16), summarized on its device and
// returned to the host (a few kB). CUDA: cuda::stream_stats; CPU: kmath::stream_stats_rows_ref
// on the fp32 values. abs_sum and abs_min come from tensor operations on x's device.
struct StreamTapStats {
  std::vector<kmath::StreamRowStats> rows;  // [T]
  std::vector<float> channel_absmax;        // [C]
  std::vector<uint32_t> abs_hist;           // [kmath::kAbsHistBins], dptq::LogHistogram's bins
  double abs_sum = 0.0, abs_min = 0.0;      // Σ|v| and min |v| over the tap
};
StreamTapStats stream_stats(const at::Tensor& x);

// Per token of h, u [T, C] (same dtype and device): kmath::PairTerms in the basis γ ⊙ x (gamma
// [C], or undefined for the identity), q4 / q8 per-token quantizer configs. CUDA:
// cuda::pair_terms; CPU: kmath::pair_terms_rows_ref on the fp32 values.
std::vector<kmath::PairTerms> pair_terms(const at::Tensor& h, const at::Tensor& u, const at::Tensor& gamma,
                                         const kmath::ActQuantConfig& q4, const kmath::ActQuantConfig& q8);

}  // namespace dptq::device_ops

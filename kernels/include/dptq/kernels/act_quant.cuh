// dptq/kernels/act_quant.cuh — fused per-token (or per-group) activation quantize–dequantize
// (CUDA). Torch-free host entry points.
//
// Quantizes each row (each group of cfg.group_size elements when > 0) of x with its own scale and
// zero point and writes the dequantized values to y, following QuaRot's ActQuantizer conventions
// exactly (see quant_math.hpp): bits 2..8, asymmetric or symmetric, clip ratio. Row-major, ldx /
// ldy / ldc are row strides in elements; y has x's dtype (fp32, fp16 or bf16: read exactly into
// fp32, computed in fp32, rounded once to nearest even on store). Device pointers; y may alias x
// exactly. Optional outputs (nullptr to skip): codes (int8, needs bits <= 7 when asymmetric),
// scales and zeros, [rows][cols / group] floats (one per row when group_size == 0).
// Bit-identical to dptq::kmath::act_fake_quant_rows_ref on the fp32 values of x, its output
// rounded to x's dtype. Asynchronous on `stream`. Throws dptq::Error (InvalidArgument for bad
// arguments, Unsupported for CUDA failures). For stored codes see quant_pack.cuh.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dptq/kernels/dtype.hpp"
#include "dptq/kernels/quant_math.hpp"

namespace dptq::cuda {

void act_fake_quant(const void* x, int64_t ldx, void* y, int64_t ldy, int64_t rows, int64_t cols, kmath::DType dtype,
                    const kmath::ActQuantConfig& cfg, int8_t* codes, int64_t ldc, float* scales, float* zeros,
                    cudaStream_t stream);

// act_fake_quant for fp32 (the first entry point; kept for its callers).
void act_fake_quant_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t cols,
                        const kmath::ActQuantConfig& cfg, int8_t* codes, int64_t ldc, float* scales, float* zeros,
                        cudaStream_t stream);

}  // namespace dptq::cuda

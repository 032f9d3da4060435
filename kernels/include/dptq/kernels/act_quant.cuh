// dptq/kernels/act_quant.cuh — per-token (or per-group) activation fake quantization (CUDA).
// Torch-free host entry point.
//
// Quantizes each row (each group of cfg.group_size elements when > 0) of x with its own scale and
// zero point and writes the dequantized values to y, following QuaRot's ActQuantizer conventions
// exactly (see quant_math.hpp). fp32, row-major, ldx / ldy / ldc are row strides in elements.
// Device pointers; y may alias x exactly. Optional outputs (nullptr to skip): codes (int8, needs
// bits <= 7 when asymmetric), scales and zeros, [rows][cols / group] floats (one per row when
// group_size == 0). Bit-identical to dptq::kmath::act_fake_quant_rows_ref. Asynchronous on
// `stream`. Throws dptq::Error (InvalidArgument for bad arguments, Unsupported for CUDA failures).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dptq/kernels/quant_math.hpp"

namespace dptq::cuda {

void act_fake_quant_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t cols,
                        const kmath::ActQuantConfig& cfg, int8_t* codes, int64_t ldc, float* scales, float* zeros,
                        cudaStream_t stream);

}  // namespace dptq::cuda

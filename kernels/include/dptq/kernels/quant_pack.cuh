// dptq/kernels/quant_pack.cuh — quantization to stored codes + scales / zero points (CUDA):
// activations per token (quant_pack), the KV cache per group (kv_quant), and the inverse
// (dequant_packed). Torch-free host entry points.
//
// Storage (quant_pack_math.hpp): bits <= 4, two codes per byte, element 2j in the low nibble (a
// row of odd length ends with a zero high nibble); bits 5..8, one byte per code (asymmetric codes
// as uint8 in [0, 2^b − 1], symmetric ones as int8 bits). A row of codes holds
// kmath::code_bytes_per_row(cols, bits) bytes; scales / zeros are fp32 [rows][groups] (groups = 1
// per token, cols / group_size otherwise), either may be nullptr. Codes, scales and zeros are
// exactly act_fake_quant's (QuaRot's conventions, quant_math.hpp): bit-identical to
// dptq::kmath::quant_pack_rows_ref on the fp32 values of x. Packed groups must be even.
// x / y: fp32, fp16 or bf16 (dtype), row strides ldx / ldy / ldc in elements or bytes of codes.
// Device pointers; asynchronous on `stream`. Throws dptq::Error (InvalidArgument for bad
// arguments, Unsupported for CUDA failures).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dptq/kernels/dtype.hpp"
#include "dptq/kernels/quant_math.hpp"

namespace dptq::cuda {

// Per token when cfg.group_size == 0, per group otherwise.
void quant_pack(const void* x, int64_t ldx, int64_t rows, int64_t cols, kmath::DType dtype,
                const kmath::ActQuantConfig& cfg, uint8_t* codes, int64_t ldc, float* scales, float* zeros,
                cudaStream_t stream);

// The KV cache: quant_pack with cfg.group_size > 0 required (QuaRot quantizes K and V per head,
// group_size = head_dim; the group's range does not include 0).
void kv_quant(const void* x, int64_t ldx, int64_t rows, int64_t cols, kmath::DType dtype,
              const kmath::ActQuantConfig& cfg, uint8_t* codes, int64_t ldc, float* scales, float* zeros,
              cudaStream_t stream);

// y = scale · (code − zero), rounded once to dtype; zeros may be nullptr (symmetric). CPU
// reference: kmath::dequant_packed_rows_ref.
void dequant_packed(const uint8_t* codes, int64_t ldc, int64_t rows, int64_t cols, const kmath::ActQuantConfig& cfg,
                    const float* scales, const float* zeros, void* y, int64_t ldy, kmath::DType dtype,
                    cudaStream_t stream);

}  // namespace dptq::cuda

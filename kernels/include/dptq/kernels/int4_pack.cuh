// dptq/kernels/int4_pack.cuh — int4 packing of integer codes, two per byte, low nibble first
// (CUDA). Torch-free host entry points.
//
// pack:   packed[r, j] = (codes[r, 2j] & 0xf) | (codes[r, 2j+1] & 0xf) << 4; a row with an odd
//         number of codes ends with a zero high nibble. A packed row holds
//         dptq::kmath::int4_packed_cols(cols) bytes.
// unpack: the inverse; is_signed sign-extends nibbles (two's complement codes in [-8, 7]),
//         otherwise codes come back in [0, 15].
// Row-major with row strides ldc / ldp in elements; device pointers; asynchronous on `stream`.
// CPU references: dptq::kmath::pack_int4_rows_ref / unpack_int4_rows_ref (quant_math.hpp).
// Throws dptq::Error (InvalidArgument for bad arguments, Unsupported for CUDA failures).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dptq::cuda {

void pack_int4(const int8_t* codes, int64_t ldc, uint8_t* packed, int64_t ldp, int64_t rows, int64_t cols,
               cudaStream_t stream);
void unpack_int4(const uint8_t* packed, int64_t ldp, int8_t* codes, int64_t ldc, int64_t rows, int64_t cols,
                 bool is_signed, cudaStream_t stream);

}  // namespace dptq::cuda

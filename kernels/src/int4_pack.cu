// int4 pack / unpack: one thread per packed byte, grid-stride over rows x packed columns.
#include <algorithm>

#include "cuda_check.cuh"
#include "dptq/kernels/int4_pack.cuh"
#include "dptq/kernels/quant_math.hpp"

namespace dptq::cuda {

namespace {
constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 65535;

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kBlock - 1) / kBlock, kMaxBlocks)); }
}  // namespace

static __global__ void pack_int4_kernel(const int8_t* codes, int64_t ldc, uint8_t* packed, int64_t ldp, int64_t rows,
                                        int64_t cols) {
  const int64_t pc = kmath::int4_packed_cols(cols);
  const int64_t n = rows * pc;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / pc, j = i % pc;
    const int8_t* c = codes + r * ldc + 2 * j;
    packed[r * ldp + j] = kmath::pack_nibbles(c[0], 2 * j + 1 < cols ? c[1] : 0);
  }
}

static __global__ void unpack_int4_kernel(const uint8_t* packed, int64_t ldp, int8_t* codes, int64_t ldc, int64_t rows,
                                          int64_t cols, bool is_signed) {
  const int64_t pc = kmath::int4_packed_cols(cols);
  const int64_t n = rows * pc;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / pc, j = i % pc;
    const uint8_t b = packed[r * ldp + j];
    int8_t* c = codes + r * ldc + 2 * j;
    c[0] = static_cast<int8_t>(kmath::unpack_lo(b, is_signed));
    if (2 * j + 1 < cols) c[1] = static_cast<int8_t>(kmath::unpack_hi(b, is_signed));
  }
}

static void launch_pack_int4(const int8_t* codes, int64_t ldc, uint8_t* packed, int64_t ldp, int64_t rows,
                             int64_t cols, cudaStream_t stream) {
  pack_int4_kernel<<<blocks_for(rows * kmath::int4_packed_cols(cols)), kBlock, 0, stream>>>(codes, ldc, packed, ldp,
                                                                                             rows, cols);
  CUDA_CHECK(cudaGetLastError());
}

static void launch_unpack_int4(const uint8_t* packed, int64_t ldp, int8_t* codes, int64_t ldc, int64_t rows,
                               int64_t cols, bool is_signed, cudaStream_t stream) {
  unpack_int4_kernel<<<blocks_for(rows * kmath::int4_packed_cols(cols)), kBlock, 0, stream>>>(packed, ldp, codes, ldc,
                                                                                               rows, cols, is_signed);
  CUDA_CHECK(cudaGetLastError());
}

static void validate(const char* op, const void* a, const void* b, int64_t ld_codes, int64_t ld_packed, int64_t rows,
                     int64_t cols) {
  if (rows < 0 || cols < 0) detail::throw_invalid(op, "negative shape");
  if (rows == 0 || cols == 0) return;
  if (!a || !b) detail::throw_invalid(op, "null pointer");
  if (ld_codes < cols) detail::throw_invalid(op, "codes row stride smaller than the row length");
  if (ld_packed < kmath::int4_packed_cols(cols)) detail::throw_invalid(op, "packed row stride smaller than (cols + 1) / 2");
}

void pack_int4(const int8_t* codes, int64_t ldc, uint8_t* packed, int64_t ldp, int64_t rows, int64_t cols,
               cudaStream_t stream) {
  validate("pack_int4", codes, packed, ldc, ldp, rows, cols);
  if (rows == 0 || cols == 0) return;
  launch_pack_int4(codes, ldc, packed, ldp, rows, cols, stream);
}

void unpack_int4(const uint8_t* packed, int64_t ldp, int8_t* codes, int64_t ldc, int64_t rows, int64_t cols,
                 bool is_signed, cudaStream_t stream) {
  validate("unpack_int4", codes, packed, ldc, ldp, rows, cols);
  if (rows == 0 || cols == 0) return;
  launch_unpack_int4(packed, ldp, codes, ldc, rows, cols, is_signed, stream);
}

}  // namespace dptq::cuda

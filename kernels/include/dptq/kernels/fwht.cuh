// dptq/kernels/fwht.cuh — fast Walsh–Hadamard transform along rows (CUDA), for n = 2^k · m with
// the Hadamard base orders m of core/src/rotation.cpp (1, 12, 20, 28, 36, 44, 60, 108, …).
// Torch-free host entry point; replaces the dense `x @ R` rotation on CUDA tensors.
//
// y[r, :] = scale · ((sign ⊙ x[r, :]) · (S_{2^k} ⊗ H_m)), with H_m the row-major ±1 base of
// dptq::kmath::hadamard_base_fill (pass its transpose for x · H_nᵀ) and sign an optional ±1 vector
// (QuaRot's random Hadamard diag(s) · H / √n is sign = s, scale = 1/√n). One block per row: the
// row lives in shared memory (n floats; the entry point checks the device's opt-in limit, 227 KiB
// on H100, so n <= 58112). Computes in fp32; fp32 results equal dptq::kmath::fwht_rows_ref bit for
// bit. Row strides ldx / ldy in elements; y may alias x exactly (ldx == ldy). Device pointers
// (x, y, base, sign); asynchronous on `stream`. Throws dptq::Error (InvalidArgument for bad
// arguments, Unsupported for CUDA failures or rows too long for shared memory).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dptq/kernels/dtype.hpp"

namespace dptq::cuda {

struct FwhtParams {
  int64_t n = 0;                 // row length, m · 2^k
  int64_t m = 1;                 // base order (kmath::hadamard_base_order(n) for the engine's H_n)
  const int8_t* base = nullptr;  // device, m × m row-major ±1; may be nullptr when m == 1
  const float* sign = nullptr;   // device, [n] of ±1, or nullptr
  float scale = 1.0f;
};

void fwht(const void* x, int64_t ldx, void* y, int64_t ldy, int64_t rows, kmath::DType dtype, const FwhtParams& p,
          cudaStream_t stream);

}  // namespace dptq::cuda

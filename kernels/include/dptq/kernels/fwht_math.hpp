// dptq/kernels/fwht_math.hpp — fast Walsh–Hadamard transform for n = 2^k · m: the arithmetic
// shared by kernels/fwht.cuh and its CPU reference. Torch-free; plain C++ under g++,
// __host__ __device__ under nvcc.
//
// Contents
//   hadamard_base_exists / hadamard_base_order / hadamard_base_fill
//                       the base orders m and ±1 matrices H_m of core/src/rotation.cpp, rebuilt
//                       without torch (1, Paley I: q + 1 for a prime q ≡ 3 mod 4, Paley II:
//                       2(q + 1) for a prime q ≡ 1 mod 4); tests/test_kernel_math_ops.cpp checks
//                       they equal dptq::hadamard_matrix entry for entry
//   butterfly           (a, b) -> (a + b, a - b)
//   fwht_pair_index     the i-th butterfly of a stage, as element indices
//   fwht_rows_ref       CPU reference of kernels/fwht.cuh, the same operations in the same order
//
// Transform (per row of n elements, the engine's `x @ R` with R = diag(s) · H_n · scale):
//   y = scale · ((s ⊙ x) · H_n),  H_n = S_{2^k} ⊗ H_m  (core's hadamard_matrix: kron(H2, H) k times)
// With x viewed as [2^k][m] (row a, column b): first z[a, :] = x[a, :] · H_m (a dense m × m
// product, accumulated over b' = 0..m-1 in order), then the Sylvester butterflies across a at
// element stride m·h for h = 1, 2, 4, … (S is symmetric, so the orientation does not matter).
// Pass H_mᵀ as the base for x · H_nᵀ. Only ±1 products and adds: fp32 results are identical
// between the kernel and this reference whatever the thread layout.
#pragma once
#include <cstdint>
#include <vector>

#include "dptq/kernels/hd.hpp"

namespace dptq::kmath {

inline bool fwht_is_prime(int64_t q) {
  if (q < 2) return false;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

// Whether a base construction of order m exists (the same rule as core/src/rotation.cpp).
inline bool hadamard_base_exists(int64_t m) {
  if (m == 1) return true;
  if (m % 4 != 0) return false;
  const int64_t q1 = m - 1, q2 = m / 2 - 1;
  return (fwht_is_prime(q1) && q1 % 4 == 3) || (q2 >= 5 && fwht_is_prime(q2) && q2 % 4 == 1);
}

// The base order m with n = 2^k · m and the largest k (0 when none exists), as
// dptq::hadamard_base_order.
inline int64_t hadamard_base_order(int64_t n) {
  if (n <= 0) return 0;
  int64_t best = 0;
  for (int64_t p = 1; p <= n; p *= 2) {
    if (n % p != 0) break;
    if (hadamard_base_exists(n / p)) best = n / p;
  }
  return best;
}

// Writes H_m (m × m, row-major, entries ±1) into out; false when no construction exists.
inline bool hadamard_base_fill(int64_t m, int8_t* out) {
  if (!hadamard_base_exists(m)) return false;
  if (m == 1) {
    out[0] = 1;
    return true;
  }
  auto chi_table = [](int64_t q) {  // Legendre symbol modulo the prime q
    std::vector<int> chi(size_t(q), -1);
    chi[0] = 0;
    for (int64_t x = 1; x < q; ++x) chi[size_t((x * x) % q)] = 1;
    return chi;
  };
  // Bordered Jacobsthal matrix [[0, 1ᵀ], [sign·1, Q]], Q_ij = χ(j - i), of order q + 1.
  auto bordered = [&](int64_t q, int sign) {
    const auto chi = chi_table(q);
    const int64_t n = q + 1;
    std::vector<int> M(size_t(n * n), 0);
    for (int64_t j = 1; j < n; ++j) {
      M[size_t(j)] = 1;
      M[size_t(j * n)] = sign;
    }
    for (int64_t i = 1; i < n; ++i)
      for (int64_t j = 1; j < n; ++j) M[size_t(i * n + j)] = chi[size_t((((j - 1) - (i - 1)) % q + q) % q)];
    return M;
  };
  const int64_t q1 = m - 1, q2 = m / 2 - 1;
  if (fwht_is_prime(q1) && q1 % 4 == 3) {  // Paley I: I + S
    const auto S = bordered(q1, -1);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j) out[i * m + j] = static_cast<int8_t>(S[size_t(i * m + j)] + (i == j ? 1 : 0));
    return true;
  }
  // Paley II: C ⊗ [[1, 1], [1, -1]] + I ⊗ [[1, -1], [-1, -1]], C of order q2 + 1.
  const auto C = bordered(q2, 1);
  const int64_t c = q2 + 1;
  const int A[2][2] = {{1, 1}, {1, -1}}, B[2][2] = {{1, -1}, {-1, -1}};
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) {
      const int64_t ci = i / 2, cj = j / 2, ai = i % 2, aj = j % 2;
      out[i * m + j] = static_cast<int8_t>(C[size_t(ci * c + cj)] * A[ai][aj] + (ci == cj ? B[ai][aj] : 0));
    }
  return true;
}

DPTQ_HD inline void butterfly(float& a, float& b) {
  const float s = a + b;
  b = a - b;
  a = s;
}

// Element indices (i, i + stride) of butterfly p (0 <= p < n / 2) of the stage with the given
// element stride (m · h).
DPTQ_HD inline void fwht_pair_index(int64_t p, int64_t stride, int64_t& i, int64_t& j) {
  i = (p / stride) * 2 * stride + p % stride;
  j = i + stride;
}

// One output of the base step: Σ_{b'} v[b'] · H_m[b', b] over the m inputs v of a row segment,
// in order b' = 0..m-1 (load(b') returns s ⊙ x at that position). base is row-major H_m.
template <typename Load>
DPTQ_HD inline float fwht_base_dot(Load load, const int8_t* base, int64_t m, int64_t b) {
  float acc = 0.0f;
  for (int64_t k = 0; k < m; ++k) {
    const float v = load(k);
    acc = base[k * m + b] > 0 ? acc + v : acc - v;
  }
  return acc;
}

// CPU reference of dptq::cuda::fwht for fp32: y[r, :] = scale · ((s ⊙ x[r, :]) · (S ⊗ H_m)).
// n must be m · 2^k; sign may be nullptr (all +1); y may alias x exactly.
inline void fwht_rows_ref(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n,
                          const int8_t* base, int64_t m, const float* sign, float scale) {
  std::vector<float> z(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t a = j / m, b = j % m;
      z[size_t(j)] = fwht_base_dot(
          [&](int64_t k) {
            const int64_t idx = a * m + k;
            return sign ? xr[idx] * sign[idx] : xr[idx];
          },
          base, m, b);
    }
    for (int64_t stride = m; stride < n; stride *= 2)
      for (int64_t p = 0; p < n / 2; ++p) {
        int64_t i, j;
        fwht_pair_index(p, stride, i, j);
        butterfly(z[size_t(i)], z[size_t(j)]);
      }
    float* yr = y + r * ldy;
    for (int64_t j = 0; j < n; ++j) yr[j] = z[size_t(j)] * scale;
  }
}

}  // namespace dptq::kmath

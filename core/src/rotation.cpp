#include "dptq/rotation.hpp"

#include <cmath>
#include <random>
#include <vector>

#include "dptq/error.hpp"

namespace dptq {
namespace {

bool is_prime(int64_t q) {
  if (q < 2) return false;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

// Legendre symbol χ(a) modulo the prime q: 0, 1 (quadratic residue) or -1.
std::vector<int> legendre_table(int64_t q) {
  std::vector<int> chi(size_t(q), -1);
  chi[0] = 0;
  for (int64_t x = 1; x < q; ++x) chi[size_t((x * x) % q)] = 1;
  return chi;
}

// Jacobsthal matrix Q_ij = χ(j - i).
std::vector<std::vector<int>> jacobsthal(int64_t q) {
  const auto chi = legendre_table(q);
  std::vector<std::vector<int>> Q(static_cast<size_t>(q), std::vector<int>(static_cast<size_t>(q)));
  for (int64_t i = 0; i < q; ++i)
    for (int64_t j = 0; j < q; ++j) Q[size_t(i)][size_t(j)] = chi[size_t(((j - i) % q + q) % q)];
  return Q;
}

// [[0, 1ᵀ], [sign·1, Q]]: the Jacobsthal matrix bordered by a row of ones and a column of ±1.
at::Tensor bordered_jacobsthal(int64_t q, double column_sign) {
  const auto Q = jacobsthal(q);
  const int64_t n = q + 1;
  at::Tensor M = at::zeros({n, n}, at::kDouble);
  auto m = M.accessor<double, 2>();
  for (int64_t j = 1; j < n; ++j) { m[0][j] = 1; m[j][0] = column_sign; }
  for (int64_t i = 1; i < n; ++i)
    for (int64_t j = 1; j < n; ++j) m[i][j] = Q[size_t(i - 1)][size_t(j - 1)];
  return M;
}

// Paley construction I (q ≡ 3 mod 4): H = I + S with S = [[0, 1ᵀ], [-1, Q]] skew, order q + 1.
at::Tensor paley1(int64_t q) { return bordered_jacobsthal(q, -1.0) + at::eye(q + 1, at::kDouble); }

// Paley construction II (q ≡ 1 mod 4): C = [[0, 1ᵀ], [1, Q]] (symmetric conference matrix),
// H = C ⊗ [[1, 1], [1, -1]] + I ⊗ [[1, -1], [-1, -1]], order 2(q + 1).
at::Tensor paley2(int64_t q) {
  const at::Tensor A = at::tensor({1.0, 1.0, 1.0, -1.0}, at::kDouble).view({2, 2});
  const at::Tensor B = at::tensor({1.0, -1.0, -1.0, -1.0}, at::kDouble).view({2, 2});
  return at::kron(bordered_jacobsthal(q, 1.0), A) + at::kron(at::eye(q + 1, at::kDouble), B);
}

// Base constructions available for order m (0 if none).
at::Tensor base_hadamard(int64_t m) {
  if (m == 1) return at::ones({1, 1}, at::kDouble);
  if (m % 4 == 0 && is_prime(m - 1) && (m - 1) % 4 == 3) return paley1(m - 1);
  if (m % 4 == 0 && m / 2 - 1 >= 5 && is_prime(m / 2 - 1) && (m / 2 - 1) % 4 == 1) return paley2(m / 2 - 1);
  return {};
}

bool base_exists(int64_t m) {
  if (m == 1) return true;
  if (m % 4 != 0) return false;
  const int64_t q1 = m - 1, q2 = m / 2 - 1;
  return (is_prime(q1) && q1 % 4 == 3) || (q2 >= 5 && is_prime(q2) && q2 % 4 == 1);
}

}  // namespace

int64_t hadamard_base_order(int64_t n) {
  if (n <= 0) return 0;
  // Prefer the largest power-of-two factor (fast transforms), i.e. the smallest base order.
  int64_t best = 0;
  for (int64_t p = 1; p <= n; p *= 2) {
    if (n % p != 0) break;
    if (base_exists(n / p)) best = n / p;
  }
  return best;
}

bool hadamard_exists(int64_t n) { return hadamard_base_order(n) != 0; }

at::Tensor hadamard_matrix(int64_t n) {
  const int64_t m = hadamard_base_order(n);
  if (m == 0) throw Error(ErrorKind::Unsupported, "", "no Hadamard construction for order " + std::to_string(n));
  at::Tensor H = base_hadamard(m);
  const at::Tensor H2 = at::tensor({1.0, 1.0, 1.0, -1.0}, at::kDouble).view({2, 2});
  while (H.size(0) < n) H = at::kron(H2, H);
  return H;
}

at::Tensor random_orthogonal(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  at::Tensor A = at::empty({n, n}, at::kDouble);
  double* p = A.data_ptr<double>();
  for (int64_t i = 0; i < n * n; ++i) p[i] = g(rng);
  auto [Q, R] = at::linalg_qr(A);
  // Fix the signs so the result is unique for the seed (Haar-distributed).
  return (Q * at::sign(at::diagonal(R)).unsqueeze(0)).contiguous();  // QR hands back a column-major Q
}

at::Tensor random_hadamard(int64_t n, uint64_t seed) {
  if (!hadamard_exists(n)) return random_orthogonal(n, seed);
  std::mt19937_64 rng(seed);
  at::Tensor s = at::empty({n, 1}, at::kDouble);
  double* p = s.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = (rng() & 1) ? 1.0 : -1.0;
  return s * hadamard_matrix(n) / std::sqrt(double(n));
}

}  // namespace dptq

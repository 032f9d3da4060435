// dptq/rotation.hpp — Hadamard and random orthogonal matrices for QuaRot-style rotations.
//
// hadamard_matrix(n): ±1 matrix with H Hᵀ = n I, built as Sylvester 2^k ⊗ a base order m, where m is
//   1 or a Paley order: q + 1 for a prime q ≡ 3 (mod 4) (Paley I: 12, 20, 24, 32, 44, 48, 60, 72, ...),
//   2(q + 1) for a prime q ≡ 1 (mod 4) (Paley II: 12, 28, 36, 60, 76, ...). Our own constructions, so
//   the matrices differ from QuaRot's tables but have the same property.
// random_hadamard(n, seed): diag(±1, seeded) · H / √n — orthogonal; falls back to
//   random_orthogonal(n, seed) (QR of a seeded Gaussian matrix, sign-fixed) when no order fits (e.g. 9).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace dptq {

// Base order m (n = 2^k · m) used for n, or 0 when we cannot construct a Hadamard matrix of order n.
int64_t hadamard_base_order(int64_t n);
bool hadamard_exists(int64_t n);
at::Tensor hadamard_matrix(int64_t n);                  // [n, n] float64, entries ±1; throws if none
at::Tensor random_orthogonal(int64_t n, uint64_t seed);  // [n, n] float64
at::Tensor random_hadamard(int64_t n, uint64_t seed);    // [n, n] float64, orthogonal

}  // namespace dptq

// Hadamard constructions and random rotations (core/include/dptq/rotation.hpp).
#include "dptq/rotation.hpp"

#include <ATen/ATen.h>

#include "dptq/error.hpp"
#include "test_util.hpp"

TEST_CASE("Hadamard matrices: ±1 entries and H Hᵀ = n I for every size the default model needs") {
  // 576 = hidden, 1536 = MLP width, 64 = head_dim; 12, 20, 28, 36, 44, 60 are base (Paley) orders.
  for (int64_t n : {1, 2, 12, 20, 28, 36, 44, 60, 64, 72, 576, 1536}) {
    INFO("order " << n);
    REQUIRE(dptq::hadamard_exists(n));
    const at::Tensor H = dptq::hadamard_matrix(n);
    REQUIRE(H.size(0) == n);
    CHECK(H.abs().eq(1.0).all().item<bool>());
    CHECK(at::allclose(at::matmul(H, H.t()), n * at::eye(n, at::kDouble)));
  }
  CHECK(dptq::hadamard_base_order(576) == 36);  // 576 = 36 · 16 (Paley II, q = 17)
  CHECK(dptq::hadamard_base_order(1536) == 12);  // 1536 = 12 · 128
  CHECK_FALSE(dptq::hadamard_exists(9));          // 9 query heads: no Hadamard matrix
  CHECK_FALSE(dptq::hadamard_exists(6));
  CHECK_THROWS_AS(dptq::hadamard_matrix(9), dptq::Error);
}

TEST_CASE("random rotations are orthogonal, seeded, and fall back when no Hadamard exists") {
  for (int64_t n : {9, 64, 576}) {
    INFO("order " << n);
    const at::Tensor R = dptq::random_hadamard(n, 7);
    CHECK(at::allclose(at::matmul(R, R.t()), at::eye(n, at::kDouble), 1e-9, 1e-9));
    CHECK(at::equal(R, dptq::random_hadamard(n, 7)));
    CHECK_FALSE(at::equal(R, dptq::random_hadamard(n, 8)));
  }
  // Contiguous, so kron / view work on it (QR returns a column-major Q).
  CHECK(dptq::random_orthogonal(9, 2).is_contiguous());
  CHECK(at::kron(dptq::random_hadamard(9, 2), dptq::random_hadamard(4, 3)).size(0) == 36);
  // A Hadamard rotation has entries ±1/√n; the fallback for 9 does not.
  CHECK(at::allclose(dptq::random_hadamard(64, 1).abs(), at::full({64, 64}, 1.0 / 8.0, at::kDouble)));
  CHECK_FALSE(at::allclose(dptq::random_hadamard(9, 1).abs(), at::full({9, 9}, 1.0 / 3.0, at::kDouble)));
  // Rotating spreads a one-hot outlier evenly over all channels (why QuaRot helps 4-bit activations).
  at::Tensor x = at::zeros({576}, at::kDouble);
  x[5] = 1000.0;
  const at::Tensor y = at::matmul(x, dptq::random_hadamard(576, 3));
  CHECK(y.abs().max().item<double>() == doctest::Approx(1000.0 / 24.0));
}

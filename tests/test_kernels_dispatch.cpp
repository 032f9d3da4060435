// The core's device dispatch (dptq/device_ops.hpp): CPU tensors take the CPU reference (checked
// here against the core's quantizer and the dense rotation), CUDA tensors the kernels (checked on
// a GPU against the CPU path bit for bit, over dtypes, odd shapes and non-contiguous views).
#include <cmath>

#include "dptq/device_ops.hpp"
#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/quant.hpp"
#include "dptq/rotation.hpp"
#include "kernel_test_util.hpp"

namespace ops = dptq::device_ops;

TEST_CASE("device_ops on CPU tensors: the CPU reference") {
  CHECK(ops::cuda_kernels_built());  // this suite is built only with the kernels
  at::manual_seed(3);
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor x = at::randn({7, 33}).to(dtype).t();  // non-contiguous [33, 7]
    for (const dptq::ActQuantConfig cfg : {dptq::ActQuantConfig{4, true, 0.9, 0}, dptq::ActQuantConfig{8, false, 1.0, 0}}) {
      const at::Tensor y = dptq::fake_quant(x, cfg);
      CHECK((y.scalar_type() == dtype));
      CHECK(y.sizes().vec() == x.sizes().vec());
      // against an independent implementation: the tensor-op codes of the integer engine's
      // device path, dequantized (scale · (code + offset)), rounded once to x's dtype
      const dptq::ActCodes a = dptq::quant_act_codes_on_device(x, cfg);
      const at::Tensor back = a.scale.unsqueeze(1) * (a.codes.to(at::kInt) + a.offset.unsqueeze(1)).to(at::kFloat);
      CHECK(at::equal(y, back.view(x.sizes()).to(dtype)));
    }
  }
  for (int64_t n : {1, 2, 12, 40, 576}) {
    CAPTURE(n);
    const at::Tensor x = at::randn({5, n});
    const at::Tensor sign = (at::randint(0, 2, {n}) * 2 - 1).to(at::kFloat);
    const double scale = 1.0 / std::sqrt(double(n));
    const at::Tensor y = ops::hadamard_rotate(x, sign, scale);
    const at::Tensor dense =
        at::matmul(x.to(at::kDouble) * sign.to(at::kDouble), dptq::hadamard_matrix(n)) * scale;
    CHECK(at::allclose(y.to(at::kDouble), dense, 1e-5, 1e-5));
  }
  CHECK_THROWS_AS(ops::hadamard_rotate(at::randn({2, 6}), at::Tensor(), 1.0), dptq::Error);  // no H_6
  CHECK_THROWS_AS(ops::hadamard_rotate(at::randn({2, 8}), at::ones({4}), 1.0), dptq::Error);
}

TEST_CASE("the engine's random Hadamard rotations are hadamard_rotate's transform") {
  // Rotation::apply sends CUDA tensors of kind random_hadamard to hadamard_rotate (the fwht
  // kernel): its CPU reference must be the same matrix as the factored GEMMs the CPU runs, for
  // every shape the default and synthetic models use (pure Sylvester, Paley bases, a > 1).
  for (int64_t n : {64, 576, 960, 1536, 2048}) {
    CAPTURE(n);
    const dptq::Rotation r = dptq::make_random_rotation(n, 7);
    REQUIRE(r.kind == "random_hadamard");
    const at::Tensor x = at::randn({6, n});
    const at::Tensor want = r.apply(x);
    const at::Tensor got = ops::hadamard_rotate(x, r.signs, r.scale);
    CHECK(at::allclose(got, want, 1e-5, 1e-5));
    // and a wrong sign vector is caught: the comparison can fail
    CHECK_FALSE(at::allclose(ops::hadamard_rotate(x, -r.signs, r.scale), want, 1e-5, 1e-5));
  }
}

TEST_CASE("dptq::fake_quant is the dispatching quantizer") {
  // CPU tensors: device_ops::fake_quant_on_device declines, the CPU reference runs.
  const at::Tensor x = at::randn({4, 40});
  at::Tensor y;
  CHECK_FALSE(ops::fake_quant_on_device(x, dptq::ActQuantConfig{4, true, 0.9, 0}, y));
  CHECK_FALSE(y.defined());
}

TEST_CASE("device_ops on CUDA tensors: the kernels equal the CPU path bit for bit" * doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  {  // the forward pass's entries: Rotation::apply and dptq::fake_quant on CUDA tensors
    const dptq::Rotation r = dptq::make_random_rotation(576, 5);
    const at::Tensor x = at::randn({9, 576});
    const at::Tensor want = r.apply(x);
    const at::Tensor got = r.to(at::kCUDA, at::kFloat).apply(x.cuda());
    CHECK(got.is_cuda());
    CHECK(at::allclose(got.cpu(), want, 1e-5, 1e-5));
    const dptq::ActQuantConfig cfg{4, true, 0.9, 0};
    CHECK(at::equal(dptq::fake_quant(x.cuda(), cfg).cpu(), dptq::fake_quant(x, cfg)));
  }
  at::manual_seed(4);
  for (auto dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
    for (int64_t cols : {1, 63, 576, 1536}) {
      CAPTURE(cols);
      const std::string dtype_name = c10::toString(dtype);
      CAPTURE(dtype_name);
      const at::Tensor base = (at::randn({cols, 9}) * 3).to(dtype);
      const at::Tensor x = base.t();  // non-contiguous [9, cols]
      for (const dptq::ActQuantConfig cfg :
           {dptq::ActQuantConfig{4, true, 0.9, 0}, dptq::ActQuantConfig{8, false, 1.0, 0},
            dptq::ActQuantConfig{4, true, 0.95, cols % 3 == 0 ? 3 : 1}}) {
        const at::Tensor want = dptq::fake_quant(x, cfg);
        const at::Tensor got = dptq::fake_quant(x.cuda(), cfg);
        CHECK(got.is_cuda());
        CHECK((got.scalar_type() == dtype));
        CHECK(at::equal(got.cpu(), want));
      }
      if (dptq::hadamard_base_order(cols) > 0) {
        const at::Tensor sign = (at::randint(0, 2, {cols}) * 2 - 1).to(at::kFloat);
        const at::Tensor want = ops::hadamard_rotate(x, sign, 1.0 / std::sqrt(double(cols)));
        const at::Tensor got = ops::hadamard_rotate(x.cuda(), sign, 1.0 / std::sqrt(double(cols)));
        CHECK(at::equal(got.cpu(), want));
      }
    }
  }
}

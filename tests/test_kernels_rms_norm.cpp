// CUDA RMSNorm vs the CPU reference (norm_math.hpp) on odd shapes, strided rows and in place.
#include <random>

#include "dptq/error.hpp"
#include "dptq/kernels/norm_math.hpp"
#include "dptq/kernels/rms_norm.cuh"
#include "kernel_test_util.hpp"

using dptq::test::DeviceBuffer;

using dptq::test::randn;

TEST_CASE("rms_norm_f32 rejects bad arguments before touching the GPU") {
  float dummy = 0;
  CHECK_THROWS_AS(dptq::cuda::rms_norm_f32(nullptr, 4, &dummy, &dummy, 4, 2, 4, 1e-5f, nullptr), dptq::Error);
  CHECK_THROWS_AS(dptq::cuda::rms_norm_f32(&dummy, 3, &dummy, &dummy + 100, 4, 2, 4, 1e-5f, nullptr), dptq::Error);
  CHECK_THROWS_AS(dptq::cuda::rms_norm_f32(&dummy, 4, &dummy, &dummy, 4, -1, 4, 1e-5f, nullptr), dptq::Error);
  CHECK_THROWS_AS(dptq::cuda::rms_norm_f32(&dummy, 4, &dummy, &dummy, 8, 2, 4, 1e-5f, nullptr), dptq::Error);
  CHECK_NOTHROW(dptq::cuda::rms_norm_f32(&dummy, 4, &dummy, &dummy, 4, 0, 4, 1e-5f, nullptr));  // empty: no-op
}

TEST_CASE("rms_norm_f32 matches the CPU reference" * doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  for (int64_t rows : {1, 3, 17}) {
    for (int64_t cols : {1, 7, 31, 33, 255, 257, 1000, 4099}) {
      for (int64_t pad : {0, 5}) {
        CAPTURE(rows);
        CAPTURE(cols);
        CAPTURE(pad);
        const int64_t ld = cols + pad;
        const auto x = randn(rows * ld, 1 + rows * cols, 3.0f);
        const auto gamma = randn(cols, 2, 1.0f);
        std::vector<float> ref(rows * ld, 0.0f);
        dptq::kmath::rms_norm_rows_ref(x.data(), ld, gamma.data(), ref.data(), ld, rows, cols, 1e-5f);

        DeviceBuffer<float> dx(x), dg(gamma), dy(std::vector<float>(rows * ld, 0.0f));
        dptq::cuda::rms_norm_f32(dx.get(), ld, dg.get(), dy.get(), ld, rows, cols, 1e-5f, nullptr);
        CHECK(dptq::test::normalized_error(dy.download(), ref) < 1e-6);

        dptq::cuda::rms_norm_f32(dx.get(), ld, dg.get(), dx.get(), ld, rows, cols, 1e-5f, nullptr);  // in place
        auto in_place = dx.download();
        for (int64_t r = 0; r < rows; ++r)  // padding untouched
          for (int64_t c = cols; c < ld; ++c) CHECK(in_place[r * ld + c] == x[r * ld + c]);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = cols; c < ld; ++c) in_place[r * ld + c] = 0.0f;
        CHECK(dptq::test::normalized_error(in_place, ref) < 1e-6);
      }
    }
  }
}

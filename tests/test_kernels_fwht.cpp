// CUDA fast Walsh–Hadamard transform vs its CPU reference (fwht_math.hpp): only ±1 products and
// adds in a fixed order, so fp32 results must agree bit for bit; fp16 / bf16 inputs are converted
// exactly to fp32 and the outputs rounded once, so they agree with the reference rounded the same
// way. Odd row counts, strided rows, in place, every base order the engine uses.
#include <cmath>
#include <random>

#include "dptq/error.hpp"
#include "dptq/kernels/fwht.cuh"
#include "dptq/kernels/fwht_math.hpp"
#include "kernel_test_util.hpp"

using dptq::test::DeviceBuffer;

TEST_CASE("fwht rejects bad arguments before touching the GPU") {
  float dummy[16] = {};
  auto call = [&](int64_t n, int64_t m, int64_t ld, const int8_t* base = nullptr) {
    dptq::cuda::FwhtParams p;
    p.n = n;
    p.m = m;
    p.base = base;
    dptq::cuda::fwht(dummy, ld, dummy, ld, 1, dptq::kmath::DType::F32, p, nullptr);
  };
  CHECK_THROWS_AS(call(12, 1, 12), dptq::Error);   // 12 is not a power of two times 1
  CHECK_THROWS_AS(call(24, 12, 24), dptq::Error);  // no base matrix for m = 12
  CHECK_THROWS_AS(call(16, 3, 16), dptq::Error);   // 3 does not divide 16
  CHECK_THROWS_AS(call(16, 1, 8), dptq::Error);    // stride below the row length
  try {
    call(16, 1, 8);
  } catch (const dptq::Error& e) {
    CHECK(e.kind() == dptq::ErrorKind::InvalidArgument);
    CHECK(std::string(e.what()).find("fwht: ") == 0);
  }
}

TEST_CASE("fwht matches the CPU reference bit for bit (fp32), odd shapes, strided and in place" * doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t n : {1, 2, 64, 576, 1536, 2560, 3072, 4096, 11008}) {
    const int64_t m = dptq::kmath::hadamard_base_order(n);
    REQUIRE(m > 0);
    std::vector<int8_t> base(static_cast<size_t>(m * m));
    REQUIRE(dptq::kmath::hadamard_base_fill(m, base.data()));
    for (int64_t rows : {1, 3, 37}) {
      for (bool with_sign : {false, true}) {
        CAPTURE(n);
        CAPTURE(rows);
        CAPTURE(with_sign);
        const int64_t ld = n + 5;
        std::vector<float> x(static_cast<size_t>(rows * ld)), sign(static_cast<size_t>(n));
        for (auto& v : x) v = nd(rng);
        for (auto& s : sign) s = rng() & 1 ? 1.0f : -1.0f;
        const float scale = 1.0f / std::sqrt(float(n));
        std::vector<float> ref(x.size(), 0.0f);
        dptq::kmath::fwht_rows_ref(x.data(), ld, ref.data(), ld, rows, n, base.data(), m,
                                   with_sign ? sign.data() : nullptr, scale);
        DeviceBuffer<float> dx(x), dy(std::vector<float>(x.size(), 0.0f)), ds(sign);
        DeviceBuffer<int8_t> db(base);
        dptq::cuda::FwhtParams p;
        p.n = n;
        p.m = m;
        p.base = m > 1 ? db.get() : nullptr;
        p.sign = with_sign ? ds.get() : nullptr;
        p.scale = scale;
        dptq::cuda::fwht(dx.get(), ld, dy.get(), ld, rows, dptq::kmath::DType::F32, p, nullptr);
        const auto y = dy.download();
        CHECK(dptq::test::normalized_error(y, ref) == 0.0);
        dptq::cuda::fwht(dx.get(), ld, dx.get(), ld, rows, dptq::kmath::DType::F32, p, nullptr);  // in place
        const auto in_place = dx.download();
        int64_t differ = 0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < n; ++c) differ += in_place[static_cast<size_t>(r * ld + c)] != ref[static_cast<size_t>(r * ld + c)];
        CHECK(differ == 0);
      }
    }
  }
}

TEST_CASE("fwht: fp16 / bf16 in and out equal the fp32 reference on the rounded input, rounded once" *
          doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  using dptq::kmath::DType;
  for (DType dtype : {DType::F16, DType::BF16}) {
    for (int64_t n : {2, 12, 40, 128, 2560, 4096}) {  // 2^k and the Paley orders 12, 20 (2560 = 20 · 2^7), 40
      const int64_t m = dptq::kmath::hadamard_base_order(n);
      REQUIRE(m > 0);
      std::vector<int8_t> base(static_cast<size_t>(m * m));
      REQUIRE(dptq::kmath::hadamard_base_fill(m, base.data()));
      for (int64_t rows : {1, 7}) {
        CAPTURE(dptq::kmath::dtype_name(dtype));
        CAPTURE(n);
        CAPTURE(rows);
        const int64_t ld = n + 3;
        const auto x = dptq::test::round_to_dtype(dptq::test::randn(static_cast<size_t>(rows * ld), uint32_t(n + rows)), dtype);
        const float scale = 1.0f / std::sqrt(float(n));
        std::vector<float> ref(x.size(), 0.0f);
        dptq::kmath::fwht_rows_ref(x.data(), ld, ref.data(), ld, rows, n, base.data(), m, nullptr, scale);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = n; c < ld; ++c) ref[static_cast<size_t>(r * ld + c)] = 0.0f;  // padding stays as written
        ref = dptq::test::round_to_dtype(ref, dtype);
        DeviceBuffer<uint8_t> dx(dptq::test::to_dtype_bytes(x, dtype));
        DeviceBuffer<uint8_t> dy(dptq::test::to_dtype_bytes(std::vector<float>(x.size(), 0.0f), dtype));
        DeviceBuffer<int8_t> db(base);
        dptq::cuda::FwhtParams p;
        p.n = n;
        p.m = m;
        p.base = m > 1 ? db.get() : nullptr;
        p.scale = scale;
        dptq::cuda::fwht(dx.get(), ld, dy.get(), ld, rows, dtype, p, nullptr);
        const auto y = dptq::test::from_dtype_bytes(dy.download(), dtype);
        CHECK(dptq::test::normalized_error(y, ref) == 0.0);
      }
    }
  }
}

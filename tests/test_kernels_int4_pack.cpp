// CUDA int4 pack / unpack vs the CPU reference (quant_math.hpp): exact equality, odd row lengths,
// strided rows, signed and unsigned codes.
#include <random>

#include "dptq/error.hpp"
#include "dptq/kernels/int4_pack.cuh"
#include "dptq/kernels/quant_math.hpp"
#include "kernel_test_util.hpp"

using dptq::test::DeviceBuffer;

TEST_CASE("pack_int4 / unpack_int4 reject bad arguments before touching the GPU") {
  int8_t c = 0;
  uint8_t p = 0;
  CHECK_THROWS_AS(dptq::cuda::pack_int4(&c, 3, &p, 1, 1, 3, nullptr), dptq::Error);   // ldp < 2
  CHECK_THROWS_AS(dptq::cuda::pack_int4(&c, 2, &p, 2, 1, 3, nullptr), dptq::Error);   // ldc < cols
  CHECK_THROWS_AS(dptq::cuda::unpack_int4(nullptr, 2, &c, 3, 1, 3, true, nullptr), dptq::Error);
  CHECK_NOTHROW(dptq::cuda::pack_int4(&c, 3, &p, 2, 0, 3, nullptr));
}

TEST_CASE("pack_int4 / unpack_int4 match the CPU reference" * doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  std::mt19937 rng(9);
  for (bool is_signed : {true, false}) {
    std::uniform_int_distribution<int> d(is_signed ? -8 : 0, is_signed ? 7 : 15);
    for (int64_t rows : {1, 3, 65}) {
      for (int64_t cols : {1, 2, 7, 128, 129, 4097}) {
        CAPTURE(is_signed);
        CAPTURE(rows);
        CAPTURE(cols);
        const int64_t ldc = cols + 1, pc = dptq::kmath::int4_packed_cols(cols), ldp = pc + 3;
        std::vector<int8_t> codes(rows * ldc, 0x33);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) codes[r * ldc + c] = static_cast<int8_t>(d(rng));
        std::vector<uint8_t> ref(rows * ldp, 0xab);
        dptq::kmath::pack_int4_rows_ref(codes.data(), ldc, ref.data(), ldp, rows, cols);

        DeviceBuffer<int8_t> dc(codes);
        DeviceBuffer<uint8_t> dp(std::vector<uint8_t>(rows * ldp, 0xab));
        dptq::cuda::pack_int4(dc.get(), ldc, dp.get(), ldp, rows, cols, nullptr);
        CHECK(dp.download() == ref);

        DeviceBuffer<int8_t> du(std::vector<int8_t>(rows * ldc, 0x33));
        dptq::cuda::unpack_int4(dp.get(), ldp, du.get(), ldc, rows, cols, is_signed, nullptr);
        CHECK(du.download() == codes);
      }
    }
  }
}

// CUDA quantization to stored codes (quant_pack per token, kv_quant per group, dequant_packed) vs
// the CPU reference (quant_pack_math.hpp): codes, scales and zeros bit for bit over fp32 / fp16 /
// bf16 inputs, bits 2..8, asym / sym, clip ratios, odd shapes and strided rows; the round trip
// equals the fake-quant kernel's output.
#include "dptq/error.hpp"
#include "dptq/kernels/act_quant.cuh"
#include "dptq/kernels/quant_pack.cuh"
#include "dptq/kernels/quant_pack_math.hpp"
#include "kernel_test_util.hpp"

using dptq::kmath::ActQuantConfig;
using dptq::kmath::DType;
using dptq::test::DeviceBuffer;

TEST_CASE("quant_pack / kv_quant / dequant_packed reject bad arguments before touching the GPU") {
  float x[8] = {};
  uint8_t codes[8] = {};
  float s[8] = {};
  auto pack = [&](const ActQuantConfig& cfg, int64_t cols, int64_t ldc) {
    dptq::cuda::quant_pack(x, 8, 1, cols, DType::F32, cfg, codes, ldc, s, s, nullptr);
  };
  CHECK_THROWS_AS(pack({1, false, 1.0f, 0}, 8, 8), dptq::Error);  // bits
  CHECK_THROWS_AS(pack({4, false, 1.0f, 3}, 8, 8), dptq::Error);  // group does not divide
  CHECK_THROWS_AS(pack({4, false, 1.0f, 1}, 8, 8), dptq::Error);  // odd packed group
  CHECK_THROWS_AS(pack({4, false, 1.0f, 0}, 8, 3), dptq::Error);  // 8 int4 codes need 4 bytes
  CHECK_THROWS_AS(pack({8, false, 1.0f, 0}, 8, 7), dptq::Error);  // 8 int8 codes need 8 bytes
  CHECK_THROWS_AS(dptq::cuda::quant_pack(x, 8, 1, 8, DType::F32, {4, false, 1.0f, 0}, nullptr, 4, s, s, nullptr),
                  dptq::Error);
  CHECK_THROWS_AS(dptq::cuda::kv_quant(x, 8, 1, 8, DType::F32, {4, false, 1.0f, 0}, codes, 4, s, s, nullptr),
                  dptq::Error);  // the KV cache is group-wise
  CHECK_THROWS_AS(dptq::cuda::dequant_packed(codes, 4, 1, 8, {4, false, 1.0f, 0}, s, nullptr, x, 8, DType::F32, nullptr),
                  dptq::Error);  // asymmetric needs zeros
  try {
    pack({4, false, 1.0f, 1}, 8, 8);
  } catch (const dptq::Error& e) {
    CHECK(e.kind() == dptq::ErrorKind::InvalidArgument);
    CHECK(std::string(e.what()).find("quant_pack: packed") == 0);
  }
}

TEST_CASE("quant_pack / kv_quant / dequant_packed match the CPU reference over dtypes x bits x odd shapes" *
          doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  int64_t cases = 0;
  for (DType dtype : dptq::test::all_dtypes()) {
    for (int bits : {2, 3, 4, 5, 6, 7, 8}) {
      for (bool sym : {false, true}) {
        for (int64_t rows : {1, 4, 23}) {
          for (int64_t cols : {1, 7, 64, 577, 1536}) {
            for (int64_t group : {int64_t{0}, int64_t{2}, int64_t{32}, int64_t{64}}) {
              if (group && cols % group) continue;
              const ActQuantConfig cfg{bits, sym, group ? 1.0f : (bits <= 4 ? 0.9f : 1.0f), group};
              CAPTURE(dptq::kmath::dtype_name(dtype));
              CAPTURE(bits);
              CAPTURE(sym);
              CAPTURE(rows);
              CAPTURE(cols);
              CAPTURE(group);
              const int64_t ldx = cols + 3, row_bytes = dptq::kmath::code_bytes_per_row(cols, bits), ldc = row_bytes + 5;
              auto x = dptq::test::round_to_dtype(
                  dptq::test::randn(static_cast<size_t>(rows * ldx), uint32_t(bits * 131 + cols * 7 + rows + group), 2.0f), dtype);
              if (rows > 1)
                for (int64_t c = 0; c < cols; ++c) x[static_cast<size_t>(ldx + c)] = 0.0f;  // a zero row
              if (rows > 2 && group)
                for (int64_t c = 0; c < group; ++c) x[static_cast<size_t>(2 * ldx + c)] = 0.25f;  // a constant group
              const int64_t groups = group ? cols / group : 1;
              std::vector<uint8_t> ref_codes(static_cast<size_t>(rows * ldc), 0xab);
              std::vector<float> ref_s(static_cast<size_t>(rows * groups)), ref_z(static_cast<size_t>(rows * groups));
              dptq::kmath::quant_pack_rows_ref(x.data(), ldx, rows, cols, cfg, ref_codes.data(), ldc, ref_s.data(),
                                               ref_z.data());
              DeviceBuffer<uint8_t> dx(dptq::test::to_dtype_bytes(x, dtype));
              DeviceBuffer<uint8_t> dc(std::vector<uint8_t>(ref_codes.size(), 0xab));
              DeviceBuffer<float> ds(ref_s.size()), dz(ref_z.size());
              if (group)
                dptq::cuda::kv_quant(dx.get(), ldx, rows, cols, dtype, cfg, dc.get(), ldc, ds.get(), dz.get(), nullptr);
              else
                dptq::cuda::quant_pack(dx.get(), ldx, rows, cols, dtype, cfg, dc.get(), ldc, ds.get(), dz.get(),
                                       nullptr);
              const auto codes = dc.download();
              int64_t differ = 0;
              for (size_t i = 0; i < codes.size(); ++i) differ += codes[i] != ref_codes[i];  // padding included
              CHECK(differ == 0);
              CHECK(ds.download() == ref_s);
              CHECK(dz.download() == ref_z);

              // Round trip: dequant_packed of the codes equals the fake-quant kernel's output.
              DeviceBuffer<uint8_t> dback(dptq::test::to_dtype_bytes(std::vector<float>(x.size(), 0.0f), dtype));
              DeviceBuffer<uint8_t> dfake(dptq::test::to_dtype_bytes(std::vector<float>(x.size(), 0.0f), dtype));
              dptq::cuda::dequant_packed(dc.get(), ldc, rows, cols, cfg, ds.get(), sym ? nullptr : dz.get(), dback.get(),
                                         ldx, dtype, nullptr);
              dptq::cuda::act_fake_quant(dx.get(), ldx, dfake.get(), ldx, rows, cols, dtype, cfg, nullptr, 0, nullptr,
                                         nullptr, nullptr);
              const auto back = dptq::test::from_dtype_bytes(dback.download(), dtype);
              const auto fake = dptq::test::from_dtype_bytes(dfake.download(), dtype);
              CHECK(dptq::test::normalized_error(back, fake) == 0.0);
              std::vector<float> ref_back(x.size(), 0.0f);
              dptq::kmath::dequant_packed_rows_ref(ref_codes.data(), ldc, rows, cols, cfg, ref_s.data(), ref_z.data(),
                                                   ref_back.data(), ldx);
              CHECK(dptq::test::normalized_error(back, dptq::test::round_to_dtype(ref_back, dtype)) == 0.0);
              ++cases;
            }
          }
        }
      }
    }
  }
  MESSAGE(cases << " configurations");
}

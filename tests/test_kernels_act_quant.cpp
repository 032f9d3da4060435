// CUDA activation fake quantization vs the CPU reference (quant_math.hpp): the arithmetic is shared
// and fp32 throughout, so the results must agree bit for bit (normalized error exactly 0).
#include <random>

#include "dptq/error.hpp"
#include "dptq/kernels/act_quant.cuh"
#include "dptq/kernels/quant_math.hpp"
#include "kernel_test_util.hpp"

using dptq::kmath::ActQuantConfig;
using dptq::test::DeviceBuffer;

TEST_CASE("act_fake_quant_f32 rejects bad arguments before touching the GPU") {
  float dummy = 0;
  int8_t code = 0;
  auto call = [&](const ActQuantConfig& cfg, int64_t cols, int8_t* codes = nullptr) {
    dptq::cuda::act_fake_quant_f32(&dummy, cols, &dummy, cols, 1, cols, cfg, codes, cols, nullptr, nullptr, nullptr);
  };
  CHECK_THROWS_AS(call({1, false, 1.0f, 0}, 8), dptq::Error);
  CHECK_THROWS_AS(call({4, false, 1.5f, 0}, 8), dptq::Error);
  CHECK_THROWS_AS(call({4, false, 1.0f, 3}, 8), dptq::Error);
  CHECK_THROWS_AS(call({8, false, 1.0f, 0}, 8, &code), dptq::Error);  // asym 8-bit codes do not fit int8
  try {
    call({4, false, 1.0f, 3}, 8);
  } catch (const dptq::Error& e) {
    CHECK(e.kind() == dptq::ErrorKind::InvalidArgument);
    CHECK(std::string(e.what()).find("act_fake_quant_f32: group_size") == 0);
  }
}

TEST_CASE("act_fake_quant_f32 matches the CPU reference bit for bit" * doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const std::vector<ActQuantConfig> configs = {{4, false, 0.9f, 0}, {8, false, 1.0f, 0}, {4, true, 1.0f, 0},
                                               {8, true, 0.9f, 0},  {4, false, 0.95f, 0}, {3, false, 0.8f, 0}};
  for (const ActQuantConfig& base : configs) {
    for (int64_t rows : {1, 5, 33}) {
      for (int64_t cols : {1, 7, 64, 100, 257, 576, 4099}) {
        for (int64_t group : {int64_t{0}, int64_t{32}, int64_t{64}}) {
          if (group && cols % group) continue;
          ActQuantConfig cfg = base;
          cfg.group_size = group;
          CAPTURE(cfg.bits);
          CAPTURE(cfg.sym);
          CAPTURE(cfg.clip_ratio);
          CAPTURE(group);
          CAPTURE(rows);
          CAPTURE(cols);
          const int64_t ld = cols + 3;
          std::vector<float> x(rows * ld);
          for (auto& v : x) v = nd(rng);
          if (rows > 1)
            for (int64_t c = 0; c < cols; ++c) x[ld + c] = 0.0f;  // a zero row
          if (cols > 4) x[2] = 300.0f;                           // an outlier
          const int64_t groups = group ? cols / group : 1;
          const bool want_codes = cfg.sym || cfg.bits <= 7;
          std::vector<float> ref(rows * ld, 0.0f), ref_scales(rows * groups), ref_zeros(rows * groups);
          std::vector<int8_t> ref_codes(rows * ld, 0);
          dptq::kmath::act_fake_quant_rows_ref(x.data(), ld, ref.data(), ld, rows, cols, cfg,
                                               want_codes ? ref_codes.data() : nullptr, ld, ref_scales.data(),
                                               ref_zeros.data());

          DeviceBuffer<float> dx(x), dy(std::vector<float>(rows * ld, 0.0f));
          DeviceBuffer<float> ds(rows * groups), dz(rows * groups);
          DeviceBuffer<int8_t> dc(std::vector<int8_t>(rows * ld, 0));
          dptq::cuda::act_fake_quant_f32(dx.get(), ld, dy.get(), ld, rows, cols, cfg, want_codes ? dc.get() : nullptr,
                                         ld, ds.get(), dz.get(), nullptr);
          const auto y = dy.download();
          CHECK(dptq::test::normalized_error(y, ref) == 0.0);
          CHECK(y == ref);
          CHECK(ds.download() == ref_scales);
          CHECK(dz.download() == ref_zeros);
          if (want_codes) CHECK(dc.download() == ref_codes);

          dptq::cuda::act_fake_quant_f32(dx.get(), ld, dx.get(), ld, rows, cols, cfg, nullptr, 0, nullptr, nullptr,
                                         nullptr);  // in place
          auto in_place = dx.download();
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < ld; ++c)
              CHECK(in_place[r * ld + c] == (c < cols ? ref[r * ld + c] : x[r * ld + c]));
        }
      }
    }
  }
}

TEST_CASE("act_fake_quant rejects an unknown dtype") {
  float dummy = 0;
  CHECK_THROWS_AS(dptq::cuda::act_fake_quant(&dummy, 1, &dummy, 1, 1, 1, static_cast<dptq::kmath::DType>(7),
                                             ActQuantConfig{}, nullptr, 0, nullptr, nullptr, nullptr),
                  dptq::Error);
}

TEST_CASE("act_fake_quant: fp32 / fp16 / bf16 x bits 2..8 x asym / sym x clip, odd shapes, strided rows" *
          doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  // fp16 / bf16 are read exactly into fp32 and the output rounded once, so the kernel equals the
  // reference run on the rounded input, its output rounded the same way: normalized error 0.
  using dptq::kmath::DType;
  int64_t cases = 0;
  for (DType dtype : dptq::test::all_dtypes()) {
    for (int bits = 2; bits <= 8; ++bits) {
      for (bool sym : {false, true}) {
        for (float clip : {1.0f, 0.9f}) {
          for (int64_t rows : {1, 3, 19}) {
            for (int64_t cols : {1, 31, 576, 1000}) {
              for (int64_t group : {int64_t{0}, int64_t{8}, int64_t{125}}) {
                if (group && cols % group) continue;
                const ActQuantConfig cfg{bits, sym, clip, group};
                CAPTURE(dptq::kmath::dtype_name(dtype));
                CAPTURE(bits);
                CAPTURE(sym);
                CAPTURE(clip);
                CAPTURE(rows);
                CAPTURE(cols);
                CAPTURE(group);
                const int64_t ld = cols + 5;
                auto x = dptq::test::round_to_dtype(
                    dptq::test::randn(static_cast<size_t>(rows * ld), uint32_t(bits * 7919 + cols * 31 + rows), 1.5f), dtype);
                if (cols > 3) x[1] = dptq::test::round_to_dtype({-40.0f}, dtype)[0];  // an outlier, clipped
                const int64_t groups = group ? cols / group : 1;
                std::vector<float> ref(x.size(), 0.0f), ref_s(static_cast<size_t>(rows * groups)), ref_z(static_cast<size_t>(rows * groups));
                dptq::kmath::act_fake_quant_rows_ref(x.data(), ld, ref.data(), ld, rows, cols, cfg, nullptr, 0,
                                                     ref_s.data(), ref_z.data());
                for (int64_t r = 0; r < rows; ++r)  // the padding keeps x (the kernel must not touch it)
                  for (int64_t c = cols; c < ld; ++c) ref[static_cast<size_t>(r * ld + c)] = -7.0f;
                ref = dptq::test::round_to_dtype(ref, dtype);
                DeviceBuffer<uint8_t> dx(dptq::test::to_dtype_bytes(x, dtype));
                DeviceBuffer<uint8_t> dy(dptq::test::to_dtype_bytes(std::vector<float>(x.size(), -7.0f), dtype));
                DeviceBuffer<float> ds(ref_s.size()), dz(ref_z.size());
                dptq::cuda::act_fake_quant(dx.get(), ld, dy.get(), ld, rows, cols, dtype, cfg, nullptr, 0, ds.get(),
                                           dz.get(), nullptr);
                const auto y = dptq::test::from_dtype_bytes(dy.download(), dtype);
                REQUIRE(int64_t(y.size()) == rows * ld);
                CHECK(dptq::test::normalized_error(y, ref) == 0.0);
                CHECK(ds.download() == ref_s);
                CHECK(dz.download() == ref_z);
                ++cases;
              }
            }
          }
        }
      }
    }
  }
  MESSAGE(cases << " configurations");
}

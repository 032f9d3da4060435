// CPU tests of the __host__ __device__ math headers under kernels/include/dptq/kernels/ (the same
// code the CUDA kernels run). No CUDA needed. tests/golden/act_quant_quarot.json was made with
// torch by tools/golden/make_act_quant_golden.py following QuaRot's ActQuantizer.
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <vector>

#include "dptq/kernels/norm_math.hpp"
#include "dptq/kernels/quant_math.hpp"
#include "test_util.hpp"

using namespace dptq::kmath;

using dptq::test::randn;

namespace {

std::vector<float> fake_quant(const std::vector<float>& x, const ActQuantConfig& cfg, std::vector<int8_t>* codes = nullptr,
                              std::vector<float>* scales = nullptr, std::vector<float>* zeros = nullptr) {
  const int64_t cols = static_cast<int64_t>(x.size());
  REQUIRE(validate_act_quant(cfg, cols) == nullptr);
  std::vector<float> y(x.size());
  const int64_t groups = cfg.group_size ? cols / cfg.group_size : 1;
  if (codes) codes->assign(x.size(), 0);
  if (scales) scales->assign(groups, 0);
  if (zeros) zeros->assign(groups, 0);
  act_fake_quant_rows_ref(x.data(), cols, y.data(), cols, 1, cols, cfg, codes ? codes->data() : nullptr, cols,
                          scales ? scales->data() : nullptr, zeros ? zeros->data() : nullptr);
  return y;
}


}  // namespace

TEST_CASE("code ranges and rounding") {
  for (int b = 2; b <= 8; ++b) {
    CHECK(quant_maxq(b, false) == (1 << b) - 1);
    CHECK(quant_minq(b, false) == 0);
    CHECK(quant_maxq(b, true) == (1 << (b - 1)) - 1);
    CHECK(quant_minq(b, true) == -(1 << (b - 1)));
  }
  // torch.round: ties to even.
  CHECK(round_half_even(0.5f) == 0.0f);
  CHECK(round_half_even(1.5f) == 2.0f);
  CHECK(round_half_even(2.5f) == 2.0f);
  CHECK(round_half_even(-1.5f) == -2.0f);
  CHECK(round_half_even(-2.5f) == -2.0f);
  CHECK(round_half_even(2.4999998f) == 2.0f);

  CHECK(validate_act_quant({4, false, 0.9f, 0}, 7) == nullptr);
  CHECK(validate_act_quant({1, false, 1.0f, 0}, 7) != nullptr);
  CHECK(validate_act_quant({9, false, 1.0f, 0}, 7) != nullptr);
  CHECK(validate_act_quant({4, false, 0.0f, 0}, 7) != nullptr);
  CHECK(validate_act_quant({4, false, 1.01f, 0}, 7) != nullptr);
  CHECK(validate_act_quant({4, false, NAN, 0}, 7) != nullptr);
  CHECK(validate_act_quant({4, false, 1.0f, 3}, 7) != nullptr);
  CHECK(validate_act_quant({4, false, 1.0f, 7}, 14) == nullptr);
}

TEST_CASE("asymmetric per-token: scale, zero point, levels") {
  // Hand-computed: min -1, max 2 -> scale 3/15 = 0.2, zero = round(5) = 5.
  const QuantParams p = act_quant_params(-1.0f, 2.0f, 4, false, 1.0f, true);
  CHECK(p.scale == doctest::Approx(0.2f).epsilon(1e-7));
  CHECK(p.zero == 5.0f);
  CHECK(quant_code(2.0f, p, 4, false) == 15);
  CHECK(quant_code(-1.0f, p, 4, false) == 0);
  CHECK(quant_code(0.0f, p, 4, false) == 5);
  CHECK(dequant(5, p) == 0.0f);  // zero is exactly representable

  for (int bits : {4, 8}) {
    for (float clip : {1.0f, 0.9f}) {
      CAPTURE(bits);
      CAPTURE(clip);
      const auto x = randn(333, 11 + bits);
      std::vector<int8_t> codes;
      std::vector<float> scales, zeros;
      const ActQuantConfig cfg{bits, false, clip, 0};
      const auto y = fake_quant(x, cfg, bits <= 7 ? &codes : nullptr, &scales, &zeros);
      const float vmin = *std::min_element(x.begin(), x.end());
      const float vmax = *std::max_element(x.begin(), x.end());
      const float scale = scales[0], zero = zeros[0];
      CHECK(scale == (vmax * clip - vmin * clip) / static_cast<float>((1 << bits) - 1));
      CHECK(zero >= 0.0f);
      CHECK(zero <= static_cast<float>((1 << bits) - 1));
      std::set<float> levels(y.begin(), y.end());
      CHECK(levels.size() <= static_cast<size_t>(1 << bits));
      for (size_t i = 0; i < x.size(); ++i) {
        // Every output is on the grid scale * (k - zero).
        const float k = y[i] / scale + zero;
        CHECK(std::fabs(k - std::round(k)) < 1e-3f);
        // Inside the clipped range the error is at most half a step; outside it saturates.
        if (x[i] >= vmin * clip && x[i] <= vmax * clip) CHECK(std::fabs(y[i] - x[i]) <= 0.5001f * scale);
        if (!codes.empty()) CHECK(y[i] == dequant(codes[i], {scale, zero}));
      }
      if (clip < 1.0f) {
        const auto imax = std::max_element(x.begin(), x.end()) - x.begin();
        CHECK(y[imax] < x[imax]);  // clipped
        CHECK(y[imax] == dequant((1 << bits) - 1, {scale, zero}));
      }
    }
  }
}

TEST_CASE("per-token range always contains zero (QuaRot find_params)") {
  // All positive: xmin becomes 0, so zero point 0 and the grid starts at 0.
  std::vector<float> pos = {0.5f, 1.0f, 2.0f, 3.0f};
  std::vector<float> scales, zeros;
  auto y = fake_quant(pos, {4, false, 1.0f, 0}, nullptr, &scales, &zeros);
  CHECK(zeros[0] == 0.0f);
  CHECK(scales[0] == 3.0f / 15.0f);
  // All negative: xmax becomes 0, zero point at the top.
  std::vector<float> neg = {-0.5f, -1.0f, -2.0f, -3.0f};
  y = fake_quant(neg, {4, false, 1.0f, 0}, nullptr, &scales, &zeros);
  CHECK(zeros[0] == 15.0f);
  CHECK(y[3] == doctest::Approx(-3.0f).epsilon(1e-6));  // 0.2f * (0 - 15)
}

TEST_CASE("zero-range rows and groups") {
  const std::vector<float> z(10, 0.0f);
  std::vector<float> scales, zeros;
  // Asymmetric: [-1, 1] -> scale 2/15 = 0.13333334f, zero = round(1 / 0.13333334f = 7.4999996f) = 7
  // (fp32, as in torch); the output is exactly 0.
  auto y = fake_quant(z, {4, false, 1.0f, 0}, nullptr, &scales, &zeros);
  CHECK(scales[0] == 2.0f / 15.0f);
  CHECK(zeros[0] == 7.0f);
  for (float v : y) CHECK(v == 0.0f);
  // Symmetric: scale 1, output exactly 0.
  y = fake_quant(z, {4, true, 1.0f, 0}, nullptr, &scales, &zeros);
  CHECK(scales[0] == 1.0f);
  CHECK(zeros[0] == 0.0f);
  for (float v : y) CHECK(v == 0.0f);
  // Groupwise: a zero group uses the same substitution; a constant non-zero group widens to 0
  // (QuaRot would produce NaN) and is represented within a rounding of the value.
  std::vector<float> g = {0, 0, 0, 0, 3, 3, 3, 3, -2, -2, -2, -2};
  y = fake_quant(g, {4, false, 1.0f, 4}, nullptr, &scales, &zeros);
  for (int i = 0; i < 4; ++i) CHECK(y[i] == 0.0f);
  for (int i = 4; i < 8; ++i) CHECK(y[i] == doctest::Approx(3.0f).epsilon(1e-6));
  for (int i = 8; i < 12; ++i) CHECK(y[i] == doctest::Approx(-2.0f).epsilon(1e-6));
  for (float v : y) CHECK(std::isfinite(v));
}

TEST_CASE("expected behaviour of the zero-range scale under clipping") {
  // QuaRot: xmin = min(min, 0) * clip = 0, xmax = 0 -> both zero -> replaced by [-1, 1] regardless
  // of clip. So the scale of an all-zero row is 2 / (2^b - 1) for every clip ratio.
  std::vector<float> scales, zeros;
  fake_quant(std::vector<float>(5, 0.0f), {4, false, 0.9f, 0}, nullptr, &scales, &zeros);
  CHECK(scales[0] == 2.0f / 15.0f);
  CHECK(zeros[0] == 7.0f);
}

TEST_CASE("symmetric per-token") {
  const auto x = randn(101, 5, 3.0f);
  std::vector<int8_t> codes;
  std::vector<float> scales, zeros;
  const auto y = fake_quant(x, {4, true, 1.0f, 0}, &codes, &scales, &zeros);
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  CHECK(scales[0] == amax / 7.0f);
  CHECK(zeros[0] == 0.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    CHECK(codes[i] >= -8);
    CHECK(codes[i] <= 7);
    CHECK(y[i] == scales[0] * codes[i]);
  }
  // The absmax element maps to +-7 (never -8: the scale is absmax / 7).
  const auto imax = std::max_element(x.begin(), x.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); }) -
                    x.begin();
  CHECK(std::abs(codes[imax]) == 7);
}

TEST_CASE("scale equivariance (the premise of HSNR without RMS normalization)") {
  const auto x = randn(64, 9);
  for (bool sym : {false, true}) {
    const ActQuantConfig cfg{4, sym, 0.9f, 0};
    const auto y = fake_quant(x, cfg);
    std::vector<float> x8(x);
    for (auto& v : x8) v *= 8.0f;
    const auto y8 = fake_quant(x8, cfg);
    for (size_t i = 0; i < x.size(); ++i) CHECK(y8[i] == 8.0f * y[i]);
  }
}

TEST_CASE("bit-exact against QuaRot's formulas in torch (tests/golden/act_quant_quarot.json)") {
  std::ifstream in(dptq::test::tests_dir() / "golden" / "act_quant_quarot.json");
  REQUIRE(in.good());
  const auto golden = nlohmann::json::parse(in);
  const auto x = golden.at("x").get<std::vector<std::vector<float>>>();
  const int64_t rows = static_cast<int64_t>(x.size()), cols = golden.at("cols").get<int64_t>();
  std::vector<float> flat;
  for (const auto& r : x) flat.insert(flat.end(), r.begin(), r.end());
  int compared = 0;
  for (const auto& c : golden.at("cases")) {
    const ActQuantConfig cfg{c.at("bits").get<int>(), c.at("sym").get<bool>(), c.at("clip_ratio").get<float>(),
                             c.at("group_size").get<int64_t>()};
    CAPTURE(cfg.bits);
    CAPTURE(cfg.sym);
    CAPTURE(cfg.clip_ratio);
    CAPTURE(cfg.group_size);
    REQUIRE(validate_act_quant(cfg, cols) == nullptr);
    const int64_t groups = cfg.group_size ? cols / cfg.group_size : 1;
    std::vector<float> y(flat.size()), scales(rows * groups), zeros(rows * groups);
    act_fake_quant_rows_ref(flat.data(), cols, y.data(), cols, rows, cols, cfg, nullptr, 0, scales.data(), zeros.data());
    const auto gy = c.at("y").get<std::vector<std::vector<float>>>();
    const auto gs = c.at("scales").get<std::vector<float>>();
    const auto gz = c.at("zeros").get<std::vector<float>>();
    REQUIRE(gs.size() == scales.size());
    for (size_t i = 0; i < gs.size(); ++i) {
      CHECK(scales[i] == gs[i]);
      CHECK(zeros[i] == gz[i]);
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k) {
        CAPTURE(r);
        CAPTURE(k);
        CHECK(y[r * cols + k] == gy[r][k]);
        ++compared;
      }
  }
  CHECK(compared > 1000);
}

TEST_CASE("strided rows, in place, codes output") {
  const int64_t rows = 5, cols = 13, ld = 16;
  auto buf = randn(rows * ld, 3);
  std::vector<float> ref(rows * cols);
  const ActQuantConfig cfg{4, false, 0.9f, 0};
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> row(buf.begin() + r * ld, buf.begin() + r * ld + cols);
    auto y = fake_quant(row, cfg);
    std::copy(y.begin(), y.end(), ref.begin() + r * cols);
  }
  const float sentinel = buf[cols];  // padding between rows must stay untouched
  act_fake_quant_rows_ref(buf.data(), ld, buf.data(), ld, rows, cols, cfg);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) CHECK(buf[r * ld + c] == ref[r * cols + c]);
  CHECK(buf[cols] == sentinel);
}

TEST_CASE("int4 pack / unpack") {
  CHECK(pack_nibbles(1, 2) == 0x21);
  CHECK(pack_nibbles(-1, -8) == 0x8f);
  CHECK(pack_nibbles(15, 0) == 0x0f);
  CHECK(unpack_lo(0x8f, true) == -1);
  CHECK(unpack_hi(0x8f, true) == -8);
  CHECK(unpack_lo(0x8f, false) == 15);
  CHECK(unpack_hi(0x8f, false) == 8);
  CHECK(unpack_hi(0x7f, true) == 7);
  CHECK(int4_packed_cols(1) == 1);
  CHECK(int4_packed_cols(7) == 4);
  CHECK(int4_packed_cols(8) == 4);

  std::mt19937 rng(42);
  for (bool is_signed : {true, false}) {
    for (int64_t cols : {1, 2, 7, 64, 129}) {
      CAPTURE(is_signed);
      CAPTURE(cols);
      const int64_t rows = 3, ldc = cols + 3, ldp = int4_packed_cols(cols) + 2;
      std::vector<int8_t> codes(rows * ldc, 0x55);
      std::uniform_int_distribution<int> d(is_signed ? -8 : 0, is_signed ? 7 : 15);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) codes[r * ldc + c] = static_cast<int8_t>(d(rng));
      std::vector<uint8_t> packed(rows * ldp, 0xee);
      pack_int4_rows_ref(codes.data(), ldc, packed.data(), ldp, rows, cols);
      for (int64_t r = 0; r < rows; ++r) {
        CHECK(packed[r * ldp + int4_packed_cols(cols)] == 0xee);  // stride padding untouched
        if (cols % 2) CHECK((packed[r * ldp + cols / 2] >> 4) == 0);  // odd tail: zero high nibble
        // QuaRot's pack_i4 layout: element 2j low nibble, 2j+1 high nibble.
        CHECK((packed[r * ldp] & 0xf) == (codes[r * ldc] & 0xf));
      }
      std::vector<int8_t> back(rows * ldc, 0x55);
      unpack_int4_rows_ref(packed.data(), ldp, back.data(), ldc, rows, cols, is_signed);
      CHECK(back == codes);  // padding (0x55) untouched too
    }
  }
  // Codes from the 4-bit quantizer pack without loss.
  const auto x = randn(31, 8);
  std::vector<int8_t> codes;
  fake_quant(x, {4, false, 0.9f, 0}, &codes);
  std::vector<uint8_t> packed(int4_packed_cols(31));
  pack_int4_rows_ref(codes.data(), 31, packed.data(), 16, 1, 31);
  std::vector<int8_t> back(31);
  unpack_int4_rows_ref(packed.data(), 16, back.data(), 31, 1, 31, false);
  CHECK(back == codes);
}

TEST_CASE("RMSNorm reference") {
  const float x[2] = {3.0f, 4.0f}, gamma[2] = {1.0f, 2.0f};
  float y[2];
  rms_norm_rows_ref(x, 2, gamma, y, 2, 1, 2, 0.0f);
  const float rms = std::sqrt(12.5f);
  CHECK(y[0] == doctest::Approx(3.0f / rms).epsilon(1e-7));
  CHECK(y[1] == doctest::Approx(8.0f / rms).epsilon(1e-7));
  CHECK(rms_inv(25.0f, 2, 0.0f) == doctest::Approx(1.0f / rms).epsilon(1e-7));
  CHECK(rms_inv(0.0f, 4, 1e-6f) == doctest::Approx(1000.0f).epsilon(1e-6));

  // Strided rows, eps, against the formula in double.
  const int64_t rows = 4, cols = 37, ld = 40;
  auto xs = randn(rows * ld, 77, 5.0f);
  auto g = randn(cols, 78);
  std::vector<float> ys(rows * ld, -7.0f);
  rms_norm_rows_ref(xs.data(), ld, g.data(), ys.data(), ld, rows, cols, 1e-5f);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < cols; ++c) ss += double(xs[r * ld + c]) * xs[r * ld + c];
    const double inv = 1.0 / std::sqrt(ss / cols + 1e-5);
    for (int64_t c = 0; c < cols; ++c) CHECK(ys[r * ld + c] == doctest::Approx(xs[r * ld + c] * inv * g[c]).epsilon(1e-6));
    CHECK(ys[r * ld + cols] == -7.0f);
  }
}

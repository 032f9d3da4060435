// CPU tests of the __host__ __device__ arithmetic of the newer kernels (fwht_math.hpp,
// stats_math.hpp, quant_pack_math.hpp, gemm_math.hpp): the code the CUDA kernels run, checked
// here against independent computations (dense torch products, the core's Hadamard construction,
// sorting, two-pass moments, the fake-quant reference) on odd sizes. No CUDA needed.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "dptq/histogram.hpp"
#include "dptq/kernels/fwht_math.hpp"
#include "dptq/kernels/gemm_math.hpp"
#include "dptq/kernels/quant_math.hpp"
#include "dptq/kernels/quant_pack_math.hpp"
#include "dptq/kernels/stats_math.hpp"
#include "dptq/rotation.hpp"
#include "test_util.hpp"

using namespace dptq::kmath;
using dptq::test::randn;

namespace {

double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

std::vector<int8_t> base_of(int64_t m) {
  std::vector<int8_t> b(static_cast<size_t>(m * m));
  REQUIRE(hadamard_base_fill(m, b.data()));
  return b;
}

}  // namespace

TEST_CASE("Hadamard base orders and matrices equal the core's construction") {
  for (int64_t n = 1; n <= 3000; ++n) {
    CAPTURE(n);
    REQUIRE(hadamard_base_order(n) == dptq::hadamard_base_order(n));
  }
  // Every base order up to 200 (Paley I and II), and the engine's sizes: hidden 576 = 36·16,
  // intermediate 1536 = 12·128, head_dim 64, 28672 = 28·1024.
  CHECK(hadamard_base_order(576) == 36);
  CHECK(hadamard_base_order(1536) == 12);
  CHECK(hadamard_base_order(64) == 1);
  CHECK(hadamard_base_order(28672) == 28);
  CHECK(hadamard_base_order(9) == 0);
  CHECK(hadamard_base_order(52) == 0);  // 52 = 4·13: neither Paley construction (the core has none either)
  int checked = 0;
  for (int64_t m = 1; m <= 200; ++m) {
    if (!hadamard_base_exists(m)) {
      std::vector<int8_t> b(static_cast<size_t>(m * m));
      CHECK_FALSE(hadamard_base_fill(m, b.data()));
      continue;
    }
    // hadamard_matrix(m) is built from m's own base order, a smaller one when m = 2^k · m' with
    // m' a base order too (4 = 2·2·1, 24 = 2·12): compare where m is its own base order.
    if (hadamard_base_order(m) != m) continue;
    CAPTURE(m);
    const auto b = base_of(m);
    const at::Tensor ref = dptq::hadamard_matrix(m);
    REQUIRE(ref.size(0) == m);
    const at::Tensor mine = at::from_blob(const_cast<int8_t*>(b.data()), {m, m}, at::kChar).to(at::kDouble);
    CHECK(at::equal(mine, ref));
    ++checked;
  }
  CHECK(checked >= 15);
}

TEST_CASE("butterflies: fwht_rows_ref equals the dense rotation x · diag(s) · H_n · scale") {
  for (int64_t n : {1, 2, 8, 12, 24, 40, 64, 112, 320, 576, 1536}) {
    const int64_t m = hadamard_base_order(n);
    REQUIRE(m > 0);
    const auto base = base_of(m);
    const at::Tensor H = dptq::hadamard_matrix(n);  // float64 ±1
    for (int64_t rows : {1, 3, 7}) {
      for (bool with_sign : {false, true}) {
        CAPTURE(n);
        CAPTURE(rows);
        CAPTURE(with_sign);
        const int64_t ld = n + 3;  // strided rows
        auto x = randn(static_cast<size_t>(rows * ld), uint32_t(n + rows), 2.0f);
        std::vector<float> sign(static_cast<size_t>(n), 1.0f);
        if (with_sign) {
          std::mt19937 rng(static_cast<uint32_t>(n));
          for (auto& s : sign) s = (rng() & 1) ? 1.0f : -1.0f;
        }
        const float scale = 1.0f / std::sqrt(float(n));
        std::vector<float> y(static_cast<size_t>(rows * ld), 7.0f);
        fwht_rows_ref(x.data(), ld, y.data(), ld, rows, n, base.data(), m, with_sign ? sign.data() : nullptr, scale);

        at::Tensor X = at::from_blob(x.data(), {rows, ld}, at::kFloat).narrow(1, 0, n).to(at::kDouble);
        at::Tensor S = at::from_blob(sign.data(), {n}, at::kFloat).to(at::kDouble);
        at::Tensor ref = at::matmul(X * S, H) * double(scale);
        std::vector<float> got;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < n; ++c) got.push_back(y[static_cast<size_t>(r * ld + c)]);
          for (int64_t c = n; c < ld; ++c) CHECK(y[static_cast<size_t>(r * ld + c)] == 7.0f);  // padding untouched
        }
        const at::Tensor rc = ref.contiguous();
        std::vector<double> want(rc.data_ptr<double>(), rc.data_ptr<double>() + rows * n);
        CHECK(rel_err(got, want) < 2e-6);

        // In place gives the same bits.
        std::vector<float> xi = x;
        fwht_rows_ref(xi.data(), ld, xi.data(), ld, rows, n, base.data(), m, with_sign ? sign.data() : nullptr, scale);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < n; ++c) CHECK(xi[static_cast<size_t>(r * ld + c)] == y[static_cast<size_t>(r * ld + c)]);
      }
    }
  }
}

TEST_CASE("butterflies: H_n H_nᵀ = n I (the transform with the transposed base inverts it)") {
  for (int64_t n : {4, 12, 20, 28 * 8, 36 * 4, 60}) {
    CAPTURE(n);
    const int64_t m = hadamard_base_order(n);
    auto base = base_of(m), base_t = base;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j) base_t[static_cast<size_t>(i * m + j)] = base[static_cast<size_t>(j * m + i)];
    const auto x = randn(static_cast<size_t>(n), 3);
    std::vector<float> y(static_cast<size_t>(n)), back(static_cast<size_t>(n));
    fwht_rows_ref(x.data(), n, y.data(), n, 1, n, base.data(), m, nullptr, 1.0f);
    fwht_rows_ref(y.data(), n, back.data(), n, 1, n, base_t.data(), m, nullptr, 1.0f / float(n));
    std::vector<double> xd(x.begin(), x.end());
    CHECK(rel_err(back, xd) < 1e-6);
  }
  // The butterfly itself: exact on representable sums.
  float a = 3.0f, b = -1.25f;
  butterfly(a, b);
  CHECK(a == 1.75f);
  CHECK(b == 4.25f);
  int64_t i, j;
  fwht_pair_index(5, 4, i, j);  // stage stride 4: pairs (0,4) (1,5) (2,6) (3,7) (8,12) (9,13) ...
  CHECK(i == 9);
  CHECK(j == 13);
}

TEST_CASE("top-k merge: insert and merge agree with a full sort, ties by index") {
  std::mt19937 rng(17);
  for (int64_t n : {1, 5, 16, 17, 333}) {
    for (int k : {1, 3, 7, 16}) {
      CAPTURE(n);
      CAPTURE(k);
      std::vector<TopKEntry> all;
      std::uniform_int_distribution<int> d(-20, 20);  // many ties of |v|
      for (int64_t i = 0; i < n; ++i) {
        const float v = float(d(rng)) * 0.5f;
        all.push_back({std::fabs(v), v, i});
      }
      std::vector<TopKEntry> sorted = all;
      std::stable_sort(sorted.begin(), sorted.end(), [](const TopKEntry& a, const TopKEntry& b) {
        return a.abs > b.abs || (a.abs == b.abs && a.index < b.index);
      });
      const int want_n = int(std::min<int64_t>(k, n));
      // Sequential insertion.
      std::vector<TopKEntry> list(static_cast<size_t>(k));
      int len = 0;
      for (const auto& e : all) topk_insert(list.data(), len, k, e);
      REQUIRE(len == want_n);
      for (int i = 0; i < len; ++i) CHECK(list[static_cast<size_t>(i)].index == sorted[static_cast<size_t>(i)].index);
      // A tree of merges over odd-sized chunks (as the kernel's threads do), in reverse order.
      std::vector<std::vector<TopKEntry>> parts;
      for (int64_t s = n; s > 0; s -= 3) {
        std::vector<TopKEntry> p(static_cast<size_t>(k));
        int pl = 0;
        for (int64_t i = std::max<int64_t>(0, s - 3); i < s; ++i) topk_insert(p.data(), pl, k, all[static_cast<size_t>(i)]);
        p.resize(static_cast<size_t>(pl));
        parts.push_back(p);
      }
      while (parts.size() > 1) {
        std::vector<std::vector<TopKEntry>> next;
        for (size_t i = 0; i + 1 < parts.size(); i += 2) {
          std::vector<TopKEntry> out(static_cast<size_t>(k));
          const int ol = topk_merge(parts[i].data(), int(parts[i].size()), parts[i + 1].data(), int(parts[i + 1].size()),
                                    out.data(), k);
          out.resize(static_cast<size_t>(ol));
          next.push_back(out);
        }
        if (parts.size() % 2) next.push_back(parts.back());
        parts = next;
      }
      REQUIRE(int(parts[0].size()) == want_n);
      for (int i = 0; i < want_n; ++i) {
        CHECK(parts[0][static_cast<size_t>(i)].index == sorted[static_cast<size_t>(i)].index);
        CHECK(parts[0][static_cast<size_t>(i)].value == sorted[static_cast<size_t>(i)].value);
      }
    }
  }
  // Empty slots never win.
  TopKEntry empty[2] = {}, one[1] = {{2.0f, -2.0f, 4}}, out[2];
  CHECK(topk_merge(empty, 0, one, 1, out, 2) == 1);
  CHECK(out[0].index == 4);
  CHECK_FALSE(topk_before(TopKEntry{}, one[0]));
}

TEST_CASE("Welford merge equals two-pass moments over odd splits") {
  const auto x = randn(1001, 23, 3.0f);
  double mean = 0;
  for (float v : x) mean += v;
  mean /= double(x.size());
  double m2 = 0;
  for (float v : x) m2 += (v - mean) * (v - mean);
  for (size_t chunk : {static_cast<size_t>(1), static_cast<size_t>(7), static_cast<size_t>(100), static_cast<size_t>(1001)}) {
    CAPTURE(chunk);
    std::vector<Welford> parts;
    for (size_t s = 0; s < x.size(); s += chunk) {
      Welford w;
      for (size_t i = s; i < std::min(x.size(), s + chunk); ++i) welford_add(w, x[i]);
      parts.push_back(w);
    }
    // Pairwise tree merge, as across threads.
    while (parts.size() > 1) {
      std::vector<Welford> next;
      for (size_t i = 0; i + 1 < parts.size(); i += 2) next.push_back(welford_merge(parts[i], parts[i + 1]));
      if (parts.size() % 2) next.push_back(parts.back());
      parts = next;
    }
    CHECK(parts[0].n == 1001.0);
    CHECK(parts[0].mean == doctest::Approx(mean).epsilon(1e-12));
    CHECK(parts[0].m2 == doctest::Approx(m2).epsilon(1e-12));
    CHECK(welford_variance(parts[0]) == doctest::Approx(m2 / 1001.0).epsilon(1e-12));
  }
  // Merging with an empty accumulator is the identity; a large offset does not cancel.
  Welford a, e;
  for (double v : {1e9 + 1, 1e9 + 2, 1e9 + 3}) welford_add(a, v);
  const Welford b = welford_merge(a, e), c = welford_merge(e, a);
  CHECK(b.m2 == a.m2);
  CHECK(c.mean == a.mean);
  CHECK(a.m2 == doctest::Approx(2.0).epsilon(1e-9));
}

TEST_CASE("stream statistics reference: norms, channel absmax, top-k, |v| histogram") {
  CHECK(kAbsHistShift == dptq::LogHistogram::kShift);
  CHECK(kAbsHistBins == dptq::LogHistogram::kBins);
  const int64_t rows = 7, cols = 77, ld = 80;
  auto x = randn(static_cast<size_t>(rows * ld), 5, 1.5f);
  x[static_cast<size_t>(3 * ld + 10)] = -400.0f;  // a massive activation
  x[static_cast<size_t>(5 * ld + 2)] = 400.0f;    // a tie of |v| with it: the smaller flat index wins
  std::vector<StreamRowStats> st(static_cast<size_t>(rows));
  std::vector<float> chmax(static_cast<size_t>(cols), 1.0f);  // running: starts above some entries
  const int k = 5;
  std::vector<TopKEntry> topk(static_cast<size_t>(rows * k));
  std::vector<uint32_t> hist(static_cast<size_t>(kAbsHistBins), 0);
  stream_stats_rows_ref(x.data(), ld, rows, cols, st.data(), chmax.data(), topk.data(), k, hist.data());
  dptq::LogHistogram lh;
  std::vector<TopKEntry> merged(static_cast<size_t>(k)), tmp(static_cast<size_t>(k));
  int mlen = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double l2 = 0, mx = 0, mean = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = x[static_cast<size_t>(r * ld + c)];
      l2 += double(v) * v;
      mx = std::max(mx, double(std::fabs(v)));
      mean += v;
      lh.add(v);
    }
    mean /= double(cols);
    double m2 = 0;
    for (int64_t c = 0; c < cols; ++c) m2 += (x[static_cast<size_t>(r * ld + c)] - mean) * (x[static_cast<size_t>(r * ld + c)] - mean);
    CHECK(st[static_cast<size_t>(r)].l2sq == doctest::Approx(l2).epsilon(1e-5));
    CHECK(st[static_cast<size_t>(r)].linf == float(mx));
    CHECK(st[static_cast<size_t>(r)].moments.mean == doctest::Approx(mean).epsilon(1e-9));
    CHECK(st[static_cast<size_t>(r)].moments.m2 == doctest::Approx(m2).epsilon(1e-9));
    mlen = topk_merge(merged.data(), mlen, topk.data() + r * k, k, tmp.data(), k);
    std::copy(tmp.begin(), tmp.begin() + mlen, merged.begin());
  }
  for (int64_t c = 0; c < cols; ++c) {
    float want = 1.0f;
    for (int64_t r = 0; r < rows; ++r) want = std::max(want, std::fabs(x[static_cast<size_t>(r * ld + c)]));
    CHECK(chmax[static_cast<size_t>(c)] == want);
  }
  CHECK(merged[0].index == 3 * cols + 10);
  CHECK(merged[0].value == -400.0f);
  CHECK(merged[1].index == 5 * cols + 2);
  // The histogram counts are the core LogHistogram's.
  int64_t total = 0;
  for (uint32_t h : hist) total += h;
  CHECK(total == rows * cols);
  CHECK(lh.count_at_least(300.0) == 2);
  int64_t above = 0;
  for (int64_t b = int64_t(abs_hist_bin(300.0f)); b < kAbsHistBins; ++b) above += hist[static_cast<size_t>(b)];
  CHECK(above == 2);
}

TEST_CASE("pair terms reference: JR, JR-inf and HSNR sums equal a direct computation") {
  const int64_t rows = 9, cols = 133;
  const auto h = randn(static_cast<size_t>(rows * cols), 31, 2.0f);
  auto u = randn(static_cast<size_t>(rows * cols), 32, 2.0f);
  for (size_t i = 0; i < u.size(); ++i) u[i] += h[i];
  u[static_cast<size_t>(2 * cols + 5)] = 250.0f;  // a jump
  const auto gamma = randn(static_cast<size_t>(cols), 33, 1.0f);
  const ActQuantConfig q4{4, false, 0.9f, 0}, q8{8, false, 1.0f, 0};
  for (bool with_gamma : {false, true}) {
    CAPTURE(with_gamma);
    std::vector<PairTerms> t(static_cast<size_t>(rows));
    pair_terms_rows_ref(h.data(), cols, u.data(), cols, rows, cols, with_gamma ? gamma.data() : nullptr, q4, q8, t.data());
    for (int64_t r = 0; r < rows; ++r) {
      double hs = 0, hi = 0, ds = 0, di = 0, ps = 0;
      std::vector<float> pu(static_cast<size_t>(cols));
      for (int64_t c = 0; c < cols; ++c) {
        const float hv = h[static_cast<size_t>(r * cols + c)], uv = u[static_cast<size_t>(r * cols + c)], g = with_gamma ? gamma[static_cast<size_t>(c)] : 1.0f;
        hs += double(hv) * hv;
        hi = std::max(hi, double(std::fabs(hv)));
        ds += double(uv - hv) * (uv - hv);
        di = std::max(di, double(std::fabs(uv - hv)));
        ps += double(hv * g) * (hv * g);
        pu[static_cast<size_t>(c)] = with_gamma ? uv * g : uv;
      }
      std::vector<float> y4(static_cast<size_t>(cols)), y8(static_cast<size_t>(cols));
      act_fake_quant_rows_ref(pu.data(), cols, y4.data(), cols, 1, cols, q4);
      act_fake_quant_rows_ref(pu.data(), cols, y8.data(), cols, 1, cols, q8);
      double n4 = 0, n8 = 0;
      for (int64_t c = 0; c < cols; ++c) {
        n4 += double(y4[static_cast<size_t>(c)] - pu[static_cast<size_t>(c)]) * (y4[static_cast<size_t>(c)] - pu[static_cast<size_t>(c)]);
        n8 += double(y8[static_cast<size_t>(c)] - pu[static_cast<size_t>(c)]) * (y8[static_cast<size_t>(c)] - pu[static_cast<size_t>(c)]);
      }
      const PairTerms& p = t[static_cast<size_t>(r)];
      CHECK(p.h_l2sq == doctest::Approx(hs).epsilon(1e-5));
      CHECK(p.h_linf == float(hi));
      CHECK(p.d_l2sq == doctest::Approx(ds).epsilon(1e-5));
      CHECK(p.d_linf == float(di));
      CHECK(p.hist_sq == doctest::Approx(ps).epsilon(1e-5));
      CHECK(p.noise4 == doctest::Approx(n4).epsilon(1e-4));
      CHECK(p.noise8 == doctest::Approx(n8).epsilon(1e-4));
      CHECK(jump_ratio(p) == doctest::Approx(std::sqrt(ds / hs)).epsilon(1e-5));
      CHECK(jump_ratio_inf(p) == doctest::Approx(di / hi).epsilon(1e-6));
      CHECK(hsnr_db(p.hist_sq, p.noise4) == doctest::Approx(10 * std::log10(ps / n4)).epsilon(1e-4));
    }
  }
  // An exactly representable token: zero noise, +inf dB.
  CHECK(std::isinf(hsnr_db(1.0, 0.0)));
}

TEST_CASE("packing: quant_pack_rows_ref stores the fake-quant codes; dequant gives its output back") {
  std::mt19937 rng(41);
  for (int bits : {2, 3, 4, 5, 7, 8}) {
    for (bool sym : {false, true}) {
      for (int64_t cols : {1, 7, 64, 129}) {
        for (int64_t group : {int64_t{0}, int64_t{8}, int64_t{64}}) {
          if (group && (cols % group)) continue;
          CAPTURE(bits);
          CAPTURE(sym);
          CAPTURE(cols);
          CAPTURE(group);
          const ActQuantConfig cfg{bits, sym, group ? 0.95f : (bits == 4 ? 0.9f : 1.0f), group};
          REQUIRE(validate_act_quant(cfg, cols) == nullptr);
          const int64_t rows = 5, ldx = cols + 2;
          auto x = randn(static_cast<size_t>(rows * ldx), uint32_t(bits * 100 + cols), 1.0f);
          x[0] = 50.0f;  // clipped
          if (cols >= 7)
            for (int64_t c = 0; c < cols; ++c) x[static_cast<size_t>(ldx + c)] = 0.0f;  // a zero row
          if (cols >= 7) {  // ties: exact half steps of a known grid
            x[static_cast<size_t>(2 * ldx + 0)] = -1.0f;
            x[static_cast<size_t>(2 * ldx + 1)] = 2.0f;
          }
          const int64_t groups = group ? cols / group : 1;
          const int64_t ldc = code_bytes_per_row(cols, bits) + 1;
          std::vector<uint8_t> codes(static_cast<size_t>(rows * ldc), 0xee);
          std::vector<float> sc(static_cast<size_t>(rows * groups)), zr(static_cast<size_t>(rows * groups));
          quant_pack_rows_ref(x.data(), ldx, rows, cols, cfg, codes.data(), ldc, sc.data(), zr.data());
          // The fake-quant reference: the same codes, scales, zeros and values.
          std::vector<float> y(static_cast<size_t>(rows * ldx)), sc2(sc.size()), zr2(zr.size());
          std::vector<int8_t> c8(static_cast<size_t>(rows * ldx));
          const bool fits_int8 = sym || bits <= 7;
          act_fake_quant_rows_ref(x.data(), ldx, y.data(), ldx, rows, cols, cfg, fits_int8 ? c8.data() : nullptr, ldx,
                                  sc2.data(), zr2.data());
          CHECK(sc == sc2);
          CHECK(zr == zr2);
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < cols; ++c) {
              const int q = load_code(codes.data() + r * ldc, c, bits, sym);
              CHECK(q >= quant_minq(bits, sym));
              CHECK(q <= quant_maxq(bits, sym));
              if (fits_int8) CHECK(q == c8[static_cast<size_t>(r * ldx + c)]);
            }
            CHECK(codes[static_cast<size_t>(r * ldc + ldc - 1)] == 0xee);  // stride padding untouched
            if (bits <= 4 && (cols & 1)) CHECK((codes[static_cast<size_t>(r * ldc + cols / 2)] >> 4) == 0);  // odd row: zero high nibble
          }
          if (bits <= 4 && fits_int8) {  // the same bytes as quant_math.hpp's int4 packing
            std::vector<uint8_t> packed(static_cast<size_t>(rows * ldc), 0xee);
            pack_int4_rows_ref(c8.data(), ldx, packed.data(), ldc, rows, cols);
            CHECK(packed == codes);
          }
          std::vector<float> back(static_cast<size_t>(rows * ldx), 0.0f);
          dequant_packed_rows_ref(codes.data(), ldc, rows, cols, cfg, sc.data(), zr.data(), back.data(), ldx);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) CHECK(back[static_cast<size_t>(r * ldx + c)] == y[static_cast<size_t>(r * ldx + c)]);
        }
      }
    }
  }
  (void)rng;
  // Levels and ties, by hand: min -1, max 2 at 4 bits -> scale 0.2, zero 5; 0.1 / 0.2 = 0.5
  // rounds to even (0), 0.3 / 0.2 = 1.5 to 2.
  const float x[4] = {-1.0f, 2.0f, 0.1f, 0.3f};
  uint8_t c[2];
  float s, z;
  quant_pack_rows_ref(x, 4, 1, 4, {4, false, 1.0f, 0}, c, 2, &s, &z);
  CHECK(z == 5.0f);
  CHECK(load_code(c, 0, 4, false) == 0);
  CHECK(load_code(c, 1, 4, false) == 15);
  CHECK(load_code(c, 2, 4, false) == 5 + int(round_half_even(0.1f / s)));
  CHECK(load_code(c, 3, 4, false) == 5 + int(round_half_even(0.3f / s)));
  CHECK(c[0] == 0xf0);
}

TEST_CASE("int8 GEMM reference: exact integer sums and the integer engine's epilogue") {
  std::mt19937 rng(77);
  for (int64_t M : {1, 3, 17}) {
    for (int64_t N : {1, 5, 33}) {
      for (int64_t K : {1, 7, 64, 131}) {
        CAPTURE(M);
        CAPTURE(N);
        CAPTURE(K);
        // 4-bit asymmetric activation codes q in [0, 15] with zero z, moved into int8 by the shift 8.
        std::uniform_int_distribution<int> dq(0, 15), dw(-8, 7), dz(0, 15);
        const int64_t lda = K + 1, ldw = K + 2, ldy = N + 3;
        std::vector<int8_t> a(static_cast<size_t>(M * lda)), w(static_cast<size_t>(N * ldw));
        std::vector<int> q(static_cast<size_t>(M * K)), zero(static_cast<size_t>(M));
        std::vector<int32_t> off(static_cast<size_t>(M)), colsum(static_cast<size_t>(N));
        std::vector<float> sa(static_cast<size_t>(M)), sw(static_cast<size_t>(N)), bias(static_cast<size_t>(N));
        for (int64_t t = 0; t < M; ++t) {
          zero[static_cast<size_t>(t)] = dz(rng);
          off[static_cast<size_t>(t)] = 8 - zero[static_cast<size_t>(t)];
          sa[static_cast<size_t>(t)] = 0.01f * float(1 + t);
          for (int64_t k = 0; k < K; ++k) {
            q[static_cast<size_t>(t * K + k)] = dq(rng);
            a[static_cast<size_t>(t * lda + k)] = int8_t(q[static_cast<size_t>(t * K + k)] - 8);
          }
        }
        for (int64_t n = 0; n < N; ++n) {
          sw[static_cast<size_t>(n)] = 0.003f * float(n + 2);
          bias[static_cast<size_t>(n)] = 0.5f * float(n) - 1.0f;
          for (int64_t k = 0; k < K; ++k) w[static_cast<size_t>(n * ldw + k)] = int8_t(dw(rng));
        }
        int8_row_sums_ref(w.data(), ldw, N, K, colsum.data());
        for (bool with_bias : {false, true}) {
          std::vector<float> y(static_cast<size_t>(M * ldy), -9.0f);
          int8_gemm_rows_ref(a.data(), lda, w.data(), ldw, M, N, K, off.data(), sa.data(), colsum.data(), sw.data(),
                             with_bias ? bias.data() : nullptr, y.data(), ldy);
          for (int64_t t = 0; t < M; ++t)
            for (int64_t n = 0; n < N; ++n) {
              // Σ_k (q - z) c exactly, then the engine's fp32 operations (int_engine.cpp).
              int64_t exact = 0;
              for (int64_t k = 0; k < K; ++k)
                exact += int64_t(q[static_cast<size_t>(t * K + k)] - zero[static_cast<size_t>(t)]) * w[static_cast<size_t>(n * ldw + k)];
              float want = float(exact) * (sa[static_cast<size_t>(t)] * sw[static_cast<size_t>(n)]);
              if (with_bias) want = want + bias[static_cast<size_t>(n)];
              CHECK(y[static_cast<size_t>(t * ldy + n)] == want);
            }
          for (int64_t t = 0; t < M; ++t) CHECK(y[static_cast<size_t>(t * ldy + N)] == -9.0f);
        }
      }
    }
  }
}

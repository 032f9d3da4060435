// CUDA residual-stream statistics (stream_stats, pair_terms) vs the CPU references
// (stats_math.hpp) over fp32 / fp16 / bf16, odd shapes and strided rows. Maxima, top-k lists,
// histogram counts, channel absmax and quantizer parameters must agree exactly; the fp32 sums
// (added in a tree on the GPU) are compared with double-precision sums of the same terms at a
// tolerance far below one term's share (a dropped or doubled element fails), the Welford moments
// with the exact moments at 1e-9.
#include <algorithm>
#include <cmath>

#include "dptq/error.hpp"
#include "dptq/kernels/stream_stats.cuh"
#include "kernel_test_util.hpp"

using dptq::kmath::ActQuantConfig;
using dptq::kmath::DType;
using dptq::kmath::PairTerms;
using dptq::kmath::StreamRowStats;
using dptq::kmath::TopKEntry;
using dptq::test::DeviceBuffer;

namespace {

// |got − want| within rel · |want| (+ a tiny absolute floor for sums of zeros).
bool close(double got, double want, double rel) { return std::fabs(got - want) <= rel * std::fabs(want) + 1e-30; }

// The tree sum of n fp32 terms: at most ~(n / 256 + 13) roundings of the running sum.
double sum_tolerance(int64_t cols) { return (double(cols) / 256.0 + 16.0) * 6e-8; }

}  // namespace

TEST_CASE("stream_stats / pair_terms reject bad arguments before touching the GPU") {
  float x[4] = {};
  StreamRowStats rs[1];
  TopKEntry tk[20];
  dptq::cuda::StreamStatsOutputs o;
  o.row_stats = rs;
  o.topk = tk;
  o.k = dptq::kmath::kMaxTopK + 1;
  CHECK_THROWS_AS(dptq::cuda::stream_stats(x, 4, 1, 4, DType::F32, o, nullptr), dptq::Error);  // k too large
  o.k = 0;
  CHECK_THROWS_AS(dptq::cuda::stream_stats(x, 4, 1, 4, DType::F32, o, nullptr), dptq::Error);  // k too small
  o.k = 4;
  CHECK_THROWS_AS(dptq::cuda::stream_stats(x, 3, 1, 4, DType::F32, o, nullptr), dptq::Error);  // stride
  o.row_stats = nullptr;
  CHECK_THROWS_AS(dptq::cuda::stream_stats(x, 4, 1, 4, DType::F32, o, nullptr), dptq::Error);
  PairTerms pt[1];
  const ActQuantConfig q4{4, false, 0.9f, 0}, q8{8, false, 1.0f, 0}, grouped{4, false, 1.0f, 2};
  CHECK_THROWS_AS(dptq::cuda::pair_terms(x, 4, x, 4, 1, 4, DType::F32, nullptr, grouped, q8, pt, nullptr),
                  dptq::Error);  // HSNR quantizers are per token
  CHECK_THROWS_AS(dptq::cuda::pair_terms(x, 4, x, 4, 1, 4, DType::F32, nullptr, q4, q8, nullptr, nullptr), dptq::Error);
  try {
    dptq::cuda::pair_terms(x, 2, x, 4, 1, 4, DType::F32, nullptr, q4, q8, pt, nullptr);
  } catch (const dptq::Error& e) {
    CHECK(e.kind() == dptq::ErrorKind::InvalidArgument);
    CHECK(std::string(e.what()).find("pair_terms: row stride") == 0);
  }
}

TEST_CASE("stream_stats matches the CPU reference: norms, moments, channel absmax, top-k, histogram" *
          doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  for (DType dtype : dptq::test::all_dtypes()) {
    for (int64_t rows : {1, 5, 37}) {
      for (int64_t cols : {1, 3, 33, 576, 2049}) {
        for (int k : {1, 5, 16}) {
          CAPTURE(dptq::kmath::dtype_name(dtype));
          CAPTURE(rows);
          CAPTURE(cols);
          CAPTURE(k);
          const int64_t ld = cols + 7;
          auto x = dptq::test::round_to_dtype(dptq::test::randn(static_cast<size_t>(rows * ld), uint32_t(rows * 1000 + cols + k)),
                                              dtype);
          if (cols > 2) {  // a massive activation and exact ties of |v| (ordered by index)
            x[2] = 300.0f;
            x[1] = -2.5f;
            x[0] = 2.5f;
          }
          if (rows > 1)
            for (int64_t c = 0; c < cols; ++c) x[static_cast<size_t>(ld + c)] = 0.0f;  // a zero row: its top-k is zeros by index
          std::vector<float> absmax0(static_cast<size_t>(cols));
          for (int64_t c = 0; c < cols; ++c) absmax0[static_cast<size_t>(c)] = c % 3 == 0 ? 0.5f : 0.0f;  // running: some held
          std::vector<StreamRowStats> ref_rows(static_cast<size_t>(rows));
          std::vector<float> ref_absmax = absmax0;
          std::vector<TopKEntry> ref_topk(static_cast<size_t>(rows * k));
          std::vector<uint32_t> ref_hist(static_cast<size_t>(dptq::kmath::kAbsHistBins), 0u);
          dptq::kmath::stream_stats_rows_ref(x.data(), ld, rows, cols, ref_rows.data(), ref_absmax.data(),
                                             ref_topk.data(), k, ref_hist.data());

          DeviceBuffer<uint8_t> dx(dptq::test::to_dtype_bytes(x, dtype));
          DeviceBuffer<StreamRowStats> drows(static_cast<size_t>(rows));
          DeviceBuffer<float> dabs(absmax0);
          DeviceBuffer<TopKEntry> dtopk(static_cast<size_t>(rows * k));
          DeviceBuffer<uint32_t> dhist(std::vector<uint32_t>(static_cast<size_t>(dptq::kmath::kAbsHistBins), 0u));
          dptq::cuda::StreamStatsOutputs o;
          o.row_stats = drows.get();
          o.channel_absmax = dabs.get();
          o.topk = dtopk.get();
          o.k = k;
          o.abs_hist = dhist.get();
          dptq::cuda::stream_stats(dx.get(), ld, rows, cols, dtype, o, nullptr);

          const auto got_rows = drows.download();
          for (int64_t r = 0; r < rows; ++r) {
            const StreamRowStats& g = got_rows[static_cast<size_t>(r)];
            const StreamRowStats& w = ref_rows[static_cast<size_t>(r)];
            double l2 = 0, mean = 0, m2 = 0;
            for (int64_t c = 0; c < cols; ++c) {
              const double v = x[static_cast<size_t>(r * ld + c)];
              l2 += double(float(v * v));
              mean += v;
            }
            mean /= double(cols);
            for (int64_t c = 0; c < cols; ++c) m2 += (x[static_cast<size_t>(r * ld + c)] - mean) * (x[static_cast<size_t>(r * ld + c)] - mean);
            CHECK(g.linf == w.linf);
            CHECK(close(g.l2sq, l2, sum_tolerance(cols)));
            CHECK(g.moments.n == double(cols));
            CHECK(std::fabs(g.moments.mean - mean) <= 1e-9 * (std::fabs(mean) + 1.0));
            CHECK(std::fabs(g.moments.m2 - m2) <= 1e-9 * (m2 + 1.0));
          }
          CHECK(dabs.download() == ref_absmax);
          CHECK(dhist.download() == ref_hist);
          const auto got_topk = dtopk.download();
          int64_t differ = 0;
          for (size_t i = 0; i < got_topk.size(); ++i)
            differ += got_topk[i].abs != ref_topk[i].abs || got_topk[i].value != ref_topk[i].value ||
                      got_topk[i].index != ref_topk[i].index;
          CHECK(differ == 0);
        }
      }
    }
  }
}

TEST_CASE("pair_terms matches the CPU reference: JR, JR-inf and HSNR(4, 8) sums" * doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  const ActQuantConfig q4{4, false, 0.9f, 0}, q8{8, false, 1.0f, 0};
  for (DType dtype : dptq::test::all_dtypes()) {
    for (int64_t rows : {1, 6, 29}) {
      for (int64_t cols : {1, 5, 64, 577, 3000}) {
        for (bool with_gamma : {false, true}) {
          CAPTURE(dptq::kmath::dtype_name(dtype));
          CAPTURE(rows);
          CAPTURE(cols);
          CAPTURE(with_gamma);
          const int64_t ldh = cols + 1, ldu = cols + 4;
          auto h = dptq::test::round_to_dtype(dptq::test::randn(static_cast<size_t>(rows * ldh), uint32_t(cols * 3 + rows)), dtype);
          auto u = dptq::test::round_to_dtype(dptq::test::randn(static_cast<size_t>(rows * ldu), uint32_t(cols * 5 + rows), 1.3f),
                                              dtype);
          if (cols > 3) u[3] = 80.0f;  // an outlier in u: the 4-bit quantizer clips elsewhere
          const auto gamma = dptq::test::randn(static_cast<size_t>(cols), 99u, 0.5f);
          const float* g = with_gamma ? gamma.data() : nullptr;
          std::vector<PairTerms> ref(static_cast<size_t>(rows));
          dptq::kmath::pair_terms_rows_ref(h.data(), ldh, u.data(), ldu, rows, cols, g, q4, q8, ref.data());
          DeviceBuffer<uint8_t> dh(dptq::test::to_dtype_bytes(h, dtype)), du(dptq::test::to_dtype_bytes(u, dtype));
          DeviceBuffer<float> dg(gamma);
          DeviceBuffer<PairTerms> dout(static_cast<size_t>(rows));
          dptq::cuda::pair_terms(dh.get(), ldh, du.get(), ldu, rows, cols, dtype, with_gamma ? dg.get() : nullptr, q4,
                                 q8, dout.get(), nullptr);
          const auto got = dout.download();
          const double tol = sum_tolerance(cols);
          for (int64_t r = 0; r < rows; ++r) {
            const PairTerms& a = got[static_cast<size_t>(r)];
            const PairTerms& w = ref[static_cast<size_t>(r)];
            CHECK(a.h_linf == w.h_linf);
            CHECK(a.d_linf == w.d_linf);
            // Exact sums of the same fp32 terms, in double, with the reference's quantizers.
            float lo = INFINITY, hi = -INFINITY;
            for (int64_t c = 0; c < cols; ++c) {
              const float pu = dptq::kmath::pair_project(u[static_cast<size_t>(r * ldu + c)], g, c);
              lo = std::min(lo, pu);
              hi = std::max(hi, pu);
            }
            const auto p4 = dptq::kmath::act_quant_params(lo, hi, q4.bits, q4.sym, q4.clip_ratio, true);
            const auto p8 = dptq::kmath::act_quant_params(lo, hi, q8.bits, q8.sym, q8.clip_ratio, true);
            double hs = 0, ds = 0, ps = 0, n4 = 0, n8 = 0;
            for (int64_t c = 0; c < cols; ++c) {
              const float hv = h[static_cast<size_t>(r * ldh + c)], uv = u[static_cast<size_t>(r * ldu + c)], d = uv - hv;
              const float ph = dptq::kmath::pair_project(hv, g, c), pu = dptq::kmath::pair_project(uv, g, c);
              hs += double(hv * hv);
              ds += double(d * d);
              ps += double(ph * ph);
              n4 += double(dptq::kmath::quant_sq_error(pu, p4, float(dptq::kmath::quant_minq(4, false)),
                                                       float(dptq::kmath::quant_maxq(4, false))));
              n8 += double(dptq::kmath::quant_sq_error(pu, p8, float(dptq::kmath::quant_minq(8, false)),
                                                       float(dptq::kmath::quant_maxq(8, false))));
            }
            CHECK(close(a.h_l2sq, hs, tol));
            CHECK(close(a.d_l2sq, ds, tol));
            CHECK(close(a.hist_sq, ps, tol));
            CHECK(close(a.noise4, n4, tol));
            CHECK(close(a.noise8, n8, tol));
            CHECK(close(dptq::kmath::jump_ratio(a), dptq::kmath::jump_ratio(w), 1e-4));
          }
        }
      }
    }
  }
}

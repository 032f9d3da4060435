// Weight quantizers (core/src/weight_quant.cpp): RTN against hand computations, the MSE clip
// search, GPTQ against RTN on a layer with correlated inputs, the Hessian accumulator, int4 packing
// and the errors. tests/golden/weight_quant_quarot.json was made with torch by
// tools/golden/make_weight_quant_golden.py following QuaRot's WeightQuantizer and GPTQ.
#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dptq/error.hpp"
#include "dptq/kernels/quant_math.hpp"
#include "dptq/weight_quant.hpp"
#include "test_util.hpp"

using namespace dptq;

namespace {

at::Tensor floats(const std::vector<float>& v, std::vector<int64_t> shape) {
  return at::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())}, at::kFloat)
      .clone()
      .reshape(shape);
}

// Number of elements where two fp32 tensors (NaN-free) differ in value. Values, not bits: the
// reference's scale · q gives -0.0 where q rounds to -0.0, which an int8 code cannot hold.
int64_t count_diff(const at::Tensor& a, const at::Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  return (a != b).sum().item<int64_t>();
}

WeightQuantConfig rtn_cfg(int bits, bool symmetric, bool mse) {
  WeightQuantConfig c;
  c.bits = bits;
  c.symmetric = symmetric;
  c.mse_clip = mse;
  return c;
}

// Σ |ŵ - w|^norm per row, in double.
std::vector<double> row_errors(const at::Tensor& W, const at::Tensor& Wq, double norm) {
  const at::Tensor e = (Wq.to(at::kDouble) - W.to(at::kDouble)).abs().pow(norm).sum(1);
  return {e.data_ptr<double>(), e.data_ptr<double>() + e.numel()};
}

// Relative output error ‖X Wᵀ − X Ŵᵀ‖_F / ‖X Wᵀ‖_F.
double output_error(const at::Tensor& X, const at::Tensor& W, const at::Tensor& Wq) {
  const at::Tensor Y = X.matmul(W.t());
  return (Y - X.matmul(Wq.t())).norm().item<double>() / Y.norm().item<double>();
}

// The one-line message of the dptq::Error `fn` throws (fails the test when it throws none).
template <class Fn>
std::string error_of(Fn fn, ErrorKind kind) {
  try {
    fn();
  } catch (const Error& e) {
    CHECK(e.kind() == kind);
    const std::string what = e.what();
    CHECK(what.find('\n') == std::string::npos);
    return what;
  }
  FAIL("no dptq::Error thrown");
  return {};
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("RTN per channel: levels, symmetric range and zero rows by hand") {
  // Symmetric 4-bit, no clip search: scale = max|w| / 7, q = round-half-even(w / scale) in [-8, 7].
  const at::Tensor W = floats({0.25f, -0.75f, 1.25f, 3.5f,  // max 3.5 -> scale 0.5; ties to even
                               -3.5f, 1.0f, 0.75f, 0.0f,    // max |min| 3.5 -> scale 0.5
                               0.0f, 0.0f, 0.0f, 0.0f},     // zero row -> scale 1e-5 / 7, codes 0
                              {3, 4});
  const QuantizedWeight q = rtn_quantize(W, rtn_cfg(4, true, false));
  CHECK((q.codes.scalar_type() == at::kChar));
  CHECK((q.scales.scalar_type() == at::kFloat));
  CHECK((q.scales.sizes() == at::IntArrayRef{3}));
  CHECK_FALSE(q.zeros.defined());
  const std::vector<int> want{0, -2, 2, 7, -7, 2, 2, 0, 0, 0, 0, 0};
  const at::Tensor codes = q.codes.to(at::kInt).flatten();
  for (size_t i = 0; i < want.size(); ++i) CHECK(codes[i].item<int>() == want[i]);
  CHECK(q.scales[0].item<float>() == 0.5f);
  CHECK(q.scales[1].item<float>() == 0.5f);
  CHECK(q.scales[2].item<float>() == 1e-5f / 7.0f);
  const at::Tensor Wq = q.dequantize();
  CHECK(Wq[0].equal(floats({0.0f, -1.0f, 1.0f, 3.5f}, {4})));
  CHECK(Wq[1].equal(floats({-3.5f, 1.0f, 1.0f, 0.0f}, {4})));
  CHECK(Wq[2].abs().sum().item<float>() == 0.0f);

  // Asymmetric: range [min(w, 0), max(w, 0)], scale = range / 15, zero = round(-min / scale).
  const at::Tensor A = floats({0.5f, 1.0f, 2.0f, 3.0f,    // [0, 3]: scale 0.2, zero 0, 2.5 -> 2
                               0.0f, 0.0f, 0.0f, 0.0f,    // zero row: [-1, 1], zero 7 (see below)
                               -1.0f, 2.0f, 0.0f, 1.0f},  // [-1, 2]: scale 0.2, zero 5
                              {3, 4});
  const QuantizedWeight qa = rtn_quantize(A, rtn_cfg(4, false, false));
  REQUIRE(qa.zeros.defined());
  const std::vector<int> want_a{2, 5, 10, 15, 7, 7, 7, 7, 0, 15, 5, 10};
  const at::Tensor codes_a = qa.codes.to(at::kInt).flatten();
  for (size_t i = 0; i < want_a.size(); ++i) CHECK(codes_a[i].item<int>() == want_a[i]);
  CHECK(qa.scales[0].item<float>() == 3.0f / 15.0f);
  CHECK(qa.zeros[0].item<float>() == 0.0f);
  CHECK(qa.scales[1].item<float>() == 2.0f / 15.0f);
  CHECK(qa.zeros[1].item<float>() == 7.0f);  // 1 / fl(2/15) = 7.4999996 in fp32, not 7.5
  CHECK(qa.zeros[2].item<float>() == 5.0f);
  CHECK(qa.dequantize()[1].abs().sum().item<float>() == 0.0f);  // zero stays exactly zero

  // A random matrix against a scalar loop over the shared kmath helpers, every bit width.
  at::manual_seed(3);
  const at::Tensor R = at::randn({9, 33}) * at::exp(at::randn({9, 1}));
  for (int bits : {2, 3, 4, 8}) {
    CAPTURE(bits);
    const QuantizedWeight qr = rtn_quantize(R, rtn_cfg(bits, true, false));
    const int maxq = kmath::quant_maxq(bits, true);
    int64_t mismatches = 0;
    for (int64_t r = 0; r < R.size(0); ++r) {
      float m = 0.0f;
      for (int64_t c = 0; c < R.size(1); ++c) m = std::fmax(m, std::fabs(R[r][c].item<float>()));
      const kmath::QuantParams p{std::fmax(m, 1e-5f) / static_cast<float>(maxq), 0.0f};
      mismatches += qr.scales[r].item<float>() != p.scale;
      for (int64_t c = 0; c < R.size(1); ++c) {
        const int code = kmath::quant_code(R[r][c].item<float>(), p, bits, true);
        CHECK(code >= -maxq - 1);
        CHECK(code <= maxq);
        mismatches += qr.codes[r][c].item<int>() != code;
      }
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("MSE clip search: shrinks around outliers, never increases the row error") {
  at::manual_seed(17);
  at::Tensor W = at::randn({16, 64});
  W.index_put_({0, 5}, 25.0f);  // one large outlier: clipping it pays off for the other 63
  W.index_put_({1, 9}, -12.0f);
  const WeightQuantConfig plain = rtn_cfg(4, true, false), mse = rtn_cfg(4, true, true);
  const QuantizedWeight q0 = rtn_quantize(W, plain), q1 = rtn_quantize(W, mse);
  const at::Tensor max_abs = W.abs().amax(1);
  CHECK(q0.scales.equal(max_abs / 7.0f));

  // The chosen scale is max|w|·p / 7 for a grid point p = 1 - i/100, i < 80.
  const auto chosen_shrink = [&](int64_t r) {
    const float m = max_abs[r].item<float>(), s = q1.scales[r].item<float>();
    for (int i = 0; i < 80; ++i) {
      const float p = static_cast<float>(1.0 - i / 100.0);
      if ((m * p) / 7.0f == s) return static_cast<double>(p);
    }
    return -1.0;
  };
  for (int64_t r = 0; r < W.size(0); ++r) {
    CAPTURE(r);
    const double p = chosen_shrink(r);
    CHECK(p > 0.2);
    CHECK(p <= 1.0);
  }
  MESSAGE("chosen shrink: outlier rows " << chosen_shrink(0) << ", " << chosen_shrink(1)
                                         << "; plain row " << chosen_shrink(2));
  // Norm 2.4 weighs the clipped outlier's own error heavily, so the shrink is mild but real.
  CHECK(chosen_shrink(0) < 1.0);
  CHECK(chosen_shrink(1) < 1.0);

  // A direct double-precision search picks the same shrink on every row.
  for (int64_t r = 0; r < W.size(0); ++r) {
    CAPTURE(r);
    const float m = max_abs[r].item<float>();
    double best = std::numeric_limits<double>::infinity(), best_p = 0.0;
    for (int i = 0; i < 80; ++i) {
      const float p = static_cast<float>(1.0 - i / 100.0);
      const kmath::QuantParams qp{(m * p) / 7.0f, 0.0f};
      double err = 0.0;
      for (int64_t c = 0; c < W.size(1); ++c) {
        const float w = W[r][c].item<float>();
        err += std::pow(
            std::fabs(double(kmath::dequant(kmath::quant_code(w, qp, 4, true), qp)) - w), 2.4);
      }
      if (err < best) best = err, best_p = p;
    }
    CHECK(chosen_shrink(r) == best_p);
  }

  // Never worse than no clipping (the search includes p = 1), symmetric and asymmetric.
  for (bool sym : {true, false}) {
    CAPTURE(sym);
    const at::Tensor Wn = at::randn({32, 48}) * at::exp(at::randn({32, 48}));  // heavy tails
    const auto e0 = row_errors(Wn, fake_quant_weight(Wn, rtn_cfg(4, sym, false)), 2.4);
    const auto e1 = row_errors(Wn, fake_quant_weight(Wn, rtn_cfg(4, sym, true)), 2.4);
    int64_t better = 0;
    for (size_t r = 0; r < e0.size(); ++r) {
      CHECK(e1[r] <= e0[r] * (1 + 1e-6));
      better += e1[r] < e0[r];
    }
    CHECK(better > 0);
  }

  // Grouped RTN equals per-row RTN of each column slice.
  WeightQuantConfig grouped = mse;
  grouped.group_size = 16;
  const QuantizedWeight qg = rtn_quantize(W, grouped);
  CHECK((qg.scales.sizes() == at::IntArrayRef{16, 4}));
  for (int64_t j = 0; j < 4; ++j) {
    const QuantizedWeight qs = rtn_quantize(W.slice(1, 16 * j, 16 * (j + 1)), mse);
    CHECK(qg.scales.select(1, j).equal(qs.scales));
    CHECK(qg.codes.slice(1, 16 * j, 16 * (j + 1)).equal(qs.codes));
  }
}

TEST_CASE("RTN inputs: dtype, layout and dequantize are exact") {
  at::manual_seed(23);
  const at::Tensor W = at::randn({24, 40});
  const WeightQuantConfig cfg;  // 4-bit symmetric, MSE clip: DESIGN §5
  const QuantizedWeight q = rtn_quantize(W, cfg);
  // A transposed (non-contiguous) view of the same values gives the same result.
  const at::Tensor Wt = W.t().contiguous().t();
  CHECK_FALSE(Wt.is_contiguous());
  CHECK(rtn_quantize(Wt, cfg).codes.equal(q.codes));
  // fp16 / bf16 weights are quantized in fp32; the fake-quantized result keeps the input dtype.
  const at::Tensor Wh = W.to(at::kHalf);
  CHECK(rtn_quantize(Wh, cfg).codes.equal(rtn_quantize(Wh.to(at::kFloat), cfg).codes));
  CHECK((fake_quant_weight(Wh, cfg).scalar_type() == at::kHalf));
  CHECK((fake_quant_weight(W.to(at::kBFloat16), cfg).scalar_type() == at::kBFloat16));
  // dequantize() == scale · code exactly.
  const at::Tensor by_hand = q.scales.unsqueeze(1) * q.codes.to(at::kFloat);
  CHECK(count_diff(q.dequantize(), by_hand) == 0);
  CHECK(count_diff(fake_quant_weight(W, cfg), by_hand) == 0);
  CHECK(q.codes.min().item<int>() >= -8);
  CHECK(q.codes.max().item<int>() <= 7);
}

TEST_CASE("golden: QuaRot WeightQuantizer (RTN) and GPTQ") {
  const auto path = test::tests_dir() / "golden" / "weight_quant_quarot.json";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "missing " << path.string());
  const nlohmann::json g = nlohmann::json::parse(in);
  REQUIRE(g["format"] == "dptq-weight-quant-golden");
  const int64_t rows = g["rows"], cols = g["cols"];
  const at::Tensor W = floats(g["w"].get<std::vector<float>>(), {rows, cols});
  const at::Tensor H = floats(g["h"].get<std::vector<float>>(), {cols, cols});

  for (const auto& c : g["rtn"]) {
    WeightQuantConfig cfg = rtn_cfg(c["bits"], c["sym"], c["mse"]);
    cfg.group_size = c["group_size"];
    cfg.grid = c["grid"];
    cfg.max_shrink = c["max_shrink"];
    cfg.norm = c["norm"];
    CAPTURE(cfg.bits);
    CAPTURE(cfg.symmetric);
    CAPTURE(cfg.mse_clip);
    CAPTURE(cfg.group_size);
    CAPTURE(cfg.grid);
    const QuantizedWeight q = rtn_quantize(W, cfg);
    const at::Tensor codes = floats(c["codes"].get<std::vector<float>>(), {rows, cols});
    const at::Tensor scales = floats(c["scales"].get<std::vector<float>>(), q.scales.sizes().vec());
    CHECK(count_diff(q.codes.to(at::kFloat), codes) == 0);
    CHECK(count_diff(q.scales, scales) == 0);
    if (!cfg.symmetric)
      CHECK(count_diff(q.zeros,
                       floats(c["zeros"].get<std::vector<float>>(), q.scales.sizes().vec())) == 0);
    // QuaRot's quantize(W) output, bit for bit.
    CHECK(count_diff(q.dequantize(), floats(c["wq"].get<std::vector<float>>(), {rows, cols})) == 0);
  }

  for (const auto& c : g["gptq"]) {
    WeightQuantConfig cfg = rtn_cfg(c["bits"], c["sym"], c["mse"]);
    cfg.group_size = c["group_size"];
    GptqConfig gc;
    gc.block = c["block"];
    gc.act_order = c["act_order"];
    gc.static_groups = c["static_groups"];
    gc.damp = c["damp"];
    CAPTURE(cfg.bits);
    CAPTURE(cfg.symmetric);
    CAPTURE(cfg.group_size);
    CAPTURE(gc.block);
    CAPTURE(gc.act_order);
    CAPTURE(gc.static_groups);
    const QuantizedWeight q = gptq_quantize(W, H, cfg, gc);
    const at::Tensor codes = floats(c["codes"].get<std::vector<float>>(), {rows, cols});
    const at::Tensor scales = floats(c["scales"].get<std::vector<float>>(), q.scales.sizes().vec());
    // Products summed by BLAS may round differently across builds; the same build agrees exactly.
    const int64_t code_diff = count_diff(q.codes.to(at::kFloat), codes);
    const int64_t scale_diff = count_diff(q.scales, scales);
    MESSAGE("gptq golden (bits " << cfg.bits << ", group " << cfg.group_size << ", act_order "
                                 << gc.act_order << ", static " << gc.static_groups
                                 << "): " << code_diff << " of " << codes.numel() << " codes and "
                                 << scale_diff << " scales differ");
    CHECK(code_diff <= codes.numel() / 100);
    if (cfg.group_size == 0 || gc.static_groups)
      CHECK(scale_diff == 0);  // from W before any update
    CHECK(q.dequantize().select(1, 5).abs().sum().item<float>() == 0.0f);  // the dead input
  }
}

TEST_CASE("GPTQ: lower layer output error than RTN on correlated inputs") {
  at::manual_seed(101);
  const int64_t in = 128, out = 64;
  // Inputs with strongly correlated, unevenly scaled features (as after a norm layer).
  const at::Tensor mix = at::randn({in, in}) / std::sqrt(double(in)) + 0.5 * at::eye(in);
  const at::Tensor feature_scale = at::exp(0.75 * at::randn({in}));
  const auto inputs = [&](int64_t n) { return at::randn({n, in}).matmul(mix) * feature_scale; };
  const at::Tensor W = at::randn({out, in}) / std::sqrt(double(in));

  HessianAccumulator acc(in);
  for (int b = 0; b < 8; ++b) acc.add(inputs(256));  // 8 "sequences" of 256 tokens
  CHECK(acc.samples() == 8);
  const at::Tensor H = acc.hessian();
  const at::Tensor X_test = inputs(4096);

  const WeightQuantConfig cfg;
  const double err_rtn = output_error(X_test, W, rtn_quantize(W, cfg).dequantize());
  GptqConfig gc;
  gc.block = 32;  // several blocks, so the lazy updates matter
  gc.act_order = true;
  const QuantizedWeight q_act = gptq_quantize(W, H, cfg, gc);
  gc.act_order = false;
  const QuantizedWeight q_seq = gptq_quantize(W, H, cfg, gc);
  const double err_act = output_error(X_test, W, q_act.dequantize());
  const double err_seq = output_error(X_test, W, q_seq.dequantize());
  MESSAGE("relative output error ||XW^T - XWq^T|| / ||XW^T|| on held-out inputs: RTN "
          << err_rtn << ", GPTQ " << err_seq << ", GPTQ act-order " << err_act);
  CHECK(err_seq < 0.9 * err_rtn);
  CHECK(err_act < 0.9 * err_rtn);
  // GPTQ keeps the per-channel scales of RTN (found before the loop) and the int4 code range.
  CHECK(q_act.scales.equal(rtn_quantize(W, cfg).scales));
  CHECK(q_act.codes.min().item<int>() >= -8);
  CHECK(q_act.codes.max().item<int>() <= 7);

  // Other block sizes compute the same algorithm (up to rounding of the lazy updates).
  gc.act_order = true;
  gc.block = 128;
  const double err_one_block = output_error(X_test, W, gptq_quantize(W, H, cfg, gc).dequantize());
  CHECK(err_one_block == doctest::Approx(err_act).epsilon(0.02));

  // Asymmetric and grouped variants also beat their RTN.
  WeightQuantConfig asym = cfg;
  asym.symmetric = false;
  const double err_rtn_asym = output_error(X_test, W, rtn_quantize(W, asym).dequantize());
  const double err_gptq_asym = output_error(X_test, W, gptq_quantize(W, H, asym, gc).dequantize());
  WeightQuantConfig grouped = cfg;
  grouped.group_size = 32;
  gc.static_groups = true;
  const double err_rtn_group = output_error(X_test, W, rtn_quantize(W, grouped).dequantize());
  const double err_gptq_group =
      output_error(X_test, W, gptq_quantize(W, H, grouped, gc).dequantize());
  gc.act_order = false;
  gc.static_groups = false;
  const double err_gptq_group_dyn =
      output_error(X_test, W, gptq_quantize(W, H, grouped, gc).dequantize());
  MESSAGE("asymmetric: RTN " << err_rtn_asym << ", GPTQ " << err_gptq_asym << "; group 32: RTN "
                             << err_rtn_group << ", GPTQ static act-order " << err_gptq_group
                             << ", GPTQ sequential " << err_gptq_group_dyn);
  CHECK(err_gptq_asym < err_rtn_asym);
  CHECK(err_gptq_group < err_rtn_group);
  CHECK(err_gptq_group_dyn < err_rtn_group);
}

TEST_CASE("GPTQ with H = I is RTN; dead inputs; dequantize is exact") {
  at::manual_seed(7);
  const at::Tensor W = at::randn({20, 48});
  const at::Tensor I = at::eye(48);
  for (bool sym : {true, false}) {
    for (bool act_order : {false, true}) {
      CAPTURE(sym);
      CAPTURE(act_order);
      const WeightQuantConfig cfg = rtn_cfg(4, sym, true);
      GptqConfig gc;
      gc.block = 16;
      gc.act_order = act_order;
      // Hinv is diagonal: each column's error updates no other column.
      const QuantizedWeight g = gptq_quantize(W, I, cfg, gc);
      const QuantizedWeight r = rtn_quantize(W, cfg);
      CHECK(g.codes.equal(r.codes));
      CHECK(g.scales.equal(r.scales));
      CHECK(count_diff(g.dequantize(), r.dequantize()) == 0);
      WeightQuantConfig grouped = cfg;
      grouped.group_size = 12;
      gc.static_groups = true;
      CHECK(gptq_quantize(W, I, grouped, gc).codes.equal(rtn_quantize(W, grouped).codes));
    }
  }

  // Column 3 never active: H_33 = 0, its weights become exactly 0; the rest stays finite.
  at::Tensor X = at::randn({512, 48});
  X.select(1, 3).zero_();
  HessianAccumulator acc(48);
  acc.add(X.reshape({4, 128, 48}));
  CHECK(acc.samples() == 4);
  const QuantizedWeight q = gptq_quantize(W, acc.hessian(), WeightQuantConfig{}, GptqConfig{});
  CHECK(q.codes.select(1, 3).abs().sum().item<int>() == 0);
  const at::Tensor Wq = q.dequantize();
  CHECK(at::isfinite(Wq).all().item<bool>());
  // dequantize() == scale · code exactly, per channel and per group.
  CHECK(count_diff(Wq, q.scales.unsqueeze(1) * q.codes.to(at::kFloat)) == 0);
  WeightQuantConfig asym_grouped = rtn_cfg(4, false, true);
  asym_grouped.group_size = 16;
  GptqConfig gs;
  gs.static_groups = true;
  const QuantizedWeight qa = gptq_quantize(W, acc.hessian(), asym_grouped, gs);
  const at::Tensor s = qa.scales.repeat_interleave(16, 1), z = qa.zeros.repeat_interleave(16, 1);
  CHECK(count_diff(qa.dequantize(), s * (qa.codes.to(at::kFloat) - z)) == 0);
}

TEST_CASE("Hessian accumulator: GPTQ's running 2/n XᵀX") {
  at::manual_seed(9);
  HessianAccumulator acc(16);
  CHECK(acc.samples() == 0);
  CHECK(acc.hessian().abs().sum().item<float>() == 0.0f);
  const at::Tensor a = at::randn({10, 16}), b = at::randn({3, 7, 16}),
                   c = at::randn({5, 16}, at::kDouble);
  acc.add(a);  // one sample
  acc.add(b);  // three samples
  acc.add(c);  // one sample, converted to fp32
  CHECK(acc.samples() == 5);
  const at::Tensor all = at::cat({a.to(at::kDouble), b.reshape({-1, 16}).to(at::kDouble), c});
  const at::Tensor want = 2.0 / 5.0 * all.t().matmul(all);
  CHECK((acc.hessian().scalar_type() == at::kFloat));
  CHECK(at::allclose(acc.hessian().to(at::kDouble), want, 1e-5, 1e-5));

  const std::string msg = error_of([&] { acc.add(at::randn({4, 15})); }, ErrorKind::Shape);
  CHECK(contains(msg, "15 features, expected 16"));
  error_of([&] { acc.add(at::randn({16})); }, ErrorKind::Shape);
  error_of([&] { acc.add(at::ones({2, 16}, at::kInt)); }, ErrorKind::InvalidArgument);
  CHECK(acc.samples() == 5);  // failed adds change nothing
}

TEST_CASE("int4 packing: layout and round trips") {
  // Low nibble first; signed codes stored as their two's complement low 4 bits.
  const at::Tensor c =
      at::tensor(std::vector<int8_t>{1, 2, 3, -1, -8, 7, 0}, at::kChar).reshape({1, 7});
  const at::Tensor p = pack_int4(c);
  CHECK((p.scalar_type() == at::kByte));
  CHECK((p.sizes() == at::IntArrayRef{1, 4}));
  const std::vector<int> want{0x21, 0xf3, 0x78, 0x00};
  for (int j = 0; j < 4; ++j) CHECK(p[0][j].item<int>() == want[j]);
  CHECK(unpack_int4(p, 7, true).equal(c));

  at::manual_seed(1);
  for (int64_t cols : {1, 2, 7, 33, 64}) {
    CAPTURE(cols);
    const at::Tensor s = at::randint(-8, 8, {5, cols}, at::kChar);
    const at::Tensor u = at::randint(0, 16, {5, cols}, at::kChar);
    const at::Tensor ps = pack_int4(s), pu = pack_int4(u);
    CHECK(ps.size(1) == (cols + 1) / 2);
    CHECK(unpack_int4(ps, cols, true).equal(s));
    CHECK(unpack_int4(pu, cols, false).equal(u));
    if (cols % 2)
      CHECK((ps.select(1, cols / 2).to(at::kInt) >= 16).sum().item<int>() == 0);  // zero pad nibble
    // The same bytes read the other way: nibble v >= 8 is v - 16 when signed.
    CHECK(unpack_int4(pu, cols, true).equal(at::where(u >= 8, u - 16, u).to(at::kChar)));
  }
  // Leading dimensions are kept; quantized weights round-trip.
  const at::Tensor s3 = at::randint(-8, 8, {2, 3, 5}, at::kChar);
  CHECK(unpack_int4(pack_int4(s3), 5, true).equal(s3));
  const QuantizedWeight q = rtn_quantize(at::randn({6, 11}), WeightQuantConfig{});
  CHECK(unpack_int4(pack_int4(q.codes), 11, true).equal(q.codes));
  const QuantizedWeight qa = rtn_quantize(at::randn({6, 11}), rtn_cfg(4, false, true));
  CHECK(unpack_int4(pack_int4(qa.codes), 11, false).equal(qa.codes));
}

TEST_CASE("errors: one clear line") {
  const at::Tensor W = at::randn({4, 8});
  WeightQuantConfig bad;
  bad.bits = 9;
  CHECK(contains(error_of([&] { rtn_quantize(W, bad); }, ErrorKind::InvalidArgument),
                 "bits must be in [2, 8]"));
  bad = rtn_cfg(8, false, true);
  CHECK(contains(error_of([&] { rtn_quantize(W, bad); }, ErrorKind::InvalidArgument), "fit int8"));
  bad = WeightQuantConfig{};
  bad.max_shrink = 1.5;
  error_of([&] { rtn_quantize(W, bad); }, ErrorKind::InvalidArgument);
  bad = WeightQuantConfig{};
  bad.grid = 0;
  error_of([&] { rtn_quantize(W, bad); }, ErrorKind::InvalidArgument);
  bad = WeightQuantConfig{};
  bad.group_size = 3;
  CHECK(contains(error_of([&] { rtn_quantize(W, bad); }, ErrorKind::Shape),
                 "group_size 3 does not divide the 8 input columns"));
  CHECK(contains(
      error_of([&] { rtn_quantize(at::randn({8}), WeightQuantConfig{}); }, ErrorKind::Shape),
      "must be 2-D"));
  error_of(
      [&] {
        rtn_quantize(at::ones({2, 8}, at::kInt), WeightQuantConfig{});
      },
      ErrorKind::InvalidArgument);
  at::Tensor Wnan = W.clone();
  Wnan.index_put_({1, 1}, std::numeric_limits<float>::quiet_NaN());
  CHECK(contains(
      error_of([&] { rtn_quantize(Wnan, WeightQuantConfig{}); }, ErrorKind::InvalidArgument),
      "NaN"));

  // GPTQ: shapes, non-positive-definite H, incompatible options.
  const at::Tensor H = at::eye(8);
  CHECK(contains(error_of([&] { gptq_quantize(W, at::eye(7), WeightQuantConfig{}, GptqConfig{}); },
                          ErrorKind::Shape),
                 "gptq: H is [7, 7] but W [4, 8] needs [8, 8]"));
  const std::string not_pd = error_of(
      [&] { gptq_quantize(W, -H, WeightQuantConfig{}, GptqConfig{}); }, ErrorKind::InvalidArgument);
  MESSAGE("non-PD Hessian: " << not_pd);
  CHECK(contains(not_pd, "not positive definite"));
  // Indefinite (eigenvalues 15 and -1, unit diagonal): dampening by 1% cannot fix it.
  error_of(
      [&] {
        gptq_quantize(W, 2.0 * at::ones({8, 8}) - H, WeightQuantConfig{}, GptqConfig{});
      },
      ErrorKind::InvalidArgument);
  // Singular but positive semi-definite (two identical inputs): the default dampening fixes it.
  at::Tensor X = at::randn({64, 8});
  X.select(1, 1).copy_(X.select(1, 0));
  HessianAccumulator acc(8);
  acc.add(X);
  CHECK_NOTHROW(gptq_quantize(W, acc.hessian(), WeightQuantConfig{}, GptqConfig{}));
  WeightQuantConfig grouped;
  grouped.group_size = 4;
  CHECK(contains(
      error_of([&] { gptq_quantize(W, H, grouped, GptqConfig{}); }, ErrorKind::InvalidArgument),
      "static_groups"));
  GptqConfig bad_block;
  bad_block.block = 0;
  error_of([&] { gptq_quantize(W, H, WeightQuantConfig{}, bad_block); },
           ErrorKind::InvalidArgument);

  // Packing.
  CHECK(contains(error_of(
                     [&] {
                       pack_int4(at::tensor(std::vector<int8_t>{3, 16}, at::kChar));
                     },
                     ErrorKind::InvalidArgument),
                 "neither signed"));
  error_of(
      [&] {
        pack_int4(at::tensor(std::vector<int8_t>{-9, 0}, at::kChar));
      },
      ErrorKind::InvalidArgument);
  error_of(
      [&] {
        pack_int4(at::tensor(std::vector<int8_t>{-1, 9}, at::kChar));
      },
      ErrorKind::InvalidArgument);
  error_of([&] { pack_int4(at::zeros({2, 2}, at::kInt)); }, ErrorKind::InvalidArgument);
  CHECK(contains(error_of(
                     [&] {
                       unpack_int4(at::zeros({2, 3}, at::kByte), 7, true);
                     },
                     ErrorKind::Shape),
                 "7 columns need 4 bytes per row, got 3"));
}

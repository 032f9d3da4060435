// The profiler: planted massive activations found exactly on the synthetic model, every metric
// against a direct tensor computation, streaming accumulators, calibration input errors.
#include "dptq/profiler.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <random>

#include "dptq/error.hpp"
#include "dptq/histogram.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/quant.hpp"
#include "dptq/synthetic.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace {

fs::path calib_file() {
  static const fs::path p = [] {
    const fs::path dir = dptq::test::scratch_dir("profiler_calib");
    std::mt19937 rng(7);
    const std::vector<std::string> words = {"the", "quantized", "model", "stream", "of", "tokens", "jumps", "at",
                                            "layer", "3", "and", "vanishes", "later", ",", ".", "\n", "history"};
    std::ofstream out(dir / "calib.txt");
    for (int i = 0; i < 3000; ++i) out << words[rng() % words.size()] << ' ';
    return dir / "calib.txt";
  }();
  return p;
}

dptq::ProfileOptions small_options() {
  dptq::ProfileOptions o;
  o.calib = calib_file().string();
  o.samples = 6;
  o.seqlen = 48;
  o.topk = 4;
  return o;
}

// Exact quantile with the histogram's rank convention: the ceil(q·n)-th smallest.
double exact_quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t rank = std::clamp<size_t>(size_t(std::ceil(q * double(v.size()))), 1, v.size());
  return v[rank - 1];
}

// The synthetic model with a massive channel planted from block `emerge` to block `vanish`.
dptq::Model planted_model(int64_t layers, int64_t emerge, int64_t vanish) {
  dptq::SyntheticSpec spec;
  spec.n_layers = layers;
  spec.emerge_block = emerge;
  spec.vanish_block = vanish;
  return dptq::make_synthetic_model(spec);
}

}  // namespace

TEST_CASE("planted emergence and disappearance are found exactly; JR peaks there") {
  dptq::SyntheticSpec spec;
  spec.n_layers = 8;
  spec.emerge_block = 2;
  spec.vanish_block = 5;
  spec.massive_channel = 7;
  const dptq::Model m = dptq::make_synthetic_model(spec);
  const dptq::Trace t = dptq::profile_model(m, small_options());
  REQUIRE(t.streams.size() == 9);
  REQUIRE(t.blocks.size() == 8);
  for (int64_t l = 0; l <= 8; ++l) {
    INFO("stream h_" << l);
    const bool inside = l >= spec.emerge_block + 1 && l <= spec.vanish_block;
    CHECK(t.streams[size_t(l)].has_massive == inside);
    if (inside) {
      REQUIRE(!t.streams[size_t(l)].top.empty());
      CHECK(t.streams[size_t(l)].top[0].channel == spec.massive_channel);
      CHECK(std::fabs(t.streams[size_t(l)].top[0].value) == doctest::Approx(spec.magnitude).epsilon(0.01));
      CHECK(t.streams[size_t(l)].channel_absmax[7] >= 1000.f);
    }
  }
  for (int64_t l = 0; l < 8; ++l) {
    INFO("block " << l);
    CHECK(t.blocks[size_t(l)].emergence == (l == spec.emerge_block));
    CHECK(t.blocks[size_t(l)].disappearance == (l == spec.vanish_block));
  }
  REQUIRE(t.phases.size() == 1);
  CHECK(t.phases[0].first_stream == 3);
  CHECK(t.phases[0].last_stream == 5);
  // JR: the emergence block has the largest p99, the disappearance block the second largest.
  std::vector<std::pair<double, int64_t>> jr;
  for (const auto& b : t.blocks) jr.push_back({b.jump_ratio.p99, b.index});
  std::sort(jr.rbegin(), jr.rend());
  CHECK(jr[0].second == spec.emerge_block);
  CHECK(jr[1].second == spec.vanish_block);
  CHECK(jr[0].first > 5.0);
  CHECK(jr[2].first < 0.5);
  // A large jump drowns the history: HSNR at 4 bits is lowest at the emergence block.
  std::vector<std::pair<double, int64_t>> hs;
  for (const auto& b : t.blocks) hs.push_back({b.hsnr4_db.mean, b.index});
  CHECK(std::min_element(hs.begin(), hs.end())->second == spec.emerge_block);
  CHECK(t.meta.windows == 6);
  CHECK(t.meta.tokens == 6 * 48);
}

TEST_CASE("no planted outliers: no massive activations, no phases") {
  dptq::SyntheticSpec spec;
  spec.plant = false;
  const dptq::Model m = dptq::make_synthetic_model(spec);
  const dptq::Trace t = dptq::profile_model(m, small_options());
  for (const auto& s : t.streams) CHECK_FALSE(s.has_massive);
  for (const auto& b : t.blocks) {
    CHECK_FALSE(b.emergence);
    CHECK_FALSE(b.disappearance);
  }
  CHECK(t.phases.empty());
}

TEST_CASE("metrics equal direct computations on one window") {
  const dptq::Model m = planted_model(3, 0, 2);
  auto o = small_options();
  o.samples = 1;
  const dptq::Trace t = dptq::profile_model(m, o);
  const auto windows = dptq::calibration_windows(m, o);
  REQUIRE(windows.size() == 1);

  // Direct: run the blocks, keep every stream and a_l.
  const std::vector<int64_t> ids(windows[0].begin(), windows[0].end());
  const auto rope = dptq::rope_tables(m, o.seqlen);
  std::vector<at::Tensor> h = {dptq::embed_tokens(m, at::tensor(ids, at::kLong))};
  for (int64_t l = 0; l < 3; ++l) h.push_back(dptq::decoder_block(m, l, h.back(), rope));
  const auto& w = m.impl().w;
  for (int64_t l = 0; l < 3; ++l) {
    INFO("block " << l);
    const at::Tensor delta = h[size_t(l + 1)] - h[size_t(l)];
    const at::Tensor jr = (delta.norm(2, -1) / h[size_t(l)].norm(2, -1)).to(at::kDouble);
    const auto& b = t.blocks[size_t(l)];
    CHECK(b.jump_ratio.mean == doctest::Approx(jr.mean().item<double>()).epsilon(1e-5));
    CHECK(b.jump_ratio.max == doctest::Approx(jr.max().item<double>()).epsilon(1e-6));
    CHECK(b.jump_ratio.min == doctest::Approx(jr.min().item<double>()).epsilon(1e-6));
    const std::vector<double> jrv(jr.data_ptr<double>(), jr.data_ptr<double>() + jr.numel());
    CHECK(b.jump_ratio.p99 == doctest::Approx(exact_quantile(jrv, 0.99)).epsilon(0.006));
    CHECK(b.jump_ratio.p50 == doctest::Approx(exact_quantile(jrv, 0.5)).epsilon(0.006));
    const at::Tensor jr_inf = delta.abs().amax(-1) / h[size_t(l)].abs().amax(-1);
    CHECK(b.jump_ratio_inf.mean == doctest::Approx(jr_inf.mean().item<double>()).epsilon(1e-5));

    // HSNR with the tensor-level quantizer (dptq::fake_quant), P = γ of the next block's input norm.
    const at::Tensor gamma = l + 1 < 3 ? w.layers[size_t(l + 1)].attn_norm : w.final_norm;
    const at::Tensor hist = (h[size_t(l)] * gamma).to(at::kDouble).pow(2).sum(-1);
    for (int bits : {4, 8}) {
      const at::Tensor x = h[size_t(l + 1)] * gamma;
      const at::Tensor noise = (dptq::fake_quant(x, dptq::default_act_quant(bits)) - x).to(at::kDouble).pow(2).sum(-1);
      const at::Tensor db = 10.0 * at::log10(hist / noise);
      const auto& agg = bits == 4 ? b.hsnr4_db : b.hsnr8_db;
      CHECK(agg.mean == doctest::Approx(db.mean().item<double>()).epsilon(1e-4));
      CHECK(agg.min == doctest::Approx(db.min().item<double>()).epsilon(1e-4));
      const std::vector<double> v(db.data_ptr<double>(), db.data_ptr<double>() + db.numel());
      CHECK(std::fabs(agg.p1 - exact_quantile(v, 0.01)) < 0.02);  // 0.01 dB bins
    }
  }
  // Site statistics of block 1's down_proj input, recomputed directly.
  {
    // The down_proj input of block 1, grabbed by re-running the block with a tap.
    struct Grab : dptq::ForwardTaps {
      at::Tensor down;
      uint32_t wants(int64_t) const override { return dptq::kTapDown; }
      void collect(int64_t, dptq::TapPoint, const at::Tensor& x) override { down = x.clone(); }
    } grab;
    dptq::decoder_block(m, 1, h[1], rope, &grab);
    REQUIRE(grab.down.defined());
    const at::Tensor x = grab.down;
    const auto& site = t.sites[1][3];
    REQUIRE(int64_t(site.channel_absmax.size()) == x.size(1));
    const at::Tensor chmax = x.abs().amax(0);
    for (int64_t c = 0; c < x.size(1); c += 17) CHECK(site.channel_absmax[size_t(c)] == chmax[c].item<float>());
    const at::Tensor xd = x.to(at::kDouble);
    const double mu = xd.mean().item<double>();
    const double var = (xd - mu).pow(2).mean().item<double>();
    const double kurt = (xd - mu).pow(4).mean().item<double>() / (var * var);
    CHECK(site.kurtosis == doctest::Approx(kurt).epsilon(1e-4));  // float sums within a row
    const at::Tensor q = dptq::fake_quant(x, dptq::default_act_quant(4));
    const double sqnr = 10 * std::log10(xd.pow(2).sum().item<double>() / (q.to(at::kDouble) - xd).pow(2).sum().item<double>());
    CHECK(site.sqnr4_db == doctest::Approx(sqnr).epsilon(1e-4));
    const at::Tensor counts = at::bincount(dptq::quant_codes(x, dptq::default_act_quant(4)).flatten(), {}, 16).to(at::kDouble);
    const at::Tensor p = counts / counts.sum();
    const double entropy = -(p * at::log2(at::where(p > 0, p, 1.0))).sum().item<double>();
    CHECK(site.code_entropy_bits == doctest::Approx(entropy).epsilon(1e-9));
    CHECK(site.code_entropy_bits <= 4.0);
    const at::Tensor tok = x.abs().amax(1).to(at::kDouble);
    CHECK(site.token_absmax.max == doctest::Approx(tok.max().item<double>()));
    CHECK(site.token_absmax.mean == doctest::Approx(tok.mean().item<double>()).epsilon(1e-5));
  }
}

TEST_CASE("QuaRot view: HSNR uses the rotated stream, which spreads a massive channel") {
  dptq::SyntheticSpec spec;
  const dptq::Model m = dptq::make_synthetic_model(spec);
  auto o = small_options();
  o.samples = 2;
  const dptq::Trace plain = dptq::profile_model(m, o);
  o.rotation = "quarot";
  const dptq::Trace rot = dptq::profile_model(m, o);
  CHECK(rot.meta.rotation == "quarot");
  // Streams and Jump Ratios do not depend on the quantizer's basis.
  for (size_t l = 0; l < plain.blocks.size(); ++l)
    CHECK(rot.blocks[l].jump_ratio.mean == doctest::Approx(plain.blocks[l].jump_ratio.mean).epsilon(1e-6));
  // Inside the massive phase the rotation spreads the outlier over all channels: the qkv site's
  // largest per-channel absmax is far smaller than without rotation.
  const auto& s_plain = plain.sites[3][0].channel_absmax;
  const auto& s_rot = rot.sites[3][0].channel_absmax;
  CHECK(*std::max_element(s_rot.begin(), s_rot.end()) < 0.5f * *std::max_element(s_plain.begin(), s_plain.end()));
  CHECK_THROWS_AS(([&] { auto o2 = o; o2.rotation = "spin"; dptq::profile_model(m, o2); })(), dptq::Error);
}

TEST_CASE("the device path (stream-stats kernels' entries, tensor ops) gives the host loops' trace") {
  // CUDA taps are reduced on the device: device_ops::stream_stats / pair_terms and tensor
  // operations. tensor_stats runs that path on CPU tensors (the kernels' CPU references), so it is
  // checked here against the vectorized host loops; on a GPU the kernels' suites compare the
  // kernels with the same references.
  const dptq::Model m = planted_model(6, 2, 4);
  for (const char* rotation : {"none", "quarot"}) {
    CAPTURE(rotation);
    auto o = small_options();
    o.samples = 3;
    o.rotation = rotation;
    const dptq::Trace host = dptq::profile_model(m, o);
    o.tensor_stats = true;
    const dptq::Trace dev = dptq::profile_model(m, o);
    auto same_agg = [](const dptq::Aggregate& a, const dptq::Aggregate& b) {
      CHECK(a.count == b.count);
      CHECK(a.mean == doctest::Approx(b.mean).epsilon(1e-5));
      CHECK(a.min == doctest::Approx(b.min).epsilon(1e-5));
      CHECK(a.max == doctest::Approx(b.max).epsilon(1e-5));
      CHECK(a.p50 == doctest::Approx(b.p50).epsilon(1e-2));  // a bin edge may move by rounding
    };
    REQUIRE(dev.streams.size() == host.streams.size());
    for (size_t l = 0; l < host.streams.size(); ++l) {
      CAPTURE(l);
      const dptq::StreamStats &a = host.streams[l], &b = dev.streams[l];
      CHECK(a.top1_abs == b.top1_abs);
      CHECK(a.median_abs == b.median_abs);  // the same bins: exact
      CHECK(a.n_massive == b.n_massive);
      CHECK(a.channel_absmax == b.channel_absmax);
      CHECK(a.position_absmax_mean == b.position_absmax_mean);
      REQUIRE(a.top.size() == b.top.size());
      for (size_t i = 0; i < a.top.size(); ++i) CHECK(a.top[i].value == b.top[i].value);
    }
    for (size_t l = 0; l < host.blocks.size(); ++l) {
      CAPTURE(l);
      const dptq::BlockStats &a = host.blocks[l], &b = dev.blocks[l];
      same_agg(a.jump_ratio, b.jump_ratio);
      same_agg(a.jump_ratio_mlp, b.jump_ratio_mlp);
      same_agg(a.hsnr4_db, b.hsnr4_db);
      same_agg(a.hsnr8_db, b.hsnr8_db);
      same_agg(a.hsnr4_mlp_db, b.hsnr4_mlp_db);
      for (size_t s = 0; s < host.sites[l].size(); ++s) {
        CAPTURE(s);
        const dptq::SiteStats &x = host.sites[l][s], &y = dev.sites[l][s];
        CHECK(x.channel_absmax == y.channel_absmax);
        same_agg(x.token_absmax, y.token_absmax);
        CHECK(x.kurtosis == doctest::Approx(y.kurtosis).epsilon(1e-5));
        CHECK(x.sqnr4_db == doctest::Approx(y.sqnr4_db).epsilon(1e-5));
        CHECK(x.code_entropy_bits == doctest::Approx(y.code_entropy_bits).epsilon(1e-6));
      }
    }
    CHECK(dev.phases.size() == host.phases.size());
  }
}

TEST_CASE("snapshots after every window; progress and cancellation") {
  const dptq::Model m = dptq::make_synthetic_model({});
  auto o = small_options();
  o.samples = 4;
  std::vector<int64_t> seen;
  dptq::Progress progress;
  const dptq::Trace t = dptq::profile_model(m, o, &progress, [&](const dptq::Trace& s) { seen.push_back(s.meta.windows); });
  CHECK(seen == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(progress.snapshot().done == 4);
  dptq::Progress cancel;
  int calls = 0;
  CHECK_THROWS_AS(dptq::profile_model(m, o, &cancel, [&](const dptq::Trace&) { if (++calls == 2) cancel.cancel(); }), dptq::Error);
  CHECK(calls == 2);
}

TEST_CASE("histograms: quantiles within the documented error") {
  std::mt19937 rng(3);
  std::lognormal_distribution<double> ln(0.0, 2.0);
  std::normal_distribution<double> nd(10.0, 5.0);
  dptq::LogHistogram lh;
  dptq::LinearHistogram lin;
  std::vector<double> a, b;
  for (int i = 0; i < 20000; ++i) {
    const double x = ln(rng), y = nd(rng);
    lh.add(float(x));
    a.push_back(double(float(x)));
    lin.add(y);
    b.push_back(y);
  }
  for (double q : {0.01, 0.5, 0.99}) {
    CHECK(lh.quantile(q) == doctest::Approx(exact_quantile(a, q)).epsilon(0.0055));
    CHECK(std::fabs(lin.quantile(q) - exact_quantile(b, q)) <= 0.01);
  }
  CHECK(lh.quantile(1.0) == *std::max_element(a.begin(), a.end()));
  lin.add(std::numeric_limits<double>::infinity());
  CHECK(lin.max() == std::numeric_limits<double>::infinity());
  CHECK(std::isfinite(lin.mean()));
}

TEST_CASE("calibration input errors") {
  const dptq::Model m = dptq::make_synthetic_model({});
  auto o = small_options();
  auto msg = [&](dptq::ProfileOptions oo) {
    try {
      dptq::calibration_windows(m, oo);
    } catch (const dptq::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto bad = o;
  bad.seqlen = 1;
  CHECK(msg(bad).find("--seqlen must be at least 2") != std::string::npos);
  bad = o;
  bad.seqlen = 4096;
  CHECK(msg(bad).find("exceeds the model context 2048") != std::string::npos);
  bad = o;
  bad.calib = (dptq::test::scratch_dir("calib_bad") / "missing.txt").string();
  CHECK(msg(bad).find("missing.txt: cannot open") != std::string::npos);
  const fs::path empty = dptq::test::scratch_dir("calib_empty") / "empty.txt";
  std::ofstream(empty) << "  \n";
  bad = o;
  bad.calib = empty.string();
  CHECK(msg(bad).find("empty.txt: calibration text is empty") != std::string::npos);
  bad = o;
  bad.seqlen = 2000;
  CHECK(msg(bad).find("fewer than one window") == std::string::npos);  // 3000 words is enough
  const auto w1 = dptq::calibration_windows(m, o), w2 = dptq::calibration_windows(m, o);
  CHECK(w1 == w2);  // seeded
  auto o3 = o;
  o3.seed = 99;
  CHECK(dptq::calibration_windows(m, o3) != w1);
}

TEST_CASE("builtin calibration corpus exists and is varied") {
  const std::string text = dptq::builtin_calibration_text();
  CHECK(text.size() > 40000);
  CHECK(text.find("def ") != std::string::npos);  // code
  CHECK(text.find("?") != std::string::npos);     // dialogue
}

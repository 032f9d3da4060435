// Streaming instrumented calibration: taps on every block, fixed-size running accumulators,
// snapshot Traces. Metric definitions: DESIGN §4 and docs/metrics.md.
#include "dptq/profiler.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <mutex>
#include <random>

#include "dptq/device_ops.hpp"
#include "dptq/error.hpp"
#include "dptq/histogram.hpp"
#include "dptq/kernels/quant_math.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/perplexity.hpp"
#include "dptq/quant.hpp"
#include "dptq/rotation.hpp"

#ifndef DPTQ_ASSETS_DIR
#define DPTQ_ASSETS_DIR "assets"
#endif

namespace fs = std::filesystem;

namespace dptq {

fs::path assets_dir() {
  if (const char* env = std::getenv("DPTQ_ASSETS")) return env;
  return DPTQ_ASSETS_DIR;
}

std::string builtin_calibration_text() {
  const fs::path dir = assets_dir() / "calibration";
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
  if (ec || files.empty()) throw Error(ErrorKind::Io, dir.string(), "no built-in calibration texts (*.txt) found");
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  std::string text;
  for (const auto& f : files) {
    if (!text.empty()) text += "\n\n";
    text += read_text_file(f);
  }
  return text;
}

std::vector<int32_t> calibration_tokens(const Model& model, const std::string& calib) {
  const bool builtin = calib == "builtin";
  const std::string text = builtin ? builtin_calibration_text() : read_text_file(calib);
  const std::string source = builtin ? (assets_dir() / "calibration").string() : calib;
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    throw Error(ErrorKind::InvalidArgument, source, "calibration text is empty");
  return model.tokenizer().encode(text, /*with_bos=*/true);
}

std::vector<std::vector<int32_t>> calibration_windows(const Model& model, const ProfileOptions& o) {
  if (o.samples < 1) throw Error(ErrorKind::InvalidArgument, "", "--samples must be at least 1");
  if (o.seqlen < 2) throw Error(ErrorKind::InvalidArgument, "", "--seqlen must be at least 2 (got " + std::to_string(o.seqlen) + ")");
  const int64_t ctx = model.config().max_context;
  if (ctx > 0 && o.seqlen > ctx)
    throw Error(ErrorKind::InvalidArgument, "", "--seqlen " + std::to_string(o.seqlen) + " exceeds the model context " + std::to_string(ctx));
  const std::string source = o.calib == "builtin" ? (assets_dir() / "calibration").string() : o.calib;
  const std::vector<int32_t> ids = calibration_tokens(model, o.calib);
  const int64_t usable = int64_t(ids.size()) - std::max<int64_t>(o.holdout_tokens, 0);
  if (usable < o.seqlen)
    throw Error(ErrorKind::InvalidArgument, source, "calibration text has " + std::to_string(ids.size()) +
                " tokens" + (o.holdout_tokens > 0 ? " (" + std::to_string(o.holdout_tokens) + " held out)" : std::string()) +
                ", fewer than one window of --seqlen " + std::to_string(o.seqlen));
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int64_t> start(0, usable - o.seqlen);
  std::vector<std::vector<int32_t>> windows;
  for (int64_t s = 0; s < o.samples; ++s) {
    const int64_t b = start(rng);
    windows.emplace_back(ids.begin() + b, ids.begin() + b + o.seqlen);
  }
  return windows;
}

namespace {

Aggregate aggregate_of(const LogHistogram& h) {
  return {h.mean(), h.min(), h.max(), h.quantile(0.01), h.quantile(0.5), h.quantile(0.99), h.count()};
}
Aggregate aggregate_of(const LinearHistogram& h) {
  return {h.mean(), h.min(), h.max(), h.quantile(0.01), h.quantile(0.5), h.quantile(0.99), h.count()};
}

struct StreamAcc {
  LogHistogram abs;
  std::vector<float> channel_absmax;
  std::vector<double> position_sum;
  std::vector<MassiveEntry> top;
};

struct BlockAcc {
  LogHistogram jr, jr_inf, jr_attn, jr_mlp;
  LinearHistogram hsnr4, hsnr8, hsnr4_mlp, hsnr8_mlp;
};

struct SiteAcc {
  std::vector<float> channel_absmax;
  LogHistogram token_absmax;
  double s1 = 0, s2 = 0, s3 = 0, s4 = 0;  // moment sums of all entries
  int64_t n = 0;
  double signal = 0, noise = 0;           // Σx², Σ(Q4(x) - x)²
  std::array<int64_t, 16> codes{};
};

// Range of one row (vectorized).
inline void row_minmax(const float* xs, int64_t n, float& lo, float& hi) {
  float a = xs[0], b = xs[0];
#pragma omp simd reduction(min : a) reduction(max : b)
  for (int64_t c = 0; c < n; ++c) {
    a = xs[c] < a ? xs[c] : a;
    b = xs[c] > b ? xs[c] : b;
  }
  lo = a;
  hi = b;
}

// Σ(Q(x) - x)² over one row / group with the quantizer parameters p (vectorized; float partial
// sums within a row, double across rows).
inline double quant_noise(const float* xs, int64_t n, const kmath::QuantParams& p, float qlo, float qhi) {
  float e2 = 0.f;
#pragma omp simd reduction(+ : e2)
  for (int64_t c = 0; c < n; ++c) {
    const float q = kmath::quant_code_f(xs[c], p.scale, p.zero, qlo, qhi);
    const float e = p.scale * (q - p.zero) - xs[c];
    e2 += e * e;
  }
  return double(e2);
}

// Per-row statistics of a site input x [T, C] under the 4-bit quantizer `q`: one vectorized pass
// for absmax and moments, one for the quantizer (codes counted in a small scalar loop). Parallel
// over rows; accumulators merged under a lock.
void add_site(SiteAcc& acc, const at::Tensor& x_in, const kmath::ActQuantConfig& q) {
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const int64_t T = x.size(0), C = x.size(1);
  if (acc.channel_absmax.empty()) acc.channel_absmax.assign(size_t(C), 0.f);
  const float* base = x.data_ptr<float>();
  const int64_t g = q.group_size > 0 ? q.group_size : C;
  const float qlo = float(kmath::quant_minq(q.bits, q.sym)), qhi = float(kmath::quant_maxq(q.bits, q.sym));
  std::mutex mu;
  at::parallel_for(0, T, 8, [&](int64_t r0, int64_t r1) {
    std::vector<float> chmax(static_cast<size_t>(C), 0.f), codes_f(static_cast<size_t>(g));
    std::vector<float> row_absmax;
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0, err = 0;
    std::array<int64_t, 16> codes{};
    float* cm = chmax.data();
    for (int64_t r = r0; r < r1; ++r) {
      const float* xs = base + r * C;
      float amax = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f, a4 = 0.f;
#pragma omp simd reduction(max : amax) reduction(+ : a1, a2, a3, a4)
      for (int64_t c = 0; c < C; ++c) {
        const float v = xs[c], av = v < 0 ? -v : v, v2 = v * v;
        amax = av > amax ? av : amax;
        cm[c] = av > cm[c] ? av : cm[c];
        a1 += v; a2 += v2; a3 += v2 * v; a4 += v2 * v2;
      }
      row_absmax.push_back(amax);
      s1 += a1; s2 += a2; s3 += a3; s4 += a4;
      for (int64_t c0 = 0; c0 < C; c0 += g) {
        float lo, hi;
        row_minmax(xs + c0, g, lo, hi);
        const kmath::QuantParams p = kmath::act_quant_params(lo, hi, q.bits, q.sym, q.clip_ratio, q.group_size == 0);
        err += quant_noise(xs + c0, g, p, qlo, qhi);
        float* cf = codes_f.data();
#pragma omp simd
        for (int64_t c = 0; c < g; ++c) cf[c] = kmath::quant_code_f(xs[c0 + c], p.scale, p.zero, qlo, qhi);
        for (int64_t c = 0; c < g; ++c) ++codes[size_t(int(cf[c] - qlo)) & 15];
      }
    }
    std::lock_guard lock(mu);
    for (int64_t c = 0; c < C; ++c) acc.channel_absmax[size_t(c)] = std::max(acc.channel_absmax[size_t(c)], cm[c]);
    for (float v : row_absmax) acc.token_absmax.add(v);
    acc.s1 += s1; acc.s2 += s2; acc.s3 += s3; acc.s4 += s4;
    acc.signal += s2; acc.noise += err;
    for (size_t i = 0; i < 16; ++i) acc.codes[i] += codes[i];
  });
  acc.n += T * C;
}

// add_site with tensor operations on x's device (the path of CUDA taps; ProfileOptions::
// tensor_stats runs it on CPU tensors so tests can compare it with add_site): only a few numbers
// per row and per channel come back to the host. The quantizer is quant_act_codes_on_device, the
// same arithmetic as add_site's (its codes equal quant_codes, test_int_engine).
void add_site_tensor(SiteAcc& acc, const at::Tensor& x_in, const kmath::ActQuantConfig& q) {
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const int64_t T = x.size(0), C = x.size(1);
  if (acc.channel_absmax.empty()) acc.channel_absmax.assign(size_t(C), 0.f);
  const at::Tensor ax = x.abs();
  const at::Tensor chmax = ax.amax(0).cpu(), rowmax = ax.amax(1).cpu();
  const float* cm = chmax.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) acc.channel_absmax[size_t(c)] = std::max(acc.channel_absmax[size_t(c)], cm[c]);
  acc.token_absmax.add(rowmax.data_ptr<float>(), T);
  const at::Tensor xd = x.to(at::kDouble), x2 = xd * xd;
  const ActCodes codes = quant_act_codes_on_device(x, ActQuantConfig{q.bits, !q.sym, q.clip_ratio, q.group_size});
  const at::Tensor deq = (codes.scale.unsqueeze(1) * (codes.codes.to(at::kFloat) + codes.offset.to(at::kFloat).unsqueeze(1)))
                             .reshape({T, C});
  const at::Tensor sums = at::stack({xd.sum(), x2.sum(), (x2 * xd).sum(), (x2 * x2).sum(), (deq - x).pow(2).to(at::kDouble).sum()}).cpu();
  const double* sp = sums.data_ptr<double>();
  acc.s1 += sp[0]; acc.s2 += sp[1]; acc.s3 += sp[2]; acc.s4 += sp[3];
  acc.signal += sp[1]; acc.noise += sp[4];
  const at::Tensor counts = at::bincount(codes.codes.flatten().to(at::kLong).bitwise_and(15), {}, 16).cpu();
  for (size_t i = 0; i < 16; ++i) acc.codes[i] += counts.data_ptr<int64_t>()[i];
  acc.n += T * C;
}

// Σ(Q_b(x) - x)² per row of x [T, C] for b = 4 and 8 (per-token quantizers of the trace settings).
void quant_noise_rows(const at::Tensor& x_in, const kmath::ActQuantConfig& q4, const kmath::ActQuantConfig& q8,
                      std::vector<double>& noise4, std::vector<double>& noise8) {
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const int64_t T = x.size(0), C = x.size(1);
  noise4.assign(size_t(T), 0);
  noise8.assign(size_t(T), 0);
  const float* base = x.data_ptr<float>();
  at::parallel_for(0, T, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xs = base + r * C;
      float lo, hi;
      row_minmax(xs, C, lo, hi);
      for (int pass = 0; pass < 2; ++pass) {
        const kmath::ActQuantConfig& q = pass == 0 ? q4 : q8;
        const kmath::QuantParams p = kmath::act_quant_params(lo, hi, q.bits, q.sym, q.clip_ratio, true);
        (pass == 0 ? noise4 : noise8)[size_t(r)] =
            quant_noise(xs, C, p, float(kmath::quant_minq(q.bits, q.sym)), float(kmath::quant_maxq(q.bits, q.sym)));
      }
    }
  });
}

class Profiler final : public ForwardTaps {
 public:
  Profiler(const Model& model, const ProfileOptions& opts) : model_(model), opts_(opts) {
    const ModelConfig& c = model.config();
    L_ = c.n_layers;
    streams_.resize(size_t(L_ + 1));
    blocks_.resize(size_t(L_));
    sites_.resize(size_t(L_));
    for (auto& s : streams_) {
      s.channel_absmax.assign(size_t(c.d_model), 0.f);
      s.position_sum.assign(size_t(opts.seqlen), 0.0);
    }
    q4_ = to_kmath(default_act_quant(4), c.d_model);
    q8_ = to_kmath(default_act_quant(8), c.d_model);
    kv4_ = to_kmath(default_kv_quant(c.head_dim, 4), c.n_kv_heads * c.head_dim);
    if (opts.rotation == "quarot") {
      const uint64_t s = opts.rotation_seed;
      auto f = [](const at::Tensor& t) { return t.to(at::kFloat); };
      r1_ = f(random_hadamard(c.d_model, s));
      r_ff_ = f(random_hadamard(c.d_ff, s + 1));
      r_o_ = f(at::kron(random_hadamard(c.n_heads, s + 2), random_hadamard(c.head_dim, s + 3)));
      r_hd_ = f(random_hadamard(c.head_dim, s + 3));
    } else if (opts.rotation != "none") {
      throw Error(ErrorKind::InvalidArgument, "", "unknown --rotation '" + opts.rotation + "' (expected none or quarot)");
    }
  }

  void begin_window(int64_t window, const std::vector<int32_t>* ids) {
    window_ = window;
    ids_ = ids;
  }

  uint32_t wants(int64_t) const override {
    return kTapBlockInput | kTapAttnResidual | kTapBlockOutput | kTapQkv | kTapO | kTapGateUp | kTapDown | kTapK | kTapV;
  }

  void collect(int64_t layer, TapPoint point, const at::Tensor& x) override {
    // Taps on a CUDA device stay there: the statistics are reduced on the device (the stream-stats
    // kernels and tensor operations) and only per-row / per-channel summaries come back. CPU taps
    // take the vectorized host loops unless opts_.tensor_stats asks for the device path.
    tensor_path_ = !x.is_cpu() || opts_.tensor_stats;
    if (r1_.defined() && r1_.device() != x.device())
      for (at::Tensor* r : {&r1_, &r_ff_, &r_o_, &r_hd_}) *r = r->to(x.device());
    switch (point) {
      case kTapBlockInput: h_ = x; add_stream(layer, x); break;
      case kTapAttnResidual: a_ = x; break;
      case kTapBlockOutput:
        add_block(layer, h_, a_, x);
        if (layer == L_ - 1) add_stream(L_, x);
        break;
      case kTapQkv: site(sites_[size_t(layer)][0], view_norm_input(x, h_), q4_); break;
      case kTapO: site(sites_[size_t(layer)][1], rotate(x, r_o_), q4_); break;
      case kTapGateUp: site(sites_[size_t(layer)][2], view_norm_input(x, a_), q4_); break;
      case kTapDown: site(sites_[size_t(layer)][3], rotate(x, r_ff_), to_kmath(default_act_quant(4), x.size(1))); break;
      case kTapK: site(sites_[size_t(layer)][4], rotate_heads(x), kv4_); break;
      case kTapV: site(sites_[size_t(layer)][5], rotate_heads(x), kv4_); break;
    }
  }

  void end_window() { ++windows_done_; }

  Trace snapshot(const std::string& calib_source) const {
    const ModelConfig& c = model_.config();
    Trace t;
    TraceMeta& m = t.meta;
    m.model_path = model_.info().path.string();
    m.model_name = model_.info().name;
    m.model_fingerprint = model_.info().fingerprint;
    m.tokenizer = model_.info().tokenizer_kind;
    m.calib_source = calib_source;
    m.windows = windows_done_;
    m.seqlen = opts_.seqlen;
    m.tokens = windows_done_ * opts_.seqlen;
    m.seed = opts_.seed;
    m.rotation = opts_.rotation;
    m.rotation_seed = opts_.rotation_seed;
    m.massive_abs_threshold = opts_.massive_abs_threshold;
    m.massive_rel_threshold = opts_.massive_rel_threshold;
    m.topk = opts_.topk;
    m.act_clip_4bit = q4_.clip_ratio;
    m.act_clip_8bit = q8_.clip_ratio;
    m.act_asymmetric = !q4_.sym;
    m.dptq_version = "0.1.0";
    m.n_layers = L_;
    m.d_model = c.d_model;
    m.created_utc = utc_now();

    for (int64_t l = 0; l <= L_; ++l) {
      const StreamAcc& a = streams_[size_t(l)];
      StreamStats s;
      s.index = l;
      s.top1_abs = a.abs.max();
      s.median_abs = a.abs.quantile(0.5);
      s.ratio = s.median_abs > 0 ? s.top1_abs / s.median_abs : 0.0;
      const double threshold = std::max(opts_.massive_abs_threshold, opts_.massive_rel_threshold * s.median_abs);
      s.has_massive = a.abs.count() > 0 && s.top1_abs >= threshold;
      s.n_massive = s.has_massive ? std::max<int64_t>(1, a.abs.count_at_least(threshold)) : 0;
      s.top = a.top;
      s.channel_absmax = a.channel_absmax;
      s.position_absmax_mean.resize(a.position_sum.size());
      for (size_t i = 0; i < a.position_sum.size(); ++i)
        s.position_absmax_mean[i] = float(windows_done_ ? a.position_sum[i] / double(windows_done_) : 0.0);
      t.streams.push_back(std::move(s));
    }
    for (int64_t l = 0; l < L_; ++l) {
      const BlockAcc& a = blocks_[size_t(l)];
      BlockStats b;
      b.index = l;
      b.jump_ratio = aggregate_of(a.jr);
      b.jump_ratio_inf = aggregate_of(a.jr_inf);
      b.jump_ratio_attn = aggregate_of(a.jr_attn);
      b.jump_ratio_mlp = aggregate_of(a.jr_mlp);
      b.hsnr4_db = aggregate_of(a.hsnr4);
      b.hsnr8_db = aggregate_of(a.hsnr8);
      b.hsnr4_mlp_db = aggregate_of(a.hsnr4_mlp);
      b.hsnr8_mlp_db = aggregate_of(a.hsnr8_mlp);
      t.blocks.push_back(b);
      std::array<SiteStats, kNumSites> sites;
      for (int s = 0; s < kNumSites; ++s) {
        const SiteAcc& sa = sites_[size_t(l)][size_t(s)];
        SiteStats& st = sites[size_t(s)];
        st.channel_absmax = sa.channel_absmax;
        st.token_absmax = aggregate_of(sa.token_absmax);
        if (sa.n > 0) {
          const double n = double(sa.n), mu = sa.s1 / n;
          const double m2 = sa.s2 / n - mu * mu;
          const double m4 = sa.s4 / n - 4 * mu * sa.s3 / n + 6 * mu * mu * sa.s2 / n - 3 * mu * mu * mu * mu;
          st.kurtosis = m2 > 0 ? m4 / (m2 * m2) : 0.0;
          st.sqnr4_db = sa.noise > 0 ? 10.0 * std::log10(sa.signal / sa.noise) : std::numeric_limits<double>::infinity();
          double entropy = 0;
          int64_t total = 0;
          for (int64_t k : sa.codes) total += k;
          for (int64_t k : sa.codes)
            if (k > 0) entropy -= double(k) / double(total) * std::log2(double(k) / double(total));
          st.code_entropy_bits = entropy;
        }
      }
      t.sites.push_back(std::move(sites));
    }
    mark_phases(t);
    return t;
  }

 private:
  void site(SiteAcc& acc, const at::Tensor& x, const kmath::ActQuantConfig& q) const {
    if (tensor_path_) add_site_tensor(acc, x, q);
    else add_site(acc, x, q);
  }

  // The quantizer's basis at the input of block l+1 (DESIGN §4.4): γ ⊙ x, or x·R1 under QuaRot.
  at::Tensor project(const at::Tensor& x, const at::Tensor& gamma) const {
    // γ lives on the model's device, in its dtype.
    return r1_.defined() ? at::matmul(x.to(at::kFloat), r1_) : x.to(at::kFloat) * gamma.to(x.device(), at::kFloat);
  }
  static at::Tensor rotate(const at::Tensor& x, const at::Tensor& r) { return r.defined() ? at::matmul(x.to(at::kFloat), r) : x; }
  at::Tensor rotate_heads(const at::Tensor& x) const {
    if (!r_hd_.defined()) return x;
    const int64_t T = x.size(0), hd = r_hd_.size(0);
    return at::matmul(x.to(at::kFloat).view({T, -1, hd}), r_hd_).reshape({T, -1});
  }
  // qkv / gate_up inputs: as-is (γ applied) without rotation; R1ᵀ·(stream/rms), γ folded, under QuaRot.
  at::Tensor view_norm_input(const at::Tensor& x, const at::Tensor& stream) const {
    if (!r1_.defined()) return x;
    const at::Tensor s = stream.to(at::kFloat);
    return at::matmul(s * at::rsqrt(s.pow(2).mean(-1, true) + model_.config().rms_eps), r1_);
  }

  void add_stream(int64_t l, const at::Tensor& h_in) {
    StreamAcc& acc = streams_[size_t(l)];
    const at::Tensor h = h_in.to(at::kFloat).contiguous();
    const int64_t T = h.size(0), d = h.size(1);
    if (tensor_path_) {
      // One pass of the stream-stats kernel (CPU reference on CPU tensors) on the tap's device.
      const device_ops::StreamTapStats st = device_ops::stream_stats(h);
      float top = 0.f;
      for (int64_t t = 0; t < T; ++t) {
        top = std::max(top, st.rows[size_t(t)].linf);
        if (t < int64_t(acc.position_sum.size())) acc.position_sum[size_t(t)] += st.rows[size_t(t)].linf;
      }
      acc.abs.add_binned(st.abs_hist.data(), st.abs_sum, st.abs_min, top);
      for (int64_t c = 0; c < d; ++c)
        acc.channel_absmax[size_t(c)] = std::max(acc.channel_absmax[size_t(c)], st.channel_absmax[size_t(c)]);
    } else {
      const float* p = h.data_ptr<float>();
      for (int64_t t = 0; t < T; ++t) {
        const float* row = p + t * d;
        float rmax = 0.f;
        for (int64_t c = 0; c < d; ++c) {
          const float av = std::fabs(row[c]);
          acc.abs.add(av);
          rmax = std::max(rmax, av);
          acc.channel_absmax[size_t(c)] = std::max(acc.channel_absmax[size_t(c)], av);
        }
        if (t < int64_t(acc.position_sum.size())) acc.position_sum[size_t(t)] += rmax;
      }
    }
    // Top-k candidates of this window (on the tap's device) merged into the running top-k.
    const int64_t k = std::min<int64_t>(opts_.topk, T * d);
    if (k <= 0) return;
    const at::Tensor flat = h.flatten();
    const auto [vals_d, idx_d] = flat.abs().topk(k);
    const at::Tensor vals = vals_d.cpu(), idx = idx_d.cpu(), signed_vals = flat.index_select(0, idx_d).cpu();
    const float* vp = vals.data_ptr<float>();
    const float* sv = signed_vals.data_ptr<float>();
    const int64_t* ip = idx.data_ptr<int64_t>();
    for (int64_t i = 0; i < k; ++i) {
      if (int64_t(acc.top.size()) == opts_.topk && vp[i] <= std::fabs(acc.top.back().value)) break;
      MassiveEntry e;
      e.position = ip[i] / d;
      e.channel = ip[i] % d;
      e.value = sv[i];
      e.window = window_;
      e.token_id = ids_ ? (*ids_)[size_t(e.position)] : -1;
      e.token_text = e.token_id >= 0 ? model_.tokenizer().token_text(e.token_id) : "";
      acc.top.push_back(std::move(e));
      std::stable_sort(acc.top.begin(), acc.top.end(), [](const MassiveEntry& a, const MassiveEntry& b) { return std::fabs(a.value) > std::fabs(b.value); });
      if (int64_t(acc.top.size()) > opts_.topk) acc.top.pop_back();
    }
  }

  void add_block(int64_t l, const at::Tensor& h, const at::Tensor& a, const at::Tensor& out) {
    BlockAcc& acc = blocks_[size_t(l)];
    const at::Tensor hf = h.to(at::kFloat), af = a.to(at::kFloat), of = out.to(at::kFloat);
    const at::Tensor delta = of - hf;
    const at::Tensor h2 = hf.norm(2, -1), a2 = af.norm(2, -1);
    const at::Tensor jr = delta.norm(2, -1) / h2;
    const at::Tensor jr_inf = delta.abs().amax(-1) / hf.abs().amax(-1);
    const at::Tensor jr_attn = (af - hf).norm(2, -1) / h2;
    const at::Tensor jr_mlp = (of - af).norm(2, -1) / a2;
    for (auto [hist, t] : {std::pair{&acc.jr, &jr}, {&acc.jr_inf, &jr_inf}, {&acc.jr_attn, &jr_attn}, {&acc.jr_mlp, &jr_mlp}}) {
      const at::Tensor c = t->to(at::kCPU).contiguous();
      hist->add(c.data_ptr<float>(), c.numel());
    }
    // Historical SNR: history = P h_l, noise = Q_b(P x) - P x for x = h_{l+1} (block) or a_l (MLP).
    const ModelWeights& w = model_.impl().w;
    const at::Tensor& gamma_next = l + 1 < L_ ? w.layers[size_t(l + 1)].attn_norm : w.final_norm;
    const at::Tensor& gamma_mlp = w.layers[size_t(l)].mlp_norm;
    auto hsnr = [&](const at::Tensor& gamma, const at::Tensor& updated, LinearHistogram& h4, LinearHistogram& h8) {
      if (tensor_path_) {  // the pair-terms kernel (CPU reference on CPU tensors), P x in it or before it
        const bool rot = r1_.defined();
        const auto terms = device_ops::pair_terms(rot ? project(hf, gamma) : hf, rot ? project(updated, gamma) : updated.to(at::kFloat),
                                                  rot ? at::Tensor() : gamma, q4_, q8_);
        for (const kmath::PairTerms& t : terms) {
          h4.add(kmath::hsnr_db(t.hist_sq, t.noise4));
          h8.add(kmath::hsnr_db(t.hist_sq, t.noise8));
        }
        return;
      }
      const at::Tensor hist_sq = project(hf, gamma).pow(2).sum(-1).to(at::kDouble).contiguous();
      std::vector<double> n4, n8;
      quant_noise_rows(project(updated, gamma), q4_, q8_, n4, n8);
      const double* hs = hist_sq.data_ptr<double>();
      for (size_t t = 0; t < n4.size(); ++t) {
        h4.add(10.0 * std::log10(hs[t] / n4[t]));
        h8.add(10.0 * std::log10(hs[t] / n8[t]));
      }
    };
    hsnr(gamma_next, of, acc.hsnr4, acc.hsnr8);
    hsnr(gamma_mlp, af, acc.hsnr4_mlp, acc.hsnr8_mlp);
  }

  const Model& model_;
  ProfileOptions opts_;
  int64_t L_ = 0;
  int64_t window_ = 0, windows_done_ = 0;
  const std::vector<int32_t>* ids_ = nullptr;
  kmath::ActQuantConfig q4_, q8_, kv4_;
  at::Tensor r1_, r_ff_, r_o_, r_hd_;
  at::Tensor h_, a_;
  bool tensor_path_ = false;  // this tap's statistics are reduced with tensor ops / kernels (collect)
  std::vector<StreamAcc> streams_;
  std::vector<BlockAcc> blocks_;
  std::vector<std::array<SiteAcc, kNumSites>> sites_;
};

}  // namespace

Trace profile_model(const Model& model, const ProfileOptions& opts, Progress* progress, const TraceCallback& on_window) {
  c10::InferenceMode inference_mode;
  if (progress) progress->set_stage("tokenizing calibration text");
  const auto windows = calibration_windows(model, opts);
  const std::string source = opts.calib == "builtin" ? "builtin" : opts.calib;
  Profiler prof(model, opts);
  if (progress) { progress->set_total(int64_t(windows.size())); progress->set_done(0); }
  const RopeTables rope = rope_tables(model, opts.seqlen);
  for (size_t w = 0; w < windows.size(); ++w) {
    if (progress) {
      progress->throw_if_cancelled();
      progress->set_stage("window " + std::to_string(w + 1) + "/" + std::to_string(windows.size()));
    }
    prof.begin_window(int64_t(w), &windows[w]);
    const at::Tensor ids = at::tensor(std::vector<int64_t>(windows[w].begin(), windows[w].end()), at::kLong);
    at::Tensor h = embed_tokens(model, ids);
    for (int64_t l = 0; l < model.config().n_layers; ++l) h = decoder_block(model, l, h, rope, &prof);
    prof.end_window();
    if (on_window) on_window(prof.snapshot(source));
    if (progress) progress->set_done(int64_t(w + 1));
  }
  return prof.snapshot(source);
}

}  // namespace dptq

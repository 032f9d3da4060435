// Measured per-block / per-site sensitivity to activation bits (sensitivity.hpp, docs/metrics.md §8).
#include "dptq/sensitivity.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/profiler.hpp"

namespace dptq {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kChunk = 256;  // rows of [chunk, V] logits at a time

// FP reference of one window: probabilities and Σ p·log p per predicted position.
struct FpWindow {
  std::vector<at::Tensor> p;        // per chunk [n, V] fp32
  std::vector<at::Tensor> neg_ent;  // per chunk [n] fp64: Σ_v p log p
  double nll_sum = 0;
};

at::Tensor chunk_logp(const Model& m, const at::Tensor& hidden, int64_t s, int64_t n) {
  return at::log_softmax(at::linear(hidden.narrow(0, s, n), m.impl().w.lm_head).to(at::kFloat), -1);
}

FpWindow fp_window(const Model& fp, const at::Tensor& ids, const RopeTables& rope) {
  at::Tensor h = embed_tokens(fp, ids);
  for (int64_t l = 0; l < fp.config().n_layers; ++l) h = decoder_block(fp, l, h, rope);
  const at::Tensor hidden = final_norm(fp, h);
  const int64_t T = ids.size(0);
  FpWindow r;
  for (int64_t s = 0; s < T - 1; s += kChunk) {
    const int64_t n = std::min(kChunk, T - 1 - s);
    const at::Tensor lp = chunk_logp(fp, hidden, s, n);
    const at::Tensor p = lp.exp();
    r.neg_ent.push_back((p * lp).sum(-1).to(at::kDouble));
    r.p.push_back(p);
    r.nll_sum -= lp.gather(1, ids.narrow(0, s + 1, n).unsqueeze(1).to(lp.device())).sum().to(at::kDouble).item<double>();
  }
  return r;
}

// Sums of NLL and KL(FP ‖ q) over the predicted positions of one window, from h_L of `q`.
std::pair<double, double> nll_kl_sums(const Model& q, const at::Tensor& h_last, const at::Tensor& ids,
                                      const FpWindow& ref) {
  const at::Tensor hidden = final_norm(q, h_last);
  const int64_t T = ids.size(0);
  double nll = 0, kl = 0;
  size_t c = 0;
  for (int64_t s = 0; s < T - 1; s += kChunk, ++c) {
    const int64_t n = std::min(kChunk, T - 1 - s);
    const at::Tensor lq = chunk_logp(q, hidden, s, n);
    nll -= lq.gather(1, ids.narrow(0, s + 1, n).unsqueeze(1).to(lq.device())).sum().to(at::kDouble).item<double>();
    // KL = Σ p log p − Σ p log q, per row; summed over rows.
    const double cross = (ref.p[c] * lq).sum().to(at::kDouble).item<double>();
    kl += ref.neg_ent[c].sum().item<double>() - cross;
  }
  return {nll, kl};
}

// Running mean / variance (Welford) of per-window values.
struct Welford {
  int64_t n = 0;
  double mean = 0, m2 = 0;
  void add(double x) {
    ++n;
    const double d = x - mean;
    mean += d / double(n);
    m2 += d * (x - mean);
  }
  double se() const { return n > 1 ? std::sqrt(m2 / double(n - 1) / double(n)) : kNaN; }
};

struct EntryAcc {
  Welford nll, kl;
  SensitivityEntry result() const { return {nll.mean, nll.se(), kl.mean, kl.se()}; }
};

}  // namespace

std::vector<std::vector<int32_t>> sensitivity_windows(const Model& model, const SensitivityOptions& o) {
  if (o.windows < 1) throw Error(ErrorKind::InvalidArgument, "", "--windows must be at least 1");
  if (o.seqlen < 2) throw Error(ErrorKind::InvalidArgument, "", "--seqlen must be at least 2 (got " + std::to_string(o.seqlen) + ")");
  if (o.window_mode == "random") {
    ProfileOptions p;
    p.calib = o.text;
    p.samples = o.windows;
    p.seqlen = o.seqlen;
    p.seed = o.seed;
    return calibration_windows(model, p);
  }
  if (o.window_mode != "sequential")
    throw Error(ErrorKind::InvalidArgument, "", "unknown window mode '" + o.window_mode + "' (expected random or sequential)");
  const int64_t ctx = model.config().max_context;
  if (ctx > 0 && o.seqlen > ctx)
    throw Error(ErrorKind::InvalidArgument, "", "--seqlen " + std::to_string(o.seqlen) + " exceeds the model context " + std::to_string(ctx));
  // The perplexity protocol: the whole text tokenized once (BOS as the tokenizer adds it), windows
  // 0..N-1 of `seqlen` tokens from the start.
  const std::vector<int32_t> ids = calibration_tokens(model, o.text);
  const int64_t have = int64_t(ids.size()) / o.seqlen;
  if (have < o.windows)
    throw Error(ErrorKind::InvalidArgument, o.text, "has " + std::to_string(ids.size()) + " tokens: " + std::to_string(have) +
                " windows of " + std::to_string(o.seqlen) + ", fewer than --windows " + std::to_string(o.windows));
  std::vector<std::vector<int32_t>> w;
  for (int64_t i = 0; i < o.windows; ++i)
    w.emplace_back(ids.begin() + long(i * o.seqlen), ids.begin() + long((i + 1) * o.seqlen));
  return w;
}

Sensitivity measure_sensitivity(const Model& fp, Model& quant, const std::vector<std::vector<int32_t>>& windows,
                                bool sites, Progress* progress) {
  c10::InferenceMode guard;
  if (!quant.impl().quant) throw Error(ErrorKind::InvalidArgument, "", "sensitivity needs a quantized model");
  if (fp.impl().quant) throw Error(ErrorKind::InvalidArgument, "", "the reference model must not be quantized");
  if (windows.empty()) throw Error(ErrorKind::InvalidArgument, "", "sensitivity needs at least one window");
  const int64_t L = quant.config().n_layers;
  if (fp.config().n_layers != L) throw Error(ErrorKind::InvalidArgument, "", "the FP and quantized models differ in depth");
  QuantState& qs = *quant.impl().quant;
  const std::vector<SiteBits> base_bits = qs.act_bits;

  int64_t T = 0;
  for (const auto& w : windows) {
    if (w.size() < 2) throw Error(ErrorKind::InvalidArgument, "", "a sensitivity window has fewer than 2 tokens");
    T = std::max<int64_t>(T, int64_t(w.size()));
  }
  const RopeTables rope_fp = rope_tables(fp, T), rope_q = rope_tables(quant, T);

  // Configurations of one block: all four sites, then each site alone.
  const int n_cfg = sites ? 1 + kNumPlanSites : 1;
  auto config_bits = [&](int64_t l, int c) {
    SiteBits b = base_bits[size_t(l)];
    if (c == 0) return SiteBits{8, 8, 8, 8};
    int* field[kNumPlanSites] = {&b.qkv, &b.o, &b.gate_up, &b.down};
    *field[c - 1] = 8;
    return b;
  };

  std::vector<std::vector<EntryAcc>> acc(static_cast<size_t>(L), std::vector<EntryAcc>(static_cast<size_t>(n_cfg)));
  Welford fp_nll, base_nll, base_kl;
  int64_t done = 0, tokens = 0;
  if (progress) {
    progress->set_total(int64_t(windows.size()) * (1 + L * n_cfg));
    progress->set_done(0);
  }
  try {
    for (size_t w = 0; w < windows.size(); ++w) {
      const std::string wtag = "window " + std::to_string(w + 1) + "/" + std::to_string(windows.size());
      if (progress) {
        progress->throw_if_cancelled();
        progress->set_stage(wtag + ", FP and base");
      }
      const at::Tensor ids = at::tensor(std::vector<int64_t>(windows[w].begin(), windows[w].end()), at::kLong);
      const double predicted = double(ids.size(0) - 1);
      tokens += ids.size(0);
      const FpWindow ref = fp_window(fp, ids, rope_fp);
      fp_nll.add(ref.nll_sum / predicted);
      // Base run, caching the input of every block (the shared prefix of every configuration).
      std::vector<at::Tensor> cache(size_t(L + 1));
      cache[0] = embed_tokens(quant, ids);
      for (int64_t l = 0; l < L; ++l) cache[size_t(l + 1)] = decoder_block(quant, l, cache[size_t(l)], rope_q);
      const auto [bn, bk] = nll_kl_sums(quant, cache[size_t(L)], ids, ref);
      base_nll.add(bn / predicted);
      base_kl.add(bk / predicted);
      if (progress) progress->set_done(++done);
      for (int64_t l = 0; l < L; ++l)
        for (int c = 0; c < n_cfg; ++c) {
          if (progress) {
            progress->throw_if_cancelled();
            progress->set_stage(wtag + ", block " + std::to_string(l) +
                                (c == 0 ? std::string() : std::string(" ") + kSiteNames[size_t(c - 1)]));
          }
          qs.act_bits[size_t(l)] = config_bits(l, c);
          at::Tensor h = decoder_block(quant, l, cache[size_t(l)], rope_q);
          qs.act_bits[size_t(l)] = base_bits[size_t(l)];
          for (int64_t k = l + 1; k < L; ++k) h = decoder_block(quant, k, h, rope_q);
          const auto [n, kl] = nll_kl_sums(quant, h, ids, ref);
          acc[size_t(l)][size_t(c)].nll.add((bn - n) / predicted);
          acc[size_t(l)][size_t(c)].kl.add((bk - kl) / predicted);
          if (progress) progress->set_done(++done);
        }
    }
  } catch (...) {
    qs.act_bits = base_bits;
    throw;
  }
  qs.act_bits = base_bits;

  Sensitivity s;
  s.created_utc = utc_now();
  s.windows = int64_t(windows.size());
  s.seqlen = T;
  s.tokens = tokens;
  s.fp_nll = fp_nll.mean;
  s.base_nll = base_nll.mean;
  s.base_kl = base_kl.mean;
  s.has_sites = sites;
  s.block.resize(size_t(L));
  if (sites) s.site.resize(size_t(L));
  for (int64_t l = 0; l < L; ++l) {
    s.block[size_t(l)] = acc[size_t(l)][0].result();
    if (sites)
      for (int c = 0; c < kNumPlanSites; ++c) s.site[size_t(l)][size_t(c)] = acc[size_t(l)][size_t(c + 1)].result();
  }
  return s;
}

std::vector<double> sensitivity_gain(const Trace& trace, const std::string& metric) {
  if (!trace.has_sensitivity)
    throw Error(ErrorKind::InvalidArgument, "", "the trace holds no measured sensitivity (run `dptq sensitivity`)");
  if (metric != "nll" && metric != "kl")
    throw Error(ErrorKind::InvalidArgument, "", "unknown sensitivity metric '" + metric + "' (expected nll or kl)");
  std::vector<double> g;
  for (const SensitivityEntry& e : trace.sensitivity.block) g.push_back(metric == "nll" ? e.nll_gain : e.kl_gain);
  return g;
}

}  // namespace dptq

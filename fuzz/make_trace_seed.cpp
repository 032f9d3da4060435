// Writes a small valid trace (4 blocks, d_model 8, seqlen 4, with /sensitivity and phases) to
// argv[1]: the fuzz_trace seed (a real trace is 600 KB: too slow to mutate). Deterministic.
#include <cstdio>

#include "dptq/error.hpp"
#include "dptq/trace.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_trace_seed OUT.h5\n");
    return 2;
  }
  constexpr int L = 4, D = 8, S = 4;
  dptq::Trace t;
  t.meta.model_name = "seed";
  t.meta.model_fingerprint = std::string(64, 'a');
  t.meta.tokenizer = "bpe";
  t.meta.calib_source = "builtin";
  t.meta.windows = 2;
  t.meta.seqlen = S;
  t.meta.tokens = 2 * S;
  t.meta.rotation = "quarot";
  t.meta.topk = 2;
  t.meta.dptq_version = "seed";
  t.meta.created_utc = "2026-01-02T03:04:05Z";
  t.meta.n_layers = L;
  t.meta.d_model = D;
  for (int l = 0; l <= L; ++l) {
    dptq::StreamStats s;
    s.index = l;
    s.top1_abs = 10.0 * (l + 1);
    s.median_abs = 0.5;
    s.ratio = s.top1_abs / s.median_abs;
    s.has_massive = l == 2;
    s.n_massive = l == 2 ? 1 : 0;
    s.top = {{float(s.top1_abs), l % D, 0, 1, 42, "tok"}};
    s.channel_absmax.assign(D, 1.0f + float(l));
    s.position_absmax_mean.assign(S, 2.0f);
    t.streams.push_back(s);
  }
  for (int l = 0; l < L; ++l) {
    dptq::BlockStats b;
    b.index = l;
    b.jump_ratio = {0.5 + l, 0.1, 2.0 + l, 0.2, 0.5, 1.5 + l, 2 * S};
    b.hsnr4_db = {10.0 - l, 1.0, 20.0, 2.0, 9.0, 18.0, 2 * S};
    b.hsnr4_mlp_db = b.hsnr4_db;
    b.hsnr8_db = b.hsnr8_mlp_db = {30.0, 20, 40, 21, 30, 39, 2 * S};
    b.jump_ratio_inf = b.jump_ratio_attn = b.jump_ratio_mlp = b.jump_ratio;
    b.emergence = l == 1;
    b.disappearance = l == 2;
    t.blocks.push_back(b);
    std::array<dptq::SiteStats, dptq::kNumSites> sites;
    for (auto& st : sites) {
      st.channel_absmax.assign(D, 3.0f);
      st.token_absmax = {1, 0.5, 2, 0.5, 1, 2, 2 * S};
      st.kurtosis = 3.5;
      st.sqnr4_db = 15;
      st.code_entropy_bits = 3.2;
    }
    t.sites.push_back(sites);
  }
  t.phases = {{2, 2}};
  t.has_sensitivity = true;
  auto& z = t.sensitivity;
  z.method = "quarot-rtn";
  z.text_source = "builtin";
  z.window_mode = "random";
  z.windows = 2;
  z.seqlen = S;
  z.tokens = 2 * S;
  z.created_utc = t.meta.created_utc;
  z.fp_nll = 3.0;
  z.base_nll = 3.5;
  z.base_kl = 0.4;
  z.has_sites = true;
  for (int l = 0; l < L; ++l) {
    z.block.push_back({0.01 * l, 0.001, 0.02 * l, 0.002});
    z.site.push_back({});
    for (auto& e : z.site.back()) e = {0.005 * l, 0.001, 0.01 * l, 0.001};
  }
  try {
    dptq::write_trace(t, argv[1]);
  } catch (const dptq::Error& e) {
    std::fprintf(stderr, "make_trace_seed: %s\n", e.what());
    return 2;
  }
  return 0;
}

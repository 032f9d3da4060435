// dptq/proxies.hpp — which trace metric predicts the measured sensitivity? (issue 12; replaces
// tools/proxy_screen.py). Torch-free: `dptq report --proxies` and the studio's Proxies view share it.
//
// Contents
//   block_metrics     every per-block scalar of a trace, by name (the names of docs/trace-format.md)
//   kendall_tau_b     Kendall's τ-b (ties corrected); NaN for < 3 pairs
//   rank_spearman     Spearman's ρ (average ranks), the same as dptq::spearman of quantize.hpp
//   ProxyRow / screen_proxies   ρ and τ of every metric against a gain vector, with two-sided
//                     permutation p-values (the same shuffles for every metric, fixed seed)
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dptq/trace.hpp"

namespace dptq {

// {name, [L] values}: blocks/<group>/{mean,p1,p50,p99,max} for every block aggregate,
// blocks/emergence, blocks/disappearance, blocks/boundary (either), sites/<site>/{kurtosis,
// sqnr4_db, code_entropy_bits, token_absmax/{mean,p99,max}}, streams/{top1_abs,median_abs,ratio}
// of the block's input h_l, and every score of kDynamicsScores (plan.hpp) under "score/<name>".
// Metrics with a non-finite value or no variation are left out (they cannot rank 30 blocks).
std::vector<std::pair<std::string, std::vector<double>>> block_metrics(const Trace& trace);

double rank_spearman(const std::vector<double>& a, const std::vector<double>& b);
double kendall_tau_b(const std::vector<double>& a, const std::vector<double>& b);

struct ProxyRow {
  std::string metric;
  double spearman = 0, kendall = 0;
  double p_spearman = 1, p_kendall = 1;  // two-sided permutation p: (1 + #{|stat_perm| >= |stat|}) / (1 + n_perm)
  double p_bonferroni = 1;               // min(1, p_spearman · number of metrics screened)
};

// Every metric of `metrics` against `gain` (same length, finite), strongest |ρ| first.
// InvalidArgument for mismatched lengths, fewer than 3 blocks or n_perm < 1.
std::vector<ProxyRow> screen_proxies(const std::vector<std::pair<std::string, std::vector<double>>>& metrics,
                                     const std::vector<double>& gain, int64_t n_perm = 10000, uint64_t seed = 0);

}  // namespace dptq

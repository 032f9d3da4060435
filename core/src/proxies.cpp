// Proxy screen: rank correlations of trace metrics with measured sensitivity (proxies.hpp).
#include "dptq/proxies.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "dptq/error.hpp"
#include "dptq/plan.hpp"

namespace dptq {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<double> average_ranks(const std::vector<double>& v) {
  const size_t n = v.size();
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t i, size_t j) { return v[i] < v[j]; });
  std::vector<double> r(n);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) ++j;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * double(i + j) + 1.0;
    i = j + 1;
  }
  return r;
}

// Standardized ranks (mean 0, Σ z² = 1): Spearman ρ is then a dot product.
std::vector<double> unit_ranks(const std::vector<double>& v) {
  std::vector<double> r = average_ranks(v);
  const double m = std::accumulate(r.begin(), r.end(), 0.0) / double(r.size());
  double ss = 0;
  for (double& x : r) { x -= m; ss += x * x; }
  if (ss <= 0) return {};
  for (double& x : r) x /= std::sqrt(ss);
  return r;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Kendall τ-b from the pair signs (O(n²): n is a block count).
double tau_b(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = a.size();
  double conc = 0, ties_a = 0, ties_b = 0, pairs = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) {
      const double da = a[i] - a[j], db = b[i] - b[j];
      pairs += 1;
      if (da == 0) ties_a += 1;
      if (db == 0) ties_b += 1;
      if (da != 0 && db != 0) conc += (da > 0) == (db > 0) ? 1 : -1;
    }
  const double den = std::sqrt((pairs - ties_a) * (pairs - ties_b));
  return den > 0 ? conc / den : kNaN;
}

void keep(std::vector<std::pair<std::string, std::vector<double>>>& out, std::string name, std::vector<double> v) {
  if (v.size() < 2) return;
  bool varies = false;
  for (double x : v) {
    if (!std::isfinite(x)) return;
    varies |= x != v[0];
  }
  if (varies) out.emplace_back(std::move(name), std::move(v));
}

}  // namespace

double rank_spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 3) return kNaN;
  const auto ra = unit_ranks(a), rb = unit_ranks(b);
  if (ra.empty() || rb.empty()) return kNaN;
  return dot(ra, rb);
}

double kendall_tau_b(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 3) return kNaN;
  return tau_b(a, b);
}

std::vector<std::pair<std::string, std::vector<double>>> block_metrics(const Trace& t) {
  std::vector<std::pair<std::string, std::vector<double>>> out;
  const size_t L = t.blocks.size();
  struct Agg { const char* name; Aggregate BlockStats::*m; };
  const Agg aggs[] = {{"jump_ratio", &BlockStats::jump_ratio},         {"jump_ratio_inf", &BlockStats::jump_ratio_inf},
                      {"jump_ratio_attn", &BlockStats::jump_ratio_attn}, {"jump_ratio_mlp", &BlockStats::jump_ratio_mlp},
                      {"hsnr4_db", &BlockStats::hsnr4_db},             {"hsnr8_db", &BlockStats::hsnr8_db},
                      {"hsnr4_mlp_db", &BlockStats::hsnr4_mlp_db},     {"hsnr8_mlp_db", &BlockStats::hsnr8_mlp_db}};
  struct Stat { const char* name; double Aggregate::*m; };
  const Stat stats[] = {{"mean", &Aggregate::mean}, {"p1", &Aggregate::p1}, {"p50", &Aggregate::p50},
                        {"p99", &Aggregate::p99}, {"max", &Aggregate::max}};
  for (const Agg& a : aggs)
    for (const Stat& s : stats) {
      std::vector<double> v(L);
      for (size_t l = 0; l < L; ++l) v[l] = t.blocks[l].*a.m.*s.m;
      keep(out, std::string("blocks/") + a.name + "/" + s.name, std::move(v));
    }
  {
    std::vector<double> e(L), d(L), b(L);
    for (size_t l = 0; l < L; ++l) {
      e[l] = t.blocks[l].emergence;
      d[l] = t.blocks[l].disappearance;
      b[l] = t.blocks[l].emergence || t.blocks[l].disappearance;
    }
    keep(out, "blocks/emergence", e);
    keep(out, "blocks/disappearance", d);
    keep(out, "blocks/boundary", b);
  }
  if (t.sites.size() == L)
    for (int s = 0; s < kNumSites; ++s) {
      const std::string g = std::string("sites/") + kSiteNames[size_t(s)] + "/";
      std::vector<double> k(L), q(L), h(L), tm(L), tp(L), tx(L);
      for (size_t l = 0; l < L; ++l) {
        const SiteStats& st = t.sites[l][size_t(s)];
        k[l] = st.kurtosis;
        q[l] = st.sqnr4_db;
        h[l] = st.code_entropy_bits;
        tm[l] = st.token_absmax.mean;
        tp[l] = st.token_absmax.p99;
        tx[l] = st.token_absmax.max;
      }
      keep(out, g + "kurtosis", k);
      keep(out, g + "sqnr4_db", q);
      keep(out, g + "code_entropy_bits", h);
      keep(out, g + "token_absmax/mean", tm);
      keep(out, g + "token_absmax/p99", tp);
      keep(out, g + "token_absmax/max", tx);
    }
  if (t.streams.size() == L + 1) {
    std::vector<double> a(L), m(L), r(L);
    for (size_t l = 0; l < L; ++l) {
      a[l] = t.streams[l].top1_abs;
      m[l] = t.streams[l].median_abs;
      r[l] = t.streams[l].ratio;
    }
    keep(out, "streams/top1_abs (input h_l)", a);
    keep(out, "streams/median_abs (input h_l)", m);
    keep(out, "streams/ratio (input h_l)", r);
  }
  for (const char* name : kDynamicsScores) {
    try {
      keep(out, std::string("score/") + name, dynamics_score(t, name));
    } catch (const Error&) {
      // A score that needs what this trace lacks is simply not screened.
    }
  }
  return out;
}

std::vector<ProxyRow> screen_proxies(const std::vector<std::pair<std::string, std::vector<double>>>& metrics,
                                     const std::vector<double>& gain, int64_t n_perm, uint64_t seed) {
  const size_t n = gain.size();
  if (n < 3) throw Error(ErrorKind::InvalidArgument, "", "a proxy screen needs at least 3 blocks");
  if (n_perm < 1) throw Error(ErrorKind::InvalidArgument, "", "a proxy screen needs at least one permutation");
  for (double g : gain)
    if (!std::isfinite(g)) throw Error(ErrorKind::InvalidArgument, "", "the measured gain has a non-finite value");
  const std::vector<double> rg = unit_ranks(gain);
  if (rg.empty()) throw Error(ErrorKind::InvalidArgument, "", "the measured gain does not vary across blocks");
  // The same shuffles of the gain for every metric (mt19937_64 + Fisher–Yates spelled out, so a
  // seed gives the same p-values with every standard library).
  std::vector<std::vector<size_t>> perms(static_cast<size_t>(n_perm));
  std::mt19937_64 rng(seed);
  for (auto& p : perms) {
    p.resize(n);
    std::iota(p.begin(), p.end(), 0);
    for (size_t i = n - 1; i > 0; --i) std::swap(p[i], p[size_t(rng() % (i + 1))]);
  }
  std::vector<ProxyRow> rows;
  std::vector<double> shuffled(n), shuffled_raw(n);
  for (const auto& [name, v] : metrics) {
    if (v.size() != n)
      throw Error(ErrorKind::InvalidArgument, "", "metric " + name + " has " + std::to_string(v.size()) + " blocks, the gain " +
                  std::to_string(n));
    const std::vector<double> rv = unit_ranks(v);
    if (rv.empty()) continue;
    ProxyRow r;
    r.metric = name;
    r.spearman = dot(rv, rg);
    r.kendall = tau_b(v, gain);
    int64_t hit_s = 0, hit_k = 0;
    for (const auto& p : perms) {
      for (size_t i = 0; i < n; ++i) {
        shuffled[i] = rg[p[i]];
        shuffled_raw[i] = gain[p[i]];
      }
      if (std::abs(dot(rv, shuffled)) >= std::abs(r.spearman) - 1e-12) ++hit_s;
      if (std::abs(tau_b(v, shuffled_raw)) >= std::abs(r.kendall) - 1e-12) ++hit_k;
    }
    r.p_spearman = double(1 + hit_s) / double(1 + n_perm);
    r.p_kendall = double(1 + hit_k) / double(1 + n_perm);
    rows.push_back(std::move(r));
  }
  for (ProxyRow& r : rows) r.p_bonferroni = std::min(1.0, r.p_spearman * double(rows.size()));
  std::stable_sort(rows.begin(), rows.end(),
                   [](const ProxyRow& a, const ProxyRow& b) { return std::abs(a.spearman) > std::abs(b.spearman); });
  return rows;
}

}  // namespace dptq

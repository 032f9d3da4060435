// dptq/histogram.hpp — streaming accumulators with fixed memory, for per-token metrics aggregated
// over any number of calibration tokens. Torch-free, header-only.
//
//   LogHistogram     non-negative values; bins are the top bits of the IEEE float pattern
//                    (64 bins per octave, every float covered), so binning is one shift.
//                    Quantiles are exact to a relative error of 2^(1/128) - 1 < 0.55%.
//   LinearHistogram  any values on [lo, hi) in equal bins (dB quantities); ±inf counted apart.
// Both keep the exact count, sum (mean), min and max; quantile(q) returns the bin's midpoint
// (clamped to the exact min/max). Quantiles use the "lower" rank ceil(q·n) (1-based).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace dptq {

namespace detail {
struct Moments {
  int64_t count = 0;
  double sum = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  void add(double v) {
    ++count;
    sum += v;
    min = std::min(min, v);
    max = std::max(max, v);
  }
  void merge(const Moments& o) {
    count += o.count;
    sum += o.sum;
    min = std::min(min, o.min);
    max = std::max(max, o.max);
  }
  double mean() const { return count ? sum / double(count) : 0.0; }
};
}  // namespace detail

class LogHistogram {
 public:
  static constexpr int kShift = 17;  // 23 mantissa bits - 6 kept: 64 bins per octave
  static constexpr int64_t kBins = int64_t(1) << (31 - kShift);

  LogHistogram() : counts_(size_t(kBins), 0) {}

  // |v| is binned; NaN is ignored.
  void add(float v) {
    v = std::fabs(v);
    if (std::isnan(v)) return;
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    ++counts_[bits >> kShift];
    m_.add(v);
  }
  void add(const float* v, int64_t n) {
    for (int64_t i = 0; i < n; ++i) add(v[i]);
  }
  void merge(const LogHistogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    m_.merge(o.m_);
  }
  // Adds values binned elsewhere (the stream-stats kernel's |v| histogram, same bins): counts
  // [kBins], and the sum, min and max of the |v| they count.
  void add_binned(const uint32_t* counts, double sum, double min, double max) {
    detail::Moments m;
    for (int64_t b = 0; b < kBins; ++b) {
      counts_[size_t(b)] += counts[b];
      m.count += counts[b];
    }
    if (m.count == 0) return;
    m.sum = sum;
    m.min = min;
    m.max = max;
    m_.merge(m);
  }
  int64_t count() const { return m_.count; }
  double mean() const { return m_.mean(); }
  double min() const { return m_.count ? m_.min : 0.0; }
  double max() const { return m_.count ? m_.max : 0.0; }

  double quantile(double q) const {
    if (m_.count == 0) return 0.0;
    const int64_t rank = std::clamp<int64_t>(int64_t(std::ceil(q * double(m_.count))), 1, m_.count);
    int64_t seen = 0;
    for (int64_t b = 0; b < kBins; ++b) {
      seen += counts_[size_t(b)];
      if (seen >= rank) return std::clamp(midpoint(b), min(), max());
    }
    return max();
  }
  // Number of values with |v| >= threshold, to bin resolution (bins straddling it count fully).
  int64_t count_at_least(double threshold) const {
    if (threshold <= 0) return m_.count;
    const float t = float(threshold);
    uint32_t bits;
    std::memcpy(&bits, &t, 4);
    int64_t n = 0;
    for (int64_t b = int64_t(bits >> kShift); b < kBins; ++b) n += counts_[size_t(b)];
    return n;
  }

 private:
  static double midpoint(int64_t b) {
    const uint32_t lo = uint32_t(b) << kShift, hi = lo + (uint32_t(1) << kShift) - 1;
    float a, c;
    std::memcpy(&a, &lo, 4);
    std::memcpy(&c, &hi, 4);
    return 0.5 * (double(a) + double(c));
  }
  std::vector<int64_t> counts_;
  detail::Moments m_;
};

class LinearHistogram {
 public:
  LinearHistogram(double lo = -200.0, double hi = 400.0, int64_t bins = 60000)
      : lo_(lo), hi_(hi), width_((hi - lo) / double(bins)), counts_(size_t(bins) + 2, 0) {}

  // NaN ignored; ±inf and values outside [lo, hi) go to the under/overflow bins (exact min/max kept).
  void add(double v) {
    if (std::isnan(v)) return;
    size_t b;
    if (v < lo_) b = 0;
    else if (v >= hi_) b = counts_.size() - 1;
    else b = 1 + std::min(size_t((v - lo_) / width_), counts_.size() - 3);
    ++counts_[b];
    if (std::isfinite(v)) finite_.add(v);
    all_.count++;
    all_.min = std::min(all_.min, v);
    all_.max = std::max(all_.max, v);
  }
  void merge(const LinearHistogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    finite_.merge(o.finite_);
    all_.count += o.all_.count;
    all_.min = std::min(all_.min, o.all_.min);
    all_.max = std::max(all_.max, o.all_.max);
  }
  int64_t count() const { return all_.count; }
  // Mean of the finite values (an infinite HSNR means zero quantization noise for that token).
  double mean() const { return finite_.mean(); }
  double min() const { return all_.count ? all_.min : 0.0; }
  double max() const { return all_.count ? all_.max : 0.0; }
  double quantile(double q) const {
    if (all_.count == 0) return 0.0;
    const int64_t rank = std::clamp<int64_t>(int64_t(std::ceil(q * double(all_.count))), 1, all_.count);
    int64_t seen = 0;
    for (size_t b = 0; b < counts_.size(); ++b) {
      seen += counts_[b];
      if (seen < rank) continue;
      if (b == 0) return min();
      if (b == counts_.size() - 1) return max();
      return std::clamp(lo_ + (double(b) - 0.5) * width_, min(), max());
    }
    return max();
  }

 private:
  double lo_, hi_, width_;
  std::vector<int64_t> counts_;
  detail::Moments finite_, all_;
};

}  // namespace dptq

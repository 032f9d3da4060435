#include "dptq/quant.hpp"

#include <algorithm>

#include "dptq/error.hpp"

namespace dptq {

ActQuantConfig default_act_quant(int bits) { return {bits, true, bits <= 4 ? 0.9 : 1.0, 0}; }

ActQuantConfig default_kv_quant(int64_t head_dim, int bits) { return {bits, true, 0.95, std::min<int64_t>(128, head_dim)}; }

namespace {

struct Params { at::Tensor x, scale, zero; int64_t qmin, qmax; };

// Rows to quantize independently: [..., C] -> [N, g] with g = group size (or C).
Params params(const at::Tensor& x_in, const ActQuantConfig& cfg) {
  if (cfg.bits < 2 || cfg.bits > 16) throw Error(ErrorKind::InvalidArgument, "", "quantizer bits must be in 2..16");
  const int64_t C = x_in.size(-1);
  const int64_t g = cfg.group_size > 0 ? cfg.group_size : C;
  if (C % g != 0) throw Error(ErrorKind::InvalidArgument, "", "group size does not divide the channel count");
  Params p;
  p.x = x_in.to(at::kFloat).reshape({-1, g});
  const at::Tensor zero = at::zeros({}, p.x.options());
  at::Tensor lo = at::minimum(std::get<0>(p.x.min(1)), zero) * cfg.clip_ratio;
  at::Tensor hi = at::maximum(std::get<0>(p.x.max(1)), zero) * cfg.clip_ratio;
  if (cfg.asymmetric) {
    const at::Tensor empty = lo.eq(0).logical_and(hi.eq(0));
    lo = at::where(empty, -1.0, lo);
    hi = at::where(empty, 1.0, hi);
    p.qmin = 0;
    p.qmax = (int64_t(1) << cfg.bits) - 1;
    p.scale = ((hi - lo) / double(p.qmax)).unsqueeze(1);
    p.zero = at::round(-lo.unsqueeze(1) / p.scale);
  } else {
    p.qmax = (int64_t(1) << (cfg.bits - 1)) - 1;
    p.qmin = -p.qmax - 1;
    const at::Tensor m = at::maximum(lo.abs(), hi);
    p.scale = at::where(m.eq(0), 1.0, m / double(p.qmax)).unsqueeze(1);
    p.zero = at::zeros_like(p.scale);
  }
  return p;
}

}  // namespace

at::Tensor quant_codes(const at::Tensor& x, const ActQuantConfig& cfg) {
  const Params p = params(x, cfg);
  return at::clamp(at::round(p.x / p.scale) + p.zero, double(p.qmin), double(p.qmax)).to(at::kLong).view(x.sizes());
}

at::Tensor fake_quant(const at::Tensor& x, const ActQuantConfig& cfg) {
  const Params p = params(x, cfg);
  const at::Tensor q = at::clamp(at::round(p.x / p.scale) + p.zero, double(p.qmin), double(p.qmax));
  return ((q - p.zero) * p.scale).view(x.sizes()).to(x.scalar_type());
}

}  // namespace dptq

// Tensor-level fake quantizers. The per-row arithmetic is kernels/include/dptq/kernels/quant_math.hpp
// (shared with the CUDA kernels), so CPU, GPU and tests agree bit for bit.
#include "dptq/quant.hpp"

#include <ATen/Parallel.h>

#include <algorithm>

#include "dptq/device_ops.hpp"
#include "dptq/error.hpp"
#include "dptq/kernels/quant_math.hpp"

namespace dptq {

ActQuantConfig default_act_quant(int bits) { return {bits, true, bits <= 4 ? 0.9 : 1.0, 0}; }

ActQuantConfig default_kv_quant(int64_t head_dim, int bits) { return {bits, true, 0.95, std::min<int64_t>(128, head_dim)}; }

kmath::ActQuantConfig to_kmath(const ActQuantConfig& cfg, int64_t cols) {
  kmath::ActQuantConfig k;
  k.bits = cfg.bits;
  k.sym = !cfg.asymmetric;
  k.clip_ratio = float(cfg.clip_ratio);
  k.group_size = cfg.group_size;
  if (const char* why = kmath::validate_act_quant(k, cols)) throw Error(ErrorKind::InvalidArgument, "", std::string("quantizer: ") + why);
  return k;
}

namespace {

// Applies `fn(row_in, row_out, params, group_len)` to every (row, group) of x viewed as [rows, cols].
template <class Out, class Fn>
at::Tensor per_group(const at::Tensor& x_in, const ActQuantConfig& cfg, at::ScalarType out_type, Fn fn) {
  const at::Tensor x = x_in.to(at::kCPU, at::kFloat).contiguous();
  const int64_t cols = x.size(-1), rows = x.numel() / std::max<int64_t>(cols, 1);
  const kmath::ActQuantConfig k = to_kmath(cfg, cols);
  const int64_t g = k.group_size > 0 ? k.group_size : cols;
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(out_type));
  const float* src = x.data_ptr<float>();
  Out* dst = out.data_ptr<Out>();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c0 = 0; c0 < cols; c0 += g) {
        const float* xs = src + r * cols + c0;
        const auto [lo, hi] = std::minmax_element(xs, xs + g);
        const kmath::QuantParams p = kmath::act_quant_params(*lo, *hi, k.bits, k.sym, k.clip_ratio, k.group_size == 0);
        fn(xs, dst + r * cols + c0, p, g, k);
      }
  });
  return out;
}

}  // namespace

at::Tensor quant_codes(const at::Tensor& x, const ActQuantConfig& cfg) {
  return per_group<int64_t>(x, cfg, at::kLong, [](const float* xs, int64_t* ys, kmath::QuantParams p, int64_t g, const kmath::ActQuantConfig& k) {
    for (int64_t c = 0; c < g; ++c) ys[c] = kmath::quant_code(xs[c], p, k.bits, k.sym);
  }).to(x.device());
}

at::Tensor fake_quant(const at::Tensor& x, const ActQuantConfig& cfg) {
  if (at::Tensor y; x.is_cuda() && device_ops::fake_quant_on_device(x, cfg, y)) return y;  // the kernel
  return per_group<float>(x, cfg, at::kFloat, [](const float* xs, float* ys, kmath::QuantParams p, int64_t g, const kmath::ActQuantConfig& k) {
    for (int64_t c = 0; c < g; ++c) ys[c] = kmath::dequant(kmath::quant_code(xs[c], p, k.bits, k.sym), p);
  }).to(x.device(), x.scalar_type());
}

ActCodes quant_act_codes(const at::Tensor& x_in, const ActQuantConfig& cfg) {
  if (cfg.group_size != 0) throw Error(ErrorKind::InvalidArgument, "", "quantizer: integer codes are per token (group_size 0)");
  const at::Tensor x = x_in.to(at::kCPU, at::kFloat).contiguous();
  const int64_t cols = x.size(-1), rows = x.numel() / std::max<int64_t>(cols, 1);
  const kmath::ActQuantConfig k = to_kmath(cfg, cols);
  const int minq = kmath::quant_minq(k.bits, k.sym);
  const float lo = float(minq), hi = float(kmath::quant_maxq(k.bits, k.sym));
  ActCodes out{at::empty({rows, cols}, x.options().dtype(at::kByte)), at::empty({rows}, x.options()),
               at::empty({rows}, x.options().dtype(at::kInt))};
  const float* src = x.data_ptr<float>();
  uint8_t* codes = out.codes.data_ptr<uint8_t>();
  float* scale = out.scale.data_ptr<float>();
  int32_t* offset = out.offset.data_ptr<int32_t>();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xs = src + r * cols;
      const auto [mn, mx] = std::minmax_element(xs, xs + cols);
      const kmath::QuantParams p = kmath::act_quant_params(*mn, *mx, k.bits, k.sym, k.clip_ratio, true);
      uint8_t* cs = codes + r * cols;
      const float s = p.scale, z = p.zero, shift = lo;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) cs[c] = uint8_t(kmath::quant_code_f(xs[c], s, z, lo, hi) - shift);
      scale[r] = s;
      offset[r] = minq - int32_t(z);
    }
  });
  return out;
}

ActCodes quant_act_codes_on_device(const at::Tensor& x_in, const ActQuantConfig& cfg) {
  const kmath::ActQuantConfig k = to_kmath(cfg, x_in.size(-1));
  // One row per token, or per group of g (whose range need not contain 0, quant_math.hpp).
  const at::Tensor x = x_in.to(at::kFloat).reshape({-1, cfg.group_size > 0 ? cfg.group_size : x_in.size(-1)});
  const float minq = float(kmath::quant_minq(k.bits, k.sym)), maxq = float(kmath::quant_maxq(k.bits, k.sym));
  // Divisions by full tensors, never by a scalar: ATen turns `t / scalar` into `t * (1 / scalar)`,
  // which rounds differently from the reference's true division.
  auto full = [](const at::Tensor& like, float v) { return at::full_like(like, v); };
  at::Tensor lo = at::amin(x, -1), hi = at::amax(x, -1);
  const at::Tensor with_zero = cfg.group_size > 0 ? lo == hi : at::ones_like(lo, at::kBool);
  lo = at::where(with_zero, lo.clamp_max(0.0f), lo);
  hi = at::where(with_zero, hi.clamp_min(0.0f), hi);
  at::Tensor vmin = lo * full(lo, k.clip_ratio);
  at::Tensor vmax = hi * full(hi, k.clip_ratio);
  at::Tensor scale, zero;
  if (k.sym) {
    const at::Tensor m = at::maximum(vmin.abs(), vmax);
    scale = at::where(m == 0.0f, full(m, 1.0f), m / full(m, maxq));
    zero = at::zeros_like(m);
  } else {
    const at::Tensor both_zero = (vmin == 0.0f).logical_and(vmax == 0.0f);
    vmin = at::where(both_zero, full(vmin, -1.0f), vmin);
    vmax = at::where(both_zero, full(vmax, 1.0f), vmax);
    scale = (vmax - vmin) / full(vmax, maxq);
    zero = at::round(vmin.neg() / scale);
  }
  const at::Tensor q = at::clamp(at::round(x / scale.unsqueeze(1)) + zero.unsqueeze(1), minq, maxq);
  return ActCodes{(q - full(q, minq)).to(at::kByte).contiguous(), scale.contiguous(),
                  (full(zero, minq) - zero).to(at::kInt).contiguous()};
}

}  // namespace dptq

// Weight quantizers: QuaRot's WeightQuantizer (RTN with MSE clip search) and GPTQ, written as fp32
// tensor ops in the reference's order so that CPU results equal it bit for bit and the same code
// runs on CUDA tensors. See dptq/weight_quant.hpp for the conventions.
#include "dptq/weight_quant.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "dptq/error.hpp"
#include "dptq/kernels/quant_math.hpp"

namespace dptq {

namespace {

[[noreturn]] void fail(ErrorKind kind, const std::string& message) {
  throw Error(kind, "", message);
}

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

void require_float_matrix(const at::Tensor& t, const char* who, const char* what) {
  if (!t.defined())
    fail(ErrorKind::InvalidArgument, std::string(who) + ": " + what + " is undefined");
  if (t.dim() != 2)
    fail(ErrorKind::Shape, std::string(who) + ": " + what + " must be 2-D, got " + shape_str(t));
  if (!at::isFloatingType(t.scalar_type()))
    fail(ErrorKind::InvalidArgument,
         std::string(who) + ": " + what + " must be a floating-point tensor");
}

void require_finite(const at::Tensor& t, const char* who, const char* what) {
  if (t.numel() > 0 && !at::isfinite(t).all().item<bool>())
    fail(ErrorKind::InvalidArgument,
         std::string(who) + ": " + what + " has NaN or infinite values");
}

int weight_maxq(const WeightQuantConfig& cfg) {
  return kmath::quant_maxq(cfg.bits, cfg.symmetric);
}

// Integer codes (as fp32) of x with per-row parameters broadcast against it: QuaRot's sym_quant /
// asym_quant.
at::Tensor codes_of(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero,
                    const WeightQuantConfig& cfg) {
  const double maxq = weight_maxq(cfg);
  if (cfg.symmetric) return at::clamp(at::round(x / scale), -(maxq + 1), maxq);
  return at::clamp(at::round(x / scale) + zero, 0.0, maxq);
}

// QuaRot's sym_dequant / asym_dequant.
at::Tensor dequant_of(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& zero,
                      bool symmetric) {
  return symmetric ? scale * q : scale * (q - zero);
}

// find_params of QuaRot's WeightQuantizer (per channel) for the rows of x [n, cols], fp32.
WeightQuantParams params_of_rows(const at::Tensor& x, const WeightQuantConfig& cfg) {
  const int64_t n = x.size(0);
  // A 0-dim tensor on x's device, as QuaRot's maxq buffer: the division is then a plain fp32 a / b
  // on every backend (CUDA turns a division by a CPU scalar into a multiplication by its inverse).
  const double maxq_value = weight_maxq(cfg);
  const at::Tensor maxq = at::scalar_tensor(maxq_value, x.options());
  const at::Tensor zeros = at::zeros({n}, x.options());
  at::Tensor xmin = at::minimum(x.amin(1), zeros);
  at::Tensor xmax = at::maximum(x.amax(1), zeros);
  at::Tensor scale, zero;
  if (cfg.symmetric) {
    xmax = at::maximum(xmin.abs(), xmax).clamp_min(1e-5);
    scale = xmax / maxq;
    zero = at::zeros_like(scale);
  } else {
    const at::Tensor both_zero = (xmin == 0) & (xmax == 0);
    xmin.masked_fill_(both_zero, -1.0);
    xmax.masked_fill_(both_zero, 1.0);
    scale = (xmax - xmin).clamp_min(1e-5) / maxq;
    zero = at::round(-xmin / scale);
  }
  if (!cfg.mse_clip) return {scale, zero};

  at::Tensor best = at::full({n}, std::numeric_limits<double>::infinity(), x.options());
  const int steps = static_cast<int>(cfg.max_shrink * cfg.grid);  // Python's int(): truncation
  for (int i = 0; i < steps; ++i) {
    const double p = 1.0 - static_cast<double>(i) / cfg.grid;
    at::Tensor scale1, zero1;
    if (cfg.symmetric) {
      scale1 = (xmax * p) / maxq;
      zero1 = at::zeros_like(scale1);
    } else {
      const at::Tensor xmin1 = xmin * p, xmax1 = xmax * p;
      scale1 = (xmax1 - xmin1) / maxq;
      zero1 = at::round(-xmin1 / scale1);
    }
    // codes_of + dequant_of in place (same values, no temporaries), then |ŵ - w|^norm.
    const at::Tensor s1 = scale1.unsqueeze(1), z1 = zero1.unsqueeze(1);
    at::Tensor e = x / s1;
    e.round_();
    if (cfg.symmetric) {
      e.clamp_(-(maxq_value + 1), maxq_value);
    } else {
      e.add_(z1).clamp_(0.0, maxq_value).sub_(z1);
    }
    e.mul_(s1).sub_(x).abs_().pow_(cfg.norm);
    const at::Tensor err = e.sum(1);
    const at::Tensor better = err < best;  // strict: the largest p wins ties
    best = at::where(better, err, best);
    scale = at::where(better, scale1, scale);
    zero = at::where(better, zero1, zero);
  }
  return {scale, zero};
}

}  // namespace

void validate_weight_quant(const WeightQuantConfig& cfg, int64_t cols) {
  const char* who = "weight quantizer: ";
  if (cfg.bits < 2 || cfg.bits > 8)
    fail(ErrorKind::InvalidArgument,
         std::string(who) + "bits must be in [2, 8], got " + std::to_string(cfg.bits));
  if (!cfg.symmetric && cfg.bits > 7)
    fail(ErrorKind::InvalidArgument,
         std::string(who) + "asymmetric codes must fit int8: bits must be <= 7");
  if (cfg.mse_clip) {
    if (cfg.grid < 1) fail(ErrorKind::InvalidArgument, std::string(who) + "grid must be >= 1");
    if (!(cfg.max_shrink > 0.0 && cfg.max_shrink <= 1.0))
      fail(ErrorKind::InvalidArgument, std::string(who) + "max_shrink must be in (0, 1]");
    if (!(cfg.norm > 0.0 && std::isfinite(cfg.norm)))
      fail(ErrorKind::InvalidArgument, std::string(who) + "norm must be > 0");
  }
  if (cfg.group_size < 0)
    fail(ErrorKind::InvalidArgument, std::string(who) + "group_size must be >= 0");
  if (cols < 1) fail(ErrorKind::Shape, std::string(who) + "the weight has no columns");
  if (cfg.group_size > 0 && cols % cfg.group_size != 0)
    fail(ErrorKind::Shape, std::string(who) + "group_size " + std::to_string(cfg.group_size) +
                               " does not divide the " + std::to_string(cols) + " input columns");
}

WeightQuantParams find_weight_params(const at::Tensor& W_in, const WeightQuantConfig& cfg_in) {
  require_float_matrix(W_in, "find_weight_params", "W");
  WeightQuantConfig cfg = cfg_in;
  cfg.group_size = 0;
  validate_weight_quant(cfg, W_in.size(1));
  const at::Tensor W = W_in.to(at::kFloat).contiguous();
  const int64_t rows = W.size(0), cols = W.size(1);
  // The clip search makes a dozen temporaries the size of its input per shrink factor: chunks of
  // ~1 MiB stay in cache (about 20% faster than whole matrices). Rows are independent.
  const int64_t chunk = std::max<int64_t>(2, (int64_t{1} << 18) / cols);
  if (rows <= chunk) return params_of_rows(W, cfg);
  WeightQuantParams out{at::empty({rows}, W.options()), at::empty({rows}, W.options())};
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t r1 = std::min(rows, r0 + chunk);
    const WeightQuantParams p = params_of_rows(W.slice(0, r0, r1), cfg);
    out.scale.slice(0, r0, r1).copy_(p.scale);
    out.zero.slice(0, r0, r1).copy_(p.zero);
  }
  return out;
}

at::Tensor QuantizedWeight::dequantize() const {
  if (!codes.defined() || !scales.defined() || (!symmetric && !zeros.defined()))
    fail(ErrorKind::InvalidArgument,
         "QuantizedWeight::dequantize: codes, scales or zeros are missing");
  const at::Tensor q = codes.to(at::kFloat);
  const int64_t rows = q.size(0), cols = q.size(1);
  if (group_size > 0) {
    const int64_t groups = cols / group_size;
    const at::Tensor s = scales.reshape({rows, groups, 1});
    const at::Tensor z = symmetric ? s : zeros.reshape({rows, groups, 1});
    return dequant_of(q.reshape({rows, groups, group_size}), s, z, symmetric).reshape({rows, cols});
  }
  const at::Tensor s = scales.reshape({rows, 1});
  return dequant_of(q, s, symmetric ? s : zeros.reshape({rows, 1}), symmetric);
}

QuantizedWeight rtn_quantize(const at::Tensor& W_in, const WeightQuantConfig& cfg) {
  require_float_matrix(W_in, "rtn_quantize", "W");
  validate_weight_quant(cfg, W_in.size(1));
  const at::Tensor W = W_in.to(at::kFloat).contiguous();
  require_finite(W, "rtn_quantize", "W");
  const int64_t rows = W.size(0), cols = W.size(1);
  QuantizedWeight out;
  out.bits = cfg.bits;
  out.symmetric = cfg.symmetric;
  out.group_size = cfg.group_size;
  if (cfg.group_size == 0) {
    const WeightQuantParams p = find_weight_params(W, cfg);
    out.codes = codes_of(W, p.scale.unsqueeze(1), p.zero.unsqueeze(1), cfg).to(at::kChar);
    out.scales = p.scale;
    if (!cfg.symmetric) out.zeros = p.zero;
    return out;
  }
  // Every (row, group) is an independent row of its own: one search over [rows · groups, g].
  const int64_t g = cfg.group_size, groups = cols / g;
  const WeightQuantParams p = find_weight_params(W.reshape({rows * groups, g}), cfg);
  const at::Tensor s = p.scale.reshape({rows, groups, 1}), z = p.zero.reshape({rows, groups, 1});
  out.codes = codes_of(W.reshape({rows, groups, g}), s, z, cfg).reshape({rows, cols}).to(at::kChar);
  out.scales = p.scale.reshape({rows, groups});
  if (!cfg.symmetric) out.zeros = p.zero.reshape({rows, groups});
  return out;
}

at::Tensor fake_quant_weight(const at::Tensor& W, const WeightQuantConfig& cfg) {
  return rtn_quantize(W, cfg).dequantize().to(W.scalar_type());
}

// ---- GPTQ -------------------------------------------------------------------------------------

HessianAccumulator::HessianAccumulator(int64_t columns, at::Device device) : columns_(columns) {
  if (columns < 1) fail(ErrorKind::InvalidArgument, "hessian: columns must be >= 1");
  H_ = at::zeros({columns, columns}, at::TensorOptions().dtype(at::kFloat).device(device));
}

void HessianAccumulator::add(const at::Tensor& x) {
  if (!x.defined() || (x.dim() != 2 && x.dim() != 3))
    fail(ErrorKind::Shape, "hessian: input must be [tokens, in] or [batch, tokens, in], got " +
                               (x.defined() ? shape_str(x) : std::string("undefined")));
  if (!at::isFloatingType(x.scalar_type()))
    fail(ErrorKind::InvalidArgument, "hessian: input must be floating point");
  if (x.size(-1) != columns_)
    fail(ErrorKind::Shape, "hessian: input has " + std::to_string(x.size(-1)) +
                               " features, expected " + std::to_string(columns_));
  const int64_t m = x.dim() == 2 ? 1 : x.size(0);  // GPTQ's add_batch counts sequences
  if (m == 0) return;
  H_.mul_(static_cast<double>(samples_) / static_cast<double>(samples_ + m));
  samples_ += m;
  // Same op order as GPTQ: transpose, scale by √(2/n), then one Gram product.
  const at::Tensor xt = std::sqrt(2.0 / static_cast<double>(samples_)) *
                        x.reshape({-1, columns_}).t().to(H_.device(), at::kFloat);
  H_.add_(xt.matmul(xt.t()));
}

at::Tensor HessianAccumulator::hessian() const {
  return H_.clone();
}

namespace {

// Cholesky factor of A (lower, or upper), or one clear line when A is not positive definite.
at::Tensor cholesky_or_throw(const at::Tensor& A, bool upper, double damp) {
  auto [L, info] = at::linalg_cholesky_ex(A, upper, /*check_errors=*/false);
  const int64_t bad = info.item<int64_t>();
  if (bad != 0) {
    std::ostringstream msg;
    msg << "gptq: the Hessian is not positive definite after dampening by " << damp
        << " x mean(diag H) (leading minor " << bad
        << "); use more calibration data or a larger damp";
    fail(ErrorKind::InvalidArgument, msg.str());
  }
  return L;
}

}  // namespace

QuantizedWeight gptq_quantize(const at::Tensor& W_in, const at::Tensor& H_in,
                              const WeightQuantConfig& cfg, const GptqConfig& gcfg) {
  require_float_matrix(W_in, "gptq", "W");
  require_float_matrix(H_in, "gptq", "H");
  const int64_t rows = W_in.size(0), cols = W_in.size(1);
  if (H_in.size(0) != cols || H_in.size(1) != cols)
    fail(ErrorKind::Shape, "gptq: H is " + shape_str(H_in) + " but W " + shape_str(W_in) +
                               " needs [" + std::to_string(cols) + ", " + std::to_string(cols) +
                               "]");
  validate_weight_quant(cfg, cols);
  if (!(gcfg.damp >= 0.0 && std::isfinite(gcfg.damp)))
    fail(ErrorKind::InvalidArgument, "gptq: damp must be >= 0");
  if (gcfg.block < 1) fail(ErrorKind::InvalidArgument, "gptq: block must be >= 1");
  const int64_t g = cfg.group_size;
  if (g > 0 && gcfg.act_order && !gcfg.static_groups)
    fail(ErrorKind::InvalidArgument,
         "gptq: act_order with group_size needs static_groups (groups must stay contiguous)");

  at::Tensor W = W_in.to(at::kFloat).clone();
  at::Tensor H = H_in.to(W.device(), at::kFloat).clone();
  require_finite(W, "gptq", "W");
  require_finite(H, "gptq", "H");

  QuantizedWeight out;
  out.bits = cfg.bits;
  out.symmetric = cfg.symmetric;
  out.group_size = g;

  // Per channel: parameters from the whole original row, before the dead columns are zeroed.
  WeightQuantParams row_params;
  if (g == 0) row_params = find_weight_params(W, cfg);

  // Dead inputs (never active in calibration): the weight cannot matter, set it to 0.
  const at::Tensor dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1.0);
  W.masked_fill_(dead.unsqueeze(0), 0.0);

  const int64_t groups = g > 0 ? cols / g : 0;
  at::Tensor group_scales, group_zeros;  // [rows, groups]
  if (g > 0) {
    group_scales = at::empty({rows, groups}, W.options());
    group_zeros = at::zeros({rows, groups}, W.options());
    if (gcfg.static_groups) {
      const WeightQuantParams p = find_weight_params(W.reshape({rows * groups, g}), cfg);
      group_scales.copy_(p.scale.reshape({rows, groups}));
      group_zeros.copy_(p.zero.reshape({rows, groups}));
    }
  }

  at::Tensor perm, perm_cpu;
  if (gcfg.act_order) {
    perm = at::argsort(H.diagonal(), /*dim=*/0, /*descending=*/true);
    W = W.index_select(1, perm);
    H = H.index_select(0, perm).index_select(1, perm);
    perm_cpu = perm.cpu();
  }

  const at::Tensor damp = gcfg.damp * H.diagonal().mean();
  H.diagonal().add_(damp);
  const double damp_ratio = gcfg.damp;
  at::Tensor Hinv = at::cholesky_inverse(cholesky_or_throw(H, /*upper=*/false, damp_ratio));
  Hinv = cholesky_or_throw(Hinv, /*upper=*/true, damp_ratio);

  at::Tensor codes = at::zeros_like(W);                         // fp32 codes, permuted column order
  at::Tensor scale = row_params.scale, zero = row_params.zero;  // [rows], the current column's
  const int64_t* perm_idx = perm_cpu.defined() ? perm_cpu.data_ptr<int64_t>() : nullptr;
  for (int64_t i1 = 0; i1 < cols; i1 += gcfg.block) {
    const int64_t i2 = std::min(i1 + gcfg.block, cols), count = i2 - i1;
    at::Tensor W1 = W.slice(1, i1, i2).clone();
    at::Tensor Err1 = at::zeros_like(W1);
    const at::Tensor Hinv1 = Hinv.slice(0, i1, i2).slice(1, i1, i2);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = i1 + i;
      if (g > 0) {
        if (!gcfg.static_groups) {
          // As the reference: read W, where this block's updates are still pending.
          if (col % g == 0) {
            const WeightQuantParams p = find_weight_params(W.slice(1, col, col + g), cfg);
            group_scales.select(1, col / g).copy_(p.scale);
            group_zeros.select(1, col / g).copy_(p.zero);
          }
          scale = group_scales.select(1, col / g);
          zero = group_zeros.select(1, col / g);
        } else {
          const int64_t orig = perm_idx ? perm_idx[col] : col;
          scale = group_scales.select(1, orig / g);
          zero = group_zeros.select(1, orig / g);
        }
      }
      const at::Tensor w = W1.select(1, i);
      const at::Tensor q = codes_of(w, scale, zero, cfg);
      codes.select(1, col).copy_(q);
      const at::Tensor err1 =
          (w - dequant_of(q, scale, zero, cfg.symmetric)) / Hinv1.select(0, i).select(0, i);
      // An outer product (one rounding per element) then a subtraction, as the reference's
      // matmul of [rows, 1] x [1, n]; a fused addr_ would round differently.
      W1.slice(1, i).sub_(err1.unsqueeze(1).matmul(Hinv1.select(0, i).slice(0, i).unsqueeze(0)));
      Err1.select(1, i).copy_(err1);
    }
    if (i2 < cols) W.slice(1, i2).sub_(Err1.matmul(Hinv.slice(0, i1, i2).slice(1, i2)));
  }

  if (gcfg.act_order) codes = codes.index_select(1, at::argsort(perm));
  if (!at::isfinite(codes).all().item<bool>())
    fail(ErrorKind::InvalidArgument, "gptq: the update produced NaN or infinite weights");
  out.codes = codes.to(at::kChar);
  if (g == 0) {
    out.scales = row_params.scale;
    if (!cfg.symmetric) out.zeros = row_params.zero;
  } else {
    out.scales = group_scales;
    if (!cfg.symmetric) out.zeros = group_zeros;
  }
  return out;
}

// ---- int4 packing -----------------------------------------------------------------------------

at::Tensor pack_int4(const at::Tensor& codes_in) {
  if (!codes_in.defined() || codes_in.scalar_type() != at::kChar || codes_in.dim() < 1)
    fail(ErrorKind::InvalidArgument,
         "pack_int4: codes must be an int8 tensor with at least one dimension");
  const at::Tensor codes = codes_in.cpu().contiguous();
  if (codes.numel() > 0) {
    const int lo = codes.min().item<int>(), hi = codes.max().item<int>();
    if (lo < -8 || hi > 15 || (lo < 0 && hi > 7))
      fail(ErrorKind::InvalidArgument, "pack_int4: codes span [" + std::to_string(lo) + ", " +
                                           std::to_string(hi) +
                                           "], neither signed [-8, 7] nor unsigned [0, 15] int4");
  }
  const int64_t cols = codes.size(-1), pc = kmath::int4_packed_cols(cols);
  const int64_t rows = cols > 0 ? codes.numel() / cols : 0;
  std::vector<int64_t> sizes(codes.sizes().begin(), codes.sizes().end());
  sizes.back() = pc;
  at::Tensor packed = at::empty(sizes, codes.options().dtype(at::kByte));
  const int8_t* src = codes.data_ptr<int8_t>();
  uint8_t* dst = packed.data_ptr<uint8_t>();
  at::parallel_for(0, rows, 256, [&](int64_t r0, int64_t r1) {
    kmath::pack_int4_rows_ref(src + r0 * cols, cols, dst + r0 * pc, pc, r1 - r0, cols);
  });
  return packed.to(codes_in.device());
}

at::Tensor unpack_int4(const at::Tensor& packed_in, int64_t cols, bool is_signed) {
  if (!packed_in.defined() || packed_in.scalar_type() != at::kByte || packed_in.dim() < 1)
    fail(ErrorKind::InvalidArgument,
         "unpack_int4: packed must be a uint8 tensor with at least one dimension");
  if (cols < 0) fail(ErrorKind::InvalidArgument, "unpack_int4: cols must be >= 0");
  const int64_t pc = kmath::int4_packed_cols(cols);
  if (packed_in.size(-1) != pc)
    fail(ErrorKind::Shape, "unpack_int4: " + std::to_string(cols) + " columns need " +
                               std::to_string(pc) + " bytes per row, got " +
                               std::to_string(packed_in.size(-1)));
  const at::Tensor packed = packed_in.cpu().contiguous();
  const int64_t rows = pc > 0 ? packed.numel() / pc : 0;
  std::vector<int64_t> sizes(packed.sizes().begin(), packed.sizes().end());
  sizes.back() = cols;
  at::Tensor codes = at::empty(sizes, packed.options().dtype(at::kChar));
  const uint8_t* src = packed.data_ptr<uint8_t>();
  int8_t* dst = codes.data_ptr<int8_t>();
  at::parallel_for(0, rows, 256, [&](int64_t r0, int64_t r1) {
    kmath::unpack_int4_rows_ref(src + r0 * pc, pc, dst + r0 * cols, cols, r1 - r0, cols, is_signed);
  });
  return codes.to(packed_in.device());
}

}  // namespace dptq

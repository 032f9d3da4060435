// Device dispatch of the kernel operations (dptq/device_ops.hpp). The CUDA branches exist only in
// builds with the kernels (DPTQ_HAVE_CUDA, kernels/CMakeLists.txt links dptq_kernels into the core).
#include "dptq/device_ops.hpp"

#include <cstring>
#include <vector>

#include "dptq/error.hpp"
#include "dptq/kernels/fwht_math.hpp"
#include "dptq/kernels/gemm_math.hpp"

#if defined(DPTQ_HAVE_CUDA)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "dptq/kernels/act_quant.cuh"
#include "dptq/kernels/fwht.cuh"
#include "dptq/kernels/int8_gemm.cuh"
#include "dptq/kernels/stream_stats.cuh"
#endif

namespace dptq::device_ops {

namespace {

#if defined(DPTQ_HAVE_CUDA)
// The kernels' element type for x, or false when they do not take it.
bool kernel_dtype(const at::Tensor& x, kmath::DType& out) {
  switch (x.scalar_type()) {
    case at::kFloat: out = kmath::DType::F32; return true;
    case at::kHalf: out = kmath::DType::F16; return true;
    case at::kBFloat16: out = kmath::DType::BF16; return true;
    default: return false;
  }
}
#endif

std::vector<int8_t> hadamard_base(int64_t n, int64_t& m) {
  m = kmath::hadamard_base_order(n);
  if (m <= 0)
    throw Error(ErrorKind::InvalidArgument, "", "hadamard_rotate: no Hadamard matrix of order " + std::to_string(n));
  std::vector<int8_t> base(static_cast<size_t>(m * m));
  kmath::hadamard_base_fill(m, base.data());
  return base;
}

}  // namespace

bool cuda_kernels_built() {
#if defined(DPTQ_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

bool fake_quant_on_device(const at::Tensor& x, const ActQuantConfig& cfg, at::Tensor& y) {
#if defined(DPTQ_HAVE_CUDA)
  kmath::DType dt;
  if (x.is_cuda() && kernel_dtype(x, dt) && x.dim() >= 1) {
    const int64_t cols = x.size(-1), rows = cols > 0 ? x.numel() / cols : 0;
    const kmath::ActQuantConfig k = to_kmath(cfg, cols);
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor xc = x.contiguous();
    y = at::empty_like(xc);
    if (rows > 0)
      cuda::act_fake_quant(xc.data_ptr(), cols, y.data_ptr(), cols, rows, cols, dt, k, nullptr, 0, nullptr, nullptr,
                           c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
    return true;
  }
#else
  (void)x, (void)cfg, (void)y;
#endif
  return false;
}

at::Tensor hadamard_rotate(const at::Tensor& x, const at::Tensor& sign, double scale) {
  if (x.dim() < 1) throw Error(ErrorKind::InvalidArgument, "", "hadamard_rotate: x has no last dimension");
  const int64_t n = x.size(-1), rows = n > 0 ? x.numel() / n : 0;
  if (sign.defined() && (sign.dim() != 1 || sign.size(0) != n))
    throw Error(ErrorKind::InvalidArgument, "", "hadamard_rotate: sign must be a vector of the last dimension's size");
  int64_t m = 0;
  const std::vector<int8_t> base = hadamard_base(n, m);
#if defined(DPTQ_HAVE_CUDA)
  kmath::DType dt;
  if (x.is_cuda() && kernel_dtype(x, dt)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor xc = x.contiguous();
    at::Tensor y = at::empty_like(xc);
    const at::Tensor dbase = at::from_blob(const_cast<int8_t*>(base.data()), {m * m}, at::kChar).to(x.device());
    const at::Tensor dsign = sign.defined() ? sign.to(x.device(), at::kFloat).contiguous() : at::Tensor();
    cuda::FwhtParams p;
    p.n = n;
    p.m = m;
    p.base = m > 1 ? dbase.data_ptr<int8_t>() : nullptr;
    p.sign = dsign.defined() ? dsign.data_ptr<float>() : nullptr;
    p.scale = static_cast<float>(scale);
    cuda::fwht(xc.data_ptr(), n, y.data_ptr(), n, rows, dt, p, c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
    return y;
  }
#endif
  const at::Tensor xf = x.to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor sf = sign.defined() ? sign.to(at::kCPU, at::kFloat).contiguous() : at::Tensor();
  at::Tensor y = at::empty_like(xf);
  kmath::fwht_rows_ref(xf.data_ptr<float>(), n, y.data_ptr<float>(), n, rows, n, base.data(), m,
                       sf.defined() ? sf.data_ptr<float>() : nullptr, static_cast<float>(scale));
  return y.to(x.device(), x.scalar_type());
}

at::Tensor int8_gemm(const at::Tensor& a, const at::Tensor& a_offset, const at::Tensor& a_scale, const at::Tensor& w,
                     const at::Tensor& w_colsum, const at::Tensor& w_scale, const at::Tensor& bias) {
  auto bad = [](const std::string& why) { return Error(ErrorKind::InvalidArgument, "", "int8_gemm: " + why); };
  if (a.dim() != 2 || w.dim() != 2 || a.size(1) != w.size(1)) throw bad("a [T, K] and w [N, K] expected");
  if (a.scalar_type() != at::kChar || w.scalar_type() != at::kChar) throw bad("codes must be int8");
  const int64_t T = a.size(0), N = w.size(0), K = a.size(1);
  auto vec = [&](const at::Tensor& v, int64_t n, at::ScalarType t, const char* name) {
    if (!v.defined()) return;
    if (v.dim() != 1 || v.size(0) != n || v.scalar_type() != t || v.device() != a.device())
      throw bad(std::string(name) + " must be a vector of " + std::to_string(n) + " " + c10::toString(t) + " on a's device");
  };
  vec(a_offset, T, at::kInt, "a_offset");
  vec(a_scale, T, at::kFloat, "a_scale");
  vec(w_colsum, N, at::kInt, "w_colsum");
  vec(w_scale, N, at::kFloat, "w_scale");
  vec(bias, N, at::kFloat, "bias");
  if (!a_scale.defined() || !w_colsum.defined() || !w_scale.defined()) throw bad("a_scale, w_colsum and w_scale are required");
  if (w.device() != a.device()) throw bad("a and w on different devices");
  const at::Tensor ac = a.contiguous(), wc = w.contiguous(), ao = a_offset.defined() ? a_offset.contiguous() : at::Tensor();
  const at::Tensor as = a_scale.contiguous(), cs = w_colsum.contiguous(), ws = w_scale.contiguous();
  const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
  at::Tensor y = at::empty({T, N}, a.options().dtype(at::kFloat));
  if (T == 0 || N == 0) return y;
#if defined(DPTQ_HAVE_CUDA)
  if (a.is_cuda()) {
    if (K > cuda::kInt8GemmMaxK) throw bad("K above " + std::to_string(cuda::kInt8GemmMaxK));
    const c10::cuda::CUDAGuard guard(a.device());
    at::Tensor acc = at::empty({T, N}, a.options().dtype(at::kInt));
    cuda::Int8GemmEpilogue ep;
    ep.a_offset = ao.defined() ? ao.data_ptr<int32_t>() : nullptr;
    ep.a_scale = as.data_ptr<float>();
    ep.w_colsum = cs.data_ptr<int32_t>();
    ep.w_scale = ws.data_ptr<float>();
    ep.bias = b.defined() ? b.data_ptr<float>() : nullptr;
    cuda::int8_gemm(ac.data_ptr<int8_t>(), K, wc.data_ptr<int8_t>(), K, T, N, K, ep, y.data_ptr<float>(), N,
                    acc.data_ptr<int32_t>(), N, cuda::Int8GemmPath::Auto,
                    c10::cuda::getCurrentCUDAStream(a.device().index()).stream());
    return y;
  }
#endif
  if (!a.is_cpu()) throw bad("tensors on " + a.device().str() + " and no kernel for it in this build");
  kmath::int8_gemm_rows_ref(ac.data_ptr<int8_t>(), K, wc.data_ptr<int8_t>(), K, T, N, K,
                            ao.defined() ? ao.data_ptr<int32_t>() : nullptr, as.data_ptr<float>(), cs.data_ptr<int32_t>(),
                            ws.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr, y.data_ptr<float>(), N);
  return y;
}

namespace {

// Copies a device buffer of `n` structs T (bytes in `buf`) into a host vector.
template <typename T>
void copy_structs(const at::Tensor& buf, std::vector<T>& out) {
  const at::Tensor host = buf.to(at::kCPU).contiguous();
  std::memcpy(out.data(), host.data_ptr(), out.size() * sizeof(T));
}

}  // namespace

StreamTapStats stream_stats(const at::Tensor& x) {
  if (x.dim() != 2) throw Error(ErrorKind::InvalidArgument, "", "stream_stats: x [rows, cols] expected");
  const int64_t T = x.size(0), C = x.size(1);
  StreamTapStats s;
  s.rows.resize(static_cast<size_t>(T));
  s.channel_absmax.assign(static_cast<size_t>(C), 0.0f);
  s.abs_hist.assign(static_cast<size_t>(kmath::kAbsHistBins), 0u);
  if (T == 0 || C == 0) return s;
  const at::Tensor ax = x.abs();
  s.abs_sum = at::sum(ax, at::kDouble).item<double>();
  s.abs_min = ax.amin().item().toDouble();
#if defined(DPTQ_HAVE_CUDA)
  kmath::DType dt;
  if (x.is_cuda() && kernel_dtype(x, dt)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor xc = x.contiguous();
    const at::Tensor rows = at::empty({T * int64_t(sizeof(kmath::StreamRowStats))}, x.options().dtype(at::kByte));
    const at::Tensor chmax = at::zeros({C}, x.options().dtype(at::kFloat));
    const at::Tensor hist = at::zeros({kmath::kAbsHistBins}, x.options().dtype(at::kInt));
    cuda::StreamStatsOutputs o;
    o.row_stats = reinterpret_cast<kmath::StreamRowStats*>(rows.data_ptr<uint8_t>());
    o.channel_absmax = chmax.data_ptr<float>();
    o.abs_hist = reinterpret_cast<uint32_t*>(hist.data_ptr<int32_t>());
    cuda::stream_stats(xc.data_ptr(), C, T, C, dt, o, c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
    copy_structs(rows, s.rows);
    copy_structs(chmax, s.channel_absmax);
    copy_structs(hist, s.abs_hist);
    return s;
  }
#endif
  const at::Tensor xf = x.to(at::kCPU, at::kFloat).contiguous();
  kmath::stream_stats_rows_ref(xf.data_ptr<float>(), C, T, C, s.rows.data(), s.channel_absmax.data(), nullptr, 0,
                               s.abs_hist.data());
  return s;
}

std::vector<kmath::PairTerms> pair_terms(const at::Tensor& h, const at::Tensor& u, const at::Tensor& gamma,
                                         const kmath::ActQuantConfig& q4, const kmath::ActQuantConfig& q8) {
  auto bad = [](const std::string& why) { return Error(ErrorKind::InvalidArgument, "", "pair_terms: " + why); };
  if (h.dim() != 2 || !h.sizes().equals(u.sizes())) throw bad("h and u [rows, cols] of one shape expected");
  if (h.device() != u.device() || h.scalar_type() != u.scalar_type()) throw bad("h and u on different devices or dtypes");
  const int64_t T = h.size(0), C = h.size(1);
  if (gamma.defined() && (gamma.dim() != 1 || gamma.size(0) != C)) throw bad("gamma must be a vector of " + std::to_string(C));
  std::vector<kmath::PairTerms> out(static_cast<size_t>(T));
  if (T == 0 || C == 0) return out;
#if defined(DPTQ_HAVE_CUDA)
  kmath::DType dt;
  if (h.is_cuda() && kernel_dtype(h, dt)) {
    const c10::cuda::CUDAGuard guard(h.device());
    const at::Tensor hc = h.contiguous(), uc = u.contiguous();
    const at::Tensor g = gamma.defined() ? gamma.to(h.device(), at::kFloat).contiguous() : at::Tensor();
    const at::Tensor buf = at::empty({T * int64_t(sizeof(kmath::PairTerms))}, h.options().dtype(at::kByte));
    cuda::pair_terms(hc.data_ptr(), C, uc.data_ptr(), C, T, C, dt, g.defined() ? g.data_ptr<float>() : nullptr, q4, q8,
                     reinterpret_cast<kmath::PairTerms*>(buf.data_ptr<uint8_t>()),
                     c10::cuda::getCurrentCUDAStream(h.device().index()).stream());
    copy_structs(buf, out);
    return out;
  }
#endif
  const at::Tensor hf = h.to(at::kCPU, at::kFloat).contiguous(), uf = u.to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor gf = gamma.defined() ? gamma.to(at::kCPU, at::kFloat).contiguous() : at::Tensor();
  kmath::pair_terms_rows_ref(hf.data_ptr<float>(), C, uf.data_ptr<float>(), C, T, C,
                             gf.defined() ? gf.data_ptr<float>() : nullptr, q4, q8, out.data());
  return out;
}

}  // namespace dptq::device_ops

// Device dispatch of the kernel operations (dptq/device_ops.hpp). The CUDA branches exist only in
// builds with the kernels (DPTQ_HAVE_CUDA, kernels/CMakeLists.txt links dptq_kernels into the core).
#include "dptq/device_ops.hpp"

#include <vector>

#include "dptq/error.hpp"
#include "dptq/kernels/fwht_math.hpp"

#if defined(DPTQ_HAVE_CUDA)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "dptq/kernels/act_quant.cuh"
#include "dptq/kernels/fwht.cuh"
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

// dptq::fake_quant itself dispatches (quant.cpp): CUDA tensors of a kernel dtype reach
// fake_quant_on_device, the rest the CPU reference.
at::Tensor fake_quant(const at::Tensor& x, const ActQuantConfig& cfg) { return dptq::fake_quant(x, cfg); }

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

}  // namespace dptq::device_ops

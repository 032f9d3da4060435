// The integer engine (dptq/int_engine.hpp): exact u8 x s8 -> int32 products of activation and
// weight codes through FBGEMM (shipped and exported by LibTorch; its headers come with the wheel),
// scales and zero points in one epilogue pass.
//
// Why not at::_int_mm: on CPU it is a plain loop, 35x slower than the fp32 GEMM on this machine
// (measured by bench/bench_int_gemm, docs/benchmarks.md).
#include "dptq/int_engine.hpp"

#include <ATen/Parallel.h>
#include <fbgemm/Fbgemm.h>


#include "dptq/device_ops.hpp"
#include "dptq/error.hpp"
#include "dptq/kernels/gemm_math.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/op_times.hpp"
#include "dptq/quantize.hpp"
#include "dptq/weight_quant.hpp"

namespace dptq {

struct PackedCodes {
  fbgemm::PackBMatrix<int8_t> b;
  PackedCodes(const int8_t* codes, int32_t n, int32_t k)
      : b(fbgemm::matrix_op_t::Transpose, k, n, codes, k, nullptr, 1) {}
};

std::string int_engine_unsupported() {
  static const bool ok = fbgemm::fbgemmSupportedCPU();
  return ok ? "" : "this CPU lacks AVX2, which FBGEMM's int8 GEMM needs";
}

std::string make_int_linear(const std::vector<const QuantizedWeight*>& parts, const std::vector<at::Tensor>& biases,
                            IntLinear& out, const at::Device& device) {
  if (parts.empty()) return "no weights";
  std::vector<at::Tensor> codes, scales, bias;
  bool any_bias = false;
  for (const at::Tensor& b : biases) any_bias = any_bias || b.defined();
  const int64_t K = parts[0]->codes.size(-1);
  out.splits.clear();
  for (size_t i = 0; i < parts.size(); ++i) {
    const QuantizedWeight& w = *parts[i];
    if (!w.symmetric) return "asymmetric weight codes";
    if (w.group_size != 0) return "group-wise weight scales";
    if (w.bits > 4)
      return std::to_string(w.bits) + "-bit weights (FBGEMM's AVX2 kernels add u8·s8 pairs in int16: exact for weights of "
             "at most 4 bits)";
    if (w.codes.dim() != 2 || w.codes.scalar_type() != at::kChar || w.codes.size(1) != K || w.scales.dim() != 1 ||
        w.scales.size(0) != w.codes.size(0))
      return "weight codes and scales of unexpected shapes";
    codes.push_back(w.codes.to(at::kCPU));
    scales.push_back(w.scales.to(at::kCPU, at::kFloat));
    out.splits.push_back(w.codes.size(0));
    if (any_bias) {
      const at::Tensor b = i < biases.size() ? biases[i] : at::Tensor();
      bias.push_back(b.defined() ? b.to(at::kCPU, at::kFloat).reshape({-1}) : at::zeros({w.codes.size(0)}, at::kFloat));
      if (bias.back().size(0) != w.codes.size(0)) return "bias of unexpected length";
    }
  }
  out.codes = at::cat(codes, 0).contiguous();
  out.scale = at::cat(scales, 0).contiguous();
  if (out.codes.size(0) > INT32_MAX || K > INT32_MAX) return "layer too large for the int8 GEMM";
  out.colsum = out.codes.to(at::kInt).sum(1).to(at::kInt).contiguous();
  out.bias = any_bias ? at::cat(bias, 0).contiguous() : at::Tensor();
  if (device.is_cpu()) {
    out.packed = std::make_shared<const PackedCodes>(out.codes.data_ptr<int8_t>(), int32_t(out.codes.size(0)), int32_t(K));
  } else {  // the device GEMM (device_ops::int8_gemm) reads the plain codes there
    out.packed.reset();
    for (at::Tensor* t : {&out.codes, &out.scale, &out.colsum, &out.bias})
      if (t->defined()) *t = t->to(device);
  }
  return "";
}

at::Tensor int_accumulate(const ActCodes& a, const IntLinear& w) {
  const int64_t T = a.codes.size(0), N = w.codes.size(0), K = w.codes.size(1);
  if (a.codes.size(1) != K)
    throw Error(ErrorKind::Shape, "", "integer linear: input of " + std::to_string(a.codes.size(1)) + " columns, weights of " +
                std::to_string(K));
  if (!w.packed) throw Error(ErrorKind::InvalidArgument, "", "integer linear: the weights were not packed (make_int_linear)");
  if (a.codes.scalar_type() != at::kByte || !a.codes.is_contiguous())
    throw Error(ErrorKind::InvalidArgument, "", "integer linear: activation codes must be contiguous uint8");
  if (T > INT32_MAX) throw Error(ErrorKind::InvalidArgument, "", "integer linear: too many rows");
  at::Tensor acc = at::empty({T, N}, at::kInt);
  if (T == 0) return acc;
  OpTimer timer("int8 gemm");
  const uint8_t* A = a.codes.data_ptr<uint8_t>();
  int32_t* C = acc.data_ptr<int32_t>();
  const int threads = at::get_num_threads();
  // FBGEMM splits the work itself: each thread packs its share of A and computes its tiles.
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t tid = t0; tid < t1; ++tid) {
      fbgemm::PackAMatrix<uint8_t> pa(fbgemm::matrix_op_t::NoTranspose, int32_t(T), int32_t(K), A, int32_t(K), nullptr, 1);
      fbgemm::DoNothing<int32_t, int32_t> nothing;
      fbgemm::memCopy<> copy(nothing);
      fbgemm::fbgemmPacked(pa, const_cast<fbgemm::PackBMatrix<int8_t>&>(w.packed->b), C, C, int32_t(N), copy, int(tid),
                           threads);
    }
  });
  return acc;
}

at::Tensor int_linear(const ActCodes& a, const IntLinear& w) {
  const int64_t T = a.codes.size(0), N = w.codes.size(0);
  const at::Tensor acc = int_accumulate(a, w);
  OpTimer timer("int8 epilogue");
  at::Tensor y = at::empty({T, N}, at::kFloat);
  const int32_t* A = acc.data_ptr<int32_t>();
  const int32_t* off = a.offset.data_ptr<int32_t>();
  const float* sx = a.scale.data_ptr<float>();
  const int32_t* cs = w.colsum.data_ptr<int32_t>();
  const float* sw = w.scale.data_ptr<float>();
  const float* b = w.bias.defined() ? w.bias.data_ptr<float>() : nullptr;
  float* Y = y.data_ptr<float>();
  at::parallel_for(0, T, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int32_t* at_ = A + t * N;
      float* yt = Y + t * N;
      const int32_t o = off[t];
      const float s = sx[t];
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) yt[n] = kmath::int_gemm_epilogue(at_[n], o, cs[n], s, sw[n], b, n);
    }
  });
  return y;
}

at::Tensor int_linear(const at::Tensor& x, const IntLinear& w, const ActQuantConfig& cfg) {
  const auto sizes = x.sizes().vec();
  std::vector<int64_t> out_sizes(sizes.begin(), sizes.end() - 1);
  out_sizes.push_back(w.codes.size(0));
  if (!x.is_cpu()) {
    // On a device: codes by tensor ops there, shifted to int8 (u − 128, offset + 128: the same
    // integer sums), then the device's int8 GEMM with the same epilogue (int8_gemm.cuh).
    if (w.codes.device() != x.device())
      throw Error(ErrorKind::InvalidArgument, "", "integer linear: weights on " + w.codes.device().str() + ", input on " +
                  x.device().str());
    OpTimer timer("int8 gemm (device)");
    const ActCodes a = quant_act_codes_on_device(x, cfg);
    const at::Tensor a8 = at::bitwise_xor(a.codes, 128).view(at::kChar);  // u - 128 as int8, one pass
    return device_ops::int8_gemm(a8, a.offset + 128, a.scale, w.codes, w.colsum, w.scale, w.bias).view(out_sizes);
  }
  ActCodes a;
  {
    OpTimer timer("act quant (codes)");
    a = quant_act_codes(x.reshape({-1, x.size(-1)}), cfg);
  }
  return int_linear(a, w).view(out_sizes);
}

// ------------------------------------------------------------------------------ engine selection

Engine parse_engine(const std::string& s) {
  if (s == "int") return Engine::Int;
  if (s == "fake") return Engine::Fake;
  throw Error(ErrorKind::InvalidArgument, "", "unknown --engine '" + s + "' (known: int, fake)");
}

const char* engine_name(Engine e) { return e == Engine::Int ? "int" : "fake"; }

Engine model_engine(const Model& model) {
  const QuantState* qs = model.impl().quant.get();
  return qs && !qs->int_blocks.empty() ? Engine::Int : Engine::Fake;
}

namespace {

std::string build_int_blocks(const Model& model, const QuantState& qs, std::vector<IntBlock>& out) {
  if (!qs.act_quant) return "activations are not quantized (weight-only model)";
  const at::Device device = model.impl().device;
  if (device.is_cpu()) {
    if (std::string why = int_engine_unsupported(); !why.empty()) return why;
  } else if (!device.is_cuda() || !device_ops::cuda_kernels_built()) {
    return "no integer GEMM for " + device.str() + " tensors in this build (CUDA kernels not built)";
  }
  if (qs.qweights.empty()) return "weights are not quantized";
  const int64_t L = model.config().n_layers;
  out.assign(size_t(L), IntBlock{});
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto get = [&](const char* name) -> const QuantizedWeight* {
      const auto it = qs.qweights.find(p + name);
      return it == qs.qweights.end() ? nullptr : &it->second;
    };
    const LayerWeights& W = model.impl().w.layers[size_t(l)];
    struct Fused {
      IntLinear IntBlock::*member;
      std::vector<const char*> names;
      std::vector<at::Tensor> biases;
    };
    const Fused fused[] = {
        {&IntBlock::qkv, {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, {W.bq, W.bk, W.bv}},
        {&IntBlock::o, {"self_attn.o_proj"}, {}},
        {&IntBlock::gate_up, {"mlp.gate_proj", "mlp.up_proj"}, {}},
        {&IntBlock::down, {"mlp.down_proj"}, {}},
    };
    for (const Fused& f : fused) {
      std::vector<const QuantizedWeight*> parts;
      for (const char* n : f.names) {
        const QuantizedWeight* w = get(n);
        if (!w) return "no codes for " + p + n;
        parts.push_back(w);
      }
      const std::string why = make_int_linear(parts, f.biases, out[size_t(l)].*(f.member), device);
      if (!why.empty()) return p + f.names[0] + ": " + why;
    }
  }
  return "";
}

}  // namespace

Engine set_engine(Model& model, Engine engine, std::string* why) {
  QuantState* qs = model.impl().quant.get();
  if (why) why->clear();
  if (!qs) {
    if (why && engine == Engine::Int) *why = "the model is not quantized";
    return Engine::Fake;
  }
  if (engine == Engine::Fake) {
    qs->int_blocks.clear();
    return Engine::Fake;
  }
  if (!qs->int_blocks.empty()) return Engine::Int;
  std::vector<IntBlock> blocks;
  const std::string reason = build_int_blocks(model, *qs, blocks);
  if (!reason.empty()) {
    if (why) *why = reason;
    qs->int_blocks.clear();
    return Engine::Fake;
  }
  qs->int_blocks = std::move(blocks);
  return Engine::Int;
}

}  // namespace dptq

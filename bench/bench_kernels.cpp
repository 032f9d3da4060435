// GPU benchmark of every CUDA kernel in kernels/ (docs/kernels.md): effective bandwidth (the bytes
// an ideal kernel must move: each input read once, each output written once) against the device's
// peak DRAM bandwidth, plus TOPS for the int8 GEMM. Times are CUDA-event means over --reps runs
// after two warm-up runs; nothing is asserted. Prints one line per kernel and one JSON object.
// Without a usable GPU it prints why and exits 0.
//
//   build/release/bench/bench_kernels [--rows 8192] [--cols 4096] [--reps 20] [--quick]
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dptq/error.hpp"
#include "dptq/kernels/act_quant.cuh"
#include "dptq/kernels/fwht.cuh"
#include "dptq/kernels/fwht_math.hpp"
#include "dptq/kernels/int4_pack.cuh"
#include "dptq/kernels/int8_gemm.cuh"
#include "dptq/kernels/quant_pack.cuh"
#include "dptq/kernels/quant_pack_math.hpp"
#include "dptq/kernels/rms_norm.cuh"
#include "dptq/kernels/stream_stats.cuh"

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

struct DevMem {
  void* p = nullptr;
  explicit DevMem(size_t bytes) { check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc"); }
  ~DevMem() { cudaFree(p); }
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// Mean milliseconds of fn over reps launches (after two warm-ups).
double time_ms(const std::function<void()>& fn, int reps) {
  fn();
  fn();
  check(cudaDeviceSynchronize(), "warm-up");
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  check(cudaEventRecord(a), "record");
  for (int i = 0; i < reps; ++i) fn();
  check(cudaEventRecord(b), "record");
  check(cudaEventSynchronize(b), "sync");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, a, b), "elapsed");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return double(ms) / reps;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 8192, cols = 4096;
  int reps = 20;
  for (int i = 1; i < argc; ++i) {
    const bool v = i + 1 < argc;
    if (!std::strcmp(argv[i], "--quick")) {
      rows = 2048;
      reps = 5;
    } else if (v && !std::strcmp(argv[i], "--rows")) rows = std::stoll(argv[++i]);
    else if (v && !std::strcmp(argv[i], "--cols")) cols = std::stoll(argv[++i]);
    else if (v && !std::strcmp(argv[i], "--reps")) reps = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "bench_kernels: unknown or incomplete option %s\n", argv[i]);
      return 2;
    }
  }
  int n_dev = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&n_dev); e != cudaSuccess || n_dev == 0) {
    cudaGetLastError();
    const std::string why = e != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorName(e) + " (" +
                                                   cudaGetErrorString(e) + ")"
                                             : std::string("cudaGetDeviceCount found 0 devices");
    std::printf("bench_kernels: no usable CUDA device, nothing measured (%s)\n", why.c_str());
    std::printf("{\"bench\": \"kernels\", \"skipped\": \"no usable CUDA device\"}\n");
    return 0;
  }
  try {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    int mem_khz = 0, bus_bits = 0;
    check(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0), "memory clock");
    check(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0), "bus width");
    const double peak_gbs = 2.0 * double(mem_khz) * 1e3 * (bus_bits / 8.0) / 1e9;  // double data rate
    std::printf("device: %s, peak DRAM bandwidth %.0f GB/s (memory clock x bus width); %lld x %lld, %d reps\n",
                prop.name, peak_gbs, (long long)rows, (long long)cols, reps);

    const int64_t n = rows * cols;
    using dptq::kmath::ActQuantConfig;
    using dptq::kmath::DType;
    DevMem x(static_cast<size_t>(n) * 4), y(static_cast<size_t>(n) * 4), codes(static_cast<size_t>(n)), packed(static_cast<size_t>(n)), gamma(static_cast<size_t>(cols) * 4);
    DevMem scales(static_cast<size_t>(n) * 4 / 8), zeros(static_cast<size_t>(n) * 4 / 8);
    {  // deterministic, non-trivial inputs: a ramp with a sign pattern
      std::vector<float> h(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) h[static_cast<size_t>(i)] = float((i * 7919) % 2001 - 1000) * 1e-3f;
      check(cudaMemcpy(x.p, h.data(), h.size() * 4, cudaMemcpyHostToDevice), "upload");
      std::vector<float> g(static_cast<size_t>(cols), 1.0f);
      check(cudaMemcpy(gamma.p, g.data(), g.size() * 4, cudaMemcpyHostToDevice), "upload");
      check(cudaMemset(codes.p, 0, static_cast<size_t>(n)), "memset");
    }
    nlohmann::json out = nlohmann::json::array();
    auto report = [&](const std::string& name, double bytes, double ms, const std::string& roofline, double ops = 0) {
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      nlohmann::json j = {{"kernel", name}, {"ms", ms}, {"effective_GBps", gbs}, {"of_peak", gbs / peak_gbs},
                          {"bytes", bytes}, {"roofline", roofline}};
      if (ops > 0) j["TOPS"] = ops / (ms * 1e-3) / 1e12;
      std::printf("%-40s %9.3f ms %8.0f GB/s  %5.1f%% of peak%s\n", name.c_str(), ms, gbs, 100.0 * gbs / peak_gbs,
                  ops > 0 ? ("  " + std::to_string(ops / (ms * 1e-3) / 1e12) + " TOPS").c_str() : "");
      out.push_back(j);
    };

    const ActQuantConfig a4{4, false, 0.9f, 0}, a8{8, false, 1.0f, 0}, kv4{4, false, 1.0f, 128};
    report("rms_norm_f32", 8.0 * n,
           time_ms([&] { dptq::cuda::rms_norm_f32(x.as<float>(), cols, gamma.as<float>(), y.as<float>(), cols, rows,
                                                  cols, 1e-5f, nullptr); }, reps),
           "memory: read x, write y");
    for (DType t : {DType::F32, DType::BF16}) {
      const double es = double(dptq::kmath::dtype_size(t));
      report(std::string("act_fake_quant ") + dptq::kmath::dtype_name(t) + " a4 per token", 2 * es * n,
             time_ms([&] { dptq::cuda::act_fake_quant(x.p, cols, y.p, cols, rows, cols, t, a4, nullptr, 0, nullptr,
                                                      nullptr, nullptr); }, reps),
             "memory: read x, write y");
    }
    report("quant_pack bf16 -> int4 codes + scales", 2.0 * n + 0.5 * n + 8.0 * rows,
           time_ms([&] { dptq::cuda::quant_pack(x.p, cols, rows, cols, DType::BF16, a4, codes.as<uint8_t>(),
                                                dptq::kmath::code_bytes_per_row(cols, 4), scales.as<float>(),
                                                zeros.as<float>(), nullptr); }, reps),
           "memory: read x, write codes");
    report("quant_pack bf16 -> int8 codes + scales", 2.0 * n + 1.0 * n + 8.0 * rows,
           time_ms([&] { dptq::cuda::quant_pack(x.p, cols, rows, cols, DType::BF16, a8, codes.as<uint8_t>(), cols,
                                                scales.as<float>(), zeros.as<float>(), nullptr); }, reps),
           "memory: read x, write codes");
    report("kv_quant bf16 group 128 -> int4", 2.0 * n + 0.5 * n + 8.0 * n / 128,
           time_ms([&] { dptq::cuda::kv_quant(x.p, cols, rows, cols, DType::BF16, kv4, codes.as<uint8_t>(),
                                              dptq::kmath::code_bytes_per_row(cols, 4), scales.as<float>(),
                                              zeros.as<float>(), nullptr); }, reps),
           "memory: read x, write codes");
    report("dequant_packed int4 group 128 -> bf16", 0.5 * n + 2.0 * n + 8.0 * n / 128,
           time_ms([&] { dptq::cuda::dequant_packed(codes.as<uint8_t>(), dptq::kmath::code_bytes_per_row(cols, 4), rows,
                                                    cols, kv4, scales.as<float>(), zeros.as<float>(), y.p, cols,
                                                    DType::BF16, nullptr); }, reps),
           "memory: read codes, write y");
    report("pack_int4", 1.5 * n,
           time_ms([&] { dptq::cuda::pack_int4(codes.as<int8_t>(), cols, packed.as<uint8_t>(), cols / 2, rows, cols,
                                               nullptr); }, reps),
           "memory: read codes, write bytes");
    for (int64_t fn : {cols, int64_t(2560), int64_t(5120)}) {  // 2^k, and Paley bases 20 and 40 times 2^k
      const int64_t m = dptq::kmath::hadamard_base_order(fn);
      if (m <= 0 || fn > n) continue;
      std::vector<int8_t> base(static_cast<size_t>(m * m));
      dptq::kmath::hadamard_base_fill(m, base.data());
      DevMem dbase(base.size());
      check(cudaMemcpy(dbase.p, base.data(), base.size(), cudaMemcpyHostToDevice), "upload");
      dptq::cuda::FwhtParams p;
      p.n = fn;
      p.m = m;
      p.base = m > 1 ? dbase.as<int8_t>() : nullptr;
      p.scale = 1.0f / std::sqrt(float(fn));
      const int64_t frows = n / fn;
      report("fwht bf16 n=" + std::to_string(fn) + " (m=" + std::to_string(m) + ")", 4.0 * frows * fn,
             time_ms([&] { dptq::cuda::fwht(x.p, fn, y.p, fn, frows, DType::BF16, p, nullptr); }, reps),
             m > 1 ? "memory, plus m adds per element in the base step" : "memory: read x, write y");
    }
    {
      DevMem rs(static_cast<size_t>(rows) * sizeof(dptq::kmath::StreamRowStats)), absmax(static_cast<size_t>(cols) * 4),
          topk(static_cast<size_t>(rows) * 16 * sizeof(dptq::kmath::TopKEntry)), hist(static_cast<size_t>(dptq::kmath::kAbsHistBins) * 4);
      check(cudaMemset(absmax.p, 0, static_cast<size_t>(cols) * 4), "memset");
      check(cudaMemset(hist.p, 0, static_cast<size_t>(dptq::kmath::kAbsHistBins) * 4), "memset");
      dptq::cuda::StreamStatsOutputs o;
      o.row_stats = rs.as<dptq::kmath::StreamRowStats>();
      report("stream_stats bf16 (norms, moments)", 2.0 * n,
             time_ms([&] { dptq::cuda::stream_stats(x.p, cols, rows, cols, DType::BF16, o, nullptr); }, reps),
             "memory: read x once");
      o.channel_absmax = absmax.as<float>();
      o.topk = topk.as<dptq::kmath::TopKEntry>();
      o.k = 16;
      o.abs_hist = hist.as<uint32_t>();
      report("stream_stats bf16 (+ absmax, top-16, histogram)", 2.0 * n,
             time_ms([&] { dptq::cuda::stream_stats(x.p, cols, rows, cols, DType::BF16, o, nullptr); }, reps),
             "memory: read x once (histogram atomics may bind)");
      DevMem pt(static_cast<size_t>(rows) * sizeof(dptq::kmath::PairTerms));
      report("pair_terms bf16 (JR, HSNR 4/8)", 4.0 * rows * (cols / 2),
             time_ms([&] { dptq::cuda::pair_terms(x.p, cols, y.p, cols, rows, cols / 2, DType::BF16, gamma.as<float>(),
                                                   a4, a8, pt.as<dptq::kmath::PairTerms>(), nullptr); }, reps),
             "memory: read h and u once (u twice from L2)");
    }
    {  // int8 GEMM at a LLaMA-7B-like layer: M tokens x K 4096 -> N 4096 (and the default model's 576 -> 1536)
      struct Shape {
        int64_t M, N, K;
      };
      for (const Shape s : {Shape{rows, 4096, 4096}, Shape{rows, 1536, 576}}) {
        DevMem a(static_cast<size_t>(s.M * s.K)), w(static_cast<size_t>(s.N * s.K)), acc(static_cast<size_t>(s.M * s.N) * 4), yy(static_cast<size_t>(s.M * s.N) * 4),
            sa(static_cast<size_t>(s.M) * 4), sw(static_cast<size_t>(s.N) * 4), cs(static_cast<size_t>(s.N) * 4);
        check(cudaMemset(a.p, 1, static_cast<size_t>(s.M * s.K)), "memset");
        check(cudaMemset(w.p, 1, static_cast<size_t>(s.N * s.K)), "memset");
        check(cudaMemset(sa.p, 0, static_cast<size_t>(s.M) * 4), "memset");
        check(cudaMemset(sw.p, 0, static_cast<size_t>(s.N) * 4), "memset");
        check(cudaMemset(cs.p, 0, static_cast<size_t>(s.N) * 4), "memset");
        dptq::cuda::Int8GemmEpilogue ep;
        ep.a_scale = sa.as<float>();
        ep.w_scale = sw.as<float>();
        ep.w_colsum = cs.as<int32_t>();
        const double bytes = double(s.M * s.K + s.N * s.K) + 12.0 * double(s.M * s.N);
        const double ops = 2.0 * double(s.M) * double(s.N) * double(s.K);
        for (auto path : {dptq::cuda::Int8GemmPath::Auto, dptq::cuda::Int8GemmPath::Tiled}) {
          dptq::cuda::Int8GemmPath ran = path;
          const double ms = time_ms([&] {
            ran = dptq::cuda::int8_gemm(a.as<int8_t>(), s.K, w.as<int8_t>(), s.K, s.M, s.N, s.K, ep, yy.as<float>(),
                                        s.N, acc.as<int32_t>(), s.N, path, nullptr);
          }, reps);
          report(std::string("int8_gemm ") + (ran == dptq::cuda::Int8GemmPath::CublasLt ? "cuBLASLt" : "tiled") + " " +
                     std::to_string(s.M) + "x" + std::to_string(s.N) + "x" + std::to_string(s.K),
                 bytes, ms, "compute: int8 tensor cores (the tiled fallback is far below)", ops);
        }
      }
    }
    check(cudaDeviceSynchronize(), "final sync");
    std::printf("%s\n", nlohmann::json{{"bench", "kernels"}, {"device", prop.name}, {"peak_GBps", peak_gbs},
                                       {"rows", rows}, {"cols", cols}, {"results", out}}
                            .dump()
                            .c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
  return 0;
}

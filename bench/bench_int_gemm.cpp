// The integer engine's GEMM against the alternatives, at the default model's layer shapes (T tokens
// x K inputs x N outputs): FBGEMM u8 x s8 -> int32 (dptq::int_accumulate), LibTorch's at::_int_mm
// (s8 x s8 -> int32; a plain loop on CPU) and the fp32 GEMM the fake engine runs (MKL). Each shape
// alternates the variants rep by rep; ratios come from one run. Exactness against an int64 matmul
// is checked for the integer variants. Prints a JSON object.
//
//   build/release/bench/bench_int_gemm [--tokens 2048] [--reps 5] [--threads N] [--no-int-mm]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dptq/error.hpp"
#include "dptq/int_engine.hpp"
#include "dptq/weight_quant.hpp"

int main(int argc, char** argv) {
  int64_t T = 2048, reps = 5, threads = 0;
  bool int_mm = true;
  for (int i = 1; i < argc; ++i) {
    const bool v = i + 1 < argc;
    if (!std::strcmp(argv[i], "--no-int-mm")) int_mm = false;
    else if (v && !std::strcmp(argv[i], "--tokens")) T = std::stoll(argv[++i]);
    else if (v && !std::strcmp(argv[i], "--reps")) reps = std::stoll(argv[++i]);
    else if (v && !std::strcmp(argv[i], "--threads")) threads = std::stoll(argv[++i]);
    else {
      std::fprintf(stderr, "bench_int_gemm: unknown or incomplete option %s\n", argv[i]);
      return 2;
    }
  }
  try {
    c10::InferenceMode guard;
    if (threads > 0) at::set_num_threads(int(threads));
    if (const std::string why = dptq::int_engine_unsupported(); !why.empty()) {
      std::printf("{\"bench\": \"int_gemm\", \"skipped\": \"%s\"}\n", why.c_str());
      return 0;
    }
    struct Shape { const char* name; int64_t K, N; };
    // SmolLM2-135M: d 576, q 576 + k/v 2 x 192, d_ff 1536.
    const Shape shapes[] = {{"qkv", 576, 960}, {"o", 576, 576}, {"gate_up", 576, 3072}, {"down", 1536, 576}};
    nlohmann::json rows = nlohmann::json::array();
    for (const Shape& s : shapes) {
      const at::Tensor u = at::randint(0, 16, {T, s.K}, at::kByte);  // 4-bit activation codes
      dptq::QuantizedWeight w;
      w.codes = at::randint(-8, 8, {s.N, s.K}, at::kChar);
      w.scales = at::ones({s.N}, at::kFloat);
      dptq::IntLinear il;
      if (const std::string why = dptq::make_int_linear({&w}, {}, il); !why.empty())
        throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", why);
      const dptq::ActCodes a{u, at::ones({T}, at::kFloat), at::zeros({T}, at::kInt)};
      const at::Tensor s8 = (u.to(at::kInt) - 8).to(at::kChar);  // the same codes as int8 for _int_mm
      const at::Tensor xf = u.to(at::kFloat), wf = w.codes.to(at::kFloat);
      const at::Tensor exact = at::matmul(u.to(at::kLong), w.codes.to(at::kLong).t());
      const bool fb_exact = at::equal(dptq::int_accumulate(a, il).to(at::kLong), exact);
      struct Variant { const char* name; std::function<void()> run; double best = 1e30; };
      std::vector<Variant> vs = {{"fbgemm u8s8", [&] { dptq::int_accumulate(a, il); }},
                                 {"fp32 mkl", [&] { at::matmul(xf, wf.t()); }}};
      if (int_mm) vs.push_back({"at::_int_mm s8s8", [&] { at::_int_mm(s8, w.codes.t()); }});
      for (Variant& v : vs) v.run();  // warm-up
      for (int64_t r = 0; r < reps; ++r)
        for (Variant& v : vs) {
          const auto t0 = std::chrono::steady_clock::now();
          v.run();
          v.best = std::min(v.best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
      nlohmann::json row = {{"layer", s.name}, {"T", T}, {"K", s.K}, {"N", s.N}, {"fbgemm_exact", fb_exact}};
      for (const Variant& v : vs) {
        row[std::string(v.name) + " ms"] = 1e3 * v.best;
        row[std::string(v.name) + " GMAC/s"] = double(T * s.K * s.N) / v.best * 1e-9;
      }
      row["fbgemm_speed_vs_fp32"] = vs[1].best / vs[0].best;
      if (int_mm) row["int_mm_speed_vs_fp32"] = vs[1].best / vs[2].best;
      std::fprintf(stderr, "[bench] %s done\n", s.name);
      rows.push_back(row);
    }
    std::printf("%s\n", nlohmann::json{{"bench", "int_gemm"}, {"threads", at::get_num_threads()}, {"reps", reps},
                                       {"shapes", rows}}.dump(2).c_str());
  } catch (const dptq::Error& e) {
    std::fprintf(stderr, "bench_int_gemm: error: %s\n", e.what());
    return 2;
  }
  return 0;
}

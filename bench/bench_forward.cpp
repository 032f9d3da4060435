// Forward throughput on CPU: tokens/s of full forward passes (embeddings to the NLL of every
// position, as perplexity computes it) at a given sequence length, after one warm-up pass per
// variant. The variants alternate rep by rep, so their ratios come from one run on one machine
// state (the machines are noisy). Prints a JSON object.
//
// Variants: "fp32" (unless --variants leaves it out); "bf16" with --bf16; with --method M, the
// W4A4KV4 model (every block 4-bit) on the integer engine ("M int") and on the fake-quant engine
// ("M fake"), one quantized copy switched between the two (dptq::set_engine). --profile-ops adds where each variant's time
// goes (dptq/op_times.hpp), summed over its timed reps. --variants fp32,bf16,int,fake runs only
// those (a model is loaded only for the variants that need it; int/fake need --method);
// --no-weight-clip skips RTN's MSE clip search (same forward arithmetic, much faster quantization
// of large models). The JSON gives the process's peak RSS (getrusage) and its RSS at the end
// (VmRSS, the models still loaded).
//
//   build/release/bench/bench_forward [--model PATH] [--seqlen 2048] [--reps 3] [--threads N]
//                                     [--method quarot-rtn] [--bf16] [--profile-ops]
//                                     [--variants fp32,fake] [--no-weight-clip]
#include <sys/resource.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/op_times.hpp"
#include "dptq/quantize.hpp"

namespace {

struct Variant {
  std::string name;
  std::function<double()> run;  // one timed forward, seconds
  double best = 1e30, total = 0;
  nlohmann::json ops = nlohmann::json::array();
  std::map<std::string, double> op_seconds;
};

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = DPTQ_DEFAULT_MODEL, method, variant_list;
  int64_t seqlen = 2048, reps = 3, threads = 0;
  bool bf16 = false, profile_ops = false, weight_clip = true;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(argv[i], "--bf16")) bf16 = true;
    else if (!std::strcmp(argv[i], "--profile-ops")) profile_ops = true;
    else if (!std::strcmp(argv[i], "--no-weight-clip")) weight_clip = false;
    else if (has_value && !std::strcmp(argv[i], "--variants")) variant_list = argv[++i];
    else if (has_value && !std::strcmp(argv[i], "--model")) model_path = argv[++i];
    else if (has_value && !std::strcmp(argv[i], "--seqlen")) seqlen = std::stoll(argv[++i]);
    else if (has_value && !std::strcmp(argv[i], "--reps")) reps = std::stoll(argv[++i]);
    else if (has_value && !std::strcmp(argv[i], "--threads")) threads = std::stoll(argv[++i]);
    else if (has_value && !std::strcmp(argv[i], "--method")) method = argv[++i];
    else {
      std::fprintf(stderr, "bench_forward: unknown or incomplete option %s\n", argv[i]);
      return 2;
    }
  }
  // Which variants run: --variants, else fp32 [+ bf16] [+ int, fake with --method].
  bool want_fp32 = true, want_bf16 = bf16, want_int = !method.empty(), want_fake = !method.empty();
  if (!variant_list.empty()) {
    want_fp32 = want_bf16 = want_int = want_fake = false;
    std::stringstream ss(variant_list);
    for (std::string v; std::getline(ss, v, ',');) {
      if (v == "fp32") want_fp32 = true;
      else if (v == "bf16") want_bf16 = true;
      else if (v == "int") want_int = true;
      else if (v == "fake") want_fake = true;
      else {
        std::fprintf(stderr, "bench_forward: unknown variant %s (fp32, bf16, int, fake)\n", v.c_str());
        return 2;
      }
    }
  }
  if ((want_int || want_fake) && method.empty()) {
    std::fprintf(stderr, "bench_forward: the int and fake variants need --method\n");
    return 2;
  }
  if (!want_fp32 && !want_bf16 && !want_int && !want_fake) {
    std::fprintf(stderr, "bench_forward: no variant to run\n");
    return 2;
  }
  try {
    c10::InferenceMode guard;
    if (threads > 0) at::set_num_threads(int(threads));
    std::optional<dptq::Model> fp, half, quant;
    if (want_fp32) fp.emplace(dptq::load_model(model_path));
    if (want_bf16) half.emplace(dptq::load_model(model_path, {dptq::Device::Cpu, dptq::DType::BF16}));
    if (want_int || want_fake) {
      quant.emplace(dptq::load_model(model_path));
      dptq::QuantizeOptions o;
      o.method = method;
      o.weight_mse_clip = weight_clip;
      dptq::quantize_model(*quant, dptq::uniform_plan(*quant, method), o);
    }
    const dptq::Model& any = fp ? *fp : half ? *half : *quant;
    const at::Tensor ids = at::randint(0, any.config().vocab_size, {seqlen}, at::kLong);
    auto timed = [&ids](const dptq::Model& m) {
      const auto t0 = std::chrono::steady_clock::now();
      dptq::window_nll_sum(m, ids);
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    std::vector<Variant> vs;
    if (fp) vs.push_back({"fp32", [&] { return timed(*fp); }});
    if (half) vs.push_back({"bf16", [&] { return timed(*half); }});
    if (want_int) {
      std::string why;
      if (dptq::set_engine(*quant, dptq::Engine::Int, &why) != dptq::Engine::Int)
        throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "the integer engine is not available: " + why);
      vs.push_back({method + " int", [&] { dptq::set_engine(*quant, dptq::Engine::Int); return timed(*quant); }});
    }
    if (want_fake)
      vs.push_back({method + " fake", [&] { dptq::set_engine(*quant, dptq::Engine::Fake); return timed(*quant); }});
    std::fprintf(stderr, "[bench] warm-up (%lld tokens per variant)\n", (long long)seqlen);
    for (Variant& v : vs) v.run();
    for (int64_t r = 0; r < reps; ++r)
      for (Variant& v : vs) {
        dptq::OpTimes::enable(profile_ops);
        const double s = v.run();
        if (profile_ops)
          for (const auto& row : dptq::OpTimes::rows()) v.op_seconds[row.op] += row.seconds;
        dptq::OpTimes::enable(false);
        v.best = std::min(v.best, s);
        v.total += s;
        std::fprintf(stderr, "[bench] rep %lld %-18s %.2f s\n", (long long)r + 1, v.name.c_str(), s);
      }
    nlohmann::json variants = nlohmann::json::object();
    for (const Variant& v : vs) {
      nlohmann::json j = {{"best_s", v.best}, {"mean_s", v.total / double(reps)},
                          {"tokens_per_s_best", double(seqlen) / v.best}};
      if (fp) j["speed_vs_fp32"] = vs[0].best / v.best;
      if (profile_ops) {
        nlohmann::json ops = nlohmann::json::object();
        for (const auto& [op, s] : v.op_seconds) ops[op] = s / double(reps);
        j["op_seconds_per_forward"] = ops;
      }
      variants[v.name] = j;
    }
    nlohmann::json out = {{"bench", "forward"}, {"model", model_path}, {"seqlen", seqlen}, {"reps", reps},
                          {"threads", at::get_num_threads()}, {"variants", variants}};
    if (quant) {
      out["method"] = method;
      out["weight_clip"] = weight_clip;
      if (want_int && want_fake)
        out["int_over_fake_speed"] = variants[method + " fake"]["best_s"].get<double>() /
                                     variants[method + " int"]["best_s"].get<double>();
      if (fp && want_fake)
        out["fake_over_fp32_time"] = variants[method + " fake"]["best_s"].get<double>() / vs[0].best;
      if (fp && want_int)
        out["int_over_fp32_time"] = variants[method + " int"]["best_s"].get<double>() / vs[0].best;
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    out["peak_rss_mib"] = double(ru.ru_maxrss) / 1024.0;  // Linux: ru_maxrss in KiB
    if (std::FILE* f = std::fopen("/proc/self/status", "r")) {  // resident now, models still loaded
      char line[256];
      long kib = -1;
      while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
      std::fclose(f);
      if (kib >= 0) out["rss_end_mib"] = double(kib) / 1024.0;
    }
    out["n_params"] = any.info().n_params;
    std::printf("%s\n", out.dump(2).c_str());
  } catch (const dptq::Error& e) {
    std::fprintf(stderr, "bench_forward: error: %s\n", e.what());
    return 2;
  }
  return 0;
}

// Forward throughput on CPU: tokens/s of full forward passes (embeddings to the NLL of every
// position, as perplexity computes it) at a given sequence length, after one warm-up pass per
// variant. The variants alternate rep by rep, so their ratios come from one run on one machine
// state (the machines are noisy). Prints a JSON object.
//
// Variants: "fp32" always; "bf16" with --bf16; with --method M, the W4A4KV4 model (every block
// 4-bit) on the integer engine ("M int") and on the fake-quant engine ("M fake"), one quantized
// copy switched between the two (dptq::set_engine). --profile-ops adds where each variant's time
// goes (dptq/op_times.hpp), summed over its timed reps.
//
//   build/release/bench/bench_forward [--model PATH] [--seqlen 2048] [--reps 3] [--threads N]
//                                     [--method quarot-rtn] [--bf16] [--profile-ops]
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
  std::string model_path = DPTQ_DEFAULT_MODEL, method;
  int64_t seqlen = 2048, reps = 3, threads = 0;
  bool bf16 = false, profile_ops = false;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(argv[i], "--bf16")) bf16 = true;
    else if (!std::strcmp(argv[i], "--profile-ops")) profile_ops = true;
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
  try {
    c10::InferenceMode guard;
    if (threads > 0) at::set_num_threads(int(threads));
    const dptq::Model model = dptq::load_model(model_path);
    std::optional<dptq::Model> half, quant;
    if (bf16) half.emplace(dptq::load_model(model_path, {dptq::Device::Cpu, dptq::DType::BF16}));
    if (!method.empty()) {
      quant.emplace(dptq::load_model(model_path));
      dptq::QuantizeOptions o;
      o.method = method;
      dptq::quantize_model(*quant, dptq::uniform_plan(*quant, method), o);
    }
    const at::Tensor ids = at::randint(0, model.config().vocab_size, {seqlen}, at::kLong);
    auto timed = [&ids](const dptq::Model& m) {
      const auto t0 = std::chrono::steady_clock::now();
      dptq::window_nll_sum(m, ids);
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    std::vector<Variant> vs;
    vs.push_back({"fp32", [&] { return timed(model); }});
    if (half) vs.push_back({"bf16", [&] { return timed(*half); }});
    if (quant) {
      std::string why;
      if (dptq::set_engine(*quant, dptq::Engine::Int, &why) != dptq::Engine::Int)
        throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "the integer engine is not available: " + why);
      vs.push_back({method + " int", [&] { dptq::set_engine(*quant, dptq::Engine::Int); return timed(*quant); }});
      vs.push_back({method + " fake", [&] { dptq::set_engine(*quant, dptq::Engine::Fake); return timed(*quant); }});
    }
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
                          {"tokens_per_s_best", double(seqlen) / v.best}, {"speed_vs_fp32", vs[0].best / v.best}};
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
      out["int_over_fake_speed"] = variants[method + " fake"]["best_s"].get<double>() /
                                   variants[method + " int"]["best_s"].get<double>();
      out["fake_over_fp32_time"] = variants[method + " fake"]["best_s"].get<double>() / vs[0].best;
      out["int_over_fp32_time"] = variants[method + " int"]["best_s"].get<double>() / vs[0].best;
    }
    std::printf("%s\n", out.dump(2).c_str());
  } catch (const dptq::Error& e) {
    std::fprintf(stderr, "bench_forward: error: %s\n", e.what());
    return 2;
  }
  return 0;
}

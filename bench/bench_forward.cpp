// Forward throughput of a model on CPU: tokens/s of full forward passes (embeddings to logits) at
// a given sequence length, after one warm-up pass. Prints a JSON object.
// With --method M, a second copy of the model is quantized with M (W4A4KV4, every block 4-bit)
// and the two alternate rep by rep: `quant_over_fp` is the ratio of their best times in one run.
//
//   build/bench/bench_forward [--model PATH] [--seqlen 2048] [--reps 3] [--threads N] [--method quarot-rtn]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <optional>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/quantize.hpp"

int main(int argc, char** argv) {
  std::string model_path = DPTQ_DEFAULT_MODEL, method;
  int64_t seqlen = 2048, reps = 3, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--seqlen")) seqlen = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--method")) method = argv[i + 1];
  }
  try {
    if (threads > 0) at::set_num_threads(int(threads));
    const dptq::Model model = dptq::load_model(model_path);
    std::optional<dptq::Model> quant;
    if (!method.empty()) {
      quant.emplace(dptq::load_model(model_path));
      dptq::QuantizeOptions o;
      o.method = method;
      dptq::quantize_model(*quant, dptq::uniform_plan(*quant, method), o);
    }
    const at::Tensor ids = at::randint(0, model.config().vocab_size, {seqlen}, at::kLong);
    std::fprintf(stderr, "[bench] warm-up (%lld tokens)\n", (long long)seqlen);
    dptq::window_nll_sum(model, ids);
    if (quant) dptq::window_nll_sum(*quant, ids);
    double best = 1e30, total = 0, qbest = 1e30, qtotal = 0;
    auto timed = [&](const dptq::Model& m) {
      const auto t0 = std::chrono::steady_clock::now();
      dptq::window_nll_sum(m, ids);
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    for (int64_t r = 0; r < reps; ++r) {
      const double s = timed(model);
      best = std::min(best, s);
      total += s;
      std::fprintf(stderr, "[bench] rep %lld: %.2f s\n", (long long)r + 1, s);
      if (quant) {
        const double q = timed(*quant);
        qbest = std::min(qbest, q);
        qtotal += q;
        std::fprintf(stderr, "[bench] rep %lld %s: %.2f s\n", (long long)r + 1, method.c_str(), q);
      }
    }
    nlohmann::json j = {{"bench", "forward"}, {"model", model_path}, {"seqlen", seqlen}, {"reps", reps},
                        {"threads", at::get_num_threads()}, {"best_s", best}, {"mean_s", total / double(reps)},
                        {"tokens_per_s_best", double(seqlen) / best}, {"tokens_per_s_mean", double(seqlen * reps) / total}};
    if (quant) {
      j["method"] = method;
      j["quant_best_s"] = qbest;
      j["quant_tokens_per_s_best"] = double(seqlen) / qbest;
      j["quant_over_fp"] = qbest / best;
    }
    std::printf("%s\n", j.dump(2).c_str());
  } catch (const dptq::Error& e) {
    std::fprintf(stderr, "bench_forward: error: %s\n", e.what());
    return 2;
  }
  return 0;
}

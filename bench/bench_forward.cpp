// Forward throughput of a model on CPU: tokens/s of full forward passes (embeddings to logits) at
// a given sequence length, after one warm-up pass. Prints a JSON object.
//
//   build/bench/bench_forward [--model PATH] [--seqlen 2048] [--reps 3] [--threads N]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"

int main(int argc, char** argv) {
  std::string model_path = DPTQ_DEFAULT_MODEL;
  int64_t seqlen = 2048, reps = 3, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--seqlen")) seqlen = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::stoll(argv[i + 1]);
  }
  try {
    if (threads > 0) at::set_num_threads(int(threads));
    const dptq::Model model = dptq::load_model(model_path);
    const at::Tensor ids = at::randint(0, model.config().vocab_size, {seqlen}, at::kLong);
    std::fprintf(stderr, "[bench] warm-up (%lld tokens)\n", (long long)seqlen);
    dptq::window_nll_sum(model, ids);
    double best = 1e30, total = 0;
    for (int64_t r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      dptq::window_nll_sum(model, ids);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, s);
      total += s;
      std::fprintf(stderr, "[bench] rep %lld: %.2f s\n", (long long)r + 1, s);
    }
    nlohmann::json j = {{"bench", "forward"}, {"model", model_path}, {"seqlen", seqlen}, {"reps", reps},
                        {"threads", at::get_num_threads()}, {"best_s", best}, {"mean_s", total / double(reps)},
                        {"tokens_per_s_best", double(seqlen) / best}, {"tokens_per_s_mean", double(seqlen * reps) / total}};
    std::printf("%s\n", j.dump(2).c_str());
  } catch (const dptq::Error& e) {
    std::fprintf(stderr, "bench_forward: error: %s\n", e.what());
    return 2;
  }
  return 0;
}

// Profiler benchmarks (numbers go to the notes and docs/results.md; nothing asserts a time):
//
//   bench_profile overhead [--model M] [--samples 8] [--seqlen 512] [--reps 2]
//     Time of profile_model over N windows against plain forwards over the same windows, measured
//     alternately in one run: "full" = embeddings -> blocks -> final norm -> logits (what a
//     perplexity pass computes), "blocks" = embeddings -> blocks without taps. Prints the ratios.
//   bench_profile rss [--model M] [--samples N] [--seqlen S]
//     Runs one profile and prints the process's peak RSS (getrusage); run it for 16 and 256
//     windows (bench/run_benches.sh) to check that memory does not grow with the window count.
#include <sys/resource.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/profiler.hpp"

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || (std::strcmp(argv[1], "overhead") && std::strcmp(argv[1], "rss"))) {
    std::fprintf(stderr, "usage: bench_profile overhead|rss [--model M] [--samples N] [--seqlen S] [--reps R]\n");
    return 2;
  }
  const std::string mode = argv[1];
  std::string model_path = DPTQ_DEFAULT_MODEL;
  dptq::ProfileOptions o;
  o.samples = 8;
  int reps = 2;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--samples")) o.samples = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seqlen")) o.seqlen = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::stoi(argv[i + 1]);
  }
  try {
    const dptq::Model model = dptq::load_model(model_path);
    nlohmann::json j = {{"bench", "profile_" + mode}, {"model", model_path}, {"samples", o.samples}, {"seqlen", o.seqlen},
                        {"threads", at::get_num_threads()}};
    if (mode == "rss") {
      const auto t0 = std::chrono::steady_clock::now();
      const dptq::Trace t = dptq::profile_model(model, o);
      rusage ru{};
      getrusage(RUSAGE_SELF, &ru);
      j["seconds"] = seconds_since(t0);
      j["peak_rss_mib"] = double(ru.ru_maxrss) / 1024.0;
      j["windows"] = t.meta.windows;
    } else {
      const auto windows = dptq::calibration_windows(model, o);
      const auto rope = dptq::rope_tables(model, o.seqlen);
      auto plain = [&](bool logits) {
        c10::InferenceMode guard;
        const auto t0 = std::chrono::steady_clock::now();
        for (const auto& w : windows) {
          const at::Tensor ids = at::tensor(std::vector<int64_t>(w.begin(), w.end()), at::kLong);
          if (logits) {
            dptq::forward_logits(model, ids);
          } else {
            at::Tensor h = dptq::embed_tokens(model, ids);
            for (int64_t l = 0; l < model.config().n_layers; ++l) h = dptq::decoder_block(model, l, h, rope);
          }
        }
        return seconds_since(t0);
      };
      auto profiled = [&] {
        const auto t0 = std::chrono::steady_clock::now();
        dptq::profile_model(model, o);
        return seconds_since(t0);
      };
      plain(true);  // warm-up
      double best_full = 1e30, best_blocks = 1e30, best_prof = 1e30;
      for (int r = 0; r < reps; ++r) {
        best_full = std::min(best_full, plain(true));
        best_blocks = std::min(best_blocks, plain(false));
        best_prof = std::min(best_prof, profiled());
        std::fprintf(stderr, "[bench] rep %d: full %.2fs blocks %.2fs profile %.2fs\n", r + 1, best_full, best_blocks, best_prof);
      }
      j["reps"] = reps;
      j["forward_full_s"] = best_full;
      j["forward_blocks_s"] = best_blocks;
      j["profile_s"] = best_prof;
      j["ratio_profile_vs_full_forward"] = best_prof / best_full;
      j["ratio_profile_vs_blocks_forward"] = best_prof / best_blocks;
    }
    std::printf("%s\n", j.dump(2).c_str());
  } catch (const dptq::Error& e) {
    std::fprintf(stderr, "bench_profile: error: %s\n", e.what());
    return 2;
  }
  return 0;
}

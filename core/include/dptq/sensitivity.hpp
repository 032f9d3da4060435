// dptq/sensitivity.hpp — measured sensitivity of every block and site to its activation bits
// (issue 12; definitions in docs/metrics.md §8). Torch-free header: the CLI and the studio share it.
//
// Contents
//   SensitivityOptions     which text, how many windows, blocks only or blocks and sites
//   sensitivity_windows    the token windows a measurement uses (random crops or the ppl protocol)
//   measure_sensitivity    FP model + W4A4KV4 model -> Sensitivity (trace.hpp), streamed by window
//   sensitivity_gain       the per-block gain vector a ranking / proxy screen uses
//
// What measure_sensitivity computes, per window w (T tokens, T-1 predicted):
//   FP:    p_t = softmax(FP logits at position t), t = 0..T-2 (kept for the window only)
//   base:  every block of `quant` at its plan's bits (normally W4A4KV4); the input of every block
//          is cached (the "shared prefix" of the oracle: a change in block l reuses blocks < l)
//   cfg:   one block l with all four sites at 8 bits, or one site of block l at 8 bits
//   NLL_w(cfg) = mean_t −log q_cfg(x_{t+1} | ·),  KL_w(cfg) = mean_t Σ_v p_t(v)·(log p_t(v) − log q_cfg,t(v))
//   gain_w(cfg) = X_w(base) − X_w(cfg) for X in {NLL, KL}; reported: mean over windows and its
//   standard error sd/√W (NaN for W = 1). Memory: one window's FP probabilities and L+1 cached
//   streams, whatever the number of windows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dptq/model.hpp"
#include "dptq/task.hpp"
#include "dptq/trace.hpp"

namespace dptq {

struct SensitivityOptions {
  std::string text = "builtin";         // "builtin" (assets/calibration) or a UTF-8 text file
  std::string window_mode = "random";   // "random": seeded crops as `dptq profile` draws them;
                                        // "sequential": windows 0..N-1 of the ppl protocol
  int64_t windows = 8;                  // >= 1
  int64_t seqlen = 512;                 // >= 2, <= model context
  uint64_t seed = 0;                    // random mode only
  bool sites = true;                    // also measure the four sites of every block (5x the work)
};

// The token windows of `opts` (InvalidArgument for a bad mode / sizes, too short a text; Io).
std::vector<std::vector<int32_t>> sensitivity_windows(const Model& model, const SensitivityOptions& opts);

// `fp` is the unquantized model, `quant` the same model quantized (quantize_model) whose current
// plan is the base; its activation bits are restored on return (also on an exception). Progress
// counts configurations (window × (1 + L·(1 + 4·sites))); Error(Cancelled) when cancelled. Fills
// every field of the result but text_source / method / window_mode / seed (set by the caller).
Sensitivity measure_sensitivity(const Model& fp, Model& quant, const std::vector<std::vector<int32_t>>& windows,
                                bool sites, Progress* progress = nullptr);

// Per-block measured gain: "nll" (default) or "kl"; InvalidArgument when the trace has none or
// the metric is unknown.
std::vector<double> sensitivity_gain(const Trace& trace, const std::string& metric = "nll");

}  // namespace dptq

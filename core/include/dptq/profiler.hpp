// dptq/profiler.hpp — streaming instrumented calibration (DESIGN §4). Torch-free header.
//
// profile_model() streams calibration windows through the decoder with taps at every block and
// accumulates the metrics of dptq/trace.hpp in fixed-size running accumulators (histograms,
// running maxima, moment sums, a top-k list), so memory does not grow with the number of windows.
// After every window it can publish a snapshot Trace (the studio plots it live).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "dptq/model.hpp"
#include "dptq/task.hpp"
#include "dptq/trace.hpp"

namespace dptq {

struct ProfileOptions {
  std::string calib = "builtin";   // "builtin" (assets/calibration/*.txt) or a text file
  int64_t samples = 64;            // calibration windows
  int64_t seqlen = 512;            // tokens per window (2..model context)
  uint64_t seed = 0;               // window sampling
  std::string rotation = "none";   // quantizer view: "none" or "quarot"
  uint64_t rotation_seed = 0;      // seed of the QuaRot random Hadamard rotations
  double massive_abs_threshold = 100.0;
  double massive_rel_threshold = 1000.0;
  int64_t topk = 16;               // massive-activation candidates kept per stream
  int64_t holdout_tokens = 0;      // windows never reach into the text's last N tokens (held out)
  // Reduce the statistics with tensor operations and the stream-stats kernels' entries
  // (device_ops) even for CPU taps: the path CUDA taps always take, so tests can compare it with
  // the host loops on a machine without a GPU.
  bool tensor_stats = false;
};

// The built-in calibration corpus: assets/calibration/*.txt in byte-wise file-name order joined
// by a blank line. The folder is DPTQ_ASSETS_DIR (compile time) unless $DPTQ_ASSETS is set.
std::string builtin_calibration_text();
std::filesystem::path assets_dir();

// Token windows: the whole calibration text tokenized once, `samples` windows of `seqlen` tokens
// starting at offsets drawn uniformly with mt19937_64(seed) (GPTQ-style random crops), none of
// them reaching into the last `holdout_tokens` tokens.
// Throws InvalidArgument for samples < 1, seqlen < 2 or > context, or text shorter than seqlen;
// Io for an unreadable file.
// The whole calibration text ("builtin" or a file) tokenized once, with BOS.
std::vector<int32_t> calibration_tokens(const Model& model, const std::string& calib);
std::vector<std::vector<int32_t>> calibration_windows(const Model& model, const ProfileOptions& opts);

using TraceCallback = std::function<void(const Trace&)>;

// Runs the calibration; `on_window` (optional) receives a snapshot after each window.
// Progress counts windows; cancellation throws Error(Cancelled).
Trace profile_model(const Model& model, const ProfileOptions& opts, Progress* progress = nullptr,
                    const TraceCallback& on_window = {});

}  // namespace dptq

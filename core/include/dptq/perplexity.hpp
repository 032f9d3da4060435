// dptq/perplexity.hpp — perplexity by the GPTQ / QuaRot / SpinQuant / FlatQuant protocol:
// tokenize the whole text once (one BOS at most, at the very start, if the tokenizer adds one),
// cut non-overlapping windows of `seqlen` tokens, drop the incomplete tail, report exp(mean NLL)
// over every predicted token of every window. Windows are streamed: memory does not grow with the
// length of the text.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "dptq/model.hpp"
#include "dptq/task.hpp"

namespace dptq {

struct PerplexityOptions {
  int64_t seqlen = 2048;      // window length in tokens (> 1, <= model context)
  int64_t max_windows = -1;   // evaluate at most N windows (-1: all)
  int64_t first_window = 0;   // skip the windows before this one (0-based): a long evaluation can be
                              // split into slices whose nll_sum add up to the whole
};

struct PerplexityResult {
  double ppl = 0;             // exp(nll_mean)
  double nll_mean = 0;        // mean negative log-likelihood per predicted token (nats)
  double nll_sum = 0;         // total NLL over the predicted tokens (nats): slices combine exactly
  int64_t first_window = 0;   // the first window evaluated
  int64_t tokens = 0;         // tokens fed to the model (windows * seqlen)
  int64_t predicted = 0;      // tokens whose NLL was scored (windows * (seqlen - 1))
  int64_t windows = 0;
  double seconds = 0;         // wall time of the forward passes
  double tokens_per_s = 0;    // tokens / seconds
};

// Reads a UTF-8 text file whole; throws Error(Io) naming the file.
std::string read_text_file(const std::filesystem::path& path);

// Throws Error(InvalidArgument) for seqlen <= 1 or > context, too few tokens for one window, or a
// first_window past the last window.
PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& ids,
                            const PerplexityOptions& opts, Progress* progress = nullptr);

}  // namespace dptq

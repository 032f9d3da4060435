// Perplexity by the GPTQ / QuaRot protocol (see perplexity.hpp): windows streamed one at a time.
#include "dptq/perplexity.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "dptq/atomic_file.hpp"
#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/tokenizer.hpp"

namespace dptq {

std::string read_text_file(const std::filesystem::path& path) {
  std::string text = read_file_bytes(path, "text file");
  if (const size_t bad = first_invalid_utf8(text); bad != std::string::npos) {
    const int64_t line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n');
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned>(static_cast<unsigned char>(text[bad])));
    throw Error(ErrorKind::Format, path.string(), "not valid UTF-8: byte " + std::string(byte) + " at offset " +
                std::to_string(bad) + " (line " + std::to_string(line) + ")");
  }
  return text;
}

PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& ids, const PerplexityOptions& opts,
                            Progress* progress) {
  const int64_t ctx = model.config().max_context;
  if (opts.seqlen <= 1) throw Error(ErrorKind::InvalidArgument, "", "--seqlen must be at least 2 (got " + std::to_string(opts.seqlen) + ")");
  if (ctx > 0 && opts.seqlen > ctx)
    throw Error(ErrorKind::InvalidArgument, "", "--seqlen " + std::to_string(opts.seqlen) + " exceeds the model context " + std::to_string(ctx));
  int64_t windows = int64_t(ids.size()) / opts.seqlen;
  if (windows == 0)
    throw Error(ErrorKind::InvalidArgument, "", "text has " + std::to_string(ids.size()) + " tokens, fewer than one window of " +
                std::to_string(opts.seqlen));
  const int64_t total = windows;
  if (opts.first_window < 0 || opts.first_window >= total)
    throw Error(ErrorKind::InvalidArgument, "", "--first-window " + std::to_string(opts.first_window) + " is out of range: the text has " +
                std::to_string(total) + " windows of " + std::to_string(opts.seqlen) + " tokens (0.." + std::to_string(total - 1) + ")");
  windows = total - opts.first_window;
  if (opts.max_windows >= 0) windows = std::min(windows, opts.max_windows);
  if (windows == 0) throw Error(ErrorKind::InvalidArgument, "", "--max-windows must be positive");

  PerplexityResult r;
  r.windows = windows;
  if (progress) { progress->set_total(windows); progress->set_done(0); }
  const auto t0 = std::chrono::steady_clock::now();
  double nll = 0;
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t index = opts.first_window + w;
    if (progress) {
      progress->throw_if_cancelled();
      progress->set_stage("window " + std::to_string(index + 1) + "/" + std::to_string(total));
    }
    const at::Tensor win = at::from_blob(const_cast<int32_t*>(ids.data() + index * opts.seqlen), {opts.seqlen}, at::kInt).to(at::kLong);
    nll += window_nll_sum(model, win);
    if (progress) progress->set_done(w + 1);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens = windows * opts.seqlen;
  r.predicted = windows * (opts.seqlen - 1);
  r.first_window = opts.first_window;
  r.nll_sum = nll;
  r.nll_mean = nll / double(r.predicted);
  r.ppl = std::exp(r.nll_mean);
  r.tokens_per_s = r.seconds > 0 ? double(r.tokens) / r.seconds : 0;
  if (!std::isfinite(r.ppl)) throw Error(ErrorKind::Format, "", "perplexity is not finite (NaN or Inf in the model output)");
  return r;
}

}  // namespace dptq

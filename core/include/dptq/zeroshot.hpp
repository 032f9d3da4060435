// dptq/zeroshot.hpp — zero-shot QA accuracy by lm-evaluation-harness 0.4.9's conventions
// (docs/zeroshot.md): PIQA, ARC-Easy, ARC-Challenge, WinoGrande, LAMBADA (OpenAI), BoolQ,
// HellaSwag from the public copies in ../shared/data/zeroshot.
//
// A task is a list of items; an item is a list of (context, continuation) requests (one per
// choice; LAMBADA: one) and the index of the gold choice. The score of a request is the sum of
// the log-probabilities of the continuation tokens given the context (lm-eval's loglikelihood,
// with its tokenization: trailing spaces of the context move to the continuation, continuation
// tokens = tokens(context + continuation) after the first |tokens(context)|, no BOS).
//   acc       argmax of the scores == gold            (LAMBADA: every continuation token greedy)
//   acc_norm  argmax of score / len(choice) == gold    (len in Unicode code points, as Python's)
//   ppl       LAMBADA only: exp(-mean score)
//
// Loading and request construction are torch-free (zeroshot_tasks.cpp, fuzzable); scoring runs the
// model (zeroshot.cpp): all requests of an item — and several items — go through the model as ONE
// packed sequence: the tokens the requests share are computed once, each continuation attends to
// the shared tokens and to itself only (a block mask and per-token positions), which is exact
// because every quantizer of the engine works per token.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "dptq/model.hpp"
#include "dptq/task.hpp"

namespace dptq {

struct ZeroShotRequest {
  std::string context, continuation;
};

struct ZeroShotItem {
  std::vector<ZeroShotRequest> requests;  // one per choice (LAMBADA: one)
  std::vector<std::string> choices;       // the choice texts whose length normalises acc_norm
  int gold = 0;
};

struct ZeroShotTask {
  std::string name;        // "piqa", ...
  std::string source;      // the data file(s) read
  bool has_acc_norm = false;
  bool greedy_accuracy = false;  // LAMBADA: acc = all continuation tokens greedy; ppl reported
  std::vector<ZeroShotItem> items;
};

// Threads of the CPU compute pool (LibTorch's intra-op threads), for reports.
int compute_threads();

// Task names in the order of the papers' tables.
const std::vector<std::string>& zeroshot_task_names();

// Reads task `name` from `root` (the zeroshot data folder), keeping the first `limit` items in file
// order (-1: all). Throws Error(InvalidArgument) for an unknown task name, Error(Io) for a missing
// folder or file, Error(Format) naming the file and line for a malformed record.
ZeroShotTask load_zeroshot_task(const std::filesystem::path& root, const std::string& name, int64_t limit = -1);

// The default data folder: $DPTQ_ZEROSHOT_DIR, else ../shared/data/zeroshot next to the source tree.
std::filesystem::path default_zeroshot_dir();

struct ChoiceScore {
  double loglik = 0;    // sum of log p(continuation token | prefix), nats
  bool greedy = false;  // every continuation token is the argmax
  int64_t tokens = 0;   // continuation tokens
};

struct ZeroShotItemResult {
  std::vector<ChoiceScore> choices;
  int gold = 0, pred = 0, pred_norm = 0;
  bool correct = false, correct_norm = false;
};

struct ZeroShotOptions {
  int64_t batch_tokens = 1024;  // pack items into one forward until this many tokens
};

struct ZeroShotResult {
  std::string task;
  int64_t n = 0;
  double acc = 0, acc_stderr = 0;
  double acc_norm = 0, acc_norm_stderr = 0;  // valid when has_acc_norm
  bool has_acc_norm = false;
  double ppl = 0;                            // LAMBADA only (greedy_accuracy)
  bool has_ppl = false;
  int64_t tokens = 0;    // tokens through the model (after sharing)
  int64_t forwards = 0;  // packed forward passes
  double seconds = 0, items_per_s = 0;
  std::vector<ZeroShotItemResult> items;
};

// Scores every item of `task` with `model` (FP, fake-quantized or integer engine: whatever the
// model is). Progress counts items; cancellable.
ZeroShotResult evaluate_zeroshot(const Model& model, const ZeroShotTask& task, const ZeroShotOptions& opts = {},
                                 Progress* progress = nullptr);

// The packed layout of one or more items (exposed for tests): token ids, positions, and for each
// token the segment it belongs to; a token attends to earlier tokens of its own segment and of the
// segment's parent (the shared prefix of its item). Built by pack_requests.
struct PackedRequest {
  int64_t item = 0, choice = 0;
  std::vector<int64_t> rows;      // packed row whose logits predict each continuation token
  std::vector<int32_t> targets;   // the continuation tokens
};
struct PackedBatch {
  std::vector<int32_t> ids;
  std::vector<int64_t> positions;
  std::vector<int64_t> segment;   // per token: segment id
  std::vector<int64_t> parent;    // per segment: the prefix segment it may also see, or -1
  std::vector<PackedRequest> requests;
};
// Encodes (context, continuation) the lm-eval way: {context tokens, continuation tokens}.
std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const Tokenizer& tok, const ZeroShotRequest& r);
// Appends the requests of one item to `batch`: the longest common token prefix of their inputs is
// one segment, each request's rest another. `max_len` truncates inputs from the left (lm-eval).
void pack_item(PackedBatch& batch, int64_t item, const std::vector<std::vector<int32_t>>& ctx,
               const std::vector<std::vector<int32_t>>& cont, int64_t max_len);

}  // namespace dptq

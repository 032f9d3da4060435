// Zero-shot scoring (dptq/zeroshot.hpp): packed forward passes and lm-eval's metrics.
#include "dptq/zeroshot.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/tokenizer.hpp"

namespace dptq {
namespace {

// Python's len(): Unicode code points of UTF-8 text.
int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Runs one packed batch; writes the score of each of its requests into `out[item][choice]`.
void run_batch(const Model& model, const PackedBatch& b, std::vector<std::vector<ChoiceScore>>& out) {
  c10::InferenceMode inference_mode;
  const int64_t T = int64_t(b.ids.size());
  const at::Device dev = model.impl().device;
  const auto cpu_long = at::TensorOptions().dtype(at::kLong);
  at::Tensor ids = at::empty({T}, cpu_long), pos = at::empty({T}, cpu_long), seg = at::empty({T}, cpu_long);
  int64_t max_pos = 0;
  for (int64_t t = 0; t < T; ++t) {
    ids[t] = int64_t(b.ids[size_t(t)]);
    max_pos = std::max(max_pos, b.positions[size_t(t)]);
  }
  std::memcpy(pos.data_ptr<int64_t>(), b.positions.data(), size_t(T) * sizeof(int64_t));
  std::memcpy(seg.data_ptr<int64_t>(), b.segment.data(), size_t(T) * sizeof(int64_t));
  at::Tensor parent = at::empty({int64_t(b.parent.size())}, cpu_long);
  std::memcpy(parent.data_ptr<int64_t>(), b.parent.data(), b.parent.size() * sizeof(int64_t));
  // Token a sees token b <= a (packed order) of its own segment or of its segment's parent.
  const at::Tensor sa = seg.unsqueeze(1), sb = seg.unsqueeze(0);
  at::Tensor mask = (sa == sb).logical_or_(parent.index_select(0, seg).unsqueeze(1) == sb);
  mask.logical_and_(at::ones({T, T}, at::kBool).tril_());
  const ModelConfig& c = model.config();
  if (c.sliding_window > 0) mask.logical_and_(pos.unsqueeze(1) - pos.unsqueeze(0) < c.sliding_window);
  if (c.max_context > 0 && max_pos >= c.max_context)
    throw Error(ErrorKind::InvalidArgument, "", "a zero-shot request of " + std::to_string(max_pos + 1) +
                                                    " tokens exceeds the model context " + std::to_string(c.max_context));
  const AttentionLayout layout{pos.to(dev), mask.to(dev)};
  const RopeTables rope = rope_tables(model, max_pos + 1);
  at::Tensor h = embed_tokens(model, ids.to(dev));
  for (int64_t l = 0; l < c.n_layers; ++l) h = decoder_block(model, l, h, rope, nullptr, &layout);

  std::vector<int64_t> rows, targets;
  for (const PackedRequest& r : b.requests) {
    rows.insert(rows.end(), r.rows.begin(), r.rows.end());
    targets.insert(targets.end(), r.targets.begin(), r.targets.end());
  }
  at::Tensor row_t = at::empty({int64_t(rows.size())}, cpu_long);
  std::memcpy(row_t.data_ptr<int64_t>(), rows.data(), rows.size() * sizeof(int64_t));
  at::Tensor tgt = at::empty({int64_t(targets.size())}, cpu_long);
  std::memcpy(tgt.data_ptr<int64_t>(), targets.data(), targets.size() * sizeof(int64_t));
  const at::Tensor hidden = final_norm(model, h.index_select(0, row_t.to(dev)));
  const at::Tensor logp = at::log_softmax(at::linear(hidden, model.impl().w.lm_head).to(at::kFloat), -1).cpu();
  const at::Tensor lp = logp.gather(1, tgt.unsqueeze(1)).squeeze(1).to(at::kDouble);
  const at::Tensor greedy = logp.argmax(1).eq(tgt);
  const double* lpp = lp.data_ptr<double>();
  const bool* gp = greedy.data_ptr<bool>();
  size_t at = 0;
  for (const PackedRequest& r : b.requests) {
    ChoiceScore s;
    s.greedy = true;
    s.tokens = int64_t(r.targets.size());
    for (size_t j = 0; j < r.targets.size(); ++j, ++at) {
      s.loglik += lpp[at];
      s.greedy = s.greedy && gp[at];
    }
    out[size_t(r.item)][size_t(r.choice)] = s;
  }
}

// Mean and lm-eval's standard error of the mean (sample standard deviation / sqrt(n)).
std::pair<double, double> mean_stderr(const std::vector<double>& x) {
  const double n = double(x.size());
  double m = 0;
  for (double v : x) m += v;
  m /= n;
  if (x.size() < 2) return {m, 0};
  double ss = 0;
  for (double v : x) ss += (v - m) * (v - m);
  return {m, std::sqrt(ss / (n - 1)) / std::sqrt(n)};
}

}  // namespace

int compute_threads() { return at::get_num_threads(); }

ZeroShotResult evaluate_zeroshot(const Model& model, const ZeroShotTask& task, const ZeroShotOptions& opts,
                                 Progress* progress) {
  if (opts.batch_tokens < 1) throw Error(ErrorKind::InvalidArgument, "", "--batch-tokens must be at least 1");
  const Tokenizer& tok = model.tokenizer();
  const int64_t n = int64_t(task.items.size());
  const int64_t max_len = model.config().max_context > 0 ? model.config().max_context : 2048;
  std::vector<std::vector<ChoiceScore>> scores(static_cast<size_t>(n));
  ZeroShotResult res;
  res.task = task.name;
  res.n = n;
  if (progress) {
    progress->set_total(n);
    progress->set_done(0);
    progress->set_stage(task.name);
  }
  const auto t0 = std::chrono::steady_clock::now();
  PackedBatch batch;
  auto flush = [&](int64_t done) {
    if (batch.ids.empty()) return;
    run_batch(model, batch, scores);
    res.tokens += int64_t(batch.ids.size());
    ++res.forwards;
    batch = PackedBatch{};
    if (progress) {
      progress->set_done(done);
      progress->throw_if_cancelled();
    }
  };
  for (int64_t i = 0; i < n; ++i) {
    const ZeroShotItem& it = task.items[size_t(i)];
    std::vector<std::vector<int32_t>> ctx, cont;
    for (const ZeroShotRequest& r : it.requests) {
      auto [c, k] = encode_pair(tok, r);
      ctx.push_back(std::move(c));
      cont.push_back(std::move(k));
    }
    scores[size_t(i)].resize(it.requests.size());
    pack_item(batch, i, ctx, cont, max_len);
    if (int64_t(batch.ids.size()) >= opts.batch_tokens) flush(i + 1);
  }
  flush(n);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.items_per_s = res.seconds > 0 ? double(n) / res.seconds : 0;

  std::vector<double> acc, acc_norm, ll;
  for (int64_t i = 0; i < n; ++i) {
    const ZeroShotItem& it = task.items[size_t(i)];
    ZeroShotItemResult r;
    r.choices = scores[size_t(i)];
    r.gold = it.gold;
    if (task.greedy_accuracy) {
      r.correct = r.correct_norm = r.choices[0].greedy;
      ll.push_back(r.choices[0].loglik);
    } else {
      double best = -INFINITY, best_norm = -INFINITY;
      for (size_t c = 0; c < r.choices.size(); ++c) {
        const double s = r.choices[c].loglik;
        const double s_norm = s / double(std::max<int64_t>(1, code_points(it.choices[c])));
        if (s > best) best = s, r.pred = int(c);  // first maximum wins, as numpy's argmax
        if (s_norm > best_norm) best_norm = s_norm, r.pred_norm = int(c);
      }
      r.correct = r.pred == r.gold;
      r.correct_norm = r.pred_norm == r.gold;
    }
    acc.push_back(r.correct);
    acc_norm.push_back(r.correct_norm);
    res.items.push_back(std::move(r));
  }
  std::tie(res.acc, res.acc_stderr) = mean_stderr(acc);
  res.has_acc_norm = task.has_acc_norm;
  if (res.has_acc_norm) std::tie(res.acc_norm, res.acc_norm_stderr) = mean_stderr(acc_norm);
  if (task.greedy_accuracy) {
    double m = 0;
    for (double v : ll) m += v;
    res.ppl = std::exp(-m / double(ll.size()));
    res.has_ppl = true;
  }
  return res;
}

}  // namespace dptq

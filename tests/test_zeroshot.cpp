// Zero-shot evaluation (issue 14): task loading and lm-eval's templates, the lm-eval tokenization
// of (context, continuation), the packed layout, packed scoring equal to one forward per request,
// and agreement with the transformers + lm-eval reference (tests/golden/zeroshot_smollm2.json,
// made by tools/golden/zeroshot_reference.py).
#include "dptq/zeroshot.hpp"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/quantize.hpp"
#include "dptq/synthetic.hpp"
#include "dptq/tokenizer.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

fs::path data_dir() { return dptq::test::shared_dir() / "data" / "zeroshot"; }

void write(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

using dptq::test::error_of;

// Sum of log p(continuation) with one ordinary causal forward over context + continuation.
dptq::ChoiceScore direct_score(const dptq::Model& m, const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont) {
  std::vector<int64_t> full(ctx.begin(), ctx.end());
  full.insert(full.end(), cont.begin(), cont.end());
  full.pop_back();
  const at::Tensor ids = at::tensor(full, at::kLong);
  const at::Tensor logp = at::log_softmax(dptq::forward_logits(m, ids), -1);
  dptq::ChoiceScore s;
  s.greedy = true;
  for (size_t j = 0; j < cont.size(); ++j) {
    const int64_t row = int64_t(full.size() - cont.size() + j);
    s.loglik += logp[row][cont[j]].item<double>();
    s.greedy = s.greedy && logp[row].argmax().item<int64_t>() == cont[j];
  }
  s.tokens = int64_t(cont.size());
  return s;
}

dptq::ZeroShotTask synthetic_task() {
  dptq::ZeroShotTask t;
  t.name = "synthetic";
  t.has_acc_norm = true;
  const std::vector<std::pair<std::string, std::vector<std::string>>> items = {
      {"Question: which is heavier?\nAnswer:", {"a stone", "a feather", "both"}},
      {"The cat sat on the", {"mat", "moon"}},
      {"Trailing space here ", {"x", "xyz", "x y"}},  // lm-eval moves the space into the continuation
      {"Short", {"er", "est", "ly and quickly"}},
  };
  for (size_t i = 0; i < items.size(); ++i) {
    dptq::ZeroShotItem it;
    for (const auto& c : items[i].second) it.requests.push_back({items[i].first, " " + c});
    it.choices = items[i].second;
    it.gold = int(i % it.choices.size());
    t.items.push_back(it);
  }
  dptq::ZeroShotItem wino;  // multiple contexts, one continuation (WinoGrande's partial scoring)
  wino.requests = {{"Anna helped Maria because Anna", " was kind."}, {"Anna helped Maria because Maria", " was kind."}};
  wino.choices = {"Anna", "Maria"};
  t.items.push_back(wino);
  return t;
}

}  // namespace

TEST_CASE("zeroshot: lm-eval's encode_pair moves trailing spaces and splits whole-text tokens") {
  const dptq::Model m = dptq::make_synthetic_model({});  // byte-level: one token per byte
  const auto [c, k] = dptq::encode_pair(m.tokenizer(), {"ab  ", "cd"});
  CHECK(c.size() == 2);  // "ab"
  CHECK(k.size() == 4);  // "  cd"
  CHECK(m.tokenizer().decode(k) == "  cd");
  CHECK_THROWS_AS(dptq::encode_pair(m.tokenizer(), {"   ", "x"}), dptq::Error);
}

TEST_CASE("zeroshot: packing shares the common prefix and maps rows to the right tokens") {
  dptq::PackedBatch b;
  dptq::pack_item(b, 0, {{1, 2, 3}, {1, 2, 3}}, {{7, 8}, {9}}, 100);
  // inputs: [1 2 3 7] and [1 2 3]; common prefix 3 tokens, then suffix [7] and an empty suffix.
  CHECK(b.ids == std::vector<int32_t>{1, 2, 3, 7});
  CHECK(b.positions == std::vector<int64_t>{0, 1, 2, 3});
  REQUIRE(b.requests.size() == 2);
  CHECK(b.requests[0].rows == std::vector<int64_t>{2, 3});  // predicts 7 from row of token 3, 8 from row of 7
  CHECK(b.requests[0].targets == std::vector<int32_t>{7, 8});
  CHECK(b.requests[1].rows == std::vector<int64_t>{2});
  CHECK(b.segment == std::vector<int64_t>{0, 0, 0, 1});
  CHECK(b.parent == std::vector<int64_t>{-1, 0, 0});
  // A second item follows with its own segments; WinoGrande-like different contexts.
  dptq::pack_item(b, 1, {{5, 6}, {5, 4}}, {{8}, {8}}, 100);
  CHECK(b.ids == std::vector<int32_t>{1, 2, 3, 7, 5, 6, 4});
  CHECK(b.positions == std::vector<int64_t>{0, 1, 2, 3, 0, 1, 1});
  CHECK(b.segment == std::vector<int64_t>{0, 0, 0, 1, 3, 4, 5});
  CHECK(b.parent == std::vector<int64_t>{-1, 0, 0, -1, 3, 3});
  CHECK(b.requests[2].rows == std::vector<int64_t>{5});
  CHECK(b.requests[3].rows == std::vector<int64_t>{6});
  // Truncation from the left to max_len + 1 tokens, as lm-eval does.
  dptq::PackedBatch t;
  dptq::pack_item(t, 0, {{1, 2, 3, 4, 5}}, {{6, 7}}, 4);
  CHECK(t.ids == std::vector<int32_t>{3, 4, 5, 6});
  CHECK(t.requests[0].rows == std::vector<int64_t>{2, 3});
}

TEST_CASE("zeroshot: packed scoring equals one causal forward per request (FP and W4A4KV4)") {
  dptq::SyntheticSpec spec;
  spec.n_layers = 6;
  spec.plant = false;
  dptq::Model fp = dptq::make_synthetic_model(spec);
  dptq::Model q = dptq::make_synthetic_model(spec);
  dptq::QuantizeOptions qo;
  dptq::quantize_model(q, dptq::uniform_plan(q, "rtn", 4), qo);
  const dptq::ZeroShotTask task = synthetic_task();
  // FP: equal to float rounding. W4A4KV4: every quantizer works per token, so the packed codes are
  // the same — except where a value sits on a rounding boundary and the different GEMM shapes of
  // the packed batch round it the other way (one code of one token: a few 1e-3 on a sum of ~30
  // nats). A wrong mask or position would move every score by far more.
  for (const dptq::Model* m : {&fp, &q}) {
    const bool quantized = m == &q;
    int64_t exact = 0, total = 0;
    for (int64_t batch_tokens : {1, 64, 100000}) {  // one item per forward, a few, everything at once
      CAPTURE(quantized);
      CAPTURE(batch_tokens);
      const dptq::ZeroShotResult r = dptq::evaluate_zeroshot(*m, task, {batch_tokens});
      REQUIRE(r.items.size() == task.items.size());
      for (size_t i = 0; i < task.items.size(); ++i) {
        for (size_t c = 0; c < task.items[i].requests.size(); ++c) {
          const auto [ctx, cont] = dptq::encode_pair(m->tokenizer(), task.items[i].requests[c]);
          const dptq::ChoiceScore d = direct_score(*m, ctx, cont);
          const dptq::ChoiceScore& p = r.items[i].choices[c];
          CAPTURE(i);
          CAPTURE(c);
          CHECK(p.tokens == d.tokens);
          const bool same = p.loglik == doctest::Approx(d.loglik).epsilon(1e-5);
          exact += same;
          ++total;
          if (quantized)
            CHECK(std::abs(p.loglik - d.loglik) < 0.02);
          else
            CHECK(same);
          if (same) CHECK(p.greedy == d.greedy);
        }
      }
      if (batch_tokens == 100000) CHECK(r.forwards == 1);
      if (batch_tokens == 1) CHECK(r.forwards == int64_t(task.items.size()));
    }
    MESSAGE(std::string(quantized ? "W4A4KV4" : "FP") << ": " << exact << " of " << total << " scores equal to 1e-5");
    CHECK(exact >= total * 9 / 10);
  }
}

TEST_CASE("zeroshot: acc, acc_norm (by code points) and LAMBADA's greedy accuracy and perplexity") {
  const dptq::Model m = dptq::make_synthetic_model({});
  dptq::ZeroShotTask t = synthetic_task();
  const dptq::ZeroShotResult r = dptq::evaluate_zeroshot(m, t);
  double acc = 0, acc_norm = 0;
  for (size_t i = 0; i < t.items.size(); ++i) {
    const auto& it = r.items[i];
    size_t best = 0, best_norm = 0;
    auto norm = [&](size_t c) {
      // code points of the choice text (all ASCII here, so bytes)
      return it.choices[c].loglik / double(t.items[i].choices[c].size());
    };
    for (size_t c = 1; c < it.choices.size(); ++c) {
      if (it.choices[c].loglik > it.choices[best].loglik) best = c;
      if (norm(c) > norm(best_norm)) best_norm = c;
    }
    CHECK(it.pred == int(best));
    CHECK(it.pred_norm == int(best_norm));
    acc += best == size_t(t.items[i].gold);
    acc_norm += best_norm == size_t(t.items[i].gold);
  }
  const double n = double(t.items.size());
  CHECK(r.acc == doctest::Approx(acc / n));
  CHECK(r.acc_norm == doctest::Approx(acc_norm / n));
  const double p = acc / n;
  CHECK(r.acc_stderr == doctest::Approx(std::sqrt(p * (1 - p) * n / (n - 1) / n)));

  dptq::ZeroShotTask lam;
  lam.name = "lambada";
  lam.greedy_accuracy = true;
  for (const char* text : {"the end of the story", "a b c d"}) {
    const std::string s = text;
    const size_t sp = s.rfind(' ');
    lam.items.push_back({{{s.substr(0, sp), s.substr(sp)}}, {s.substr(sp + 1)}, 0});
  }
  const dptq::ZeroShotResult lr = dptq::evaluate_zeroshot(m, lam);
  const double ll = lr.items[0].choices[0].loglik + lr.items[1].choices[0].loglik;
  CHECK(lr.has_ppl);
  CHECK(lr.ppl == doctest::Approx(std::exp(-ll / 2)));
  CHECK(lr.acc == doctest::Approx((lr.items[0].choices[0].greedy + lr.items[1].choices[0].greedy) / 2.0));
}

TEST_CASE("zeroshot: the seven tasks load with lm-eval's templates") {
  DPTQ_SKIP_UNLESS(fs::is_directory(data_dir()), "../shared/data/zeroshot not present");
  const std::map<std::string, size_t> sizes = {{"piqa", 1838}, {"arc_easy", 2376}, {"arc_challenge", 1172}, {"winogrande", 1267},
                                               {"lambada", 5153}, {"boolq", 3270}, {"hellaswag", 10042}};
  for (const auto& [name, n] : sizes) {
    CAPTURE(name);
    CHECK(dptq::load_zeroshot_task(data_dir(), name).items.size() == n);
    CHECK(dptq::load_zeroshot_task(data_dir(), name, 7).items.size() == 7);
  }
  const auto piqa = dptq::load_zeroshot_task(data_dir(), "piqa", 1);
  CHECK(piqa.items[0].requests[0].context == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  CHECK(piqa.items[0].requests[0].continuation.rfind(" Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper", 0) == 0);
  CHECK(piqa.items[0].gold == 0);
  const auto arc = dptq::load_zeroshot_task(data_dir(), "arc_easy", 1);
  CHECK(arc.items[0].requests.size() == 4);
  CHECK(arc.items[0].requests[0].context ==
        "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:");
  CHECK(arc.items[0].requests[0].continuation == " Sunlight is the source of energy for nearly all ecosystems.");
  CHECK(arc.items[0].gold == 0);
  const auto wino = dptq::load_zeroshot_task(data_dir(), "winogrande", 1);
  CHECK(wino.items[0].requests[0].context == "Sarah was a much better surgeon than Maria so Sarah");
  CHECK(wino.items[0].requests[1].context == "Sarah was a much better surgeon than Maria so Maria");
  CHECK(wino.items[0].requests[0].continuation == " always got the easier cases.");
  CHECK(wino.items[0].gold == 1);
  const auto lam = dptq::load_zeroshot_task(data_dir(), "lambada", 1);
  CHECK(lam.items[0].requests[0].continuation == " signs");
  CHECK(lam.items[0].requests[0].context.size() + 6 == 1 + lam.items[0].requests[0].context.size() + 5);
  const auto boolq = dptq::load_zeroshot_task(data_dir(), "boolq", 1);
  const std::string& bc = boolq.items[0].requests[0].context;
  CHECK(bc.rfind("All biomass goes through", 0) == 0);
  CHECK(bc.size() > 20);
  CHECK(bc.substr(bc.size() - 9) == "?\nAnswer:");
  CHECK(boolq.items[0].requests[1].continuation == " yes");
  const auto hs = dptq::load_zeroshot_task(data_dir(), "hellaswag", 1);
  CHECK(hs.items[0].requests[0].context == "Roof shingle removal: A man is sitting on a roof. he");
  CHECK(hs.items[0].requests[3].continuation == " starts pulling up roofing on a roof.");
  CHECK(hs.items[0].gold == 3);
}

TEST_CASE("zeroshot: bad task data gives one line naming the file (and the line)") {
  const fs::path dir = dptq::test::scratch_dir("zeroshot_bad");
  CHECK(error_of([&] { dptq::load_zeroshot_task(dir, "trivia"); }).find("unknown task 'trivia'") != std::string::npos);
  CHECK(error_of([&] { dptq::load_zeroshot_task(dir, "piqa"); }).find("task folder not found") != std::string::npos);
  write(dir / "piqa" / "valid.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n{\"goal\": oops}\n");
  write(dir / "piqa" / "valid-labels.lst", "0\n1\n0\n");
  std::string e = error_of([&] { dptq::load_zeroshot_task(dir, "piqa"); });
  CHECK(e.find("valid.jsonl") != std::string::npos);
  CHECK(e.find("line 3: malformed JSON") != std::string::npos);
  CHECK(e.find('\n') == std::string::npos);
  CHECK(dptq::load_zeroshot_task(dir, "piqa", 2).items.size() == 2);  // the bad line is past the limit
  write(dir / "piqa" / "valid-labels.lst", "0\n");
  CHECK(error_of([&] { dptq::load_zeroshot_task(dir, "piqa", 2); }).find("1 labels for 2 items") != std::string::npos);
  write(dir / "piqa" / "valid-labels.lst", "0\n5\n");
  CHECK(error_of([&] { dptq::load_zeroshot_task(dir, "piqa", 2); }).find("answer 5 is not one of the 2 choices") != std::string::npos);
  write(dir / "winogrande" / "dev.jsonl", "{\"sentence\": \"no blank\", \"option1\": \"a\", \"option2\": \"b\"}\n");
  write(dir / "winogrande" / "dev-labels.lst", "1\n");
  CHECK(error_of([&] { dptq::load_zeroshot_task(dir, "winogrande"); }).find("line 1: sentence has no '_' blank") != std::string::npos);
  write(dir / "hellaswag" / "hellaswag_val_full.txt.bz2", "BZh91AY&SY-not-really");
  CHECK(error_of([&] { dptq::load_zeroshot_task(dir, "hellaswag"); }).find("bzip2") != std::string::npos);
  write(dir / "hellaswag" / "hellaswag_val_full.txt", "ctx\n7\na\nb\nc\nd\n");
  CHECK(error_of([&] { dptq::load_zeroshot_task(dir, "hellaswag"); }).find("line 2: gold index must be 0-3") != std::string::npos);
}

TEST_CASE("zeroshot: per-item log-likelihoods agree with transformers + lm-eval (golden, 1e-3)") {
  const fs::path golden = dptq::test::tests_dir() / "golden" / "zeroshot_smollm2.json";
  DPTQ_SKIP_UNLESS(fs::exists(golden), "tests/golden/zeroshot_smollm2.json not made yet (tools/golden/zeroshot_reference.py)");
  DPTQ_SKIP_UNLESS(fs::is_directory(data_dir()), "../shared/data/zeroshot not present");
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed");
  json g;
  std::ifstream(golden) >> g;
  const dptq::Model m = dptq::load_model(dptq::test::default_model());
  for (const auto& [name, tj] : g["tasks"].items()) {
    const int64_t n = int64_t(tj["items"].size());
    const dptq::ZeroShotResult r = dptq::evaluate_zeroshot(m, dptq::load_zeroshot_task(data_dir(), name, n));
    REQUIRE(int64_t(r.items.size()) == n);
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const json& gi = tj["items"][size_t(i)];
      REQUIRE(gi["ll"].size() == r.items[size_t(i)].choices.size());
      for (size_t c = 0; c < gi["ll"].size(); ++c) {
        const auto& ours = r.items[size_t(i)].choices[c];
        CAPTURE(name);
        CAPTURE(i);
        CAPTURE(c);
        CHECK(ours.tokens == gi["tokens"][c].get<int64_t>());
        CHECK(ours.greedy == gi["greedy"][c].get<bool>());
        worst = std::max(worst, std::abs(ours.loglik - gi["ll"][c].get<double>()));
      }
      CHECK(r.items[size_t(i)].gold == gi["gold"].get<int>());
    }
    MESSAGE(name << ": largest |ll - reference| " << worst);
    CHECK(worst < 1e-3);
  }
}

// Every architecture on tiny random-weight HF folders (tests/fixtures/tiny, made by
// tools/golden/make_tiny_hf.py with transformers): our loader + tokenizer + decoder against
// transformers' token ids and fp32 logits stored beside each model.
#include <ATen/ATen.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "dptq/model_torch.hpp"
#include "test_util.hpp"

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path fixture(const std::string& name) { return dptq::test::tests_dir() / "fixtures" / "tiny" / name; }

json golden(const std::string& name) {
  std::ifstream in(fixture(name) / "golden.json");
  REQUIRE(in.good());
  return json::parse(in);
}

// Loads the fixture, checks ids and logits against transformers; returns the model for more checks.
dptq::Model check_against_transformers(const std::string& name) {
  INFO("fixture " << name);
  const json g = golden(name);
  dptq::Model m = dptq::load_model(fixture(name));
  double worst = 0;
  for (const auto& p : g["prompts"]) {
    const auto ids32 = m.tokenizer().encode(p["text"].get<std::string>());
    const auto ref_ids = p["ids"].get<std::vector<int32_t>>();
    CHECK(ids32 == ref_ids);
    const std::vector<int64_t> ids(ref_ids.begin(), ref_ids.end());
    const at::Tensor logits = dptq::forward_logits(m, at::tensor(ids, at::kLong));
    const auto top1 = p["top1"].get<std::vector<int64_t>>();
    const at::Tensor argmax = logits.argmax(-1);
    for (size_t t = 0; t < top1.size(); ++t) CHECK(argmax[int64_t(t)].item<int64_t>() == top1[t]);
    const auto positions = p["logits_positions"].get<std::vector<int64_t>>();
    for (size_t i = 0; i < positions.size(); ++i) {
      const at::Tensor ref = at::tensor(p["logits"][i].get<std::vector<float>>());
      // The golden is rounded to 6 significant digits: compare relative to each logit's size.
      const at::Tensor err = (logits[positions[i]] - ref).abs() / (ref.abs() + 1.0);
      worst = std::max(worst, err.max().item<double>());
    }
  }
  MESSAGE(name << ": max |Δlogit| / (1 + |logit|) = " << worst);
  CHECK(worst <= 1e-4);
  return m;
}

}  // namespace

TEST_CASE("LLaMA-2 with a SentencePiece tokenizer.model and an untied head") {
  const dptq::Model m = check_against_transformers("llama2_spm");
  CHECK(m.config().arch == "llama");
  CHECK_FALSE(m.config().tied_embeddings);
  CHECK(m.tokenizer().add_bos());
  CHECK(m.info().tokenizer_kind == "sentencepiece");
}

TEST_CASE("LLaMA-3.1 rope scaling (llama3), tied embeddings, LLaMA-3 BPE") {
  const dptq::Model m = check_against_transformers("llama3_rope");
  REQUIRE(m.config().rope_scaling.has_value());
  CHECK(m.config().rope_scaling->type == "llama3");
  CHECK(m.config().rope_scaling->factor == doctest::Approx(8.0));
  CHECK(m.config().tied_embeddings);
}

TEST_CASE("Mistral") {
  const dptq::Model m = check_against_transformers("mistral");
  CHECK(m.config().arch == "mistral");
}

TEST_CASE("Qwen2 with q/k/v biases") {
  const dptq::Model m = check_against_transformers("qwen2");
  CHECK(m.config().qkv_bias);
  CHECK(m.impl().w.layers[0].bq.defined());
}

TEST_CASE("bf16 weights in shards with an index") {
  const dptq::Model m = check_against_transformers("bf16_sharded");
  CHECK(m.info().stored_types.at("BF16") > 0);
  CHECK(fs::exists(fixture("bf16_sharded") / "model.safetensors.index.json"));
}

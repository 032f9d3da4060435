// The LibTorch decoder against the transformers reference (golden file made by
// tools/golden/make_logits_golden.py), and GGUF -> HF folder -> reload round trips.
#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "test_util.hpp"

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

dptq::Model& default_model() {
  static dptq::Model model = dptq::load_model(dptq::test::default_model());
  return model;
}

at::Tensor logits_of(const dptq::Model& m, const std::vector<int64_t>& ids) {
  return dptq::forward_logits(m, at::tensor(ids, at::kLong));
}

}  // namespace

TEST_CASE("default model: config read from GGUF metadata") {
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed (scripts/setup.sh)");
  const auto& c = default_model().config();
  CHECK(c.arch == "llama");
  CHECK(c.n_layers == 30);
  CHECK(c.d_model == 576);
  CHECK(c.d_ff == 1536);
  CHECK(c.n_heads == 9);
  CHECK(c.n_kv_heads == 3);
  CHECK(c.head_dim == 64);
  CHECK(c.vocab_size == 49152);
  CHECK(c.tied_embeddings);
  CHECK(c.rope_theta == doctest::Approx(100000.0));
  CHECK(default_model().info().fingerprint.size() == 64);
}

TEST_CASE("default model: logits match transformers within 1e-3") {
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed (scripts/setup.sh)");
  std::ifstream in(dptq::test::tests_dir() / "golden" / "logits_smollm2.json");
  REQUIRE(in.good());
  const json g = json::parse(in);
  const auto cols = g["columns"].get<std::vector<int64_t>>();
  const at::Tensor col_idx = at::tensor(cols, at::kLong);
  REQUIRE(g["prompts"].size() >= 3);
  double worst = 0;
  for (const auto& p : g["prompts"]) {
    const auto ids = p["ids"].get<std::vector<int64_t>>();
    const at::Tensor logits = logits_of(default_model(), ids);
    REQUIRE(logits.size(0) == int64_t(ids.size()));
    REQUIRE(logits.size(1) == 49152);
    const at::Tensor lse = at::logsumexp(logits, -1);
    const at::Tensor argmax = logits.argmax(-1);
    for (size_t t = 0; t < ids.size(); ++t) {
      const at::Tensor row = logits[int64_t(t)];
      const at::Tensor ref_cols = at::tensor(p["sample_logits"][t].get<std::vector<float>>());
      worst = std::max(worst, (row.index_select(0, col_idx) - ref_cols).abs().max().item<double>());
      const at::Tensor top_ids = at::tensor(p["top_ids"][t].get<std::vector<int64_t>>(), at::kLong);
      const at::Tensor top_ref = at::tensor(p["top_logits"][t].get<std::vector<float>>());
      worst = std::max(worst, (row.index_select(0, top_ids) - top_ref).abs().max().item<double>());
      worst = std::max(worst, std::abs(lse[int64_t(t)].item<double>() - p["logsumexp"][t].get<double>()));
      CHECK(argmax[int64_t(t)].item<int64_t>() == p["argmax"][t].get<int64_t>());
    }
  }
  MESSAGE("max |logit - reference| = " << worst);
  CHECK(worst <= 1e-3);
}

TEST_CASE("GGUF -> HF folder -> reload gives identical logits") {
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed (scripts/setup.sh)");
  const fs::path dir = dptq::test::scratch_dir("hf_roundtrip") / "smollm2-hf";
  dptq::save_hf_folder(default_model(), dir);
  CHECK(fs::exists(dir / "config.json"));
  CHECK(fs::exists(dir / "model.safetensors"));
  CHECK(fs::exists(dir / "tokenizer.json"));
  CHECK_FALSE(fs::exists(dir.string() + ".tmp-" + std::to_string(::getpid())));
  const dptq::Model reloaded = dptq::load_model(dir);
  CHECK(reloaded.info().format == "hf");
  CHECK(reloaded.info().fingerprint == default_model().info().fingerprint);
  const std::vector<int64_t> ids = {504, 3458, 282, 4649, 314, 7042, 30, 284, 3458, 282};
  const at::Tensor a = logits_of(default_model(), ids), b = logits_of(reloaded, ids);
  CHECK(at::equal(a, b));
  // The tokenizer written to tokenizer.json reads back as the same tokenizer.
  const std::string text = "In 1997, the 3 rockets' (N=12) launch cost $4.5M -- isn't that odd?\n\n  Yes.";
  CHECK(reloaded.tokenizer().encode(text) == default_model().tokenizer().encode(text));
  // Writing over an existing folder is refused and leaves it alone.
  CHECK_THROWS_AS(dptq::save_hf_folder(default_model(), dir), dptq::Error);
  fs::remove_all(dir.parent_path());
}

TEST_CASE("rope: llama3 scaling keeps high frequencies and divides low ones by factor") {
  // Independent of any model file: build a minimal impl with only the config.
  auto impl = std::make_unique<dptq::Model::Impl>();
  auto& c = impl->info.config;
  c.head_dim = 128;
  c.rope_theta = 500000.0;
  dptq::RopeScaling s;
  s.type = "llama3";
  s.factor = 8.0;
  s.low_freq_factor = 1.0;
  s.high_freq_factor = 4.0;
  s.original_max_position = 8192;
  const dptq::Model plain(std::move(impl));
  const auto base = dptq::rope_tables(plain, 2);
  auto impl2 = std::make_unique<dptq::Model::Impl>();
  impl2->info.config = plain.config();
  impl2->info.config.rope_scaling = s;
  const dptq::Model scaled(std::move(impl2));
  const auto sc = dptq::rope_tables(scaled, 2);
  // Position 1: angle == inv_freq. Highest frequency (i = 0) untouched; lowest divided by 8.
  const double hi_base = std::acos(base.cos[1][0].item<double>());
  const double hi_scaled = std::acos(sc.cos[1][0].item<double>());
  CHECK(hi_scaled == doctest::Approx(hi_base).epsilon(1e-6));
  const double lo_base = 1.0 / std::pow(500000.0, 126.0 / 128.0);
  const double lo_scaled = std::asin(sc.sin[1][63].item<double>());
  CHECK(lo_scaled == doctest::Approx(lo_base / 8.0).epsilon(1e-4));
}

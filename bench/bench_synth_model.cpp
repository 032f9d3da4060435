// Writes a random LLaMA-shaped model (dptq::make_synthetic_model, no planted massive activation)
// as an HF folder, for benchmarks that scale with model size (bench/bench_scaling.sh). The weights
// are Gaussian (dptq/synthetic.hpp), the tokenizer byte-level (256 tokens; ids above 255 have
// embeddings but no text). Prints one JSON object: the shape and the parameter count as loaded.
// Never commit the output (0.5–4 GB of fp32).
//
//   build/release/bench/bench_synth_model --d-model 768 --layers 12 --d-ff 2048 --heads 12
//       --kv-heads 4 [--vocab 32000] [--max-context 4096] [--seed 0] --out DIR
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "dptq/error.hpp"
#include "dptq/model.hpp"
#include "dptq/synthetic.hpp"

int main(int argc, char** argv) {
  dptq::SyntheticSpec s;
  s.plant = false;
  s.vocab_size = 32000;
  s.max_context = 4096;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_synth_model: %s needs a value\n", argv[i]);
      return 2;
    }
    const std::string k = argv[i], v = argv[++i];
    if (k == "--d-model") s.d_model = std::stoll(v);
    else if (k == "--layers") s.n_layers = std::stoll(v);
    else if (k == "--d-ff") s.d_ff = std::stoll(v);
    else if (k == "--heads") s.n_heads = std::stoll(v);
    else if (k == "--kv-heads") s.n_kv_heads = std::stoll(v);
    else if (k == "--vocab") s.vocab_size = std::stoll(v);
    else if (k == "--max-context") s.max_context = std::stoll(v);
    else if (k == "--seed") s.seed = std::stoull(v);
    else if (k == "--out") out = v;
    else {
      std::fprintf(stderr, "bench_synth_model: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (out.empty()) {
    std::fprintf(stderr, "bench_synth_model: --out DIR is required\n");
    return 2;
  }
  try {
    const dptq::Model m = dptq::make_synthetic_model(s);
    dptq::save_hf_folder(m, out);
    const dptq::ModelConfig& c = m.config();
    const nlohmann::json j = {{"out", out},           {"n_params", m.info().n_params}, {"d_model", c.d_model},
                              {"n_layers", c.n_layers}, {"d_ff", c.d_ff},             {"n_heads", c.n_heads},
                              {"n_kv_heads", c.n_kv_heads}, {"head_dim", c.head_dim}, {"vocab_size", c.vocab_size},
                              {"tied_embeddings", c.tied_embeddings}};
    std::printf("%s\n", j.dump().c_str());
  } catch (const dptq::Error& e) {
    std::fprintf(stderr, "bench_synth_model: error: %s\n", e.what());
    return 2;
  }
  return 0;
}

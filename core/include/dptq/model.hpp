// dptq/model.hpp — LLaMA-family models: configuration, loading, summary. Torch-free header.
//
// Contents
//   ModelConfig    architecture hyper-parameters (LLaMA-2/3, SmolLM2, Mistral, Qwen2)
//   ModelInfo      what `dptq info` and the studio's Model panel show
//   Model          a loaded model (weights live behind a pimpl; see model_torch.hpp for tensors)
//   load_model     GGUF file or HF folder -> Model
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dptq/tokenizer.hpp"

namespace dptq {

// LLaMA-3.1 style RoPE frequency scaling (`rope_scaling.rope_type == "llama3"`).
struct RopeScaling {
  std::string type;  // "llama3" (others rejected at load)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  std::string arch;             // "llama", "mistral", "qwen2" (SmolLM2 is "llama")
  int64_t n_layers = 0;         // decoder blocks
  int64_t d_model = 0;          // hidden size
  int64_t d_ff = 0;             // MLP intermediate size
  int64_t n_heads = 0;          // query heads
  int64_t n_kv_heads = 0;       // key/value heads (GQA)
  int64_t head_dim = 0;         // d_model / n_heads unless given
  int64_t vocab_size = 0;
  int64_t max_context = 0;      // max_position_embeddings
  double rope_theta = 10000.0;
  double rms_eps = 1e-5;
  bool tied_embeddings = false; // lm_head shares the embedding matrix
  bool qkv_bias = false;        // Qwen2
  int64_t sliding_window = 0;   // Mistral: attend to at most this many previous tokens (0: unlimited)
  std::optional<RopeScaling> rope_scaling;
};

struct ModelInfo {
  std::filesystem::path path;
  std::string format;                         // "gguf" or "hf"
  std::string name;                           // general.name or folder name
  ModelConfig config;
  int64_t n_params = 0;                       // parameters as loaded (tied head counted once)
  std::map<std::string, int64_t> stored_types;  // storage type -> tensor count ("Q4_1": 210, ...)
  std::string fingerprint;                    // sha256 of config + tensor names/shapes (DESIGN §6)
  std::string tokenizer_kind;                 // "bpe (smollm)", "sentencepiece", ...
};

enum class Device { Cpu, Cuda, Auto };
Device parse_device(const std::string& s);  // "cpu" | "cuda" | "auto"; throws InvalidArgument

// Compute dtype of the weights and activations. Auto: fp32 on CPU (exact, what every test and
// result uses), bf16 on CUDA (DESIGN §3). Bf16 on CPU is a faster approximation (AVX-512 BF16):
// its perplexity differs from fp32 in the second or third decimal (docs/benchmarks.md).
enum class DType { Auto, F32, BF16 };
DType parse_dtype(const std::string& s);  // "auto" | "fp32" | "bf16"; throws InvalidArgument

struct LoadOptions {
  Device device = Device::Cpu;
  DType dtype = DType::Auto;
};
class Model;
const char* model_dtype_name(const Model& model);  // "fp32" | "bf16" | "fp16"
std::string model_device_name(const Model& model);  // "cpu" | "cuda:0" ...
// The options that load another copy of `model` onto its device, in its dtype (the studio's and
// the sweeps' quantized copies).
LoadOptions load_options_of(const Model& model);


class Model {
 public:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  const ModelInfo& info() const;
  const ModelConfig& config() const { return info().config; }
  const Tokenizer& tokenizer() const;
  Impl& impl() { return *impl_; }
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Loads a GGUF file or a HF folder (config.json + *.safetensors [+ index] + tokenizer files).
// Throws dptq::Error naming the file and the problem.
Model load_model(const std::filesystem::path& path, const LoadOptions& opts = {});

// Reads only the metadata (no weights): fast path for `dptq info` and file dialogs.
ModelInfo inspect_model(const std::filesystem::path& path);

// Writes `model` as a HF folder (config.json, model.safetensors in f32, tokenizer.json,
// tokenizer_config.json) atomically: a temp folder beside `out`, renamed at the end. `out` must not exist.
void save_hf_folder(const Model& model, const std::filesystem::path& out);

}  // namespace dptq

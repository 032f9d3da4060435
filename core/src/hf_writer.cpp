// save_hf_folder: a loaded model as a HF folder (config.json, model.safetensors in f32,
// tokenizer.json or tokenizer.model, tokenizer_config.json), written atomically.
#include <ATen/ATen.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <unistd.h>

#include "dptq/atomic_file.hpp"
#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/safetensors.hpp"
#include "hf_files.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace dptq {
namespace {

json pre_tokenizer_json(const std::string& pre, const std::string& file) {
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  auto split_then_bytes = [](const std::string& regex) {
    return json{{"type", "Sequence"},
                {"pretokenizers",
                 {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
                  {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  };
  if (pre == "gpt2" || pre == "default") return byte_level;
  if (pre == "smollm")
    return json{{"type", "Sequence"}, {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}};
  if (pre == "llama-bpe" || pre == "llama3")
    return split_then_bytes(R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  if (pre == "qwen2")
    return split_then_bytes(R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  throw Error(ErrorKind::Unsupported, file, "cannot write a tokenizer.json for pre-tokenizer '" + pre + "'");
}

json bpe_tokenizer_json(const TokenizerSpec& s) {
  json vocab = json::object();
  for (size_t i = 0; i < s.tokens.size(); ++i) vocab[s.tokens[i]] = int64_t(i);
  json added = json::array();
  for (size_t i = 0; i < s.token_types.size() && i < s.tokens.size(); ++i) {
    if (s.token_types[i] != 3 && s.token_types[i] != 4) continue;  // control / user-defined
    added.push_back({{"id", int64_t(i)}, {"content", s.tokens[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", s.token_types[i] == 3}});
  }
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", pre_tokenizer_json(s.pre, s.source)},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
              {"model",
               {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                {"ignore_merges", false}, {"vocab", vocab}, {"merges", s.merges}}}};
}

}  // namespace

json hf_config_json(const ModelConfig& c) {
  static const std::map<std::string, std::string> arch_class = {
      {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}};
  json j = {{"architectures", {arch_class.at(c.arch)}},
            {"model_type", c.arch},
            {"hidden_size", c.d_model},
            {"intermediate_size", c.d_ff},
            {"num_hidden_layers", c.n_layers},
            {"num_attention_heads", c.n_heads},
            {"num_key_value_heads", c.n_kv_heads},
            {"head_dim", c.head_dim},
            {"vocab_size", c.vocab_size},
            {"max_position_embeddings", c.max_context},
            {"rope_theta", c.rope_theta},
            {"rms_norm_eps", c.rms_eps},
            {"tie_word_embeddings", c.tied_embeddings},
            {"hidden_act", "silu"},
            {"torch_dtype", "float32"}};
  if (c.arch == "llama") j["attention_bias"] = c.qkv_bias;
  if (c.arch == "mistral") j["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
  if (c.rope_scaling)
    j["rope_scaling"] = {{"rope_type", c.rope_scaling->type}, {"factor", c.rope_scaling->factor},
                         {"low_freq_factor", c.rope_scaling->low_freq_factor},
                         {"high_freq_factor", c.rope_scaling->high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling->original_max_position}};
  return j;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  out.close();
  if (!out) throw Error(ErrorKind::Io, p.string(), "write failed");
}

void write_hf_metadata(const Model& model, const ModelConfig& config, const fs::path& dir) {
  const TokenizerSpec& spec = model.impl().tokenizer_spec;
  write_text(dir / "config.json", hf_config_json(config).dump(2));
  json tcfg = {{"add_bos_token", spec.add_bos}, {"tokenizer_class", "PreTrainedTokenizerFast"}};
  if (spec.bos_id >= 0 && size_t(spec.bos_id) < spec.tokens.size()) tcfg["bos_token"] = spec.tokens[size_t(spec.bos_id)];
  if (spec.eos_id >= 0 && size_t(spec.eos_id) < spec.tokens.size()) tcfg["eos_token"] = spec.tokens[size_t(spec.eos_id)];
  if (spec.kind == TokenizerSpec::Kind::SentencePiece) {
    if (spec.spm_model.empty())
      throw Error(ErrorKind::Unsupported, dir.string(), "no SentencePiece model bytes to write (GGUF SentencePiece vocabularies)");
    tcfg["tokenizer_class"] = "LlamaTokenizer";
    write_text(dir / "tokenizer.model", spec.spm_model);
  } else {
    write_text(dir / "tokenizer.json", bpe_tokenizer_json(spec).dump());
  }
  write_text(dir / "tokenizer_config.json", tcfg.dump(2));
}

fs::path folder_path(const fs::path& out) {
  // "ckpt/" names the folder "ckpt": drop a trailing separator so the temp folder is a sibling.
  return out.filename().empty() ? out.parent_path() : out;
}

fs::path begin_folder(const fs::path& out_in) {
  const fs::path out = folder_path(out_in);
  std::error_code ec;
  if (fs::exists(out, ec)) throw Error(ErrorKind::InvalidArgument, out.string(), "output folder already exists");
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, ec))
    throw Error(ErrorKind::Io, out.string(), "parent folder " + parent.string() + " does not exist");
  const fs::path tmp = out.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec) || ec)
    throw Error(ErrorKind::Io, tmp.string(), "cannot create folder: " + (ec ? ec.message() : std::string("exists")));
  return tmp;
}

namespace {
void fsync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) throw Error(ErrorKind::Io, p.string(), "cannot open to sync");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw Error(ErrorKind::Io, p.string(), "fsync failed");
}
}  // namespace

void commit_folder(const fs::path& tmp, const fs::path& out_in) {
  const fs::path out = folder_path(out_in);
  // DESIGN §6: every file and the folder reach the disk before the rename makes them visible.
  for (const auto& e : fs::directory_iterator(tmp)) fsync_path(e.path());
  fsync_path(tmp);
  std::error_code ec;
  if (fs::exists(out, ec)) throw Error(ErrorKind::InvalidArgument, out.string(), "output folder already exists");
  failpoint("before-rename");
  fs::rename(tmp, out, ec);
  if (ec) throw Error(ErrorKind::Io, out.string(), "cannot rename the finished folder into place: " + ec.message());
  fsync_path(out.has_parent_path() ? out.parent_path() : fs::path("."));
  remove_stale_temps(out);  // folders of writers killed before their rename
}

void save_hf_folder(const Model& model, const fs::path& out) {
  const ModelWeights& w = model.impl().w;
  if (w.rope_freq_factors.defined())
    throw Error(ErrorKind::Unsupported, out.string(), "GGUF rope frequency factors have no HF config equivalent yet");
  if (model.impl().quant)
    throw Error(ErrorKind::Unsupported, out.string(), "a quantized model is saved with save_quantized_checkpoint");
  const fs::path tmp = begin_folder(out);
  try {
    write_hf_metadata(model, model.config(), tmp);
    std::vector<at::Tensor> keep;  // contiguous fp32 CPU copies alive until written
    std::vector<WriteEntry> entries;
    for (auto& [name, t] : named_weights(model)) {
      keep.push_back(t.to(at::kCPU, at::kFloat).contiguous());
      const at::Tensor& c = keep.back();
      entries.push_back({name, "F32", std::vector<int64_t>(c.sizes().begin(), c.sizes().end()), c.data_ptr(),
                         size_t(c.numel()) * 4});
    }
    write_safetensors(tmp / "model.safetensors", entries, {{"format", "pt"}});
    commit_folder(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace dptq

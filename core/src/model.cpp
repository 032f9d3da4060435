// Model loading (GGUF file or HF folder) into one internal layout, fingerprints, HF-folder writer.
#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unistd.h>

#include "dptq/error.hpp"
#include "dptq/gguf.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/quantize.hpp"
#include "hf_files.hpp"
#include "dptq/safetensors.hpp"
#include "dptq/sha256.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace dptq {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
const ModelInfo& Model::info() const { return impl_->info; }
const Tokenizer& Model::tokenizer() const { return *impl_->tokenizer; }

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::Cpu;
  if (s == "cuda") return Device::Cuda;
  if (s == "auto") return Device::Auto;
  throw Error(ErrorKind::InvalidArgument, "", "unknown device '" + s + "' (expected cpu, cuda or auto)");
}

DType parse_dtype(const std::string& s) {
  if (s == "auto") return DType::Auto;
  if (s == "fp32") return DType::F32;
  if (s == "bf16") return DType::BF16;
  throw Error(ErrorKind::InvalidArgument, "", "unknown dtype '" + s + "' (expected auto, fp32 or bf16)");
}

const char* model_dtype_name(const Model& model) {
  const at::ScalarType t = model.impl().dtype;
  return t == at::kBFloat16 ? "bf16" : t == at::kHalf ? "fp16" : "fp32";
}

std::string model_device_name(const Model& model) { return model.impl().device.str(); }

LoadOptions load_options_of(const Model& model) {
  const Model::Impl& m = model.impl();
  LoadOptions o;
  o.device = m.device.is_cuda() ? Device::Cuda : Device::Cpu;
  o.dtype = m.dtype == at::kBFloat16 ? DType::BF16 : DType::F32;
  return o;
}

namespace {

const std::set<std::string> kArchs = {"llama", "mistral", "qwen2"};

std::string layer_name(int64_t l, const std::string& rest) {
  return "model.layers." + std::to_string(l) + "." + rest;
}

// Expected [out, in] (or [n]) shape of every tensor of the internal layout.
std::vector<std::pair<std::string, std::vector<int64_t>>> expected_shapes(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.d_model}});
  out.push_back({"model.norm.weight", {c.d_model}});
  if (!c.tied_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, c.d_model}});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    out.push_back({layer_name(l, "input_layernorm.weight"), {c.d_model}});
    out.push_back({layer_name(l, "self_attn.q_proj.weight"), {q, c.d_model}});
    out.push_back({layer_name(l, "self_attn.k_proj.weight"), {kv, c.d_model}});
    out.push_back({layer_name(l, "self_attn.v_proj.weight"), {kv, c.d_model}});
    out.push_back({layer_name(l, "self_attn.o_proj.weight"), {c.d_model, q}});
    if (c.qkv_bias) {
      out.push_back({layer_name(l, "self_attn.q_proj.bias"), {q}});
      out.push_back({layer_name(l, "self_attn.k_proj.bias"), {kv}});
      out.push_back({layer_name(l, "self_attn.v_proj.bias"), {kv}});
    }
    out.push_back({layer_name(l, "post_attention_layernorm.weight"), {c.d_model}});
    out.push_back({layer_name(l, "mlp.gate_proj.weight"), {c.d_ff, c.d_model}});
    out.push_back({layer_name(l, "mlp.up_proj.weight"), {c.d_ff, c.d_model}});
    out.push_back({layer_name(l, "mlp.down_proj.weight"), {c.d_model, c.d_ff}});
  }
  return out;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void validate_config(const ModelConfig& c, const std::string& file) {
  auto bad = [&](const std::string& what) { throw Error(ErrorKind::Format, file, "invalid config: " + what); };
  if (c.n_layers <= 0 || c.d_model <= 0 || c.d_ff <= 0 || c.n_heads <= 0 || c.vocab_size <= 0) bad("non-positive size");
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0) bad("query heads not a multiple of key/value heads");
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) bad("head_dim must be positive and even");
  if (c.rope_scaling && c.rope_scaling->type != "llama3")
    throw Error(ErrorKind::Unsupported, file, "unsupported rope_scaling type '" + c.rope_scaling->type + "' (supported: llama3)");
}

std::string fingerprint_of(const ModelConfig& c, const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes) {
  // Canonical text: config fields that change the function, then sorted tensor names and shapes.
  std::ostringstream s;
  s << "arch=" << c.arch << ";layers=" << c.n_layers << ";d=" << c.d_model << ";ff=" << c.d_ff
    << ";heads=" << c.n_heads << ";kv=" << c.n_kv_heads << ";hd=" << c.head_dim << ";vocab=" << c.vocab_size
    << ";theta=" << c.rope_theta << ";eps=" << c.rms_eps << ";tied=" << c.tied_embeddings << ";bias=" << c.qkv_bias;
  if (c.rope_scaling)
    s << ";rope=" << c.rope_scaling->type << "," << c.rope_scaling->factor << "," << c.rope_scaling->low_freq_factor
      << "," << c.rope_scaling->high_freq_factor << "," << c.rope_scaling->original_max_position;
  auto sorted = shapes;
  std::sort(sorted.begin(), sorted.end());
  for (auto& [name, shape] : sorted) s << "\n" << name << shape_str(shape);
  return sha256_hex(s.str());
}

// ---------------------------------------------------------------- GGUF

ModelConfig gguf_config(const GgufFile& f) {
  const std::string file = f.path().string();
  ModelConfig c;
  c.arch = f.get("general.architecture").as_string("general.architecture");
  if (!kArchs.count(c.arch))
    throw Error(ErrorKind::Unsupported, file, "unsupported architecture '" + c.arch + "' (supported: llama, mistral, qwen2)");
  auto i = [&](const std::string& k) { return f.get(c.arch + "." + k).as_int(c.arch + "." + k); };
  auto d = [&](const std::string& k, double def) {
    auto* v = f.find(c.arch + "." + k);
    return v ? v->as_double(c.arch + "." + k) : def;
  };
  c.n_layers = i("block_count");
  c.d_model = i("embedding_length");
  c.d_ff = i("feed_forward_length");
  c.n_heads = i("attention.head_count");
  c.n_kv_heads = f.find(c.arch + ".attention.head_count_kv") ? i("attention.head_count_kv") : c.n_heads;
  c.head_dim = f.find(c.arch + ".attention.key_length") ? i("attention.key_length") : c.d_model / std::max<int64_t>(c.n_heads, 1);
  c.max_context = i("context_length");
  c.rope_theta = d("rope.freq_base", 10000.0);
  c.rms_eps = d("attention.layer_norm_rms_epsilon", 1e-5);
  if (f.find(c.arch + ".vocab_size")) {
    c.vocab_size = i("vocab_size");
  } else if (auto* t = f.find_tensor("token_embd.weight")) {
    c.vocab_size = t->dims.size() == 2 ? t->dims[1] : 0;
  }
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  if (auto* v = f.find(c.arch + ".attention.sliding_window")) c.sliding_window = v->as_int(c.arch + ".attention.sliding_window");
  validate_config(c, file);
  return c;
}

// GGUF name -> internal name; empty for tensors we do not use.
std::string gguf_to_internal(const std::string& n) {
  static const std::vector<std::pair<std::string, std::string>> blk = {
      {"attn_norm.weight", "input_layernorm.weight"},   {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},     {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"}, {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},         {"attn_v.bias", "self_attn.v_proj.bias"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"}, {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},          {"ffn_down.weight", "mlp.down_proj.weight"}};
  if (n == "token_embd.weight") return "model.embed_tokens.weight";
  if (n == "output_norm.weight") return "model.norm.weight";
  if (n == "output.weight") return "lm_head.weight";
  if (n.rfind("blk.", 0) == 0) {
    const size_t dot = n.find('.', 4);
    if (dot == std::string::npos) return "";
    const std::string layer = n.substr(4, dot - 4), rest = n.substr(dot + 1);
    for (auto& [g, h] : blk)
      if (rest == g) return "model.layers." + layer + "." + h;
  }
  return "";
}

// llama.cpp's converter permutes Q/K rows of LLaMA-arch models for its interleaved RoPE:
// rows (head, pair, i) are stored as (head, i, pair). Undo it to get HF's rotate-half order.
at::Tensor unpermute_qk(const at::Tensor& w, int64_t n_heads) {
  const int64_t rows = w.size(0);
  std::vector<int64_t> shape = {n_heads, rows / n_heads / 2, 2};
  for (int64_t i = 1; i < w.dim(); ++i) shape.push_back(w.size(i));
  return w.reshape(shape).transpose(1, 2).reshape(w.sizes()).contiguous();
}

// ---------------------------------------------------------------- HF

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw Error(ErrorKind::Io, p.string(), "cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(ErrorKind::Format, p.string(), std::string("invalid JSON: ") + e.what());
  }
}

ModelConfig hf_config(const fs::path& folder) {
  const fs::path p = folder / "config.json";
  const std::string file = p.string();
  const json j = read_json(p);
  ModelConfig c;
  try {
    c.arch = j.value("model_type", std::string());
    if (!kArchs.count(c.arch))
      throw Error(ErrorKind::Unsupported, file, "unsupported architecture '" + c.arch + "' (supported model_type: llama, mistral, qwen2)");
    c.n_layers = j.at("num_hidden_layers").get<int64_t>();
    c.d_model = j.at("hidden_size").get<int64_t>();
    c.d_ff = j.at("intermediate_size").get<int64_t>();
    c.n_heads = j.at("num_attention_heads").get<int64_t>();
    c.n_kv_heads = j.value("num_key_value_heads", c.n_heads);
    c.head_dim = (j.contains("head_dim") && !j["head_dim"].is_null()) ? j["head_dim"].get<int64_t>() : c.d_model / std::max<int64_t>(c.n_heads, 1);
    c.vocab_size = j.at("vocab_size").get<int64_t>();
    c.max_context = j.value("max_position_embeddings", int64_t(2048));
    c.rope_theta = j.value("rope_theta", 10000.0);
    if (j.contains("rope_parameters") && j["rope_parameters"].is_object() && j["rope_parameters"].contains("rope_theta"))
      c.rope_theta = j["rope_parameters"]["rope_theta"].get<double>();
    c.rms_eps = j.value("rms_norm_eps", 1e-6);
    c.tied_embeddings = j.value("tie_word_embeddings", false);
    c.qkv_bias = c.arch == "qwen2" ? true : j.value("attention_bias", false);
    if (c.arch == "mistral" && j.contains("sliding_window") && !j["sliding_window"].is_null())
      c.sliding_window = j["sliding_window"].get<int64_t>();
    // transformers 5 moved rope scaling under "rope_parameters"; older configs use "rope_scaling".
    for (const char* key : {"rope_scaling", "rope_parameters"}) {
      if (!j.contains(key) || !j[key].is_object()) continue;
      const json& r = j[key];
      const std::string type = r.value("rope_type", r.value("type", std::string("default")));
      if (type == "default") continue;
      RopeScaling s;
      s.type = type;
      s.factor = r.value("factor", 1.0);
      s.low_freq_factor = r.value("low_freq_factor", 1.0);
      s.high_freq_factor = r.value("high_freq_factor", 4.0);
      s.original_max_position = r.value("original_max_position_embeddings", int64_t(8192));
      c.rope_scaling = s;
    }
  } catch (const json::exception& e) {
    throw Error(ErrorKind::Format, file, std::string("invalid config: ") + e.what());
  }
  validate_config(c, file);
  return c;
}

at::Tensor tensor_from_safetensors(const SafetensorsFile& f, const SafetensorsFile::TensorEntry& e) {
  at::Tensor t = at::empty(e.shape, at::kFloat);
  f.to_float32(e, t.data_ptr<float>());
  check_finite(t, f.path().string(), e.name);
  return t;
}

void check_shape(const std::string& file, const std::string& name, const std::vector<int64_t>& want, at::IntArrayRef got) {
  if (std::vector<int64_t>(got.begin(), got.end()) != want)
    throw Error(ErrorKind::Shape, file, "tensor '" + name + "' has shape " + shape_str({got.begin(), got.end()}) +
                ", but the config implies " + shape_str(want));
}

void assign_weights(Model::Impl& impl, std::map<std::string, at::Tensor>& t, const std::string& file) {
  const ModelConfig& c = impl.info.config;
  auto take = [&](const std::string& name) -> at::Tensor {
    auto it = t.find(name);
    if (it == t.end()) throw Error(ErrorKind::Format, file, "missing tensor '" + name + "'");
    return it->second;
  };
  for (auto& [name, shape] : expected_shapes(c)) check_shape(file, name, shape, take(name).sizes());
  ModelWeights& w = impl.w;
  w.embed = take("model.embed_tokens.weight");
  w.final_norm = take("model.norm.weight");
  w.lm_head = c.tied_embeddings ? w.embed : take("lm_head.weight");
  w.layers.resize(size_t(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[size_t(l)];
    L.attn_norm = take(layer_name(l, "input_layernorm.weight"));
    L.wq = take(layer_name(l, "self_attn.q_proj.weight"));
    L.wk = take(layer_name(l, "self_attn.k_proj.weight"));
    L.wv = take(layer_name(l, "self_attn.v_proj.weight"));
    L.wo = take(layer_name(l, "self_attn.o_proj.weight"));
    if (c.qkv_bias) {
      L.bq = take(layer_name(l, "self_attn.q_proj.bias"));
      L.bk = take(layer_name(l, "self_attn.k_proj.bias"));
      L.bv = take(layer_name(l, "self_attn.v_proj.bias"));
    }
    L.mlp_norm = take(layer_name(l, "post_attention_layernorm.weight"));
    L.w_gate = take(layer_name(l, "mlp.gate_proj.weight"));
    L.w_up = take(layer_name(l, "mlp.up_proj.weight"));
    L.w_down = take(layer_name(l, "mlp.down_proj.weight"));
  }
}

int64_t count_params(const ModelConfig& c) {
  int64_t n = 0;
  for (auto& [name, shape] : expected_shapes(c)) {
    int64_t k = 1;
    for (int64_t d : shape) k *= d;
    n += k;
  }
  return n;
}

std::string tokenizer_kind(const TokenizerSpec& s) {
  return s.kind == TokenizerSpec::Kind::SentencePiece ? "sentencepiece" : "byte-level BPE (" + s.pre + ")";
}

bool is_hf_folder(const fs::path& p) { return fs::is_directory(p); }

void require_exists(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec)) throw Error(ErrorKind::Io, p.string(), "no such file or directory");
}

ModelInfo gguf_info(const GgufFile& f, const TokenizerSpec& spec) {
  ModelInfo info;
  info.path = f.path();
  info.format = "gguf";
  info.config = gguf_config(f);
  if (auto* n = f.find("general.name")) info.name = n->as_string("general.name");
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (auto& t : f.tensors()) {
    info.stored_types[ggml_type_name(t.type)]++;
    const std::string internal = gguf_to_internal(t.name);
    if (internal.empty()) continue;
    shapes.push_back({internal, std::vector<int64_t>(t.dims.rbegin(), t.dims.rend())});
  }
  info.n_params = count_params(info.config);
  info.fingerprint = fingerprint_of(info.config, shapes);
  info.tokenizer_kind = tokenizer_kind(spec);
  return info;
}

ModelInfo hf_info(const fs::path& folder, const TokenizerSpec& spec,
                  const std::map<std::string, fs::path>& index) {
  ModelInfo info;
  info.path = folder;
  info.format = "hf";
  info.config = hf_config(folder);
  info.name = fs::absolute(folder).lexically_normal().filename().string();
  if (info.name.empty()) info.name = fs::absolute(folder).lexically_normal().parent_path().filename().string();
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  std::set<fs::path> shards;
  for (auto& [name, shard] : index) shards.insert(shard);
  for (auto& shard : shards) {
    SafetensorsFile sf(shard);
    for (auto& e : sf.tensors()) {
      info.stored_types[e.dtype]++;
      if (index.count(e.name) && index.at(e.name) == shard) shapes.push_back({e.name, e.shape});
    }
  }
  info.n_params = count_params(info.config);
  info.fingerprint = fingerprint_of(info.config, shapes);
  info.tokenizer_kind = tokenizer_kind(spec);
  return info;
}

at::Device resolve_device(Device d) {
  if (d == Device::Cpu) return at::kCPU;
  const bool have_cuda = at::hasCUDA();
  if (d == Device::Cuda && !have_cuda)
    throw Error(ErrorKind::InvalidArgument, "", "--device cuda requested, but no CUDA device is available");
  return have_cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
}

void place(Model::Impl& impl, const LoadOptions& opts) {
  impl.device = resolve_device(opts.device);
  // Auto: fp32 on CPU; bf16 on GPU (DESIGN §3).
  impl.dtype = opts.dtype == DType::BF16 ? at::kBFloat16 : opts.dtype == DType::F32 ? at::kFloat
               : impl.device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (impl.device.is_cpu() && impl.dtype == at::kFloat) return;
  auto mv = [&](at::Tensor& t) { if (t.defined()) t = t.to(impl.device, impl.dtype); };
  ModelWeights& w = impl.w;
  mv(w.embed); mv(w.final_norm);
  if (impl.info.config.tied_embeddings) w.lm_head = w.embed; else mv(w.lm_head);
  for (auto& L : w.layers)
    for (at::Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv, &L.mlp_norm, &L.w_gate, &L.w_up, &L.w_down}) mv(*t);
}

}  // namespace

ModelConfig read_hf_config(const fs::path& folder) { return hf_config(folder); }
int64_t model_param_count(const ModelConfig& c) { return count_params(c); }
std::string tokenizer_kind_name(const TokenizerSpec& s) { return tokenizer_kind(s); }

ModelInfo inspect_model(const fs::path& path) {
  require_exists(path);
  if (is_quantized_checkpoint(path)) return inspect_quantized_checkpoint(path);
  if (is_hf_folder(path)) {
    const TokenizerSpec spec = load_hf_tokenizer_spec(path);
    return hf_info(path, spec, read_safetensors_index(path));
  }
  GgufFile f(path);
  return gguf_info(f, read_gguf_tokenizer_spec(f));
}

Model load_model(const fs::path& path, const LoadOptions& opts) {
  require_exists(path);
  if (is_quantized_checkpoint(path)) return load_quantized_checkpoint(path, opts);
  auto impl = std::make_unique<Model::Impl>();
  std::map<std::string, at::Tensor> tensors;
  std::string file = path.string();
  if (is_hf_folder(path)) {
    impl->tokenizer_spec = load_hf_tokenizer_spec(path);
    const auto index = read_safetensors_index(path);
    impl->info = hf_info(path, impl->tokenizer_spec, index);
    std::map<fs::path, std::vector<std::string>> by_shard;
    for (auto& [name, shard] : index) by_shard[shard].push_back(name);
    for (auto& [shard, names] : by_shard) {
      SafetensorsFile sf(shard);
      for (auto& name : names) {
        const auto& e = sf.get(name);
        if (e.dtype != "F32" && e.dtype != "F16" && e.dtype != "BF16")
          throw Error(ErrorKind::Unsupported, shard.string(), "tensor '" + name + "' has dtype " + e.dtype + " (supported: F32, F16, BF16)");
        tensors[name] = tensor_from_safetensors(sf, e);
      }
    }
    file = (path / "config.json").string();
  } else {
    GgufFile f(path);
    impl->tokenizer_spec = read_gguf_tokenizer_spec(f);
    impl->info = gguf_info(f, impl->tokenizer_spec);
    const ModelConfig& c = impl->info.config;
    // llama.cpp permutes Q/K only for LLaMA-arch models (rope type "normal"); Qwen2 is NEOX-style.
    const bool permuted = c.arch == "llama" || c.arch == "mistral";
    for (auto& t : f.tensors()) {
      const std::string name = gguf_to_internal(t.name);
      if (name.empty() && t.name != "rope_freqs.weight") continue;
      at::Tensor x = at::empty({t.numel()}, at::kFloat);
      f.dequantize(t, x.data_ptr<float>());
      check_finite(x, f.path().string(), t.name);
      x = x.view(std::vector<int64_t>(t.dims.rbegin(), t.dims.rend()));
      if (t.name == "rope_freqs.weight") { impl->w.rope_freq_factors = x; continue; }
      if (permuted && x.dim() >= 1 && name.find("self_attn.q_proj") != std::string::npos) x = unpermute_qk(x, c.n_heads);
      if (permuted && x.dim() >= 1 && name.find("self_attn.k_proj") != std::string::npos) x = unpermute_qk(x, c.n_kv_heads);
      tensors[name] = x;
    }
  }
  const ModelConfig& c = impl->info.config;
  impl->tokenizer = make_tokenizer(impl->tokenizer_spec);
  if (impl->tokenizer->vocab_size() > c.vocab_size)
    throw Error(ErrorKind::Shape, path.string(), "tokenizer has " + std::to_string(impl->tokenizer->vocab_size()) +
                " tokens but the model's vocabulary is " + std::to_string(c.vocab_size));
  assign_weights(*impl, tensors, file);
  place(*impl, opts);
  return Model(std::move(impl));
}

void check_finite(const at::Tensor& t, const std::string& file, const std::string& tensor_name) {
  const at::Tensor bad = at::isfinite(t).logical_not_().flatten();
  if (!bad.any().item<bool>()) return;
  const int64_t first = bad.nonzero()[0][0].item<int64_t>();
  const double v = t.flatten()[first].item<double>();
  throw Error(ErrorKind::Format, file, "tensor '" + tensor_name + "' holds " + (std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf") +
              " (first at flat index " + std::to_string(first) + "): the weights are corrupt");
}

std::vector<std::pair<std::string, at::Tensor>> named_weights(const Model& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.impl().w;
  out.push_back({"model.embed_tokens.weight", w.embed});
  out.push_back({"model.norm.weight", w.final_norm});
  if (!c.tied_embeddings) out.push_back({"lm_head.weight", w.lm_head});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[size_t(l)];
    out.push_back({layer_name(l, "input_layernorm.weight"), L.attn_norm});
    out.push_back({layer_name(l, "self_attn.q_proj.weight"), L.wq});
    out.push_back({layer_name(l, "self_attn.k_proj.weight"), L.wk});
    out.push_back({layer_name(l, "self_attn.v_proj.weight"), L.wv});
    out.push_back({layer_name(l, "self_attn.o_proj.weight"), L.wo});
    if (c.qkv_bias) {
      out.push_back({layer_name(l, "self_attn.q_proj.bias"), L.bq});
      out.push_back({layer_name(l, "self_attn.k_proj.bias"), L.bk});
      out.push_back({layer_name(l, "self_attn.v_proj.bias"), L.bv});
    }
    out.push_back({layer_name(l, "post_attention_layernorm.weight"), L.mlp_norm});
    out.push_back({layer_name(l, "mlp.gate_proj.weight"), L.w_gate});
    out.push_back({layer_name(l, "mlp.up_proj.weight"), L.w_up});
    out.push_back({layer_name(l, "mlp.down_proj.weight"), L.w_down});
  }
  return out;
}

}  // namespace dptq

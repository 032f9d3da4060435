// Quantized checkpoints (docs/checkpoint-format.md): packed int4 linear weights + fp16 scales,
// fp16 embeddings / norms / lm_head, fp32 online rotations, quant_config.json with the method,
// the quantizers, the rotations and the embedded plan. Written into a temp folder and renamed.
#include <ATen/ATen.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/quant_config.hpp"
#include "dptq/quantize.hpp"
#include "dptq/safetensors.hpp"
#include "hf_files.hpp"

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace dptq {

namespace {

constexpr const char* kCheckpointFormat = "dptq-quantized";
constexpr int kCheckpointMajor = 1, kCheckpointMinor = 0;  // parse_quant_config checks the major
constexpr const char* kTensorFile = "model.safetensors";
constexpr const char* kConfigFile = "quant_config.json";
constexpr const char* kRopeFactors = "dptq.rope_freq_factors";  // GGUF rope_freqs (LLaMA-3.x), when present

// The three online rotations: checkpoint tensor name, quant_config key, QuantState member.
struct OnlineRef {
  const char* tensor;
  const char* key;
  Rotation QuantState::*member;
};
constexpr OnlineRef kOnline[] = {
    {"dptq.rotation.down_proj_input", "down_proj_input", &QuantState::down},
    {"dptq.rotation.o_proj_heads", "o_proj_heads", &QuantState::heads},
    {"dptq.rotation.qk_after_rope", "qk_after_rope", &QuantState::k},
};

std::string layer_prefix(int64_t l) { return "model.layers." + std::to_string(l) + "."; }

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  out.close();
  if (!out) throw Error(ErrorKind::Io, p.string(), "write failed");
}

ojson rotation_json(const Rotation& r, const char* tensor) {
  return {{"kind", r.kind}, {"seed", r.seed}, {"order", r.size()}, {"tensor", tensor}};
}

}  // namespace

bool is_quantized_checkpoint(const fs::path& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::exists(path / kConfigFile, ec);
}

void check_checkpointable(const Model& model, const Plan& plan, const fs::path& out) {
  if (plan.quantizer.weight_bits != 4 || !plan.quantizer.weight_symmetric)
    throw Error(ErrorKind::Unsupported, out.string(), "checkpoints hold 4-bit symmetric weights only (the plan asks for " +
                std::to_string(plan.quantizer.weight_bits) + "-bit" + (plan.quantizer.weight_symmetric ? "" : " asymmetric") + ")");
  const TokenizerSpec& spec = model.impl().tokenizer_spec;
  if (spec.kind == TokenizerSpec::Kind::SentencePiece && spec.spm_model.empty())
    throw Error(ErrorKind::Unsupported, out.string(), "no SentencePiece model bytes to write (GGUF SentencePiece vocabularies)");
}

CheckpointStats save_quantized_checkpoint(const Model& model, const fs::path& out, Progress* progress) {
  const QuantState* qs = model.impl().quant.get();
  if (!qs) throw Error(ErrorKind::InvalidArgument, out.string(), "the model is not quantized");
  if (qs->qweights.empty())
    throw Error(ErrorKind::InvalidArgument, out.string(), "the model's weights are not quantized (nothing to pack)");
  if (qs->settings.weight_bits != 4 || !qs->settings.weight_symmetric)
    throw Error(ErrorKind::Unsupported, out.string(), "checkpoints hold 4-bit symmetric weights only");
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.impl().w;
  CheckpointStats stats;
  const fs::path tmp = begin_folder(out);
  try {
    if (progress) progress->set_stage("packing int4 weights");
    write_hf_metadata(model, c, tmp);

    std::vector<at::Tensor> keep;  // CPU buffers alive until written
    std::vector<WriteEntry> entries;
    auto add = [&](const std::string& name, at::Tensor t, const char* dtype) {
      keep.push_back(t.to(at::kCPU).contiguous());
      const at::Tensor& k = keep.back();
      entries.push_back({name, dtype, k.sizes().vec(), k.data_ptr(), size_t(k.nbytes())});
    };
    auto f16 = [&](const std::string& name, const at::Tensor& t) { add(name, t.to(at::kCPU, at::kHalf), "F16"); };
    f16("model.embed_tokens.weight", w.embed);
    f16("model.norm.weight", w.final_norm);
    if (!c.tied_embeddings) f16("lm_head.weight", w.lm_head);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const LayerWeights& L = w.layers[size_t(l)];
      const std::string p = layer_prefix(l);
      f16(p + "input_layernorm.weight", L.attn_norm);
      f16(p + "post_attention_layernorm.weight", L.mlp_norm);
      if (L.bq.defined()) {
        f16(p + "self_attn.q_proj.bias", L.bq);
        f16(p + "self_attn.k_proj.bias", L.bk);
        f16(p + "self_attn.v_proj.bias", L.bv);
      }
      for (const LinearRef& ref : kLinearWeights) {
        const std::string suffix = ref.name;
        const auto it = qs->qweights.find(p + suffix);
        if (it == qs->qweights.end())
          throw Error(ErrorKind::InvalidArgument, out.string(), "no quantized weight for " + p + suffix);
        const QuantizedWeight& qw = it->second;
        const at::Tensor packed = pack_int4(qw.codes);
        add(p + suffix + ".qweight", packed, "U8");
        f16(p + suffix + ".scales", qw.scales);
        stats.linear_params += qw.codes.numel();
        stats.linear_bytes += packed.numel() + qw.scales.numel() * 2;
      }
    }
    if (qs->rotated)
      for (const OnlineRef& r : kOnline) add(r.tensor, ((*qs).*(r.member)).dense().to(at::kCPU, at::kFloat), "F32");
    stats.linear_fp16_bytes = stats.linear_params * 2;
    write_safetensors(tmp / kTensorFile, entries, {{"format", "pt"}, {"dptq", kCheckpointFormat}});

    ojson j;
    j["format"] = kCheckpointFormat;
    j["version"] = std::to_string(kCheckpointMajor) + "." + std::to_string(kCheckpointMinor);
    j["method"] = qs->method;
    j["model"] = {{"name", model.info().name}, {"fingerprint", model.info().fingerprint},
                  {"source", model.info().path.string()}};
    const QuantizerSettings& s = qs->settings;
    j["weights"] = {{"bits", s.weight_bits},
                    {"symmetric", s.weight_symmetric},
                    {"granularity", "per output channel"},
                    {"algorithm", qs->method.find("gptq") != std::string::npos ? "gptq" : "rtn-mse-clip"},
                    {"storage", "qweight U8 [out, ceil(in/2)]: int4 two's complement codes, two per byte, low nibble "
                                "first; scales F16 [out]; W = scales[:, None] * codes"}};
    j["activations"] = {{"quantized", qs->act_quant}, {"granularity", "per token"}, {"asymmetric", s.act_asymmetric},
                        {"clip_4bit", s.act_clip_4bit}, {"clip_8bit", s.act_clip_8bit},
                        {"sites", {"q/k/v_proj input", "o_proj input", "gate/up_proj input", "down_proj input"}},
                        {"bits", "per block and site: plan.blocks[l].bits"}};
    j["kv_cache"] = {{"bits", s.kv_bits}, {"asymmetric", true},
                     {"group_size", s.kv_group_size > 0 ? s.kv_group_size : std::min<int64_t>(128, c.head_dim)},
                     {"clip", s.kv_clip}, {"keys", "after RoPE and the qk_after_rope rotation"}};
    if (qs->rotated) {
      ojson online = ojson::object();
      for (const OnlineRef& r : kOnline) online[r.key] = rotation_json((*qs).*(r.member), r.tensor);
      j["rotations"] = {{"fused", {{"R1", qs->r1_source}, {"R2", qs->r1_source.rfind("file", 0) == 0
                                                                    ? "from the rotation file (or seed + 3)"
                                                                    : "random_hadamard seed " + std::to_string(qs->rotation_seed + 3)},
                                   {"rmsnorm_gamma", "folded into the following linear layers; norms are 1"}}},
                        {"online", online}};
    } else {
      j["rotations"] = nullptr;
    }
    j["plan"] = ojson::parse(plan_to_json(qs->plan));
    write_file(tmp / kConfigFile, j.dump(2) + "\n");
    for (const auto& e : fs::directory_iterator(tmp)) stats.total_bytes += int64_t(e.file_size());
    commit_folder(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return stats;
}

namespace {

// quant_config.json, parsed and validated by the torch-free parse_quant_config (fuzzed).
QuantConfig read_header(const fs::path& folder) {
  const fs::path p = folder / kConfigFile;
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(ErrorKind::Io, p.string(), "cannot open");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_quant_config(text, p.string());
}

ModelInfo checkpoint_info(const fs::path& folder, const QuantConfig& h, const TokenizerSpec& spec) {
  ModelInfo info;
  info.path = folder;
  info.format = "dptq-quantized";
  info.config = read_hf_config(folder);
  info.name = h.model_name.empty() ? folder.filename().string() : h.model_name;
  info.fingerprint = h.fingerprint;
  info.n_params = model_param_count(info.config);
  info.tokenizer_kind = tokenizer_kind_name(spec);
  if (int64_t(h.plan.blocks.size()) != info.config.n_layers)
    throw Error(ErrorKind::Format, (folder / kConfigFile).string(), "plan has " + std::to_string(h.plan.blocks.size()) +
                " blocks, config.json has " + std::to_string(info.config.n_layers) + " layers");
  return info;
}

}  // namespace

namespace {

// A field of the wrong JSON type (nlohmann::type_error and friends) is a malformed file, not a bug.
template <class Fn>
auto json_guard(const fs::path& folder, Fn fn) {
  try {
    return fn();
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::Format, (folder / kConfigFile).string(), std::string("malformed field: ") + e.what());
  }
}

ModelInfo inspect_impl(const fs::path& path) {
  const QuantConfig h = read_header(path);
  const TokenizerSpec spec = load_hf_tokenizer_spec(path);
  ModelInfo info = checkpoint_info(path, h, spec);
  const SafetensorsFile sf(path / kTensorFile);
  for (const auto& e : sf.tensors()) info.stored_types[e.name.size() > 8 && e.name.ends_with(".qweight") ? "int4" : e.dtype]++;
  return info;
}

Model load_impl(const fs::path& path, const LoadOptions& opts) {
  const QuantConfig h = read_header(path);
  auto impl = std::make_unique<Model::Impl>();
  impl->tokenizer_spec = load_hf_tokenizer_spec(path);
  impl->info = checkpoint_info(path, h, impl->tokenizer_spec);
  const ModelConfig& c = impl->info.config;
  const fs::path tpath = path / kTensorFile;
  const std::string tfile = tpath.string();
  const SafetensorsFile sf(tpath);
  for (const auto& e : sf.tensors()) impl->info.stored_types[e.name.ends_with(".qweight") ? "int4" : e.dtype]++;

  auto expect = [&](const std::string& name, const char* dtype, std::vector<int64_t> shape) -> const SafetensorsFile::TensorEntry& {
    const auto& e = sf.get(name);
    if (e.dtype != dtype) throw Error(ErrorKind::Format, tfile, "tensor '" + name + "' has dtype " + e.dtype + ", expected " + dtype);
    if (e.shape != shape) {
      auto str = [](const std::vector<int64_t>& s) {
        std::string o = "[";
        for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
        return o + "]";
      };
      throw Error(ErrorKind::Shape, tfile, "tensor '" + name + "' has shape " + str(e.shape) + ", expected " + str(shape));
    }
    return e;
  };
  auto floats = [&](const std::string& name, const char* dtype, std::vector<int64_t> shape) {
    const auto& e = expect(name, dtype, shape);
    at::Tensor t = at::empty(e.shape, at::kFloat);
    sf.to_float32(e, t.data_ptr<float>());
    check_finite(t, tfile, name);
    return t;
  };

  const int64_t d = c.d_model, hd = c.head_dim, q_out = c.n_heads * hd, kv_out = c.n_kv_heads * hd;
  ModelWeights& w = impl->w;
  w.embed = floats("model.embed_tokens.weight", "F16", {c.vocab_size, d});
  w.final_norm = floats("model.norm.weight", "F16", {d});
  w.lm_head = c.tied_embeddings ? w.embed : floats("lm_head.weight", "F16", {c.vocab_size, d});
  if (sf.find(kRopeFactors)) w.rope_freq_factors = floats(kRopeFactors, "F32", {hd / 2});
  auto qs = std::make_shared<QuantState>();
  qs->method = h.method;
  qs->rotated = h.method.rfind("quarot-", 0) == 0;
  qs->settings = h.plan.quantizer;
  qs->act_quant = h.act_quantized;
  if (qs->settings.weight_bits != 4)
    throw Error(ErrorKind::Format, (path / kConfigFile).string(), "plan says " + std::to_string(qs->settings.weight_bits) +
                "-bit weights; checkpoints hold 4-bit weights");
  w.layers.resize(size_t(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[size_t(l)];
    const std::string p = layer_prefix(l);
    L.attn_norm = floats(p + "input_layernorm.weight", "F16", {d});
    L.mlp_norm = floats(p + "post_attention_layernorm.weight", "F16", {d});
    if (c.qkv_bias) {
      L.bq = floats(p + "self_attn.q_proj.bias", "F16", {q_out});
      L.bk = floats(p + "self_attn.k_proj.bias", "F16", {kv_out});
      L.bv = floats(p + "self_attn.v_proj.bias", "F16", {kv_out});
    }
    for (const LinearRef& ref : kLinearWeights) {
      const std::string s = ref.name;
      const int64_t out = s == "self_attn.q_proj" ? q_out : (s == "self_attn.k_proj" || s == "self_attn.v_proj") ? kv_out
                          : (s == "self_attn.o_proj" || s == "mlp.down_proj") ? d : c.d_ff;
      const int64_t in = s == "self_attn.o_proj" ? q_out : s == "mlp.down_proj" ? c.d_ff : d;
      const auto& e = expect(p + s + ".qweight", "U8", {out, (in + 1) / 2});
      at::Tensor packed = at::empty({out, (in + 1) / 2}, at::kByte);
      std::memcpy(packed.data_ptr(), sf.data(e), size_t(e.nbytes));
      QuantizedWeight qw;
      qw.codes = unpack_int4(packed, in, /*is_signed=*/true);
      qw.scales = floats(p + s + ".scales", "F16", {out});
      qw.bits = 4;
      qw.symmetric = true;
      L.*(ref.member) = qw.dequantize();
      qs->qweights[p + s] = std::move(qw);
    }
  }
  if (qs->rotated) {
    const int64_t orders[] = {c.d_ff, c.n_heads, hd};
    for (size_t i = 0; i < std::size(kOnline); ++i) {
      const OnlineRef& r = kOnline[i];
      const at::Tensor dense = floats(r.tensor, "F32", {orders[i], orders[i]});
      // A seeded rotation is rebuilt in its fast factored form when it matches the stored matrix.
      Rotation rot = make_dense_rotation(dense, "matrix");
      if (const auto it = h.online.find(r.key); it != h.online.end()) {
        const std::string& kind = it->second.kind;
        const uint64_t seed = it->second.seed;
        if (kind == "random_hadamard" || kind == "random_orthogonal") {
          Rotation seeded = make_random_rotation(orders[i], seed);
          if ((seeded.dense() - dense).abs().max().item<double>() <= 1e-5) rot = std::move(seeded);
        }
      }
      (*qs).*(r.member) = std::move(rot);
    }
  }
  impl->quant = qs;
  Model model(std::move(impl));
  set_activation_plan(model, h.plan, (path / kConfigFile).string());
  model.impl().tokenizer = make_tokenizer(model.impl().tokenizer_spec);
  if (opts.device == Device::Cuda) {
    if (!at::hasCUDA()) throw Error(ErrorKind::InvalidArgument, "", "--device cuda requested, but no CUDA device is available");
  }
  if (opts.device != Device::Cpu && at::hasCUDA()) {
    Model::Impl& m = model.impl();
    m.device = at::kCUDA;
    m.dtype = opts.dtype == DType::F32 ? at::kFloat : at::kBFloat16;  // Auto on CUDA: bf16, as load_model
    auto mv = [&](at::Tensor& t) { if (t.defined()) t = t.to(m.device, m.dtype); };
    mv(m.w.embed); mv(m.w.final_norm); mv(m.w.lm_head);
    for (auto& L : m.w.layers)
      for (at::Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv, &L.mlp_norm, &L.w_gate, &L.w_up, &L.w_down}) mv(*t);
    for (const OnlineRef& r : kOnline) (*qs).*(r.member) = ((*qs).*(r.member)).to(m.device, at::kFloat);
  }
  return model;
}

}  // namespace

ModelInfo inspect_quantized_checkpoint(const fs::path& path) {
  return json_guard(path, [&] { return inspect_impl(path); });
}

Model load_quantized_checkpoint(const fs::path& path, const LoadOptions& opts) {
  return json_guard(path, [&] { return load_impl(path, opts); });
}

}  // namespace dptq

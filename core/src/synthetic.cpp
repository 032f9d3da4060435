// make_synthetic_model: a small random LLaMA with a planted massive activation (see synthetic.hpp
// for the mechanism and its guarantees).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/sha256.hpp"
#include "dptq/synthetic.hpp"

namespace dptq {

std::vector<std::string> byte_level_alphabet() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) { bs.push_back(b); cs.push_back(256 + n++); }
  std::vector<std::string> tokens(256);
  for (size_t i = 0; i < bs.size(); ++i) {
    const int c = cs[i];
    std::string s;
    if (c < 0x80) s += char(c);
    else { s += char(0xC0 | (c >> 6)); s += char(0x80 | (c & 0x3F)); }
    tokens[size_t(bs[i])] = s;
  }
  return tokens;
}

namespace {

// Weight standard deviations are c / sqrt(fan_in) (0.1, 0.035, 0.05, 0.035, 0.05 at d_model 64, d_ff
// 128), which keeps attention logits, the Jump Ratio of ordinary blocks (~0.1) and the logits the
// same for every width.
constexpr double kQkGain = 0.8, kVoGain = 0.28, kGateUpGain = 0.4, kDownGain = 0.396, kHeadGain = 0.4;
constexpr double kGammaSpread = 0.1;  // γ uniform in [1 − spread, 1 + spread]
constexpr double kMaxMagnitude = 1e5;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Deterministic tensor generator: tensor number `k` of the model draws from its own stream seeded
// by (seed, k), so every tensor depends only on the spec and its position in the fixed order.
class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream) : eng_(splitmix64(splitmix64(seed) ^ (stream * 0xD1B54A32D192ED03ull))) {}
  double uniform() { return double(eng_() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {
    if (have_spare_) { have_spare_ = false; return spare_; }
    double u1;
    do u1 = uniform(); while (u1 <= 0.0);
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    have_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }

 private:
  std::mt19937_64 eng_;
  double spare_ = 0;
  bool have_spare_ = false;
};

at::Tensor gaussian(Rng rng, std::vector<int64_t> shape, double stddev) {
  at::Tensor t = at::empty(shape, at::kFloat);
  float* p = t.data_ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(stddev * rng.normal());
  return t;
}

at::Tensor gamma_vector(Rng rng, int64_t d) {
  at::Tensor t = at::empty({d}, at::kFloat);
  float* p = t.data_ptr<float>();
  for (int64_t i = 0; i < d; ++i) p[i] = float(1.0 + kGammaSpread * (2.0 * rng.uniform() - 1.0));
  return t;
}

void validate(const SyntheticSpec& s) {
  auto bad = [](const std::string& what) {
    throw Error(ErrorKind::InvalidArgument, "", "invalid synthetic model spec: " + what);
  };
  auto str = [](int64_t v) { return std::to_string(v); };
  if (s.n_layers <= 0 || s.d_model <= 0 || s.d_ff <= 0 || s.n_heads <= 0 || s.n_kv_heads <= 0 || s.max_context <= 0)
    bad("sizes must be positive");
  if (s.n_heads % s.n_kv_heads != 0)
    bad("n_heads (" + str(s.n_heads) + ") is not a multiple of n_kv_heads (" + str(s.n_kv_heads) + ")");
  if (s.d_model % s.n_heads != 0 || (s.d_model / s.n_heads) % 2 != 0)
    bad("d_model (" + str(s.d_model) + ") must be n_heads (" + str(s.n_heads) + ") times an even head_dim");
  if (s.vocab_size < 256) bad("vocab_size " + str(s.vocab_size) + " < 256 (the byte tokens)");
  if (s.emerge_block < 0 || s.emerge_block >= s.vanish_block || s.vanish_block >= s.n_layers)
    bad("need 0 <= emerge_block < vanish_block < n_layers (got " + str(s.emerge_block) + ", " +
        str(s.vanish_block) + ", " + str(s.n_layers) + ")");
  if (s.massive_channel < 0 || s.massive_channel >= s.d_model)
    bad("massive_channel " + str(s.massive_channel) + " outside [0, " + str(s.d_model) + ")");
  if (!(s.magnitude > 0.0 && s.magnitude <= kMaxMagnitude))
    bad("magnitude " + std::to_string(s.magnitude) + " outside (0, 1e5]");
  if (s.plant && s.d_ff < 2 * s.d_model)
    bad("d_ff (" + str(s.d_ff) + ") < 2 * d_model (" + str(2 * s.d_model) + "): the planted emergence needs 2*d_model MLP units");
}

// Same canonical text as the loader's fingerprint (model.cpp): config fields, then sorted tensor
// names and shapes, so a synthetic model saved as a HF folder and loaded back keeps its fingerprint.
std::string fingerprint(const Model& model) {
  const ModelConfig& c = model.config();
  std::ostringstream s;
  s << "arch=" << c.arch << ";layers=" << c.n_layers << ";d=" << c.d_model << ";ff=" << c.d_ff
    << ";heads=" << c.n_heads << ";kv=" << c.n_kv_heads << ";hd=" << c.head_dim << ";vocab=" << c.vocab_size
    << ";theta=" << c.rope_theta << ";eps=" << c.rms_eps << ";tied=" << c.tied_embeddings << ";bias=" << c.qkv_bias;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (auto& [name, t] : named_weights(model)) shapes.push_back({name, std::vector<int64_t>(t.sizes().begin(), t.sizes().end())});
  std::sort(shapes.begin(), shapes.end());
  for (auto& [name, shape] : shapes) {
    s << "\n" << name << "[";
    for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
    s << "]";
  }
  return sha256_hex(s.str());
}

}  // namespace

Model make_synthetic_model(const SyntheticSpec& spec) {
  validate(spec);
  auto impl = std::make_unique<Model::Impl>();

  ModelConfig& c = impl->info.config;
  c.arch = "llama";
  c.n_layers = spec.n_layers;
  c.d_model = spec.d_model;
  c.d_ff = spec.d_ff;
  c.n_heads = spec.n_heads;
  c.n_kv_heads = spec.n_kv_heads;
  c.head_dim = spec.d_model / spec.n_heads;
  c.vocab_size = spec.vocab_size;
  c.max_context = spec.max_context;
  c.rope_theta = 10000.0;
  c.rms_eps = 1e-5;
  c.tied_embeddings = false;

  TokenizerSpec& tok = impl->tokenizer_spec;
  tok.kind = TokenizerSpec::Kind::Bpe;
  tok.pre = "gpt2";
  tok.tokens = byte_level_alphabet();
  tok.source = "synthetic";
  impl->tokenizer = make_tokenizer(tok);

  // ---- base model: fixed tensor order, each tensor with its own random stream
  const int64_t d = c.d_model, ff = c.d_ff, hd = c.head_dim;
  uint64_t stream = 0;
  auto next = [&] { return Rng(spec.seed, stream++); };
  ModelWeights& w = impl->w;
  const double sd = 1.0 / std::sqrt(double(d)), sf = 1.0 / std::sqrt(double(ff));
  w.embed = gaussian(next(), {c.vocab_size, d}, 1.0);
  w.embed *= (kSyntheticEmbedRms * std::sqrt(double(d))) / w.embed.norm(2, {1}, /*keepdim=*/true);
  w.final_norm = gamma_vector(next(), d);
  w.lm_head = gaussian(next(), {c.vocab_size, d}, kHeadGain * sd);
  w.layers.resize(size_t(c.n_layers));
  for (LayerWeights& L : w.layers) {
    L.attn_norm = gamma_vector(next(), d);
    L.wq = gaussian(next(), {c.n_heads * hd, d}, kQkGain * sd);
    L.wk = gaussian(next(), {c.n_kv_heads * hd, d}, kQkGain * sd);
    L.wv = gaussian(next(), {c.n_kv_heads * hd, d}, kVoGain * sd);
    L.wo = gaussian(next(), {d, c.n_heads * hd}, kVoGain * sd);
    L.mlp_norm = gamma_vector(next(), d);
    L.w_gate = gaussian(next(), {ff, d}, kGateUpGain * sd);
    L.w_up = gaussian(next(), {ff, d}, kGateUpGain * sd);
    L.w_down = gaussian(next(), {d, ff}, kDownGain * sf);
  }

  // ---- planted units (pairs of SwiGLU units: silu(z)·v + silu(−z)·(−v) = z·v exactly)
  if (spec.plant) {
    const int64_t m = spec.massive_channel;
    const double M = spec.magnitude;
    // Emergence: units i and d+i compute x_i² (x = a/rms(a)); each writes M/d into channel m.
    LayerWeights& E = w.layers[size_t(spec.emerge_block)];
    const at::Tensor inv_g = E.mlp_norm.reciprocal();
    const at::Tensor diag = at::diag(inv_g);  // row i reads y_i / γ_i = x_i
    E.w_gate.narrow(0, 0, d).copy_(diag);
    E.w_gate.narrow(0, d, d).copy_(-diag);
    E.w_up.narrow(0, 0, d).copy_(diag);
    E.w_up.narrow(0, d, d).copy_(-diag);
    E.w_down.narrow(1, 0, 2 * d).zero_();
    E.w_down.select(0, m).narrow(0, 0, 2 * d).fill_(M / double(d));
    // Vanish: units ff−2, ff−1 compute x_m²; they write −M/d into channel m.
    LayerWeights& V = w.layers[size_t(spec.vanish_block)];
    const float r = 1.0f / V.mlp_norm[m].item<float>();
    for (int64_t u = ff - 2; u < ff; ++u) {
      const float sign = u == ff - 2 ? 1.0f : -1.0f;
      V.w_gate[u].zero_();
      V.w_up[u].zero_();
      V.w_gate[u][m] = sign * r;
      V.w_up[u][m] = sign * r;
      V.w_down.select(1, u).zero_();
      V.w_down[m][u] = -M / double(d);
    }
  }

  ModelInfo& info = impl->info;
  info.format = "synthetic";
  std::ostringstream name;
  name << "synthetic-llama-L" << spec.n_layers << "-d" << spec.d_model << "-seed" << spec.seed;
  if (spec.plant)
    name << "-massive(c" << spec.massive_channel << ",x" << spec.magnitude << ",blocks " << spec.emerge_block
         << ".." << spec.vanish_block << ")";
  info.name = name.str();
  info.tokenizer_kind = "byte-level BPE (gpt2)";
  impl->device = at::kCPU;
  impl->dtype = at::kFloat;

  Model model(std::move(impl));
  int64_t n_params = 0, n_tensors = 0;
  for (auto& [n, t] : named_weights(model)) { n_params += t.numel(); ++n_tensors; }
  ModelInfo& mi = model.impl().info;
  mi.n_params = n_params;
  mi.stored_types["F32"] = n_tensors;
  mi.fingerprint = fingerprint(model);
  return model;
}

}  // namespace dptq

// Synthetic models with a planted massive activation (core/src/synthetic.cpp): the guarantees
// documented in dptq/synthetic.hpp, checked with direct tensor computations on the block-by-block
// forward (no profiler code involved).
#include <ATen/ATen.h>

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>

#include "dptq/error.hpp"
#include "dptq/model_torch.hpp"
#include "dptq/synthetic.hpp"
#include "test_util.hpp"

using namespace dptq;

namespace {

constexpr double kAbsThreshold = 100.0, kRatioThreshold = 1000.0;  // DESIGN §4 defaults

// h_0 .. h_{n_layers} of `ids`.
std::vector<at::Tensor> streams(const Model& model, const at::Tensor& ids) {
  c10::InferenceMode guard;
  const RopeTables rope = rope_tables(model, ids.size(0));
  std::vector<at::Tensor> hs{embed_tokens(model, ids)};
  for (int64_t l = 0; l < model.config().n_layers; ++l) hs.push_back(decoder_block(model, l, hs.back(), rope));
  return hs;
}

double median_abs(const at::Tensor& h) { return h.abs().flatten().median().item<double>(); }

// Massive entries of one stream (both thresholds, median over all T×d entries).
at::Tensor massive_mask(const at::Tensor& h) {
  const at::Tensor a = h.abs();
  return (a >= kAbsThreshold).logical_and(a >= kRatioThreshold * median_abs(h));
}

// JR_l(t) for every token: ‖h_{l+1} − h_l‖₂ / ‖h_l‖₂.
at::Tensor jump_ratio(const at::Tensor& h, const at::Tensor& next) {
  return (next - h).norm(2, {1}) / h.norm(2, {1});
}

std::vector<at::Tensor> token_sequences(uint64_t seed, int n, int64_t len, int64_t vocab) {
  std::mt19937_64 rng(seed);
  std::vector<at::Tensor> out;
  for (int i = 0; i < n; ++i) {
    at::Tensor ids = at::empty({len}, at::kLong);
    for (int64_t t = 0; t < len; ++t) ids[t] = int64_t(rng() % uint64_t(vocab));
    out.push_back(ids);
  }
  out.push_back(at::full({len}, int64_t(' '), at::kLong));  // one token repeated
  out.push_back(at::arange(len, at::kLong).remainder(vocab));  // every id in order
  return out;
}

struct Stats {
  double jr_min = 1e30, jr_max = 0, jr_sum = 0;
  int64_t n = 0;
  void add(const at::Tensor& jr) {
    jr_min = std::min(jr_min, jr.min().item<double>());
    jr_max = std::max(jr_max, jr.max().item<double>());
    jr_sum += jr.sum().item<double>();
    n += jr.numel();
  }
  double mean() const { return jr_sum / double(n); }
};

// Checks every guarantee of synthetic.hpp for `spec` on several sequences; returns a report line.
std::string check_planted(const SyntheticSpec& spec, int n_sequences, int64_t len) {
  const Model model = make_synthetic_model(spec);
  const int64_t E = spec.emerge_block, V = spec.vanish_block, L = spec.n_layers, m = spec.massive_channel;
  std::vector<Stats> jr(static_cast<size_t>(L));
  double value_min = 1e30, value_max = 0, median_max_massive = 0, max_abs_ordinary = 0, ratio_max_ordinary = 0;
  for (const at::Tensor& ids : token_sequences(spec.seed + 17, n_sequences, len, spec.vocab_size)) {
    const std::vector<at::Tensor> hs = streams(model, ids);
    REQUIRE(int64_t(hs.size()) == L + 1);
    for (int64_t l = 0; l <= L; ++l) {
      const at::Tensor& h = hs[size_t(l)];
      CAPTURE(l);
      const at::Tensor mask = massive_mask(h);
      const double med = median_abs(h);
      if (l >= E + 1 && l <= V) {
        // Exactly one massive entry per token, in the planted channel.
        CHECK(mask.sum().item<int64_t>() == ids.size(0));
        CHECK(mask.select(1, m).all().item<bool>());
        const at::Tensor v = h.select(1, m);
        value_min = std::min(value_min, v.min().item<double>());
        value_max = std::max(value_max, v.max().item<double>());
        median_max_massive = std::max(median_max_massive, med);
        CHECK(med < 1.0);
        // The other channels stay ordinary.
        at::Tensor rest = h.abs().clone();
        rest.select(1, m).zero_();
        max_abs_ordinary = std::max(max_abs_ordinary, rest.max().item<double>());
        ratio_max_ordinary = std::max(ratio_max_ordinary, rest.max().item<double>() / med);
      } else {
        CHECK(mask.sum().item<int64_t>() == 0);
        const double mx = h.abs().max().item<double>();
        max_abs_ordinary = std::max(max_abs_ordinary, mx);
        ratio_max_ordinary = std::max(ratio_max_ordinary, mx / med);
        CHECK(mx < 10.0);             // far below the absolute threshold
        CHECK(mx / med < 100.0);      // far below the ratio threshold
      }
    }
    for (int64_t l = 0; l < L; ++l) jr[size_t(l)].add(jump_ratio(hs[size_t(l)], hs[size_t(l + 1)]));
  }
  CHECK(value_min > 0.99 * spec.magnitude);
  CHECK(value_max < 1.01 * spec.magnitude);
  CHECK(jr[size_t(E)].mean() > 5.0);
  CHECK(jr[size_t(E)].jr_min > 5.0);
  CHECK(jr[size_t(V)].jr_min > 0.9);
  CHECK(jr[size_t(V)].jr_max < 1.1);
  for (int64_t l = 0; l < L; ++l) {
    if (l == E || l == V) continue;
    CAPTURE(l);
    CHECK(jr[size_t(l)].jr_max < 0.5);
  }
  std::ostringstream s;
  s << "massive value in [" << value_min << ", " << value_max << "], median|h| in the phase <= " << median_max_massive
    << ", max ordinary |h| " << max_abs_ordinary << " (max/median " << ratio_max_ordinary << ")\n  JR mean/min/max per block:";
  for (int64_t l = 0; l < L; ++l)
    s << "\n    block " << l << (l == E ? " (emerge)" : l == V ? " (vanish)" : "") << ": " << jr[size_t(l)].mean() << " / "
      << jr[size_t(l)].jr_min << " / " << jr[size_t(l)].jr_max;
  return s.str();
}

}  // namespace

TEST_CASE("synthetic: planted massive activation appears at emerge_block and vanishes at vanish_block") {
  SyntheticSpec spec;  // defaults: 8 layers, d 64, channel 7, blocks 2 -> 5, magnitude 2000
  MESSAGE("default spec: " << check_planted(spec, 6, 32));
}

TEST_CASE("synthetic: other shapes, seeds and placements") {
  SyntheticSpec a;
  a.seed = 3;
  a.n_layers = 6;
  a.emerge_block = 0;
  a.vanish_block = 5;
  a.massive_channel = 63;
  a.magnitude = 500;
  MESSAGE("emerge 0, vanish 5 (last), channel 63, magnitude 500: " << check_planted(a, 4, 32));

  SyntheticSpec b;
  b.seed = 11;
  b.n_layers = 4;
  b.d_model = 128;
  b.d_ff = 320;
  b.n_heads = 8;
  b.n_kv_heads = 8;
  b.vocab_size = 300;
  b.emerge_block = 1;
  b.vanish_block = 2;
  b.massive_channel = 0;
  b.magnitude = 20000;
  MESSAGE("d 128, MHA, blocks 1 -> 2, magnitude 20000: " << check_planted(b, 4, 32));

  SyntheticSpec w;  // wide: weight scales follow 1/sqrt(fan_in), so the ordinary JR stays ~0.1
  w.seed = 2;
  w.n_layers = 3;
  w.d_model = 512;
  w.d_ff = 1408;
  w.n_heads = 8;
  w.n_kv_heads = 2;
  w.emerge_block = 0;
  w.vanish_block = 1;
  w.massive_channel = 300;
  MESSAGE("d 512, ff 1408, blocks 0 -> 1: " << check_planted(w, 2, 32));

  SyntheticSpec c;  // long sequence
  c.seed = 5;
  MESSAGE("default shape, seed 5, length 512: " << check_planted(c, 1, 512));
}

TEST_CASE("synthetic: plant=false is the same random model without massive activations") {
  SyntheticSpec spec;
  const Model planted = make_synthetic_model(spec);
  spec.plant = false;
  const Model plain = make_synthetic_model(spec);

  // Identical weights except the planted MLP units.
  const auto wp = named_weights(planted), wn = named_weights(plain);
  REQUIRE(wp.size() == wn.size());
  const std::string e = "model.layers." + std::to_string(spec.emerge_block) + ".mlp.";
  const std::string v = "model.layers." + std::to_string(spec.vanish_block) + ".mlp.";
  for (size_t i = 0; i < wp.size(); ++i) {
    CAPTURE(wp[i].first);
    REQUIRE(wp[i].first == wn[i].first);
    const std::string& name = wp[i].first;
    if (name.rfind(e, 0) == 0 && name.find("down_proj") == std::string::npos) {
      const int64_t n = 2 * spec.d_model;  // emergence units 0 .. 2d-1
      CHECK(at::equal(wp[i].second.narrow(0, n, spec.d_ff - n), wn[i].second.narrow(0, n, spec.d_ff - n)));
      CHECK_FALSE(at::equal(wp[i].second, wn[i].second));
    } else if (name.rfind(e, 0) == 0) {
      const int64_t n = 2 * spec.d_model;
      CHECK(at::equal(wp[i].second.narrow(1, n, spec.d_ff - n), wn[i].second.narrow(1, n, spec.d_ff - n)));
    } else if (name.rfind(v, 0) == 0 && name.find("down_proj") == std::string::npos) {
      CHECK(at::equal(wp[i].second.narrow(0, 0, spec.d_ff - 2), wn[i].second.narrow(0, 0, spec.d_ff - 2)));
      CHECK_FALSE(at::equal(wp[i].second, wn[i].second));
    } else if (name.rfind(v, 0) == 0) {
      CHECK(at::equal(wp[i].second.narrow(1, 0, spec.d_ff - 2), wn[i].second.narrow(1, 0, spec.d_ff - 2)));
    } else {
      CHECK(at::equal(wp[i].second, wn[i].second));
    }
  }

  double jr_max = 0, mx_max = 0;
  for (const at::Tensor& ids : token_sequences(99, 6, 32, spec.vocab_size)) {
    const std::vector<at::Tensor> hs = streams(plain, ids);
    for (size_t l = 0; l < hs.size(); ++l) {
      CAPTURE(l);
      CHECK(massive_mask(hs[l]).sum().item<int64_t>() == 0);
      mx_max = std::max(mx_max, hs[l].abs().max().item<double>());
      if (l + 1 < hs.size()) jr_max = std::max(jr_max, jump_ratio(hs[l], hs[l + 1]).max().item<double>());
    }
  }
  CHECK(mx_max < 10.0);
  CHECK(jr_max < 0.5);
  MESSAGE("plant=false: max|h| " << mx_max << ", max JR " << jr_max);
}

TEST_CASE("synthetic: logits, tokenizer, metadata, determinism") {
  SyntheticSpec spec;
  const Model model = make_synthetic_model(spec);
  const ModelConfig& c = model.config();
  CHECK(c.arch == "llama");
  CHECK(c.n_layers == 8);
  CHECK(c.head_dim == 16);
  CHECK((model.impl().device == at::kCPU));
  CHECK((model.impl().dtype == at::kFloat));
  CHECK(model.info().fingerprint.size() == 64);
  CHECK(model.info().n_params > 0);

  const std::vector<int32_t> ids32 = model.tokenizer().encode("Hello, massive world!", false);
  REQUIRE(ids32.size() == 21);
  CHECK(ids32[0] == int32_t('H'));
  CHECK(model.tokenizer().decode(ids32) == "Hello, massive world!");
  at::Tensor ids = at::empty({int64_t(ids32.size())}, at::kLong);
  for (size_t i = 0; i < ids32.size(); ++i) ids[int64_t(i)] = int64_t(ids32[i]);
  const at::Tensor logits = forward_logits(model, ids);
  CHECK((logits.sizes() == at::IntArrayRef({int64_t(ids32.size()), 256})));
  CHECK(at::isfinite(logits).all().item<bool>());
  CHECK(std::isfinite(window_nll_sum(model, ids)));

  // Same spec -> same weights; another seed -> other weights, same fingerprint (same shapes).
  const Model again = make_synthetic_model(spec);
  CHECK(at::equal(forward_logits(again, ids), logits));
  SyntheticSpec other = spec;
  other.seed = 1;
  const Model m1 = make_synthetic_model(other);
  CHECK_FALSE(at::equal(m1.impl().w.embed, model.impl().w.embed));
  CHECK(m1.info().fingerprint == model.info().fingerprint);
}

TEST_CASE("forward: a non-finite activation is reported with its block, site and token") {
  SyntheticSpec spec;
  Model model = make_synthetic_model(spec);
  at::Tensor ids = at::arange(32, at::kLong) + 40;
  REQUIRE(std::isfinite(window_nll_sum(model, ids)));
  // An infinite weight in block 5's down_proj makes every token's output non-finite there: the
  // error names block 5, the down site and the first token, not a later block or the final NaN
  // perplexity. (The loaders refuse such weights; a quantizer or a hand edit could still make one.)
  auto& L = model.impl().w.layers.at(5);
  L.w_down = L.w_down.clone();
  L.w_down[0][0] = std::numeric_limits<float>::infinity();
  std::string what;
  try {
    (void)window_nll_sum(model, ids);
  } catch (const dptq::Error& e) {
    what = e.what();
  }
  INFO(what);
  CHECK(what.find("non-finite activation") != std::string::npos);
  CHECK(what.find("block 5,") != std::string::npos);
  CHECK(what.find("site down") != std::string::npos);
  CHECK(what.find("token 0 ") != std::string::npos);
  CHECK(what.find('\n') == std::string::npos);

  // A NaN planted in one token's embedding is found at block 0's first site, at that token.
  Model m2 = make_synthetic_model(spec);
  m2.impl().w.embed[int64_t(40 + 7)][3] = std::numeric_limits<float>::quiet_NaN();
  what.clear();
  try {
    (void)forward_logits(m2, ids);
  } catch (const dptq::Error& e) {
    what = e.what();
  }
  INFO(what);
  CHECK(what.find("(NaN) in block 0, site qkv") != std::string::npos);
  CHECK(what.find("token 7 ") != std::string::npos);
}

TEST_CASE("synthetic: save as HF folder and load back") {
  const Model model = make_synthetic_model(SyntheticSpec{});
  const auto dir = test::scratch_dir("synthetic_hf") / "model";
  save_hf_folder(model, dir);
  const Model loaded = load_model(dir);
  CHECK(loaded.info().fingerprint == model.info().fingerprint);
  const at::Tensor ids = at::arange(40, 80, at::kLong);
  CHECK(at::allclose(forward_logits(loaded, ids), forward_logits(model, ids), 1e-5, 1e-5));
}

TEST_CASE("synthetic: invalid specs throw InvalidArgument") {
  auto expect_invalid = [](SyntheticSpec s, const char* what) {
    CAPTURE(what);
    try {
      (void)make_synthetic_model(s);
      FAIL("no error for " << what);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::InvalidArgument);
    }
  };
  SyntheticSpec s;
  { auto t = s; t.emerge_block = 5; expect_invalid(t, "emerge == vanish"); }
  { auto t = s; t.emerge_block = 6; expect_invalid(t, "emerge > vanish"); }
  { auto t = s; t.vanish_block = 8; expect_invalid(t, "vanish == n_layers"); }
  { auto t = s; t.emerge_block = -1; expect_invalid(t, "negative emerge"); }
  { auto t = s; t.massive_channel = 64; expect_invalid(t, "channel == d_model"); }
  { auto t = s; t.massive_channel = -1; expect_invalid(t, "negative channel"); }
  { auto t = s; t.magnitude = 0; expect_invalid(t, "zero magnitude"); }
  { auto t = s; t.magnitude = -5; expect_invalid(t, "negative magnitude"); }
  { auto t = s; t.magnitude = std::nan(""); expect_invalid(t, "NaN magnitude"); }
  { auto t = s; t.magnitude = 1e7; expect_invalid(t, "huge magnitude"); }
  { auto t = s; t.n_layers = 0; expect_invalid(t, "no layers"); }
  { auto t = s; t.d_model = 0; expect_invalid(t, "d_model 0"); }
  { auto t = s; t.n_heads = 3; expect_invalid(t, "d_model not a multiple of n_heads"); }
  { auto t = s; t.n_kv_heads = 3; expect_invalid(t, "n_heads not a multiple of n_kv_heads"); }
  { auto t = s; t.n_heads = 64; t.n_kv_heads = 1; expect_invalid(t, "odd head_dim"); }
  { auto t = s; t.vocab_size = 100; expect_invalid(t, "vocab < 256"); }
  { auto t = s; t.d_ff = 127; expect_invalid(t, "d_ff < 2 d_model with plant"); }
  { auto t = s; t.d_ff = 127; t.plant = false; CHECK_NOTHROW((void)make_synthetic_model(t)); }
}

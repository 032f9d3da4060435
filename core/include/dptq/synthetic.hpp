// dptq/synthetic.hpp — small random LLaMA models with a planted massive activation, for tests of
// the profiler (massive activations, phases, Jump Ratio; DESIGN §4). Torch-free header.
//
// Contents
//   SyntheticSpec         shape, where the massive activation appears / disappears, its size, seed
//   make_synthetic_model  SyntheticSpec -> Model (fp32, CPU)
//   byte_level_alphabet   GPT-2 byte alphabet (the synthetic model's 256 byte tokens)
//
// ---------------------------------------------------------------------------------------------
// The base model (identical for plant = true and plant = false, a function of the spec and seed)
//   arch "llama", head_dim = d_model / n_heads, rope_theta 1e4, rms_eps 1e-5, untied lm_head,
//   byte-level BPE tokenizer (pre "gpt2", 256 single-byte tokens, no merges, no BOS/EOS).
//   Embeddings: Gaussian rows rescaled to norm kSyntheticEmbedRms·sqrt(d_model) (every token's
//   h_0 has RMS exactly 0.5, so median|h_0| ≈ 0.34). RMSNorm γ uniform in [0.9, 1.1]. Linear
//   weights N(0, (g/sqrt(fan_in))²) with gain g = 0.8 for q/k (non-uniform attention), 0.28 for v/o,
//   0.4 for gate/up and lm_head, 0.396 for down (i.e. σ = 0.1, 0.035, 0.05, 0.035 at d_model 64,
//   d_ff 128), so the ordinary Jump Ratio (~0.1) does not depend on the width. Random numbers come
//   from std::mt19937_64 (one stream per tensor) and a Box–Muller transform in double, not from
//   LibTorch's generator, so the weights do not change with the LibTorch version.
//
// The planted mechanism (plant = true; E = emerge_block, V = vanish_block, m = massive_channel,
// M = magnitude, d = d_model). It relies on the exact identity silu(z) − silu(−z) = z, so that a
// pair of SwiGLU units with gate ±g and up ±u computes the bilinear form (g·y)(u·y) exactly.
//   Emergence: MLP units 0 .. 2d−1 of block E are replaced by pairs reading channel i of the
//     RMS-normalized input y = γ ⊙ a/rms(a) (gate = up = ±e_i/γ_i, so each pair yields x_i², with
//     x = a/rms(a)), and writing M/d into channel m. Their sum is M·Σx_i²/d = M·ms/(ms + eps)
//     (ms = mean square of a): the MLP adds M·(1 − ~1e-5) to channel m of EVERY token, whatever
//     the token sequence, because RMS normalization fixes ‖x‖². Requires d_ff >= 2·d_model.
//   Vanish: MLP units d_ff−2, d_ff−1 of block V form one pair with gate = up = ±e_m/γ_m, writing
//     −M/d into channel m: output −M·x_m²/d. With a = (M + c) e_m + r (c = whatever channel m held
//     before emergence plus the O(0.01) writes of the blocks in between), x_m² = d(M+c)²/((M+c)² +
//     ‖r‖² + d·eps), so channel m is left with ≈ c + ‖r‖²/M: the massive value is removed to
//     ~1e-2 and channel m goes back to an ordinary O(1) value.
//   Everything else (attention of E and V, the other MLP units) is the base model.
//
// Guarantees (any token sequence; "massive" with the DESIGN §4 thresholds |v| >= 100 and
// |v| >= 1000·median|h_l|, median over all T×d entries). Numbers measured by tests/test_synthetic.cpp
// on d_model 64..512, magnitudes 500..20000, sequences of 32 and 512 tokens:
//   - h_0 .. h_E and h_{V+1} .. h_{n_layers}: no massive entry; max|h| ≈ 2.1–2.4 (< 10), max|h| /
//     median|h| < 7 (far below 1000).
//   - h_{E+1} .. h_V: exactly one massive entry per token, in channel m, value M ± 3 (M·(1−1e-5)
//     plus channel m's ordinary content); median|h| stays 0.34–0.39. The ratio test therefore
//     needs M >= ~400: magnitude >= 500 is safe, the default 2000 has a 5× margin.
//   - Jump Ratio JR_l(t) = ‖h_{l+1}(t) − h_l(t)‖₂ / ‖h_l(t)‖₂:
//       JR_E ≈ M / (0.5·sqrt(d)) ± 8% (≈ 500 for the defaults; > 5 whenever M >= 500, d <= 4096),
//       JR_V ≈ 1 (measured 0.998 .. 1.003: the stream loses all its norm but the O(1) remainder),
//       blocks inside the massive phase ≈ 0.6/M (~3e-4 for the defaults),
//       every other block < 0.5 (measured mean ≈ 0.1, max ≈ 0.21).
// With plant = false the same weights without the planted units: no massive activation anywhere
// and every JR < 0.5 (measured max 0.25).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dptq/model.hpp"

namespace dptq {

inline constexpr double kSyntheticEmbedRms = 0.5;  // RMS of every embedding row

struct SyntheticSpec {
  int64_t n_layers = 8;
  int64_t d_model = 64;
  int64_t d_ff = 128;         // >= 2 * d_model when plant (the emergence uses 2·d_model MLP units)
  int64_t n_heads = 4;
  int64_t n_kv_heads = 2;
  int64_t vocab_size = 256;   // >= 256 (the byte tokens); ids >= 256 have embeddings but no text
  int64_t max_context = 2048;
  int64_t emerge_block = 2;   // MLP of this block writes the massive value: first in h_{emerge_block+1}
  int64_t vanish_block = 5;   // MLP of this block removes it: last in h_{vanish_block}
  int64_t massive_channel = 7;
  double magnitude = 2000;    // (0, 1e5]; the guarantees above need >= 500
  bool plant = true;
  uint64_t seed = 0;
};

// Builds the model described above (fp32 weights on the CPU). Throws dptq::Error(InvalidArgument)
// for an invalid spec: non-positive sizes, n_heads not a multiple of n_kv_heads, d_model not a
// multiple of n_heads or an odd head_dim, vocab_size < 256, not 0 <= emerge_block < vanish_block
// < n_layers, massive_channel outside [0, d_model), magnitude not in (0, 1e5], or (plant only)
// d_ff < 2·d_model.
Model make_synthetic_model(const SyntheticSpec& spec);

// The GPT-2 byte-level alphabet: element i (0..255) is the UTF-8 text of the printable code point
// that stands for byte i (GPT-2's bytes_to_unicode()).
std::vector<std::string> byte_level_alphabet();

}  // namespace dptq

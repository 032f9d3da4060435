// Test-only GGUF v3 writer: builds small synthetic GGUF files (valid or deliberately broken)
// for loader and bad-input tests. Not part of the product.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "dptq/synthetic.hpp"

namespace dptq::test {

struct GgufBuilder {
  using Str = std::string;
  using StrArray = std::vector<std::string>;
  using IntArray = std::vector<int32_t>;
  struct Kv { std::string key; std::variant<uint32_t, float, bool, Str, StrArray, IntArray> value; };
  struct Tensor { std::string name; std::vector<uint64_t> dims; uint32_t type; std::vector<uint8_t> bytes; };
  std::vector<Kv> kvs;
  std::vector<Tensor> tensors;
  uint32_t version = 3;

  void kv(const std::string& k, uint32_t v) { kvs.push_back({k, v}); }
  void kv(const std::string& k, float v) { kvs.push_back({k, v}); }
  void kv(const std::string& k, bool v) { kvs.push_back({k, v}); }
  void kv(const std::string& k, const char* v) { kvs.push_back({k, Str(v)}); }
  void kv(const std::string& k, StrArray v) { kvs.push_back({k, std::move(v)}); }
  void kv(const std::string& k, IntArray v) { kvs.push_back({k, std::move(v)}); }
  // F32 tensor with dims fastest-first (GGUF order).
  void f32(const std::string& name, std::vector<uint64_t> dims, const std::vector<float>& data) {
    Tensor t{name, std::move(dims), 0, std::vector<uint8_t>(data.size() * 4)};
    std::memcpy(t.bytes.data(), data.data(), t.bytes.size());
    tensors.push_back(std::move(t));
  }
  void raw(const std::string& name, std::vector<uint64_t> dims, uint32_t type, std::vector<uint8_t> bytes) {
    tensors.push_back({name, std::move(dims), type, std::move(bytes)});
  }

  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out;
    auto put = [&](const void* p, size_t n) { auto* b = static_cast<const uint8_t*>(p); out.insert(out.end(), b, b + n); };
    auto u32 = [&](uint32_t v) { put(&v, 4); };
    auto u64 = [&](uint64_t v) { put(&v, 8); };
    auto str = [&](const std::string& s) { u64(s.size()); put(s.data(), s.size()); };
    put("GGUF", 4);
    u32(version);
    u64(tensors.size());
    u64(kvs.size());
    for (auto& kv : kvs) {
      str(kv.key);
      if (auto* v = std::get_if<uint32_t>(&kv.value)) { u32(4); u32(*v); }
      else if (auto* f = std::get_if<float>(&kv.value)) { u32(6); put(f, 4); }
      else if (auto* b = std::get_if<bool>(&kv.value)) { u32(7); uint8_t x = *b; put(&x, 1); }
      else if (auto* s = std::get_if<Str>(&kv.value)) { u32(8); str(*s); }
      else if (auto* a = std::get_if<StrArray>(&kv.value)) { u32(9); u32(8); u64(a->size()); for (auto& s2 : *a) str(s2); }
      else if (auto* ia = std::get_if<IntArray>(&kv.value)) { u32(9); u32(5); u64(ia->size()); for (int32_t x : *ia) put(&x, 4); }
    }
    uint64_t offset = 0;
    for (auto& t : tensors) {
      str(t.name);
      u32(uint32_t(t.dims.size()));
      for (uint64_t d : t.dims) u64(d);
      u32(t.type);
      u64(offset);
      offset += (t.bytes.size() + 31) / 32 * 32;
    }
    while (out.size() % 32) out.push_back(0);
    for (auto& t : tensors) {
      put(t.bytes.data(), t.bytes.size());
      while (out.size() % 32) out.push_back(0);
    }
    return out;
  }
  void write(const std::filesystem::path& p, size_t truncate_to = size_t(-1)) const {
    auto b = bytes();
    if (truncate_to < b.size()) b.resize(truncate_to);
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
};

// The GPT-2 byte-level alphabet (token i is the printable stand-in of byte i) lives in core.
using dptq::byte_level_alphabet;

// A complete tiny random LLaMA (2 layers, d=32, 4 heads / 2 kv heads, ff=64, vocab 256 bytes).
inline GgufBuilder tiny_llama_gguf(uint32_t seed = 1) {
  GgufBuilder g;
  const uint32_t d = 32, ff = 64, vocab = 256, layers = 2;
  g.kv("general.architecture", "llama");
  g.kv("general.name", "tiny-test");
  g.kv("llama.block_count", layers);
  g.kv("llama.context_length", uint32_t(128));
  g.kv("llama.embedding_length", d);
  g.kv("llama.feed_forward_length", ff);
  g.kv("llama.attention.head_count", uint32_t(4));
  g.kv("llama.attention.head_count_kv", uint32_t(2));
  g.kv("llama.rope.freq_base", 10000.0f);
  g.kv("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  g.kv("tokenizer.ggml.model", "gpt2");
  g.kv("tokenizer.ggml.pre", "gpt2");
  g.kv("tokenizer.ggml.tokens", byte_level_alphabet());
  g.kv("tokenizer.ggml.merges", GgufBuilder::StrArray{});
  uint32_t state = seed;
  auto rnd = [&](size_t n, float scale) {
    std::vector<float> v(n);
    for (auto& x : v) { state = state * 1664525u + 1013904223u; x = scale * (float(state >> 8) / float(1 << 24) - 0.5f); }
    return v;
  };
  g.f32("token_embd.weight", {d, vocab}, rnd(d * vocab, 1.0f));
  g.f32("output_norm.weight", {d}, std::vector<float>(d, 1.0f));
  for (uint32_t l = 0; l < layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    g.f32(b + "attn_norm.weight", {d}, std::vector<float>(d, 1.0f));
    g.f32(b + "attn_q.weight", {d, d}, rnd(d * d, 0.3f));
    g.f32(b + "attn_k.weight", {d, d / 2}, rnd(d * d / 2, 0.3f));
    g.f32(b + "attn_v.weight", {d, d / 2}, rnd(d * d / 2, 0.3f));
    g.f32(b + "attn_output.weight", {d, d}, rnd(d * d, 0.3f));
    g.f32(b + "ffn_norm.weight", {d}, std::vector<float>(d, 1.0f));
    g.f32(b + "ffn_gate.weight", {d, ff}, rnd(d * ff, 0.3f));
    g.f32(b + "ffn_up.weight", {d, ff}, rnd(d * ff, 0.3f));
    g.f32(b + "ffn_down.weight", {ff, d}, rnd(d * ff, 0.3f));
  }
  return g;
}

}  // namespace dptq::test

// dptq/tokenizer.hpp — tokenizers whose ids equal the HuggingFace reference.
//
// Contents
//   TokenizerSpec   everything needed to build a tokenizer (filled from GGUF metadata or a HF folder)
//   Tokenizer       encode / decode interface
//   make_tokenizer  factory from a spec; load_hf_tokenizer_spec reads a HF model folder
//
// Supported: byte-level BPE (GPT-2 style byte mapping) with the pre-tokenizer regexes of GPT-2,
// LLaMA-3, Qwen2 and SmolLM2 (digits split one by one, then GPT-2), and SentencePiece models via
// libsentencepiece. Torch-free. Pre-tokenizer names, the choices that decide ids (and the one known
// gap: Qwen2's NFC normalizer is not applied) are in docs/tokenizers.md.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dptq {

struct TokenizerSpec {
  enum class Kind { Bpe, SentencePiece };
  Kind kind = Kind::Bpe;
  // Pre-tokenizer name as in GGUF `tokenizer.ggml.pre` ("gpt2", "smollm", "llama-bpe", "qwen2", ...).
  std::string pre = "gpt2";
  std::vector<std::string> tokens;      // id -> token string (byte-level alphabet for BPE)
  std::vector<int32_t> token_types;     // GGUF token types (1 normal, 3 control, 4 user-defined, 6 byte); may be empty
  std::vector<std::string> merges;      // "a b" merge rules in priority order (BPE only)
  std::string spm_model;                // serialized SentencePiece ModelProto (SentencePiece only)
  // SentencePiece from GGUF (no ModelProto stored there): when spm_model is empty the model is
  // rebuilt from tokens, token_types and these two (tokenizer.ggml.scores,
  // tokenizer.ggml.add_space_prefix) as a BPE model with the identity normalizer, like LLaMA-2's.
  std::vector<float> scores;
  bool add_space_prefix = true;
  int32_t bos_id = -1, eos_id = -1, unk_id = -1;
  bool add_bos = false;                 // prepend BOS when encoding a document
  std::string source;                   // file the spec came from (for error messages)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`. Special tokens written literally in the text (e.g. "<|im_start|>") are
  // matched as in HF tokenizers. BOS is prepended when add_bos() and `with_bos`.
  virtual std::vector<int32_t> encode(std::string_view text, bool with_bos = true) const = 0;
  // Inverse of encode for ordinary text: decode(encode(x, false)) == x.
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  // Human-readable text of one token (for tooltips and reports).
  virtual std::string token_text(int32_t id) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual bool add_bos() const = 0;
};

// Offset of the first byte of `s` that does not start a valid UTF-8 sequence, or npos.
size_t first_invalid_utf8(std::string_view s);

// Throws dptq::Error (Unsupported for an unknown `pre` or kind, Format for inconsistent specs).
std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerSpec& spec);

// Reads tokenizer.json (BPE) or tokenizer.model (SentencePiece) plus tokenizer_config.json from a
// HF model folder into a spec.
TokenizerSpec load_hf_tokenizer_spec(const std::filesystem::path& folder);

}  // namespace dptq

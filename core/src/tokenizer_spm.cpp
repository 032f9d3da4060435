// SentencePiece tokenizer (LLaMA-2 / Mistral tokenizer.model) via libsentencepiece, and
// load_hf_tokenizer_spec: a HuggingFace model folder (tokenizer.json / tokenizer.model +
// tokenizer_config.json) turned into a TokenizerSpec.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "dptq/atomic_file.hpp"
#include "dptq/error.hpp"
#include "dptq/tokenizer.hpp"

namespace dptq {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int32_t kTypeNormal = 1, kTypeUnknown = 2, kTypeControl = 3, kTypeUserDefined = 4,
                  kTypeUnused = 5, kTypeByte = 6;

// ---------------------------------------------------------------------------------------------
// SentencePiece ModelProto from GGUF-style pieces. GGUF stores the pieces, scores and types but not
// the proto, so we serialize one by hand (no protobuf dependency; field numbers from
// sentencepiece_model.proto):
//   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece   1 piece (string), 2 score (float), 3 type (enum, same numbers as GGUF)
//   TrainerSpec     3 model_type (2 = BPE), 35 byte_fallback
//   NormalizerSpec  1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces, 5 escape_whitespaces

class ProtoWriter {
 public:
  void varint_field(uint32_t field, uint64_t value) {
    varint(uint64_t{field} << 3);  // wire type 0
    varint(value);
  }
  void float_field(uint32_t field, float value) {
    varint((uint64_t{field} << 3) | 5);  // wire type 5: 32-bit little endian
    uint32_t bits;
    std::memcpy(&bits, &value, 4);
    for (int k = 0; k < 4; ++k) out_ += static_cast<char>((bits >> (8 * k)) & 0xFF);
  }
  void bytes_field(uint32_t field, std::string_view bytes) {
    varint((uint64_t{field} << 3) | 2);  // wire type 2: length-delimited
    varint(bytes.size());
    out_.append(bytes);
  }
  const std::string& str() const { return out_; }

 private:
  void varint(uint64_t v) {
    do {
      out_ += static_cast<char>((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
      v >>= 7;
    } while (v);
  }
  std::string out_;
};

std::string model_proto_from_pieces(const TokenizerSpec& spec) {
  const size_t n = spec.tokens.size();
  if (n == 0)
    throw Error(ErrorKind::Format, spec.source,
                "SentencePiece tokenizer without a model or tokens");
  if (spec.scores.size() != n)
    throw Error(ErrorKind::Format, spec.source,
                "SentencePiece needs one score per token (tokenizer.ggml.scores): " +
                    std::to_string(spec.scores.size()) + " scores for " + std::to_string(n) +
                    " tokens");
  if (!spec.token_types.empty() && spec.token_types.size() != n)
    throw Error(ErrorKind::Format, spec.source, "token_type and tokens differ in length");
  ProtoWriter model;
  bool has_bytes = false;
  for (size_t id = 0; id < n; ++id) {
    const int32_t type = spec.token_types.empty() ? kTypeNormal : spec.token_types[id];
    if (type < kTypeNormal || type > kTypeByte)
      throw Error(ErrorKind::Format, spec.source,
                  "token " + std::to_string(id) + " has unknown type " + std::to_string(type));
    has_bytes |= type == kTypeByte;
    ProtoWriter piece;
    piece.bytes_field(1, spec.tokens[id]);
    piece.float_field(2, spec.scores[id]);
    piece.varint_field(3, static_cast<uint64_t>(type));
    model.bytes_field(1, piece.str());
  }
  ProtoWriter trainer;
  trainer.varint_field(3, 2);  // BPE: LLaMA-2 / Mistral; merges follow the scores
  trainer.varint_field(35, has_bytes ? 1 : 0);
  model.bytes_field(2, trainer.str());
  ProtoWriter normalizer;
  normalizer.bytes_field(1, "identity");
  normalizer.varint_field(3, spec.add_space_prefix ? 1 : 0);
  normalizer.varint_field(4, 0);  // the proto default (true) would squeeze runs of spaces
  normalizer.varint_field(5, 1);
  model.bytes_field(3, normalizer.str());
  return model.str();
}

// ---------------------------------------------------------------------------------------------
// SentencePiece

void load_processor(sentencepiece::SentencePieceProcessor& sp, const std::string& proto,
                    const std::string& source) {
  // SentencePiece reports most problems in its status, but its double-array trie (darts_clone)
  // throws on some malformed pieces (an empty key: found by fuzz_spm_model).
  sentencepiece::util::Status status;
  try {
    status = sp.LoadFromSerializedProto(proto);
  } catch (const std::exception& e) {
    throw Error(ErrorKind::Format, source, std::string("cannot load the SentencePiece model: ") + e.what());
  }
  if (!status.ok())
    throw Error(ErrorKind::Format, source, "cannot load the SentencePiece model: " + status.ToString());
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const TokenizerSpec& spec) : source_(spec.source) {
    const std::string proto =
        spec.spm_model.empty() ? model_proto_from_pieces(spec) : spec.spm_model;
    load_processor(sp_, proto, source_);
    // The same model with NormalizerSpec.add_dummy_prefix = false, for text that follows a special
    // token: HF (transformers 5, Metaspace prepend_scheme "first", i.e. legacy=false) prepends "▁"
    // only at the start of the text, not after "<s>" in the middle of it. Protobuf merges a
    // repeated embedded message field into the earlier one, so appending
    // `normalizer_spec (field 3) { add_dummy_prefix (field 3) = false }` overrides just that flag.
    static constexpr char kNoDummyPrefix[] = {0x1A, 0x02, 0x18, 0x00};
    load_processor(sp_no_prefix_, proto + std::string(kNoDummyPrefix, sizeof kNoDummyPrefix),
                   source_);

    bos_id_ = spec.bos_id >= 0 ? spec.bos_id : sp_.bos_id();
    eos_id_ = spec.eos_id >= 0 ? spec.eos_id : sp_.eos_id();
    add_bos_ = spec.add_bos;
    const int32_t size = sp_.GetPieceSize();
    if (bos_id_ >= size || eos_id_ >= size)
      throw Error(ErrorKind::Format, source_, "BOS/EOS id outside the SentencePiece vocabulary");
    if (add_bos_ && bos_id_ < 0)
      throw Error(ErrorKind::Format, source_, "add_bos is set but the model has no BOS piece");
    // Control pieces (<s>, </s>) and <unk> written in the text are matched whole, like HF's added
    // special tokens; SentencePiece itself would spell them out character by character.
    // User-defined pieces need nothing here: SentencePiece matches those itself.
    for (int32_t id = 0; id < size; ++id)
      if (sp_.IsControl(id) || sp_.IsUnknown(id)) specials_.push_back({sp_.IdToPiece(id), id});
  }

  std::vector<int32_t> encode(std::string_view text, bool with_bos) const override {
    std::vector<int32_t> ids;
    if (with_bos && add_bos_) ids.push_back(bos_id_);
    std::vector<int> piece_ids;
    size_t pos = 0;
    const auto encode_text = [&](std::string_view segment) {
      if (segment.empty()) return;
      const auto& sp = pos == 0 ? sp_ : sp_no_prefix_;
      if (const auto status = sp.Encode(segment, &piece_ids); !status.ok())
        throw Error(ErrorKind::InvalidArgument, source_,
                    "SentencePiece encode failed: " + status.ToString());
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    };
    while (pos < text.size()) {
      // Leftmost, then longest, special token.
      size_t best_at = std::string_view::npos;
      const Special* best = nullptr;
      for (const Special& s : specials_) {
        const size_t at = text.find(s.text, pos);
        if (at == std::string_view::npos) continue;
        if (at < best_at || (at == best_at && s.text.size() > best->text.size())) {
          best_at = at;
          best = &s;
        }
      }
      if (!best) break;
      encode_text(text.substr(pos, best_at - pos));
      ids.push_back(best->id);
      pos = best_at + best->text.size();
    }
    encode_text(text.substr(pos));
    return ids;
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::string out;
    std::vector<int> run;
    size_t run_start = 0;
    const auto flush = [&] {
      if (run.empty()) return;
      // Only a run at the very start carries the dummy-prefix "▁" to drop: encode() adds it there
      // and nowhere else. After a BOS the space is kept ("<s> hi"), which keeps
      // decode(encode(x, false)) == x also for texts that start with a literal "<s>".
      const auto& sp = run_start == 0 ? sp_ : sp_no_prefix_;
      std::string piece;
      if (const auto status = sp.Decode(run, &piece); !status.ok())
        throw Error(ErrorKind::InvalidArgument, source_,
                    "SentencePiece decode failed: " + status.ToString());
      out += piece;
      run.clear();
    };
    for (size_t i = 0; i < ids.size(); ++i) {
      check_id(ids[i]);
      if (sp_.IsControl(ids[i]) || sp_.IsUnknown(ids[i])) {
        flush();
        out += sp_.IdToPiece(ids[i]);
        continue;
      }
      if (run.empty()) run_start = i;
      run.push_back(ids[i]);
    }
    flush();
    return out;
  }

  std::string token_text(int32_t id) const override {
    check_id(id);
    std::string piece = sp_.IdToPiece(id);
    // "▁" (U+2581) is SentencePiece's visible space.
    for (size_t at; (at = piece.find("\xE2\x96\x81")) != std::string::npos;)
      piece.replace(at, 3, " ");
    return piece;
  }

  int32_t vocab_size() const override { return sp_.GetPieceSize(); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  bool add_bos() const override { return add_bos_; }

 private:
  void check_id(int32_t id) const {
    if (id < 0 || id >= sp_.GetPieceSize())
      throw Error(ErrorKind::InvalidArgument, source_,
                  "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                      std::to_string(sp_.GetPieceSize()) + ")");
  }

  struct Special {
    std::string text;
    int32_t id;
  };
  std::string source_;
  sentencepiece::SentencePieceProcessor sp_, sp_no_prefix_;
  std::vector<Special> specials_;
  int32_t bos_id_ = -1, eos_id_ = -1;
  bool add_bos_ = false;
};

// ---------------------------------------------------------------------------------------------
// HF folder


json read_json(const fs::path& path) {
  const std::string text = read_file_bytes(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(ErrorKind::Format, path.string(), std::string("invalid JSON: ") + e.what());
  }
}

std::string abbreviated(const json& j) {
  std::string s = j.dump();
  return s.size() > 160 ? s.substr(0, 157) + "..." : s;
}

bool flag(const json& obj, const char* key, bool fallback) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? fallback : it->get<bool>();
}

// HF's Split regexes (as stored in tokenizer.json) that we implement, by pre-tokenizer name.
const std::vector<std::pair<std::string, std::string>>& known_split_regexes() {
  static const std::vector<std::pair<std::string, std::string>> known = {
      {R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", "gpt2"},
      {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       "llama-bpe"},
      {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       "qwen2"},
  };
  return known;
}

bool is_type(const json& j, const char* type) {
  return j.is_object() && j.value("type", std::string()) == type;
}

// ByteLevel(add_prefix_space=false) with the given use_regex.
bool is_plain_byte_level(const json& j, bool use_regex) {
  return is_type(j, "ByteLevel") && !flag(j, "add_prefix_space", true) &&
         flag(j, "use_regex", true) == use_regex;
}

// Maps tokenizer.json's pre_tokenizer to our `pre` name; empty when it is not one we implement.
std::string pre_name_of(const json& pre) {
  if (is_plain_byte_level(pre, true)) return "gpt2";
  if (!is_type(pre, "Sequence")) return {};
  const json& steps = pre.value("pretokenizers", json::array());
  if (steps.size() != 2) return {};
  // SmolLM / SmolLM2 / StarCoder: every digit on its own, then the GPT-2 regex.
  if (is_type(steps[0], "Digits") && flag(steps[0], "individual_digits", false) &&
      is_plain_byte_level(steps[1], true))
    return "smollm";
  if (is_type(steps[0], "Split") && is_plain_byte_level(steps[1], false) &&
      steps[0].value("behavior", std::string()) == "Isolated" && !flag(steps[0], "invert", false)) {
    const json& pattern = steps[0].value("pattern", json::object());
    const std::string regex = pattern.value("Regex", std::string());
    for (const auto& [known, name] : known_split_regexes())
      if (regex == known) return name;
  }
  return {};
}

// The id a TemplateProcessing post-processor puts in front of a single sequence, if any.
std::optional<std::string> template_prefix_token(const json& post) {
  if (is_type(post, "Sequence")) {
    for (const json& p : post.value("processors", json::array()))
      if (auto token = template_prefix_token(p)) return token;
    return std::nullopt;
  }
  if (!is_type(post, "TemplateProcessing")) return std::nullopt;
  const json& single = post.value("single", json::array());
  if (single.empty() || !single[0].contains("SpecialToken")) return std::nullopt;
  return single[0]["SpecialToken"].value("id", std::string());
}

// Token name from tokenizer_config.json: a string, {"content": ...}, or null.
std::optional<std::string> config_token(const json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

bool is_byte_level_bpe(const json& tokenizer) {
  const json& model = tokenizer.value("model", json::object());
  return model.value("type", std::string()) == "BPE" &&
         (pre_name_of(tokenizer.value("pre_tokenizer", json())) != "" ||
          is_type(tokenizer.value("decoder", json()), "ByteLevel"));
}

TokenizerSpec bpe_spec_from_tokenizer_json(const json& tok, const fs::path& path) {
  const std::string source = path.string();
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::Bpe;
  spec.source = source;

  const json& pre = tok.value("pre_tokenizer", json());
  spec.pre = pre_name_of(pre);
  if (spec.pre.empty())
    throw Error(ErrorKind::Unsupported, source,
                "pre_tokenizer not supported (byte-level BPE with the GPT-2, SmolLM, LLaMA-3 or "
                "Qwen2 split is): " +
                    abbreviated(pre));
  const json& normalizer = tok.value("normalizer", json());
  // Qwen2 declares NFC. It is not applied (as in llama.cpp): it changes nothing for text that is
  // already NFC, which is nearly all text in practice.
  if (!normalizer.is_null() && !is_type(normalizer, "NFC"))
    throw Error(ErrorKind::Unsupported, source,
                "normalizer not supported: " + abbreviated(normalizer));

  const json& model = tok.at("model");
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(affix);
    if (it != model.end() && it->is_string() && !it->get<std::string>().empty())
      throw Error(ErrorKind::Unsupported, source,
                  std::string("BPE ") + affix + " is not supported");
  }
  if (const auto it = model.find("dropout");
      it != model.end() && it->is_number() && it->get<double>() > 0)
    throw Error(ErrorKind::Unsupported, source, "BPE dropout is not supported");
  // ignore_merges follows the pre-tokenizer (llama.cpp's convention, which GGUF relies on).
  const bool wants_ignore_merges = flag(model, "ignore_merges", false);
  if (wants_ignore_merges != (spec.pre == "llama-bpe"))
    throw Error(ErrorKind::Unsupported, source,
                std::string("BPE ignore_merges=") + (wants_ignore_merges ? "true" : "false") +
                    " together with the '" + spec.pre + "' pre-tokenizer is not supported");

  // Vocabulary: model.vocab plus added_tokens, together covering ids 0..N-1.
  std::vector<std::optional<std::string>> tokens;
  std::vector<int32_t> types;
  const auto put = [&](int64_t id, const std::string& text, int32_t type) {
    if (id < 0 || id > 10'000'000)
      throw Error(ErrorKind::Format, source, "token id " + std::to_string(id) + " out of range");
    if (static_cast<size_t>(id) >= tokens.size()) {
      tokens.resize(id + 1);
      types.resize(id + 1, kTypeNormal);
    }
    tokens[id] = text;
    types[id] = type;
  };
  // An id must be a JSON integer: nlohmann converts a float such as 8.9e50 with a plain cast,
  // undefined behaviour out of range (found by fuzz_tokenizer_json).
  const auto id_of = [&](const json& id) -> int64_t {
    if (!id.is_number_integer()) throw Error(ErrorKind::Format, source, "token id " + abbreviated(id) + " is not an integer");
    return id.get<int64_t>();
  };
  const json& vocab = model.at("vocab");
  if (!vocab.is_object()) throw Error(ErrorKind::Format, source, "model.vocab is not an object");
  for (const auto& [text, id] : vocab.items()) put(id_of(id), text, kTypeNormal);
  for (const json& added : tok.value("added_tokens", json::array()))
    put(id_of(added.at("id")), added.at("content").get<std::string>(),
        flag(added, "special", false) ? kTypeControl : kTypeUserDefined);
  spec.tokens.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (!tokens[id])
      throw Error(ErrorKind::Format, source, "no token has id " + std::to_string(id));
    spec.tokens.push_back(std::move(*tokens[id]));
  }
  spec.token_types = std::move(types);

  // Merges: "a b" strings (older files) or ["a", "b"] pairs (tokenizers >= 0.20).
  for (const json& merge : model.value("merges", json::array())) {
    if (merge.is_string()) {
      spec.merges.push_back(merge.get<std::string>());
    } else if (merge.is_array() && merge.size() == 2) {
      const auto left = merge[0].get<std::string>(), right = merge[1].get<std::string>();
      if (left.find(' ') != std::string::npos || right.find(' ') != std::string::npos)
        throw Error(ErrorKind::Unsupported, source,
                    "merge with a space inside a token: " + merge.dump());
      spec.merges.push_back(left + " " + right);
    } else {
      throw Error(ErrorKind::Format, source,
                  "merge is neither \"a b\" nor [\"a\", \"b\"]: " + merge.dump());
    }
  }

  if (const auto bos = template_prefix_token(tok.value("post_processor", json()))) {
    const auto it = std::find(spec.tokens.begin(), spec.tokens.end(), *bos);
    if (it == spec.tokens.end())
      throw Error(ErrorKind::Format, source, "post_processor adds unknown token '" + *bos + "'");
    spec.bos_id = static_cast<int32_t>(it - spec.tokens.begin());
    spec.add_bos = true;
  }
  if (const auto unk = model.find("unk_token"); unk != model.end() && unk->is_string()) {
    const auto it = std::find(spec.tokens.begin(), spec.tokens.end(), unk->get<std::string>());
    if (it != spec.tokens.end()) spec.unk_id = static_cast<int32_t>(it - spec.tokens.begin());
  }
  return spec;
}

TokenizerSpec spm_spec_from_model(const fs::path& path) {
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::SentencePiece;
  spec.source = path.string();
  spec.spm_model = read_file_bytes(path);
  sentencepiece::SentencePieceProcessor sp;
  load_processor(sp, spec.spm_model, spec.source);
  const int32_t size = sp.GetPieceSize();
  spec.tokens.reserve(size);
  spec.token_types.reserve(size);
  for (int32_t id = 0; id < size; ++id) {
    spec.tokens.push_back(sp.IdToPiece(id));
    spec.token_types.push_back(sp.IsUnknown(id)   ? kTypeUnknown
                               : sp.IsControl(id) ? kTypeControl
                               : sp.IsUnused(id)  ? kTypeUnused
                               : sp.IsByte(id)    ? kTypeByte
                                                  : kTypeNormal);
  }
  spec.bos_id = sp.bos_id();
  spec.eos_id = sp.eos_id();
  spec.unk_id = sp.unk_id();
  spec.add_bos = spec.bos_id >= 0;  // LlamaTokenizer's default; tokenizer_config.json may override
  return spec;
}

// Applies tokenizer_config.json: add_bos_token, bos_token, eos_token.
void apply_tokenizer_config(TokenizerSpec& spec, const fs::path& path) {
  const json config = read_json(path);
  if (!config.is_object()) throw Error(ErrorKind::Format, path.string(), "not a JSON object");
  const auto id_of = [&](const std::string& text) {
    const auto it = std::find(spec.tokens.begin(), spec.tokens.end(), text);
    if (it == spec.tokens.end())
      throw Error(ErrorKind::Format, path.string(),
                  "token '" + text + "' is not in the vocabulary");
    return static_cast<int32_t>(it - spec.tokens.begin());
  };
  if (const auto bos = config_token(config, "bos_token")) spec.bos_id = id_of(*bos);
  if (const auto eos = config_token(config, "eos_token")) spec.eos_id = id_of(*eos);
  if (const auto it = config.find("add_bos_token"); it != config.end() && it->is_boolean())
    spec.add_bos = it->get<bool>();
  if (spec.add_bos && spec.bos_id < 0)
    throw Error(ErrorKind::Format, path.string(),
                "add_bos_token is true but there is no BOS token");
}

}  // namespace

namespace detail {
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const TokenizerSpec& spec) {
  return std::make_unique<SentencePieceTokenizer>(spec);
}
}  // namespace detail

TokenizerSpec load_hf_tokenizer_spec(const fs::path& folder) {
  if (!fs::is_directory(folder)) throw Error(ErrorKind::Io, folder.string(), "not a directory");
  const fs::path json_path = folder / "tokenizer.json", model_path = folder / "tokenizer.model",
                 config_path = folder / "tokenizer_config.json";
  TokenizerSpec spec;
  // tokenizer.json decides when it is byte-level BPE. SentencePiece models (LLaMA-2, Mistral) also
  // ship a tokenizer.json (Metaspace BPE with byte fallback); for those the original
  // tokenizer.model is used instead.
  if (fs::exists(json_path)) {
    const json tok = read_json(json_path);
    try {
      if (is_byte_level_bpe(tok)) {
        spec = bpe_spec_from_tokenizer_json(tok, json_path);
      } else if (fs::exists(model_path)) {
        spec = spm_spec_from_model(model_path);
      } else {
        throw Error(ErrorKind::Unsupported, json_path.string(),
                    "not a byte-level BPE tokenizer and there is no tokenizer.model (model: " +
                        abbreviated(tok.value("model", json::object()).value("type", json())) +
                        ")");
      }
    } catch (const json::exception& e) {
      throw Error(ErrorKind::Format, json_path.string(),
                  std::string("unexpected content: ") + e.what());
    }
  } else if (fs::exists(model_path)) {
    spec = spm_spec_from_model(model_path);
  } else {
    throw Error(ErrorKind::Io, folder.string(), "no tokenizer.json or tokenizer.model");
  }
  if (fs::exists(config_path)) {
    try {
      apply_tokenizer_config(spec, config_path);
    } catch (const json::exception& e) {
      throw Error(ErrorKind::Format, config_path.string(),
                  std::string("unexpected content: ") + e.what());
    }
  }
  return spec;
}

}  // namespace dptq

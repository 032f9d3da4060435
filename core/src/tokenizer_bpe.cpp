// Byte-level BPE tokenizer (GPT-2 family: GPT-2, SmolLM/SmolLM2, LLaMA-3, Qwen2) and the
// make_tokenizer factory.
//
// Pipeline of encode(), mirroring HF `tokenizers` step by step so the ids are identical:
//   1. special tokens (GGUF token types 3 control / 4 user-defined) written literally in the text
//      are cut out first, leftmost-longest, like HF's AddedVocabulary;
//   2. every remaining segment runs through the pre-tokenizer: a chain of PCRE2 regexes, each
//      splitting the pieces of the previous one into matches and the gaps between them
//      (HF Split(behavior=isolated); ByteLevel(use_regex=true) is the GPT-2 regex as one stage);
//   3. each piece is mapped to the GPT-2 byte alphabet and merged by BPE rank (lowest rank first,
//      leftmost first on ties, like HF's priority queue), with a cache keyed by the piece bytes.
// Decoding concatenates the raw bytes of each token (the byte alphabet mapped back; special tokens
// literally).
// 8-bit code units: the text is UTF-8 (the build may already define it).
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "dptq/error.hpp"
#include "dptq/tokenizer.hpp"

namespace dptq {
namespace detail {
// Defined in tokenizer_spm.cpp.
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const TokenizerSpec& spec);
}  // namespace detail

namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), or 0 when it is malformed.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  return n;
}


// Decodes one code point of valid UTF-8 at s[i], advancing i.
char32_t next_codepoint(std::string_view s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  if (i + n > s.size()) n = s.size() - i;  // tolerate a truncated tail: callers only read tokens
  char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

// Bytes that are not valid UTF-8 shown as <0xNN>, so a token that holds part of a character stays
// readable in tooltips.
std::string printable_utf8(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);
    if (n == 0) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      const auto c = static_cast<unsigned char>(s[i]);
      out += "<0x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      out += '>';
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte alphabet: every byte gets a printable code point so BPE vocabularies can be stored
// as text. Printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in byte order
// (GPT-2's bytes_to_unicode()).

struct ByteAlphabet {
  std::array<std::string, 256> byte_to_text;         // UTF-8 of the code point standing for a byte
  std::unordered_map<char32_t, uint8_t> cp_to_byte;  // inverse

  ByteAlphabet() {
    char32_t next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const char32_t cp = printable ? static_cast<char32_t>(b) : next_extra++;
      append_utf8(byte_to_text[b], cp);
      cp_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer regexes.
//
// HF tokenizers runs these with Oniguruma, where \s is Unicode White_Space (it includes U+0085
// NEL); PCRE2 with UCP leaves NEL out. The whitespace class is therefore spelled out.
#define DPTQ_WS R"(\t-\r\x{20}\x{85}\p{Z})"

// GPT-2 (HF ByteLevel(use_regex=true)). The final \s+ takes single whitespace characters right
// before a non-space that no other branch matches (the "\n" in "a\nb"); unmatched gaps would
// become pieces anyway, it is kept to stay literally HF's pattern.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" DPTQ_WS R"(\p{L}\p{N}]+)"
    R"(|[)" DPTQ_WS R"(]+(?![^)" DPTQ_WS R"(])|[)" DPTQ_WS R"(]+)";

// LLaMA-3 (tiktoken cl100k style): numbers in groups of up to three digits.
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
    R"(| ?[^)" DPTQ_WS R"(\p{L}\p{N}]+[\r\n]*|[)" DPTQ_WS R"(]*[\r\n]+)"
    R"(|[)" DPTQ_WS R"(]+(?![^)" DPTQ_WS R"(])|[)" DPTQ_WS R"(]+)";

// Qwen2: LLaMA-3's pattern with single digits.
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})"
    R"(| ?[^)" DPTQ_WS R"(\p{L}\p{N}]+[\r\n]*|[)" DPTQ_WS R"(]*[\r\n]+)"
    R"(|[)" DPTQ_WS R"(]+(?![^)" DPTQ_WS R"(])|[)" DPTQ_WS R"(]+)";

// HF Digits(individual_digits=true): every character Rust's char::is_numeric accepts
// (categories Nd, Nl, No = \p{N}) becomes a piece of its own. A space in front of a digit is thus
// left behind in the preceding piece, where the GPT-2 regex makes it a whitespace token: " 42"
// gives "Ġ", "4", "2", never "Ġ4".
constexpr const char* kEachDigitPattern = R"(\p{N})";

#undef DPTQ_WS

struct PreTokenizerDef {
  std::vector<const char*> names;  // GGUF tokenizer.ggml.pre spellings
  std::vector<const char*> stages;
  // LLaMA-3's tokenizer.json sets BPE ignore_merges: a piece that is itself a vocabulary entry is
  // emitted whole, even if the merges would split it. llama.cpp ties this to the llama-bpe type.
  bool ignore_merges = false;
};

const std::vector<PreTokenizerDef>& pre_tokenizer_defs() {
  static const std::vector<PreTokenizerDef> defs = {
      {{"gpt2", "gpt-2"}, {kGpt2Pattern}, false},
      {{"smollm"}, {kEachDigitPattern, kGpt2Pattern}, false},
      {{"llama-bpe", "llama3", "llama-v3"}, {kLlama3Pattern}, true},
      {{"qwen2"}, {kQwen2Pattern}, false},
  };
  return defs;
}

std::string supported_pre_names() {
  std::string out;
  for (const auto& def : pre_tokenizer_defs())
    for (const char* name : def.names) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

// Scratch space PCRE2 needs per match call; one per thread so encode() stays const and reentrant.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  // The default 32 KiB JIT stack is ample for these patterns, but a larger one costs nothing
  // until used and keeps pathological inputs (megabytes of punctuation) from failing.
  pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, jit_stack); }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_data_free(data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

MatchScratch& match_scratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

class Regex {
 public:
  Regex(const char* pattern, const std::string& source) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(code, message, sizeof message);
      throw Error(ErrorKind::Unsupported, source,
                  "pre-tokenizer regex does not compile at offset " + std::to_string(offset) +
                      ": " + reinterpret_cast<const char*>(message));
    }
    // JIT is an optimisation only: without it (PCRE2 built without JIT) matching still works.
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Finds the first match in `subject` at or after `from`. The subject is one piece on its own:
  // lookaheads such as \s+(?!\S) see its end, not the text after it, exactly as HF splits.
  bool find(std::string_view subject, size_t from, size_t& begin, size_t& end) const {
    MatchScratch& scratch = match_scratch();
    // Text was validated once in encode(); skipping PCRE2's check keeps matching linear.
    const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(),
                               from, PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      throw Error(
          ErrorKind::InvalidArgument, "",
          std::string("pre-tokenizer regex failed: ") + reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
    begin = ovector[0];
    end = ovector[1];
    return true;
  }

  bool jit() const { return jit_; }

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

class PreTokenizer {
 public:
  PreTokenizer(const PreTokenizerDef& def, const std::string& source) {
    for (const char* pattern : def.stages)
      stages_.push_back(std::make_unique<Regex>(pattern, source));
  }

  // Calls emit(piece) for each piece of `text`, in order; the pieces concatenate to `text`.
  template <class Emit>
  void split(std::string_view text, Emit&& emit) const {
    split_stage(0, text, emit);
  }

 private:
  template <class Emit>
  void split_stage(size_t stage, std::string_view text, Emit& emit) const {
    if (text.empty()) return;
    if (stage == stages_.size()) {
      emit(text);
      return;
    }
    const Regex& regex = *stages_[stage];
    size_t pos = 0;
    size_t begin = 0, end = 0;
    while (pos < text.size() && regex.find(text, pos, begin, end)) {
      // None of our patterns can match empty; should one ever do, take one character as the
      // piece so the loop always advances.
      if (end == begin) {
        if (begin >= text.size()) break;
        end = begin + std::max<size_t>(1, utf8_sequence_length(text, begin));
      }
      if (begin > pos) split_stage(stage + 1, text.substr(pos, begin - pos), emit);  // gap
      split_stage(stage + 1, text.substr(begin, end - begin), emit);
      pos = end;
    }
    if (pos < text.size()) split_stage(stage + 1, text.substr(pos), emit);
  }

  std::vector<std::unique_ptr<Regex>> stages_;
};

// ---------------------------------------------------------------------------------------------
// Special tokens: literal strings matched in the raw text before pre-tokenization.

class SpecialTokenMatcher {
 public:
  void add(std::string text, int32_t id) {
    if (text.empty()) return;
    const auto first = static_cast<unsigned char>(text[0]);
    by_first_byte_[first].push_back({std::move(text), id});
  }
  void finish() {
    // Longest first, so the first candidate that matches is the longest at that position.
    for (auto& list : by_first_byte_)
      std::stable_sort(list.begin(), list.end(), [](const Entry& a, const Entry& b) {
        return a.text.size() > b.text.size();
      });
  }
  bool empty() const {
    return std::all_of(by_first_byte_.begin(), by_first_byte_.end(),
                       [](const auto& list) { return list.empty(); });
  }

  // Splits `text` into ordinary segments and special tokens: on_text(segment) / on_special(id).
  // Leftmost-longest, like the Aho-Corasick automaton of HF's AddedVocabulary.
  template <class OnText, class OnSpecial>
  void split(std::string_view text, OnText&& on_text, OnSpecial&& on_special) const {
    size_t segment_start = 0;
    for (size_t i = 0; i < text.size();) {
      const auto& candidates = by_first_byte_[static_cast<unsigned char>(text[i])];
      const Entry* hit = nullptr;
      for (const Entry& e : candidates) {
        if (text.compare(i, e.text.size(), e.text) == 0) {
          hit = &e;
          break;
        }
      }
      if (!hit) {
        ++i;
        continue;
      }
      if (i > segment_start) on_text(text.substr(segment_start, i - segment_start));
      on_special(hit->id);
      i += hit->text.size();
      segment_start = i;
    }
    if (segment_start < text.size()) on_text(text.substr(segment_start));
  }

 private:
  struct Entry {
    std::string text;
    int32_t id;
  };
  std::array<std::vector<Entry>, 256> by_first_byte_;
};

// ---------------------------------------------------------------------------------------------
// The tokenizer.

constexpr int32_t kTypeControl = 3;
constexpr int32_t kTypeUserDefined = 4;

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(const TokenizerSpec& spec)
      : source_(spec.source), bos_id_(spec.bos_id), eos_id_(spec.eos_id), add_bos_(spec.add_bos) {
    const auto vocab = static_cast<int32_t>(spec.tokens.size());
    if (vocab == 0) throw Error(ErrorKind::Format, source_, "BPE tokenizer has no tokens");
    if (!spec.token_types.empty() && spec.token_types.size() != spec.tokens.size())
      throw Error(ErrorKind::Format, source_,
                  "token_type has " + std::to_string(spec.token_types.size()) +
                      " entries but there are " + std::to_string(vocab) + " tokens");
    for (const auto& [id, what] :
         {std::pair{spec.bos_id, "BOS"}, {spec.eos_id, "EOS"}, {spec.unk_id, "UNK"}}) {
      if (id >= vocab)
        throw Error(ErrorKind::Format, source_,
                    std::string(what) + " id " + std::to_string(id) + " is outside the vocabulary");
    }
    if (add_bos_ && bos_id_ < 0)
      throw Error(ErrorKind::Format, source_, "add_bos is set but the tokenizer has no BOS id");

    const PreTokenizerDef* def = nullptr;
    for (const auto& d : pre_tokenizer_defs())
      for (const char* name : d.names)
        if (spec.pre == name) def = &d;
    if (!def)
      throw Error(
          ErrorKind::Unsupported, source_,
          "unknown pre-tokenizer '" + spec.pre + "' (supported: " + supported_pre_names() + ")");
    pre_tokenizer_ = std::make_unique<PreTokenizer>(*def, source_);
    ignore_merges_ = def->ignore_merges;

    build_vocabulary(spec);
    build_merges(spec);
  }

  std::vector<int32_t> encode(std::string_view text, bool with_bos) const override {
    if (const size_t bad = first_invalid_utf8(text); bad != std::string_view::npos)
      throw Error(ErrorKind::InvalidArgument, "",
                  "text is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 2);
    if (with_bos && add_bos_) ids.push_back(bos_id_);
    const auto encode_segment = [&](std::string_view segment) {
      pre_tokenizer_->split(segment, [&](std::string_view piece) { encode_piece(piece, ids); });
    };
    specials_.split(text, encode_segment, [&](int32_t id) { ids.push_back(id); });
    return ids;
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::string out;
    for (const int32_t id : ids) {
      check_decode_id(id);
      out += raw_bytes_[id];
    }
    return out;
  }

  std::string token_text(int32_t id) const override {
    check_decode_id(id);
    return printable_utf8(raw_bytes_[id]);
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(raw_bytes_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  bool add_bos() const override { return add_bos_; }

 private:
  void check_decode_id(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= raw_bytes_.size())
      throw Error(ErrorKind::InvalidArgument, source_,
                  "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                      std::to_string(raw_bytes_.size()) + ")");
  }

  void build_vocabulary(const TokenizerSpec& spec) {
    const ByteAlphabet& alphabet = byte_alphabet();
    raw_bytes_.resize(spec.tokens.size());
    token_to_id_.reserve(spec.tokens.size());
    byte_token_.fill(-1);
    for (size_t id = 0; id < spec.tokens.size(); ++id) {
      const std::string& token = spec.tokens[id];
      const int32_t type = spec.token_types.empty() ? 1 : spec.token_types[id];
      const bool special = type == kTypeControl || type == kTypeUserDefined ||
                           (spec.token_types.empty() && (static_cast<int32_t>(id) == spec.bos_id ||
                                                         static_cast<int32_t>(id) == spec.eos_id));
      // First id wins for duplicated strings (GGUF vocabularies sometimes repeat padding tokens).
      token_to_id_.try_emplace(token, static_cast<int32_t>(id));
      if (special) {
        // Added tokens are stored as their literal text, not in the byte alphabet.
        specials_.add(token, static_cast<int32_t>(id));
        raw_bytes_[id] = token;
        continue;
      }
      std::string& raw = raw_bytes_[id];
      for (size_t i = 0; i < token.size();) {
        const size_t start = i;
        const char32_t cp = next_codepoint(token, i);
        if (auto it = alphabet.cp_to_byte.find(cp); it != alphabet.cp_to_byte.end())
          raw += static_cast<char>(it->second);
        else
          raw.append(token, start, i - start);  // not byte-level text: keep as written
      }
    }
    specials_.finish();
    // Initial symbols of a piece: one token per byte. A vocabulary may lack some bytes (SmolLM2
    // has 235 of 256); HF's BPE without unk_token then drops those bytes, and so do we.
    for (int b = 0; b < 256; ++b) {
      if (auto it = token_to_id_.find(alphabet.byte_to_text[b]); it != token_to_id_.end())
        byte_token_[b] = it->second;
    }
  }

  void build_merges(const TokenizerSpec& spec) {
    merges_.reserve(spec.merges.size() * 2);
    for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
      const std::string& rule = spec.merges[rank];
      const size_t space = rule.find(' ');
      if (space == std::string::npos || rule.find(' ', space + 1) != std::string::npos)
        throw Error(ErrorKind::Format, source_,
                    "merge " + std::to_string(rank) + " '" + rule +
                        "' is not two tokens separated by one space");
      const std::string left = rule.substr(0, space), right = rule.substr(space + 1);
      const int32_t left_id = lookup_for_merge(left, rank, rule);
      const int32_t right_id = lookup_for_merge(right, rank, rule);
      const int32_t merged_id = lookup_for_merge(left + right, rank, rule);
      // A repeated pair keeps its last rank, as HF's merge map (built by collecting into a
      // HashMap) does.
      merges_.insert_or_assign(pair_key(left_id, right_id),
                               Merge{static_cast<int32_t>(rank), merged_id});
    }
  }

  int32_t lookup_for_merge(const std::string& token, size_t rank, const std::string& rule) const {
    auto it = token_to_id_.find(token);
    if (it == token_to_id_.end())
      throw Error(ErrorKind::Format, source_,
                  "merge " + std::to_string(rank) + " '" + rule + "' references unknown token '" +
                      token + "'");
    return it->second;
  }

  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    {
      std::lock_guard lock(cache_mutex_);
      if (auto it = cache_.find(piece); it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> ids = merge_piece(piece);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard lock(cache_mutex_);
    // Bounded: ordinary text has a few hundred thousand distinct pieces at most; a long stream of
    // unique pieces (e.g. hex dumps) just restarts the cache.
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(piece), std::move(ids));
  }

  std::vector<int32_t> merge_piece(std::string_view piece) const {
    if (ignore_merges_) {
      std::string text;
      for (const char c : piece)
        text += byte_alphabet().byte_to_text[static_cast<unsigned char>(c)];
      if (auto it = token_to_id_.find(text); it != token_to_id_.end()) return {it->second};
    }
    // Symbols form a doubly linked list over the piece's bytes; a merge folds the right symbol
    // into the left one.
    struct Symbol {
      int32_t id;
      int32_t prev, next;  // -1 at the ends
    };
    std::vector<Symbol> symbols;
    symbols.reserve(piece.size());
    for (const char c : piece) {
      const int32_t id = byte_token_[static_cast<unsigned char>(c)];
      if (id < 0) continue;
      const auto index = static_cast<int32_t>(symbols.size());
      symbols.push_back({id, index - 1, index + 1});
    }
    if (symbols.empty()) return {};
    symbols.back().next = -1;

    struct Candidate {
      int32_t rank, left, left_id, right_id;
      // std::priority_queue pops the largest: invert so the lowest rank, then the leftmost, wins.
      bool operator<(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : left > o.left;
      }
    };
    std::priority_queue<Candidate> queue;
    const auto push_pair = [&](int32_t left) {
      if (left < 0) return;
      const int32_t right = symbols[left].next;
      if (right < 0) return;
      auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
      if (it != merges_.end())
        queue.push({it->second.rank, left, symbols[left].id, symbols[right].id});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

    while (!queue.empty()) {
      const Candidate c = queue.top();
      queue.pop();
      Symbol& left = symbols[c.left];
      // Stale entries (either side already merged into something else) are skipped.
      if (left.id != c.left_id || left.next < 0 || symbols[left.next].id != c.right_id) continue;
      const int32_t right_index = left.next;
      left.id = merges_.find(pair_key(c.left_id, c.right_id))->second.merged_id;
      left.next = symbols[right_index].next;
      if (left.next >= 0) symbols[left.next].prev = c.left;
      symbols[right_index].id = -1;  // dead
      push_pair(left.prev);
      push_pair(c.left);
    }

    std::vector<int32_t> ids;
    for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
    return ids;
  }

  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  // Transparent hashing so cache lookups take the piece as a string_view without copying.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  static constexpr size_t kMaxCacheEntries = 1 << 20;

  std::string source_;
  int32_t bos_id_, eos_id_;
  bool add_bos_;
  bool ignore_merges_ = false;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  SpecialTokenMatcher specials_;
  std::vector<std::string> raw_bytes_;  // id -> bytes it decodes to
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::array<int32_t, 256> byte_token_{};
  std::unordered_map<uint64_t, Merge> merges_;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerSpec& spec) {
  switch (spec.kind) {
    case TokenizerSpec::Kind::Bpe:
      return std::make_unique<BpeTokenizer>(spec);
    case TokenizerSpec::Kind::SentencePiece:
      return detail::make_sentencepiece_tokenizer(spec);
  }
  throw Error(ErrorKind::Unsupported, spec.source, "unknown tokenizer kind");
}

size_t first_invalid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

}  // namespace dptq

// Tokenizers: byte-level BPE of the default model (SmolLM2, from GGUF metadata) against the golden
// ids of an independent reference (tests/golden/tokenizer_smollm2_wikitext.json, made by
// tools/golden/make_tokenizer_golden.py with the HF `tokenizers` library and SmolLM2's original
// tokenizer.json pipeline); HF folders (tokenizer.json / tokenizer.model) against the tiny
// fixtures' golden ids; and the errors bad input must give.
//
// Which reference is the truth for SmolLM2: its original tokenizer.json (digits split one by one,
// then byte-level BPE), which llama.cpp's `smollm` pre-tokenizer implements. transformers 5.18's
// GGUF loading does not split digits first and differs in 10 places on WikiText-2 (see the
// generator's header and the golden's "transformers_gguf" entry), so it is not used here.
#include <bit>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "dptq/error.hpp"
#include "dptq/gguf.hpp"
#include "dptq/sha256.hpp"
#include "dptq/tokenizer.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

fs::path golden_path() {
  return dptq::test::tests_dir() / "golden" / "tokenizer_smollm2_wikitext.json";
}

const json& golden() {
  static const json g = json::parse(read_file(golden_path()));
  return g;
}

bool have_model() {
  return fs::exists(dptq::test::default_model());
}

// The default model's spec and tokenizer, loaded once for all test cases.
const dptq::TokenizerSpec& smollm_spec() {
  static const dptq::TokenizerSpec spec =
      dptq::read_gguf_tokenizer_spec(dptq::test::default_model());
  return spec;
}
const dptq::Tokenizer& smollm() {
  static const std::unique_ptr<dptq::Tokenizer> tok = dptq::make_tokenizer(smollm_spec());
  return *tok;
}

std::vector<std::string> token_texts(const dptq::Tokenizer& tok, std::string_view text) {
  std::vector<std::string> out;
  for (const int32_t id : tok.encode(text, false)) out.push_back(tok.token_text(id));
  return out;
}

std::string sha256_of_ids(std::span<const int32_t> ids) {
  static_assert(std::endian::native == std::endian::little,
                "golden digests hash little-endian int32");
  dptq::Sha256 hash;
  hash.update(ids.data(), ids.size_bytes());
  return hash.hex_digest();
}

using dptq::test::error_of;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A SmolLM2-style tokenizer.json (the layout of the model's original file) from the GGUF spec.
json smollm_tokenizer_json(const dptq::TokenizerSpec& spec, bool pair_merges) {
  json vocab = json::object(), added = json::array(), merges = json::array();
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    vocab[spec.tokens[id]] = id;
    if (spec.token_types[id] == 3)
      added.push_back({{"id", id},
                       {"content", spec.tokens[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", true}});
  }
  for (const std::string& m : spec.merges) {
    const size_t space = m.find(' ');
    if (pair_merges)
      merges.push_back(json::array({m.substr(0, space), m.substr(space + 1)}));
    else
      merges.push_back(m);
  }
  const json byte_level = {{"type", "ByteLevel"},
                           {"add_prefix_space", false},
                           {"trim_offsets", true},
                           {"use_regex", true}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             json::array({{{"type", "Digits"}, {"individual_digits", true}}, byte_level})}}},
          {"post_processor", byte_level},
          {"decoder", byte_level},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", vocab},
            {"merges", merges}}}};
}

// A hand-made byte-level BPE spec small enough to reason about: bytes of "abc Ġ" plus merges.
dptq::TokenizerSpec toy_spec() {
  dptq::TokenizerSpec spec;
  spec.pre = "gpt2";
  spec.tokens = {"<|end|>", "a", "b", "c", "Ġ", "ab", "abc", "Ġab"};
  spec.token_types = {3, 1, 1, 1, 1, 1, 1, 1};
  spec.merges = {"a b", "ab c", "Ġ ab"};
  spec.eos_id = 0;
  spec.source = "toy.gguf";
  return spec;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SmolLM2 (default model) against the golden reference

TEST_CASE("SmolLM2 BPE: short texts give the reference ids and round-trip") {
  DPTQ_SKIP_UNLESS(have_model(), "default model not found: " << dptq::test::default_model());
  const dptq::Tokenizer& tok = smollm();
  CHECK(tok.vocab_size() == 49152);
  CHECK(!tok.add_bos());
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  int cases = 0;
  for (const json& c : golden()["cases"]) {
    const auto text = c["text"].get<std::string>();
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = tok.encode(text, true);  // add_bos is false: no BOS either way
    INFO("text: " << json(text).dump());
    CHECK(ids == expected);
    if (c["round_trip"].get<bool>()) CHECK(tok.decode(ids) == text);
    ++cases;
  }
  CHECK(cases >= 25);
}

TEST_CASE("SmolLM2 BPE: digits split one by one; a space before a digit is its own token") {
  DPTQ_SKIP_UNLESS(have_model(), "default model not found: " << dptq::test::default_model());
  const dptq::Tokenizer& tok = smollm();
  using V = std::vector<std::string>;
  // HF Digits(individual_digits) runs before the GPT-2 regex, so " 2024" never becomes " 2", "024".
  CHECK(token_texts(tok, " 2024") == V{" ", "2", "0", "2", "4"});
  CHECK(token_texts(tok, "abc123def") == V{"abc", "1", "2", "3", "def"});
  // The spaces stay together in the piece before the digit: "a", "  " (not "a", " ", " 1").
  CHECK(token_texts(tok, "a  1") == V{"a", "  ", "1"});
  CHECK(token_texts(tok, "3.14") == V{"3", ".", "1", "4"});
  // Any \p{N}, not only ASCII: Roman numeral twelve, vulgar half, Arabic-Indic three.
  for (const char* number : {"\u216B", "\u00BD", "\u0663"}) {
    const auto texts = token_texts(tok, std::string("x ") + number);
    REQUIRE(texts.size() >= 2);
    CHECK(texts[1] == " ");
  }
}

TEST_CASE("SmolLM2 BPE: contractions, whitespace runs, unicode, empty text") {
  DPTQ_SKIP_UNLESS(have_model(), "default model not found: " << dptq::test::default_model());
  const dptq::Tokenizer& tok = smollm();
  using V = std::vector<std::string>;
  CHECK(token_texts(tok, "don't") == V{"don", "'t"});
  CHECK(token_texts(tok, "I'll") == V{"I", "'ll"});
  CHECK(token_texts(tok, "Hello world") == V{"Hello", " world"});
  // \s+(?!\S): a run of spaces leaves its last space to the word that follows.
  const auto spaced = token_texts(tok, "a    b");
  REQUIRE(!spaced.empty());
  CHECK(spaced.back() == " b");
  CHECK(tok.decode(tok.encode("a    b", false)) == "a    b");
  // Emoji with skin tone and ZWJ sequences, CJK, combining marks: exact byte round trip.
  for (const char* text :
       {"emoji \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD family "
        "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "e\xCC\x81", "\t\r\n \xC2\xA0\xE3\x80\x80"})
    CHECK(tok.decode(tok.encode(text, false)) == text);
  // One token may hold part of a character; token_text shows such bytes as <0xNN>.
  for (const int32_t id : tok.encode("\xF0\x9F\x98\x80", false)) CHECK(!tok.token_text(id).empty());
  CHECK(tok.encode("", true).empty());
  CHECK(tok.decode(std::vector<int32_t>{}).empty());
}

TEST_CASE("SmolLM2 BPE: special tokens written in the text are matched whole") {
  DPTQ_SKIP_UNLESS(have_model(), "default model not found: " << dptq::test::default_model());
  const dptq::Tokenizer& tok = smollm();
  const auto ids = tok.encode("<|im_start|>user\nHi<|im_end|>", false);
  REQUIRE(ids.size() >= 4);
  CHECK(ids.front() == 1);  // <|im_start|>
  CHECK(ids.back() == 2);   // <|im_end|>
  CHECK(tok.token_text(1) == "<|im_start|>");
  CHECK(tok.decode(ids) == "<|im_start|>user\nHi<|im_end|>");
  CHECK(tok.encode("<|endoftext|><|endoftext|>", false) == std::vector<int32_t>{0, 0});
  // An incomplete marker is ordinary text.
  for (const int32_t id : tok.encode("<|im_start", false)) CHECK(id > 16);
}

TEST_CASE("SmolLM2 BPE: whole WikiText-2 test file equals the golden ids and round-trips") {
  DPTQ_SKIP_UNLESS(have_model(), "default model not found: " << dptq::test::default_model());
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::wikitext()),
                   "WikiText-2 not found: " << dptq::test::wikitext());
  const json& g = golden()["wikitext"];
  const std::string text = read_file(dptq::test::wikitext());
  REQUIRE_MESSAGE(dptq::sha256_hex(text) == g["text_sha256"].get<std::string>(),
                  "the WikiText-2 file differs from the one the golden was made from");

  const dptq::Tokenizer& tok = smollm();
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.encode(text, true);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("WikiText-2 test: " << text.size() << " bytes -> " << ids.size() << " tokens in "
                              << seconds << " s (first encode, empty cache)");

  CHECK(ids.size() == g["count"].get<size_t>());
  const auto first = g["first"].get<std::vector<int32_t>>(),
             last = g["last"].get<std::vector<int32_t>>();
  REQUIRE(ids.size() >= first.size());
  CHECK(std::vector<int32_t>(ids.begin(), ids.begin() + first.size()) == first);
  CHECK(std::vector<int32_t>(ids.end() - last.size(), ids.end()) == last);
  // Point at the first block that differs, with its text, before comparing the whole digest.
  const auto block = g["block_size"].get<size_t>();
  const auto& blocks = g["block_sha256"];
  for (size_t b = 0; b < blocks.size() && b * block < ids.size(); ++b) {
    const size_t n = std::min(block, ids.size() - b * block);
    const std::span<const int32_t> part(ids.data() + b * block, n);
    if (sha256_of_ids(part) != blocks[b].get<std::string>()) {
      FAIL_CHECK("first differing block "
                 << b << " (ids " << b * block << ".." << b * block + n << "), starting with text: "
                 << json(tok.decode(part.first(std::min<size_t>(n, 40)))).dump());
      break;
    }
  }
  CHECK(sha256_of_ids(ids) == g["ids_sha256"].get<std::string>());
  CHECK(tok.decode(ids) == text);
}

TEST_CASE("SmolLM2 BPE: BOS on request, concurrent encoding, token_text") {
  DPTQ_SKIP_UNLESS(have_model(), "default model not found: " << dptq::test::default_model());
  dptq::TokenizerSpec spec = smollm_spec();
  spec.add_bos = true;
  const auto tok = dptq::make_tokenizer(spec);
  CHECK(tok->encode("Hi", true) == std::vector<int32_t>{1, smollm().encode("Hi", false)[0]});
  CHECK(tok->encode("Hi", false) == smollm().encode("Hi", false));

  // encode() is const and shares its cache: two threads must get the same ids as one.
  const std::string text = "The 3 quick brown foxes jumped over 12 lazy dogs. Don't they?\n";
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += std::to_string(i) + " " + text;
  const auto expected = smollm().encode(long_text, false);
  std::vector<int32_t> a, b;
  std::thread t1([&] { a = tok->encode(long_text, false); });
  std::thread t2([&] { b = tok->encode(long_text, false); });
  t1.join();
  t2.join();
  CHECK(a == expected);
  CHECK(b == expected);

  CHECK(smollm().token_text(smollm().encode(" world", false)[0]) == " world");
  CHECK(contains(error_of([&] { (void)smollm().token_text(49152); }), "outside the vocabulary"));
  CHECK(contains(error_of([&] { (void)smollm().decode(std::vector<int32_t>{-1}); }),
                 "outside the vocabulary"));
}

// ---------------------------------------------------------------------------------------------
// Hand-made specs: merge order and errors

// Expected ids of the toy spec checked against HF tokenizers 0.23 with the same vocabulary, merges
// and ByteLevel(add_prefix_space=False) pre-tokenizer.
TEST_CASE("BPE: merges apply by rank and special tokens are literal") {
  const auto tok = dptq::make_tokenizer(toy_spec());
  CHECK(tok->encode("abc", false) == std::vector<int32_t>{6});            // a b -> ab, ab c -> abc
  CHECK(tok->encode(" ab abc", false) == std::vector<int32_t>{7, 4, 6});  // " ab", " ", "abc"
  CHECK(tok->encode("ab<|end|>ab", false) == std::vector<int32_t>{5, 0, 5});
  CHECK(tok->decode(std::vector<int32_t>{7, 0, 3}) == " ab<|end|>c");
  // Bytes missing from the vocabulary are dropped before merging, as HF's BPE without unk_token
  // does, so their neighbours merge: "axb" -> "ab" (checked against tokenizers 0.23).
  CHECK(tok->encode("axb", false) == std::vector<int32_t>{5});
}

TEST_CASE("BPE: bad specs and bad text give one clear error") {
  {
    auto spec = toy_spec();
    spec.pre = "klingon";
    const std::string e = error_of([&] { dptq::make_tokenizer(spec); });
    CHECK(contains(e, "toy.gguf: unknown pre-tokenizer 'klingon'"));
    CHECK(contains(e, "smollm"));
  }
  {
    auto spec = toy_spec();
    spec.merges.push_back("a zz");
    CHECK(contains(error_of([&] { dptq::make_tokenizer(spec); }),
                   "toy.gguf: merge 3 'a zz' references unknown token 'zz'"));
  }
  {
    auto spec = toy_spec();
    spec.merges.push_back("b c");  // "bc" is not a token
    CHECK(contains(error_of([&] { dptq::make_tokenizer(spec); }), "unknown token 'bc'"));
  }
  {
    auto spec = toy_spec();
    spec.merges.push_back("abc");
    CHECK(contains(error_of([&] { dptq::make_tokenizer(spec); }),
                   "not two tokens separated by one space"));
  }
  {
    auto spec = toy_spec();
    spec.token_types.pop_back();
    CHECK(contains(error_of([&] { dptq::make_tokenizer(spec); }), "token_type has 7 entries"));
  }
  {
    auto spec = toy_spec();
    spec.add_bos = true;
    CHECK(contains(error_of([&] { dptq::make_tokenizer(spec); }), "no BOS id"));
  }
  {
    auto spec = toy_spec();
    spec.tokens.clear();
    spec.token_types.clear();
    CHECK(contains(error_of([&] { dptq::make_tokenizer(spec); }), "has no tokens"));
  }
  const auto tok = dptq::make_tokenizer(toy_spec());
  CHECK(contains(error_of([&] { tok->encode("ab\xC3(", false); }),
                 "not valid UTF-8 (byte offset 2)"));
  CHECK(contains(error_of([&] { tok->encode("\xED\xA0\x80", false); }),
                 "not valid UTF-8"));  // surrogate
}

// ---------------------------------------------------------------------------------------------
// HF folders

TEST_CASE(
    "HF tokenizer.json in SmolLM2's layout gives the same ids as the GGUF (both merge forms)") {
  DPTQ_SKIP_UNLESS(have_model(), "default model not found: " << dptq::test::default_model());
  const dptq::TokenizerSpec& gguf_spec = smollm_spec();
  std::string sample;
  for (const json& c : golden()["cases"]) sample += c["text"].get<std::string>() + "\n";
  if (fs::exists(dptq::test::wikitext()))
    sample += read_file(dptq::test::wikitext()).substr(0, 200000);
  const auto expected = smollm().encode(sample, false);
  for (const bool pair_merges : {false, true}) {
    const fs::path dir = dptq::test::scratch_dir(pair_merges ? "tok_hf_pairs" : "tok_hf_strings");
    write_file(dir / "tokenizer.json", smollm_tokenizer_json(gguf_spec, pair_merges).dump());
    write_file(
        dir / "tokenizer_config.json",
        R"({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "model_max_length": 8192})");
    const dptq::TokenizerSpec spec = dptq::load_hf_tokenizer_spec(dir);
    CHECK(spec.kind == dptq::TokenizerSpec::Kind::Bpe);
    CHECK(spec.pre == "smollm");
    CHECK(spec.tokens == gguf_spec.tokens);
    CHECK(spec.merges == gguf_spec.merges);
    CHECK(spec.bos_id == 1);
    CHECK(spec.eos_id == 2);
    CHECK(!spec.add_bos);
    CHECK(dptq::make_tokenizer(spec)->encode(sample, true) == expected);
  }
}

TEST_CASE(
    "HF folders of the tiny fixtures give their golden ids (BPE LLaMA-3 / Qwen2, SentencePiece)") {
  const fs::path root = dptq::test::tests_dir() / "fixtures" / "tiny";
  DPTQ_SKIP_UNLESS(fs::exists(root / "llama2_spm" / "golden.json"),
                   "tiny fixtures not found under " << root);
  const struct {
    const char* name;
    dptq::TokenizerSpec::Kind kind;
    const char* pre;
  } fixtures[] = {
      {"llama3_rope", dptq::TokenizerSpec::Kind::Bpe, "llama-bpe"},
      {"qwen2", dptq::TokenizerSpec::Kind::Bpe, "qwen2"},
      {"llama2_spm", dptq::TokenizerSpec::Kind::SentencePiece, ""},
      {"mistral", dptq::TokenizerSpec::Kind::SentencePiece,
       ""},  // has both files: tokenizer.model wins
  };
  for (const auto& f : fixtures) {
    INFO("fixture " << f.name);
    const fs::path dir = root / f.name;
    const dptq::TokenizerSpec spec = dptq::load_hf_tokenizer_spec(dir);
    CHECK(spec.kind == f.kind);
    if (f.kind == dptq::TokenizerSpec::Kind::Bpe) CHECK(spec.pre == f.pre);
    const auto tok = dptq::make_tokenizer(spec);
    const json g = json::parse(read_file(dir / "golden.json"));
    for (const json& p : g["prompts"]) {
      const auto text = p["text"].get<std::string>();
      INFO("prompt " << json(text).dump());
      const auto ids = tok->encode(text, true);  // the golden ids carry the model's BOS, if any
      CHECK(ids == p["ids"].get<std::vector<int32_t>>());
      CHECK(tok->decode(tok->encode(text, false)) == text);
    }
  }
}

TEST_CASE(
    "SentencePiece: special tokens in text, leading spaces, and a model rebuilt from pieces") {
  const fs::path dir = dptq::test::tests_dir() / "fixtures" / "tiny" / "llama2_spm";
  DPTQ_SKIP_UNLESS(fs::exists(dir / "tokenizer.model"), "tiny fixture not found: " << dir);
  const dptq::TokenizerSpec spec = dptq::load_hf_tokenizer_spec(dir);
  CHECK(spec.add_bos);
  CHECK(spec.bos_id == 1);
  CHECK(spec.eos_id == 2);
  const auto tok = dptq::make_tokenizer(spec);
  using V = std::vector<int32_t>;
  // Expected ids from transformers 5.18 AutoTokenizer on this folder (LlamaTokenizer,
  // legacy=false):
  // "<s>" / "</s>" in the text are the special tokens, and text after them gets no "▁" prefix.
  CHECK(tok->encode("hi there", true) == V{1, 316, 327, 323, 266, 275});
  CHECK(tok->encode("hi <s> there", true) == V{1, 316, 327, 323, 316, 1, 266, 275});
  CHECK(tok->encode("<s>hi", true) == V{1, 1, 327, 323});
  CHECK(tok->encode("hi</s>", true) == V{1, 316, 327, 323, 2});
  CHECK(tok->decode(tok->encode("hi <s> there", false)) == "hi <s> there");
  // A text that starts with a space: we follow sentencepiece (and LLaMA-2's original
  // tokenizer.json, and llama.cpp), which add the dummy "▁" in front of it: "▁▁" "h" "i".
  // transformers 5's Metaspace(prepend_scheme="first") conversion does not and gives 316 ("▁")
  // instead of 289.
  CHECK(tok->encode(" hi", true) == V{1, 289, 327, 323});
  CHECK(tok->decode(tok->encode(" hi", false)) == " hi");
  CHECK(tok->token_text(266) == " the");

  // GGUF keeps pieces, scores and types but no ModelProto: the rebuilt model must tokenize alike.
  dptq::TokenizerSpec pieces = spec;
  pieces.spm_model.clear();
  CHECK(contains(error_of([&] { dptq::make_tokenizer(pieces); }), "one score per token"));
  pieces.scores.resize(pieces.tokens.size());
  // The fixture's scores (checked with sentencepiece_model_pb2): 0, -1, -2, ... over the normal
  // pieces in id order, 0 for the others; GGUF's tokenizer.ggml.scores stores exactly these.
  float next = 0.0f;
  for (size_t id = 0; id < pieces.tokens.size(); ++id)
    pieces.scores[id] = pieces.token_types[id] == 1 ? next-- : 0.0f;
  const auto rebuilt = dptq::make_tokenizer(pieces);
  const json g = json::parse(read_file(dir / "golden.json"));
  for (const json& p : g["prompts"]) {
    const auto text = p["text"].get<std::string>();
    INFO("prompt " << json(text).dump());
    CHECK(rebuilt->encode(text, true) == p["ids"].get<std::vector<int32_t>>());
  }
}

TEST_CASE("HF folders: unsupported or missing tokenizers give one clear error") {
  const fs::path dir = dptq::test::scratch_dir("tok_hf_errors");
  CHECK(contains(error_of([&] { dptq::load_hf_tokenizer_spec(dir / "nope"); }), "not a directory"));
  CHECK(contains(error_of([&] { dptq::load_hf_tokenizer_spec(dir); }),
                 "no tokenizer.json or tokenizer.model"));

  json tok = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", json::array()}}},
              {"pre_tokenizer", {{"type", "Whitespace"}}},
              {"decoder", {{"type", "ByteLevel"}}}};
  write_file(dir / "tokenizer.json", tok.dump());
  std::string e = error_of([&] { dptq::load_hf_tokenizer_spec(dir); });
  CHECK(contains(e, (dir / "tokenizer.json").string() + ": pre_tokenizer not supported"));
  CHECK(contains(e, "Whitespace"));

  tok["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  tok["model"]["vocab"] = {{"a", 0}, {"b", 2}};  // id 1 missing
  write_file(dir / "tokenizer.json", tok.dump());
  CHECK(contains(error_of([&] { dptq::load_hf_tokenizer_spec(dir); }), "no token has id 1"));

  tok["model"]["vocab"] = {{"a", 0}, {"b", 1}};
  write_file(dir / "tokenizer.json", tok.dump());
  write_file(dir / "tokenizer_config.json", R"({"add_bos_token": true, "bos_token": "<s>"})");
  CHECK(contains(error_of([&] { dptq::load_hf_tokenizer_spec(dir); }),
                 "token '<s>' is not in the vocabulary"));
  fs::remove(dir / "tokenizer_config.json");

  tok["model"] = {{"type", "WordPiece"}, {"vocab", {{"a", 0}}}};
  tok["decoder"] = nullptr;
  write_file(dir / "tokenizer.json", tok.dump());
  CHECK(contains(error_of([&] { dptq::load_hf_tokenizer_spec(dir); }),
                 "not a byte-level BPE tokenizer"));

  write_file(dir / "tokenizer.json", "{\"model\": ");
  CHECK(contains(error_of([&] { dptq::load_hf_tokenizer_spec(dir); }), "invalid JSON"));
}

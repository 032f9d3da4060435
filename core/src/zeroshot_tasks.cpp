// Zero-shot tasks: reading the data files and building lm-eval's requests (dptq/zeroshot.hpp,
// docs/zeroshot.md). Torch-free.
#include <bzlib.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dptq/atomic_file.hpp"
#include "dptq/error.hpp"
#include "dptq/tokenizer.hpp"
#include "dptq/zeroshot.hpp"

namespace dptq {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string read_file(const fs::path& p) { return read_file_bytes(p); }

std::string bunzip2(const std::string& data, const fs::path& p) {
  bz_stream bz{};
  if (BZ2_bzDecompressInit(&bz, 0, 0) != BZ_OK) throw Error(ErrorKind::Io, p.string(), "cannot start bzip2");
  std::string out;
  std::vector<char> buf(1 << 20);
  bz.next_in = const_cast<char*>(data.data());
  bz.avail_in = static_cast<unsigned>(data.size());
  int rc = BZ_OK;
  while (rc == BZ_OK) {
    bz.next_out = buf.data();
    bz.avail_out = static_cast<unsigned>(buf.size());
    rc = BZ2_bzDecompress(&bz);
    out.append(buf.data(), buf.size() - bz.avail_out);
    if (rc == BZ_OK && bz.avail_in == 0 && bz.avail_out != 0) break;  // input ended early
  }
  BZ2_bzDecompressEnd(&bz);
  if (rc != BZ_STREAM_END) throw Error(ErrorKind::Format, p.string(), "truncated or corrupt bzip2 data");
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(at, nl - at);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    at = nl + 1;
  }
  return lines;
}

// One JSON object per non-empty line; errors name the file and the 1-based line.
std::vector<json> read_jsonl(const fs::path& p, int64_t limit) {
  const std::vector<std::string> lines = split_lines(read_file(p));
  std::vector<json> out;
  for (size_t i = 0; i < lines.size() && (limit < 0 || int64_t(out.size()) < limit); ++i) {
    if (lines[i].find_first_not_of(" \t") == std::string::npos) continue;
    try {
      json j = json::parse(lines[i]);
      if (!j.is_object()) throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(i + 1) + ": not a JSON object");
      out.push_back(std::move(j));
    } catch (const json::exception& e) {
      throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(i + 1) + ": malformed JSON (" + e.what() + ")");
    }
  }
  return out;
}

// Non-empty lines of a labels file (one integer a line).
std::vector<int> read_labels(const fs::path& p, size_t n) {
  const std::vector<std::string> lines = split_lines(read_file(p));
  std::vector<int> out;
  for (size_t i = 0; i < lines.size() && out.size() < n; ++i) {
    if (lines[i].empty()) continue;
    char* end = nullptr;
    const long v = std::strtol(lines[i].c_str(), &end, 10);
    if (end == lines[i].c_str() || *end != '\0' || v < 0 || v > 16)
      throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(i + 1) + ": not a label: '" + lines[i].substr(0, 20) + "'");
    out.push_back(int(v));
  }
  if (out.size() < n)
    throw Error(ErrorKind::Format, p.string(), std::to_string(out.size()) + " labels for " + std::to_string(n) + " items");
  return out;
}

// A string member of record `j` (line `line` of `p`).
std::string str(const json& j, const char* key, const fs::path& p, size_t line) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(line) + ": missing string field '" + key + "'");
  return it->get<std::string>();
}

// Python's str.strip() for the ASCII whitespace the data holds.
std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\v\f";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t at = 0;
  while ((at = s.find(from, at)) != std::string::npos) {
    s.replace(at, from.size(), to);
    at += to.size();
  }
  return s;
}

// lm-eval's hellaswag utils.preprocess: strip, " [title]" -> ". ", re.sub(r"\[.*?\]", ""),
// "  " -> " " (one pass). The non-greedy bracket pattern removes each '[' up to the next ']'
// (lines hold no newline, which '.' would not match); a '[' without a ']' stays.
std::string hellaswag_preprocess(const std::string& text) {
  std::string s = replace_all(strip(text), " [title]", ". ");
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t close = s[i] == '[' ? s.find(']', i + 1) : std::string::npos;
    if (close != std::string::npos) {
      i = close + 1;
    } else {
      out.push_back(s[i++]);
    }
  }
  return replace_all(out, "  ", " ");
}

ZeroShotItem multiple_choice(const std::string& context, const std::vector<std::string>& choices, int gold) {
  ZeroShotItem it;
  for (const std::string& c : choices) it.requests.push_back({context, " " + c});
  it.choices = choices;
  it.gold = gold;
  return it;
}

void check_gold(int gold, size_t n, const fs::path& p, size_t line) {
  if (gold < 0 || size_t(gold) >= n)
    throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(line) + ": answer " + std::to_string(gold) +
                                                   " is not one of the " + std::to_string(n) + " choices");
}

void load_arc(ZeroShotTask& t, const fs::path& p, const std::vector<json>& records) {
  for (size_t i = 0; i < records.size(); ++i) {
    const json& r = records[i];
    const std::string q = str(r, "question", p, i + 1), key = str(r, "answerKey", p, i + 1);
    const auto ch = r.find("choices");
    if (ch == r.end() || !ch->is_object() || !ch->contains("text") || !ch->contains("label") ||
        !(*ch)["text"].is_array() || !(*ch)["label"].is_array() || (*ch)["text"].size() != (*ch)["label"].size() ||
        (*ch)["text"].empty())
      throw Error(ErrorKind::Format, p.string(), "item " + std::to_string(i + 1) + ": 'choices' needs equal 'text' and 'label' arrays");
    std::vector<std::string> texts;
    int gold = -1;
    for (size_t c = 0; c < (*ch)["text"].size(); ++c) {
      const json &tx = (*ch)["text"][c], &lb = (*ch)["label"][c];
      if (!tx.is_string() || !lb.is_string())
        throw Error(ErrorKind::Format, p.string(), "item " + std::to_string(i + 1) + ": a choice or label is not a string");
      texts.push_back(tx.get<std::string>());
      if (lb.get<std::string>() == key && gold < 0) gold = int(c);
    }
    if (gold < 0)
      throw Error(ErrorKind::Format, p.string(), "item " + std::to_string(i + 1) + ": answerKey '" + key.substr(0, 8) + "' is not a label");
    t.items.push_back(multiple_choice("Question: " + q + "\nAnswer:", texts, gold));
  }
}

}  // namespace

const std::vector<std::string>& zeroshot_task_names() {
  static const std::vector<std::string> names = {"piqa", "arc_easy", "arc_challenge", "winogrande",
                                                 "lambada", "boolq", "hellaswag"};
  return names;
}

fs::path default_zeroshot_dir() {
  if (const char* e = std::getenv("DPTQ_ZEROSHOT_DIR"); e && *e) return e;
  return fs::path(DPTQ_ASSETS_DIR).parent_path().parent_path() / "shared" / "data" / "zeroshot";
}

ZeroShotTask load_zeroshot_task(const fs::path& root, const std::string& name, int64_t limit) {
  const auto& names = zeroshot_task_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw Error(ErrorKind::InvalidArgument, "", "unknown task '" + name + "' (tasks: " + list + ")");
  }
  std::error_code ec;
  if (!fs::is_directory(root / name, ec))
    throw Error(ErrorKind::Io, (root / name).string(), "task folder not found (the data README: ../shared/data/zeroshot)");
  ZeroShotTask t;
  t.name = name;
  if (name == "piqa") {
    const fs::path p = root / name / "valid.jsonl", lp = root / name / "valid-labels.lst";
    const std::vector<json> recs = read_jsonl(p, limit);
    const std::vector<int> labels = read_labels(lp, recs.size());
    for (size_t i = 0; i < recs.size(); ++i) {
      check_gold(labels[i], 2, lp, i + 1);
      t.items.push_back(multiple_choice("Question: " + str(recs[i], "goal", p, i + 1) + "\nAnswer:",
                                        {str(recs[i], "sol1", p, i + 1), str(recs[i], "sol2", p, i + 1)}, labels[i]));
    }
    t.source = p.string();
    t.has_acc_norm = true;
  } else if (name == "arc_easy") {
    const fs::path p = root / name / "test.json";
    json all;
    try {
      all = json::parse(read_file(p));
    } catch (const json::exception& e) {
      throw Error(ErrorKind::Format, p.string(), std::string("malformed JSON (") + e.what() + ")");
    }
    if (!all.is_array()) throw Error(ErrorKind::Format, p.string(), "not a JSON array of questions");
    std::vector<json> recs;
    for (size_t i = 0; i < all.size() && (limit < 0 || int64_t(i) < limit); ++i) {
      if (!all[i].is_object()) throw Error(ErrorKind::Format, p.string(), "item " + std::to_string(i + 1) + " is not an object");
      recs.push_back(all[i]);
    }
    load_arc(t, p, recs);
    t.source = p.string();
    t.has_acc_norm = true;
  } else if (name == "arc_challenge") {
    const fs::path p = root / name / "test.jsonl";
    load_arc(t, p, read_jsonl(p, limit));
    t.source = p.string();
    t.has_acc_norm = true;
  } else if (name == "winogrande") {
    const fs::path p = root / name / "dev.jsonl", lp = root / name / "dev-labels.lst";
    const std::vector<json> recs = read_jsonl(p, limit);
    const std::vector<int> labels = read_labels(lp, recs.size());
    for (size_t i = 0; i < recs.size(); ++i) {
      const std::string s = str(recs[i], "sentence", p, i + 1);
      const size_t idx = s.find('_');
      if (idx == std::string::npos)
        throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(i + 1) + ": sentence has no '_' blank");
      check_gold(labels[i] - 1, 2, lp, i + 1);  // labels are 1 and 2
      ZeroShotItem it;
      const std::string rest = " " + strip(s.substr(idx + 1));
      for (const char* key : {"option1", "option2"}) {
        const std::string opt = str(recs[i], key, p, i + 1);
        it.requests.push_back({s.substr(0, idx) + opt, rest});
        it.choices.push_back(opt);
      }
      it.gold = labels[i] - 1;
      t.items.push_back(std::move(it));
    }
    t.source = p.string();
  } else if (name == "lambada") {
    const fs::path p = root / name / "lambada_test.jsonl";
    const std::vector<json> recs = read_jsonl(p, limit);
    for (size_t i = 0; i < recs.size(); ++i) {
      const std::string text = str(recs[i], "text", p, i + 1);
      const size_t sp = text.rfind(' ');
      if (sp == std::string::npos || sp == 0)
        throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(i + 1) + ": text has no last word to predict");
      ZeroShotItem it;
      it.requests.push_back({text.substr(0, sp), text.substr(sp)});  // ' ' + last word
      it.choices.push_back(text.substr(sp + 1));
      t.items.push_back(std::move(it));
    }
    t.source = p.string();
    t.greedy_accuracy = true;
  } else if (name == "boolq") {
    const fs::path p = root / name / "boolq.jsonl";
    const std::vector<json> recs = read_jsonl(p, limit);
    static const std::string kPassage = "Passage: ";
    for (size_t i = 0; i < recs.size(); ++i) {
      const std::string q = str(recs[i], "query", p, i + 1);
      if (q.rfind(kPassage, 0) != 0 || q.find("\nQuestion: ") == std::string::npos)
        throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(i + 1) + ": query is not 'Passage: …\\nQuestion: …'");
      const auto ch = recs[i].find("choices");
      const auto gd = recs[i].find("gold");
      if (ch == recs[i].end() || !ch->is_array() || ch->size() != 2 || !(*ch)[0].is_string() || !(*ch)[1].is_string() ||
          (*ch)[0] != "no" || (*ch)[1] != "yes")
        throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(i + 1) + ": choices must be [\"no\", \"yes\"]");
      if (gd == recs[i].end() || !gd->is_number_integer())
        throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(i + 1) + ": missing integer field 'gold'");
      const int gold = gd->get<int>();
      check_gold(gold, 2, p, i + 1);
      // lm-eval's template "{{passage}}\nQuestion: {{question}}?\nAnswer:" — the query already
      // holds "{passage}\nQuestion: {question}?" after its "Passage: " prefix.
      t.items.push_back(multiple_choice(q.substr(kPassage.size()) + "\nAnswer:", {"no", "yes"}, gold));
    }
    t.source = p.string();
  } else {  // hellaswag: llama.cpp's text format, 6 lines an item
    fs::path p = root / name / "hellaswag_val_full.txt";
    std::string text;
    if (fs::exists(p, ec)) {
      text = read_file(p);
    } else {
      p += ".bz2";
      text = bunzip2(read_file(p), p);
    }
    const std::vector<std::string> lines = split_lines(text);
    if (lines.size() % 6 != 0 && !(lines.size() % 6 == 1 && lines.back().empty()))
      throw Error(ErrorKind::Format, p.string(), std::to_string(lines.size()) + " lines: not 6 per item");
    for (size_t i = 0; i + 5 < lines.size() && (limit < 0 || int64_t(t.items.size()) < limit); i += 6) {
      const std::string& g = lines[i + 1];
      if (g.size() != 1 || g[0] < '0' || g[0] > '3')
        throw Error(ErrorKind::Format, p.string(), "line " + std::to_string(i + 2) + ": gold index must be 0-3, got '" + g.substr(0, 10) + "'");
      std::vector<std::string> endings;
      for (size_t e = 0; e < 4; ++e) endings.push_back(hellaswag_preprocess(lines[i + 2 + e]));
      t.items.push_back(multiple_choice(hellaswag_preprocess(lines[i]), endings, g[0] - '0'));
    }
    t.source = p.string();
    t.has_acc_norm = true;
  }
  if (t.items.empty()) throw Error(ErrorKind::Format, t.source, "no items");
  return t;
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const Tokenizer& tok, const ZeroShotRequest& r) {
  std::string ctx = r.context, cont = r.continuation;
  // lm-eval: trailing spaces of the context belong to the continuation.
  const size_t keep = ctx.find_last_not_of(' ') == std::string::npos ? 0 : ctx.find_last_not_of(' ') + 1;
  if (keep < ctx.size()) {
    cont = ctx.substr(keep) + cont;
    ctx.resize(keep);
  }
  if (ctx.empty()) throw Error(ErrorKind::InvalidArgument, "", "a zero-shot request with an empty context");
  const std::vector<int32_t> whole = tok.encode(ctx + cont, /*with_bos=*/false);
  std::vector<int32_t> c = tok.encode(ctx, false);
  std::vector<int32_t> k(whole.begin() + std::min(whole.size(), c.size()), whole.end());
  return {std::move(c), std::move(k)};
}

void pack_item(PackedBatch& b, int64_t item, const std::vector<std::vector<int32_t>>& ctx,
               const std::vector<std::vector<int32_t>>& cont, int64_t max_len) {
  const size_t k = ctx.size();
  std::vector<std::vector<int32_t>> input(k);
  for (size_t i = 0; i < k; ++i) {
    if (cont[i].empty()) throw Error(ErrorKind::InvalidArgument, "", "a zero-shot choice with no tokens");
    std::vector<int32_t> full = ctx[i];
    full.insert(full.end(), cont[i].begin(), cont[i].end());
    if (int64_t(full.size()) > max_len + 1) full.erase(full.begin(), full.end() - (max_len + 1));
    full.pop_back();
    input[i] = std::move(full);
  }
  size_t P = input[0].size();
  for (size_t i = 1; i < k; ++i) {
    size_t n = 0;
    while (n < P && n < input[i].size() && input[i][n] == input[0][n]) ++n;
    P = n;
  }
  const int64_t prefix_seg = int64_t(b.parent.size());
  b.parent.push_back(-1);
  const int64_t base = int64_t(b.ids.size());
  for (size_t p = 0; p < P; ++p) {
    b.ids.push_back(input[0][p]);
    b.positions.push_back(int64_t(p));
    b.segment.push_back(prefix_seg);
  }
  for (size_t i = 0; i < k; ++i) {
    const int64_t seg = int64_t(b.parent.size());
    b.parent.push_back(prefix_seg);
    const int64_t suffix_base = int64_t(b.ids.size());
    for (size_t p = P; p < input[i].size(); ++p) {
      b.ids.push_back(input[i][p]);
      b.positions.push_back(int64_t(p));
      b.segment.push_back(seg);
    }
    PackedRequest r;
    r.item = item;
    r.choice = int64_t(i);
    const size_t n = std::min(cont[i].size(), input[i].size());
    r.targets.assign(cont[i].end() - n, cont[i].end());
    for (size_t q = input[i].size() - n; q < input[i].size(); ++q)
      r.rows.push_back(q < P ? base + int64_t(q) : suffix_base + int64_t(q - P));
    b.requests.push_back(std::move(r));
  }
}

}  // namespace dptq

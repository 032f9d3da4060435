// The `dptq` binary end to end: bad inputs give exactly one line naming the file and exit code 2;
// good inputs give parseable --json.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

#include "dptq/model.hpp"
#include "gguf_builder.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Run {
  int code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Run dptq_cli(const std::string& args) {
  const fs::path dir = fs::path(DPTQ_BINARY_DIR) / "test-scratch";
  fs::create_directories(dir);
  const fs::path out = dir / "cli.out", err = dir / "cli.err";
  const std::string cmd = std::string(DPTQ_CLI) + " " + args + " >" + out.string() + " 2>" + err.string();
  const int status = std::system(cmd.c_str());
  Run r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// The contract for user errors: exit 2, nothing on stdout, and exactly one error line on stderr —
// the last one, naming `what` (progress lines such as "[ppl] loading ..." may precede it).
void check_user_error(const Run& r, const std::string& what) {
  CHECK(r.code == 2);
  CHECK(r.out.empty());
  std::vector<std::string> lines;
  std::istringstream in(r.err);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE_MESSAGE(!lines.empty(), "stderr was empty");
  const auto errors = std::count_if(lines.begin(), lines.end(), [](const std::string& l) { return l.find("error") != std::string::npos; });
  CHECK_MESSAGE(errors == 1, "stderr was: " << r.err);
  CHECK_MESSAGE(lines.back().rfind("dptq: error: ", 0) == 0, "stderr was: " << r.err);
  CHECK_MESSAGE(lines.back().find(what) != std::string::npos, "expected '" << what << "' in: " << r.err);
  for (size_t i = 0; i + 1 < lines.size(); ++i) CHECK_MESSAGE(lines[i].rfind("[", 0) == 0, "unexpected stderr line: " << lines[i]);
}

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// A valid tiny GGUF and its HF-folder twin, made once per test run.
struct Fixtures {
  fs::path dir, gguf, hf, text;
  Fixtures() {
    dir = dptq::test::scratch_dir("cli");
    gguf = dir / "tiny.gguf";
    dptq::test::tiny_llama_gguf().write(gguf);
    hf = dir / "tiny-hf";
    dptq::save_hf_folder(dptq::load_model(gguf), hf);
    text = dir / "text.txt";
    std::ofstream(text) << std::string(2000, 'a') << " the quick brown fox jumps over the lazy dog\n";
    calib = dir / "calib.txt";
    std::ofstream out(calib);
    for (int i = 0; i < 400; ++i) out << "the residual stream jumps " << i << " times; ";
  }
  fs::path calib;
  fs::path copy_hf(const std::string& name) const {
    const fs::path p = dir / name;
    fs::remove_all(p);
    fs::copy(hf, p, fs::copy_options::recursive);
    return p;
  }
};
const Fixtures& fx() {
  static Fixtures f;
  return f;
}

// A trace of the tiny model (3 windows x 32 tokens), recorded once by `dptq profile`.
struct TraceRun {
  fs::path trace = fx().dir / "tiny.h5";
  Run run;
  TraceRun() {
    fs::remove(trace);
    run = dptq_cli("profile " + q(fx().gguf) + " --calib " + q(fx().calib) + " --samples 3 --seqlen 32 --out " + q(trace) + " --json");
  }
};
const TraceRun& tiny_trace() {
  static TraceRun t;
  return t;
}

void truncate_file(const fs::path& p, uintmax_t size) { fs::resize_file(p, size); }

void patch_safetensors_header(const fs::path& p, const std::string& from, const std::string& to) {
  std::string bytes = slurp(p);
  const size_t at = bytes.find(from);
  REQUIRE(at != std::string::npos);
  REQUIRE(from.size() == to.size());  // keep the header length valid
  bytes.replace(at, from.size(), to);
  std::ofstream(p, std::ios::binary) << bytes;
}

}  // namespace

TEST_CASE("info and ppl succeed on a valid tiny model, with parseable --json") {
  Run r = dptq_cli("info " + q(fx().gguf) + " --json");
  REQUIRE(r.code == 0);
  const json info = json::parse(r.out);
  CHECK(info["config"]["n_layers"] == 2);
  CHECK(info["format"] == "gguf");
  r = dptq_cli("ppl " + q(fx().hf) + " --text " + q(fx().text) + " --seqlen 64 --json");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const json ppl = json::parse(r.out);
  CHECK(ppl["windows"].get<int>() >= 1);
  CHECK(ppl["tokens"] == ppl["windows"].get<int>() * 64);
  CHECK(ppl["ppl"].get<double>() > 1.0);
  // Random weights over a 256-token vocabulary: perplexity must be in the right ballpark.
  CHECK(ppl["ppl"].get<double>() < 5000.0);
  // Same model as GGUF and as HF folder: same perplexity.
  r = dptq_cli("ppl " + q(fx().gguf) + " --text " + q(fx().text) + " --seqlen 64 --json");
  REQUIRE(r.code == 0);
  CHECK(json::parse(r.out)["ppl"].get<double>() == doctest::Approx(ppl["ppl"].get<double>()).epsilon(1e-6));
}

TEST_CASE("ppl --first-window: slices of a run add up to the whole run") {
  const std::string base = "ppl " + q(fx().gguf) + " --text " + q(fx().text) + " --seqlen 16 --json";
  Run r = dptq_cli(base);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const json whole = json::parse(r.out);
  const int n = whole["windows"].get<int>();
  REQUIRE(n >= 3);
  CHECK(whole["first_window"] == 0);
  CHECK(whole["nll_sum"].get<double>() == doctest::Approx(whole["nll_mean"].get<double>() * whole["predicted"].get<double>()).epsilon(1e-12));
  // Two slices: windows [0, 2) and [2, n).
  r = dptq_cli(base + " --max-windows 2");
  REQUIRE(r.code == 0);
  const json head = json::parse(r.out);
  r = dptq_cli(base + " --first-window 2");
  REQUIRE(r.code == 0);
  const json tail = json::parse(r.out);
  CHECK(head["windows"] == 2);
  CHECK(tail["windows"] == n - 2);
  CHECK(tail["first_window"] == 2);
  CHECK(tail["predicted"].get<int>() == (n - 2) * 15);
  const double sum = head["nll_sum"].get<double>() + tail["nll_sum"].get<double>();
  CHECK(sum == doctest::Approx(whole["nll_sum"].get<double>()).epsilon(1e-12));
  CHECK(std::exp(sum / whole["predicted"].get<double>()) == doctest::Approx(whole["ppl"].get<double>()).epsilon(1e-12));
  // The tail alone is a different perplexity (the slices are really different windows).
  CHECK(tail["ppl"].get<double>() != doctest::Approx(head["ppl"].get<double>()).epsilon(1e-6));
  // A slice in the middle: --first-window 1 --max-windows 1 is window 1 of the head.
  r = dptq_cli(base + " --first-window 1 --max-windows 1");
  REQUIRE(r.code == 0);
  const json mid = json::parse(r.out);
  r = dptq_cli(base + " --max-windows 1");
  REQUIRE(r.code == 0);
  CHECK(mid["nll_sum"].get<double>() + json::parse(r.out)["nll_sum"].get<double>() ==
        doctest::Approx(head["nll_sum"].get<double>()).epsilon(1e-12));
  // tools/combine_ppl.py (used by scripts/results.sh for the full-file grid) gives the whole run's
  // perplexity from the slices, and refuses a set of slices with a gap.
  const fs::path dir = dptq::test::scratch_dir("cli_slices");
  std::ofstream(dir / "head.json") << head.dump();
  std::ofstream(dir / "tail.json") << tail.dump();
  const std::string tool = "python3 '" + std::string(DPTQ_SOURCE_DIR) + "/tools/combine_ppl.py' ";
  REQUIRE(std::system((tool + q(dir / "all.json") + " " + q(dir / "tail.json") + " " + q(dir / "head.json") + " > /dev/null").c_str()) == 0);
  std::ifstream combined(dir / "all.json");
  const json all = json::parse(combined);
  CHECK(all["ppl"].get<double>() == doctest::Approx(whole["ppl"].get<double>()).epsilon(1e-12));
  CHECK(all["windows"] == n);
  CHECK(all["predicted"] == whole["predicted"]);
  const int gap = std::system((tool + q(dir / "gap.json") + " " + q(dir / "tail.json") + " 2> " + q(dir / "gap.err")).c_str());
  CHECK(WEXITSTATUS(gap) == 2);
  CHECK(!fs::exists(dir / "gap.json"));
  CHECK(slurp(dir / "gap.err").find("tail.json: starts at window 2, leaves windows 0..1 out") != std::string::npos);
  // Out of range: one line, exit 2.
  check_user_error(dptq_cli(base + " --first-window " + std::to_string(n)), "--first-window " + std::to_string(n) + " is out of range");
  check_user_error(dptq_cli(base + " --first-window -1"), "--first-window must be >= 0");
}

TEST_CASE("zeroshot --first-item: slices joined by tools/combine_zeroshot.py equal the whole run") {
  // Five items each of PIQA (acc, acc_norm) and LAMBADA (greedy acc, perplexity), in the formats of
  // ../shared/data/zeroshot.
  const fs::path dir = dptq::test::scratch_dir("cli_zeroshot_slices");
  fs::create_directories(dir / "data" / "piqa");
  fs::create_directories(dir / "data" / "lambada");
  {
    std::ofstream piqa(dir / "data" / "piqa" / "valid.jsonl"), labels(dir / "data" / "piqa" / "valid-labels.lst");
    std::ofstream lam(dir / "data" / "lambada" / "lambada_test.jsonl");
    const char* words[] = {"fox", "dog", "stream", "block", "scale"};
    for (int i = 0; i < 5; ++i) {
      piqa << json{{"goal", "how to move the " + std::string(words[i])}, {"sol1", "jump over it " + std::to_string(i)},
                   {"sol2", std::string("the quick brown ") + words[(i + 2) % 5]}}.dump() << "\n";
      labels << i % 2 << "\n";
      lam << json{{"text", "the residual stream jumps over the lazy " + std::string(words[i])}}.dump() << "\n";
    }
  }
  const std::string base = "zeroshot " + q(fx().gguf) + " --data " + q(dir / "data") + " --json --tasks ";
  const std::string tool = "python3 '" + std::string(DPTQ_SOURCE_DIR) + "/tools/combine_zeroshot.py' ";
  for (const std::string task : {"piqa", "lambada"}) {
    CAPTURE(task);
    Run r = dptq_cli(base + task + " --per-item " + q(dir / (task + "_whole_items.json")));
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const json whole = json::parse(r.out)["tasks"][task];
    CHECK(whole["n"] == 5);
    CHECK(whole["first_item"] == 0);
    CHECK(whole["to_end"] == true);
    // Slices [0, 2), [2, 4), [4, 5): only the last reaches the end of the task.
    std::vector<std::string> files;
    for (int first : {0, 2, 4}) {
      r = dptq_cli(base + task + " --first-item " + std::to_string(first) + " --limit 2 --per-item " +
                   q(dir / (task + "_items" + std::to_string(first) + ".json")));
      REQUIRE_MESSAGE(r.code == 0, r.err);
      const json sl = json::parse(r.out);
      CHECK(sl["tasks"][task]["first_item"] == first);
      CHECK(sl["tasks"][task]["n"] == std::min(2, 5 - first));
      CHECK(sl["tasks"][task]["to_end"] == (first == 4));
      files.push_back((dir / (task + std::to_string(first) + ".json")).string());
      std::ofstream(files.back()) << sl.dump();
    }
    // The middle slice scores items 2 and 3 of the whole run (same indices, same log-likelihoods).
    const json wi = json::parse(slurp(dir / (task + "_whole_items.json")))["tasks"][task]["items"];
    const json si = json::parse(slurp(dir / (task + "_items2.json")))["tasks"][task]["items"];
    REQUIRE(si.size() == 2);
    for (int i = 0; i < 2; ++i) {
      CHECK(si[i]["index"] == 2 + i);
      for (size_t c = 0; c < si[i]["ll"].size(); ++c)
        CHECK(si[i]["ll"][c].get<double>() == doctest::Approx(wi[2 + i]["ll"][c].get<double>()).epsilon(1e-9));
    }
    // A slice ending exactly at the last item reaches the end; one ending before it does not.
    r = dptq_cli(base + task + " --first-item 3 --limit 2");
    REQUIRE(r.code == 0);
    CHECK(json::parse(r.out)["tasks"][task]["to_end"] == true);
    r = dptq_cli(base + task + " --first-item 3 --limit 1");
    REQUIRE(r.code == 0);
    CHECK(json::parse(r.out)["tasks"][task]["to_end"] == false);
    // Joined (in any order), the slices give the whole run's metrics.
    const fs::path all = dir / (task + "_all.json");
    REQUIRE(std::system((tool + q(all) + " " + files[2] + " " + files[0] + " " + files[1] + " > /dev/null").c_str()) == 0);
    const json joined = json::parse(slurp(all));
    const json jt = joined["tasks"][task];
    CHECK(jt["n"] == 5);
    CHECK(joined["slices"].size() == 3);
    CHECK(jt["acc"].get<double>() == doctest::Approx(whole["acc"].get<double>()).epsilon(1e-12));
    CHECK(jt["acc_stderr"].get<double>() == doctest::Approx(whole["acc_stderr"].get<double>()).epsilon(1e-9));
    CHECK(jt["headline"].get<double>() == doctest::Approx(whole["headline"].get<double>()).epsilon(1e-12));
    if (task == "piqa") {
      CHECK(jt["acc_norm"].get<double>() == doctest::Approx(whole["acc_norm"].get<double>()).epsilon(1e-12));
      CHECK(jt["ppl"].is_null());
    } else {
      CHECK(jt["acc_norm"].is_null());
      // Exactly exp(-mean log-likelihood) over the slices' items; the whole run packs its items
      // into other fp32 batches, so it agrees to rounding only.
      double nll = 0;
      for (const std::string& f : files) {
        const json t = json::parse(slurp(f))["tasks"][task];
        nll += t["n"].get<double>() * std::log(t["ppl"].get<double>());
      }
      CHECK(jt["ppl"].get<double>() == doctest::Approx(std::exp(nll / 5)).epsilon(1e-12));
      CHECK(jt["ppl"].get<double>() == doctest::Approx(whole["ppl"].get<double>()).epsilon(1e-5));
    }
    CHECK(jt["tokens"] == whole["tokens"]);
    // A gap, or slices that stop before the end: one line, exit 2, no output file.
    const int gap = std::system((tool + q(dir / "gap.json") + " " + files[0] + " " + files[2] + " 2> " + q(dir / "gap.err")).c_str());
    CHECK(WEXITSTATUS(gap) == 2);
    CHECK(!fs::exists(dir / "gap.json"));
    CHECK(slurp(dir / "gap.err").find("starts at item 4, leaves items 2..3 out") != std::string::npos);
    const int open = std::system((tool + q(dir / "open.json") + " " + files[0] + " " + files[1] + " 2> " + q(dir / "open.err")).c_str());
    CHECK(WEXITSTATUS(open) == 2);
    CHECK(slurp(dir / "open.err").find("the slices end at item 3, before the end of task " + task) != std::string::npos);
  }
  // Out of range: one line naming the task file, exit 2.
  check_user_error(dptq_cli(base + "piqa --first-item 5"), "--first-item 5 is out of range: task piqa has 5 items");
  check_user_error(dptq_cli(base + "piqa --first-item -1"), "--first-item must be >= 0");
}

TEST_CASE("docs/results.md: the full-file table is what the committed JSON outputs give") {
  // tools/results_table.py --check regenerates the full-grid block of docs/results.md from
  // docs/data/results/ and fails on any difference, so a hand edit or a stale table is caught.
  const std::string src(DPTQ_SOURCE_DIR);
  const std::string tool = "cd '" + src + "' && python3 tools/results_table.py --check ";
  CHECK(std::system((tool + "docs/results.md").c_str()) == 0);
  const fs::path dir = dptq::test::scratch_dir("cli_results_doc");
  std::string doc = slurp(fs::path(src) / "docs/results.md");
  const auto at = doc.find("quantized cells measured");
  REQUIRE(at != std::string::npos);
  doc.replace(at, 8, "cells    ");  // any change inside the block
  std::ofstream(dir / "results.md") << doc;
  const int stale = std::system((tool + q(dir / "results.md") + " 2> " + q(dir / "err")).c_str());
  CHECK(WEXITSTATUS(stale) == 1);
  CHECK(slurp(dir / "err").find("results.md: the full-grid block differs") != std::string::npos);
}

TEST_CASE("bad inputs: one line naming the file, exit code 2") {
  const auto& f = fx();
  SUBCASE("missing model") { check_user_error(dptq_cli("info " + q(f.dir / "absent.gguf")), "absent.gguf: no such file"); }
  SUBCASE("missing text") {
    check_user_error(dptq_cli("ppl " + q(f.gguf) + " --text " + q(f.dir / "absent.txt")), "absent.txt: cannot open");
  }
  SUBCASE("empty text") {
    std::ofstream(f.dir / "empty.txt").close();
    check_user_error(dptq_cli("ppl " + q(f.gguf) + " --text " + q(f.dir / "empty.txt")), "empty.txt: text file is empty");
  }
  SUBCASE("seqlen out of range") {
    check_user_error(dptq_cli("ppl " + q(f.gguf) + " --text " + q(f.text) + " --seqlen 1"), "--seqlen must be at least 2");
    check_user_error(dptq_cli("ppl " + q(f.gguf) + " --text " + q(f.text) + " --seqlen 4096"), "exceeds the model context 128");
  }
  SUBCASE("unknown option") { check_user_error(dptq_cli("info " + q(f.gguf) + " --bogus"), "--bogus"); }
  SUBCASE("truncated GGUF") {
    const fs::path p = f.dir / "trunc.gguf";
    fs::copy_file(f.gguf, p, fs::copy_options::overwrite_existing);
    truncate_file(p, fs::file_size(p) - 64);
    check_user_error(dptq_cli("info " + q(p)), "trunc.gguf: truncated GGUF");
  }
  SUBCASE("unknown GGUF tensor type") {
    auto g = dptq::test::tiny_llama_gguf();
    g.tensors[2].type = 77;
    g.write(f.dir / "type77.gguf");
    check_user_error(dptq_cli("info " + q(f.dir / "type77.gguf")), "unknown GGUF tensor type 77");
  }
  SUBCASE("unknown architecture (GGUF and HF)") {
    auto g = dptq::test::tiny_llama_gguf();
    for (auto& kv : g.kvs)
      if (kv.key == "general.architecture") kv.value = std::string("rwkv6");
    g.write(f.dir / "rwkv.gguf");
    check_user_error(dptq_cli("info " + q(f.dir / "rwkv.gguf")), "unsupported architecture 'rwkv6'");
    const fs::path hf = f.copy_hf("hf-arch");
    std::string cfg = slurp(hf / "config.json");
    cfg.replace(cfg.find("\"model_type\": \"llama\""), 21, "\"model_type\": \"gpt2\" ");
    std::ofstream(hf / "config.json") << cfg;
    check_user_error(dptq_cli("info " + q(hf)), "config.json: unsupported architecture 'gpt2'");
  }
  SUBCASE("truncated safetensors") {
    const fs::path hf = f.copy_hf("hf-trunc");
    truncate_file(hf / "model.safetensors", fs::file_size(hf / "model.safetensors") - 100);
    check_user_error(dptq_cli("ppl " + q(hf) + " --text " + q(f.text) + " --seqlen 64"), "model.safetensors");
  }
  SUBCASE("safetensors header offsets out of range") {
    const fs::path hf = f.copy_hf("hf-offsets");
    // The norm is the last, smallest tensor; push its end offset far beyond the file.
    std::string bytes = slurp(hf / "model.safetensors");
    const size_t key = bytes.find("\"model.norm.weight\"");
    REQUIRE(key != std::string::npos);
    const size_t lb = bytes.find("data_offsets\":[", key) + 15;
    const size_t comma = bytes.find(',', lb), rb = bytes.find(']', comma);
    std::string end = bytes.substr(comma + 1, rb - comma - 1);
    std::string huge = "9" + std::string(end.size() - 1, '9');
    patch_safetensors_header(hf / "model.safetensors", "," + end + "]", "," + huge + "]");
    check_user_error(dptq_cli("ppl " + q(hf) + " --text " + q(f.text) + " --seqlen 64"), "model.safetensors");
  }
  SUBCASE("shape mismatch with config") {
    const fs::path hf = f.copy_hf("hf-shape");
    std::string cfg = slurp(hf / "config.json");
    cfg.replace(cfg.find("\"intermediate_size\": 64"), 23, "\"intermediate_size\": 96");
    std::ofstream(hf / "config.json") << cfg;
    check_user_error(dptq_cli("ppl " + q(hf) + " --text " + q(f.text) + " --seqlen 64"), "but the config implies");
  }
  SUBCASE("bad device") {
    check_user_error(dptq_cli("ppl " + q(f.gguf) + " --text " + q(f.text) + " --device tpu"), "unknown device 'tpu'");
  }
}

TEST_CASE("profile and report: a trace from the tiny model, then bad inputs") {
  const auto& f = fx();
  const fs::path& calib = f.calib;
  const fs::path& trace = tiny_trace().trace;
  REQUIRE_MESSAGE(tiny_trace().run.code == 0, tiny_trace().run.err);
  CHECK(json::parse(tiny_trace().run.out)["windows"] == 3);
  REQUIRE(fs::exists(trace));
  Run r = dptq_cli("report " + q(trace) + " --json");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const json rep = json::parse(r.out);
  CHECK(rep["blocks"].size() == 2);
  CHECK(rep["windows"] == 3);
  CHECK(rep["seqlen"] == 32);
  r = dptq_cli("report " + q(trace));
  CHECK(r.code == 0);
  CHECK(r.out.find("JR p99") != std::string::npos);

  const fs::path out = f.dir / "never.h5";
  auto no_output = [&] { CHECK_FALSE(fs::exists(out)); };
  SUBCASE("unreadable calibration file") {
    check_user_error(dptq_cli("profile " + q(f.gguf) + " --calib " + q(f.dir / "nope.txt") + " --out " + q(out)), "nope.txt: cannot open");
    no_output();
  }
  SUBCASE("empty calibration text") {
    std::ofstream(f.dir / "blank.txt") << "\n\n   \n";
    check_user_error(dptq_cli("profile " + q(f.gguf) + " --calib " + q(f.dir / "blank.txt") + " --out " + q(out)),
                     "blank.txt: calibration text is empty");
    no_output();
  }
  SUBCASE("seqlen out of range") {
    check_user_error(dptq_cli("profile " + q(f.gguf) + " --calib " + q(calib) + " --seqlen 1 --out " + q(out)), "--seqlen must be at least 2");
    check_user_error(dptq_cli("profile " + q(f.gguf) + " --calib " + q(calib) + " --seqlen 999 --out " + q(out)),
                     "exceeds the model context 128");
    no_output();
  }
  SUBCASE("calibration text shorter than one window") {
    std::ofstream(f.dir / "short.txt") << "too short";
    check_user_error(dptq_cli("profile " + q(f.gguf) + " --calib " + q(f.dir / "short.txt") + " --seqlen 64 --out " + q(out)),
                     "fewer than one window");
    no_output();
  }
  SUBCASE("unknown rotation") {
    check_user_error(dptq_cli("profile " + q(f.gguf) + " --rotation spin --out " + q(out)), "unknown --rotation 'spin'");
  }
  SUBCASE("report of a file that is not a trace") {
    check_user_error(dptq_cli("report " + q(f.text)), "text.txt");
    check_user_error(dptq_cli("report " + q(f.dir / "absent.h5")), "absent.h5");
  }
  SUBCASE("report of a truncated trace") {
    const fs::path cut = f.dir / "cut.h5";
    fs::copy_file(trace, cut, fs::copy_options::overwrite_existing);
    fs::resize_file(cut, fs::file_size(cut) / 2);
    check_user_error(dptq_cli("report " + q(cut)), "cut.h5");
  }
  SUBCASE("report of a trace with an unknown major version") {
    const fs::path v3 = f.dir / "v3.h5";
    fs::copy_file(trace, v3, fs::copy_options::overwrite_existing);
    const std::string py = "/usr/bin/python3 -c \"import h5py,sys,numpy; f=h5py.File(sys.argv[1],'r+'); f.attrs['version']=numpy.bytes_('3.0'); f.close()\" " + q(v3);
    DPTQ_SKIP_UNLESS(std::system(py.c_str()) == 0, "python3-h5py not available to patch the version");
    check_user_error(dptq_cli("report " + q(v3)), "unsupported trace version 3.0");
  }
  SUBCASE("a format 1.x trace is refused, and trace-upgrade converts it") {
    const fs::path v1 = f.dir / "v1.h5", up = f.dir / "upgraded.h5";
    fs::copy_file(trace, v1, fs::copy_options::overwrite_existing);
    fs::remove(up);
    const std::string py = "/usr/bin/python3 -c \"import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f.attrs['format']='dptq-trace'; f.attrs['version']='1.1'; f.close()\" " + q(v1);
    DPTQ_SKIP_UNLESS(std::system(py.c_str()) == 0, "python3-h5py not available to write a 1.x trace");
    check_user_error(dptq_cli("report " + q(v1)), "dptq trace-upgrade");
    const auto r = dptq_cli("trace-upgrade " + q(v1) + " --out " + q(up) + " --json");
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(json::parse(r.out)["version"] == "2.0");
    const auto a = dptq_cli("report " + q(trace) + " --json"), b = dptq_cli("report " + q(up) + " --json");
    REQUIRE(a.code == 0);
    REQUIRE(b.code == 0);
    CHECK(json::parse(a.out)["blocks"] == json::parse(b.out)["blocks"]);
  }
}

TEST_CASE("plan: from a trace to a plan file; bad budgets and indices") {
  const auto& f = fx();
  const fs::path& trace = tiny_trace().trace;
  REQUIRE_MESSAGE(tiny_trace().run.code == 0, tiny_trace().run.err);
  const fs::path plan = f.dir / "p.plan.json";
  fs::remove(plan);
  Run r = dptq_cli("plan " + q(trace) + " --policy dynamicptq --budget 1 --out " + q(plan) + " --json");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(json::parse(r.out)["selected"].size() == 1);
  REQUIRE(fs::exists(plan));
  const json p = json::parse(slurp(plan));
  CHECK(p["format"] == "dptq-plan");
  const fs::path out = f.dir / "never.plan.json";
  check_user_error(dptq_cli("plan " + q(trace) + " --budget 5 --out " + q(out)), "budget");
  check_user_error(dptq_cli("plan " + q(trace) + " --policy manual --blocks 0,7 --out " + q(out)), "7");
  check_user_error(dptq_cli("plan " + q(trace) + " --policy magic --budget 1 --out " + q(out)), "magic");
  CHECK_FALSE(fs::exists(out));
}

namespace {

// A plan of the tiny model with one 8-bit block, and its JSON for patching.
fs::path tiny_plan() {
  static const fs::path plan = [] {
    const fs::path p = fx().dir / "k1.plan.json";
    fs::remove(p);
    const Run r = dptq_cli("plan " + q(tiny_trace().trace) + " --policy dynamicptq --budget 1 --method quarot-rtn --out " + q(p));
    REQUIRE_MESSAGE(r.code == 0, r.err);
    return p;
  }();
  return plan;
}

fs::path patched_plan(const std::string& name, const std::function<void(json&)>& patch) {
  json j = json::parse(slurp(tiny_plan()));
  patch(j);
  const fs::path p = fx().dir / name;
  std::ofstream(p) << j.dump(2);
  return p;
}

double ppl_of(const Run& r) {
  REQUIRE_MESSAGE(r.code == 0, r.err);
  return json::parse(r.out)["ppl"].get<double>();
}

}  // namespace

TEST_CASE("quantize: a real checkpoint reloads to the simulated model's perplexity") {
  const auto& f = fx();
  const fs::path ck = f.dir / "ckpt";
  fs::remove_all(ck);
  Run r = dptq_cli("quantize " + q(f.gguf) + " --plan " + q(tiny_plan()) + " --out " + q(ck) + " --json");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const json j = json::parse(r.out);
  CHECK(j["method"] == "quarot-rtn");  // from the plan
  CHECK(j["linear_ratio_vs_fp16"].get<double>() <= 0.30);
  CHECK(fs::exists(ck / "quant_config.json"));
  const json cfg = json::parse(slurp(ck / "quant_config.json"));
  CHECK(cfg["format"] == "dptq-quantized");
  CHECK(cfg["plan"]["policy"]["name"] == "dynamicptq");
  CHECK(cfg["rotations"]["online"]["down_proj_input"]["kind"].is_string());
  r = dptq_cli("info " + q(ck) + " --json");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(json::parse(r.out)["format"] == "dptq-quantized");
  CHECK(json::parse(r.out)["stored_types"]["int4"] == 7 * 2);  // 7 linears x 2 blocks

  const std::string text = " --text " + q(f.text) + " --seqlen 64 --json";
  const double reloaded = ppl_of(dptq_cli("ppl " + q(ck) + text));
  const double simulated = ppl_of(dptq_cli("ppl " + q(f.gguf) + " --plan " + q(tiny_plan()) + text));
  const double fp = ppl_of(dptq_cli("ppl " + q(f.gguf) + text));
  MESSAGE("tiny model ppl: FP " << fp << ", simulated " << simulated << ", reloaded " << reloaded);
  CHECK(std::fabs(reloaded - simulated) <= 1e-3 * simulated);
  CHECK(simulated != fp);

  // A sweep over budgets and policies writes one CSV row per (policy, budget).
  const fs::path csv = f.dir / "sweep.csv";
  fs::remove(csv);
  r = dptq_cli("sweep " + q(f.gguf) + " --trace " + q(tiny_trace().trace) + " --text " + q(f.text) +
               " --seqlen 64 --budgets 0,1,2 --policies dynamicptq,first-last,random --method rtn --out " + q(csv) + " --json");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const std::string rows = slurp(csv);
  CHECK(std::count(rows.begin(), rows.end(), '\n') == 1 + 9);
  const json sj = json::parse(r.out);
  CHECK(sj["rows"][0]["blocks"] == "");                 // budget 0: no 8-bit block, whatever the policy
  CHECK(sj["rows"][3]["blocks"] == "");
  const std::string both = sj["rows"][2]["blocks"];     // dynamicptq at budget 2: both blocks (rank order)
  CHECK((both == "0 1" || both == "1 0"));
  CHECK(sj["rows"][4]["blocks"] == "0");                // first-last at budget 1: the first block
  CHECK(sj["rows"][2]["ppl"] != sj["rows"][0]["ppl"]);  // 8-bit activations change the result
}

TEST_CASE("quantize / ppl --plan: bad plans and checkpoints give one line and exit 2") {
  const auto& f = fx();
  const std::string text = " --text " + q(f.text) + " --seqlen 64";
  const fs::path other = patched_plan("other.plan.json", [](json& j) {
    j["model_fingerprint"] = std::string(64, 'a');
    j["trace"]["model_fingerprint"] = std::string(64, 'a');
  });
  check_user_error(dptq_cli("ppl " + q(f.gguf) + " --plan " + q(other) + text), "plan was made for model aaaaaaaaaaaa");
  const fs::path range = patched_plan("range.plan.json", [](json& j) { j["blocks"][1]["index"] = 99; });
  check_user_error(dptq_cli("ppl " + q(f.gguf) + " --plan " + q(range) + text), "range.plan.json");
  const fs::path six = patched_plan("six.plan.json", [](json& j) { j["blocks"][0]["bits"]["qkv"] = 6; });
  check_user_error(dptq_cli("quantize " + q(f.gguf) + " --plan " + q(six) + " --out " + q(f.dir / "never")), "six.plan.json");
  check_user_error(dptq_cli("ppl " + q(f.gguf) + " --method w3a3" + text), "unknown --method 'w3a3'");
  check_user_error(dptq_cli("quantize " + q(f.gguf) + " --method quarot-rtn --rotations " + q(f.dir / "nope.safetensors") +
                            " --out " + q(f.dir / "never")), "nope.safetensors");
  check_user_error(dptq_cli("quantize " + q(f.gguf) + " --method rtn --rotations " + q(f.dir / "nope.safetensors") +
                            " --out " + q(f.dir / "never")), "--rotations needs a quarot-* method");
  check_user_error(dptq_cli("quantize " + q(f.gguf) + " --method rtn --out " + q(f.dir / "no" / "such" / "dir")),
                   "does not exist");
  CHECK_FALSE(fs::exists(f.dir / "never"));

  // Checkpoints: the target exists; wrong version; truncated tensors.
  const fs::path ck = f.dir / "ckpt-bad";
  fs::remove_all(ck);
  REQUIRE(dptq_cli("quantize " + q(f.gguf) + " --method rtn --out " + q(ck)).code == 0);
  check_user_error(dptq_cli("quantize " + q(f.gguf) + " --method rtn --out " + q(ck)), "already exists");
  const fs::path slash = f.dir / "ckpt-slash";  // "DIR/" names DIR: written beside it, renamed into place
  fs::remove_all(slash);
  REQUIRE(dptq_cli("quantize " + q(f.gguf) + " --method rtn --out " + q(slash.string() + "/")).code == 0);
  CHECK(fs::exists(slash / "quant_config.json"));
  const fs::path badtype = f.dir / "ckpt-badtype";
  fs::remove_all(badtype);
  fs::copy(ck, badtype, fs::copy_options::recursive);
  json bt = json::parse(slurp(badtype / "quant_config.json"));
  bt["model"]["fingerprint"] = 7;
  std::ofstream(badtype / "quant_config.json") << bt.dump(2);
  check_user_error(dptq_cli("ppl " + q(badtype) + text), "quant_config.json");
  const fs::path v2 = f.dir / "ckpt-v2";
  fs::remove_all(v2);
  fs::copy(ck, v2, fs::copy_options::recursive);
  json cfg = json::parse(slurp(v2 / "quant_config.json"));
  cfg["version"] = "2.0";
  std::ofstream(v2 / "quant_config.json") << cfg.dump(2);
  check_user_error(dptq_cli("ppl " + q(v2) + text), "unsupported checkpoint version 2.0");
  const fs::path cut = f.dir / "ckpt-cut";
  fs::remove_all(cut);
  fs::copy(ck, cut, fs::copy_options::recursive);
  truncate_file(cut / "model.safetensors", fs::file_size(cut / "model.safetensors") - 100);
  check_user_error(dptq_cli("ppl " + q(cut) + text), "model.safetensors");
  check_user_error(dptq_cli("info " + q(cut)), "model.safetensors");
}

TEST_CASE("kill -9 during quantize leaves nothing at the target path") {
  const fs::path model = dptq::test::default_model();
  DPTQ_SKIP_UNLESS(fs::exists(model), "default model not installed");
  const fs::path dir = dptq::test::scratch_dir("cli_kill");
  const fs::path out = dir / "ckpt";
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::freopen("/dev/null", "w", stderr);
    execl(DPTQ_CLI, DPTQ_CLI, "quantize", model.c_str(), "--method", "rtn", "--out", out.c_str(), (char*)nullptr);
    _exit(127);
  }
  // Wait until the checkpoint is being written (its temp folder exists), then kill it hard.
  bool writing = false;
  int early = 0;
  for (int i = 0; i < 300000 && !writing; ++i) {  // up to 10 min (RTN of 210 matrices on a busy CPU)
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().rfind("ckpt.tmp-", 0) == 0) writing = true;
    if (writing) break;
    if (waitpid(pid, &early, WNOHANG) == pid) FAIL("dptq quantize exited before writing (status " << early << ")");
    usleep(2000);
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(writing);
  CHECK(WIFSIGNALED(status));
  CHECK_FALSE(fs::exists(out));  // only the temp folder may remain, never a partial checkpoint
}

TEST_CASE("plan --policy oracle measures every block and records the greedy choice") {
  const auto& f = fx();
  const fs::path plan = f.dir / "oracle.plan.json";
  fs::remove(plan);
  const Run r = dptq_cli("plan " + q(tiny_trace().trace) + " --policy oracle --budget 1 --model " + q(f.gguf) +
                         " --method quarot-rtn --calib " + q(f.calib) + " --oracle-windows 2 --oracle-seqlen 32 --out " +
                         q(plan) + " --json");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const json j = json::parse(r.out);
  const json& o = j["oracle"];
  REQUIRE(o["single_gain"].size() == 2);
  // The chosen block is the one with the larger single-block gain, and its step ppl is that ppl.
  const int best = o["single_gain"][0].get<double>() >= o["single_gain"][1].get<double>() ? 0 : 1;
  CHECK(j["selected"][0]["block"] == best);
  CHECK(o["step_ppl"][0].get<double>() == doctest::Approx(o["single_ppl"][best].get<double>()));
  const json p = json::parse(slurp(plan));
  CHECK(p["policy"]["name"] == "oracle");
  CHECK(p["blocks"][best]["selected"] == true);
  // Without a model, or with a block list: one clear line.
  check_user_error(dptq_cli("plan " + q(tiny_trace().trace) + " --policy oracle --budget 1 --out " + q(f.dir / "x.json")), "--model");
  check_user_error(dptq_cli("plan " + q(tiny_trace().trace) + " --policy oracle --budget 1 --blocks 0 --model " + q(f.gguf) +
                            " --out " + q(f.dir / "x.json")), "--blocks");
}

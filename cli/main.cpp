// dptq — the DynamicPTQ Studio command line (DESIGN §7).
// Every user error is one line "dptq: error: <file>: <problem>" on stderr and exit code 2.
// --json prints one machine-readable object on stdout; progress always goes to stderr.
#include <CLI/CLI.hpp>
#include <chrono>
#include <optional>
#include <algorithm>
#include <limits>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "dptq/error.hpp"
#include "dptq/model.hpp"
#include "dptq/perplexity.hpp"
#include "dptq/plan.hpp"
#include "dptq/atomic_file.hpp"
#include "dptq/op_times.hpp"
#include "dptq/profiler.hpp"
#include "dptq/quantize.hpp"
#include "dptq/trace.hpp"
#include "dptq/zeroshot.hpp"
#include "commands.hpp"  // sensitivity, report --proxies (issue 12)

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using dptq_cli::kUserError;
using dptq_cli::check_output_file;

json config_to_json(const dptq::ModelConfig& c) {
  json j = {{"arch", c.arch},         {"n_layers", c.n_layers},     {"d_model", c.d_model},
            {"d_ff", c.d_ff},         {"n_heads", c.n_heads},       {"n_kv_heads", c.n_kv_heads},
            {"head_dim", c.head_dim}, {"vocab_size", c.vocab_size}, {"max_context", c.max_context},
            {"rope_theta", c.rope_theta}, {"rms_eps", c.rms_eps},   {"tied_embeddings", c.tied_embeddings},
            {"qkv_bias", c.qkv_bias}, {"sliding_window", c.sliding_window}};
  if (c.rope_scaling)
    j["rope_scaling"] = {{"type", c.rope_scaling->type}, {"factor", c.rope_scaling->factor},
                         {"low_freq_factor", c.rope_scaling->low_freq_factor},
                         {"high_freq_factor", c.rope_scaling->high_freq_factor},
                         {"original_max_position", c.rope_scaling->original_max_position}};
  return j;
}

// Prints progress to stderr: rewrites one line on a terminal, one line per step otherwise.
// "12m 05s" / "45s"
std::string duration_text(double seconds) {
  const long long s = std::llround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 60) std::snprintf(buf, sizeof buf, "%lldm %02llds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

struct StderrProgress {
  using clock = std::chrono::steady_clock;
  std::string label;
  bool tty = isatty(2);
  clock::time_point start = clock::now();
  mutable clock::time_point phase_start = start;  // when the current count (total) began
  mutable int64_t last_done = -1, last_total = -1;
  void operator()(const dptq::Progress& p) const {
    const auto s = p.snapshot();
    if (s.total <= 0) return;
    if (!tty && s.done == last_done) return;  // a log gets one line per finished step
    const auto now = clock::now();
    if (s.total != last_total || s.done < last_done) phase_start = now;  // a new count restarts the estimate
    last_done = s.done;
    last_total = s.total;
    const double el = std::chrono::duration<double>(now - start).count();
    const double phase = std::chrono::duration<double>(now - phase_start).count();
    // Time left from the pace so far (shown once a step has finished, while steps remain).
    const std::string left = s.done > 0 && s.done < s.total && phase > 0
                                 ? ", ~" + duration_text(phase / double(s.done) * double(s.total - s.done)) + " left"
                                 : "";
    std::fprintf(stderr, "%s[%s] %lld/%lld %s  %.0fs%s%s", tty ? "\r" : "", label.c_str(), (long long)s.done,
                 (long long)s.total, s.stage.c_str(), el, left.c_str(), tty ? "  " : "\n");
    if (tty && s.done == s.total) std::fputc('\n', stderr);
    std::fflush(stderr);
  }
};

}  // namespace

std::function<void(const dptq::Progress&)> dptq_cli::stderr_progress(std::string label) {
  return StderrProgress{std::move(label)};
}

namespace {

int cmd_info(const std::string& model_path, bool as_json) {
  const dptq::ModelInfo info = dptq::inspect_model(model_path);
  const auto& c = info.config;
  if (as_json) {
    json types = json::object();
    for (auto& [k, v] : info.stored_types) types[k] = v;
    std::cout << json{{"path", info.path.string()}, {"format", info.format}, {"name", info.name},
                      {"config", config_to_json(c)}, {"n_params", info.n_params}, {"stored_types", types},
                      {"fingerprint", info.fingerprint}, {"tokenizer", info.tokenizer_kind}}.dump(2)
              << "\n";
    return 0;
  }
  std::printf("model        %s\nformat       %s\nname         %s\n", info.path.c_str(), info.format.c_str(), info.name.c_str());
  std::printf("arch         %s\nlayers       %lld\nd_model      %lld\nd_ff         %lld\n", c.arch.c_str(),
              (long long)c.n_layers, (long long)c.d_model, (long long)c.d_ff);
  std::printf("heads        %lld query / %lld key-value, head_dim %lld\n", (long long)c.n_heads, (long long)c.n_kv_heads,
              (long long)c.head_dim);
  std::printf("vocab        %lld\ncontext      %lld\nrope theta   %g%s\nrms eps      %g\n", (long long)c.vocab_size,
              (long long)c.max_context, c.rope_theta, c.rope_scaling ? (" (" + c.rope_scaling->type + " scaling)").c_str() : "",
              c.rms_eps);
  std::printf("tied head    %s\nqkv bias     %s\nparameters   %lld (%.1fM)\n", c.tied_embeddings ? "yes" : "no",
              c.qkv_bias ? "yes" : "no", (long long)info.n_params, info.n_params / 1e6);
  std::string types;
  for (auto& [k, v] : info.stored_types) types += (types.empty() ? "" : ", ") + k + " x" + std::to_string(v);
  std::printf("stored       %s\ntokenizer    %s\nfingerprint  %s\n", types.c_str(), info.tokenizer_kind.c_str(),
              info.fingerprint.c_str());
  return 0;
}

// The options every quantizing command shares (--method, --plan, rotations, GPTQ calibration).
struct QuantArgs {
  std::string method;     // "" = FP (ppl), or the plan's base method
  std::string plan_path;  // "" = every block at 4 bits
  dptq::QuantizeOptions q;
  std::string engine = "auto";  // auto (int where supported) | int | fake
  std::string dtype = "auto";   // auto | fp32 | bf16
};

void add_quant_options(CLI::App* cmd, QuantArgs& a, bool with_plan = true) {
  cmd->add_option("--method", a.method, "Quantization: rtn | gptq | quarot-rtn | quarot-gptq (default: the plan's)");
  if (with_plan) cmd->add_option("--plan", a.plan_path, "Precision plan (.plan.json) from `dptq plan` (default: all blocks 4-bit)");
  cmd->add_option("--rotation-seed", a.q.rotation_seed, "Seed of the QuaRot random Hadamard rotations")->capture_default_str();
  cmd->add_option("--rotations", a.q.rotation_file, "SpinQuant-style safetensors with R1 [d,d] (and R2 [hd,hd]) instead of seeded rotations");
  cmd->add_option("--calib", a.q.calib, "GPTQ calibration text file, or 'builtin'")->capture_default_str();
  cmd->add_option("--calib-samples", a.q.calib_samples, "GPTQ calibration windows")->capture_default_str();
  cmd->add_option("--calib-seqlen", a.q.calib_seqlen, "GPTQ calibration window length")->capture_default_str();
  cmd->add_option("--engine", a.engine, "Quantized linears: fake (fp32 on dequantized values, what every result uses) | "
                                        "int (exact u8 x s8 GEMMs, FBGEMM) | auto (= fake)")->capture_default_str();
  cmd->add_option("--dtype", a.dtype, "Compute dtype: auto (fp32 on CPU, bf16 on CUDA) | fp32 | bf16 (an approximation on CPU)")
      ->capture_default_str();
}

// Cheap checks of the quantization arguments, before any model is loaded. Returns the plan (or
// nullopt for a uniform 4-bit plan) and resolves the method.
std::optional<dptq::Plan> check_quant_args(QuantArgs& a, const dptq::ModelInfo& info, bool required) {
  std::optional<dptq::Plan> plan;
  if (a.engine != "auto") (void)dptq::parse_engine(a.engine);
  (void)dptq::parse_dtype(a.dtype);
  if (!a.plan_path.empty()) {
    plan = dptq::read_plan(a.plan_path);
    dptq::check_plan_matches(*plan, info.fingerprint, info.config.n_layers, a.plan_path);
    if (a.method.empty() && plan->base_method == "none")
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, a.plan_path, "plan has base method none: give --method");
    if (a.method.empty()) a.method = plan->base_method;
  }
  if (a.method.empty() && required) a.method = "quarot-rtn";
  if (!a.method.empty() && !dptq::is_quant_method(a.method))
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "unknown --method '" + a.method + "' (known: " + dptq::quant_method_list() + ")");
  if (!a.q.rotation_file.empty() && a.method.rfind("quarot-", 0) != 0)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, a.q.rotation_file.string(),
                      "--rotations needs a quarot-* method (method is " + (a.method.empty() ? std::string("FP") : a.method) + ")");
  if (!a.q.rotation_file.empty() && !fs::exists(a.q.rotation_file))
    throw dptq::Error(dptq::ErrorKind::Io, a.q.rotation_file.string(), "no such file");
  if (!a.method.empty() && a.method.find("gptq") != std::string::npos && a.q.calib != "builtin")
    (void)dptq::read_text_file(a.q.calib);  // fails early for an unreadable file
  a.q.method = a.method;
  return plan;
}

// Applies --engine to a quantized model: int insists (InvalidArgument with the reason when this
// model or CPU cannot run it); fake and auto keep the fake engine.
void apply_engine(dptq::Model& model, const QuantArgs& a, const char* label) {
  std::string why;
  const dptq::Engine want = a.engine == "int" ? dptq::Engine::Int : dptq::Engine::Fake;
  const dptq::Engine got = dptq::set_engine(model, want, &why);
  if (got != want && a.engine == "int")
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--engine int is not supported here: " + why);
  std::fprintf(stderr, "[%s] engine: %s%s\n", label, dptq::engine_name(got), why.empty() ? "" : (" (" + why + ")").c_str());
}

// Loads MODEL and, when a method is set, quantizes it under the plan (progress on stderr).
dptq::Model load_for_eval(const std::string& model_path, dptq::Device dev, QuantArgs& a,
                          const std::optional<dptq::Plan>& plan, const char* label,
                          const fs::path* checkpoint_out = nullptr) {
  std::fprintf(stderr, "[%s] loading %s\n", label, model_path.c_str());
  dptq::Model model = dptq::load_model(model_path, {dev, dptq::parse_dtype(a.dtype)});
  if (dptq::is_quantized(model)) {  // a checkpoint: its weights are fixed, a plan may change activation bits
    const std::string have = dptq::model_plan(model).base_method;
    if (!a.method.empty() && a.method != have && !(plan && a.method == plan->base_method))
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, model_path, "is a " + have + " checkpoint; --method " + a.method +
                        " cannot change its weights");
    if (plan) dptq::set_activation_plan(model, *plan, a.plan_path);
    apply_engine(model, a, label);
    return model;
  }
  if (a.method.empty()) {
    if (a.engine == "int") throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--engine int needs a quantized model (give --method)");
    return model;
  }
  dptq::Progress progress;
  progress.on_update = StderrProgress{std::string(label) + " " + a.method};
  const auto t0 = std::chrono::steady_clock::now();
  const dptq::Plan use = plan ? *plan : dptq::uniform_plan(model, a.method);
  if (checkpoint_out) dptq::check_checkpointable(model, use, *checkpoint_out);  // before the slow part
  dptq::quantize_model(model, use, a.q, &progress, a.plan_path);
  std::fprintf(stderr, "[%s] %s (%.0f s)\n", label, dptq::quant_summary(model).c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  apply_engine(model, a, label);
  return model;
}

std::vector<int32_t> tokenize_eval_text(const dptq::Model& model, const std::string& text_path, int64_t seqlen) {
  const std::string text = dptq::read_text_file(text_path);
  std::fprintf(stderr, "[ppl] tokenizing %s (%zu bytes)\n", text_path.c_str(), text.size());
  std::vector<int32_t> ids = model.tokenizer().encode(text, /*with_bos=*/true);
  if (int64_t(ids.size()) < seqlen)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, text_path,
                      "has " + std::to_string(ids.size()) + " tokens, fewer than one window of --seqlen " + std::to_string(seqlen));
  return ids;
}

// Checks shared by ppl and sweep: device, seqlen, max-windows, a non-empty text, the model's context.
dptq::ModelInfo check_eval_args(const std::string& model_path, const std::string& text_path,
                                const dptq::PerplexityOptions& opts) {
  if (opts.seqlen <= 1)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--seqlen must be at least 2 (got " + std::to_string(opts.seqlen) + ")");
  if (opts.max_windows == 0) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--max-windows must be positive");
  if (opts.first_window < 0)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--first-window must be >= 0 (got " + std::to_string(opts.first_window) + ")");
  const std::string text = dptq::read_text_file(text_path);
  if (text.empty()) throw dptq::Error(dptq::ErrorKind::InvalidArgument, text_path, "text file is empty");
  dptq::ModelInfo info = dptq::inspect_model(model_path);
  if (info.config.max_context > 0 && opts.seqlen > info.config.max_context)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--seqlen " + std::to_string(opts.seqlen) +
                      " exceeds the model context " + std::to_string(info.config.max_context));
  return info;
}

int cmd_ppl(const std::string& model_path, const std::string& text_path, const dptq::PerplexityOptions& opts,
            const std::string& device, QuantArgs qa, bool as_json, bool profile_ops) {
  // Cheap checks first, so a bad argument fails before the expensive load.
  const dptq::Device dev = dptq::parse_device(device);
  const dptq::ModelInfo info = check_eval_args(model_path, text_path, opts);
  const std::optional<dptq::Plan> plan = check_quant_args(qa, info, false);
  dptq::Model model = load_for_eval(model_path, dev, qa, plan, "ppl");
  const std::vector<int32_t> ids = tokenize_eval_text(model, text_path, opts.seqlen);
  dptq::Progress progress;
  progress.on_update = StderrProgress{"ppl"};
  dptq::OpTimes::enable(profile_ops);
  const dptq::PerplexityResult r = dptq::perplexity(model, ids, opts, &progress);
  json ops = json::array();
  if (profile_ops) {
    std::fprintf(stderr, "[ppl] time per op over %lld windows (--profile-ops):\n%s", (long long)r.windows,
                 dptq::OpTimes::table().c_str());
    for (const auto& row : dptq::OpTimes::rows()) ops.push_back({{"op", row.op}, {"seconds", row.seconds}, {"calls", row.calls}});
    dptq::OpTimes::enable(false);
  }
  const std::string quant = dptq::quant_summary(model);
  const char* engine = dptq::is_quantized(model) ? dptq::engine_name(dptq::model_engine(model)) : "fp";
  if (as_json) {
    std::cout << json{{"model", model_path}, {"text", text_path}, {"ppl", r.ppl}, {"nll_mean", r.nll_mean}, {"nll_sum", r.nll_sum},
                      {"tokens", r.tokens}, {"text_tokens", ids.size()}, {"predicted", r.predicted},
                      {"windows", r.windows}, {"first_window", r.first_window}, {"seqlen", opts.seqlen}, {"seconds", r.seconds},
                      {"tokens_per_s", r.tokens_per_s}, {"quantization", quant},
                      {"method", dptq::is_quantized(model) ? json(dptq::model_plan(model).base_method) : json(nullptr)},
                      {"plan", qa.plan_path.empty() ? json(nullptr) : json(qa.plan_path)}, {"engine", engine},
                      {"dtype", model_dtype_name(model)}, {"ops", ops}}.dump(2)
              << "\n";
  } else {
    const std::string from = r.first_window ? " from window " + std::to_string(r.first_window) : "";
    std::printf("perplexity %.4f  (%lld windows x %lld tokens%s, %zu text tokens, %.1f tokens/s; %s; engine %s, %s)\n", r.ppl,
                (long long)r.windows, (long long)opts.seqlen, from.c_str(), ids.size(), r.tokens_per_s, quant.c_str(), engine,
                model_dtype_name(model));
  }
  return 0;
}

// `dptq zeroshot`: lm-eval-style zero-shot accuracy (docs/zeroshot.md).
struct ZeroShotArgs {
  std::vector<std::string> tasks = dptq::zeroshot_task_names();
  int64_t limit = -1;
  int64_t first_item = 0;  // skip this many items of each task (a slice of a long run)
  std::string data_dir;
  std::string per_item;  // write every item's scores to this JSON file
  dptq::ZeroShotOptions opts;
};

// The headline metric of a task as QuaRot's lm-eval script reports it: acc_norm where the task has
// it, else acc.
double headline(const dptq::ZeroShotResult& r) { return r.has_acc_norm ? r.acc_norm : r.acc; }

int cmd_zeroshot(const std::string& model_path, ZeroShotArgs za, const std::string& device, QuantArgs qa, bool as_json) {
  const dptq::Device dev = dptq::parse_device(device);
  if (za.limit == 0 || za.limit < -1) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--limit must be positive");
  if (za.first_item < 0)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--first-item must be >= 0 (got " + std::to_string(za.first_item) + ")");
  if (za.tasks.empty()) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--tasks is empty");
  if (!za.per_item.empty()) check_output_file(za.per_item);
  const fs::path root = za.data_dir.empty() ? dptq::default_zeroshot_dir() : fs::path(za.data_dir);
  // Every name is checked, then every task read (and every record checked), before the model loads.
  const auto& known = dptq::zeroshot_task_names();
  for (const std::string& t : za.tasks)
    if (std::find(known.begin(), known.end(), t) == known.end())
      (void)dptq::load_zeroshot_task(fs::path(), t);  // throws: unknown task, listing the known ones
  // Items [first, first + limit) of each task. One item more is read to know whether the slice
  // reaches the end of the task (`to_end`, what tools/combine_zeroshot.py checks).
  std::vector<dptq::ZeroShotTask> tasks;
  std::vector<bool> to_end;
  const int64_t first = za.first_item;
  for (const std::string& t : za.tasks) {
    const bool all = za.limit == -1 || za.limit > std::numeric_limits<int64_t>::max() - first - 1;  // no overflow
    dptq::ZeroShotTask task = dptq::load_zeroshot_task(root, t, all ? -1 : first + za.limit + 1);
    const int64_t n = int64_t(task.items.size());
    if (first >= n)
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, task.source,
                        "--first-item " + std::to_string(first) + " is out of range: task " + t + " has " + std::to_string(n) + " items");
    to_end.push_back(all || n <= first + za.limit);
    task.items.erase(task.items.begin(), task.items.begin() + first);
    if (!all && int64_t(task.items.size()) > za.limit) task.items.resize(size_t(za.limit));
    tasks.push_back(std::move(task));
  }
  const dptq::ModelInfo info = dptq::inspect_model(model_path);
  const std::optional<dptq::Plan> plan = check_quant_args(qa, info, false);
  dptq::Model model = load_for_eval(model_path, dev, qa, plan, "zeroshot");
  std::vector<dptq::ZeroShotResult> results;
  for (const dptq::ZeroShotTask& t : tasks) {
    dptq::Progress progress;
    progress.on_update = StderrProgress{"zeroshot " + t.name};
    results.push_back(dptq::evaluate_zeroshot(model, t, za.opts, &progress));
    const auto& r = results.back();
    std::fprintf(stderr, "[zeroshot] %s: %lld items, acc %.4f%s, %.1f items/s\n", t.name.c_str(), (long long)r.n, r.acc,
                 r.has_acc_norm ? (", acc_norm " + std::to_string(r.acc_norm).substr(0, 6)).c_str() : "", r.items_per_s);
  }
  double avg = 0;
  for (const auto& r : results) avg += headline(r);
  avg /= double(results.size());
  auto task_json = [&](const dptq::ZeroShotResult& r, bool end, bool items) {
    json j = {{"n", r.n}, {"first_item", first}, {"to_end", end}, {"acc", r.acc}, {"acc_stderr", r.acc_stderr},
              {"acc_norm", r.has_acc_norm ? json(r.acc_norm) : json(nullptr)},
              {"acc_norm_stderr", r.has_acc_norm ? json(r.acc_norm_stderr) : json(nullptr)},
              {"ppl", r.has_ppl ? json(r.ppl) : json(nullptr)}, {"headline", headline(r)}, {"seconds", r.seconds},
              {"items_per_s", r.items_per_s}, {"tokens", r.tokens}, {"forwards", r.forwards}};
    if (items) {
      json arr = json::array();
      for (size_t i = 0; i < r.items.size(); ++i) {
        const auto& it = r.items[i];
        json ll = json::array(), gr = json::array(), tk = json::array();
        for (const auto& c : it.choices) ll.push_back(c.loglik), gr.push_back(c.greedy), tk.push_back(c.tokens);
        arr.push_back({{"index", first + int64_t(i)}, {"gold", it.gold}, {"ll", ll}, {"greedy", gr}, {"tokens", tk}});
      }
      j["items"] = arr;
    }
    return j;
  };
  const std::string quant = dptq::quant_summary(model);
  auto report = [&](bool items) {
    json tj = json::object();
    for (size_t i = 0; i < results.size(); ++i) tj[results[i].task] = task_json(results[i], to_end[i], items);
    return json{{"model", model_path}, {"data", root.string()}, {"limit", za.limit}, {"first_item", first}, {"quantization", quant},
                {"method", dptq::is_quantized(model) ? json(dptq::model_plan(model).base_method) : json(nullptr)},
                {"plan", qa.plan_path.empty() ? json(nullptr) : json(qa.plan_path)},
                {"engine", dptq::is_quantized(model) ? dptq::engine_name(dptq::model_engine(model)) : "fp"},
                {"threads", dptq::compute_threads()}, {"average", avg}, {"tasks", tj}};
  };
  if (!za.per_item.empty()) {
    dptq::AtomicFile f(za.per_item);
    const std::string text = report(true).dump(1) + "\n";
    f.write(text.data(), text.size());
    f.commit();
  }
  if (as_json) {
    std::cout << report(false).dump(2) << "\n";
  } else {
    std::printf("zero-shot, %s\n%-14s %6s %16s %16s %9s %8s %8s\n", quant.c_str(), "task", "n", "acc", "acc_norm", "ppl",
                "items/s", "seconds");
    for (const auto& r : results) {
      char an[32] = "-", pp[32] = "-";
      if (r.has_acc_norm) std::snprintf(an, sizeof an, "%.4f ± %.4f", r.acc_norm, r.acc_norm_stderr);
      if (r.has_ppl) std::snprintf(pp, sizeof pp, "%.3f", r.ppl);
      std::printf("%-14s %6lld %7.4f ± %.4f %16s %9s %8.1f %8.1f\n", r.task.c_str(), (long long)r.n, r.acc, r.acc_stderr, an,
                  pp, r.items_per_s, r.seconds);
    }
    std::printf("average (acc_norm where reported, else acc): %.4f\n", avg);
  }
  return 0;
}

int cmd_quantize(const std::string& model_path, QuantArgs qa, const std::string& out, const std::string& device,
                 bool as_json) {
  const dptq::Device dev = dptq::parse_device(device);
  if (out.empty()) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--out is required");
  if (fs::exists(out)) throw dptq::Error(dptq::ErrorKind::InvalidArgument, out, "output folder already exists");
  const dptq::ModelInfo info = dptq::inspect_model(model_path);
  if (info.format == "dptq-quantized")
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, model_path, "is already a quantized checkpoint");
  const std::optional<dptq::Plan> plan = check_quant_args(qa, info, true);
  const fs::path out_path = out;
  dptq::Model model = load_for_eval(model_path, dev, qa, plan, "quantize", &out_path);
  dptq::Progress progress;
  progress.on_update = StderrProgress{"quantize"};
  const dptq::CheckpointStats st = dptq::save_quantized_checkpoint(model, out, &progress);
  const double ratio = double(st.linear_bytes) / double(st.linear_fp16_bytes);
  if (as_json) {
    std::cout << json{{"checkpoint", out}, {"method", qa.method}, {"plan", qa.plan_path.empty() ? json(nullptr) : json(qa.plan_path)},
                      {"quantization", dptq::quant_summary(model)}, {"linear_params", st.linear_params},
                      {"linear_bytes", st.linear_bytes}, {"linear_fp16_bytes", st.linear_fp16_bytes},
                      {"linear_ratio_vs_fp16", ratio}, {"total_bytes", st.total_bytes}}.dump(2) << "\n";
  } else {
    std::printf("wrote %s: %s\nlinear weights %.1f MiB (%.3fx their fp16 size), folder %.1f MiB\n", out.c_str(),
                dptq::quant_summary(model).c_str(), st.linear_bytes / 1048576.0, ratio, st.total_bytes / 1048576.0);
  }
  return 0;
}

// Fails before any long work when `out` cannot become a file: its folder is missing or not a
// folder, or `out` itself is a folder.
int cmd_export_hf(const std::string& model_path, const std::string& out, bool as_json) {
  std::fprintf(stderr, "[export-hf] loading %s\n", model_path.c_str());
  const dptq::Model model = dptq::load_model(model_path, {dptq::Device::Cpu});
  std::fprintf(stderr, "[export-hf] writing %s\n", out.c_str());
  dptq::save_hf_folder(model, out);
  if (as_json)
    std::cout << json{{"model", model_path}, {"out", out}, {"fingerprint", model.info().fingerprint}}.dump(2) << "\n";
  else
    std::printf("wrote %s (HF folder: config.json, model.safetensors, tokenizer files)\n", out.c_str());
  return 0;
}

int cmd_profile(const std::string& model_path, const dptq::ProfileOptions& opts, const std::string& out,
                const std::string& device, bool as_json) {
  const dptq::Device dev = dptq::parse_device(device);
  if (out.empty()) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--out is required");
  if (opts.rotation != "none" && opts.rotation != "quarot")
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "unknown --rotation '" + opts.rotation + "' (expected none or quarot)");
  if (opts.samples < 1) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--samples must be at least 1");
  check_output_file(out);
  if (opts.seqlen < 2) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--seqlen must be at least 2 (got " + std::to_string(opts.seqlen) + ")");
  if (opts.calib != "builtin") {
    const std::string text = dptq::read_text_file(opts.calib);  // fails early for an unreadable file
    if (text.find_first_not_of(" \t\r\n") == std::string::npos)
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, opts.calib, "calibration text is empty");
  }
  const dptq::ModelInfo info = dptq::inspect_model(model_path);
  if (info.config.max_context > 0 && opts.seqlen > info.config.max_context)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--seqlen " + std::to_string(opts.seqlen) +
                      " exceeds the model context " + std::to_string(info.config.max_context));
  std::fprintf(stderr, "[profile] loading %s\n", model_path.c_str());
  const dptq::Model model = dptq::load_model(model_path, {dev});
  dptq::Progress progress;
  progress.on_update = StderrProgress{"profile"};
  const auto t0 = std::chrono::steady_clock::now();
  const dptq::Trace trace = dptq::profile_model(model, opts, &progress);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  dptq::write_trace(trace, out);
  int64_t massive = 0;
  for (const auto& s : trace.streams) massive += s.has_massive;
  if (as_json) {
    std::cout << json{{"trace", out}, {"windows", trace.meta.windows}, {"seqlen", trace.meta.seqlen},
                      {"tokens", trace.meta.tokens}, {"seconds", secs}, {"streams_with_massive", massive},
                      {"phases", trace.phases.size()}}.dump(2) << "\n";
  } else {
    std::printf("wrote %s: %lld windows x %lld tokens in %.1f s; %lld of %zu streams carry massive activations\n",
                out.c_str(), (long long)trace.meta.windows, (long long)trace.meta.seqlen, secs, (long long)massive,
                trace.streams.size());
  }
  return 0;
}

// Finite numbers as JSON numbers, ±inf / NaN as strings (JSON has no infinities).
json num(double v) { return std::isfinite(v) ? json(v) : json(std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf")); }

int cmd_report(const std::string& trace_path, bool as_json) {
  const dptq::Trace t = dptq::read_trace(trace_path);
  const auto& m = t.meta;
  if (as_json) {
    json layers = json::array();
    for (size_t l = 0; l < t.blocks.size(); ++l) {
      const auto& b = t.blocks[l];
      const auto& s = t.streams[l + 1];
      json top = json::array();
      for (const auto& e : s.top)
        top.push_back({{"value", e.value}, {"channel", e.channel}, {"window", e.window}, {"position", e.position},
                       {"token_id", e.token_id}, {"token", e.token_text}});
      layers.push_back({{"block", l}, {"output_top1_abs", s.top1_abs}, {"output_median_abs", s.median_abs},
                        {"output_has_massive", s.has_massive}, {"output_top", top},
                        {"jump_ratio_p99", b.jump_ratio.p99}, {"jump_ratio_mean", b.jump_ratio.mean},
                        {"jump_ratio_inf_p99", b.jump_ratio_inf.p99},
                        {"hsnr4_mean_db", num(b.hsnr4_db.mean)}, {"hsnr4_p1_db", num(b.hsnr4_db.p1)},
                        {"hsnr8_p1_db", num(b.hsnr8_db.p1)}, {"emergence", b.emergence}, {"disappearance", b.disappearance}});
    }
    json phases = json::array();
    for (const auto& p : t.phases) phases.push_back({p.first_stream, p.last_stream});
    std::cout << json{{"trace", trace_path}, {"model", m.model_name}, {"fingerprint", m.model_fingerprint},
                      {"calib", m.calib_source}, {"windows", m.windows}, {"seqlen", m.seqlen}, {"rotation", m.rotation},
                      {"embedding_top1_abs", t.streams[0].top1_abs}, {"phases", phases}, {"blocks", layers}}.dump(2) << "\n";
    return 0;
  }
  std::printf("trace %s\nmodel %s (%s)\ncalibration %s: %lld windows x %lld tokens, rotation %s\n", trace_path.c_str(),
              m.model_name.c_str(), m.model_fingerprint.substr(0, 12).c_str(), m.calib_source.c_str(), (long long)m.windows,
              (long long)m.seqlen, m.rotation.c_str());
  std::printf("%5s %11s %9s %10s %9s %10s %10s %9s  %s\n", "block", "top1|h_out|", "channel", "token", "JR p99",
              "JR_inf p99", "HSNR4 mean", "HSNR4 p1", "phase");
  for (size_t l = 0; l < t.blocks.size(); ++l) {
    const auto& b = t.blocks[l];
    const auto& s = t.streams[l + 1];
    std::string channel = "-", token = "-";
    if (!s.top.empty()) {
      channel = std::to_string(s.top[0].channel);
      token = s.top[0].token_text.substr(0, 10);
    }
    std::string mark = b.emergence ? "emerge" : b.disappearance ? "vanish" : s.has_massive ? "massive" : "";
    std::printf("%5zu %11.1f %9s %10s %9.3f %10.3f %10.2f %9.2f  %s\n", l, s.top1_abs, channel.c_str(), token.c_str(),
                b.jump_ratio.p99, b.jump_ratio_inf.p99, b.hsnr4_db.mean, b.hsnr4_db.p1, mark.c_str());
  }
  for (const auto& p : t.phases)
    std::printf("massive-activation phase: streams h_%lld .. h_%lld\n", (long long)p.first_stream, (long long)p.last_stream);
  if (t.phases.empty()) std::printf("no massive activations (thresholds |v| >= %g and >= %g x median)\n",
                                    m.massive_abs_threshold, m.massive_rel_threshold);
  return 0;
}

struct OracleArgs {
  std::string model_path;
  int64_t windows = 4;   // held-out windows at the end of the calibration text
  int64_t seqlen = 512;
};

// The last `n` windows of `seqlen` tokens of the calibration text: the oracle's held-out slice
// (GPTQ calibration never reads them: QuantizeOptions::calib_holdout_tokens).
std::vector<std::vector<int32_t>> heldout_windows(const dptq::Model& model, const std::string& calib, int64_t n, int64_t seqlen) {
  if (n < 1 || seqlen < 2)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--oracle-windows must be >= 1 and --oracle-seqlen >= 2");
  const std::vector<int32_t> ids = dptq::calibration_tokens(model, calib);
  if (int64_t(ids.size()) < 2 * n * seqlen)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, calib, "calibration text has " + std::to_string(ids.size()) +
                      " tokens; the oracle holds out " + std::to_string(n * seqlen) + " and needs as many left for calibration");
  std::vector<std::vector<int32_t>> w;
  const size_t start = ids.size() - size_t(n * seqlen);
  for (int64_t i = 0; i < n; ++i) w.emplace_back(ids.begin() + long(start + i * seqlen), ids.begin() + long(start + (i + 1) * seqlen));
  return w;
}

// dynamicptq's full ranking of every block as a score (higher = chosen earlier).
std::vector<double> dynamicptq_scores(const dptq::Trace& trace) {
  dptq::PlanOptions o;
  o.budget = int64_t(trace.blocks.size());
  const dptq::Plan all = dptq::make_plan(trace, o);
  std::vector<double> s;
  for (const auto& b : all.blocks) s.push_back(-double(b.rank));
  return s;
}

struct OracleReport {
  dptq::OracleResult result;
  double rho_rank = NAN, rho_jr = NAN;  // Spearman vs single-block gain: dynamicptq rank, raw JR p99
};

OracleReport run_oracle(dptq::Model& model, const dptq::Trace& trace, const std::string& calib, int64_t budget,
                        const OracleArgs& oa) {
  dptq::OracleOptions oo;
  oo.budget = budget;
  oo.windows = heldout_windows(model, calib, oa.windows, oa.seqlen);
  dptq::Progress progress;
  progress.on_update = StderrProgress{"oracle"};
  OracleReport r;
  r.result = dptq::oracle_plan(model, oo, &progress);
  std::vector<double> jr;
  for (const auto& b : trace.blocks) jr.push_back(b.jump_ratio.p99);
  r.rho_rank = dptq::spearman(dynamicptq_scores(trace), r.result.single_gain);
  r.rho_jr = dptq::spearman(jr, r.result.single_gain);
  std::fprintf(stderr, "[oracle] held-out ppl %.4f at the base plan; single-block gains:", r.result.base_ppl);
  for (size_t l = 0; l < r.result.single_gain.size(); ++l) std::fprintf(stderr, " %zu:%.3f", l, r.result.single_gain[l]);
  std::fprintf(stderr, "\n[oracle] Spearman(dynamicptq rank, gain) = %.3f, Spearman(JR p99, gain) = %.3f\n", r.rho_rank, r.rho_jr);
  return r;
}

json oracle_json(const OracleReport& r) {
  return {{"base_ppl", r.result.base_ppl}, {"single_ppl", r.result.single_ppl}, {"single_gain", r.result.single_gain},
          {"step_ppl", r.result.step_ppl}, {"spearman_dynamicptq_rank_vs_gain", num(r.rho_rank)},
          {"spearman_jr_p99_vs_gain", num(r.rho_jr)}};
}

void check_trace_matches(const dptq::Trace& trace, const dptq::ModelInfo& info, const std::string& trace_path) {
  if (trace.meta.model_fingerprint != info.fingerprint)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, trace_path, "trace was recorded for model " +
                      trace.meta.model_fingerprint.substr(0, 12) + "…, not " + info.fingerprint.substr(0, 12) + "…");
}

int cmd_plan(const std::string& trace_path, dptq::PlanOptions opts, const std::string& out, QuantArgs qa,
             const OracleArgs& oa, const std::string& device, bool as_json) {
  const dptq::Trace trace = dptq::read_trace(trace_path);
  check_output_file(out);
  opts.trace_path = trace_path;
  dptq::Plan plan;
  json extra = nullptr;
  if (opts.policy == "oracle") {
    if (oa.model_path.empty())
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "policy oracle measures perplexity: give --model MODEL");
    if (opts.budget < 1) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "policy oracle needs --budget K (K >= 1)");
    if (!opts.manual_blocks.empty() || !std::isnan(opts.jr_threshold))
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "policy oracle takes --budget only (no --blocks or --jr-threshold)");
    if (opts.budget > int64_t(trace.blocks.size()))
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "budget " + std::to_string(opts.budget) + " is out of range 1.." +
                        std::to_string(trace.blocks.size()));
    const dptq::Device dev = dptq::parse_device(device);
    const dptq::ModelInfo info = dptq::inspect_model(oa.model_path);
    check_trace_matches(trace, info, trace_path);
    if (qa.method.empty()) qa.method = opts.base_method.empty() ? (trace.meta.rotation == "quarot" ? "quarot-rtn" : "rtn") : opts.base_method;
    check_quant_args(qa, info, true);
    qa.q.calib_holdout_tokens = oa.windows * oa.seqlen;
    dptq::PlanOptions base = opts;  // the trace's metrics on every block, nothing selected
    base.policy = "manual";
    base.budget = -1;
    base.base_method = qa.method;
    const dptq::Plan base_plan = dptq::make_plan(trace, base);
    dptq::Model model = load_for_eval(oa.model_path, dev, qa, base_plan, "plan");
    const OracleReport r = run_oracle(model, trace, qa.q.calib, opts.budget, oa);
    plan = r.result.plan;
    plan.trace.path = trace_path;
    extra = oracle_json(r);
  } else {
    plan = dptq::make_plan(trace, opts);
  }
  dptq::write_plan(plan, out);
  std::fprintf(stderr, "%s", dptq::plan_summary(plan).c_str());
  json selected = json::array();
  for (const auto& b : plan.blocks)
    if (b.selected) selected.push_back({{"block", b.index}, {"rank", b.rank}, {"reason", b.reason}});
  if (as_json) {
    json j = {{"plan", out}, {"policy", opts.policy}, {"selected", selected}};
    if (!extra.is_null()) j["oracle"] = extra;
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("wrote %s: %lld of %lld blocks get 8-bit activations\n", out.c_str(), (long long)plan.n_selected(),
                (long long)plan.n_layers());
  }
  return 0;
}

struct SweepArgs {
  std::string trace_path, out;
  std::vector<int64_t> budgets = {0, 1, 2, 4, 8};
  std::vector<std::string> policies = {"dynamicptq", "first-last", "hsnr", "random"};
  uint64_t seed = 0;  // random policy
};

std::string csv_blocks(const dptq::Plan& p) {
  std::vector<std::pair<int, int64_t>> sel;
  for (const auto& b : p.blocks)
    if (b.selected) sel.push_back({b.rank, b.index});
  std::sort(sel.begin(), sel.end());
  std::string s;
  for (auto& [rank, index] : sel) s += (s.empty() ? "" : " ") + std::to_string(index);
  return s;
}

int cmd_sweep(const std::string& model_path, const std::string& text_path, SweepArgs sa, const dptq::PerplexityOptions& popts,
              QuantArgs qa, const OracleArgs& oa, const std::string& device, bool as_json) {
  const dptq::Device dev = dptq::parse_device(device);
  if (sa.out.empty()) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--out is required");
  check_output_file(sa.out);
  const dptq::ModelInfo info = check_eval_args(model_path, text_path, popts);
  const dptq::Trace trace = dptq::read_trace(sa.trace_path);
  check_trace_matches(trace, info, sa.trace_path);
  const int64_t L = info.config.n_layers;
  if (sa.budgets.empty() || sa.policies.empty())
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--budgets and --policies must not be empty");
  for (int64_t b : sa.budgets)
    if (b < 0 || b > L)
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "budget " + std::to_string(b) + " is out of range 0.." + std::to_string(L));
  bool with_oracle = false;
  for (const auto& p : sa.policies) {
    if (p == "manual") throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "policy manual has no budget; sweep the others");
    with_oracle |= p == "oracle";
  }
  check_quant_args(qa, info, true);
  if (with_oracle) qa.q.calib_holdout_tokens = oa.windows * oa.seqlen;
  const int64_t max_budget = *std::max_element(sa.budgets.begin(), sa.budgets.end());

  // Every plan is made before the slow work, so a bad policy fails at once.
  struct Row { std::string policy; int64_t budget; dptq::Plan plan; dptq::PerplexityResult r; };
  std::vector<Row> rows;
  for (const auto& p : sa.policies)
    for (int64_t b : sa.budgets) {
      Row row{p, b, {}, {}};
      if (p != "oracle") {
        dptq::PlanOptions o;
        o.policy = p;
        o.budget = b;
        o.seed = sa.seed;
        o.base_method = qa.method;
        o.trace_path = sa.trace_path;
        row.plan = dptq::make_plan(trace, o);
      }
      rows.push_back(std::move(row));
    }

  dptq::Model model = load_for_eval(model_path, dev, qa, std::nullopt, "sweep");
  std::optional<OracleReport> oracle;
  if (with_oracle && max_budget > 0) {
    dptq::PlanOptions base;
    base.policy = "manual";
    base.base_method = qa.method;
    base.trace_path = sa.trace_path;
    dptq::set_activation_plan(model, dptq::make_plan(trace, base));
    oracle = run_oracle(model, trace, qa.q.calib, max_budget, oa);
  }
  for (Row& row : rows) {
    if (row.policy != "oracle") continue;
    dptq::PlanOptions o;  // the greedy order's first `budget` blocks
    o.policy = "manual";
    o.base_method = qa.method;
    o.trace_path = sa.trace_path;
    std::vector<std::pair<int, int64_t>> order;
    if (oracle)
      for (const auto& b : oracle->result.plan.blocks)
        if (b.selected && b.rank <= row.budget) order.push_back({b.rank, b.index});
    std::sort(order.begin(), order.end());
    for (auto& [rank, index] : order) o.manual_blocks.push_back(index);
    row.plan = dptq::make_plan(trace, o);
    row.plan.policy.name = "oracle";
    row.plan.policy.budget = row.budget;
    row.plan.policy.manual_blocks.clear();
  }

  const std::vector<int32_t> ids = tokenize_eval_text(model, text_path, popts.seqlen);
  std::map<std::string, dptq::PerplexityResult> done;  // by selected block set
  for (size_t i = 0; i < rows.size(); ++i) {
    Row& row = rows[i];
    const std::string key = csv_blocks(row.plan);
    if (auto it = done.find(key); it != done.end()) {
      row.r = it->second;
    } else {
      dptq::set_activation_plan(model, row.plan, sa.trace_path);
      dptq::Progress progress;
      progress.on_update = StderrProgress{"sweep " + std::to_string(i + 1) + "/" + std::to_string(rows.size()) + " " +
                                          row.policy + " k=" + std::to_string(row.budget)};
      row.r = dptq::perplexity(model, ids, popts, &progress);
      done[key] = row.r;
    }
    std::fprintf(stderr, "[sweep] %s %s budget %lld blocks [%s]: ppl %.4f\n", qa.method.c_str(), row.policy.c_str(),
                 (long long)row.budget, key.c_str(), row.r.ppl);
  }

  std::string csv = "method,policy,budget,blocks,ppl,nll_mean,windows,seqlen,tokens,seconds\n";
  json jrows = json::array();
  for (const Row& row : rows) {
    char buf[512];
    std::snprintf(buf, sizeof buf, "%s,%s,%lld,%s,%.6f,%.8f,%lld,%lld,%lld,%.1f\n", qa.method.c_str(), row.policy.c_str(),
                  (long long)row.budget, csv_blocks(row.plan).c_str(), row.r.ppl, row.r.nll_mean, (long long)row.r.windows,
                  (long long)popts.seqlen, (long long)row.r.tokens, row.r.seconds);
    csv += buf;
    jrows.push_back({{"method", qa.method}, {"policy", row.policy}, {"budget", row.budget}, {"blocks", csv_blocks(row.plan)},
                     {"ppl", row.r.ppl}, {"nll_mean", row.r.nll_mean}, {"windows", row.r.windows}, {"tokens", row.r.tokens},
                     {"seconds", row.r.seconds}});
  }
  dptq::AtomicFile f(sa.out);
  f.write(csv.data(), csv.size());
  f.commit();
  if (as_json) {
    json j = {{"csv", sa.out}, {"model", model_path}, {"text", text_path}, {"method", qa.method}, {"seqlen", popts.seqlen},
              {"max_windows", popts.max_windows}, {"rows", jrows}};
    if (oracle) j["oracle"] = oracle_json(*oracle);
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("%s", csv.c_str());
    std::printf("wrote %s\n", sa.out.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dptq — DynamicPTQ Studio command line: inspect models, measure perplexity, profile residual-stream dynamics"};
  app.require_subcommand(1);
  bool as_json = false;
  app.add_flag("--json", as_json, "Print one JSON object on stdout");

  std::string model_path, text_path, device = "cpu";
  auto* info = app.add_subcommand("info", "Show a model's architecture, storage types and fingerprint");
  info->add_option("MODEL", model_path, "GGUF file or HF folder")->required();
  info->add_flag("--json", as_json, "Print one JSON object on stdout");

  std::string hf_out;
  auto* export_hf = app.add_subcommand("export-hf", "Write a model (e.g. a GGUF) as an HF folder: config.json, fp32 "
                                                    "model.safetensors, tokenizer files (what transformers loads)");
  export_hf->add_option("MODEL", model_path, "GGUF file or HF folder")->required();
  export_hf->add_option("--out", hf_out, "Output folder (must not exist)")->required();
  export_hf->add_flag("--json", as_json, "Print one JSON object on stdout");

  dptq::PerplexityOptions popts;
  auto* ppl = app.add_subcommand("ppl", "Perplexity on a text file (GPTQ/QuaRot protocol: whole text tokenized once, "
                                         "non-overlapping windows, tail dropped)");
  ppl->add_option("MODEL", model_path, "GGUF file or HF folder")->required();
  ppl->add_option("--text", text_path, "UTF-8 text file (e.g. ../shared/data/wikitext-2-raw-test.txt)")->required();
  ppl->add_option("--seqlen", popts.seqlen, "Window length in tokens")->capture_default_str();
  ppl->add_option("--max-windows", popts.max_windows, "Evaluate only N windows (default: all)");
  ppl->add_option("--first-window", popts.first_window,
                  "Start at this window (0-based); slices' nll_sum add up to the whole run")->capture_default_str();
  ppl->add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  ppl->add_flag("--json", as_json, "Print one JSON object on stdout");
  bool profile_ops = false;
  ppl->add_flag("--profile-ops", profile_ops, "Print where the time goes: wall time per forward operation (stderr; 'ops' in --json)");
  QuantArgs qa;
  add_quant_options(ppl, qa);

  std::string quant_out;
  auto* quantize = app.add_subcommand("quantize", "Write a real quantized checkpoint (packed int4 weights, fp16 scales, "
                                                  "quant_config.json with rotations, quantizers and the plan)");
  quantize->add_option("MODEL", model_path, "GGUF file or HF folder")->required();
  add_quant_options(quantize, qa);
  quantize->add_option("--out", quant_out, "Output folder (must not exist)")->required();
  quantize->add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  quantize->add_flag("--json", as_json, "Print one JSON object on stdout");

  SweepArgs sweep_args;
  OracleArgs oracle_args;
  auto* sweep = app.add_subcommand("sweep", "Perplexity vs 8-bit budget for several plan policies (weights quantized once)");
  sweep->add_option("MODEL", model_path, "GGUF file or HF folder")->required();
  sweep->add_option("--trace", sweep_args.trace_path, "Trace (.h5) of this model from `dptq profile`")->required();
  sweep->add_option("--text", text_path, "Evaluation text (e.g. ../shared/data/wikitext-2-raw-test.txt)")->required();
  sweep->add_option("--budgets", sweep_args.budgets, "Comma-separated budgets")->delimiter(',')->capture_default_str();
  sweep->add_option("--policies", sweep_args.policies, "Comma-separated: dynamicptq, dynamicptq-jr, measured (a trace with sensitivity), first-last, hsnr, random, oracle")
      ->delimiter(',')->capture_default_str();
  sweep->add_option("--seed", sweep_args.seed, "Seed of the random policy")->capture_default_str();
  sweep->add_option("--seqlen", popts.seqlen, "Window length in tokens")->capture_default_str();
  sweep->add_option("--max-windows", popts.max_windows, "Evaluate only the first N windows (default: all)");
  sweep->add_option("--oracle-windows", oracle_args.windows, "oracle: held-out windows from the end of --calib")->capture_default_str();
  sweep->add_option("--oracle-seqlen", oracle_args.seqlen, "oracle: held-out window length")->capture_default_str();
  sweep->add_option("--out", sweep_args.out, "Output CSV")->required();
  sweep->add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  sweep->add_flag("--json", as_json, "Print one JSON object on stdout");
  add_quant_options(sweep, qa, /*with_plan=*/false);

  dptq::ProfileOptions prof;
  std::string out_path, trace_path;
  auto* profile = app.add_subcommand("profile", "Stream calibration text through the instrumented model and write an HDF5 trace");
  profile->add_option("MODEL", model_path, "GGUF file or HF folder")->required();
  profile->add_option("--calib", prof.calib, "Calibration text file, or 'builtin' (assets/calibration)")->capture_default_str();
  profile->add_option("--samples", prof.samples, "Calibration windows")->capture_default_str();
  profile->add_option("--seqlen", prof.seqlen, "Tokens per window")->capture_default_str();
  profile->add_option("--seed", prof.seed, "Window sampling seed")->capture_default_str();
  profile->add_option("--rotation", prof.rotation, "Quantizer view: none | quarot")->capture_default_str();
  profile->add_option("--topk", prof.topk, "Largest entries kept per residual stream")->capture_default_str();
  profile->add_option("--out", out_path, "Output trace (.h5)")->required();
  profile->add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  profile->add_flag("--json", as_json, "Print one JSON object on stdout");

  auto* report = app.add_subcommand("report", "Per-layer table of a trace: massive activations, Jump Ratio, HSNR, phases");
  report->add_option("TRACE", trace_path, "Trace file (.h5)")->required();
  report->add_flag("--json", as_json, "Print one JSON object on stdout");
  bool report_proxies = false;  // issue 12: proxy screen against the trace's measured sensitivity
  std::string proxy_gain = "nll";
  int64_t proxy_permutations = 10000;
  report->add_flag("--proxies", report_proxies, "Rank correlation of every per-block metric with the measured gain");
  report->add_option("--gain", proxy_gain, "--proxies: measured gain to screen against: nll | kl")->capture_default_str();
  report->add_option("--permutations", proxy_permutations, "--proxies: shuffles for the permutation p-values")->capture_default_str();
  auto* sensitivity = dptq_cli::add_sensitivity_command(app, as_json);

  std::string upgrade_in, upgrade_out;
  double upgrade_timeout = 120;
  auto* upgrade = app.add_subcommand("trace-upgrade", "Convert a format 1.x trace (variable-length strings) to the current format");
  upgrade->add_option("TRACE", upgrade_in, "Format 1.x trace (.h5)")->required();
  upgrade->add_option("--out", upgrade_out, "Output trace (.h5)")->required();
  upgrade->add_option("--timeout", upgrade_timeout, "Seconds the reading child process may take")->capture_default_str();
  upgrade->add_flag("--json", as_json, "Print one JSON object on stdout");

  ZeroShotArgs zs_args;
  auto* zeroshot = app.add_subcommand("zeroshot", "Zero-shot QA accuracy by lm-eval's conventions (PIQA, ARC, WinoGrande, "
                                                  "LAMBADA, BoolQ, HellaSwag) for FP, W4A4KV4 or a plan");
  zeroshot->add_option("MODEL", model_path, "GGUF file, HF folder or quantized checkpoint")->required();
  zeroshot->add_option("--tasks", zs_args.tasks, "Comma-separated: piqa,arc_easy,arc_challenge,winogrande,lambada,boolq,hellaswag")
      ->delimiter(',')->capture_default_str();
  zeroshot->add_option("--limit", zs_args.limit, "First N items of each task (-1: all)")->capture_default_str();
  zeroshot->add_option("--first-item", zs_args.first_item,
                       "Skip the first F items of each task: with --limit N, items F..F+N-1 (a slice; tools/combine_zeroshot.py "
                       "joins slices)")->capture_default_str();
  zeroshot->add_option("--data", zs_args.data_dir, "Task data folder (default: $DPTQ_ZEROSHOT_DIR or ../shared/data/zeroshot)");
  zeroshot->add_option("--batch-tokens", zs_args.opts.batch_tokens, "Pack items into one forward pass up to this many tokens")
      ->capture_default_str();
  zeroshot->add_option("--per-item", zs_args.per_item, "Also write every item's per-choice log-likelihoods to this JSON file");
  zeroshot->add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  zeroshot->add_flag("--json", as_json, "Print one JSON object on stdout");
  add_quant_options(zeroshot, qa);

  dptq::PlanOptions plan_opts;
  std::string plan_out;
  auto* plan = app.add_subcommand("plan", "Choose the blocks that get 8-bit activations from a trace (a DynamicPTQ precision plan)");
  plan->add_option("TRACE", trace_path, "Trace file (.h5) from `dptq profile`")->required();
  plan->add_option("--policy", plan_opts.policy, "dynamicptq | dynamicptq-jr | measured | hsnr | first-last | manual | random | oracle")->capture_default_str();
  auto* budget = plan->add_option("--budget", plan_opts.budget, "Number of blocks that get 8-bit activations");
  plan->add_option("--jr-threshold", plan_opts.jr_threshold, "dynamicptq-jr: select every block with JR p99 >= X")->excludes(budget);
  plan->add_option("--budget-macs", plan_opts.budget_macs, "dynamicptq, measured: site-level plan with at most this share "
                                                           "of the linear MACs at 8 bits")->excludes(budget);
  plan->add_option("--blocks", plan_opts.manual_blocks, "manual: block indices")->delimiter(',');
  plan->add_option("--seed", plan_opts.seed, "random: seed");
  plan->add_option("--method", plan_opts.base_method, "Base method recorded in the plan (default: from the trace's rotation)");
  plan->add_option("--model", oracle_args.model_path, "oracle: the model to measure");
  plan->add_option("--oracle-windows", oracle_args.windows, "oracle: held-out windows from the end of --calib")->capture_default_str();
  plan->add_option("--oracle-seqlen", oracle_args.seqlen, "oracle: held-out window length")->capture_default_str();
  plan->add_option("--calib", qa.q.calib, "oracle: calibration text (held-out slice; GPTQ)")->capture_default_str();
  plan->add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  plan->add_option("--out", plan_out, "Output plan (.plan.json)")->required();
  plan->add_flag("--json", as_json, "Print one JSON object on stdout");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "dptq: error: %s\n", e.what());
    return kUserError;
  }

  try {
    if (*info) return cmd_info(model_path, as_json);
    if (*export_hf) return cmd_export_hf(model_path, hf_out, as_json);
    if (*ppl) return cmd_ppl(model_path, text_path, popts, device, qa, as_json, profile_ops);
    if (*quantize) return cmd_quantize(model_path, qa, quant_out, device, as_json);
    if (*zeroshot) return cmd_zeroshot(model_path, zs_args, device, qa, as_json);
    if (*sweep) return cmd_sweep(model_path, text_path, sweep_args, popts, qa, oracle_args, device, as_json);
    if (*profile) return cmd_profile(model_path, prof, out_path, device, as_json);
    if (*report && report_proxies) return dptq_cli::cmd_report_proxies(trace_path, proxy_gain, proxy_permutations, as_json);
    if (*report) return cmd_report(trace_path, as_json);
    if (*upgrade) return dptq_cli::cmd_trace_upgrade(upgrade_in, upgrade_out, upgrade_timeout, as_json);
    if (*sensitivity) return dptq_cli::run_sensitivity_command(as_json);
    if (*plan) return cmd_plan(trace_path, plan_opts, plan_out, qa, oracle_args, device, as_json);
  } catch (const dptq::Error& e) {
    std::fprintf(stderr, "dptq: error: %s\n", e.what());
    return kUserError;
  } catch (const std::exception& e) {
    // Anything else is a bug in dptq, not in the input: still one line, but a different code.
    std::fprintf(stderr, "dptq: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}

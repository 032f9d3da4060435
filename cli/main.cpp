// dptq — the DynamicPTQ Studio command line (DESIGN §7).
// Every user error is one line "dptq: error: <file>: <problem>" on stderr and exit code 2.
// --json prints one machine-readable object on stdout; progress always goes to stderr.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "dptq/error.hpp"
#include "dptq/model.hpp"
#include "dptq/perplexity.hpp"
#include "dptq/plan.hpp"
#include "dptq/profiler.hpp"
#include "dptq/trace.hpp"

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int kUserError = 2;

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
struct StderrProgress {
  std::string label;
  bool tty = isatty(2);
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  mutable int64_t last_done = -1;
  void operator()(const dptq::Progress& p) const {
    const auto s = p.snapshot();
    if (s.total <= 0) return;
    if (!tty && s.done == last_done) return;  // a log gets one line per finished step
    last_done = s.done;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "%s[%s] %lld/%lld %s  %.0fs%s", tty ? "\r" : "", label.c_str(), (long long)s.done,
                 (long long)s.total, s.stage.c_str(), el, tty ? "  " : "\n");
    if (tty && s.done == s.total) std::fputc('\n', stderr);
    std::fflush(stderr);
  }
};

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

int cmd_ppl(const std::string& model_path, const std::string& text_path, const dptq::PerplexityOptions& opts,
            const std::string& device, bool as_json) {
  // Cheap checks first, so a bad argument fails before the expensive load.
  const dptq::Device dev = dptq::parse_device(device);
  if (opts.seqlen <= 1)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--seqlen must be at least 2 (got " + std::to_string(opts.seqlen) + ")");
  if (opts.max_windows == 0) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--max-windows must be positive");
  const std::string text = dptq::read_text_file(text_path);
  if (text.empty()) throw dptq::Error(dptq::ErrorKind::InvalidArgument, text_path, "text file is empty");
  const dptq::ModelInfo info = dptq::inspect_model(model_path);
  if (info.config.max_context > 0 && opts.seqlen > info.config.max_context)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--seqlen " + std::to_string(opts.seqlen) +
                      " exceeds the model context " + std::to_string(info.config.max_context));

  std::fprintf(stderr, "[ppl] loading %s\n", model_path.c_str());
  dptq::Model model = dptq::load_model(model_path, {dev});
  std::fprintf(stderr, "[ppl] tokenizing %s (%zu bytes)\n", text_path.c_str(), text.size());
  const std::vector<int32_t> ids = model.tokenizer().encode(text, /*with_bos=*/true);
  if (int64_t(ids.size()) < opts.seqlen)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, text_path,
                      "has " + std::to_string(ids.size()) + " tokens, fewer than one window of --seqlen " +
                          std::to_string(opts.seqlen));
  dptq::Progress progress;
  progress.on_update = StderrProgress{"ppl"};
  const dptq::PerplexityResult r = dptq::perplexity(model, ids, opts, &progress);
  if (as_json) {
    std::cout << json{{"model", model_path}, {"text", text_path}, {"ppl", r.ppl}, {"nll_mean", r.nll_mean},
                      {"tokens", r.tokens}, {"text_tokens", ids.size()}, {"predicted", r.predicted},
                      {"windows", r.windows}, {"seqlen", opts.seqlen}, {"seconds", r.seconds},
                      {"tokens_per_s", r.tokens_per_s}}.dump(2)
              << "\n";
  } else {
    std::printf("perplexity %.4f  (%lld windows x %lld tokens, %zu text tokens, %.1f tokens/s)\n", r.ppl,
                (long long)r.windows, (long long)opts.seqlen, ids.size(), r.tokens_per_s);
  }
  return 0;
}


int cmd_profile(const std::string& model_path, const dptq::ProfileOptions& opts, const std::string& out,
                const std::string& device, bool as_json) {
  const dptq::Device dev = dptq::parse_device(device);
  if (out.empty()) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--out is required");
  if (opts.rotation != "none" && opts.rotation != "quarot")
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "unknown --rotation '" + opts.rotation + "' (expected none or quarot)");
  if (opts.samples < 1) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--samples must be at least 1");
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

json aggregate_json(const dptq::Aggregate& a) {
  return {{"mean", a.mean}, {"min", a.min}, {"max", a.max}, {"p1", a.p1}, {"p50", a.p50}, {"p99", a.p99}, {"count", a.count}};
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

int cmd_plan(const std::string& trace_path, dptq::PlanOptions opts, const std::string& out, bool as_json) {
  const dptq::Trace trace = dptq::read_trace(trace_path);
  opts.trace_path = trace_path;
  const dptq::Plan plan = dptq::make_plan(trace, opts);
  dptq::write_plan(plan, out);
  std::fprintf(stderr, "%s", dptq::plan_summary(plan).c_str());
  json selected = json::array();
  for (const auto& b : plan.blocks)
    if (b.selected) selected.push_back({{"block", b.index}, {"rank", b.rank}, {"reason", b.reason}});
  if (as_json) {
    std::cout << json{{"plan", out}, {"policy", opts.policy}, {"selected", selected}}.dump(2) << "\n";
  } else {
    std::printf("wrote %s: %lld of %lld blocks get 8-bit activations\n", out.c_str(), (long long)plan.n_selected(),
                (long long)plan.n_layers());
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

  dptq::PerplexityOptions popts;
  auto* ppl = app.add_subcommand("ppl", "Perplexity on a text file (GPTQ/QuaRot protocol: whole text tokenized once, "
                                         "non-overlapping windows, tail dropped)");
  ppl->add_option("MODEL", model_path, "GGUF file or HF folder")->required();
  ppl->add_option("--text", text_path, "UTF-8 text file (e.g. ../shared/data/wikitext-2-raw-test.txt)")->required();
  ppl->add_option("--seqlen", popts.seqlen, "Window length in tokens")->capture_default_str();
  ppl->add_option("--max-windows", popts.max_windows, "Evaluate only the first N windows (default: all)");
  ppl->add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  ppl->add_flag("--json", as_json, "Print one JSON object on stdout");

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

  dptq::PlanOptions plan_opts;
  std::string plan_out;
  auto* plan = app.add_subcommand("plan", "Choose the blocks that get 8-bit activations from a trace (a DynamicPTQ precision plan)");
  plan->add_option("TRACE", trace_path, "Trace file (.h5) from `dptq profile`")->required();
  plan->add_option("--policy", plan_opts.policy, "dynamicptq | hsnr | first-last | manual | random")->capture_default_str();
  auto* budget = plan->add_option("--budget", plan_opts.budget, "Number of blocks that get 8-bit activations");
  plan->add_option("--jr-threshold", plan_opts.jr_threshold, "dynamicptq: select every block with JR p99 >= X")->excludes(budget);
  plan->add_option("--blocks", plan_opts.manual_blocks, "manual: block indices")->delimiter(',');
  plan->add_option("--seed", plan_opts.seed, "random: seed");
  plan->add_option("--method", plan_opts.base_method, "Base method recorded in the plan (default: from the trace's rotation)");
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
    if (*ppl) return cmd_ppl(model_path, text_path, popts, device, as_json);
    if (*profile) return cmd_profile(model_path, prof, out_path, device, as_json);
    if (*report) return cmd_report(trace_path, as_json);
    if (*plan) return cmd_plan(trace_path, plan_opts, plan_out, as_json);
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

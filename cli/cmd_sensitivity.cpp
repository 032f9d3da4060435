// `dptq sensitivity` and `dptq report --proxies` (cli/commands.hpp; issue 12).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "commands.hpp"
#include "dptq/error.hpp"
#include "dptq/model.hpp"
#include "dptq/perplexity.hpp"
#include "dptq/plan.hpp"
#include "dptq/profiler.hpp"
#include "dptq/proxies.hpp"
#include "dptq/quantize.hpp"
#include "dptq/sensitivity.hpp"
#include "dptq/trace.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace dptq_cli {

namespace {

struct SensitivityArgs {
  std::string model_path, out, device = "cpu";
  std::string method = "quarot-rtn";
  dptq::SensitivityOptions s;
  bool sequential = false, blocks_only = false;
  dptq::QuantizeOptions q;  // GPTQ calibration: builtin, 8 x 2048 (the results' setting)
} g_args;

json num(double v) { return std::isfinite(v) ? json(v) : json(std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf")); }

void attach_progress(dptq::Progress& p, std::string label) { p.on_update = stderr_progress(std::move(label)); }

json entry_json(const dptq::SensitivityEntry& e) {
  return {{"nll_gain", num(e.nll_gain)}, {"nll_gain_se", num(e.nll_gain_se)}, {"kl_gain", num(e.kl_gain)},
          {"kl_gain_se", num(e.kl_gain_se)}};
}

}  // namespace

CLI::App* add_sensitivity_command(CLI::App& app, bool& as_json) {
  SensitivityArgs& a = g_args;
  auto* c = app.add_subcommand("sensitivity", "Measure how much each block (and each site) gains from 8-bit activations, "
                                              "everything else W4A4KV4; store it in a trace");
  c->add_option("MODEL", a.model_path, "GGUF file or HF folder")->required();
  c->add_option("--method", a.method, "Quantization: rtn | gptq | quarot-rtn | quarot-gptq")->capture_default_str();
  c->add_option("--calib", a.s.text, "Text to measure on: a UTF-8 file, or 'builtin' (assets/calibration)")->capture_default_str();
  c->add_option("--windows", a.s.windows, "Windows to measure on")->capture_default_str();
  c->add_option("--seqlen", a.s.seqlen, "Tokens per window")->capture_default_str();
  c->add_option("--seed", a.s.seed, "Window sampling seed (random crops)")->capture_default_str();
  c->add_flag("--sequential", a.sequential, "Use windows 0..N-1 of the text as `dptq ppl` cuts them (instead of random crops)");
  c->add_flag("--blocks-only", a.blocks_only, "Measure whole blocks only, not the four sites (5x faster)");
  c->add_option("--rotation-seed", a.q.rotation_seed, "Seed of the QuaRot random Hadamard rotations")->capture_default_str();
  c->add_option("--gptq-samples", a.q.calib_samples, "GPTQ calibration windows (builtin corpus)")->capture_default_str();
  c->add_option("--gptq-seqlen", a.q.calib_seqlen, "GPTQ calibration window length")->capture_default_str();
  c->add_option("--out", a.out, "Trace (.h5): an existing trace of this model gets the measurement added; "
                                "otherwise the model is profiled on the same text first")->required();
  c->add_option("--device", a.device, "cpu | cuda | auto")->capture_default_str();
  c->add_flag("--json", as_json, "Print one JSON object on stdout");
  return c;
}

int run_sensitivity_command(bool as_json) {
  SensitivityArgs a = g_args;
  // Cheap checks before the expensive loads.
  const dptq::Device dev = dptq::parse_device(a.device);
  if (!dptq::is_quant_method(a.method))
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "unknown --method '" + a.method + "' (known: " + dptq::quant_method_list() + ")");
  if (a.s.windows < 1) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--windows must be at least 1");
  if (a.s.seqlen < 2) throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--seqlen must be at least 2 (got " + std::to_string(a.s.seqlen) + ")");
  if (a.s.text != "builtin") {
    const std::string text = dptq::read_text_file(a.s.text);
    if (text.find_first_not_of(" \t\r\n") == std::string::npos)
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, a.s.text, "text is empty");
  }
  a.s.window_mode = a.sequential ? "sequential" : "random";
  a.s.sites = !a.blocks_only;
  a.q.method = a.method;
  const dptq::ModelInfo info = dptq::inspect_model(a.model_path);
  if (info.format == "dptq-quantized")
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, a.model_path, "is a quantized checkpoint; give the FP model");
  std::optional<dptq::Trace> existing;
  if (fs::exists(a.out)) {
    existing = dptq::read_trace(a.out);
    if (existing->meta.model_fingerprint != info.fingerprint)
      throw dptq::Error(dptq::ErrorKind::InvalidArgument, a.out, "trace was recorded for model " +
                        existing->meta.model_fingerprint.substr(0, 12) + "…, not " + info.fingerprint.substr(0, 12) + "…");
  }

  std::fprintf(stderr, "[sensitivity] loading %s (FP reference and %s copy)\n", a.model_path.c_str(), a.method.c_str());
  const dptq::Model fp = dptq::load_model(a.model_path, {dev});
  const auto windows = dptq::sensitivity_windows(fp, a.s);  // fails early for a short text
  dptq::Trace trace;
  if (existing) {
    trace = std::move(*existing);
  } else {
    dptq::ProfileOptions po;
    po.calib = a.s.text;
    po.samples = a.s.windows;
    po.seqlen = a.s.seqlen;
    po.seed = a.s.seed;
    po.rotation = a.method.rfind("quarot-", 0) == 0 ? "quarot" : "none";
    po.rotation_seed = a.q.rotation_seed;
    dptq::Progress pp;
    attach_progress(pp, "profile");
    trace = dptq::profile_model(fp, po, &pp);
  }
  dptq::Model quant = dptq::load_model(a.model_path, {dev});
  {
    dptq::Progress qp;
    attach_progress(qp, "quantize " + a.method);
    dptq::quantize_model(quant, dptq::uniform_plan(quant, a.method, 4), a.q, &qp);
  }
  dptq::Progress progress;
  attach_progress(progress, "sensitivity");
  const auto t0 = std::chrono::steady_clock::now();
  dptq::Sensitivity s = dptq::measure_sensitivity(fp, quant, windows, a.s.sites, &progress);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.method = a.method;
  s.text_source = a.s.text;
  s.window_mode = a.s.window_mode;
  s.seed = a.sequential ? 0 : a.s.seed;
  trace.sensitivity = s;
  trace.has_sensitivity = true;
  dptq::write_trace(trace, a.out);

  std::vector<size_t> order(s.block.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return s.block[i].nll_gain > s.block[j].nll_gain; });
  if (as_json) {
    json blocks = json::array();
    for (size_t l = 0; l < s.block.size(); ++l) {
      json b = entry_json(s.block[l]);
      b["block"] = l;
      if (s.has_sites)
        for (int k = 0; k < dptq::kNumPlanSites; ++k) b["sites"][dptq::kSiteNames[size_t(k)]] = entry_json(s.site[l][size_t(k)]);
      blocks.push_back(b);
    }
    std::cout << json{{"trace", a.out}, {"method", s.method}, {"text", s.text_source}, {"window_mode", s.window_mode},
                      {"windows", s.windows}, {"seqlen", s.seqlen}, {"tokens", s.tokens}, {"seconds", secs},
                      {"fp_nll", s.fp_nll}, {"base_nll", s.base_nll}, {"base_kl", s.base_kl},
                      {"ranking", order}, {"blocks", blocks}}.dump(2) << "\n";
  } else {
    std::printf("wrote %s: %s, %lld windows x %lld tokens (%s), %.0f s\n", a.out.c_str(), s.method.c_str(),
                (long long)s.windows, (long long)s.seqlen, s.window_mode.c_str(), secs);
    std::printf("mean NLL: FP %.4f, W4A4KV4 %.4f; KL(FP||W4A4KV4) %.4f\n", s.fp_nll, s.base_nll, s.base_kl);
    std::printf("%5s %11s %9s %11s %9s%s\n", "block", "NLL gain", "+-se", "KL gain", "+-se",
                s.has_sites ? "   NLL gain by site: qkv o gate_up down" : "");
    for (size_t l : order) {
      const auto& e = s.block[l];
      std::printf("%5zu %11.5f %9.5f %11.5f %9.5f", l, e.nll_gain, e.nll_gain_se, e.kl_gain, e.kl_gain_se);
      if (s.has_sites)
        for (int k = 0; k < dptq::kNumPlanSites; ++k) std::printf(" %9.5f", s.site[l][size_t(k)].nll_gain);
      std::printf("\n");
    }
  }
  return 0;
}

int cmd_report_proxies(const std::string& trace_path, const std::string& gain_metric, int64_t permutations, bool as_json) {
  const dptq::Trace t = dptq::read_trace(trace_path);
  if (!t.has_sensitivity)
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, trace_path, "holds no measured sensitivity (run `dptq sensitivity MODEL --out " +
                      trace_path + "`)");
  const std::vector<double> gain = dptq::sensitivity_gain(t, gain_metric);
  const auto metrics = dptq::block_metrics(t);
  const std::vector<dptq::ProxyRow> rows = dptq::screen_proxies(metrics, gain, permutations, 0);
  const dptq::Sensitivity& s = t.sensitivity;
  if (as_json) {
    json jr = json::array();
    for (const auto& r : rows)
      jr.push_back({{"metric", r.metric}, {"spearman", num(r.spearman)}, {"kendall", num(r.kendall)},
                    {"p_spearman", r.p_spearman}, {"p_kendall", r.p_kendall}, {"p_bonferroni", r.p_bonferroni}});
    std::cout << json{{"trace", trace_path}, {"gain", gain_metric}, {"method", s.method}, {"text", s.text_source},
                      {"window_mode", s.window_mode}, {"windows", s.windows}, {"seqlen", s.seqlen},
                      {"permutations", permutations}, {"default_score", std::string("score/") + dptq::kDefaultDynamicsScore},
                      {"measured_gain", gain}, {"metrics", jr}}.dump(2) << "\n";
    return 0;
  }
  std::printf("trace %s\nmeasured %s gain (%s, %s, %lld windows x %lld tokens, %s) against %zu per-block metrics; "
              "two-sided permutation p over %lld shuffles\n",
              trace_path.c_str(), gain_metric.c_str(), s.method.c_str(), s.text_source.c_str(), (long long)s.windows,
              (long long)s.seqlen, s.window_mode.c_str(), rows.size(), (long long)permutations);
  std::printf("%-44s %9s %8s %9s %8s %9s\n", "metric", "Spearman", "p", "Kendall", "p", "p x n");
  for (const auto& r : rows)
    std::printf("%-44s %+9.3f %8.4f %+9.3f %8.4f %9.3f%s\n", r.metric.c_str(), r.spearman, r.p_spearman, r.kendall,
                r.p_kendall, r.p_bonferroni, r.metric == std::string("score/") + dptq::kDefaultDynamicsScore ? "  <- dynamicptq" : "");
  return 0;
}

}  // namespace dptq_cli

// "Evaluate" panel: perplexity of the loaded model on a text file (dptq::perplexity, the
// GPTQ/QuaRot protocol) as it is (FP), under uniform W4A4KV4, or under W4A4KV4 with the Plan
// panel's 8-bit blocks; a budget sweep draws the perplexity-vs-budget curve; zero-shot accuracy of
// the same configurations on chosen tasks (dptq::evaluate_zeroshot), side by side; the quantized
// model of the last run can be saved as a real int4 checkpoint. Everything runs as cancellable background
// tasks. The quantized copy of the model is kept between runs: a new plan only swaps activation
// bits (dptq::set_activation_plan), it does not quantize the weights again.
#include <imgui.h>
#include <implot.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "../file_dialog.hpp"
#include "../studio.hpp"
#include "../widgets.hpp"
#include "dptq/error.hpp"
#include "dptq/perplexity.hpp"
#include "dptq/quantize.hpp"
#include "dptq/zeroshot.hpp"

namespace dptq::studio {
namespace {

using Ids = std::vector<int32_t>;

enum Config : int { kFp = 0, kUniform = 1, kWithPlan = 2 };
constexpr const char* kConfigNames[] = {"FP (as loaded)", "W4A4KV4", "W4A4KV4 + plan"};
constexpr const char* kConfigHelp[] = {
    "The model as loaded, unquantized.",
    "Weights, activations and KV cache at 4 bits in every block (the chosen method).",
    "W4A4KV4 with 8-bit activations in the blocks of the Plan panel's plan."};
constexpr const char* kMethods[] = {"quarot-rtn", "quarot-gptq", "rtn", "gptq"};

// One evaluation of a run: what it measured with.
struct Step {
  Config config = kFp;
  std::optional<dptq::Plan> plan;  // quantized configs
  int64_t budget = -1;             // blocks with 8-bit activations (-1: FP)
};

// What one evaluation measured.
struct RunRecord {
  std::string model_name, text_name;
  int64_t seqlen = 0;
  std::string config;  // "FP" or quant_summary()
  std::string series;  // "quarot-rtn / dynamicptq"
  int64_t budget = -1;
  int64_t sweep = 0;   // sweep number (1, 2, ...) of a sweep point; 0 for single runs
  dptq::PerplexityResult result;
};

// What one zero-shot run measured: one configuration, the chosen tasks.
struct ZeroShotRecord {
  std::string config;  // "FP" or quant_summary()
  std::string series;  // "quarot-rtn / dynamicptq"
  int64_t limit = -1;
  std::vector<dptq::ZeroShotResult> results;
};

// Zero-shot request of a run (empty tasks: perplexity).
struct ZeroShotRequest {
  std::vector<std::string> tasks;
  int64_t limit = -1;
};

// A quantized copy of the loaded model, reused while the model and method stay the same.
struct QuantCopy {
  std::shared_ptr<dptq::Model> model;
  std::string key;  // fingerprint | path | method
};

// Shared between the worker and the panel. The worker writes; the panel reads `done` under the
// mutex at any time (live sweep curve), the other fields after the task finished.
struct EvalSlot {
  std::shared_ptr<const Ids> ids;  // tokens of the text (kept for the next run)
  QuantCopy quant;                 // in: the cached copy; out: the copy used
  std::mutex mu;
  std::vector<RunRecord> done;
  std::vector<ZeroShotRecord> zs_done;
  std::atomic<int64_t> eval_start_ns{0};    // steady clock at the first forward pass of a step
  std::atomic<int64_t> expected_windows{0}; // windows each step scores
  std::atomic<int> step{0};                 // step being evaluated (0-based)
};

struct RunKey {
  std::string model_fingerprint;
  std::string text_path;
  std::filesystem::file_time_type text_mtime;
  bool operator==(const RunKey&) const = default;
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

// "0,1,2,4,8" -> {0, 1, 2, 4, 8}; empty on a malformed list or a value outside 0..max.
std::vector<int64_t> parse_budgets(const std::string& text, int64_t max) {
  std::vector<int64_t> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    const std::string item = text.substr(i, j - i);
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0 || v > max) return {};
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
    i = j + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

class EvaluatePanel final : public Panel {
 public:
  explicit EvaluatePanel(const Options& o)
      : text_path_(o.text_path), seqlen_(static_cast<int>(o.seqlen)),
        max_windows_(static_cast<int>(o.max_windows)), auto_run_(o.eval_on_load),
        config_(o.eval_config == "plan" ? kWithPlan : o.eval_config == "w4a4kv4" ? kUniform : kFp) {
    for (int i = 0; i < IM_ARRAYSIZE(kMethods); ++i)
      if (o.eval_method == kMethods[i]) method_ = i;
    if (!o.sweep_budgets.empty()) {
      budgets_text_ = o.sweep_budgets;
      sweep_on_load_ = o.eval_on_load;
    }
    zs_limit_ = static_cast<int>(o.zeroshot_limit);
    if (!o.zeroshot_tasks.empty()) {
      const auto& names = dptq::zeroshot_task_names();
      for (size_t t = 0; t < names.size(); ++t)
        zs_pick_[t] = ("," + o.zeroshot_tasks + ",").find("," + names[t] + ",") != std::string::npos;
      zeroshot_on_load_ = o.eval_on_load;
    }
  }
  const char* title() const override { return "Evaluate"; }
  void draw(Studio& studio) override;
  void update(Studio& studio) override;
  bool has_pending_work(const Studio& studio) const override {
    return auto_run_ && studio.model() != nullptr;  // --eval starts once the model (and trace) is ready
  }

 private:
  void draw_inputs(Studio& studio);
  void draw_progress();
  void draw_result();
  void draw_sweep();
  void draw_export(Studio& studio);
  void start(Studio& studio, std::vector<Step> steps, std::string series, bool sweep = false, ZeroShotRequest zs = {});
  void start_single(Studio& studio, bool zeroshot = false);
  void draw_zeroshot(Studio& studio);
  void start_sweep(Studio& studio);
  void start_export(Studio& studio);
  void collect();
  std::string quant_key(const dptq::Model& model) const;
  std::optional<double> fp_ppl_for(const RunRecord& r) const;

  std::string text_path_;
  int seqlen_ = 2048;
  int max_windows_ = -1;
  bool auto_run_ = false;
  bool sweep_on_load_ = false;  // --eval --sweep: the automatic run is a sweep
  bool zeroshot_on_load_ = false;  // --eval --zeroshot: the automatic run is zero-shot
  bool zs_pick_[7] = {true, true, true, true, true, true, true};  // zeroshot_task_names() order
  int zs_limit_ = 100;
  std::vector<ZeroShotRecord> zs_history_;
  int config_ = kFp, method_ = 0;
  std::string budgets_text_ = "0,1,2,4,8";
  FileDialog dialog_;
  std::string dialog_error_;

  std::shared_ptr<Task> task_;
  std::shared_ptr<EvalSlot> slot_;
  bool exporting_ = false;
  int steps_total_ = 0;
  int64_t sweeps_ = 0;  // sweeps started (numbers the sweep points)
  size_t sweep_plotted_ = 0;  // history_.size() when the sweep plot was last fitted
  RunKey pending_key_;
  std::string error_, note_, ok_;
  std::vector<RunRecord> history_;
  RunKey ids_key_;  // which (model, text) cached_ids_ belong to
  std::shared_ptr<const Ids> cached_ids_;
  QuantCopy quant_;  // the quantized copy of the last quantized run (a running task may modify it)
  std::string quant_text_;  // quant_summary of quant_ after that run (read on the UI thread)
  std::string export_path_;
  std::string export_suggested_;  // the last path proposed (replaced only while unedited)
  std::string export_target_;     // folder the running export writes
};

void EvaluatePanel::update(Studio& studio) {
  collect();
  if (auto_run_ && !studio.tasks().busy()) {
    // --eval: run once the start-up load succeeded; forget it if that load failed.
    // A plan needs the trace (--trace) first: wait while it is being opened.
    const bool needs_plan = config_ == kWithPlan || sweep_on_load_;
    if (needs_plan && !studio.workspace().plan && studio.workspace().trace_coming) return;
    if (studio.model()) sweep_on_load_ ? start_sweep(studio) : start_single(studio, zeroshot_on_load_);
    auto_run_ = false;
  }
}

void EvaluatePanel::draw(Studio& studio) {
  if (auto chosen = dialog_.poll()) text_path_ = *chosen;
  draw_inputs(studio);
  draw_progress();
  if (!error_.empty()) ui::error_text(error_);
  if (!note_.empty()) ui::muted_text(note_);
  if (!ok_.empty()) ui::ok_text(ok_);
  draw_sweep();
  draw_result();
  draw_zeroshot(studio);
  draw_export(studio);
}

void EvaluatePanel::draw_zeroshot(Studio& studio) {
  ImGui::SeparatorText("Zero-shot");
  const auto& names = dptq::zeroshot_task_names();
  for (size_t t = 0; t < names.size(); ++t) {
    if (t > 0) ImGui::SameLine();
    ImGui::Checkbox(names[t].c_str(), &zs_pick_[t]);
  }
  ui::tooltip("lm-evaluation-harness 0.4.9's zero-shot tasks and metrics (docs/zeroshot.md), read from "
              "../shared/data/zeroshot.");
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 8.0f);
  if (ImGui::InputInt("Items per task", &zs_limit_, 50, 500)) zs_limit_ = std::max(zs_limit_, -1);
  ui::tooltip("The first N items of each task (in file order); -1 scores every item (HellaSwag alone is 10,042).");
  if (zs_limit_ == 0) zs_limit_ = 1;
  ImGui::SameLine();
  const bool any = std::any_of(std::begin(zs_pick_), std::end(zs_pick_), [](bool b) { return b; });
  ImGui::BeginDisabled(!studio.model() || studio.tasks().busy() || !any);
  if (ImGui::Button("Run zero-shot")) start_single(studio, true);
  ImGui::EndDisabled();
  ui::tooltip("Scores the chosen tasks with the configuration chosen above (FP, W4A4KV4, W4A4KV4 + plan).");
  if (zs_history_.empty()) return;
  const ImGuiTableFlags flags = ImGuiTableFlags_Borders | ImGuiTableFlags_RowBg | ImGuiTableFlags_SizingFixedFit;
  const int cols = int(names.size()) + 2;
  if (ImGui::BeginTable("zeroshot", cols, flags)) {
    ImGui::TableSetupColumn("configuration");
    for (const auto& n : names) ImGui::TableSetupColumn(n.c_str());
    ImGui::TableSetupColumn("average");
    ImGui::TableHeadersRow();
    for (const ZeroShotRecord& r : zs_history_) {
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(r.series.c_str());
      ui::tooltip((r.config + (r.limit > 0 ? "; first " + std::to_string(r.limit) + " items per task" : "; every item")).c_str());
      double sum = 0;
      for (const auto& n : names) {
        ImGui::TableNextColumn();
        const auto it = std::find_if(r.results.begin(), r.results.end(), [&](const auto& x) { return x.task == n; });
        if (it == r.results.end()) {
          ImGui::TextDisabled("-");
          continue;
        }
        const double v = it->has_acc_norm ? it->acc_norm : it->acc;
        sum += v;
        ImGui::Text("%.1f", 100 * v);
        char tip[160];
        std::snprintf(tip, sizeof tip, "%s %.4f ± %.4f over %lld items%s", it->has_acc_norm ? "acc_norm" : "acc", v,
                      it->has_acc_norm ? it->acc_norm_stderr : it->acc_stderr, static_cast<long long>(it->n),
                      it->has_ppl ? (", LAMBADA ppl " + std::to_string(it->ppl).substr(0, 6)).c_str() : "");
        ui::tooltip(tip);
      }
      ImGui::TableNextColumn();
      ImGui::Text("%.2f", 100 * sum / double(std::max<size_t>(1, r.results.size())));
    }
    ImGui::EndTable();
  }
}

std::string EvaluatePanel::quant_key(const dptq::Model& model) const {
  return model.info().fingerprint + "|" + model.info().path.string() + "|" + kMethods[method_];
}

void EvaluatePanel::draw_inputs(Studio& studio) {
  ImGui::SeparatorText("Perplexity");
  ui::path_field("text", text_path_,
                 "UTF-8 text file to score, tokenized whole (default: the WikiText-2 raw test split).",
                 dialog_, "Choose an evaluation text", {"Text files (*.txt)", "*.txt", "All files", "*"},
                 dialog_error_);

  const float field_w = ImGui::GetFontSize() * 8.0f;
  ImGui::SetNextItemWidth(field_w);
  if (ImGui::InputInt("Sequence length", &seqlen_, 128, 512)) seqlen_ = std::max(seqlen_, 2);
  ui::tooltip("Tokens per non-overlapping window; 2048 is the protocol of the GPTQ/QuaRot papers.");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(field_w);
  if (ImGui::InputInt("Max windows", &max_windows_, 1, 10)) max_windows_ = std::max(max_windows_, -1);
  ui::tooltip("Score only the first N windows for a quick estimate; -1 scores the whole text.");
  if (max_windows_ < 0) {
    ImGui::SameLine();
    ImGui::TextDisabled("(all)");
  }

  const auto model = studio.model();
  const bool model_quantized = model && dptq::is_quantized(*model);
  const bool has_plan = studio.workspace().plan.has_value();
  for (int c = 0; c < 3; ++c) {
    if (c > 0) ImGui::SameLine();
    const bool usable = c == kFp || (!model_quantized && (c != kWithPlan || has_plan));
    ImGui::BeginDisabled(!usable);
    if (ImGui::RadioButton(kConfigNames[c], config_ == c)) config_ = c;
    ImGui::EndDisabled();
    ui::tooltip(model_quantized && c != kFp ? "The loaded model is already a quantized checkpoint: it runs with "
                                              "the quantizers it records (choose FP)."
                : c == kWithPlan && !has_plan ? "Make a plan first: open or compute a trace (Calibration panel)."
                                              : kConfigHelp[c]);
  }
  ImGui::BeginDisabled(config_ == kFp && !has_plan);
  ImGui::SetNextItemWidth(field_w * 1.2f);
  ImGui::Combo("Method", &method_, kMethods, IM_ARRAYSIZE(kMethods));
  ImGui::EndDisabled();
  ui::tooltip("How the weights are quantized: QuaRot rotations (or none) with round-to-nearest or GPTQ "
              "(GPTQ calibrates on 8 x 2048 tokens of the built-in text first). The first quantized run "
              "copies and quantizes the model; later runs with the same method reuse that copy.");

  const bool running = task_ && !task_->finished();
  const bool can_run = model && !studio.tasks().busy();
  ImGui::BeginDisabled(!can_run);
  if (ImGui::Button("Run")) start_single(studio);
  ImGui::EndDisabled();
  ui::tooltip(!model ? "Load a model in the Model & data panel first."
              : studio.tasks().busy() ? "Another background task is running."
                                      : "Compute the perplexity in the background.");
  ImGui::SameLine();
  ImGui::BeginDisabled(!running || exporting_);
  if (ImGui::Button("Cancel")) task_->progress().cancel();
  ImGui::EndDisabled();
  ui::tooltip("Stop after the window being computed; finished sweep points are kept.");

  // Budget sweep: the Plan panel's policy at several budgets.
  ImGui::SameLine();
  ImGui::TextDisabled("|");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(field_w);
  ui::input_text("##budgets", budgets_text_);
  ui::tooltip("Budgets of the sweep: blocks with 8-bit activations, comma-separated (0 = uniform W4A4KV4).");
  ImGui::SameLine();
  const bool can_sweep = can_run && has_plan && !model_quantized;
  ImGui::BeginDisabled(!can_sweep);
  if (ImGui::Button("Sweep budgets")) start_sweep(studio);
  ImGui::EndDisabled();
  ui::tooltip(!has_plan ? "Needs a trace (Calibration panel): the Plan panel's policy picks the blocks."
                        : "Evaluate the Plan panel's policy at each budget with the method above and draw "
                          "perplexity against budget (FP of the same windows first, if this session has not "
                          "measured it yet). Each point is one full evaluation: use Max windows for a quick curve.");
}

void EvaluatePanel::draw_progress() {
  if (!task_ || task_->finished()) return;
  const auto snap = task_->progress().snapshot();
  const int64_t start = slot_->eval_start_ns.load();
  const int64_t windows = slot_->expected_windows.load();
  std::string overlay = snap.stage.empty() ? "starting" : snap.stage;
  if (steps_total_ > 1) overlay = "point " + std::to_string(slot_->step.load() + 1) + "/" +
                                  std::to_string(steps_total_) + ": " + overlay;
  if (start == 0 || snap.total <= 0) {
    ImGui::ProgressBar(-1.0f * static_cast<float>(ImGui::GetTime()), ImVec2(-FLT_MIN, 0), overlay.c_str());
  } else {
    // The core counts either windows or tokens; both are normalised to tokens for the rate.
    const int64_t tokens_done = snap.total == windows ? snap.done * seqlen_ : snap.done;
    const double secs = static_cast<double>(now_ns() - start) * 1e-9;
    if (tokens_done > 0 && secs > 0 && snap.total == windows) {
      char rate[64];
      std::snprintf(rate, sizeof rate, "  |  %.0f tok/s", static_cast<double>(tokens_done) / secs);
      overlay += rate;
    }
    ImGui::ProgressBar(static_cast<float>(snap.done) / static_cast<float>(snap.total), ImVec2(-FLT_MIN, 0),
                       overlay.c_str());
  }
  ui::tooltip("Stage reported by the core and the throughput of the forward passes so far.");
  ui::muted_text("Elapsed " + ui::human_seconds(task_->seconds()));
}

std::optional<double> EvaluatePanel::fp_ppl_for(const RunRecord& r) const {
  for (auto it = history_.rbegin(); it != history_.rend(); ++it)
    if (it->budget < 0 && it->model_name == r.model_name && it->text_name == r.text_name &&
        it->seqlen == r.seqlen && it->result.windows == r.result.windows)
      return it->result.ppl;
  return std::nullopt;
}

void EvaluatePanel::draw_result() {
  if (history_.empty()) return;
  const RunRecord& last = history_.back();
  const auto& r = last.result;
  ImGui::Spacing();
  ImGui::SeparatorText("Result");
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV |
                                ImGuiTableFlags_SizingStretchProp;
  if (ImGui::BeginTable("result", 2, flags)) {
    ImGui::TableSetupColumn("Field", ImGuiTableColumnFlags_WidthFixed);
    ImGui::TableSetupColumn("Value", ImGuiTableColumnFlags_WidthStretch);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4f", r.ppl);
    ui::field_row("Perplexity", "exp of the mean negative log-likelihood per predicted token; lower is better.", buf);
    ui::field_row("Configuration", "What was evaluated: FP, or the quantization method, bits and 8-bit blocks.",
                  last.config);
    std::snprintf(buf, sizeof buf, "%.5f nats", r.nll_mean);
    ui::field_row("Mean NLL", "Average negative log-likelihood of each predicted token, in nats.", buf);
    ui::field_row("Windows", "Non-overlapping windows scored; the incomplete tail of the text is dropped.",
                  ui::grouped(r.windows));
    ui::field_row("Tokens", "Tokens fed to the model (windows x sequence length).", ui::grouped(r.tokens));
    ui::field_row("Predicted", "Tokens whose likelihood was scored (the first of each window has no context).",
                  ui::grouped(r.predicted));
    ui::field_row("Time", "Wall time of the forward passes (tokenizing and quantizing excluded).",
                  ui::human_seconds(r.seconds));
    std::snprintf(buf, sizeof buf, "%.0f tok/s", r.tokens_per_s);
    ui::field_row("Throughput", "Tokens per second of the forward passes.", buf);
    ui::field_row("Text", "File the perplexity was computed on.", last.text_name);
    ImGui::EndTable();
  }
  if (history_.size() < 2) return;
  ImGui::Spacing();
  ImGui::SeparatorText("Runs");
  const ImGuiTableFlags tflags = ImGuiTableFlags_RowBg | ImGuiTableFlags_Borders |
                                 ImGuiTableFlags_SizingStretchProp | ImGuiTableFlags_ScrollY;
  const float h = ImGui::GetTextLineHeightWithSpacing() * static_cast<float>(std::min<size_t>(history_.size(), 8) + 1.5);
  if (ImGui::BeginTable("runs", 6, tflags, ImVec2(0, h))) {
    ImGui::TableSetupScrollFreeze(0, 1);
    ImGui::TableSetupColumn("Configuration", ImGuiTableColumnFlags_WidthStretch, 3.0f);
    ImGui::TableSetupColumn("Text");
    ImGui::TableSetupColumn("Seqlen");
    ImGui::TableSetupColumn("Windows");
    ImGui::TableSetupColumn("PPL");
    ImGui::TableSetupColumn("vs FP");
    ImGui::TableHeadersRow();
    for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
      ImGui::TableNextRow();
      ImGui::TableNextColumn(); ImGui::TextUnformatted(it->config.c_str());
      ImGui::TableNextColumn(); ImGui::TextUnformatted(it->text_name.c_str());
      ImGui::TableNextColumn(); ImGui::Text("%lld", static_cast<long long>(it->seqlen));
      ImGui::TableNextColumn(); ImGui::Text("%lld", static_cast<long long>(it->result.windows));
      ImGui::TableNextColumn(); ImGui::Text("%.4f", it->result.ppl);
      ImGui::TableNextColumn();
      if (const auto fp = fp_ppl_for(*it); fp && it->budget >= 0) ImGui::Text("x%.3f", it->result.ppl / *fp);
    }
    ImGui::EndTable();
  }
  ui::tooltip("vs FP: perplexity relative to the FP run on the same text, window length and window count.");
}

// Perplexity against budget, one curve per sweep (a later sweep with the same method, policy,
// model, text and windows replaces the earlier); FP of the same windows as a horizontal line.
void EvaluatePanel::draw_sweep() {
  std::map<std::string, std::vector<const RunRecord*>> curves;
  const RunRecord* latest = nullptr;
  for (const RunRecord& r : history_) {
    if (r.sweep == 0 || r.budget < 0) continue;  // FP is the horizontal line
    // Label "method / policy (windows x seqlen)"; the hidden part keeps curves of other models and
    // texts apart.
    const std::string key = r.series + " (" + std::to_string(r.result.windows) + " x " + std::to_string(r.seqlen) +
                            ")##" + r.model_name + "|" + r.text_name;
    auto& pts = curves[key];
    if (!pts.empty() && pts.back()->sweep != r.sweep) pts.clear();  // a newer sweep of the same curve
    pts.push_back(&r);
    latest = &r;
  }
  size_t points = 0;
  for (const auto& [name, pts] : curves) points = std::max(points, pts.size());
  if (points < 2) return;
  ImGui::Spacing();
  ImGui::SeparatorText("Perplexity vs budget");
  const std::optional<double> fp = latest ? fp_ppl_for(*latest) : std::nullopt;
  // Limits with a margin that include the FP line (auto-fit ignores it); refitted when a point
  // arrives, free to zoom between.
  double x_hi = 1, y_lo = INFINITY, y_hi = -INFINITY;
  for (const auto& [name, pts] : curves)
    for (const RunRecord* r : pts) {
      x_hi = std::max(x_hi, double(r->budget));
      y_lo = std::min(y_lo, r->result.ppl);
      y_hi = std::max(y_hi, r->result.ppl);
    }
  if (fp) y_lo = std::min(y_lo, *fp);
  const double pad = 0.06 * (y_hi - y_lo) + 1e-3;
  const bool refit = history_.size() != sweep_plotted_;
  sweep_plotted_ = history_.size();
  if (!ImPlot::BeginPlot("##sweep", ImVec2(-1, ImGui::GetFontSize() * 14), ImPlotFlags_NoMouseText)) return;
  ImPlot::SetupAxes("blocks with 8-bit activations", "perplexity");
  ImPlot::SetupAxesLimits(-0.3, x_hi + 0.3, y_lo - pad, y_hi + pad, refit ? ImPlotCond_Always : ImPlotCond_Once);
  ImPlot::SetupLegend(ImPlotLocation_East);  // the curves run high and FP low: the middle is free
  ImPlotSpec spec;
  spec.Marker = ImPlotMarker_Circle;
  spec.MarkerSize = 3.0f;
  for (auto& [name, pts] : curves) {
    std::vector<double> xs, ys;
    for (const RunRecord* r : pts) {
      xs.push_back(double(r->budget));
      ys.push_back(r->result.ppl);
    }
    ImPlot::PlotLine(name.c_str(), xs.data(), ys.data(), int(xs.size()), spec);
  }
  if (fp) {
    ImPlotSpec line;
    line.Flags = ImPlotInfLinesFlags_Horizontal;
    ImPlot::PlotInfLines("FP (same windows)", &*fp, 1, line);
  }
  ImPlot::EndPlot();
}

void EvaluatePanel::draw_export(Studio& studio) {
  if (!quant_.model) return;
  ImGui::Spacing();
  ImGui::SeparatorText("Quantized checkpoint");
  ui::muted_text("Last quantized run: " + quant_text_);
  const float button_w = ImGui::CalcTextSize("Save checkpoint").x + ImGui::GetStyle().FramePadding.x * 2;
  ImGui::SetNextItemWidth(-(button_w + ImGui::GetStyle().ItemSpacing.x));
  ui::input_text("##ckpt-path", export_path_);
  ui::tooltip("Folder to create (it must not exist; its parent must): packed int4 weights, fp16 scales, "
              "quant_config.json with the rotations and the plan (docs/checkpoint-format.md). Written to a "
              "temporary folder and renamed.");
  ImGui::SameLine();
  ImGui::BeginDisabled(studio.tasks().busy() || export_path_.empty());
  if (ImGui::Button("Save checkpoint")) start_export(studio);
  ImGui::EndDisabled();
  ui::tooltip("Write the model of the last quantized run; `dptq ppl FOLDER` measures the same perplexity.");
}

void EvaluatePanel::start(Studio& studio, std::vector<Step> steps, std::string series, bool sweep, ZeroShotRequest zs) {
  auto model = studio.model();
  if (!model || steps.empty()) return;
  const int n_steps = int(steps.size());
  error_.clear();
  note_.clear();
  ok_.clear();
  std::error_code ec;
  RunKey key{model->info().fingerprint, text_path_, std::filesystem::last_write_time(text_path_, ec)};

  auto slot = std::make_shared<EvalSlot>();
  slot->ids = (cached_ids_ && key == ids_key_) ? cached_ids_ : nullptr;
  const std::string qkey = quant_key(*model);
  if (quant_.key == qkey) slot->quant = quant_;
  const dptq::PerplexityOptions opts{.seqlen = seqlen_, .max_windows = max_windows_};
  RunRecord base{model->info().name, std::filesystem::path(text_path_).filename().string(), seqlen_, "FP", series, -1,
                 sweep ? ++sweeps_ : 0, {}};
  dptq::QuantizeOptions qopts;
  qopts.method = kMethods[method_];
  auto task = studio.tasks().start(
      steps.size() > 1 ? "Sweeping" : "Evaluating",
      [model, slot, opts, qopts, qkey, base, zs, steps = std::move(steps), path = text_path_](dptq::Progress& progress) {
        std::vector<dptq::ZeroShotTask> tasks;  // read before any quantization: bad data fails fast
        for (const std::string& t : zs.tasks) {
          progress.set_stage("reading " + t);
          tasks.push_back(dptq::load_zeroshot_task(dptq::default_zeroshot_dir(), t, zs.limit));
        }
        if (tasks.empty() && !slot->ids) {
          progress.set_stage("reading text");
          const std::string text = dptq::read_text_file(path);
          progress.throw_if_cancelled();
          progress.set_stage("tokenizing " + std::to_string(text.size() / 1024) + " KiB");
          slot->ids = std::make_shared<const Ids>(model->tokenizer().encode(text, true));
          progress.throw_if_cancelled();
        }
        int64_t windows = opts.seqlen > 0 && slot->ids ? static_cast<int64_t>(slot->ids->size()) / opts.seqlen : 0;
        if (opts.max_windows >= 0) windows = std::min(windows, opts.max_windows);
        slot->expected_windows.store(windows);
        for (size_t i = 0; i < steps.size(); ++i) {
          const Step& s = steps[i];
          slot->step.store(int(i));
          slot->eval_start_ns.store(0);
          const dptq::Model* m = model.get();
          RunRecord rec = base;
          rec.budget = s.budget;
          if (s.config != kFp) {
            if (!slot->quant.model) {  // first quantized run with this model and method
              progress.set_stage("loading a copy to quantize");
              auto copy = std::make_shared<dptq::Model>(dptq::load_model(model->info().path, dptq::load_options_of(*model)));
              dptq::quantize_model(*copy, *s.plan, qopts, &progress, "plan");
              slot->quant = QuantCopy{std::move(copy), qkey};
            } else {
              dptq::set_activation_plan(*slot->quant.model, *s.plan, "plan");
            }
            m = slot->quant.model.get();
            rec.config = dptq::quant_summary(*m);
          }
          if (!tasks.empty()) {
            slot->eval_start_ns.store(now_ns());  // the bar shows items of the current task
            ZeroShotRecord z{rec.config, rec.series, zs.limit, {}};
            for (const dptq::ZeroShotTask& t : tasks) z.results.push_back(dptq::evaluate_zeroshot(*m, t, {}, &progress));
            std::lock_guard lock(slot->mu);
            slot->zs_done.push_back(std::move(z));
            continue;
          }
          progress.set_stage("scoring");
          slot->eval_start_ns.store(now_ns());
          rec.result = dptq::perplexity(*m, *slot->ids, opts, &progress);
          std::lock_guard lock(slot->mu);
          slot->done.push_back(std::move(rec));
        }
      });
  if (!task) {
    error_ = "busy: another background task is running";
    return;
  }
  task_ = std::move(task);
  slot_ = std::move(slot);
  exporting_ = false;
  steps_total_ = n_steps;
  pending_key_ = std::move(key);
}

// One evaluation of the chosen configuration.
void EvaluatePanel::start_single(Studio& studio, bool zeroshot) {
  auto model = studio.model();
  if (!model) return;
  const auto& plan = studio.workspace().plan;
  if (config_ != kFp && dptq::is_quantized(*model)) {
    error_ = "the loaded model is already quantized: evaluate it as loaded (FP)";
    std::fprintf(stderr, "dptq-studio: %s\n", error_.c_str());
    return;
  }
  if (config_ == kWithPlan && !plan) {
    error_ = "no plan: open or compute a trace in the Calibration panel first";
    std::fprintf(stderr, "dptq-studio: %s\n", error_.c_str());
    return;
  }
  Step s;
  s.config = Config(config_);
  if (config_ == kUniform) {
    s.plan = dptq::uniform_plan(*model, kMethods[method_]);
    s.budget = 0;
  } else if (config_ == kWithPlan) {
    s.plan = *plan;
    s.budget = s.plan->n_selected();
  }
  ZeroShotRequest zs;
  if (zeroshot) {
    const auto& names = dptq::zeroshot_task_names();
    for (size_t t = 0; t < names.size(); ++t)
      if (zs_pick_[t]) zs.tasks.push_back(names[t]);
    zs.limit = zs_limit_;
  }
  start(studio, {std::move(s)}, config_ == kFp ? "FP" : std::string(kMethods[method_]) + " / " +
                                 (config_ == kWithPlan ? plan->policy.name + (zeroshot ? " k=" + std::to_string(plan->n_selected()) : "")
                                                           : "uniform"),
        false, std::move(zs));
}

void EvaluatePanel::start_sweep(Studio& studio) {
  const Workspace& ws = studio.workspace();
  if (!ws.trace || !ws.plan) {
    error_ = "no trace: open or compute one in the Calibration panel; the Plan panel's policy picks the blocks";
    std::fprintf(stderr, "dptq-studio: sweep: %s\n", error_.c_str());
    return;
  }
  const std::vector<int64_t> budgets = parse_budgets(budgets_text_, int64_t(ws.trace->blocks.size()));
  if (budgets.empty()) {
    error_ = "budgets: give comma-separated block counts between 0 and " + std::to_string(ws.trace->blocks.size()) +
             ", e.g. 0,1,2,4,8";
    return;
  }
  // A hand-edited plan has no policy to repeat: sweep dynamicptq then.
  const std::string policy = ws.plan->policy.name == "manual" ? "dynamicptq" : ws.plan->policy.name;
  std::vector<Step> steps;
  // FP on the same windows first, unless this session already has it: the curve's reference line.
  bool have_fp = false;
  if (auto model = studio.model(); model && cached_ids_ && ids_key_.model_fingerprint == model->info().fingerprint &&
                                   ids_key_.text_path == text_path_) {
    int64_t windows = int64_t(cached_ids_->size()) / std::max(seqlen_, 1);
    if (max_windows_ >= 0) windows = std::min<int64_t>(windows, max_windows_);
    RunRecord probe;
    probe.model_name = model->info().name;
    probe.text_name = std::filesystem::path(text_path_).filename().string();
    probe.seqlen = seqlen_;
    probe.result.windows = windows;
    have_fp = fp_ppl_for(probe).has_value();
  }
  if (!have_fp) steps.push_back(Step{});
  try {
    for (int64_t b : budgets) {
      dptq::PlanOptions o;
      o.policy = policy;
      o.budget = b;
      o.seed = ws.plan->policy.seed;
      o.base_method = kMethods[method_];
      o.trace_path = ws.trace_source;
      Step s;
      s.config = b == 0 ? kUniform : kWithPlan;
      s.plan = dptq::make_plan(*ws.trace, o);
      s.budget = b;
      steps.push_back(std::move(s));
    }
  } catch (const dptq::Error& e) {
    error_ = e.what();
    return;
  }
  start(studio, std::move(steps), std::string(kMethods[method_]) + " / " + policy, /*sweep=*/true);
}

void EvaluatePanel::start_export(Studio& studio) {
  if (!quant_.model) return;
  error_.clear();
  note_.clear();
  ok_.clear();
  auto qmodel = quant_.model;
  const std::string out = export_path_;
  export_target_ = out;
  auto task = studio.tasks().start("Saving checkpoint", [qmodel, out](dptq::Progress& progress) {
    dptq::save_quantized_checkpoint(*qmodel, out, &progress);
  });
  if (!task) {
    error_ = "busy: another background task is running";
    return;
  }
  task_ = std::move(task);
  slot_ = std::make_shared<EvalSlot>();
  exporting_ = true;
  steps_total_ = 0;
}

void EvaluatePanel::collect() {
  if (!task_ || !slot_) return;
  {  // finished sweep points show up while the sweep runs
    std::lock_guard lock(slot_->mu);
    for (RunRecord& r : slot_->done) {
      // One line per result on stderr, for scripted runs (--eval --frames N).
      std::fprintf(stderr, "dptq-studio: perplexity %.6f | %s | %s, %lld windows of %lld tokens\n", r.result.ppl,
                   r.config.c_str(), r.text_name.c_str(), static_cast<long long>(r.result.windows),
                   static_cast<long long>(r.seqlen));
      history_.push_back(std::move(r));
    }
    slot_->done.clear();
    for (ZeroShotRecord& z : slot_->zs_done) {
      for (const dptq::ZeroShotResult& r : z.results)  // one line per task on stderr, for scripted runs
        std::fprintf(stderr, "dptq-studio: zeroshot %s acc %.6f acc_norm %s | %s | %lld items\n", r.task.c_str(), r.acc,
                     r.has_acc_norm ? std::to_string(r.acc_norm).c_str() : "-", z.config.c_str(),
                     static_cast<long long>(r.n));
      zs_history_.push_back(std::move(z));
    }
    slot_->zs_done.clear();
  }
  if (!task_->finished()) return;
  if (exporting_) {
    if (task_->state() == Task::State::Succeeded)
      ok_ = "Saved " + export_target_ + "  (measure it with: dptq ppl " + export_target_ + " --text FILE)";
    else if (task_->state() == Task::State::Cancelled)
      note_ = "Saving cancelled; nothing was left at " + export_target_ + ".";
    else
      error_ = task_->error();
    slot_.reset();
    exporting_ = false;
    return;
  }
  if (slot_->ids) {  // tokenizing succeeded: reuse it on the next run even if scoring failed
    cached_ids_ = slot_->ids;
    ids_key_ = pending_key_;
  }
  if (slot_->quant.model) {
    quant_ = slot_->quant;
    quant_text_ = dptq::quant_summary(*quant_.model);
    const dptq::Plan& p = dptq::model_plan(*quant_.model);
    // Follow the model of the run unless the user typed a path of their own.
    if (export_path_.empty() || export_path_ == export_suggested_) {
      export_suggested_ = "checkpoints/" + ui::file_name_part(quant_.model->info().name + "-" + p.base_method + "-k" +
                                                              std::to_string(p.n_selected()));
      export_path_ = export_suggested_;
    }
  }
  switch (task_->state()) {
    case Task::State::Succeeded:
      break;
    case Task::State::Cancelled:
      note_ = "Evaluation cancelled after " + ui::human_seconds(task_->seconds()) + ".";
      break;
    default:
      error_ = task_->error();
      break;
  }
  slot_.reset();
}

}  // namespace

std::unique_ptr<Panel> make_evaluate_panel(const Options& options) {
  return std::make_unique<EvaluatePanel>(options);
}

}  // namespace dptq::studio

// "Proxies" panel: does a dynamics metric predict which blocks need 8-bit activations? It shows
// the trace's measured sensitivity (docs/metrics.md §8: the NLL gain of one block at 8 bits, with
// its standard error) as bars across depth, a scatter of any per-block metric (dptq::block_metrics,
// the dynamics scores among them) against that gain with Spearman's ρ and Kendall's τ, and every
// metric ranked by |ρ|. Without measured sensitivity it measures it: the loaded model, quantized by
// the chosen method, on calibration text, as a cancellable background task with progress and the
// time left; the result is added to the trace on display (save it from the Calibration panel).
//
// Rank correlations of ~100 metrics over L blocks are recomputed on the UI thread when the trace
// changes (microseconds); permutation p-values are left to `dptq report --proxies` (seconds).
#include <imgui.h>
#include <implot.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "../studio.hpp"
#include "../theme.hpp"
#include "../widgets.hpp"
#include "dptq/error.hpp"
#include "dptq/plan.hpp"
#include "dptq/proxies.hpp"
#include "dptq/quantize.hpp"
#include "dptq/sensitivity.hpp"
#include "dptq/trace.hpp"

namespace dptq::studio {
namespace {

ImVec4 color(theme::Rgb c, float a = 1.0f) { return ImVec4(c.rf(), c.gf(), c.bf(), a); }

constexpr const char* kMethods[] = {"quarot-rtn", "quarot-gptq", "rtn", "gptq"};

struct Row {
  std::string metric;
  std::vector<double> values;
  double spearman = 0, kendall = 0;
};

// What a measuring task hands back: the trace with its sensitivity added.
struct Slot {
  std::shared_ptr<const dptq::Trace> trace;
};

class ProxiesPanel final : public Panel {
 public:
  const char* title() const override { return "Proxies"; }
  void draw(Studio& studio) override;
  void update(Studio& studio) override;

 private:
  void rebuild(const dptq::Trace& t);
  void draw_measure(Studio& studio);
  void draw_plots(const dptq::Trace& t);
  void draw_table();
  void start_measure(Studio& studio);

  uint64_t generation_ = ~uint64_t{0};
  std::vector<Row> rows_;  // by |ρ| descending
  std::vector<double> x_, gain_, gain_se_;
  int selected_ = 0;
  // Measuring.
  int method_ = 0, windows_ = 4, seqlen_ = 512;
  bool sites_ = false;
  std::shared_ptr<Task> task_;
  std::shared_ptr<Slot> slot_;
  std::string source_;
  std::string error_, note_;
};

void ProxiesPanel::update(Studio& studio) {
  if (!task_ || !task_->finished() || !slot_) return;
  switch (task_->state()) {
    case Task::State::Succeeded:
      studio.set_trace(slot_->trace, source_ + " + measured sensitivity", false);
      note_ = "Measured in " + ui::human_seconds(task_->seconds()) + ". Save the trace in the Calibration panel to keep it.";
      break;
    case Task::State::Cancelled:
      note_ = "Cancelled after " + ui::human_seconds(task_->seconds()) + "; the trace is unchanged.";
      break;
    default:
      error_ = task_->error();
      break;
  }
  slot_.reset();
}

void ProxiesPanel::rebuild(const dptq::Trace& t) {
  rows_.clear();
  x_.clear();
  gain_.clear();
  gain_se_.clear();
  if (!t.has_sensitivity) return;
  for (size_t l = 0; l < t.sensitivity.block.size(); ++l) {
    x_.push_back(double(l));
    gain_.push_back(t.sensitivity.block[l].nll_gain);
    const double se = t.sensitivity.block[l].nll_gain_se;
    gain_se_.push_back(std::isfinite(se) ? se : 0.0);
  }
  for (auto& [name, values] : dptq::block_metrics(t)) {
    Row r{name, std::move(values), 0, 0};
    r.spearman = dptq::rank_spearman(r.values, gain_);
    r.kendall = dptq::kendall_tau_b(r.values, gain_);
    rows_.push_back(std::move(r));
  }
  std::stable_sort(rows_.begin(), rows_.end(), [](const Row& a, const Row& b) {
    const double fa = std::isfinite(a.spearman) ? std::abs(a.spearman) : -1, fb = std::isfinite(b.spearman) ? std::abs(b.spearman) : -1;
    return fa > fb;
  });
  // Start on the policy's own score: the claim the panel exists to test.
  selected_ = 0;
  const std::string want = std::string("score/") + dptq::kDefaultDynamicsScore;
  for (size_t i = 0; i < rows_.size(); ++i)
    if (rows_[i].metric == want) selected_ = int(i);
}

void ProxiesPanel::draw(Studio& studio) {
  Workspace& ws = studio.workspace();
  if (!ws.trace) {
    ui::muted_text("No trace yet. Run a calibration or open a trace file in the Calibration panel.");
    return;
  }
  if (generation_ != ws.trace_generation) {
    rebuild(*ws.trace);
    generation_ = ws.trace_generation;
  }
  const dptq::Trace& t = *ws.trace;
  if (t.has_sensitivity) {
    const dptq::Sensitivity& s = t.sensitivity;
    ImGui::Text("Measured: %s, %lld windows x %lld tokens (%s, %s)  |  mean NLL FP %.3f, W4A4KV4 %.3f", s.method.c_str(),
                static_cast<long long>(s.windows), static_cast<long long>(s.seqlen), s.text_source.c_str(),
                s.window_mode.c_str(), s.fp_nll, s.base_nll);
    ui::tooltip("Gain of a block: how much the mean next-token NLL drops when that block alone gets 8-bit "
                "activations, every other block W4A4KV4 (docs/metrics.md section 8).");
  } else {
    ui::muted_text("This trace holds no measured sensitivity: measure it below (or `dptq sensitivity MODEL "
                   "--out TRACE`), then every metric is shown against it.");
  }
  draw_measure(studio);
  if (!t.has_sensitivity || rows_.empty()) return;
  draw_plots(t);
}

void ProxiesPanel::draw_measure(Studio& studio) {
  const auto model = studio.model();
  const bool running = task_ && !task_->finished();
  if (ImGui::CollapsingHeader("Measure sensitivity", studio.workspace().trace->has_sensitivity ? 0 : ImGuiTreeNodeFlags_DefaultOpen)) {
    const float w = ImGui::GetFontSize() * 7.0f;
    ImGui::SetNextItemWidth(w);
    ImGui::Combo("Method##sens", &method_, kMethods, IM_ARRAYSIZE(kMethods));
    ui::tooltip("The W4A4KV4 model whose blocks are switched to 8 bits one at a time.");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(w);
    if (ImGui::InputInt("Windows##sens", &windows_)) windows_ = std::clamp(windows_, 1, 256);
    ui::tooltip("Random windows of the built-in calibration corpus (the ones a calibration draws).");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(w);
    if (ImGui::InputInt("Tokens##sens", &seqlen_, 64)) seqlen_ = std::clamp(seqlen_, 16, 8192);
    ui::tooltip("Tokens per window.");
    ImGui::SameLine();
    ImGui::Checkbox("Sites##sens", &sites_);
    ui::tooltip("Also measure each of the four sites of every block alone (5x the work; needed for "
                "site-level measured plans).");
    ImGui::BeginDisabled(!model || studio.tasks().busy());
    if (ImGui::Button("Measure")) start_measure(studio);
    ImGui::EndDisabled();
    ui::tooltip(!model ? "Load the model the trace was made for (Model & data panel)."
                       : "Quantize a copy of the loaded model and measure every block's gain in the background.");
    ImGui::SameLine();
    ImGui::BeginDisabled(!running);
    if (ImGui::Button("Cancel##sens")) task_->progress().cancel();
    ImGui::EndDisabled();
  }
  if (running) {
    const auto snap = task_->progress().snapshot();
    std::string overlay = snap.stage.empty() ? "starting" : snap.stage;
    if (snap.total > 0 && snap.done > 0) {
      const double left = task_->seconds() / double(snap.done) * double(snap.total - snap.done);
      overlay += "  |  ~" + ui::human_seconds(left) + " left";
    }
    ImGui::ProgressBar(snap.total > 0 ? float(snap.done) / float(snap.total) : -1.0f * float(ImGui::GetTime()),
                       ImVec2(-FLT_MIN, 0), overlay.c_str());
  }
  if (!error_.empty()) ui::error_text(error_);
  if (!note_.empty()) ui::muted_text(note_);
}

void ProxiesPanel::start_measure(Studio& studio) {
  auto model = studio.model();
  auto trace = studio.workspace().trace;
  if (!model || !trace) return;
  error_.clear();
  note_.clear();
  if (trace->meta.model_fingerprint != model->info().fingerprint) {
    error_ = "The trace was made for another model than the one loaded: load that model first.";
    return;
  }
  dptq::SensitivityOptions so;
  so.windows = windows_;
  so.seqlen = seqlen_;
  so.sites = sites_;
  const std::string method = kMethods[method_];
  auto slot = std::make_shared<Slot>();
  auto task = studio.tasks().start("Measuring sensitivity", [model, trace, slot, so, method](dptq::Progress& progress) {
    progress.set_stage("quantizing a copy (" + method + ")");
    dptq::Model quant = dptq::load_model(model->info().path, dptq::load_options_of(*model));
    dptq::QuantizeOptions q;
    q.method = method;
    dptq::quantize_model(quant, dptq::uniform_plan(quant, method, 4), q, nullptr);
    progress.throw_if_cancelled();
    const auto windows = dptq::sensitivity_windows(*model, so);
    dptq::Sensitivity s = dptq::measure_sensitivity(*model, quant, windows, so.sites, &progress);
    s.method = method;
    s.text_source = so.text;
    s.window_mode = so.window_mode;
    s.seed = so.seed;
    auto out = std::make_shared<dptq::Trace>(*trace);
    out->sensitivity = std::move(s);
    out->has_sensitivity = true;
    slot->trace = std::move(out);
  });
  if (!task) {
    error_ = "busy: another background task is running";
    return;
  }
  task_ = std::move(task);
  slot_ = std::move(slot);
  source_ = studio.workspace().trace_source;
}

void ProxiesPanel::draw_plots(const dptq::Trace& t) {
  const Row& r = rows_[size_t(std::clamp<int>(selected_, 0, int(rows_.size()) - 1))];
  const float avail = ImGui::GetContentRegionAvail().y;
  const float plot_h = std::max(120.0f, avail * 0.42f);
  constexpr ImPlotFlags kFlags = ImPlotFlags_NoMouseText;
  // Measured gain across depth, bars in the signature colour with ±1 standard error.
  if (ImPlot::BeginPlot("Measured gain of 8-bit activations, per block", ImVec2(-1, plot_h), kFlags)) {
    ImPlot::SetupAxes("block", "NLL gain (nats/token)");
    ImPlot::SetupAxisLimits(ImAxis_X1, -0.7, double(t.blocks.size()) - 0.3, ImPlotCond_Always);
    ImPlotSpec bars;
    bars.FillColor = color(theme::kMeasured);
    bars.LineColor = color(theme::kMeasured);
    ImPlot::PlotBars("measured NLL gain", x_.data(), gain_.data(), int(gain_.size()), 0.6, bars);
    ImPlotSpec err;
    err.LineColor = color(theme::kMuted);
    ImPlot::PlotErrorBars("+-1 s.e.", x_.data(), gain_.data(), gain_se_.data(), int(gain_.size()), err);
    ImPlot::EndPlot();
  }
  ImGui::Text("%s against the measured gain: Spearman %+.3f, Kendall %+.3f", r.metric.c_str(), r.spearman, r.kendall);
  ui::tooltip("Rank correlation over the blocks: +1 = the metric orders the blocks exactly as the measured gain "
              "does. Permutation p-values: `dptq report TRACE --proxies`.");
  const float table_w = ImGui::GetFontSize() * 24.0f;
  if (ImPlot::BeginPlot("##scatter", ImVec2(ImGui::GetContentRegionAvail().x - table_w - 8, -1), kFlags)) {
    ImPlot::SetupAxes(r.metric.c_str(), "measured NLL gain", ImPlotAxisFlags_AutoFit, ImPlotAxisFlags_AutoFit);
    ImPlotSpec pts;
    pts.Marker = ImPlotMarker_Circle;
    pts.MarkerSize = 4.0f;
    pts.MarkerFillColor = color(theme::kMeasured, 0.8f);
    ImPlot::PlotScatter("blocks", r.values.data(), gain_.data(), int(gain_.size()), pts);
    for (size_t l = 0; l < gain_.size(); ++l) ImPlot::PlotText(std::to_string(l).c_str(), r.values[l], gain_[l], ImVec2(8, -8));
    ImPlot::EndPlot();
  }
  ImGui::SameLine();
  ImGui::BeginChild("##metrics", ImVec2(table_w, -1));
  draw_table();
  ImGui::EndChild();
}

void ProxiesPanel::draw_table() {
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY | ImGuiTableFlags_SizingStretchProp;
  if (!ImGui::BeginTable("metrics", 3, flags)) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  ImGui::TableSetupColumn("metric", ImGuiTableColumnFlags_WidthStretch, 4.0f);
  ImGui::TableSetupColumn("rho", ImGuiTableColumnFlags_WidthStretch, 1.0f);
  ImGui::TableSetupColumn("tau", ImGuiTableColumnFlags_WidthStretch, 1.0f);
  ImGui::TableHeadersRow();
  for (size_t i = 0; i < rows_.size(); ++i) {
    const Row& r = rows_[i];
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    if (ImGui::Selectable(r.metric.c_str(), int(i) == selected_, ImGuiSelectableFlags_SpanAllColumns)) selected_ = int(i);
    ImGui::TableNextColumn();
    ImGui::Text("%+.2f", r.spearman);
    ImGui::TableNextColumn();
    ImGui::Text("%+.2f", r.kendall);
  }
  ImGui::EndTable();
}

}  // namespace

std::unique_ptr<Panel> make_proxies_panel() { return std::make_unique<ProxiesPanel>(); }

}  // namespace dptq::studio

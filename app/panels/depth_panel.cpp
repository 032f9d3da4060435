// "Depth" panel: the trace's layer dynamics across depth (docs/metrics.md), three plots sharing the
// x axis (block / stream index l): the largest |h_l| with the phases of massive activations, the
// Jump Ratio of every block, its Historical SNR at 4 and 8 bits. Blocks with 8-bit activations in
// the current plan are highlighted in every plot; hovering shows the numbers of one block.
#include <imgui.h>
#include <implot.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "../studio.hpp"
#include "../theme.hpp"
#include "../widgets.hpp"
#include "dptq/trace.hpp"

namespace dptq::studio {
namespace {

ImVec4 color(theme::Rgb c, float a = 1.0f) { return ImVec4(c.rf(), c.gf(), c.bf(), a); }

// The trace's series as plot arrays (rebuilt when the trace changes).
struct Series {
  std::vector<double> stream_x, top1, median;                // l = 0..L
  std::vector<double> block_x, jr_p50, jr_p99, jr_inf_p99;   // l = 0..L-1
  std::vector<double> hsnr4_p1, hsnr4_mean, hsnr8_mean;
  std::vector<double> emergence_x, disappearance_x;
  std::vector<double> gain, gain_se;                          // measured NLL gain (empty without)
};

// Log axes cannot show 0 (a block that does not change the stream): floor at a tiny positive value.
double positive(double v) { return std::isfinite(v) && v > 1e-12 ? v : 1e-12; }

Series make_series(const dptq::Trace& t) {
  Series s;
  for (const auto& st : t.streams) {
    s.stream_x.push_back(double(st.index));
    s.top1.push_back(positive(st.top1_abs));
    s.median.push_back(positive(st.median_abs));
  }
  for (const auto& b : t.blocks) {
    const double x = double(b.index);
    s.block_x.push_back(x);
    s.jr_p50.push_back(positive(b.jump_ratio.p50));
    s.jr_p99.push_back(positive(b.jump_ratio.p99));
    s.jr_inf_p99.push_back(positive(b.jump_ratio_inf.p99));
    s.hsnr4_p1.push_back(b.hsnr4_db.p1);
    s.hsnr4_mean.push_back(b.hsnr4_db.mean);
    s.hsnr8_mean.push_back(b.hsnr8_db.mean);
    if (b.emergence) s.emergence_x.push_back(x);
    if (b.disappearance) s.disappearance_x.push_back(x);
  }
  if (t.has_sensitivity)
    for (const dptq::SensitivityEntry& e : t.sensitivity.block) {
      s.gain.push_back(e.nll_gain);
      s.gain_se.push_back(std::isfinite(e.nll_gain_se) ? e.nll_gain_se : 0.0);
    }
  return s;
}

class DepthPanel final : public Panel {
 public:
  explicit DepthPanel(const Options& o) : png_path_(o.depth_png.empty() ? "depth.png" : o.depth_png),
                                          png_pending_(!o.depth_png.empty()) {}
  const char* title() const override { return "Depth"; }
  void draw(Studio& studio) override;
  bool has_pending_work(const Studio& studio) const override {
    return png_pending_ && studio.workspace().trace != nullptr;  // --depth-png: once the plots are up
  }
  // --depth-png with the panel closed or behind another tab: say so instead of waiting forever.
  void update(Studio& studio) override {
    if (!png_pending_ || !studio.workspace().trace || studio.tasks().busy()) return;
    if (ImGui::GetFrameCount() - studio.workspace().depth_drawn_frame > 8) {
      std::fprintf(stderr, "dptq-studio: --depth-png: the Depth panel is not visible, nothing saved\n");
      studio.png_done(png_path_, "the Depth panel was not visible");
      png_pending_ = false;
    }
  }

 private:
  void draw_bands(const Workspace& ws) const;
  void draw_hover(const Workspace& ws) const;
  void draw_measured(const Workspace& ws, bool refit, double x_min, double x_max) const;

  void draw_save(Studio& studio);

  uint64_t generation_ = ~uint64_t{0};
  Series s_;
  std::string png_path_;
  bool png_pending_ = false;  // --depth-png
  int settled_frames_ = 0;    // frames drawn since the trace last changed
  std::vector<double> ticks_;
};

void DepthPanel::draw(Studio& studio) {
  Workspace& ws = studio.workspace();
  const ImVec2 pos = ImGui::GetWindowPos(), size = ImGui::GetWindowSize();
  ws.depth_rect[0] = pos.x, ws.depth_rect[1] = pos.y, ws.depth_rect[2] = size.x, ws.depth_rect[3] = size.y;
  ws.depth_drawn_frame = ImGui::GetFrameCount();
  if (!ws.trace) {
    ui::muted_text("No trace yet. Run a calibration or open a trace file in the Calibration panel.");
    return;
  }
  const dptq::Trace& t = *ws.trace;
  const bool refit = generation_ != ws.trace_generation;  // a new trace: fit the y axes to it
  settled_frames_ = refit ? 0 : settled_frames_ + 1;
  if (refit) {
    s_ = make_series(t);
    generation_ = ws.trace_generation;
  }
  const dptq::TraceMeta& m = t.meta;
  ImGui::Text("%s  |  %lld windows x %lld tokens  |  quantizer view: %s", m.model_name.c_str(),
              static_cast<long long>(m.windows), static_cast<long long>(m.seqlen), m.rotation.c_str());
  ui::tooltip("Model, calibration size and whether the metrics were taken after QuaRot's rotations.");
  if (ws.plan) {
    ImGui::SameLine();
    ImGui::Text("  |  8-bit blocks: %lld", static_cast<long long>(ws.plan->n_selected()));
    ui::tooltip("Blocks the plan (Plan panel) gives 8-bit activations, highlighted in every plot.");
  }
  ui::muted_text(ws.trace_source);
  draw_save(studio);
  if (t.blocks.empty()) return;

  const ImPlotSubplotFlags flags = ImPlotSubplotFlags_LinkAllX | ImPlotSubplotFlags_NoResize;
  // A fourth plot under the proxies when the trace holds measured sensitivity.
  const bool measured = !s_.gain.empty() && s_.gain.size() == s_.block_x.size();
  float rows[] = {1.0f, 1.0f, 1.0f, 1.0f};
  if (!ImPlot::BeginSubplots("##depth", measured ? 4 : 3, 1, ImVec2(-1, -1), flags, rows)) return;
  const double x_min = -0.5, x_max = double(t.blocks.size()) + 0.5;
  // No titles: the legend above each plot and its y label say what it shows.
  constexpr ImPlotFlags kPlotFlags = ImPlotFlags_NoMouseText | ImPlotFlags_NoTitle;
  ImPlotSpec line;
  line.Marker = ImPlotMarker_Circle;
  line.MarkerSize = 2.0f;
  line.LineWeight = 1.5f;
  struct Curve {
    const char* name;
    const std::vector<double>& y;
  };
  // One plot: its curves against stream (first plot) or block index, the highlights, the hover.
  // y limits get a margin (ImPlot's auto-fit puts the extreme points on the frame, and its fit
  // padding is linear, which breaks log axes); refitted for every new trace, free to zoom between.
  auto plot = [&](const char* id, const char* y_label, bool log_y, const std::vector<double>& x,
                  std::initializer_list<Curve> curves, const double* threshold) {
    if (!ImPlot::BeginPlot(id, ImVec2(), kPlotFlags)) return;
    double lo = INFINITY, hi = -INFINITY;
    for (const Curve& c : curves)
      for (double y : c.y)
        if (std::isfinite(y)) lo = std::min(lo, y), hi = std::max(hi, y);
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (log_y) {
      lo /= 3, hi *= 3;
    } else {
      const double pad = std::max(0.08 * (hi - lo), 0.5);
      lo -= pad, hi += pad;
    }
    ImPlot::SetupAxes(nullptr, y_label);
    ImPlot::SetupAxisLimits(ImAxis_X1, x_min, x_max, refit ? ImPlotCond_Always : ImPlotCond_Once);
    if (log_y) ImPlot::SetupAxisScale(ImAxis_Y1, ImPlotScale_Log10);
    ImPlot::SetupAxisLimits(ImAxis_Y1, lo, hi, refit ? ImPlotCond_Always : ImPlotCond_Once);
    ImPlot::SetupLegend(ImPlotLocation_North, ImPlotLegendFlags_Horizontal | ImPlotLegendFlags_Outside);
    draw_bands(ws);
    for (const Curve& c : curves) ImPlot::PlotLine(c.name, x.data(), c.y.data(), int(c.y.size()), line);
    if (threshold) {
      ImPlotSpec thr;
      thr.LineColor = color(theme::kMuted, 0.8f);
      thr.Flags = ImPlotInfLinesFlags_Horizontal;
      ImPlot::PlotInfLines("massive threshold", threshold, 1, thr);
    }
    draw_hover(ws);
    ImPlot::EndPlot();
  };
  const double threshold = m.massive_abs_threshold;
  plot("Massive activations", "|h_l| (log)", true, s_.stream_x,
       {{"top-1 |h_l|", s_.top1}, {"median |h_l|", s_.median}}, &threshold);
  plot("Jump Ratio", "Jump Ratio (log)", true, s_.block_x,
       {{"JR p99", s_.jr_p99}, {"JR p50", s_.jr_p50}, {"JR-inf p99", s_.jr_inf_p99}}, nullptr);
  plot("Historical SNR", "HSNR (dB)", false, s_.block_x,
       {{"HSNR4 p1", s_.hsnr4_p1}, {"HSNR4 mean", s_.hsnr4_mean}, {"HSNR8 mean", s_.hsnr8_mean}}, nullptr);
  if (measured) draw_measured(ws, refit, x_min, x_max);
  ImPlot::EndSubplots();
}

// The measured NLL gain of each block at 8 bits (docs/metrics.md §8) with ±1 standard error:
// what the three plots above are meant to predict.
void DepthPanel::draw_measured(const Workspace& ws, bool refit, double x_min, double x_max) const {
  if (!ImPlot::BeginPlot("Measured gain", ImVec2(), ImPlotFlags_NoMouseText | ImPlotFlags_NoTitle)) return;
  double lo = 0, hi = 0;
  for (size_t i = 0; i < s_.gain.size(); ++i) {
    lo = std::min(lo, s_.gain[i] - s_.gain_se[i]);
    hi = std::max(hi, s_.gain[i] + s_.gain_se[i]);
  }
  const double pad = std::max(0.08 * (hi - lo), 1e-6);
  ImPlot::SetupAxes(nullptr, "NLL gain (nats)");
  ImPlot::SetupAxisLimits(ImAxis_X1, x_min, x_max, refit ? ImPlotCond_Always : ImPlotCond_Once);
  ImPlot::SetupAxisLimits(ImAxis_Y1, lo - pad, hi + pad, refit ? ImPlotCond_Always : ImPlotCond_Once);
  ImPlot::SetupLegend(ImPlotLocation_North, ImPlotLegendFlags_Horizontal | ImPlotLegendFlags_Outside);
  draw_bands(ws);
  ImPlotSpec line;
  line.LineColor = color(theme::kMeasured);
  line.Marker = ImPlotMarker_Circle;
  line.MarkerSize = 2.5f;
  line.LineWeight = 2.0f;
  ImPlot::PlotLine("measured NLL gain at 8 bits", s_.block_x.data(), s_.gain.data(), int(s_.gain.size()), line);
  ImPlotSpec err;
  err.LineColor = color(theme::kMeasured);
  ImPlot::PlotErrorBars("+-1 s.e.", s_.block_x.data(), s_.gain.data(), s_.gain_se.data(), int(s_.gain.size()), err);
  draw_hover(ws);
  ImPlot::EndPlot();
}

// Path field and "Save PNG": the whole panel as it is drawn this frame (Studio::request_png).
void DepthPanel::draw_save(Studio& studio) {
  const float button_w = ImGui::CalcTextSize("Save PNG").x + ImGui::GetStyle().FramePadding.x * 2;
  ImGui::SetNextItemWidth(std::min(ImGui::GetFontSize() * 20.0f, ImGui::GetContentRegionAvail().x - button_w - 8));
  ui::input_text("##png-path", png_path_);
  ui::tooltip("Where to save the plots as a PNG (the folder must exist; written to a temporary name and renamed).");
  ImGui::SameLine();
  const bool live = studio.workspace().trace_live;
  // --depth-png: once the trace is final, nothing runs, and the layout has settled for two frames.
  const bool scripted = png_pending_ && !live && !studio.tasks().busy() && settled_frames_ >= 2;
  if (ImGui::Button("Save PNG") || scripted) {
    studio.request_png(studio.workspace().depth_png(png_path_));
    png_pending_ = false;
  }
  ui::tooltip("Save this panel (the three plots with their highlights) as an image.");
  const auto& [path, error] = studio.png_status();
  if (!error.empty()) {
    ImGui::SameLine();
    ui::error_text(error);
  } else if (!path.empty()) {
    // One unwrapped line (the file name only): the plots below must not move once a PNG is saved.
    ImGui::SameLine();
    ImGui::TextDisabled("saved %s", std::filesystem::path(path).filename().string().c_str());
    ui::tooltip(path.c_str());
  }
}

// Phases with massive activations (translucent), the plan's 8-bit blocks (a translucent band and
// an opaque strip along the bottom edge), emergence / disappearance ticks along the top edge.
// The strips are the only pixels painted exactly theme::kPlan8bit (tests/test_studio.cpp counts them).
void DepthPanel::draw_bands(const Workspace& ws) const {
  const dptq::Trace& t = *ws.trace;
  const ImPlotRect lim = ImPlot::GetPlotLimits();
  ImDrawList* dl = ImPlot::GetPlotDrawList();
  const ImVec2 top_left = ImPlot::PlotToPixels(lim.X.Min, lim.Y.Max);
  const ImVec2 bottom_right = ImPlot::PlotToPixels(lim.X.Max, lim.Y.Min);
  const float top = top_left.y, bottom = bottom_right.y;
  const float strip = std::max(3.0f, ImGui::GetFontSize() * 0.35f);
  auto x_px = [](double x) { return ImPlot::PlotToPixels(x, 0.0).x; };
  ImPlot::PushPlotClipRect();
  // Stream h_l sits at x = l, block l at x = l (it reads h_l): a phase of streams a..b spans
  // [a - 0.5, b + 0.5].
  for (const dptq::Phase& p : t.phases)
    dl->AddRectFilled(ImVec2(x_px(double(p.first_stream) - 0.5), top),
                      ImVec2(x_px(double(p.last_stream) + 0.5), bottom),
                      ImGui::GetColorU32(color(theme::kPhase, 0.18f)));
  if (ws.plan && ws.plan->n_layers() == int64_t(t.blocks.size())) {
    for (const dptq::PlanBlock& b : ws.plan->blocks) {
      if (!b.selected) continue;
      const float x0 = x_px(double(b.index) - 0.4), x1 = x_px(double(b.index) + 0.4);
      dl->AddRectFilled(ImVec2(x0, top), ImVec2(x1, bottom), ImGui::GetColorU32(color(theme::kPlan8bit, 0.16f)));
      dl->AddRectFilled(ImVec2(x0, bottom - strip), ImVec2(x1, bottom), ImGui::GetColorU32(color(theme::kPlan8bit)));
    }
  }
  const ImU32 tick = ImGui::GetColorU32(color(theme::kPhase, 0.9f));
  for (const dptq::BlockStats& b : t.blocks) {
    if (!b.emergence && !b.disappearance) continue;
    const float x = x_px(double(b.index));
    const char* mark = b.emergence && b.disappearance ? "E/D" : b.emergence ? "E" : "D";
    dl->AddText(ImVec2(x - ImGui::CalcTextSize(mark).x * 0.5f, top + 1.0f), tick, mark);
  }
  ImPlot::PopPlotClipRect();
}

void DepthPanel::draw_hover(const Workspace& ws) const {
  if (!ImPlot::IsPlotHovered()) return;
  const dptq::Trace& t = *ws.trace;
  const int64_t l = std::llround(ImPlot::GetPlotMousePos().x);
  if (l < 0 || l > int64_t(t.blocks.size())) return;
  ImGui::BeginTooltip();
  const dptq::StreamStats& st = t.streams[size_t(l)];
  ImGui::Text("h_%lld: top-1 |h| %.4g, median %.3g, %lld massive entries", static_cast<long long>(l),
              st.top1_abs, st.median_abs, static_cast<long long>(st.n_massive));
  if (l < int64_t(t.blocks.size())) {
    const dptq::BlockStats& b = t.blocks[size_t(l)];
    ImGui::Text("block %lld: JR p99 %.3g (p50 %.3g), HSNR4 p1 %.1f dB, mean %.1f dB", static_cast<long long>(l),
                b.jump_ratio.p99, b.jump_ratio.p50, b.hsnr4_db.p1, b.hsnr4_db.mean);
    if (t.has_sensitivity && l < int64_t(t.sensitivity.block.size()))
      ImGui::Text("measured NLL gain at 8 bits: %.4f +- %.4f nats/token", t.sensitivity.block[size_t(l)].nll_gain,
                  t.sensitivity.block[size_t(l)].nll_gain_se);
    if (b.emergence) ImGui::TextUnformatted("emergence boundary: massive activations appear in its output");
    if (b.disappearance) ImGui::TextUnformatted("disappearance boundary: massive activations vanish in its output");
    if (ws.plan && l < ws.plan->n_layers()) {
      const dptq::PlanBlock& pb = ws.plan->blocks[size_t(l)];
      if (pb.selected)
        ImGui::Text("8-bit activations: %s", pb.reason.c_str());
    }
  }
  ImGui::Separator();
  ImGui::TextDisabled("JR: how large the block's update is relative to its input stream.");
  ImGui::TextDisabled("HSNR: how much of the history in the stream survives the next block's 4-bit quantizer.");
  ImGui::EndTooltip();
}

}  // namespace

std::unique_ptr<Panel> make_depth_panel(const Options& options) { return std::make_unique<DepthPanel>(options); }

}  // namespace dptq::studio

// "Heatmaps" panel: where the massive activations live. Residual stream h_l (rows, l = 0..L) against
// channel (the largest |h_l[:, c]| over every calibration token) and against token position (the
// mean over windows of the largest |h_l[t, :]|), both on a log10 colour scale. Massive activations
// show up as a few bright channels over a run of layers, and on the first tokens of each window.
#include <imgui.h>
#include <implot.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../studio.hpp"
#include "../widgets.hpp"
#include "dptq/trace.hpp"

namespace dptq::studio {
namespace {

// rows = streams (row 0 = h_L at the top), cols = the per-stream vector; log10 of the values.
struct Grid {
  std::vector<double> values;
  int rows = 0, cols = 0;
  double lo = 0, hi = 1;
};

template <class Get>
Grid make_grid(const dptq::Trace& t, Get get) {
  Grid g;
  g.rows = int(t.streams.size());
  for (const auto& s : t.streams) g.cols = std::max(g.cols, int(get(s).size()));
  if (g.rows == 0 || g.cols == 0) return g;
  g.values.assign(size_t(g.rows) * size_t(g.cols), NAN);
  g.lo = INFINITY;
  g.hi = -INFINITY;
  for (int r = 0; r < g.rows; ++r) {
    const auto& v = get(t.streams[size_t(g.rows - 1 - r)]);
    for (size_t c = 0; c < v.size(); ++c) {
      const double x = std::log10(std::max(double(v[c]), 1e-6));
      g.values[size_t(r) * size_t(g.cols) + c] = x;
      g.lo = std::min(g.lo, x);
      g.hi = std::max(g.hi, x);
    }
  }
  if (!(g.lo < g.hi)) g.hi = g.lo + 1;
  return g;
}

class HeatmapsPanel final : public Panel {
 public:
  const char* title() const override { return "Heatmaps"; }
  void draw(Studio& studio) override;

 private:
  void plot(const char* id, const char* x_label, const Grid& g, const char* what, float height) const;

  uint64_t generation_ = ~uint64_t{0};
  Grid channels_, tokens_;
};

void HeatmapsPanel::draw(Studio& studio) {
  const Workspace& ws = studio.workspace();
  if (!ws.trace) {
    ui::muted_text("No trace yet. Run a calibration or open a trace file in the Calibration panel.");
    return;
  }
  if (generation_ != ws.trace_generation) {
    channels_ = make_grid(*ws.trace, [](const dptq::StreamStats& s) -> const std::vector<float>& { return s.channel_absmax; });
    tokens_ = make_grid(*ws.trace, [](const dptq::StreamStats& s) -> const std::vector<float>& { return s.position_absmax_mean; });
    generation_ = ws.trace_generation;
  }
  ui::muted_text("Colour: log10 of the magnitude. Rows: residual stream h_l (embeddings at the bottom).");
  const float h = std::max(ImGui::GetFontSize() * 8,
                           (ImGui::GetContentRegionAvail().y - ImGui::GetStyle().ItemSpacing.y) / 2);
  plot("Layer x channel: max |h_l[:, c]|", "channel c", channels_,
       "largest |h_l[t, c]| over all calibration tokens t", h);
  plot("Layer x token: mean over windows of max_c |h_l[t, c]|", "token position t", tokens_,
       "mean over windows of the largest entry of the token's stream", h);
}

void HeatmapsPanel::plot(const char* id, const char* x_label, const Grid& g, const char* what, float h) const {
  if (g.values.empty()) {
    ui::muted_text(std::string(id) + ": not in this trace.");
    return;
  }
  const float scale_w = ImGui::GetFontSize() * 4.5f;
  ImPlot::PushColormap(ImPlotColormap_Viridis);
  if (ImPlot::BeginPlot(id, ImVec2(ImGui::GetContentRegionAvail().x - scale_w - ImGui::GetStyle().ItemSpacing.x, h),
                        ImPlotFlags_NoLegend | ImPlotFlags_NoMouseText)) {
    ImPlot::SetupAxes(x_label, "stream l", ImPlotAxisFlags_NoGridLines, ImPlotAxisFlags_NoGridLines);
    ImPlot::SetupAxisLimits(ImAxis_X1, 0, g.cols, ImPlotCond_Once);
    ImPlot::SetupAxisLimits(ImAxis_Y1, -0.5, g.rows - 0.5, ImPlotCond_Once);
    ImPlot::PlotHeatmap("##heat", g.values.data(), g.rows, g.cols, g.lo, g.hi, nullptr, ImPlotPoint(0, -0.5),
                        ImPlotPoint(g.cols, g.rows - 0.5));
    if (ImPlot::IsPlotHovered()) {
      const ImPlotPoint m = ImPlot::GetPlotMousePos();
      const int c = int(std::floor(m.x)), l = int(std::lround(m.y));
      if (c >= 0 && c < g.cols && l >= 0 && l < g.rows) {
        const double v = g.values[size_t(g.rows - 1 - l) * size_t(g.cols) + size_t(c)];
        ImGui::BeginTooltip();
        ImGui::Text("h_%d, %s %d: %.4g", l, x_label, c, std::pow(10.0, v));
        ImGui::TextDisabled("%s", what);
        ImGui::EndTooltip();
      }
    }
    ImPlot::EndPlot();
  }
  ImGui::SameLine();
  ImGui::PushID(id);
  ImPlot::ColormapScale("log10 |h|", g.lo, g.hi, ImVec2(scale_w, h), "%.1f");
  ImGui::PopID();
  ImPlot::PopColormap();
}

}  // namespace

std::unique_ptr<Panel> make_heatmaps_panel() { return std::make_unique<HeatmapsPanel>(); }

}  // namespace dptq::studio

// "Plan" panel: chooses the blocks that get 8-bit activations. A policy (dptq::make_plan) picks
// `budget` blocks from the trace on display; the table shows every block's metrics and lets the
// user toggle each quantizer site by hand (dptq::set_block_bits); the plan is saved as a
// .plan.json file (docs/plan-format.md) for `dptq ppl`, `dptq quantize` and the Evaluate panel.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "../studio.hpp"
#include "../theme.hpp"
#include "../widgets.hpp"
#include "dptq/error.hpp"
#include "dptq/plan.hpp"
#include "dptq/sensitivity.hpp"
#include "dptq/trace.hpp"

namespace dptq::studio {
namespace {

constexpr const char* kPolicies[] = {"dynamicptq", "dynamicptq-jr", "measured", "hsnr", "first-last", "random"};
constexpr const char* kPolicyHelp[] = {
    "Lowest Historical SNR at the MLP input (its best token) first: the dynamics score chosen on calibration "
    "text (docs/metrics.md section 9).",
    "The first reading: phase-boundary blocks (massive activations appear or vanish) first, then the largest "
    "Jump Ratio p99.",
    "Largest measured NLL gain first (needs a trace with measured sensitivity: Proxies panel or `dptq sensitivity`).",
    "Lowest Historical SNR at 4 bits (p1) first.",
    "The first and last blocks: the usual heuristic, for comparison.",
    "Blocks drawn at random (seeded): the baseline a metric must beat."};
constexpr const char* kMethods[] = {"quarot-rtn", "quarot-gptq", "rtn", "gptq"};
constexpr const char* kSiteNames[] = {"qkv", "o", "gate_up", "down"};
constexpr const char* kSiteHelp[] = {
    "Input of q/k/v_proj (the attention norm's output).", "Input of o_proj (the attention output).",
    "Input of gate/up_proj (the MLP norm's output).", "Input of down_proj (the SwiGLU product)."};

int index_of(const char* const* names, int n, const std::string& name) {
  for (int i = 0; i < n; ++i)
    if (name == names[i]) return i;
  return 0;
}

int& site(dptq::SiteBits& b, int i) {
  return i == 0 ? b.qkv : i == 1 ? b.o : i == 2 ? b.gate_up : b.down;
}

class PlanPanel final : public Panel {
 public:
  explicit PlanPanel(const Options& o)
      : policy_(index_of(kPolicies, IM_ARRAYSIZE(kPolicies), o.plan_policy)), budget_(o.plan_budget) {}
  const char* title() const override { return "Plan"; }
  void draw(Studio& studio) override;
  void update(Studio& studio) override;

 private:
  void remake(Studio& studio, bool keep_edits);
  void draw_controls(Studio& studio);
  void draw_effect(const Studio& studio);
  static void draw_measured(const Workspace& ws);
  void draw_table(Studio& studio);
  void draw_save(Studio& studio);

  int policy_ = 0, budget_ = 4, seed_ = 0, method_ = 0;
  std::string rotation_;  // quantizer view of the last trace (picks the default method)
  bool edited_ = false;  // hand edits since the policy last ran
  uint64_t generation_ = ~uint64_t{0};
  std::string save_path_ = "plan.plan.json";
  std::string error_, ok_;
};

// The plan follows the trace even while the panel is hidden (the Depth plots highlight it).
void PlanPanel::update(Studio& studio) {
  Workspace& ws = studio.workspace();
  if (!ws.trace) {
    ws.plan.reset();
  } else if (generation_ != ws.trace_generation) {
    remake(studio, edited_);
    generation_ = ws.trace_generation;
    if (ws.plan && !ws.trace_live) {  // one line per final plan, for scripted runs
      std::string blocks;
      for (int64_t b : dptq::selected_blocks(*ws.plan)) blocks += (blocks.empty() ? "" : " ") + std::to_string(b);
      std::fprintf(stderr, "dptq-studio: plan %s, %lld of %lld blocks at 8 bits: %s\n", ws.plan->policy.name.c_str(),
                   static_cast<long long>(ws.plan->n_selected()), static_cast<long long>(ws.plan->n_layers()),
                   blocks.empty() ? "none" : blocks.c_str());
    }
  }
}

void PlanPanel::draw(Studio& studio) {
  Workspace& ws = studio.workspace();
  if (!ws.trace) {
    ui::muted_text("No trace yet. Run a calibration or open a trace file in the Calibration panel; "
                   "the plan is made from its metrics.");
    return;
  }
  draw_controls(studio);
  if (!ws.plan) {
    ui::error_text(error_);
    return;
  }
  draw_effect(studio);
  draw_save(studio);
  draw_table(studio);
}

// Runs the policy on the current trace. With `keep_edits`, the hand-edited selection and per-site
// bits carry over to the new trace (refreshed metrics), e.g. while a calibration runs.
// Runs the policy on the current trace. With `keep_edits`, the edited plan's own policy (the
// original one after per-site edits only, "manual" after a change of selection) runs again and the
// per-site bits are put back, so hand edits survive a new trace (e.g. a calibration's snapshots).
void PlanPanel::remake(Studio& studio, bool keep_edits) {
  Workspace& ws = studio.workspace();
  const int64_t L = int64_t(ws.trace->blocks.size());
  budget_ = std::clamp<int>(budget_, 0, int(L));
  if (ws.trace->meta.rotation != rotation_) {  // the method the trace's view is meant for
    rotation_ = ws.trace->meta.rotation;
    method_ = index_of(kMethods, IM_ARRAYSIZE(kMethods), rotation_ == "quarot" ? "quarot-rtn" : "rtn");
  }
  dptq::PlanOptions o;
  o.base_method = kMethods[method_];
  o.trace_path = ws.trace_source;
  const bool keep = keep_edits && ws.plan && ws.plan->n_layers() == L;
  if (keep) {
    const dptq::PlanPolicy& old = ws.plan->policy;
    o.policy = old.name;
    o.budget = old.budget;
    o.jr_threshold = old.jr_threshold;
    o.seed = old.seed;
    o.manual_blocks = old.name == "manual" ? dptq::selected_blocks(*ws.plan) : std::vector<int64_t>{};
  } else {
    o.policy = kPolicies[policy_];
    o.budget = budget_;
    o.seed = o.policy == "random" ? uint64_t(seed_) : 0;
  }
  try {
    dptq::Plan p = dptq::make_plan(*ws.trace, o);
    if (keep)
      for (const dptq::PlanBlock& b : ws.plan->blocks) dptq::set_block_bits(p, b.index, b.bits);
    ws.plan = std::move(p);
    edited_ = keep;
    error_.clear();
  } catch (const dptq::Error& e) {
    // Another block count: the old plan cannot stay. Otherwise it stays, with its edits.
    if (!ws.plan || ws.plan->n_layers() != L) ws.plan.reset();
    error_ = e.what();
  }
  ok_.clear();
}

void PlanPanel::draw_controls(Studio& studio) {
  Workspace& ws = studio.workspace();
  const int L = int(ws.trace->blocks.size());
  bool changed = false;
  const float w = ImGui::GetFontSize() * 9.0f;
  ImGui::SetNextItemWidth(w);
  if (ImGui::BeginCombo("Policy", kPolicies[policy_])) {
    for (int i = 0; i < IM_ARRAYSIZE(kPolicies); ++i) {
      if (ImGui::Selectable(kPolicies[i], i == policy_)) {
        changed |= i != policy_ || edited_;
        policy_ = i;
      }
      ui::tooltip(kPolicyHelp[i]);
    }
    ImGui::EndCombo();
  }
  ui::tooltip(kPolicyHelp[policy_]);
  ImGui::SameLine();
  ImGui::SetNextItemWidth(w * 1.4f);
  changed |= ImGui::SliderInt("Budget", &budget_, 0, L, "%d blocks");
  ui::tooltip("How many blocks get 8-bit activations (weights and the KV cache stay 4-bit).");
  if (policy_ == index_of(kPolicies, IM_ARRAYSIZE(kPolicies), "random")) {
    ImGui::SameLine();
    ImGui::SetNextItemWidth(w * 0.7f);
    if (ImGui::InputInt("Seed##plan", &seed_)) {
      seed_ = std::max(seed_, 0);
      changed = true;
    }
    ui::tooltip("Seed of the random choice.");
  }
  ImGui::SetNextItemWidth(w);
  if (ImGui::Combo("Base method", &method_, kMethods, IM_ARRAYSIZE(kMethods))) {
    if (ws.plan) ws.plan->base_method = kMethods[method_];
  }
  ui::tooltip("The W4A4KV4 method the plan is meant for (recorded in the file; `dptq ppl` and "
              "`dptq quantize` use it unless told otherwise).");
  ImGui::SameLine();
  if (ImGui::Button(edited_ ? "Re-run policy (drops hand edits)" : "Re-run policy")) changed = true;
  ui::tooltip("Choose the blocks again with the policy and budget above.");
  if (changed) {
    edited_ = false;
    remake(studio, false);
  }
}

void PlanPanel::draw_effect(const Studio& studio) {
  const Workspace& ws = studio.workspace();
  const dptq::Plan& p = *ws.plan;
  std::string text = std::to_string(p.n_selected()) + " of " + std::to_string(p.n_layers()) +
                     " blocks with 8-bit activations";
  try {
    const dptq::PlanCost c = dptq::plan_cost(p, *ws.trace);
    text += ui::format(": %.1f%% of the linear layers' multiply-accumulates", 100.0 * c.mac_share_8bit) +
            ui::format(", mean activation width %.2f bits", c.mean_act_bits);
  } catch (const dptq::Error&) {
    // A trace without site widths (hand-made): the block count alone.
  }
  ImGui::TextUnformatted(text.c_str());
  ui::tooltip("Cost of the plan: the share of the matrix multiplications that run with 8-bit inputs "
              "instead of 4-bit ones. Measure its effect on perplexity with `dptq ppl MODEL --plan FILE`.");
  // What the selected blocks cover of the metrics the policies look at.
  double jr_all = 0, jr_sel = 0;
  int boundaries = 0, boundaries_sel = 0;
  for (const dptq::PlanBlock& b : p.blocks) {
    const double jr = std::isfinite(b.jump_ratio_p99) ? b.jump_ratio_p99 : 0.0;
    jr_all += jr;
    const bool boundary = b.emergence || b.disappearance;
    boundaries += boundary;
    if (b.selected) {
      jr_sel += jr;
      boundaries_sel += boundary;
    }
  }
  ui::muted_text(ui::format("Selected blocks hold %.0f%% of the summed JR p99", jr_all > 0 ? 100.0 * jr_sel / jr_all : 0.0) +
                 " and " + std::to_string(boundaries_sel) + " of " + std::to_string(boundaries) +
                 " phase boundaries.");
  draw_measured(ws);
  if (auto model = studio.model(); model && model->info().fingerprint != p.model_fingerprint)
    ui::error_text("The trace was made for another model (" + p.model_fingerprint.substr(0, 12) +
                   "...) than the one loaded (" + model->info().fingerprint.substr(0, 12) +
                   "...): the plan will be refused for it.");
}

// With measured sensitivity in the trace: what the selection gains by measurement (sum of the
// single-block gains, an additive prediction) against the best selection of the same size, and
// what the dynamics score predicted for it (its share of the score's own top-k).
void PlanPanel::draw_measured(const Workspace& ws) {
  const dptq::Trace& t = *ws.trace;
  const dptq::Plan& p = *ws.plan;
  if (!t.has_sensitivity || int64_t(t.sensitivity.block.size()) != p.n_layers()) return;
  std::vector<double> gain, score;
  try {
    gain = dptq::sensitivity_gain(t, "nll");
    score = dptq::dynamics_score(t, dptq::kDefaultDynamicsScore);
  } catch (const dptq::Error&) {
    return;  // a hand-made trace without site statistics: nothing to compare
  }
  auto top_sum = [](std::vector<double> v, int64_t k) {
    std::sort(v.begin(), v.end(), std::greater<>());
    double s = 0;
    for (int64_t i = 0; i < k && i < int64_t(v.size()); ++i) s += v[size_t(i)];
    return s;
  };
  double g_sel = 0, s_sel = 0;
  for (const dptq::PlanBlock& b : p.blocks)
    if (b.selected) g_sel += gain[size_t(b.index)], s_sel += score[size_t(b.index)];
  const int64_t k = p.n_selected();
  const double g_best = top_sum(gain, k), s_best = top_sum(score, k);
  ui::muted_text(ui::format("Measured: the selection gains %.4f nats/token", g_sel) +
                 ui::format(" (sum of single-block NLL gains; the best %.0f blocks: ", double(k)) +
                 ui::format("%.4f, ", g_best) + ui::format("%.0f%%).", g_best > 0 ? 100.0 * g_sel / g_best : 0.0) +
                 ui::format(" Predicted by the dynamics score: %.0f%% of its own top-k.",
                            s_best > 0 ? 100.0 * s_sel / s_best : 0.0));
  ui::tooltip("Single-block gains come from the trace's measured sensitivity (docs/metrics.md section 8). "
              "Their sum ignores interactions between blocks; measure the plan with `dptq ppl --plan`.");
}

void PlanPanel::draw_table(Studio& studio) {
  dptq::Plan& p = *studio.workspace().plan;
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV | ImGuiTableFlags_ScrollY |
                                ImGuiTableFlags_SizingFixedFit | ImGuiTableFlags_Resizable;
  if (!ImGui::BeginTable("blocks", 10, flags, ImVec2(0, 0))) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  ImGui::TableSetupColumn("Block");
  for (const char* s : kSiteNames) ImGui::TableSetupColumn(s);
  ImGui::TableSetupColumn("Rank");
  ImGui::TableSetupColumn("JR p99");
  ImGui::TableSetupColumn("HSNR4 p1");
  ImGui::TableSetupColumn("Phase");
  ImGui::TableSetupColumn("Reason", ImGuiTableColumnFlags_WidthStretch);
  ImGui::TableNextRow(ImGuiTableRowFlags_Headers);
  for (int c = 0; c < 10; ++c) {
    ImGui::TableSetColumnIndex(c);
    ImGui::TableHeader(ImGui::TableGetColumnName(c));
    if (c >= 1 && c <= 4) ui::tooltip((std::string("Checked: 8-bit activations at the ") + kSiteHelp[c - 1]).c_str());
    if (c == 6) ui::tooltip("Jump Ratio p99: the block's update relative to its input stream (99th percentile over tokens).");
    if (c == 7) ui::tooltip("Historical SNR at 4 bits, 1st percentile over tokens: low means the block's "
                            "update drowns the history under the next 4-bit quantizer.");
    if (c == 8) ui::tooltip("E: massive activations emerge after this block; D: they disappear.");
  }
  const ImU32 selected_bg = ImGui::GetColorU32(
      ImVec4(theme::kPlan8bit.rf(), theme::kPlan8bit.gf(), theme::kPlan8bit.bf(), 0.14f));
  for (dptq::PlanBlock& b : p.blocks) {
    ImGui::PushID(int(b.index));
    ImGui::TableNextRow();
    if (b.selected) ImGui::TableSetBgColor(ImGuiTableBgTarget_RowBg1, selected_bg);
    ImGui::TableNextColumn();
    dptq::SiteBits bits = b.bits;
    bool any8 = b.selected;
    char label[32];
    std::snprintf(label, sizeof label, "%lld", static_cast<long long>(b.index));
    if (ImGui::Checkbox(label, &any8)) {
      const int v = any8 ? 8 : 4;
      bits = dptq::SiteBits{v, v, v, v};
    }
    ui::tooltip("All four sites of this block at 8 bits (checked) or 4 bits.");
    for (int i = 0; i < 4; ++i) {
      ImGui::TableNextColumn();
      bool eight = site(bits, i) == 8;
      const std::string id = std::string("##") + kSiteNames[i];
      if (ImGui::Checkbox(id.c_str(), &eight))
        site(bits, i) = eight ? 8 : 4;
    }
    if (!(bits == b.bits)) {
      dptq::set_block_bits(p, b.index, bits);  // bits are 4 / 8, the index in range: cannot throw
      edited_ = true;
      ok_.clear();
    }
    ImGui::TableNextColumn();
    if (b.rank > 0) ImGui::Text("%d", b.rank);
    ImGui::TableNextColumn();
    ImGui::TextUnformatted(ui::format("%.3g", b.jump_ratio_p99).c_str());
    ImGui::TableNextColumn();
    ImGui::TextUnformatted(ui::format("%.1f dB", b.hsnr4_p1_db).c_str());
    ImGui::TableNextColumn();
    ImGui::TextUnformatted(b.emergence && b.disappearance ? "E/D" : b.emergence ? "E" : b.disappearance ? "D" : "");
    ImGui::TableNextColumn();
    ImGui::TextUnformatted(b.reason.c_str());
    ImGui::PopID();
  }
  ImGui::EndTable();
}

void PlanPanel::draw_save(Studio& studio) {
  const float button_w = ImGui::CalcTextSize("Save plan").x + ImGui::GetStyle().FramePadding.x * 2;
  ImGui::SetNextItemWidth(-(button_w + ImGui::GetStyle().ItemSpacing.x));
  ui::input_text("##plan-path", save_path_);
  ui::tooltip("Where to write the plan (JSON, docs/plan-format.md). Written to a temporary name and "
              "renamed, so a failure leaves nothing behind.");
  ImGui::SameLine();
  if (ImGui::Button("Save plan")) {
    // A plan file is a few kilobytes: written on the UI thread.
    try {
      dptq::write_plan(*studio.workspace().plan, save_path_);
      ok_ = "Saved " + save_path_ + "  (use it with: dptq ppl MODEL --plan " + save_path_ + ")";
      error_.clear();
    } catch (const dptq::Error& e) {
      error_ = e.what();
      ok_.clear();
    }
  }
  ui::tooltip("Write the plan shown below.");
  if (!error_.empty()) ui::error_text(error_);
  if (!ok_.empty()) ui::ok_text(ok_);
}

}  // namespace

std::unique_ptr<Panel> make_plan_panel(const Options& options) {
  return std::make_unique<PlanPanel>(options);
}

}  // namespace dptq::studio

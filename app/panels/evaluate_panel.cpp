// "Evaluate" panel: perplexity of the loaded model on a text file (dptq::perplexity, the
// GPTQ/QuaRot protocol), run as a cancellable background task.
#include <imgui.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "../file_dialog.hpp"
#include "../studio.hpp"
#include "../widgets.hpp"
#include "dptq/perplexity.hpp"

namespace dptq::studio {
namespace {

using Ids = std::vector<int32_t>;

// Shared between the worker and the panel. The worker writes; the panel reads the plain fields only
// after the task finished, and the atomics at any time for the live rate.
struct EvalSlot {
  std::shared_ptr<const Ids> ids;           // tokens of the text (kept for the next run)
  dptq::PerplexityResult result;
  std::atomic<int64_t> eval_start_ns{0};    // steady clock at the first forward pass (0: tokenizing)
  std::atomic<int64_t> expected_windows{0}; // windows this run will score
};

// What a run evaluated, for the results table and for reusing tokens.
struct RunKey {
  std::string model_fingerprint;
  std::string text_path;
  std::filesystem::file_time_type text_mtime;
  bool operator==(const RunKey&) const = default;
};

struct RunRecord {
  std::string model_name;
  std::string text_name;
  int64_t seqlen = 0;
  dptq::PerplexityResult result;
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

class EvaluatePanel final : public Panel {
 public:
  explicit EvaluatePanel(const Options& o)
      : text_path_(o.text_path), seqlen_(static_cast<int>(o.seqlen)),
        max_windows_(static_cast<int>(o.max_windows)), auto_run_(o.eval_on_load) {}
  const char* title() const override { return "Evaluate"; }
  void draw(Studio& studio) override;
  void update(Studio& studio) override;
  bool has_pending_work(const Studio& studio) const override {
    return auto_run_ && studio.model() != nullptr;  // --eval starts on the next frame
  }

 private:
  void draw_inputs(Studio& studio);
  void draw_progress();
  void draw_result();
  void start(Studio& studio);
  void collect();

  std::string text_path_;
  int seqlen_ = 2048;
  int max_windows_ = -1;
  bool auto_run_ = false;
  FileDialog dialog_;
  std::string dialog_error_;

  std::shared_ptr<Task> task_;
  std::shared_ptr<EvalSlot> slot_;
  RunRecord pending_;
  RunKey pending_key_;
  std::string error_;          // last failure (red)
  std::string note_;           // last cancellation (grey)
  std::optional<RunRecord> last_;
  std::vector<RunRecord> history_;
  RunKey ids_key_;             // which (model, text) cached_ids_ belong to
  std::shared_ptr<const Ids> cached_ids_;
};

void EvaluatePanel::update(Studio& studio) {
  collect();
  if (auto_run_ && !studio.tasks().busy()) {
    // --eval: run once the start-up load succeeded; forget it if that load failed.
    if (studio.model()) start(studio);
    auto_run_ = false;
  }
}

void EvaluatePanel::draw(Studio& studio) {
  if (auto chosen = dialog_.poll()) text_path_ = *chosen;
  draw_inputs(studio);
  draw_progress();
  draw_result();
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
  ImGui::SetNextItemWidth(field_w);
  if (ImGui::InputInt("Max windows", &max_windows_, 1, 10)) max_windows_ = std::max(max_windows_, -1);
  ui::tooltip("Score only the first N windows for a quick estimate; -1 scores the whole text.");
  if (max_windows_ < 0) {
    ImGui::SameLine();
    ImGui::TextDisabled("(all)");
  }

  const bool running = task_ && !task_->finished();
  const bool can_run = studio.model() && !studio.tasks().busy();
  ImGui::BeginDisabled(!can_run);
  if (ImGui::Button("Run")) start(studio);
  ImGui::EndDisabled();
  ui::tooltip(!studio.model() ? "Load a model in the Model & data panel first."
              : studio.tasks().busy() ? "Another background task is running."
                              : "Compute the perplexity of the loaded model on the text, in the background.");
  ImGui::SameLine();
  ImGui::BeginDisabled(!running);
  if (ImGui::Button("Cancel")) task_->progress().cancel();
  ImGui::EndDisabled();
  ui::tooltip("Stop the evaluation after the window being computed; no result is kept.");
}

void EvaluatePanel::draw_progress() {
  if (!task_ || task_->finished()) return;
  const auto snap = task_->progress().snapshot();
  const int64_t start = slot_->eval_start_ns.load();
  const int64_t windows = slot_->expected_windows.load();
  std::string overlay = snap.stage.empty() ? "starting" : snap.stage;
  if (start == 0 || snap.total <= 0) {
    ImGui::ProgressBar(-1.0f * static_cast<float>(ImGui::GetTime()), ImVec2(-FLT_MIN, 0),
                       overlay.c_str());
  } else {
    // The core counts either windows or tokens; both are normalised to tokens for the rate.
    const int64_t tokens_done = snap.total == windows ? snap.done * pending_.seqlen : snap.done;
    const double secs = static_cast<double>(now_ns() - start) * 1e-9;
    if (tokens_done > 0 && secs > 0) {
      char rate[64];
      std::snprintf(rate, sizeof rate, "  |  %.0f tok/s", static_cast<double>(tokens_done) / secs);
      overlay += rate;
    }
    ImGui::ProgressBar(static_cast<float>(snap.done) / static_cast<float>(snap.total),
                       ImVec2(-FLT_MIN, 0), overlay.c_str());
  }
  ui::tooltip("Stage reported by the core and the throughput of the forward passes so far.");
  ui::muted_text("Elapsed " + ui::human_seconds(task_->seconds()));
}

void EvaluatePanel::draw_result() {
  if (!error_.empty()) ui::error_text(error_);
  if (!note_.empty()) ui::muted_text(note_);
  if (last_) {
    const auto& r = last_->result;
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
      std::snprintf(buf, sizeof buf, "%.5f nats", r.nll_mean);
      ui::field_row("Mean NLL", "Average negative log-likelihood of each predicted token, in nats.", buf);
      ui::field_row("Windows", "Non-overlapping windows scored; the incomplete tail of the text is dropped.",
                    ui::grouped(r.windows));
      ui::field_row("Tokens", "Tokens fed to the model (windows x sequence length).", ui::grouped(r.tokens));
      ui::field_row("Predicted", "Tokens whose likelihood was scored (the first of each window has no context).",
                    ui::grouped(r.predicted));
      ui::field_row("Time", "Wall time of the forward passes (tokenizing excluded).", ui::human_seconds(r.seconds));
      std::snprintf(buf, sizeof buf, "%.0f tok/s", r.tokens_per_s);
      ui::field_row("Throughput", "Tokens per second of the forward passes.", buf);
      ui::field_row("Text", "File the perplexity was computed on.", last_->text_name);
      ImGui::EndTable();
    }
  }
  if (history_.size() > 1) {
    ImGui::Spacing();
    ImGui::SeparatorText("Runs");
    const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_Borders |
                                  ImGuiTableFlags_SizingStretchProp | ImGuiTableFlags_ScrollY;
    const float h = ImGui::GetTextLineHeightWithSpacing() * static_cast<float>(std::min<size_t>(history_.size(), 8) + 1.5);
    if (ImGui::BeginTable("runs", 5, flags, ImVec2(0, h))) {
      ImGui::TableSetupScrollFreeze(0, 1);
      ImGui::TableSetupColumn("Model");
      ImGui::TableSetupColumn("Text");
      ImGui::TableSetupColumn("Seqlen");
      ImGui::TableSetupColumn("Windows");
      ImGui::TableSetupColumn("PPL");
      ImGui::TableHeadersRow();
      for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
        ImGui::TableNextRow();
        ImGui::TableNextColumn(); ImGui::TextUnformatted(it->model_name.c_str());
        ImGui::TableNextColumn(); ImGui::TextUnformatted(it->text_name.c_str());
        ImGui::TableNextColumn(); ImGui::Text("%lld", static_cast<long long>(it->seqlen));
        ImGui::TableNextColumn(); ImGui::Text("%lld", static_cast<long long>(it->result.windows));
        ImGui::TableNextColumn(); ImGui::Text("%.4f", it->result.ppl);
      }
      ImGui::EndTable();
    }
  }
}

void EvaluatePanel::start(Studio& studio) {
  auto model = studio.model();
  if (!model) return;
  error_.clear();
  note_.clear();
  std::error_code ec;
  RunKey key{model->info().fingerprint, text_path_,
             std::filesystem::last_write_time(text_path_, ec)};
  std::shared_ptr<const Ids> ids = (cached_ids_ && key == ids_key_) ? cached_ids_ : nullptr;

  auto slot = std::make_shared<EvalSlot>();
  slot->ids = ids;
  const dptq::PerplexityOptions opts{.seqlen = seqlen_, .max_windows = max_windows_};
  auto task = studio.tasks().start(
      "Evaluating", [model, slot, opts, path = text_path_](dptq::Progress& progress) {
        if (!slot->ids) {
          progress.set_stage("reading text");
          const std::string text = dptq::read_text_file(path);
          progress.throw_if_cancelled();
          progress.set_stage("tokenizing " + std::to_string(text.size() / 1024) + " KiB");
          slot->ids = std::make_shared<const Ids>(model->tokenizer().encode(text, true));
          progress.throw_if_cancelled();
        }
        int64_t windows = opts.seqlen > 0 ? static_cast<int64_t>(slot->ids->size()) / opts.seqlen : 0;
        if (opts.max_windows >= 0) windows = std::min(windows, opts.max_windows);
        slot->expected_windows.store(windows);
        slot->eval_start_ns.store(now_ns());
        slot->result = dptq::perplexity(*model, *slot->ids, opts, &progress);
      });
  if (!task) {
    error_ = "busy: another background task is running";
    return;
  }
  task_ = std::move(task);
  slot_ = std::move(slot);
  pending_key_ = std::move(key);
  pending_ = RunRecord{model->info().name, std::filesystem::path(text_path_).filename().string(),
                       seqlen_, {}};
}

void EvaluatePanel::collect() {
  if (!task_ || !task_->finished() || !slot_) return;
  if (slot_->ids) {  // tokenizing succeeded: reuse it on the next run even if scoring failed
    cached_ids_ = slot_->ids;
    ids_key_ = pending_key_;
  }
  switch (task_->state()) {
    case Task::State::Succeeded:
      pending_.result = slot_->result;
      last_ = pending_;
      history_.push_back(pending_);
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

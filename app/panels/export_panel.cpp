// "Export" panel: everything a session produced, into one folder under one base name: the plan
// (.plan.json), the trace (.h5), the Depth plots (.png) and, on request, a real int4 checkpoint of
// the loaded model quantized under the plan (a folder). Each file is written atomically by the core
// (temp name + rename); a failure names the file and leaves nothing half-written.
#include <imgui.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "../studio.hpp"
#include "../widgets.hpp"
#include "dptq/error.hpp"
#include "dptq/plan.hpp"
#include "dptq/quantize.hpp"
#include "dptq/trace.hpp"

namespace dptq::studio {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMethods[] = {"quarot-rtn", "quarot-gptq", "rtn", "gptq"};

// What the worker wrote; read by the panel after the task finished.
struct ExportSlot {
  std::vector<std::string> written;
};

class ExportPanel final : public Panel {
 public:
  explicit ExportPanel(const Options& o)
      : folder_(o.export_dir.empty() ? "export" : o.export_dir), checkpoint_(o.export_checkpoint),
        pending_(!o.export_dir.empty()) {
    for (int i = 0; i < IM_ARRAYSIZE(kMethods); ++i)
      if (o.eval_method == kMethods[i]) method_ = i;
  }
  const char* title() const override { return "Export"; }
  void draw(Studio& studio) override;
  void update(Studio& studio) override;
  bool has_pending_work(const Studio& studio) const override {
    return pending_ && (studio.workspace().trace || studio.workspace().trace_coming);
  }

 private:
  std::string base_name(const Studio& studio) const;
  void start(Studio& studio);

  std::string folder_, name_, name_suggested_;
  bool plan_ = true, trace_ = true, png_ = true, checkpoint_ = false;
  int method_ = 0;
  bool pending_ = false;     // --export: once the trace and plan are shown and nothing runs
  uint64_t seen_generation_ = ~uint64_t{0};
  int settled_frames_ = 0;   // frames since the trace last changed
  std::shared_ptr<Task> task_;
  std::shared_ptr<ExportSlot> slot_;
  std::string png_path_;     // the PNG this export asked for ("" if none)
  std::vector<std::string> written_;
  std::string error_, note_;
};

std::string ExportPanel::base_name(const Studio& studio) const {
  const Workspace& ws = studio.workspace();
  std::string model = ws.trace ? ws.trace->meta.model_name : "model";
  if (ws.plan) model += "-" + ws.plan->policy.name + "-k" + std::to_string(ws.plan->n_selected());
  return ui::file_name_part(model);
}

void ExportPanel::update(Studio& studio) {
  const Workspace& ws = studio.workspace();
  settled_frames_ = seen_generation_ == ws.trace_generation ? settled_frames_ + 1 : 0;
  seen_generation_ = ws.trace_generation;
  if (name_.empty() || name_ == name_suggested_) name_ = name_suggested_ = base_name(studio);
  if (task_ && task_->finished() && slot_) {
    switch (task_->state()) {
      case Task::State::Succeeded:
        break;
      case Task::State::Cancelled:
        note_ = "Export cancelled; the files listed were written before.";
        break;
      default:
        error_ = task_->error();
        break;
    }
    for (const std::string& w : slot_->written) written_.push_back(w);
    for (const std::string& w : slot_->written) std::fprintf(stderr, "dptq-studio: exported %s\n", w.c_str());
    if (!error_.empty()) std::fprintf(stderr, "dptq-studio: export failed: %s\n", error_.c_str());
    slot_.reset();
  }
  // --export: the trace is final, the plan made, nothing runs, the Depth plots drawn twice.
  if (pending_ && ws.trace && !ws.trace_live && !ws.trace_coming && ws.plan && !studio.tasks().busy() &&
      settled_frames_ >= 3) {
    pending_ = false;
    start(studio);
  }
}

void ExportPanel::draw(Studio& studio) {
  const Workspace& ws = studio.workspace();
  ImGui::SeparatorText("Where");
  const float w = ImGui::GetFontSize() * 14.0f;
  ImGui::SetNextItemWidth(w);
  ui::input_text("Folder", folder_);
  ui::tooltip("Folder to write into; created if missing (its parent must exist).");
  ImGui::SetNextItemWidth(w * 1.6f);
  ui::input_text("Base name", name_);
  ui::tooltip("File names start with this (default: model, policy and budget of the plan).");

  ImGui::SeparatorText("What");
  ImGui::BeginDisabled(!ws.plan);
  ImGui::Checkbox("Plan (.plan.json)", &plan_);
  ImGui::EndDisabled();
  ui::tooltip("The Plan panel's plan, for `dptq ppl --plan`, `dptq quantize --plan`, `dptq sweep`.");
  ImGui::BeginDisabled(!ws.trace || ws.trace_live);
  ImGui::Checkbox("Trace (.h5)", &trace_);
  ImGui::EndDisabled();
  ui::tooltip("The trace on display (HDF5, docs/trace-format.md): opens without the model.");
  ImGui::Checkbox("Depth plots (-depth.png)", &png_);
  ui::tooltip("The Depth panel as an image; it must be visible (its tab in front).");
  ImGui::Checkbox("Quantized checkpoint", &checkpoint_);
  ui::tooltip("Copy the loaded model, quantize it under the plan with the method below and write a real int4 "
              "checkpoint folder (docs/checkpoint-format.md). Takes a minute or more (GPTQ: several).");
  if (checkpoint_) {
    ImGui::SameLine();
    ImGui::SetNextItemWidth(w * 0.8f);
    ImGui::Combo("Method", &method_, kMethods, IM_ARRAYSIZE(kMethods));
  }

  const bool running = task_ && !task_->finished();
  const bool model_ok = !checkpoint_ || (studio.model() && !dptq::is_quantized(*studio.model()));
  const bool can = ws.trace && ws.plan && !studio.tasks().busy() && model_ok && !folder_.empty() && !name_.empty();
  ImGui::BeginDisabled(!can);
  if (ImGui::Button("Export")) start(studio);
  ImGui::EndDisabled();
  ui::tooltip(!ws.trace ? "Open or compute a trace first (Calibration panel)."
              : !model_ok ? "A checkpoint needs an unquantized model loaded (Model & data panel)."
              : studio.tasks().busy() ? "Another background task is running."
                                      : "Write the checked items into the folder.");
  if (running) {
    ImGui::SameLine();
    if (ImGui::Button("Cancel")) task_->progress().cancel();
    const auto snap = task_->progress().snapshot();
    ImGui::ProgressBar(snap.total > 0 ? float(snap.done) / float(snap.total) : -1.0f * float(ImGui::GetTime()),
                       ImVec2(-FLT_MIN, 0), snap.stage.c_str());
  }
  if (!error_.empty()) ui::error_text(error_);
  if (!note_.empty()) ui::muted_text(note_);
  if (!png_path_.empty() && studio.png_status().first == png_path_) {
    if (studio.png_status().second.empty()) ui::ok_text("wrote " + png_path_);
    else ui::error_text(studio.png_status().second);
  }
  for (const std::string& f : written_) ui::ok_text("wrote " + f);
}

void ExportPanel::start(Studio& studio) {
  const Workspace& ws = studio.workspace();
  error_.clear();
  note_.clear();
  written_.clear();
  png_path_.clear();
  if (!ws.trace || !ws.plan) {
    error_ = "nothing to export: open or compute a trace first";
    std::fprintf(stderr, "dptq-studio: export: %s\n", error_.c_str());
    return;
  }
  const fs::path dir(folder_);
  std::error_code ec;
  fs::create_directory(dir, ec);  // the parent must exist
  if (!fs::is_directory(dir)) {
    error_ = folder_ + ": cannot create the folder" + (ec ? ": " + ec.message() : std::string());
    std::fprintf(stderr, "dptq-studio: export: %s\n", error_.c_str());
    return;
  }
  const fs::path base = dir / name_;
  if (png_) {
    if (ws.depth_drawn_frame >= ImGui::GetFrameCount() - 1) {
      png_path_ = base.string() + "-depth.png";
      studio.request_png(ws.depth_png(png_path_));
    } else {
      note_ = "Depth plots skipped: bring the Depth panel's tab to the front and export again.";
    }
  }
  auto trace = plan_ || trace_ ? ws.trace : nullptr;
  std::optional<dptq::Plan> plan = ws.plan;
  auto model = checkpoint_ ? studio.model() : nullptr;
  auto slot = std::make_shared<ExportSlot>();
  const bool want_plan = plan_, want_trace = trace_ && !ws.trace_live;
  const std::string method = kMethods[method_];
  auto task = studio.tasks().start("Exporting", [=](dptq::Progress& progress) {
    if (want_plan) {
      const std::string f = base.string() + ".plan.json";
      dptq::write_plan(*plan, f);
      slot->written.push_back(f);
    }
    if (want_trace) {
      const std::string f = base.string() + ".h5";
      progress.set_stage("writing " + f);
      dptq::write_trace(*trace, f);
      slot->written.push_back(f);
    }
    if (model) {
      const fs::path out = base.string() + "-" + method;
      dptq::Plan p = *plan;
      p.base_method = method;
      dptq::check_checkpointable(*model, p, out);  // before the slow part
      progress.set_stage("loading a copy to quantize");
      dptq::Model copy = dptq::load_model(model->info().path, dptq::load_options_of(*model));
      dptq::QuantizeOptions q;
      q.method = method;
      dptq::quantize_model(copy, p, q, &progress, "plan");
      progress.set_stage("writing " + out.string());
      dptq::save_quantized_checkpoint(copy, out, &progress);
      slot->written.push_back(out.string() + "/");
    }
  });
  if (!task) {
    error_ = "busy: another background task is running";
    return;
  }
  task_ = std::move(task);
  slot_ = std::move(slot);
}

}  // namespace

std::unique_ptr<Panel> make_export_panel(const Options& options) {
  return std::make_unique<ExportPanel>(options);
}

}  // namespace dptq::studio

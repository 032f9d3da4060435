// "Calibration" panel: streams calibration text through the loaded model (dptq::profile_model) and
// publishes a snapshot trace after every window, so the Depth and Plan panels update live; opens a
// saved trace (no model needed, e.g. for teaching); saves the trace on display.
#include <imgui.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>

#include "../file_dialog.hpp"
#include "../studio.hpp"
#include "../widgets.hpp"
#include "dptq/profiler.hpp"
#include "dptq/trace.hpp"

namespace dptq::studio {
namespace {

constexpr const char* kRotations[] = {"quarot", "none"};

// Written by the worker, read by the panel: `latest` under the mutex at any time (live plots),
// `result` only after the task finished.
struct TraceSlot {
  std::mutex mu;
  std::shared_ptr<const dptq::Trace> latest;
  uint64_t snapshots = 0;
  std::shared_ptr<const dptq::Trace> result;
};

enum class Job { None, Open, Profile, Save };

class CalibrationPanel final : public Panel {
 public:
  explicit CalibrationPanel(const Options& o)
      : open_path_(o.trace_path), open_pending_(!o.trace_path.empty()), calibrate_pending_(o.calibrate_on_load),
        samples_(int(o.calib_windows)), seqlen_(int(o.calib_seqlen)) {}
  const char* title() const override { return "Calibration"; }
  void draw(Studio& studio) override;
  void update(Studio& studio) override;
  bool has_pending_work(const Studio& studio) const override {
    return open_pending_ || (calibrate_pending_ && studio.model() != nullptr);
  }

 private:
  void draw_open(Studio& studio);
  void draw_profile(Studio& studio);
  void draw_save(Studio& studio);
  void draw_status();
  void start_open(Studio& studio);
  void start_profile(Studio& studio);
  void start_save(Studio& studio);
  void collect(Studio& studio);
  bool launch(Studio& studio, Job job, const char* name, std::function<void(dptq::Progress&)> work);

  // Open
  std::string open_path_;
  bool open_pending_ = false;  // --trace: open as soon as the runner is free
  bool calibrate_pending_ = false;  // --calibrate: run once the model is loaded
  FileDialog open_dialog_;
  std::string open_dialog_error_;
  // Profile
  bool builtin_ = true;
  std::string calib_path_;
  FileDialog calib_dialog_;
  std::string calib_dialog_error_;
  int samples_ = 32, seqlen_ = 512, seed_ = 0, rotation_ = 0;
  // Save
  std::string save_path_;
  uint64_t save_path_generation_ = ~uint64_t{0};  // trace the suggested name was made for

  Job job_ = Job::None;
  std::shared_ptr<Task> task_;
  std::shared_ptr<TraceSlot> slot_;
  uint64_t shown_snapshots_ = 0;
  std::string job_source_;  // trace_source of the running job's result
  std::string job_path_;    // file the running save writes
  std::string error_, note_, ok_;
};

void CalibrationPanel::update(Studio& studio) {
  collect(studio);
  if (open_pending_ && !studio.tasks().busy()) {
    open_pending_ = false;
    start_open(studio);
  }
  if (calibrate_pending_ && !studio.tasks().busy()) {
    if (studio.model()) start_profile(studio);
    calibrate_pending_ = false;  // forget it if the start-up load failed
  }
  studio.workspace().trace_coming = open_pending_ || calibrate_pending_ ||
                                    ((job_ == Job::Open || job_ == Job::Profile) && task_ && !task_->finished());
}

void CalibrationPanel::draw(Studio& studio) {
  if (auto chosen = open_dialog_.poll()) {
    open_path_ = *chosen;
    start_open(studio);
  }
  if (auto chosen = calib_dialog_.poll()) calib_path_ = *chosen;
  draw_open(studio);
  ImGui::Spacing();
  draw_profile(studio);
  ImGui::Spacing();
  draw_save(studio);
  ImGui::Spacing();
  draw_status();
}

void CalibrationPanel::draw_open(Studio& studio) {
  ImGui::SeparatorText("Trace file");
  const bool entered = ui::path_field(
      "open", open_path_, "A trace (.h5) written by `dptq profile` or by this panel; no model is needed to view it.",
      open_dialog_, "Open a trace", {"Traces (*.h5)", "*.h5", "All files", "*"}, open_dialog_error_);
  const bool busy = studio.tasks().busy();
  ImGui::BeginDisabled(busy || open_path_.empty());
  if (ImGui::Button("Open trace") || (entered && !busy && !open_path_.empty())) start_open(studio);
  ImGui::EndDisabled();
  ui::tooltip("Read the trace file and show it in the Depth and Plan panels.");
}

void CalibrationPanel::draw_profile(Studio& studio) {
  ImGui::SeparatorText("Profile the loaded model");
  if (ImGui::RadioButton("Built-in text", builtin_)) builtin_ = true;
  ui::tooltip("The calibration corpus shipped in assets/calibration (mixed English prose, code and lists).");
  ImGui::SameLine();
  if (ImGui::RadioButton("Text file", !builtin_)) builtin_ = false;
  ui::tooltip("Any UTF-8 text file; windows are random crops of the whole text, tokenized once.");
  if (!builtin_)
    ui::path_field("calib", calib_path_, "Calibration text file.", calib_dialog_, "Choose a calibration text",
                   {"Text files (*.txt)", "*.txt", "All files", "*"}, calib_dialog_error_);

  const float w = ImGui::GetFontSize() * 7.0f;
  ImGui::SetNextItemWidth(w);
  if (ImGui::InputInt("Windows", &samples_, 1, 8)) samples_ = std::clamp(samples_, 1, 4096);
  ui::tooltip("Number of calibration windows; the metrics aggregate every token of every window.");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(w);
  if (ImGui::InputInt("Tokens each", &seqlen_, 64, 256)) seqlen_ = std::clamp(seqlen_, 2, 1 << 20);
  ui::tooltip("Tokens per window (at most the model's context).");
  ImGui::SetNextItemWidth(w);
  ImGui::Combo("Quantizer view", &rotation_, kRotations, IM_ARRAYSIZE(kRotations));
  ui::tooltip("quarot: measure the activations the 4-bit quantizers see after QuaRot's rotations "
              "(what the plan is for); none: the unrotated model.");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(w);
  if (ImGui::InputInt("Seed", &seed_)) seed_ = std::max(seed_, 0);
  ui::tooltip("Seed of the window sampling (the rotations use seed 0, as the quantizer does).");

  const bool running = task_ && !task_->finished();
  ImGui::BeginDisabled(!studio.model() || studio.tasks().busy());
  if (ImGui::Button("Run calibration")) start_profile(studio);
  ImGui::EndDisabled();
  ui::tooltip(!studio.model() ? "Load a model in the Model & data panel first."
              : studio.tasks().busy() ? "Another background task is running."
                                      : "Profile the model; the plots update after every window.");
  ImGui::SameLine();
  ImGui::BeginDisabled(!running || job_ != Job::Profile);
  if (ImGui::Button("Cancel")) task_->progress().cancel();
  ImGui::EndDisabled();
  ui::tooltip("Stop after the current window; the partial trace stays on display.");

  if (running && job_ == Job::Profile) {
    const auto snap = task_->progress().snapshot();
    const float frac = snap.total > 0 ? float(snap.done) / float(snap.total) : 0.0f;
    char overlay[96];
    std::snprintf(overlay, sizeof overlay, "window %lld / %lld", static_cast<long long>(snap.done),
                  static_cast<long long>(snap.total));
    ImGui::ProgressBar(frac, ImVec2(-FLT_MIN, 0), overlay);
    ui::muted_text(snap.stage + "  (" + ui::human_seconds(task_->seconds()) + ")");
  }
}

void CalibrationPanel::draw_save(Studio& studio) {
  ImGui::SeparatorText("Save the trace");
  const Workspace& ws = studio.workspace();
  if (!ws.trace) {
    ui::muted_text("Nothing to save yet.");
    return;
  }
  if (save_path_generation_ != ws.trace_generation && !ws.trace_live) {
    const dptq::TraceMeta& m = ws.trace->meta;
    save_path_ = "traces/" + ui::file_name_part(m.model_name + "_" + m.rotation + "_" + std::to_string(m.windows) +
                                                "x" + std::to_string(m.seqlen)) + ".h5";
    save_path_generation_ = ws.trace_generation;
  }
  ImGui::SetNextItemWidth(-FLT_MIN);
  ui::input_text("##save-path", save_path_);
  ui::tooltip("Where to write the HDF5 trace (docs/trace-format.md); the folder must exist. The file "
              "is written to a temporary name and renamed, so a failure leaves nothing behind.");
  ImGui::BeginDisabled(studio.tasks().busy() || ws.trace_live || save_path_.empty());
  if (ImGui::Button("Save trace")) start_save(studio);
  ImGui::EndDisabled();
  ui::tooltip(ws.trace_live ? "Wait for the calibration to finish." : "Write the trace on display to the path above.");
}

void CalibrationPanel::draw_status() {
  if (!error_.empty()) ui::error_text(error_);
  if (!note_.empty()) ui::muted_text(note_);
  if (!ok_.empty()) ui::ok_text(ok_);
}

bool CalibrationPanel::launch(Studio& studio, Job job, const char* name,
                              std::function<void(dptq::Progress&)> work) {
  error_.clear();
  note_.clear();
  ok_.clear();
  auto task = studio.tasks().start(name, std::move(work));
  if (!task) {
    error_ = "busy: another background task is running";
    return false;
  }
  task_ = std::move(task);
  job_ = job;
  shown_snapshots_ = 0;
  return true;
}

void CalibrationPanel::start_open(Studio& studio) {
  auto slot = std::make_shared<TraceSlot>();
  const std::string path = open_path_;
  if (launch(studio, Job::Open, "Opening trace", [slot, path](dptq::Progress& progress) {
        progress.set_stage("reading " + path);
        slot->result = std::make_shared<const dptq::Trace>(dptq::read_trace(path));
      })) {
    slot_ = std::move(slot);
    job_source_ = path;
  }
}

void CalibrationPanel::start_profile(Studio& studio) {
  auto model = studio.model();
  if (!model) return;
  dptq::ProfileOptions opts;
  opts.calib = builtin_ ? std::string("builtin") : calib_path_;
  opts.samples = samples_;
  opts.seqlen = seqlen_;
  opts.seed = static_cast<uint64_t>(seed_);
  opts.rotation = kRotations[rotation_];
  opts.rotation_seed = 0;  // the rotations `dptq quantize` and the Evaluate panel use
  auto slot = std::make_shared<TraceSlot>();
  if (launch(studio, Job::Profile, "Calibrating", [model, slot, opts](dptq::Progress& progress) {
        slot->result = std::make_shared<const dptq::Trace>(dptq::profile_model(
            *model, opts, &progress, [&slot](const dptq::Trace& snapshot) {
              auto copy = std::make_shared<const dptq::Trace>(snapshot);
              std::lock_guard lock(slot->mu);
              slot->latest = std::move(copy);
              ++slot->snapshots;
            }));
      })) {
    slot_ = std::move(slot);
    job_source_ = "calibration of " + model->info().name;
  }
}

void CalibrationPanel::start_save(Studio& studio) {
  auto trace = studio.workspace().trace;
  const std::string path = save_path_;
  if (launch(studio, Job::Save, "Saving trace", [trace, path](dptq::Progress& progress) {
        progress.set_stage("writing " + path);
        dptq::write_trace(*trace, path);
      })) {
    slot_ = std::make_shared<TraceSlot>();
    job_path_ = path;
  }
}

void CalibrationPanel::collect(Studio& studio) {
  if (!task_ || !slot_) return;
  if (job_ == Job::Profile) {  // live snapshots
    std::shared_ptr<const dptq::Trace> latest;
    {
      std::lock_guard lock(slot_->mu);
      if (slot_->snapshots != shown_snapshots_) {
        latest = slot_->latest;
        shown_snapshots_ = slot_->snapshots;
      }
    }
    if (latest && !task_->finished()) studio.set_trace(latest, job_source_ + " (running)", true);
  }
  if (!task_->finished()) return;
  switch (task_->state()) {
    case Task::State::Succeeded:
      if (job_ == Job::Save) {
        ok_ = "Saved " + job_path_;
      } else {
        studio.set_trace(slot_->result, job_source_, false);
        if (job_ == Job::Profile) {
          ok_ = "Calibrated on " + ui::grouped(slot_->result->meta.tokens) + " tokens in " +
                ui::human_seconds(task_->seconds()) + ".";
          std::fprintf(stderr, "dptq-studio: calibrated on %lld tokens (%lld windows x %lld)\n",
                       static_cast<long long>(slot_->result->meta.tokens),
                       static_cast<long long>(slot_->result->meta.windows),
                       static_cast<long long>(slot_->result->meta.seqlen));
        }
      }
      break;
    case Task::State::Cancelled: {
      note_ = "Cancelled after " + ui::human_seconds(task_->seconds()) + ".";
      std::lock_guard lock(slot_->mu);
      if (job_ == Job::Profile && slot_->latest) {
        studio.set_trace(slot_->latest, job_source_ + " (cancelled, partial)", false);
        note_ += " The plots show the windows measured so far.";
      }
      break;
    }
    default:
      error_ = task_->error();
      if (job_ == Job::Profile && studio.workspace().trace_live) {
        std::lock_guard lock(slot_->mu);
        studio.set_trace(slot_->latest, job_source_ + " (failed, partial)", false);
      }
      break;
  }
  slot_.reset();
  job_ = Job::None;
}

}  // namespace

std::unique_ptr<Panel> make_calibration_panel(const Options& options) {
  return std::make_unique<CalibrationPanel>(options);
}

}  // namespace dptq::studio

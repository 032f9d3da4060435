// app/studio.hpp — application state of dptq-studio.
//
// Contents
//   Options      what the command line asked for
//   Task         one piece of background work: state, dptq::Progress, error text, wall time
//   TaskRunner   runs one Task at a time on a worker thread; the UI polls Task snapshots
//   Panel        base of every docked panel (one file per panel under app/panels/)
//   Workspace    the trace on display and the plan being edited, shared by Calibration, Depth, Plan
//   Studio       owns the loaded model, the workspace, the runner and the panels; draws one frame
//
// Threading rule: core functions run only inside TaskRunner::start's `work`; the UI thread never
// computes. A worker writes its results into a slot it shares with the panel and then publishes
// the task's final state (release); the panel reads the slot only after Task::finished() (acquire).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dptq/model.hpp"
#include "dptq/plan.hpp"
#include "dptq/task.hpp"

namespace dptq::studio {

struct Options {
  std::string model_path;     // model to show in the Model panel (DPTQ_DEFAULT_MODEL unless --model)
  std::string text_path;      // evaluation text (WikiText-2 test unless --text)
  bool autoload = true;       // load model_path in the background at start
  bool eval_on_load = false;  // --eval: start an evaluation once the model is loaded
  std::string eval_config = "fp";          // --eval-config: fp | w4a4kv4 | plan
  std::string eval_method = "quarot-rtn";  // --method: Evaluate panel's quantization method
  std::string sweep_budgets;               // --sweep: with --eval, sweep these budgets instead
  std::string zeroshot_tasks;              // --zeroshot: with --eval, zero-shot these tasks instead
  int64_t zeroshot_limit = 100;            // --zeroshot-limit: first N items of each task (-1: all)
  int64_t seqlen = 2048;      // Evaluate panel defaults
  int64_t max_windows = -1;   // -1: all windows
  bool persist_layout = true; // save/restore the docking layout in imgui.ini (off for --frames)
  std::string focus;          // --focus: panel whose tab is brought to the front at start
  std::string export_dir;     // --export: write plan, trace and Depth PNG there once shown
  bool export_checkpoint = false;  // --export-checkpoint: and a quantized checkpoint (--method)
  std::string depth_png;      // --depth-png: save the Depth panel as a PNG once the trace is shown
  std::string trace_path;     // --trace: open this trace at start (no model needed)
  bool calibrate_on_load = false;  // --calibrate: profile the model as soon as it is loaded
  int64_t calib_windows = 32;      // Calibration panel defaults
  int64_t calib_seqlen = 512;
  std::string device = "cpu";      // --device: cpu | cuda | auto (fp32 on CPU, bf16 on CUDA)
  std::string plan_policy = "dynamicptq";  // Plan panel defaults
  int plan_budget = 4;
};

class Task {
 public:
  enum class State { Running, Succeeded, Failed, Cancelled };

  explicit Task(std::string name);
  const std::string& name() const { return name_; }
  State state() const { return state_.load(std::memory_order_acquire); }
  bool finished() const { return state() != State::Running; }
  dptq::Progress& progress() { return progress_; }
  const dptq::Progress& progress() const { return progress_; }
  // One-line message of the exception that ended the task; valid once state() == Failed.
  const std::string& error() const { return error_; }
  // Wall time since start, frozen when the task finishes.
  double seconds() const;

 private:
  friend class TaskRunner;
  void finish(State s, std::string error);

  std::string name_;
  dptq::Progress progress_;
  std::atomic<State> state_{State::Running};
  std::string error_;  // written before state_ is published
  std::chrono::steady_clock::time_point start_;
  std::atomic<int64_t> elapsed_ns_{-1};
};

class TaskRunner {
 public:
  TaskRunner() = default;
  ~TaskRunner();  // cancels the running task and waits for it
  TaskRunner(const TaskRunner&) = delete;
  TaskRunner& operator=(const TaskRunner&) = delete;

  // Starts `work` on a worker thread. Returns nullptr (and starts nothing) while another task runs:
  // the core's kernels already use every core, two tasks would only slow each other down.
  // A dptq::Error of kind Cancelled ends the task as Cancelled, any other exception as Failed.
  std::shared_ptr<Task> start(std::string name, std::function<void(dptq::Progress&)> work);
  bool busy() const;
  std::shared_ptr<Task> current() const;  // the running or most recent task (may be null)
  void cancel();                          // asks the running task to stop at its next check

 private:
  mutable std::mutex mu_;
  std::shared_ptr<Task> task_;
  std::thread worker_;
};

class Studio;

// A docked panel. Studio owns the ImGui window (Begin/End) and calls draw() for its content.
class Panel {
 public:
  virtual ~Panel() = default;
  virtual const char* title() const = 0;  // window title; also the docking/ini identity
  virtual void draw(Studio& studio) = 0;  // content of the window; called only when visible
  // Called every frame before any draw(), visible or not: collect finished background work, start
  // work queued from the command line, follow changes of the workspace.
  virtual void update(Studio&) {}
  // Work the panel is about to start on its own (e.g. --eval waiting for the model); counts as busy.
  virtual bool has_pending_work(const Studio&) const { return false; }
  bool open = true;                       // toggled by the View menu and the window's close button
};

std::unique_ptr<Panel> make_model_panel();
std::unique_ptr<Panel> make_calibration_panel(const Options& options);
std::unique_ptr<Panel> make_depth_panel(const Options& options);
std::unique_ptr<Panel> make_heatmaps_panel();
std::unique_ptr<Panel> make_plan_panel(const Options& options);
std::unique_ptr<Panel> make_evaluate_panel(const Options& options);
std::unique_ptr<Panel> make_export_panel(const Options& options);
std::unique_ptr<Panel> make_proxies_panel();

// Part of the next rendered frame to save as a PNG (the Depth panel's plots), in window pixels.
struct PngRequest {
  std::string path;
  float x = 0, y = 0, w = 0, h = 0;
};

// What the Depth and Plan panels show. The Calibration panel sets the trace (from a file, or live
// snapshots of a running calibration); the Plan panel owns the plan and the Depth panel highlights
// its 8-bit blocks. UI thread only.
struct Workspace {
  std::shared_ptr<const dptq::Trace> trace;
  std::string trace_source;       // file path, or "calibration of <model>"
  bool trace_live = false;        // a calibration run is still adding windows
  bool trace_coming = false;      // a trace is being opened or computed, or queued from the command
                                  // line (--trace, --calibrate): --eval of a plan waits for it
  uint64_t trace_generation = 0;  // bumped by every new trace
  std::optional<dptq::Plan> plan; // made from `trace` by the Plan panel (may be edited by hand)
  float depth_rect[4] = {0, 0, 0, 0};  // the Depth panel's window (x, y, w, h) when last drawn
  int depth_drawn_frame = -10;         // ImGui frame count of that draw (Export's PNG needs it recent)
  // A request to save the Depth panel's window as `path`.
  PngRequest depth_png(std::string path) const {
    return {std::move(path), depth_rect[0], depth_rect[1], depth_rect[2], depth_rect[3]};
  }
};

// The model slot: at most one loaded model plus the state of the latest load request.
struct ModelSlot {
  std::shared_ptr<const dptq::Model> model;  // shared with running tasks so a reload cannot free it
  std::shared_ptr<Task> load_task;           // latest load (running or finished)
  std::string load_path;                     // what load_task loads
  std::string load_error;                    // message of the latest failed load ("" if none)
  double load_seconds = 0;                   // wall time of the latest successful load
};

class Studio {
 public:
  explicit Studio(Options options);
  ~Studio();

  // One UI frame between ImGui::NewFrame() and ImGui::Render(): menu bar, status bar, dockspace
  // (default layout on first use), panels.
  void frame();

  const Options& options() const { return options_; }
  TaskRunner& tasks() { return tasks_; }
  const ModelSlot& model_slot() const { return model_; }
  std::shared_ptr<const dptq::Model> model() const { return model_.model; }
  Workspace& workspace() { return workspace_; }
  const Workspace& workspace() const { return workspace_; }
  void set_trace(std::shared_ptr<const dptq::Trace> trace, std::string source, bool live);

  // Saving a region of the frame: a panel asks during draw(); the main loop takes the request after
  // rendering, writes the PNG and reports back with png_done (error "" on success).
  void request_png(PngRequest request) { png_request_ = std::move(request); }
  std::optional<PngRequest> take_png_request() { return std::exchange(png_request_, std::nullopt); }
  void png_done(const std::string& path, const std::string& error) { png_status_ = {path, error}; }
  // Path and error of the latest PNG written (both empty before the first).
  const std::pair<std::string, std::string>& png_status() const { return png_status_; }

  // Loads a GGUF file or HF folder in the background; the result replaces the current model.
  // Returns false (and records why in model_slot().load_error) when another task is running.
  // Loads on `device` ("cpu" | "cuda" | "auto"; empty: the --device option).
  bool load_model(const std::string& path, const std::string& device = "");

  // A background task runs or a panel is about to start one.
  bool busy() const;
  bool quit_requested() const { return quit_requested_; }

 private:
  void poll_model_load();
  void draw_menu_bar();
  void draw_status_bar();
  void build_default_layout(unsigned int dockspace_id);

  Options options_;
  TaskRunner tasks_;
  ModelSlot model_;
  Workspace workspace_;
  std::optional<PngRequest> png_request_;
  std::pair<std::string, std::string> png_status_;
  std::shared_ptr<std::optional<dptq::Model>> pending_model_;  // the load task's result slot
  std::vector<std::unique_ptr<Panel>> panels_;
  bool reset_layout_ = false;
  bool quit_requested_ = false;
  bool first_frame_ = true;
  int focus_frames_ = 0;  // frames until the default layout's front tabs are chosen
};

// Applies the studio's colours (theme.hpp) and spacing to the current ImGui style.
void apply_theme(float dpi_scale);

}  // namespace dptq::studio

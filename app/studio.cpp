#include "studio.hpp"

#include <imgui.h>
#include <imgui_internal.h>  // DockBuilder*, BeginViewportSideBar

#include <cstdio>
#include <exception>
#include <string_view>

#include "dptq/error.hpp"
#include "theme.hpp"
#include "widgets.hpp"

namespace dptq::studio {

// ---------------------------------------------------------------------------------------------
// Task / TaskRunner

Task::Task(std::string name) : name_(std::move(name)), start_(std::chrono::steady_clock::now()) {}

double Task::seconds() const {
  const int64_t frozen = elapsed_ns_.load(std::memory_order_acquire);
  if (frozen >= 0) return static_cast<double>(frozen) * 1e-9;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Task::finish(State s, std::string error) {
  error_ = std::move(error);
  elapsed_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now() - start_).count(),
                    std::memory_order_release);
  state_.store(s, std::memory_order_release);
}

namespace {
// Library exceptions (LibTorch's c10::Error) can carry a multi-line backtrace: show the first line.
std::string first_line(const char* what) {
  std::string s = what ? what : "";
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  return s.empty() ? "unknown error" : s;
}
}  // namespace

TaskRunner::~TaskRunner() {
  cancel();
  std::thread t;
  {
    std::lock_guard lock(mu_);
    t = std::move(worker_);
  }
  if (t.joinable()) t.join();
}

std::shared_ptr<Task> TaskRunner::start(std::string name,
                                        std::function<void(dptq::Progress&)> work) {
  std::lock_guard lock(mu_);
  if (task_ && !task_->finished()) return nullptr;
  if (worker_.joinable()) worker_.join();  // finished: returns at once
  auto task = std::make_shared<Task>(std::move(name));
  task_ = task;
  worker_ = std::thread([task, work = std::move(work)] {
    try {
      work(task->progress());
      task->finish(Task::State::Succeeded, {});
    } catch (const dptq::Error& e) {
      const bool cancelled = e.kind() == dptq::ErrorKind::Cancelled;
      task->finish(cancelled ? Task::State::Cancelled : Task::State::Failed, first_line(e.what()));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dptq-studio: task '%s' failed: %s\n", task->name().c_str(), e.what());
      task->finish(Task::State::Failed, "internal error: " + first_line(e.what()));
    } catch (...) {
      task->finish(Task::State::Failed, "internal error (unknown exception)");
    }
  });
  return task;
}

bool TaskRunner::busy() const {
  std::lock_guard lock(mu_);
  return task_ && !task_->finished();
}

std::shared_ptr<Task> TaskRunner::current() const {
  std::lock_guard lock(mu_);
  return task_;
}

void TaskRunner::cancel() {
  std::lock_guard lock(mu_);
  if (task_ && !task_->finished()) task_->progress().cancel();
}

// ---------------------------------------------------------------------------------------------
// Studio

namespace {
constexpr const char* kDockspaceName = "dptq-dockspace";
}

Studio::Studio(Options options) : options_(std::move(options)) {
  // The default layout docks them by title (build_default_layout).
  panels_.push_back(make_model_panel());
  panels_.push_back(make_calibration_panel(options_));
  panels_.push_back(make_depth_panel(options_));
  panels_.push_back(make_heatmaps_panel());
  panels_.push_back(make_proxies_panel());
  panels_.push_back(make_plan_panel(options_));
  panels_.push_back(make_evaluate_panel(options_));
  panels_.push_back(make_export_panel(options_));
  if (options_.autoload && !options_.model_path.empty()) load_model(options_.model_path);
}

Studio::~Studio() = default;

bool Studio::busy() const {
  if (tasks_.busy()) return true;
  for (const auto& panel : panels_)
    if (panel->has_pending_work(*this)) return true;
  return false;
}

bool Studio::load_model(const std::string& path, const std::string& device) {
  auto slot = std::make_shared<std::optional<dptq::Model>>();
  const std::string dev = device.empty() ? options_.device : device;
  auto task = tasks_.start("Loading model", [slot, path, dev](dptq::Progress& progress) {
    progress.set_stage("reading " + path + " (device " + dev + ")");
    dptq::LoadOptions lo;
    lo.device = dptq::parse_device(dev);  // cuda without a device: the task fails with one line
    slot->emplace(dptq::load_model(path, lo));
  });
  if (!task) {
    model_.load_error = "busy: wait for the running task to finish (or cancel it) before loading";
    return false;
  }
  model_.load_task = std::move(task);
  model_.load_path = path;
  model_.load_error.clear();
  pending_model_ = std::move(slot);
  return true;
}

void Studio::set_trace(std::shared_ptr<const dptq::Trace> trace, std::string source, bool live) {
  workspace_.trace = std::move(trace);
  workspace_.trace_source = std::move(source);
  workspace_.trace_live = live;
  ++workspace_.trace_generation;
}

void Studio::poll_model_load() {
  if (!pending_model_ || !model_.load_task || !model_.load_task->finished()) return;
  switch (model_.load_task->state()) {
    case Task::State::Succeeded:
      model_.model = std::make_shared<const dptq::Model>(std::move(**pending_model_));
      model_.load_seconds = model_.load_task->seconds();
      break;
    case Task::State::Cancelled:
      model_.load_error = "loading cancelled";
      break;
    default:
      model_.load_error = model_.load_task->error();
      // Also on stderr, for headless runs (--frames): the same line the Model panel shows.
      std::fprintf(stderr, "dptq-studio: loading %s failed: %s\n", model_.load_path.c_str(), model_.load_error.c_str());
      break;
  }
  pending_model_.reset();
}

void Studio::frame() {
  poll_model_load();
  draw_menu_bar();
  draw_status_bar();  // before the dockspace so the dockspace gets the remaining work area

  const ImGuiID dockspace_id = ImGui::GetID(kDockspaceName);
  if (reset_layout_ || (first_frame_ && ImGui::DockBuilderGetNode(dockspace_id) == nullptr))
    build_default_layout(dockspace_id);
  reset_layout_ = false;
  first_frame_ = false;
  ImGui::DockSpaceOverViewport(dockspace_id, ImGui::GetMainViewport());

  // Front tabs of the default layout (the windows exist from the previous frame on).
  // One window per frame: a second SetWindowFocus in the same frame undoes the first's tab choice.
  if (focus_frames_ > 0) {
    --focus_frames_;
    if (focus_frames_ == 2) ImGui::SetWindowFocus("Depth");
    if (focus_frames_ == 1) ImGui::SetWindowFocus(options_.eval_on_load ? "Evaluate" : "Plan");
    if (focus_frames_ == 0)
      ImGui::SetWindowFocus(!options_.focus.empty()        ? options_.focus.c_str()
                            : options_.trace_path.empty() ? "Model & data"
                                                          : "Calibration");
  }
  for (auto& panel : panels_) panel->update(*this);
  for (auto& panel : panels_) {
    if (!panel->open) continue;
    if (ImGui::Begin(panel->title(), &panel->open)) panel->draw(*this);
    ImGui::End();
  }
}

void Studio::build_default_layout(unsigned int dockspace_id) {
  // Left: Model & data | Calibration. Right: Depth | Heatmaps | Proxies above, Plan | Evaluate | Export below.
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::DockBuilderRemoveNode(dockspace_id);
  ImGui::DockBuilderAddNode(dockspace_id, ImGuiDockNodeFlags_DockSpace);
  ImGui::DockBuilderSetNodeSize(dockspace_id, vp->WorkSize);
  ImGuiID left = 0, right = 0, top = 0, bottom = 0;
  ImGui::DockBuilderSplitNode(dockspace_id, ImGuiDir_Left, 0.34f, &left, &right);
  ImGui::DockBuilderSplitNode(right, ImGuiDir_Up, 0.6f, &top, &bottom);
  for (auto& panel : panels_) {
    const std::string_view t = panel->title();
    const ImGuiID node = t == "Model & data" || t == "Calibration" ? left
                         : t == "Depth" || t == "Heatmaps" || t == "Proxies" ? top
                                                               : bottom;
    ImGui::DockBuilderDockWindow(panel->title(), node);
  }
  ImGui::DockBuilderFinish(dockspace_id);
  for (auto& panel : panels_) panel->open = true;
  focus_frames_ = 4;
}

void Studio::draw_menu_bar() {
  if (!ImGui::BeginMainMenuBar()) return;
  if (ImGui::BeginMenu("File")) {
    if (ImGui::MenuItem("Quit", "Ctrl+Q")) quit_requested_ = true;
    ImGui::EndMenu();
  }
  if (ImGui::BeginMenu("View")) {
    for (auto& panel : panels_) ImGui::MenuItem(panel->title(), nullptr, &panel->open);
    ImGui::Separator();
    if (ImGui::MenuItem("Reset layout")) reset_layout_ = true;
    ImGui::EndMenu();
  }
  if (ImGui::Shortcut(ImGuiMod_Ctrl | ImGuiKey_Q, ImGuiInputFlags_RouteGlobal)) quit_requested_ = true;
  ImGui::EndMainMenuBar();
}

void Studio::draw_status_bar() {
  const float height = ImGui::GetFrameHeight();
  const ImGuiWindowFlags flags =
      ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_MenuBar;
  if (ImGui::BeginViewportSideBar("##status", ImGui::GetMainViewport(), ImGuiDir_Down, height, flags)) {
    if (ImGui::BeginMenuBar()) {
      if (auto model = model_.model) {
        ImGui::Text("Model: %s (%s)", model->info().name.c_str(), model->info().config.arch.c_str());
      } else {
        ImGui::TextDisabled("No model loaded");
      }
      ImGui::Separator();
      auto task = tasks_.current();
      if (task && !task->finished()) {
        const auto snap = task->progress().snapshot();
        if (snap.total > 0)
          ImGui::Text("%s: %s (%.0f%%)", task->name().c_str(), snap.stage.c_str(),
                      100.0 * static_cast<double>(snap.done) / static_cast<double>(snap.total));
        else
          ImGui::Text("%s: %s", task->name().c_str(), snap.stage.c_str());
      } else {
        ImGui::TextDisabled("Idle");
      }
      ImGui::EndMenuBar();
    }
  }
  ImGui::End();
}

// ---------------------------------------------------------------------------------------------
// Theme

void apply_theme(float dpi_scale) {
  ImGui::StyleColorsDark();
  ImGuiStyle& style = ImGui::GetStyle();
  auto col = [](theme::Rgb c, float a = 1.0f) { return ImVec4(c.rf(), c.gf(), c.bf(), a); };
  ImVec4* colors = style.Colors;
  colors[ImGuiCol_WindowBg] = col(theme::kWindowBg);
  colors[ImGuiCol_TitleBg] = col(theme::kTitleBg);
  colors[ImGuiCol_TitleBgActive] = col(theme::kTitleBgActive);
  colors[ImGuiCol_TitleBgCollapsed] = col(theme::kTitleBg, 0.8f);
  colors[ImGuiCol_Tab] = ImLerp(colors[ImGuiCol_Header], colors[ImGuiCol_TitleBgActive], 0.80f);
  colors[ImGuiCol_TabSelected] = ImLerp(colors[ImGuiCol_HeaderActive], colors[ImGuiCol_TitleBgActive], 0.60f);
  colors[ImGuiCol_TabDimmed] = ImLerp(colors[ImGuiCol_Tab], colors[ImGuiCol_TitleBg], 0.80f);
  colors[ImGuiCol_TabDimmedSelected] = ImLerp(colors[ImGuiCol_TabSelected], colors[ImGuiCol_TitleBg], 0.40f);
  colors[ImGuiCol_PlotHistogram] = ImVec4(0.26f, 0.59f, 0.98f, 0.85f);  // progress bars
  style.WindowRounding = 0.0f;
  style.FrameRounding = 3.0f;
  style.GrabRounding = 3.0f;
  style.FramePadding = ImVec2(6.0f, 4.0f);
  style.ItemSpacing = ImVec2(8.0f, 6.0f);
  style.ScaleAllSizes(dpi_scale);
  style.FontScaleDpi = dpi_scale;
}

}  // namespace dptq::studio

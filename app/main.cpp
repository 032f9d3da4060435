// dptq-studio: GLFW window + OpenGL context + Dear ImGui (docking) + ImPlot around dptq::studio::Studio.
//
// Exit codes: 0 normal; 2 bad command line, no display / OpenGL context, or screenshot not written.
#include <CLI/CLI.hpp>
#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl3.h>
#include <implot.h>

#define GLFW_INCLUDE_NONE
#include <GLFW/glfw3.h>
#include <GL/gl.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "dptq/error.hpp"
#include "screenshot.hpp"
#include "studio.hpp"

#ifndef DPTQ_DEFAULT_MODEL
#define DPTQ_DEFAULT_MODEL ""
#endif
#ifndef DPTQ_SHARED_DIR
#define DPTQ_SHARED_DIR "../shared"
#endif

namespace {

// Printed as one line when there is no usable display; `why` says what was missing.
void print_headless_hint(const std::string& why) {
  std::fprintf(stderr,
               "dptq-studio: no display (%s); run it under a virtual X server, e.g. `xvfb-run -a "
               "dptq-studio --frames 5 --screenshot out.png`, or use the CLI, e.g. `dptq ppl MODEL "
               "--text FILE`\n",
               why.c_str());
}

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

// GLFW errors before the window exists are collected for the one-line hint; later ones are printed.
std::string g_glfw_last_error;
bool g_glfw_quiet = true;
void glfw_error(int code, const char* description) {
  g_glfw_last_error = description ? description : "unknown GLFW error";
  if (!g_glfw_quiet) std::fprintf(stderr, "dptq-studio: GLFW error %d: %s\n", code, description);
}

// Tries OpenGL 3.3 core, then 3.0, then 2.1 (all that Mesa's llvmpipe under Xvfb may offer).
// Returns the window and sets `glsl` to the matching shader version for the ImGui backend.
GLFWwindow* create_window(int width, int height, const char*& glsl) {
  struct Attempt { int major, minor; bool core; const char* glsl; };
  constexpr Attempt attempts[] = {
      {3, 3, true, "#version 150"}, {3, 0, false, "#version 130"}, {2, 1, false, "#version 120"}};
  for (const Attempt& a : attempts) {
    glfwDefaultWindowHints();
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, a.major);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, a.minor);
    if (a.core) {
      glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
      glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);
    }
    if (GLFWwindow* w = glfwCreateWindow(width, height, "DynamicPTQ Studio", nullptr, nullptr)) {
      glsl = a.glsl;
      return w;
    }
  }
  return nullptr;
}

// DejaVu Sans (Debian fonts-dejavu-core) reads better than ImGui's built-in bitmap font; optional.
// Sizes are unscaled: style.FontScaleDpi (apply_theme) scales them for high-DPI screens.
void load_fonts() {
  ImGuiIO& io = ImGui::GetIO();
  const char* path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && io.Fonts->AddFontFromFileTTF(path, 15.0f)) return;
  io.Fonts->AddFontDefault();
}

}  // namespace

int main(int argc, char** argv) {
  dptq::studio::Options options;
  options.model_path = DPTQ_DEFAULT_MODEL;
  options.text_path = std::string(DPTQ_SHARED_DIR) + "/data/wikitext-2-raw-test.txt";
  bool no_autoload = false, wait_idle = false;
  int frames = 0, width = 1280, height = 800;
  std::string screenshot;

  CLI::App cli{"DynamicPTQ Studio: profile a model's layer dynamics, plot them across depth, choose the blocks that get 8-bit activations, evaluate perplexity."};
  cli.add_option("--model", options.model_path, "GGUF file or HuggingFace folder to load at start")
      ->capture_default_str();
  cli.add_option("--text", options.text_path, "Text file for the Evaluate panel")->capture_default_str();
  cli.add_flag("--no-autoload", no_autoload, "Do not load the model at start");
  cli.add_option("--device", options.device, "Where the model runs: cpu, cuda (fp32 on CPU, bf16 on CUDA) or auto")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  cli.add_flag("--eval", options.eval_on_load, "Run the evaluation as soon as the model is loaded");
  cli.add_option("--eval-config", options.eval_config,
                 "Evaluate panel: fp (as loaded), w4a4kv4 (uniform) or plan (W4A4KV4 + the Plan panel's plan)")
      ->capture_default_str()->check(CLI::IsMember({"fp", "w4a4kv4", "plan"}));
  cli.add_option("--method", options.eval_method, "Evaluate panel: quantization method")
      ->capture_default_str()->check(CLI::IsMember({"quarot-rtn", "quarot-gptq", "rtn", "gptq"}));
  cli.add_option("--sweep", options.sweep_budgets,
                 "Evaluate panel: budgets of the sweep, e.g. 0,1,2,4,8; with --eval (and --trace) the sweep runs at start");
  cli.add_option("--zeroshot", options.zeroshot_tasks,
                 "Evaluate panel: zero-shot tasks, e.g. piqa,winogrande; with --eval they run at start instead of perplexity");
  cli.add_option("--zeroshot-limit", options.zeroshot_limit, "Evaluate panel: first N items of each zero-shot task (-1: all)")
      ->capture_default_str()->check(CLI::Range(int64_t{-1}, int64_t{1} << 30));
  cli.add_option("--seqlen", options.seqlen, "Evaluate panel: window length in tokens")
      ->capture_default_str()->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  cli.add_option("--max-windows", options.max_windows, "Evaluate panel: windows to score (-1: all)")
      ->capture_default_str()->check(CLI::Range(int64_t{-1}, int64_t{1} << 30));
  cli.add_option("--trace", options.trace_path, "Trace (.h5) to open at start; with --no-autoload no model is needed");
  cli.add_flag("--calibrate", options.calibrate_on_load, "Run the calibration as soon as the model is loaded");
  cli.add_option("--calib-windows", options.calib_windows, "Calibration panel: windows")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{4096}));
  cli.add_option("--calib-seqlen", options.calib_seqlen, "Calibration panel: tokens per window")
      ->capture_default_str()->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  cli.add_option("--policy", options.plan_policy, "Plan panel: policy")
      ->capture_default_str()->check(CLI::IsMember({"dynamicptq", "hsnr", "first-last", "random"}));
  cli.add_option("--budget", options.plan_budget, "Plan panel: blocks with 8-bit activations")
      ->capture_default_str()->check(CLI::Range(0, 4096));
  cli.add_option("--frames", frames, "Render N frames, then exit (0: run until closed)")
      ->check(CLI::NonNegativeNumber);
  cli.add_flag("--wait-idle", wait_idle,
               "With --frames: count frames only once background work (loading, --eval) has finished");
  cli.add_option("--screenshot", screenshot, "After the last frame, save the window as this PNG "
                 "(implies --frames 3 unless given)");
  cli.add_option("--focus", options.focus, "Panel brought to the front at start")
      ->check(CLI::IsMember({"Model & data", "Calibration", "Depth", "Heatmaps", "Proxies", "Plan", "Evaluate", "Export"}));
  cli.add_option("--export", options.export_dir, "Export panel: once the trace and plan are shown, write the plan, "
                 "the trace and the Depth plots into this folder (with --frames; exit code 2 if the PNG fails)");
  cli.add_flag("--export-checkpoint", options.export_checkpoint,
               "With --export: also quantize the loaded model under the plan (--method) and write the checkpoint");
  cli.add_option("--depth-png", options.depth_png, "Save the Depth panel's plots as this PNG once a trace is shown "
                 "(with --frames; exit code 2 if it cannot be written)");
  cli.add_option("--width", width, "Window width in pixels")->capture_default_str()->check(CLI::Range(320, 16384));
  cli.add_option("--height", height, "Window height in pixels")->capture_default_str()->check(CLI::Range(240, 16384));
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;  // --help is not an error
  }
  options.autoload = !no_autoload;
  if (!screenshot.empty() && frames == 0) frames = 3;
  options.persist_layout = frames == 0;  // scripted runs neither read nor write imgui.ini

  if (!env_set("DISPLAY") && !env_set("WAYLAND_DISPLAY")) {
    print_headless_hint("DISPLAY and WAYLAND_DISPLAY are unset");
    return 2;
  }
  glfwSetErrorCallback(glfw_error);
  if (!glfwInit()) {
    print_headless_hint("GLFW: " + g_glfw_last_error);
    return 2;
  }
  const char* glsl = nullptr;
  GLFWwindow* window = create_window(width, height, glsl);
  if (!window) {
    print_headless_hint("no OpenGL 3.3/3.0/2.1 context: " + g_glfw_last_error);
    glfwTerminate();
    return 2;
  }
  g_glfw_quiet = false;
  glfwMakeContextCurrent(window);
  glfwSwapInterval(frames > 0 ? 0 : 1);
  // Scripted runs: park the pointer on the status bar's left end (no tooltip there) so no hover
  // tooltip covers the screenshot (under Xvfb the pointer starts in the middle of the screen).
  if (frames > 0) glfwSetCursorPos(window, 1, height - 2);
  std::fprintf(stderr, "dptq-studio: OpenGL %s (%s)\n", reinterpret_cast<const char*>(glGetString(GL_VERSION)),
               reinterpret_cast<const char*>(glGetString(GL_RENDERER)));

  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImPlot::CreateContext();
  ImGuiIO& io = ImGui::GetIO();
  io.ConfigFlags |= ImGuiConfigFlags_DockingEnable | ImGuiConfigFlags_NavEnableKeyboard;
  std::string ini_path;
  if (options.persist_layout) {
    const char* xdg = std::getenv("XDG_CONFIG_HOME");
    const char* home = std::getenv("HOME");
    std::filesystem::path dir = xdg && *xdg ? std::filesystem::path(xdg)
                                : home      ? std::filesystem::path(home) / ".config"
                                            : std::filesystem::path();
    std::error_code ec;
    if (!dir.empty()) {
      std::filesystem::create_directories(dir / "dptq", ec);
      if (!ec) ini_path = (dir / "dptq" / "studio-imgui.ini").string();
    }
  }
  io.IniFilename = ini_path.empty() ? nullptr : ini_path.c_str();

  float xscale = 1.0f, yscale = 1.0f;
  glfwGetWindowContentScale(window, &xscale, &yscale);
  dptq::studio::apply_theme(xscale);
  load_fonts();
  ImGui_ImplGlfw_InitForOpenGL(window, true);
  ImGui_ImplOpenGL3_Init(glsl);

  int exit_code = 0;
  {
    dptq::studio::Studio studio(options);
    int counted = 0;
    double last_event = glfwGetTime();
    while (!glfwWindowShouldClose(window) && !studio.quit_requested()) {
      // Redraws cost CPU that the core's background work needs (and with Mesa's software GL a
      // lot of it): 60 Hz only while the user interacts, 10 Hz while a task reports progress,
      // 2 Hz when idle. Scripted runs draw flat out, except while --wait-idle waits for a task.
      const bool busy = studio.busy();
      if (frames > 0 && !(wait_idle && busy)) {
        glfwPollEvents();
      } else {
        const bool interacting = frames == 0 && glfwGetTime() - last_event < 1.0;
        const double timeout = interacting ? 1.0 / 60.0 : busy ? 0.1 : 0.5;
        const double t0 = glfwGetTime();
        glfwWaitEventsTimeout(timeout);
        if (glfwGetTime() - t0 < timeout * 0.9) last_event = glfwGetTime();
      }
      if (glfwGetWindowAttrib(window, GLFW_ICONIFIED)) {
        ImGui_ImplGlfw_Sleep(10);
        continue;
      }
      ImGui_ImplOpenGL3_NewFrame();
      ImGui_ImplGlfw_NewFrame();
      ImGui::NewFrame();
      studio.frame();
      ImGui::Render();
      int fb_w = 0, fb_h = 0;
      glfwGetFramebufferSize(window, &fb_w, &fb_h);
      glViewport(0, 0, fb_w, fb_h);
      glClearColor(0.08f, 0.08f, 0.09f, 1.0f);
      glClear(GL_COLOR_BUFFER_BIT);
      ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

      if (auto req = studio.take_png_request()) {
        // Window pixels -> framebuffer pixels (they differ on high-DPI screens).
        const ImVec2 scale = ImGui::GetIO().DisplayFramebufferScale;
        int w = 0, h = 0;
        try {
          const auto rgb = dptq::studio::crop_rgb(
              dptq::studio::read_framebuffer_rgb(fb_w, fb_h), fb_w, fb_h, int(req->x * scale.x), int(req->y * scale.y),
              int(req->w * scale.x), int(req->h * scale.y), w, h);
          if (w == 0 || h == 0) throw dptq::Error(dptq::ErrorKind::InvalidArgument, req->path, "the region to save is empty");
          dptq::studio::write_png_rgb(req->path, w, h, rgb);
          std::fprintf(stderr, "dptq-studio: wrote %s (%dx%d)\n", req->path.c_str(), w, h);
          studio.png_done(req->path, "");
        } catch (const dptq::Error& e) {
          studio.png_done(req->path, e.what());
          if (frames > 0) {  // scripted (--depth-png): a failure is the exit code
            std::fprintf(stderr, "dptq-studio: %s\n", e.what());
            exit_code = 2;
          }
        }
      }
      if (frames > 0 && (!wait_idle || !studio.busy())) ++counted;
      const bool last = frames > 0 && counted >= frames;
      if (last && !screenshot.empty()) {
        try {
          dptq::studio::write_png_rgb(screenshot, fb_w, fb_h,
                                      dptq::studio::read_framebuffer_rgb(fb_w, fb_h));
          std::fprintf(stderr, "dptq-studio: wrote %s (%dx%d)\n", screenshot.c_str(), fb_w, fb_h);
        } catch (const dptq::Error& e) {
          std::fprintf(stderr, "dptq-studio: %s\n", e.what());
          exit_code = 2;
        }
      }
      glfwSwapBuffers(window);
      if (last) break;
    }
  }  // Studio joins its worker here, while the GL context still exists

  ImGui_ImplOpenGL3_Shutdown();
  ImGui_ImplGlfw_Shutdown();
  ImPlot::DestroyContext();
  ImGui::DestroyContext();
  glfwDestroyWindow(window);
  glfwTerminate();
  return exit_code;
}

// Headless smoke tests of the real dptq-studio binary: it runs under a virtual X server
// (`xvfb-run -a`, Mesa llvmpipe software OpenGL), renders a few frames, saves a screenshot, and the
// test decodes the PNG and checks it shows the UI. Skipped when xvfb-run is not installed.
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dptq/plan.hpp"
#include "dptq/trace.hpp"
#include "test_util.hpp"
#include "../app/theme.hpp"  // the colours the studio paints its title bars and errors with

#if __has_include(<stb/stb_image.h>)
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#include <stb/stb_image.h>
#define DPTQ_HAVE_STB_IMAGE 1
#endif

namespace fs = std::filesystem;
namespace theme = dptq::studio::theme;

namespace {

struct Run {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Runs `command` through the shell with a hard time limit; returns its exit code and output.
Run run(const std::string& command, const fs::path& log) {
  const std::string full = "timeout 300 " + command + " > '" + log.string() + "' 2>&1";
  const int status = std::system(full.c_str());
  Run r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

bool have_xvfb() { return std::system("command -v xvfb-run > /dev/null 2>&1") == 0; }

// '<path>' for the shell (built with append: GCC 12 warns falsely on "'" + literal + "'").
std::string quoted(const std::string& path) {
  std::string q = "'";
  q.append(path).append("'");
  return q;
}

std::string studio() { return quoted(DPTQ_STUDIO); }

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;

  // Pixels within `tol` of colour `c` in every channel.
  int64_t count(theme::Rgb c, int tol = 1) const {
    int64_t n = 0;
    for (size_t i = 0; i + 2 < rgb.size(); i += 3)
      if (std::abs(rgb[i] - c.r) <= tol && std::abs(rgb[i + 1] - c.g) <= tol &&
          std::abs(rgb[i + 2] - c.b) <= tol)
        ++n;
    return n;
  }
  // Pixels whose red channel exceeds green and blue by `margin`: error text (antialiased, so
  // rarely the exact theme colour); nothing else in the UI is red.
  int64_t count_reddish(int margin = 60) const {
    int64_t n = 0;
    for (size_t i = 0; i + 2 < rgb.size(); i += 3)
      if (rgb[i] - std::max(rgb[i + 1], rgb[i + 2]) > margin) ++n;
    return n;
  }
  size_t distinct_colors() const {
    std::set<uint32_t> seen;
    for (size_t i = 0; i + 2 < rgb.size(); i += 3)
      seen.insert(uint32_t(rgb[i]) << 16 | uint32_t(rgb[i + 1]) << 8 | rgb[i + 2]);
    return seen.size();
  }
  double luma_variance() const {
    double sum = 0, sum2 = 0;
    const size_t n = rgb.size() / 3;
    for (size_t i = 0; i < n; ++i) {
      const double y = 0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2];
      sum += y;
      sum2 += y * y;
    }
    const double mean = sum / static_cast<double>(n);
    return sum2 / static_cast<double>(n) - mean * mean;
  }
};

#ifdef DPTQ_HAVE_STB_IMAGE
constexpr bool kHaveStb = true;
Image load_png(const fs::path& path) {
  Image img;
  int channels = 0;
  unsigned char* data = stbi_load(path.string().c_str(), &img.width, &img.height, &channels, 3);
  REQUIRE_MESSAGE(data != nullptr, "cannot decode " << path << ": " << stbi_failure_reason());
  img.rgb.assign(data, data + static_cast<size_t>(img.width) * img.height * 3);
  stbi_image_free(data);
  return img;
}
#else
constexpr bool kHaveStb = false;
Image load_png(const fs::path&) { return {}; }  // never reached: the rendering tests skip
#endif

// What every test that renders and decodes a screenshot needs.
#define DPTQ_SKIP_UNLESS_RENDERING()                                                     \
  DPTQ_SKIP_UNLESS(have_xvfb(), "xvfb-run not installed (apt install xvfb xauth)");     \
  DPTQ_SKIP_UNLESS(kHaveStb, "stb/stb_image.h not installed (apt install libstb-dev)")

}  // namespace

TEST_CASE("studio: without a display it prints how to run headless and exits 2") {
  const fs::path dir = dptq::test::scratch_dir("studio_nodisplay");
  const Run r = run("env -u DISPLAY -u WAYLAND_DISPLAY " + studio() + " --no-autoload --frames 1",
                    dir / "log.txt");
  INFO(r.output);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("xvfb-run") != std::string::npos);
  // One line, so scripts can show it as is.
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
}

TEST_CASE("studio: renders the docked panels under xvfb and saves a screenshot of the requested size") {
  DPTQ_SKIP_UNLESS_RENDERING();
  const fs::path dir = dptq::test::scratch_dir("studio_render");
  const fs::path png = dir / "studio.png";
  const Run r = run("xvfb-run -a " + studio() + " --no-autoload --frames 5 --width 1024 --height 640"
                    " --screenshot '" + png.string() + "'", dir / "log.txt");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  REQUIRE(fs::exists(png));
  for (const auto& entry : fs::directory_iterator(dir))  // the atomic write left no temp file
    CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);

  const Image img = load_png(png);
  CHECK(img.width == 1024);
  CHECK(img.height == 640);
  CHECK(img.distinct_colors() >= 32);    // text antialiasing alone gives dozens
  CHECK(img.luma_variance() > 50.0);     // not a flat clear colour
  // The dock tab bars of the two panels are painted in the theme's title colours.
  const int64_t title_pixels = img.count(theme::kTitleBg) + img.count(theme::kTitleBgActive);
  CHECK(title_pixels > 1024 * 8);
  CHECK(img.count(theme::kWindowBg) > 1024 * 640 / 4);
  CHECK(img.count_reddish() == 0);  // no error text: nothing failed
}

TEST_CASE("studio: a model path that does not exist shows the error and exits 0") {
  DPTQ_SKIP_UNLESS_RENDERING();
  const fs::path dir = dptq::test::scratch_dir("studio_missing_model");
  const fs::path png = dir / "studio.png";
  // --wait-idle: the frames are counted once the (failing) background load has finished, so the
  // last frame shows its outcome.
  const Run r = run("xvfb-run -a " + studio() + " --model '" + (dir / "no-such-model.gguf").string() +
                    "' --frames 5 --wait-idle --width 900 --height 600 --screenshot '" + png.string() + "'",
                    dir / "log.txt");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const Image img = load_png(png);
  CHECK(img.width == 900);
  CHECK(img.height == 600);
  CHECK(img.count(theme::kTitleBg) + img.count(theme::kTitleBgActive) > 900 * 8);
  // The load error is drawn as red text in the Model panel.
  CHECK(img.count_reddish() > 200);
}

TEST_CASE("studio: --device cuda without a usable GPU shows why in the Model panel and exits 0") {
  DPTQ_SKIP_UNLESS_RENDERING();
  DPTQ_SKIP_UNLESS(std::system("nvidia-smi -L > /dev/null 2>&1") != 0, "a GPU is present: --device cuda would load");
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed (scripts/setup.sh)");
  const fs::path dir = dptq::test::scratch_dir("studio_device_cuda");
  const fs::path png = dir / "studio.png";
  const Run r = run("xvfb-run -a " + studio() + " --model '" + dptq::test::default_model().string() +
                    "' --device cuda --frames 5 --wait-idle --width 900 --height 600 --screenshot '" + png.string() + "'",
                    dir / "log.txt");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("no CUDA device is available") != std::string::npos);
  CHECK(load_png(png).count_reddish() > 200);  // the message, in red, in the Model panel
}

namespace {
fs::path committed_trace() { return dptq::test::tests_dir() / ".." / "traces" / "smollm2-135m_quarot_32x512.h5"; }
}  // namespace

TEST_CASE("studio: a trace opened without a model is plotted across depth, the plan's 8-bit blocks highlighted") {
  DPTQ_SKIP_UNLESS_RENDERING();
  REQUIRE(fs::exists(committed_trace()));
  const fs::path dir = dptq::test::scratch_dir("studio_trace");
  // Pixels painted exactly in the highlight colour: the strips under the three depth plots, one per
  // 8-bit block of the Plan panel's plan (dynamicptq with the given budget).
  auto strip_pixels = [&](int budget) {
    const fs::path png = dir / ("budget" + std::to_string(budget) + ".png");
    const Run r = run("xvfb-run -a " + studio() + " --no-autoload --trace '" + committed_trace().string() +
                      "' --budget " + std::to_string(budget) +
                      " --frames 5 --wait-idle --width 1280 --height 800 --screenshot '" + png.string() + "'",
                      dir / "log.txt");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const Image img = load_png(png);
    // No error text (the plots' orange lines would count as "reddish": look for the exact colour).
    CHECK(img.count(theme::kError, 2) == 0);
    // The massive-activation phases are shaded (blended over the plot background): many distinct
    // colours beyond the UI's own.
    CHECK(img.distinct_colors() >= 64);
    return img.count(theme::kPlan8bit, 0);
  };
  const int64_t none = strip_pixels(0), two = strip_pixels(2), six = strip_pixels(6);
  CHECK(none == 0);
  CHECK(two > 3 * 20);        // three plots, two strips, each several pixels wide and tall
  CHECK(six > 2 * two);       // three times the strips (lines crossing a strip hide a few pixels)
  CHECK(six < 4 * two);
}

TEST_CASE("studio: a truncated trace file shows the error in red and exits 0") {
  DPTQ_SKIP_UNLESS_RENDERING();
  const fs::path dir = dptq::test::scratch_dir("studio_bad_trace");
  const fs::path bad = dir / "truncated.h5";
  {
    std::ifstream in(committed_trace(), std::ios::binary);
    std::string head(4096, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(bad, std::ios::binary).write(head.data(), in.gcount());
  }
  const fs::path png = dir / "studio.png";
  const Run r = run("xvfb-run -a " + studio() + " --no-autoload --trace '" + bad.string() +
                    "' --frames 5 --wait-idle --width 1024 --height 700 --screenshot '" + png.string() + "'",
                    dir / "log.txt");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const Image img = load_png(png);
  CHECK(img.count_reddish() > 200);           // the read error, in the Calibration panel
  CHECK(img.count(theme::kError, 2) > 20);     // in the error colour (glyph interiors)
  CHECK(img.count(theme::kPlan8bit, 0) == 0);  // nothing plotted
}

TEST_CASE("studio: W4A4KV4 + the Plan panel's plan gives the perplexity `dptq ppl --plan` gives") {
  DPTQ_SKIP_UNLESS(have_xvfb(), "xvfb-run not installed (apt install xvfb xauth)");
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed (scripts/setup.sh)");
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::wikitext()), "../shared/data not present");
  const fs::path dir = dptq::test::scratch_dir("studio_eval_plan");
  const std::string model = quoted(dptq::test::default_model().string());
  const std::string text = quoted(dptq::test::wikitext().string());
  const std::string trace = quoted(committed_trace().string());
  // The studio: default model, the committed trace, dynamicptq with 3 blocks, evaluated at start.
  const Run gui = run("xvfb-run -a " + studio() + " --model " + model + " --trace " + trace + " --text " + text +
                      " --budget 3 --eval --eval-config plan --method quarot-rtn --seqlen 128 --max-windows 2"
                      " --frames 3 --wait-idle",
                      dir / "gui.txt");
  INFO(gui.output);
  REQUIRE(gui.exit_code == 0);
  const auto at = gui.output.find("dptq-studio: perplexity ");
  REQUIRE(at != std::string::npos);
  const double gui_ppl = std::stod(gui.output.substr(at + 24));
  CHECK(gui.output.find("quarot-rtn W4A4KV4, 8-bit activations in blocks") != std::string::npos);
  CHECK(gui.output.find("(3 of 30)") != std::string::npos);
  // The CLI on the same plan (made by `dptq plan` from the same trace) and windows.
  const fs::path plan = dir / "k3.plan.json";
  const std::string cli = quoted(DPTQ_CLI);
  REQUIRE(run(cli + " plan " + trace + " --policy dynamicptq --budget 3 --out '" + plan.string() + "'",
              dir / "plan.txt").exit_code == 0);
  const Run ppl = run(cli + " ppl " + model + " --plan '" + plan.string() + "' --method quarot-rtn --text " + text +
                      " --seqlen 128 --max-windows 2 --json", dir / "ppl.txt");
  INFO(ppl.output);
  REQUIRE(ppl.exit_code == 0);
  const auto key = ppl.output.find("\"ppl\": ");
  REQUIRE(key != std::string::npos);
  const double cli_ppl = std::stod(ppl.output.substr(key + 7));
  CHECK(gui_ppl == doctest::Approx(cli_ppl).epsilon(1e-6));  // printed with 6 decimals
  CHECK(gui_ppl > 20.0);  // a quantized model, not the FP one (~19)
}

TEST_CASE("studio: zero-shot in the Evaluate panel gives the accuracies `dptq zeroshot` gives") {
  DPTQ_SKIP_UNLESS(have_xvfb(), "xvfb-run not installed (apt install xvfb xauth)");
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed (scripts/setup.sh)");
  DPTQ_SKIP_UNLESS(fs::is_directory(dptq::test::shared_dir() / "data" / "zeroshot"), "../shared/data/zeroshot not present");
  const fs::path dir = dptq::test::scratch_dir("studio_zeroshot");
  const std::string model = quoted(dptq::test::default_model().string());
  const fs::path png = dir / "studio.png";
  const Run gui = run("xvfb-run -a " + studio() + " --model " + model +
                      " --eval --zeroshot piqa,winogrande --zeroshot-limit 12 --focus Evaluate --frames 3 --wait-idle"
                      " --width 1280 --height 900 --screenshot " + quoted(png.string()),
                      dir / "gui.txt");
  INFO(gui.output);
  REQUIRE(gui.exit_code == 0);
  const Run cli = run(quoted(DPTQ_CLI) + " zeroshot " + model + " --tasks piqa,winogrande --limit 12 --json", dir / "cli.txt");
  INFO(cli.output);
  REQUIRE(cli.exit_code == 0);
  for (const char* task : {"piqa", "winogrande"}) {
    CAPTURE(task);
    const std::string marker = std::string("dptq-studio: zeroshot ") + task + " acc ";
    const auto at = gui.output.find(marker);
    REQUIRE(at != std::string::npos);
    const double gui_acc = std::stod(gui.output.substr(at + marker.size()));
    const auto t = cli.output.find(std::string("\"") + task + "\": {");
    REQUIRE(t != std::string::npos);
    const auto a = cli.output.find("\"acc\": ", t);
    REQUIRE(a != std::string::npos);
    CHECK(gui_acc == doctest::Approx(std::stod(cli.output.substr(a + 7))).epsilon(1e-6));
  }
  CHECK(gui.output.find("| FP | 12 items") != std::string::npos);
}

TEST_CASE("studio: a calibration run in the studio gives the plan `dptq profile` + `dptq plan` give") {
  DPTQ_SKIP_UNLESS_RENDERING();
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed (scripts/setup.sh)");
  const fs::path dir = dptq::test::scratch_dir("studio_calibrate");
  const std::string model = quoted(dptq::test::default_model().string());
  const fs::path png = dir / "studio.png";
  const Run gui = run("xvfb-run -a " + studio() + " --model " + model +
                      " --calibrate --calib-windows 3 --calib-seqlen 96 --budget 5 --frames 5 --wait-idle"
                      " --width 1280 --height 800 --screenshot " + quoted(png.string()),
                      dir / "gui.txt");
  INFO(gui.output);
  REQUIRE(gui.exit_code == 0);
  CHECK(gui.output.find("dptq-studio: calibrated on 288 tokens (3 windows x 96)") != std::string::npos);
  const std::string marker = "dptq-studio: plan dynamicptq, 5 of 30 blocks at 8 bits: ";
  const auto at = gui.output.find(marker);
  REQUIRE(at != std::string::npos);
  const std::string gui_blocks = gui.output.substr(at + marker.size(), gui.output.find('\n', at) - at - marker.size());
  // The live plots and the final plan are on screen: the 8-bit strips under the depth plots.
  const Image img = load_png(png);
  CHECK(img.count(theme::kPlan8bit, 0) > 3 * 5 * 20);
  CHECK(img.count(theme::kError, 2) == 0);

  // The same calibration and policy from the command line.
  const std::string cli = quoted(DPTQ_CLI);
  const fs::path trace = dir / "cli.h5";
  REQUIRE(run(cli + " profile " + model + " --calib builtin --samples 3 --seqlen 96 --rotation quarot --out " +
              quoted(trace.string()), dir / "profile.txt").exit_code == 0);
  const fs::path plan_file = dir / "cli.plan.json";
  REQUIRE(run(cli + " plan " + quoted(trace.string()) + " --policy dynamicptq --budget 5 --out " +
              quoted(plan_file.string()), dir / "plan.txt").exit_code == 0);
  std::string cli_blocks;
  for (int64_t b : dptq::selected_blocks(dptq::read_plan(plan_file)))
    cli_blocks += (cli_blocks.empty() ? "" : " ") + std::to_string(b);
  CHECK(gui_blocks == cli_blocks);
}

TEST_CASE("studio: --depth-png saves the Depth panel's plots; an unwritable path is exit code 2") {
  DPTQ_SKIP_UNLESS_RENDERING();
  // A long folder name: the "saved ..." status must not wrap and move the plots (the crop is
  // taken a few frames before the full screenshot).
  const fs::path dir = dptq::test::scratch_dir("studio_depth_png") / "a-folder-name-long-enough-to-wrap-a-status-line-in-the-depth-panel";
  fs::create_directories(dir);
  const fs::path depth = dir / "depth.png", full = dir / "full.png";
  const std::string base = "xvfb-run -a " + studio() + " --no-autoload --trace " + quoted(committed_trace().string()) +
                           " --budget 3 --frames 5 --wait-idle --width 1280 --height 800";
  const Run r = run(base + " --depth-png " + quoted(depth.string()) + " --screenshot " + quoted(full.string()),
                    dir / "log.txt");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const Image d = load_png(depth), f = load_png(full);
  // The panel only: smaller than the window, and every highlight strip of the window is in it.
  CHECK(d.width < f.width);
  CHECK(d.height < f.height);
  CHECK(d.width > f.width / 3);
  const int64_t strips = d.count(theme::kPlan8bit, 0);
  CHECK(strips > 3 * 3 * 20);
  CHECK(strips == f.count(theme::kPlan8bit, 0));
  for (const auto& entry : fs::directory_iterator(dir))  // atomic writes: no temp file left
    CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);

  const fs::path nowhere = dir / "no-such-folder" / "depth.png";  // a sibling "bad.txt" log is fine
  const Run bad = run(base + " --depth-png " + quoted(nowhere.string()), dir / "bad.txt");
  INFO(bad.output);
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find(nowhere.string()) != std::string::npos);
  CHECK_FALSE(fs::exists(nowhere.parent_path()));
}

TEST_CASE("studio: the Heatmaps panel paints the layer x channel and layer x token magnitudes") {
  DPTQ_SKIP_UNLESS_RENDERING();
  const fs::path dir = dptq::test::scratch_dir("studio_heatmaps");
  auto shot = [&](const std::string& extra, const std::string& name) {
    const fs::path png = dir / name;
    const Run r = run("xvfb-run -a " + studio() + " --no-autoload --frames 6 --wait-idle --width 1280 --height 800 " +
                      extra + " --screenshot " + quoted(png.string()), dir / "log.txt");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    return load_png(png);
  };
  const Image empty = shot("--focus Heatmaps", "empty.png");
  const Image heat = shot("--trace " + quoted(committed_trace().string()) + " --focus Heatmaps", "heat.png");
  // Two viridis heatmaps of 31 x 576 and 31 x 512 cells with colour bars: hundreds of colours
  // that the UI alone does not have.
  CHECK(heat.distinct_colors() > empty.distinct_colors() + 200);
  CHECK(heat.count(theme::kError, 2) == 0);
}

TEST_CASE("studio: --export writes the plan, the trace, the Depth plots and a checkpoint that reloads") {
  DPTQ_SKIP_UNLESS_RENDERING();
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::default_model()), "default model not installed (scripts/setup.sh)");
  DPTQ_SKIP_UNLESS(fs::exists(dptq::test::wikitext()), "../shared/data not present");
  const fs::path dir = dptq::test::scratch_dir("studio_export");
  const fs::path out = dir / "bundle";
  const std::string model = quoted(dptq::test::default_model().string());
  const Run gui = run("xvfb-run -a " + studio() + " --model " + model + " --trace " + quoted(committed_trace().string()) +
                      " --budget 2 --export " + quoted(out.string()) +
                      " --export-checkpoint --method quarot-rtn --frames 3 --wait-idle", dir / "gui.txt");
  INFO(gui.output);
  REQUIRE(gui.exit_code == 0);
  const std::string base = (out / "Smollm2-135M-8k-Lc100K-Mix1-Ep2-dynamicptq-k2").string();
  // The plan and the trace read back; the PNG decodes and shows the two highlighted blocks.
  const dptq::Plan plan = dptq::read_plan(base + ".plan.json");
  dptq::PlanOptions want;  // what `dptq plan TRACE --budget 2` chooses (the default policy)
  want.budget = 2;
  CHECK(dptq::selected_blocks(plan) == dptq::selected_blocks(dptq::make_plan(dptq::read_trace(committed_trace()), want)));
  CHECK(plan.n_selected() == 2);
  const dptq::Trace trace = dptq::read_trace(base + ".h5");
  CHECK(trace.blocks.size() == 30);
  const Image png = load_png(base + "-depth.png");
  CHECK(png.count(theme::kPlan8bit, 0) > 3 * 2 * 20);
  // The checkpoint measures what the simulated model under the exported plan measures.
  const std::string cli = quoted(DPTQ_CLI), text = quoted(dptq::test::wikitext().string());
  const std::string windows = " --text " + text + " --seqlen 128 --max-windows 2 --json";
  const Run reloaded = run(cli + " ppl " + quoted(base + "-quarot-rtn") + windows, dir / "reloaded.txt");
  const Run simulated = run(cli + " ppl " + model + " --method quarot-rtn --plan " + quoted(base + ".plan.json") + windows,
                            dir / "simulated.txt");
  INFO(reloaded.output);
  INFO(simulated.output);
  REQUIRE(reloaded.exit_code == 0);
  REQUIRE(simulated.exit_code == 0);
  auto ppl = [](const std::string& o) { return std::stod(o.substr(o.find("\"ppl\": ") + 7)); };
  CHECK(ppl(reloaded.output) == doctest::Approx(ppl(simulated.output)).epsilon(1e-9));
  for (const auto& entry : fs::directory_iterator(out))  // atomic writes: no temp file or folder left
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
}

TEST_CASE("studio: the Proxies view draws the measured gain of a trace that holds it, and the Depth panel its curve") {
  DPTQ_SKIP_UNLESS_RENDERING();
  REQUIRE(fs::exists(committed_trace()));
  const fs::path dir = dptq::test::scratch_dir("studio_proxies");
  // The committed trace plus a sensitivity: gains that grow with depth, some negative.
  dptq::Trace t = dptq::read_trace(committed_trace());
  REQUIRE_FALSE(t.has_sensitivity);
  dptq::Sensitivity& s = t.sensitivity;
  s.method = "quarot-rtn";
  s.text_source = "builtin";
  s.window_mode = "random";
  s.windows = 4;
  s.seqlen = 512;
  s.tokens = 2048;
  s.created_utc = "2026-12-06T00:00:00Z";
  s.fp_nll = 2.9;
  s.base_nll = 4.6;
  for (size_t l = 0; l < t.blocks.size(); ++l)
    s.block.push_back({0.01 * double(l % 7) - 0.01, 0.004, 0.02 * double(l % 5), 0.003});
  t.has_sensitivity = true;
  const fs::path with = dir / "with-sensitivity.h5";
  dptq::write_trace(t, with);

  auto measured_pixels = [&](const fs::path& trace, const char* focus, const std::string& name) {
    const fs::path png = dir / (name + ".png");
    const Run r = run("xvfb-run -a " + studio() + " --no-autoload --trace " + quoted(trace.string()) + " --focus " + focus +
                      " --frames 6 --wait-idle --width 1280 --height 800 --screenshot " + quoted(png.string()),
                      dir / "log.txt");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const Image img = load_png(png);
    CHECK(img.count(theme::kError, 2) == 0);
    return img.count(theme::kMeasured, 0);
  };
  const int64_t proxies_without = measured_pixels(committed_trace(), "Proxies", "proxies-without");
  const int64_t proxies_with = measured_pixels(with, "Proxies", "proxies-with");
  const int64_t depth_without = measured_pixels(committed_trace(), "Depth", "depth-without");
  const int64_t depth_with = measured_pixels(with, "Depth", "depth-with");
  MESSAGE("measured-colour pixels: Proxies " << proxies_without << " -> " << proxies_with << ", Depth " << depth_without
                                             << " -> " << depth_with);
  CHECK(proxies_without == 0);
  CHECK(proxies_with > 25 * 40);  // 25 nonzero bars, each several pixels wide and tall
  CHECK(depth_without == 0);
  CHECK(depth_with > 100);        // the curve and its error bars
}

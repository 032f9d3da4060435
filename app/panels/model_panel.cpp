// "Model & data" panel: choose a GGUF file or HF folder, load it in the background, and show the
// architecture summary of dptq::ModelInfo.
#include <imgui.h>

#include <cstdio>
#include <filesystem>
#include <iterator>
#include <string>

#include "../file_dialog.hpp"
#include "../studio.hpp"
#include "../widgets.hpp"

namespace dptq::studio {
namespace {

std::string yes_no(bool b) { return b ? "yes" : "no"; }

constexpr const char* kDevices[] = {"cpu", "cuda", "auto"};

class ModelPanel final : public Panel {
 public:
  const char* title() const override { return "Model & data"; }
  void draw(Studio& studio) override;

 private:
  void draw_source(Studio& studio);
  void draw_load_status(Studio& studio);
  static void draw_summary(const dptq::Model& model);

  std::string path_;
  int device_ = 0;  // index into kDevices
  bool path_initialized_ = false;
  FileDialog dialog_;
  std::string dialog_error_;
};

void ModelPanel::draw(Studio& studio) {
  if (!path_initialized_) {
    path_ = studio.model_slot().load_path.empty() ? studio.options().model_path
                                                  : studio.model_slot().load_path;
    for (int i = 0; i < int(std::size(kDevices)); ++i)
      if (studio.options().device == kDevices[i]) device_ = i;
    path_initialized_ = true;
  }
  if (auto chosen = dialog_.poll()) {
    path_ = *chosen;
    studio.load_model(path_, kDevices[device_]);
  }
  draw_source(studio);
  draw_load_status(studio);
  if (auto model = studio.model()) {
    ImGui::Spacing();
    ImGui::SeparatorText("Architecture");
    draw_summary(*model);
  }
}

void ModelPanel::draw_source(Studio& studio) {
  ImGui::SeparatorText("Model");
  ImGui::SetNextItemWidth(-FLT_MIN);
  const bool entered =
      ui::input_text("##model-path", path_, ImGuiInputTextFlags_EnterReturnsTrue);
  ui::tooltip("Path of a GGUF file or of a HuggingFace folder (config.json, *.safetensors, "
              "tokenizer files); press Enter or Load to load it.");

  const bool busy = studio.tasks().busy();
  ImGui::BeginDisabled(busy);
  if (ImGui::Button("Load") || (entered && !busy)) studio.load_model(path_, kDevices[device_]);
  ImGui::EndDisabled();
  ui::tooltip(busy ? "A background task is running; wait for it or cancel it first."
                   : "Load the model at the path above on a background thread.");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 5);
  ImGui::BeginDisabled(busy);
  ImGui::Combo("Device", &device_, kDevices, int(std::size(kDevices)));
  ImGui::EndDisabled();
  ui::tooltip("Where the next load puts the model: cpu (fp32), cuda (bf16; the CUDA kernels run the "
              "quantizers and rotations) or auto (cuda when a GPU is usable, else cpu). Reload to move "
              "a loaded model.");
  ImGui::SameLine();
  ImGui::BeginDisabled(busy || dialog_.active());
  if (ImGui::Button("Open file...")) {
    if (!dialog_.open(FileDialog::Kind::OpenFile, "Open a GGUF model", ui::start_dir_of(path_),
                      {"GGUF models (*.gguf)", "*.gguf", "All files", "*"}))
      dialog_error_ = dialog_.error();
  }
  ui::tooltip("Choose a .gguf model file with the desktop's file dialog; it loads when chosen.");
  ImGui::SameLine();
  if (ImGui::Button("Open folder...")) {
    if (!dialog_.open(FileDialog::Kind::SelectFolder, "Open a HuggingFace model folder",
                      ui::start_dir_of(path_)))
      dialog_error_ = dialog_.error();
  }
  ui::tooltip("Choose a HuggingFace model folder (config.json + safetensors + tokenizer); it "
              "loads when chosen.");
  ImGui::EndDisabled();
  if (!dialog_error_.empty()) ui::muted_text(dialog_error_);
}

void ModelPanel::draw_load_status(Studio& studio) {
  const ModelSlot& slot = studio.model_slot();
  const auto& task = slot.load_task;
  if (task && !task->finished()) {
    ImGui::ProgressBar(-1.0f * static_cast<float>(ImGui::GetTime()), ImVec2(-FLT_MIN, 0),
                       "loading...");
    ui::muted_text(task->progress().snapshot().stage + "  (" + ui::human_seconds(task->seconds()) + ")");
    return;
  }
  if (!slot.load_error.empty()) {
    ui::error_text(slot.load_error);
    if (slot.model) ui::muted_text("The previously loaded model stays in use.");
    return;
  }
  if (slot.model) {
    ui::ok_text("Loaded " + slot.model->info().path.string() + " in " +
                ui::human_seconds(slot.load_seconds));
  } else {
    ui::muted_text("No model loaded.");
  }
}

void ModelPanel::draw_summary(const dptq::Model& model) {
  const dptq::ModelInfo& info = model.info();
  const dptq::ModelConfig& c = info.config;
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV |
                                ImGuiTableFlags_SizingStretchProp;
  if (!ImGui::BeginTable("summary", 2, flags)) return;
  ImGui::TableSetupColumn("Field", ImGuiTableColumnFlags_WidthFixed);
  ImGui::TableSetupColumn("Value", ImGuiTableColumnFlags_WidthStretch);

  ui::field_row("Name", "Model name from the GGUF metadata (general.name) or the folder name.",
                info.name);
  ui::field_row("Format", "Container the weights were read from: a GGUF file or a HuggingFace folder.",
                info.format);
  ui::field_row("Architecture", "Model family as the loader understood it (SmolLM2 is a LLaMA).",
                c.arch);
  ui::field_row("Device / dtype", "Where the weights live and the compute dtype (fp32 on CPU, bf16 on CUDA).",
                dptq::model_device_name(model) + ", " + dptq::model_dtype_name(model));
  ui::field_row("Layers", "Number of decoder blocks, each an attention and an MLP sublayer.",
                std::to_string(c.n_layers));
  ui::field_row("d_model", "Width of the residual stream (hidden size).", std::to_string(c.d_model));
  ui::field_row("Heads / KV heads",
                "Query heads and key/value heads; fewer KV heads than query heads means grouped-query attention.",
                std::to_string(c.n_heads) + " / " + std::to_string(c.n_kv_heads));
  ui::field_row("head_dim", "Width of one attention head; also the KV-cache quantization group size.",
                std::to_string(c.head_dim));
  ui::field_row("d_ff", "Intermediate width of the gated MLP (gate/up output, down_proj input).",
                std::to_string(c.d_ff));
  ui::field_row("Vocabulary", "Number of token ids the embedding and the output head cover.",
                ui::grouped(c.vocab_size));
  ui::field_row("Context", "Longest sequence the model was trained for (max_position_embeddings).",
                ui::grouped(c.max_context));
  std::string rope = ui::format("%g", c.rope_theta);
  if (c.rope_scaling)
    rope += "  (" + c.rope_scaling->type + " scaling x" + ui::format("%g", c.rope_scaling->factor) + ")";
  ui::field_row("RoPE theta", "Base frequency of the rotary position embedding, plus its scaling rule if any.",
                rope);
  ui::field_row("RMSNorm eps", "Epsilon added inside every RMSNorm.", ui::format("%g", c.rms_eps));
  ui::field_row("Tied embeddings", "Whether the output head reuses the token embedding matrix.",
                yes_no(c.tied_embeddings));
  ui::field_row("QKV bias", "Whether q/k/v projections carry a bias (Qwen2 does).", yes_no(c.qkv_bias));
  ui::field_row("Parameters", "Parameters as loaded, a tied head counted once.",
                ui::human_count(info.n_params), ui::grouped(info.n_params).c_str());
  std::string types;
  for (const auto& [type, count] : info.stored_types) {
    if (!types.empty()) types += ", ";
    types += type + " x" + std::to_string(count);
  }
  ui::field_row("Stored types", "Storage types of the tensors in the file with their counts; they are "
                "dequantized to fp32 on load.", types);
  const std::string fp_short = info.fingerprint.substr(0, 16) + (info.fingerprint.size() > 16 ? "..." : "");
  const std::string fp_tip = "SHA-256 of the config and tensor names/shapes, used to match plans and "
                             "traces to this model: " + info.fingerprint;
  ui::field_row("Fingerprint", "SHA-256 of the config and tensor names/shapes, used to match plans and "
                "traces to this model.", fp_short, fp_tip.c_str());
  const dptq::Tokenizer& tok = model.tokenizer();
  ui::field_row("Tokenizer", "Tokenizer type and pre-tokenizer; its ids match the HuggingFace reference.",
                info.tokenizer_kind + ", " + ui::grouped(tok.vocab_size()) + " tokens" +
                    (tok.add_bos() ? ", adds BOS" : ""));
  ui::field_row("Path", "Where the model was loaded from.", info.path.string());
  ImGui::EndTable();
}

}  // namespace

std::unique_ptr<Panel> make_model_panel() { return std::make_unique<ModelPanel>(); }

}  // namespace dptq::studio

#include "widgets.hpp"

#include <imgui.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "file_dialog.hpp"
#include "theme.hpp"

namespace dptq::studio::ui {
namespace {

void colored_wrapped(theme::Rgb c, std::string_view text) {
  ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(c.rf(), c.gf(), c.bf(), 1.0f));
  ImGui::PushTextWrapPos(0.0f);
  ImGui::TextUnformatted(text.data(), text.data() + text.size());
  ImGui::PopTextWrapPos();
  ImGui::PopStyleColor();
}

int resize_callback(ImGuiInputTextCallbackData* data) {
  if (data->EventFlag == ImGuiInputTextFlags_CallbackResize) {
    auto* s = static_cast<std::string*>(data->UserData);
    s->resize(static_cast<size_t>(data->BufTextLen));
    data->Buf = s->data();
  }
  return 0;
}

}  // namespace

void error_text(std::string_view text) { colored_wrapped(theme::kError, text); }
void ok_text(std::string_view text) { colored_wrapped(theme::kOk, text); }
void muted_text(std::string_view text) { colored_wrapped(theme::kMuted, text); }

void tooltip(const char* text) {
  if (ImGui::BeginItemTooltip()) {
    ImGui::PushTextWrapPos(ImGui::GetFontSize() * 28.0f);
    ImGui::TextUnformatted(text);
    ImGui::PopTextWrapPos();
    ImGui::EndTooltip();
  }
}

bool input_text(const char* label, std::string& value, int flags) {
  flags |= ImGuiInputTextFlags_CallbackResize;
  // ImGui writes into the buffer up to capacity; c_str() keeps the terminator in place.
  return ImGui::InputText(label, value.data(), value.capacity() + 1, flags, resize_callback, &value);
}

void field_row(const char* label, const char* help, const std::string& value,
               const char* value_tooltip) {
  ImGui::TableNextRow();
  ImGui::TableSetColumnIndex(0);
  ImGui::TextUnformatted(label);
  tooltip(help);
  ImGui::TableSetColumnIndex(1);
  ImGui::TextUnformatted(value.c_str());  // not a label: "##" in a path stays visible
  tooltip(value_tooltip ? value_tooltip : help);
  if (ImGui::BeginPopupContextItem(label)) {
    if (ImGui::MenuItem("Copy")) ImGui::SetClipboardText(value.c_str());
    ImGui::EndPopup();
  }
}

std::string start_dir_of(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p(path);
  if (!path.empty() && std::filesystem::is_directory(p, ec)) return p.string();
  if (p.has_parent_path() && std::filesystem::is_directory(p.parent_path(), ec))
    return p.parent_path().string() + "/";
  return {};
}

bool path_field(const char* id, std::string& path, const char* help, FileDialog& dialog,
                const char* dialog_title, const std::vector<std::string>& filters,
                std::string& dialog_error) {
  ImGui::PushID(id);
  const float browse_w = ImGui::CalcTextSize("Browse...").x + ImGui::GetStyle().FramePadding.x * 2;
  ImGui::SetNextItemWidth(-(browse_w + ImGui::GetStyle().ItemSpacing.x));
  const bool entered = input_text("##path", path, ImGuiInputTextFlags_EnterReturnsTrue);
  tooltip(help);
  ImGui::SameLine();
  ImGui::BeginDisabled(dialog.active());
  if (ImGui::Button("Browse...")) {
    dialog_error.clear();
    if (!dialog.open(FileDialog::Kind::OpenFile, dialog_title, start_dir_of(path), filters))
      dialog_error = dialog.error();
  }
  ImGui::EndDisabled();
  tooltip("Choose the file with the desktop's file dialog.");
  if (!dialog_error.empty()) muted_text(dialog_error);
  ImGui::PopID();
  return entered;
}

std::string file_name_part(std::string name) {
  for (char& c : name)
    if (c == '/' || c == '\\' || c == ' ' || static_cast<unsigned char>(c) < 0x20) c = '-';
  return name.empty() ? std::string("model") : name;
}

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string human_count(int64_t n) {
  char buf[32];
  const double v = static_cast<double>(n);
  if (std::llabs(n) >= 1'000'000'000) std::snprintf(buf, sizeof buf, "%.2f B", v / 1e9);
  else if (std::llabs(n) >= 1'000'000) std::snprintf(buf, sizeof buf, "%.2f M", v / 1e6);
  else if (std::llabs(n) >= 10'000) std::snprintf(buf, sizeof buf, "%.1f k", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

std::string grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string human_seconds(double s) {
  char buf[48];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.2f s", s);
  else std::snprintf(buf, sizeof buf, "%d min %02d s", static_cast<int>(s / 60),
                     static_cast<int>(std::fmod(s, 60.0)));
  return buf;
}

}  // namespace dptq::studio::ui

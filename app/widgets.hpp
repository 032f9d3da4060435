// app/widgets.hpp — small ImGui helpers shared by the panels (text styles, tooltips, tables).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dptq::studio {
class FileDialog;
}

namespace dptq::studio::ui {

// Wrapped text in the theme's colours: errors (red), success (green), hints (grey).
void error_text(std::string_view text);
void ok_text(std::string_view text);
void muted_text(std::string_view text);

// One-sentence tooltip for the previous item, shown on hover (wrapped at ~40 characters' width).
void tooltip(const char* text);

// InputText bound to a std::string (grows as the user types). Returns true when edited.
bool input_text(const char* label, std::string& value, int flags = 0);

// Row of a two-column key/value table: `label` carries `help` as its tooltip, the value
// `value_tooltip` (default `help`); right-click on the value copies it. Call between BeginTable and
// EndTable.
void field_row(const char* label, const char* help, const std::string& value,
               const char* value_tooltip = nullptr);

// A path field filling the row, then "Browse..." opening `dialog` (a file to open) in the field's
// folder. Returns true when Enter was pressed in the field. A dialog that cannot open stores why in
// `dialog_error` (shown under the field). The caller polls dialog.poll() for the choice.
bool path_field(const char* id, std::string& path, const char* help, FileDialog& dialog,
                const char* dialog_title, const std::vector<std::string>& filters,
                std::string& dialog_error);
// Folder to start a file dialog in: `path` itself when it is a folder, else its parent ("" if none).
std::string start_dir_of(const std::string& path);

// `name` as one file-name component: '/', '\\', spaces and control characters become '-'.
std::string file_name_part(std::string name);

// printf-style formatting of one number: format("%.3g", 0.5) == "0.5".
std::string format(const char* fmt, double v);

// "134.52 M", "1.20 B", "950" — for parameter and token counts.
std::string human_count(int64_t n);
// "12,345" — thousands separated.
std::string grouped(int64_t n);
// "1.23 s", "2 min 05 s".
std::string human_seconds(double s);

}  // namespace dptq::studio::ui

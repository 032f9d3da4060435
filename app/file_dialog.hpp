// app/file_dialog.hpp — non-blocking native file dialogs (portable-file-dialogs, which runs zenity,
// kdialog, matedialog or qarma as a child process). The UI starts a dialog and polls it each frame,
// so the window keeps drawing while the dialog is open.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dptq::studio {

class FileDialog {
 public:
  enum class Kind { OpenFile, SelectFolder };

  FileDialog();
  ~FileDialog();  // closes a dialog that is still open
  FileDialog(const FileDialog&) = delete;
  FileDialog& operator=(const FileDialog&) = delete;

  // Opens a dialog. `filters` alternates names and patterns: {"GGUF models", "*.gguf", ...}.
  // Returns false when no dialog helper is installed; error() then says what to install.
  bool open(Kind kind, const std::string& title, const std::string& start_path,
            const std::vector<std::string>& filters = {});
  bool active() const { return impl_ != nullptr; }
  // Once the user has chosen: the path (nullopt while still open or when the user cancelled).
  std::optional<std::string> poll();
  const std::string& error() const { return error_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string error_;
};

}  // namespace dptq::studio

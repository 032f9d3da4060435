// The only translation unit that includes portable_file_dialogs.h (a large header-only library).
#include "file_dialog.hpp"

#if __has_include(<portable_file_dialogs.h>)
#include <portable_file_dialogs.h>
#else
#include <portable_file_dialogs/portable_file_dialogs.h>
#endif

namespace dptq::studio {

struct FileDialog::Impl {
  std::unique_ptr<pfd::open_file> file;
  std::unique_ptr<pfd::select_folder> folder;
};

FileDialog::FileDialog() = default;

FileDialog::~FileDialog() {
  if (impl_ && impl_->file) impl_->file->kill();
  if (impl_ && impl_->folder) impl_->folder->kill();
}

bool FileDialog::open(Kind kind, const std::string& title, const std::string& start_path,
                      const std::vector<std::string>& filters) {
  error_.clear();
  if (impl_) return true;  // one dialog at a time; the open one stays
  // available() probes the PATH once for a helper; without one pfd would silently return nothing.
  if (!pfd::settings::available()) {
    error_ = "no file dialog helper found (install zenity or kdialog); type the path instead";
    return false;
  }
  impl_ = std::make_unique<Impl>();
  if (kind == Kind::OpenFile)
    impl_->file = std::make_unique<pfd::open_file>(title, start_path, filters, pfd::opt::none);
  else
    impl_->folder = std::make_unique<pfd::select_folder>(title, start_path, pfd::opt::force_path);
  return true;
}

std::optional<std::string> FileDialog::poll() {
  if (!impl_) return std::nullopt;
  std::string chosen;
  if (impl_->file) {
    if (!impl_->file->ready(0)) return std::nullopt;
    auto files = impl_->file->result();
    if (!files.empty()) chosen = files.front();
  } else if (impl_->folder) {
    if (!impl_->folder->ready(0)) return std::nullopt;
    chosen = impl_->folder->result();
  }
  impl_.reset();
  if (chosen.empty()) return std::nullopt;  // cancelled
  return chosen;
}

}  // namespace dptq::studio

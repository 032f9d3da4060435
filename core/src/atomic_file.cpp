#include "dptq/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "dptq/error.hpp"

namespace dptq {
namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

AtomicFile::AtomicFile(const std::filesystem::path& target) : target_(target.string()) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path dir = target.parent_path();
  dir_ = dir.empty() ? "." : dir.string();
  temp_ = target_ + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(ErrorKind::Io, target_, "cannot create temporary file: " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw Error(ErrorKind::Io, target_, "cannot write: " + errno_text());
    p += w;
    n -= size_t(w);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) {  // closed by an earlier commit attempt: reopen to make the data durable
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(ErrorKind::Io, target_, "cannot reopen temporary file: " + errno_text());
  }
  if (::fsync(fd_) != 0) throw Error(ErrorKind::Io, target_, "fsync failed: " + errno_text());
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw Error(ErrorKind::Io, target_, "close failed: " + errno_text());
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    throw Error(ErrorKind::Io, target_, "cannot rename the temporary file into place: " + errno_text());
  committed_ = true;
  // Make the rename itself durable; some file systems cannot fsync a directory, which is harmless.
  if (const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace dptq

#include "dptq/atomic_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "dptq/error.hpp"

#include <fstream>
#include <sstream>

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
  failpoint("before-rename");
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    throw Error(ErrorKind::Io, target_, "cannot rename the temporary file into place: " + errno_text());
  committed_ = true;
  // Make the rename itself durable; some file systems cannot fsync a directory, which is harmless.
  if (const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  remove_stale_temps(target_);
}

void failpoint(const char* name) noexcept {
  const char* want = std::getenv("DPTQ_FAILPOINT");
  if (want && std::strcmp(want, name) == 0) ::raise(SIGKILL);
}

int remove_stale_temps(const std::filesystem::path& target_in) noexcept {
  namespace fs = std::filesystem;
  const fs::path target = target_in.filename().empty() ? target_in.parent_path() : target_in;
  const std::string prefix = target.filename().string() + ".tmp-";
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    // "<pid>" or "<pid>-<n>": anything else is not ours.
    const std::string rest = name.substr(prefix.size());
    const size_t digits = rest.find_first_not_of("0123456789");
    if (digits == 0 || (digits != std::string::npos && rest[digits] != '-')) continue;
    const long pid = std::strtol(rest.c_str(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    if (fs::remove_all(it->path(), rm) > 0 && !rm) ++removed;
  }
  return removed;
}

std::string read_file_bytes(const std::filesystem::path& path, const char* kind) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(ErrorKind::Io, path.string(), kind ? std::string("is a directory, expected a ") + kind : "cannot read: is a folder");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::Io, path.string(), kind ? std::string("cannot open ") + kind : "cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(ErrorKind::Io, path.string(), "read failed");
  return buffer.str();
}

}  // namespace dptq

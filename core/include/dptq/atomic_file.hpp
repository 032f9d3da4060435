// dptq/atomic_file.hpp — write a file so that its target path only ever holds a complete file
// (DESIGN §6): a temporary file in the same folder, fsync, rename over the target, fsync of the
// folder. Torch-free.
//
//   AtomicFile out(path);               // creates "<path>.tmp-<pid>-<n>"; Error(Io) names `path`
//   out.write(bytes, n);                // or let a library write to out.temp_path() and close it
//   out.commit();                       // durable, then renamed into place
// If commit() is never reached (an exception), the destructor removes the temporary file and the
// target is untouched. A process killed outright (kill -9, power loss) cannot clean up: its
// "<path>.tmp-<pid>-<n>" stays, never under the target's name, and the next successful commit to
// the same target removes it (remove_stale_temps).
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>

namespace dptq {

class AtomicFile {
 public:
  explicit AtomicFile(const std::filesystem::path& target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& temp_path() const { return temp_; }
  // Appends the whole buffer; Error(Io) naming the target on failure.
  void write(const void* data, size_t n);
  // fsync + close + rename + fsync(folder). Also for files another library wrote through
  // temp_path() (it must have closed them).
  void commit();

 private:
  std::string target_, temp_, dir_;
  int fd_ = -1;
  bool committed_ = false;
};

// Removes the temporaries "<target>.tmp-<pid>..." (files or folders) beside `target` whose
// process <pid> no longer runs: leftovers of writers killed before their rename. The folder
// writers (checkpoints, HF folders) and AtomicFile::commit call it after their own rename.
// Never throws; returns how many it removed.
int remove_stale_temps(const std::filesystem::path& target) noexcept;

// Crash test hook (tests/robustness/kill_writers.py): when the environment variable
// DPTQ_FAILPOINT equals `name`, the process kills itself with SIGKILL here. The writers call it
// with "before-rename": the temporary is complete and the target not yet replaced — the worst
// moment for a crash.
void failpoint(const char* name) noexcept;

// A whole file as bytes; Error(Io) naming it for a folder, a missing or an unreadable file
// (`kind`, e.g. "text file", names what was expected in the message).
std::string read_file_bytes(const std::filesystem::path& path, const char* kind = nullptr);

}  // namespace dptq

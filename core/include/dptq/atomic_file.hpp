// dptq/atomic_file.hpp — write a file so that its target path only ever holds a complete file
// (DESIGN §6): a temporary file in the same folder, fsync, rename over the target, fsync of the
// folder. Torch-free.
//
//   AtomicFile out(path);               // creates "<path>.tmp-<pid>-<n>"; Error(Io) names `path`
//   out.write(bytes, n);                // or let a library write to out.temp_path() and close it
//   out.commit();                       // durable, then renamed into place
// If commit() is never reached (an exception, a crash in between), the destructor removes the
// temporary file and the target is untouched.
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

}  // namespace dptq

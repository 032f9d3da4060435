// dptq/error.hpp — typed errors of the core library.
//
// Every failure the user can cause (missing or truncated file, wrong shape, unknown version or
// architecture, bad argument) is thrown as dptq::Error. what() is one line: "<file>: <problem>"
// (or just "<problem>" when no file is involved). Front ends turn it into a message: the CLI prints
// it and exits with code 2, the studio shows it in the panel. The core never prints or exits.
#pragma once
#include <stdexcept>
#include <string>

namespace dptq {

enum class ErrorKind {
  Io,               // cannot open / read / write a file
  Format,           // file content is malformed or truncated
  Version,          // unknown format version
  Unsupported,      // valid input we do not handle (architecture, tensor type, ...)
  Shape,            // tensor shape disagrees with the config
  InvalidArgument,  // a user-provided value is out of range
  Cancelled,        // a background task was cancelled
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& file, const std::string& message)
      : std::runtime_error(one_line(file.empty() ? message : file + ": " + message)),
        kind_(kind), file_(file), message_(message) {}
  ErrorKind kind() const noexcept { return kind_; }
  // what() is guaranteed to be one line: control characters that a library's message or a file's
  // bytes may carry (a SentencePiece piece with a newline: found by fuzz_spm_model) become '?'.
  static std::string one_line(std::string s) {
    for (char& c : s)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return s;
  }
  const std::string& file() const noexcept { return file_; }
  const std::string& message() const noexcept { return message_; }

 private:
  ErrorKind kind_;
  std::string file_;
  std::string message_;
};

}  // namespace dptq

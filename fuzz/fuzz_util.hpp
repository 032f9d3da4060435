// Shared by the fuzz targets: the readers take paths, so each input is written to a file in a
// per-process folder on tmpfs (/dev/shm when present) and read back from there.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "dptq/error.hpp"
#include "dptq/tokenizer.hpp"

namespace dptq::fuzz {

inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    auto d = base / ("dptq-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(scratch(), ec); });
    return d;
  }();
  return dir;
}

// Writes the input to scratch()/name (name may hold a subfolder, created) and returns its path.
inline std::filesystem::path put(const std::string& name, const uint8_t* data, size_t size) {
  const auto p = scratch() / name;
  std::filesystem::create_directories(p.parent_path());
  std::FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return p;
}

// Runs fn; a dptq::Error is the expected refusal of bad input. Any other exception escapes and
// libFuzzer reports it as a crash: readers must turn every malformed input into a dptq::Error
// with one line naming the file. The message must be one line, name a file, and be non-empty.
template <class Fn>
void expect_clean(Fn fn) {
  try {
    fn();
  } catch (const dptq::Error& e) {
    const std::string what = e.what();
    static const bool verbose = std::getenv("DPTQ_FUZZ_VERBOSE") != nullptr;  // to check that seeds parse
    if (verbose) std::fprintf(stderr, "refused: %s\n", what.c_str());
    if (what.empty() || what.find('\n') != std::string::npos) {
      std::fprintf(stderr, "error message is empty or spans lines: [%s]\n", what.c_str());
      std::abort();
    }
  }
}

// What every tokenizer target does with an accepted spec: build the tokenizer, encode a text
// with digits, a special-token look-alike, UTF-8 and an invalid byte, decode the ids.
inline void encode_decode(const dptq::TokenizerSpec& spec) {
  const auto tok = dptq::make_tokenizer(spec);
  try {
    (void)tok->decode(tok->encode("Hello world, 123 <|im_start|> caf\xc3\xa9", true));
    (void)tok->encode("bad byte \xff", false);
  } catch (const dptq::Error&) {  // invalid UTF-8 is refused by some tokenizers: fine
  }
}

}  // namespace dptq::fuzz

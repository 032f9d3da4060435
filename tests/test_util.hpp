// Helpers shared by the doctest suites.
#pragma once
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "dptq/error.hpp"

namespace dptq::test {

// The message of the dptq::Error that `f` throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const dptq::Error& e) {
    return e.what();
  }
  return "";
}

inline std::filesystem::path tests_dir() { return DPTQ_TESTS_DIR; }
inline std::filesystem::path shared_dir() { return DPTQ_SHARED_DIR; }
inline std::filesystem::path default_model() {
  if (const char* env = std::getenv("DPTQ_MODEL")) return env;
  return DPTQ_DEFAULT_MODEL;
}
inline std::filesystem::path wikitext() { return shared_dir() / "data" / "wikitext-2-raw-test.txt"; }

// A fresh empty directory under the build tree for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto p = std::filesystem::path(DPTQ_BINARY_DIR) / "test-scratch" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// n seeded Gaussian floats (mean 0, standard deviation `std`).
inline std::vector<float> randn(size_t n, uint32_t seed, float std = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace dptq::test

// Skips the rest of the current test case (reported, not failed) when `cond` is false.
#define DPTQ_SKIP_UNLESS(cond, why)                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      MESSAGE("SKIPPED: " << why);                                   \
      return;                                                        \
    }                                                                \
  } while (0)

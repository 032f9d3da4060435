// main() of the GPU kernel suites (tests/test_kernels_*.cpp): doctest's, plus the exit code ctest
// reads as "skipped" (SKIP_RETURN_CODE, tests/CMakeLists.txt) when GPU cases skipped themselves for
// want of a device and nothing failed, so a machine without a GPU never reports them as passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "kernel_test_util.hpp"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;
  const int skipped = dptq::test::gpu_skipped_cases();
  if (rc == 0 && skipped > 0) {
    std::printf("SKIPPED: %d GPU test case(s) did not run: %s\n", skipped,
                dptq::test::cuda_unavailable_reason().c_str());
    return dptq::test::kGpuSkipExitCode;
  }
  return rc;
}

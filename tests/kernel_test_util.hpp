// Helpers for the GPU-vs-CPU kernel suites (tests/test_kernels_*.cpp, built only with CUDA).
// Each suite compares a CUDA kernel with its CPU reference by normalized error on odd shapes and
// strided rows, and skips (reported, not failed) when no GPU is usable. GPU cases carry the doctest
// suite "gpu"; tests/CMakeLists.txt registers each binary twice: <name> runs the other cases (argument
// checks, which need no device), <name>_gpu the GPU cases, reported by ctest as Skipped (exit code
// 77) when no device exists.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "dptq/kernels/dtype.hpp"
#include "test_util.hpp"

namespace dptq::test {

// Why no CUDA device can be used ("" when one can): the driver is missing or no device exists, as
// on the build machines. The sticky error is cleared. Computed once per process.
inline const std::string& cuda_unavailable_reason() {
  static const std::string why = [] {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      cudaGetLastError();
      return std::string("no usable CUDA device: cudaGetDeviceCount failed with ") + cudaGetErrorName(err) + " (" +
             cudaGetErrorString(err) + ")";
    }
    return n > 0 ? std::string() : std::string("no usable CUDA device: cudaGetDeviceCount found 0 devices");
  }();
  return why;
}

inline bool cuda_device_available() { return cuda_unavailable_reason().empty(); }

// GPU test cases that skipped themselves in this process; tests/kernel_test_main.cpp exits with
// kGpuSkipExitCode (ctest's SKIP_RETURN_CODE, tests/CMakeLists.txt) when some did and none failed.
inline int& gpu_skipped_cases() {
  static int n = 0;
  return n;
}
constexpr int kGpuSkipExitCode = 77;

inline void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Device buffer of n elements of T, freed on scope exit.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) { cuda_ok(cudaMalloc(&ptr_, n * sizeof(T) + 1), "cudaMalloc"); }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return static_cast<T*>(ptr_); }
  void upload(const std::vector<T>& host) {
    cuda_ok(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    cuda_ok(cudaDeviceSynchronize(), "kernel");
    cuda_ok(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t n_ = 0;
};

// The element types the kernels take, for loops over dtypes.
inline const std::vector<kmath::DType>& all_dtypes() {
  static const std::vector<kmath::DType> d = {kmath::DType::F32, kmath::DType::F16, kmath::DType::BF16};
  return d;
}

// v stored as `dtype` (fp16 / bf16 rounded to nearest even, as the kernels store), as raw bytes.
inline std::vector<uint8_t> to_dtype_bytes(const std::vector<float>& v, kmath::DType dtype) {
  std::vector<uint8_t> out(v.size() * size_t(kmath::dtype_size(dtype)));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == kmath::DType::F32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else if (dtype == kmath::DType::F16) {
      const c10::Half h(v[i]);
      std::memcpy(out.data() + 2 * i, &h.x, 2);
    } else {
      const c10::BFloat16 b(v[i]);
      std::memcpy(out.data() + 2 * i, &b.x, 2);
    }
  }
  return out;
}

// The inverse of to_dtype_bytes (exact).
inline std::vector<float> from_dtype_bytes(const std::vector<uint8_t>& bytes, kmath::DType dtype) {
  const size_t es = size_t(kmath::dtype_size(dtype));
  std::vector<float> out(bytes.size() / es);
  for (size_t i = 0; i < out.size(); ++i) {
    if (dtype == kmath::DType::F32) {
      std::memcpy(&out[i], bytes.data() + 4 * i, 4);
    } else if (dtype == kmath::DType::F16) {
      c10::Half h;
      std::memcpy(&h.x, bytes.data() + 2 * i, 2);
      out[i] = float(h);
    } else {
      c10::BFloat16 b;
      std::memcpy(&b.x, bytes.data() + 2 * i, 2);
      out[i] = float(b);
    }
  }
  return out;
}

// v rounded to dtype and back: what a kernel reading or writing dtype sees.
inline std::vector<float> round_to_dtype(const std::vector<float>& v, kmath::DType dtype) {
  return from_dtype_bytes(to_dtype_bytes(v, dtype), dtype);
}

// ||a - b||_2 / ||b||_2 (0 when both are zero).
inline double normalized_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace dptq::test

// First statement of every GPU test case (declared with `* doctest::test_suite("gpu")`, which the
// ctest entry <suite>_gpu selects): skips the case, reported and counted, when no GPU is usable.
#define DPTQ_SKIP_UNLESS_GPU()                                               \
  do {                                                                       \
    if (!::dptq::test::cuda_device_available()) {                            \
      ++::dptq::test::gpu_skipped_cases();                                   \
      MESSAGE("SKIPPED: " << ::dptq::test::cuda_unavailable_reason());        \
      return;                                                                \
    }                                                                        \
  } while (0)

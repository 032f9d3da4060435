// Private to dptq_kernels: CUDA_CHECK turns a failed CUDA runtime call into a dptq::Error
// (kind Unsupported, one line naming the call, the source location and CUDA's message).
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "dptq/error.hpp"

namespace dptq::cuda::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  throw Error(ErrorKind::Unsupported, "",
              std::string("CUDA error in ") + call + " (" + file + ":" + std::to_string(line) +
                  "): " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

// A kernel's input check failed: InvalidArgument naming the entry point.
[[noreturn]] inline void throw_invalid(const char* op, const std::string& why) {
  throw Error(ErrorKind::InvalidArgument, "", std::string(op) + ": " + why);
}

}  // namespace dptq::cuda::detail

#define CUDA_CHECK(call)                                                                  \
  do {                                                                                    \
    const cudaError_t dptq_cuda_err_ = (call);                                            \
    if (dptq_cuda_err_ != cudaSuccess)                                                    \
      ::dptq::cuda::detail::throw_cuda_error(dptq_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

// dptq/kernels/hd.hpp — qualifier shim so the *_math.hpp headers compile as plain C++ (g++, CPU
// tests, dptq_core) and as CUDA (nvcc, kernels) from one source.
#pragma once

#if defined(__CUDACC__)
#define DPTQ_HD __host__ __device__
#else
#define DPTQ_HD
#endif

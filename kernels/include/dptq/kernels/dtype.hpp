// dptq/kernels/dtype.hpp — the element types the CUDA entry points accept, torch-free.
//
// Kernels read fp32 / fp16 / bf16 and compute in fp32 (conversions to fp32 are exact); outputs
// of the input's type are rounded to nearest even once, at the end. An unknown value is an error
// at the entry point, never a silent fall-through to fp32.
#pragma once
#include <cstdint>

namespace dptq::kmath {

enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
  }
  return "unknown";
}

// Bytes per element, 0 for a value outside the enum.
inline int64_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
  }
  return 0;
}

}  // namespace dptq::kmath

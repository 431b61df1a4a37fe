// Shared element types and small helpers for the camembed kernels (CPU and CUDA).
#pragma once
#include <cstdint>
#include <string>

namespace camembed {

enum class HiddenType { Float32, Float16 };   // hidden states / stored vectors
enum class MaskType { Int64, Int32, Uint8 };  // attention mask element type

// Kernels report failure by returning a message; an empty string means success.
// Native code never aborts on bad input: the caller turns this into a JS error.
using Status = std::string;

inline int64_t maskElementBytes(MaskType t) {
  return t == MaskType::Int64 ? 8 : t == MaskType::Int32 ? 4 : 1;
}
inline int64_t hiddenElementBytes(HiddenType t) { return t == HiddenType::Float32 ? 4 : 2; }

// IEEE 754 binary16 -> binary32, exact (used by scalar paths and tests).
inline float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do { mant <<= 1; ++e; } while ((mant & 0x400u) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 112) << 23 | mant << 13;
  }
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

}  // namespace camembed

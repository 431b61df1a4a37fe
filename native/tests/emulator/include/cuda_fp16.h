// The CUDA emulator's stand-in for <cuda_fp16.h>: IEEE binary16 storage, conversions rounding to
// nearest even (overflow to infinity), as the GPU's __float2half_rn.
#pragma once
#include <cstdint>
#include <cstring>

#include "cuda_runtime.h"

struct alignas(2) __half {
  uint16_t bits;
};
struct alignas(4) __half2 {
  __half x, y;
};

inline __half __float2half_rn(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return {uint16_t(sign | 0x7e00u)};      // NaN
  if (magnitude >= 0x477ff000u) return {uint16_t(sign | 0x7c00u)};     // rounds past 65504: infinity
  if (magnitude < 0x38800000u) {                                       // subnormal half (or zero)
    if (magnitude < 0x33000000u) return {sign};                        // below half the smallest subnormal
    const uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
    const int shift = 126 - int(magnitude >> 23);  // 14..24
    const uint32_t rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    uint32_t m = mantissa >> shift;
    if (rest > halfway || (rest == halfway && (m & 1))) ++m;
    return {uint16_t(sign | m)};
  }
  uint32_t bits = ((magnitude >> 23) - 112) << 10 | ((magnitude >> 13) & 0x3ffu);
  const uint32_t rest = magnitude & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (bits & 1))) ++bits;
  return {uint16_t(sign | bits)};
}

inline float __half2float(__half h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16, exponent = (h.bits >> 10) & 0x1fu, mantissa = h.bits & 0x3ffu;
  uint32_t x;
  if (exponent == 0x1f) {
    x = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    x = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else {
    float f = float(mantissa) * 0x1p-24f;
    std::memcpy(&x, &f, 4);
    x |= sign;
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

inline float2 __half22float2(__half2 h) { return {__half2float(h.x), __half2float(h.y)}; }

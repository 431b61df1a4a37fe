// float32 -> float16 for float16 storage: the F16C conversion instruction (round to nearest even,
// per its immediate) on AVX2 and AVX-512 machines, a bit-exact scalar version elsewhere and for
// NaN lanes (whose payload F16C keeps, where the TypeScript version writes 0x7e00).
#include "camembed/float16.h"

#include <immintrin.h>

#include <cstring>

#include "camembed/cpu_info.h"

// GCC 12 warns inside its own AVX-512 conversion intrinsic (a false positive in the header).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace camembed {
namespace {

uint16_t floatToHalf(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int exponent = int((x >> 23) & 0xffu);
  uint32_t mantissa = x & 0x7fffffu;
  if (exponent == 0xff) return uint16_t(sign | 0x7c00u | (mantissa != 0 ? 0x200u : 0u));  // Inf / NaN
  const int e = exponent - 127 + 15;
  if (e >= 0x1f) return uint16_t(sign | 0x7c00u);  // overflow to infinity
  if (e <= 0) {
    if (e < -10) return uint16_t(sign);  // underflows to zero
    mantissa |= 0x800000u;               // subnormal half: shift the implicit 1 in
    const int shift = 14 - e;
    const uint32_t halfway = 1u << (shift - 1), rest = mantissa & ((1u << shift) - 1);
    uint32_t m = mantissa >> shift;
    if (rest > halfway || (rest == halfway && (m & 1u) != 0)) m += 1;
    return uint16_t(sign | m);
  }
  const uint32_t rest = mantissa & 0x1fffu;
  uint32_t bits = uint32_t(e) << 10 | mantissa >> 13;
  if (rest > 0x1000u || (rest == 0x1000u && (bits & 1u) != 0)) bits += 1;  // may carry into the exponent: correct
  return uint16_t(sign | bits);
}

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) int64_t convertAvx512(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(in + i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtps_ph(v, kRound));
    for (__mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q); nan != 0; nan &= nan - 1) {
      const int lane = __builtin_ctz(nan);
      out[i + lane] = floatToHalf(in[i + lane]);
    }
  }
  return i;
}

__attribute__((target("avx2,f16c"))) int64_t convertAvx2(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(v, kRound));
    for (int nan = _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)); nan != 0; nan &= nan - 1) {
      const int lane = __builtin_ctz(nan);
      out[i + lane] = floatToHalf(in[i + lane]);
    }
  }
  return i;
}

}  // namespace

void floatToHalfArray(const float* in, uint16_t* out, int64_t n) {
  int64_t done = 0;
  switch (simdLevel()) {
    case SimdLevel::Avx512: done = convertAvx512(in, out, n); break;
    case SimdLevel::Avx2: done = convertAvx2(in, out, n); break;
    default: break;
  }
  for (int64_t i = done; i < n; ++i) out[i] = floatToHalf(in[i]);
}

}  // namespace camembed

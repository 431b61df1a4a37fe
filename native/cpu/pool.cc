// Fused masked mean pooling + L2 normalisation on the CPU.
// Floor: reads every unmasked hidden-state element once (B*T_unmasked*H*bytes) and
// writes B*H floats; ~1 add per element. Memory-bound: accumulators (H doubles) stay in L1.
#include <immintrin.h>

#include <cmath>
#include <vector>

#include "camembed/pool.h"
#include "parallel.h"

// GCC 12 warns inside its own AVX-512 conversion intrinsics (a false positive in the header).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace camembed {
namespace {

// acc[0..n) += row[0..n), widening to double so that the sum is exact enough to match
// the float64 reference within float32 rounding of the final value.
void addRowScalar(double* acc, const void* row, HiddenType type, int64_t n) {
  if (type == HiddenType::Float32) {
    const float* r = static_cast<const float*>(row);
    for (int64_t i = 0; i < n; ++i) acc[i] += r[i];
  } else {
    const uint16_t* r = static_cast<const uint16_t*>(row);
    for (int64_t i = 0; i < n; ++i) acc[i] += halfToFloat(r[i]);
  }
}

__attribute__((target("avx2,fma,f16c"))) void addRowAvx2(double* acc, const void* row, HiddenType type,
                                                          int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = type == HiddenType::Float32
                   ? _mm256_loadu_ps(static_cast<const float*>(row) + i)
                   : _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(
                         static_cast<const uint16_t*>(row) + i)));
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    _mm256_storeu_pd(acc + i, _mm256_add_pd(_mm256_loadu_pd(acc + i), lo));
    _mm256_storeu_pd(acc + i + 4, _mm256_add_pd(_mm256_loadu_pd(acc + i + 4), hi));
  }
  if (i < n) {
    int64_t offset = type == HiddenType::Float32 ? i * 4 : i * 2;
    addRowScalar(acc + i, static_cast<const char*>(row) + offset, type, n - i);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void addRowAvx512(double* acc, const void* row, HiddenType type, int64_t n) {
  int64_t i = 0;
  for (; i < n; i += 16) {
    int64_t left = n - i;
    __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    __m512 v = type == HiddenType::Float32
                   ? _mm512_maskz_loadu_ps(m, static_cast<const float*>(row) + i)
                   : _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(row) + i));
    __mmask8 mlo = __mmask8(m & 0xff), mhi = __mmask8(m >> 8);
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    _mm512_mask_storeu_pd(acc + i, mlo, _mm512_add_pd(_mm512_maskz_loadu_pd(mlo, acc + i), lo));
    _mm512_mask_storeu_pd(acc + i + 8, mhi, _mm512_add_pd(_mm512_maskz_loadu_pd(mhi, acc + i + 8), hi));
  }
}

using AddRowFn = void (*)(double*, const void*, HiddenType, int64_t);

AddRowFn chooseAddRow() {
  switch (simdLevel()) {
    case SimdLevel::Avx512: return addRowAvx512;
    case SimdLevel::Avx2: return addRowAvx2;
    default: return addRowScalar;
  }
}

bool maskIsSet(const void* mask, MaskType type, int64_t i) {
  switch (type) {
    case MaskType::Int64: return static_cast<const int64_t*>(mask)[i] != 0;
    case MaskType::Int32: return static_cast<const int32_t*>(mask)[i] != 0;
    default: return static_cast<const uint8_t*>(mask)[i] != 0;
  }
}

}  // namespace

Status meanPoolNormalizeCpu(const PoolArgs& a, int threads) {
  if (a.batch < 0 || a.seq < 0 || a.hiddenSize < 0) return "meanPoolNormalize: negative shape";
  const AddRowFn addRow = chooseAddRow();
  const int64_t rowBytes = a.hiddenSize * hiddenElementBytes(a.hiddenType);
  // One batch row is T*H elements; below ~64K elements a thread costs more than it saves.
  const int64_t minRowsPerThread = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, a.seq * a.hiddenSize));
  parallelRanges(a.batch, resolveThreads(threads), minRowsPerThread, [&](int, int64_t begin, int64_t end) {
    std::vector<double> acc(size_t(a.hiddenSize));
    for (int64_t b = begin; b < end; ++b) {
      std::fill(acc.begin(), acc.end(), 0.0);
      int64_t count = 0;
      for (int64_t t = 0; t < a.seq; ++t) {
        if (!maskIsSet(a.mask, a.maskType, b * a.seq + t)) continue;
        ++count;
        addRow(acc.data(), static_cast<const char*>(a.hidden) + (b * a.seq + t) * rowBytes, a.hiddenType,
               a.hiddenSize);
      }
      const double denom = std::max(double(count), 1e-9);
      double sumSquares = 0;
      for (int64_t h = 0; h < a.hiddenSize; ++h) {
        acc[h] /= denom;
        sumSquares += acc[h] * acc[h];
      }
      // Same float64 operations, in the same order, as the TypeScript reference.
      const double norm = a.normalize ? std::max(std::sqrt(sumSquares), 1e-12) : 1.0;
      float* out = a.out + b * a.hiddenSize;
      for (int64_t h = 0; h < a.hiddenSize; ++h) out[h] = float(acc[h] / norm);
    }
  });
  return "";
}

}  // namespace camembed

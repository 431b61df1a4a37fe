// Floor: reads and writes rows*dim floats once; memory-bound (two passes over a row that sits in L1).
#include "camembed/unit_rows.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "camembed/cpu_info.h"
#include "camembed/float16.h"
#include "camembed/types.h"
#include "parallel.h"

// GCC 12 warns inside its own AVX-512 conversion intrinsics (a false positive in the header).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace camembed {
namespace {

struct RowFns {
  double (*sumSquares)(const float* x, int64_t n);
  double (*sumSquaresHalf)(const uint16_t* x, int64_t n);  // of float16 bits (the load check)
  void (*scale)(const float* x, float* out, int64_t n, double factor);
};

double sumSquaresScalar(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
  return s;
}

// x * factor in float64, rounded once to float32. Element-wise, so the compiler vectorises it
// as is for each target below (no reassociation involved, the same results at every level).
inline __attribute__((always_inline)) void scaleRow(const float* x, float* out, int64_t n, double factor) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(x[i] * factor);
}

void scaleScalar(const float* x, float* out, int64_t n, double factor) { scaleRow(x, out, n, factor); }
__attribute__((target("avx2"))) void scaleAvx2(const float* x, float* out, int64_t n, double factor) {
  scaleRow(x, out, n, factor);
}
__attribute__((target("avx512f"))) void scaleAvx512(const float* x, float* out, int64_t n, double factor) {
  scaleRow(x, out, n, factor);
}

__attribute__((target("avx2,fma"))) double sumSquaresAvx2(const float* x, int64_t n) {
  __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    a = _mm256_fmadd_pd(lo, lo, a);  // exact products: fused or not, the same sums
    b = _mm256_fmadd_pd(hi, hi, b);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(a, b));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sumSquaresScalar(x + i, n - i);
}

__attribute__((target("avx512f"))) double sumSquaresAvx512(const float* x, int64_t n) {
  __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    a = _mm512_fmadd_pd(lo, lo, a);
    b = _mm512_fmadd_pd(hi, hi, b);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(a, b)) + sumSquaresScalar(x + i, n - i);
}

double sumSquaresHalfScalar(const uint16_t* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(halfToFloat(x[i])) * halfToFloat(x[i]);
  return s;
}

// The squares of float16 values are exact in float32 (11 significant bits squared fit in 24), so
// blocks of 64 are summed in float32, four squares per lane and accumulator, and only the blocks'
// sums in float64: a relative error under 2^-21 whatever n, and 1.7x faster than widening each
// value to float64 as sumSquaresAvx2 does (the check of 1M x 768 on the 2-core VM, busy: 100 vs
// 170 ms). AVX-512 machines run it too (the AVX2 level requires F16C).
__attribute__((target("avx2,fma,f16c"))) double sumSquaresHalfAvx2(const uint16_t* x, int64_t n) {
  __m256d total = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (int j = 0; j < 64; j += 16) {
      const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + j)));
      const __m256 w = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + j + 8)));
      a = _mm256_fmadd_ps(v, v, a);
      b = _mm256_fmadd_ps(w, w, b);
    }
    const __m256 block = _mm256_add_ps(a, b);
    total = _mm256_add_pd(total, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(block)),
                                               _mm256_cvtps_pd(_mm256_extractf128_ps(block, 1))));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, total);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sumSquaresHalfScalar(x + i, n - i);
}

RowFns chooseRowFns() {
  switch (simdLevel()) {
    case SimdLevel::Avx512: return {sumSquaresAvx512, sumSquaresHalfAvx2, scaleAvx512};
    case SimdLevel::Avx2: return {sumSquaresAvx2, sumSquaresHalfAvx2, scaleAvx2};
    default: return {sumSquaresScalar, sumSquaresHalfScalar, scaleScalar};
  }
}

// Lowers `first` to row r (threads find rows in any order; the lowest is the one reported).
void lowerTo(std::atomic<int64_t>& first, int64_t r) {
  int64_t seen = first.load();
  while (r < seen && !first.compare_exchange_weak(seen, r)) {
  }
}

}  // namespace

int64_t unitRowsCpu(const float* in, int64_t rows, int64_t dim, float* out32, uint16_t* out16, int threads) {
  const RowFns fns = chooseRowFns();
  std::atomic<int64_t> firstBad{rows};
  // Below ~64K elements a thread costs more than it saves.
  parallelRanges(rows, resolveThreads(threads), std::max<int64_t>(1, 65536 / std::max<int64_t>(1, dim)),
                 [&](int, int64_t begin, int64_t end) {
                   std::vector<float> unit(out16 != nullptr ? size_t(dim) : 0);  // a float16 row's float32 values
                   for (int64_t r = begin; r < end && r < firstBad.load(std::memory_order_relaxed); ++r) {
                     const double sumSquares = fns.sumSquares(in + r * dim, dim);
                     if (!std::isfinite(sumSquares)) {
                       lowerTo(firstBad, r);
                       return;
                     }
                     const double factor = 1.0 / std::max(std::sqrt(sumSquares), 1e-12);
                     if (out16 == nullptr) {
                       fns.scale(in + r * dim, out32 + r * dim, dim, factor);
                     } else {
                       fns.scale(in + r * dim, unit.data(), dim, factor);
                       floatToHalfArray(unit.data(), out16 + r * dim, dim);
                     }
                   }
                 });
  return firstBad == rows ? -1 : firstBad.load();
}

int64_t firstRowAboveNormCpu(const void* rows, bool half, int64_t count, int64_t dim, double maxSumSquares,
                             double* sumSquares, int threads) {
  const RowFns fns = chooseRowFns();
  auto sumSquaresOf = [&](int64_t r) {
    return half ? fns.sumSquaresHalf(static_cast<const uint16_t*>(rows) + r * dim, dim)
                : fns.sumSquares(static_cast<const float*>(rows) + r * dim, dim);
  };
  std::atomic<int64_t> firstBad{count};
  parallelRanges(count, resolveThreads(threads), std::max<int64_t>(1, 65536 / std::max<int64_t>(1, dim)),
                 [&](int, int64_t begin, int64_t end) {
                   for (int64_t r = begin; r < end && r < firstBad.load(std::memory_order_relaxed); ++r) {
                     if (!(sumSquaresOf(r) <= maxSumSquares)) {  // NaN too
                       lowerTo(firstBad, r);
                       return;
                     }
                   }
                 });
  if (firstBad == count) return -1;
  *sumSquares = sumSquaresOf(firstBad);
  return firstBad;
}

}  // namespace camembed

// Floor: reads and writes rows*dim floats once; memory-bound (two passes over a row that sits in L1).
// checksumRowsCpu: one pass that checksums an index file's bytes and checks its rows' norms.
#include "camembed/unit_rows.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
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

// cmbd64 (lib/index/format.ts defines it): four independent 64-bit lanes over 32-byte words.
// The round (multiply, rotate, multiply) and the primes are those of xxHash's XXH64
// (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md).
constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;

inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t word64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);  // little-endian (x86-64); one load each: a 32-byte memcpy went through the stack
  return w;
}

// The checksum's words [at, end), taken one at a time by the norm kernels below, once per 32
// bytes they read: the checksum's integer multiplies and the norms' vector arithmetic then run
// side by side in one core, and the norms come free (bench/RESULTS-index.md). The steps only
// interleave the work: rest() takes the words they leave, so the checksum does not depend on them.
struct ChecksumWords {
  uint64_t v0, v1, v2, v3;
  const uint8_t* at;
  const uint8_t* end;  // at + a multiple of 32

  inline __attribute__((always_inline)) void step() {
    if (at == end) return;
    v0 = rotl64(v0 + word64(at) * kPrime2, 31) * kPrime1;
    v1 = rotl64(v1 + word64(at + 8) * kPrime2, 31) * kPrime1;
    v2 = rotl64(v2 + word64(at + 16) * kPrime2, 31) * kPrime1;
    v3 = rotl64(v3 + word64(at + 24) * kPrime2, 31) * kPrime1;
    // Keeps each lane in a register: in an AVX2 function GCC vectorises the four lanes with
    // 32-bit multiplies, 1.5x slower than the scalar ones.
    asm("" : "+r"(v0), "+r"(v1), "+r"(v2), "+r"(v3));
    at += 32;
  }
  void rest() {
    ChecksumWords checksum = *this;  // in registers (see the norm kernels below)
    while (checksum.at != checksum.end) checksum.step();
    *this = checksum;
  }
};

// For the norm kernels run alone (unitRowsCpu).
struct NoWords {
  void step() {}
};

struct RowFns {
  double (*sumSquares)(const float* x, int64_t n, NoWords& words);
  void (*scale)(const float* x, float* out, int64_t n, double factor);
  // The load check's, stepping the checksum: of float32 values, and of float16 bits.
  double (*checkedSumSquares)(const float* x, int64_t n, ChecksumWords& words);
  double (*checkedSumSquaresHalf)(const uint16_t* x, int64_t n, ChecksumWords& words);
};

// The norm kernels step the checksum once per 32 bytes of the row they read, on a copy of `words`
// stored back at the end: through the reference, every step's lanes went through memory (the
// compiler cannot tell them from the bytes read). The scalar ones are inlined into the SIMD ones'
// tails: called, they ran with the AVX registers' upper halves dirty (GCC put no vzeroupper before
// the call) and each row waited for the one before (the fused pass 1.8x slower).
template <class Words>
inline __attribute__((always_inline)) double sumSquaresScalar(const float* x, int64_t n, Words& words) {
  Words checksum = words;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    s += double(x[i]) * x[i];
    if (i % 8 == 7) checksum.step();
  }
  words = checksum;
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

template <class Words>
__attribute__((target("avx2,fma"))) double sumSquaresAvx2(const float* x, int64_t n, Words& words) {
  Words checksum = words;
  __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    a = _mm256_fmadd_pd(lo, lo, a);  // exact products: fused or not, the same sums
    b = _mm256_fmadd_pd(hi, hi, b);
    checksum.step();
  }
  words = checksum;
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(a, b));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sumSquaresScalar(x + i, n - i, words);
}

template <class Words>
__attribute__((target("avx512f"))) double sumSquaresAvx512(const float* x, int64_t n, Words& words) {
  Words checksum = words;
  __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    a = _mm512_fmadd_pd(lo, lo, a);
    b = _mm512_fmadd_pd(hi, hi, b);
    checksum.step();
    checksum.step();
  }
  words = checksum;
  return _mm512_reduce_add_pd(_mm512_add_pd(a, b)) + sumSquaresScalar(x + i, n - i, words);
}

inline __attribute__((always_inline)) double sumSquaresHalfScalar(const uint16_t* x, int64_t n, ChecksumWords& words) {
  ChecksumWords checksum = words;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    s += double(halfToFloat(x[i])) * halfToFloat(x[i]);
    if (i % 16 == 15) checksum.step();
  }
  words = checksum;
  return s;
}

// The squares of float16 values are exact in float32 (11 significant bits squared fit in 24), so
// blocks of 64 are summed in float32, four squares per lane and accumulator, and only the blocks'
// sums in float64: a relative error under 2^-21 whatever n, and 1.7x faster than widening each
// value to float64 as sumSquaresAvx2 does (the check of 1M x 768 on the 2-core VM, busy: 100 vs
// 170 ms). AVX-512 machines run it too (the AVX2 level requires F16C).
__attribute__((target("avx2,fma,f16c"))) double sumSquaresHalfAvx2(const uint16_t* x, int64_t n, ChecksumWords& words) {
  ChecksumWords checksum = words;
  __m256d total = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (int j = 0; j < 64; j += 16) {
      const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + j)));
      const __m256 w = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + j + 8)));
      a = _mm256_fmadd_ps(v, v, a);
      b = _mm256_fmadd_ps(w, w, b);
      checksum.step();
    }
    const __m256 block = _mm256_add_ps(a, b);
    total = _mm256_add_pd(total, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(block)),
                                               _mm256_cvtps_pd(_mm256_extractf128_ps(block, 1))));
  }
  words = checksum;
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, total);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sumSquaresHalfScalar(x + i, n - i, words);
}

RowFns chooseRowFns() {
  switch (simdLevel()) {
    case SimdLevel::Avx512: return {sumSquaresAvx512, scaleAvx512, sumSquaresAvx512, sumSquaresHalfAvx2};
    case SimdLevel::Avx2: return {sumSquaresAvx2, scaleAvx2, sumSquaresAvx2, sumSquaresHalfAvx2};
    default: return {sumSquaresScalar, scaleScalar, sumSquaresScalar, sumSquaresHalfScalar};
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
                   NoWords none;
                   for (int64_t r = begin; r < end && r < firstBad.load(std::memory_order_relaxed); ++r) {
                     const double sumSquares = fns.sumSquares(in + r * dim, dim, none);
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

int64_t checksumRowsCpu(ChecksumState& state, const uint8_t* bytes, int64_t length, const NormCheck* rows,
                        double* sumSquares) {
  ChecksumWords words{state.lanes[0], state.lanes[1], state.lanes[2], state.lanes[3], bytes, bytes};
  int64_t start = 0;  // bytes that complete the pending word
  if (state.pendingBytes > 0) {
    start = std::min<int64_t>(32 - int64_t(state.pendingBytes), length);
    std::memcpy(state.pending + state.pendingBytes, bytes, size_t(start));
    state.pendingBytes += uint64_t(start);
    if (state.pendingBytes == 32) {
      words.at = state.pending;
      words.end = state.pending + 32;
      words.step();
      state.pendingBytes = 0;
    }
  }
  words.at = bytes + start;
  words.end = words.at + (length - start) / 32 * 32;
  int64_t firstLong = -1;
  if (rows != nullptr) {
    const RowFns fns = chooseRowFns();
    const int64_t count = length / (rows->dim * (rows->half ? 2 : 4));
    for (int64_t r = 0; r < count; ++r) {
      const double s = rows->half ? fns.checkedSumSquaresHalf(reinterpret_cast<const uint16_t*>(bytes) + r * rows->dim, rows->dim, words)
                                  : fns.checkedSumSquares(reinterpret_cast<const float*>(bytes) + r * rows->dim, rows->dim, words);
      if (!(s <= rows->maxSumSquares) && firstLong < 0) {  // NaN too
        firstLong = r;
        *sumSquares = s;
      }
    }
  }
  words.rest();  // the words no row stepped: all of them without rows, row tails' with
  const int64_t tail = bytes + length - words.end;  // 0 when the pending word is still incomplete
  if (tail > 0) {
    std::memcpy(state.pending, words.end, size_t(tail));
    state.pendingBytes = uint64_t(tail);
  }
  state.lanes[0] = words.v0;
  state.lanes[1] = words.v1;
  state.lanes[2] = words.v2;
  state.lanes[3] = words.v3;
  return firstLong;
}

}  // namespace camembed

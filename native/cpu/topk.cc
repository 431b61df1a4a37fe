// Exact cosine top-k on the CPU: a blocked SIMD dot-product kernel streams the database
// once per call (all queries of the call share each tile while it is in L2), and a
// per-query bounded heap keeps the k best rows. The Q x N score matrix never exists.
// Floor: reads N*d*bytes of database once; does 2*Q*N*d FLOPs.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "camembed/topk.h"
#include "parallel.h"

// GCC 12 warns inside its own AVX-512 cast intrinsics (a false positive in the header).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"


namespace camembed {
namespace {

struct Candidate {
  float score;
  int32_t index;
};

// Higher score first; equal scores: lower index first. Makes the result deterministic.
inline bool better(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

// Keeps the k best candidates offered; front() is the worst of them.
class BoundedHeap {
 public:
  explicit BoundedHeap(size_t k = 0) : k_(k) {}
  void offer(float score, int32_t index) {
    Candidate c{score, index};
    if (items_.size() < k_) {
      items_.push_back(c);
      std::push_heap(items_.begin(), items_.end(), better);
    } else if (better(c, items_.front())) {
      std::pop_heap(items_.begin(), items_.end(), better);
      items_.back() = c;
      std::push_heap(items_.begin(), items_.end(), better);
    }
  }
  const std::vector<Candidate>& items() const { return items_; }

 private:
  size_t k_;
  std::vector<Candidate> items_;
};

// Dot products of a block of QB query rows with RB database rows (both with stride d):
// out[a * RB + j] = dot(q[a], r[j]). QB x RB accumulators stay in registers. When `prefetch`
// is set, the RB rows starting there are pulled towards the cache one line per step.
template <int QB, int RB>
void dotBlockScalar(const float* q, const float* r, int64_t d, const float*, float* out) {
  for (int a = 0; a < QB; ++a)
    for (int j = 0; j < RB; ++j) {
      float s = 0;
      for (int64_t i = 0; i < d; ++i) s += q[a * d + i] * r[j * d + i];
      out[a * RB + j] = s;
    }
}

__attribute__((target("avx2,fma"), always_inline)) inline float horizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int QB, int RB>
__attribute__((target("avx2,fma"))) void dotBlockAvx2(const float* q, const float* r, int64_t d, const float* prefetch,
                                                       float* out) {
  __m256 acc[QB][RB];
  for (int a = 0; a < QB; ++a)
    for (int j = 0; j < RB; ++j) acc[a][j] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    if (prefetch != nullptr && i % 16 == 0)
      for (int j = 0; j < RB; ++j) _mm_prefetch(reinterpret_cast<const char*>(prefetch + j * d + i), _MM_HINT_T0);
    __m256 rv[RB];
    for (int j = 0; j < RB; ++j) rv[j] = _mm256_loadu_ps(r + j * d + i);
    for (int a = 0; a < QB; ++a) {
      __m256 qv = _mm256_loadu_ps(q + a * d + i);
      for (int j = 0; j < RB; ++j) acc[a][j] = _mm256_fmadd_ps(qv, rv[j], acc[a][j]);
    }
  }
  if (i < d) {
    alignas(32) static const int32_t ramp[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(d - i)), _mm256_load_si256((const __m256i*)ramp));
    __m256 rv[RB];
    for (int j = 0; j < RB; ++j) rv[j] = _mm256_maskload_ps(r + j * d + i, m);
    for (int a = 0; a < QB; ++a) {
      __m256 qv = _mm256_maskload_ps(q + a * d + i, m);
      for (int j = 0; j < RB; ++j) acc[a][j] = _mm256_fmadd_ps(qv, rv[j], acc[a][j]);
    }
  }
  for (int a = 0; a < QB; ++a)
    for (int j = 0; j < RB; ++j) out[a * RB + j] = horizontalSum(acc[a][j]);
}

// Written out rather than _mm512_reduce_add_ps: with GCC 12 that intrinsic forces the
// accumulators of the block through the stack on every step.
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"), always_inline)) inline __m256 foldHalves(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"), always_inline)) inline float horizontalSum(__m512 v) {
  return horizontalSum(foldHalves(v));
}

// [sum(a), sum(b), sum(c), sum(d)]
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"), always_inline)) inline __m128 horizontalSum4(__m512 a, __m512 b,
                                                                                                 __m512 c, __m512 d) {
  __m256 ab = _mm256_hadd_ps(foldHalves(a), foldHalves(b));  // per 128-bit lane: a0+a1 a2+a3 b0+b1 b2+b3
  __m256 cd = _mm256_hadd_ps(foldHalves(c), foldHalves(d));
  __m256 abcd = _mm256_hadd_ps(ab, cd);                      // per lane: a b c d partial sums
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

template <int QB, int RB>
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) void dotBlockAvx512(const float* q, const float* r, int64_t d,
                                                                         const float* prefetch, float* out) {
  __m512 acc[QB][RB];
  for (int a = 0; a < QB; ++a)
    for (int j = 0; j < RB; ++j) acc[a][j] = _mm512_setzero_ps();
  const int64_t full = d & ~int64_t(15);
  for (int64_t i = 0; i < full; i += 16) {  // plain loads: masked ones in this loop run ~3x slower here
    if (prefetch != nullptr)
      for (int j = 0; j < RB; ++j) _mm_prefetch(reinterpret_cast<const char*>(prefetch + j * d + i), _MM_HINT_T0);
    __m512 rv[RB];
    for (int j = 0; j < RB; ++j) rv[j] = _mm512_loadu_ps(r + j * d + i);
    for (int a = 0; a < QB; ++a) {
      __m512 qv = _mm512_loadu_ps(q + a * d + i);
      for (int j = 0; j < RB; ++j) acc[a][j] = _mm512_fmadd_ps(qv, rv[j], acc[a][j]);
    }
  }
  if (full < d) {
    const __mmask16 m = __mmask16((1u << (d - full)) - 1);
    __m512 rv[RB];
    for (int j = 0; j < RB; ++j) rv[j] = _mm512_maskz_loadu_ps(m, r + j * d + full);
    for (int a = 0; a < QB; ++a) {
      __m512 qv = _mm512_maskz_loadu_ps(m, q + a * d + full);
      for (int j = 0; j < RB; ++j) acc[a][j] = _mm512_fmadd_ps(qv, rv[j], acc[a][j]);
    }
  }
  for (int a = 0; a < QB; ++a) {
    if constexpr (RB == 4) {  // four sums at once: a quarter of the shuffles
      _mm_storeu_ps(out + a * 4, horizontalSum4(acc[a][0], acc[a][1], acc[a][2], acc[a][3]));
    } else {
      for (int j = 0; j < RB; ++j) out[a * RB + j] = horizontalSum(acc[a][j]);
    }
  }
}

constexpr int kBlock = 4;  // queries and rows per register block
using DotBlockFn = void (*)(const float*, const float*, int64_t, const float*, float*);
struct DotBlockTable {
  DotBlockFn fn[kBlock][kBlock];
};

template <template <int, int> class Kernel>
DotBlockTable makeTable() {
  return DotBlockTable{{{Kernel<1, 1>::f, Kernel<1, 2>::f, Kernel<1, 3>::f, Kernel<1, 4>::f},
                        {Kernel<2, 1>::f, Kernel<2, 2>::f, Kernel<2, 3>::f, Kernel<2, 4>::f},
                        {Kernel<3, 1>::f, Kernel<3, 2>::f, Kernel<3, 3>::f, Kernel<3, 4>::f},
                        {Kernel<4, 1>::f, Kernel<4, 2>::f, Kernel<4, 3>::f, Kernel<4, 4>::f}}};
}
template <int QB, int RB> struct ScalarKernel { static constexpr DotBlockFn f = dotBlockScalar<QB, RB>; };
template <int QB, int RB> struct Avx2Kernel { static constexpr DotBlockFn f = dotBlockAvx2<QB, RB>; };
template <int QB, int RB> struct Avx512Kernel { static constexpr DotBlockFn f = dotBlockAvx512<QB, RB>; };

const DotBlockTable& dotBlockTable() {
  static const DotBlockTable scalar = makeTable<ScalarKernel>();
  static const DotBlockTable avx2 = makeTable<Avx2Kernel>();
  static const DotBlockTable avx512 = makeTable<Avx512Kernel>();
  switch (simdLevel()) {
    case SimdLevel::Avx512: return avx512;
    case SimdLevel::Avx2: return avx2;
    default: return scalar;
  }
}

__attribute__((target("avx2,f16c"))) void halfToFloatF16c(const uint16_t* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  for (; i < n; ++i) out[i] = halfToFloat(in[i]);
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) void halfToFloatAvx512(const uint16_t* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i))));
  for (; i < n; ++i) out[i] = halfToFloat(in[i]);
}

void halfToFloatRows(const uint16_t* in, float* out, int64_t n) {
  switch (simdLevel()) {
    case SimdLevel::Avx512: halfToFloatAvx512(in, out, n); break;
    case SimdLevel::Avx2: halfToFloatF16c(in, out, n); break;
    default:
      for (int64_t i = 0; i < n; ++i) out[i] = halfToFloat(in[i]);
  }
}

}  // namespace

Status cosineTopKCpu(const TopKArgs& a, int threads) {
  if (a.dim <= 0 || a.numRows <= 0 || a.numQueries < 0 || a.k < 1 || a.k > a.numRows)
    return "cosineTopK: invalid shape (need dim >= 1, rows >= 1, 1 <= k <= rows)";
  if (a.numRows > INT32_MAX) return "cosineTopK: more than 2^31-1 database rows";
  const int64_t Q = a.numQueries, d = a.dim;
  if (Q == 0) return "";
  const DotBlockTable& table = dotBlockTable();

  std::vector<float> queryNorms(size_t(Q), 1.0f);
  if (!a.normalized)
    for (int64_t q = 0; q < Q; ++q) {
      float s;
      table.fn[0][0](a.queries + q * d, a.queries + q * d, d, nullptr, &s);
      queryNorms[q] = std::sqrt(s);
    }

  // Loop order: a group of kGroupRows rows is read from memory once and stays in L1 while every
  // query block of a chunk passes over it (each query block, fetched from L2, then serves the
  // whole group); the chunk's queries (~512 KiB) stay in L2. More queries than one chunk
  // stream the database once per chunk (then compute dominates).
  // (Groups of two register blocks measured within noise of one here, and slower for float16
  // at small Q, so a group is one block; the loop keeps the size a tuning constant.)
  constexpr int kGroupRows = kBlock;
  const int64_t chunkQueries = std::max<int64_t>(kBlock, (524288 / (d * 4)) / kBlock * kBlock);
  const int64_t minRowsPerThread = std::max<int64_t>(1, (int64_t(1) << 20) / (Q * d));
  const int rangeCount = parallelRangeCount(a.numRows, resolveThreads(threads), minRowsPerThread);
  std::vector<std::vector<BoundedHeap>> heaps(rangeCount, std::vector<BoundedHeap>(size_t(Q), BoundedHeap(size_t(a.k))));
  std::atomic<bool> sawNaN{false};
  const bool half = a.databaseType == HiddenType::Float16;

  parallelRanges(a.numRows, rangeCount, minRowsPerThread, [&](int t, int64_t begin, int64_t end) {
    std::vector<BoundedHeap>& mine = heaps[t];
    std::vector<float> converted(half ? size_t(kGroupRows * d) : 0);
    float rowNorms[kGroupRows];
    std::fill(rowNorms, rowNorms + kGroupRows, 1.0f);
    float block[kBlock * kBlock];
    bool nanHere = false;
    for (int64_t chunk = 0; chunk < Q; chunk += chunkQueries) {
      const int64_t chunkEnd = std::min(Q, chunk + chunkQueries);
      for (int64_t g0 = begin; g0 < end; g0 += kGroupRows) {
        const int64_t groupRows = std::min<int64_t>(kGroupRows, end - g0);
        // Rows are a few KiB, too short for the hardware prefetcher to reach full bandwidth:
        // the next group is prefetched while this one is used. float16 rows are widened into
        // a small buffer that stays in L1.
        const int64_t nextRows = std::min<int64_t>(kGroupRows, end - g0 - groupRows);
        const float* rows;
        if (half) {
          const uint16_t* halfRows = static_cast<const uint16_t*>(a.database) + g0 * d;
          for (int64_t byte = 0; byte < nextRows * d * 2; byte += 64)
            _mm_prefetch(reinterpret_cast<const char*>(halfRows + groupRows * d) + byte, _MM_HINT_T0);
          halfToFloatRows(halfRows, converted.data(), groupRows * d);
          rows = converted.data();
        } else {
          rows = static_cast<const float*>(a.database) + g0 * d;
        }
        if (!a.normalized)
          for (int64_t j = 0; j < groupRows; ++j) {
            table.fn[0][0](rows + j * d, rows + j * d, d, nullptr, &rowNorms[j]);
            rowNorms[j] = std::sqrt(rowNorms[j]);
          }
        for (int64_t q0 = chunk; q0 < chunkEnd; q0 += kBlock) {
          const int qb = int(std::min<int64_t>(kBlock, chunkEnd - q0));
          for (int64_t r0 = 0; r0 < groupRows; r0 += kBlock) {
            const int rb = int(std::min<int64_t>(kBlock, groupRows - r0));
            const bool prefetchNext = !half && q0 == chunk && r0 < nextRows;
            table.fn[qb - 1][rb - 1](a.queries + q0 * d, rows + r0 * d, d,
                                     prefetchNext ? rows + (groupRows + r0) * d : nullptr, block);
            for (int i = 0; i < qb; ++i)
              for (int j = 0; j < rb; ++j) {
                float s = block[i * rb + j];
                if (!a.normalized) {
                  const float denom = queryNorms[q0 + i] * rowNorms[r0 + j];
                  s = denom == 0.0f ? 0.0f : s / denom;  // a zero vector scores 0
                }
                if (s != s) nanHere = true;
                mine[q0 + i].offer(s, int32_t(g0 + r0 + j));
              }
          }
        }
      }
    }
    if (nanHere) sawNaN = true;
  });
  if (sawNaN) return "cosineTopK: a score is NaN: the queries or the database contain NaN or infinite values";

  // Merge the per-thread heaps of each query: sort their union and keep the k best.
  parallelRanges(Q, resolveThreads(threads), 64, [&](int, int64_t begin, int64_t end) {
    std::vector<Candidate> all;
    for (int64_t q = begin; q < end; ++q) {
      all.clear();
      for (int t = 0; t < rangeCount; ++t) all.insert(all.end(), heaps[t][q].items().begin(), heaps[t][q].items().end());
      std::partial_sort(all.begin(), all.begin() + a.k, all.end(), better);
      for (int64_t i = 0; i < a.k; ++i) {
        a.outIndices[q * a.k + i] = all[i].index;
        a.outScores[q * a.k + i] = all[i].score;
      }
    }
  });
  return "";
}

}  // namespace camembed

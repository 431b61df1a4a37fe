// Exact cosine top-k on the CPU: a blocked SIMD dot-product kernel streams the database
// once per call (all queries of the call share each tile while it is in L2), and a
// per-query bounded heap keeps the k best rows. The Q x N score matrix never exists.
// Each score is one sequential FMA chain (topk_packed.inc), whatever the query count.
// Floor: reads N*d*bytes of database once; does 2*Q*N*d FLOPs.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <utility>
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
  int32_t index;  // global row number
};

// Higher score first; equal scores: lower key (the row's id where the segment has ids, else its row
// number), then lower row. Keys are looked up only for equal scores, so a candidate stays 8 bytes
// (heap memory is O(threads * Q * k)).
class Ranking {
 public:
  explicit Ranking(const std::vector<TopKSegment>& segments) {
    int64_t base = 0;
    for (const TopKSegment& seg : segments) {
      if (seg.ids != nullptr) withIds_ = true;
      bases_.push_back(base);
      ids_.push_back(seg.ids);
      base += seg.numRows;
    }
  }
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.score != b.score) return a.score > b.score;
    const int64_t ka = key(a.index), kb = key(b.index);
    return ka < kb || (ka == kb && a.index < b.index);
  }

 private:
  int64_t key(int32_t row) const {
    if (!withIds_) return row;
    const size_t s = size_t(std::upper_bound(bases_.begin(), bases_.end(), int64_t(row)) - bases_.begin()) - 1;
    return ids_[s] != nullptr ? ids_[s][row - bases_[s]] : row;
  }
  bool withIds_ = false;
  std::vector<int64_t> bases_;        // each segment's first global row
  std::vector<const int64_t*> ids_;
};

// Keeps the k best candidates offered; front() is the worst of them.
class BoundedHeap {
 public:
  explicit BoundedHeap(size_t k = 0) : k_(k) {}
  void offer(const Candidate& c, const Ranking& better) {
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

// Database rows are read in their storage type (float32, or float16 widened in registers, so a
// float16 database streams half the bytes).
inline float rowValue(const float* r, int64_t i) { return r[i]; }
inline float rowValue(const uint16_t* r, int64_t i) { return halfToFloat(r[i]); }

__attribute__((target("avx2,fma"), always_inline)) inline float horizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// The last n < 8 values, zero-filled.
template <typename T>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 loadTail8(const T* p, int64_t n) {
  T tail[8] = {};
  for (int64_t i = 0; i < n; ++i) tail[i] = p[i];
  return load8(tail);
}

#define CAMEMBED_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"), always_inline)) inline

// Written out rather than _mm512_reduce_add_ps: with GCC 12 that intrinsic forces the
// accumulators of the block through the stack on every step.
CAMEMBED_AVX512 __m256 foldHalves(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// [sum(a), sum(b), sum(c), sum(d)]
CAMEMBED_AVX512 __m128 horizontalSum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  __m256 ab = _mm256_hadd_ps(foldHalves(a), foldHalves(b));  // per 128-bit lane: a0+a1 a2+a3 b0+b1 b2+b3
  __m256 cd = _mm256_hadd_ps(foldHalves(c), foldHalves(d));
  __m256 abcd = _mm256_hadd_ps(ab, cd);                      // per lane: a b c d partial sums
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

CAMEMBED_AVX512 __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
CAMEMBED_AVX512 __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
CAMEMBED_AVX512 __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
CAMEMBED_AVX512 __m512 load16(const uint16_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }

// float16 -> float32 for n values (a group of float16 rows, for the packed kernel).
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) void widenAvx512(const uint16_t* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, load16(in + i));
  for (; i < n; ++i) out[i] = halfToFloat(in[i]);
}

__attribute__((target("avx2,fma,f16c"))) void widenAvx2(const uint16_t* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8(in + i));
  for (; i < n; ++i) out[i] = halfToFloat(in[i]);
}

void widen(const uint16_t* in, float* out, int64_t n) {
  switch (simdLevel()) {
    case SimdLevel::Avx512: widenAvx512(in, out, n); break;
    case SimdLevel::Avx2: widenAvx2(in, out, n); break;
    default:
      for (int64_t i = 0; i < n; ++i) out[i] = halfToFloat(in[i]);
  }
}

// Sums of squares of four rows (stride d, read in their storage type), four independent chains
// at once, each summed in vector lanes then reduced in one fixed order: a row's norm never
// depends on where it falls or on the query count.
template <typename Row>
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) void sumSquares4Avx512(const void* rowsIn, int64_t d,
                                                                                     float* out) {
  const Row* rows = static_cast<const Row*>(rowsIn);
  __m512 acc[4];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const int64_t full = d & ~int64_t(15);
  for (int64_t i = 0; i < full; i += 16)
    for (int j = 0; j < 4; ++j) {
      const __m512 v = load16(rows + j * d + i);
      acc[j] = _mm512_fmadd_ps(v, v, acc[j]);
    }
  if (full < d) {
    const __mmask16 m = __mmask16((1u << (d - full)) - 1);
    for (int j = 0; j < 4; ++j) {
      const __m512 v = load16(rows + j * d + full, m);
      acc[j] = _mm512_fmadd_ps(v, v, acc[j]);
    }
  }
  _mm_storeu_ps(out, horizontalSum4(acc[0], acc[1], acc[2], acc[3]));
}

template <typename Row>
__attribute__((target("avx2,fma,f16c"))) void sumSquares4Avx2(const void* rowsIn, int64_t d, float* out) {
  const Row* rows = static_cast<const Row*>(rowsIn);
  __m256 acc[4];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const int64_t full = d & ~int64_t(7);
  for (int64_t i = 0; i < full; i += 8)
    for (int j = 0; j < 4; ++j) {
      const __m256 v = load8(rows + j * d + i);
      acc[j] = _mm256_fmadd_ps(v, v, acc[j]);
    }
  if (full < d)
    for (int j = 0; j < 4; ++j) {
      const __m256 v = loadTail8(rows + j * d + full, d - full);
      acc[j] = _mm256_fmadd_ps(v, v, acc[j]);
    }
  for (int j = 0; j < 4; ++j) out[j] = horizontalSum(acc[j]);
}

template <typename Row>
void sumSquares4Scalar(const void* rowsIn, int64_t d, float* out) {
  const Row* rows = static_cast<const Row*>(rowsIn);
  for (int j = 0; j < 4; ++j) {
    float s = 0;
    for (int64_t i = 0; i < d; ++i) s += rowValue(rows + j * d, i) * rowValue(rows + j * d, i);
    out[j] = s;
  }
}

using SumSquares4Fn = void (*)(const void* rows, int64_t d, float* out);
template <typename Row>
SumSquares4Fn sumSquares4() {
  switch (simdLevel()) {
    case SimdLevel::Avx512: return sumSquares4Avx512<Row>;
    case SimdLevel::Avx2: return sumSquares4Avx2<Row>;
    default: return sumSquares4Scalar<Row>;
  }
}

// Few queries at the scalar level (rows in the lanes of topk_packed.inc's dotRows elsewhere):
// out[r * V + j] = dot(query r, row j), each a sequential chain of a * b + c. That is two
// roundings a step, not one as fma (this level runs on CPUs without FMA instructions): another
// order from the SIMD levels, still one order for every query count.
template <typename Row, int MR, int V>
void dotRowsScalar(const void* rowsIn, const float* queries, int64_t d, const void*, float* out) {
  const Row* rows = static_cast<const Row*>(rowsIn);
  float acc[MR][V] = {};
  for (int64_t i = 0; i < d; ++i)
    for (int v = 0; v < V; ++v) {
      const float x = rowValue(rows + v * d, i);
      for (int r = 0; r < MR; ++r) acc[r][v] = queries[r * d + i] * x + acc[r][v];
    }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < V; ++v) out[r * V + v] = acc[r][v];
}

using PackedFn = void (*)(const float* qpack, const float* rows, int64_t d, float* out);
using RowLanesFn = void (*)(const void* rows, const float* queries, int64_t d, const void* next, float* out);
using FilterFn = bool (*)(float* scores, int count, const float* thresholds, const float* rowNorms, uint32_t* masks);

// The scalar level's filterScores (topk_packed.inc) for rows in lanes, V rows.
template <int V>
bool filterScoresScalar(float* scores, int count, const float* thresholds, const float* rowNorms, uint32_t* masks) {
  bool bad = false;
  for (int r = 0; r < count; ++r) {
    masks[r] = 0;
    for (int v = 0; v < V; ++v) {
      float& s = scores[r * V + v];
      if (rowNorms != nullptr) s = rowNorms[v] == 0.0f ? 0.0f : s / rowNorms[v];
      bad |= !std::isfinite(s);
      masks[r] |= uint32_t(s >= thresholds[r]) << v;
    }
  }
  return bad;
}

// The kernel for one query count: `lanes` queries side by side (fn[m - 1] takes m of up to
// `block` rows), or with `rowsInLanes` `lanes` rows side by side (rowFn[m - 1] takes m of up to
// `block` queries).
struct Kernel {
  int lanes, block;
  bool rowsInLanes;
  std::vector<PackedFn> fn;
  std::vector<RowLanesFn> rowFn;
  FilterFn filter;
};

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,fma,f16c")
namespace avx512 {
struct Simd {
  using Vec = __m512;
  static constexpr int kLanes = 16;
  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec loadAligned(const float* p) { return _mm512_load_ps(p); }
  static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  static Vec broadcast(float x) { return _mm512_set1_ps(x); }
  static Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec divOrZero(Vec a, Vec b) {  // a / b, and 0 where b is 0
    return _mm512_maskz_div_ps(_mm512_cmp_ps_mask(b, zero(), _CMP_NEQ_UQ), a, b);
  }
  static uint32_t atLeast(Vec a, Vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static bool anyNonFinite(Vec v) {  // v - v is NaN exactly where v is NaN or infinite
    const Vec z = _mm512_sub_ps(v, v);
    return _mm512_cmp_ps_mask(z, z, _CMP_UNORD_Q) != 0;
  }
};
#include "topk_packed.inc"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
struct Simd {
  using Vec = __m256;
  static constexpr int kLanes = 8;
  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec loadAligned(const float* p) { return _mm256_load_ps(p); }
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  static Vec broadcast(float x) { return _mm256_set1_ps(x); }
  static Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec divOrZero(Vec a, Vec b) { return _mm256_andnot_ps(_mm256_cmp_ps(b, zero(), _CMP_EQ_OQ), _mm256_div_ps(a, b)); }
  static uint32_t atLeast(Vec a, Vec b) { return uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GE_OQ))); }
  static bool anyNonFinite(Vec v) {
    const Vec z = _mm256_sub_ps(v, v);
    return _mm256_movemask_ps(_mm256_cmp_ps(z, z, _CMP_UNORD_Q)) != 0;
  }
  // Within each 128-bit lane: a0 b0 a1 b1, a2 b2 a3 b3, a0 a1 b0 b1, a2 a3 b2 b3.
  static Vec unpackLow(Vec a, Vec b) { return _mm256_unpacklo_ps(a, b); }
  static Vec unpackHigh(Vec a, Vec b) { return _mm256_unpackhi_ps(a, b); }
  static Vec lowPairs(Vec a, Vec b) { return _mm256_shuffle_ps(a, b, 0x44); }
  static Vec highPairs(Vec a, Vec b) { return _mm256_shuffle_ps(a, b, 0xee); }
  // Values h .. h + 3 of 8 rows (row j's first at rows + j * stride): x[j] = [row j | row j + 4]
  // (dotRowsStep in topk_packed.inc). float32: a blend with a broadcast load (on Zen 3 a broadcast
  // is a plain load and a blend takes any FP pipe, where an insert takes a shuffle pipe, the busy
  // one here). float16: at h = 0 all 8 values of each row widened at once, values 4 .. 7 kept in
  // `later` for h = 4 (one widening per value: 9-10% faster at 2 to 4 queries than widening each
  // half, Zen 3).
  static void loadFour(const float* rows, int64_t stride, int h, Vec x[4], Vec*) {
    for (int j = 0; j < 4; ++j)
      x[j] = _mm256_blend_ps(_mm256_castps128_ps256(_mm_loadu_ps(rows + j * stride + h)),
                             _mm256_broadcast_ps(reinterpret_cast<const __m128*>(rows + (j + 4) * stride + h)), 0xf0);
  }
  static void loadFour(const uint16_t* rows, int64_t stride, int h, Vec x[4], Vec later[4]) {
    for (int j = 0; j < 4; ++j) {
      if (h != 0) {
        x[j] = later[j];
        continue;
      }
      const Vec a = load8(rows + j * stride), b = load8(rows + (j + 4) * stride);
      x[j] = _mm256_permute2f128_ps(a, b, 0x20);
      later[j] = _mm256_permute2f128_ps(a, b, 0x31);
    }
  }
};
#include "topk_packed.inc"
}  // namespace avx2
#pragma GCC pop_options

template <class Kernels, int V, size_t... M>
Kernel queryLanes(std::index_sequence<M...>) {
  return Kernel{Kernels::kLanes * V, int(sizeof...(M)), false, {Kernels::template dot<int(M) + 1, V>...}, {},
                Kernels::template filter<V, false>};
}
template <class Kernels, typename Row, int V, size_t... M>
Kernel rowLanes(std::index_sequence<M...>) {
  return Kernel{Kernels::kLanes * V, int(sizeof...(M)), true, {}, {Kernels::template rows<Row, int(M) + 1, V>...},
                Kernels::template filter<V, true>};
}
// Rows in lanes: two vectors of rows a group for up to 3 queries, float16 up to 4 (two accumulator
// chains a query hide the FMA latency), one for more, in blocks of up to 12 queries. float32 Q = 4
// stays on one vector: its group of two, 48 KiB, is too big to prefetch (bench/RESULTS.md).
template <class Kernels, typename Row>
const Kernel& rowLanesFor(int64_t numQueries) {
  constexpr int kFew = sizeof(Row) == 2 ? 4 : 3;
  static const Kernel few = rowLanes<Kernels, Row, 2>(std::make_index_sequence<kFew>());
  static const Kernel more = rowLanes<Kernels, Row, 1>(std::make_index_sequence<12>());
  return numQueries <= kFew ? few : more;
}

// Block shapes: accumulators plus the packed vectors and one broadcast fill the register file
// (32 zmm, 16 ymm). Many queries are packed, one vector of lanes wide or two: measured on the
// AVX-512 VM's 2 cores with rows from memory, ~334 GFLOP/s at 16 lanes x 16 rows (Q=16) and ~500
// of the ~524 GFLOP/s FMA peak at 32 lanes x 12 rows (Q=256). Below the query counts here packed
// queries would leave lanes idle (and float16 rows must first be widened for them): rows are in
// the lanes instead. AVX2 crossovers measured at 300k x 768, 2 threads (bench/RESULTS.md); the
// AVX-512 ones were measured against the kernel that rows in lanes replaced (no AVX-512 CPU since).
const Kernel& kernelFor(int64_t numQueries, bool half) {
  switch (simdLevel()) {
    case SimdLevel::Avx512: {
      static const Kernel narrow = queryLanes<avx512::Kernels, 1>(std::make_index_sequence<16>());
      static const Kernel wide = queryLanes<avx512::Kernels, 2>(std::make_index_sequence<12>());
      // Rows in AVX2's lanes: an AVX-512 version of them could not be run here (no AVX-512 CPU or
      // emulator); each lane sums the same chain, so the scores are the same bits either way.
      if (numQueries < (half ? 32 : 12))
        return half ? rowLanesFor<avx2::Kernels, uint16_t>(numQueries) : rowLanesFor<avx2::Kernels, float>(numQueries);
      return numQueries <= 16 ? narrow : wide;
    }
    case SimdLevel::Avx2: {
      static const Kernel narrow = queryLanes<avx2::Kernels, 1>(std::make_index_sequence<12>());
      static const Kernel wide = queryLanes<avx2::Kernels, 2>(std::make_index_sequence<6>());
      if (numQueries < (half ? 14 : 8))
        return half ? rowLanesFor<avx2::Kernels, uint16_t>(numQueries) : rowLanesFor<avx2::Kernels, float>(numQueries);
      return numQueries <= 8 ? narrow : wide;
    }
    default: {
      static const Kernel rows32{4, 4, true, {}, {dotRowsScalar<float, 1, 4>, dotRowsScalar<float, 2, 4>, dotRowsScalar<float, 3, 4>,
                                 dotRowsScalar<float, 4, 4>}, filterScoresScalar<4>};
      static const Kernel rows16{4, 4, true, {}, {dotRowsScalar<uint16_t, 1, 4>, dotRowsScalar<uint16_t, 2, 4>,
                                 dotRowsScalar<uint16_t, 3, 4>, dotRowsScalar<uint16_t, 4, 4>}, filterScoresScalar<4>};
      return half ? rows16 : rows32;
    }
  }
}

const char* const kNotFinite =
    "cosineTopK: a score is not finite: the queries or the database contain NaN or infinite values "
    "(or values so large that their products overflow float32)";

}  // namespace

Status cosineTopKCpu(const TopKArgs& a, int threads) {
  int64_t numRows = 0;
  for (const TopKSegment& seg : a.segments) {
    if (seg.numRows < 0 || (seg.numRows > 0 && seg.rows == nullptr)) return "cosineTopK: invalid database segment";
    numRows += seg.numRows;
  }
  if (a.dim <= 0 || numRows <= 0 || a.numQueries < 0 || a.k < 1 || a.k > numRows)
    return "cosineTopK: invalid shape (need dim >= 1, rows >= 1, 1 <= k <= rows)";
  if (numRows > INT32_MAX) return "cosineTopK: more than 2^31-1 database rows";
  const int64_t Q = a.numQueries, d = a.dim;
  if (Q == 0) return "";
  const bool half = a.databaseType == HiddenType::Float16;
  const int64_t rowBytes = d * hiddenElementBytes(a.databaseType);

  // Cosine mode scores dot(q / |q|, r) / |r|. The queries are scaled to unit length with their
  // norms in float64, and a row norm whose float32 sum of squares leaves the safe range is redone
  // in float64 (rowNormsOf), so vectors with components like 1e-25 or 1e20 score as the float64
  // reference does instead of underflowing to 0 or overflowing.
  std::vector<float> unitQueries;
  if (!a.normalized) {
    unitQueries.resize(size_t(Q * d));
    for (int64_t q = 0; q < Q; ++q) {
      const float* x = a.queries + q * d;
      double sum = 0;
      for (int64_t i = 0; i < d; ++i) sum += double(x[i]) * x[i];
      // A zero query stays zero and scores 0 against every row. NaN or infinity is reported here:
      // against rows of norm 0 it would score 0 and go unnoticed.
      const double norm = std::sqrt(sum);
      if (!std::isfinite(norm)) return kNotFinite;
      for (int64_t i = 0; i < d; ++i) unitQueries[q * d + i] = norm == 0 ? 0.0f : float(x[i] / norm);
    }
  }
  const float* queries = a.normalized ? a.queries : unitQueries.data();
  const SumSquares4Fn sumSquaresOf4 = half ? sumSquares4<uint16_t>() : sumSquares4<float>();
  // Norms of `count` rows (stride d, storage type) into `norms`; `tail` is a 4-row scratch for the
  // last count % 4 rows (zero-padded, so every row goes through the same 4-row function). Returns
  // false when a norm is not finite: NaN or infinity in a row, or finite values whose norm passes
  // FLT_MAX (components near 1e38), which as an infinite divisor would score the row 0, not its cosine.
  // A float32 row of norm below 1e-15 is marked in `tiny` and its norm given scaled by 2^100: scan
  // scores it from a copy scaled alike (exact, a power of two), as its products with a unit query
  // would otherwise fall among float32's subnormals and lose their digits (a row of components
  // near 1e-45 scored 1 whatever the query). float16 has nothing that small but 0.
  auto rowNormsOf = [&](const char* rows, int64_t count, float* norms, std::vector<char>& tail, char* tiny) {
    bool finite = true;
    int64_t j = 0;
    for (; j + 4 <= count; j += 4) sumSquaresOf4(rows + j * rowBytes, d, norms + j);
    if (j < count) {
      float sums[4];
      std::fill(tail.begin(), tail.end(), 0);
      std::copy(rows + j * rowBytes, rows + count * rowBytes, tail.begin());
      sumSquaresOf4(tail.data(), d, sums);
      std::copy(sums, sums + (count - j), norms + j);
    }
    for (j = 0; j < count; ++j) {
      tiny[j] = 0;
      if (norms[j] >= 1e-30f && norms[j] <= 1e30f) {
        norms[j] = std::sqrt(norms[j]);
        continue;
      }
      double exact = 0;
      const char* row = rows + j * rowBytes;
      for (int64_t i = 0; i < d; ++i) {
        const double x = half ? halfToFloat(reinterpret_cast<const uint16_t*>(row)[i]) : reinterpret_cast<const float*>(row)[i];
        exact += x * x;
      }
      tiny[j] = !half && exact > 0 && exact < 1e-30;
      norms[j] = float(std::sqrt(exact) * (tiny[j] ? 0x1p100 : 1.0));
      finite &= std::isfinite(norms[j]);
    }
    return finite;
  };

  // Many queries are packed side by side in the vector lanes (qpack) and each group of rows read
  // as it is stored (float16 widened first); below a few dozen queries the rows of a group are put
  // side by side instead, and the queries read as they are. Each score is one FMA chain either
  // way: the same bits whatever the query count.
  const Kernel& kernel = kernelFor(Q, half);
  const int64_t lanes = kernel.lanes;
  const int64_t paddedQ = kernel.rowsInLanes ? Q : (Q + lanes - 1) / lanes * lanes;
  struct AlignedFree { void operator()(float* p) const { std::free(p); } };
  std::unique_ptr<float[], AlignedFree> qpack;      // [paddedQ / lanes][d][lanes]
  if (!kernel.rowsInLanes) {
    const size_t bytes = size_t(paddedQ * d * 4 + 63) / 64 * 64;  // aligned_alloc wants a multiple of the alignment
    qpack.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    if (!qpack) return "out of memory: the kernel could not allocate its working memory";
    std::fill(qpack.get(), qpack.get() + paddedQ * d, 0.0f);
    for (int64_t q = 0; q < Q; ++q) {
      float* block = qpack.get() + (q / lanes) * d * lanes + q % lanes;
      for (int64_t i = 0; i < d; ++i) block[i * lanes] = queries[q * d + i];
    }
  }

  // Loop order: a group of rows is read from memory once and stays in L1 while every query
  // block of a chunk passes over it (each query block, fetched from L2, then serves the whole
  // group); the chunk's queries (~512 KiB) stay in L2. More queries than one chunk stream the
  // database once per chunk (then compute dominates).
  const int64_t groupRows = kernel.rowsInLanes ? lanes : kernel.block;
  const int64_t queryStep = kernel.rowsInLanes ? 1 : lanes;
  const int64_t chunkQueries = std::max<int64_t>(queryStep, (524288 / (d * 4)) / queryStep * queryStep);
  const int64_t minRowsPerThread = std::max<int64_t>(1, (int64_t(1) << 20) / (Q * d));
  const int rangeCount = parallelRangeCount(numRows, resolveThreads(threads), minRowsPerThread);
  const Ranking better(a.segments);
  std::vector<std::vector<BoundedHeap>> heaps(rangeCount, std::vector<BoundedHeap>(size_t(Q), BoundedHeap(size_t(a.k))));
  std::atomic<bool> sawNaN{false};

  parallelRanges(numRows, rangeCount, minRowsPerThread, [&](int t, int64_t begin, int64_t end) {
    std::vector<BoundedHeap>& mine = heaps[t];
    // Packed queries: one group of float16 rows widened. Rows in lanes: a short group's rows
    // beside zero rows.
    std::vector<float> widened(half && !kernel.rowsInLanes ? size_t(groupRows * d) : 0);
    std::vector<char> shortGroup(kernel.rowsInLanes ? size_t(groupRows * rowBytes) : 0);
    std::vector<char> normTail(a.normalized ? 0 : size_t(4 * rowBytes));
    std::vector<float> rowNorms(size_t(groupRows), 0.0f);
    std::vector<char> tiny(static_cast<size_t>(groupRows));
    std::vector<float> scaled;  // a group holding tiny rows, those scaled by 2^100 (rowNormsOf)
    std::vector<float> block(size_t(kernel.block * lanes));
    // Per query, the score a row needs to enter its heap: -inf until it holds k, then its worst
    // score (padding lanes of packed queries: never). Most rows of a large database fail it.
    std::vector<float> thresholds(size_t(paddedQ), HUGE_VALF);
    std::fill(thresholds.begin(), thresholds.begin() + Q, -HUGE_VALF);
    std::vector<uint32_t> masks(static_cast<size_t>(kernel.block));
    bool nanHere = false;
    auto offer = [&](int64_t q, float s, int64_t row) {
      if (!(s >= thresholds[q])) return;
      BoundedHeap& heap = mine[q];
      heap.offer({s, int32_t(row)}, better);
      if (heap.items().size() == size_t(a.k)) thresholds[q] = heap.items().front().score;
    };
    // After a kernel call on `called` rows (or with rows in lanes, queries) from q0 and the group
    // at g0 of `count` rows: the scores that pass the filter go to the heaps.
    auto offerBlock = [&](int64_t called, int64_t q0, int64_t g0, int64_t count) {
      nanHere |= kernel.filter(block.data(), int(called), thresholds.data() + q0,
                               a.normalized ? nullptr : rowNorms.data(), masks.data());
      const uint32_t rowLanes = count == 32 ? ~0u : (1u << count) - 1;  // rows in lanes: not the zero rows
      for (int64_t c = 0; c < called; ++c)
        for (uint32_t m = kernel.rowsInLanes ? masks[c] & rowLanes : masks[c]; m != 0; m &= m - 1) {
          const int lane = __builtin_ctz(m);
          const float s = block[c * lanes + lane];
          if (kernel.rowsInLanes) offer(q0 + c, s, g0 + lane);
          else offer(q0 + lane, s, g0 + c);
        }
    };
    // Rows [lo, hi) of one segment (global numbers; the segment starts at global row `base`).
    auto scan = [&](const TopKSegment& seg, int64_t base, int64_t lo, int64_t hi, int64_t chunk, int64_t chunkEnd) {
      for (int64_t g0 = lo; g0 < hi; g0 += groupRows) {
        const int64_t count = std::min<int64_t>(groupRows, hi - g0);
        const char* rows = static_cast<const char*>(seg.rows) + (g0 - base) * rowBytes;
        if (!a.normalized && !rowNormsOf(rows, count, rowNorms.data(), normTail, tiny.data())) nanHere = true;
        const char* data = rows;  // the rows as the kernel reads them
        if (!a.normalized && std::find(tiny.begin(), tiny.begin() + count, 1) != tiny.begin() + count) {
          const float* floats = reinterpret_cast<const float*>(rows);  // tiny rows are float32
          scaled.assign(floats, floats + count * d);
          for (int64_t j = 0; j < count; ++j)
            if (tiny[j])
              for (int64_t i = 0; i < d; ++i) scaled[j * d + i] *= 0x1p100f;
          data = reinterpret_cast<const char*>(scaled.data());
        }
        if (!kernel.rowsInLanes) {
          const float* floats = reinterpret_cast<const float*>(data);
          if (!widened.empty()) {
            widen(reinterpret_cast<const uint16_t*>(data), widened.data(), count * d);  // the group's rows are contiguous
            floats = widened.data();
          }
          for (int64_t q0 = chunk; q0 < chunkEnd; q0 += lanes) {
            kernel.fn[count - 1](qpack.get() + q0 * d, floats, d, block.data());
            offerBlock(count, q0, g0, count);
          }
          continue;
        }
        if (count < groupRows) {
          std::fill(shortGroup.begin(), shortGroup.end(), 0);
          std::copy(data, data + count * rowBytes, shortGroup.begin());
          data = shortGroup.data();
          std::fill(rowNorms.begin() + count, rowNorms.end(), 0.0f);  // zero rows score 0
        }
        // Rows are a few KiB, too short for the hardware prefetcher to reach full bandwidth: the next
        // group is prefetched while this one is read, when it fits in L1 beside it (a 48 KiB group of
        // float32 rows was slower prefetched than not, Zen 3).
        const bool prefetchNext = hi - g0 - count >= groupRows && groupRows * rowBytes <= 24 * 1024;
        const char* next = prefetchNext ? rows + groupRows * rowBytes : nullptr;
        // The chunk's queries in blocks of at most kernel.block, of sizes within one of each other.
        const int64_t n = chunkEnd - chunk, blocks = (n + kernel.block - 1) / kernel.block;
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t q0 = chunk + n * b / blocks, q1 = chunk + n * (b + 1) / blocks;
          kernel.rowFn[q1 - q0 - 1](data, queries + q0 * d, d, b == 0 ? next : nullptr, block.data());
          offerBlock(q1 - q0, q0, g0, count);
        }
      }
    };
    for (int64_t chunk = 0; chunk < Q; chunk += chunkQueries) {
      const int64_t chunkEnd = std::min(Q, chunk + chunkQueries);
      int64_t base = 0;
      for (const TopKSegment& seg : a.segments) {
        const int64_t lo = std::max(begin, base), hi = std::min(end, base + seg.numRows);
        if (lo < hi) scan(seg, base, lo, hi, chunk, chunkEnd);
        base += seg.numRows;
      }
    }
    if (nanHere) sawNaN = true;
  });
  if (sawNaN) return kNotFinite;

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

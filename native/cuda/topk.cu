// Exact cosine top-k against a database resident on the GPU (see docs/cuda.md).
//
// Floor of one search: reads the stored database once per tile of up to kMaxTileQueries
// queries (N * stride * bytes each) and does 2 * Q * N * d FLOPs; the selection adds
// O(Q * k * log(N / k)) candidate writes, negligible against both.
//
// Design (one way through):
//  1. prepareQueries: queries -> storage type (float16 rounds to nearest even), padded rows,
//     and their norms (computed from the rounded values, so cosines are exact for them).
//  2. For each tile of queries, the database is scored in launches of increasing row ranges.
//     The score kernel (WMMA float16 tensor cores with float32 accumulation, sm_70+; or a
//     float32 SIMT kernel for float32 storage) applies each query's threshold in its epilogue:
//     only scores strictly above the query's current k-th best score are appended to the
//     query's candidate list. The Q x N score matrix never exists.
//  3. compactCandidates: when a list holds more than k candidates, a radix select over
//     64-bit keys (score, then lower index) keeps exactly the k best and raises the threshold.
//     Rows are scored in increasing launches, so a later row with a score equal to the
//     threshold can never win its tie: the strict filter is exact.
//  4. sortCandidates: a bitonic sort of the k survivors in shared memory writes the result.
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <climits>
#include <map>
#include <memory>
#include <mutex>

#include "camembed/cuda.h"
#include "check.cuh"

namespace camembed {

namespace {

constexpr int kStrideMultiple = 32;          // stored rows are padded with zeros to this many values
constexpr int64_t kMaxTileQueries = 1024;    // queries sharing one pass over the database
constexpr int64_t kFirstLaunchRows = 4096;   // then doubling: early thresholds cut later appends
constexpr int kScoreThreads = 256;
constexpr int kSelectThreads = 512;
constexpr int kSortThreads = 1024;
constexpr unsigned kMaxGridY = 65535;

// ---------------------------------------------------------------------------------------------
// Candidate keys: (order-preserving bits of the score) << 32 | (~row). A larger key is a better
// candidate: higher score, and for equal scores the lower row. Keys are unique per query.
__device__ __forceinline__ unsigned long long makeKey(float score, int32_t row) {
  unsigned u = __float_as_uint(score);
  u ^= (u & 0x80000000u) ? 0xffffffffu : 0x80000000u;
  return (static_cast<unsigned long long>(u) << 32) | (0xffffffffu - static_cast<unsigned>(row));
}
__device__ __forceinline__ float keyScore(unsigned long long key) {
  unsigned u = static_cast<unsigned>(key >> 32);
  u ^= (u & 0x80000000u) ? 0x80000000u : 0xffffffffu;
  return __uint_as_float(u);
}
__device__ __forceinline__ int32_t keyRow(unsigned long long key) {
  return static_cast<int32_t>(0xffffffffu - static_cast<unsigned>(key));
}

// Per query of the current tile: candidate keys, their count, and the score a new row must
// beat (NaN until the first compaction: every comparison with NaN is false, so all pass).
struct Candidates {
  unsigned long long* keys;  // [tileQueries][capacity]
  int* counts;               // [tileQueries]
  float* thresholds;         // [tileQueries]
  int64_t capacity;          // >= k + rows of one launch, so appends never overflow
  int* flags;                // [0]: a score was NaN, [1]: a query held a bad value
};

// The epilogue shared by both score kernels. `threshold`: the query's, read once by the caller
// (thresholds change only between score launches, in compactCandidates).
__device__ __forceinline__ void offerScore(const Candidates& c, int qLocal, int64_t row, float dot, float queryNorm,
                                           float threshold, const float* __restrict__ rowNorms, bool normalized) {
  float s = dot;
  if (!normalized) {
    // A zero vector scores 0, as on the CPU (tested first: 0 * infinity would be NaN). The product
    // stays in range: float16 norms are below 2e6, and float32 queries come unit-scaled.
    const float rowNorm = rowNorms[row];
    s = queryNorm == 0.0f || rowNorm == 0.0f ? 0.0f : s / (queryNorm * rowNorm);
  }
  s += 0.0f;  // -0 -> +0, so that equal scores have equal keys
  if (s != s) {
    c.flags[0] = 1;
    return;
  }
  if (s <= threshold) return;
  const int slot = atomicAdd(&c.counts[qLocal], 1);
  c.keys[qLocal * c.capacity + slot] = makeKey(s, int32_t(row));
}

// ---------------------------------------------------------------------------------------------
// Float16 scores on tensor cores (WMMA m16n16k16, float32 accumulation: sm_70 and newer).
// A block scores BM queries x 128 rows; 8 warps in a WARPS_M x (8 / WARPS_M) grid. Slices of
// BK values of d go through shared memory. Portable path (sm_70/sm_75, or any GPU when built
// with CAMEMBED_CUDA_PORTABLE): double-buffered via registers, nothing newer than sm_70.
// sm_80+ path: cp.async copies global -> shared directly, kAsyncStages slices in flight.
// Few queries (BM = 16) use BK = 64: the kernel is then memory-bound, and wider slices keep
// more bytes in flight per block.
// Floor per block: (BM + 128) * d * 2 bytes from global memory or L2, 2 * BM * 128 * d FLOPs: a
// search moves Q * N * d * 2 * (1/BM + 1/128) bytes from L2 into the SMs.
constexpr int kHalfBN = 128;
constexpr int kAsyncStages = 3;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(CAMEMBED_CUDA_PORTABLE)
#define CAMEMBED_ASYNC_COPY 1
#endif

// Dynamic shared memory of one score block: enough for the sm_80+ path on sm_80+ devices (more
// than the portable path needs, should an sm_80+ device run portable code), 2 slices otherwise.
int scoreHalfStages(int computeMajor) {
#ifdef CAMEMBED_CUDA_PORTABLE
  computeMajor = 0;  // every device runs the portable path
#endif
  return computeMajor >= 8 ? kAsyncStages : 2;
}
constexpr size_t scoreHalfStageBytes(int bm, int bk) { return size_t(bm + kHalfBN) * (bk + 8) * sizeof(__half); }

#if defined(CAMEMBED_ASYNC_COPY) && !defined(CAMEMBED_CUDA_EMULATOR)  // the emulator defines its own
// 16 bytes global -> shared without registers; zero-filled when !valid (src-size 0 reads nothing).
__device__ __forceinline__ void copyAsync16(void* shared, const void* global, bool valid) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void copyAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int PENDING>
__device__ __forceinline__ void copyAsyncWait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING)); }
#endif

template <int BM, int WARPS_M, int BK>
__global__ void __launch_bounds__(kScoreThreads) scoreHalfKernel(
    const __half* __restrict__ queries, const float* __restrict__ queryNorms, int tileQueries,
    const __half* __restrict__ database, const float* __restrict__ rowNorms, int64_t stride, int64_t rowBegin,
    int64_t rowEnd, bool normalized, Candidates cand) {
  using namespace nvcuda;
  constexpr int BN = kHalfBN, LD = BK + 8;  // +8 halves: fewer shared-memory bank conflicts
  constexpr int WARPS_N = 8 / WARPS_M, WM = BM / WARPS_M, WN = BN / WARPS_N, FM = WM / 16, FN = WN / 16;
  constexpr int ROW_CHUNKS = BK / 8;  // 16-byte chunks per row of a slice
  constexpr int A_CHUNKS = BM * ROW_CHUNKS, B_CHUNKS = BN * ROW_CHUNKS;
  constexpr int A_LOADS = (A_CHUNKS + kScoreThreads - 1) / kScoreThreads, B_LOADS = B_CHUNKS / kScoreThreads;
  static_assert(FM >= 1 && FN >= 1 && B_CHUNKS % kScoreThreads == 0, "tile shape");
  constexpr int STAGE = (BM + BN) * LD;
  __half* smem = dynamicSharedMemory<__half>();  // scoreHalfStages() x STAGE halves
  static_assert(2 * STAGE * sizeof(__half) >= 8 * 256 * sizeof(float), "epilogue scratch must fit");

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int warpM = warp / WARPS_N, warpN = warp % WARPS_N;
  const int64_t queryBase = int64_t(blockIdx.x) * BM;
  const int64_t rowBase = rowBegin + int64_t(blockIdx.y) * BN;
  const __half* aBase = queries + queryBase * stride;  // query rows are padded: always readable
  const __half* bBase = database + rowBase * stride;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  auto computeSlice = [&](const __half* stage) {
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i) wmma::load_matrix_sync(a[i], stage + (warpM * WM + i * 16) * LD + kk, LD);
#pragma unroll
      for (int j = 0; j < FN; ++j) wmma::load_matrix_sync(b[j], stage + BM * LD + (warpN * WN + j * 16) * LD + kk, LD);
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
  };
  const int64_t kTiles = (stride + BK - 1) / BK;
  // The stride is a multiple of 32, so with BK = 64 the last slice may be half past the row end:
  // those chunks are zeros.
#ifdef CAMEMBED_ASYNC_COPY
  auto issueSlice = [&](int64_t k0, __half* stage) {
#pragma unroll
    for (int i = 0; i < A_LOADS; ++i) {
      const int chunk = tid + i * kScoreThreads;
      const int64_t col = k0 + (chunk % ROW_CHUNKS) * 8;
      const bool valid = col < stride;
      if (chunk < A_CHUNKS)
        copyAsync16(stage + (chunk / ROW_CHUNKS) * LD + (chunk % ROW_CHUNKS) * 8,
                    valid ? aBase + (chunk / ROW_CHUNKS) * stride + col : queries, valid);
    }
#pragma unroll
    for (int i = 0; i < B_LOADS; ++i) {
      const int chunk = tid + i * kScoreThreads, r = chunk / ROW_CHUNKS;
      const int64_t col = k0 + (chunk % ROW_CHUNKS) * 8;
      const bool valid = rowBase + r < rowEnd && col < stride;
      copyAsync16(stage + BM * LD + r * LD + (chunk % ROW_CHUNKS) * 8, valid ? bBase + r * stride + col : database,
                  valid);
    }
  };
  for (int s = 0; s < kAsyncStages - 1; ++s) {
    if (s < kTiles) issueSlice(s * BK, smem + s * STAGE);
    copyAsyncCommit();  // one group per slice, empty ones included, so the wait count below holds
  }
  for (int64_t kt = 0; kt < kTiles; ++kt) {
    copyAsyncWait<kAsyncStages - 2>();  // slice kt has landed (for this thread)
    __syncthreads();                    // ... for all threads; and all are done with slice kt - 1
    const int64_t next = kt + kAsyncStages - 1;
    if (next < kTiles) issueSlice(next * BK, smem + (next % kAsyncStages) * STAGE);  // slice kt - 1's buffer
    copyAsyncCommit();
    computeSlice(smem + (kt % kAsyncStages) * STAGE);
  }
  copyAsyncWait<0>();
  __syncthreads();  // the epilogue reuses the buffers
#else
  uint4 aReg[A_LOADS], bReg[B_LOADS];
  auto loadTile = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < A_LOADS; ++i) {
      const int chunk = tid + i * kScoreThreads;
      const int64_t col = k0 + (chunk % ROW_CHUNKS) * 8;
      if (chunk < A_CHUNKS)
        aReg[i] = col < stride ? __ldg(reinterpret_cast<const uint4*>(aBase + (chunk / ROW_CHUNKS) * stride + col))
                               : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < B_LOADS; ++i) {
      const int chunk = tid + i * kScoreThreads, r = chunk / ROW_CHUNKS;
      const int64_t col = k0 + (chunk % ROW_CHUNKS) * 8;
      bReg[i] = rowBase + r < rowEnd && col < stride
                    ? __ldg(reinterpret_cast<const uint4*>(bBase + r * stride + col))
                    : make_uint4(0, 0, 0, 0);
    }
  };
  auto storeTile = [&](__half* stage) {
#pragma unroll
    for (int i = 0; i < A_LOADS; ++i) {
      const int chunk = tid + i * kScoreThreads;
      if (chunk < A_CHUNKS)
        *reinterpret_cast<uint4*>(stage + (chunk / ROW_CHUNKS) * LD + (chunk % ROW_CHUNKS) * 8) = aReg[i];
    }
#pragma unroll
    for (int i = 0; i < B_LOADS; ++i) {
      const int chunk = tid + i * kScoreThreads;
      *reinterpret_cast<uint4*>(stage + BM * LD + (chunk / ROW_CHUNKS) * LD + (chunk % ROW_CHUNKS) * 8) = bReg[i];
    }
  };

  loadTile(0);
  storeTile(smem);
  __syncthreads();
  for (int64_t kt = 0; kt < kTiles; ++kt) {
    const bool more = kt + 1 < kTiles;
    if (more) loadTile((kt + 1) * BK);  // in flight while the tensor cores work
    computeSlice(smem + (kt & 1) * STAGE);
    if (more) storeTile(smem + ((kt + 1) & 1) * STAGE);
    __syncthreads();
  }
#endif

  // Epilogue: each warp spills one 16x16 fragment at a time to its own 1 KiB of shared memory;
  // lane l takes row l/2, columns (l%2)*8 .. +8, as two float4 loads. Lanes 4-7 of every 8 read
  // their second half first, so that each load touches every bank exactly four times (4
  // wavefronts; one float at a time would take 8-way conflicts, 64 wavefronts per fragment).
  float* scratch = reinterpret_cast<float*>(smem) + warp * 256;
  const int r = lane / 2, c0 = (lane % 2) * 8, first = 4 * ((lane / 4) & 1);
#pragma unroll
  for (int i = 0; i < FM; ++i) {
    const int64_t q = queryBase + warpM * WM + i * 16 + r;
    const float queryNorm = q < tileQueries ? queryNorms[q] : 0.0f;
    const float threshold = q < tileQueries ? cand.thresholds[q] : 0.0f;
#pragma unroll
    for (int j = 0; j < FN; ++j) {
      wmma::store_matrix_sync(scratch, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      const float4 a = *reinterpret_cast<const float4*>(scratch + r * 16 + c0 + first);
      const float4 b = *reinterpret_cast<const float4*>(scratch + r * 16 + c0 + (4 - first));
      const float4 lo = first == 0 ? a : b, hi = first == 0 ? b : a;
      const float dots[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
      if (q < tileQueries)
#pragma unroll
        for (int c = 0; c < 8; ++c) {
          const int64_t row = rowBase + warpN * WN + j * 16 + c0 + c;
          if (row < rowEnd) offerScore(cand, int(q), row, dots[c], queryNorm, threshold, rowNorms, normalized);
        }
      __syncwarp();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Float32 scores on CUDA cores (float32 storage must be exact to 1e-5: no TF32). A block scores
// 64 queries x 64 rows; each thread 4 x 4, strided by 16 so shared-memory reads broadcast.
// Floor per block: 128 * d * 4 bytes (+ 64 tiny marks), 2 * 64 * 64 * d FLOPs.
constexpr int kFloatBM = 64, kFloatBN = 64, kFloatBK = 16;

__global__ void __launch_bounds__(kScoreThreads) scoreFloatKernel(
    const float* __restrict__ queries, const float* __restrict__ queryNorms, int tileQueries,
    const float* __restrict__ database, const float* __restrict__ rowNorms, const unsigned char* __restrict__ tinyRows,
    int64_t stride, int64_t rowBegin, int64_t rowEnd, bool normalized, Candidates cand) {
  __shared__ float As[kFloatBK][kFloatBM + 4], Bs[kFloatBK][kFloatBN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t queryBase = int64_t(blockIdx.x) * kFloatBM;
  const int64_t rowBase = rowBegin + int64_t(blockIdx.y) * kFloatBN;
  const int loadRow = tid / 4, loadCol = (tid % 4) * 4;  // one float4 of A and of B per thread
  const bool rowValid = rowBase + loadRow < rowEnd;
  // Cosine mode reads a tiny row (storeRowsKernel) scaled by 2^100, as its norm is stored: exact (a
  // power of two), and its products with a unit query are then normal floats, not subnormals that
  // lose their digits. Four multiplications per slice of 16 values, beside 256 FMAs.
  const float rowScale = !normalized && rowValid && tinyRows[rowBase + loadRow] ? 0x1p100f : 1.0f;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < stride; k0 += kFloatBK) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(queries + (queryBase + loadRow) * stride + k0 + loadCol));
    const float4 b = rowValid ? __ldg(reinterpret_cast<const float4*>(database + (rowBase + loadRow) * stride + k0 + loadCol))
                              : make_float4(0, 0, 0, 0);
    As[loadCol][loadRow] = a.x; As[loadCol + 1][loadRow] = a.y; As[loadCol + 2][loadRow] = a.z; As[loadCol + 3][loadRow] = a.w;
    Bs[loadCol][loadRow] = b.x * rowScale; Bs[loadCol + 1][loadRow] = b.y * rowScale;
    Bs[loadCol + 2][loadRow] = b.z * rowScale; Bs[loadCol + 3][loadRow] = b.w * rowScale;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kFloatBK; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t q = queryBase + ty + 16 * i;
    if (q >= tileQueries) continue;
    const float queryNorm = queryNorms[q], threshold = cand.thresholds[q];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t row = rowBase + tx + 16 * j;
      if (row < rowEnd) offerScore(cand, int(q), row, acc[i][j], queryNorm, threshold, rowNorms, normalized);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Conversions and norms. One warp per row; padding columns are written as zeros.
template <class T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v) { return __float2half_rn(v); }
__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(__half v) { return __half2float(v); }

// Floor: reads rows * dim * sizeof(Src), writes rows * stride * sizeof(Dst) + rows * 5 bytes.
// badRow receives the lowest row holding a value that is not finite once stored, or whose norm is
// not. Norms are summed in float64: float32 squares of components like 1e-25 or 1e20 would
// underflow or overflow. A row of norm below 1e-15 (float32 components near its subnormals) is
// marked in `tiny` and its norm stored scaled by 2^100, as the CPU kernel does: cosine mode scores it
// from its values scaled alike (scoreFloatKernel). float16 has nothing that small but 0 (its
// smallest nonzero square is 3.6e-15), and its tensor-core products are float32: no float16 row is.
template <class Src, class Dst>
__global__ void storeRowsKernel(const Src* __restrict__ src, int64_t rows, int64_t dim, int64_t stride,
                                Dst* __restrict__ dst, float* __restrict__ norms, unsigned char* __restrict__ tiny,
                                int* badRow, int rowOffset) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; row < rows; row += warps) {
    double sumSquares = 0.0;
    bool bad = false;
    for (int64_t i = lane; i < stride; i += 32) {
      const Dst v = fromFloat<Dst>(i < dim ? toFloat(src[row * dim + i]) : 0.0f);
      dst[row * stride + i] = v;
      const float f = toFloat(v);
      bad |= !isfinite(f);
      sumSquares += double(f) * f;
    }
    for (int o = 16; o > 0; o >>= 1) sumSquares += __shfl_xor_sync(0xffffffffu, sumSquares, o);
    // A norm past FLT_MAX (components near 1e38) is bad too: as an infinite divisor it would score
    // the row 0 in cosine mode, not its cosine (the CPU kernel refuses such rows as well).
    const bool isTiny = sumSquares > 0.0 && sumSquares < 1e-30;
    const float norm = float(sqrt(sumSquares) * (isTiny ? 0x1p100 : 1.0));
    bad |= !isfinite(norm);
    if (__any_sync(0xffffffffu, bad) && lane == 0) atomicMin(badRow, rowOffset + int(row));
    if (lane == 0) {
      norms[row] = norm;
      tiny[row] = isTiny;
    }
  }
}

__global__ void resetCandidatesKernel(int* counts, float* thresholds, int tileQueries) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < tileQueries) {
    counts[i] = 0;
    thresholds[i] = __int_as_float(0x7fc00000);  // NaN: no threshold yet
  }
}

// ---------------------------------------------------------------------------------------------
// Keeps exactly the k best keys of each list holding more than k. One block per query.
// Radix select from the most significant byte: at each pass a 256-bin histogram of the keys
// that share the prefix found so far; it stops as soon as the bin holding the k-th key is
// taken whole. Floor: reads the list once per pass (<= 8 passes, usually 3-4) from L2.
__global__ void __launch_bounds__(kSelectThreads) compactCandidatesKernel(Candidates cand,
                                                                         unsigned long long* __restrict__ scratch,
                                                                         int k) {
  __shared__ unsigned histogram[256];
  __shared__ int sharedNeeded, sharedDigit, sharedDigitCount, sharedKept;
  __shared__ unsigned long long sharedMinKey;
  const int q = blockIdx.x, tid = threadIdx.x;
  const int count = cand.counts[q];
  if (count <= k) return;
  unsigned long long* keys = cand.keys + q * cand.capacity;
  unsigned long long* kept = scratch + int64_t(q) * k;

  unsigned long long prefix = 0, prefixMask = 0;
  int needed = k;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += blockDim.x) histogram[i] = 0;
    __syncthreads();
    for (int i = tid; i < count; i += blockDim.x) {
      const unsigned long long key = keys[i];
      if ((key & prefixMask) == prefix) atomicAdd(&histogram[(key >> shift) & 255], 1u);
    }
    __syncthreads();
    if (tid < 32) {  // warp 0: lane l scans digits 255-8l down to 248-8l
      unsigned bins[8], laneTotal = 0;
#pragma unroll
      for (int m = 0; m < 8; ++m) laneTotal += bins[m] = histogram[255 - 8 * tid - m];
      unsigned inclusive = laneTotal;
      for (int o = 1; o < 32; o <<= 1) {
        const unsigned other = __shfl_up_sync(0xffffffffu, inclusive, o);
        if (tid >= o) inclusive += other;
      }
      unsigned before = inclusive - laneTotal;
      if (before < unsigned(needed) && unsigned(needed) <= inclusive)
        for (int m = 0; m < 8; ++m) {
          if (before + bins[m] >= unsigned(needed)) {
            sharedDigit = 255 - 8 * tid - m;
            sharedNeeded = needed - int(before);
            sharedDigitCount = int(bins[m]);
            break;
          }
          before += bins[m];
        }
    }
    __syncthreads();
    prefix |= static_cast<unsigned long long>(sharedDigit) << shift;
    prefixMask |= 255ull << shift;
    needed = sharedNeeded;
    const bool whole = sharedDigitCount == needed;
    __syncthreads();  // everyone has read the shared results before the next pass writes them
    if (whole) break;
  }
  // Keys >= prefix (remaining bits zero) are exactly the k best.
  if (tid == 0) {
    sharedKept = 0;
    sharedMinKey = ~0ull;
  }
  __syncthreads();
  for (int i = tid; i < count; i += blockDim.x) {
    const unsigned long long key = keys[i];
    if (key >= prefix) {
      const int slot = atomicAdd(&sharedKept, 1);
      if (slot < k) kept[slot] = key;  // exactly k pass (keys are unique); the guard only bounds the write
      atomicMin(&sharedMinKey, key);
    }
  }
  __syncthreads();
  for (int i = tid; i < k; i += blockDim.x) keys[i] = kept[i];
  if (tid == 0) {
    cand.counts[q] = k;
    cand.thresholds[q] = keyScore(sharedMinKey);
  }
}

// Sorts each query's k survivors (best first) with a bitonic sort in shared memory and writes
// them out. Floor: k * 8 bytes read, k * 8 written per query.
__global__ void __launch_bounds__(kSortThreads) sortCandidatesKernel(Candidates cand, int k, int32_t* __restrict__ outIndices,
                                                                    float* __restrict__ outScores) {
  __shared__ unsigned long long keys[kCudaMaxK];
  const int q = blockIdx.x, tid = threadIdx.x;
  const int count = min(cand.counts[q], k);  // == k unless a NaN score was dropped (then an error is returned)
  int n = 2;
  while (n < k) n *= 2;
  for (int i = tid; i < n; i += blockDim.x) keys[i] = i < count ? cand.keys[q * cand.capacity + i] : 0ull;
  __syncthreads();
  for (int size = 2; size <= n; size *= 2)
    for (int half = size / 2; half > 0; half /= 2) {
      for (int i = tid; i < n / 2; i += blockDim.x) {
        const int lo = 2 * i - (i & (half - 1)), hi = lo + half;
        const bool descending = (lo & size) == 0;
        const unsigned long long a = keys[lo], b = keys[hi];
        if ((a < b) == descending) {
          keys[lo] = b;
          keys[hi] = a;
        }
      }
      __syncthreads();
    }
  for (int i = tid; i < k; i += blockDim.x) {
    outIndices[int64_t(q) * k + i] = keyRow(keys[i]);
    outScores[int64_t(q) * k + i] = keyScore(keys[i]);
  }
}

// Queries -> storage type, padded to `stride` columns and to `paddedQueries` rows (zeros), with
// the norms of the stored values (summed in float64). With `unitScale` (cosine mode, float32
// storage, as the CPU kernel does) the queries are stored divided by their float64 norm, and
// their norms are 1 (0 for a zero query), so that dot products of queries like 1e20 cannot
// overflow. One block per padded row.
template <class Dst>
__global__ void prepareQueriesKernel(const float* __restrict__ src, int64_t numQueries, int64_t dim, int64_t stride,
                                     Dst* __restrict__ dst, float* __restrict__ norms, int* flags, bool unitScale) {
  __shared__ double partial[32];
  const int64_t q = blockIdx.x;
  const float* row = src + q * dim;  // read only for q < numQueries
  double sumSquares = 0.0;
  bool bad = false;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float f = toFloat(fromFloat<Dst>(q < numQueries ? row[i] : 0.0f));
    bad |= !isfinite(f);
    sumSquares += double(f) * f;
  }
  for (int o = 16; o > 0; o >>= 1) sumSquares += __shfl_xor_sync(0xffffffffu, sumSquares, o);
  if (__syncthreads_or(bad) && threadIdx.x == 0) flags[1] = 1;
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sumSquares;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < int(blockDim.x / 32); ++w) total += partial[w];
  const double norm = sqrt(total), scale = unitScale && norm > 0.0 ? 1.0 / norm : 1.0;
  for (int64_t i = threadIdx.x; i < stride; i += blockDim.x)
    dst[q * stride + i] = fromFloat<Dst>(q < numQueries && i < dim ? float(row[i] * scale) : 0.0f);
  if (threadIdx.x == 0) norms[q] = unitScale ? (norm > 0.0 ? 1.0f : 0.0f) : float(norm);
}

int64_t roundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Bytes for the candidate lists of one query tile on a device with `totalMemory` bytes: 1/32 of
// it, within [256 MiB, 2 GiB]. Each list must hold k + one launch of rows, so a larger budget
// means longer launches and fewer compactions (a launch of one block per query each), for the
// same ~k * ln(N / 4096) appends in all: a 1,024-query tile on an 80 GB card scores 262K rows
// per launch (32K at 256 MiB): 39 launches over 8.8M rows instead of 275 (counting the first,
// doubling ones). At most half the memory free at the device's first search: a matrix filling most
// of the card is then searched in shorter launches rather than refused for want of memory.
int64_t candidateBudget(size_t freeMemory, size_t totalMemory) {
  const int64_t wanted = std::clamp<int64_t>(int64_t(totalMemory / 32), int64_t(256) << 20, int64_t(2) << 30);
  return std::min<int64_t>(wanted, int64_t(freeMemory / 2));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
struct CudaMatrix {
  int device = 0;
  int computeMajor = 0;
  int64_t rows = 0, dim = 0, stride = 0;
  HiddenType storage = HiddenType::Float16;
  DeviceBuffer<char> data;     // [rows][stride] of storage
  DeviceBuffer<float> norms;   // [rows] (tiny rows': scaled by 2^100)
  DeviceBuffer<unsigned char> tinyRows;  // [rows] 1: norm below 1e-15, scored in cosine mode scaled by 2^100
  cudaStream_t stream = nullptr;
  std::mutex mutex;            // one use at a time (uploads, searches, free)

  int64_t elementBytes() const { return hiddenElementBytes(storage); }
};

namespace {

// The search workspace of one device, shared by all matrices on it, one search at a time (they
// would compete for the GPU anyway): per matrix, a VectorIndex with one matrix per 64 MiB chunk
// kept ~200 grow-only workspaces of up to ~256 MiB each. Kept (grow-only) until the process ends.
struct SearchWorkspace {
  std::mutex mutex;
  int64_t candidateBytes = 0;       // candidateBudget() of the device, set at its first search
  DeviceBuffer<float> hostQueries;  // [Q][dim] staging for host queries
  DeviceBuffer<char> queries;       // [Qpad][stride] of storage
  DeviceBuffer<float> queryNorms;   // [Qpad]
  DeviceBuffer<unsigned long long> keys, kept;
  DeviceBuffer<int> counts, flags;
  DeviceBuffer<float> thresholds;
  DeviceBuffer<int32_t> outIndices;
  DeviceBuffer<float> outScores;
};

SearchWorkspace& workspaceOf(int device) {
  static std::mutex lock;
  // Never destroyed: static destructors can run after the CUDA runtime has shut down.
  static auto* all = new std::map<int, SearchWorkspace*>();
  std::lock_guard<std::mutex> hold(lock);
  SearchWorkspace*& w = (*all)[device];
  if (w == nullptr) w = new SearchWorkspace();
  return *w;
}

template <class Src, class Dst>
Status launchStoreRows(const void* src, int64_t rows, CudaMatrix* m, int64_t rowOffset, int* badRow) {
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((rows * 32 + threads - 1) / threads, 65536);
  return launchKernel("CudaMatrix: launching the upload kernel", storeRowsKernel<Src, Dst>, unsigned(blocks), threads, 0,
                      m->stream, static_cast<const Src*>(src), rows, m->dim, m->stride,
                      reinterpret_cast<Dst*>(m->data.get()) + rowOffset * m->stride, m->norms.get() + rowOffset,
                      m->tinyRows.get() + rowOffset, badRow, int(rowOffset));
}

template <int BM, int WARPS_M, int BK>
Status launchScoreHalf(const CudaMatrix* m, dim3 grid, cudaStream_t stream, const __half* queries, const float* queryNorms,
                       int tileQueries, int64_t rowBegin, int64_t rowEnd, bool normalized, const Candidates& cand) {
  const auto kernel = scoreHalfKernel<BM, WARPS_M, BK>;
  const size_t sharedBytes = scoreHalfStages(m->computeMajor) * scoreHalfStageBytes(BM, BK);
  CAMEMBED_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sharedBytes)),
                    "cosineTopK: cudaFuncSetAttribute");
  return launchKernel("cosineTopK: launching the score kernel", kernel, grid, kScoreThreads, sharedBytes, stream, queries,
                      queryNorms, tileQueries, reinterpret_cast<const __half*>(m->data.get()), m->norms.get(), m->stride,
                      rowBegin, rowEnd, normalized, cand);
}

// Runs one search on `stream`: queries (float32, device) -> outIndices/outScores (device), with
// the workspace `w` (its lock held). On an error the stream may still hold queued kernels: see
// searchLocked.
Status searchLaunch(CudaMatrix* m, int64_t rows, SearchWorkspace& w, const float* queries, int64_t Q, int64_t k,
                    bool normalized, int32_t* outIndices, float* outScores, cudaStream_t stream) {
  const bool half = m->storage == HiddenType::Float16;
  // Query tile and block shape: small tiles for few queries so that Q = 1 reads the database
  // once without 128x wasted tensor work.
  const int bm = !half ? kFloatBM : Q <= 16 ? 16 : Q <= 64 ? 64 : 128;
  const int bn = half ? kHalfBN : kFloatBN;
  const int64_t paddedQueries = roundUp(Q, 128);
  int64_t tileQueries = std::min(roundUp(Q, bm), kMaxTileQueries);
  // Each query of a tile needs k + launchRows candidate slots and k kept slots (8 bytes each).
  if (w.candidateBytes == 0) {
    size_t freeBytes = 0, totalBytes = 0;
    CAMEMBED_CUDA_TRY(cudaMemGetInfo(&freeBytes, &totalBytes), "cosineTopK: cudaMemGetInfo");
    w.candidateBytes = candidateBudget(freeBytes, totalBytes);
  }
  int64_t maxLaunchRows = w.candidateBytes / (tileQueries * 8) - 2 * k;
  maxLaunchRows = std::min<int64_t>(maxLaunchRows, int64_t(kMaxGridY) * bn) / bn * bn;
  maxLaunchRows = std::min(maxLaunchRows, roundUp(rows, bn));
  if (maxLaunchRows < bn) {
    return "cosineTopK: k is too large for the search workspace (" + std::to_string(w.candidateBytes >> 20) +
           " MiB: at most half the GPU memory that was free at the first search)";
  }
  const int64_t capacity = k + maxLaunchRows;

  Status s;
  if (!(s = w.queries.reserve(size_t(paddedQueries * m->stride * m->elementBytes()), "cosineTopK: cudaMalloc(queries)")).empty() ||
      !(s = w.queryNorms.reserve(size_t(paddedQueries), "cosineTopK: cudaMalloc(query norms)")).empty() ||
      !(s = w.keys.reserve(size_t(tileQueries * capacity), "cosineTopK: cudaMalloc(candidates)")).empty() ||
      !(s = w.kept.reserve(size_t(tileQueries * k), "cosineTopK: cudaMalloc(candidates)")).empty() ||
      !(s = w.counts.reserve(size_t(tileQueries), "cosineTopK: cudaMalloc(counts)")).empty() ||
      !(s = w.thresholds.reserve(size_t(tileQueries), "cosineTopK: cudaMalloc(thresholds)")).empty() ||
      !(s = w.flags.reserve(2, "cosineTopK: cudaMalloc(flags)")).empty())
    return s;
  CAMEMBED_CUDA_TRY(cudaMemsetAsync(w.flags.get(), 0, 2 * sizeof(int), stream), "cosineTopK: cudaMemsetAsync");

  s = half ? launchKernel("cosineTopK: launching prepareQueries", prepareQueriesKernel<__half>, unsigned(paddedQueries),
                          128, 0, stream, queries, Q, m->dim, m->stride, reinterpret_cast<__half*>(w.queries.get()),
                          w.queryNorms.get(), w.flags.get(), false)
           : launchKernel("cosineTopK: launching prepareQueries", prepareQueriesKernel<float>, unsigned(paddedQueries),
                          128, 0, stream, queries, Q, m->dim, m->stride, reinterpret_cast<float*>(w.queries.get()),
                          w.queryNorms.get(), w.flags.get(), !normalized);
  if (!s.empty()) return s;

  Candidates cand{w.keys.get(), w.counts.get(), w.thresholds.get(), capacity, w.flags.get()};
  for (int64_t q0 = 0; q0 < Q; q0 += tileQueries) {
    const int tq = int(std::min(tileQueries, Q - q0));
    const char* tileQueriesData = w.queries.get() + q0 * m->stride * m->elementBytes();
    const float* tileNorms = w.queryNorms.get() + q0;
    if (!(s = launchKernel("cosineTopK: launching the reset kernel", resetCandidatesKernel, unsigned((tq + 255) / 256),
                           256, 0, stream, cand.counts, cand.thresholds, tq))
             .empty())
      return s;
    int64_t launchRows = std::min(maxLaunchRows, roundUp(std::max<int64_t>(kFirstLaunchRows, 2 * k), bn));
    for (int64_t r0 = 0; r0 < rows; r0 += launchRows, launchRows = std::min(maxLaunchRows, 2 * launchRows)) {
      const int64_t r1 = std::min(rows, r0 + launchRows);
      const dim3 grid(unsigned((tq + bm - 1) / bm), unsigned((r1 - r0 + bn - 1) / bn));
      const __half* qd = reinterpret_cast<const __half*>(tileQueriesData);
      s = !half      ? launchKernel("cosineTopK: launching the score kernel", scoreFloatKernel, grid, kScoreThreads, 0,
                                    stream, reinterpret_cast<const float*>(tileQueriesData), tileNorms, tq,
                                    reinterpret_cast<const float*>(m->data.get()), m->norms.get(),
                                    m->tinyRows.get(), m->stride, r0, r1, normalized, cand)
          : bm == 16 ? launchScoreHalf<16, 1, 64>(m, grid, stream, qd, tileNorms, tq, r0, r1, normalized, cand)
          : bm == 64 ? launchScoreHalf<64, 2, 32>(m, grid, stream, qd, tileNorms, tq, r0, r1, normalized, cand)
                     : launchScoreHalf<128, 4, 32>(m, grid, stream, qd, tileNorms, tq, r0, r1, normalized, cand);
      if (!s.empty() ||
          !(s = launchKernel("cosineTopK: launching the selection kernel", compactCandidatesKernel, unsigned(tq),
                             kSelectThreads, 0, stream, cand, w.kept.get(), int(k)))
               .empty())
        return s;
    }
    if (!(s = launchKernel("cosineTopK: launching the sort kernel", sortCandidatesKernel, unsigned(tq), kSortThreads, 0,
                           stream, cand, int(k), outIndices + q0 * k, outScores + q0 * k))
             .empty())
      return s;
  }
  int flags[2];
  CAMEMBED_CUDA_TRY(cudaMemcpyAsync(flags, w.flags.get(), sizeof(flags), cudaMemcpyDeviceToHost, stream),
                    "cosineTopK: reading the status flags");
  CAMEMBED_CUDA_TRY(cudaStreamSynchronize(stream), "cosineTopK: running the search kernels");
  if (flags[1]) return "cosineTopK: the queries hold NaN, infinity, or a value outside the float16 range (|x| > 65504)";
  if (flags[0]) return "cosineTopK: a score is NaN: the queries or the database contain NaN or infinite values";
  return "";
}

// searchLaunch, and on an error a wait for what it queued: the workspace is shared, so nothing
// may still write to it (or to the caller's outputs) once the lock is released.
Status searchLocked(CudaMatrix* m, int64_t rows, SearchWorkspace& w, const float* queries, int64_t Q, int64_t k,
                    bool normalized, int32_t* outIndices, float* outScores, cudaStream_t stream) {
  Status s = searchLaunch(m, rows, w, queries, Q, k, normalized, outIndices, outScores, stream);
  if (!s.empty()) {
    cudaStreamSynchronize(stream);
    cudaGetLastError();
  }
  return s;
}

Status checkSearchArgs(const CudaMatrix* m, int64_t rows, int64_t Q, int64_t k) {
  if (m == nullptr) return "cosineTopK: the device matrix has been freed";
  if (rows < 1 || rows > m->rows) return "cosineTopK: the rows searched must be between 1 and the matrix's rows";
  if (Q < 0) return "cosineTopK: negative number of queries";
  if (k < 1 || k > rows || k > kCudaMaxK)
    return "cosineTopK: k must be between 1 and min(rows, " + std::to_string(kCudaMaxK) + ")";
  return "";
}

}  // namespace

Status cudaMatrixCreate(int64_t rows, int64_t dim, HiddenType storage, int device, CudaMatrix** out) {
  *out = nullptr;
  if (rows < 1 || dim < 1) return "CudaMatrix: rows and dim must be >= 1";
  if (rows > INT32_MAX) return "CudaMatrix: more than 2^31-1 rows";
  Status s = useDevice(device);
  if (!s.empty()) return s;
  auto m = std::make_unique<CudaMatrix>();
  m->device = device;
  m->rows = rows;
  m->dim = dim;
  m->stride = roundUp(dim, kStrideMultiple);
  m->storage = storage;
  CAMEMBED_CUDA_TRY(cudaDeviceGetAttribute(&m->computeMajor, cudaDevAttrComputeCapabilityMajor, device),
                    "CudaMatrix: cudaDeviceGetAttribute");
  CAMEMBED_CUDA_TRY(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking), "CudaMatrix: cudaStreamCreate");
  std::unique_ptr<CudaMatrix, void (*)(CudaMatrix*)> guard(m.release(), cudaMatrixFree);  // frees on every error path
  if (!(s = guard->data.allocate(size_t(rows * guard->stride * guard->elementBytes()), "CudaMatrix: cudaMalloc(rows)"))
           .empty() ||
      !(s = guard->norms.allocate(size_t(rows), "CudaMatrix: cudaMalloc(norms)")).empty() ||
      !(s = guard->tinyRows.allocate(size_t(rows), "CudaMatrix: cudaMalloc(tiny-row marks)")).empty())
    return s;
  // Zeros until the rows are set: a matrix is never read uninitialised.
  CAMEMBED_CUDA_TRY(cudaMemsetAsync(guard->data.get(), 0, guard->data.count(), guard->stream), "CudaMatrix: cudaMemset");
  CAMEMBED_CUDA_TRY(cudaMemsetAsync(guard->norms.get(), 0, guard->norms.count() * sizeof(float), guard->stream),
                    "CudaMatrix: cudaMemset");
  CAMEMBED_CUDA_TRY(cudaMemsetAsync(guard->tinyRows.get(), 0, guard->tinyRows.count(), guard->stream),
                    "CudaMatrix: cudaMemset");
  CAMEMBED_CUDA_TRY(cudaStreamSynchronize(guard->stream), "CudaMatrix: cudaMemset");
  *out = guard.release();
  return "";
}

Status cudaMatrixSetRows(CudaMatrix* m, int64_t firstRow, const void* hostData, HiddenType dataType, int64_t rowCount) {
  if (m == nullptr) return "CudaMatrix: the device matrix has been freed";
  if (firstRow < 0 || rowCount < 0 || firstRow + rowCount > m->rows) return "CudaMatrix: rows out of range";
  if (rowCount == 0) return "";
  std::lock_guard<std::mutex> lock(m->mutex);
  Status s = useDevice(m->device);
  if (!s.empty()) return s;
  // Upload in chunks of about 64 MiB through a staging buffer, converting and padding on the GPU.
  const int64_t sourceRowBytes = m->dim * hiddenElementBytes(dataType);
  const int64_t chunkRows = std::max<int64_t>(1, std::min<int64_t>(rowCount, (int64_t(64) << 20) / sourceRowBytes));
  DeviceBuffer<char> staging;
  DeviceBuffer<int> badRow;
  if (!(s = staging.allocate(size_t(chunkRows * sourceRowBytes), "CudaMatrix: cudaMalloc(staging)")).empty() ||
      !(s = badRow.allocate(1, "CudaMatrix: cudaMalloc(flag)")).empty())
    return s;
  const int noBadRow = INT_MAX;
  CAMEMBED_CUDA_TRY(cudaMemcpyAsync(badRow.get(), &noBadRow, sizeof(int), cudaMemcpyHostToDevice, m->stream),
                    "CudaMatrix: cudaMemcpy");
  const bool fromHalf = dataType == HiddenType::Float16, toHalf = m->storage == HiddenType::Float16;
  for (int64_t r0 = 0; r0 < rowCount; r0 += chunkRows) {
    const int64_t n = std::min(chunkRows, rowCount - r0), row = firstRow + r0;
    CAMEMBED_CUDA_TRY(cudaMemcpyAsync(staging.get(), static_cast<const char*>(hostData) + r0 * sourceRowBytes,
                                      size_t(n * sourceRowBytes), cudaMemcpyHostToDevice, m->stream),
                      "CudaMatrix: copying rows to the GPU");
    s = fromHalf && toHalf ? launchStoreRows<__half, __half>(staging.get(), n, m, row, badRow.get())
        : fromHalf         ? launchStoreRows<__half, float>(staging.get(), n, m, row, badRow.get())
        : toHalf           ? launchStoreRows<float, __half>(staging.get(), n, m, row, badRow.get())
                           : launchStoreRows<float, float>(staging.get(), n, m, row, badRow.get());
    if (!s.empty()) return s;
  }
  int firstBad = noBadRow;
  CAMEMBED_CUDA_TRY(cudaMemcpyAsync(&firstBad, badRow.get(), sizeof(int), cudaMemcpyDeviceToHost, m->stream),
                    "CudaMatrix: cudaMemcpy");
  CAMEMBED_CUDA_TRY(cudaStreamSynchronize(m->stream), "CudaMatrix: uploading rows");
  if (firstBad != noBadRow)
    return "CudaMatrix: row " + std::to_string(firstBad) + " holds NaN, infinity" +
           (m->storage == HiddenType::Float16 ? ", or a value outside the float16 range (|x| > 65504)"
                                              : ", or values whose norm passes the float32 range");
  return "";
}

Status cudaMatrixCreateFrom(const void* hostData, HiddenType dataType, int64_t rows, int64_t dim, HiddenType storage,
                            int device, CudaMatrix** out) {
  CudaMatrix* m = nullptr;
  Status s = cudaMatrixCreate(rows, dim, storage, device, &m);
  if (s.empty()) s = cudaMatrixSetRows(m, 0, hostData, dataType, rows);
  if (!s.empty()) {
    cudaMatrixFree(m);
    m = nullptr;
  }
  *out = m;
  return s;
}

void cudaMatrixFree(CudaMatrix* m) {
  if (m == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(m->mutex);
    if (cudaSetDevice(m->device) == cudaSuccess && m->stream != nullptr) {
      cudaStreamSynchronize(m->stream);
      cudaStreamDestroy(m->stream);
    }
    cudaGetLastError();
  }
  delete m;  // the DeviceBuffers free themselves (on the current device: set above)
}

int64_t cudaMatrixBytes(const CudaMatrix* m) {
  return m == nullptr ? 0 : int64_t(m->data.count() + m->norms.count() * sizeof(float) + m->tinyRows.count());
}

int64_t cudaMatrixDim(const CudaMatrix* m) { return m == nullptr ? 0 : m->dim; }

namespace {

// Checks the arguments, then runs search(workspace) holding the matrix's lock and its device's
// workspace lock (always in that order), on the matrix's device. `rows` (kAllRows: all of them)
// becomes the number of rows searched.
template <class Search>
Status withSearchLocks(CudaMatrix* m, int64_t& rows, int64_t Q, int64_t k, Search&& search) {
  if (rows == kAllRows && m != nullptr) rows = m->rows;
  Status s = checkSearchArgs(m, rows, Q, k);
  if (!s.empty() || Q == 0) return s;
  std::lock_guard<std::mutex> lock(m->mutex);
  if (!(s = useDevice(m->device)).empty()) return s;
  SearchWorkspace& w = workspaceOf(m->device);
  std::lock_guard<std::mutex> workspaceLock(w.mutex);
  return search(w);
}

}  // namespace

Status cudaMatrixSearchDevice(CudaMatrix* m, const float* queries, int64_t Q, int64_t k, bool normalized,
                              int32_t* outIndices, float* outScores, void* stream, int64_t rows) {
  return withSearchLocks(m, rows, Q, k, [&](SearchWorkspace& w) {
    // nullptr is the legacy default stream, as for pooling: a search of pooled vectors is then
    // ordered after the pooling kernel that wrote them.
    return searchLocked(m, rows, w, queries, Q, k, normalized, outIndices, outScores, static_cast<cudaStream_t>(stream));
  });
}

Status cudaMatrixSearch(CudaMatrix* m, const float* queries, int64_t Q, int64_t k, bool normalized, int32_t* outIndices,
                        float* outScores, int64_t rows) {
  // Host queries and results are staged through the workspace.
  return withSearchLocks(m, rows, Q, k, [&](SearchWorkspace& w) -> Status {
    Status s;
    if (!(s = w.hostQueries.reserve(size_t(Q * m->dim), "cosineTopK: cudaMalloc(queries)")).empty() ||
        !(s = w.outIndices.reserve(size_t(Q * k), "cosineTopK: cudaMalloc(results)")).empty() ||
        !(s = w.outScores.reserve(size_t(Q * k), "cosineTopK: cudaMalloc(results)")).empty())
      return s;
    CAMEMBED_CUDA_TRY(cudaMemcpyAsync(w.hostQueries.get(), queries, size_t(Q * m->dim) * sizeof(float),
                                      cudaMemcpyHostToDevice, m->stream),
                      "cosineTopK: copying queries to the GPU");
    if (!(s = searchLocked(m, rows, w, w.hostQueries.get(), Q, k, normalized, w.outIndices.get(), w.outScores.get(),
                           m->stream))
             .empty())
      return s;
    CAMEMBED_CUDA_TRY(cudaMemcpyAsync(outIndices, w.outIndices.get(), size_t(Q * k) * sizeof(int32_t),
                                      cudaMemcpyDeviceToHost, m->stream),
                      "cosineTopK: copying results back");
    CAMEMBED_CUDA_TRY(cudaMemcpyAsync(outScores, w.outScores.get(), size_t(Q * k) * sizeof(float),
                                      cudaMemcpyDeviceToHost, m->stream),
                      "cosineTopK: copying results back");
    CAMEMBED_CUDA_TRY(cudaStreamSynchronize(m->stream), "cosineTopK: copying results back");
    return "";
  });
}

}  // namespace camembed

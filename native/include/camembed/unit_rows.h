// Rows scaled to unit length for VectorIndex: out = x * (1 / max(||x||, 1e-12)), the squared norm
// summed in float64 and each product rounded once to float32 (as lib/vector-index.ts did in
// TypeScript; float32 squares are exact in float64 and their sum cannot overflow it), then for
// float16 storage rounded once more, by floatToHalfArray.
#pragma once
#include <cstdint>

namespace camembed {

// Writes out32 or out16 (the other is null). Returns the first row holding NaN or infinity (its
// squared norm is not finite), or -1; rows from there on may be unwritten. Rows are split over
// `threads` (0 = all cores); the SIMD level is chosen at run time.
int64_t unitRowsCpu(const float* in, int64_t rows, int64_t dim, float* out32, uint16_t* out16, int threads);

// cmbd64's running state (lib/index/format.ts defines the checksum; it holds this in a
// BigUint64Array(9)): the four lanes, then the bytes of a 32-byte word not yet complete.
struct ChecksumState {
  uint64_t lanes[4];
  uint8_t pending[32];
  uint64_t pendingBytes;  // 0 to 31
};
static_assert(sizeof(ChecksumState) == 72, "ChecksumState is nine 64-bit words");

// The rows VectorIndex.load checks as it checksums: `dim` values each (float32, or float16 bits
// when `half`), of squared norm at most maxSumSquares.
struct NormCheck {
  int64_t dim;
  bool half;
  double maxSumSquares;
};

// Feeds `length` bytes to the checksum. With `rows` (the bytes are then whole rows, aligned to
// their element size), returns the first row whose squared norm is not at most maxSumSquares (NaN
// and infinity included), with that squared norm in *sumSquares, or -1. One pass on the calling
// thread: each row's sum takes one checksum word per 32 bytes it reads, so the data is read once
// and the norms' vector arithmetic runs beside the checksum's multiplies. Squares are summed in
// float64 (float16 squares in float32 blocks of 64 first: relative error under 2^-21).
int64_t checksumRowsCpu(ChecksumState& state, const uint8_t* bytes, int64_t length, const NormCheck* rows,
                        double* sumSquares);

}  // namespace camembed

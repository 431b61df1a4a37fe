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

// The first of `count` rows (float32, or float16 bits when `half`) whose squared norm is not at
// most maxSumSquares (NaN and infinity included), with that squared norm in *sumSquares; or -1.
// Summed in float64 (float16 squares in float32 blocks of 64 first: relative error under 2^-21).
// For VectorIndex.load, which checks that a file holds what unitRowsCpu writes. Rows are split
// over `threads` (0 = all cores).
int64_t firstRowAboveNormCpu(const void* rows, bool half, int64_t count, int64_t dim, double maxSumSquares,
                             double* sumSquares, int threads);

}  // namespace camembed

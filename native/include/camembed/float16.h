// float32 -> float16 (IEEE binary16 bits), rounding to nearest, ties to even, as lib/float16.ts
// does: overflow becomes infinity, NaN becomes the quiet NaN 0x7e00 with the input's sign.
#pragma once
#include <cstdint>

namespace camembed {

void floatToHalfArray(const float* in, uint16_t* out, int64_t n);

}  // namespace camembed

// Run-time CPU capabilities: which SIMD level the kernels use on this machine.
#pragma once

namespace camembed {

enum class SimdLevel { Scalar, Avx2, Avx512 };

// The best level both this CPU and this build support. CAMEMBED_SIMD=scalar|avx2|avx512
// lowers it (for testing the other paths on one machine); it never raises it.
SimdLevel simdLevel();
const char* simdLevelName(SimdLevel level);
int defaultThreadCount();

}  // namespace camembed

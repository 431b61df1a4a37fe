#include "camembed/cpu_info.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace camembed {

static SimdLevel detectSimdLevel() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  SimdLevel best = SimdLevel::Scalar;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    best = SimdLevel::Avx2;
  if (best == SimdLevel::Avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    best = SimdLevel::Avx512;
#else
  SimdLevel best = SimdLevel::Scalar;
#endif
  const char* forced = std::getenv("CAMEMBED_SIMD");
  if (forced != nullptr) {
    if (std::strcmp(forced, "scalar") == 0) best = SimdLevel::Scalar;
    else if (std::strcmp(forced, "avx2") == 0 && best == SimdLevel::Avx512) best = SimdLevel::Avx2;
  }
  return best;
}

SimdLevel simdLevel() {
  static const SimdLevel level = detectSimdLevel();
  return level;
}

const char* simdLevelName(SimdLevel level) {
  switch (level) {
    case SimdLevel::Avx512: return "avx512";
    case SimdLevel::Avx2: return "avx2";
    default: return "scalar";
  }
}

// The CPUs this process may run on (its affinity: taskset, a container's cpuset), as Node's
// os.availableParallelism() and so the encoder count them. hardware_concurrency counts the
// machine's: confined to 4 of 64 CPUs, each call ran 64 threads (top-k: each with its own heaps).
int defaultThreadCount() {
#ifdef __linux__
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof cpus, &cpus) == 0) return std::max(1, CPU_COUNT(&cpus));
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(n);
}

}  // namespace camembed

// Small helpers shared by the C++ tests: a seeded generator, float16 rounding, failure counting,
// and the GPU presence check (tests skip, exiting 0, where there is no CUDA device).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "camembed/cuda.h"

namespace camembed_test {

// splitmix64: reproducible across platforms.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  float normal() {
    const double u = 1.0 - uniform(), v = uniform();
    return float(std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v));
  }
  int64_t below(int64_t n) { return int64_t(next() % uint64_t(n)); }

 private:
  uint64_t state_;
};

// float -> IEEE binary16 bits, round to nearest even (finite inputs within the half range).
inline uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exponent = int32_t((x >> 23) & 0xff) - 127 + 15;
  uint32_t mantissa = x & 0x7fffffu;
  if (exponent >= 0x1f) return uint16_t(sign | 0x7c00u);
  if (exponent <= 0) {
    if (exponent < -10) return uint16_t(sign);
    mantissa |= 0x800000u;
    const int shift = 14 - exponent;
    const uint32_t rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    uint32_t m = mantissa >> shift;
    if (rest > halfway || (rest == halfway && (m & 1))) ++m;
    return uint16_t(sign | m);
  }
  uint32_t bits = uint32_t(exponent) << 10 | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (bits & 1))) ++bits;
  return uint16_t(sign | bits);
}

// A double as printf's %g writes it (std::to_string prints 1e-25 as 0.000000).
inline std::string formatNumber(double x) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", x);
  return text;
}

inline int failures = 0;
inline void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    if (failures <= 20) std::printf("FAIL: %s\n", what.c_str());
  }
}

// Returns false (after printing why) when no CUDA device is usable here.
inline bool haveGpu(const char* testName) {
  setvbuf(stdout, nullptr, _IOLBF, 0);  // keep the output if a time limit kills the test
  std::vector<camembed::CudaDeviceInfo> devices;
  std::string why;
  camembed::cudaListDevices(&devices, &why);
  if (devices.empty()) {
    std::printf("SKIP %s: no CUDA device (%s)\n", testName, why.c_str());
    return false;
  }
  std::printf("%s on %s (sm_%d%d)\n", testName, devices[0].name.c_str(), devices[0].computeMajor,
              devices[0].computeMinor);
  return true;
}

inline int finish(const char* testName) {
  if (failures == 0) std::printf("PASS %s\n", testName);
  else std::printf("%s: %d failures\n", testName, failures);
  return failures == 0 ? 0 : 1;
}

// --small: only the small cases (for compute-sanitizer, which is ~100x slower).
inline bool smallOnly(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--small") == 0) return true;
  return false;
}

}  // namespace camembed_test

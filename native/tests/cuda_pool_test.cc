// The CUDA pooling kernel against the CPU kernel (native/cpu/pool.cc) on random inputs of
// awkward shapes, every hidden type, mask type and normalize setting; plus the device-pointer
// variant and error handling. Skips (exit 0) where there is no CUDA device.
#include <algorithm>
#include <cmath>

#include "camembed/cuda.h"
#include "camembed/pool.h"
#include "test_util.h"
#ifdef CAMEMBED_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace camembed;
using namespace camembed_test;

namespace {

struct Shape {
  int64_t batch, seq, hidden;
};

struct Inputs {
  std::vector<float> hidden32;
  std::vector<uint16_t> hidden16;
  std::vector<int64_t> mask64;
  std::vector<int32_t> mask32;
  std::vector<uint8_t> mask8;
};

Inputs makeInputs(const Shape& s, Random& random) {
  Inputs in;
  const int64_t n = s.batch * s.seq * s.hidden;
  in.hidden32.resize(size_t(n));
  in.hidden16.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    in.hidden16[i] = floatToHalf(random.normal() * 2.0f);
    in.hidden32[i] = random.normal() * 2.0f;
  }
  for (int64_t b = 0; b < s.batch; ++b) {
    // Row 1 is all padding; the others keep a random prefix and a few stray set tokens.
    const int64_t length = b == 1 ? 0 : 1 + random.below(s.seq);
    for (int64_t t = 0; t < s.seq; ++t) {
      int64_t v = t < length ? 1 : 0;
      if (b != 1 && random.uniform() < 0.05) v = random.uniform() < 0.5 ? 2 : -1;  // nonzero counts as 1
      in.mask64.push_back(v);
      in.mask32.push_back(int32_t(v));
      in.mask8.push_back(uint8_t(v));
    }
  }
  return in;
}

void compareOne(const Shape& s, const Inputs& in, HiddenType ht, MaskType mt, bool normalize) {
  PoolArgs a{};
  a.hidden = ht == HiddenType::Float32 ? static_cast<const void*>(in.hidden32.data()) : in.hidden16.data();
  a.hiddenType = ht;
  a.mask = mt == MaskType::Int64 ? static_cast<const void*>(in.mask64.data())
           : mt == MaskType::Int32 ? static_cast<const void*>(in.mask32.data())
                                   : in.mask8.data();
  a.maskType = mt;
  a.batch = s.batch;
  a.seq = s.seq;
  a.hiddenSize = s.hidden;
  a.normalize = normalize;
  std::vector<float> cpu(size_t(s.batch * s.hidden)), gpu(cpu.size(), std::nanf(""));
  a.out = cpu.data();
  const Status cpuStatus = meanPoolNormalizeCpu(a, 1);
  a.out = gpu.data();
  const Status gpuStatus = meanPoolNormalizeCuda(a, 0);
  const std::string what = "pool B=" + std::to_string(s.batch) + " T=" + std::to_string(s.seq) + " H=" +
                           std::to_string(s.hidden) + (ht == HiddenType::Float32 ? " f32" : " f16") + " mask" +
                           std::to_string(maskElementBytes(mt) * 8) + (normalize ? " normalized" : "");
  check(cpuStatus.empty() && gpuStatus.empty(), what + ": status '" + cpuStatus + "' / '" + gpuStatus + "'");
  double worst = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    // 1e-6 absolute (relative beyond magnitude 1: un-normalised means of N(0, 4) values).
    const double err = std::fabs(double(gpu[i]) - double(cpu[i])) / std::max(1.0, std::fabs(double(cpu[i])));
    worst = std::isnan(err) ? INFINITY : std::max(worst, err);
  }
  check(worst <= 1e-6, what + ": max error " + std::to_string(worst));
}

#ifdef CAMEMBED_WITH_CUDA
// The device-pointer variant on a caller's stream, with hidden states at a misaligned address
// (one float past a 16-byte boundary: the 1-element load path), equals the host variant.
void checkDeviceVariant(Random& random) {
  const Shape s{3, 9, 40};
  const Inputs in = makeInputs(s, random);
  std::vector<float> viaHost(size_t(s.batch * s.hidden)), viaDevice(viaHost.size());
  PoolArgs a{in.hidden32.data(), HiddenType::Float32, in.mask32.data(), MaskType::Int32, s.batch, s.seq, s.hidden, true,
             viaHost.data()};
  check(meanPoolNormalizeCuda(a, 0).empty(), "pool host variant");
  float *hidden = nullptr, *out = nullptr;
  int32_t* mask = nullptr;
  cudaStream_t stream = nullptr;
  bool ok = cudaMalloc(&hidden, (in.hidden32.size() + 1) * 4) == cudaSuccess &&
            cudaMalloc(&mask, in.mask32.size() * 4) == cudaSuccess && cudaMalloc(&out, viaDevice.size() * 4) == cudaSuccess &&
            cudaStreamCreate(&stream) == cudaSuccess &&
            cudaMemcpy(hidden + 1, in.hidden32.data(), in.hidden32.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
            cudaMemcpy(mask, in.mask32.data(), in.mask32.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess;
  check(ok, "pool device variant: setup");
  PoolArgs d = a;
  d.hidden = hidden + 1;
  d.mask = mask;
  d.out = out;
  check(meanPoolNormalizeCudaDevice(d, 0, stream).empty(), "pool device variant: status");
  check(cudaStreamSynchronize(stream) == cudaSuccess &&
            cudaMemcpy(viaDevice.data(), out, viaDevice.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess,
        "pool device variant: copy back");
  for (size_t i = 0; i < viaHost.size(); ++i)
    check(std::fabs(viaHost[i] - viaDevice[i]) <= 1e-6f, "pool device variant (misaligned) equals host variant");
  cudaFree(hidden);
  cudaFree(mask);
  cudaFree(out);
  cudaStreamDestroy(stream);
}
#endif

// Float32 hidden states far from 1 (the norm in float64, as on the CPU): h[t][j] = (j + 1) * s
// pools to (j + 1) * s and normalises by max(s * sqrt(204), 1e-12) (sentence-transformers' floor).
void checkExtremeMagnitudes() {
  for (double scale : {1e-20, 1e-10, 1e19, 1e30}) {
    std::vector<float> hidden(16), gpu(8, std::nanf("")), cpu(8);
    for (int t = 0; t < 2; ++t)
      for (int j = 0; j < 8; ++j) hidden[size_t(t * 8 + j)] = float((j + 1) * scale);
    const int64_t mask[2] = {1, 1};
    PoolArgs a{hidden.data(), HiddenType::Float32, mask, MaskType::Int64, 1, 2, 8, true, gpu.data()};
    const Status s = meanPoolNormalizeCuda(a, 0);
    a.out = cpu.data();
    check(s.empty() && meanPoolNormalizeCpu(a, 1).empty(), "pool extreme magnitudes: '" + s + "'");
    for (int j = 0; j < 8; ++j) {
      const double expected = (j + 1) * scale / std::max(scale * std::sqrt(204.0), 1e-12);
      check(std::fabs(gpu[size_t(j)] - expected) <= 1e-6 * expected && std::fabs(cpu[size_t(j)] - expected) <= 1e-6 * expected,
            "pool extreme magnitudes " + formatNumber(scale) + ": GPU " + std::to_string(gpu[size_t(j)]) + ", CPU " +
                std::to_string(cpu[size_t(j)]) + " vs " + std::to_string(expected));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (!haveGpu("cuda_pool_test")) return 0;
  const bool small = smallOnly(argc, argv);
  std::vector<Shape> shapes = {{1, 1, 1}, {3, 7, 5}, {2, 13, 33}, {5, 17, 768}, {4, 130, 770}, {2, 600, 96}, {2, 3, 5000}};
  if (!small) shapes.insert(shapes.end(), {{64, 128, 768}, {33, 512, 1024}, {7, 77, 1023}});
  Random random(20261127);
  for (const Shape& s : shapes) {
    const Inputs in = makeInputs(s, random);
    for (HiddenType ht : {HiddenType::Float32, HiddenType::Float16})
      for (MaskType mt : {MaskType::Int64, MaskType::Int32, MaskType::Uint8})
        for (bool normalize : {true, false}) compareOne(s, in, ht, mt, normalize);
  }
  checkExtremeMagnitudes();
#ifdef CAMEMBED_WITH_CUDA
  checkDeviceVariant(random);
#endif
  // Errors come back as messages, and the next call still works.
  {
    float h[4] = {1, 2, 3, 4}, out[2];
    uint8_t m[2] = {1, 1};
    PoolArgs a{h, HiddenType::Float32, m, MaskType::Uint8, 1, 2, 2, false, out};
    const Status bad = meanPoolNormalizeCuda(a, 999);
    check(bad.find("does not exist") != std::string::npos, "bad device index message: '" + bad + "'");
    check(meanPoolNormalizeCuda(a, 0).empty() && out[0] == 2.0f && out[1] == 3.0f, "pooling after an error");
  }
  return finish("cuda_pool_test");
}

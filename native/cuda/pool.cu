// Fused masked mean pooling + L2 normalisation on the GPU (sentence-transformers semantics,
// as native/cpu/pool.cc): pooled = sum(mask != 0 ? h : 0) / max(count, 1e-9), then
// out = pooled / max(||pooled||, 1e-12) when normalising.
// Floor: reads every unmasked hidden-state element once (B * T_unmasked * H * bytes), plus the
// mask (B*T*maskBytes), writes B*H*4 bytes; ~1 add per element: purely memory-bound.
//
// One block per batch row. Each thread owns VEC adjacent hidden columns (16-byte loads:
// 4 floats or 8 halves, when rows are 16-byte aligned; otherwise 1 element), walks the row's
// unmasked tokens (compacted from the mask in shared memory, so padding is never read) and
// keeps kUnroll independent float32 partial sums so that kUnroll loads are in flight.
#include <cuda_fp16.h>

#include "camembed/cuda.h"
#include "check.cuh"

namespace camembed {
namespace {

constexpr int kUnroll = 8;      // tokens loaded per step per thread
constexpr int kMaxThreads = 512;

template <class T, int VEC>
struct Vec;
template <>
struct Vec<float, 4> {
  using Load = float4;
  static __device__ void add(float* acc, const Load& v) { acc[0] += v.x; acc[1] += v.y; acc[2] += v.z; acc[3] += v.w; }
};
template <>
struct Vec<float, 1> {
  using Load = float;
  static __device__ void add(float* acc, const Load& v) { acc[0] += v; }
};
template <>
struct Vec<__half, 8> {
  using Load = uint4;
  static __device__ void add(float* acc, const Load& v) {
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 f = __half22float2(h[i]);
      acc[2 * i] += f.x;
      acc[2 * i + 1] += f.y;
    }
  }
};
template <>
struct Vec<__half, 1> {
  using Load = __half;
  static __device__ void add(float* acc, const Load& v) { acc[0] += __half2float(v); }
};

__device__ bool maskSet(const void* mask, MaskType type, int64_t i) {
  switch (type) {
    case MaskType::Int64: return static_cast<const int64_t*>(mask)[i] != 0;
    case MaskType::Int32: return static_cast<const int32_t*>(mask)[i] != 0;
    default: return static_cast<const uint8_t*>(mask)[i] != 0;
  }
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets the result.
__device__ double blockSum(double v, double* shared32) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();  // shared32 may still be read by a previous call
  if (lane == 0) shared32[warp] = v;
  __syncthreads();
  v = lane < warps ? shared32[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Writes the positions t in [t0, t0 + blockDim.x) with mask set, in order, to tokens[];
// returns how many.
__device__ int compactTokens(const void* mask, MaskType maskType, int64_t b, int64_t seq, int64_t t0, int* tokens,
                             int* warpCounts) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int64_t t = t0 + threadIdx.x;
  const bool set = t < seq && maskSet(mask, maskType, b * seq + t);
  const unsigned ballot = __ballot_sync(0xffffffffu, set);
  __syncthreads();  // tokens[] / warpCounts[] may still be read from the previous chunk
  if (lane == 0) warpCounts[warp] = __popc(ballot);
  __syncthreads();
  int before = 0, total = 0;
  for (int w = 0; w < warps; ++w) {
    before += w < warp ? warpCounts[w] : 0;
    total += warpCounts[w];
  }
  if (set) tokens[before + __popc(ballot & ((1u << lane) - 1))] = int(t);
  __syncthreads();
  return total;
}

template <class T, int VEC>
__global__ void __launch_bounds__(kMaxThreads) meanPoolKernel(const T* __restrict__ hidden, const void* __restrict__ mask,
                                                             MaskType maskType, int64_t seq, int64_t hiddenSize,
                                                             bool normalize, float* __restrict__ out) {
  using V = Vec<T, VEC>;
  using Load = typename V::Load;
  __shared__ int tokens[kMaxThreads];
  __shared__ int warpCounts[kMaxThreads / 32];
  __shared__ double shared32[32];
  const int64_t b = blockIdx.x;
  const int64_t vectors = hiddenSize / VEC;  // VEC divides hiddenSize (chosen by the host)
  const int64_t columnSteps = (vectors + blockDim.x - 1) / blockDim.x;
  float* outRow = out + b * hiddenSize;

  // Count of unmasked tokens (the divisor), then one pass per column step (one for H <= 4096).
  int count = 0;
  double sumSquares = 0.0;  // float64: squares of means beyond 1e19 overflow float32
  float mean[VEC] = {};
  for (int64_t step = 0; step < columnSteps; ++step) {
    const int64_t v = step * blockDim.x + threadIdx.x;
    const bool active = v < vectors;
    float acc[kUnroll][VEC];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[u][i] = 0.0f;
    count = 0;
    for (int64_t t0 = 0; t0 < seq; t0 += blockDim.x) {
      const int n = compactTokens(mask, maskType, b, seq, t0, tokens, warpCounts);
      count += n;
      if (!active) continue;
      const Load* base = reinterpret_cast<const Load*>(hidden + b * seq * hiddenSize) + v;
      const int64_t rowStride = vectors;  // in Loads
      int j = 0;
      for (; j + kUnroll <= n; j += kUnroll) {
        Load x[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) x[u] = __ldg(base + tokens[j + u] * rowStride);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) V::add(acc[u], x[u]);
      }
      for (; j < n; ++j) V::add(acc[0], __ldg(base + tokens[j] * rowStride));  // a constant index keeps acc in registers
    }
    const float denom = fmaxf(float(count), 1e-9f);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      float s = 0.0f;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) s += acc[u][i];
      mean[i] = s / denom;
      if (active) sumSquares += double(mean[i]) * mean[i];
    }
    // With several column steps the means go out now and are rescaled below.
    if (active && (columnSteps > 1 || !normalize))
#pragma unroll
      for (int i = 0; i < VEC; ++i) outRow[v * VEC + i] = mean[i];
  }
  if (!normalize) return;
  const double norm = fmax(sqrt(blockSum(sumSquares, shared32)), 1e-12);
  if (columnSteps == 1) {
    const int64_t v = threadIdx.x;
    if (v < vectors)
#pragma unroll
      for (int i = 0; i < VEC; ++i) outRow[v * VEC + i] = float(mean[i] / norm);
  } else {
    // Written by this block before blockSum's barriers, so visible to every thread of it.
    for (int64_t h = threadIdx.x; h < hiddenSize; h += blockDim.x) outRow[h] = float(outRow[h] / norm);
  }
}

template <class T, int VEC>
Status launchPool(const PoolArgs& a, cudaStream_t stream) {
  const int64_t vectors = a.hiddenSize / VEC;
  const int threads = int(std::min<int64_t>(kMaxThreads, std::max<int64_t>(32, (vectors + 31) / 32 * 32)));
  return launchKernel("meanPoolNormalize: kernel launch", meanPoolKernel<T, VEC>, unsigned(a.batch), threads, 0, stream,
                      static_cast<const T*>(a.hidden), a.mask, a.maskType, a.seq, a.hiddenSize, a.normalize, a.out);
}

}  // namespace

Status meanPoolNormalizeCudaDevice(const PoolArgs& a, int device, void* stream) {
  if (a.batch < 0 || a.seq < 0 || a.hiddenSize < 0) return "meanPoolNormalize: negative shape";
  if (a.batch > INT32_MAX) return "meanPoolNormalize: batch larger than 2^31-1";
  if (a.batch == 0 || a.hiddenSize == 0) return "";
  Status s = useDevice(device);
  if (!s.empty()) return s;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const int64_t rowBytes = a.hiddenSize * hiddenElementBytes(a.hiddenType);
  // 16-byte loads need 16-byte aligned rows.
  const bool wide = rowBytes % 16 == 0 && reinterpret_cast<uintptr_t>(a.hidden) % 16 == 0;
  return a.hiddenType == HiddenType::Float32 ? (wide ? launchPool<float, 4>(a, st) : launchPool<float, 1>(a, st))
                                             : (wide ? launchPool<__half, 8>(a, st) : launchPool<__half, 1>(a, st));
}

Status meanPoolNormalizeCuda(const PoolArgs& host, int device) {
  if (host.batch < 0 || host.seq < 0 || host.hiddenSize < 0) return "meanPoolNormalize: negative shape";
  if (host.batch == 0 || host.hiddenSize == 0) return "";
  Status s = useDevice(device);
  if (!s.empty()) return s;
  const size_t hiddenBytes = size_t(host.batch * host.seq * host.hiddenSize * hiddenElementBytes(host.hiddenType));
  const size_t maskBytes = size_t(host.batch * host.seq * maskElementBytes(host.maskType));
  const size_t outBytes = size_t(host.batch * host.hiddenSize) * sizeof(float);
  DeviceBuffer<char> hidden, mask, out;
  if (!(s = hidden.allocate(hiddenBytes, "meanPoolNormalize: cudaMalloc(hidden)")).empty()) return s;
  if (!(s = mask.allocate(maskBytes, "meanPoolNormalize: cudaMalloc(mask)")).empty()) return s;
  if (!(s = out.allocate(outBytes, "meanPoolNormalize: cudaMalloc(out)")).empty()) return s;
  // The legacy default stream: pageable copies are synchronous anyway.
  CAMEMBED_CUDA_TRY(cudaMemcpy(hidden.get(), host.hidden, hiddenBytes, cudaMemcpyHostToDevice),
                    "meanPoolNormalize: copy hidden states to the GPU");
  CAMEMBED_CUDA_TRY(cudaMemcpy(mask.get(), host.mask, maskBytes, cudaMemcpyHostToDevice),
                    "meanPoolNormalize: copy mask to the GPU");
  PoolArgs d = host;
  d.hidden = hidden.get();
  d.mask = mask.get();
  d.out = reinterpret_cast<float*>(out.get());
  if (!(s = meanPoolNormalizeCudaDevice(d, device, nullptr)).empty()) return s;
  CAMEMBED_CUDA_TRY(cudaMemcpy(host.out, out.get(), outBytes, cudaMemcpyDeviceToHost),
                    "meanPoolNormalize: kernel or copy back");
  return "";
}

}  // namespace camembed

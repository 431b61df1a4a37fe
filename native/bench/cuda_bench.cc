// GPU kernel benchmarks: device-to-device copy bandwidth (the memory ceiling), fused pooling,
// and resident top-k search. CUDA events on one stream, median of many runs after warm-up,
// random inputs larger than L2 (pooling rotates among copies of its inputs). Prints a table
// and, per result, a CSV line starting "csv," (scripts/gpu_baselines.py reads them to compare
// with torch on the same card). Each database's search is first checked against the CPU kernel on a
// few queries; the exit status is 1 if one is wrong or any CUDA call failed (an "ERROR" line).
//
//   cuda_bench [--quick | --tiny | --profile]
//     --quick: N = 1,000,000 only, fewer query counts; --tiny: small sizes, a dry run on the CUDA
//     emulator; --profile: one search (N = 1,000,000, Q = 1024, k = 100), nothing else, for
//     Nsight Compute (scripts/gpu-check.sh)
//
// Bytes and FLOPs counted (the floors):
//   copy:    2 * bytes (read + write)
//   pooling: B*T*H*elem (hidden) + B*T*8 (int64 mask) read, B*H*4 written (all tokens unmasked)
//   top-k:   N*d*2 bytes of float16 database read once per tile of <= 1024 queries
//            (reported as the once-through floor N*d*2), 2*Q*N*d FLOPs
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "camembed/cuda.h"
#include "camembed/float16.h"

#ifndef CAMEMBED_WITH_CUDA
int main() {
  std::printf("SKIP cuda_bench: built without CUDA\n");
  return 0;
}
#else
#include <cuda_runtime.h>

using namespace camembed;

namespace {

// Every failed call is counted, and any makes the exit status 1: a search or pooling run that
// fails while being timed (out of memory at full scale, a kernel fault) must not leave a table
// with rows missing, or timed over nothing, under an exit status of 0.
int errors = 0;
bool ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::printf("ERROR %s: %s\n", what, cudaGetErrorString(err));
    ++errors;
  }
  return err == cudaSuccess;
}
bool ok(const Status& s, const char* what) {
  if (!s.empty()) {
    std::printf("ERROR %s: %s\n", what, s.c_str());
    ++errors;
  }
  return s.empty();
}
// Keeps the first error of the runs that medianMs times (not only the last run's).
void keepFirst(Status* kept, Status s) {
  if (kept->empty()) *kept = std::move(s);
}

// Median milliseconds of `run` on `stream`: `warmup` untimed runs, then samples until `budgetMs`
// of measured time or `maxRuns` (at least `minRuns`). A sample times `repeat` runs back to back
// and divides: for kernels of tens of microseconds, the host work between the start event and
// the launch would otherwise count as kernel time. NaN (and an ERROR line) when a CUDA call
// fails: a fault in the timed kernels shows first at the event's synchronisation, and
// cudaEventElapsedTime then leaves 0 ms, which would print as an infinite rate.
double medianMs(cudaStream_t stream, const std::function<void()>& run, int warmup, int minRuns, int maxRuns,
                double budgetMs, int repeat = 1) {
  for (int i = 0; i < warmup; ++i) run();
  if (!ok(cudaStreamSynchronize(stream), "warm-up runs")) return NAN;
  cudaEvent_t start, stop;
  if (!ok(cudaEventCreate(&start), "cudaEventCreate")) return NAN;
  if (!ok(cudaEventCreate(&stop), "cudaEventCreate")) {
    cudaEventDestroy(start);
    return NAN;
  }
  std::vector<double> times;
  double total = 0;
  bool fine = true;
  while (fine && (int(times.size()) < minRuns || (int(times.size()) < maxRuns && total < budgetMs))) {
    fine = ok(cudaEventRecord(start, stream), "cudaEventRecord");
    for (int r = 0; fine && r < repeat; ++r) run();
    float ms = 0;
    fine = fine && ok(cudaEventRecord(stop, stream), "cudaEventRecord") &&
           ok(cudaEventSynchronize(stop), "timed runs (cudaEventSynchronize)") &&
           ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms / repeat);
    total += ms;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (!fine) return NAN;
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Random float16 bits in +-[2^-6, 2^-2): finite, never zero, about unit-norm rows at d = 768.
void fillHalf(uint16_t* out, size_t n, uint64_t seed) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([=] {
      uint64_t s = seed * 0x9e3779b97f4a7c15ull + t + 1;
      for (size_t i = n * t / threads; i < n * (t + 1) / threads; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out[i] = uint16_t(((s >> 20) & 0x8000u) | (uint32_t(9 + (s >> 40) % 4) << 10) | (s & 0x3ffu));
      }
    });
  for (auto& th : pool) th.join();
}

void fillFloat(float* out, size_t n, uint64_t seed) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    out[i] = float(int64_t(s >> 40) - (int64_t(1) << 23)) / float(1 << 23);
  }
}

// What one run measures: the shapes, or fewer (--quick), tiny ones (--tiny), or one
// search run once (--profile: no copy, no pooling).
struct Sizes {
  size_t copyBytes;  // 0: neither copy nor pooling
  int64_t poolBatch, poolSeq;
  std::vector<int64_t> rowCounts, queryCounts, ks;
  bool once;  // one run per search, no warm-up
};

double copyBandwidthGBs(cudaStream_t stream, size_t bytes) {
  void *a = nullptr, *b = nullptr;
  if (!ok(cudaMalloc(&a, bytes), "cudaMalloc") || !ok(cudaMalloc(&b, bytes), "cudaMalloc")) return 0;
  if (!ok(cudaMemsetAsync(a, 1, bytes, stream), "cudaMemsetAsync")) return 0;
  cudaError_t copyError = cudaSuccess;
  const double ms = medianMs(stream, [&] {
    const cudaError_t e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream);
    if (copyError == cudaSuccess) copyError = e;
  }, 3, 20, 50, 500);
  cudaFree(a);
  cudaFree(b);
  if (!ok(copyError, "cudaMemcpyAsync (device to device)") || std::isnan(ms)) return 0;
  const double gbs = 2.0 * bytes / (ms * 1e6);
  std::printf("copy d2d %-35s %10.3f ms %9.1f GB/s\n", (std::to_string(bytes >> 20) + " MiB (read + write)").c_str(), ms,
              gbs);
  std::printf("csv,copy,%zu,0,0,0,%.6f,%.3f,0\n", bytes, ms, gbs);
  return gbs;
}

void benchPooling(cudaStream_t stream, HiddenType type, int64_t B, int64_t T, double copyGBs) {
  const int64_t H = 768, elem = hiddenElementBytes(type);
  const size_t hiddenBytes = size_t(B * T * H * elem), maskBytes = size_t(B * T * 8), outBytes = size_t(B * H * 4);
  std::vector<uint16_t> hostHalf;
  std::vector<float> hostFloat;
  const void* host;
  if (type == HiddenType::Float16) {
    hostHalf.resize(size_t(B * T * H));
    fillHalf(hostHalf.data(), hostHalf.size(), 3);
    host = hostHalf.data();
  } else {
    hostFloat.resize(size_t(B * T * H));
    fillFloat(hostFloat.data(), hostFloat.size(), 3);
    host = hostFloat.data();
  }
  std::vector<int64_t> mask(size_t(B * T), 1);
  // The runs take their hidden states from copies that together hold at least 4x the L2 cache, in
  // turn: the same 100 MB (float16) pooled back to back on an H100 or H200 (50 MB of L2, NVIDIA's
  // Hopper architecture blog) could come partly from L2 and overstate the rate against the 1 GiB
  // copy. (The 0.5 MB mask stays one buffer.)
  int l2Bytes = 0;
  if (!ok(cudaDeviceGetAttribute(&l2Bytes, cudaDevAttrL2CacheSize, 0), "cudaDeviceGetAttribute(L2 size)")) return;
  const size_t copies = std::max<size_t>(1, (4 * size_t(l2Bytes) + hiddenBytes - 1) / hiddenBytes);
  std::vector<void*> hidden(copies, nullptr);
  void *dmask = nullptr, *out = nullptr;
  const auto release = [&] {
    for (void* h : hidden) cudaFree(h);
    cudaFree(dmask);
    cudaFree(out);
  };
  bool ready = ok(cudaMalloc(&dmask, maskBytes), "cudaMalloc") && ok(cudaMalloc(&out, outBytes), "cudaMalloc") &&
               ok(cudaMemcpy(dmask, mask.data(), maskBytes, cudaMemcpyHostToDevice), "cudaMemcpy");
  for (size_t c = 0; ready && c < copies; ++c)
    ready = ok(cudaMalloc(&hidden[c], hiddenBytes), "cudaMalloc") &&
            ok(c == 0 ? cudaMemcpy(hidden[0], host, hiddenBytes, cudaMemcpyHostToDevice)
                      : cudaMemcpy(hidden[c], hidden[0], hiddenBytes, cudaMemcpyDeviceToDevice),
               "cudaMemcpy");
  if (!ready) return release();
  Status status;
  size_t next = 0;
  const double ms = medianMs(stream, [&] {
    const PoolArgs a{hidden[next++ % copies], type, dmask, MaskType::Int64, B, T, H, true, static_cast<float*>(out)};
    keepFirst(&status, meanPoolNormalizeCudaDevice(a, 0, stream));
  }, 5, 10, 100, 300, 20);
  if (ok(status, "pooling") && !std::isnan(ms)) {
    const double bytes = double(hiddenBytes + maskBytes + outBytes), gbs = bytes / (ms * 1e6);
    const std::string name = "pool B=" + std::to_string(B) + " T=" + std::to_string(T) + " H=768 " +
                             (type == HiddenType::Float32 ? "f32" : "f16");
    std::printf("%-44s %10.3f ms %9.1f GB/s  %5.1f%% of copy (inputs: %zu x %.1f MB in turn, L2 %.1f MB)\n", name.c_str(),
                ms, gbs, 100 * gbs / copyGBs, copies, hiddenBytes / 1e6, l2Bytes / 1e6);
    std::printf("csv,pool_%s,%lld,%lld,%lld,0,%.6f,%.3f,0\n", type == HiddenType::Float32 ? "f32" : "f16",
                (long long)B, (long long)T, (long long)H, ms, gbs);
  }
  release();
}

// The CPU kernel's top-k of `Q` queries (float32 values, rounded to float16 here as the GPU rounds
// them) over the same float16 rows.
bool cpuTopK(const uint16_t* rows, int64_t N, int64_t d, const float* queries, int64_t Q, int64_t k, bool normalized,
             std::vector<int32_t>* idx, std::vector<float>* score) {
  std::vector<uint16_t> half(size_t(Q * d));
  floatToHalfArray(queries, half.data(), Q * d);
  std::vector<float> rounded(half.size());
  for (size_t i = 0; i < half.size(); ++i) rounded[i] = halfToFloat(half[i]);
  idx->resize(size_t(Q * k));
  score->resize(idx->size());
  const TopKArgs a{rounded.data(), Q, {{rows, N, nullptr}}, HiddenType::Float16, d, k, normalized, idx->data(), score->data()};
  return ok(cosineTopKCpu(a, 0), "verify: CPU search");
}

// GPU answers (query c's at row positions[c] of the GPU's results) against the CPU's, with issue
// 5's tolerances: scores within 1e-4 at each rank, and rows outside the CPU's top-k only where
// their score is within 1e-5 of the k-th. Prints one line; returns whether all were right.
bool compareTopK(const std::string& what, int64_t N, int64_t k, const std::vector<int64_t>& positions, const int32_t* gpuIdx,
                 const float* gpuScore, const std::vector<int32_t>& cpuIdx, const std::vector<float>& cpuScore) {
  double worst = 0;
  int64_t outside = 0, wrong = 0;
  for (size_t c = 0; c < positions.size(); ++c) {
    const int64_t p = positions[c];
    const std::set<int32_t> cpuRows(cpuIdx.begin() + c * k, cpuIdx.begin() + (c + 1) * k);
    const double kth = cpuScore[c * k + k - 1];
    for (int64_t i = 0; i < k; ++i) {
      const int32_t row = gpuIdx[p * k + i];
      const float score = gpuScore[p * k + i];
      const double difference = std::fabs(double(score) - cpuScore[c * k + i]);
      worst = std::max(worst, difference);
      const bool inside = cpuRows.count(row) != 0;
      outside += !inside;
      wrong += difference > 1e-4 || (!inside && std::fabs(score - kth) > 1e-5);
    }
  }
  std::printf("%s N=%lld: %s against the CPU's: max score difference %.2e, %lld rows outside its top-k (allowed at ties "
              "with its k-th score), %lld wrong\n",
              wrong ? "FAIL verify" : "verified", (long long)N, what.c_str(), worst, (long long)outside, (long long)wrong);
  return wrong == 0;
}

// Four queries' answers against the CPU kernel on the same values. A search that is wrong at full
// scale (index arithmetic past 2^31 values, split launches) would otherwise be timed as a fast one.
// The GPU answers them alone (16-query blocks) and among 130 queries (two 128-query blocks, the
// second nearly empty), at positions 0, 1, 128, 129; and alone by
// cosine (normalized = false), the queries scaled by 2 (exact in float16).
bool verifyTopK(CudaMatrix* m, const uint16_t* rows, int64_t N, int64_t d, const std::vector<float>& queries,
                int64_t k) {
  const int64_t checked = 4, crowd = 130;
  std::vector<int32_t> cpuIdx, cosineIdx;
  std::vector<float> cpuScore, cosineScore;
  std::vector<float> doubled(queries.begin(), queries.begin() + checked * d);
  for (float& v : doubled) v *= 2.0f;
  if (!cpuTopK(rows, N, d, queries.data(), checked, k, true, &cpuIdx, &cpuScore) ||
      !cpuTopK(rows, N, d, doubled.data(), checked, k, false, &cosineIdx, &cosineScore))
    return false;
  // The crowd: the first 130 queries, the checked ones copied to the positions above.
  const std::vector<int64_t> alone = {0, 1, 2, 3}, positions = {0, 1, 128, 129};
  std::vector<float> crowded(queries.begin(), queries.begin() + crowd * d);
  for (int64_t c = 0; c < checked; ++c)
    std::copy(queries.begin() + c * d, queries.begin() + (c + 1) * d, crowded.begin() + positions[c] * d);
  struct Case { int64_t Q; bool cosine; };
  bool allRight = true;
  for (const Case& c : {Case{checked, false}, Case{crowd, false}, Case{checked, true}}) {
    std::vector<int32_t> gpuIdx(size_t(c.Q * k));
    std::vector<float> gpuScore(gpuIdx.size());
    const float* sent = c.cosine ? doubled.data() : c.Q == checked ? queries.data() : crowded.data();
    if (!ok(cudaMatrixSearch(m, sent, c.Q, k, !c.cosine, gpuIdx.data(), gpuScore.data()), "verify: GPU search"))
      return false;
    const std::string what = std::to_string(checked) + " queries' top-" + std::to_string(k) + (c.cosine ? " by cosine" : "") +
                             " (searched among " + std::to_string(c.Q) + ")";
    allRight &= compareTopK(what, N, k, c.Q == checked ? alone : positions, gpuIdx.data(), gpuScore.data(),
                            c.cosine ? cosineIdx : cpuIdx, c.cosine ? cosineScore : cpuScore);
  }
  return allRight;
}

bool benchTopK(cudaStream_t stream, int64_t N, const Sizes& sizes, double copyGBs) {
  const std::vector<int64_t>& queryCounts = sizes.queryCounts;
  const int64_t d = 768;
  std::printf("generating and uploading %lld x %lld float16 rows...\n", (long long)N, (long long)d);
  std::unique_ptr<uint16_t[]> rows(new uint16_t[size_t(N * d)]);  // not zeroed first: 13.6 GB at N = 8.8M
  fillHalf(rows.get(), size_t(N * d), 11);
  CudaMatrix* m = nullptr;
  if (!ok(cudaMatrixCreateFrom(rows.get(), HiddenType::Float16, N, d, HiddenType::Float16, 0, &m), "upload")) return false;
  const int64_t maxQ = std::max<int64_t>(130, *std::max_element(queryCounts.begin(), queryCounts.end()));  // verifyTopK's 130
  const int64_t maxK = *std::max_element(sizes.ks.begin(), sizes.ks.end());
  std::vector<float> queries(size_t(maxQ * d));
  fillFloat(queries.data(), queries.size(), 7);
  for (float& v : queries) v /= 16.0f;
  // Not in --profile runs: Nsight Compute counts the launches of the one search profiled.
  const int64_t lastK = std::min(maxK, N);
  bool verified = sizes.once || verifyTopK(m, rows.get(), N, d, queries, lastK);
  // The largest timed search's last query (the last query tile's) is checked too, from its output.
  const int64_t lastQ = *std::max_element(queryCounts.begin(), queryCounts.end());
  std::vector<int32_t> lastIdx;
  std::vector<float> lastScore;
  const bool checkLast = !sizes.once && cpuTopK(rows.get(), N, d, queries.data() + (lastQ - 1) * d, 1, lastK, true, &lastIdx, &lastScore);
  rows.reset();
  float *dq = nullptr, *ds = nullptr;
  int32_t* di = nullptr;
  if (!ok(cudaMalloc(&dq, queries.size() * 4), "cudaMalloc") || !ok(cudaMalloc(&di, size_t(maxQ * maxK) * 4), "cudaMalloc") ||
      !ok(cudaMalloc(&ds, size_t(maxQ * maxK) * 4), "cudaMalloc"))
    return false;
  if (!ok(cudaMemcpy(dq, queries.data(), queries.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy")) return false;
  for (int64_t Q : queryCounts)
    for (int64_t k : sizes.ks) {
      Status status;
      const bool large = double(Q) * double(N) > 3e10;  // Q = 6980 at N = 8.84M (6.2e10)
      const auto search = [&] { keepFirst(&status, cudaMatrixSearchDevice(m, dq, Q, k, true, di, ds, stream)); };
      const double ms = sizes.once ? medianMs(stream, search, 0, 1, 1, 0)
                                   : medianMs(stream, search, 1, large ? 3 : 5, 50, large ? 1500 : 500);
      if (!ok(status, "search") || std::isnan(ms)) continue;
      const double bytes = double(N) * d * 2, flops = 2.0 * double(Q) * double(N) * d;
      const double gbs = bytes / (ms * 1e6), tflops = flops / (ms * 1e9);
      char name[96];
      std::snprintf(name, sizeof(name), "topk f16 N=%lld d=768 Q=%lld k=%lld", (long long)N, (long long)Q, (long long)k);
      std::printf("%-44s %10.3f ms %9.1f GB/s (%5.1f%% of copy) %7.1f TFLOP/s\n", name, ms, gbs, 100 * gbs / copyGBs, tflops);
      std::printf("csv,topk,%lld,%lld,%lld,768,%.6f,%.3f,%.3f\n", (long long)N, (long long)Q, (long long)k, ms, gbs, tflops);
      if (checkLast && Q == lastQ && std::min(k, N) == lastK) {
        std::vector<int32_t> gpuIdx(static_cast<size_t>(lastK));
        std::vector<float> gpuScore(gpuIdx.size());
        const size_t at = size_t((lastQ - 1) * lastK);
        verified &= ok(cudaMemcpy(gpuIdx.data(), di + at, size_t(lastK) * 4, cudaMemcpyDeviceToHost), "cudaMemcpy") &&
                    ok(cudaMemcpy(gpuScore.data(), ds + at, size_t(lastK) * 4, cudaMemcpyDeviceToHost), "cudaMemcpy") &&
                    compareTopK("query " + std::to_string(lastQ) + " of the timed " + std::to_string(lastQ) + "-query search's top-" +
                                    std::to_string(lastK), N, lastK, {0}, gpuIdx.data(), gpuScore.data(), lastIdx, lastScore);
      }
    }
  cudaFree(dq);
  cudaFree(di);
  cudaFree(ds);
  cudaMatrixFree(m);
  return verified;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);  // keep every finished row if a time limit kills the run
  std::vector<CudaDeviceInfo> devices;
  std::string why;
  cudaListDevices(&devices, &why);
  if (devices.empty()) {
    std::printf("SKIP cuda_bench: no CUDA device (%s)\n", why.c_str());
    return 0;
  }
  const std::string mode = argc > 1 ? argv[1] : "";
  const std::vector<int64_t> ks = {10, 100, 1000};
  const Sizes sizes = mode == "--tiny"      ? Sizes{size_t(1) << 20, 4, 16, {1100}, {1, 17}, ks, false}
                      : mode == "--quick"   ? Sizes{size_t(1) << 30, 512, 128, {1000000}, {1, 256}, ks, false}
                      : mode == "--profile" ? Sizes{0, 0, 0, {1000000}, {1024}, {100}, true}
                                            : Sizes{size_t(1) << 30, 512, 128, {1000000, 8841823}, {1, 16, 256, 1024, 6980}, ks,
                                                    false};
  std::printf("cuda_bench on %s (sm_%d%d, %d SMs, %.1f GiB)\n", devices[0].name.c_str(), devices[0].computeMajor,
              devices[0].computeMinor, devices[0].multiprocessors, devices[0].totalMemoryBytes / 1073741824.0);
  if (!ok(cudaSetDevice(0), "cudaSetDevice")) return 1;
  cudaStream_t stream;
  if (!ok(cudaStreamCreate(&stream), "cudaStreamCreate")) return 1;
  double copyGBs = 0;
  if (sizes.copyBytes > 0) {
    copyGBs = copyBandwidthGBs(stream, sizes.copyBytes);
    benchPooling(stream, HiddenType::Float32, sizes.poolBatch, sizes.poolSeq, copyGBs);
    benchPooling(stream, HiddenType::Float16, sizes.poolBatch, sizes.poolSeq, copyGBs);
  }
  bool verified = true;
  for (int64_t rows : sizes.rowCounts) verified &= benchTopK(stream, rows, sizes, copyGBs);
  cudaStreamDestroy(stream);
  if (errors > 0) std::printf("ERROR cuda_bench: %d failed CUDA call%s (above)\n", errors, errors == 1 ? "" : "s");
  return verified && errors == 0 ? 0 : 1;
}
#endif

// The CUDA top-k search against the CPU kernel (native/cpu/topk.cc) and a float64 oracle, on
// random inputs of awkward shapes: float16 and float32 storage, float32 and float16 input, cosine
// and dot product, k = 1 and k = N, duplicated rows (ties), zero vectors, several query tiles and
// row launches, float32 rows of tiny norm; plus searches of a matrix's first rows, the
// device-pointer variant, the error paths (bad device, freed matrix, NaN, out of memory) leaving
// other matrices usable, and searches from several host threads at once.
// Skips (exit 0) with no CUDA device.
//
// Exactness (issue 5): scores within 1e-4 (float16 storage) / 1e-5 (float32) of the float64
// cosine of the stored values (queries rounded to float16 for float16 storage); index sets equal
// to the CPU's except for rows whose score is within 1e-5 / 1e-6 of the k-th score.
#include <algorithm>
#include <cmath>
#include <set>
#include <thread>

#include "camembed/cuda.h"
#include "camembed/topk.h"
#include "test_util.h"
#ifdef CAMEMBED_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace camembed;
using namespace camembed_test;

namespace {

#ifdef CAMEMBED_CUDA_EMULATOR
constexpr bool kEmulated = true;  // ~1e6 times slower than a GPU: the largest case shrinks
#else
constexpr bool kEmulated = false;
#endif

struct Case {
  int64_t rows, dim, queries, k;
};

// Values exactly as the GPU stores them (float16-rounded when the storage is float16).
struct Data {
  std::vector<float> stored;      // [rows][dim] as float32
  std::vector<uint16_t> half;     // [rows][dim] float16 bits (float16 storage)
  std::vector<float> queries;     // [Q][dim] as given
  std::vector<float> queriesUsed; // [Q][dim] as the kernel uses them (rounded for float16)
};

// roundRows: the rows reach the GPU as float16 (float16 storage, or float16 input). rowScales, when
// given: row r is multiplied by rowScales[r % size] (rows of tiny norm, alone or among normal ones).
Data makeData(const Case& c, bool halfStorage, bool roundRows, bool unitRows, Random& random,
              const std::vector<double>& rowScales = {}) {
  Data d;
  const int64_t duplicateFrom = c.rows / 2;  // rows in the second half copy the first half, in part
  // A normal random vector, made unit when unitRows.
  auto fillRandom = [&](float* row) {
    double sum = 0;
    for (int64_t i = 0; i < c.dim; ++i) {
      row[i] = random.normal();
      sum += double(row[i]) * row[i];
    }
    if (unitRows)
      for (int64_t i = 0; i < c.dim; ++i) row[i] = float(row[i] / std::sqrt(sum));
  };
  std::vector<float> raw(size_t(c.rows * c.dim));
  for (int64_t r = 0; r < c.rows; ++r) {
    float* row = raw.data() + r * c.dim;
    if (r >= duplicateFrom && r % 3 == 0 && r - duplicateFrom < duplicateFrom) {
      std::copy(raw.data() + (r - duplicateFrom) * c.dim, raw.data() + (r - duplicateFrom + 1) * c.dim, row);
      continue;
    }
    if (r == 2 && c.rows > 5) continue;  // a zero row (scores 0 when not normalised)
    fillRandom(row);
    if (!rowScales.empty())
      for (int64_t i = 0; i < c.dim; ++i) row[i] = float(row[i] * rowScales[size_t(r) % rowScales.size()]);
  }
  d.stored = raw;
  if (roundRows) {
    d.half.resize(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) d.stored[i] = halfToFloat(d.half[i] = floatToHalf(raw[i]));
  }
  d.queries.resize(size_t(c.queries * c.dim));
  for (int64_t q = 0; q < c.queries; ++q) {
    float* row = d.queries.data() + q * c.dim;
    // Every 5th query copies a database row (its best match then ties with that row's copies).
    if (q % 5 == 4) {
      std::copy(raw.data() + (q % c.rows) * c.dim, raw.data() + (q % c.rows + 1) * c.dim, row);
      continue;
    }
    fillRandom(row);
  }
  d.queriesUsed = d.queries;
  if (halfStorage)
    for (float& v : d.queriesUsed) v = halfToFloat(floatToHalf(v));
  return d;
}

double truthScore(const Data& d, int64_t dim, int64_t q, int64_t row, bool normalized) {
  double dot = 0, qq = 0, rr = 0;
  for (int64_t i = 0; i < dim; ++i) {
    const double a = d.queriesUsed[q * dim + i], b = d.stored[row * dim + i];
    dot += a * b;
    qq += a * a;
    rr += b * b;
  }
  if (normalized) return dot;
  const double denom = std::sqrt(qq) * std::sqrt(rr);
  return denom == 0 ? 0 : dot / denom;
}

void compareOne(const Case& c, bool halfStorage, bool halfInput, bool normalized, Random& random,
                const std::vector<double>& rowScales = {}) {
  std::string scales;
  for (double x : rowScales) scales += (scales.empty() ? " rows scaled by " : ", ") + formatNumber(x);
  const std::string what = "topk N=" + std::to_string(c.rows) + " d=" + std::to_string(c.dim) + " Q=" +
                           std::to_string(c.queries) + " k=" + std::to_string(c.k) +
                           (halfStorage ? " f16" : " f32") + (halfInput ? " (f16 input)" : "") +
                           (normalized ? " dot" : " cosine") + scales;
  const Data d = makeData(c, halfStorage, halfStorage || halfInput, normalized, random, rowScales);
  const int failuresBefore = failures;
  // Upload: float16 input is the stored bits; float32 input is converted on the GPU.
  CudaMatrix* m = nullptr;
  std::vector<uint16_t> inputHalf;
  if (halfInput) {
    inputHalf.resize(d.stored.size());
    for (size_t i = 0; i < inputHalf.size(); ++i) inputHalf[i] = floatToHalf(d.stored[i]);
  }
  const Status created = halfInput ? cudaMatrixCreateFrom(inputHalf.data(), HiddenType::Float16, c.rows, c.dim,
                                                      halfStorage ? HiddenType::Float16 : HiddenType::Float32, 0, &m)
                                   : cudaMatrixCreateFrom(d.stored.data(), HiddenType::Float32, c.rows, c.dim,
                                                      halfStorage ? HiddenType::Float16 : HiddenType::Float32, 0, &m);
  check(created.empty(), what + ": create: " + created);
  if (!created.empty()) return;
  check(cudaMatrixBytes(m) >= c.rows * c.dim * (halfStorage ? 2 : 4), what + ": bytes");
  const int64_t k = std::min(c.k, c.rows);
  std::vector<int32_t> gpuIdx(size_t(c.queries * k), -7);
  std::vector<float> gpuScore(gpuIdx.size(), std::nanf(""));
  const Status searched = cudaMatrixSearch(m, d.queries.data(), c.queries, k, normalized, gpuIdx.data(), gpuScore.data());
  check(searched.empty(), what + ": search: " + searched);
  cudaMatrixFree(m);
  if (!searched.empty()) return;

  // The CPU kernel on exactly the values the GPU used.
  std::vector<int32_t> cpuIdx(gpuIdx.size());
  std::vector<float> cpuScore(gpuIdx.size());
  TopKArgs a{d.queriesUsed.data(), c.queries, {{d.stored.data(), c.rows, nullptr}}, HiddenType::Float32, c.dim, k,
             normalized, cpuIdx.data(), cpuScore.data()};
  check(cosineTopKCpu(a, 0).empty(), what + ": cpu");

  const double scoreTol = halfStorage ? 1e-4 : 1e-5, indexTol = halfStorage ? 1e-5 : 1e-6;
  const int64_t duplicateFrom = c.rows / 2;
  for (int64_t q = 0; q < c.queries && failures == failuresBefore; ++q) {
    const int32_t* gi = gpuIdx.data() + q * k;
    const float* gs = gpuScore.data() + q * k;
    std::set<int32_t> gpuSet, cpuSet(cpuIdx.begin() + q * k, cpuIdx.begin() + (q + 1) * k);
    for (int64_t i = 0; i < k; ++i) {
      check(gi[i] >= 0 && gi[i] < c.rows, what + ": index out of range");
      if (gi[i] < 0 || gi[i] >= c.rows) return;
      gpuSet.insert(gi[i]);
      const double truth = truthScore(d, c.dim, q, gi[i], normalized);
      check(std::fabs(gs[i] - truth) <= scoreTol,
            what + ": q" + std::to_string(q) + " score " + std::to_string(gs[i]) + " vs " + std::to_string(truth));
      if (i > 0)
        check(gs[i - 1] > gs[i] || (gs[i - 1] == gs[i] && gi[i - 1] < gi[i]),
              what + ": q" + std::to_string(q) + " not sorted by score desc, then index asc at " + std::to_string(i));
      // A returned copy implies its lower original is returned too (ties go to the lower index).
      const int64_t original = gi[i] - duplicateFrom;
      if (gi[i] >= duplicateFrom && gi[i] % 3 == 0 && original < duplicateFrom && original != 2)
        check(std::find(gi, gi + k, int32_t(original)) != gi + k,
              what + ": q" + std::to_string(q) + " returned row " + std::to_string(gi[i]) + " but not its equal " +
                  std::to_string(original));
    }
    check(int64_t(gpuSet.size()) == k, what + ": duplicate indices");
    const double kth = truthScore(d, c.dim, q, cpuIdx[q * k + k - 1], normalized);
    for (int32_t i : gpuSet)
      if (!cpuSet.count(i))
        check(std::fabs(truthScore(d, c.dim, q, i, normalized) - kth) <= indexTol,
              what + ": q" + std::to_string(q) + " row " + std::to_string(i) + " is not in the CPU top-k");
    for (int32_t i : cpuSet)
      if (!gpuSet.count(i))
        check(std::fabs(truthScore(d, c.dim, q, i, normalized) - kth) <= indexTol,
              what + ": q" + std::to_string(q) + " row " + std::to_string(i) + " of the CPU top-k is missing");
  }
}

// Float32 storage in cosine mode with components far from 1 (norms in float64, queries scaled to
// unit length, as on the CPU): rows (1..8) * s and e0, query (1..8) or (1..8) * s, score 1 and
// 1/sqrt(204) whatever s; a zero query scores 0 against rows of 1e20 (no NaN error).
void checkExtremeMagnitudes() {
  for (double scale : {1e-25, 1e-21, 1e20, 1e30})
    for (bool scaledQuery : {false, true}) {
      std::vector<float> rows(16, 0.0f), query(8);
      for (int i = 0; i < 8; ++i) {
        rows[size_t(i)] = float((i + 1) * scale);
        query[size_t(i)] = float((i + 1) * (scaledQuery ? scale : 1.0));
      }
      rows[8] = 1.0f;
      const std::string what = "extreme magnitudes " + formatNumber(scale) + (scaledQuery ? " (query too)" : "");
      CudaMatrix* m = nullptr;
      std::vector<int32_t> idx(2, -1);
      std::vector<float> score(2, std::nanf(""));
      check(cudaMatrixCreateFrom(rows.data(), HiddenType::Float32, 2, 8, HiddenType::Float32, 0, &m).empty(), what + ": create");
      const Status s = cudaMatrixSearch(m, query.data(), 1, 2, false, idx.data(), score.data());
      check(s.empty() && idx[0] == 0 && idx[1] == 1 && std::fabs(score[0] - 1.0) <= 1e-5 &&
                std::fabs(score[1] - 1.0 / std::sqrt(204.0)) <= 1e-5,
            what + ": got '" + s + "' rows " + std::to_string(idx[0]) + ", " + std::to_string(idx[1]) + " scores " +
                std::to_string(score[0]) + ", " + std::to_string(score[1]));
      if (scale == 1e20) {
        const std::vector<float> zero(8, 0.0f);
        const Status z = cudaMatrixSearch(m, zero.data(), 1, 2, false, idx.data(), score.data());
        check(z.empty() && score[0] == 0.0f && score[1] == 0.0f && idx[0] == 0 && idx[1] == 1,
              what + ": zero query: '" + z + "'");
      }
      cudaMatrixFree(m);
    }
}

// Float32 rows of tiny norm set in place: a tiny row replaced by a normal one and the reverse score
// as the float64 reference does (a row's tiny mark follows it). Rows (1e-45, 3e-45) and (4e-45, 0)
// have cosines 0.685 and 0.958 with the query (1, 0.3); scored from their raw products, both were 1.
void checkTinyRowsReplaced() {
  const float query[2] = {1.0f, 0.3f};
  std::vector<float> rows = {1e-45f, 3e-45f, 4e-45f, 0.0f, 1.0f, 0.33f};
  auto expectReference = [&](CudaMatrix* m, const std::string& what) {
    std::vector<double> cosines;
    std::vector<int32_t> order = {0, 1, 2};
    for (int r = 0; r < 3; ++r) {
      const double x = rows[size_t(2 * r)], y = rows[size_t(2 * r + 1)];
      cosines.push_back((x * query[0] + y * query[1]) / std::hypot(x, y) / std::hypot(query[0], query[1]));
    }
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return cosines[size_t(a)] > cosines[size_t(b)]; });
    std::vector<int32_t> idx(3, -1);
    std::vector<float> score(3, std::nanf(""));
    const Status s = cudaMatrixSearch(m, query, 1, 3, false, idx.data(), score.data());
    bool ok = s.empty() && idx == order;
    for (int i = 0; i < 3 && ok; ++i) ok = std::fabs(score[size_t(i)] - cosines[size_t(order[size_t(i)])]) <= 1e-6;
    check(ok, "tiny rows, " + what + ": got '" + s + "' rows " + std::to_string(idx[0]) + ", " + std::to_string(idx[1]) +
                  ", " + std::to_string(idx[2]) + " scores " + std::to_string(score[0]) + ", " +
                  std::to_string(score[1]) + ", " + std::to_string(score[2]));
  };
  CudaMatrix* m = nullptr;
  check(cudaMatrixCreateFrom(rows.data(), HiddenType::Float32, 3, 2, HiddenType::Float32, 0, &m).empty(), "tiny rows: create");
  expectReference(m, "two among a normal one");
  const std::vector<float> replacement = {0.2f, 1.0f, 3e-45f, 1e-45f};  // row 1 now normal, row 2 tiny
  check(cudaMatrixSetRows(m, 1, replacement.data(), HiddenType::Float32, 2).empty(), "tiny rows: setRows");
  std::copy(replacement.begin(), replacement.end(), rows.begin() + 2);
  expectReference(m, "rows 1 and 2 replaced");
  cudaMatrixFree(m);
}

// Errors are messages; afterwards a healthy matrix still searches correctly.
void checkErrors(Random& random) {
  const Case c{300, 24, 3, 5};
  const Data d = makeData(c, true, true, true, random);
  CudaMatrix* healthy = nullptr;
  check(cudaMatrixCreateFrom(d.stored.data(), HiddenType::Float32, c.rows, c.dim, HiddenType::Float16, 0, &healthy).empty(),
        "errors: create healthy");
  std::vector<int32_t> idx(15), before(15);
  std::vector<float> score(15);
  check(cudaMatrixSearch(healthy, d.queries.data(), 3, 5, true, before.data(), score.data()).empty(), "errors: search");

  CudaMatrix* bad = nullptr;
  Status s = cudaMatrixCreateFrom(d.stored.data(), HiddenType::Float32, c.rows, c.dim, HiddenType::Float16, 77, &bad);
  check(s.find("does not exist") != std::string::npos && bad == nullptr, "errors: bad device: '" + s + "'");

  std::vector<float> withNaN = d.stored;
  withNaN[size_t(5 * c.dim + 3)] = std::nanf("");
  s = cudaMatrixCreateFrom(withNaN.data(), HiddenType::Float32, c.rows, c.dim, HiddenType::Float32, 0, &bad);
  check(s.find("row 5") != std::string::npos && bad == nullptr, "errors: NaN row: '" + s + "'");
  std::vector<float> tooLarge = d.stored;
  tooLarge[size_t(7 * c.dim)] = 1e6f;
  s = cudaMatrixCreateFrom(tooLarge.data(), HiddenType::Float32, c.rows, c.dim, HiddenType::Float16, 0, &bad);
  check(s.find("row 7") != std::string::npos && bad == nullptr, "errors: float16 overflow: '" + s + "'");

  // Out of memory: far more than any GPU has (the host pointer is never read: allocation fails first).
  s = cudaMatrixCreateFrom(d.stored.data(), HiddenType::Float32, int64_t(1) << 30, int64_t(1) << 16, HiddenType::Float32, 0, &bad);
  check(s.find("out of GPU memory") != std::string::npos && bad == nullptr, "errors: out of memory: '" + s + "'");

  std::vector<float> nanQuery = d.queries;
  nanQuery[1] = std::nanf("");
  s = cudaMatrixSearch(healthy, nanQuery.data(), 3, 5, true, idx.data(), score.data());
  check(!s.empty(), "errors: NaN query must fail");
  s = cudaMatrixSearch(healthy, d.queries.data(), 3, c.rows + 1, true, idx.data(), score.data());
  check(s.find("k must be") != std::string::npos, "errors: k > rows: '" + s + "'");
  s = cudaMatrixSearch(nullptr, d.queries.data(), 3, 5, true, idx.data(), score.data());
  check(s.find("freed") != std::string::npos, "errors: freed matrix: '" + s + "'");

  check(cudaMatrixSearch(healthy, d.queries.data(), 3, 5, true, idx.data(), score.data()).empty() && idx == before,
        "errors: the healthy matrix still gives the same result");

  // Rows set in two chunks (float32, then float16 bits) give the same matrix.
  CudaMatrix* chunked = nullptr;
  std::vector<uint16_t> secondHalf;
  for (size_t i = size_t(100 * c.dim); i < d.stored.size(); ++i) secondHalf.push_back(floatToHalf(d.stored[i]));
  check(cudaMatrixCreate(c.rows, c.dim, HiddenType::Float16, 0, &chunked).empty() &&
            cudaMatrixSetRows(chunked, 0, d.stored.data(), HiddenType::Float32, 100).empty() &&
            cudaMatrixSetRows(chunked, 100, secondHalf.data(), HiddenType::Float16, c.rows - 100).empty(),
        "chunked upload");
  s = cudaMatrixSetRows(chunked, c.rows - 1, d.stored.data(), HiddenType::Float32, 2);
  check(s.find("out of range") != std::string::npos, "setRows past the end: '" + s + "'");
  check(cudaMatrixSearch(chunked, d.queries.data(), 3, 5, true, idx.data(), score.data()).empty() && idx == before,
        "chunked upload gives the same result");
  // Searching its first 150 rows equals searching a matrix of those rows alone (and differs from
  // searching all 300: the rows past 150 matter here); more rows than it has, or fewer than k, are refused.
  CudaMatrix* prefix = nullptr;
  std::vector<int32_t> prefixIdx(15, -1), partIdx(15, -2);
  std::vector<float> prefixScore(15), partScore(15);
  check(cudaMatrixCreateFrom(d.stored.data(), HiddenType::Float32, 150, c.dim, HiddenType::Float16, 0, &prefix).empty() &&
            cudaMatrixSearch(prefix, d.queries.data(), 3, 5, true, prefixIdx.data(), prefixScore.data()).empty(),
        "first rows: a matrix of 150 rows");
  cudaMatrixFree(prefix);
  s = cudaMatrixSearch(chunked, d.queries.data(), 3, 5, true, partIdx.data(), partScore.data(), 150);
  check(s.empty() && partIdx == prefixIdx && partScore == prefixScore && partIdx != before,
        "first rows: searching 150 rows of 300 equals a matrix of those rows: '" + s + "'");
  s = cudaMatrixSearch(chunked, d.queries.data(), 3, 5, true, partIdx.data(), partScore.data(), c.rows + 1);
  check(s.find("rows searched") != std::string::npos, "first rows: more than the matrix has: '" + s + "'");
  s = cudaMatrixSearch(chunked, d.queries.data(), 3, 5, true, partIdx.data(), partScore.data(), 4);
  check(s.find("k must be") != std::string::npos, "first rows: fewer than k: '" + s + "'");
  cudaMatrixFree(chunked);
#ifdef CAMEMBED_WITH_CUDA
  // The device-pointer variant on a caller's stream gives the same result.
  float* dq = nullptr;
  int32_t* di = nullptr;
  float* ds = nullptr;
  cudaStream_t stream = nullptr;
  bool ok = cudaMalloc(&dq, d.queries.size() * 4) == cudaSuccess && cudaMalloc(&di, 15 * 4) == cudaSuccess &&
            cudaMalloc(&ds, 15 * 4) == cudaSuccess && cudaStreamCreate(&stream) == cudaSuccess &&
            cudaMemcpy(dq, d.queries.data(), d.queries.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess;
  check(ok && cudaMatrixSearchDevice(healthy, dq, 3, 5, true, di, ds, stream).empty() &&
            cudaMemcpy(idx.data(), di, 15 * 4, cudaMemcpyDeviceToHost) == cudaSuccess && idx == before,
        "device-pointer search equals host search");
  cudaFree(dq);
  cudaFree(di);
  cudaFree(ds);
  cudaStreamDestroy(stream);
#endif
  cudaMatrixFree(healthy);
}

// Searches from several host threads at once (as the addon's async searches run on libuv's
// workers): two threads per matrix and one creating and freeing matrices, on one device and its
// shared workspace. Each result must equal the same search run alone, bit for bit.
void checkConcurrentSearches(Random& random) {
  const std::vector<Case> shapes = {{500, 40, 17, 64}, {5000, 24, 3, 100}, {300, 33, 130, 9}};
  struct Subject {
    Case c;
    Data d;
    CudaMatrix* matrix = nullptr;
    std::vector<int32_t> indices;
    std::vector<float> scores;
  };
  std::vector<Subject> subjects;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Subject x{shapes[i], makeData(shapes[i], i != 1, i != 1, false, random)};
    check(cudaMatrixCreateFrom(x.d.stored.data(), HiddenType::Float32, x.c.rows, x.c.dim,
                               i != 1 ? HiddenType::Float16 : HiddenType::Float32, 0, &x.matrix).empty(),
          "concurrent: create");
    x.indices.resize(size_t(x.c.queries * x.c.k));
    x.scores.resize(x.indices.size());
    check(cudaMatrixSearch(x.matrix, x.d.queries.data(), x.c.queries, x.c.k, false, x.indices.data(), x.scores.data())
              .empty(),
          "concurrent: search alone");
    subjects.push_back(std::move(x));
  }
  constexpr int kRepeats = 3;
  std::vector<std::string> errors(2 * subjects.size() + 1);  // one per thread: check() is not thread-safe
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 2 * subjects.size(); ++t)
    threads.emplace_back([&, t] {
      const Subject& x = subjects[t / 2];
      std::vector<int32_t> indices(x.indices.size());
      std::vector<float> scores(x.scores.size());
      for (int r = 0; r < kRepeats && errors[t].empty(); ++r) {
        const Status s = cudaMatrixSearch(x.matrix, x.d.queries.data(), x.c.queries, x.c.k, false, indices.data(),
                                          scores.data());
        if (!s.empty() || indices != x.indices || scores != x.scores)
          errors[t] = "matrix " + std::to_string(t / 2) + ", repeat " + std::to_string(r) + ": " +
                      (s.empty() ? "a different result" : s);
      }
    });
  threads.emplace_back([&] {
    const Data& d = subjects[0].d;
    for (int r = 0; r < 2 * kRepeats && errors.back().empty(); ++r) {
      CudaMatrix* m = nullptr;
      const Status s = cudaMatrixCreateFrom(d.stored.data(), HiddenType::Float32, 500, 40, HiddenType::Float16, 0, &m);
      if (!s.empty()) errors.back() = "create while others search: " + s;
      cudaMatrixFree(m);
    }
  });
  for (std::thread& t : threads) t.join();
  for (size_t t = 0; t < errors.size(); ++t)
    check(errors[t].empty(), "concurrent searches, thread " + std::to_string(t) + ": " + errors[t]);
  for (Subject& x : subjects) cudaMatrixFree(x.matrix);
}

}  // namespace

int main(int argc, char** argv) {
  if (!haveGpu("cuda_topk_test")) return 0;
  const bool small = smallOnly(argc, argv);
  std::vector<Case> cases = {{1, 1, 1, 1}, {7, 3, 2, 7}, {7, 3, 2, 50}, {100, 33, 5, 1}, {500, 40, 17, 64}};
  if (!small)
    cases.insert(cases.end(), {{1000, 768, 1, 10},
                               {5000, 100, 18, 100},
                               {3000, 64, 70, 2048},  // k = 2048 (the maximum)
                               {kEmulated ? 9000 : 20000, kEmulated ? 40 : 768, 130, 1000},  // several row launches, 128-query blocks
                               {70001, 31, 3, 5},     // first launch of 4096 rows, then doubling
                               {2000, 16, 1100, 3}}); // two query tiles
  Random random(5);
  for (const Case& c : cases)
    for (bool halfStorage : {true, false})
      for (bool normalized : {false, true}) compareOne(c, halfStorage, false, normalized, random);
  compareOne({300, 20, 4, 9}, true, true, false, random);
  compareOne({300, 20, 4, 9}, false, true, true, random);
  // Float32 rows of norm below 1e-15, alone and among normal rows: cosine mode scores them from
  // copies scaled by 2^100, as the CPU does. Float16 rows of subnormal components (down to 6e-8):
  // their products with float16 queries are at least 3.6e-15, normal float32 values, so none is tiny.
  for (const std::vector<double>& scales :
       std::vector<std::vector<double>>{{1e-45}, {1e-42}, {1e-40}, {1e-38}, {1, 1e-45, 1e-40, 1e-38, 1e-20}})
    for (bool normalized : {false, true}) compareOne({300, 40, 6, 10}, false, false, normalized, random, scales);
  compareOne({300, 40, 6, 10}, true, false, false, random, {1, 1e-7, 1e-6, 3e-5});
  compareOne({300, 40, 6, 10}, true, false, false, random, {1e-7});
  checkTinyRowsReplaced();
  checkExtremeMagnitudes();
  checkErrors(random);
  checkConcurrentSearches(random);
  return finish("cuda_topk_test");
}

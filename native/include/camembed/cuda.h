// The CUDA side of camembed. Always declared; when the addon is built without CUDA
// (no nvcc, or CAMEMBED_CUDA=OFF) native/cuda/cuda_absent.cc implements it by reporting
// that CUDA is absent. No function here aborts: failures come back as a Status message,
// and after a failure the process and every other device matrix stay usable (except after
// a kernel fault, which CUDA makes sticky for the whole device context: the message says so).
#pragma once
#include <vector>

#include "camembed/pool.h"
#include "camembed/topk.h"

namespace camembed {

struct CudaDeviceInfo {
  int index;
  std::string name;
  int64_t totalMemoryBytes;
  int computeMajor, computeMinor;
  int multiprocessors;
};

bool cudaCompiledIn();
// Lists usable devices; an empty list (and empty Status) when there is no GPU or driver.
// `why` receives the reason when the list is empty (no driver, no device, built without CUDA).
Status cudaListDevices(std::vector<CudaDeviceInfo>* out, std::string* why);

// Pooling with host pointers (copied in and out). PoolArgs as on the CPU.
Status meanPoolNormalizeCuda(const PoolArgs& hostArgs, int device);
// Pooling with device pointers (hidden, mask and out already on `device`), queued on `stream`
// (a cudaStream_t; nullptr = the legacy default stream). Returns once the kernel is launched.
Status meanPoolNormalizeCudaDevice(const PoolArgs& deviceArgs, int device, void* stream);

// A database matrix resident on one GPU: rows stored once (float16 or float32, each row
// padded with zeros to a multiple of 32 values, plus one float32 norm and one byte marking a
// float32 row of norm below 1e-15 per row), searched
// many times. Searches on one device run one at a time (they share its workspace, and would
// compete for the GPU anyway).
struct CudaMatrix;

// The largest k a search accepts (the final sort holds k candidates in shared memory).
constexpr int64_t kCudaMaxK = 2048;

// Allocates a rows x dim matrix stored as `storage` (zeros until its rows are set).
Status cudaMatrixCreate(int64_t rows, int64_t dim, HiddenType storage, int device, CudaMatrix** out);
// Uploads rows [firstRow, firstRow + rowCount) from host memory (`dataType` values, row-major;
// float32 -> float16 rounds to nearest even). Fails when the data holds NaN, infinity, or a value
// outside the float16 range for float16 storage (the message names the first such row).
// Several calls fill one matrix from chunks (a JS typed array holds at most 2^32 values).
Status cudaMatrixSetRows(CudaMatrix* matrix, int64_t firstRow, const void* hostData, HiddenType dataType,
                         int64_t rowCount);
// Both in one call; nothing is kept on failure.
Status cudaMatrixCreateFrom(const void* hostData, HiddenType dataType, int64_t rows, int64_t dim, HiddenType storage,
                            int device, CudaMatrix** out);
// Frees the matrix's device memory (its rows and norms; the device's search workspace, shared by
// all matrices on it, stays until the process ends). Null is a no-op.
void cudaMatrixFree(CudaMatrix* matrix);
int64_t cudaMatrixBytes(const CudaMatrix* matrix);  // device bytes of the stored rows, norms and marks
int64_t cudaMatrixDim(const CudaMatrix* matrix);

// Searches cover rows [0, rows) of the matrix; kAllRows: all of them. Searching fewer lets a
// matrix allocated for more rows than it holds yet grow by cudaMatrixSetRows alone.
constexpr int64_t kAllRows = -1;

// Exact top-k of `numQueries` float32 queries [numQueries, dim] (host memory) by cosine
// (dot product when `normalized`), sorted by score descending, ties by lower row index.
// 1 <= k <= min(rows, kCudaMaxK) (the caller clamps). With float16 storage the queries are
// rounded to float16 first, so scores are exact cosines of the rounded queries.
Status cudaMatrixSearch(CudaMatrix* matrix, const float* queries, int64_t numQueries, int64_t k, bool normalized,
                        int32_t* outIndices, float* outScores, int64_t rows = kAllRows);
// Same with device pointers (queries, outIndices, outScores on the matrix's device), queued on
// `stream` (a cudaStream_t; nullptr = the legacy default stream, as for pooling, so work queued
// there before, such as the pooling that wrote the queries, comes first). Returns when the
// results are written (it synchronises: the k-selection needs no host round trip, the NaN check does).
Status cudaMatrixSearchDevice(CudaMatrix* matrix, const float* deviceQueries, int64_t numQueries, int64_t k,
                              bool normalized, int32_t* deviceIndices, float* deviceScores, void* stream,
                              int64_t rows = kAllRows);

}  // namespace camembed

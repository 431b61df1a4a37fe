// The CUDA side of camembed. Always declared; when the addon is built without CUDA
// (no nvcc, or CAMEMBED_CUDA=OFF) native/cuda/cuda_absent.cc implements it by reporting
// that CUDA is absent. No function here aborts: failures come back as a Status message.
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

}  // namespace camembed

// CUDA device discovery. cudart is linked statically, so with no driver or no GPU the
// calls below fail with an error code (never abort) and devices() reports none.
#include <cuda_runtime.h>

#include "camembed/cuda.h"

namespace camembed {

bool cudaCompiledIn() { return true; }

Status cudaListDevices(std::vector<CudaDeviceInfo>* out, std::string* why) {
  out->clear();
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    *why = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return "";
  }
  if (count == 0) *why = "no CUDA device found";
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    out->push_back(CudaDeviceInfo{i, p.name, int64_t(p.totalGlobalMem), p.major, p.minor, p.multiProcessorCount});
  }
  return "";
}

}  // namespace camembed

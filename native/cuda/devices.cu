// CUDA device discovery. cudart is linked statically, so with no driver or no GPU the
// calls below fail with an error code (never abort) and devices() reports none.
#include <cuda_runtime.h>
#ifdef __linux__
#include <dlfcn.h>
#endif

#include "camembed/cuda.h"

namespace camembed {

bool cudaCompiledIn() { return true; }

namespace {

bool driverMissing() {
#ifdef __linux__
  void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (driver != nullptr) dlclose(driver);
  return driver == nullptr;
#else
  return false;
#endif
}

}  // namespace

Status cudaListDevices(std::vector<CudaDeviceInfo>* out, std::string* why) {
  out->clear();
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // CUDA reports a missing driver as one too old ("CUDA driver version is insufficient"): say which.
    *why = driverMissing() ? "no NVIDIA driver is installed (libcuda.so.1 not found)"
                           : std::string("no usable CUDA device: ") + cudaGetErrorString(err);
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

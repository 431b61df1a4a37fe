// Built in place of the CUDA sources when the addon is compiled without CUDA.
#include "camembed/cuda.h"

namespace camembed {

static const char* kAbsent =
    "camembed was built without CUDA (nvcc was not found at install time, or CAMEMBED_CUDA=OFF); "
    "reinstall with the CUDA toolkit on PATH to use device: 'cuda'";

bool cudaCompiledIn() { return false; }

Status cudaListDevices(std::vector<CudaDeviceInfo>* out, std::string* why) {
  out->clear();
  *why = kAbsent;
  return "";
}

Status meanPoolNormalizeCuda(const PoolArgs&, int) { return kAbsent; }

}  // namespace camembed

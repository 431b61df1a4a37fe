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
Status meanPoolNormalizeCudaDevice(const PoolArgs&, int, void*) { return kAbsent; }

Status cudaMatrixCreate(int64_t, int64_t, HiddenType, int, CudaMatrix** out) {
  *out = nullptr;
  return kAbsent;
}
Status cudaMatrixSetRows(CudaMatrix*, int64_t, const void*, HiddenType, int64_t) { return kAbsent; }
Status cudaMatrixCreateFrom(const void*, HiddenType, int64_t, int64_t, HiddenType, int, CudaMatrix** out) {
  *out = nullptr;
  return kAbsent;
}
void cudaMatrixFree(CudaMatrix*) {}
int64_t cudaMatrixBytes(const CudaMatrix*) { return 0; }
int64_t cudaMatrixDim(const CudaMatrix*) { return 0; }
Status cudaMatrixSearch(CudaMatrix*, const float*, int64_t, int64_t, bool, int32_t*, float*, int64_t) { return kAbsent; }
Status cudaMatrixSearchDevice(CudaMatrix*, const float*, int64_t, int64_t, bool, int32_t*, float*, void*, int64_t) {
  return kAbsent;
}

}  // namespace camembed

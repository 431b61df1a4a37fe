// Error handling shared by the CUDA sources: every CUDA call is checked and a failure becomes
// a Status message (never an abort).
#pragma once
#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "camembed/types.h"

namespace camembed {

// "what: CUDA error text", plus a hint when the error poisons the device context.
inline Status cudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return "";
  std::string message = std::string(what) + ": " + cudaGetErrorString(err);
  if (err == cudaErrorMemoryAllocation) {
    size_t freeBytes = 0, totalBytes = 0;
    cudaGetLastError();  // out-of-memory is not sticky: clear it so the next call starts clean
    if (cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess)
      message += " (out of GPU memory: " + std::to_string(freeBytes >> 20) + " MiB free of " +
                 std::to_string(totalBytes >> 20) + " MiB)";
  } else if (err == cudaErrorIllegalAddress || err == cudaErrorLaunchFailure || err == cudaErrorAssert ||
             err == cudaErrorIllegalInstruction || err == cudaErrorMisalignedAddress || err == cudaErrorLaunchTimeout ||
             err == cudaErrorHardwareStackError || err == cudaErrorInvalidAddressSpace || err == cudaErrorInvalidPc ||
             err == cudaErrorECCUncorrectable || err == cudaErrorMpsClientTerminated || err == cudaErrorExternalDevice
#if CUDART_VERSION >= 12080  // both codes are new in CUDA 12.8; V100 builds use CUDA 12.0-12.x
             || err == cudaErrorContained || err == cudaErrorTensorMemoryLeak
#endif
  ) {
    // The errors CUDA's documentation says leave the process unable to use CUDA until it restarts
    // (an uncorrectable ECC error is treated so too).
    message += " (a kernel fault: CUDA keeps this device unusable until the process restarts)";
  } else {
    cudaGetLastError();
  }
  return message;
}

// Evaluates a CUDA call and returns its Status from the enclosing function on failure.
#define CAMEMBED_CUDA_TRY(call, what)                       \
  do {                                                      \
    ::camembed::Status status_ = ::camembed::cudaStatus((call), (what)); \
    if (!status_.empty()) return status_;                   \
  } while (0)

// kernel<<<grid, block, sharedBytes, stream>>>(args...) through cudaLaunchKernelEx, which converts
// the arguments to the kernel's parameter types and returns the launch error itself. (One launch
// path also lets the CPU emulator of the tests, native/tests/emulator, run every kernel.)
template <class... Params, class... Args>
Status launchKernel(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t sharedBytes,
                    cudaStream_t stream, Args&&... args) {
  const cudaLaunchConfig_t config = {grid, block, sharedBytes, stream, nullptr, 0};
  return cudaStatus(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), what);
}

#ifndef CAMEMBED_CUDA_EMULATOR
// The dynamic shared memory of the running block (the emulator defines its own).
template <class T>
__device__ __forceinline__ T* dynamicSharedMemory() {
  extern __shared__ __align__(128) unsigned char bytes[];
  return reinterpret_cast<T*>(bytes);
}
#endif

// Makes `device` current for this thread (a bad index becomes a clear message).
inline Status useDevice(int device) {
  int count = 0;
  CAMEMBED_CUDA_TRY(cudaGetDeviceCount(&count), "no usable CUDA device (cudaGetDeviceCount)");
  if (device < 0 || device >= count)
    return "CUDA device " + std::to_string(device) + " does not exist (this machine has " + std::to_string(count) +
           " CUDA device" + (count == 1 ? "" : "s") + ")";
  CAMEMBED_CUDA_TRY(cudaSetDevice(device), "cudaSetDevice");
  return "";
}

// A device allocation freed when it goes out of scope.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }
  Status allocate(size_t count, const char* what) {
    reset();
    if (count == 0) return "";
    CAMEMBED_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T)), what);
    count_ = count;
    return "";
  }
  // Keeps the allocation when it is already large enough.
  Status reserve(size_t count, const char* what) { return count <= count_ ? Status() : allocate(count, what); }
  void reset() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    count_ = 0;
  }
  T* get() const { return ptr_; }
  size_t count() const { return count_; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

}  // namespace camembed

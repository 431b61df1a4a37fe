// The CUDA emulator's stand-in for <cuda_runtime.h> (tests only; see ../README.md).
//
// native/cuda/*.cu compile against it as plain C++: kernels are ordinary functions, every CUDA
// thread of a block is a fiber, and blocks run one after another on the calling thread. What
// it checks that a real GPU would not report: barriers reached by some threads only, warp
// operations with missing or diverging lanes, cp.async data read before its wait, launches
// beyond the device's limits, and (built with AddressSanitizer) any out-of-bounds access.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <utility>

#define CAMEMBED_CUDA_EMULATOR 1
#if CAMEMBED_EMULATED_SM >= 80 && !defined(CAMEMBED_CUDA_PORTABLE)
#define __CUDA_ARCH__ 800  // the kernels' sm_80+ path (cp.async, emulated below)
#endif

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Blocks run one at a time: one static copy per kernel is the block's. They all live in one
// section, which the runtime fills with garbage (NaN bits) before each block, as uninitialised
// shared memory would be.
#define __shared__ static __attribute__((section("camembed_emu_shared")))
#define __align__(n) alignas(n)

// ---------------------------------------------------------------------------------------------
// Types
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorECCUncorrectable = 214,
  cudaErrorContained = 226,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchTimeout = 702,
  cudaErrorHardwareStackError = 714,
  cudaErrorInvalidAddressSpace = 717,
  cudaErrorInvalidPc = 718,
  cudaErrorAssert = 710,
  cudaErrorMisalignedAddress = 716,
  cudaErrorIllegalInstruction = 715,
  cudaErrorLaunchFailure = 719,
  cudaErrorTensorMemoryLeak = 721,
  cudaErrorMpsClientTerminated = 810,
  cudaErrorExternalDevice = 911,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaDeviceAttr { cudaDevAttrL2CacheSize = 38, cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrComputeCapabilityMinor = 76 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamNonBlocking = 1;

struct CUstream_st;
typedef CUstream_st* cudaStream_t;
struct CUevent_st;
typedef CUevent_st* cudaEvent_t;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor, multiProcessorCount;
};

struct cudaLaunchConfig_t {
  dim3 gridDim, blockDim;
  size_t dynamicSmemBytes;
  cudaStream_t stream;
  void* attrs;
  unsigned numAttrs;
};

// ---------------------------------------------------------------------------------------------
// Host API (emulator.cc). Streams are synchronous: work runs when it is queued.
const char* cudaGetErrorString(cudaError_t err);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes);
cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
// Events take the host clock when recorded (work has finished by then: streams are synchronous).
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop);
cudaError_t cudaEventDestroy(cudaEvent_t event);

namespace emu {
cudaError_t setFunctionAttribute(const void* kernel, cudaFuncAttribute attr, int value);
// Prints the message (with the emulator's seed) and returns cudaErrorLaunchFailure.
cudaError_t launchFailure(const std::string& message);
bool onDevice(const void* pointer);  // inside (or one past) a device allocation
template <class T>
bool hostPointer(const T&) {
  return false;
}
template <class T>
bool hostPointer(T* pointer) {
  return pointer != nullptr && !onDevice(pointer);
}
// Runs `thread` for every thread of every block of the grid (after checking the configuration).
cudaError_t launch(const void* kernel, const cudaLaunchConfig_t& config, const std::function<void()>& thread);

// The running thread's coordinates and its block's dynamic shared memory.
struct ThreadCoordinates {
  dim3 threadIdx, blockIdx, blockDim, gridDim;
};
const ThreadCoordinates& coordinates();
void* dynamicShared();

int laneId();
// WMMA's rule: a 256-bit aligned address, a stride that is a multiple of 16 bytes.
void checkWmmaPointer(const void* pointer, size_t ldmBytes);

void syncthreads(int line);
bool syncthreadsOr(bool predicate, int line);
// A warp-wide exchange: every lane of the warp must call it with the full mask and the same
// operation; returns this lane's result.
enum class WarpOp { Sync, ShflXor, ShflUp, Ballot, Any };
uint64_t warpExchange(unsigned mask, WarpOp op, uint64_t value, int parameter);

// For a warp-collective call emulated once per warp (WMMA): `first` is true for the first lane of
// the warp to make its n-th such call, which computes `tile`; the others (same n) copy it. Fails
// the launch when a lane passes another pointer or stride than the first (undefined in CUDA).
struct CollectiveCall {
  bool first;
  float* tile;  // 16 x 16
};
CollectiveCall warpCollective(const void* pointer, unsigned ldm);

// cp.async: a copy lands when it is issued or at the wait that covers it (at random).
void copyAsync(void* shared, const void* global, int bytes);
void copyAsyncCommit();
void copyAsyncWait(int pending);
}  // namespace emu

template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  return emu::setFunctionAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}

// As CUDA's own template: the arguments are converted to the kernel's parameter types first.
template <class... Params, class... Args>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* config, void (*kernel)(Params...), Args&&... args) {
  std::tuple<Params...> converted(std::forward<Args>(args)...);
  // Device memory is host memory here: a host pointer would work, where a GPU faults.
  const bool hostArgument = std::apply([](const auto&... p) { return (emu::hostPointer(p) || ...); }, converted);
  if (hostArgument) return emu::launchFailure("a kernel argument points outside device memory");
  // Each thread gets its own copy of the parameters, as on a GPU.
  return emu::launch(reinterpret_cast<const void*>(kernel), *config, [&] {
    std::tuple<Params...> own = converted;
    std::apply(kernel, own);
  });
}

// ---------------------------------------------------------------------------------------------
// Device built-ins
#define threadIdx (::emu::coordinates().threadIdx)
#define blockIdx (::emu::coordinates().blockIdx)
#define blockDim (::emu::coordinates().blockDim)
#define gridDim (::emu::coordinates().gridDim)
#define __syncthreads() ::emu::syncthreads(__LINE__)
#define __syncthreads_or(predicate) ::emu::syncthreadsOr((predicate), __LINE__)

template <class T>
T* dynamicSharedMemory() {
  return static_cast<T*>(emu::dynamicShared());
}

inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::warpExchange(mask, emu::WarpOp::Sync, 0, 0); }
// Any value of up to 8 bytes (CUDA has overloads for int, float, double, ...).
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int laneMask) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = emu::warpExchange(mask, emu::WarpOp::ShflXor, bits, laneMask);
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}
inline unsigned __shfl_up_sync(unsigned mask, unsigned v, unsigned delta) {
  return unsigned(emu::warpExchange(mask, emu::WarpOp::ShflUp, v, int(delta)));
}
inline unsigned __ballot_sync(unsigned mask, bool predicate) {
  return unsigned(emu::warpExchange(mask, emu::WarpOp::Ballot, predicate, 0));
}
inline bool __any_sync(unsigned mask, bool predicate) {
  return emu::warpExchange(mask, emu::WarpOp::Any, predicate, 0) != 0;
}

// Fibers switch only at barriers, so a read-modify-write is atomic as written.
template <class T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <class T>
T atomicMin(T* address, T value) {
  const T old = *address;
  if (value < old) *address = value;
  return old;
}
template <class T>
T __ldg(const T* address) {
  return *address;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float __int_as_float(int i) { return __uint_as_float(unsigned(i)); }
using std::isfinite;
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

inline void copyAsync16(void* shared, const void* global, bool valid) { emu::copyAsync(shared, global, valid ? 16 : 0); }
inline void copyAsyncCommit() { emu::copyAsyncCommit(); }
template <int PENDING>
void copyAsyncWait() {
  emu::copyAsyncWait(PENDING);
}

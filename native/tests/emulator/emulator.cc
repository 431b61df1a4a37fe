// The CUDA emulator's runtime (see README.md): device memory with bounds-checked copies, and
// kernels run block after block (in a random order), each CUDA thread a fiber switching only at
// barriers and warp operations. Fibers resume in a seeded random order after each barrier, so
// code that relies on an order the GPU does not promise (a missing barrier) gives wrong results
// here too. Misuse is reported
// on stderr and fails the launch (cudaErrorLaunchFailure), as a kernel fault would.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#undef threadIdx  // the runtime reads the launch configuration's fields of these names
#undef blockIdx
#undef blockDim
#undef gridDim

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

// camembedEmuSwitchStack(&saved, next): saves the callee-saved registers on the current stack, stores its
// pointer in *saved and resumes the stack `next` (saved the same way). The System V ABI lets a
// call clobber everything else, so this is a whole context switch, without ucontext's
// signal-mask system call or AddressSanitizer's clearing of the whole stack at every switch.
extern "C" void camembedEmuSwitchStack(void** saved, void* next);
asm(R"(
  .text
  .globl camembedEmuSwitchStack
  .type camembedEmuSwitchStack, @function
camembedEmuSwitchStack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size camembedEmuSwitchStack, .-camembedEmuSwitchStack
)");

namespace {

constexpr size_t kDeviceMemoryBytes = size_t(4) << 30;
constexpr size_t kStackBytes = size_t(128) << 10;
constexpr size_t kDefaultDynamicShared = 48 << 10;

// sm_70 96 KiB, sm_75 64 KiB, sm_80 163 KiB, sm_90 227 KiB of dynamic shared memory per block.
size_t maxDynamicShared() {
  const int sm = CAMEMBED_EMULATED_SM;
  return sm >= 90 ? 232448 : sm >= 80 ? 166912 : sm >= 75 ? 65536 : 98304;
}

thread_local cudaError_t lastError = cudaSuccess;
cudaError_t fail(cudaError_t err) {
  if (err != cudaSuccess) lastError = err;
  return err;
}

std::mutex memoryMutex;
std::map<const char*, size_t> allocations;  // device allocations: start -> bytes
size_t allocatedBytes = 0;

// True when [p, p + bytes) lies in one device allocation.
bool onDevice(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(memoryMutex);
  const char* c = static_cast<const char*>(p);
  auto it = allocations.upper_bound(c);
  if (it == allocations.begin()) return false;
  --it;
  return c >= it->first && c + bytes <= it->first + it->second;
}

std::mutex streamMutex;
std::set<cudaStream_t> streams;
bool validStream(cudaStream_t s) {
  std::lock_guard<std::mutex> lock(streamMutex);
  return s == nullptr || streams.count(s) != 0;
}

// ---------------------------------------------------------------------------------------------
// Fibers

struct PendingCopy {
  void* shared;
  const void* global;
  int bytes;  // read from global; the rest of the 16 bytes is zero-filled
};

enum class FiberState { Ready, AtBlockBarrier, AtWarpOp, Done, Failed };

struct Fiber {
  void* stackPointer = nullptr;  // while switched out
  char* stack = nullptr;
  emu::ThreadCoordinates coordinates;
  int linear = 0;
  FiberState state = FiberState::Ready;
  // Barrier arguments and results.
  int line = 0;
  bool predicate = false, blockResult = false;
  emu::WarpOp op = emu::WarpOp::Sync;
  uint64_t value = 0, warpResult = 0;
  int parameter = 0;
  unsigned mask = 0;
  // cp.async: the open group, then the committed ones (oldest first).
  std::vector<PendingCopy> openGroup;
  std::vector<std::vector<PendingCopy>> groups;
  uint64_t collectiveCalls = 0;  // WMMA calls made (emu::warpCollective)
#ifdef EMU_ASAN
  void* fakeStack = nullptr;
#endif
};

// Per warp: arrivals at the current warp operation (the first one's kind is the warp's), and
// the WMMA call being emulated (emu::warpCollective).
struct WarpState {
  int arrived = 0;
  emu::WarpOp op = emu::WarpOp::Sync;
  int parameter = 0;
  bool laneExited = false;
  uint64_t collectiveCall = 0;
  const void* collectivePointer = nullptr;
  unsigned collectiveLdm = 0;
  float collectiveTile[256];
};

struct BlockRun {
  std::vector<WarpState>* warps = nullptr;
  Fiber* current = nullptr;
  void* schedulerStackPointer = nullptr;
  const std::function<void()>* body = nullptr;
  unsigned char* dynamicShared = nullptr;
  std::string error;
#ifdef EMU_ASAN
  const void* schedulerStackBottom = nullptr;
  size_t schedulerStackSize = 0;
#endif
};

BlockRun* run = nullptr;  // the block being run (one launch at a time: launchMutex)
std::mutex launchMutex;
std::vector<std::unique_ptr<char[]>> stacks;  // reused by every block
// The seed of every random choice (thread order, block order, cp.async completion), printed
// with any failure; CAMEMBED_EMULATOR_SEED=<n> replays or varies it.
const uint64_t scheduleSeed = std::getenv("CAMEMBED_EMULATOR_SEED") ? std::strtoull(std::getenv("CAMEMBED_EMULATOR_SEED"), nullptr, 10)
                                                                   : 20261127;
std::mt19937_64 schedule(scheduleSeed);

void landCopies(const std::vector<PendingCopy>& group) {
  for (const PendingCopy& c : group) {
    std::memset(c.shared, 0, 16);
    if (c.bytes > 0) std::memcpy(c.shared, c.global, size_t(c.bytes));
  }
}

// From a fiber back to the scheduler.
void yieldToScheduler(FiberState state) {
  Fiber* f = run->current;
  f->state = state;
#ifdef EMU_ASAN
  const bool dying = state == FiberState::Done || state == FiberState::Failed;
  __sanitizer_start_switch_fiber(dying ? nullptr : &f->fakeStack, run->schedulerStackBottom, run->schedulerStackSize);
#endif
  camembedEmuSwitchStack(&f->stackPointer, run->schedulerStackPointer);
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(f->fakeStack, nullptr, nullptr);
#endif
}

// Reports misuse from inside a fiber: the block stops, the launch fails.
[[noreturn]] void fiberError(const std::string& message) {
  if (run->error.empty()) run->error = message;
  yieldToScheduler(FiberState::Failed);
  std::abort();  // never resumed
}

void fiberEntry() {
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &run->schedulerStackBottom, &run->schedulerStackSize);
#endif
  (*run->body)();
  Fiber* f = run->current;
  if (!f->openGroup.empty()) f->groups.push_back(std::move(f->openGroup));
  for (const auto& group : f->groups) landCopies(group);  // copies still in flight land at exit
  yieldToScheduler(FiberState::Done);
}

std::string describe(const Fiber& f) {
  const dim3& t = f.coordinates.threadIdx;
  const dim3& b = f.coordinates.blockIdx;
  return "thread (" + std::to_string(t.x) + "," + std::to_string(t.y) + "," + std::to_string(t.z) + ") of block (" +
         std::to_string(b.x) + "," + std::to_string(b.y) + "," + std::to_string(b.z) + ")";
}

uint64_t warpOpResult(const std::vector<Fiber*>& lanes, int lane) {
  const Fiber& f = *lanes[size_t(lane)];
  switch (f.op) {
    case emu::WarpOp::ShflXor: return lanes[size_t(lane ^ f.parameter)]->value;
    case emu::WarpOp::ShflUp: return lane >= f.parameter ? lanes[size_t(lane - f.parameter)]->value : f.value;
    case emu::WarpOp::Ballot: {
      uint64_t bits = 0;
      for (size_t l = 0; l < 32; ++l) bits |= uint64_t(lanes[l]->value != 0) << l;
      return bits;
    }
    case emu::WarpOp::Any:
      return std::any_of(lanes.begin(), lanes.end(), [](const Fiber* x) { return x->value != 0; });
    default: return 0;
  }
}

// The kernels' static __shared__ variables (cuda_runtime.h puts them in this section; the linker
// defines its bounds). Weak: a program with none has no such section.
extern "C" unsigned char __start_camembed_emu_shared[] __attribute__((weak));
extern "C" unsigned char __stop_camembed_emu_shared[] __attribute__((weak));

// Runs one block to completion; returns the first misuse found ("" when none).
std::string runBlock(const dim3& blockIdx_, const cudaLaunchConfig_t& config, const std::function<void()>& body) {
  const dim3 block = config.blockDim;
  const int threads = int(block.x * block.y * block.z);
  while (stacks.size() < size_t(threads)) stacks.emplace_back(new char[kStackBytes]);
  std::vector<Fiber> fibers{size_t(threads)};
  std::vector<WarpState> warps{size_t((threads + 31) / 32)};
  // Dynamic shared memory: 128-byte aligned (as the kernels declare it), starting as garbage (NaN
  // bits), as uninitialised shared memory would be.
  const auto alignedDelete = [](unsigned char* p) { ::operator delete[](p, std::align_val_t(128)); };
  std::unique_ptr<unsigned char[], decltype(alignedDelete)> shared(
      config.dynamicSmemBytes
          ? static_cast<unsigned char*>(::operator new[](config.dynamicSmemBytes, std::align_val_t(128)))
          : nullptr,
      alignedDelete);
  if (shared) std::memset(shared.get(), 0xff, config.dynamicSmemBytes);
  std::fill(__start_camembed_emu_shared, __stop_camembed_emu_shared, 0xff);  // static __shared__ too
  BlockRun state;
  state.warps = &warps;
  state.body = &body;
  state.dynamicShared = shared.get();
  run = &state;

  std::deque<Fiber*> ready;
  for (int i = 0; i < threads; ++i) {
    Fiber& f = fibers[size_t(i)];
    f.linear = i;
    f.stack = stacks[size_t(i)].get();
    f.coordinates = {dim3(unsigned(i) % block.x, unsigned(i) / block.x % block.y, unsigned(i) / (block.x * block.y)),
                     blockIdx_, block, config.gridDim};
    // A fresh stack as camembedEmuSwitchStack leaves one: six saved registers, then the address
    // it returns to (fiberEntry), then a slot standing for fiberEntry's own return address, so
    // that fiberEntry starts with the stack alignment of a called function.
    void** top = reinterpret_cast<void**>(reinterpret_cast<uintptr_t>(f.stack + kStackBytes) & ~uintptr_t(15));
    top[-1] = nullptr;
    top[-2] = reinterpret_cast<void*>(fiberEntry);
    for (int r = 3; r <= 8; ++r) top[-r] = nullptr;
    f.stackPointer = top - 8;
    ready.push_back(&f);
  }
  std::shuffle(ready.begin(), ready.end(), schedule);

  int live = threads, blockArrived = 0, blockLine = 0, exited = 0;
  bool blockOr = false;
  // Released fibers run either next (a warp running ahead of the block) or after the others
  // (the block in step), at random: both expose a missing barrier sooner or later.
  std::vector<Fiber*> waiting;
  auto release = [&] {
    std::shuffle(waiting.begin(), waiting.end(), schedule);
    for (Fiber* w : waiting) w->state = FiberState::Ready;
    ready.insert(schedule() % 2 ? ready.end() : ready.begin(), waiting.begin(), waiting.end());
    waiting.clear();
  };
  while (!ready.empty() && state.error.empty()) {
    Fiber* f = ready.back();
    ready.pop_back();
    state.current = f;
#ifdef EMU_ASAN
    void* fakeStack = nullptr;
    __sanitizer_start_switch_fiber(&fakeStack, f->stack, kStackBytes);
#endif
    camembedEmuSwitchStack(&state.schedulerStackPointer, f->stackPointer);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fakeStack, nullptr, nullptr);
#endif
    switch (f->state) {
      case FiberState::Failed: break;
      case FiberState::Done:
        --live;
        ++exited;
        warps[size_t(f->linear / 32)].laneExited = true;
        if (blockArrived > 0)
          state.error = describe(*f) + " exited while others wait at the __syncthreads of line " + std::to_string(blockLine);
        break;
      case FiberState::AtBlockBarrier: {
        if (exited > 0) {
          state.error = describe(*f) + " reached the __syncthreads of line " + std::to_string(f->line) +
                        " after other threads of its block exited";
          break;
        }
        if (blockArrived == 0) {
          blockLine = f->line;
          blockOr = false;
        } else if (f->line != blockLine) {
          state.error = "divergent __syncthreads: " + describe(*f) + " at line " + std::to_string(f->line) +
                        ", others at line " + std::to_string(blockLine);
          break;
        }
        blockOr |= f->predicate;
        if (++blockArrived == live) {
          for (Fiber& x : fibers) {
            x.blockResult = blockOr;
            waiting.push_back(&x);
          }
          blockArrived = 0;
          release();
        }
        break;
      }
      case FiberState::AtWarpOp: {
        const size_t warp = size_t(f->linear / 32);
        WarpState& w = warps[warp];
        if (threads % 32 != 0) {
          state.error = "warp operation in a block of " + std::to_string(threads) + " threads (not whole warps)";
          break;
        }
        if (f->mask != 0xffffffffu) {
          state.error = describe(*f) + ": warp operation with a partial mask (not emulated)";
          break;
        }
        if (w.laneExited) {
          state.error = describe(*f) + ": warp operation after a lane of its warp exited";
          break;
        }
        if (w.arrived == 0) {
          w.op = f->op;
          w.parameter = f->parameter;
        } else if (f->op != w.op || f->parameter != w.parameter) {
          state.error = "divergent warp operations in warp " + std::to_string(warp) + " (" + describe(*f) + ")";
          break;
        }
        if (++w.arrived == 32) {
          for (size_t l = warp * 32; l < warp * 32 + 32; ++l) waiting.push_back(&fibers[l]);
          for (size_t l = 0; l < 32; ++l) waiting[l]->warpResult = warpOpResult(waiting, int(l));
          w.arrived = 0;
          release();
        }
        break;
      }
      case FiberState::Ready: break;
    }
  }
  run = nullptr;
  if (!state.error.empty()) return state.error;
  if (live > 0) {
    std::string waits;
    for (const Fiber& x : fibers)
      if (x.state == FiberState::AtBlockBarrier || x.state == FiberState::AtWarpOp) {
        waits = describe(x) + (x.state == FiberState::AtBlockBarrier ? " waits at the __syncthreads of line " +
                                                                            std::to_string(x.line)
                                                                      : " waits in a warp operation");
        break;
      }
    return "deadlock: " + std::to_string(live) + " threads never finish; " + waits;
  }
  return "";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
namespace emu {

std::mutex attributeMutex;
std::map<const void*, int> maxDynamicSharedOf;

cudaError_t setFunctionAttribute(const void* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || size_t(value) > maxDynamicShared())
    return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(attributeMutex);
  maxDynamicSharedOf[kernel] = value;
  return cudaSuccess;
}

cudaError_t launch(const void* kernel, const cudaLaunchConfig_t& config, const std::function<void()>& thread) {
  const dim3 g = config.gridDim, b = config.blockDim;
  if (b.x * b.y * b.z == 0 || b.x * b.y * b.z > 1024 || b.z > 64 || g.x == 0 || g.x > 0x7fffffffu || g.y == 0 ||
      g.y > 65535 || g.z == 0 || g.z > 65535)
    return fail(cudaErrorInvalidConfiguration);
  {
    std::lock_guard<std::mutex> lock(attributeMutex);
    auto it = maxDynamicSharedOf.find(kernel);
    const size_t allowed = it == maxDynamicSharedOf.end() ? kDefaultDynamicShared : size_t(it->second);
    if (config.dynamicSmemBytes > allowed) return fail(cudaErrorInvalidValue);
  }
  if (!validStream(config.stream)) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> lock(launchMutex);
  std::vector<dim3> blocks;  // in a random order: CUDA promises none
  for (unsigned z = 0; z < g.z; ++z)
    for (unsigned y = 0; y < g.y; ++y)
      for (unsigned x = 0; x < g.x; ++x) blocks.push_back(dim3(x, y, z));
  std::shuffle(blocks.begin(), blocks.end(), schedule);
  for (const dim3& block : blocks) {
    const std::string error = runBlock(block, config, thread);
    if (!error.empty()) return launchFailure(error);
  }
  return cudaSuccess;
}

cudaError_t launchFailure(const std::string& message) {
  std::fprintf(stderr, "CUDA emulator (seed %llu): %s\n", (unsigned long long)scheduleSeed, message.c_str());
  return fail(cudaErrorLaunchFailure);
}

bool onDevice(const void* pointer) { return ::onDevice(pointer, 0); }

int laneId() { return run->current->linear % 32; }

void checkWmmaPointer(const void* pointer, size_t ldmBytes) {
  if (reinterpret_cast<uintptr_t>(pointer) % 32 != 0 || ldmBytes % 16 != 0)
    fiberError(describe(*run->current) + ": a WMMA load or store at an address not 32-byte aligned, or with a stride " +
               "that is not a multiple of 16 bytes");
}

const ThreadCoordinates& coordinates() { return run->current->coordinates; }
void* dynamicShared() { return run->dynamicShared; }

void syncthreads(int line) { syncthreadsOr(false, line); }

bool syncthreadsOr(bool predicate, int line) {
  Fiber* f = run->current;
  f->line = line;
  f->predicate = predicate;
  yieldToScheduler(FiberState::AtBlockBarrier);
  return run->current->blockResult;
}

uint64_t warpExchange(unsigned mask, WarpOp op, uint64_t value, int parameter) {
  Fiber* f = run->current;
  if ((op == WarpOp::ShflXor || op == WarpOp::ShflUp) && (parameter < 0 || parameter > 31))
    fiberError(describe(*f) + ": shuffle offset " + std::to_string(parameter) + " outside 0..31");
  f->mask = mask;
  f->op = op;
  f->value = value;
  f->parameter = parameter;
  yieldToScheduler(FiberState::AtWarpOp);
  return run->current->warpResult;
}

void copyAsync(void* shared, const void* global, int bytes) {
  if (reinterpret_cast<uintptr_t>(shared) % 16 != 0 || (bytes > 0 && reinterpret_cast<uintptr_t>(global) % 16 != 0))
    fiberError(describe(*run->current) + ": cp.async of 16 bytes at an address not 16-byte aligned");
  // A copy may complete as soon as it is issued, or only at the wait: half of them land at once
  // here, so that a copy into a buffer other threads still read is caught as well as a read
  // before the wait.
  const PendingCopy copy{shared, global, bytes};
  if (schedule() % 2) landCopies({copy});
  else run->current->openGroup.push_back(copy);
}

void copyAsyncCommit() {
  Fiber* f = run->current;
  f->groups.push_back(std::move(f->openGroup));
  f->openGroup.clear();
}

void copyAsyncWait(int pending) {
  Fiber* f = run->current;
  while (f->groups.size() > size_t(pending)) {
    landCopies(f->groups.front());
    f->groups.erase(f->groups.begin());
  }
}

CollectiveCall warpCollective(const void* pointer, unsigned ldm) {
  Fiber* f = run->current;
  WarpState& w = (*run->warps)[size_t(f->linear / 32)];
  const bool first = w.collectiveCall < ++f->collectiveCalls;
  if (first) {
    w.collectiveCall = f->collectiveCalls;
    w.collectivePointer = pointer;
    w.collectiveLdm = ldm;
  } else if (w.collectivePointer != pointer || w.collectiveLdm != ldm) {
    fiberError(describe(*f) + ": a WMMA load or store with another address or stride than the rest of its warp");
  }
  return {first, w.collectiveTile};
}

}  // namespace emu

// ---------------------------------------------------------------------------------------------
// Host API

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: see stderr)";
    default: return "unknown error";
  }
}

cudaError_t cudaGetLastError() {
  const cudaError_t err = lastError;
  lastError = cudaSuccess;
  return err;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "camembed CUDA emulator");
  prop->totalGlobalMem = kDeviceMemoryBytes;
  prop->major = CAMEMBED_EMULATED_SM / 10;
  prop->minor = CAMEMBED_EMULATED_SM % 10;
  prop->multiProcessorCount = 4;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice);
  if (attr == cudaDevAttrComputeCapabilityMajor) *value = CAMEMBED_EMULATED_SM / 10;
  else if (attr == cudaDevAttrComputeCapabilityMinor) *value = CAMEMBED_EMULATED_SM % 10;
  else if (attr == cudaDevAttrL2CacheSize) *value = 1 << 20;  // small, so that the tiny benchmark rotates inputs
  else return fail(cudaErrorInvalidValue);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes) {
  std::lock_guard<std::mutex> lock(memoryMutex);
  *freeBytes = kDeviceMemoryBytes - allocatedBytes;
  *totalBytes = kDeviceMemoryBytes;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  *ptr = nullptr;
  std::lock_guard<std::mutex> lock(memoryMutex);
  if (bytes == 0 || bytes > kDeviceMemoryBytes - allocatedBytes) return fail(cudaErrorMemoryAllocation);
  // 256-byte aligned as cudaMalloc's; uninitialised device memory is garbage, not zeros.
  char* p = static_cast<char*>(::operator new(bytes, std::align_val_t(256)));
  std::memset(p, 0xa5, bytes);
  allocations[p] = bytes;
  allocatedBytes += bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(memoryMutex);
  auto it = allocations.find(static_cast<const char*>(ptr));
  if (it == allocations.end()) return fail(cudaErrorInvalidValue);
  allocatedBytes -= it->second;
  allocations.erase(it);
  ::operator delete(ptr, std::align_val_t(256));
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!validStream(stream)) return fail(cudaErrorInvalidResourceHandle);
  const bool dstDevice = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool srcDevice = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (bytes > 0 && ((dstDevice && !onDevice(dst, bytes)) || (srcDevice && !onDevice(src, bytes)))) {
    std::fprintf(stderr, "CUDA emulator: cudaMemcpy of %zu bytes outside a device allocation\n", bytes);
    return fail(cudaErrorInvalidValue);
  }
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (!validStream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (bytes > 0 && !onDevice(dst, bytes)) {
    std::fprintf(stderr, "CUDA emulator: cudaMemset of %zu bytes outside a device allocation\n", bytes);
    return fail(cudaErrorInvalidValue);
  }
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  std::lock_guard<std::mutex> lock(streamMutex);
  *stream = reinterpret_cast<cudaStream_t>(new char);
  streams.insert(*stream);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(streamMutex);
  if (streams.erase(stream) == 0) return fail(cudaErrorInvalidResourceHandle);
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return validStream(stream) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

struct CUevent_st {
  std::chrono::steady_clock::time_point recorded;
};

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st();
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr || !validStream(stream)) return fail(cudaErrorInvalidResourceHandle);
  event->recorded = std::chrono::steady_clock::now();
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event == nullptr ? fail(cudaErrorInvalidResourceHandle) : cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop) {
  if (start == nullptr || stop == nullptr) return fail(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(stop->recorded - start->recorded).count();
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}

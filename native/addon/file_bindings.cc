// Memory and file bindings for VectorIndex: storage on transparent huge pages, a read-only
// memory mapping of an index file (so a multi-gigabyte index loads without copying) and the
// cmbd64 checksum of its bytes.
// The file format itself (what the bytes mean) lives in TypeScript (lib/index/format.ts).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "common.h"

namespace camembed {
namespace {

std::string systemError(const std::string& what, const std::string& path, int err) {
  return what + " '" + path + "': " + std::strerror(err);
}

// mapFileReadOnly(path) -> ArrayBuffer over a private read-only mapping of the whole file.
// The mapping is released when the ArrayBuffer is garbage-collected. Writing through a view
// of it would fault, so callers copy a region before changing it.
Napi::Value MapFileReadOnly(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "native: mapFileReadOnly(path) needs a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Napi::Error::New(env, systemError("cannot open", path, errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Napi::Error::New(env, systemError("cannot stat", path, err));
  }
  const size_t length = size_t(st.st_size);
  if (length == 0) {
    ::close(fd);
    throw Napi::Error::New(env, "cannot map '" + path + "': the file is empty");
  }
  void* data = ::mmap(nullptr, length, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps its own reference to the file
  if (data == MAP_FAILED) throw Napi::Error::New(env, systemError("cannot map", path, err));
  return Napi::ArrayBuffer::New(env, data, length, [length](Napi::Env, void* p) { ::munmap(p, length); });
}

// allocateLargePages(bytes) -> zero-filled ArrayBuffer aligned to 2 MiB and advised to use
// transparent huge pages (Linux MADV_HUGEPAGE; "madvise" is a common default THP mode, so memory
// gets them only when asked, as numpy asks for its arrays). A scan over gigabytes then takes
// far fewer TLB misses. Counted as external memory for the GC; freed by
// releaseLargePages(buffer) (VectorIndex does so when it replaces or drops a chunk, so growth
// leaves no garbage waiting for a GC) or else when the buffer is garbage-collected.
struct LargePages {
  void* base;
  size_t mapped;
  bool released;
};

// Live allocations by data pointer. One map for the process, shared by the main thread and any
// worker threads (each with its own env), so every access holds largePagesLock.
std::mutex largePagesLock;
std::unordered_map<void*, LargePages*>& largePagesByData() {
  static std::unordered_map<void*, LargePages*> live;
  return live;
}

void unmapLargePages(Napi::Env env, LargePages* pages) {
  ::munmap(pages->base, pages->mapped);
  Napi::MemoryManagement::AdjustExternalMemory(env, -int64_t(pages->mapped));
  pages->released = true;
}

Napi::Value AllocateLargePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "native: allocateLargePages(bytes) needs a number");
  const double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested >= 1 && requested <= 1e15) || requested != double(int64_t(requested)))
    throw Napi::RangeError::New(env, "native: allocateLargePages: bytes must be a positive integer");
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t bytes = size_t(requested);
  const size_t mapped = bytes + kHuge;  // room to start on a 2 MiB boundary
  void* base = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED)
    throw Napi::RangeError::New(env, "out of memory: cannot allocate " + std::to_string(bytes) + " bytes of vector storage");
  void* start = reinterpret_cast<void*>((uintptr_t(base) + kHuge - 1) & ~uintptr_t(kHuge - 1));
#ifdef MADV_HUGEPAGE
  ::madvise(start, bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  Napi::MemoryManagement::AdjustExternalMemory(env, int64_t(mapped));
  auto* pages = new LargePages{base, mapped, false};
  {
    std::lock_guard<std::mutex> hold(largePagesLock);
    largePagesByData()[start] = pages;
  }
  // The record outlives an early release, so a late finalizer never unmaps a reused address.
  return Napi::ArrayBuffer::New(env, start, bytes, [](Napi::Env e, void* data, LargePages* p) {
    if (!p->released) {
      {
        std::lock_guard<std::mutex> hold(largePagesLock);
        largePagesByData().erase(data);
      }
      unmapLargePages(e, p);
    }
    delete p;
  }, pages);
}

// releaseLargePages(buffer): detaches a buffer from allocateLargePages (its views become empty)
// and returns its memory now.
Napi::Value ReleaseLargePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "native: releaseLargePages(buffer) needs an ArrayBuffer");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  LargePages* pages = nullptr;
  {
    std::lock_guard<std::mutex> hold(largePagesLock);
    auto found = largePagesByData().find(buffer.Data());
    if (found != largePagesByData().end()) {
      pages = found->second;
      largePagesByData().erase(found);
    }
  }
  if (pages == nullptr) throw Napi::TypeError::New(env, "native: releaseLargePages: not a live buffer from allocateLargePages");
  buffer.Detach();
  unmapLargePages(env, pages);
  return env.Undefined();
}

// cmbd64: four independent 64-bit lanes over 32-byte blocks, so it streams at memory speed.
// The round (multiply, rotate, multiply) and the primes are those of xxHash's XXH64
// (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md); the lanes' final mix is
// done in TypeScript (lib/index/format.ts), which also documents the whole definition.
constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;

inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

struct ChecksumArgs {
  uint64_t* lanes;      // [4], updated in place
  const uint8_t* bytes;
  int64_t length;       // a multiple of 32
};

Status checksumUpdate(const ChecksumArgs& a) {
  uint64_t v0 = a.lanes[0], v1 = a.lanes[1], v2 = a.lanes[2], v3 = a.lanes[3];
  for (int64_t i = 0; i < a.length; i += 32) {
    uint64_t w[4];
    std::memcpy(w, a.bytes + i, 32);  // little-endian words (x86-64 and arm64 are little-endian)
    v0 = rotl64(v0 + w[0] * kPrime2, 31) * kPrime1;
    v1 = rotl64(v1 + w[1] * kPrime2, 31) * kPrime1;
    v2 = rotl64(v2 + w[2] * kPrime2, 31) * kPrime1;
    v3 = rotl64(v3 + w[3] * kPrime2, 31) * kPrime1;
  }
  a.lanes[0] = v0; a.lanes[1] = v1; a.lanes[2] = v2; a.lanes[3] = v3;
  return "";
}

// checksumUpdate({lanes: BigUint64Array(4), bytes: Uint8Array (length % 32 == 0)}, async)
Napi::Value ChecksumUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  ChecksumArgs a{};
  a.lanes = static_cast<uint64_t*>(typedArrayData(opts, "lanes", napi_biguint64_array, {32}));
  Napi::Value bytes = opts.Get("bytes");
  if (!bytes.IsTypedArray() || bytes.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, "native: 'bytes' must be a Uint8Array");
  a.length = int64_t(bytes.As<Napi::TypedArray>().ByteLength());
  if (a.length % 32 != 0) throw Napi::RangeError::New(env, "native: 'bytes' length must be a multiple of 32");
  a.bytes = static_cast<const uint8_t*>(typedArrayData(opts, "bytes", napi_uint8_array, {a.length}));
  const bool async = info[1].ToBoolean().Value();
  return runKernel(env, async, [a]() { return checksumUpdate(a); }, {opts.Get("lanes"), bytes});
}

// tryLockFile(fd) -> true once this process holds an exclusive flock on the open file, false
// while another holds it. The same lock as Python's filelock (UnixFileLock), which
// huggingface_hub takes on <cache>/.locks/<repo>/<etag>.lock around a download; released when
// the descriptor is closed (or the process dies). Other failures throw an Error whose `errno`
// is the system's (a file system without flock: ENOLCK, ENOSYS, EOPNOTSUPP).
Napi::Value TryLockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "native: tryLockFile(fd) needs a file descriptor");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return Napi::Boolean::New(env, true);
  const int err = errno;
  if (err == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  Napi::Error error = Napi::Error::New(env, std::string("cannot lock file descriptor ") + std::to_string(fd) + ": " + std::strerror(err));
  error.Set("errno", Napi::Number::New(env, err));
  throw error;
}

}  // namespace

void registerFileBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("allocateLargePages", Napi::Function::New(env, AllocateLargePages));
  exports.Set("releaseLargePages", Napi::Function::New(env, ReleaseLargePages));
  exports.Set("mapFileReadOnly", Napi::Function::New(env, MapFileReadOnly));
  exports.Set("checksumUpdate", Napi::Function::New(env, ChecksumUpdate));
  exports.Set("tryLockFile", Napi::Function::New(env, TryLockFile));
}

}  // namespace camembed

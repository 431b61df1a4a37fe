// Memory and file bindings for VectorIndex: storage on transparent huge pages, read-only
// memory mappings of an index file (so a multi-gigabyte index loads without copying) and the
// cmbd64 checksum of its bytes (with the norm check of its rows: native/cpu/unit_rows.cc).
// The file format itself (what the bytes mean) lives in TypeScript (lib/index/format.ts).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "camembed/unit_rows.h"
#include "common.h"

namespace camembed {
namespace {

// Node 20 makes an external ArrayBuffer through node::Buffer, which refuses more than
// buffer.constants.MAX_LENGTH (2^32 bytes there) after running the buffer's finalizer, and
// node-addon-api then frees it again: the process aborts. Larger buffers are refused here first.
constexpr double kMaxExternalBytes = 4294967296.0;

// Memory this file hands to JavaScript as ArrayBuffers: anonymous storage on transparent huge
// pages (allocateLargePages) and read-only views of index files (mapFileRange). Each is unmapped
// by releaseMapping(buffer) (VectorIndex does so when it drops a chunk or is disposed, so neither
// memory nor a replaced file's disk blocks wait for a GC) or else when the buffer is collected.
// V8 counts each buffer's bytes as external memory itself (a count of ours too made twice the
// full GCs: 28-35 instead of 20 while adding 400k x 768 float32 rows), so none is added here.
struct Mapping {
  void* base;
  size_t mapped;
  bool released;
  int pins;               // native calls using it (pinMapping in common.h): releaseMapping waits for none
};

// Live mappings by data pointer. One map for the process, shared by the main thread and any
// worker threads (each with its own env), so every access holds mappingsLock.
std::mutex mappingsLock;
std::unordered_map<void*, Mapping*>& mappingsByData() {
  static std::unordered_map<void*, Mapping*> live;
  return live;
}

// Unmapping gigabytes takes milliseconds (hundreds with 4 KiB pages: a page-table entry each),
// which releaseMapping, called by dispose(), would spend on the event loop. A range detached and
// out of the map is out of reach, so one thread, running while ranges wait, unmaps them in turn (a
// thread per range crowded the cores: dispose still took up to 146 ms). bench/RESULTS-index.md.
// The thread may outlive every environment that loaded the addon: it is linked -z nodelete (CMakeLists.txt).
struct Unmapper {
  std::mutex lock;
  std::vector<std::pair<void*, size_t>> waiting;
  bool running = false;  // a thread is draining `waiting`; none runs while it is empty
};
Unmapper& unmapper() {
  static Unmapper* shared = new Unmapper;  // never destroyed: the thread may still run at exit
  return *shared;
}

void drainUnmaps() {
  Unmapper& u = unmapper();
  for (;;) {
    std::pair<void*, size_t> range;
    {
      std::lock_guard<std::mutex> hold(u.lock);
      if (u.waiting.empty()) {
        u.running = false;
        return;
      }
      range = u.waiting.back();
      u.waiting.pop_back();
    }
    ::munmap(range.first, range.second);
  }
}

void unmapOffThread(Mapping* m) {
  m->released = true;
  Unmapper& u = unmapper();
  std::lock_guard<std::mutex> hold(u.lock);
  try {
    u.waiting.emplace_back(m->base, m->mapped);
    if (!u.running) {
      std::thread(drainUnmaps).detach();
      u.running = true;
    }
  } catch (...) {  // no memory for the list, or no thread: unmapped here (with no thread, only this range waited)
    if (!u.running) u.waiting.clear();
    ::munmap(m->base, m->mapped);
  }
}

// The newlines in a /proc file, read into a buffer on the stack: at the mapping limit a heap
// buffer may need a mapping itself. -1 when it cannot be read (not Linux).
int64_t procLines(const char* path, int64_t* firstNumber = nullptr) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buffer[16384];
  int64_t lines = 0;
  bool first = true;
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0; first = false) {
    if (first && firstNumber != nullptr) *firstNumber = std::strtoll(buffer, nullptr, 10);
    for (ssize_t i = 0; i < n; ++i) lines += buffer[i] == '\n';
  }
  ::close(fd);
  return lines;
}

// An mmap's failure, as "<what>: <strerror>". ENOMEM with the process at the kernel's limit on
// mappings (vm.max_map_count, 65,530 by default), which many small chunks reach long before memory
// runs out, says so and how to need fewer (`advice`). Built on the stack: at that limit a heap
// allocation may need a mapping too.
Napi::Error mmapError(Napi::Env env, const char* what, const char* advice) {
  const int error = errno;
  char message[1024];
  int64_t limit = -1;
  const int64_t held = error == ENOMEM && procLines("/proc/sys/vm/max_map_count", &limit) >= 0 ? procLines("/proc/self/maps") : -1;
  if (limit > 0 && held >= limit - 64) {  // the call wanted one or two more; a few may have gone since
    std::snprintf(message, sizeof message, "%s: %s: the process has %lld memory mappings, at the kernel's limit "
        "(/proc/sys/vm/max_map_count: %lld), and %s", what, std::strerror(error), (long long)held, (long long)limit, advice);
  } else {
    std::snprintf(message, sizeof message, "%s: %s", what, std::strerror(error));
  }
  return Napi::Error::New(env, message);
}

// An ArrayBuffer of `length` bytes at `data`, inside the mapping [base, base + mapped). What it
// allocates may fail at the kernel's limit on mappings (the heap may need one too): the memory is
// then unmapped and the error is mmapError's, not a std::bad_alloc out of the binding (an abort).
Napi::ArrayBuffer wrapMapping(Napi::Env env, void* data, size_t length, void* base, size_t mapped, const char* what, const char* advice) {
  Mapping* m = nullptr;
  bool listed = false;
  try {
    m = new Mapping{base, mapped, false, 0};
    {
      std::lock_guard<std::mutex> hold(mappingsLock);
      mappingsByData()[data] = m;
      listed = true;
    }
    // The record outlives an early release, so a late finalizer never unmaps a reused address.
    return Napi::ArrayBuffer::New(env, data, length, [](Napi::Env, void* p, Mapping* owned) {
      if (!owned->released) {
        {
          std::lock_guard<std::mutex> hold(mappingsLock);
          mappingsByData().erase(p);
        }
        unmapOffThread(owned);
      }
      delete owned;
    }, m);
  } catch (const std::bad_alloc&) {
    if (listed) {
      std::lock_guard<std::mutex> hold(mappingsLock);
      mappingsByData().erase(data);
    }
    delete m;
    ::munmap(base, mapped);
    errno = ENOMEM;
    throw mmapError(env, what, advice);
  }
}

// Reads a non-negative integer argument of at most `max`.
size_t sizeArgument(const Napi::CallbackInfo& info, size_t i, const char* what, double min, double max) {
  const double v = info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : -1;
  if (!(v >= min && v <= max) || v != double(int64_t(v)))
    throw Napi::RangeError::New(info.Env(), std::string("native: ") + what + " must be an integer from " +
        std::to_string(int64_t(min)) + " to " + std::to_string(int64_t(max)));
  return size_t(v);
}

// mapFileRange(fd, offset, length) -> ArrayBuffer over a private read-only mapping of those
// bytes of the open file (any offset: the mapping starts at the page boundary below it). Writing
// through a view of it would fault, so callers copy a region before changing it. A page past the
// end of the file faults when read (SIGBUS ends the process): a range a regular file does not hold
// now is refused (one that it loses later, truncated by another process, still faults).
Napi::Value MapFileRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = int(sizeArgument(info, 0, "mapFileRange: fd", 0, 2147483647.0));
  const size_t offset = sizeArgument(info, 1, "mapFileRange: offset", 0, 9007199254740991.0);
  const size_t length = sizeArgument(info, 2, "mapFileRange: length", 1, kMaxExternalBytes);
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Napi::Error::New(env, std::string("fstat: ") + std::strerror(errno));
  if (S_ISREG(st.st_mode) && offset + length > size_t(st.st_size))
    throw Napi::RangeError::New(env, "native: mapFileRange: bytes " + std::to_string(offset) + " to " + std::to_string(offset + length) +
        " are past the end of the file (" + std::to_string(st.st_size) + " bytes)");
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const size_t start = offset / page * page;
  const size_t mapped = length + (offset - start);
  void* base = ::mmap(nullptr, mapped, PROT_READ, MAP_PRIVATE, fd, off_t(start));
  const char* advice = "each storage chunk is a mapping of its own: a larger chunkBytes, or mmap: false, needs fewer";
  if (base == MAP_FAILED) throw mmapError(env, "mmap", advice);
  return wrapMapping(env, static_cast<char*>(base) + (offset - start), length, base, mapped, "mmap", advice);
}

// allocateLargePages(bytes) -> zero-filled ArrayBuffer aligned to 2 MiB and advised to use
// transparent huge pages (Linux MADV_HUGEPAGE; "madvise" is a common default THP mode, so memory
// gets them only when asked, as numpy asks for its arrays). A scan over gigabytes then takes
// far fewer TLB misses.
Napi::Value AllocateLargePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t bytes = sizeArgument(info, 0, "allocateLargePages: bytes", 1, kMaxExternalBytes);
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t mapped = bytes + kHuge;  // room to start on a 2 MiB boundary
  void* base = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char what[96];
  std::snprintf(what, sizeof what, "cannot allocate %zu bytes of vector storage: mmap", bytes);
  const char* advice = "each storage chunk of 4 MiB or more takes about two: a larger chunkBytes needs fewer";
  if (base == MAP_FAILED) throw mmapError(env, what, advice);
  void* start = reinterpret_cast<void*>((uintptr_t(base) + kHuge - 1) & ~uintptr_t(kHuge - 1));
#ifdef MADV_HUGEPAGE
  ::madvise(start, bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return wrapMapping(env, start, bytes, base, mapped, what, advice);
}

// releaseMapping(buffer): detaches a buffer from allocateLargePages or mapFileRange (its views
// become empty) and unmaps its memory now, off this thread.
Napi::Value ReleaseMapping(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "native: releaseMapping(buffer) needs an ArrayBuffer");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  Mapping* m = nullptr;
  bool inUse = false;
  {
    std::lock_guard<std::mutex> hold(mappingsLock);
    auto found = mappingsByData().find(buffer.Data());
    if (found != mappingsByData().end()) {
      m = found->second;
      inUse = m->pins > 0;
      if (!inUse) mappingsByData().erase(found);
    }
  }
  // Unmapped under a kernel that reads it (async work, or a sync call whose later getter releases
  // an earlier argument), the kernel would fault: SIGSEGV.
  if (inUse) throw Napi::Error::New(env, "native: releaseMapping: the buffer is in use by a kernel (wait for its promise)");
  if (m == nullptr) throw Napi::TypeError::New(env, "native: releaseMapping: not a live buffer from allocateLargePages or mapFileRange");
  buffer.Detach();
  unmapOffThread(m);
  return env.Undefined();
}

// checksumUpdate({state: BigUint64Array(9), bytes: Uint8Array, rows?: {dtype: 'float32' | 'float16',
// dim, maxSumSquares, result: Float64Array(2)}}, async): feeds the bytes to the checksum
// (camembed/unit_rows.h); with `rows`, the bytes are whole rows and result = [the first whose
// squared norm is not at most maxSumSquares, or -1; that squared norm].
Napi::Value ChecksumUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  PinnedMemory pinned;
  auto* state = static_cast<ChecksumState*>(typedArrayData(opts, "state", napi_biguint64_array, {sizeof(ChecksumState)}, pinned));
  // The kernel updates a copy, checked now: a change to the array meanwhile cannot make it write
  // past `pending`.
  const ChecksumState start = *state;
  if (start.pendingBytes > 31) throw Napi::RangeError::New(env, "native: 'state' is not a checksum state (more than 31 pending bytes)");
  Napi::Value bytes = opts.Get("bytes");
  if (!bytes.IsTypedArray()) throw Napi::TypeError::New(env, "native: 'bytes' must be a Uint8Array");
  const int64_t length = int64_t(bytes.As<Napi::TypedArray>().ByteLength());
  const auto* data = static_cast<const uint8_t*>(typedArrayData(opts, "bytes", napi_uint8_array, {length}, pinned));
  bool check = false;
  NormCheck rows{};
  double* result = nullptr;
  Napi::Value given = opts.Get("rows");
  if (!given.IsUndefined()) {
    if (!given.IsObject()) throw Napi::TypeError::New(env, "native: 'rows' must be an object");
    Napi::Object r = given.As<Napi::Object>();
    const std::string dtype = stringOption(r, "dtype");
    if (dtype != "float32" && dtype != "float16") throw Napi::TypeError::New(env, "native: 'dtype' must be 'float32' or 'float16'");
    rows.half = dtype == "float16";
    rows.dim = integerOption(r, "dim");
    const int64_t elementBytes = rows.half ? 2 : 4;
    if (rows.dim < 1 || length % (rows.dim * elementBytes) != 0)
      throw Napi::RangeError::New(env, "native: 'bytes' must hold whole rows of 'dim' values");
    if (reinterpret_cast<uintptr_t>(data) % elementBytes != 0)
      throw Napi::RangeError::New(env, "native: 'bytes' of " + dtype + " rows must start at a multiple of " + std::to_string(elementBytes));
    Napi::Value limit = r.Get("maxSumSquares");
    if (!limit.IsNumber()) throw Napi::TypeError::New(env, "native: 'maxSumSquares' must be a number");
    rows.maxSumSquares = limit.As<Napi::Number>().DoubleValue();
    result = static_cast<double*>(typedArrayData(r, "result", napi_float64_array, {2, 8}, pinned));
    check = true;
  }
  const bool async = info[1].ToBoolean().Value();
  return runKernel(env, async, [state, start, data, length, check, rows, result]() {
    ChecksumState updated = start;
    double sumSquares = 0;
    const int64_t firstLong = checksumRowsCpu(updated, data, length, check ? &rows : nullptr, &sumSquares);
    *state = updated;
    if (check) {
      result[0] = double(firstLong);
      result[1] = sumSquares;
    }
    return Status();
  }, std::move(pinned));
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

bool pinMapping(const void* data) {
  std::lock_guard<std::mutex> hold(mappingsLock);
  auto found = mappingsByData().find(const_cast<void*>(data));
  if (found == mappingsByData().end()) return false;
  ++found->second->pins;
  return true;
}

void unpinMapping(const void* data) {
  std::lock_guard<std::mutex> hold(mappingsLock);
  auto found = mappingsByData().find(const_cast<void*>(data));
  if (found != mappingsByData().end()) --found->second->pins;
}

void registerFileBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("allocateLargePages", Napi::Function::New(env, AllocateLargePages));
  exports.Set("mapFileRange", Napi::Function::New(env, MapFileRange));
  exports.Set("releaseMapping", Napi::Function::New(env, ReleaseMapping));
  exports.Set("checksumUpdate", Napi::Function::New(env, ChecksumUpdate));
  exports.Set("tryLockFile", Napi::Function::New(env, TryLockFile));
}

}  // namespace camembed

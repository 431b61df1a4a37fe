// Node-API glue helpers: argument conversion and running kernels sync or off the event loop.
// TypeScript validates every argument first; the checks here only keep a direct caller of the
// raw addon from crashing the process.
#pragma once
#include <napi.h>
#include <v8.h>

#include <cstring>
#include <functional>
#include <memory>
#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "camembed/types.h"

namespace camembed {

// The memory of the typed arrays a native call uses, held until it returns (its async work ends).
using PinnedMemory = std::vector<std::shared_ptr<void>>;

// Memory from allocateLargePages or mapFileRange (file_bindings.cc) that a call holds: releaseMapping
// refuses to unmap it meanwhile (holding a backing store keeps it allocated, not mapped). pinMapping
// says whether `data` starts such a mapping (then counted until unpinMapping).
bool pinMapping(const void* data);
void unpinMapping(const void* data);

// A typed array's data pointer, checked for kind and for holding at least the product of `size`
// bytes (element count factors times element bytes; a product that overflows is an error).
// The array's memory goes into `pinned`, shared with its ArrayBuffer: while held it stays
// allocated even when the buffer is detached (transferred with structuredClone or postMessage) and
// its new owner collected, or the array itself collected. Holding a reference to the array would
// keep the array, not its memory: async work read a transferred buffer after it was freed, and a
// getter read later in the same call could transfer it before even a synchronous kernel ran.
// A resizable buffer could still shrink (its pages become inaccessible) and shared memory change
// under the kernel, so both are refused (TypeScript refuses them first).
// Node-API cannot pin a buffer, so this one step uses V8: a napi_value is a v8::Local<v8::Value>
// (Node's own conversion, V8LocalValueFromJsValue in src/js_native_api_v8.h, is this memcpy).
inline void* typedArrayData(const Napi::Object& opts, const char* key, napi_typedarray_type type,
                            std::initializer_list<int64_t> size, PinnedMemory& pinned) {
  static_assert(sizeof(v8::Local<v8::Value>) == sizeof(napi_value), "a napi_value is no longer a v8::Local");
  // The product of the non-zero factors must fit too: a zero one hid the others (a batch of 0 with
  // seq x hidden = 2^80 reached the kernel, whose seq * hidden overflowed).
  int64_t minBytes = 1, nonZero = 1;
  for (int64_t factor : size)
    if (__builtin_mul_overflow(nonZero, factor == 0 ? 1 : factor, &nonZero))
      throw Napi::RangeError::New(opts.Env(), std::string("native: the shape given for '") + key + "' is too large");
    else
      minBytes *= factor;
  Napi::Value v = opts.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw Napi::TypeError::New(opts.Env(), std::string("native: '") + key + "' has the wrong typed-array type");
  Napi::TypedArray array = v.As<Napi::TypedArray>();
  if (int64_t(array.ByteLength()) < minBytes)
    throw Napi::RangeError::New(opts.Env(), std::string("native: '") + key + "' is shorter than its shape");
  napi_value raw = v;
  v8::Local<v8::Value> local;
  std::memcpy(static_cast<void*>(&local), &raw, sizeof raw);
  std::shared_ptr<v8::BackingStore> memory = local.As<v8::ArrayBufferView>()->Buffer()->GetBackingStore();
  if (memory->IsShared() || memory->IsResizableByUserJavaScript())
    throw Napi::TypeError::New(opts.Env(), std::string("native: '") + key + "' is backed by a SharedArrayBuffer or a resizable ArrayBuffer");
  void* data = memory->Data();
  const bool mapping = pinMapping(data);
  pinned.push_back(std::shared_ptr<void>(data, [memory, mapping](void* p) {
    if (mapping) unpinMapping(p);
  }));
  return static_cast<char*>(data) + array.ByteOffset();
}

// Integers up to 2^53 (beyond that a JS number is not exact).
inline int64_t integerOption(const Napi::Object& opts, const char* key) {
  Napi::Value v = opts.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(opts.Env(), std::string("native: '") + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740992.0) || d != double(int64_t(d)))
    throw Napi::RangeError::New(opts.Env(), std::string("native: '") + key + "' must be a non-negative integer up to 2^53");
  return int64_t(d);
}

// CPU threads: 0 (all cores) to 1,024, as lib/validate.ts allows (a larger count was cut to an int).
inline int threadsOption(const Napi::Object& opts) {
  const int64_t threads = integerOption(opts, "threads");
  if (threads > 1024) throw Napi::RangeError::New(opts.Env(), "native: 'threads' must be at most 1024");
  return int(threads);
}

// -1 (the CPU) or a CUDA device index.
inline int deviceOption(const Napi::Object& opts) {
  Napi::Value v = opts.Get("device");
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -2;
  if (!(d >= -1 && d <= 2147483647.0) || d != double(int64_t(d)))
    throw Napi::RangeError::New(opts.Env(), "native: 'device' must be -1 (CPU) or a CUDA device index");
  return int(d);
}

inline bool boolOption(const Napi::Object& opts, const char* key) { return opts.Get(key).ToBoolean().Value(); }

inline std::string stringOption(const Napi::Object& opts, const char* key) {
  Napi::Value v = opts.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(opts.Env(), std::string("native: '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// Runs a kernel, turning C++ exceptions (allocation failure, thread creation failure) into a
// Status: an exception escaping to Node-API would terminate the process.
inline Status runCatching(const std::function<Status()>& work) {
  try {
    return work();
  } catch (const std::bad_alloc&) {
    return "out of memory: the kernel could not allocate its working memory";
  } catch (const std::exception& e) {
    return std::string("native kernel failed: ") + e.what();
  }
}

// Runs `work` on the libuv thread pool and settles a Promise with undefined or an Error,
// holding the memory the work reads or writes (typedArrayData) until it is done.
class KernelWorker : public Napi::AsyncWorker {
 public:
  KernelWorker(Napi::Env env, std::function<Status()> work, PinnedMemory pinned)
      : Napi::AsyncWorker(env, "camembed"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        pinned_(std::move(pinned)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    Status s = runCatching(work_);
    if (!s.empty()) SetError(s);
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<Status()> work_;
  PinnedMemory pinned_;
};

// Runs the kernel now (returning undefined) or on the thread pool (returning a Promise), holding
// `pinned`, the memory it reads or writes, until it is done.
inline Napi::Value runKernel(Napi::Env env, bool async, std::function<Status()> work, PinnedMemory pinned) {
  if (!async) {
    Status s = runCatching(work);
    if (!s.empty()) throw Napi::Error::New(env, s);
    return env.Undefined();
  }
  auto* worker = new KernelWorker(env, std::move(work), std::move(pinned));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// Each lives in its own file of native/addon/.
void registerCudaBindings(Napi::Env env, Napi::Object exports);   // cuda_bindings.cc
void registerFileBindings(Napi::Env env, Napi::Object exports);   // file_bindings.cc (mmap)

}  // namespace camembed

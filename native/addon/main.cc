// The addon's entry point: CPU kernels, machine info, and the CUDA bindings.
#include "camembed/cpu_info.h"
#include "camembed/cuda.h"
#include "camembed/float16.h"
#include "camembed/pool.h"
#include "camembed/topk.h"
#include "camembed/unit_rows.h"
#include "common.h"

namespace camembed {
namespace {

HiddenType hiddenTypeOption(const Napi::Object& opts, const char* key) {
  std::string t = stringOption(opts, key);
  if (t == "float32") return HiddenType::Float32;
  if (t == "float16") return HiddenType::Float16;
  throw Napi::TypeError::New(opts.Env(), std::string("native: '") + key + "' must be 'float32' or 'float16'");
}

napi_typedarray_type arrayTypeOf(HiddenType t) {
  return t == HiddenType::Float32 ? napi_float32_array : napi_uint16_array;
}

// meanPoolNormalize({hidden, hiddenType, mask, maskType, batch, seq, hiddenSize, normalize,
//                    out, threads, device}, async). device < 0: CPU; else the CUDA device index.
Napi::Value MeanPoolNormalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  PoolArgs a{};
  a.batch = integerOption(opts, "batch");
  a.seq = integerOption(opts, "seq");
  a.hiddenSize = integerOption(opts, "hiddenSize");
  a.hiddenType = hiddenTypeOption(opts, "hiddenType");
  std::string maskType = stringOption(opts, "maskType");
  napi_typedarray_type maskArray;
  if (maskType == "int64") { a.maskType = MaskType::Int64; maskArray = napi_bigint64_array; }
  else if (maskType == "int32") { a.maskType = MaskType::Int32; maskArray = napi_int32_array; }
  else if (maskType == "uint8") { a.maskType = MaskType::Uint8; maskArray = napi_uint8_array; }
  else throw Napi::TypeError::New(env, "native: 'maskType' must be 'int64', 'int32' or 'uint8'");
  PinnedMemory pinned;
  a.hidden = typedArrayData(opts, "hidden", arrayTypeOf(a.hiddenType), {a.batch, a.seq, a.hiddenSize, hiddenElementBytes(a.hiddenType)}, pinned);
  a.mask = typedArrayData(opts, "mask", maskArray, {a.batch, a.seq, maskElementBytes(a.maskType)}, pinned);
  a.out = static_cast<float*>(typedArrayData(opts, "out", napi_float32_array, {a.batch, a.hiddenSize, 4}, pinned));
  a.normalize = boolOption(opts, "normalize");
  const int threads = threadsOption(opts);
  const int device = deviceOption(opts);
  bool async = info[1].ToBoolean().Value();
  return runKernel(env, async, [a, threads, device]() {
    return device < 0 ? meanPoolNormalizeCpu(a, threads) : meanPoolNormalizeCuda(a, device);
  }, std::move(pinned));
}

// cosineTopK({queries, numQueries, segments: [{rows, numRows, ids?}], databaseType, dim, k,
//             normalized, outIndices, outScores, threads}, async)
Napi::Value CosineTopK(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  TopKArgs a{};
  a.numQueries = integerOption(opts, "numQueries");
  a.dim = integerOption(opts, "dim");
  a.k = integerOption(opts, "k");
  a.databaseType = hiddenTypeOption(opts, "databaseType");
  PinnedMemory pinned;
  a.queries = static_cast<const float*>(typedArrayData(opts, "queries", napi_float32_array, {a.numQueries, a.dim, 4}, pinned));
  a.outIndices = static_cast<int32_t*>(typedArrayData(opts, "outIndices", napi_int32_array, {a.numQueries, a.k, 4}, pinned));
  a.outScores = static_cast<float*>(typedArrayData(opts, "outScores", napi_float32_array, {a.numQueries, a.k, 4}, pinned));
  a.normalized = boolOption(opts, "normalized");
  Napi::Value list = opts.Get("segments");
  if (!list.IsArray()) throw Napi::TypeError::New(env, "native: 'segments' must be an array");
  Napi::Array segments = list.As<Napi::Array>();
  for (uint32_t i = 0; i < segments.Length(); ++i) {
    Napi::Value v = segments.Get(i);
    if (!v.IsObject()) throw Napi::TypeError::New(env, "native: each segment must be an object");
    Napi::Object seg = v.As<Napi::Object>();
    TopKSegment s{};
    s.numRows = integerOption(seg, "numRows");
    s.rows = typedArrayData(seg, "rows", arrayTypeOf(a.databaseType), {s.numRows, a.dim, hiddenElementBytes(a.databaseType)}, pinned);
    if (!seg.Get("ids").IsUndefined())
      s.ids = static_cast<const int64_t*>(typedArrayData(seg, "ids", napi_bigint64_array, {s.numRows, 8}, pinned));
    a.segments.push_back(s);
  }
  const int threads = threadsOption(opts);
  bool async = info[1].ToBoolean().Value();
  return runKernel(env, async, [a, threads]() { return cosineTopKCpu(a, threads); }, std::move(pinned));
}

// float32ToFloat16({input: Float32Array, output: Uint16Array of the same length}): IEEE half bits.
Napi::Value Float32ToFloat16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  Napi::Value input = opts.Get("input");
  if (!input.IsTypedArray()) throw Napi::TypeError::New(env, "native: 'input' must be a Float32Array");
  const int64_t n = int64_t(input.As<Napi::TypedArray>().ElementLength());
  PinnedMemory pinned;
  const auto* in = static_cast<const float*>(typedArrayData(opts, "input", napi_float32_array, {n, 4}, pinned));
  auto* out = static_cast<uint16_t*>(typedArrayData(opts, "output", napi_uint16_array, {n, 2}, pinned));
  floatToHalfArray(in, out, n);
  return env.Undefined();
}

// The length of opts[key], a typed array (`expected` names the kinds taken) of whole rows of `dim`
// values; typedArrayData checks its kind and pins it after.
int64_t wholeRowsLength(Napi::Env env, const Napi::Object& opts, const char* key, int64_t dim, const char* expected) {
  Napi::Value value = opts.Get(key);
  if (!value.IsTypedArray()) throw Napi::TypeError::New(env, std::string("native: '") + key + "' must be " + expected);
  const int64_t n = int64_t(value.As<Napi::TypedArray>().ElementLength());
  if (dim < 1 || n % dim != 0) throw Napi::RangeError::New(env, std::string("native: '") + key + "' must hold whole rows of 'dim' values");
  return n;
}

// unitRows({input: Float32Array, output: Float32Array or Uint16Array (float16 bits), dim}) -> the
// first row holding NaN or infinity, or -1 (camembed/unit_rows.h).
Napi::Value UnitRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  const int64_t dim = integerOption(opts, "dim");
  const int64_t n = wholeRowsLength(env, opts, "input", dim, "a Float32Array");
  PinnedMemory pinned;
  const auto* in = static_cast<const float*>(typedArrayData(opts, "input", napi_float32_array, {n, 4}, pinned));
  Napi::Value output = opts.Get("output");
  const bool half = output.IsTypedArray() && output.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
  void* out = typedArrayData(opts, "output", half ? napi_uint16_array : napi_float32_array, {n, half ? 2 : 4}, pinned);
  int64_t bad = -1;
  // runCatching: a std::bad_alloc (its float16 row buffer) escaping to Node-API aborted the process.
  Status s = runCatching([&]() {
    bad = unitRowsCpu(in, n / dim, dim, half ? nullptr : static_cast<float*>(out), half ? static_cast<uint16_t*>(out) : nullptr, 0);
    return Status();
  });
  if (!s.empty()) throw Napi::Error::New(env, s);
  return Napi::Number::New(env, double(bad));
}

// info() -> { simd, threads, cudaCompiledIn, cudaDevices: [...], cudaUnavailableReason }
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("simd", simdLevelName(simdLevel()));
  out.Set("threads", defaultThreadCount());
  out.Set("cudaCompiledIn", cudaCompiledIn());
  std::vector<CudaDeviceInfo> devices;
  std::string why;
  Status s = cudaListDevices(&devices, &why);
  if (!s.empty()) why = s;
  Napi::Array list = Napi::Array::New(env, devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", devices[i].index);
    d.Set("name", devices[i].name);
    d.Set("totalMemoryBytes", double(devices[i].totalMemoryBytes));
    d.Set("computeCapability", std::to_string(devices[i].computeMajor) + "." + std::to_string(devices[i].computeMinor));
    d.Set("multiprocessors", devices[i].multiprocessors);
    list.Set(uint32_t(i), d);
  }
  out.Set("cudaDevices", list);
  out.Set("cudaUnavailableReason", devices.empty() ? Napi::Value(Napi::String::New(env, why)) : env.Null());
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("meanPoolNormalize", Napi::Function::New(env, MeanPoolNormalize));
  exports.Set("cosineTopK", Napi::Function::New(env, CosineTopK));
  exports.Set("float32ToFloat16", Napi::Function::New(env, Float32ToFloat16));
  exports.Set("unitRows", Napi::Function::New(env, UnitRows));
  exports.Set("info", Napi::Function::New(env, Info));
  // The SIMD level, without info()'s CUDA device query: lib/native.ts compares it with CAMEMBED_SIMD on load.
  exports.Set("simd", simdLevelName(simdLevel()));
  // The V8 this was built for: common.h uses V8's API, whose ABI Node-API does not keep stable across
  // Node.js majors (each has its own V8 major.minor), and Node loads a Node-API module without
  // checking (lib/native.ts does).
  exports.Set("v8Version", Napi::String::New(env, std::to_string(V8_MAJOR_VERSION) + "." + std::to_string(V8_MINOR_VERSION)));
  registerCudaBindings(env, exports);
  registerFileBindings(env, exports);
  return exports;
}

}  // namespace
}  // namespace camembed

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return camembed::Init(env, exports); }
NODE_API_MODULE(camembed, InitAddon)

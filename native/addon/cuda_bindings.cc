// CUDA-only bindings: device matrices for resident search (lib/cuda.ts wraps them as CudaMatrix).
// Pooling on CUDA goes through meanPoolNormalize's `device` option in main.cc.
//
// A device matrix is a JS External holding a shared_ptr: free() drops the handle's reference,
// a search in flight keeps its own, and the GPU memory goes when the last one does (so freeing
// or collecting a matrix while searchAsync or an async upload runs is safe). The finaliser frees on GC.
#include <memory>
#include <vector>

#include "camembed/cuda.h"
#include "common.h"

namespace camembed {
namespace {

using MatrixRef = std::shared_ptr<CudaMatrix>;

struct MatrixHandle {
  MatrixRef matrix;
};

// Distinguishes our Externals from any other (napi_type_tag, Node-API 8).
constexpr napi_type_tag kMatrixTag = {0x63616d656d626564ULL, 0x6375646d61747278ULL};

MatrixHandle* handleOf(const Napi::Value& value) {
  bool tagged = false;
  if (value.IsExternal()) napi_check_object_type_tag(value.Env(), value, &kMatrixTag, &tagged);
  if (!tagged) throw Napi::TypeError::New(value.Env(), "native: expected a device matrix handle");
  return value.As<Napi::External<MatrixHandle>>().Data();
}

MatrixRef liveMatrix(const Napi::Value& value) {
  MatrixHandle* handle = handleOf(value);
  if (!handle->matrix) throw Napi::Error::New(value.Env(), "CudaMatrix: this matrix has been freed");
  return handle->matrix;
}

HiddenType storageOption(const Napi::Object& opts, const char* key) {
  const std::string t = stringOption(opts, key);
  if (t == "float32") return HiddenType::Float32;
  if (t == "float16") return HiddenType::Float16;
  throw Napi::TypeError::New(opts.Env(), std::string("native: '") + key + "' must be 'float32' or 'float16'");
}

// cudaMatrixCreate({rows, dim, storage, device}) -> handle (zeros until cudaMatrixSetRows)
Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  const int64_t rows = integerOption(opts, "rows"), dim = integerOption(opts, "dim");
  const HiddenType storage = storageOption(opts, "storage");
  const int device = deviceOption(opts);  // an index past int32 was cut (2^32 became device 0)
  int64_t elements;
  if (__builtin_mul_overflow(rows, dim, &elements) || elements > (int64_t(1) << 60))
    throw Napi::RangeError::New(env, "native: cudaMatrixCreate: rows x dim is too large");
  CudaMatrix* raw = nullptr;
  Status s = cudaMatrixCreate(rows, dim, storage, device, &raw);
  if (!s.empty()) throw Napi::Error::New(env, s);
  auto* handle = new MatrixHandle{MatrixRef(raw, cudaMatrixFree)};
  auto external = Napi::External<MatrixHandle>::New(env, handle, [](Napi::Env, MatrixHandle* h) { delete h; });
  napi_type_tag_object(env, external, &kMatrixTag);
  return external;
}

// cudaMatrixSetRows(handle, [{data, dataType, firstRow, rowCount}, ...], async): the uploads in
// order. The worker holds its own reference to the matrix and every array's memory from the call
// on (as a search does), so free(), a GC or a transfer of a later array meanwhile is safe.
Napi::Value SetRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatrixRef matrix = liveMatrix(info[0]);
  Napi::Array list = info[1].As<Napi::Array>();
  struct Upload { int64_t firstRow, rowCount; HiddenType dataType; const void* data; };
  std::vector<Upload> uploads;
  PinnedMemory pinned;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Object opts = list.Get(i).As<Napi::Object>();
    Upload u{integerOption(opts, "firstRow"), integerOption(opts, "rowCount"), storageOption(opts, "dataType"), nullptr};
    u.data = typedArrayData(opts, "data", u.dataType == HiddenType::Float32 ? napi_float32_array : napi_uint16_array,
                            {u.rowCount, cudaMatrixDim(matrix.get()), hiddenElementBytes(u.dataType)}, pinned);
    uploads.push_back(u);
  }
  const bool async = info[2].ToBoolean().Value();
  return runKernel(env, async, [matrix, uploads]() {
    for (const Upload& u : uploads) {
      Status s = cudaMatrixSetRows(matrix.get(), u.firstRow, u.data, u.dataType, u.rowCount);
      if (!s.empty()) return s;
    }
    return Status();
  }, std::move(pinned));
}

// cudaMatrixBytes(handle) -> number of device bytes held by the stored rows
Napi::Value Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(cudaMatrixBytes(liveMatrix(info[0]).get())));
}

// cudaMatrixFree(handle): idempotent.
Napi::Value Free(const Napi::CallbackInfo& info) {
  handleOf(info[0])->matrix.reset();
  return info.Env().Undefined();
}

// cudaMatrixSearch(handle, {queries, numQueries, k, rows, normalized, outIndices, outScores}, async):
// searches rows [0, rows) of the matrix.
Napi::Value Search(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatrixRef matrix = liveMatrix(info[0]);
  Napi::Object opts = info[1].As<Napi::Object>();
  const int64_t numQueries = integerOption(opts, "numQueries"), k = integerOption(opts, "k");
  const int64_t rows = integerOption(opts, "rows");
  const int64_t dim = cudaMatrixDim(matrix.get());
  PinnedMemory pinned;
  const float* queries = static_cast<const float*>(typedArrayData(opts, "queries", napi_float32_array, {numQueries, dim, 4}, pinned));
  int32_t* outIndices = static_cast<int32_t*>(typedArrayData(opts, "outIndices", napi_int32_array, {numQueries, k, 4}, pinned));
  float* outScores = static_cast<float*>(typedArrayData(opts, "outScores", napi_float32_array, {numQueries, k, 4}, pinned));
  const bool normalized = boolOption(opts, "normalized");
  const bool async = info[2].ToBoolean().Value();
  return runKernel(env, async, [matrix, queries, numQueries, k, rows, normalized, outIndices, outScores]() {
    return cudaMatrixSearch(matrix.get(), queries, numQueries, k, normalized, outIndices, outScores, rows);
  }, std::move(pinned));
}

}  // namespace

void registerCudaBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaMatrixCreate", Napi::Function::New(env, Create));
  exports.Set("cudaMatrixSetRows", Napi::Function::New(env, SetRows));
  exports.Set("cudaMatrixBytes", Napi::Function::New(env, Bytes));
  exports.Set("cudaMatrixFree", Napi::Function::New(env, Free));
  exports.Set("cudaMatrixSearch", Napi::Function::New(env, Search));
}

}  // namespace camembed

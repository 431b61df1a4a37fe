// CUDA-only bindings (device matrices for resident search). Pooling on CUDA goes through
// meanPoolNormalize's `device` option in main.cc.
#include "common.h"

namespace camembed {

void registerCudaBindings(Napi::Env, Napi::Object) {}

}  // namespace camembed

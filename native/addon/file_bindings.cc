// File bindings (memory-mapped index files) — filled in by the VectorIndex work.
#include "common.h"

namespace camembed {

void registerFileBindings(Napi::Env, Napi::Object) {}

}  // namespace camembed

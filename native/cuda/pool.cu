// Placeholder until the CUDA pooling kernel lands (issue: CUDA kernels).
#include "camembed/cuda.h"

namespace camembed {

Status meanPoolNormalizeCuda(const PoolArgs&, int) { return "meanPoolNormalize: the CUDA kernel is not implemented yet"; }

}  // namespace camembed

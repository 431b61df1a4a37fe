// Fused masked mean pooling + L2 normalisation (sentence-transformers semantics):
//   pooled[b] = sum_t(mask[b,t] != 0 ? h[b,t,:] : 0) / max(count_b, 1e-9)
//   out[b]    = normalize ? pooled[b] / max(||pooled[b]||_2, 1e-12) : pooled[b]
#pragma once
#include "camembed/types.h"

namespace camembed {

struct PoolArgs {
  const void* hidden;     // [batch, seq, hidden] of hiddenType
  HiddenType hiddenType;
  const void* mask;       // [batch, seq] of maskType; nonzero counts as 1
  MaskType maskType;
  int64_t batch, seq, hiddenSize;
  bool normalize;
  float* out;             // [batch, hiddenSize]
};

// CPU path: SIMD level chosen at run time, rows split over `threads` (0 = all cores).
Status meanPoolNormalizeCpu(const PoolArgs& args, int threads);

}  // namespace camembed

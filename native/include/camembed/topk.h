// Exact cosine top-k: for each query, the k best database rows by score, sorted by
// score descending, ties broken by lower row index. Memory O(threads*Q*k): the
// Q x N score matrix is never materialised.
#pragma once
#include "camembed/types.h"

namespace camembed {

struct TopKArgs {
  const float* queries;   // [numQueries, dim] float32
  int64_t numQueries;
  const void* database;   // [numRows, dim] of databaseType
  HiddenType databaseType;
  int64_t numRows, dim;
  int64_t k;              // 1 <= k <= numRows (caller clamps)
  bool normalized;        // true: inputs are unit vectors, score = dot product
  int32_t* outIndices;    // [numQueries, k]
  float* outScores;       // [numQueries, k]
};

Status cosineTopKCpu(const TopKArgs& args, int threads);

}  // namespace camembed

// Exact cosine top-k: for each query, the k best database rows by score, sorted by
// score descending, ties broken by lower key (the row's id when the caller gives ids,
// else its row number). Memory O(threads*Q*k): the Q x N score matrix is never materialised.
#pragma once
#include <vector>

#include "camembed/types.h"

namespace camembed {

// One contiguous run of database rows. The database is the concatenation of the segments
// (a VectorIndex passes its storage chunks), so one call streams all of them once.
struct TopKSegment {
  const void* rows;     // [numRows, dim] of the database type
  int64_t numRows;
  const int64_t* ids;   // [numRows] tie-break keys, or null: the row's global number
};

struct TopKArgs {
  const float* queries;   // [numQueries, dim] float32
  int64_t numQueries;
  std::vector<TopKSegment> segments;
  HiddenType databaseType;
  int64_t dim;
  int64_t k;              // 1 <= k <= total rows (caller clamps)
  bool normalized;        // true: inputs are unit vectors, score = dot product
  int32_t* outIndices;    // [numQueries, k] global row numbers (segment offsets added)
  float* outScores;       // [numQueries, k]
};

Status cosineTopKCpu(const TopKArgs& args, int threads);

}  // namespace camembed

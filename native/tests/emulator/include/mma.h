// The CUDA emulator's stand-in for <mma.h>: WMMA m16n16k16, float16 inputs, float32 accumulation.
// Every lane holds the whole 16x16 tile (the hardware spreads it over the warp in an unspecified
// layout, which correct code never relies on). The calls are warp-collective: each waits for the
// whole warp (a __syncwarp); loads and stores check that every lane passes the same address and
// stride, and WMMA's alignment rules; a product is computed by one lane and copied by the others;
// a store writes only its lane's share of the tile, so reading the others' needs a __syncwarp.
#pragma once
#include <type_traits>

#include "cuda_fp16.h"

namespace nvcuda {
namespace wmma {

struct matrix_a;
struct matrix_b;
struct accumulator;
struct row_major;
struct col_major;
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has m16n16k16 only");
  float x[16][16];  // [row][column] of the tile as the product sees it (a: m x k, b: k x n, c: m x n)
};

template <class Use, class T, class Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float value) {
  for (auto& row : f.x)
    for (float& v : row) v = value;
}

// a (row_major): element (m, k) at p[m * ldm + k]; b (col_major): element (k, n) at p[n * ldm + k].
template <class Use, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, __half, Layout>& f, const __half* p, unsigned ldm) {
  __syncwarp();
  emu::warpCollective(p, ldm);
  emu::checkWmmaPointer(p, ldm * sizeof(__half));
  constexpr bool rowMajor = std::is_same<Layout, row_major>::value;
  for (unsigned i = 0; i < 16; ++i)
    for (unsigned j = 0; j < 16; ++j) f.x[i][j] = __half2float(rowMajor ? p[i * ldm + j] : p[j * ldm + i]);
}

template <class LayoutA, class LayoutB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, __half, LayoutA>& a,
              const fragment<matrix_b, 16, 16, 16, __half, LayoutB>& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
  __syncwarp();
  const emu::CollectiveCall call = emu::warpCollective(nullptr, 0);
  if (call.first)
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 16; ++n) {
        float sum = c.x[m][n];
        for (int k = 0; k < 16; ++k) sum += a.x[m][k] * b.x[k][n];  // float16 products are exact in float32
        call.tile[m * 16 + n] = sum;
      }
  std::memcpy(d.x, call.tile, sizeof(d.x));
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t layout) {
  __syncwarp();
  emu::warpCollective(p, ldm);
  emu::checkWmmaPointer(p, ldm * sizeof(float));
  const unsigned lane = unsigned(emu::laneId());
  for (unsigned m = 0; m < 16; ++m)
    for (unsigned n = 0; n < 16; ++n)
      if ((m * 16 + n) % 32 == lane) p[layout == mem_row_major ? m * ldm + n : n * ldm + m] = f.x[m][n];
}

}  // namespace wmma
}  // namespace nvcuda

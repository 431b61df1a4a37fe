// Comparison helpers for native-vs-reference tests.
import { reference, TopKResult } from '../../lib';

export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

// Float64 score of every (query, row) pair the native result names, from the reference
// (k = N gives the reference score of every row).
function exactScores(queries: Float32Array, database: Float32Array | Uint16Array, dim: number, normalized: boolean,
  query: number): Map<number, number> {
  const q = queries.subarray(query * dim, (query + 1) * dim);
  const all = reference.cosineTopK(q, database, { dim, k: database.length / dim, normalized });
  const map = new Map<number, number>();
  for (let i = 0; i < all.k; i++) map.set(all.indices[i], all.scores[i]);
  return map;
}

/**
 * Top-k indices must equal the reference's except among scores within `tieTolerance` of each
 * other; scores within `scoreTolerance` of the float64 score of the row they name; rows sorted
 * by score, equal scores by lower index; no row twice.
 */
export function expectTopKMatches(native: TopKResult, ref: TopKResult, queries: Float32Array,
  database: Float32Array | Uint16Array, dim: number, normalized: boolean,
  tieTolerance = 1e-6, scoreTolerance = 1e-5): void {
  expect(native.k).toBe(ref.k);
  const numQueries = queries.length / dim;
  for (let q = 0; q < numQueries; q++) {
    let exact: Map<number, number> | undefined;
    const seen = new Set<number>();
    for (let i = 0; i < native.k; i++) {
      const at = q * native.k + i;
      const index = native.indices[at];
      expect(seen.has(index)).toBe(false);
      seen.add(index);
      if (i > 0) {
        const prev = native.scores[at - 1];
        expect(native.scores[at] <= prev).toBe(true);
        if (native.scores[at] === prev) expect(index).toBeGreaterThan(native.indices[at - 1]);
      }
      if (index === ref.indices[at]) {
        expect(Math.abs(native.scores[at] - ref.scores[at])).toBeLessThanOrEqual(scoreTolerance);
        continue;
      }
      exact ??= exactScores(queries, database, dim, normalized, q);
      const mine = exact.get(index)!;
      expect(Math.abs(native.scores[at] - mine)).toBeLessThanOrEqual(scoreTolerance);
      // A different row is allowed only when it ties (within tolerance) with the reference's row.
      expect(Math.abs(mine - ref.scores[at])).toBeLessThanOrEqual(tieTolerance);
    }
  }
}

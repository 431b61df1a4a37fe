// The plain TypeScript maths, accumulating in float64: the oracle that tests hold the native
// kernels to. Same signatures and the same argument checks as the public functions; NaN or
// infinity in the data is an error here too.
import { float16BitsToNumber } from '../float16';
import { typedArrayKind } from '../validate';
import {
  AttentionMask, checkPooled, HiddenStates, PoolOptions, PoolShape, preparePool, prepareTopK, TopKOptions, TopKResult,
} from '../kernels';

function elementReader(array: Float32Array | Uint16Array): (i: number) => number {
  return typedArrayKind(array) === 'Float32Array' ? (i) => array[i] : (i) => float16BitsToNumber(array[i]);
}

function maskReader(mask: AttentionMask): (i: number) => boolean {
  return typedArrayKind(mask) === 'BigInt64Array' ? (i) => mask[i] !== 0n : (i) => mask[i] !== 0;
}

/** sum(h where mask != 0) / max(count(mask != 0), 1e-9), then x / max(||x||, 1e-12) unless normalize is false. */
export function meanPoolNormalize(hidden: HiddenStates, mask: AttentionMask, shape: PoolShape, options?: PoolOptions): Float32Array {
  const a = preparePool(hidden, mask, shape, options);
  const value = elementReader(a.hidden);
  const isSet = maskReader(a.mask);
  const H = a.hiddenSize;
  for (let b = 0; b < a.batch; b++) {
    const sum = new Float64Array(H);
    let count = 0;
    for (let t = 0; t < a.seq; t++) {
      if (!isSet(b * a.seq + t)) continue;
      count++;
      const base = (b * a.seq + t) * H;
      for (let h = 0; h < H; h++) sum[h] += value(base + h);
    }
    const denominator = Math.max(count, 1e-9);
    let sumSquares = 0;
    for (let h = 0; h < H; h++) {
      sum[h] /= denominator;
      sumSquares += sum[h] * sum[h];
    }
    const norm = a.normalize ? Math.max(Math.sqrt(sumSquares), 1e-12) : 1;
    for (let h = 0; h < H; h++) a.out[b * H + h] = sum[h] / norm;
  }
  return checkPooled(a);
}

/** Scores every row in float64, sorts by (score desc, index asc), keeps the first k. */
export function cosineTopK(queries: Float32Array, database: HiddenStates, options: TopKOptions): TopKResult {
  const a = prepareTopK(queries, database, options);
  const [{ rows, numRows }] = a.segments;
  const row = elementReader(rows);
  const d = a.dim;
  const rowNorms = new Float64Array(numRows);
  for (let r = 0; r < numRows; r++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += row(r * d + i) * row(r * d + i);
    // Finite for any finite float32 or float16 values (the native kernels refuse NaN and infinity too).
    if (!Number.isFinite(s)) throw new RangeError(`database row ${r} contains NaN or infinite values`);
    rowNorms[r] = Math.sqrt(s);
  }
  const scores = new Float64Array(numRows);
  const order = Array.from({ length: numRows }, (_, i) => i);
  for (let q = 0; q < a.numQueries; q++) {
    let queryNormSquared = 0;
    for (let i = 0; i < d; i++) queryNormSquared += queries[q * d + i] * queries[q * d + i];
    const queryNorm = Math.sqrt(queryNormSquared);
    for (let r = 0; r < numRows; r++) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += queries[q * d + i] * row(r * d + i);
      if (a.normalized) scores[r] = dot;
      else scores[r] = queryNorm === 0 || rowNorms[r] === 0 ? 0 : dot / (queryNorm * rowNorms[r]);
    }
    order.sort((x, y) => scores[y] - scores[x] || x - y);
    for (let i = 0; i < a.k; i++) {
      a.outIndices[q * a.k + i] = order[i];
      a.outScores[q * a.k + i] = scores[order[i]];
    }
  }
  return { indices: a.outIndices, scores: a.outScores, k: a.k };
}

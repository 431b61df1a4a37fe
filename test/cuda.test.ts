// CudaMatrix (lib/cuda.ts): argument checks everywhere; on a machine with a CUDA device, results
// against a float64 oracle of the values the GPU uses (float16-rounded queries and rows for
// float16 storage) and against the CPU kernel. Tolerances (issue 5): scores within 1e-4 (float16)
// / 1e-5 (float32); indices equal except among rows scoring within 1e-5 / 1e-6 of the k-th score.
import * as path from 'path';
import { CudaMatrix, CUDA_MAX_K } from '../lib/cuda';
import { float16ToFloat32Array, float32ToFloat16Array } from '../lib/float16';
import { makeRandom, randomNormalArray } from './helpers/random';

interface Addon {
  info(): { cudaDevices: unknown[]; cudaUnavailableReason: string | null };
  cosineTopK(args: object, async: false): undefined;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const addon = require(path.resolve(__dirname, '..', 'build', 'Release', 'camembed.node')) as Addon;
const info = addon.info();
const hasGpu = info.cudaDevices.length > 0;
if (!hasGpu) {
  // eslint-disable-next-line no-console
  console.log(`cuda.test: skipping the GPU parity tests: no CUDA device (${info.cudaUnavailableReason})`);
}

function unitRows(values: Float32Array, dim: number): Float32Array {
  for (let r = 0; r < values.length / dim; r++) {
    let sum = 0;
    for (let i = 0; i < dim; i++) sum += values[r * dim + i] ** 2;
    const norm = Math.sqrt(sum) || 1;
    for (let i = 0; i < dim; i++) values[r * dim + i] /= norm;
  }
  return values;
}

// Float64 scores of every (query, row): cosine (0 for a zero vector) or dot product.
function oracleScores(queries: Float32Array, rows: Float32Array, dim: number, normalized: boolean): Float64Array[] {
  const Q = queries.length / dim, N = rows.length / dim;
  const norm = (a: Float32Array, r: number) => {
    let s = 0;
    for (let i = 0; i < dim; i++) s += a[r * dim + i] * a[r * dim + i];
    return Math.sqrt(s);
  };
  const rowNorms = Array.from({ length: N }, (_, r) => norm(rows, r));
  const out: Float64Array[] = [];
  for (let q = 0; q < Q; q++) {
    const scores = new Float64Array(N);
    const qn = norm(queries, q);
    for (let r = 0; r < N; r++) {
      let dot = 0;
      for (let i = 0; i < dim; i++) dot += queries[q * dim + i] * rows[r * dim + i];
      const denom = qn * rowNorms[r];
      scores[r] = normalized ? dot : denom === 0 ? 0 : dot / denom;
    }
    out.push(scores);
  }
  return out;
}

function cpuTopK(queries: Float32Array, rows: Float32Array, dim: number, k: number, normalized: boolean) {
  const Q = queries.length / dim;
  const outIndices = new Int32Array(Q * k), outScores = new Float32Array(Q * k);
  addon.cosineTopK({
    queries, numQueries: Q, database: rows, databaseType: 'float32', numRows: rows.length / dim, dim, k, normalized,
    outIndices, outScores, threads: 0,
  }, false);
  return outIndices;
}

function expectMatches(
  result: { indices: Int32Array; scores: Float32Array; k: number },
  queriesUsed: Float32Array, rowsUsed: Float32Array, dim: number, normalized: boolean, half: boolean,
): void {
  const scoreTol = half ? 1e-4 : 1e-5, indexTol = half ? 1e-5 : 1e-6;
  const { k } = result;
  const truth = oracleScores(queriesUsed, rowsUsed, dim, normalized);
  const cpu = cpuTopK(queriesUsed, rowsUsed, dim, k, normalized);
  truth.forEach((scores, q) => {
    const got = Array.from(result.indices.subarray(q * k, (q + 1) * k));
    const gotScores = result.scores.subarray(q * k, (q + 1) * k);
    expect(new Set(got).size).toBe(k);
    got.forEach((row, i) => {
      expect(row).toBeGreaterThanOrEqual(0);
      expect(row).toBeLessThan(scores.length);
      expect(Math.abs(gotScores[i] - scores[row])).toBeLessThanOrEqual(scoreTol);
      if (i > 0) expect(gotScores[i - 1] > gotScores[i] || (gotScores[i - 1] === gotScores[i] && got[i - 1] < row)).toBe(true);
    });
    const expected = Array.from(cpu.subarray(q * k, (q + 1) * k));
    const kth = scores[expected[k - 1]];
    const gotSet = new Set(got), expectedSet = new Set(expected);
    for (const row of got) if (!expectedSet.has(row)) expect(Math.abs(scores[row] - kth)).toBeLessThanOrEqual(indexTol);
    for (const row of expected) if (!gotSet.has(row)) expect(Math.abs(scores[row] - kth)).toBeLessThanOrEqual(indexTol);
  });
}

describe('CudaMatrix argument checks (no GPU needed)', () => {
  const data = new Float32Array(12);
  test('wrong types and shapes are TypeError / RangeError naming the argument', () => {
    expect(() => CudaMatrix.create(new Float64Array(12) as unknown as Float32Array, { rows: 3, dim: 4 }))
      .toThrow(new TypeError('data must be a Float32Array or a Uint16Array of float16 bits, got Float64Array'));
    expect(() => CudaMatrix.create(data, null as unknown as { rows: number; dim: number })).toThrow(TypeError);
    expect(() => CudaMatrix.create(data, { rows: 3.5, dim: 4 })).toThrow(/options.rows must be an integer/);
    expect(() => CudaMatrix.create(data, { rows: 0, dim: 4 })).toThrow(RangeError);
    expect(() => CudaMatrix.create(data, { rows: 3, dim: NaN })).toThrow(/options.dim/);
    expect(() => CudaMatrix.create(data, { rows: 4, dim: 4 })).toThrow(/data has 12 elements but options.rows x options.dim needs 16/);
    expect(() => CudaMatrix.create(data, { rows: 3, dim: 4, storage: 'int8' as 'float16' })).toThrow(/options.storage/);
    expect(() => CudaMatrix.create(data, { rows: 3, dim: 4, device: -1 })).toThrow(/options.device/);
  });
  (hasGpu ? test.skip : test)('without a GPU, create says why', () => {
    expect(() => CudaMatrix.create(data, { rows: 3, dim: 4 })).toThrow(/no CUDA device is available/);
  });
});

(hasGpu ? describe : describe.skip)('CudaMatrix on the GPU', () => {
  const random = makeRandom(20261127);
  const cases = [
    { rows: 1, dim: 1, queries: 1, k: 1 },
    { rows: 7, dim: 3, queries: 2, k: 7 },          // k = N
    { rows: 7, dim: 3, queries: 2, k: 50 },         // k > N: clamped to N
    { rows: 301, dim: 33, queries: 5, k: 1 },
    { rows: 1000, dim: 768, queries: 1, k: 10 },
    { rows: 4099, dim: 100, queries: 70, k: 100 },  // 128-query blocks, two row launches
  ];
  for (const storage of ['float16', 'float32'] as const) {
    for (const normalized of [false, true]) {
      for (const c of cases) {
        test(`${storage} ${normalized ? 'dot' : 'cosine'} N=${c.rows} d=${c.dim} Q=${c.queries} k=${c.k}`, async () => {
          let rows = randomNormalArray(random, c.rows * c.dim);
          let queries = randomNormalArray(random, c.queries * c.dim);
          if (normalized) {
            rows = unitRows(rows, c.dim);
            queries = unitRows(queries, c.dim);
          }
          const half = storage === 'float16';
          const rowsUsed = half ? float16ToFloat32Array(float32ToFloat16Array(rows)) : rows;
          const queriesUsed = half ? float16ToFloat32Array(float32ToFloat16Array(queries)) : queries;
          const m = CudaMatrix.create(rows, { rows: c.rows, dim: c.dim, storage });
          try {
            expect(m.bytes).toBeGreaterThanOrEqual(c.rows * c.dim * (half ? 2 : 4));
            const result = m.search(queries, { k: c.k, normalized });
            expect(result.k).toBe(Math.min(c.k, c.rows));
            expectMatches(result, queriesUsed, rowsUsed, c.dim, normalized, half);
            const again = await m.searchAsync(queries, { k: c.k, normalized });
            expect(again.indices).toEqual(result.indices);
            expect(again.scores).toEqual(result.scores);
          } finally {
            m.free();
          }
        });
      }
    }
  }

  test('ties go to the lower index; float16 input is stored as given', () => {
    const dim = 16, base = unitRows(randomNormalArray(random, 10 * dim), dim);
    const rows = new Float32Array(40 * dim);
    for (let r = 0; r < 40; r++) rows.set(base.subarray((r % 10) * dim, (r % 10 + 1) * dim), r * dim);
    const bits = float32ToFloat16Array(rows);
    const m = CudaMatrix.create(bits, { rows: 40, dim });
    try {
      const result = m.search(float16ToFloat32Array(bits.subarray(3 * dim, 4 * dim)), { k: 4 });
      expect(Array.from(result.indices)).toEqual([3, 13, 23, 33]);
      expect(Array.from(result.scores).every((s) => Math.abs(s - 1) < 1e-3)).toBe(true);
    } finally {
      m.free();
    }
  });

  test('free is idempotent; a freed matrix throws; others stay usable', async () => {
    const rows = randomNormalArray(random, 50 * 8);
    const a = CudaMatrix.create(rows, { rows: 50, dim: 8 });
    const b = CudaMatrix.create(rows, { rows: 50, dim: 8, storage: 'float32' });
    const q = rows.subarray(0, 8);
    const pending = a.searchAsync(q, { k: 3 });
    a.free();
    a.free();
    expect((await pending).indices[0]).toBe(0);  // a search in flight finishes before the memory goes
    expect(() => a.search(q, { k: 3 })).toThrow(/freed/);
    await expect(a.searchAsync(q, { k: 3 })).rejects.toThrow(/freed/);
    expect(b.search(q, { k: 1 }).indices[0]).toBe(0);
    b.free();
  });

  test('bad search arguments and bad data are clear errors', () => {
    const m = CudaMatrix.create(randomNormalArray(random, 20 * 4), { rows: 20, dim: 4 });
    try {
      expect(() => m.search(new Float32Array(6), { k: 1 })).toThrow(/positive multiple of dim \(4\)/);
      expect(() => m.search(new Float32Array(0), { k: 1 })).toThrow(RangeError);
      expect(() => m.search(new Float32Array(4), { k: 0 })).toThrow(/options.k/);
      expect(() => m.search(new Float32Array([1, NaN, 0, 0]), { k: 1 })).toThrow(/queries\[1\] is NaN/);
      expect(() => m.search(new Float32Array([1e5, 0, 0, 0]), { k: 1 })).toThrow(/65504/);
      expect(() => m.search(new Float32Array(4), { k: 1, normalized: 1 as unknown as boolean })).toThrow(TypeError);
      expect(() => CudaMatrix.create(new Float32Array([1, NaN]), { rows: 1, dim: 2 })).toThrow(/row 0 holds NaN/);
      expect(() => CudaMatrix.create(new Float32Array(4), { rows: 2, dim: 2, device: 999 })).toThrow(/devices 0\.\./);
      const big = CudaMatrix.create(randomNormalArray(random, 3000 * 2), { rows: 3000, dim: 2 });
      expect(() => big.search(new Float32Array(2), { k: CUDA_MAX_K + 1 })).toThrow(/<= 2048/);
      big.free();
      expect(m.search(new Float32Array([1, 0, 0, 0]), { k: 2 }).k).toBe(2);
    } finally {
      m.free();
    }
  });
});

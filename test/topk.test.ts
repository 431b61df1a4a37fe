import { cosineTopK, cosineTopKAsync, float32ToFloat16Array, reference } from '../lib';
import { loadAddon } from '../lib/native';
import { expectTopKMatches } from './helpers/compare';
import { makeRandom, randomSignedArray } from './helpers/random';

function unitRows(random: () => number, rows: number, dim: number): Float32Array {
  const data = randomSignedArray(random, rows * dim);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < dim; i++) s += data[r * dim + i] ** 2;
    const n = Math.sqrt(s);
    for (let i = 0; i < dim; i++) data[r * dim + i] /= n;
  }
  return data;
}

function check(queries: Float32Array, database: Float32Array | Uint16Array, dim: number, k: number, normalized: boolean) {
  const got = cosineTopK(queries, database, { dim, k, normalized });
  const want = reference.cosineTopK(queries, database, { dim, k, normalized });
  expect(got.k).toBe(Math.min(k, database.length / dim));
  expect(got.indices.length).toBe((queries.length / dim) * got.k);
  expectTopKMatches(got, want, queries, database, dim, normalized);
}

describe('cosineTopK: native equals the float64 reference', () => {
  const cases: Array<[number, number, number, number]> = [
    // [queries, rows, dim, k]
    [1, 1, 1, 1], [1, 1, 768, 5], [3, 10, 7, 3], [2, 50, 33, 50], [5, 37, 768, 100], [4, 129, 17, 1],
    [7, 1000, 768, 10], [16, 3001, 100, 17], [1, 5000, 768, 5000], [300, 2000, 768, 10], [300, 503, 31, 1],
    // 12+ queries (32+ on float16) go in the vector lanes on AVX-512 (8+ / 14+ on AVX2, checked by
    // the SIMD-level test in pool.test.ts): one or two vectors of query lanes, 6 to 16 rows a block
    [12, 1001, 768, 10], [13, 17, 5, 17], [33, 250, 768, 100], [40, 1, 3, 1], [64, 12, 16, 12],
  ];
  test.each(cases)('Q=%i N=%i d=%i k=%i, float32, cosine and dot', (Q, N, dim, k) => {
    const random = makeRandom(Q * 7 + N * 3 + dim + k);
    const database = randomSignedArray(random, N * dim);
    const queries = randomSignedArray(random, Q * dim);
    check(queries, database, dim, k, false);
    check(unitRows(random, Q, dim), unitRows(random, N, dim), dim, k, true);
  });

  test.each([[1, 1000, 768, 10], [19, 777, 64, 25], [3, 20, 5, 20], [7, 500, 37, 15], [45, 301, 768, 30], [33, 50, 16, 50]])('Q=%i N=%i d=%i k=%i, float16 storage', (Q, N, dim, k) => {
    const random = makeRandom(N + dim);
    const database = float32ToFloat16Array(randomSignedArray(random, N * dim));
    const queries = randomSignedArray(random, Q * dim);
    check(queries, database, dim, k, false);
    check(unitRows(random, Q, dim), float32ToFloat16Array(unitRows(random, N, dim)), dim, k, true);
  });

  test('N = 200,000 x 768, one query, float32 and float16', () => {
    const random = makeRandom(200000);
    const dim = 768;
    const database = unitRows(random, 200000, dim);
    const queries = unitRows(random, 1, dim);
    check(queries, database, dim, 10, true);
    check(queries, float32ToFloat16Array(database), dim, 10, false);
  });

  test('k larger than N returns every row, sorted', () => {
    const random = makeRandom(5);
    const database = randomSignedArray(random, 6 * 4);
    const queries = randomSignedArray(random, 2 * 4);
    const got = cosineTopK(queries, database, { dim: 4, k: 1000 });
    expect(got.k).toBe(6);
    expect(new Set(Array.from(got.indices.subarray(0, 6)))).toEqual(new Set([0, 1, 2, 3, 4, 5]));
    check(queries, database, 4, 1000, false);
  });

  test('duplicated rows tie exactly and come out lower index first', () => {
    const random = makeRandom(21);
    const dim = 48;
    const base = randomSignedArray(random, 10 * dim);
    // rows 0..39: four copies of the same ten rows, then thirty more random rows
    const database = new Float32Array(70 * dim);
    for (let c = 0; c < 4; c++) database.set(base, c * 10 * dim);
    database.set(randomSignedArray(random, 30 * dim), 40 * dim);
    const queries = base.slice(0, 3 * dim);  // each query's best rows are its four copies
    const got = cosineTopK(queries, database, { dim, k: 8 });
    for (let q = 0; q < 3; q++) {
      expect(Array.from(got.indices.subarray(q * 8, q * 8 + 4))).toEqual([q, q + 10, q + 20, q + 30]);
      for (let i = 1; i < 4; i++) expect(got.scores[q * 8 + i]).toBe(got.scores[q * 8]);
    }
    check(queries, database, dim, 8, false);
  });

  test.each([1, 13, 40])('identical rows score bit for bit the same wherever they fall (blocks, thread ranges), Q=%i', (Q) => {
    // 17 copies: full register blocks of 4, 12 and 16 rows and remainders, which once summed differently.
    for (let seed = 0; seed < 10; seed++) {
      const random = makeRandom(1000 + seed);
      const dim = 768, copies = 17;
      const row = randomSignedArray(random, dim);
      const database = new Float32Array(copies * dim);
      for (let r = 0; r < copies; r++) database.set(row, r * dim);
      const queries = randomSignedArray(random, Q * dim);
      for (const normalized of [true, false]) {  // cosine mode: each row's norm too
        const got = cosineTopK(queries, database, { dim, k: copies, normalized, threads: 1 });
        for (let q = 0; q < Q; q++) {
          expect(Array.from(got.indices.subarray(q * copies, (q + 1) * copies))).toEqual(Array.from({ length: copies }, (_, i) => i));
          expect(new Set(Array.from(got.scores.subarray(q * copies, (q + 1) * copies))).size).toBe(1);
        }
      }
    }
  });

  test('the score of a row does not depend on the thread count', () => {
    const random = makeRandom(123);
    const dim = 96, rows = 20003;
    const database = randomSignedArray(random, rows * dim);
    const queries = randomSignedArray(random, 3 * dim);
    const byIndex = (threads: number) => {
      const r = cosineTopK(queries, database, { dim, k: rows, threads });
      const scores = new Float32Array(3 * rows);
      for (let q = 0; q < 3; q++)
        for (let i = 0; i < rows; i++) scores[q * rows + r.indices[q * rows + i]] = r.scores[q * rows + i];
      return scores;
    };
    const one = byIndex(1);
    for (const threads of [2, 3, 7]) {
      const other = byIndex(threads);
      let differing = 0;
      for (let i = 0; i < one.length; i++) if (one[i] !== other[i]) differing++;
      expect(differing).toBe(0);
    }
  });

  // Every query count takes one kernel summing each score in one order, so a query searched alone
  // or in any batch scores every row bit for bit the same (few queries summed in another order
  // once: the last bits differed). Dims around the SIMD widths; 70 rows: whole row groups and tails.
  test.each([1, 7, 8, 9, 17, 768, 769])('a query scores bit for bit the same whatever the batch around it (dim %i)', (dim) => {
    const random = makeRandom(4000 + dim);
    const Q = 40, N = 70;
    const bits = (scores: Float32Array) => Array.from(new Uint32Array(scores.buffer, scores.byteOffset, scores.length));
    for (const dtype of ['float32', 'float16'] as const) {
      for (const normalized of [false, true]) {
        const rows = normalized ? unitRows(random, N, dim) : randomSignedArray(random, N * dim);
        const database = dtype === 'float16' ? float32ToFloat16Array(rows) : rows;
        const queries = normalized ? unitRows(random, Q, dim) : randomSignedArray(random, Q * dim);
        const all = cosineTopK(queries, database, { dim, k: N, normalized });
        for (const batch of [1, 2, 3, 4, 5, 7, 8, 15, 16, 33]) {
          for (let q0 = 0; q0 < Q; q0 += batch) {
            const q1 = Math.min(Q, q0 + batch);
            const part = cosineTopK(queries.subarray(q0 * dim, q1 * dim), database, { dim, k: N, normalized });
            const what = `${dtype} normalized ${normalized} batch ${batch} queries ${q0}..${q1 - 1}`;
            expect([what, Array.from(part.indices)]).toEqual([what, Array.from(all.indices.subarray(q0 * N, q1 * N))]);
            expect([what, bits(part.scores)]).toEqual([what, bits(all.scores.subarray(q0 * N, q1 * N))]);
          }
        }
      }
    }
  });

  test.each([1, 20])('a zero vector scores 0 in cosine mode, Q=%i', (Q) => {
    const database = new Float32Array([0, 0, 0, 1, 0, 0, -1, 0, 0]);
    const queries = new Float32Array(Q * 3);
    for (let q = 0; q < Q; q++) queries.set(q === Q - 1 && Q > 1 ? [0, 0, 0] : [1, 0, 0], q * 3);
    const got = cosineTopK(queries, database, { dim: 3, k: 3 });
    expect(Array.from(got.indices.subarray(0, 3))).toEqual([1, 0, 2]);
    expect(Array.from(got.scores.subarray(0, 3))).toEqual([1, 0, -1]);
    if (Q > 1) {  // the zero query ties every row at 0: lowest index first
      expect(Array.from(got.indices.subarray(-3))).toEqual([0, 1, 2]);
      expect(Array.from(got.scores.subarray(-3))).toEqual([0, 0, 0]);
    }
  });

  // Rows of float32 subnormals (1e-40, 1e-44) too: their products with a unit query lost their
  // digits (a row of components near 1e-45 scored 1 whatever the query).
  test.each([1, 20])('cosine mode: components far from 1 (1e-25, 1e20, subnormal) score as in float64, Q=%i', (Q) => {
    const random = makeRandom(31 + Q);
    const dim = 64, rows = 40;
    for (const [queryScale, rowScale] of [[1e-25, 1], [1, 1e-25], [1e20, 1], [1, 1e20], [1e-25, 1e20], [1, 1e-40], [1e20, 1e-44]]) {
      const queries = randomSignedArray(random, Q * dim).map((x) => x * queryScale);
      const database = randomSignedArray(random, rows * dim).map((x) => x * rowScale);
      check(queries, database, dim, 5, false);
    }
  });

  // Dot mode rescales nothing (README): a row of subnormal components scores its dot product, not
  // its cosine, each product rounded to float32's subnormal spacing (2^-149).
  test.each([1, 20])('dot mode: rows of subnormal components score their dot product within dim x 2^-150, Q=%i', (Q) => {
    const random = makeRandom(41 + Q);
    const dim = 64, rows = 40;
    const queries = unitRows(random, Q, dim);
    const database = randomSignedArray(random, rows * dim).map((x) => x * 1e-39);
    const got = cosineTopK(queries, database, { dim, k: rows, normalized: true });
    let largest = 0;
    for (let q = 0; q < Q; q++) {
      for (let j = 0; j < rows; j++) {
        const row = got.indices[q * rows + j];
        let dot = 0;
        for (let i = 0; i < dim; i++) dot += queries[q * dim + i] * database[row * dim + i];
        expect(Math.abs(got.scores[q * rows + j] - dot)).toBeLessThanOrEqual(dim * 2 ** -150);
        largest = Math.max(largest, Math.abs(dot));
      }
    }
    expect(largest).toBeGreaterThan(1e-40);  // scores among the subnormals, not rounded to 0
  });

  test.each([1, 20])('NaN or infinity in a query or row is an error naming it, Q=%i', async (Q) => {
    const random = makeRandom(8);
    const dim = 40;
    const database = randomSignedArray(random, 50 * dim);
    const queries = randomSignedArray(random, Q * dim);
    const badRow = database.slice();
    badRow[37 * dim + 5] = NaN;
    const badQuery = queries.slice();
    badQuery[(Q - 1) * dim + 3] = Infinity;
    for (const normalized of [false, true]) {
      // The row named, as by the reference (the kernel saw only a score that was not finite).
      const rowError = new RangeError('database row 37 contains NaN or infinite values');
      for (const search of [cosineTopK, reference.cosineTopK]) {
        expect(() => search(queries, badRow, { dim, k: 3, normalized })).toThrow(rowError);
        expect(() => search(queries, badRow, { dim, k: 3, normalized })).toThrow(RangeError);
      }
      await expect(cosineTopKAsync(queries, badRow, { dim, k: 3, normalized })).rejects.toThrow(rowError);
      await expect(cosineTopKAsync(queries, badRow, { dim, k: 3, normalized })).rejects.toBeInstanceOf(RangeError);
      expect(() => cosineTopK(badQuery, database, { dim, k: 3, normalized }))
        .toThrow(new RangeError(`queries row ${Q - 1} contains NaN or infinite values`));
    }
    // Against rows of norm 0 a cosine score is 0 whatever the query: the bad query is still reported.
    expect(() => cosineTopK(badQuery, new Float32Array(8 * dim), { dim, k: 3 })).toThrow(`queries row ${Q - 1}`);
    // Finite components whose norm passes the float32 range (3e38, 3e38: norm 4.2e38) are an error
    // too: an infinite norm scored the row 0 instead of its cosine (0.5 here, the reference's).
    const hugeRow = new Float32Array(50 * dim).fill(0);
    hugeRow.set([3e38, 3e38], 37 * dim);
    const ones = new Float32Array(Q * dim).fill(1);
    expect(reference.cosineTopK(ones.subarray(0, dim), hugeRow, { dim, k: 1 }).indices[0]).toBe(37);
    expect(() => cosineTopK(ones, hugeRow, { dim, k: 3 })).toThrow('not finite');
  });

  // The database was scanned for a non-finite row after any native failure: a full pass over a
  // large database before the real error, which a database holding NaN then hid.
  test('a native failure that names no NaN keeps its message: the database is not scanned for the row', async () => {
    const dim = 4, queries = new Float32Array([1, 0, 0, 0]);
    const database = new Float32Array(8 * dim).fill(1);
    database[5 * dim] = NaN;
    const addon = loadAddon();
    const failure = new Error('cosineTopK: out of memory (a stand-in for a failure of another kind)');
    const kernel = jest.spyOn(addon, 'cosineTopK').mockImplementation((_args, async) => {
      if (async) return Promise.reject(failure);
      throw failure;
    });
    try {
      expect(() => cosineTopK(queries, database, { dim, k: 2 })).toThrow(failure.message);
      await expect(cosineTopKAsync(queries, database, { dim, k: 2 })).rejects.toThrow(failure.message);
    } finally {
      kernel.mockRestore();
    }
    expect(() => cosineTopK(queries, database, { dim, k: 2 })).toThrow(new RangeError('database row 5 contains NaN or infinite values'));
  });

  test('async equals sync; threads: 1 equals all cores', async () => {
    const random = makeRandom(77);
    const dim = 96;
    const database = randomSignedArray(random, 20000 * dim);
    const queries = randomSignedArray(random, 33 * dim);
    const sync = cosineTopK(queries, database, { dim, k: 20 });
    const [a, b] = await Promise.all([
      cosineTopKAsync(queries, database, { dim, k: 20 }),
      cosineTopKAsync(queries, database, { dim, k: 20, threads: 1 }),
    ]);
    for (const r of [a, b]) {
      expect(Array.from(r.indices)).toEqual(Array.from(sync.indices));
      expect(Array.from(r.scores)).toEqual(Array.from(sync.scores));
    }
  });
});

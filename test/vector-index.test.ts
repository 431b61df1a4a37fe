// VectorIndex search, ids, removes and errors, checked against the float64 reference top-k.
import { devices, float16ToFloat32Array, float32ToFloat16Array, reference } from '../lib';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as util from 'util';
import { fileBindings } from '../lib/index/format';
import { addonPath } from '../lib/native';
import { IdTable, MAX_ENTRIES, maxId } from '../lib/index/id-table';
import { CudaMatrix } from '../lib/cuda';
import { evenTiles, IndexFileProgress, SearchResult, VectorIndex } from '../lib/vector-index';
import { makeRandom, randomSignedArray } from './helpers/random';
import { maxAbsDifference } from './helpers/compare';

const TOLERANCE = 2e-5;  // float32 accumulation vs float64 on unit vectors of dim <= 1024

/**
 * What the index should hold: unit vectors (as add() computes them) by id. `queriesAs`: the type
 * the kernel takes the unit queries in (float16 on CUDA with float16 storage: the tensor cores').
 */
class Truth {
  readonly rows = new Map<bigint, Float32Array>();
  constructor(readonly dim: number, readonly dtype: 'float32' | 'float16' = 'float32', readonly queriesAs: 'float32' | 'float16' = 'float32') {}

  /** `data`: rows already normalised. */
  add(data: Float32Array, ids: bigint[]): void {
    ids.forEach((id, r) => this.rows.set(id, data.slice(r * this.dim, (r + 1) * this.dim)));
  }

  remove(ids: bigint[]): void {
    for (const id of ids) this.rows.delete(id);
  }

  /** Every query's scores against every row (float64 reference), rows in id order. */
  allScores(queries: Float32Array, normalizeQueries = true): ScoreTable {
    const ids = [...this.rows.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const db = new Float32Array(ids.length * this.dim);
    ids.forEach((id, r) => db.set(this.rows.get(id)!, r * this.dim));
    const stored = this.dtype === 'float32' ? db : float32ToFloat16Array(db);
    const unit = normalizeQueries ? normalizedCopy(queries, this.dim) : queries;
    const q = this.queriesAs === 'float16' ? float16ToFloat32Array(float32ToFloat16Array(unit)) : unit;
    const all = reference.cosineTopK(q, stored, { dim: this.dim, k: ids.length, normalized: true });
    const n = ids.length;
    const scores = new Float32Array(all.scores.length);
    // Back to row (= id) order, so scores[q * n + r] is the score of ids[r].
    for (let i = 0; i < all.indices.length; i++) scores[Math.floor(i / n) * n + all.indices[i]] = all.scores[i];
    return { ids, scores, n };
  }
}

interface ScoreTable { ids: bigint[]; scores: Float32Array; n: number }

/**
 * Checks a result against the reference: right scores, a valid top-k, (score desc, id asc) order.
 * `exclude[q]`: an id that query q must not return (neighbors' self).
 */
function expectExact(result: SearchResult, table: ScoreTable, k: number, exclude?: BigInt64Array, tolerance = TOLERANCE): void {
  const { ids, scores } = table;
  const n = exclude === undefined ? table.n : table.n - 1;
  const numQueries = scores.length / table.n;
  const kept = Math.min(k, n);
  expect(result.k).toBe(kept);
  expect(result.ids.length).toBe(numQueries * kept);
  const rowOf = new Map(ids.map((id, r) => [id, r]));
  for (let q = 0; q < numQueries; q++) {
    const truthScores = Array.from(scores.subarray(q * table.n, (q + 1) * table.n));
    if (exclude !== undefined) truthScores[rowOf.get(exclude[q])!] = -Infinity;
    const order = truthScores.map((_, r) => r).sort((a, b) => truthScores[b] - truthScores[a] || a - b);
    const kth = truthScores[order[kept - 1]];
    const seen = new Set<bigint>();
    for (let i = 0; i < kept; i++) {
      const id = result.ids[q * kept + i];
      const score = result.scores[q * kept + i];
      const row = rowOf.get(id);
      expect(row).toBeDefined();
      expect(seen.has(id)).toBe(false);
      seen.add(id);
      expect(Math.abs(score - truthScores[row!])).toBeLessThan(tolerance);
      expect(truthScores[row!]).toBeGreaterThan(kth - tolerance);
      if (i > 0) {
        const previous = result.scores[q * kept + i - 1];
        expect(previous).toBeGreaterThanOrEqual(score);
        if (previous === score) expect(result.ids[q * kept + i - 1] < id).toBe(true);
      }
      // Where the reference ranking is unambiguous, the id must be the reference's.
      const separated = (j: number) => j < 0 || j >= n || Math.abs(truthScores[order[j]] - truthScores[order[i]]) > tolerance;
      if (separated(i - 1) && separated(i + 1)) expect(id).toBe(ids[order[i]]);
    }
  }
}

function normalizedCopy(data: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let b = 0; b < data.length; b += dim) {
    let s = 0;
    for (let i = b; i < b + dim; i++) s += data[i] * data[i];
    const scale = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let i = b; i < b + dim; i++) out[i] = data[i] * scale;
  }
  return out;
}

/** Random ids: negative, small, and beyond 2^53, in shuffled order. */
function randomIds(random: () => number, n: number, used: Set<bigint>): bigint[] {
  const ids: bigint[] = [];
  while (ids.length < n) {
    const magnitude = random() < 0.2 ? BigInt(Math.floor(random() * 2 ** 31)) << 32n : 0n;
    const id = (magnitude + BigInt(Math.floor(random() * 1e6))) * (random() < 0.2 ? -1n : 1n);
    if (!used.has(id)) {
      used.add(id);
      ids.push(id);
    }
  }
  return ids;
}

function clustered(random: () => number, n: number, dim: number, centers: number): Float32Array {
  const c = randomSignedArray(random, centers * dim);
  const out = randomSignedArray(random, n * dim);
  for (let r = 0; r < n; r++) {
    const from = Math.floor(random() * centers) * dim;
    const duplicate = random() < 0.3;  // exact copies of the centre: exact ties
    for (let i = 0; i < dim; i++) out[r * dim + i] = c[from + i] + (duplicate ? 0 : 1e-3 * out[r * dim + i]);
  }
  return out;
}

describe.each(['float32', 'float16'] as const)('VectorIndex (%s, CPU)', (dtype) => {
  const dim = 33;
  const chunkBytes = 200 * dim * (dtype === 'float32' ? 4 : 2);  // 200 rows a chunk: many chunks

  function build(data: Float32Array, ids: bigint[]): { index: VectorIndex; truth: Truth } {
    const index = new VectorIndex({ dim, dtype, chunkBytes });
    const truth = new Truth(dim, dtype);
    const rows = data.length / dim;
    for (let start = 0; start < rows; start += 377) {  // batches that straddle chunk borders
      const end = Math.min(rows, start + 377);
      index.add(data.subarray(start * dim, end * dim), BigInt64Array.from(ids.slice(start, end)));
      truth.add(normalizedCopy(data.subarray(start * dim, end * dim), dim), ids.slice(start, end));
    }
    return { index, truth };
  }

  test('random data, random ids: exact for k = 1, 10, 64', async () => {
    const random = makeRandom(1);
    const data = randomSignedArray(random, 1100 * dim);
    const { index, truth } = build(data, randomIds(random, 1100, new Set()));
    expect(index.size).toBe(1100);
    const queries = randomSignedArray(random, 9 * dim);
    for (const k of [1, 10, 64]) expectExact(await index.search(queries, { k }), truth.allScores(queries), k);
  });

  test('clustered data with exact duplicates: ties go to the lower id, across chunks', async () => {
    const random = makeRandom(2);
    const data = clustered(random, 1000, dim, 6);
    const ids = randomIds(random, 1000, new Set());
    const { index, truth } = build(data, ids);
    const queries = new Float32Array([...data.subarray(0, 4 * dim), ...randomSignedArray(random, 2 * dim)]);
    for (const k of [1, 7, 100]) expectExact(await index.search(queries, { k }), truth.allScores(queries), k);
  });

  test('many copies of one vector: the lowest ids win, in order, wherever the rows sit', async () => {
    const random = makeRandom(3);
    const v = randomSignedArray(random, dim);
    const others = randomSignedArray(random, 300 * dim);
    const index = new VectorIndex({ dim, dtype, chunkBytes });
    const copyIds = randomIds(random, 500, new Set()).map((id) => (id < 0n ? -id : id) + 10n ** 12n);
    index.add(others);  // ids 0..299
    for (let i = 0; i < copyIds.length; i += 50) {
      const batch = new Float32Array(50 * dim);
      for (let r = 0; r < 50; r++) batch.set(v, r * dim);
      index.add(batch, copyIds.slice(i, i + 50));
    }
    const sorted = [...copyIds].sort((a, b) => (a < b ? -1 : 1));
    let result = await index.search(v, { k: 10 });
    expect([...result.ids]).toEqual(sorted.slice(0, 10));
    index.remove(sorted.slice(0, 5));
    result = await index.search(v, { k: 10 });
    expect([...result.ids]).toEqual(sorted.slice(5, 15));
    expect(new Set(result.scores).size).toBe(1);
  });

  test('after removes and re-adds, results follow the current contents', async () => {
    const random = makeRandom(4);
    const data = clustered(random, 900, dim, 10);
    const used = new Set<bigint>();
    const ids = randomIds(random, 900, used);
    const { index, truth } = build(data, ids);
    const gone = ids.filter(() => random() < 0.35);
    index.remove(BigInt64Array.from(gone));
    truth.remove(gone);
    expect(index.size).toBe(900 - gone.length);
    const fresh = randomSignedArray(random, 150 * dim);
    const freshIds = [...gone.slice(0, 50), ...randomIds(random, 100, used)];  // old ids come back
    index.add(fresh, freshIds);
    truth.add(normalizedCopy(fresh, dim), freshIds);
    const queries = new Float32Array([...fresh.subarray(0, 3 * dim), ...randomSignedArray(random, 3 * dim)]);
    for (const k of [1, 25]) expectExact(await index.search(queries, { k }), truth.allScores(queries), k);
    index.remove(ids.filter((id) => !gone.includes(id)));
    index.remove(freshIds);
    expect(index.size).toBe(0);
    expect((await index.search(queries, { k: 3 })).k).toBe(0);
  });

  test('k larger than the index returns everything; the empty index returns nothing', async () => {
    const random = makeRandom(5);
    const index = new VectorIndex({ dim, dtype });
    const empty = await index.search(randomSignedArray(random, 2 * dim), { k: 5 });
    expect(empty).toEqual({ ids: new BigInt64Array(0), scores: new Float32Array(0), k: 0 });
    const data = randomSignedArray(random, 20 * dim);
    index.add(data);
    const truth = new Truth(dim, dtype);
    truth.add(normalizedCopy(data, dim), Array.from({ length: 20 }, (_, i) => BigInt(i)));
    const queries = randomSignedArray(random, 3 * dim);
    const result = await index.search(queries, { k: 50 });
    expect(result.k).toBe(20);
    expectExact(result, truth.allScores(queries), 50);
  });

  test('neighbors: every vector\'s k nearest others, in batches, matching search', async () => {
    const random = makeRandom(6);
    const data = clustered(random, 450, dim, 5);
    const { index, truth } = build(data, randomIds(random, 450, new Set()));
    const seen: bigint[] = [];
    for await (const chunk of index.neighbors({ k: 8, batchSize: 100 })) {
      expect(chunk.k).toBe(8);
      expect(chunk.ids.length).toBeLessThanOrEqual(100);
      seen.push(...chunk.ids);
      // The queries are the vectors as stored (float16: rounded, so not re-normalised).
      const stored = new Float32Array(chunk.ids.length * dim);
      chunk.ids.forEach((id, r) => stored.set(truth.rows.get(id)!, r * dim));
      const queries = dtype === 'float32' ? stored : float16ToFloat32Array(float32ToFloat16Array(stored));
      const table = truth.allScores(queries, false);
      expectExact({ ids: chunk.neighbors, scores: chunk.scores, k: chunk.k }, table, 8, chunk.ids);
    }
    expect(seen.length).toBe(450);
    expect(new Set(seen).size).toBe(450);
  });

  test('neighbors with excludeSelf: false lists the vector itself first (or a tied lower-id copy)', async () => {
    const random = makeRandom(7);
    const data = randomSignedArray(random, 60 * dim);
    const index = new VectorIndex({ dim, dtype, chunkBytes });
    index.add(data);
    for await (const chunk of index.neighbors({ k: 3, excludeSelf: false, batchSize: 16 })) {
      for (let r = 0; r < chunk.ids.length; r++) expect(chunk.neighbors[r * 3]).toBe(chunk.ids[r]);
    }
  });

  // The CPU kernel changes how it lays out its work at 8 or 12 queries a call (float32: AVX2,
  // AVX-512), 14 or 32 (float16), not how it sums a score: a walk's last batch on the other side of
  // that count from the full ones still scores a pair as the other side does (it once summed in
  // another order there). Last batches just below each count; batches just above the float32
  // counts; at dim 8,192 a tile holds 32 queries (1 MiB), so a batch of 100 is 4 tiles of 25; at dim
  // 13,107 20, so a batch of 21 is tiles of 10 and 11 and a last batch of 20 one larger tile.
  test.each([[33, 40, 7], [33, 40, 11], [33, 40, 15], [33, 40, 31], [33, 9, 2], [33, 13, 5], [8192, 100, 3], [13107, 21, 20]])(
    'neighbors scores a pair the same both ways, bit for bit (dim %i, batchSize %i, a last batch of %i)', async (dims, batchSize, last) => {
      const random = makeRandom(12);
      const total = 2 * batchSize + last;
      const index = new VectorIndex({ dim: dims, dtype });
      index.add(randomSignedArray(random, total * dims));
      const scores = new Map<string, number>();
      for await (const chunk of index.neighbors({ k: total - 1, batchSize })) {
        chunk.ids.forEach((id, r) => {
          for (let i = 0; i < chunk.k; i++) scores.set(`${id} ${chunk.neighbors[r * chunk.k + i]}`, chunk.scores[r * chunk.k + i]);
        });
      }
      expect(scores.size).toBe(total * (total - 1));  // every pair, both ways
      const asymmetric = [...scores].filter(([pair, score]) => scores.get(pair.split(' ').reverse().join(' ')) !== score);
      expect(asymmetric.length).toBe(0);
    });
});

describe('VectorIndex inputs', () => {
  test('encoder output { data, rows, dim } and number[] ids; default ids continue after the largest', async () => {
    const random = makeRandom(8);
    const index = new VectorIndex({ dim: 4 });
    index.add({ data: randomSignedArray(random, 8), rows: 2, dim: 4 }, [10, 20]);
    index.add(randomSignedArray(random, 8));
    const v = new Float32Array([1, 2, 3, 4]);
    index.add(v);
    expect(index.size).toBe(5);
    const result = await index.search({ data: v, rows: 1, dim: 4 }, { k: 1 });
    expect(result.ids[0]).toBe(23n);
    expect(result.scores[0]).toBeCloseTo(1, 6);
    // A removed id still counts: the next default id is one past the largest ever added.
    index.remove([23]);
    index.add(v);
    expect([index.has(23), index.has(24)]).toEqual([false, true]);
  });

  // Bit for bit: a score does not depend on how many queries share the kernel call.
  test('many queries are tiled: 300 queries of dim 1024 match one-by-one search', async () => {
    const random = makeRandom(9);
    const dim = 1024;
    const index = new VectorIndex({ dim });
    index.add(randomSignedArray(random, 120 * dim));
    const queries = randomSignedArray(random, 300 * dim);
    const all = await index.search(queries, { k: 4 });
    for (const q of [0, 255, 256, 299]) {
      const one = await index.search(queries.subarray(q * dim, (q + 1) * dim), { k: 4 });
      expect([...all.ids.subarray(q * 4, q * 4 + 4)]).toEqual([...one.ids]);
      expect([...all.scores.subarray(q * 4, q * 4 + 4)]).toEqual([...one.scores]);
    }
  });

  test.each(['float32', 'float16'] as const)('copies of one query in one search get the same scores, bit for bit, wherever the tiles cut (%s)', async (dtype) => {
    const random = makeRandom(10);
    const dim = 1024;  // 256 queries of 4 KiB fill a tile: 261 queries make more than one
    const index = new VectorIndex({ dim, dtype });
    index.add(randomSignedArray(random, 50 * dim));
    const query = randomSignedArray(random, dim);
    const queries = new Float32Array(261 * dim);
    for (let q = 0; q < 261; q++) queries.set(query, q * dim);
    const { ids, scores } = await index.search(queries, { k: 3 });
    for (let q = 1; q < 261; q++) {
      expect([...ids.subarray(q * 3, q * 3 + 3)]).toEqual([...ids.subarray(0, 3)]);
      expect([...scores.subarray(q * 3, q * 3 + 3)]).toEqual([...scores.subarray(0, 3)]);
    }
  });

  // The CPU kernel packs queries in its vector lanes from 8 or 12 queries (float32: AVX2, AVX-512),
  // 14 or 32 (float16), rows below. A dim that makes T queries fill a tile, and 2T - 1 queries:
  // tiles of T - 1 and T, one on each side of that count whenever T is the machine's.
  test.each([['float32', 8], ['float32', 12], ['float16', 14], ['float16', 32]] as const)(
    'copies of one query get the same scores when the tiles are one query apart around the packed kernel\'s count (%s, %i)', async (dtype, most) => {
      const random = makeRandom(11);
      const dim = Math.floor(262144 / most);  // 1 MiB of float32 queries a tile: `most` of them
      const index = new VectorIndex({ dim, dtype });
      index.add(randomSignedArray(random, 20 * dim));
      const query = randomSignedArray(random, dim);
      const count = 2 * most - 1;
      const queries = new Float32Array(count * dim);
      for (let q = 0; q < count; q++) queries.set(query, q * dim);
      const { scores } = await index.search(queries, { k: 20 });
      const first = [...scores.subarray(0, 20)];
      for (let q = 1; q < count; q++) expect([...scores.subarray(q * 20, (q + 1) * 20)]).toEqual(first);
    });

  test('console.log shows the public facts, not the storage', () => {
    const index = new VectorIndex({ dim: 4, metadata: { model: 'm' } });
    index.add(new Float32Array(8).fill(1));
    expect(util.inspect(index, { breakLength: Infinity }))
      .toBe(`VectorIndex { size: 2, dim: 4, dtype: 'float32', device: 'cpu', bytes: ${index.bytes}, metadata: { model: 'm' } }`);
    index.dispose();
    expect(util.inspect(index)).toBe('VectorIndex { disposed: true }');
  });

  test('size, dim, dtype, bytes; growth keeps capacity within one chunk of the contents', () => {
    const dim = 16;
    const index = new VectorIndex({ dim, chunkBytes: 64 * 1024 });
    expect(index.dtype).toBe('float32');
    expect(index.dim).toBe(16);
    const random = makeRandom(10);
    for (let i = 0; i < 100; i++) index.add(randomSignedArray(random, 97 * dim));
    const vectorBytes = index.size * (dim * 4 + 8);
    expect(index.bytes).toBeGreaterThan(vectorBytes);
    // Slack: at most one chunk of vectors + ids, and the id table (<= 48 bytes a vector).
    expect(index.bytes - vectorBytes).toBeLessThanOrEqual(64 * 1024 + 1024 * 8 + index.size * 48);
  });
});

describe('VectorIndex errors leave the index unchanged', () => {
  const dim = 8;
  async function snapshot(index: VectorIndex): Promise<SearchResult> {
    return index.search(new Float32Array([1, 0, 0, 0, 0, 0, 0, 1]), { k: 50 });
  }

  test('bad add arguments', async () => {
    const random = makeRandom(11);
    const index = new VectorIndex({ dim });
    index.add(randomSignedArray(random, 10 * dim), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const before = await snapshot(index);
    const ok = randomSignedArray(random, 2 * dim);
    const withNaN = ok.slice();
    withNaN[dim + 3] = NaN;
    const withInf = ok.slice();
    withInf[2] = Infinity;
    expect(() => index.add(randomSignedArray(random, 2 * dim + 1))).toThrow(/not a multiple of the index dim 8/);
    expect(() => index.add({ data: ok, rows: 2, dim: 7 })).toThrow(/vectors.dim is 7 but the index has dim 8/);
    expect(() => index.add({ data: ok, rows: 3, dim: 8 })).toThrow(/rows x dim is 3 x 8/);
    expect(() => index.add(withNaN)).toThrow(/vectors row 1 contains NaN/);
    expect(() => index.add(withInf)).toThrow(/vectors row 0 contains NaN or infinite/);
    expect(() => index.add(new Float32Array(0), [11])).toThrow(/1 ids but there are 0 vectors/);
    expect(() => index.add({ data: new Float32Array(0), rows: -1, dim })).toThrow(/vectors.rows must be >= 0, got -1/);
    expect(() => index.add(new Float64Array(dim) as unknown as Float32Array)).toThrow(TypeError);
    expect(() => index.add(ok, [11, 3])).toThrow(/id 3 is already in the index/);
    expect(() => index.add(ok, [12, 12])).toThrow(/contains id 12 more than once/);
    expect(() => index.add(ok, [12])).toThrow(/1 ids but there are 2 vectors/);
    expect(() => index.add(ok, [12, 1.5])).toThrow(/ids\[1\] must be a safe integer/);
    expect(() => index.add(ok, 'x' as unknown as number[])).toThrow(TypeError);
    expect(index.size).toBe(10);
    expect(await snapshot(index)).toEqual(before);
  });

  test('an empty batch (what encode([]) gives) adds nothing and finds nothing, as remove([]) removes nothing', async () => {
    const random = makeRandom(15);
    const index = new VectorIndex({ dim });
    index.add(randomSignedArray(random, 5 * dim));
    const before = await snapshot(index);
    const walk = index.neighbors({ k: 2, batchSize: 2 });
    await walk.next();
    index.add({ data: new Float32Array(0), rows: 0, dim });
    index.add(new Float32Array(0), []);
    expect((await walk.next()).value!.ids).toEqual(new BigInt64Array([2n, 3n]));  // not ended as a change would end it
    const found = await index.search({ data: new Float32Array(0), rows: 0, dim }, { k: 3 });
    expect(found).toEqual({ ids: new BigInt64Array(0), scores: new Float32Array(0), k: 3 });
    expect(index.size).toBe(5);
    expect(await snapshot(index)).toEqual(before);
    index.add(randomSignedArray(random, dim));
    expect((await index.search(randomSignedArray(random, dim), { k: 10 })).ids).toHaveLength(6);
    expect(await index.neighbors({ k: 1 }).next()).toMatchObject({ done: false });
    expect(index.size).toBe(6);
    // the ids counted up from 5 as before: the empty adds took none
    expect((await index.search(new Float32Array(index.dim), { k: 6 })).ids.slice().sort()).toEqual(new BigInt64Array([0n, 1n, 2n, 3n, 4n, 5n]));
  });

  test.each(['float32', 'float16'] as const)('get(id) gives the stored unit vector (%s), ids() every id, after removes moved rows and after a save and mmap load', async (dtype) => {
    const random = makeRandom(17);
    const index = new VectorIndex({ dim, dtype, chunkBytes: 4 * dim * (dtype === 'float32' ? 4 : 2) });  // 4 rows a chunk
    const data = randomSignedArray(random, 10 * dim);
    const ids = [10n, -3n, 2n ** 60n, 7n, 8n, 9n, 11n, 12n, 13n, 14n];
    index.add(data, ids);
    index.remove([-3n, 8n]);  // the last rows move into their holes
    const unit = normalizedCopy(data, dim);
    const stored = dtype === 'float32' ? unit : float16ToFloat32Array(float32ToFloat16Array(unit));
    const expectStored = (from: VectorIndex) => ids.forEach((id, r) => {
      if (id === -3n || id === 8n) expect(from.get(id)).toBeUndefined();
      else expect(maxAbsDifference(from.get(id)!, stored.subarray(r * dim, (r + 1) * dim))).toBeLessThanOrEqual(dtype === 'float32' ? 1e-7 : 2 ** -11);
    });
    expectStored(index);
    expect(index.ids()).toEqual(new BigInt64Array([10n, 14n, 2n ** 60n, 7n, 13n, 9n, 11n, 12n]));  // 14 and 13 moved into the holes
    const copy = index.get(7n)!;
    copy.fill(0);  // a copy: the index keeps its own
    expect(index.get(7)![0]).not.toBe(0);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-get-')), 'i.cmbd');
    await index.save(file);
    const loaded = await VectorIndex.load(file, { mmap: true });
    expectStored(loaded);
    expect(loaded.ids()).toEqual(index.ids());
    const nearest = await loaded.search(loaded.get(2n ** 60n)!, { k: 1 });
    expect(nearest.ids).toEqual(new BigInt64Array([2n ** 60n]));
    loaded.dispose();
    fs.rmSync(path.dirname(file), { recursive: true });
    expect(() => index.get(1.5)).toThrow(new TypeError('id must be a safe integer or a 64-bit bigint, got 1.5'));
  });

  test('has(id) follows adds and removes; a bad id is a TypeError', () => {
    const index = new VectorIndex({ dim });
    const random = makeRandom(16);
    index.add(randomSignedArray(random, 3 * dim), [5n, 7, -(2n ** 63n)]);
    expect([index.has(5), index.has(5n), index.has(7n), index.has(-(2n ** 63n)), index.has(6), index.has(0)]).toEqual([true, true, true, true, false, false]);
    index.remove([5]);
    expect([index.has(5), index.has(7)]).toEqual([false, true]);
    expect(() => index.has(1.5)).toThrow(new TypeError('id must be a safe integer or a 64-bit bigint, got 1.5'));
    expect(() => index.has(2n ** 63n)).toThrow(new TypeError(`id must be a safe integer or a 64-bit bigint, got ${2n ** 63n}n`));
    expect(() => index.has('7' as unknown as number)).toThrow(new TypeError('id must be a safe integer or a 64-bit bigint, got "7"'));
    index.dispose();
    expect(() => index.has(7)).toThrow('VectorIndex.has: the index has been disposed');
  });

  test.each(['float32', 'float16'] as const)('a NaN met while %s rows are written into storage changes nothing', async (dtype) => {
    const random = makeRandom(14);
    const make = () => new VectorIndex({ dim, dtype, chunkBytes: 10 * dim * (dtype === 'float32' ? 4 : 2) });  // 10 rows a chunk
    const [index, twin] = [make(), make()];
    const both = (vectors: Float32Array) => { index.add(vectors); twin.add(vectors); };
    both(randomSignedArray(random, 3 * dim));
    both(randomSignedArray(random, dim));  // 4 rows in a chunk with room for 6
    const before = await snapshot(index);
    const bytes = index.bytes;
    const inPlace = randomSignedArray(random, 2 * dim);  // fits the last chunk: written in place
    inPlace[dim + 2] = NaN;
    expect(() => index.add(inPlace)).toThrow(new RangeError('vectors row 1 contains NaN or infinite values'));
    const spread = randomSignedArray(random, 45 * dim);  // a grown copy of the last chunk, then new chunks
    spread[33 * dim + 5] = -Infinity;
    expect(() => index.add(spread)).toThrow(new RangeError('vectors row 33 contains NaN or infinite values'));
    expect(index.size).toBe(4);
    expect(index.bytes).toBe(bytes);
    expect(await snapshot(index)).toEqual(before);
    both(randomSignedArray(random, 2 * dim));
    both(randomSignedArray(random, 30 * dim));
    expect(await snapshot(index)).toEqual(await snapshot(twin));
    expect(index.bytes).toBe(twin.bytes);
  });

  test('out of memory during add', async () => {
    const random = makeRandom(12);
    const index = new VectorIndex({ dim, chunkBytes: 1024 });
    index.add(randomSignedArray(random, 40 * dim));
    const before = await snapshot(index);
    const spy = jest.spyOn(IdTable.prototype, 'withRoomFor').mockImplementation(() => {
      throw new RangeError('Array buffer allocation failed');
    });
    try {
      expect(() => index.add(randomSignedArray(random, 100 * dim))).toThrow(/cannot allocate memory for 100 more vectors.*unchanged/);
    } finally {
      spy.mockRestore();
    }
    expect(index.size).toBe(40);
    expect(await snapshot(index)).toEqual(before);
    index.add(randomSignedArray(random, 100 * dim));  // and it still works
    expect(index.size).toBe(140);
  });

  test('an add past 2^29 vectors (the id table\'s limit) is a RangeError naming it, and changes nothing', async () => {
    const index = new VectorIndex({ dim: 1 });
    index.add(new Float32Array([1, -1, 2]));
    const before = await snapshot(index);
    // A fake size, as if 2^29 - 1 vectors were stored: the check comes before any allocation.
    const internals = index as unknown as { count: number };
    internals.count = 2 ** 29 - 1;
    expect(() => index.add(new Float32Array([1, 2]))).toThrow(
      new RangeError('VectorIndex.add: 2 more vectors would make 536870913, but an index holds at most 536870912 (2^29) vectors'));
    internals.count = 3;
    expect(await snapshot(index)).toEqual(before);
    // The limit is the table's: one more entry would need 2^31 slots of 3 int32 words, past a typed array's 2^32 elements.
    expect(MAX_ENTRIES).toBe(2 ** 29);
    expect(() => new IdTable(MAX_ENTRIES + 1)).toThrow(/Invalid typed array length: 6442450944/);
  });

  test('bad remove, search and constructor arguments', async () => {
    const random = makeRandom(13);
    const index = new VectorIndex({ dim });
    index.add(randomSignedArray(random, 5 * dim));
    const before = await snapshot(index);
    expect(() => index.remove([1, 99])).toThrow(/id 99 is not in the index/);
    expect(() => index.remove([1, 1])).toThrow(/more than once/);
    expect(index.size).toBe(5);
    expect(await snapshot(index)).toEqual(before);
    await expect(index.search(randomSignedArray(random, dim), { k: 0 })).rejects.toThrow(/options.k must be >= 1/);
    await expect(index.search(randomSignedArray(random, dim), { k: 2.5 })).rejects.toThrow(/options.k must be an integer/);
    await expect(index.search(randomSignedArray(random, dim), undefined as unknown as { k: number })).rejects.toThrow(TypeError);
    await expect(index.search(randomSignedArray(random, dim + 1), { k: 1 })).rejects.toThrow(/queries has 9 values/);
    await expect(index.search(new Float32Array(dim).fill(NaN), { k: 1 })).rejects.toThrow(/queries row 0 contains NaN/);
    expect(() => index.neighbors({ k: 0 })).toThrow(/options.k must be >= 1/);  // when called, not at the first step
    expect(() => index.neighbors({ k: 1, batchSize: -1 })).toThrow(/options.batchSize/);
    expect(() => new VectorIndex({ dim: 0 })).toThrow(/options.dim must be >= 1/);
    expect(() => new VectorIndex({ dim: 4, dtype: 'int8' as 'float32' })).toThrow(/options.dtype must be/);
    // @ts-expect-error: a device name the type refuses too (plain JavaScript gets the TypeError)
    expect(() => new VectorIndex({ dim: 4, device: 'tpu' })).toThrow(/options.device must be 'cpu', 'cuda'/);
  });

  test('a neighbors() walk whose chunk would pass 2^32 results names the largest batchSize for that k', () => {
    const index = new VectorIndex({ dim: 1 });
    index.add(new Float32Array(70000).fill(1));
    // 70,000 x 70,000 (k + 1 searched, at most the size) = 4.9e9 results; 61,356 x 70,000 = 4,294,920,000 fit.
    expect(() => index.neighbors({ k: 70000, batchSize: 70000 })).toThrow(new RangeError('options.batchSize must be <= 61356 ' +
      'for k = 70000 on 70000 vectors (a chunk\'s batchSize x 70000 results are one array, of at most 2^32), got 70000'));
    // With excludeSelf each vector's k + 1 nearest are searched (itself included): 65,075 x 66,001 do not fit, 65,075 x 66,000 do.
    expect(() => index.neighbors({ k: 66000, batchSize: 65075 })).toThrow(/must be <= 65074 for k = 66000 .* x 66001 results/);
    void index.neighbors({ k: 66000, excludeSelf: false, batchSize: 65075 }).return();
    // Not started: the largest batchSize named is accepted.
    void index.neighbors({ k: 70000, batchSize: 61356 }).return();
  });

  test('a neighbors() walk dropped halfway does not lock the index; a change between steps ends the walk', async () => {
    const random = makeRandom(15);
    const index = new VectorIndex({ dim });
    index.add(randomSignedArray(random, 30 * dim));
    const dropped = index.neighbors({ k: 2, batchSize: 10 });
    await dropped.next();  // the caller stops pulling and never calls return()
    index.remove([]);  // changes nothing: the walk goes on
    expect((await dropped.next()).value!.ids[0]).toBe(10n);
    index.add(randomSignedArray(random, dim), [100n]);
    index.remove([3]);
    await expect(dropped.next()).rejects.toThrow(/the index changed \(add, remove or dispose\) during the walk/);
    const walk = index.neighbors({ k: 2, batchSize: 10 });
    const first = await walk.next();
    expect(Array.from(first.value!.ids)).toEqual([0n, 1n, 2n, 100n, 4n, 5n, 6n, 7n, 8n, 9n]);  // the last row filled the hole
    index.dispose();  // possible while the walk waits between steps
    await expect(walk.next()).rejects.toThrow(/changed/);
  });

  test('changes while a search runs are refused; a disposed index refuses everything', async () => {
    const random = makeRandom(14);
    const index = new VectorIndex({ dim });
    index.add(randomSignedArray(random, 50 * dim));
    const running = index.search(randomSignedArray(random, dim), { k: 3 });
    expect(() => index.add(randomSignedArray(random, dim))).toThrow(/still running/);
    expect(() => index.remove([0])).toThrow(/still running/);
    expect(() => index.dispose()).toThrow(/still running/);
    await running;
    const walk = index.neighbors({ k: 2, batchSize: 10 });
    const step = walk.next();  // a step holds the index while it searches
    expect(() => index.add(randomSignedArray(random, dim))).toThrow(/still running/);
    await step;
    index.remove([0]);
    index.dispose();
    expect(index.bytes).toBe(0);
    expect(() => index.add(randomSignedArray(random, dim))).toThrow(/disposed/);
    await expect(index.search(randomSignedArray(random, dim), { k: 1 })).rejects.toThrow(/disposed/);
  });
});

const cuda = devices().cuda;
const describeGpu = cuda.length > 0 ? describe : describe.skip;
if (cuda.length === 0) {
  // eslint-disable-next-line no-console
  console.log(`VectorIndex CUDA tests skipped: no CUDA device (${devices().cudaUnavailableReason})`);
}

describeGpu('VectorIndex on CUDA', () => {
  afterEach(() => jest.restoreAllMocks());  // the upload spies

  test('float16 on the device matches the reference, after removes and re-adds', async () => {
    const dim = 64;
    const random = makeRandom(15);
    const data = clustered(random, 3000, dim, 8);
    const ids = randomIds(random, 3000, new Set());
    const index = new VectorIndex({ dim, device: 'cuda', chunkBytes: 500 * dim * 2 });
    expect(index.dtype).toBe('float16');
    index.add(data, ids);
    const truth = new Truth(dim, 'float16', 'float16');
    truth.add(normalizedCopy(data, dim), ids);
    const queries = new Float32Array([...data.subarray(0, 2 * dim), ...randomSignedArray(random, 2 * dim)]);
    expectExact(await index.search(queries, { k: 20 }), truth.allScores(queries), 20);
    index.remove(ids.slice(0, 1000));
    truth.remove(ids.slice(0, 1000));
    expectExact(await index.search(queries, { k: 20 }), truth.allScores(queries), 20);
    index.dispose();
  });

  test('searches between small adds and removes upload only the rows written since, and stay exact', async () => {
    const dim = 32;
    const random = makeRandom(16);
    const index = new VectorIndex({ dim, device: 'cuda', chunkBytes: 400 * dim * 2 });
    const truth = new Truth(dim, 'float16', 'float16');
    const queries = randomSignedArray(random, 3 * dim);
    const first = clustered(random, 1000, dim, 8);  // chunks of 400, 400 and 200 rows (room for 200)
    index.add(first);
    truth.add(normalizedCopy(first, dim), Array.from({ length: 1000 }, (_, i) => BigInt(i)));
    const create = jest.spyOn(CudaMatrix, 'createAsync');
    const setRows = jest.spyOn(CudaMatrix.prototype, 'setRowsAsync');
    try {
      expectExact(await index.search(queries, { k: 10 }), truth.allScores(queries), 10);
      expect(create).toHaveBeenCalledTimes(3);
      let nextId = 1000n;
      for (let step = 0; step < 6; step++) {
        const added = clustered(random, 5, dim, 2);
        const addedIds = Array.from({ length: 5 }, () => nextId++);
        index.add(added, addedIds);
        truth.add(normalizedCopy(added, dim), addedIds);
        const removed = [BigInt(step * 37), BigInt(step * 37 + 500)];
        index.remove(removed);
        truth.remove(removed);
        setRows.mockClear();
        expectExact(await index.search(queries, { k: 10 }), truth.allScores(queries), 10);
        // The 2 rows moved into the holes and the last chunk's 3 new rows (5 added, 2 moved away); at
        // step 0 the last chunk outgrew its room and was made again.
        const uploaded = setRows.mock.calls.reduce((sum, [, data]) => sum + data.length / dim, 0);
        expect(uploaded).toBe(step === 0 ? 2 : 5);
      }
      expect(create).toHaveBeenCalledTimes(4);
    } finally {
      index.dispose();
    }
  });

  test('concurrent searches of a fresh index upload each chunk once, and rows written since once', async () => {
    const dim = 16;
    const random = makeRandom(17);
    const index = new VectorIndex({ dim, device: 'cuda', chunkBytes: 300 * dim * 2 });
    const truth = new Truth(dim, 'float16', 'float16');
    const data = clustered(random, 700, dim, 6);  // chunks of 300, 300 and 100 rows
    index.add(data);
    truth.add(normalizedCopy(data, dim), Array.from({ length: 700 }, (_, i) => BigInt(i)));
    const create = jest.spyOn(CudaMatrix, 'createAsync');
    const setRows = jest.spyOn(CudaMatrix.prototype, 'setRowsAsync');
    try {
      const queries = [1, 2, 3, 4].map(() => randomSignedArray(random, 2 * dim));
      const check = (found: SearchResult[]) => found.forEach((f, i) => expectExact(f, truth.allScores(queries[i]), 7));
      check(await Promise.all(queries.map((q) => index.search(q, { k: 7 }))));
      expect(create).toHaveBeenCalledTimes(3);  // each search saw no device copy: without a shared upload, 12
      expect(setRows).not.toHaveBeenCalled();
      const added = clustered(random, 4, dim, 2);
      index.add(added, [1000n, 1001n, 1002n, 1003n]);  // the last chunk outgrows its 100 rows: made again
      truth.add(normalizedCopy(added, dim), [1000n, 1001n, 1002n, 1003n]);
      index.remove([5n]);  // the last row moves into row 5 of the first chunk
      truth.remove([5n]);
      check(await Promise.all(queries.map((q) => index.search(q, { k: 7 }))));
      expect(setRows.mock.calls.map(([first, rows]) => [first, rows.length / dim])).toEqual([[5, 1]]);
      expect(create).toHaveBeenCalledTimes(4);
    } finally {
      index.dispose();
    }
  });

  test('a failed upload (device copy or rows written since) leaves the index searchable: the next search uploads again', async () => {
    const dim = 16;
    const random = makeRandom(18);
    const index = new VectorIndex({ dim, device: 'cuda', chunkBytes: 300 * dim * 2 });
    const truth = new Truth(dim, 'float16', 'float16');
    // Chunks of 300 and 120 rows, the second with room for 200 (it grew from 100 by doubling).
    for (const [from, n] of [[0, 400], [400, 20]]) {
      const data = clustered(random, n, dim, 6);
      const ids = Array.from({ length: n }, (_, i) => BigInt(from + i));
      index.add(data, ids);
      truth.add(normalizedCopy(data, dim), ids);
    }
    const queries = randomSignedArray(random, 3 * dim);
    const create = jest.spyOn(CudaMatrix, 'createAsync').mockRejectedValueOnce(new Error('out of memory (test)'));
    await expect(index.search(queries, { k: 5 })).rejects.toThrow('out of memory (test)');
    expectExact(await index.search(queries, { k: 5 }), truth.allScores(queries), 5);
    expect(create).toHaveBeenCalledTimes(3);  // chunk 0 twice, chunk 1 once
    create.mockRestore();
    // Rows appended to the second chunk, and a row moved by a remove into each chunk: uploads of
    // [3], then [10] and [120, 148) of the second chunk. The second upload fails.
    const added = clustered(random, 30, dim, 3);
    const addedIds = Array.from({ length: 30 }, (_, i) => BigInt(600 + i));
    index.add(added, addedIds);
    truth.add(normalizedCopy(added, dim), addedIds);
    index.remove([3n, 310n]);
    truth.remove([3n, 310n]);
    const original = CudaMatrix.prototype.setRowsAsync;
    const uploads: number[][] = [];
    jest.spyOn(CudaMatrix.prototype, 'setRowsAsync').mockImplementation(function (this: CudaMatrix, first, rows) {
      uploads.push([first, rows.length / dim]);
      return uploads.length === 2 ? Promise.reject(new Error('upload failed (test)')) : original.call(this, first, rows);
    });
    try {
      await expect(index.search(queries, { k: 5 })).rejects.toThrow('upload failed (test)');
      expectExact(await index.search(queries, { k: 5 }), truth.allScores(queries), 5);
      // The first chunk's upload succeeded and is not repeated; the second chunk's rows all are.
      expect(uploads).toEqual([[3, 1], [10, 1], [10, 1], [120, 28]]);
      index.remove([7n]);  // nothing in flight: the index can change again
    } finally {
      index.dispose();
    }
  });

  test('random runs of adds, removes (emptying chunks), saves and reloads, each followed by a search, stay exact', async () => {
    // Chunks of 16 rows: adds grow the last chunk or make new ones, removes of up to all the vectors
    // pop emptied chunks, and a reload makes chunks exactly full that the next add regrows.
    const dim = 8;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-cuda-runs-'));
    try {
      for (let seed = 1; seed <= 4; seed++) {
        const random = makeRandom(seed);
        const options = { device: 'cuda', chunkBytes: 16 * dim * 2 } as const;
        let index = new VectorIndex({ dim, ...options });
        const truth = new Truth(dim, 'float16', 'float16');
        let nextId = 0n;
        for (let step = 0; step < 50; step++) {
          const r = random();
          if (r < 0.4 || truth.rows.size === 0) {
            const data = randomSignedArray(random, (1 + Math.floor(random() * 20)) * dim);
            const ids = Array.from({ length: data.length / dim }, () => nextId++);
            index.add(data, ids);
            truth.add(normalizedCopy(data, dim), ids);
          } else if (r < 0.85) {
            const present = [...truth.rows.keys()];
            const n = 1 + Math.floor(random() * (random() < 0.2 ? present.length : Math.min(present.length, 12)));
            const removed = [...new Set(Array.from({ length: n }, () => present[Math.floor(random() * present.length)]))];
            index.remove(removed);
            truth.remove(removed);
          } else {
            const file = path.join(dir, 'index.cmbd');
            await index.save(file);
            index.dispose();
            index = await VectorIndex.load(file, options);
          }
          if (truth.rows.size === 0) continue;
          const queries = randomSignedArray(random, 3 * dim);
          const k = 1 + Math.floor(random() * 10);
          expectExact(await index.search(queries, { k }), truth.allScores(queries), k);
        }
        index.dispose();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('load makes the device copies before it returns (the first search uploads nothing); a failed one fails the load and frees those made', async () => {
    const dim = 16;
    const random = makeRandom(19);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-cuda-load-'));
    const file = path.join(dir, 'index.cmbd');
    const options = { device: 'cuda', chunkBytes: 300 * dim * 2 } as const;  // chunks of 300, 300 and 100 rows
    const data = clustered(random, 700, dim, 6);
    const saved = new VectorIndex({ dim, dtype: 'float16', chunkBytes: options.chunkBytes });
    saved.add(data);
    await saved.save(file);
    const truth = new Truth(dim, 'float16', 'float16');
    truth.add(normalizedCopy(data, dim), Array.from({ length: 700 }, (_, i) => BigInt(i)));
    const createAsync = CudaMatrix.createAsync.bind(CudaMatrix);
    const create = jest.spyOn(CudaMatrix, 'createAsync');
    const setRows = jest.spyOn(CudaMatrix.prototype, 'setRowsAsync');
    const free = jest.spyOn(CudaMatrix.prototype, 'free');
    try {
      const progress: IndexFileProgress[] = [];
      const index = await VectorIndex.load(file, { ...options, onProgress: (p) => progress.push(p) });
      expect(create).toHaveBeenCalledTimes(3);
      // The file's bytes, then each chunk's device copy (dim 16 float16: 32 bytes a row).
      const fileSize = fs.statSync(file).size;
      expect(progress.filter((p) => p.stage === 'file').pop()).toEqual({ stage: 'file', bytes: fileSize, totalBytes: fileSize });
      expect(progress.filter((p) => p.stage === 'device')).toEqual([0, 300, 600, 700].map((rows) => ({ stage: 'device', bytes: rows * 32, totalBytes: 700 * 32 })));
      expect(progress.findIndex((p) => p.stage === 'device')).toBe(progress.length - 4);
      create.mockClear();
      const queries = randomSignedArray(random, 3 * dim);
      expectExact(await index.search(queries, { k: 7 }), truth.allScores(queries), 7);
      expect([create.mock.calls.length, setRows.mock.calls.length]).toEqual([0, 0]);
      index.dispose();

      free.mockClear();
      let calls = 0;
      create.mockImplementation((...args) => (++calls === 3 ? Promise.reject(new Error('out of memory (test)')) : createAsync(...args)));
      await expect(VectorIndex.load(file, options)).rejects.toThrow('out of memory (test)');
      expect(free).toHaveBeenCalledTimes(2);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('cuda on a machine without a GPU is a clear error', () => {
  if (cuda.length > 0) return;  // covered by the CUDA tests there
  expect(() => new VectorIndex({ dim: 4, device: 'cuda' })).toThrow(/no CUDA device is available/);
});

test('query batches are cut into the fewest tiles of sizes within one of each other', () => {
  for (const most of [1, 2, 3, 31, 63, 64, 341]) {
    for (let count = 1; count <= 20 * most + 3; count += most > 60 ? 7 : 1) {
      const tiles = evenTiles(count, most);
      expect(tiles.length).toBe(Math.ceil(count / most));
      expect(tiles[0][0]).toBe(0);
      expect(tiles[tiles.length - 1][1]).toBe(count);
      const sizes = tiles.map(([a, b], t) => {
        if (t > 0) expect(a).toBe(tiles[t - 1][1]);
        return b - a;
      });
      expect(Math.max(...sizes)).toBeLessThanOrEqual(most);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  }
  expect(evenTiles(3907, 63).map(([a, b]) => b - a)).not.toContain(1);  // fixed steps of 63 left a last tile of 1
});

test('IdTable (id -> row) agrees with a Map through random inserts, updates, deletes and growth', () => {
  const random = makeRandom(16);
  let table = new IdTable();
  const model = new Map<bigint, number>();
  const pool = randomIds(random, 3000, new Set());
  for (let step = 0; step < 30000; step++) {
    const id = pool[Math.floor(random() * pool.length)];
    if (random() < 0.35) {
      table.delete(id);
      model.delete(id);
    } else {
      table = table.withRoomFor(model.size + 1);
      table.set(id, step);
      model.set(id, step);
    }
  }
  expect(table.size).toBe(model.size);
  for (const id of pool) expect(table.get(id)).toBe(model.get(id) ?? -1);
});

test('IdTable.insertNew, firstPresent and maxId read ids as halves: negative, large and sign-boundary ids as bigints give', () => {
  const random = makeRandom(17);
  const edges = [0n, -1n, 1n, (1n << 31n) - 1n, 1n << 31n, (1n << 32n) - 1n, 1n << 32n, -(1n << 32n), (1n << 63n) - 1n, -(1n << 63n)];
  const ids = BigInt64Array.from([...edges, ...randomIds(random, 500, new Set(edges))]);
  const table = new IdTable(ids.length);
  expect(table.insertNew(ids.subarray(0, 300), 0)).toBe(-1);
  expect(table.firstPresent(ids.subarray(300))).toBe(-1);
  expect(table.firstPresent(BigInt64Array.from([ids[400], ids[7]]))).toBe(1);
  const withRepeat = BigInt64Array.from([ids[300], ids[301], ids[5], ids[302]]);
  expect(table.insertNew(withRepeat, 300)).toBe(2);  // stops at the id already present
  expect([table.get(ids[300]), table.get(ids[301]), table.get(ids[302]), table.get(ids[5])]).toEqual([300, 301, -1, 5]);
  expect(table.size).toBe(302);
  for (let i = 0; i < 300; i++) expect(table.get(ids[i])).toBe(i);
  const byValue = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
  for (const sample of [ids, ids.subarray(1, 4), ids.subarray(9, 10), ids.subarray(10), BigInt64Array.from([-5n, -3n, -4n]),
    BigInt64Array.from([1n, (1n << 32n) - 1n, 1n << 31n])]) {
    expect(maxId(sample)).toBe([...sample].sort(byValue)[sample.length - 1]);
  }
  expect(maxId(new BigInt64Array(0))).toBe(-(1n << 63n));
});

test('IdTable: ids chosen to share one home slot under the unseeded hash do not pile up in one probe run', () => {
  // The inverse of murmur3's finaliser gives, for any hi, the lo whose unseeded home is h.
  const inverse = (a: number) => { let x = a; for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(a, x)); return x; };
  const unmix = (h: number) => {
    h ^= h >>> 16;
    h = Math.imul(h, inverse(0xc2b2ae35));
    h ^= (h >>> 13) ^ (h >>> 26);
    h = Math.imul(h, inverse(0x85ebca6b));
    return h ^ (h >>> 16);
  };
  const n = 20000;
  const table = new IdTable(n);
  for (let i = 0; i < n; i++) {
    const hi = i + 1;
    const lo = unmix((i & 15) << 27) ^ Math.imul(hi, 0x9e3779b1);  // home 0 in any table up to 2^27 slots
    table.set((BigInt(hi) << 32n) | BigInt(lo >>> 0), i);
  }
  const slots = table['slots'] as Int32Array;  // [low, high, position] a slot
  let longest = 0;
  for (let slot = 0, run = 0; slot < slots.length / 3; slot++) {
    run = slots[slot * 3 + 2] === -1 ? 0 : run + 1;
    longest = Math.max(longest, run);
  }
  expect(longest).toBeLessThan(n / 10);  // unseeded: one run of all 20,000 (each insert probed them all)
});

test('a query that ties every row (zero vector) returns the lowest ids, also across chunks', async () => {
  const dim = 8, n = 5000;
  const index = new VectorIndex({ dim, chunkBytes: 1000 * dim * 4 });
  const vectors = new Float32Array(n * dim).map((_, i) => ((i * 7919) % 13) - 6 + 0.5);
  index.add(vectors, BigInt64Array.from({ length: n }, (_, i) => BigInt(n - i)));  // ids descend with rows
  const { ids, scores } = await index.search(new Float32Array(dim), { k: 6 });
  expect(Array.from(ids)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
  expect(Array.from(scores)).toEqual([0, 0, 0, 0, 0, 0]);
});

test('chunks on huge pages (4 MiB and more): growth copies, removes and dispose return memory, results stay exact', async () => {
  const random = makeRandom(4242);
  const dim = 256;
  const index = new VectorIndex({ dim, chunkBytes: 8 * 1024 * 1024 });  // 8,192 rows a chunk
  const release = jest.spyOn(fileBindings(), 'releaseMapping');
  const truth = new Truth(dim);
  let next = 0n;
  for (let batch = 0; batch < 20; batch++) {  // 700-row adds: each chunk grows by copies, 4 MiB -> 8 MiB
    const data = normalizedCopy(randomSignedArray(random, 700 * dim), dim);
    const ids = Array.from({ length: 700 }, () => next++);
    index.add(data, BigInt64Array.from(ids));
    truth.add(data, ids);
  }
  const afterAdds = release.mock.calls.length;
  expect(afterAdds).toBeGreaterThanOrEqual(1);  // a huge-page capacity replaced by a larger one
  const doomed = Array.from({ length: 6000 }, (_, i) => BigInt(14000 - 1 - i));  // empties the last chunk
  index.remove(BigInt64Array.from(doomed));
  truth.remove(doomed);
  expect(index.size).toBe(8000);
  const afterRemove = release.mock.calls.length;
  expect(afterRemove).toBe(afterAdds + 1);
  const queries = randomSignedArray(random, 20 * dim);
  expectExact(await index.search(queries, { k: 15 }), truth.allScores(queries), 15);
  index.dispose();
  expect(release.mock.calls.length).toBe(afterRemove + 1);  // the one chunk left
  release.mockRestore();
  await expect(index.search(queries, { k: 1 })).rejects.toThrow(/disposed/);
});

test('an add whose allocation fails releases the huge-page chunks it had made at once, not at a GC', () => {
  const dim = 1024;
  const index = new VectorIndex({ dim, chunkBytes: 4 * 1024 * 1024 });  // 1,024 rows a chunk
  const bindings = fileBindings();
  const original = bindings.allocateLargePages.bind(bindings);
  const allocate = jest.spyOn(bindings, 'allocateLargePages').mockImplementation((bytes: number) => {
    if (allocate.mock.calls.length === 3) throw new Error('out of memory (test)');
    return original(bytes);
  });
  const release = jest.spyOn(bindings, 'releaseMapping');
  try {
    expect(() => index.add(new Float32Array(3 * 1024 * dim).fill(1))).toThrow(/cannot allocate memory for 3072 more vectors \(out of memory \(test\)\)/);
    const made = allocate.mock.results.filter((r) => r.type === 'return').map((r) => r.value as ArrayBuffer);
    expect(made).toHaveLength(2);
    expect(release.mock.calls.map(([buffer]) => made.indexOf(buffer))).toEqual([0, 1]);
  } finally {
    allocate.mockRestore();
    release.mockRestore();
  }
  expect(index.size).toBe(0);
});

test('huge-page buffers can be allocated and released from several worker threads at once, and the addon stays loaded after them', () => {
  const script = path.join(__dirname, 'helpers', 'large-pages-workers.js');
  expect(execFileSync(process.execPath, [script, addonPath]).toString()).toBe('ok');
});

test('releaseMapping detaches the buffer (its views become empty) and refuses foreign or released buffers', () => {
  const bindings = fileBindings();
  const buffer = bindings.allocateLargePages(4 * 1024 * 1024);
  const view = new Float32Array(buffer);
  view.fill(3);
  expect(view[12345]).toBe(3);
  bindings.releaseMapping(buffer);
  expect(view.length).toBe(0);
  expect(buffer.byteLength).toBe(0);
  expect(() => bindings.releaseMapping(buffer)).toThrow('not a live buffer');
  expect(() => bindings.releaseMapping(new ArrayBuffer(16))).toThrow('not a live buffer');
});

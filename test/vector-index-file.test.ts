// VectorIndex persistence: round trips (read and mmap), the checksum, damaged files, crash safety.
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { removeTrackedTemporaries, temporaryPath, trackTemporaries } from '../lib/atomic-file';
import { float16ToFloat32Array, float32ToFloat16Array } from '../lib/float16';
import { Checksum, encodeHeader, fileBindings, layoutOf, P1, P2, P3 } from '../lib/index/format';
import { UNIT_NORM_SLACK } from '../lib/kernels';
import { IndexFileProgress, VectorIndex } from '../lib/vector-index';
import { makeRandom, randomSignedArray } from './helpers/random';

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-index-')); });
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

const dim = 24;

async function sample(dtype: 'float32' | 'float16', seed: number): Promise<VectorIndex> {
  const random = makeRandom(seed);
  const index = new VectorIndex({ dim, dtype, chunkBytes: 100 * dim * 4 });
  index.add(randomSignedArray(random, 700 * dim));
  index.remove([3, 150, 699]);
  index.add(randomSignedArray(random, 40 * dim), Array.from({ length: 40 }, (_, i) => -1000 - i));
  return index;
}

const queries = randomSignedArray(makeRandom(99), 5 * dim);

describe.each([
  ['float32', false], ['float32', true], ['float16', false], ['float16', true],
] as const)('save and load (%s, mmap %s)', (dtype, mmap) => {
  test('the loaded index answers exactly as the saved one, and keeps working', async () => {
    const index = await sample(dtype, 1);
    const file = path.join(dir, `round-${dtype}-${mmap}.cmbd`);
    await index.save(file);
    const loaded = await VectorIndex.load(file, { mmap, chunkBytes: 100 * dim * 4 });
    expect(loaded.size).toBe(index.size);
    expect(loaded.dtype).toBe(dtype);
    expect(loaded.dim).toBe(dim);
    expect(await loaded.search(queries, { k: 30 })).toEqual(await index.search(queries, { k: 30 }));
    // Changes after load (on a mapping: copied out of it) match the same changes to the original.
    for (const target of [index, loaded]) {
      target.remove([0, 500, -1005]);
      target.add(queries.subarray(0, 2 * dim));  // default ids continue after the largest: 700, 701
    }
    expect(await loaded.search(queries, { k: 30 })).toEqual(await index.search(queries, { k: 30 }));
    // The file itself is untouched by changes to a mapped index.
    const again = await VectorIndex.load(file);
    expect(again.size).toBe(index.size - 2 + 3);
  });
});

test('an empty index round-trips', async () => {
  const file = path.join(dir, 'empty.cmbd');
  await new VectorIndex({ dim: 5 }).save(file);
  for (const mmap of [false, true]) {
    const loaded = await VectorIndex.load(file, { mmap });
    expect(loaded.size).toBe(0);
    expect(loaded.dim).toBe(5);
    expect((await loaded.search(new Float32Array(5).fill(1), { k: 3 })).k).toBe(0);
  }
});

describe('mmap', () => {
  const mappingsOf = (file: string) => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.endsWith(file)).length;
  // A released mapping is unmapped by the addon's own thread, at once but after the call returns.
  const mappingsSettledAt = async (file: string, count: number) => {
    for (let waitedMs = 0; mappingsOf(file) !== count && waitedMs < 5000; waitedMs += 5) await new Promise((resolve) => setTimeout(resolve, 5));
    return mappingsOf(file);
  };

  test('each chunk maps its own range of the file; dispose unmaps them at once (no GC needed to free a replaced file)', async () => {
    const index = await sample('float32', 3);
    const file = path.join(dir, 'unmapped.cmbd');
    await index.save(file);
    const loaded = await VectorIndex.load(file, { mmap: true, chunkBytes: 100 * dim * 4 });
    expect(mappingsOf(file)).toBe(Math.ceil(index.size / 100));
    expect(await loaded.search(queries, { k: 5 })).toEqual(await index.search(queries, { k: 5 }));
    loaded.remove([0]);  // its chunk is copied out of the file, and that chunk's mapping released
    expect(await mappingsSettledAt(file, Math.ceil(index.size / 100) - 1)).toBe(Math.ceil(index.size / 100) - 1);
    loaded.dispose();
    expect(await mappingsSettledAt(file, 0)).toBe(0);
    await expect(VectorIndex.load(file, { chunkBytes: 2 ** 32 + 1 })).rejects.toThrow('options.chunkBytes must be at most 4294967296 (4 GiB)');
  });

  test('every chunk is mapped before the pass checksums its vectors (mapped one at a time between the awaits, each set off a GC)', async () => {
    const index = await sample('float32', 4);
    const file = path.join(dir, 'mapped-first.cmbd');
    await index.save(file);
    const bindings = fileBindings();
    const map = jest.spyOn(bindings, 'mapFileRange');
    const update = jest.spyOn(bindings, 'checksumUpdate');
    try {
      const loaded = await VectorIndex.load(file, { mmap: true, chunkBytes: 100 * dim * 4 });
      expect(await loaded.search(queries, { k: 5 })).toEqual(await index.search(queries, { k: 5 }));
      loaded.dispose();
      const mapped = map.mock.results.map((r) => r.value as ArrayBuffer);
      const firstMappedSum = update.mock.calls.findIndex(([args]) => mapped.includes(args.bytes.buffer as ArrayBuffer));
      expect(mapped).toHaveLength(Math.ceil(index.size / 100));
      expect(Math.max(...map.mock.invocationCallOrder)).toBeLessThan(update.mock.invocationCallOrder[firstMappedSum]);
    } finally {
      map.mockRestore();
      update.mockRestore();
    }
  });

  test('a file over 4 GiB (past Node 20\'s largest external buffer) loads and searches', async () => {
    if (process.platform !== 'linux') return;
    // 263,000 x 4096 float32 = 4.31 GB, sparse: only the header, the ids and two rows are written.
    const big = { dim: 4096, count: 263_000 };
    const layout = layoutOf('float32', big.dim, big.count, 0);
    const file = path.join(dir, 'big.cmbd');
    const header = encodeHeader({ dtype: 'float32', dim: big.dim, count: big.count, nextId: BigInt(big.count), metadataBytes: 0, layout });
    const ids = new BigInt64Array(big.count).map((_, i) => BigInt(i));
    const unit = (axis: number) => new Uint8Array(new Float32Array(big.dim).fill(0).map((_, i) => (i === axis ? 1 : 0)).buffer);
    const rowBytes = big.dim * 4;
    const pieces: [number, Uint8Array][] = [[0, header], [layout.idsOffset, new Uint8Array(ids.buffer)],
      [layout.vectorsOffset, unit(7)], [layout.vectorsOffset + (big.count - 1) * rowBytes, unit(5)]];
    const fd = fs.openSync(file, 'w');
    const checksum = new Checksum();
    const zeros = new Uint8Array(64 * 1024 * 1024);
    let position = 0;
    const zerosUpTo = async (offset: number) => {  // the holes, as the checksum sees them
      for (; position < offset; position += Math.min(zeros.length, offset - position)) {
        await checksum.update(zeros.subarray(0, offset - position));
      }
    };
    try {
      for (const [offset, bytes] of pieces) {
        await zerosUpTo(offset);
        fs.writeSync(fd, bytes, 0, bytes.length, offset);
        await checksum.update(bytes);
        position += bytes.length;
      }
      await zerosUpTo(layout.trailerOffset);
      const trailer = Buffer.alloc(8);
      trailer.writeBigUInt64LE(checksum.digest());
      fs.writeSync(fd, trailer, 0, 8, layout.trailerOffset);
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.statSync(file).size).toBeGreaterThan(2 ** 32);
    const loaded = await VectorIndex.load(file, { mmap: true });
    try {
      const hits = await loaded.search(new Float32Array(big.dim).map((_, i) => (i === 5 ? 1 : 0)), { k: 2 });
      expect({ ids: Array.from(hits.ids), scores: Array.from(hits.scores) }).toEqual({ ids: [BigInt(big.count - 1), 0n], scores: [1, 0] });
    } finally {
      loaded.dispose();
      fs.rmSync(file);
    }
  }, 60000);
});

test('an index that used the largest id still refuses default ids after a round trip', async () => {
  const index = new VectorIndex({ dim: 2 });
  index.add(new Float32Array([1, 0]), [2n ** 63n - 1n]);  // the next default id would be 2^63
  const file = path.join(dir, 'largest-id.cmbd');
  await index.save(file);
  for (const target of [index, await VectorIndex.load(file)]) {
    expect(() => target.add(new Float32Array([0, 1]))).toThrow(new RangeError('ids: the default ids would pass 2^63-1; pass ids explicitly'));
    expect(target.size).toBe(1);
  }
});

// An independent BigInt implementation of cmbd64 (docs/index.md) to hold the native lanes to.
function cmbd64(bytes: Uint8Array): bigint {
  const M = (1n << 64n) - 1n;
  const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M;
  const lanes = [(P1 + P2) & M, P2, 0n, (M + 1n - P1) & M];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i < bytes.length; i += 32) {
    for (let l = 0; l < 4; l++) lanes[l] = (rotl((lanes[l] + view.getBigUint64(i + 8 * l, true) * P2) & M, 31n) * P1) & M;
  }
  let h = (rotl(lanes[0], 1n) + rotl(lanes[1], 7n) + rotl(lanes[2], 12n) + rotl(lanes[3], 18n) + BigInt(bytes.length)) & M;
  h ^= h >> 33n;
  h = (h * P2) & M;
  h ^= h >> 29n;
  h = (h * P3) & M;
  return h ^ (h >> 32n);
}

test('cmbd64: native lanes match the specification, fed in any pieces; every byte matters', async () => {
  const random = makeRandom(5);
  const bytes = Uint8Array.from({ length: 32 * 70 }, () => Math.floor(random() * 256));
  const whole = new Checksum();
  await whole.update(bytes);
  const expected = cmbd64(bytes);
  expect(whole.digest()).toBe(expected);
  const pieces = new Checksum();
  for (let at = 0, size = 1; at < bytes.length; at += size, size = (size * 7) % 61 + 1) {
    await pieces.update(bytes.subarray(at, Math.min(bytes.length, at + size)));
  }
  expect(pieces.digest()).toBe(expected);
  for (const at of [0, 31, 32, 1000, bytes.length - 1]) {
    const changed = bytes.slice();
    changed[at] ^= 0x10;
    expect(cmbd64(changed)).not.toBe(expected);
    const c = new Checksum();
    await c.update(changed);
    expect(c.digest()).toBe(cmbd64(changed));
  }
});

/** The bytes with their trailer set to the checksum of the rest. */
function withChecksum(bytes: Buffer): Buffer {
  const fixed = Buffer.from(bytes);
  fixed.writeBigUInt64LE(cmbd64(fixed.subarray(0, fixed.length - 8)), fixed.length - 8);
  return fixed;
}

describe('a load that fails releases the chunk storage it allocated (large pages, file mappings)', () => {
  // Three chunks of 4 MiB (1,024 rows of 1,024 float32 values): storage that releaseMapping frees.
  const wide = 1024, count = 3 * 1024, chunkBytes = 4 * 1024 * 1024;
  let file: string;
  beforeAll(async () => {
    const index = new VectorIndex({ dim: wide, chunkBytes });
    index.add(randomSignedArray(makeRandom(31), count * wide));
    file = path.join(dir, 'wide.cmbd');
    await index.save(file);
    index.dispose();
  });

  /** Runs a load that must fail with `error`; expects every buffer it allocated or mapped to be released. */
  async function expectReleased(load: (allocate: jest.SpyInstance, original: (bytes: number) => ArrayBuffer) => Promise<VectorIndex>,
    error: RegExp, buffers: number) {
    const bindings = fileBindings();
    const original = bindings.allocateLargePages.bind(bindings);
    const allocate = jest.spyOn(bindings, 'allocateLargePages');
    const map = jest.spyOn(bindings, 'mapFileRange');
    const release = jest.spyOn(bindings, 'releaseMapping');
    try {
      await expect(load(allocate, original)).rejects.toThrow(error);
      const made = [...allocate.mock.results, ...map.mock.results].filter((r) => r.type === 'return').map((r) => r.value as ArrayBuffer);
      expect(made).toHaveLength(buffers);
      // By identity (a deep diff of 4 MiB buffers takes many seconds to print).
      const released = new Set(release.mock.calls.map(([b]) => b));
      expect([made.map((b) => released.has(b)), released.size]).toEqual([made.map(() => true), made.length]);
    } finally {
      [allocate, map, release].forEach((spy) => spy.mockRestore());
    }
  }

  test("a later chunk's allocation fails", async () => {
    await expectReleased((allocate, original) => {
      allocate.mockImplementation((bytes: number) => {
        if (allocate.mock.calls.length === 3) throw new RangeError('out of memory (test)');
        return original(bytes);
      });
      return VectorIndex.load(file, { chunkBytes });
    }, /out of memory \(test\)/, 2);
  });

  test('the load is aborted once every chunk is allocated', async () => {
    const controller = new AbortController();
    await expectReleased((allocate, original) => {
      allocate.mockImplementation((bytes: number) => {
        if (allocate.mock.calls.length === 3) controller.abort(new Error('aborted (test)'));
        return original(bytes);
      });
      return VectorIndex.load(file, { chunkBytes, signal: controller.signal });
    }, /aborted \(test\)/, 3);
  });

  test.each([false, true])('the last id repeats the first: found after every chunk is read (mmap %s)', async (mmap) => {
    const bytes = Buffer.from(fs.readFileSync(file));
    bytes.writeBigInt64LE(bytes.readBigInt64LE(64), 64 + (count - 1) * 8);  // ids start at byte 64 (no metadata)
    const corrupt = path.join(dir, `wide-duplicate-${mmap}.cmbd`);
    fs.writeFileSync(corrupt, withChecksum(bytes));
    await expectReleased(() => VectorIndex.load(corrupt, { chunkBytes, mmap }), /is corrupt: id 0 appears more than once/, 3);
  });
});

describe('metadata', () => {
  const metadata = { model: 'antoinelouis/biencoder-camembert-base-mmarcoFR', note: 'éàü 🥐', nested: { list: [1, 2.5, null, true] } };

  test.each([false, true])('is saved at offset 64 as JSON and read back (mmap %s)', async (mmap) => {
    const index = await sample('float16', 6);
    index.metadata = metadata;
    const file = path.join(dir, `metadata-${mmap}.cmbd`);
    await index.save(file);
    const bytes = fs.readFileSync(file);
    const text = JSON.stringify(metadata);
    const length = Buffer.byteLength(text);
    expect(bytes.readUInt32LE(8)).toBe(2);
    expect(bytes.readUInt32LE(20)).toBe(length);
    expect(bytes.subarray(64, 64 + length).toString('utf8')).toBe(text);
    expect(Number(bytes.readBigUInt64LE(40))).toBe(64 + Math.ceil(length / 64) * 64);
    const loaded = await VectorIndex.load(file, { mmap });
    expect(loaded.metadata).toEqual(metadata);
    expect(await loaded.search(queries, { k: 20 })).toEqual(await index.search(queries, { k: 20 }));
    expect(Object.isFrozen(loaded.metadata)).toBe(true);
    expect(() => { (loaded.metadata.nested as { list: unknown[] }).list.push(3); }).toThrow(TypeError);
  });

  test('shows what JSON keeps, starts empty, and bad values are clear errors that change nothing', () => {
    const index = new VectorIndex({ dim: 3, metadata: { when: new Date(0), gone: undefined, n: 1 } });
    expect(index.metadata).toEqual({ when: '1970-01-01T00:00:00.000Z', n: 1 });
    expect(new VectorIndex({ dim: 3 }).metadata).toEqual({});
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const cases: Array<[unknown, ErrorConstructor, RegExp]> = [
      [null, TypeError, /^metadata must be an object, got null$/],
      [['model'], TypeError, /^metadata must be an object, got/],
      [{ id: 1n }, TypeError, /^metadata must be JSON-serialisable: Do not know how to serialize a BigInt/],
      [cycle, TypeError, /^metadata must be JSON-serialisable: Converting circular structure/],
      [{ toJSON: () => 'text' }, TypeError, /^metadata must be a JSON object \(its toJSON\(\) made something else\)$/],
      [{ text: 'x'.repeat(1024 * 1024) }, RangeError, /^metadata is 1048587 bytes as JSON, more than the 1048576 allowed$/],
      [JSON.parse(`{"a":${'['.repeat(1000)}${']'.repeat(1000)}}`), RangeError, /^metadata nests deeper than 1000 levels$/],
    ];
    for (const [value, type, message] of cases) {
      expect(() => { index.metadata = value as Record<string, unknown>; }).toThrow(type);
      expect(() => { index.metadata = value as Record<string, unknown>; }).toThrow(message);
      expect(() => new VectorIndex({ dim: 3, metadata: value as Record<string, unknown> })).toThrow(/^options\.metadata /);
    }
    expect(index.metadata).toEqual({ when: '1970-01-01T00:00:00.000Z', n: 1 });
    index.dispose();
    expect(() => { index.metadata = {}; }).toThrow('VectorIndex.metadata: the index has been disposed');
  });

  test('without metadata the file is version 1 (version 2 without metadata: older camembed reads it)', async () => {
    const index = await sample('float32', 7);
    const file = path.join(dir, 'version1.cmbd');
    await index.save(file);
    const bytes = fs.readFileSync(file);
    expect(bytes.readUInt32LE(8)).toBe(1);
    expect(bytes.readUInt32LE(20)).toBe(0);
    expect(Number(bytes.readBigUInt64LE(40))).toBe(64);
    const loaded = await VectorIndex.load(file);
    expect(loaded.metadata).toEqual({});
    expect(await loaded.search(queries, { k: 20 })).toEqual(await index.search(queries, { k: 20 }));
  });
});

describe('a vector longer than unit length is corrupt (its scores would not be cosines)', () => {
  /** Row `row` of an index file's bytes: where it starts, and its values as float32. */
  function rowOf(bytes: Buffer, dtype: 'float32' | 'float16', row: number): { at: number; values: Float32Array } {
    const rowBytes = bytes.readUInt32LE(16) * (dtype === 'float32' ? 4 : 2);
    const at = Number(bytes.readBigUInt64LE(48)) + row * rowBytes;
    const raw = new Uint8Array(bytes.subarray(at, at + rowBytes)).buffer;
    return { at, values: dtype === 'float32' ? new Float32Array(raw) : float16ToFloat32Array(new Uint16Array(raw)) };
  }

  /** A copy of the bytes with row `row` changed (written back rounded to the dtype) and the checksum redone. */
  function withRow(bytes: Buffer, dtype: 'float32' | 'float16', row: number, change: (values: Float32Array) => void): Buffer {
    const { at, values } = rowOf(bytes, dtype, row);
    change(values);
    const changed = Buffer.from(bytes);
    changed.set(new Uint8Array(dtype === 'float32' ? values.buffer : float32ToFloat16Array(values).buffer), at);
    return withChecksum(changed);
  }

  /** The norm of row `row`, in float64 from its stored values. */
  const normAt = (bytes: Buffer, dtype: 'float32' | 'float16', row: number) =>
    Math.sqrt(rowOf(bytes, dtype, row).values.reduce((sum, v) => sum + v * v, 0));
  const scale = (factor: number) => (v: Float32Array) => v.forEach((x, i) => { v[i] = x * factor; });

  /** The load's error for a file of these bytes, with and without mmap and in chunks of `chunkBytes` (both the same). */
  async function loadError(name: string, bytes: Buffer, chunkBytes?: number): Promise<string> {
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes);
    const messages = [];
    for (const mmap of [false, true]) {
      messages.push(await VectorIndex.load(file, { mmap, chunkBytes }).then((loaded) => { loaded.dispose(); return 'loaded'; }, (err: Error) => err.message));
    }
    expect(messages[1]).toBe(messages[0]);
    return messages[0];
  }

  test.each(['float32', 'float16'] as const)('%s: a row scaled by 1.01, or holding NaN or infinity, names its id and norm', async (dtype) => {
    const index = await sample(dtype, 7);
    const file = path.join(dir, `norms-${dtype}.cmbd`);
    await index.save(file);
    const good = fs.readFileSync(file);
    const ids = index.ids();
    const limit = `(a stored vector has norm at most 1, plus ${UNIT_NORM_SLACK[dtype]} of ${dtype} rounding)`;
    const scaled = withRow(good, dtype, 500, scale(1.01));
    const norm = normAt(scaled, dtype, 500);
    expect(Math.abs(norm - 1.01)).toBeLessThan(1e-3);
    expect(await loadError('scaled.cmbd', scaled)).toBe(`${path.join(dir, 'scaled.cmbd')} is corrupt: the vector of id ${ids[500]} has norm ${norm} ${limit}`);
    // The first bad row in storage order is named, within a chunk and across chunks (of 100 rows).
    const twoBad = withRow(scaled, dtype, 250, (v) => { v[3] = NaN; });
    for (const chunkBytes of [undefined, 100 * dim * 4]) {
      expect(await loadError('two-bad.cmbd', twoBad, chunkBytes)).toContain(`is corrupt: the vector of id ${ids[250]} has norm NaN ${limit}`);
    }
    const infinite = withRow(good, dtype, 0, (v) => { v[dim - 1] = -Infinity; });
    expect(await loadError('infinite.cmbd', infinite)).toContain(`is corrupt: the vector of id ${ids[0]} has norm Infinity ${limit}`);
    // Shorter rows load: add() stores x * 10^12 for a row x of norm below 10^-12, so any norm up to 1 is its output.
    const halved = withRow(good, dtype, 500, scale(0.5));
    expect(await loadError('halved.cmbd', halved)).toBe('loaded');
  });

  test('the first bad row is named when several threads each find one', async () => {
    // 6,000 rows of 24 float32 values: the check splits them over the cores (at least 2,730 rows each).
    const index = new VectorIndex({ dim });
    index.add(randomSignedArray(makeRandom(8), 6000 * dim));
    const file = path.join(dir, 'threads.cmbd');
    await index.save(file);
    const bad = withRow(withRow(fs.readFileSync(file), 'float32', 5900, scale(1.01)), 'float32', 100, scale(1.5));
    expect(await loadError('threads-bad.cmbd', bad)).toContain(`is corrupt: the vector of id 100 has norm ${normAt(bad, 'float32', 100)} `);
  });

  test('a long row either side of a boundary between the pieces the load checks (64 MiB of whole rows) is found', async () => {
    // 5,600 rows of 3,001 float32 values (12,004 bytes): pieces of 5,590 rows, the second starting
    // 24 bytes into a 32-byte checksum word; so are the chunks by default (64 MiB), while chunks of
    // 1 GiB (CUDA's default) are cut into such pieces.
    const wide = 3001;
    const index = new VectorIndex({ dim: wide });
    index.add(randomSignedArray(makeRandom(13), 5600 * wide));
    const file = path.join(dir, 'pieces.cmbd');
    await index.save(file);
    const good = fs.readFileSync(file);
    for (const chunkBytes of [undefined, 2 ** 30]) {
      expect(await loadError('pieces-good.cmbd', good, chunkBytes)).toBe('loaded');
      for (const row of [5589, 5590]) {
        const { at, values } = rowOf(good, 'float32', row);
        scale(1.01)(values);
        const bad = Buffer.from(good);
        bad.set(new Uint8Array(values.buffer), at);
        // The native checksum: the BigInt one takes seconds over 67 MB.
        const checksum = new Checksum();
        await checksum.update(bad.subarray(0, bad.length - 8));
        bad.writeBigUInt64LE(checksum.digest(), bad.length - 8);
        const [, id, norm] = /is corrupt: the vector of id (\d+) has norm (\S+) /.exec(await loadError('pieces-bad.cmbd', bad, chunkBytes)) ?? [];
        expect(Number(id)).toBe(row);
        expect(Math.abs(Number(norm) - normAt(bad, 'float32', row))).toBeLessThan(1e-12);  // summed in another order
      }
    }
    fs.rmSync(file);
  });

  test.each(['float32', 'float16'] as const)('%s: every row add() stores loads: random rows of awkward dims, heavy tails, rounding extremes', async (dtype) => {
    const random = makeRandom(dtype === 'float32' ? 11 : 12);
    let largest = 0;  // the largest stored norm, less 1
    for (const rowDim of [1, 3, 15, 35, 63, 65, 200, 769, 1023]) {
      const rows: Float32Array[] = [];
      for (let r = 0; r < 150; r++) {
        const u = randomSignedArray(random, rowDim);
        rows.push(u, u.map((x) => x ** 7));  // uniform, and heavy-tailed (a few values carry the norm)
        // Values of every float32 magnitude, subnormals included: many fall among float16's subnormals.
        rows.push(u.map((x) => x * 2 ** (Math.floor(random() * 268) - 149)));
      }
      const powers = (counts: number[]) => {  // counts[m] copies of 2^-(m+1)
        const row = new Float32Array(rowDim);
        let at = 0;
        counts.forEach((n, m) => { for (let c = 0; c < n && at < rowDim; c++) row[at++] = 2 ** -(m + 1); });
        return row;
      };
      rows.push(
        new Float32Array(rowDim).fill(1),  // 1,023 values: each just above a float16 rounding midpoint, norm 1 + 2^-11 - 2^-21
        powers([3, 3, 3, 3, 3]),  // 15 values: the same in float16 (squares sum to 1 - 2^-10)
        powers([3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2]),  // 35 values: in float32 (1 - 2^-23): norm 1 + 2^-24
        new Float32Array(rowDim).fill(3e38), new Float32Array(rowDim).fill(1e-45),  // float32's extremes
        new Float32Array(rowDim).fill(1e-14), new Float32Array(rowDim));  // stored as x * 10^12 (norm below 1), and zeros
      const index = new VectorIndex({ dim: rowDim, dtype });
      for (const row of rows) index.add(row);
      const file = path.join(dir, `extremes-${dtype}-${rowDim}.cmbd`);
      await index.save(file);
      for (const mmap of [false, true]) {
        const loaded = await VectorIndex.load(file, { mmap });
        expect(loaded.size).toBe(rows.length);
        loaded.dispose();
      }
      for (const id of index.ids()) largest = Math.max(largest, Math.sqrt(index.get(id)!.reduce((sum, v) => sum + v * v, 0)) - 1);
      fs.rmSync(file);
    }
    // The extremes reach the rounding bound's first term (2^-24 or 2^-11 of a unit): a limit much
    // closer to 1 would refuse them.
    expect(largest / UNIT_NORM_SLACK[dtype]).toBeGreaterThan(0.49);
  });
});

describe('damaged files are clear errors', () => {
  let good: Buffer;
  beforeAll(async () => {
    const file = path.join(dir, 'good.cmbd');
    await (await sample('float32', 2)).save(file);
    good = fs.readFileSync(file);
  });

  async function loadBytes(name: string, bytes: Uint8Array): Promise<VectorIndex> {
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes);
    return VectorIndex.load(file);
  }

  async function expectLoadError(name: string, bytes: Uint8Array, pattern: RegExp): Promise<void> {
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes);
    await expect(VectorIndex.load(file)).rejects.toThrow(pattern);
    await expect(VectorIndex.load(file, { mmap: true })).rejects.toThrow(pattern);
  }

  test('a flipped bit in the ids, the vectors or the padding', async () => {
    for (const at of [64 + 8 * 10 + 2, good.length - 100, good.length - 9, good.length - 3]) {
      const bytes = Buffer.from(good);
      bytes[at] ^= 0x04;
      await expectLoadError('flipped.cmbd', bytes, /is corrupt: checksum mismatch/);
    }
  });

  test('truncated', async () => {
    await expectLoadError('cut.cmbd', good.subarray(0, good.length - 1000), /is truncated: \d+ bytes, but its header describes/);
    await expectLoadError('cut-header.cmbd', good.subarray(0, 40), /is truncated: 40 bytes, shorter than the 64-byte header/);
  });

  test('trailing bytes, foreign files, the empty file', async () => {
    await expectLoadError('long.cmbd', Buffer.concat([good, Buffer.alloc(8)]), /is corrupt: \d+ bytes, but its header describes/);
    await expectLoadError('foreign.cmbd', Buffer.from('{"not": "an index"}\n'.repeat(10)), /is not a camembed index file/);
    await expectLoadError('empty.cmbd', new Uint8Array(0), /is not a camembed index file/);
  });

  test('a future format version, an unknown dtype, inconsistent offsets', async () => {
    const future = Buffer.from(good);
    future.writeUInt32LE(3, 8);
    await expectLoadError('future.cmbd', future, /format version 3, newer than this camembed reads \(2\): upgrade camembed/);
    future.writeUInt32LE(0x41414141, 8);  // text over the header: damage, not a future version
    await expectLoadError('damaged.cmbd', future, /is corrupt: format version 1094795585$/);
    const dtype = Buffer.from(good);
    dtype.writeUInt32LE(7, 12);
    await expectLoadError('dtype.cmbd', dtype, /is corrupt: unknown dtype code 7/);
    const count = Buffer.from(good);
    count.writeBigUInt64LE(count.readBigUInt64LE(24) + 1n, 24);
    await expectLoadError('count.cmbd', count, /is corrupt: section offsets do not match/);
    const nextId = Buffer.from(good);
    nextId.writeBigUInt64LE((1n << 63n) + 1n, 32);
    await expectLoadError('next-id.cmbd', nextId, /is corrupt: next id 9223372036854775809 is beyond 2\^63/);
    // Not past the largest id (698; 699 was removed): an add() without ids would collide with it.
    nextId.writeBigUInt64LE(698n, 32);
    await expectLoadError('low-next-id.cmbd', withChecksum(nextId), /is corrupt: id 698 is not below the next id it records \(698\)$/);
    nextId.writeBigUInt64LE(699n, 32);
    const loaded = await loadBytes('next-id-699.cmbd', withChecksum(nextId));
    loaded.add(new Float32Array(dim).fill(1));
    expect(loaded.has(699n)).toBe(true);
    const wide = Buffer.from(good);
    wide.writeUInt32LE(2 ** 24 + 1, 16);  // what another writer might make: named as such, not as an option
    await expectLoadError('wide.cmbd', wide, /wide\.cmbd holds 16777217-d vectors; camembed takes at most 16777216 dimensions/);
  });

  test('a file of more than 2^29 vectors (the most an index holds) is refused before anything is read', async () => {
    // 2^29 + 1 float16 values of dim 1: 5.4 GB, sparse (only the header is written).
    const count = 2 ** 29 + 1;
    const layout = layoutOf('float16', 1, count, 0);
    const file = path.join(dir, 'too-many.cmbd');
    fs.writeFileSync(file, encodeHeader({ dtype: 'float16', dim: 1, count, nextId: BigInt(count), metadataBytes: 0, layout }));
    fs.truncateSync(file, layout.fileBytes);
    try {
      expect(await VectorIndex.describe(file)).toMatchObject({ size: count });
      for (const mmap of [false, true]) {
        await expect(VectorIndex.load(file, { mmap })).rejects.toThrow(
          new RangeError(`${file} holds 536870913 vectors, but an index holds at most 536870912 (2^29)`));
      }
    } finally {
      fs.rmSync(file);
    }
  });

  test('metadata that is not a JSON object, or too long; a version 1 header with its reserved field set', async () => {
    const withMetadata = (text: string | Buffer) => {
      const metadata = Buffer.from(text);
      const padded = Math.ceil(metadata.length / 64) * 64;
      const bytes = Buffer.concat([good.subarray(0, 64), metadata, Buffer.alloc(padded - metadata.length), good.subarray(64)]);
      bytes.writeUInt32LE(2, 8);
      bytes.writeUInt32LE(metadata.length, 20);
      for (const offset of [40, 48, 56]) bytes.writeBigUInt64LE(bytes.readBigUInt64LE(offset) + BigInt(padded), offset);
      return withChecksum(bytes);
    };
    expect((await loadBytes('json.cmbd', withMetadata('{"model":"m"}'))).metadata).toEqual({ model: 'm' });
    // Nesting: 1,000 levels load (frozen throughout) and save again; deeper is corrupt, however deep.
    const nested = (levels: number) => `{"a":${'['.repeat(levels - 1)}${']'.repeat(levels - 1)}}`;
    const deepest = await loadBytes('deep.cmbd', withMetadata(nested(1000)));
    let inner: unknown = deepest.metadata.a;
    for (let level = 2; level < 1000; level++) inner = (inner as unknown[])[0];
    expect(inner).toEqual([]);
    expect(Object.isFrozen(inner)).toBe(true);
    await deepest.save(path.join(dir, 'deep-again.cmbd'));
    expect((await VectorIndex.describe(path.join(dir, 'deep-again.cmbd'))).metadata).toEqual(deepest.metadata);
    for (const levels of [1001, 50000]) {
      await expectLoadError(`deeper-${levels}.cmbd`, withMetadata(nested(levels)), /is corrupt: its metadata nests deeper than 1000 levels/);
    }
    await expectLoadError('not-json.cmbd', withMetadata('{"model":'), /is corrupt: its metadata is not UTF-8 JSON/);
    await expectLoadError('not-utf8.cmbd', withMetadata(Buffer.from([...Buffer.from('{"a":"'), 0xff, ...Buffer.from('"}')])), /is corrupt: its metadata is not UTF-8 JSON/);
    await expectLoadError('array.cmbd', withMetadata('["model"]'), /is corrupt: its metadata is not a JSON object/);
    const huge = Buffer.from(good);
    huge.writeUInt32LE(2, 8);
    huge.writeUInt32LE(1024 * 1024 + 1, 20);
    await expectLoadError('huge.cmbd', huge, /is corrupt: 1048577 bytes of metadata, more than the 1048576 allowed/);
    const reserved = Buffer.from(good);
    reserved.writeUInt32LE(1, 8);
    reserved.writeUInt32LE(64, 20);
    await expectLoadError('reserved.cmbd', withChecksum(reserved), /is corrupt: the reserved field of a version 1 header is not 0/);
  });

  test('a missing file, a bad path argument, saving into a missing folder or one that takes no file', async () => {
    // Was Node's "ENOENT: no such file or directory, open '...'".
    const absent = path.join(dir, 'absent.cmbd');
    for (const open of [() => VectorIndex.load(absent), () => VectorIndex.load(absent, { mmap: true }), () => VectorIndex.describe(absent)]) {
      await expect(open()).rejects.toMatchObject({ message: `no index file at ${absent}`, code: 'ENOENT' });
    }
    const underFile = path.join(dir, 'a-file', 'x.cmbd');
    fs.writeFileSync(path.dirname(underFile), '');
    await expect(VectorIndex.load(underFile)).rejects.toMatchObject({ message: `cannot open ${underFile}: ENOTDIR: not a directory`, code: 'ENOTDIR' });
    await expect(VectorIndex.load(42 as unknown as string)).rejects.toThrow(TypeError);
    // A folder was "EISDIR: illegal operation on a directory, read", naming nothing; a FIFO with no
    // writer made load and describe wait forever in open().
    const fifo = path.join(dir, 'no-writer.fifo');
    execFileSync('mkfifo', [fifo]);
    for (const notFile of [dir, fifo]) {
      await expect(VectorIndex.load(notFile)).rejects.toThrow(`${notFile} is not a camembed index file: it is not a regular file`);
      await expect(VectorIndex.describe(notFile)).rejects.toThrow(`${notFile} is not a camembed index file: it is not a regular file`);
    }
    const index = await sample('float16', 3);
    await expect(index.save(path.join(dir, 'no', 'such', 'x.cmbd'))).rejects.toMatchObject({
      message: `cannot save ${path.join(dir, 'no', 'such', 'x.cmbd')}: the folder ${path.join(dir, 'no', 'such')} does not exist (ENOENT)`, code: 'ENOENT' });
    // A folder that is there but takes no new file answers ENOENT too (procfs, root included): it said "the folder /proc does not exist".
    if (process.platform === 'linux') {
      await expect(index.save('/proc/x.cmbd')).rejects.toMatchObject({ code: 'ENOENT', message: expect.stringMatching(
        /^cannot save \/proc\/x\.cmbd: \/proc is there, but creating a file in it failed: ENOENT: no such file or directory, open '\/proc\/\.x\.cmbd\.tmp-\d+-[0-9a-f]{8}'$/) });
    }
    // A folder the process cannot write in (EACCES as Node reports it: a test run as root would not
    // see one): the error names the file saved, not only its temporary file, and keeps the code.
    const file = path.join(dir, 'read-only.cmbd');
    const open = fs.promises.open;
    const spy = jest.spyOn(fs.promises, 'open').mockImplementation((where, flags, mode) => flags !== 'wx' ? open(where, flags, mode)
      : Promise.reject(Object.assign(new Error(`EACCES: permission denied, open '${String(where)}'`), { code: 'EACCES', syscall: 'open', path: where })));
    try {
      const failed = (await index.save(file).catch((err) => err)) as NodeJS.ErrnoException;
      expect(failed.message).toMatch(new RegExp(`^cannot save ${file}: EACCES: permission denied, open '${dir}/\\.read-only\\.cmbd\\.tmp-`));
      expect(failed.code).toBe('EACCES');
    } finally {
      spy.mockRestore();
    }
  });
});

// The writer is a separate node process (TypeScript compiled on the fly), killed once its temporary
// file has bytes in it: the old index must still be there, whole.
const writerScript = `
const ts = require('typescript');
const fs = require('fs');
require.extensions['.ts'] = (module, file) => module._compile(
  ts.transpileModule(fs.readFileSync(file, 'utf8'), { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText, file);
const { VectorIndex } = require(${JSON.stringify(path.resolve(__dirname, '../lib/vector-index.ts'))});
const [file, rows, dim] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const index = new VectorIndex({ dim });
const data = new Float32Array(rows * dim);
for (let i = 0; i < data.length; i++) data[i] = Math.sin(i);
index.add(data);
process.stdout.write('saving\\n');
index.save(file).then(() => process.stdout.write('saved\\n'));
`;

describe('the kernel\'s limit on memory mappings a process holds (vm.max_map_count) is named, with a way round it', () => {
  let limit: number | undefined;
  try {
    limit = Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8'));
  } catch {
    // not Linux
  }
  const linuxTest = limit !== undefined && limit <= 300_000 ? test : test.skip;  // filling more takes long

  linuxTest('a load with mmap of more chunks than that is refused before it maps any', async () => {
    const file = path.join(dir, 'one-row-chunks.cmbd');
    const index = new VectorIndex({ dim: 1 });
    index.add(new Float32Array(limit! + 1).fill(1));
    await index.save(file);
    const map = jest.spyOn(fileBindings(), 'mapFileRange');
    try {
      await expect(VectorIndex.load(file, { mmap: true, chunkBytes: 4 })).rejects.toThrow(new Error(`cannot map ${file}: its ${limit! + 1} ` +
        `storage chunks would each be a memory mapping, more than the kernel lets a process hold (/proc/sys/vm/max_map_count: ${limit}): ` +
        'a larger chunkBytes, or mmap: false, needs fewer'));
      expect(map).not.toHaveBeenCalled();
    } finally {
      map.mockRestore();
      fs.rmSync(file);
    }
  }, 60000);

  linuxTest('at the limit, a mapping of the file or of storage on large pages fails saying so', () => {
    const file = path.join(dir, 'page.bin');
    fs.writeFileSync(file, Buffer.alloc(4096));
    const script = path.join(__dirname, 'helpers', 'mapping-limit.js');
    const out = execFileSync(process.execPath, ['--jitless', '--no-lazy', '--no-flush-bytecode', '--expose-gc', script, path.resolve(__dirname, '..', 'dist'), file],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const atLimit = `mmap: Cannot allocate memory: the process has \\d+ memory mappings, at the kernel's limit \\(/proc/sys/vm/max_map_count: ${limit}\\)`;
    const [map, add] = out.toString().trim().split('\n');
    expect(map).toMatch(new RegExp(`^${atLimit}, and each storage chunk is a mapping of its own: a larger chunkBytes, or mmap: false, needs fewer$`));
    expect(add).toMatch(new RegExp('^VectorIndex\\.add: cannot allocate memory for 1024 more vectors \\(cannot allocate 4194304 bytes of ' +
      `vector storage: ${atLimit}, and each storage chunk of 4 MiB or more takes about two: a larger chunkBytes needs fewer\\); the index is unchanged$`));
  }, 60000);
});

test('crash safety: a writer killed mid-save leaves the old file intact', async () => {
  const file = path.join(dir, 'crash.cmbd');
  const old = await sample('float32', 4);
  await old.save(file);
  const oldBytes = fs.readFileSync(file);
  const child = spawn(process.execPath, ['-e', writerScript, file, '60000', '768'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (d) => { output += String(d); });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  // Poll for the temporary file (".crash.cmbd.tmp-<pid>-<random>") to have data, then kill.
  const temporaries = () => fs.readdirSync(dir).filter((f) => f.startsWith('.crash.cmbd.tmp-'));
  const killed = await new Promise<boolean>((resolve) => {
    const timer = setInterval(() => {
      const temp = temporaries()[0];
      if (temp !== undefined && fs.statSync(path.join(dir, temp)).size > 0) {
        clearInterval(timer);
        resolve(child.kill('SIGKILL'));
      } else if (child.exitCode !== null) {
        clearInterval(timer);
        resolve(false);
      }
    }, 1);
  });
  expect(killed).toBe(true);
  expect(await exited).toBe('SIGKILL');
  expect(output).not.toContain('saved');
  expect(fs.readFileSync(file).equals(oldBytes)).toBe(true);
  const loaded = await VectorIndex.load(file);
  expect(await loaded.search(queries, { k: 10 })).toEqual(await old.search(queries, { k: 10 }));
  // The killed save's temporary file (as large as the index) stays until it has been untouched for
  // an hour (a live save's file grows as it is written); then the next save removes it.
  const [left] = temporaries();
  expect(left).toBeDefined();
  await old.save(file);
  expect(temporaries()).toEqual([left]);
  const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
  fs.utimesSync(path.join(dir, left), twoHoursAgo, twoHoursAgo);
  await old.save(file);
  expect(temporaries()).toEqual([]);
}, 60000);

test('a file name of up to 255 bytes saves: its temporary names start with as much of it as fits (it was ENAMETOOLONG)', async () => {
  const index = await sample('float16', 12);
  // 255 bytes; 254 bytes whose cut falls inside a two-byte character.
  for (const name of [`${'n'.repeat(250)}.cmbd`, `n${'é'.repeat(124)}.cmbd`]) {
    const file = path.join(dir, name);
    await index.save(file);
    expect(await (await VectorIndex.load(file)).search(queries, { k: 5 })).toEqual(await index.search(queries, { k: 5 }));
    // A temporary file a killed save left, untouched for two hours: the next save removes it.
    const left = temporaryPath(path.join(dir, `.${name}`));
    fs.writeFileSync(left, 'partial');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    fs.utimesSync(left, twoHoursAgo, twoHoursAgo);
    await index.save(file);
    expect(fs.existsSync(left)).toBe(false);
  }
});

test('save replaces the file a symbolic link points to, keeps its permissions, and an interrupted save leaves no temporary file', async () => {
  const real = path.join(dir, 'real.cmbd');
  const link = path.join(dir, 'link.cmbd');
  const first = await sample('float32', 5);
  await first.save(real);
  fs.chmodSync(real, 0o600);
  fs.symlinkSync('real.cmbd', link);
  const second = await sample('float32', 6);
  await second.save(link);
  expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
  expect(fs.statSync(real).mode & 0o777).toBe(0o600);
  expect(await (await VectorIndex.load(real)).search(queries, { k: 5 })).toEqual(await second.search(queries, { k: 5 }));
  // A link to a file not there yet (through a second link) creates that file; a FIFO is not replaced.
  fs.mkdirSync(path.join(dir, 'later'));
  fs.symlinkSync('later/new.cmbd', path.join(dir, 'hop.cmbd'));
  fs.symlinkSync('hop.cmbd', path.join(dir, 'dangling.cmbd'));
  await second.save(path.join(dir, 'dangling.cmbd'));
  expect(fs.lstatSync(path.join(dir, 'dangling.cmbd')).isSymbolicLink()).toBe(true);
  expect(fs.statSync(path.join(dir, 'later/new.cmbd')).isFile()).toBe(true);
  // A relative link inside a linked folder: its '..' climbs out of the real folder, as the kernel reads it.
  fs.mkdirSync(path.join(dir, 'real/inner'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'real/store'));
  fs.symlinkSync('real/inner', path.join(dir, 'linked'));
  fs.symlinkSync('../store/idx.cmbd', path.join(dir, 'real/inner/idx.cmbd'));
  await second.save(path.join(dir, 'linked/idx.cmbd'));
  expect(fs.statSync(path.join(dir, 'real/store/idx.cmbd')).isFile()).toBe(true);
  expect(fs.existsSync(path.join(dir, 'store'))).toBe(false);
  const fifo = path.join(dir, 'fifo.cmbd');
  execFileSync('mkfifo', [fifo]);
  await expect(second.save(fifo)).rejects.toThrow(`cannot save over ${fifo}: it is not a regular file`);
  expect(fs.lstatSync(fifo).isFIFO()).toBe(true);

  // What a command's Ctrl-C handler does while a save runs: the temporary file goes, the old file stays.
  const big = new VectorIndex({ dim: 768 });
  big.add(new Float32Array(60000 * 768).fill(0.5));
  trackTemporaries();  // as the command line does
  const saving = big.save(real);
  const temps = () => fs.readdirSync(dir).filter((f) => f.startsWith('.real.cmbd.tmp-'));
  while (temps().length === 0) await new Promise(setImmediate);
  removeTrackedTemporaries();
  await expect(saving).rejects.toThrow(/ENOENT/);
  expect(temps()).toEqual([]);
  expect(await (await VectorIndex.load(real)).search(queries, { k: 5 })).toEqual(await second.search(queries, { k: 5 }));
  big.dispose();
});

/**
 * Makes every FileHandle `method` call after the first `calls` fail as Node reports an errno error
 * (`message` begins with its code); restore the returned spy.
 */
async function failFileHandleCalls(method: 'read' | 'write', calls: number, message: string): Promise<jest.SpyInstance> {
  const probe = await fs.promises.open(__filename, 'r');
  const handlePrototype = Object.getPrototypeOf(probe);
  await probe.close();
  const original = handlePrototype[method];
  let made = 0;
  return jest.spyOn(handlePrototype, method).mockImplementation(function (this: fs.promises.FileHandle, ...args: unknown[]) {
    if (++made > calls) return Promise.reject(Object.assign(new Error(message), { code: message.split(':')[0] }));
    return original.apply(this, args);
  });
}

test('a disk that fills up mid-save: the error names the file, the old file stays whole, no temporary file is left', async () => {
  const file = path.join(dir, 'full-disk.cmbd');
  const old = await sample('float16', 7);
  await old.save(file);
  const before = fs.readFileSync(file);
  // The disk fills after the header: later writes fail as Node reports ENOSPC (naming no file).
  const spy = await failFileHandleCalls('write', 1, 'ENOSPC: no space left on device, write');
  try {
    const failed = (await sample('float16', 8).then((index) => index.save(file)).catch((err) => err)) as NodeJS.ErrnoException;
    expect([failed.message, failed.code]).toEqual([`cannot save ${file}: ENOSPC: no space left on device, write`, 'ENOSPC']);
  } finally {
    spy.mockRestore();
  }
  expect(fs.readFileSync(file).equals(before)).toBe(true);
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('.full-disk.cmbd.tmp-'))).toEqual([]);
});

test('onProgress of save and load: bytes of the file done, rising to its size; a bad callback is a TypeError', async () => {
  const file = path.join(dir, 'progress.cmbd');
  const index = await sample('float32', 9);
  const check = (seen: IndexFileProgress[]) => {
    const size = fs.statSync(file).size;
    expect(seen.length).toBeGreaterThan(3);  // header, metadata, ids, vectors and trailer at least
    expect(seen.every((p, i) => p.stage === 'file' && p.totalBytes === size && p.bytes <= size && (i === 0 || p.bytes > seen[i - 1].bytes))).toBe(true);
    expect(seen[seen.length - 1].bytes).toBe(size);
  };
  const saved: IndexFileProgress[] = [];
  await index.save(file, { onProgress: (p) => saved.push(p) });
  check(saved);
  for (const mmap of [false, true]) {
    const loaded: IndexFileProgress[] = [];
    (await VectorIndex.load(file, { mmap, onProgress: (p) => loaded.push(p) })).dispose();
    check(loaded);
  }
  await expect(index.save(file, { onProgress: 1 as never })).rejects.toThrow('options.onProgress must be a function, got number');
  await expect(VectorIndex.load(file, { onProgress: 'x' as never })).rejects.toThrow(TypeError);
});

test('an abort during the last piece of a load rejects it (no index handed to a caller who gave up)', async () => {
  const file = path.join(dir, 'abort-last.cmbd');
  await (await sample('float32', 10)).save(file);
  for (const mmap of [false, true]) {
    const controller = new AbortController();
    const load = VectorIndex.load(file, {
      mmap, signal: controller.signal, onProgress: ({ bytes, totalBytes }) => { if (bytes === totalBytes) controller.abort(new Error('gave up (test)')); },
    });
    await expect(load).rejects.toThrow('gave up (test)');
  }
});

test('a failed read during a load names the file and keeps the errno code', async () => {
  const file = path.join(dir, 'read-fails.cmbd');
  await (await sample('float32', 11)).save(file);
  const spy = await failFileHandleCalls('read', 2, 'EIO: i/o error, read');  // after the header's
  try {
    await expect(VectorIndex.load(file)).rejects.toMatchObject({ message: `cannot read ${file}: EIO: i/o error, read`, code: 'EIO' });
  } finally {
    spy.mockRestore();
  }
});

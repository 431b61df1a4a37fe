// CudaMatrix (lib/cuda.ts): argument checks everywhere; on a machine with a CUDA device, results
// against a float64 oracle of the values the GPU uses (float16-rounded queries and rows for
// float16 storage) and against the CPU kernel. Tolerances (issue 5): scores within 1e-4 (float16)
// / 1e-5 (float32); indices equal except among rows scoring within 1e-5 / 1e-6 of the k-th score.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { cosineTopK, cosineTopKAsync, devices, meanPoolNormalize, reference } from '../lib';
import { loadAddon } from '../lib/native';
import { CudaMatrix, CUDA_MAX_K } from '../lib/cuda';
import { float16ToFloat32Array, float32ToFloat16Array } from '../lib/float16';
import { elementTypeOf } from '../lib/validate';
import { expectTopKMatches } from './helpers/compare';
import { float16ArrayOf, Float16ArrayOrNone, NEEDS_FLOAT16ARRAY } from './helpers/float16-array';
import { makeRandom, randomSignedArray } from './helpers/random';

const report = devices();
const hasGpu = report.cuda.length > 0;
if (!hasGpu) {
  // eslint-disable-next-line no-console
  console.log(`cuda.test: skipping the GPU parity tests: no CUDA device (${report.cudaUnavailableReason})`);
}
if (hasGpu && Float16ArrayOrNone === undefined) {
  // eslint-disable-next-line no-console
  console.log(`cuda.test: skipping the Float16Array upload test: ${NEEDS_FLOAT16ARRAY}`);
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

// Whether the dynamic loader can find libcuda.so.1 (the driver library), asked of `ldconfig -p`
// and LD_LIBRARY_PATH; null when ldconfig cannot tell.
function driverLibraryFound(): boolean | null {
  const inPath = (process.env.LD_LIBRARY_PATH ?? '').split(':').some((d) => d !== '' && fs.existsSync(path.join(d, 'libcuda.so.1')));
  try {
    return inPath || /\slibcuda\.so\.1\s/.test(execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return inPath ? true : null;
  }
}

test('without an NVIDIA driver, devices() says so (and names the library it looked for)', () => {
  const found = driverLibraryFound();
  // The CUDA emulator's addon (CAMEMBED_ADDON, native/tests/emulator) needs no driver: it lists its emulated device.
  const emulated = report.cuda.some((d) => d.name === 'camembed CUDA emulator');
  if (!loadAddon().info().cudaCompiledIn || found !== false || emulated) {
    // eslint-disable-next-line no-console
    console.log(`cuda.test: no-driver message not checked: ${found === null ? 'ldconfig is missing' : found ? 'libcuda.so.1 is present' : emulated ? 'the addon is the CUDA emulator' : 'the addon has no CUDA'}`);
    return;
  }
  expect(report.cuda).toEqual([]);
  expect(report.cudaUnavailableReason).toBe('no NVIDIA driver is installed (libcuda.so.1 not found)');
});

describe('CudaMatrix argument checks (no GPU needed)', () => {
  const data = new Float32Array(12);
  test('wrong types and shapes are TypeError / RangeError naming the argument', () => {
    expect(() => CudaMatrix.create(new Float64Array(12) as unknown as Float32Array, { rows: 3, dim: 4 }))
      .toThrow(new TypeError('data must be a Float32Array or Uint16Array or Float16Array, got Float64Array'));
    // Shared or resizable memory could change or shrink under native code.
    expect(() => CudaMatrix.create(new Float32Array(new SharedArrayBuffer(48)), { rows: 3, dim: 4 }))
      .toThrow(new TypeError('data is backed by a SharedArrayBuffer, which the native kernels cannot take: copy it into a Float32Array'));
    const Resizable = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer;
    expect(() => CudaMatrix.create([data, new Uint16Array(new Resizable(24, { maxByteLength: 48 }))], { rows: 6, dim: 4 }))
      .toThrow(/^data\[1\] is backed by a resizable ArrayBuffer/);
    expect(() => CudaMatrix.create(data, null as unknown as { rows: number; dim: number })).toThrow(TypeError);
    expect(() => CudaMatrix.create(data, { rows: 3.5, dim: 4 })).toThrow(/options.rows must be an integer/);
    expect(() => CudaMatrix.create(data, { rows: 0, dim: 4 })).toThrow(RangeError);
    expect(() => CudaMatrix.create(data, { rows: 3, dim: NaN })).toThrow(/options.dim/);
    expect(() => CudaMatrix.create(data, { rows: 4, dim: 4 })).toThrow(/data has 12 elements but options.rows x options.dim needs 16/);
    expect(() => CudaMatrix.create(data, { rows: 3, dim: 4, dtype: 'int8' as 'float16' }))
      .toThrow(new TypeError("options.dtype must be 'float32' or 'float16', got \"int8\""));  // as VectorIndex's and the kernels'
    // The device names of the rest of the API ('cuda:N'); a device number says what to write
    // (the old `storage` option is refused as unknown, listing dtype: test/bad-input.test.ts).
    expect(() => CudaMatrix.create(data, { rows: 3, dim: 4, device: 0 as unknown as 'cuda' }))
      .toThrow(new TypeError("options.device must be 'cuda' or 'cuda:<index>', got the number 0: write 'cuda:0'"));
    expect(() => CudaMatrix.create(data, { rows: 3, dim: 4, device: 'cpu' as 'cuda' }))
      .toThrow(new TypeError("options.device is 'cpu', but a CudaMatrix lives on a GPU: use 'cuda' or 'cuda:<index>'"));
    expect(() => CudaMatrix.create(data, { rows: 3, dim: 4, device: 'gpu' as 'cuda' })).toThrow(/^options.device must be .*'cuda:<index>', got "gpu"/);
    expect(() => CudaMatrix.create([data, [1] as unknown as Float32Array], { rows: 3, dim: 4 })).toThrow(/data\[1\] must be/);
    expect(() => CudaMatrix.create([data.subarray(0, 6), data.subarray(6)], { rows: 3, dim: 4 }))
      .toThrow(/data\[0\] has 6 elements: not a whole number of rows of 4/);
  });
  test('createAsync shares create\'s checks, as a rejection', async () => {
    await expect(CudaMatrix.createAsync(data, { rows: 4, dim: 4 }))
      .rejects.toThrow(new RangeError('data has 12 elements but options.rows x options.dim needs 16'));
    await expect(CudaMatrix.createAsync(data, { rows: 3, dim: 4, device: 0 as unknown as 'cuda' })).rejects.toThrow(/write 'cuda:0'/);
    if (!hasGpu) await expect(CudaMatrix.createAsync(data, { rows: 3, dim: 4 })).rejects.toThrow(/no CUDA device is available/);
  });
  (hasGpu ? test.skip : test)('without a GPU, create says why (also for an array from another realm)', () => {
    expect(() => CudaMatrix.create(data, { rows: 3, dim: 4 })).toThrow(/no CUDA device is available/);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const foreign = (require('vm') as typeof import('vm')).runInNewContext('new Float32Array(12)') as Float32Array;
    expect(() => CudaMatrix.create(foreign, { rows: 3, dim: 4 })).toThrow(/no CUDA device is available/);
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
          let rows = randomSignedArray(random, c.rows * c.dim);
          let queries = randomSignedArray(random, c.queries * c.dim);
          if (normalized) {
            rows = unitRows(rows, c.dim);
            queries = unitRows(queries, c.dim);
          }
          // The values the GPU uses: float16 storage rounds rows and queries to float16.
          const half = storage === 'float16';
          const rowsUsed = half ? float32ToFloat16Array(rows) : rows;
          // (Cosine mode sends unit queries: CudaMatrix scales them before the device rounds them.)
          const queriesUsed = half ? float16ToFloat32Array(float32ToFloat16Array(normalized ? queries : unitRows(queries.slice(), c.dim)))
            : queries;
          const m = CudaMatrix.create(rows, { rows: c.rows, dim: c.dim, dtype: storage, device: c.rows === 1 ? 'cuda:0' : 'cuda' });
          try {
            expect([m.dtype, m.device]).toEqual([storage, 'cuda:0']);
            expect(m.bytes).toBeGreaterThanOrEqual(c.rows * c.dim * (half ? 2 : 4));
            const result = m.search(queries, { k: c.k, normalized });
            expect(result.k).toBe(Math.min(c.k, c.rows));
            const expected = reference.cosineTopK(queriesUsed, rowsUsed, { dim: c.dim, k: c.k, normalized });
            expectTopKMatches(result, expected, queriesUsed, rowsUsed, c.dim, normalized, half ? 1e-5 : 1e-6,
              half ? 1e-4 : 1e-5);
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
    const dim = 16, base = unitRows(randomSignedArray(random, 10 * dim), dim);
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

  test('chunked upload (float32 and float16 chunks) equals one upload', () => {
    const dim = 24, rows = randomSignedArray(random, 90 * dim), queries = rows.subarray(5 * dim, 8 * dim);
    const whole = CudaMatrix.create(rows, { rows: 90, dim });
    const chunked = CudaMatrix.create(
      [rows.subarray(0, 40 * dim), float32ToFloat16Array(rows.subarray(40 * dim, 41 * dim)), rows.subarray(41 * dim)],
      { rows: 90, dim },
    );
    try {
      const a = whole.search(queries, { k: 7 }), b = chunked.search(queries, { k: 7 });
      expect(b.indices).toEqual(a.indices);
      expect(b.scores).toEqual(a.scores);
      expect(Array.from(a.indices.filter((_, i) => i % 7 === 0))).toEqual([5, 6, 7]);
    } finally {
      whole.free();
      chunked.free();
    }
  });

  test('a matrix with room to grow: setRows then search of the first rows equals a matrix made whole', () => {
    for (const storage of ['float16', 'float32'] as const) {
      const dim = 24, rows = randomSignedArray(random, 40 * dim), queries = randomSignedArray(random, 3 * dim);
      const grown = CudaMatrix.create(new Float32Array(60 * dim), { rows: 60, dim, dtype: storage });
      try {
        grown.setRows(0, rows.subarray(0, 25 * dim));
        grown.setRows(25, float32ToFloat16Array(rows.subarray(25 * dim)));
        const asStored = rows.slice(0, 25 * dim);  // rows 25.. reach the matrix as float16
        const expectedRows = new Float32Array([...asStored, ...float16ToFloat32Array(float32ToFloat16Array(rows.subarray(25 * dim)))]);
        const whole = CudaMatrix.create(expectedRows, { rows: 40, dim, dtype: storage });
        try {
          const a = grown.search(queries, { k: 50, rows: 40 }), b = whole.search(queries, { k: 50 });
          expect(a.k).toBe(40);
          expect(a.indices).toEqual(b.indices);
          expect(a.scores).toEqual(b.scores);
          // Replacing a row in place: row 3 becomes the first query, its best match.
          grown.setRows(3, queries.subarray(0, dim));
          const replaced = grown.search(queries.subarray(0, dim), { k: 1, rows: 40 });
          expect(replaced.indices[0]).toBe(3);
          expect(Math.abs(replaced.scores[0] - 1)).toBeLessThan(1e-3);
        } finally {
          whole.free();
        }
      } finally {
        grown.free();
      }
    }
  });

  test('setRows and options.rows: bad arguments and bad values are clear errors that change nothing', () => {
    const dim = 4;
    const rows = randomSignedArray(random, 10 * dim);
    for (const storage of ['float16', 'float32'] as const) {
      const m = CudaMatrix.create(rows, { rows: 10, dim, dtype: storage });
      try {
        const before = m.search(rows, { k: 10 });
        expect(() => m.setRows(-1, rows.subarray(0, dim))).toThrow(new RangeError('firstRow must be >= 0, got -1'));
        expect(() => m.setRows(1.5, rows.subarray(0, dim))).toThrow(new TypeError('firstRow must be an integer, got 1.5'));
        expect(() => m.setRows('0' as unknown as number, rows.subarray(0, dim))).toThrow(new TypeError('firstRow must be an integer, got "0"'));
        expect(() => m.setRows(0, [1, 2, 3, 4] as unknown as Float32Array)).toThrow(/data must be a Float32Array or Uint16Array/);
        expect(() => m.setRows(0, rows.subarray(0, 6))).toThrow(/data has 6 elements: expected a positive multiple of dim \(4\)/);
        expect(() => m.setRows(8, rows.subarray(0, 3 * dim))).toThrow(new RangeError("rows 8..10 are beyond the matrix's 10 rows"));
        const bad = rows.slice(0, 3 * dim);
        bad[dim + 2] = NaN;
        expect(() => m.setRows(0, bad)).toThrow(/^data: row 1 holds NaN, infinity/);
        bad[dim + 2] = storage === 'float16' ? 65520 : 3e38;  // infinity in float16; a norm past float32's range
        bad[dim + 3] = storage === 'float16' ? 0 : 3e38;
        expect(() => m.setRows(0, bad)).toThrow(/^data: row 1 holds NaN, infinity/);
        expect(() => m.setRows(0, new Uint16Array([0x3c00, 0, 0, 0, 0x7c00, 0, 0, 0]))).toThrow(/^data: row 1 holds NaN/);
        expect(() => m.search(rows, { k: 3, rows: 0 })).toThrow(/options.rows must be/);
        expect(() => m.search(rows, { k: 3, rows: 2.5 })).toThrow(/options.rows must be/);
        expect(() => m.search(rows, { k: 3, rows: 11 })).toThrow(new RangeError("options.rows is 11 but the matrix has 10 rows"));
        const after = m.search(rows, { k: 10 });
        expect(after.indices).toEqual(before.indices);
        expect(after.scores).toEqual(before.scores);
        if (storage === 'float16') {
          // 65519 rounds down to the largest float16 (65504): accepted.
          m.setRows(9, new Float32Array([65519, 0, 0, 0]));
          expect(m.search(new Float32Array([1, 0, 0, 0]), { k: 1 }).indices[0]).toBe(9);
        }
      } finally {
        m.free();
      }
      expect(() => m.setRows(0, rows.subarray(0, dim))).toThrow(/freed/);
    }
  });

  test('createAsync and setRowsAsync give the matrix that create and setRows give', async () => {
    for (const dtype of ['float16', 'float32'] as const) {
      const dim = 20, rows = randomSignedArray(random, 30 * dim), queries = randomSignedArray(random, 4 * dim);
      const sync = CudaMatrix.create(rows, { rows: 30, dim, dtype });
      const chunked = await CudaMatrix.createAsync([rows.subarray(0, 10 * dim), float32ToFloat16Array(rows.subarray(10 * dim))],
        { rows: 30, dim, dtype, device: 'cuda:0' });
      const grown = await CudaMatrix.createAsync(new Float32Array(30 * dim), { rows: 30, dim, dtype });
      try {
        expect([chunked.dtype, chunked.device, chunked.bytes]).toEqual([dtype, 'cuda:0', sync.bytes]);
        sync.setRows(10, float32ToFloat16Array(rows.subarray(10 * dim)));
        await grown.setRowsAsync(0, rows.subarray(0, 10 * dim));
        await grown.setRowsAsync(10, float32ToFloat16Array(rows.subarray(10 * dim)));
        const expected = sync.search(queries, { k: 30 });
        for (const m of [chunked, grown]) {
          const got = await m.searchAsync(queries, { k: 30 });
          expect(got.indices).toEqual(expected.indices);
          expect(got.scores).toEqual(expected.scores);
        }
        // Checked as setRows checks: a rejection, and nothing changes.
        await expect(grown.setRowsAsync(29, rows.subarray(0, 2 * dim))).rejects.toThrow(new RangeError("rows 29..30 are beyond the matrix's 30 rows"));
        await expect(grown.setRowsAsync(0, new Float32Array(dim).fill(NaN))).rejects.toThrow(/row 0 holds NaN/);
        expect((await grown.searchAsync(queries, { k: 30 })).indices).toEqual(expected.indices);
      } finally {
        [sync, chunked, grown].forEach((m) => m.free());
      }
    }
  });

  (Float16ArrayOrNone === undefined ? test.skip : test)('a Float16Array uploads as its bits in a Uint16Array do (create, createAsync, setRows, one-shot cosineTopK)', async () => {
    const dim = 20, bits = float32ToFloat16Array(randomSignedArray(random, 30 * dim)), queries = randomSignedArray(random, 4 * dim);
    const f16 = float16ArrayOf(bits);
    for (const dtype of ['float16', 'float32'] as const) {
      const want = CudaMatrix.create(bits, { rows: 30, dim, dtype });
      const made = CudaMatrix.create(f16, { rows: 30, dim, dtype });
      const chunked = await CudaMatrix.createAsync([f16.subarray(0, 10 * dim), bits.subarray(10 * dim)], { rows: 30, dim, dtype });
      const set = CudaMatrix.create(new Float32Array(30 * dim), { rows: 30, dim, dtype });
      try {
        set.setRows(0, f16.subarray(0, 10 * dim));
        await set.setRowsAsync(10, f16.subarray(10 * dim));
        const expected = want.search(queries, { k: 30 });
        for (const m of [made, chunked, set]) {
          const got = m.search(queries, { k: 30 });
          expect([got.indices, got.scores]).toEqual([expected.indices, expected.scores]);
        }
      } finally {
        [want, made, chunked, set].forEach((m) => m.free());
      }
    }
    const oneShot = cosineTopK(queries, bits, { dim, k: 7, device: 'cuda' });
    const got = await cosineTopKAsync(queries, f16, { dim, k: 7, device: 'cuda' });
    expect([got.indices, got.scores]).toEqual([oneShot.indices, oneShot.scores]);
  });

  test('the event loop runs while createAsync uploads; a matrix freed during setRowsAsync is freed once it ends', async () => {
    const dim = 256, count = 4096;  // 4 MiB of float32: the upload outlasts a turn of the event loop
    const rows = randomSignedArray(random, count * dim);
    let turned = false;
    setImmediate(() => { turned = true; });
    const m = await CudaMatrix.createAsync(rows, { rows: count, dim });
    expect(turned).toBe(true);  // create's copy held the event loop until it returned
    const pending = m.setRowsAsync(0, rows.subarray(dim, 2 * dim));  // row 0 becomes a copy of row 1
    m.free();
    await pending;  // the upload keeps the memory until it finishes
    await expect(m.setRowsAsync(0, rows.subarray(0, dim))).rejects.toThrow(/freed/);
  });

  test('createAsync holds every chunk from the call: one transferred away while an earlier one uploads is still uploaded', async () => {
    const dim = 16, rows = randomSignedArray(random, 40 * dim), queries = randomSignedArray(random, 3 * dim);
    const expected = CudaMatrix.create(rows, { rows: 40, dim });
    const later = rows.slice(20 * dim);
    const pending = CudaMatrix.createAsync([rows.subarray(0, 20 * dim), later], { rows: 40, dim });
    structuredClone(later.buffer, { transfer: [later.buffer as ArrayBuffer] });  // held per upload: 'data' is shorter than its shape
    const m = await pending;
    try {
      expect(m.search(queries, { k: 40 })).toEqual(expected.search(queries, { k: 40 }));
    } finally {
      [m, expected].forEach((x) => x.free());
    }
  });

  test('free is idempotent; a freed matrix throws; others stay usable', async () => {
    const rows = randomSignedArray(random, 50 * 8);
    const a = CudaMatrix.create(rows, { rows: 50, dim: 8 });
    const b = CudaMatrix.create(rows, { rows: 50, dim: 8, dtype: 'float32' });
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

  test('cosine mode: queries far from 1 in magnitude (1e-9, 1e9) give the cosines of float16 storage', () => {
    const dim = 64, rowsCount = 500;
    const rows = randomSignedArray(random, rowsCount * dim);
    const m = CudaMatrix.create(rows, { rows: rowsCount, dim });
    try {
      for (const scale of [1e-9, 1e9]) {
        const queries = randomSignedArray(random, 3 * dim).map((x) => x * scale);
        const rowsUsed = float32ToFloat16Array(rows);
        const queriesUsed = float16ToFloat32Array(float32ToFloat16Array(unitRows(queries.slice(), dim)));
        const result = m.search(queries, { k: 5 });
        const expected = reference.cosineTopK(queriesUsed, rowsUsed, { dim, k: 5 });
        expectTopKMatches(result, expected, queriesUsed, rowsUsed, dim, false, 1e-5, 1e-4);
      }
    } finally {
      m.free();
    }
  });

  test('bad search arguments and bad data are clear errors', () => {
    const m = CudaMatrix.create(randomSignedArray(random, 20 * 4), { rows: 20, dim: 4 });
    try {
      expect(() => m.search(new Float32Array(6), { k: 1 })).toThrow(/positive multiple of dim \(4\)/);
      expect(() => m.search(new Float32Array(0), { k: 1 })).toThrow(RangeError);
      expect(() => m.search(new Float32Array(4), { k: 0 })).toThrow(/options.k/);
      expect(() => m.search(new Float32Array([1, NaN, 0, 0]), { k: 1 })).toThrow(/queries\[1\] is NaN/);
      expect(() => m.search(new Float32Array([1e5, 0, 0, 0]), { k: 1, normalized: true })).toThrow(/65504/);
      expect(m.search(new Float32Array([1e5, 0, 0, 0]), { k: 1 }).k).toBe(1);  // cosine mode sends it as a unit vector
      expect(() => m.search(new Float32Array(4), { k: 1, normalized: 1 as unknown as boolean })).toThrow(TypeError);
      // A resizable buffer could shrink under an async search (float32 storage and normalized
      // queries are sent as given); an array from another realm is a Float32Array too.
      const Resizable = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer;
      expect(() => m.search(new Float32Array(new Resizable(16, { maxByteLength: 32 })), { k: 1, normalized: true }))
        .toThrow(/^queries is backed by a resizable ArrayBuffer/);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const foreign = (require('vm') as typeof import('vm')).runInNewContext('new Float32Array([1, 0, 0, 0])') as Float32Array;
      expect(m.search(foreign, { k: 1 }).k).toBe(1);
      // An option getter that empties the queries on its second read: the options are read before
      // the queries are checked (this returned an empty result).
      const emptied = new Float32Array([1, 0, 0, 0]);
      let reads = 0;
      const emptying = Object.defineProperty({ k: 1 }, 'normalized', {
        enumerable: true, get() { if (++reads === 2) structuredClone(emptied.buffer, { transfer: [emptied.buffer] }); return undefined; },
      });
      expect(() => m.search(emptied, emptying)).toThrow(/^queries has 0 elements/);
      // The same for create (this uploaded no rows and returned a matrix of zero rows, without an error).
      const emptiedRows = new Float32Array([1, 0, 0, 0]);
      let rowReads = 0;
      const emptyingCreate = Object.defineProperty({ rows: 1, dim: 4 }, 'device', {
        enumerable: true, get() { if (++rowReads === 2) structuredClone(emptiedRows.buffer, { transfer: [emptiedRows.buffer] }); return undefined; },
      });
      expect(() => CudaMatrix.create(emptiedRows, emptyingCreate)).toThrow(/^data has 0 elements/);
      // A chunk's own getter (its type tag, read again as it is uploaded) that empties the next chunk:
      // refused by native code (this uploaded the next chunk as no rows).
      const second = new Float32Array([0, 1, 0, 0]);
      let tagReads = 0;
      const first = Object.defineProperty(new Float32Array([1, 0, 0, 0]), Symbol.toStringTag, {
        get() { if (++tagReads === 2) structuredClone(second.buffer, { transfer: [second.buffer] }); return 'Float32Array'; },
      });
      expect(() => CudaMatrix.create([first, second], { rows: 2, dim: 4 })).toThrow("native: 'data' is shorter than its shape");
      expect(() => CudaMatrix.create(new Float32Array([1, NaN]), { rows: 1, dim: 2 })).toThrow(/row 0 holds NaN/);
      // Finite values whose norm passes the float32 range (3e38, 3e38), as on the CPU: the infinite
      // norm scored the row 0 in cosine mode, and it went missing from the results.
      const hugeRow = new Float32Array([1, 0, 0, 1, 3e38, 3e38]);
      expect(() => CudaMatrix.create(hugeRow, { rows: 3, dim: 2, dtype: 'float32' }))
        .toThrow('CudaMatrix: row 2 holds NaN, infinity, or values whose norm passes the float32 range');
      expect(() => CudaMatrix.create(new Float32Array(4), { rows: 2, dim: 2, device: 'cuda:999' })).toThrow(/devices 0\.\./);
      const big = CudaMatrix.create(randomSignedArray(random, 3000 * 2), { rows: 3000, dim: 2 });
      expect(() => big.search(new Float32Array(2), { k: CUDA_MAX_K + 1 })).toThrow(/<= 2048/);
      big.free();
      expect(m.search(new Float32Array([1, 0, 0, 0]), { k: 2 }).k).toBe(2);
    } finally {
      m.free();
    }
  });
});

(hasGpu ? describe : describe.skip)("one-shot cosineTopK / meanPoolNormalize with device: 'cuda'", () => {
  const random = makeRandom(505);
  test('top-k equals the CPU kernel within the CUDA tolerances (float32 storage)', async () => {
    const dim = 40, database = randomSignedArray(random, 700 * dim), queries = randomSignedArray(random, 9 * dim);
    const options = { dim, k: 12 };
    const want = reference.cosineTopK(queries, database, options);
    const sync = cosineTopK(queries, database, { ...options, device: 'cuda' });
    const viaAsync = await cosineTopKAsync(queries, database, { ...options, device: 'cuda' });
    for (const got of [sync, viaAsync]) expectTopKMatches(got, want, queries, database, dim, false, 1e-6, 1e-5);
  });

  // Rows of norm below 1e-15 are scored from copies scaled by 2^100, as on the CPU: from their raw
  // products (float32 subnormals), rows of components near 1e-45 scored 0.2-1 whatever the query.
  test('cosine mode: float32 rows of subnormal components among normal ones give the reference cosines', () => {
    const dim = 40, scales = [1, 1e-45, 1e-40, 1e-38];
    const database = randomSignedArray(random, 400 * dim).map((x, i) => x * scales[Math.floor(i / dim) % scales.length]);
    const queries = randomSignedArray(random, 5 * dim);
    const got = cosineTopK(queries, database, { dim, k: 20, device: 'cuda' });
    expectTopKMatches(got, reference.cosineTopK(queries, database, { dim, k: 20 }), queries, database, dim, false, 1e-6, 1e-5);
  });

  test('cosineTopKAsync: queries transferred away while the database uploads (docs/lifetime.md)', async () => {
    const dim = 40, database = randomSignedArray(random, 700 * dim), queries = randomSignedArray(random, 9 * dim);
    const want = cosineTopK(queries, database, { dim, k: 12, device: 'cuda' });
    const pending = cosineTopKAsync(queries, database, { dim, k: 12, device: 'cuda' });
    structuredClone(queries.buffer, { transfer: [queries.buffer as ArrayBuffer] });  // without the copy: 'queries has 0 elements'
    const got = await pending;
    expect([got.indices, got.scores]).toEqual([want.indices, want.scores]);
  });

  // The upload's check named 'CudaMatrix: row 3' (an Error) for the caller's database, where the CPU
  // and the reference name 'database row 3' (a RangeError).
  test('NaN or infinity in the database is the CPU\'s and the reference\'s RangeError, naming the row', async () => {
    const queries = new Float32Array([1, 0, 0, 0]);
    const rows = new Float32Array(40).fill(1);
    rows[14] = NaN;  // row 3
    const halves = float32ToFloat16Array(new Float32Array(40).fill(1));
    halves[29] = 0x7c00;  // infinity in row 7
    for (const [database, row] of [[rows, 3], [halves, 7]] as const) {
      const error = new RangeError(`database row ${row} contains NaN or infinite values`);
      expect(() => reference.cosineTopK(queries, database, { dim: 4, k: 2 })).toThrow(error);
      for (const normalized of [false, true]) {
        expect(() => cosineTopK(queries, database, { dim: 4, k: 2, normalized, device: 'cuda' })).toThrow(error);
        await expect(cosineTopKAsync(queries, database, { dim: 4, k: 2, normalized, device: 'cuda' })).rejects.toThrow(error);
        await expect(cosineTopKAsync(queries, database, { dim: 4, k: 2, normalized, device: 'cuda' })).rejects.toBeInstanceOf(RangeError);
      }
    }
  });

  // The database was scanned for a non-finite row after any failed upload: a full pass over a large
  // database before the real error (out of GPU memory), which a database holding NaN then hid.
  test('an upload failure that names no NaN keeps its message: the database is not scanned for the row', async () => {
    const queries = new Float32Array([1, 0, 0, 0]);
    const database = new Float32Array(40).fill(1);
    database[14] = NaN;  // row 3
    const failure = new Error('CudaMatrix: cudaMalloc(rows): out of memory (a stand-in)');
    const upload = jest.spyOn(loadAddon() as unknown as { cudaMatrixSetRows(h: unknown, u: unknown, async: boolean): unknown }, 'cudaMatrixSetRows')
      .mockImplementation((_handle, _uploads, async) => {
        if (async) return Promise.reject(failure);
        throw failure;
      });
    try {
      expect(() => cosineTopK(queries, database, { dim: 4, k: 2, device: 'cuda' })).toThrow(failure.message);
      await expect(cosineTopKAsync(queries, database, { dim: 4, k: 2, device: 'cuda' })).rejects.toThrow(failure.message);
    } finally {
      upload.mockRestore();
    }
    expect(() => cosineTopK(queries, database, { dim: 4, k: 2, device: 'cuda' })).toThrow(new RangeError('database row 3 contains NaN or infinite values'));
  });

  // Both were refused only by the search, after the whole database had been uploaded.
  test('k past CUDA_MAX_K and float16 queries past 65504 in dot mode: CudaMatrix\'s RangeErrors, before any upload', async () => {
    const dim = 2, rows = randomSignedArray(random, 3000 * dim), halves = float32ToFloat16Array(rows);
    const cases = [
      [new Float32Array([1, 0]), rows, { dim, k: CUDA_MAX_K + 1, normalized: false }, `options.k must be <= 2048 on CUDA, got ${CUDA_MAX_K + 1}`],
      [new Float32Array([1, 0]), rows.subarray(0, 2500 * dim), { dim, k: 5000, normalized: false }, 'options.k must be <= 2048 on CUDA, got 5000'],  // capped: 2500
      [new Float32Array([0, 1e5]), halves, { dim, k: 1, normalized: true },
        'queries[1] is 100000: expected a finite value within +-65504 (dtype float16, normalized: true)'],
    ] as const;
    for (const [queries, database, options, message] of cases) {
      const matrix = CudaMatrix.create(database, { rows: database.length / dim, dim, dtype: elementTypeOf(database) });
      try {
        expect(() => matrix.search(queries, { k: options.k, normalized: options.normalized })).toThrow(new RangeError(message));
      } finally {
        matrix.free();
      }
      const create = jest.spyOn(loadAddon() as unknown as { cudaMatrixCreate(): unknown }, 'cudaMatrixCreate');
      try {
        const error = new RangeError(message);
        expect(() => cosineTopK(queries, database, { ...options, device: 'cuda' })).toThrow(error);
        expect(() => cosineTopK(queries, database, { ...options, device: 'cuda' })).toThrow(RangeError);
        await expect(cosineTopKAsync(queries, database, { ...options, device: 'cuda' })).rejects.toThrow(error);
        await expect(cosineTopKAsync(queries, database, { ...options, device: 'cuda' })).rejects.toBeInstanceOf(RangeError);
        expect(create).not.toHaveBeenCalled();
      } finally {
        create.mockRestore();
      }
    }
  });

  test('pooling equals the reference', () => {
    const [batch, seq, hidden] = [6, 21, 77];
    const h = randomSignedArray(random, batch * seq * hidden);
    const mask = Uint8Array.from({ length: batch * seq }, (_, i) => (i % seq < 1 + (i % 5) * 4 ? 1 : 0));
    const got = meanPoolNormalize(h, mask, { batch, seq, hidden }, { device: 'cuda' });
    const want = reference.meanPoolNormalize(h, mask, { batch, seq, hidden });
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    expect(worst).toBeLessThanOrEqual(1e-6);
  });
});

test("one-shot cosineTopK with device: 'cuda' and no GPU says why", () => {
  if (hasGpu) {
    console.log('skipped: a CUDA device is present, so the no-GPU error cannot be observed');
    return;
  }
  expect(() => cosineTopK(new Float32Array(4), new Float32Array(8), { dim: 4, k: 1, device: 'cuda' }))
    .toThrow(/no CUDA device is available/);
});

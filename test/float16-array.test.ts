// Float16Array input (a JavaScript global from Node.js 24 on): taken wherever float16 bits in a
// Uint16Array are, read as a Uint16Array over the same memory (lib/validate.ts). Every result is
// compared with what the same bits give as a Uint16Array, and with the float64 reference; the
// refusals that apply to a Uint16Array apply to it too. Skips on Node.js 20 and 22.
import {
  cosineTopK, cosineTopKAsync, CudaMatrix, devices, float16ToFloat32Array, float32ToFloat16Array, Float16ArrayLike, meanPoolNormalize,
  meanPoolNormalizeAsync, reference, VectorIndex,
} from '../lib';
import { expectTopKMatches, maxAbsDifference } from './helpers/compare';
import { float16ArrayOf, Float16ArrayOrNone, NEEDS_FLOAT16ARRAY, RuntimeFloat16Array } from './helpers/float16-array';
import { makeRandom, randomSignedArray } from './helpers/random';

if (Float16ArrayOrNone === undefined) console.log(`float16-array.test: skipped: ${NEEDS_FLOAT16ARRAY}`);

/** The error `call` throws (to expect the same one of a call given the other array type). */
function errorOf(call: () => unknown): Error {
  try {
    call();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to throw');
}

(Float16ArrayOrNone === undefined ? describe.skip : describe)('Float16Array input', () => {
  const random = makeRandom(20260524);
  const as = <T>(x: Float16ArrayLike) => x as unknown as T;  // where the signature admits no Float16Array

  /** `values` rounded to float16: as bits, and as a Float16Array over a copy of them at an odd element offset. */
  function halves(values: Float32Array): { bits: Uint16Array; f16: RuntimeFloat16Array } {
    const bits = float32ToFloat16Array(values);
    const backing = new Uint16Array(bits.length + 3);
    backing.set(bits, 1);
    return { bits, f16: float16ArrayOf(backing.subarray(1, 1 + bits.length)) };
  }

  test('the runtime rounds float32 to the bits float32ToFloat16Array gives; float16ToFloat32Array reads a Float16Array as its bits', () => {
    const values = randomSignedArray(random, 5000).map((x, i) => x * 2 ** ((i % 40) - 20));
    expect(new Uint16Array(new Float16ArrayOrNone!(values).buffer)).toEqual(float32ToFloat16Array(values));
    // Every half: the same float32 bits as from the Uint16Array (NaN payloads too), and the
    // runtime's own value of each (NaNs aside: it makes them canonical).
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const f16 = float16ArrayOf(all);
    const got = float16ToFloat32Array(f16);
    expect(new Uint32Array(got.buffer)).toEqual(new Uint32Array(float16ToFloat32Array(all).buffer));
    const own = Float32Array.from({ length: 65536 }, (_, i) => f16[i]);
    expect(Array.from(got).filter((x, i) => !Number.isNaN(x) && x !== own[i])).toEqual([]);
    expect(float16ToFloat32Array(float16ArrayOf(all.subarray(0x3c00, 0x3c02)))).toEqual(Float32Array.of(1, 1 + 2 ** -10));
  });

  test('meanPoolNormalize, meanPoolNormalizeAsync and the reference: as the bits, and the reference', async () => {
    const shape = { batch: 3, seq: 7, hidden: 33 };
    const { bits, f16 } = halves(randomSignedArray(random, shape.batch * shape.seq * shape.hidden));
    const mask = Int32Array.from({ length: shape.batch * shape.seq }, (_, i) => (i % shape.seq < 2 + (i % 3) * 2 ? 1 : 0));
    for (const normalize of [true, false]) {
      const want = meanPoolNormalize(bits, mask, shape, { normalize });
      expect(maxAbsDifference(want, reference.meanPoolNormalize(bits, mask, shape, { normalize }))).toBeLessThanOrEqual(1e-6);
      expect(meanPoolNormalize(f16, mask, shape, { normalize, dtype: 'float16' })).toEqual(want);
      expect(await meanPoolNormalizeAsync(f16, mask, shape, { normalize })).toEqual(want);
      expect(reference.meanPoolNormalize(f16, mask, shape, { normalize })).toEqual(reference.meanPoolNormalize(bits, mask, shape, { normalize }));
    }
  });

  test('cosineTopK, cosineTopKAsync and the reference over a Float16Array database: as the bits, and the reference', async () => {
    // 5 queries put rows in the kernel's vector lanes, 40 queries (float16: 32+ on AVX-512, 14+ on AVX2).
    for (const [numQueries, normalized] of [[5, false], [40, true]] as const) {
      const dim = 48, rows = 300, k = 20;
      const { bits, f16 } = halves(randomSignedArray(random, rows * dim));
      const queries = randomSignedArray(random, numQueries * dim);
      const options = { dim, k, normalized };
      const want = cosineTopK(queries, bits, options);
      expectTopKMatches(want, reference.cosineTopK(queries, bits, options), queries, bits, dim, normalized, 1e-6, 1e-5);
      for (const got of [cosineTopK(queries, f16, { ...options, dtype: 'float16' }), await cosineTopKAsync(queries, f16, options)]) {
        expect([got.indices, got.scores, got.k]).toEqual([want.indices, want.scores, want.k]);
      }
      const ref = reference.cosineTopK(queries, f16, options);
      expect([ref.indices, ref.scores]).toEqual([reference.cosineTopK(queries, bits, options).indices, reference.cosineTopK(queries, bits, options).scores]);
    }
  });

  test('transferred away during an async call, as a Uint16Array may be (docs/lifetime.md)', async () => {
    const dim = 64;
    const { bits, f16 } = halves(randomSignedArray(random, 2000 * dim));
    const queries = randomSignedArray(random, 3 * dim);
    const want = cosineTopK(queries, bits, { dim, k: 5 });
    const pending = cosineTopKAsync(queries, f16, { dim, k: 5 });
    structuredClone(f16.buffer, { transfer: [f16.buffer as ArrayBuffer] });
    expect(f16.byteLength).toBe(0);
    const got = await pending;
    expect([got.indices, got.scores]).toEqual([want.indices, want.scores]);
  });

  test('refused as a Uint16Array is: shared, detached or resizable memory, wrong lengths, dtype float32, NaN', async () => {
    const shape = { batch: 1, seq: 2, hidden: 4 };
    const mask = Uint8Array.of(1, 1);
    const q = new Float32Array(4).fill(1);
    const shared = float16ArrayOf(new Uint16Array(new SharedArrayBuffer(16)));
    expect(() => meanPoolNormalize(shared, mask, shape)).toThrow(
      new TypeError('hidden is backed by a SharedArrayBuffer, which the native kernels cannot take: copy it into a Float16Array'));
    const detached = halves(new Float32Array(8)).f16;
    structuredClone(detached.buffer, { transfer: [detached.buffer as ArrayBuffer] });
    expect(() => cosineTopK(q, detached, { dim: 4, k: 1 })).toThrow(/^database is backed by a detached ArrayBuffer/);
    await expect(cosineTopKAsync(q, detached, { dim: 4, k: 1 })).rejects.toThrow(/^database is backed by a detached ArrayBuffer/);
    expect(() => float16ToFloat32Array(detached)).toThrow(/^src is backed by a detached ArrayBuffer/);
    const Resizable = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer;
    const resizable = new Float16ArrayOrNone!(new Resizable(16, { maxByteLength: 32 }));
    await expect(meanPoolNormalizeAsync(resizable, mask, shape)).rejects.toThrow(/^hidden is backed by a resizable ArrayBuffer/);
    expect(() => CudaMatrix.create([new Float32Array(4), resizable], { rows: 3, dim: 4 })).toThrow(/^data\[1\] is backed by a resizable ArrayBuffer/);

    const { bits, f16 } = halves(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    expect(() => meanPoolNormalize(f16.subarray(1), mask, shape)).toThrow(new RangeError('hidden has 7 elements but shape 1x2x4 needs 8'));
    expect(() => meanPoolNormalize(f16, mask, shape, { dtype: 'float32' })).toThrow(
      new TypeError("options.dtype is 'float32' but hidden holds float16 values"));
    expect(() => cosineTopK(q, f16.subarray(1), { dim: 4, k: 1 })).toThrow(errorOf(() => cosineTopK(q, bits.subarray(1), { dim: 4, k: 1 })));
    const nanBits = bits.slice();
    nanBits[5] = 0x7e00;
    const nan = float16ArrayOf(nanBits);
    expect(() => meanPoolNormalize(nan, mask, shape)).toThrow(errorOf(() => meanPoolNormalize(nanBits, mask, shape)));
    expect(() => cosineTopK(q, nan, { dim: 4, k: 1 })).toThrow(errorOf(() => cosineTopK(q, nanBits, { dim: 4, k: 1 })));
  });

  test('refused where float16 is not taken: queries, masks, VectorIndex vectors, float32ToFloat16Array', () => {
    const f16 = halves(new Float32Array(8)).f16;
    expect(() => cosineTopK(as(f16), new Float32Array(8), { dim: 4, k: 1 })).toThrow(new TypeError('queries must be a Float32Array, got Float16Array'));
    expect(() => meanPoolNormalize(new Float32Array(8), as(f16.subarray(0, 2)), { batch: 1, seq: 2, hidden: 4 }))
      .toThrow(new TypeError('mask must be a BigInt64Array or Int32Array or Uint8Array, got Float16Array'));
    expect(() => new VectorIndex({ dim: 4, dtype: 'float16' }).add(as(f16))).toThrow(new TypeError('vectors must be a Float32Array, got Float16Array'));
    expect(() => float32ToFloat16Array(as(f16))).toThrow(new TypeError('src must be a Float32Array, got Float16Array'));
  });

  // On a GPU, test/cuda.test.ts compares the matrices a Float16Array and its bits make.
  test('CudaMatrix.create and createAsync take it: checked as a Uint16Array is, up to the device', async () => {
    const f16 = halves(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8)).f16;
    expect(() => CudaMatrix.create(f16, { rows: 3, dim: 4 })).toThrow(new RangeError('data has 8 elements but options.rows x options.dim needs 12'));
    await expect(CudaMatrix.createAsync([f16.subarray(0, 2), f16.subarray(2)], { rows: 2, dim: 4 }))
      .rejects.toThrow(new RangeError('data[0] has 2 elements: not a whole number of rows of 4'));
    if (devices().cuda.length > 0) return;
    expect(() => CudaMatrix.create(f16, { rows: 2, dim: 4 })).toThrow(/no CUDA device is available/);
    await expect(CudaMatrix.createAsync(f16, { rows: 2, dim: 4 })).rejects.toThrow(/no CUDA device is available/);
  });
});

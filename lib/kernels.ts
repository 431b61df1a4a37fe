// The public kernels: argument validation (shared with the reference path), then the native
// CPU/CUDA implementation, synchronously or off the event loop.
import { CudaMatrix, CudaMatrixOptions, requireCudaSearch, RowData } from './cuda';
import { Device, resolveDevice } from './devices';
import { Float16ArrayLike } from './float16';
import { loadAddon, NativePoolArgs, NativeTopKArgs, NativeTopKSegment } from './native';
import {
  elementTypeOf, namesOf, optionalBoolean, optionalObject, optionalOneOf, optionalThreads, requireLength, requireObject, requirePositiveInteger,
  requireTypedArray, typedArrayKind,
} from './validate';

/** Element type of stored vectors: float32, or float16 (held as its bits in a Uint16Array). */
export type Dtype = 'float32' | 'float16';
export const DTYPES: readonly Dtype[] = ['float32', 'float16'];
/** Row-major float32 values, or float16 bits in a Uint16Array or a Float16Array (hidden states, database rows). */
export type HiddenStates = Float32Array | Uint16Array | Float16ArrayLike;
/** Attention mask, 1 for a real token and 0 for padding (any nonzero value counts as 1, not as a weight): ONNX Runtime's BigInt64Array, or Int32Array / Uint8Array. */
export type AttentionMask = BigInt64Array | Int32Array | Uint8Array;

/** The shape of meanPoolNormalize's hidden states: [batch, seq, hidden] (the mask is [batch, seq]). */
export interface PoolShape {
  /** Sequences (texts). */
  batch: number;
  /** Tokens per sequence, padding included. */
  seq: number;
  /** Values per token (768 for CamemBERT-base): the length of each pooled vector. */
  hidden: number;
}
/** Options of meanPoolNormalize and meanPoolNormalizeAsync. */
export interface PoolOptions {
  /** L2-normalise the pooled vectors (default true), as `normalize_embeddings=True`. */
  normalize?: boolean | undefined;
  /** Element type of `hidden`; inferred from the array (Uint16Array holds float16 bits; Float16Array is float16). */
  dtype?: Dtype | undefined;
  /** 'cpu' (default), 'cuda' or 'cuda:<index>'. */
  device?: Device | undefined;
  /** CPU threads (default: all the CPUs this process may run on, os.availableParallelism()). */
  threads?: number | undefined;
}

/** Options of cosineTopK and cosineTopKAsync. */
export interface TopKOptions {
  /** Values per vector: queries and database hold a whole number of rows of `dim`. */
  dim: number;
  /** Results per query (>= 1); fewer when the database has fewer rows (see TopKResult.k). On CUDA at most CUDA_MAX_K (2048) once so capped. */
  k: number;
  /** Inputs are unit vectors: score = dot product (default false: true cosine). */
  normalized?: boolean | undefined;
  /** Element type of `database`; inferred from the array (Uint16Array holds float16 bits; Float16Array is float16). */
  dtype?: Dtype | undefined;
  /** 'cpu' (default), 'cuda' or 'cuda:<index>' (the database is uploaded for this call only; keep a CudaMatrix to search it again). */
  device?: Device | undefined;
  /** CPU threads (default: all the CPUs this process may run on, os.availableParallelism()). */
  threads?: number | undefined;
}

/** Top-k results, [queries x k] row-major. */
export interface TopKResult {
  /** Row indices, `k` per query, best first; ties broken by lower index. */
  indices: Int32Array;
  /** The cosine (or, with `normalized: true`, the dot product) of each of `indices`. */
  scores: Float32Array;
  /** min(options.k, number of database rows). */
  k: number;
}

function dtypeOf(name: string, array: Float32Array | Uint16Array, requested: unknown): Dtype {
  const actual = elementTypeOf(array);
  optionalOneOf('options.dtype', requested, DTYPES);
  if (requested !== undefined && requested !== actual) {
    // Not the array's type: a Float16Array reaches here as a Uint16Array.
    throw new TypeError(`options.dtype is '${requested}' but ${name} holds ${actual} values`);
  }
  return actual;
}

const POOL_SHAPE = namesOf<PoolShape>({ batch: true, seq: true, hidden: true });
const POOL_OPTIONS = namesOf<PoolOptions>({ normalize: true, dtype: true, device: true, threads: true });
const TOPK_OPTIONS = namesOf<TopKOptions>({ dim: true, k: true, normalized: true, dtype: true, device: true, threads: true });

const MASK_TYPES: Record<string, NativePoolArgs['maskType']> = { BigInt64Array: 'int64', Int32Array: 'int32', Uint8Array: 'uint8' };

export function preparePool(hidden: unknown, mask: unknown, shape: unknown, options: unknown): NativePoolArgs {
  const h = requireTypedArray<Float32Array | Uint16Array>('hidden', hidden, ['Float32Array', 'Uint16Array']);
  const m = requireTypedArray<AttentionMask>('mask', mask, ['BigInt64Array', 'Int32Array', 'Uint8Array']);
  const s = requireObject('shape', shape, POOL_SHAPE);
  const batch = requirePositiveInteger('shape.batch', s.batch);
  const seq = requirePositiveInteger('shape.seq', s.seq);
  const hiddenSize = requirePositiveInteger('shape.hidden', s.hidden);
  const o = optionalObject('options', options, POOL_OPTIONS);
  // Every option is read before the lengths are checked: a getter could otherwise empty an array
  // (transfer its buffer) after its check.
  const hiddenType = dtypeOf('hidden', h, o.dtype);
  const normalize = optionalBoolean('options.normalize', o.normalize, true);
  const threads = optionalThreads(o.threads);
  const device = resolveDevice(o.device);
  requireLength('hidden', h, batch * seq * hiddenSize, `shape ${batch}x${seq}x${hiddenSize}`);
  requireLength('mask', m, batch * seq, `shape ${batch}x${seq}`);
  return {
    hidden: h, hiddenType, mask: m, maskType: MASK_TYPES[typedArrayKind(m)!], batch, seq, hiddenSize, normalize,
    out: new Float32Array(batch * hiddenSize), threads, device,
  };
}

/**
 * The most values one result array holds: the longest typed array Node 20 allows (later versions
 * try to allocate more, tens of GB, where such a result is a mistake anyway).
 */
export const MAX_RESULT_VALUES = 2 ** 32;

/** Refuses a search whose numQueries x k results pass MAX_RESULT_VALUES (V8 says only 'Invalid typed array length'). */
export function requireResultFits(numQueries: number, k: number): void {
  if (numQueries * k > MAX_RESULT_VALUES) {
    throw new RangeError(`${numQueries} queries x k = ${k} would be ${numQueries * k} results, more than a result holds (2^32): ` +
      'lower options.k, or search the queries in batches');
  }
}

/** Rows of `queries` (a non-zero multiple of `dim` values, else a RangeError). */
function queryCount(queries: Float32Array, dim: number): number {
  if (queries.length === 0 || queries.length % dim !== 0) {
    throw new RangeError(`queries has ${queries.length} elements: expected a non-zero multiple of options.dim (${dim})`);
  }
  return queries.length / dim;
}

export function prepareTopK(queries: unknown, database: unknown, options: unknown): NativeTopKArgs & { device: number } {
  const q = requireTypedArray<Float32Array>('queries', queries, ['Float32Array']);
  const db = requireTypedArray<Float32Array | Uint16Array>('database', database, ['Float32Array', 'Uint16Array']);
  const o = requireObject('options', options, TOPK_OPTIONS);
  const dim = requirePositiveInteger('options.dim', o.dim);
  const k = requirePositiveInteger('options.k', o.k);
  // Every option is read before the lengths are checked (see preparePool).
  const databaseType = dtypeOf('database', db, o.dtype);
  const normalized = optionalBoolean('options.normalized', o.normalized, false);
  const threads = optionalThreads(o.threads);
  const device = resolveDevice(o.device);
  const numQueries = queryCount(q, dim);
  const badQuery = firstNonFiniteRow(q, dim);
  if (badQuery >= 0) throw new RangeError(`queries row ${badQuery} contains NaN or infinite values`);
  if (db.length === 0 || db.length % dim !== 0) {
    throw new RangeError(`database has ${db.length} elements: expected a non-zero multiple of options.dim (${dim})`);
  }
  const numRows = db.length / dim;
  if (numRows > 0x7fffffff) throw new RangeError(`database has ${numRows} rows; at most 2^31-1 are supported`);
  const kept = Math.min(k, numRows);
  requireResultFits(numQueries, kept);
  // The one-shot CUDA search refuses these before it uploads the database (its storage is the database's dtype).
  if (device >= 0) requireCudaSearch(q, k, kept, databaseType, normalized);
  return {
    queries: q, numQueries, segments: [{ rows: db, numRows }], databaseType, dim, k: kept, normalized,
    outIndices: new Int32Array(numQueries * kept), outScores: new Float32Array(numQueries * kept), threads, device,
  };
}

// NaN or infinity in the hidden states shows up as a non-finite pooled value: report the row
// (also as the error's `batchRow`, for the encoder to name its text). The reference checks its
// output the same way.
export function checkPooled(args: NativePoolArgs): Float32Array {
  const out = args.out;
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) {
      const row = Math.floor(i / args.hiddenSize);
      throw Object.assign(new RangeError(`hidden contains NaN or infinite values (batch row ${row})`), { batchRow: row });
    }
  }
  return out;
}

// Native failures (NaN scores, CUDA errors) arrive as plain messages; rethrow them as errors
// of this realm with the kernel's message, never as crashes.
function nativeError(err: unknown): Error {
  return new Error(err instanceof Error || (typeof err === 'object' && err !== null && 'message' in err)
    ? String((err as { message: unknown }).message) : String(err));
}

function runSync<T>(run: () => T): T {
  try {
    return run();
  } catch (err) {
    throw nativeError(err);
  }
}

async function runAsync(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    throw nativeError(err);
  }
}

/** The first row of `rows` (`dim` values each) holding NaN or infinity (float16: exponent all ones), or -1. */
function firstNonFiniteRow(rows: Float32Array | Uint16Array, dim: number): number {
  const half = elementTypeOf(rows) === 'float16';
  for (let i = 0; i < rows.length; i++) {
    if (half ? (rows[i] & 0x7c00) === 0x7c00 : !Number.isFinite(rows[i])) return Math.floor(i / dim);
  }
  return -1;
}

// The CPU kernel only sees that a score is not finite, and the CUDA upload names a row of a
// CudaMatrix the caller never made: name the database row, as the reference does. A database of
// finite values keeps the kernel's message (products or norms past the float32 range). Looked for
// only once the step that reads the rows (the CPU kernel, the upload) has failed on a value (both
// messages name NaN: native/cpu/topk.cc, native/cuda/topk.cu): a search pays nothing for it, nor
// does another failure (out of GPU memory), which a scan of a large database would delay.
function topKError(args: NativeTopKArgs, err: Error): Error {
  if (!/\bNaN\b/.test(err.message)) return err;
  const row = firstNonFiniteRow(args.segments[0].rows, args.dim);
  return row >= 0 ? new RangeError(`database row ${row} contains NaN or infinite values`) : err;
}

function topKResult(args: NativeTopKArgs): TopKResult {
  return { indices: args.outIndices, scores: args.outScores, k: args.k };
}

// One-shot CUDA search: upload the database in its own dtype, search, free. For repeated
// searches over the same rows, keep a CudaMatrix (lib/cuda.ts) instead.
function uploadArgs(args: NativeTopKArgs & { device: number }): [RowData, CudaMatrixOptions] {
  const [{ rows, numRows }] = args.segments;
  return [rows, { rows: numRows, dim: args.dim, dtype: args.databaseType, device: `cuda:${args.device}` }];
}

function cudaTopKSync(args: NativeTopKArgs & { device: number }): TopKResult {
  let matrix: CudaMatrix;
  try {
    matrix = CudaMatrix.create(...uploadArgs(args));
  } catch (err) {
    throw topKError(args, err as Error);
  }
  try {
    return matrix.search(args.queries, { k: args.k, normalized: args.normalized });
  } finally {
    matrix.free();
  }
}

async function cudaTopKAsync(args: NativeTopKArgs & { device: number }): Promise<TopKResult> {
  // The search starts only once the upload ends: the caller may transfer `queries` away before
  // that (docs/lifetime.md), so take them now, as the database's upload takes its memory now.
  const queries = args.queries.slice();
  const matrix = await CudaMatrix.createAsync(...uploadArgs(args)).catch((err: Error) => {
    throw topKError(args, err);
  });
  try {
    return await matrix.searchAsync(queries, { k: args.k, normalized: args.normalized });
  } finally {
    matrix.free();
  }
}

/** Fused masked mean pooling + L2 normalisation: [batch, seq, hidden] -> [batch, hidden] float32. */
export function meanPoolNormalize(hidden: HiddenStates, mask: AttentionMask, shape: PoolShape, options?: PoolOptions): Float32Array {
  const args = preparePool(hidden, mask, shape, options);
  runSync(() => loadAddon().meanPoolNormalize(args, false));
  return checkPooled(args);
}

/** As meanPoolNormalize, off the event loop. */
export async function meanPoolNormalizeAsync(
  hidden: HiddenStates, mask: AttentionMask, shape: PoolShape, options?: PoolOptions,
): Promise<Float32Array> {
  const args = preparePool(hidden, mask, shape, options);
  await runAsync(() => loadAddon().meanPoolNormalize(args, true));
  return checkPooled(args);
}

/** Exact cosine top-k of each query row against the database rows. */
export function cosineTopK(queries: Float32Array, database: HiddenStates, options: TopKOptions): TopKResult {
  const args = prepareTopK(queries, database, options);
  if (args.device >= 0) return cudaTopKSync(args);
  try {
    runSync(() => loadAddon().cosineTopK(args, false));
  } catch (err) {
    throw topKError(args, err as Error);
  }
  return topKResult(args);
}

/** As cosineTopK, off the event loop. */
export async function cosineTopKAsync(queries: Float32Array, database: HiddenStates, options: TopKOptions): Promise<TopKResult> {
  const args = prepareTopK(queries, database, options);
  if (args.device >= 0) return cudaTopKAsync(args);
  await runAsync(() => loadAddon().cosineTopK(args, true)).catch((err: Error) => {
    throw topKError(args, err);
  });
  return topKResult(args);
}

/**
 * CPU top-k over a database stored in segments (VectorIndex's chunks), in one native call that
 * streams every segment once; equal scores go to the lower id. The caller has validated the
 * segments (same dtype, `numRows * dim` elements, ids where given) and the query values (VectorIndex
 * normalises them, refusing NaN and infinity); the queries' shape is checked here.
 */
export async function cosineTopKSegmentsAsync(
  queries: Float32Array, segments: NativeTopKSegment[], options: { dim: number; k: number; dtype: Dtype; normalized: boolean; threads?: number },
): Promise<TopKResult> {
  const numRows = segments.reduce((sum, s) => sum + s.numRows, 0);
  const dim = requirePositiveInteger('options.dim', options.dim);
  const k = Math.min(requirePositiveInteger('options.k', options.k), numRows);
  const numQueries = queryCount(queries, dim);
  if (numRows === 0) throw new RangeError('the database has no rows');
  const args: NativeTopKArgs = {
    queries, numQueries, segments, databaseType: options.dtype, dim, k,
    normalized: options.normalized, outIndices: new Int32Array(numQueries * k), outScores: new Float32Array(numQueries * k),
    threads: optionalThreads(options.threads),
  };
  await runAsync(() => loadAddon().cosineTopK(args, true));
  return topKResult(args);
}

/**
 * Writes the rows of `input` (`dim` values each) scaled to unit length, x / max(||x||, 1e-12)
 * computed as x * (1 / max(...)) in float64, into `output`: float32, or float16 bits (rounded from
 * the float32 values) (native/include/camembed/unit_rows.h). A row holding NaN or infinity is a
 * RangeError naming `name` and the row, counted from `firstRow`; `output` may then be partly written.
 */
export function storeUnitRows(name: string, input: Float32Array, output: Float32Array | Uint16Array, dim: number, firstRow = 0): void {
  const bad = runSync(() => loadAddon().unitRows({ input, output, dim }));
  if (bad >= 0) throw new RangeError(`${name} row ${firstRow + bad} contains NaN or infinite values`);
}

/**
 * How far above 1 the norm of a row storeUnitRows wrote can be, by storage type. It rounds each
 * value of the float64 unit row (norm 1 within dim x 2^-53) once to float32, off by at most 2^-24
 * of the value (2^-150 absolute among subnormals), and for float16 once more, by at most 2^-11 of
 * the value (2^-25 absolute below 2^-14, float16's subnormals). The rounding errors form a vector
 * no longer than the relative bound times the row's norm plus sqrt(dim) x the absolute bound, and
 * by the triangle inequality the norm moves by no more: for dim <= 2^24 (MAX_DIM), under 2^-23
 * in float32, and under 2^-11 + 2^-24 + 2^-13 in float16, which stays under 2^-10 with the check's
 * own error (float16 squares summed in float32 blocks: under 2^-22 on the norm). Random rows stay
 * well inside (1,000,000 of 768 uniform values: within 4.6e-5 of 1 in float16), but rows whose
 * values all sit just above a rounding midpoint reach the first term: a constant row of 1,023
 * values has norm 1 + 2^-11 - 2^-21 in float16, and a row of 35 powers of two 1 + 2^-24 in
 * float32. A limit measured on random rows would refuse what add() stored.
 */
export const UNIT_NORM_SLACK: Readonly<Record<Dtype, number>> = { float32: 2 ** -23, float16: 2 ** -10 };

/** A copy of `data` with every row scaled to unit length (storeUnitRows). */
export function normalizeRows(name: string, data: Float32Array, dim: number): Float32Array {
  const output = new Float32Array(data.length);
  storeUnitRows(name, data, output, dim);
  return output;
}

/**
 * float32 -> float16 bits in native code (F16C where the CPU has it), the conversion storeUnitRows
 * uses for float16 storage, here for its bit-exactness tests at every SIMD level: the same results as
 * float32ToFloat16Array (lib/float16.ts, the reference), 10.6x faster (20M values: 14.1 vs 149.0 ms,
 * bench/RESULTS.md).
 */
export function float32ToFloat16Fast(input: Float32Array): Uint16Array {
  const output = new Uint16Array(input.length);
  runSync(() => loadAddon().float32ToFloat16({ input, output }));
  return output;
}

// CudaMatrix: database rows resident on one GPU; upload once, search many times.
// Every argument is checked here before it reaches native code (native/addon/cuda_bindings.cc).
import { Float16ArrayLike, FLOAT16_MAX } from './float16';
import { CudaDeviceName, resolveDevice } from './devices';
import { Dtype, DTYPES, requireResultFits } from './kernels';
import { loadAddon } from './native';
import {
  elementTypeOf, namesOf, optionalBoolean, optionalOneOf, requireInteger, requireObject, requirePositiveInteger, requireTypedArray,
} from './validate';

/** Opaque native handle of a device matrix (a Node-API External). */
type MatrixHandle = object & { readonly __cudaMatrix: unique symbol };

/** Rows of a CudaMatrix, row-major: float32 values, or float16 bits in a Uint16Array or a Float16Array. */
export type RowData = Float32Array | Uint16Array | Float16ArrayLike;

interface NativeSearchArgs {
  queries: Float32Array; numQueries: number; k: number; rows: number; normalized: boolean; outIndices: Int32Array;
  outScores: Float32Array;
}

interface NativeSetRowsArgs {
  data: Float32Array | Uint16Array; dataType: Dtype; firstRow: number; rowCount: number;
}

// The device-matrix bindings of the addon (registered by native/addon/cuda_bindings.cc).
interface CudaBindings {
  cudaMatrixCreate(args: { rows: number; dim: number; storage: Dtype; device: number }): MatrixHandle;
  cudaMatrixSetRows(handle: MatrixHandle, uploads: NativeSetRowsArgs[], async: false): undefined;
  cudaMatrixSetRows(handle: MatrixHandle, uploads: NativeSetRowsArgs[], async: true): Promise<void>;
  cudaMatrixBytes(handle: MatrixHandle): number;
  cudaMatrixFree(handle: MatrixHandle): void;
  cudaMatrixSearch(handle: MatrixHandle, args: NativeSearchArgs, async: false): undefined;
  cudaMatrixSearch(handle: MatrixHandle, args: NativeSearchArgs, async: true): Promise<void>;
}

function cudaAddon(): CudaBindings {
  return loadAddon() as unknown as CudaBindings;
}

/** Options of CudaMatrix.create. */
export interface CudaMatrixOptions {
  /** Rows the matrix holds (at most 2^31 - 1); the data gives exactly rows x dim values. */
  rows: number;
  /** Values per row. */
  dim: number;
  /** How the rows are stored on the GPU (default 'float16': half the memory, tensor cores). */
  dtype?: Dtype | undefined;
  /** The GPU: 'cuda' (default: the first, 'cuda:0') or 'cuda:<index>', as elsewhere in the API. */
  device?: CudaDeviceName | undefined;
}

/** Options of CudaMatrix.search and searchAsync. */
export interface CudaSearchOptions {
  /** Results per query (>= 1; at most CUDA_MAX_K once capped to the rows searched). */
  k: number;
  /** true: rows and queries are unit vectors and the score is their dot product (default false: cosine). */
  normalized?: boolean | undefined;
  /**
   * Search only rows [0, rows) (default: all): a matrix made with room to grow holds its rows in use
   * first and takes new ones with setRows().
   */
  rows?: number | undefined;
}

const MATRIX_OPTIONS = namesOf<CudaMatrixOptions>({ rows: true, dim: true, dtype: true, device: true });
const SEARCH_OPTIONS = namesOf<CudaSearchOptions>({ k: true, normalized: true, rows: true });

/** A CUDA search's results: the same shape as cosineTopK's TopKResult. */
export interface CudaSearchResult {
  /** [queries x k] row indices, each query's best first (ties: lower index first). */
  indices: Int32Array;
  /** The cosine (or, with `normalized: true`, the dot product) of each of `indices`. */
  scores: Float32Array;
  /** min(options.k, rows searched) */
  k: number;
}

/** The largest k a CUDA search accepts (its final sort holds k candidates in shared memory). */
export const CUDA_MAX_K = 2048;

/**
 * Cosine mode with float16 storage sends q / |q| (norm in float64): the same cosines, and no query
 * under- or overflows on its way to float16 (queries of 1e-9s would round to zeros). A zero query
 * stays zero. (With float32 storage the device scales them itself: prepareQueriesKernel.)
 */
function unitQueries(queries: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(queries.length);
  for (let base = 0; base < queries.length; base += dim) {
    let sum = 0;
    for (let i = base; i < base + dim; i++) sum += queries[i] * queries[i];
    const norm = Math.sqrt(sum) || 1;
    for (let i = base; i < base + dim; i++) out[i] = queries[i] / norm;
  }
  return out;
}
const MAX_ROWS = 2 ** 31 - 1;  // row indices are int32
const FLOAT32_MAX = 3.4028234663852886e38;
const FLOAT16_OVERFLOW = 65520;  // float32 values from here round to infinity in float16

/**
 * The first row that the device would refuse (native storeRowsKernel: a value not finite once
 * stored, or a norm past the float32 range), or -1. Checked here so that setRows changes nothing
 * on bad data: the device writes rows as it checks them.
 */
function firstBadRow(data: Float32Array | Uint16Array, dim: number, storage: Dtype): number {
  const halfBits = elementTypeOf(data) === 'float16';
  const limit = storage === 'float16' ? FLOAT16_OVERFLOW : Infinity;
  for (let row = 0, base = 0; base < data.length; row++, base += dim) {
    let sumSquares = 0;
    for (let i = base; i < base + dim; i++) {
      const v = data[i];
      if (halfBits) {
        if ((v & 0x7c00) === 0x7c00) return row;  // exponent all ones: infinity or NaN (finite halves have finite norms)
      } else {
        if (!(Math.abs(v) < limit)) return row;
        sumSquares += v * v;
      }
    }
    if (!halfBits && storage === 'float32' && !(Math.sqrt(sumSquares) <= FLOAT32_MAX)) return row;
  }
  return -1;
}

/**
 * What a CUDA search refuses, checked before anything reaches the device (by CudaMatrix's search, and
 * by cosineTopK with device 'cuda' before it uploads the database): k, once capped to the rows
 * searched, past CUDA_MAX_K; and a query value that is not finite or, sent as given to float16
 * storage (dot mode: cosine mode sends unit vectors), outside float16's range.
 */
export function requireCudaSearch(queries: Float32Array, requestedK: number, k: number, storage: Dtype, normalized: boolean): void {
  if (k > CUDA_MAX_K) throw new RangeError(`options.k must be <= ${CUDA_MAX_K} on CUDA, got ${requestedK}`);
  const limit = storage === 'float16' && normalized ? FLOAT16_MAX : Infinity;
  for (let i = 0; i < queries.length; i++) {
    const v = queries[i];
    if (!(Math.abs(v) <= limit)) {
      throw new RangeError(`queries[${i}] is ${v}: expected a finite value` +
        (limit === FLOAT16_MAX ? ' within +-65504 (dtype float16, normalized: true)' : ''));
    }
  }
}

/** The index of a CUDA device that exists here, or a clear error saying why not. */
function requireCudaDevice(value: unknown): number {
  if (typeof value === 'number') {
    throw new TypeError(`options.device must be 'cuda' or 'cuda:<index>', got the number ${value}` +
      (Number.isSafeInteger(value) && value >= 0 ? `: write 'cuda:${value}'` : ''));
  }
  const index = resolveDevice(value ?? 'cuda');
  if (index < 0) throw new TypeError("options.device is 'cpu', but a CudaMatrix lives on a GPU: use 'cuda' or 'cuda:<index>'");
  return index;
}

/**
 * Database rows resident on one GPU: upload once with CudaMatrix.create, search many times, free().
 * Without a GPU (or a CUDA build) create() throws an Error that says why.
 */
export class CudaMatrix {
  private handle: MatrixHandle | null;

  private constructor(
    handle: MatrixHandle,
    /** Rows the matrix holds. */
    readonly rows: number,
    /** Values per row. */
    readonly dim: number,
    /** GPU memory held, in bytes. */
    readonly bytes: number,
    /** The GPU it lives on, as 'cuda:<index>'. */
    readonly device: `cuda:${number}`,
    /** How its rows are stored on the GPU. */
    readonly dtype: Dtype,
  ) {
    this.handle = handle;
  }

  /**
   * Uploads `rows` x `dim` values (row-major): a Float32Array, or float16 bits in a Uint16Array or
   * a Float16Array; or an array of such chunks, each a whole number of rows, in order (a typed
   * array holds at most 2^32 values: 8.8M rows of 768 need several).
   * Throws when the data holds NaN, infinity, a row whose norm passes the float32 range, or (for
   * float16 dtype) a value beyond +-65504, when the GPU lacks the memory, or when `device` does
   * not exist; nothing is kept then.
   */
  static create(data: RowData | readonly RowData[], options: CudaMatrixOptions): CudaMatrix {
    const { matrix, handle, uploads } = CudaMatrix.prepareCreate(data, options);
    try {
      cudaAddon().cudaMatrixSetRows(handle, uploads, false);
    } catch (err) {
      matrix.free();
      throw err;
    }
    return matrix;
  }

  /**
   * As create(), with the copy to the GPU off the event loop (the allocation stays on it). The
   * data must not change until the promise settles: the upload reads it meanwhile (a buffer
   * transferred away stays readable to it, as to searchAsync).
   */
  static async createAsync(data: RowData | readonly RowData[], options: CudaMatrixOptions): Promise<CudaMatrix> {
    const { matrix, handle, uploads } = CudaMatrix.prepareCreate(data, options);
    try {
      await cudaAddon().cudaMatrixSetRows(handle, uploads, true);
    } catch (err) {
      matrix.free();
      throw err;
    }
    return matrix;
  }

  /** create's checks and allocation (zeros): the matrix, and the uploads that fill it. */
  private static prepareCreate(data: RowData | readonly RowData[], options: CudaMatrixOptions) {
    const chunks = (Array.isArray(data) ? data : [data]).map((chunk, i) =>
      requireTypedArray<Float32Array | Uint16Array>(Array.isArray(data) ? `data[${i}]` : 'data', chunk, ['Float32Array', 'Uint16Array']));
    const opts = requireObject('options', options, MATRIX_OPTIONS);
    const rows = requirePositiveInteger('options.rows', opts.rows);
    if (rows > MAX_ROWS) throw new RangeError(`options.rows must be <= ${MAX_ROWS}, got ${rows}`);
    const dim = requirePositiveInteger('options.dim', opts.dim);
    // Every option is read before the lengths are checked: a getter could otherwise empty a chunk
    // (transfer its buffer) after its check, and its rows would be uploaded as none.
    const dtype = optionalOneOf('options.dtype', opts.dtype, DTYPES) ?? 'float16';
    const deviceOption = opts.device;
    // The lengths checked are the row counts sent: native code then refuses a chunk emptied later
    // (by a getter of the chunks themselves) rather than upload it as no rows.
    const lengths = chunks.map((chunk) => chunk.length);
    const total = lengths.reduce((sum, n) => sum + n, 0);
    if (total !== rows * dim) {
      throw new RangeError(`data has ${total} elements but options.rows x options.dim needs ${rows * dim}`);
    }
    lengths.forEach((n, i) => {
      if (n % dim !== 0) throw new RangeError(`data[${i}] has ${n} elements: not a whole number of rows of ${dim}`);
    });
    const device = requireCudaDevice(deviceOption);
    const native = cudaAddon();
    const handle = native.cudaMatrixCreate({ rows, dim, storage: dtype, device });
    const uploads: NativeSetRowsArgs[] = [];
    for (let i = 0, firstRow = 0; i < chunks.length; firstRow += lengths[i] / dim, i++) {
      uploads.push({ data: chunks[i], dataType: elementTypeOf(chunks[i]), firstRow, rowCount: lengths[i] / dim });
    }
    const matrix = new CudaMatrix(handle, rows, dim, native.cudaMatrixBytes(handle), `cuda:${device}`, dtype);
    return { matrix, handle, uploads };
  }

  /**
   * Replaces rows [firstRow, firstRow + data.length / dim) with `data` (a Float32Array, or float16
   * bits in a Uint16Array or a Float16Array). The values are checked first, as create() checks its
   * data: on a bad value nothing changes. Waits for a search or upload of this matrix in flight.
   */
  setRows(firstRow: number, data: RowData): void {
    const { handle, args } = this.prepareSetRows(firstRow, data);
    cudaAddon().cudaMatrixSetRows(handle, [args], false);
  }

  /**
   * As setRows(), with the copy to the GPU off the event loop. The data must not change until the
   * promise settles. The matrix may be freed meanwhile: the upload finishes first.
   */
  async setRowsAsync(firstRow: number, data: RowData): Promise<void> {
    const { handle, args } = this.prepareSetRows(firstRow, data);
    await cudaAddon().cudaMatrixSetRows(handle, [args], true);
  }

  private prepareSetRows(firstRow: number, input: RowData): { handle: MatrixHandle; args: NativeSetRowsArgs } {
    if (this.handle === null) throw new Error('CudaMatrix: this matrix has been freed; create a new one');
    requireInteger('firstRow', firstRow, 0);
    const data = requireTypedArray<Float32Array | Uint16Array>('data', input, ['Float32Array', 'Uint16Array']);
    const rowCount = this.rowCountOf('data', data);
    if (firstRow + rowCount > this.rows) {
      throw new RangeError(`rows ${firstRow}..${firstRow + rowCount - 1} are beyond the matrix's ${this.rows} rows`);
    }
    const badRow = firstBadRow(data, this.dim, this.dtype);
    if (badRow >= 0) {
      throw new RangeError(`data: row ${badRow} holds NaN, infinity` + (this.dtype === 'float16'
        ? ', or a value outside the float16 range (|x| > 65504)' : ', or values whose norm passes the float32 range'));
    }
    return { handle: this.handle, args: { data, dataType: elementTypeOf(data), firstRow, rowCount } };
  }

  /** Top-k rows for each query of `queries` ([Q x dim] float32), computed on the GPU. */
  search(queries: Float32Array, options: CudaSearchOptions): CudaSearchResult {
    const { handle, args, result } = this.prepareSearch(queries, options);
    cudaAddon().cudaMatrixSearch(handle, args, false);
    return result;
  }

  /** As search(), off the event loop. The matrix may be freed meanwhile: the search finishes first. */
  async searchAsync(queries: Float32Array, options: CudaSearchOptions): Promise<CudaSearchResult> {
    const { handle, args, result } = this.prepareSearch(queries, options);
    await cudaAddon().cudaMatrixSearch(handle, args, true);
    return result;
  }

  /** Releases the GPU memory now (otherwise it goes when the object is garbage-collected). Idempotent. */
  free(): void {
    if (this.handle !== null) cudaAddon().cudaMatrixFree(this.handle);
    this.handle = null;
  }

  /** How many rows of `dim` values `array` holds: a positive whole number, or a RangeError. */
  private rowCountOf(name: string, array: Float32Array | Uint16Array): number {
    if (array.length === 0 || array.length % this.dim !== 0) {
      throw new RangeError(`${name} has ${array.length} elements: expected a positive multiple of dim (${this.dim})`);
    }
    return array.length / this.dim;
  }

  /** Whether free() has been called (any later use throws). */
  get freed(): boolean {
    return this.handle === null;
  }

  private prepareSearch(queries: Float32Array, options: CudaSearchOptions) {
    if (this.handle === null) throw new Error('CudaMatrix: this matrix has been freed; create a new one');
    requireTypedArray('queries', queries, ['Float32Array']);
    // The options first: a getter could otherwise empty the queries (transfer their buffer) after their check.
    const opts = requireObject('options', options, SEARCH_OPTIONS);
    const requestedK = requirePositiveInteger('options.k', opts.k);
    const normalized = optionalBoolean('options.normalized', opts.normalized, false);
    const rows = opts.rows === undefined ? this.rows : requirePositiveInteger('options.rows', opts.rows);
    if (rows > this.rows) throw new RangeError(`options.rows is ${rows} but the matrix has ${this.rows} rows`);
    const numQueries = this.rowCountOf('queries', queries);
    const k = Math.min(requestedK, rows);
    requireCudaSearch(queries, requestedK, k, this.dtype, normalized);
    requireResultFits(numQueries, k);
    const result: CudaSearchResult = { indices: new Int32Array(numQueries * k), scores: new Float32Array(numQueries * k), k };
    const sent = normalized || this.dtype === 'float32' ? queries : unitQueries(queries, this.dim);
    const args: NativeSearchArgs = {
      queries: sent, numQueries, k, rows, normalized, outIndices: result.indices, outScores: result.scores,
    };
    return { handle: this.handle, args, result };
  }
}

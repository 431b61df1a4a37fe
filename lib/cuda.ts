// CudaMatrix: database rows resident on one GPU; upload once, search many times.
// Every argument is checked here before it reaches native code (native/addon/cuda_bindings.cc).
import * as path from 'path';

/** Opaque native handle of a device matrix (a Node-API External). */
type MatrixHandle = object & { readonly __cudaMatrix: unique symbol };

interface CudaAddon {
  info(): { cudaDevices: { index: number }[]; cudaUnavailableReason: string | null };
  cudaMatrixCreate(args: {
    data: Float32Array | Uint16Array; dataType: Storage; rows: number; dim: number; storage: Storage; device: number;
  }): MatrixHandle;
  cudaMatrixBytes(handle: MatrixHandle): number;
  cudaMatrixFree(handle: MatrixHandle): void;
  cudaMatrixSearch(handle: MatrixHandle, args: NativeSearchArgs, async: false): undefined;
  cudaMatrixSearch(handle: MatrixHandle, args: NativeSearchArgs, async: true): Promise<void>;
}

interface NativeSearchArgs {
  queries: Float32Array; numQueries: number; k: number; normalized: boolean; outIndices: Int32Array; outScores: Float32Array;
}

type Storage = 'float16' | 'float32';

export interface CudaMatrixOptions {
  rows: number;
  dim: number;
  /** How the rows are stored on the GPU (default 'float16': half the memory, tensor cores). */
  storage?: Storage;
  /** CUDA device index (default 0). */
  device?: number;
}

export interface CudaSearchOptions {
  k: number;
  /** true: rows and queries are unit vectors and the score is their dot product (default false: cosine). */
  normalized?: boolean;
}

export interface CudaSearchResult {
  /** [queries x k] row indices, each query's best first (ties: lower index first). */
  indices: Int32Array;
  scores: Float32Array;
  /** min(options.k, rows) */
  k: number;
}

/** The largest k a CUDA search accepts (its final sort holds k candidates in shared memory). */
export const CUDA_MAX_K = 2048;
const FLOAT16_MAX = 65504;

// The addon built by cmake-js (the same file lib/native.ts loads for the CPU functions).
const addonPath = path.resolve(__dirname, '..', 'build', 'Release', 'camembed.node');
let addon: CudaAddon | undefined;
function cudaAddon(): CudaAddon {
  if (addon === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      addon = require(addonPath) as CudaAddon;
    } catch (err) {
      throw new Error(`camembed: cannot load the native addon at ${addonPath} (${(err as Error).message}); ` +
        `build it with 'npm run build:native'`);
    }
  }
  return addon;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  if (Array.isArray(value)) return 'Array';
  return typeof value === 'number' ? String(value) : typeof value;
}

function requireOptions(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value)) {
    throw new TypeError(`${name} must be an object, got ${typeName(value)}`);
  }
  return value as Record<string, unknown>;
}

function requireInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${typeName(value)}`);
  }
  if (value < min || value > max) throw new RangeError(`${name} must be between ${min} and ${max}, got ${value}`);
  return value;
}

/** A device index that exists here, or a clear error saying why not. */
function requireDevice(value: unknown): number {
  const device = value === undefined ? 0 : requireInteger('options.device', value, 0, 1023);
  const info = cudaAddon().info();
  if (info.cudaDevices.length === 0) {
    throw new Error(`CudaMatrix: no CUDA device is available: ${info.cudaUnavailableReason}`);
  }
  if (!info.cudaDevices.some((d) => d.index === device)) {
    throw new RangeError(`options.device is ${device} but this machine has CUDA devices 0..${info.cudaDevices.length - 1}`);
  }
  return device;
}

export class CudaMatrix {
  private handle: MatrixHandle | null;

  private constructor(
    handle: MatrixHandle,
    readonly rows: number,
    readonly dim: number,
    readonly bytes: number,
    readonly device: number,
    readonly storage: Storage,
  ) {
    this.handle = handle;
  }

  /**
   * Uploads `rows` x `dim` values (row-major): a Float32Array, or a Uint16Array of float16 bits.
   * Throws when the data holds NaN, infinity, or (for float16 storage) a value beyond +-65504,
   * when the GPU lacks the memory, or when `device` does not exist.
   */
  static create(data: Float32Array | Uint16Array, options: CudaMatrixOptions): CudaMatrix {
    if (!(data instanceof Float32Array) && !(data instanceof Uint16Array)) {
      throw new TypeError(`data must be a Float32Array or a Uint16Array of float16 bits, got ${typeName(data)}`);
    }
    const opts = requireOptions('options', options);
    const rows = requireInteger('options.rows', opts.rows, 1, 2 ** 31 - 1);
    const dim = requireInteger('options.dim', opts.dim, 1, 2 ** 31 - 1);
    if (data.length !== rows * dim) {
      throw new RangeError(`data has ${data.length} elements but options.rows x options.dim needs ${rows * dim}`);
    }
    const storage = opts.storage === undefined ? 'float16' : opts.storage;
    if (storage !== 'float16' && storage !== 'float32') {
      throw new TypeError(`options.storage must be 'float16' or 'float32', got ${typeName(storage)}`);
    }
    const device = requireDevice(opts.device);
    const native = cudaAddon();
    const dataType: Storage = data instanceof Float32Array ? 'float32' : 'float16';
    const handle = native.cudaMatrixCreate({ data, dataType, rows, dim, storage, device });
    return new CudaMatrix(handle, rows, dim, native.cudaMatrixBytes(handle), device, storage);
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

  get freed(): boolean {
    return this.handle === null;
  }

  private prepareSearch(queries: Float32Array, options: CudaSearchOptions) {
    if (this.handle === null) throw new Error('CudaMatrix: this matrix has been freed; create a new one');
    if (!(queries instanceof Float32Array)) {
      throw new TypeError(`queries must be a Float32Array, got ${typeName(queries)}`);
    }
    if (queries.length === 0 || queries.length % this.dim !== 0) {
      throw new RangeError(`queries has ${queries.length} elements: expected a positive multiple of dim (${this.dim})`);
    }
    const opts = requireOptions('options', options);
    const requestedK = requireInteger('options.k', opts.k, 1, Number.MAX_SAFE_INTEGER);
    const normalized = opts.normalized === undefined ? false : opts.normalized;
    if (typeof normalized !== 'boolean') throw new TypeError(`options.normalized must be a boolean, got ${typeName(normalized)}`);
    const k = Math.min(requestedK, this.rows);
    if (k > CUDA_MAX_K) throw new RangeError(`options.k must be <= ${CUDA_MAX_K} on CUDA, got ${requestedK}`);
    // Queries are rounded to float16 for float16 storage: they must be finite and in its range.
    const limit = this.storage === 'float16' ? FLOAT16_MAX : Infinity;
    for (let i = 0; i < queries.length; i++) {
      const v = queries[i];
      if (!(Math.abs(v) <= limit)) {
        throw new RangeError(`queries[${i}] is ${v}: expected a finite value` +
          (this.storage === 'float16' ? ' within +-65504 (float16 storage)' : ''));
      }
    }
    const numQueries = queries.length / this.dim;
    const result: CudaSearchResult = { indices: new Int32Array(numQueries * k), scores: new Float32Array(numQueries * k), k };
    const args: NativeSearchArgs = { queries, numQueries, k, normalized, outIndices: result.indices, outScores: result.scores };
    return { handle: this.handle, args, result };
  }
}

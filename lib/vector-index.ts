// VectorIndex: exact cosine top-k over millions of unit vectors, on the CPU or one CUDA device.
//
// Storage is a list of chunks of at most CHUNK_BYTES of vectors each, so growth never copies more
// than one chunk (the last one, by capacity doubling) and the slack is at most one chunk. Every
// chunk but the last is full; `remove` moves the last row into the hole. On the CPU a search is one
// top-k kernel call over all chunks (one pass over the storage for a whole tile of queries, ties
// broken by id in the kernel); on CUDA each chunk's device copy is searched and the per-chunk
// lists are merged (see searchTileCuda).
import * as util from 'util';
import {
  cosineTopKSegmentsAsync, Dtype, DTYPES, MAX_RESULT_VALUES, normalizeRows, requireResultFits, storeUnitRows, TopKResult, UNIT_NORM_SLACK,
} from './kernels';
import { CUDA_MAX_K, CudaMatrix } from './cuda';
import { CudaDeviceName, Device, resolveDevice } from './devices';
import { float16ToFloat32Array } from './float16';
import {
  bytesPerElement, decodeMetadata, fileBindings, Header, IndexFileProgress, IndexFileReader, jsonDepth, layoutOf, MAX_DIM, MAX_MAPPING_BYTES, maxMappings, MAX_METADATA_BYTES,
  MAX_METADATA_DEPTH, writeIndexFile,
} from './index/format';
import { IdTable, MAX_ENTRIES, maxId } from './index/id-table';
import {
  describeValue, namesOf, optionalAbortSignal, optionalBoolean, optionalFunction, optionalObject, optionalOneOf, optionalPositiveInteger, requireInteger, requireObject, requirePositiveInteger, requireString, requireTypedArray, typeName,
} from './validate';

const CHUNK_BYTES = 64 * 1024 * 1024;
// On CUDA each chunk is a device matrix searched on its own (a launch sequence, a host sync and a
// merge of its k + 1 best per query), so chunks are larger there: 8.8M x 768 float16 is 13 of them.
const CUDA_CHUNK_BYTES = 1024 * 1024 * 1024;
const QUERY_TILE_BYTES = 1024 * 1024;  // CPU: queries per kernel call: they stay in L2 while a tile of rows streams past
const CUDA_QUERY_TILE = 8192;          // CUDA: queries per chunk search (the device tiles them itself)
const TILE_RESULTS = 1 << 20;          // queries x k per kernel call: bounds the kernel's heaps and outputs
const MAX_ID = (1n << 63n) - 1n;
const LARGE_PAGE_MIN_BYTES = 4 * 1024 * 1024;  // smaller chunks would waste most of a 2 MiB page
// Ids entered into the table between event-loop turns on load: loading 8.8M ids stalled the loop
// at most 133-146 ms with slices of this size, 1.8-1.9 s without (bench/RESULTS-index.md).
const ID_TABLE_SLICE = 1 << 18;

/**
 * The most vectors an index holds: its id table's limit, below the kernels' row indices (int32:
 * 2^31 - 1 rows a search, or a CUDA chunk) and the file format's (a u64 count).
 */
const MAX_INDEX_SIZE = MAX_ENTRIES;

function requireChunkBytes(value: unknown): number {
  const bytes = requirePositiveInteger('options.chunkBytes', value);
  if (bytes > MAX_MAPPING_BYTES) throw new RangeError(`options.chunkBytes must be at most ${MAX_MAPPING_BYTES} (4 GiB), got ${bytes}`);
  return bytes;
}

// Storage from allocateLargePages or mapFileRange, which the index unmaps as soon as it drops a
// chunk (growth copies, removes, dispose) rather than leaving up to a chunk of garbage per add, or
// a replaced file's disk blocks, for the GC. No view of a chunk's storage ever leaves the index,
// so nothing can read a released buffer.
const releasableBuffers = new WeakSet<ArrayBufferLike>();
function releaseStorage(storage: Storage): void {
  if (!releasableBuffers.delete(storage.buffer)) return;
  fileBindings().releaseMapping(storage.buffer as ArrayBuffer);
}

/** The largest k of search and neighbors on CUDA: the chunk searches ask for k + 1 (k + 2 for neighbours). */
export const INDEX_CUDA_MAX_K = CUDA_MAX_K - 2;

/** Options of `new VectorIndex(options)`. */
export interface VectorIndexOptions {
  /** Values per vector (768 for CamemBERT-base: the encoder's `dim`). */
  dim: number;
  /** Storage type; default 'float32' on the CPU, 'float16' on CUDA. */
  dtype?: Dtype | undefined;
  /** 'cpu' (default), 'cuda' or 'cuda:<index>'. */
  device?: Device | undefined;
  /**
   * Storage chunk size in bytes (default 64 MiB on the CPU, 1 GiB on CUDA, at most 4 GiB): the
   * most a growth step copies, the most unused capacity held, and the part of the index one
   * kernel call scans.
   */
  chunkBytes?: number | undefined;
  /**
   * Facts saved with the index, as a JSON object of at most 1 MiB (the CLI records the model that
   * made the vectors under `model`). Default {}. Typed `object` so that a value of an interface
   * type is accepted (an interface is not a Record<string, unknown>); an array is a TypeError.
   */
  metadata?: object | undefined;
}

export type { IndexFileProgress } from './index/format';

/** Rows x dim float32 values, or the encoder's output. */
export type VectorsInput = Float32Array | { data: Float32Array; rows: number; dim: number };
/** Vector ids: a BigInt64Array, or an array of safe integers or 64-bit bigints. */
export type IdsInput = BigInt64Array | ReadonlyArray<number | bigint>;

/** A search's results, [queries x k] row-major. */
export interface SearchResult {
  /** `k` ids per query, best first; equal scores: lower id first. */
  ids: BigInt64Array;
  /** The cosine of each query with each of `ids`. */
  scores: Float32Array;
  /** min(options.k, size). */
  k: number;
}

/** Options of VectorIndex.search. */
export interface SearchOptions {
  /** Results per query (>= 1); fewer when the index holds fewer vectors (see SearchResult.k). */
  k: number;
  /** Rejects with `signal.reason` before the next tile of queries (one kernel call) once it aborts. */
  signal?: AbortSignal | undefined;
}

/** Options of VectorIndex.neighbors. */
export interface NeighborsOptions {
  /** Neighbours per vector (>= 1); fewer when the index is smaller (see NeighborsChunk.k). */
  k: number;
  /** Leave each vector out of its own neighbour list (default true). */
  excludeSelf?: boolean | undefined;
  /** Vectors per yielded chunk (default 1024). */
  batchSize?: number | undefined;
  /** Ends the walk with `signal.reason` before its next chunk, or its next tile of queries within one. */
  signal?: AbortSignal | undefined;
}

/** One step of a VectorIndex.neighbors walk: `ids.length` vectors and their neighbours, [rows x k] row-major. */
export interface NeighborsChunk {
  /** The ids of this chunk's vectors, one per row. */
  ids: BigInt64Array;
  /** `k` neighbour ids per row, best first. */
  neighbors: BigInt64Array;
  /** The cosine of each row's vector with each of its `neighbors`. */
  scores: Float32Array;
  /** Neighbours per row: min(options.k, size - 1) with excludeSelf (the default), else min(options.k, size). */
  k: number;
}

/** What VectorIndex.describe reads from an index file's header and metadata. */
export interface IndexDescription {
  /** Storage type of the vectors. */
  dtype: Dtype;
  /** Values per vector. */
  dim: number;
  /** Vectors stored. */
  size: number;
  /** The metadata saved with the index (frozen). */
  metadata: Readonly<Record<string, unknown>>;
  /** The file's size in bytes. */
  fileBytes: number;
}

/** Options of VectorIndex.load. */
export interface LoadOptions {
  /** 'cpu' (default), 'cuda' or 'cuda:<index>'. */
  device?: Device | undefined;
  /** CPU: view the vectors in a read-only memory mapping of the file instead of reading them. */
  mmap?: boolean | undefined;
  /** As in VectorIndexOptions. */
  chunkBytes?: number | undefined;
  /** Rejects with `signal.reason` before the next piece read (64 MiB), slice of ids or (CUDA) chunk's device copy once it aborts. */
  signal?: AbortSignal | undefined;
  /** Called after each piece (64 MiB) read and checksummed (with `mmap`, checksummed) with the bytes of the file done. */
  onProgress?: ((progress: IndexFileProgress) => void) | undefined;
}

/** Options of VectorIndex.save. */
export interface SaveOptions {
  /** Rejects with `signal.reason` before the next piece written (64 MiB); the file is then left as it was. */
  signal?: AbortSignal | undefined;
  /** Called after each piece written (64 MiB) with the bytes of the file done. */
  onProgress?: ((progress: IndexFileProgress) => void) | undefined;
}

const INDEX_OPTIONS = namesOf<VectorIndexOptions>({ dim: true, dtype: true, device: true, chunkBytes: true, metadata: true });
const SEARCH_OPTIONS = namesOf<SearchOptions>({ k: true, signal: true });
const NEIGHBORS_OPTIONS = namesOf<NeighborsOptions>({ k: true, excludeSelf: true, batchSize: true, signal: true });
const LOAD_OPTIONS = namesOf<LoadOptions>({ device: true, mmap: true, chunkBytes: true, signal: true, onProgress: true });
const SAVE_OPTIONS = namesOf<SaveOptions>({ signal: true, onProgress: true });

type Storage = Float32Array | Uint16Array;

interface Chunk {
  vectors: Storage;      // capacity x dim
  ids: BigInt64Array;    // capacity
  count: number;
  mapped: boolean;       // a view of a read-only file mapping: copied before any write
  matrix: CudaMatrix | null;  // CUDA: a copy of `vectors` (all capacity rows), made by load or the first search
  synced: number;             // rows [0, synced) of `matrix` were uploaded (appended rows come after)...
  rewritten: Set<number>;     // ...except these, filled since by remove: the next search uploads both
  syncing: Promise<void> | null;  // the upload in flight: concurrent searches wait for it rather than upload again
}

function newChunk(vectors: Storage, ids: BigInt64Array, count: number, mapped: boolean): Chunk {
  return { vectors, ids, count, mapped, matrix: null, synced: 0, rewritten: new Set(), syncing: null };
}

/** Candidates from one chunk for one query: rows of the chunk, best first. */
interface Candidates {
  rows: Int32Array;
  scores: Float32Array;
}

function byteView(array: ArrayBufferView, bytes: number): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, bytes);
}

function parseVectors(name: string, input: unknown, dim: number): { data: Float32Array; rows: number } {
  let data = input;
  let rows: number | undefined;
  if (typeof input === 'object' && input !== null && !ArrayBuffer.isView(input) && !Array.isArray(input)) {
    const o = input as Record<string, unknown>;
    data = o.data;
    rows = requireInteger(`${name}.rows`, o.rows, 0);
    const inputDim = requirePositiveInteger(`${name}.dim`, o.dim);
    if (inputDim !== dim) throw new RangeError(`${name}.dim is ${inputDim} but the index has dim ${dim}`);
  } else if (!ArrayBuffer.isView(input)) {
    throw new TypeError(`${name} must be a Float32Array or { data, rows, dim }, got ${typeName(input)}`);
  }
  const array = requireTypedArray<Float32Array>(rows === undefined ? name : `${name}.data`, data, ['Float32Array']);
  if (array.length % dim !== 0) {
    throw new RangeError(`${name} has ${array.length} values, not a multiple of the index dim ${dim}`);
  }
  if (rows !== undefined && rows * dim !== array.length) {
    throw new RangeError(`${name}.data has ${array.length} values but rows x dim is ${rows} x ${dim}`);
  }
  return { data: array, rows: array.length / dim };
}

/**
 * [start, end) of the fewest tiles of at most `most` items covering `count`, their sizes within one
 * of each other (so each holds at least most / 2 when there are several). VectorIndex cuts query
 * batches so: each tile is one pass over the storage, and no last tile of a few queries makes a pass
 * for little work.
 */
export function evenTiles(count: number, most: number): Array<[number, number]> {
  const tiles = Math.ceil(count / most);
  return Array.from({ length: tiles }, (_, t) => [Math.floor((t * count) / tiles), Math.floor(((t + 1) * count) / tiles)]);
}

function parseId(name: string, id: unknown): bigint {
  if (typeof id === 'bigint' && BigInt.asIntN(64, id) === id) return id;
  if (Number.isSafeInteger(id)) return BigInt(id as number);
  throw new TypeError(`${name} must be a safe integer or a 64-bit bigint, got ${describeValue(id)}`);
}

function parseIds(name: string, input: unknown, expected: number | null): BigInt64Array {
  let ids: BigInt64Array;
  if (input instanceof BigInt64Array) {
    ids = input.slice();
  } else if (Array.isArray(input)) {
    ids = new BigInt64Array(input.length);
    for (let i = 0; i < input.length; i++) ids[i] = parseId(`${name}[${i}]`, input[i]);
  } else {
    throw new TypeError(`${name} must be a BigInt64Array or an array of integers or bigints, got ${typeName(input)}`);
  }
  if (expected !== null && ids.length !== expected) {
    throw new RangeError(`${name} has ${ids.length} ids but there are ${expected} vectors`);
  }
  const sorted = ids.slice().sort();
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1]) throw new RangeError(`${name} contains id ${sorted[i]} more than once`);
  }
  return ids;
}

/** Freezes value and everything in it (metadata nests at most MAX_METADATA_DEPTH deep). */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const member of Object.values(value)) deepFreeze(member);
    Object.freeze(value);
  }
  return value;
}

interface Metadata {
  bytes: Uint8Array;  // the file's metadata section: JSON text, none for {}
  object: Readonly<Record<string, unknown>>;  // those bytes parsed, as a load would show them
}

function checkMetadata(name: string, value: unknown): Metadata {
  const object = requireObject(name, value);
  let text: string | undefined;
  try {
    text = JSON.stringify(object);
  } catch (err) {
    throw new TypeError(`${name} must be JSON-serialisable: ${(err as Error).message}`);
  }
  if (text === undefined || !text.startsWith('{')) throw new TypeError(`${name} must be a JSON object (its toJSON() made something else)`);
  const bytes = text === '{}' ? new Uint8Array(0) : Buffer.from(text, 'utf8');
  if (bytes.length > MAX_METADATA_BYTES) {
    throw new RangeError(`${name} is ${bytes.length} bytes as JSON, more than the ${MAX_METADATA_BYTES} allowed`);
  }
  const parsed = JSON.parse(text) as Record<string, unknown>;
  if (jsonDepth(parsed) > MAX_METADATA_DEPTH) throw new RangeError(`${name} nests deeper than ${MAX_METADATA_DEPTH} levels`);
  return { bytes, object: deepFreeze(parsed) };
}

/**
 * Exact cosine top-k over unit vectors (normalised on add) under 64-bit ids, on the CPU or one CUDA
 * device: add, remove, search, neighbors (all-pairs k-NN), save and load (crash-safe, checksummed).
 */
export class VectorIndex {
  /** Values per vector. */
  readonly dim: number;
  /** Storage type of the vectors. */
  readonly dtype: Dtype;
  /** Where it searches: 'cpu' or 'cuda:<index>'. */
  readonly device: Device;
  private readonly deviceIndex: number;  // -1: CPU
  private readonly chunkRows: number;
  private chunks: Chunk[] = [];
  private table = new IdTable();
  private count = 0;
  private nextId = 0n;
  private savedMetadata: Metadata = { bytes: new Uint8Array(0), object: Object.freeze({}) };
  private readers = 0;     // searches, saves and neighbour-walk steps in flight: they block changes
  private changes = 0;     // counts adds, removes and dispose: a neighbour walk ends if the index changed under it
  private disposed = false;

  constructor(options: VectorIndexOptions) {
    const o = requireObject('options', options, INDEX_OPTIONS);
    this.dim = requirePositiveInteger('options.dim', o.dim);
    if (this.dim > MAX_DIM) throw new RangeError(`options.dim must be at most ${MAX_DIM}, got ${this.dim}`);
    this.deviceIndex = resolveDevice(o.device);
    this.device = this.deviceIndex < 0 ? 'cpu' : `cuda:${this.deviceIndex}`;
    this.dtype = optionalOneOf('options.dtype', o.dtype, DTYPES) ?? (this.deviceIndex < 0 ? 'float32' : 'float16');
    const chunkBytes = o.chunkBytes === undefined ? (this.deviceIndex < 0 ? CHUNK_BYTES : CUDA_CHUNK_BYTES)
      : requireChunkBytes(o.chunkBytes);
    this.chunkRows = Math.max(1, Math.floor(chunkBytes / (this.dim * bytesPerElement(this.dtype))));
    if (o.metadata !== undefined) this.savedMetadata = checkMetadata('options.metadata', o.metadata);
  }

  /** The metadata saved with the index: a frozen copy, as JSON keeps it. Assign an object to change it. */
  get metadata(): Readonly<Record<string, unknown>> {
    return this.savedMetadata.object;
  }

  set metadata(value: object) {
    this.assertUsable('metadata');
    this.savedMetadata = checkMetadata('metadata', value);
  }

  /** Number of vectors stored. */
  get size(): number {
    return this.count;
  }

  /** Memory held: vector and id storage (including unused capacity) and the id table. */
  get bytes(): number {
    if (this.disposed) return 0;
    let total = this.table.bytes;
    for (const c of this.chunks) total += c.vectors.byteLength + c.ids.byteLength;
    return total;
  }

  /**
   * Adds vectors (L2-normalised here) under the given ids, or under ids counting up from one past
   * the largest id ever added. All checks and allocations come first: a failed add changes nothing.
   */
  add(vectors: VectorsInput, ids?: IdsInput): void {
    this.assertWritable('add');
    const { data, rows } = parseVectors('vectors', vectors, this.dim);
    const newIds = ids === undefined ? this.sequentialIds(rows) : parseIds('ids', ids, rows);
    if (rows === 0) return;  // as encode([]) gives: nothing changes, an open neighbors() walk goes on
    if (this.count + rows > MAX_INDEX_SIZE) {
      throw new RangeError(`VectorIndex.add: ${rows} more vectors would make ${this.count + rows}, ` +
        `but an index holds at most ${MAX_INDEX_SIZE} (2^29) vectors`);
    }
    const present = this.table.firstPresent(newIds);
    if (present !== -1) throw new RangeError(`ids: id ${newIds[present]} is already in the index`);
    let grown: { chunk: Chunk; vectors: Storage; ids: BigInt64Array } | null = null;
    const added: Chunk[] = [];
    let table: IdTable;
    const last = this.chunks[this.chunks.length - 1];
    const lastHasRoom = last !== undefined && last.count < this.chunkRows;
    // On a failure the storage made so far goes at once, not at a GC: memory, or mappings (at the
    // kernel's limit on them, the process cannot go on far without one).
    const releaseMade = () => {
      for (const storage of [grown?.vectors, ...added.map((c) => c.vectors)]) if (storage !== undefined) releaseStorage(storage);
    };
    try {
      let remaining = rows;
      if (lastHasRoom) {
        const needed = last.count + Math.min(remaining, this.chunkRows - last.count);
        if (needed > last.ids.length || last.mapped) {
          const capacity = Math.min(this.chunkRows, Math.max(needed, 2 * last.ids.length));
          grown = { chunk: last, ...this.copyRows(last, capacity) };
        }
        remaining -= needed - last.count;
      }
      for (; remaining > 0; remaining -= Math.min(remaining, this.chunkRows)) {
        const capacity = Math.min(remaining, this.chunkRows);
        added.push(newChunk(this.allocate(capacity), new BigInt64Array(capacity), 0, false));
      }
      table = this.table.withRoomFor(this.count + rows);
    } catch (err) {
      releaseMade();
      throw new Error(
        `VectorIndex.add: cannot allocate memory for ${rows} more vectors (${(err as Error).message}); the index is unchanged`);
    }
    // Where the new rows go: rows [first, first + n) to rows [from, from + n) of a chunk's storage,
    // the last chunk's unused rows (or its grown copy's) first, then the new chunks.
    const spans: Array<{ chunk: Chunk; vectors: Storage; ids: BigInt64Array; from: number; first: number; n: number }> = [];
    const place = (chunk: Chunk, vectors: Storage, ids: BigInt64Array, from: number) => {
      const first = spans.length === 0 ? 0 : spans[spans.length - 1].first + spans[spans.length - 1].n;
      spans.push({ chunk, vectors, ids, from, first, n: Math.min(rows - first, this.chunkRows - from) });
    };
    if (lastHasRoom) place(last, grown?.vectors ?? last.vectors, grown?.ids ?? last.ids, last.count);
    for (const c of added) place(c, c.vectors, c.ids, 0);
    // The unit rows go straight into storage. Rows past a chunk's count are unused, so a NaN found
    // midway changes nothing.
    try {
      for (const { vectors: storage, from, first, n } of spans) {
        storeUnitRows('vectors', data.subarray(first * this.dim, (first + n) * this.dim),
          storage.subarray(from * this.dim, (from + n) * this.dim), this.dim, first);
      }
    } catch (err) {
      releaseMade();
      throw err;
    }
    if (grown !== null) {
      const replaced = grown.chunk.vectors;
      Object.assign(grown.chunk, { vectors: grown.vectors, ids: grown.ids, mapped: false });
      releaseStorage(replaced);
      this.dropDeviceCopy(grown.chunk);  // more rows than its device copy holds
    }
    this.chunks.push(...added);
    this.table = table;
    for (const { chunk, ids, from, first, n } of spans) {
      ids.set(newIds.subarray(first, first + n), from);
      chunk.count = from + n;
      chunk.synced = Math.min(chunk.synced, from);
      this.table.insertNew(newIds.subarray(first, first + n), this.count + first);  // all new: checked above
    }
    this.count += rows;
    const top = maxId(newIds);
    if (top >= this.nextId) this.nextId = top + 1n;
    this.changes++;
  }

  /** Whether a vector is stored under this id (a safe integer or a 64-bit bigint). */
  has(id: number | bigint): boolean {
    this.assertUsable('has');
    return this.table.has(parseId('id', id));
  }

  /**
   * A copy of the vector stored under this id: L2-normalised, as float32 (float16 storage's
   * rounding included); undefined when the id is absent.
   */
  get(id: number | bigint): Float32Array | undefined {
    this.assertUsable('get');
    const position = this.table.get(parseId('id', id));
    return position === -1 ? undefined : this.rowsAt(position, 1).vectors;
  }

  /** A copy of every stored id, in storage order (a remove moves the last row into the hole). */
  ids(): BigInt64Array {
    this.assertUsable('ids');
    const all = new BigInt64Array(this.count);
    let at = 0;
    for (const c of this.chunks) {
      all.set(c.ids.subarray(0, c.count), at);
      at += c.count;
    }
    return all;
  }

  /** Removes the vectors with these ids; an id that is absent (or repeated) is an error and changes nothing. */
  remove(ids: IdsInput): void {
    this.assertWritable('remove');
    const list = parseIds('ids', ids, null);
    if (list.length === 0) return;  // nothing changes: an open neighbors() walk goes on
    const written = new Set<Chunk>();
    for (const id of list) {
      const position = this.table.get(id);
      if (position === -1) throw new RangeError(`ids: id ${id} is not in the index`);
      written.add(this.chunks[Math.floor(position / this.chunkRows)]);
    }
    // Rows only move into the holes left by removed rows: copy those chunks out of a file mapping first.
    const copies: Array<[Chunk, { vectors: Storage; ids: BigInt64Array }]> = [];
    try {
      for (const chunk of written) if (chunk.mapped) copies.push([chunk, this.copyRows(chunk, chunk.count)]);
    } catch (err) {
      throw new Error(`VectorIndex.remove: cannot allocate memory (${(err as Error).message}); the index is unchanged`);
    }
    this.changes++;
    for (const [chunk, copy] of copies) {
      releaseStorage(chunk.vectors);
      Object.assign(chunk, copy, { mapped: false });
    }
    const d = this.dim;
    for (const id of list) {
      const position = this.table.get(id);
      const lastChunk = this.chunks[this.chunks.length - 1];
      const lastRow = lastChunk.count - 1;
      const chunk = this.chunks[Math.floor(position / this.chunkRows)];
      const row = position % this.chunkRows;
      if (chunk !== lastChunk || row !== lastRow) {
        chunk.vectors.set(lastChunk.vectors.subarray(lastRow * d, (lastRow + 1) * d), row * d);
        chunk.ids[row] = lastChunk.ids[lastRow];
        this.table.set(chunk.ids[row], position);
        if (chunk.matrix !== null) chunk.rewritten.add(row);
      }
      this.table.delete(id);
      lastChunk.count--;
      this.count--;
      if (lastChunk.count === 0) {
        this.dropDeviceCopy(lastChunk);
        releaseStorage(this.chunks.pop()!.vectors);
      }
    }
  }

  /** The k nearest stored vectors (by cosine) of each query row. */
  async search(queries: VectorsInput, options: SearchOptions): Promise<SearchResult> {
    this.assertUsable('search');
    const o = requireObject('options', options, SEARCH_OPTIONS);
    const k = this.checkK(o.k);
    const signal = optionalAbortSignal('options.signal', o.signal);
    const { data, rows } = parseVectors('queries', queries, this.dim);
    const unit = normalizeRows('queries', data, this.dim);
    signal?.throwIfAborted();
    this.readers++;
    try {
      return await this.searchUnit(unit, rows, k, signal);
    } finally {
      this.readers--;
    }
  }

  /**
   * Every stored vector's k nearest neighbours, `batchSize` vectors at a time (memory stays
   * O(batchSize x k) plus one kernel tile). The index cannot change while a step runs; a change
   * between steps (add, remove, dispose) makes the walk's next step throw.
   * Bad options throw here, not at the first step of the walk.
   */
  neighbors(options: NeighborsOptions): AsyncGenerator<NeighborsChunk, void, undefined> {
    this.assertUsable('neighbors');
    const o = requireObject('options', options, NEIGHBORS_OPTIONS);
    const k = this.checkK(o.k);
    const excludeSelf = optionalBoolean('options.excludeSelf', o.excludeSelf, true);
    const batchSize = optionalPositiveInteger('options.batchSize', o.batchSize) ?? 1024;
    const signal = optionalAbortSignal('options.signal', o.signal);
    // A chunk's results are one array each; a search's advice (batches of queries) would not fit a walk.
    const searched = Math.min(excludeSelf ? k + 1 : k, this.count);
    if (Math.min(batchSize, this.count) * searched > MAX_RESULT_VALUES) {
      throw new RangeError(`options.batchSize must be <= ${Math.floor(MAX_RESULT_VALUES / searched)} for k = ${k} on ${this.count} vectors ` +
        `(a chunk's batchSize x ${searched} results are one array, of at most 2^32), got ${batchSize}`);
    }
    return this.walkNeighbors(k, excludeSelf, batchSize, signal);
  }

  private async *walkNeighbors(k: number, excludeSelf: boolean, batchSize: number,
    signal: AbortSignal | undefined): AsyncGenerator<NeighborsChunk, void, undefined> {
    this.assertUsable('neighbors');
    signal?.throwIfAborted();
    // The walk holds the index only while a step runs, not while it waits at a yield: a walk its
    // caller drops without return() (a client gone mid-stream) would otherwise lock add, remove and
    // dispose for good. A change between two steps ends the walk instead of mixing two indexes.
    const changes = this.changes;
    const total = this.count;
    const kOut = Math.min(k, excludeSelf ? total - 1 : total);
    for (let start = 0; start < total; start += batchSize) {
      signal?.throwIfAborted();
      if (this.changes !== changes) {
        throw new Error('VectorIndex.neighbors: the index changed (add, remove or dispose) during the walk; start a new walk');
      }
      const n = Math.min(batchSize, total - start);
      const { vectors, ids } = this.rowsAt(start, n);
      if (kOut === 0) {
        yield { ids, neighbors: new BigInt64Array(0), scores: new Float32Array(0), k: 0 };
        continue;
      }
      let found: SearchResult;
      this.readers++;
      try {
        found = await this.searchUnit(vectors, n, excludeSelf ? kOut + 1 : kOut, signal);
      } finally {
        this.readers--;
      }
      if (!excludeSelf) {
        yield { ids, neighbors: found.ids, scores: found.scores, k: kOut };
        continue;
      }
      const neighbors = new BigInt64Array(n * kOut);
      const scores = new Float32Array(n * kOut);
      for (let q = 0; q < n; q++) {
        const from = q * found.k;
        let self = found.ids.subarray(from, from + found.k).indexOf(ids[q]);
        if (self === -1) self = found.k - 1;  // tied duplicates with lower ids pushed self out
        for (let i = 0, j = 0; i < found.k; i++) {
          if (i === self) continue;
          neighbors[q * kOut + j] = found.ids[from + i];
          scores[q * kOut + j] = found.scores[from + i];
          j++;
        }
      }
      yield { ids, neighbors, scores, k: kOut };
    }
  }

  /** Writes the index to `file` (format in docs/index.md) through a temporary file and a rename. */
  async save(file: string, options?: SaveOptions): Promise<void> {
    this.assertUsable('save');
    requireString('file', file);
    const o = optionalObject('options', options, SAVE_OPTIONS);
    const signal = optionalAbortSignal('options.signal', o.signal);
    const onProgress = optionalFunction<(p: IndexFileProgress) => void>('options.onProgress', o.onProgress);
    signal?.throwIfAborted();
    const metadata = this.savedMetadata.bytes;
    const header: Header = {
      dtype: this.dtype, dim: this.dim, count: this.count, nextId: this.nextId, metadataBytes: metadata.length,
      layout: layoutOf(this.dtype, this.dim, this.count, metadata.length),
    };
    const rowBytes = this.dim * bytesPerElement(this.dtype);
    this.readers++;
    try {
      await writeIndexFile(file, header, metadata,
        this.chunks.map((c) => byteView(c.ids, c.count * 8)),
        this.chunks.map((c) => byteView(c.vectors, c.count * rowBytes)), { signal, onProgress });
    } finally {
      this.readers--;
    }
  }

  /**
   * Reads an index written by save(); a truncated, corrupt, foreign or newer file is a clear Error.
   * On CUDA the device copies are made too (off the event loop): the index is ready to search.
   */
  static async load(file: string, options?: LoadOptions): Promise<VectorIndex> {
    requireString('file', file);
    const o = optionalObject('options', options, LOAD_OPTIONS);
    const mmap = optionalBoolean('options.mmap', o.mmap, false);
    const signal = optionalAbortSignal('options.signal', o.signal);
    const onProgress = optionalFunction<(p: IndexFileProgress) => void>('options.onProgress', o.onProgress);
    const make = (h: Header) => new VectorIndex({
      dim: h.dim, dtype: h.dtype, device: o.device as Device | undefined, chunkBytes: o.chunkBytes as number | undefined,
    });
    resolveDevice(o.device);  // option errors before any file I/O
    if (o.chunkBytes !== undefined) requireChunkBytes(o.chunkBytes);
    signal?.throwIfAborted();
    const reader = await IndexFileReader.open(file);
    // Every chunk's storage so far: a failure at any step (a later chunk's allocation, the read, an
    // abort, the id check, the close) releases it rather than leave gigabytes to the GC.
    const storage: Storage[] = [];
    let made: VectorIndex | null = null;  // its device copies too
    try {
      const { header } = reader;
      if (header.count > MAX_INDEX_SIZE) {
        throw new RangeError(`${file} holds ${header.count} vectors, but an index holds at most ${MAX_INDEX_SIZE} (2^29)`);
      }
      const index = made = make(header);
      const rowBytes = header.dim * bytesPerElement(header.dtype);
      const rows: number[] = [];
      for (let start = 0; start < header.count; start += index.chunkRows) rows.push(Math.min(index.chunkRows, header.count - start));
      // Past the limit the load would fail at its last mappings, when anything else needing one fails too.
      const limit = mmap ? maxMappings() : null;
      if (limit !== null && rows.length > limit) {
        throw new Error(`cannot map ${file}: its ${rows.length} storage chunks would each be a memory mapping, more than the kernel ` +
          `lets a process hold (/proc/sys/vm/max_map_count: ${limit}): a larger chunkBytes, or mmap: false, needs fewer`);
      }
      const ids = rows.map((n) => new BigInt64Array(n));
      // With mmap each chunk views its own mapping of the file (no copy); else it is read into storage.
      if (!mmap) for (const n of rows) storage.push(index.allocate(n));
      // Scores are dot products with stored rows that add() made unit length: a longer one (beyond
      // the storage type's rounding) or NaN would not score a cosine. Shorter ones pass: add()
      // stores x * 10^12 for a row of norm below 10^-12 (zeros for a zero row).
      const { metadata, mapped, longRow } = await reader.readInto(ids.map((a) => byteView(a, a.length * 8)),
        mmap ? rows.map((n) => n * rowBytes) : storage.map((v, i) => byteView(v, rows[i] * rowBytes)),
        1 + UNIT_NORM_SLACK[header.dtype], { signal, onProgress });
      for (const view of mapped) {
        releasableBuffers.add(view.buffer);
        storage.push(header.dtype === 'float32'
          ? new Float32Array(view.buffer, view.byteOffset, view.length / 4) : new Uint16Array(view.buffer, view.byteOffset, view.length / 2));
      }
      rows.forEach((n, i) => index.chunks.push(newChunk(storage[i], ids[i], n, mmap)));
      if (longRow !== null) {
        throw new Error(`${file} is corrupt: the vector of id ${ids[Math.floor(longRow.row / index.chunkRows)][longRow.row % index.chunkRows]} ` +
          `has norm ${longRow.norm} (a stored vector has norm at most 1, plus ${UNIT_NORM_SLACK[header.dtype]} of ${header.dtype} rounding)`);
      }
      await index.finishLoad(header, metadata, file, signal);
      // CUDA: the device copies now, so that the first search does not wait for them (13.6 GB for
      // 8.8M x 768 float16) and a GPU without the room fails here.
      const copies = index.deviceIndex >= 0 ? index.chunks : [];
      const copyBytes = (chunk: Chunk) => chunk.ids.length * rowBytes;  // a loaded chunk has no spare rows
      const deviceBytes = copies.reduce((sum, chunk) => sum + copyBytes(chunk), 0);
      if (copies.length > 0) onProgress?.({ stage: 'device', bytes: 0, totalBytes: deviceBytes });  // a bar from the start
      let copied = 0;
      for (const chunk of copies) {
        signal?.throwIfAborted();
        await index.syncChunk(chunk);
        copied += copyBytes(chunk);
        onProgress?.({ stage: 'device', bytes: copied, totalBytes: deviceBytes });
      }
      signal?.throwIfAborted();  // an abort during the last step: the caller gets no index to dispose
      await reader.close();
      return index;
    } catch (err) {
      for (const chunk of made?.chunks ?? []) made!.dropDeviceCopy(chunk);
      for (const v of storage) releaseStorage(v);
      await reader.close().catch(() => undefined);  // the first error is the one to report
      throw err;
    }
  }

  /**
   * What an index file holds, read from its header and metadata alone: quick at any size, but the
   * checksum is not verified (`load` verifies it).
   */
  static async describe(file: string): Promise<IndexDescription> {
    requireString('file', file);
    const reader = await IndexFileReader.open(file);
    try {
      const { header } = reader;
      const metadata = deepFreeze(decodeMetadata(await reader.readMetadata(), file));
      return { dtype: header.dtype, dim: header.dim, size: header.count, metadata, fileBytes: header.layout.fileBytes };
    } finally {
      await reader.close();
    }
  }

  /** Frees the device copies and drops the storage; any later use throws. Not while a search runs. */
  dispose(): void {
    if (this.disposed) return;
    this.assertWritable('dispose');
    for (const c of this.chunks) {
      this.dropDeviceCopy(c);
      releaseStorage(c.vectors);
    }
    this.chunks = [];
    this.table = new IdTable();
    this.count = 0;
    this.disposed = true;
    this.changes++;
  }

  /** What console.log shows: the public facts, not the storage (chunks and the id table). */
  [util.inspect.custom](_depth: number, options: util.InspectOptions, inspect: typeof util.inspect): string {
    const facts = this.disposed ? { disposed: true } :
      { size: this.count, dim: this.dim, dtype: this.dtype, device: this.device, bytes: this.bytes, metadata: this.metadata };
    return `VectorIndex ${inspect(facts, options)}`;
  }

  // ---- internals ------------------------------------------------------------------------------

  private async finishLoad(header: Header, metadata: Uint8Array, file: string, signal: AbortSignal | undefined): Promise<void> {
    this.savedMetadata = { bytes: metadata.slice(), object: deepFreeze(decodeMetadata(metadata, file)) };
    this.count = header.count;
    this.nextId = header.nextId;
    this.table = new IdTable(header.count);
    let position = 0;
    for (const chunk of this.chunks) {
      // Millions of ids take a while: the event loop runs between slices.
      for (let r = 0; r < chunk.count; r += ID_TABLE_SLICE) {
        const ids = chunk.ids.subarray(r, Math.min(chunk.count, r + ID_TABLE_SLICE));
        // save() writes a next id past every id: an add() without ids would otherwise collide.
        const top = maxId(ids);
        if (top >= header.nextId) throw new Error(`${file} is corrupt: id ${top} is not below the next id it records (${header.nextId})`);
        const repeated = this.table.insertNew(ids, position);
        if (repeated !== -1) throw new Error(`${file} is corrupt: id ${ids[repeated]} appears more than once`);
        position += ids.length;
        await new Promise(setImmediate);
        signal?.throwIfAborted();
      }
    }
  }

  private assertUsable(operation: string): void {
    if (this.disposed) throw new Error(`VectorIndex.${operation}: the index has been disposed`);
  }

  private assertWritable(operation: string): void {
    this.assertUsable(operation);
    if (this.readers > 0) {
      throw new Error(`VectorIndex.${operation}: a search, save or neighbors() step is still running on this index; await it first`);
    }
  }

  private checkK(value: unknown): number {
    const k = requirePositiveInteger('options.k', value);
    if (this.deviceIndex >= 0 && k > INDEX_CUDA_MAX_K) throw new RangeError(`options.k must be <= ${INDEX_CUDA_MAX_K} on CUDA, got ${k}`);
    return k;
  }

  private sequentialIds(rows: number): BigInt64Array {
    if (this.nextId + BigInt(rows) - 1n > MAX_ID) throw new RangeError('ids: the default ids would pass 2^63-1; pass ids explicitly');
    const ids = new BigInt64Array(rows);
    for (let i = 0; i < rows; i++) ids[i] = this.nextId + BigInt(i);
    return ids;
  }

  /** Zeroed storage for `rows` vectors; large chunks on huge pages (faster scans, see allocateLargePages). */
  private allocate(rows: number): Storage {
    const bytes = rows * this.dim * bytesPerElement(this.dtype);
    let buffer: ArrayBuffer;
    if (bytes >= LARGE_PAGE_MIN_BYTES) {
      buffer = fileBindings().allocateLargePages(bytes);
      releasableBuffers.add(buffer);
    } else {
      buffer = new ArrayBuffer(bytes);
    }
    return this.dtype === 'float32' ? new Float32Array(buffer) : new Uint16Array(buffer);
  }

  private copyRows(chunk: Chunk, capacity: number): { vectors: Storage; ids: BigInt64Array } {
    const vectors = this.allocate(capacity);
    vectors.set(chunk.vectors.subarray(0, chunk.count * this.dim));
    const ids = new BigInt64Array(capacity);
    ids.set(chunk.ids.subarray(0, chunk.count));
    return { vectors, ids };
  }

  private dropDeviceCopy(chunk: Chunk): void {
    chunk.matrix?.free();
    chunk.matrix = null;
  }

  /** Rows [start, start + n) as float32 (unit vectors as stored) and their ids. */
  private rowsAt(start: number, n: number): { vectors: Float32Array; ids: BigInt64Array } {
    const vectors = new Float32Array(n * this.dim);
    const ids = new BigInt64Array(n);
    for (let r = 0; r < n;) {
      const position = start + r;
      const chunk = this.chunks[Math.floor(position / this.chunkRows)];
      const row = position % this.chunkRows;
      const m = Math.min(n - r, chunk.count - row);
      const slice = chunk.vectors.subarray(row * this.dim, (row + m) * this.dim);
      vectors.set(slice instanceof Float32Array ? slice : float16ToFloat32Array(slice), r * this.dim);
      ids.set(chunk.ids.subarray(row, row + m), r);
      r += m;
    }
    return { vectors, ids };
  }

  /** A CUDA chunk's top-k, from its device copy once that is up to date. */
  private async searchChunk(chunk: Chunk, queries: Float32Array, k: number): Promise<TopKResult> {
    await this.syncChunk(chunk);
    return chunk.matrix!.searchAsync(queries, { k, normalized: true, rows: chunk.count });
  }

  /**
   * Brings a chunk's device copy up to date. One upload per chunk at a time: concurrent searches
   * share it (and its failure). The chunk cannot change meanwhile (readers > 0 blocks add, remove
   * and dispose; load has not returned the index yet), so nor can its storage be released under it.
   */
  private async syncChunk(chunk: Chunk): Promise<void> {
    chunk.syncing ??= this.uploadChunk(chunk).finally(() => {
      chunk.syncing = null;
    });
    await chunk.syncing;
  }

  /**
   * Makes a chunk's device copy (load, or the first search); later, uploads only the rows written
   * since (appended, or filled by a remove). The bookkeeping changes only once every upload
   * succeeded: after a failure the next search uploads the same rows again.
   */
  private async uploadChunk(chunk: Chunk): Promise<void> {
    const d = this.dim;
    if (chunk.matrix === null) {
      // The whole storage: rows past `count` are zeros or unit rows (storeUnitRows writes nothing else).
      chunk.matrix = await CudaMatrix.createAsync(chunk.vectors,
        { rows: chunk.ids.length, dim: d, dtype: this.dtype, device: this.device as CudaDeviceName });
      chunk.synced = chunk.ids.length;
    } else {
      const upload = (from: number, to: number) => chunk.matrix!.setRowsAsync(from, chunk.vectors.subarray(from * d, to * d));
      // Rewritten rows in runs of consecutive rows, one upload each; then the appended rows.
      const rows = [...chunk.rewritten].filter((r) => r < Math.min(chunk.synced, chunk.count)).sort((a, b) => a - b);
      for (let i = 0, j = 0; i < rows.length; i = j) {
        for (j = i + 1; j < rows.length && rows[j] === rows[j - 1] + 1;) j++;
        await upload(rows[i], rows[j - 1] + 1);
      }
      if (chunk.synced < chunk.count) await upload(chunk.synced, chunk.count);
      chunk.synced = Math.max(chunk.synced, chunk.count);
    }
    chunk.rewritten.clear();
  }

  /** Search with unit-length queries, a tile of queries at a time. */
  private async searchUnit(unit: Float32Array, numQueries: number, k: number, signal: AbortSignal | undefined): Promise<SearchResult> {
    const kept = Math.min(k, this.count);
    requireResultFits(numQueries, kept);
    const ids = new BigInt64Array(numQueries * kept);
    const scores = new Float32Array(numQueries * kept);
    if (kept === 0 || numQueries === 0) return { ids, scores, k: kept };
    const d = this.dim;
    const maxQueries = this.deviceIndex < 0 ? Math.floor(QUERY_TILE_BYTES / (d * 4)) : CUDA_QUERY_TILE;
    const maxTile = Math.max(1, Math.min(maxQueries, Math.floor(TILE_RESULTS / (kept + 1))));
    for (const [q0, q1] of evenTiles(numQueries, maxTile)) {
      signal?.throwIfAborted();  // one kernel call cannot be stopped; the next is not made
      const queries = unit.subarray(q0 * d, q1 * d);
      const best = this.deviceIndex < 0 ? await this.searchTileCpu(queries, kept) : await this.searchTileCuda(queries, kept);
      for (let i = 0; i < best.positions.length; i++) ids[q0 * kept + i] = this.idAt(best.positions[i]);
      scores.set(best.scores, q0 * kept);
    }
    return { ids, scores, k: kept };
  }

  /**
   * CPU: one kernel call streams every chunk once for the whole tile and breaks ties by id, so
   * its rows are the answer as they come.
   */
  private async searchTileCpu(queries: Float32Array, k: number): Promise<{ positions: ArrayLike<number>; scores: Float32Array }> {
    const segments = this.chunks.map((c) => ({ rows: c.vectors, numRows: c.count, ids: c.ids }));
    const found = await cosineTopKSegmentsAsync(queries, segments, { dim: this.dim, k, dtype: this.dtype, normalized: true });
    return { positions: found.indices, scores: found.scores };
  }

  /**
   * CUDA: each chunk's device copy is searched for k + 1 rows, one chunk after another, and the
   * lists are merged in (score desc, id asc) order. The device breaks ties by row, not id: when a
   * chunk's last row ties with the final k-th score, rows with that score may be missing, and
   * that chunk is asked again for more (resolveBoundaryTies).
   */
  private async searchTileCuda(queries: Float32Array, k: number): Promise<{ positions: Float64Array; scores: Float32Array }> {
    const d = this.dim;
    const n = queries.length / d;
    const results: TopKResult[] = [];
    for (const chunk of this.chunks) results.push(await this.searchChunk(chunk, queries, Math.min(k + 1, chunk.count)));
    const positions = new Float64Array(n * k);
    const scores = new Float32Array(n * k);
    for (let q = 0; q < n; q++) {
      const lists = results.map((r) => ({
        rows: r.indices.subarray(q * r.k, (q + 1) * r.k), scores: r.scores.subarray(q * r.k, (q + 1) * r.k),
      }));
      let best = this.merge(lists, k);
      if (await this.resolveBoundaryTies(lists, queries.subarray(q * d, (q + 1) * d), best.scores[k - 1])) {
        best = this.merge(lists, k);
      }
      positions.set(best.positions, q * k);
      scores.set(best.scores, q * k);
    }
    return { positions, scores };
  }

  /**
   * A chunk that returned fewer rows than it holds, whose last row scores exactly the final k-th
   * score, may hold more rows of that score with lower ids. Fetch more from it (doubling) until its
   * last row scores below that (on CUDA, at most CUDA_MAX_K rows: a larger group of exactly equal
   * scores at the boundary keeps the device's row order). Returns whether any list changed.
   */
  private async resolveBoundaryTies(lists: Candidates[], query: Float32Array, kthScore: number): Promise<boolean> {
    let changed = false;
    for (let c = 0; c < lists.length; c++) {
      const chunk = this.chunks[c];
      let list = lists[c];
      const most = Math.min(chunk.count, CUDA_MAX_K);
      while (list.rows.length < most && list.scores[list.scores.length - 1] === kthScore) {
        const more = await this.searchChunk(chunk, query, Math.min(most, 2 * list.rows.length));
        list = { rows: more.indices, scores: more.scores };
        changed = true;
      }
      lists[c] = list;
    }
    return changed;
  }

  private idAt(position: number): bigint {
    return this.chunks[Math.floor(position / this.chunkRows)].ids[position % this.chunkRows];
  }

  /** The k best of the chunks' candidate lists in (score desc, id asc) order, as global positions. */
  private merge(lists: Candidates[], k: number): { scores: Float32Array; positions: Float64Array } {
    let scores = new Float32Array(k), positions = new Float64Array(k);
    let nextScores = new Float32Array(k), nextPositions = new Float64Array(k);
    let have = 0;
    const before = (sa: number, pa: number, sb: number, pb: number) => sa > sb || (sa === sb && this.idAt(pa) < this.idAt(pb));
    for (let c = 0; c < lists.length; c++) {
      const { rows, scores: listScores } = lists[c];
      if (rows.length === 0 || (have === k && listScores[0] < scores[k - 1])) continue;
      const base = c * this.chunkRows;
      // The kernel orders equal scores by row; reorder each run of equal scores by id (a run can be
      // a whole chunk, e.g. for a zero query, so it is sorted, not insertion-sorted).
      const candidates = Float64Array.from(rows, (r) => base + r);
      const byId = (a: number, b: number) => {
        const x = this.idAt(a), y = this.idAt(b);
        return x < y ? -1 : x > y ? 1 : 0;
      };
      for (let start = 0, end = 1; start < candidates.length; start = end, end = start + 1) {
        while (end < candidates.length && listScores[end] === listScores[start]) end++;
        if (end - start > 1) candidates.set(Array.from(candidates.subarray(start, end)).sort(byId), start);
      }
      let i = 0, j = 0, m = 0;
      while (m < k && (i < have || j < candidates.length)) {
        if (j >= candidates.length || (i < have && before(scores[i], positions[i], listScores[j], candidates[j]))) {
          nextScores[m] = scores[i];
          nextPositions[m++] = positions[i++];
        } else {
          nextScores[m] = listScores[j];
          nextPositions[m++] = candidates[j++];
        }
      }
      [scores, nextScores] = [nextScores, scores];
      [positions, nextPositions] = [nextPositions, positions];
      have = m;
    }
    return { scores, positions };
  }
}

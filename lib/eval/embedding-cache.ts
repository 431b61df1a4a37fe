// Encodes a TSV collection into an on-disk cache of embedding chunks, resumably: each chunk is
// written (then renamed) before the manifest that lists it, and the manifest records the byte
// offset where the next chunk's passages start, so an interrupted run reads on from there.
//
// <cacheDir>/<key>/manifest.json          identity, dim, the chunks, complete
//                  vectors-000000.f32     rows x dim float32, little-endian, row-major
//                  ids-000000.txt         the rows' passage ids, one per line
// <key> is a hash of the identity: model + settings (from the caller) + the collection file's
// size and content hash, so another model or an edited file gets a fresh cache, and a touched,
// moved or copied file keeps its own. A pipe, which no later run could find again, is encoded into
// a temporary folder (<cacheDir>/pipe.tmp-<pid>-<random>) that is removed after its run.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { makeFolders, removeAbandonedTemporaries, temporaryPath, writeFileAtomicAsync } from '../atomic-file';
import { FormatError } from '../lines';
import { takeLock } from '../lock-file';
import { counted, namesOf, optionalAbortSignal, optionalFunction, optionalPositiveInteger, requireJson, requireObject, requireString, typeName } from '../validate';
import { readTsv, readTsvBatches, TextRecord } from './formats';

/** `rows` vectors of `dim` float32, row-major (an Encoder's Embeddings). */
export interface EmbeddingBatch {
  /** rows x dim values, row-major. */
  data: Float32Array;
  /** Vectors. */
  rows: number;
  /** Values per vector. */
  dim: number;
}

/** What the cache needs of an encoder: embeddings of a text stream, in order. */
export interface StreamEncoder {
  /** Vectors of the texts, in order, in batches of any size (an Encoder is one). */
  encodeStream(texts: AsyncIterable<string>): AsyncIterable<EmbeddingBatch>;
}

/** What encodeCollection's `onProgress` is told as the collection is checked, then encoded. */
export interface EncodeProgress {
  /**
   * 'check': the part of the collection not yet in the cache is read through once (format, duplicate
   * ids) before any of it is encoded (a regular file: a pipe, read once, is checked as it is encoded);
   * 'encode': it is being encoded.
   */
  stage: 'check' | 'encode';
  /** Passages encoded so far, including those found in the cache. */
  rows: number;
  /** Bytes of the collection file checked ('check') or encoded ('encode') so far, of `totalBytes`; cached passages count as both. */
  bytes: number;
  /** The collection file's size in bytes. */
  totalBytes: number;
  /** Cache chunks written or found so far. */
  chunks: number;
  /** Passages taken from the cache rather than encoded in this call. */
  cachedRows: number;
}

/** Options of encodeCollection. */
export interface EncodeCollectionOptions {
  /** `id<TAB>text` file. */
  collection: string;
  /** Root of the cache; one folder per identity below it. */
  cacheDir: string;
  /**
   * Everything that changes the vectors (model, max length), as JSON data: plain objects, arrays,
   * strings, finite numbers, booleans, null (anything else is a TypeError). A `collection` member is
   * replaced by the collection file's fileIdentity.
   */
  identity: Record<string, unknown>;
  /** What encodes the passages (an Encoder). */
  encoder: StreamEncoder;
  /** Passages per chunk file (default 16,384: 48 MiB at dim 768). */
  chunkRows?: number | undefined;
  /** Stops after the encoder's batch in progress, writing what is encoded (aborted before the call: at once); a later call resumes. */
  signal?: AbortSignal | undefined;
  /**
   * Called once at the start (what the cache holds); while checking, every 64k lines and at the end of
   * the check; once as encoding starts; then after each encoder batch and each chunk written.
   */
  onProgress?: ((progress: EncodeProgress) => void) | undefined;
}

interface ChunkEntry { rows: number; vectors: string; ids: string; endOffset: number; endLine: number }
interface Manifest {
  format: 'camembed-embedding-cache';
  version: 1;
  identity: Record<string, unknown>;
  dim: number;
  chunks: ChunkEntry[];
  complete: boolean;
}

/** A collection's vectors in the cache, as encodeCollection leaves them. */
export class EncodedCollection {
  constructor(
    /** The cache folder of this collection and model. */
    readonly dir: string,
    /** Values per vector. */
    readonly dim: number,
    /** Passage ids, row by row. */
    readonly ids: string[],
    private readonly chunkEntries: ChunkEntry[],
    /** Passages found in the cache rather than encoded by this call. */
    readonly cachedRows: number,
    /** Whether the folder is kept for later calls: false for a pipe's (see release()). */
    readonly kept: boolean,
  ) {}

  /** Removes the folder of a pipe's vectors (no later call could find it again); a file's cache stays. */
  async release(): Promise<void> {
    if (!this.kept) await fs.promises.rm(this.dir, { recursive: true, force: true });
  }

  /** Passages (vectors) in the collection. */
  get rows(): number { return this.ids.length; }

  /** The vectors, one chunk at a time (bounded memory), in row order. */
  async *chunks(): AsyncGenerator<{ firstRow: number; rows: number; vectors: Float32Array }, void, undefined> {
    let firstRow = 0;
    for (const entry of this.chunkEntries) {
      const bytes = await fs.promises.readFile(path.join(this.dir, entry.vectors));
      const vectors = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      yield { firstRow, rows: entry.rows, vectors };
      firstRow += entry.rows;
    }
  }
}

/**
 * Passage ids seen, in Sets of at most 2^23 each: V8 holds at most 2^24 entries in one Set, and a
 * collection past 16.7M passages failed with 'Set maximum size exceeded', on every resume too.
 */
class IdSet {
  private readonly sets = [new Set<string>()];

  constructor(ids: Iterable<string>) {
    for (const id of ids) this.add(id);
  }

  has(id: string): boolean {
    return this.sets.some((set) => set.has(id));
  }

  /** Adds `id`; false when it was there already. */
  add(id: string): boolean {
    if (this.has(id)) return false;
    if (this.sets[this.sets.length - 1].size === 2 ** 23) this.sets.push(new Set());
    this.sets[this.sets.length - 1].add(id);
    return true;
  }
}

/**
 * Reads the collection from `from` to its end once before any of it is encoded: a malformed line
 * or a duplicate id near the end of millions of passages would otherwise show after hours of
 * encoding. Stops early (without an error) once `signal` is aborted; reports the bytes read every 64k lines.
 */
async function checkCollection(collection: string, from: { startOffset: number; startLine: number }, seen: IdSet,
  signal: AbortSignal | undefined, onBytes: (bytes: number) => void): Promise<void> {
  let lines = 0;
  let end = from.startOffset;
  for await (const records of readTsvBatches(collection, from)) {
    for (const record of records) {
      if (!seen.add(record.id)) throw await duplicateIdError(collection, record, true);  // no await per record
      end = record.endOffset;
      if (++lines % 65536 === 0) {
        onBytes(end);
        if (signal?.aborted) return;
      }
    }
  }
}

// The error for `record`, whose id came before: it says where first when the collection can be
// read again (a pipe cannot).
async function duplicateIdError(collection: string, record: TextRecord, rereadable: boolean): Promise<FormatError> {
  const first = rereadable ? ` (first on line ${await firstLineOf(collection, record.id)})` : '';
  return new FormatError(collection, record.line, `duplicate passage id '${record.id}'${first}`);
}

// Where a duplicate id was first seen: read again only for the error (a line number per id would
// double the memory the ids take).
async function firstLineOf(collection: string, id: string): Promise<number> {
  for await (const records of readTsvBatches(collection)) {
    const first = records.find((record) => record.id === id);
    if (first !== undefined) return first.line;
  }
  throw new Error(`${collection} changed while it was read`);
}

/** The manifest and the ids of its whole chunks, or null when there is none for this identity. */
async function readManifest(dir: string, identity: Record<string, unknown>): Promise<{ manifest: Manifest; ids: string[] } | null> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await fs.promises.readFile(path.join(dir, 'manifest.json'), 'utf8'));
  } catch {
    return null; // absent or unreadable: start over
  }
  if (manifest.format !== 'camembed-embedding-cache' || manifest.version !== 1 ||
      JSON.stringify(manifest.identity) !== JSON.stringify(identity)) return null;
  // Keep the chunks whose files are whole; anything after the first damaged one is redone. An ids
  // file short of its rows (emptied by a crash) would shift every later id onto another passage's vector.
  const valid: ChunkEntry[] = [];
  const ids: string[] = [];
  for (const entry of manifest.chunks) {
    const size = await fs.promises.stat(path.join(dir, entry.vectors)).then((s) => s.size, () => -1);
    const text = await fs.promises.readFile(path.join(dir, entry.ids), 'utf8').catch(() => null);
    const chunkIds = text === null ? [] : text.split('\n');
    if (size !== entry.rows * manifest.dim * 4 || chunkIds.length !== entry.rows || chunkIds.includes('')) break;
    valid.push(entry);
    for (const id of chunkIds) ids.push(id);  // not push(...): past ~120k arguments it overflows the stack
  }
  if (valid.length < manifest.chunks.length) manifest.complete = false;
  manifest.chunks = valid;
  return { manifest, ids };
}

export type FileIdentity = { bytes: number; sha256: string } | { path: string; bytes: number; mtimeMs: number };

/**
 * A file as cache keys see it. A regular file: its size and the sha256 of its content, and nothing
 * of its name or dates, so that a `touch`, `mv` or `cp` keeps days of encoding. A pipe (or FIFO),
 * which can be read only once, cannot be hashed first: its path, size and modification time.
 */
export async function fileIdentity(file: string): Promise<FileIdentity> {
  const stat = await fs.promises.stat(file);
  if (stat.isFile()) return { bytes: stat.size, sha256: await contentDigest(file) };
  return { path: path.resolve(file), bytes: stat.size, mtimeMs: stat.mtimeMs };
}

/**
 * The sha256 of a file's content: the size and modification time miss a file rewritten in place at
 * the same size within the granularity of its timestamps (a clock tick on Linux before 6.13, 2 s on
 * FAT). Reads the whole file: 0.22 s for 281 MB here, against 1.1-1.6 s for the check of a
 * collection (bench/RESULTS-eval.md). Not stopped by a signal: the cache folder that
 * EncodeInterrupted names is keyed by it.
 */
async function contentDigest(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(piece as Buffer);
  return hash.digest('hex');
}

/** encodeCollection was stopped by its `signal`: the passages encoded so far are in the cache, and the next call resumes. */
export class EncodeInterrupted extends Error {
  constructor(
    /** Passages in the cache (encoded now or before). */
    readonly rows: number,
    /** The cache folder of this collection and model. */
    readonly dir: string,
    /** Whether the cache keeps them: false for a pipe, whose folder is removed. */
    readonly kept = true,
  ) {
    super(kept ? `encoding interrupted after ${counted(rows, 'passage')}; the cache in ${dir} keeps them and the next run resumes`
      : `encoding interrupted after ${counted(rows, 'passage')}; a pipe's passages are not kept (no later run could find them): the next run encodes them again`);
    this.name = 'EncodeInterrupted';
  }
}

const ENCODE_COLLECTION_OPTIONS = namesOf<EncodeCollectionOptions>({
  collection: true, cacheDir: true, identity: true, encoder: true, chunkRows: true, signal: true, onProgress: true,
});

/** Encodes (or finishes encoding) `collection` into the cache and describes the result. */
export async function encodeCollection(options: EncodeCollectionOptions): Promise<EncodedCollection> {
  requireObject('options', options, ENCODE_COLLECTION_OPTIONS);
  const collection = requireString('options.collection', options.collection);
  requireString('options.cacheDir', options.cacheDir);
  requireObject('options.identity', options.identity);
  requireJson('options.identity', options.identity);  // it is hashed and stored as JSON
  const encoder = requireObject('options.encoder', options.encoder) as unknown as StreamEncoder;
  if (typeof encoder.encodeStream !== 'function') {
    throw new TypeError(`options.encoder.encodeStream must be a function (pass an Encoder), got ${typeName(encoder.encodeStream)}`);
  }
  const onProgress = optionalFunction<(p: EncodeProgress) => void>('options.onProgress', options.onProgress);
  const signal = optionalAbortSignal('options.signal', options.signal);
  const chunkRows = optionalPositiveInteger('options.chunkRows', options.chunkRows) ?? 16384;
  const collectionFile = await fileIdentity(collection);
  // A pipe or a FIFO (`<(zcat collection.tsv.gz)`) can be read only once: checked as it is
  // encoded, and not hashed (fileIdentity hashes regular files only).
  const checkFirst = 'sha256' in collectionFile;
  const identity = { ...options.identity, collection: collectionFile };
  // A pipe's cache could never be found again (it cannot be hashed before it is read, and its
  // modification time is new at each run): it goes in a temporary folder of its own, removed on a
  // failure here and by release() once the caller is done with the vectors.
  const dir = checkFirst ? path.join(options.cacheDir, createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 20))
    : temporaryPath(path.join(options.cacheDir, 'pipe'));
  makeFolders(dir);
  let release: (() => void) | null = null;
  try {
    await removeAbandonedTemporaries(dir);  // what writers killed mid-write left: 48 MiB a chunk

    let found = await readManifest(dir, identity);
    // Two runs encoding one collection at once wrote chunks of the same names, each listed by its own
    // manifest: one that resumed after an interruption read on from another offset than the other, and
    // the last rename of each file could put one run's vectors beside the other's ids. A run that writes
    // the cache holds its lock (the second is refused), and reads it again as the last holder left it; a
    // finished cache is only read.
    if (found?.manifest.complete !== true) {
      release = takeLock(path.join(dir, 'lock'), `the embedding cache ${dir}`);
      found = await readManifest(dir, identity);
    }
    const { manifest, ids } = found ??
      { manifest: { format: 'camembed-embedding-cache', version: 1, identity, dim: 0, chunks: [], complete: false } as Manifest, ids: [] };
    const cachedRows = ids.length;
    const last = manifest.chunks[manifest.chunks.length - 1];
    const report = (stage: EncodeProgress['stage'], bytes: number, pendingRows = 0) => onProgress?.({
      stage, rows: ids.length + pendingRows, bytes, totalBytes: collectionFile.bytes, chunks: manifest.chunks.length, cachedRows,
    });
    const resumeAt = { startOffset: last?.endOffset ?? 0, startLine: last?.endLine ?? 0 };
    // A file read to its end counts as whole (empty lines after the last passage end no record); a pipe has no size.
    report(manifest.complete || !checkFirst ? 'encode' : 'check', manifest.complete && checkFirst ? collectionFile.bytes : resumeAt.startOffset);

    if (!manifest.complete) {
      if (signal?.aborted) throw new EncodeInterrupted(ids.length, dir, checkFirst);  // before the encoder's first batch
      // Only a pipe's ids are kept in a set while it is encoded: a checked file's would hold each id a second time.
      const seen = checkFirst ? null : new IdSet(ids);
      if (checkFirst) {
        await checkCollection(collection, resumeAt, new IdSet(ids), signal, (bytes) => report('check', bytes));
        if (signal?.aborted) throw new EncodeInterrupted(ids.length, dir, checkFirst);
        report('check', collectionFile.bytes);
        report('encode', resumeAt.startOffset);
      }
      // Passages handed to the encoder and not yet back, in order: the encoder keeps order.
      const inFlight: Array<{ id: string; endOffset: number; line: number }> = [];
      async function* texts(): AsyncGenerator<string> {
        for await (const record of readTsv(collection, resumeAt)) {
          if (seen !== null && !seen.add(record.id)) throw await duplicateIdError(collection, record, false);
          inFlight.push(record);
          yield record.text;
        }
      }
      let chunk: Float32Array | null = null;
      let chunkIds: string[] = [];
      let end = { endOffset: resumeAt.startOffset, line: resumeAt.startLine };
      const flush = async () => {
        const n = manifest.chunks.length;
        const name = String(n).padStart(6, '0');
        const entry: ChunkEntry = {
          rows: chunkIds.length, vectors: `vectors-${name}.f32`, ids: `ids-${name}.txt`, endOffset: end.endOffset, endLine: end.line,
        };
        const data = chunk!.subarray(0, chunkIds.length * manifest.dim);
        await writeFileAtomicAsync(path.join(dir, entry.vectors), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        await writeFileAtomicAsync(path.join(dir, entry.ids), chunkIds.join('\n'));
        manifest.chunks.push(entry);
        await writeFileAtomicAsync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
        for (const id of chunkIds) ids.push(id);
        chunkIds = [];
        report('encode', end.endOffset);
      };
      for await (const batch of encoder.encodeStream(texts())) {
        if (manifest.dim === 0) manifest.dim = batch.dim;
        if (batch.dim !== manifest.dim) throw new Error(`the encoder returned ${batch.dim}-d vectors after ${manifest.dim}-d ones`);
        for (let row = 0; row < batch.rows; row++) {
          const record = inFlight.shift();
          if (record === undefined) throw new Error('the encoder returned more vectors than it was given texts');
          chunk ??= new Float32Array(chunkRows * manifest.dim);
          chunk.set(batch.data.subarray(row * manifest.dim, (row + 1) * manifest.dim), chunkIds.length * manifest.dim);
          chunkIds.push(record.id);
          end = { endOffset: record.endOffset, line: record.line };
          if (chunkIds.length === chunkRows) await flush();
        }
        report('encode', end.endOffset, chunkIds.length);
        // Stopped: keep the passages encoded so far as a short chunk rather than finish the chunk
        // (16,384 passages: most of an hour on a CPU, which a second Ctrl-C would throw away).
        if (signal?.aborted) {
          if (chunkIds.length > 0) await flush();
          throw new EncodeInterrupted(ids.length, dir, checkFirst);
        }
      }
      if (inFlight.length > 0) throw new Error(`the encoder returned ${inFlight.length} fewer vectors than it was given texts`);
      if (chunkIds.length > 0) await flush();
      manifest.complete = true;
      await writeFileAtomicAsync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
      if (checkFirst && end.endOffset !== collectionFile.bytes) report('encode', collectionFile.bytes);
    }
    if (ids.length === 0) throw new Error(`${collection}: the collection has no passages`);
    return new EncodedCollection(dir, manifest.dim, ids, manifest.chunks, cachedRows, checkFirst);
  } catch (err) {
    if (!checkFirst) await fs.promises.rm(dir, { recursive: true, force: true });
    throw err;
  } finally {
    release?.();
  }
}

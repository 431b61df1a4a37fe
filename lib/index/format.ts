// The VectorIndex file format, version 2 (docs/index.md has the full specification). Version 1 is
// version 2 without metadata: a file without metadata is written as version 1, which older
// camembed reads.
// All integers little-endian. Every section starts at a multiple of 64 bytes, so the vectors
// can be viewed in place (typed arrays over a memory mapping) and are cache-line aligned.
//
//   offset  size  field
//   0       8     magic "CMBDINDX"
//   8       4     u32 format version (2; 1 when there is no metadata)
//   12      4     u32 dtype: 1 = float32, 2 = float16 (IEEE binary16 bits)
//   16      4     u32 dim
//   20      4     u32 metadataBytes (version 1: reserved, 0)
//   24      8     u64 count (vectors stored)
//   32      8     u64 nextId (the id the next add() without ids starts at; up to 2^63)
//   40      8     u64 idsOffset (64 + metadataBytes, padded to 64)
//   48      8     u64 vectorsOffset
//   56      8     u64 fileBytes (total file size)
//   64            metadata: UTF-8 JSON object, zero-padded to a multiple of 64
//   idsOffset     ids: count x i64, zero-padded to a multiple of 64
//   vectorsOffset vectors: count x dim x (4 | 2) bytes, row-major, zero-padded to a multiple of 64
//   fileBytes-8   u64 cmbd64 checksum of bytes [0, fileBytes - 8)
import * as fs from 'fs';
import * as path from 'path';

import { followLinks, removeAbandonedTemporaries, temporaryPath } from '../atomic-file';
import { ioError } from '../io-error';
import { loadAddon } from '../native';
import type { Dtype } from '../kernels';

const MAGIC = 'CMBDINDX';
const FORMAT_VERSION = 2;
const MAX_PLAUSIBLE_VERSION = 255;
const HEADER_BYTES = 64;
const TRAILER_BYTES = 8;
// Metadata is for a few facts (the model that made the vectors, a description), read whole.
export const MAX_METADATA_BYTES = 1024 * 1024;
// And nests at most this deep (objects and arrays): JSON.stringify recurses, and a file that loads
// must also save.
export const MAX_METADATA_DEPTH = 1000;

/** How deeply a parsed JSON value nests (each object or array counts 1), walked without recursion. */
export function jsonDepth(value: unknown): number {
  let deepest = 0;
  const pending: Array<[unknown, number]> = [[value, 0]];
  while (pending.length > 0) {
    const [v, depth] = pending.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    deepest = Math.max(deepest, depth + 1);
    for (const member of Object.values(v)) pending.push([member, depth + 1]);
  }
  return deepest;
}

interface ChecksumArgs {
  state: BigUint64Array;
  bytes: Uint8Array;
  rows?: NormCheck & { result: Float64Array };
}

interface FileBindings {
  checksumUpdate(args: ChecksumArgs, async: false): undefined;
  checksumUpdate(args: ChecksumArgs, async: true): Promise<void>;
  mapFileRange(fd: number, offset: number, length: number): ArrayBuffer;
  allocateLargePages(bytes: number): ArrayBuffer;
  releaseMapping(buffer: ArrayBuffer): void;
}

/** The addon's file bindings (native/addon/file_bindings.cc). */
export function fileBindings(): FileBindings {
  return loadAddon() as unknown as FileBindings;
}

/** The most memory mappings the kernel lets a process hold (Linux vm.max_map_count), or null where unknown. */
export function maxMappings(): number | null {
  try {
    return Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8'));
  } catch {
    return null;
  }
}

const DTYPE_CODES: Record<Dtype, number> = { float32: 1, float16: 2 };
/** The longest vectors an index takes (one float32 row is then 64 MiB). */
export const MAX_DIM = 1 << 24;

export function bytesPerElement(dtype: Dtype): number {
  return dtype === 'float32' ? 4 : 2;
}

function padTo64(n: number): number {
  return Math.ceil(n / 64) * 64;
}

export interface Layout {
  idsOffset: number;
  vectorsOffset: number;
  trailerOffset: number;
  fileBytes: number;
}

export function layoutOf(dtype: Dtype, dim: number, count: number, metadataBytes: number): Layout {
  const idsOffset = HEADER_BYTES + padTo64(metadataBytes);
  const vectorsOffset = idsOffset + padTo64(count * 8);
  const trailerOffset = vectorsOffset + padTo64(count * dim * bytesPerElement(dtype));
  return { idsOffset, vectorsOffset, trailerOffset, fileBytes: trailerOffset + TRAILER_BYTES };
}

export interface Header {
  dtype: Dtype;
  dim: number;
  count: number;
  nextId: bigint;
  metadataBytes: number;
  layout: Layout;
}

/** The metadata section (UTF-8 JSON text of an object; none for {}) as an object. */
export function decodeMetadata(bytes: Uint8Array, file: string): Record<string, unknown> {
  if (bytes.length === 0) return {};
  let metadata: unknown;
  try {
    metadata = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new Error(`${file} is corrupt: its metadata is not UTF-8 JSON`);
  }
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new Error(`${file} is corrupt: its metadata is not a JSON object`);
  }
  if (jsonDepth(metadata) > MAX_METADATA_DEPTH) {
    throw new Error(`${file} is corrupt: its metadata nests deeper than ${MAX_METADATA_DEPTH} levels`);
  }
  return metadata as Record<string, unknown>;
}

export function encodeHeader(h: Header): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(Buffer.from(MAGIC, 'latin1'), 0);
  view.setUint32(8, h.metadataBytes > 0 ? FORMAT_VERSION : 1, true);
  view.setUint32(12, DTYPE_CODES[h.dtype], true);
  view.setUint32(16, h.dim, true);
  view.setUint32(20, h.metadataBytes, true);
  view.setBigUint64(24, BigInt(h.count), true);
  view.setBigUint64(32, h.nextId, true);
  view.setBigUint64(40, BigInt(h.layout.idsOffset), true);
  view.setBigUint64(48, BigInt(h.layout.vectorsOffset), true);
  view.setBigUint64(56, BigInt(h.layout.fileBytes), true);
  return bytes;
}

/** Checks the header against the file's actual size; every failure names the file and the fault. */
function decodeHeader(bytes: Uint8Array, actualFileBytes: number, file: string): Header {
  const magic = Buffer.from(bytes.subarray(0, Math.min(8, bytes.length))).toString('latin1');
  if (magic !== MAGIC.slice(0, magic.length) || bytes.length === 0) {
    throw new Error(`${file} is not a camembed index file (no '${MAGIC}' magic at its start)`);
  }
  if (bytes.length < HEADER_BYTES) {
    throw new Error(`${file} is truncated: ${actualFileBytes} bytes, shorter than the ${HEADER_BYTES}-byte header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const version = view.getUint32(8, true);
  const corrupt = (what: string) => new Error(`${file} is corrupt: ${what}`);
  // Versions count up by one per format change: one far beyond ours is damage, not the future.
  if (version < 1 || version > MAX_PLAUSIBLE_VERSION) throw corrupt(`format version ${version}`);
  if (version > FORMAT_VERSION) {
    throw new Error(`${file} has index format version ${version}, newer than this camembed reads (${FORMAT_VERSION}): upgrade camembed`);
  }
  const dtypeCode = view.getUint32(12, true);
  const dtype = (Object.keys(DTYPE_CODES) as Dtype[]).find((t) => DTYPE_CODES[t] === dtypeCode);
  if (dtype === undefined) throw corrupt(`unknown dtype code ${dtypeCode}`);
  const dim = view.getUint32(16, true);
  if (dim < 1) throw corrupt('dim is 0');
  if (dim > MAX_DIM) throw new Error(`${file} holds ${dim}-d vectors; camembed takes at most ${MAX_DIM} dimensions`);
  const metadataBytes = view.getUint32(20, true);
  if (version === 1 && metadataBytes !== 0) throw corrupt('the reserved field of a version 1 header is not 0');
  if (metadataBytes > MAX_METADATA_BYTES) throw corrupt(`${metadataBytes} bytes of metadata, more than the ${MAX_METADATA_BYTES} allowed`);
  const count = view.getBigUint64(24, true);
  if (count > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`count ${count} is impossible`);
  const layout = layoutOf(dtype, dim, Number(count), metadataBytes);
  const stated = [view.getBigUint64(40, true), view.getBigUint64(48, true), view.getBigUint64(56, true)];
  if (stated[0] !== BigInt(layout.idsOffset) || stated[1] !== BigInt(layout.vectorsOffset) || stated[2] !== BigInt(layout.fileBytes)) {
    throw corrupt(`section offsets do not match count ${count}, dim ${dim}, dtype ${dtype}, ${metadataBytes} bytes of metadata`);
  }
  if (actualFileBytes < layout.fileBytes) {
    throw new Error(`${file} is truncated: ${actualFileBytes} bytes, but its header describes ${layout.fileBytes}`);
  }
  if (actualFileBytes > layout.fileBytes) {
    throw corrupt(`${actualFileBytes} bytes, but its header describes ${layout.fileBytes}`);
  }
  const nextId = view.getBigUint64(32, true);
  if (nextId > 1n << 63n) throw corrupt(`next id ${nextId} is beyond 2^63`);
  return { dtype, dim, count: Number(count), nextId, metadataBytes, layout };
}

// cmbd64, the file checksum: four 64-bit lanes, each taking every fourth little-endian 64-bit
// word w of the data (whose length is a multiple of 32 bytes): lane = rotl(lane + w * P2, 31) * P1;
// lanes start at (P1 + P2, P2, 0, -P1) mod 2^64. The digest mixes the lanes and the length:
// h = rotl(l0, 1) + rotl(l1, 7) + rotl(l2, 12) + rotl(l3, 18) + length, then
// h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32 (all mod 2^64).
// Round, seeds and primes are XXH64's (xxHash specification, doc/xxhash_spec.md), so the lane
// updates run at memory speed (native/cpu/unit_rows.cc); it is not XXH64 itself.
const M64 = (1n << 64n) - 1n;
export const P1 = 0x9e3779b185ebca87n;
export const P2 = 0xc2b2ae3d27d4eb4fn;
export const P3 = 0x165667b19e3779f9n;
const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M64;
const SYNC_CHECKSUM_BYTES = 1 << 20;  // smaller pieces are not worth a thread-pool round trip

/** Rows a checksum pass also checks: `dim` values of `dtype` each, of squared norm at most `maxSumSquares`. */
export interface NormCheck {
  dtype: Dtype;
  dim: number;
  maxSumSquares: number;
}

/** A row that failed a NormCheck: its number and its norm. */
export interface LongRow {
  row: number;
  norm: number;
}

export class Checksum {
  // The native kernel's state: the four lanes, then the bytes of a 32-byte word not yet complete
  // (4 words) and their count.
  private readonly state = new BigUint64Array([(P1 + P2) & M64, P2, 0n, (1n << 64n) - P1, 0n, 0n, 0n, 0n, 0n]);
  private length = 0;

  /**
   * Feeds bytes in order; pieces may have any length. With `rows`, the bytes are whole rows
   * (aligned to their element size) whose norms are checked in the same pass: the first row of
   * this piece above the limit, or null.
   */
  async update(bytes: Uint8Array, rows?: NormCheck): Promise<LongRow | null> {
    this.length += bytes.length;
    const result = new Float64Array(2);
    const args: ChecksumArgs = { state: this.state, bytes, rows: rows && { ...rows, result } };
    if (bytes.length >= SYNC_CHECKSUM_BYTES) await fileBindings().checksumUpdate(args, true);
    else fileBindings().checksumUpdate(args, false);
    return rows === undefined || result[0] < 0 ? null : { row: result[0], norm: Math.sqrt(result[1]) };
  }

  digest(): bigint {
    if (this.state[8] !== 0n) throw new Error('cmbd64: the data length must be a multiple of 32 bytes');
    const [l0, l1, l2, l3] = this.state;
    let h = (rotl(l0, 1n) + rotl(l1, 7n) + rotl(l2, 12n) + rotl(l3, 18n) + BigInt(this.length)) & M64;
    h ^= h >> 33n;
    h = (h * P2) & M64;
    h ^= h >> 29n;
    h = (h * P3) & M64;
    h ^= h >> 32n;
    return h;
  }
}

// ---- Reading and writing whole files -------------------------------------------------------

const PIECE_BYTES = 64 * 1024 * 1024;  // checksum in pieces: bounded pauses
// The largest buffer the addon hands out (Node 20's external ArrayBuffer limit, 2^32 bytes): the
// most one storage chunk may hold.
export const MAX_MAPPING_BYTES = 2 ** 32;

function zeros(n: number): Uint8Array {
  return new Uint8Array(n);
}

function trailerOf(checksum: bigint): Uint8Array {
  const bytes = new Uint8Array(TRAILER_BYTES);
  new DataView(bytes.buffer).setBigUint64(0, checksum, true);
  return bytes;
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.promises.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Where a save of `file` goes: the file a symbolic link points to, through any chain of links,
 * even to a file not there yet (the links stay), and the permission bits of the file replaced
 * (null for a new file). Anything but a regular file (a FIFO, a device) is not replaced.
 */
async function saveTarget(file: string): Promise<{ target: string; mode: number | null }> {
  const target = await followLinks(file);
  const stat = await fs.promises.stat(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (stat === null) return { target, mode: null };
  if (!stat.isFile()) throw new Error(`cannot save over ${target}: it is not a regular file`);
  return { target, mode: stat.mode & 0o7777 };
}

/** How far a save or load of an index has gone. */
export interface IndexFileProgress {
  /**
   * 'file': bytes of the file read (or checksummed, when mapped) or written; 'device': bytes of
   * the device copies made (a load on CUDA, once the file is read).
   */
  stage: 'file' | 'device';
  /** Bytes of the stage done so far. */
  bytes: number;
  /** The stage's bytes in all: the file's size, or the device copies' size. */
  totalBytes: number;
}

/** What a read or write of a whole index file is told besides its data. */
export interface FileTransfer {
  /** Stops it before its next piece (64 MiB). */
  signal?: AbortSignal | undefined;
  /** Called after each piece. */
  onProgress?: ((progress: IndexFileProgress) => void) | undefined;
}

/**
 * Writes the file crash-safely: a temporary file in the same folder, fsync, rename over `file`,
 * fsync of the folder. A crash at any point leaves either the old file or the new one.
 * `metadata` is the metadata section's bytes; `idPieces` and `vectorPieces` are the sections' bytes in order.
 */
export async function writeIndexFile(file: string, header: Header, metadata: Uint8Array,
  idPieces: Uint8Array[], vectorPieces: Uint8Array[], { signal, onProgress }: FileTransfer = {}): Promise<void> {
  // Replace the file a symbolic link points to (not the link), keeping that file's permissions.
  const { target, mode } = await saveTarget(file);
  const dir = path.dirname(target);
  // Hidden (`.<name>.tmp-<pid>-<random>`); one a killed save left an hour or more ago goes now: it is
  // as large as the index.
  const hidden = `.${path.basename(target)}`;
  await removeAbandonedTemporaries(dir, [hidden]);
  const temp = temporaryPath(path.join(dir, hidden));  // a command's Ctrl-C removes it (removeTrackedTemporaries)
  // Node's message names only the temporary file ("EACCES: permission denied, open '<dir>/.<name>.tmp-…'"). ENOENT is
  // also what a folder that takes no new file answers (procfs: /proc/x.cmbd): whether the folder is there tells which.
  const handle = await fs.promises.open(temp, 'wx', 0o666).catch(async (err: NodeJS.ErrnoException) => {
    const missing = err.code === 'ENOENT' && await fs.promises.stat(dir).then(() => false, () => true);
    const reason = missing ? `the folder ${dir} does not exist (ENOENT)`
      : err.code === 'ENOENT' ? `${dir} is there, but creating a file in it failed: ${err.message}` : err.message;
    throw Object.assign(new Error(`cannot save ${target}: ${reason}`, { cause: err }), { code: err.code });
  });
  // Node's messages for a handle's writes name no file ('ENOSPC: no space left on device, write').
  const naming = (err: unknown) => { throw ioError('save', target, err); };
  const checksum = new Checksum();
  let position = 0;
  const put = async (bytes: Uint8Array) => {
    await checksum.update(bytes);
    for (let done = 0; done < bytes.length;) {
      signal?.throwIfAborted();  // before the rename only: the temporary file goes, the old file stays
      const n = Math.min(bytes.length - done, PIECE_BYTES);
      const { bytesWritten } = await handle.write(bytes, done, n, position).catch(naming);
      done += bytesWritten;
      position += bytesWritten;
      onProgress?.({ stage: 'file', bytes: position, totalBytes: header.layout.fileBytes });
    }
  };
  let closed = false;
  let renamed = false;
  try {
    const { layout } = header;
    if (metadata.length !== header.metadataBytes) throw new Error('internal: the metadata does not match its header');
    await put(encodeHeader(header));
    await put(metadata);
    await put(zeros(layout.idsOffset - position));
    for (const piece of idPieces) await put(piece);
    await put(zeros(layout.vectorsOffset - position));
    for (const piece of vectorPieces) await put(piece);
    await put(zeros(layout.trailerOffset - position));
    if (position !== layout.trailerOffset) throw new Error(`internal: wrote ${position} bytes before the trailer, expected ${layout.trailerOffset}`);
    await put(trailerOf(checksum.digest()));
    if (mode !== null) await handle.chmod(mode);
    await handle.sync().catch(naming);
    closed = true;
    await handle.close();
    await fs.promises.rename(temp, target);
    renamed = true;
    await syncDirectory(dir);
  } finally {
    if (!closed) await handle.close().catch(() => undefined);
    if (!renamed) await fs.promises.unlink(temp).catch(() => undefined);
  }
}

function checksumMismatch(file: string, stored: bigint, computed: bigint): Error {
  return new Error(`${file} is corrupt: checksum mismatch (stored ${stored.toString(16)}, computed ${computed.toString(16)})`);
}

/** An open index file whose header has been checked; readInto() reads and verifies the rest. */
export class IndexFileReader {
  private constructor(private readonly handle: fs.promises.FileHandle, readonly header: Header,
    private readonly headerBytes: Uint8Array, private readonly file: string) {}

  static async open(file: string): Promise<IndexFileReader> {
    // O_NONBLOCK: a FIFO with no writer would hold open() (and a libuv thread) forever; it is then
    // refused below like a folder. Reads of a regular file ignore the flag.
    const handle = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
      // Node's text ('ENOENT: no such file or directory, open ...') says nothing of an index; the code stays, for callers that test it.
      if (err.code === 'ENOENT') throw Object.assign(new Error(`no index file at ${file}`, { cause: err }), { code: err.code });
      throw ioError('open', file, err);
    });
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new Error(`${file} is not a camembed index file: it is not a regular file`);
      const { size } = stat;
      const headerBytes = new Uint8Array(Math.min(size, HEADER_BYTES));
      await handle.read(headerBytes, 0, headerBytes.length, 0);
      return new IndexFileReader(handle, decodeHeader(headerBytes, size, file), headerBytes, file);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /**
   * Reads the ids into `idPieces` and the vectors into `vectorPieces` (byte views, in file order),
   * checks the checksum and returns the metadata section's bytes, and the first vector of norm
   * above `maxNorm` (or NaN), by row number, if any: the norms are checked in the checksum's pass.
   * A vector piece given as a byte count instead is mapped read-only in place, not copied, before
   * the pass: `mapped` holds those views, each its own mapping (at most MAX_MAPPING_BYTES), so each
   * can be released alone.
   */
  async readInto(idPieces: Uint8Array[], vectorPieces: (Uint8Array | number)[], maxNorm: number,
    { signal, onProgress }: FileTransfer = {}): Promise<{ metadata: Uint8Array; mapped: Uint8Array[]; longRow: LongRow | null }> {
    const { layout, dtype, dim } = this.header;
    const rowBytes = dim * bytesPerElement(dtype);
    const norms: NormCheck = { dtype, dim, maxSumSquares: maxNorm * maxNorm };
    const checksum = new Checksum();
    await checksum.update(this.headerBytes);
    let position = HEADER_BYTES;
    let rowsDone = 0;
    let longRow: LongRow | null = null;
    const read = async (dest: Uint8Array) => {
      for (let done = 0; done < dest.length;) {
        const { bytesRead } = await this.handle.read(dest, done, dest.length - done, position + done).catch((err: unknown) => { throw ioError('read', this.file, err); });
        if (bytesRead === 0) throw new Error(`${this.file} is truncated: it ended at byte ${position + done}`);
        done += bytesRead;
      }
    };
    // Reads `dest` (unless `mapped`: a mapping's pages are read as they are summed) and checksums it
    // (unless not `summed`) in pieces; the vectors in pieces of whole rows, whose norms the same pass checks.
    const take = async (dest: Uint8Array, { mapped = false, vectors = false, summed = true } = {}) => {
      const pieceBytes = vectors ? Math.floor(PIECE_BYTES / rowBytes) * rowBytes : PIECE_BYTES;  // a row is at most PIECE_BYTES
      for (let done = 0; done < dest.length; done += pieceBytes) {
        signal?.throwIfAborted();
        const piece = dest.subarray(done, done + pieceBytes);
        if (!mapped) await read(piece);
        const found = summed ? await checksum.update(piece, vectors ? norms : undefined) : null;
        if (found !== null && longRow === null) longRow = { row: rowsDone + found.row, norm: found.norm };
        if (vectors) rowsDone += piece.length / rowBytes;
        position += piece.length;
        onProgress?.({ stage: 'file', bytes: position, totalBytes: layout.fileBytes });
      }
    };
    const mapped: Uint8Array[] = [];
    try {
      // The pieces to map are mapped first, in one synchronous loop: V8 counts each mapping's
      // ArrayBuffer as external memory, and mappings made one at a time between the pass's awaits
      // each set off a full GC (24 in a load of 3 GB), competing with the pass for the cores.
      let offset = layout.vectorsOffset;  // the header's sizes were checked against the file's size when it was opened
      const vectors = vectorPieces.map((piece) => {
        if (typeof piece !== 'number') {
          offset += piece.length;
          return piece;
        }
        let view: Uint8Array;
        try {
          view = new Uint8Array(fileBindings().mapFileRange(this.handle.fd, offset, piece));
        } catch (err) {
          // Unmapped first: at the kernel's limit on mappings the process cannot go on far without one.
          for (const view of mapped) fileBindings().releaseMapping(view.buffer as ArrayBuffer);
          mapped.length = 0;
          throw new Error(`cannot map ${this.file}: ${(err as Error).message}`);
        }
        mapped.push(view);
        offset += piece;
        return view;
      });
      const metadata = zeros(layout.idsOffset - position);
      await take(metadata);
      for (const piece of idPieces) await take(piece);
      await take(zeros(layout.vectorsOffset - position));
      for (const [i, piece] of vectors.entries()) await take(piece, { mapped: typeof vectorPieces[i] === 'number', vectors: true });
      await take(zeros(layout.trailerOffset - position));
      if (position !== layout.trailerOffset) throw new Error(`internal: read ${position} bytes before the trailer, expected ${layout.trailerOffset}`);
      const trailer = zeros(TRAILER_BYTES);
      await take(trailer, { summed: false });
      const stored = new DataView(trailer.buffer).getBigUint64(0, true);
      const computed = checksum.digest();
      if (stored !== computed) throw checksumMismatch(this.file, stored, computed);
      return { metadata: metadata.subarray(0, this.header.metadataBytes), mapped, longRow };
    } catch (err) {
      for (const view of mapped) fileBindings().releaseMapping(view.buffer as ArrayBuffer);
      throw err;
    }
  }

  /** The metadata section's bytes alone (not checked against the checksum: readInto does that). */
  async readMetadata(): Promise<Uint8Array> {
    const bytes = new Uint8Array(this.header.metadataBytes);
    const { bytesRead } = await this.handle.read(bytes, 0, bytes.length, HEADER_BYTES);
    if (bytesRead !== bytes.length) throw new Error(`${this.file} is truncated: it ended in its metadata`);
    return bytes;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

// Reading float vectors from files: a numpy .npy array [rows, dim] of little-endian float32 or
// float16 (what `camembed encode` and numpy's `np.save` write), or raw little-endian float32
// rows of a given length (`camembed encode`'s other output). Read in chunks of rows, so files
// larger than memory stream through.
import * as fs from 'fs';

import { float16ToFloat32Array } from './float16';

export interface VectorFileLayout {
  dtype: 'float32' | 'float16';
  rows: number;
  dim: number;
  /** Byte offset of the first row. */
  dataOffset: number;
}

const NPY_MAGIC = '\x93NUMPY';

/**
 * The layout of a .npy file from its first bytes (format versions 1.0 to 3.0, numpy's
 * `lib.format` documentation): a C-order 2-D array of '<f4' or '<f2'. Anything else is an Error
 * naming the file and what it holds instead.
 */
function parseNpyHeader(file: string, start: Buffer): VectorFileLayout {
  if (start.length < 10 || start.toString('latin1', 0, 6) !== NPY_MAGIC) throw new Error(`${file} is not a .npy file (no numpy magic)`);
  const major = start[6];
  if (major < 1 || major > 3) throw new Error(`${file}: .npy format version ${major}.${start[7]} is not supported (1.0 to 3.0 are)`);
  const lengthBytes = major === 1 ? 2 : 4;
  const headerLength = major === 1 ? start.readUInt16LE(8) : start.length >= 12 ? start.readUInt32LE(8) : Infinity;
  const dataOffset = 8 + lengthBytes + headerLength;
  if (dataOffset > start.length) throw new Error(`${file}: the .npy header is cut short`);
  const header = start.toString(major === 3 ? 'utf8' : 'latin1', 8 + lengthBytes, dataOffset);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shape === undefined) throw new Error(`${file}: unreadable .npy header ${JSON.stringify(header.trim())}`);
  const dtype = descr === '<f4' ? 'float32' : descr === '<f2' ? 'float16' : null;
  if (dtype === null) {
    throw new Error(`${file} holds '${descr}' values: expected little-endian float32 ('<f4') or float16 ('<f2'): save np.ascontiguousarray(a, dtype='<f4')`);
  }
  if (fortran === 'True') throw new Error(`${file} is in Fortran order: save a C-order array (np.ascontiguousarray)`);
  const dims = shape.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (dims.length !== 2 || !dims.every((s) => /^\d+$/.test(s))) {
    throw new Error(`${file} has shape (${shape}): expected (rows, dim)${dims.length === 1 ? ': save a 2-D array (one vector: a.reshape(1, -1))' : ''}`);
  }
  const [rows, dim] = dims.map(Number);
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(dim) || dim < 1) throw new Error(`${file} has shape (${shape}): expected (rows, dim) with dim >= 1`);
  return { dtype, rows, dim, dataOffset };
}

/**
 * The layout of a vector file: a .npy file (by its content), else raw float32 rows of `dim`
 * values (required then). The file's size must match it exactly: a cut-off file is an Error
 * before any row is read.
 */
export function vectorFileLayout(file: string, dim?: number): VectorFileLayout {
  const fd = fs.openSync(file, 'r');
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new Error(`${file} is not a regular file`);
    const start = Buffer.alloc(Math.min(stat.size, 1 << 16));
    fs.readSync(fd, start, 0, start.length, 0);
    let layout: VectorFileLayout;
    if (start.toString('latin1', 0, 6) === NPY_MAGIC) {
      layout = parseNpyHeader(file, start);
      if (dim !== undefined && dim !== layout.dim) throw new Error(`${file} holds ${layout.dim}-d vectors, not ${dim}-d`);
    } else {
      if (dim === undefined) throw new Error(`${file} is not a .npy file: raw float32 vectors need their dimension`);
      if (stat.size % (dim * 4) !== 0) throw new Error(`${file} is ${stat.size} bytes: not a whole number of ${dim}-d float32 rows`);
      layout = { dtype: 'float32', rows: stat.size / (dim * 4), dim, dataOffset: 0 };
    }
    const expected = layout.dataOffset + layout.rows * layout.dim * (layout.dtype === 'float32' ? 4 : 2);
    if (stat.size !== expected) throw new Error(`${file} is ${stat.size} bytes, but its header says ${expected} (${layout.rows} x ${layout.dim} ${layout.dtype})`);
    return layout;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * VectorIndex names a bad row by its place among the rows it was given ('vectors row 3 ...',
 * 'queries row 3 ...'). For rows read from `file` starting at its row `firstRow`: the same error
 * naming the file and its row (any other error as it is).
 */
export function errorAtFileRow(err: unknown, file: string, firstRow: number): unknown {
  const bad = /^(?:vectors|queries) row (\d+) (.*)$/.exec(err instanceof Error ? err.message : '');
  return bad === null ? err : new RangeError(`${file}: row ${firstRow + Number(bad[1])} ${bad[2]}`);
}

/** The rows of a vector file as float32, about `chunkBytes` of them at a time. */
export async function* readVectorRows(file: string, layout: VectorFileLayout, chunkBytes = 16 << 20):
  AsyncGenerator<{ data: Float32Array; rows: number; dim: number }> {
  const itemBytes = layout.dtype === 'float32' ? 4 : 2;
  const rowBytes = layout.dim * itemBytes;
  const rowsPerChunk = Math.max(1, Math.floor(chunkBytes / rowBytes));
  const handle = await fs.promises.open(file, 'r');
  try {
    for (let row = 0; row < layout.rows; row += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, layout.rows - row);
      const bytes = new Uint8Array(rows * rowBytes);
      for (let done = 0; done < bytes.length;) {  // a read may return less (network file systems)
        const { bytesRead } = await handle.read(bytes, done, bytes.length - done, layout.dataOffset + row * rowBytes + done);
        if (bytesRead === 0) throw new Error(`${file} changed while it was read (it ends inside row ${row + Math.floor(done / rowBytes)})`);
        done += bytesRead;
      }
      const data = itemBytes === 4 ? new Float32Array(bytes.buffer) : float16ToFloat32Array(new Uint16Array(bytes.buffer));
      yield { data, rows, dim: layout.dim };
    }
  } finally {
    await handle.close();
  }
}

// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
// header { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} } and the
// tensor bytes, offsets relative to the end of the header
// (format facts: https://github.com/huggingface/safetensors#format).
// Tensors are read one at a time with positioned reads, so a conversion never holds the file.
import * as fs from 'fs';
import * as path from 'path';
import { float16BitsToNumber } from '../float16';
import { temporaryPath } from '../atomic-file';

/**
 * Bytes per element of the format's dtypes (and of the PyTorch storages read as them). Only F32, F16
 * and BF16 convert; the others are read to check the file and name a tensor the model would need.
 */
export const ITEM_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  file: string;      // the safetensors file that holds it
  offset: number;    // absolute byte offset of the data in `file`
  byteLength: number;
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** A tensor is read and written as one Buffer: at most 2^32 bytes on Node 20 (2^30 float32 values). */
const MAX_TENSOR_BYTES = 2 ** 32;
/** fs.readSync and fs.writeSync move at most 2^31 - 1 bytes a call: a larger tensor goes in pieces. */
const IO_PIECE_BYTES = 2 ** 30;

// Parses and validates one file's header; every error names the file.
export function readSafetensorsHeader(file: string): Map<string, TensorInfo> {
  const fd = fs.openSync(file, 'r');
  try {
    const fileBytes = fs.fstatSync(fd).size;
    const fail = (what: string) => new Error(`corrupt safetensors file ${file}: ${what}`);
    if (fileBytes < 8) throw fail(`${fileBytes} bytes, expected at least an 8-byte header length`);
    const lengthBytes = Buffer.alloc(8);
    fs.readSync(fd, lengthBytes, 0, 8, 0);
    const headerBytes = Number(lengthBytes.readBigUInt64LE(0));
    if (headerBytes < 2 || headerBytes > MAX_HEADER_BYTES || 8 + headerBytes > fileBytes) {
      throw fail(`header length ${headerBytes} does not fit the file size ${fileBytes} (truncated?)`);
    }
    const headerText = Buffer.alloc(headerBytes);
    fs.readSync(fd, headerText, 0, headerBytes, 8);
    let header: unknown;
    try {
      header = JSON.parse(headerText.toString('utf8'));
    } catch (err) {
      throw fail(`header is not valid JSON (${(err as Error).message})`);
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) throw fail('header is not a JSON object');
    const dataStart = 8 + headerBytes;
    const dataBytes = fileBytes - dataStart;
    const tensors = new Map<string, TensorInfo>();
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof e !== 'object' || e === null || typeof e.dtype !== 'string') throw fail(`tensor '${name}' has no dtype (got ${JSON.stringify(e?.dtype)})`);
      // A dtype the format has but not ITEM_BYTES (F4, packed two a byte) is no corruption.
      if (!Object.hasOwn(ITEM_BYTES, e.dtype)) {
        throw new Error(`${file}: tensor '${name}' is ${JSON.stringify(e.dtype)}, a dtype camembed does not read (it converts F32, F16 and BF16 tensors)`);
      }
      const shape = e.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw fail(`tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
      }
      const offsets = e.data_offsets;
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0)) {
        throw fail(`tensor '${name}' has invalid data_offsets ${JSON.stringify(offsets)}`);
      }
      const [begin, end] = offsets as number[];
      const expected = (shape as number[]).reduce((a, b) => a * b, 1) * ITEM_BYTES[e.dtype];
      if (end - begin !== expected) {
        throw fail(`tensor '${name}' spans ${end - begin} bytes, expected ${expected} for ${e.dtype}[${shape.join(', ')}]`);
      }
      if (end > dataBytes) throw fail(`tensor '${name}' ends at byte ${end} but the data holds ${dataBytes} bytes (truncated?)`);
      tensors.set(name, { name, dtype: e.dtype, shape: shape as number[], file, offset: dataStart + begin, byteLength: expected });
    }
    return tensors;
  } finally {
    fs.closeSync(fd);
  }
}

// `weightsPath` is model.safetensors or a sharded model.safetensors.index.json
// ({ weight_map: { tensorName: shardFile } }).
export function readSafetensorsTensors(weightsPath: string): Map<string, TensorInfo> {
  if (!weightsPath.endsWith('.index.json')) return readSafetensorsHeader(weightsPath);
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(fs.readFileSync(weightsPath, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read safetensors index ${weightsPath}: ${(err as Error).message}`);
  }
  const weightMap = index.weight_map;
  if (weightMap === undefined || typeof weightMap !== 'object') {
    throw new Error(`safetensors index ${weightsPath} has no "weight_map" object`);
  }
  const shards = new Map<string, Map<string, TensorInfo>>();
  const tensors = new Map<string, TensorInfo>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string') throw new Error(`safetensors index ${weightsPath}: the shard of '${name}' is ${JSON.stringify(shard)}, not a file name`);
    const shardPath = path.join(path.dirname(weightsPath), shard);
    let shardTensors = shards.get(shardPath);
    if (shardTensors === undefined) {
      if (!fs.existsSync(shardPath)) throw new Error(`safetensors shard ${shardPath} named by ${weightsPath} is missing`);
      shardTensors = readSafetensorsHeader(shardPath);
      shards.set(shardPath, shardTensors);
    }
    const info = shardTensors.get(name);
    if (info === undefined) throw new Error(`tensor '${name}' is not in shard ${shardPath} as ${weightsPath} says`);
    tensors.set(name, info);
  }
  return tensors;
}

const bf16Scratch = new Uint32Array(1);
const bf16View = new Float32Array(bf16Scratch.buffer);

// Reads one tensor as float32 (F16 and BF16 are widened exactly).
export function readTensorAsFloat32(info: TensorInfo): Float32Array {
  const bytes = Buffer.alloc(info.byteLength);
  const fd = fs.openSync(info.file, 'r');
  try {
    let done = 0;
    while (done < bytes.length) {
      const n = fs.readSync(fd, bytes, done, Math.min(bytes.length - done, IO_PIECE_BYTES), info.offset + done);
      if (n === 0) throw new Error(`weights file ${info.file} ended inside tensor '${info.name}'`);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  const count = info.byteLength / (ITEM_BYTES[info.dtype] ?? 1);
  // Buffer.alloc is never pooled: the bytes own their ArrayBuffer, so a view costs no second copy.
  if (info.dtype === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, count);
  const out = new Float32Array(count);
  if (info.dtype === 'F16') {
    for (let i = 0; i < count; i++) out[i] = float16BitsToNumber(bytes.readUInt16LE(2 * i));
  } else if (info.dtype === 'BF16') {
    for (let i = 0; i < count; i++) {
      bf16Scratch[0] = bytes.readUInt16LE(2 * i) << 16;  // bfloat16 is the top half of a float32
      out[i] = bf16View[0];
    }
  } else {
    throw new Error(`tensor '${info.name}' in ${info.file} is ${info.dtype}; expected F32, F16 or BF16`);
  }
  return out;
}

// Writes float32 tensors one at a time (the generator can produce each lazily), header padded to
// 8 bytes as the format recommends. Written under a temporary name, then renamed. What no reader
// would take (a tensor over MAX_TENSOR_BYTES, a header over MAX_HEADER_BYTES) is refused before any
// file is made, and `tensors` is read no further than that (an absurd layer count is not listed).
export function writeSafetensors(
  file: string,
  tensors: Iterable<{ name: string; shape: number[] }>,
  produce: (name: string, shape: number[]) => Float32Array,
  metadata: Record<string, string> = { format: 'pt' },
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let headerBytes = JSON.stringify(header).length;
  const listed: { name: string; shape: number[] }[] = [];
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 4;
    if (bytes > MAX_TENSOR_BYTES) {
      throw new RangeError(`cannot write ${file}: tensor '${t.name}' [${t.shape.join(', ')}] would take ${bytes} bytes, more than a tensor can (${MAX_TENSOR_BYTES}: one Buffer)`);
    }
    const entry = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes] };
    header[t.name] = entry;
    headerBytes += Buffer.byteLength(JSON.stringify(t.name)) + JSON.stringify(entry).length + 2;  // "name":{...},
    if (headerBytes > MAX_HEADER_BYTES) {
      throw new RangeError(`cannot write ${file}: its header would pass ${MAX_HEADER_BYTES} bytes at tensor ${listed.length} ('${t.name}'), more than safetensors readers take`);
    }
    listed.push(t);
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const tmp = temporaryPath(file);  // two processes writing one model must not share it
  const fd = fs.openSync(tmp, 'w');
  try {
    try {
      const lengthBytes = Buffer.alloc(8);
      lengthBytes.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
      writeAllSync(fd, lengthBytes, tmp);
      writeAllSync(fd, Buffer.from(json, 'utf8'), tmp);
      for (const t of listed) {
        const data = produce(t.name, t.shape);
        const expected = t.shape.reduce((a, b) => a * b, 1);
        if (data.length !== expected) throw new Error(`tensor '${t.name}' has ${data.length} values, expected ${expected}`);
        writeAllSync(fd, Buffer.from(data.buffer, data.byteOffset, data.byteLength), tmp);
      }
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

export function writeAllSync(fd: number, data: Uint8Array, file: string): void {
  try {
    let done = 0;
    while (done < data.length) done += fs.writeSync(fd, data, done, Math.min(data.length - done, IO_PIECE_BYTES));
  } catch (err) {
    throw Object.assign(new Error(`cannot write ${file}: ${(err as Error).message}`), { code: (err as NodeJS.ErrnoException).code });
  }
}


// Reading PyTorch checkpoints (pytorch_model.bin, torch.save's zip format since PyTorch 1.6)
// without Python. Format facts (torch/serialization.py, `_load`): a zip archive whose entries sit
// under one folder, <prefix>/data.pkl holding a pickle (protocol 2) of the state dict, and
// <prefix>/data/<key> holding each storage's raw bytes (stored, not compressed), in the byte order
// <prefix>/byteorder names (little when absent). In the pickle a tensor is
// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...), and a storage is
// the persistent id ('storage', torch.<Type>Storage, key, location, numel).
// Only the few pickle operations and globals a state dict uses are interpreted; anything else is
// an error naming it, so reading a checkpoint never runs code from it.
import * as fs from 'fs';

import { ITEM_BYTES, TensorInfo } from './safetensors';

interface ZipEntry {
  method: number;
  size: number;
  dataOffset: number;
}

function readAt(fd: number, position: number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, bytes, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return bytes.subarray(0, done);
}

// How the pre-1.6 format begins (torch/serialization.py, _legacy_save): a protocol-2 pickle of
// MAGIC_NUMBER 0x1950a86a20f9469cfc6c, a 10-byte LONG1.
const LEGACY_START = Buffer.from('80028a0a6cfc9c46f9206aa85019', 'hex');

// The zip's entries from its central directory (zip64 records included: checkpoints over 4 GiB).
function readZipEntries(fd: number, file: string): Map<string, ZipEntry> {
  const fail = (what: string) => new Error(`${file} is not a readable PyTorch zip checkpoint: ${what}`);
  const fileBytes = fs.fstatSync(fd).size;
  const tailStart = Math.max(0, fileBytes - (22 + 65535));
  const tail = readAt(fd, tailStart, fileBytes - tailStart);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    if (readAt(fd, 0, LEGACY_START.length).equals(LEGACY_START)) {
      throw new Error(`${file} was saved by PyTorch before 1.6 (torch.save's legacy format), which camembed does not read: ` +
        'save it again with PyTorch 1.6 or later (torch.save(torch.load(f), f)), or convert it to model.safetensors');
    }
    throw fail('no end-of-central-directory record (truncated?)');
  }
  let count = tail.readUInt16LE(eocd + 10);
  let cdBytes = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff || cdBytes === 0xffffffff) {
    const locator = eocd - 20;
    if (locator < 0 || tail.readUInt32LE(locator) !== 0x07064b50) throw fail('zip64 locator missing');
    const recordOffset = tail.readBigUInt64LE(locator + 8);
    if (recordOffset > BigInt(fileBytes)) throw fail('zip64 end record past the end of the file');
    const record = readAt(fd, Number(recordOffset), 56);
    if (record.length < 56 || record.readUInt32LE(0) !== 0x06064b50) throw fail('zip64 end record missing');
    count = Number(record.readBigUInt64LE(32));
    cdBytes = Number(record.readBigUInt64LE(40));
    cdOffset = Number(record.readBigUInt64LE(48));
  }
  if (!Number.isSafeInteger(cdOffset + cdBytes) || cdOffset + cdBytes > fileBytes) throw fail('central directory past the end of the file');
  const cd = readAt(fd, cdOffset, cdBytes);
  if (cd.length !== cdBytes) throw fail('central directory cut short');
  const entries = new Map<string, ZipEntry>();
  for (let p = 0, i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) throw fail(`central directory entry ${i} is damaged`);
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const commentLength = cd.readUInt16LE(p + 32);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLength);
    let size = cd.readUInt32LE(p + 24);
    let compressed = cd.readUInt32LE(p + 20);
    let local = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLength + extraLength + commentLength > cd.length) throw fail(`central directory entry ${i} is damaged`);
    // zip64 extra field (id 1): the 64-bit values of the fields set to 0xffffffff, in this order.
    for (let e = p + 46 + nameLength; e + 4 <= p + 46 + nameLength + extraLength;) {
      const id = cd.readUInt16LE(e);
      const length = cd.readUInt16LE(e + 2);
      if (id === 1) {
        let q = e + 4;
        const next = () => {
          if (q + 8 > e + 4 + length) throw fail(`the zip64 field of ${name} is damaged`);
          const v = Number(cd.readBigUInt64LE(q));
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressed === 0xffffffff) compressed = next();
        if (local === 0xffffffff) local = next();
      }
      e += 4 + length;
    }
    const method = cd.readUInt16LE(p + 10);
    if (![size, compressed, local].every(Number.isSafeInteger) || local + 30 > fileBytes) throw fail(`entry ${name} is damaged`);
    if (method === 0 && size !== compressed) throw fail(`${name} is stored with ${compressed} bytes but says it holds ${size}`);
    const header = readAt(fd, local, 30);
    if (header.length < 30 || header.readUInt32LE(0) !== 0x04034b50) throw fail(`local header of ${name} is damaged`);
    const dataOffset = local + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    if (dataOffset + compressed > fileBytes) throw fail(`${name} runs past the end of the file (truncated?)`);
    entries.set(name, { method, size, dataOffset });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------
// The pickle subset of a state dict.

interface Global { kind: 'global'; name: string }          // 'module.name'
interface Storage { kind: 'storage'; dtype: string; key: string; numel: number }
interface Tensor { kind: 'tensor'; storage: Storage; offset: number; size: number[]; stride: number[] }
class Dict { readonly entries = new Map<unknown, unknown>() }
type Value = null | boolean | number | string | Global | Storage | Tensor | Dict | Value[] | typeof MARK;
const MARK = Symbol('mark');

// Storage classes by name (torch.serialization's StorageType reads the dtype from the name), as
// safetensors dtype names.
const STORAGE_DTYPES: Record<string, string> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};
const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

// What a value is, for error messages: pickles can build values whose text would be astronomically
// long (one list referenced twice at each of 60 levels), so values are never written out.
function kindOf(v: unknown): string {
  if (Array.isArray(v)) return `a sequence of ${v.length}`;
  if (v instanceof Dict) return 'a dict';
  if (typeof v === 'object' && v !== null && 'kind' in v) return (v as { kind: string }).kind === 'global' ? `the global ${(v as Global).name}` : `a ${(v as { kind: string }).kind}`;
  return typeof v === 'string' ? `a string of ${v.length} characters` : v === null ? 'None' : `a ${typeof v}`;
}

function unpickle(data: Buffer, file: string): Value {
  const fail = (what: string) => new Error(`${file}: cannot read its state dict: ${what}`);
  const stack: Value[] = [];
  const memo = new Map<number, Value>();
  let p = 0;
  const pop = (): Value => {
    if (stack.length === 0) throw fail('pickle stack underflow');
    return stack.pop()!;
  };
  const popMark = (): Value[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) throw fail('pickle mark missing');
    const items = stack.splice(at);
    return items.slice(1);
  };
  const need = (n: number) => {
    if (p + n > data.length) throw fail('pickle cut short');
  };
  const u8 = () => { need(1); return data[p++]; };
  const u16 = () => { need(2); p += 2; return data.readUInt16LE(p - 2); };
  const u32 = () => { need(4); p += 4; return data.readUInt32LE(p - 4); };
  const text = (n: number, encoding: BufferEncoding) => { need(n); p += n; return data.toString(encoding, p - n, p); };
  const line = () => {
    const end = data.indexOf(0x0a, p);
    if (end < 0) throw fail('pickle cut short');
    const s = data.toString('latin1', p, end);
    p = end + 1;
    return s;
  };
  const setItems = (dict: Value, items: Value[]) => {
    if (!(dict instanceof Dict)) throw fail('SETITEMS on something other than a dict');
    for (let i = 0; i + 1 < items.length; i += 2) dict.entries.set(items[i], items[i + 1]);
  };
  const reduce = (callable: Value, args: Value): Value => {
    const name = typeof callable === 'object' && callable !== null && 'kind' in callable && callable.kind === 'global' ? callable.name : '?';
    const a = Array.isArray(args) ? args : [];
    if (name === 'collections.OrderedDict' && a.length === 0) return new Dict();
    if (name === 'torch._utils._rebuild_tensor_v2' || name === 'torch._utils._rebuild_tensor') {
      const [storage, offset, size, stride] = a;
      const storageValue = storage as Storage;
      const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
      if (typeof storage !== 'object' || storage === null || storageValue.kind !== 'storage' || !count(offset) ||
          !Array.isArray(size) || !Array.isArray(stride) || size.length !== stride.length || ![...size, ...stride].every(count)) {
        throw fail('a tensor whose storage, offset, sizes or strides are not what torch writes');
      }
      return { kind: 'tensor', storage: storageValue, offset: offset as number, size: size as number[], stride: stride as number[] };
    }
    if (name === 'torch._utils._rebuild_parameter' && a.length >= 1) return a[0];  // nn.Parameter(data, requires_grad, hooks)
    throw fail(`unsupported pickle call ${name} (not part of a state dict)`);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break;                                   // PROTO
      case 0x95: need(8); p += 8; break;                        // FRAME
      case 0x2e: return pop();                                  // STOP
      case 0x28: stack.push(MARK); break;                       // MARK
      case 0x7d: stack.push(new Dict()); break;                 // EMPTY_DICT
      case 0x5d: stack.push([]); break;                         // EMPTY_LIST
      case 0x29: stack.push([]); break;                         // EMPTY_TUPLE
      case 0x4e: stack.push(null); break;                       // NONE
      case 0x88: stack.push(true); break;                       // NEWTRUE
      case 0x89: stack.push(false); break;                      // NEWFALSE
      case 0x4b: stack.push(u8()); break;                       // BININT1
      case 0x4d: stack.push(u16()); break;                      // BININT2
      case 0x4a: stack.push(u32() | 0); break;                  // BININT
      case 0x8a: {                                              // LONG1
        const n = u8();
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[p + i]);
        if (n > 0 && data[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw fail('an integer beyond 2^53');
        stack.push(Number(v));
        break;
      }
      case 0x47: need(8); stack.push(data.readDoubleBE(p)); p += 8; break;  // BINFLOAT
      case 0x58: stack.push(text(u32(), 'utf8')); break;        // BINUNICODE
      case 0x8c: stack.push(text(u8(), 'utf8')); break;         // SHORT_BINUNICODE
      case 0x54: stack.push(text(u32(), 'latin1')); break;      // BINSTRING
      case 0x55: stack.push(text(u8(), 'latin1')); break;       // SHORT_BINSTRING
      case 0x71: memo.set(u8(), stack[stack.length - 1]); break;   // BINPUT
      case 0x72: memo.set(u32(), stack[stack.length - 1]); break;  // LONG_BINPUT
      case 0x94: memo.set(memo.size, stack[stack.length - 1]); break;  // MEMOIZE
      case 0x68: case 0x6a: {                                   // BINGET, LONG_BINGET
        const key = op === 0x68 ? u8() : u32();
        if (!memo.has(key)) throw fail(`pickle memo ${key} missing`);
        stack.push(memo.get(key)!);
        break;
      }
      case 0x63: stack.push({ kind: 'global', name: `${line()}.${line()}` }); break;  // GLOBAL
      case 0x93: {                                              // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail('a global named by something other than strings');
        stack.push({ kind: 'global', name: `${module}.${name}` });
        break;
      }
      case 0x74: stack.push(popMark()); break;                  // TUPLE
      case 0x85: stack.push([pop()]); break;                    // TUPLE1
      case 0x86: { const b = pop(); stack.push([pop(), b]); break; }  // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); stack.push([pop(), b, c]); break; }  // TUPLE3
      case 0x61: { const v = pop(); const list = stack[stack.length - 1]; if (Array.isArray(list)) list.push(v); break; }  // APPEND
      case 0x65: { const items = popMark(); const list = stack[stack.length - 1]; if (Array.isArray(list)) for (const v of items) list.push(v); break; }  // APPENDS (no push(...): a long list would overflow the stack)
      case 0x73: { const v = pop(); const k = pop(); setItems(stack[stack.length - 1], [k, v]); break; }  // SETITEM
      case 0x75: { const items = popMark(); setItems(stack[stack.length - 1], items); break; }  // SETITEMS
      case 0x52: { const args = pop(); stack.push(reduce(pop(), args)); break; }  // REDUCE
      case 0x62: {                                              // BUILD: a state dict's _metadata; nothing to keep
        pop();
        if (!(stack[stack.length - 1] instanceof Dict)) throw fail('BUILD on something other than a dict');
        break;
      }
      case 0x51: {                                              // BINPERSID
        const id = pop();
        const [tag, type, key, , numel] = Array.isArray(id) ? id : [];
        const typeName = typeof type === 'object' && type !== null && 'kind' in type && type.kind === 'global' ? type.name : '';
        const dtype = STORAGE_DTYPES[typeName.replace(/^torch\./, '')];
        if (tag !== 'storage' || dtype === undefined || typeof key !== 'string' || typeof numel !== 'number') {
          throw fail(`unsupported persistent id (${kindOf(id)}${typeName ? `, storage type ${typeName}` : ''}): only torch storages are read`);
        }
        stack.push({ kind: 'storage', dtype, key, numel });
        break;
      }
      default:
        throw fail(`unsupported pickle opcode 0x${op.toString(16)} at byte ${p - 1}`);
    }
  }
}

/**
 * The tensors of a PyTorch zip checkpoint as TensorInfo (a byte range of `file`, readable with
 * readTensorAsFloat32). Each must be contiguous in its storage, as a saved state dict's are.
 */
export function readTorchCheckpointTensors(file: string): Map<string, TensorInfo> {
  const fd = fs.openSync(file, 'r');
  try {
    const entries = readZipEntries(fd, file);
    const pickleName = [...entries.keys()].find((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
    if (pickleName === undefined) throw new Error(`${file} is a zip file without data.pkl: not a PyTorch checkpoint`);
    const prefix = pickleName.slice(0, -'data.pkl'.length);
    const entry = (name: string) => {
      const e = entries.get(prefix + name);
      if (e !== undefined && e.method !== 0) throw new Error(`${file}: ${prefix}${name} is compressed; PyTorch stores its entries uncompressed`);
      return e;
    };
    const byteorder = entry('byteorder');
    if (byteorder !== undefined && readAt(fd, byteorder.dataOffset, byteorder.size).toString('latin1') !== 'little') {
      throw new Error(`${file} holds big-endian tensors; only little-endian checkpoints are read`);
    }
    const pickled = entry('data.pkl')!;
    if (pickled.size > MAX_PICKLE_BYTES) throw new Error(`${file}: data.pkl is ${pickled.size} bytes; a state dict's is far smaller`);
    const root = unpickle(readAt(fd, pickled.dataOffset, pickled.size), file);
    if (!(root instanceof Dict)) throw new Error(`${file} does not hold a state dict (a dict of tensors)`);
    const tensors = new Map<string, TensorInfo>();
    for (const [name, value] of root.entries) {
      const t = value as Tensor;
      if (typeof name !== 'string') throw new Error(`${file}: a state dict key is ${kindOf(name)}, not a string`);
      if (typeof t !== 'object' || t === null || t.kind !== 'tensor') throw new Error(`${file}: state dict entry '${name}' is ${kindOf(t)}, not a tensor`);
      let expectedStride = 1;
      for (let d = t.size.length - 1; d >= 0; d--) {
        if (t.size[d] !== 1 && t.stride[d] !== expectedStride) throw new Error(`${file}: tensor '${name}' is not contiguous`);
        expectedStride *= t.size[d];
      }
      const itemBytes = ITEM_BYTES[t.storage.dtype];
      const numel = t.size.reduce((a, b) => a * b, 1);
      if (!Number.isSafeInteger(numel * itemBytes)) throw new Error(`${file}: tensor '${name}' is too large`);
      const data = entry(`data/${t.storage.key}`);
      if (data === undefined) throw new Error(`${file}: storage ${t.storage.key} of tensor '${name}' is missing`);
      if ((t.offset + numel) * itemBytes > data.size || t.storage.numel * itemBytes > data.size) {
        throw new Error(`${file}: tensor '${name}' runs past its storage`);
      }
      tensors.set(name, {
        name, dtype: t.storage.dtype, shape: t.size, file, offset: data.dataOffset + t.offset * itemBytes, byteLength: numel * itemBytes,
      });
    }
    return tensors;
  } finally {
    fs.closeSync(fd);
  }
}

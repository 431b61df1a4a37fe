// Minimal .npy reader (format 1.0, little-endian, C order) for the dtypes of the shared golden/ files,
// and a writer of any header as numpy's np.save lays it out (for files the tests feed the CLI).
import * as fs from 'fs';

export function readNpy(file: string): { shape: number[]; data: Float64Array | BigInt64Array } {
  const buf = fs.readFileSync(file);
  const headerLength = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + headerLength).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)![1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)![1].split(',').filter((s) => s.trim() !== '').map(Number);
  const body = buf.subarray(10 + headerLength);
  const aligned = new Uint8Array(body).buffer;  // copy: typed arrays need aligned offsets
  if (descr === '<f8') return { shape, data: new Float64Array(aligned) };
  if (descr === '<i8') return { shape, data: new BigInt64Array(aligned) };
  throw new Error(`${file}: unexpected dtype ${descr}`);
}

/** A .npy file's bytes: `body` under a header of format `version` (1: 16-bit length, else 32-bit), padded as np.save pads it. */
export function npyBytes(descr: string, shape: string, body: Uint8Array, version = 1, fortran = 'False'): Buffer {
  const dict = `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;
  const lengthBytes = version === 1 ? 2 : 4;
  const padded = dict.padEnd(Math.ceil((10 + lengthBytes + dict.length + 1) / 64) * 64 - 8 - lengthBytes - 1) + '\n';
  const head = Buffer.alloc(8 + lengthBytes);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = version;
  if (version === 1) head.writeUInt16LE(padded.length, 8);
  else head.writeUInt32LE(padded.length, 8);
  return Buffer.concat([head, Buffer.from(padded, 'latin1'), body]);
}

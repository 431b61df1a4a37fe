// Minimal .npy reader (format 1.0, little-endian, C order) for the dtypes of the shared golden/ files.
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

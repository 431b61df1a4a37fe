// IEEE 754 binary16 <-> binary32 conversion for float16 storage (Uint16Array of half bits).
import { requireTypedArray } from './validate';

/**
 * A Float16Array (a JavaScript global from Node.js 24 on), taken wherever float16 bits in a
 * Uint16Array are. Typed by its tag, not by name, so that these declarations compile with libs
 * that have no Float16Array (TypeScript's ES2022, Node.js 20's types); a real one matches it.
 */
export type Float16ArrayLike = ArrayBufferView & { readonly length: number; readonly [Symbol.toStringTag]: 'Float16Array' };

/** The largest finite float16. */
export const FLOAT16_MAX = 65504;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function decodeFloat16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

// All 65,536 halves decoded once, as float32 bits: reading a table is much faster than decoding
// each time. A NaN keeps its sign and payload and is made quiet, as the F16C instruction converts it (a
// JavaScript NaN written to a Float32Array would lose both).
const decodedBits = new Uint32Array(65536);
const decoded = new Float32Array(decodedBits.buffer);
for (let h = 0; h < 65536; h++) {
  decoded[h] = decodeFloat16(h);
  if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) decodedBits[h] = ((h & 0x8000) << 16) | 0x7fc00000 | ((h & 0x3ff) << 13);
}

export function float16BitsToNumber(h: number): number {
  return decoded[h & 0xffff];
}

// Round to nearest, ties to even, as hardware conversion (F16C, CUDA __float2half_rn) does.
function numberToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);  // Inf / NaN
  let e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;  // overflow to infinity
  if (e <= 0) {
    if (e < -10) return sign;  // underflows to zero
    mantissa |= 0x800000;  // subnormal half: shift the implicit 1 in
    const shift = 14 - e;
    const halfway = 1 << (shift - 1);
    const rest = mantissa & ((1 << shift) - 1);
    let m = mantissa >>> shift;
    if (rest > halfway || (rest === halfway && (m & 1) === 1)) m += 1;
    return sign | m;
  }
  const rest = mantissa & 0x1fff;
  let bits = (e << 10) | (mantissa >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (bits & 1) === 1)) bits += 1;  // may carry into the exponent: correct
  return sign | bits;
}

/** float32 values to IEEE half-precision bits, rounded to nearest even (what VectorIndex and CudaMatrix take as float16). */
export function float32ToFloat16Array(src: Float32Array): Uint16Array {
  requireTypedArray('src', src, ['Float32Array'], 'javascript');
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = numberToFloat16Bits(src[i]);
  return out;
}

/** IEEE half-precision bits (or a Float16Array) to float32 values (exact; a NaN keeps its sign and payload, made quiet). */
export function float16ToFloat32Array(src: Uint16Array | Float16ArrayLike): Float32Array {
  const halves = requireTypedArray<Uint16Array>('src', src, ['Uint16Array'], 'javascript');
  const out = new Float32Array(halves.length);
  const bits = new Uint32Array(out.buffer);  // bits, not numbers: a NaN's sign and payload survive
  for (let i = 0; i < halves.length; i++) bits[i] = decodedBits[halves[i]];
  return out;
}

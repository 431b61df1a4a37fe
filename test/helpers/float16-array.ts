// Float16Array, a JavaScript global from Node.js 24 on (absent on Node 20): undefined where the
// runtime has none. Typed here because the project's lib (ES2022) does not declare it.
import { Float16ArrayLike } from '../../lib';

export type RuntimeFloat16Array = Float16ArrayLike & { readonly [i: number]: number; subarray(begin: number, end?: number): RuntimeFloat16Array };

export const Float16ArrayOrNone = (globalThis as {
  Float16Array?: new (source: ArrayLike<number> | ArrayBufferLike, byteOffset?: number, length?: number) => RuntimeFloat16Array;
}).Float16Array;

export const NEEDS_FLOAT16ARRAY = `needs Node.js 24+ Float16Array (this is Node.js ${process.version})`;

/** A Float16Array over the memory of `bits`: the same float16 values. */
export function float16ArrayOf(bits: Uint16Array): RuntimeFloat16Array {
  return new Float16ArrayOrNone!(bits.buffer, bits.byteOffset, bits.length);
}

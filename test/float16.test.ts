import { float16ToFloat32Array, float32ToFloat16Array } from '../lib';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { float32ToFloat16Fast } from '../lib/kernels';
import { SIMD_LEVELS, testAtLevel } from './helpers/simd-levels';

describe('float16 conversion', () => {
  test('exact values round-trip and known bit patterns decode', () => {
    const values = [0, -0, 1, -2, 0.5, 65504, -65504, 2 ** -14, 2 ** -24, 1 + 2 ** -10];
    const bits = float32ToFloat16Array(Float32Array.from(values));
    expect(Array.from(bits.subarray(0, 3))).toEqual([0x0000, 0x8000, 0x3c00]);
    expect(bits[5]).toBe(0x7bff);  // largest finite half
    expect(bits[8]).toBe(0x0001);  // smallest subnormal
    expect(Array.from(float16ToFloat32Array(bits))).toEqual(values);
  });

  test('rounds to nearest, ties to even; overflow to infinity; NaN stays NaN', () => {
    // Between 1 and 1 + 2^-10 the midpoint 1 + 2^-11 ties to even (1); slightly above rounds up.
    const input = Float32Array.from([1 + 2 ** -11, 1 + 2 ** -11 + 2 ** -20, 1 + 3 * 2 ** -11, 70000, -1e9, NaN, 2 ** -25, 3 * 2 ** -25]);
    const bits = float32ToFloat16Array(input);
    expect(bits[0]).toBe(0x3c00);
    expect(bits[1]).toBe(0x3c01);
    expect(bits[2]).toBe(0x3c02);  // 1 + 1.5 * 2^-10 ties to the even mantissa 2
    expect(bits[3]).toBe(0x7c00);
    expect(bits[4]).toBe(0xfc00);
    expect(Number.isNaN(float16ToFloat32Array(bits.subarray(5, 6))[0])).toBe(true);
    expect(bits[6]).toBe(0x0000);  // half of the smallest subnormal ties to even (0)
    expect(bits[7]).toBe(0x0002);  // 1.5 x smallest subnormal ties to even (2)
  });

  test('every half decodes and re-encodes to itself (a NaN to the quiet NaN of its sign)', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = float32ToFloat16Array(float16ToFloat32Array(all));
    const wrong: number[] = [];
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (back[i] !== (isNaN ? (i & 0x8000) | 0x7e00 : i)) wrong.push(i);
    }
    expect(wrong).toEqual([]);
  });

  // Plain JavaScript loops, read once: shared and resizable memory is no risk to them (they refused it,
  // 'which the native kernels cannot take'). A detached buffer is still an error, not an empty result.
  test('shared and resizable memory converts as a plain copy does; a detached buffer is refused', () => {
    const values = Float32Array.from([1, -2.5, 65504, 1e-7, 0.1]);
    const Resizable = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer;
    const shared = new Float32Array(new SharedArrayBuffer(20));
    const resizable = new Float32Array(new Resizable(20, { maxByteLength: 40 }));
    const halves = float32ToFloat16Array(values);
    for (const input of [shared, resizable]) {
      input.set(values);
      expect(float32ToFloat16Array(input)).toEqual(halves);
    }
    const sharedHalves = new Uint16Array(new SharedArrayBuffer(10));
    const resizableHalves = new Uint16Array(new Resizable(10, { maxByteLength: 20 }));
    for (const input of [sharedHalves, resizableHalves]) {
      input.set(halves);
      expect(float16ToFloat32Array(input)).toEqual(float16ToFloat32Array(halves));
    }
    const detached = values.slice();
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expect(() => float32ToFloat16Array(detached)).toThrow(/^src is backed by a detached ArrayBuffer/);
  });

  test('a NaN half decodes as F16C decodes it: sign and payload kept, made quiet (its sign was lost)', () => {
    const halves = Uint16Array.of(0xfe00, 0x7e00, 0x7c01, 0xfc01, 0x7fff, 0xfdff);
    const bits = new Uint32Array(float16ToFloat32Array(halves).buffer);
    expect(Array.from(bits, (b) => b.toString(16))).toEqual(['ffc00000', '7fc00000', '7fc02000', 'ffc02000', '7fffe000', 'ffffe000']);
  });
});

/** float32 values whose float16 rounding is hard: every half, the midpoints between neighbouring
 * halves (ties) and their float32 neighbours, the overflow edge, float32 subnormals, NaNs with
 * payloads, and random bit patterns. */
function hardFloat16Inputs(randomCount: number): Float32Array {
  const values: number[] = [];
  const bits = new Uint32Array(1);
  const asFloat = new Float32Array(bits.buffer);
  const neighbours = (x: number) => {
    asFloat[0] = x;
    const b = bits[0];
    for (const d of [-1, 0, 1]) {
      bits[0] = b + d;
      values.push(asFloat[0]);
    }
  };
  const halves = float16ToFloat32Array(Uint16Array.from({ length: 65536 }, (_, i) => i));
  for (let i = 0; i < 65535; i++) {
    if (!Number.isFinite(halves[i]) || !Number.isFinite(halves[i + 1])) continue;
    neighbours(halves[i]);
    if (i !== 0x7fff) neighbours((halves[i] + halves[i + 1]) / 2);
  }
  for (const x of [65504, 65519, 65520, 65536, 2 ** -149, 2 ** -126, 1e-40, -1e-40]) neighbours(x);
  bits[0] = 0x7fc00001; values.push(asFloat[0]);
  bits[0] = 0xff812345; values.push(asFloat[0]);
  let s = 12345;
  for (let i = 0; i < randomCount; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    bits[0] = s;
    values.push(asFloat[0]);
  }
  return Float32Array.from(values);
}

function firstMismatches(input: Float32Array, got: Uint16Array, want: Uint16Array): string[] {
  const wrong: string[] = [];
  for (let i = 0; i < input.length && wrong.length < 10; i++) {
    if (got[i] !== want[i]) wrong.push(`${input[i]}: ${got[i].toString(16)} vs ${want[i].toString(16)}`);
  }
  return wrong;
}

test('the native conversion VectorIndex uses gives the same bits as the TypeScript one', () => {
  const input = hardFloat16Inputs(1_000_000);
  expect(input.length).toBeGreaterThan(1_000_000);
  expect(firstMismatches(input, float32ToFloat16Fast(input), float32ToFloat16Array(input))).toEqual([]);
});

for (const level of SIMD_LEVELS) testAtLevel(level, 'float16 conversion')(`the native conversion at CAMEMBED_SIMD=${level} gives the same bits`, () => {
  const input = hardFloat16Inputs(100_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-f16-'));
  try {
    fs.writeFileSync(path.join(dir, 'in'), input);
    const script = path.join(__dirname, 'helpers', 'float16-at-level.js');
    const kernels = path.resolve(__dirname, '..', 'dist', 'kernels.js');
    const used = execFileSync(process.execPath, [script, kernels, path.join(dir, 'in'), path.join(dir, 'out')],
      { env: { ...process.env, CAMEMBED_SIMD: level } }).toString();
    expect(used).toBe(level);
    const got = new Uint16Array(new Uint8Array(fs.readFileSync(path.join(dir, 'out'))).buffer);
    expect(firstMismatches(input, got, float32ToFloat16Array(input))).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

import { float16ToFloat32Array, float32ToFloat16Array } from '../lib';

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

  test('every half decodes and re-encodes to itself (except NaN payloads)', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = float32ToFloat16Array(float16ToFloat32Array(all));
    const wrong: number[] = [];
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (!isNaN && back[i] !== i) wrong.push(i);
    }
    expect(wrong).toEqual([]);
  });
});

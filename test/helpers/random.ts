// Seeded pseudo-random numbers (xorshift32) so that every failing case reproduces.
// Plain integer operations only: Math.* calls are very slow inside jest's sandbox.
export function makeRandom(seed: number): () => number {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

// Values uniform in [-1, 1) from a seeded generator.
export function randomSignedArray(random: () => number, length: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = 2 * random() - 1;
  return out;
}

import { devices } from '../../lib';

export const SIMD_LEVELS = ['scalar', 'avx2', 'avx512'] as const;
export type SimdLevel = (typeof SIMD_LEVELS)[number];

/**
 * `test` for a SIMD level this CPU runs, else `test.skip` with a message: CAMEMBED_SIMD asking for a
 * level the CPU lacks runs a lower one, so such a test would pass without running that level's code.
 */
export function testAtLevel(level: SimdLevel, what: string): jest.It {
  const best = devices().cpu.simd;
  if (SIMD_LEVELS.indexOf(level) <= SIMD_LEVELS.indexOf(best)) return test;
  console.log(`${what} at CAMEMBED_SIMD=${level} skipped: the CPU kernels here run ${best} at most (a CPU without ${level}, or CAMEMBED_SIMD set)`);
  return test.skip;
}

import { execFileSync, spawnSync } from 'child_process';
import * as path from 'path';
import { float32ToFloat16Array, meanPoolNormalize, meanPoolNormalizeAsync, reference } from '../lib';
import { maxAbsDifference } from './helpers/compare';
import { SIMD_LEVELS, SimdLevel, testAtLevel } from './helpers/simd-levels';
import { makeRandom, randomSignedArray } from './helpers/random';

type MaskKind = 'int64' | 'int32' | 'uint8';

const dist = path.resolve(__dirname, '..', 'dist', 'index.js');

function randomMask(random: () => number, batch: number, seq: number, kind: MaskKind, allPaddingRows: number[] = []) {
  const values: number[] = [];
  for (let b = 0; b < batch; b++) {
    const length = 1 + Math.floor(random() * seq);  // right padding, as tokenizers produce
    for (let t = 0; t < seq; t++) {
      const on = !allPaddingRows.includes(b) && t < length;
      values.push(on ? (random() < 0.1 ? 7 : 1) : 0);  // nonzero values other than 1 count as 1
    }
  }
  if (kind === 'int64') return BigInt64Array.from(values.map(BigInt));
  if (kind === 'int32') return Int32Array.from(values);
  return Uint8Array.from(values);
}

const shapes: Array<[number, number, number]> = [
  [1, 1, 1], [1, 7, 3], [3, 5, 17], [2, 33, 31], [5, 16, 768], [8, 128, 768], [64, 9, 100],
  [4, 512, 65], [2, 3, 1024], [7, 13, 129], [1, 128, 768], [17, 11, 250],
];

// The CPU kernel does the reference's float64 operations in its order: the same float32 bits (README).
describe('meanPoolNormalize: native equals the float64 reference bit for bit', () => {
  test.each(shapes)('float32, B=%i T=%i H=%i, every mask type', (batch, seq, hidden) => {
    const random = makeRandom(batch * 1000 + seq * 10 + hidden);
    const h = randomSignedArray(random, batch * seq * hidden);
    for (const kind of ['int64', 'int32', 'uint8'] as MaskKind[]) {
      const mask = randomMask(random, batch, seq, kind);
      for (const normalize of [true, false]) {
        const shape = { batch, seq, hidden };
        const got = meanPoolNormalize(h, mask, shape, { normalize });
        const want = reference.meanPoolNormalize(h, mask, shape, { normalize });
        expect(got).toEqual(want);
      }
    }
  });

  test('float16 hidden states (Uint16Array bits) equal the reference over the same halves', () => {
    const random = makeRandom(16);
    for (const [batch, seq, hidden] of [[3, 7, 37], [8, 128, 768], [1, 1, 15]] as const) {
      const h16 = float32ToFloat16Array(randomSignedArray(random, batch * seq * hidden));
      const mask = randomMask(random, batch, seq, 'int64');
      const shape = { batch, seq, hidden };
      const got = meanPoolNormalize(h16, mask, shape, { dtype: 'float16' });
      expect(got).toEqual(reference.meanPoolNormalize(h16, mask, shape));
    }
  });

  test('all-padding rows give zero vectors, other rows are unaffected', () => {
    const random = makeRandom(3);
    const [batch, seq, hidden] = [4, 10, 33];
    const h = randomSignedArray(random, batch * seq * hidden);
    const mask = randomMask(random, batch, seq, 'int32', [0, 2]);
    const got = meanPoolNormalize(h, mask, { batch, seq, hidden });
    expect(Array.from(got.subarray(0, hidden)).every((v) => v === 0)).toBe(true);
    expect(Array.from(got.subarray(2 * hidden, 3 * hidden)).every((v) => v === 0)).toBe(true);
    expect(got).toEqual(reference.meanPoolNormalize(h, mask, { batch, seq, hidden }));
  });

  test('normalised rows have unit length; the pooled mean matches a hand computation', () => {
    // Two tokens kept of three: mean of [1,2] and [3,6] is [2,4]; normalised [2,4]/sqrt(20).
    const h = new Float32Array([1, 2, 3, 6, 100, 100]);
    const mask = new Uint8Array([1, 1, 0]);
    const shape = { batch: 1, seq: 3, hidden: 2 };
    expect(Array.from(meanPoolNormalize(h, mask, shape, { normalize: false }))).toEqual([2, 4]);
    const unit = meanPoolNormalize(h, mask, shape);
    expect(unit[0]).toBeCloseTo(2 / Math.sqrt(20), 7);
    expect(unit[1]).toBeCloseTo(4 / Math.sqrt(20), 7);
  });

  test('async calls, several at once, give the same values as sync', async () => {
    const random = makeRandom(9);
    const [batch, seq, hidden] = [64, 128, 768];
    const h = randomSignedArray(random, batch * seq * hidden);
    const mask = randomMask(random, batch, seq, 'int64');
    const shape = { batch, seq, hidden };
    const results = await Promise.all([0, 1, 2].map(() => meanPoolNormalizeAsync(h, mask, shape)));
    const sync = meanPoolNormalize(h, mask, shape);
    for (const r of results) expect(maxAbsDifference(r, sync)).toBe(0);
  });

  test('threads: 1 and all cores agree exactly', () => {
    const random = makeRandom(11);
    const [batch, seq, hidden] = [32, 64, 300];
    const h = randomSignedArray(random, batch * seq * hidden);
    const mask = randomMask(random, batch, seq, 'uint8');
    const shape = { batch, seq, hidden };
    expect(maxAbsDifference(meanPoolNormalize(h, mask, shape, { threads: 1 }), meanPoolNormalize(h, mask, shape))).toBe(0);
  });
});

// The kernels ran hardware_concurrency threads by default: under taskset or a container's cpuset,
// the machine's CPUs, not the process's (where os.availableParallelism(), the encoder's default, counts these).
test('the default thread count is the CPUs this process may run on (taskset), as os.availableParallelism() says', () => {
  let cpus: string;
  try {
    cpus = execFileSync('sh', ['-c', 'taskset -cp $$'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  } catch {
    console.log('default thread count test skipped: no taskset (util-linux)');
    return;
  }
  const first = /:\s*(\d+)/.exec(cpus)![1];  // "pid 123's current affinity list: 0-3"
  const script = `const c = require(${JSON.stringify(dist)}); const h = new Float32Array(4 * 768).fill(1);
    console.log(c.devices().cpu.threads, require('os').availableParallelism(), c.meanPoolNormalize(h, new Uint8Array(4).fill(1), { batch: 1, seq: 4, hidden: 768 })[0]);`;
  const out = execFileSync('taskset', ['-c', first, process.execPath, '-e', script]).toString().trim();
  expect(out).toBe(`1 1 ${Math.fround(1 / Math.sqrt(768))}`);
});

describe('every SIMD level computes the same maths', () => {
  const script = path.join(__dirname, 'helpers', 'simd-parity.js');
  for (const level of SIMD_LEVELS) testAtLevel(level, 'the SIMD parity tests')(`CAMEMBED_SIMD=${level}`, () => {
    const out = execFileSync(process.execPath, [script, dist], { env: { ...process.env, CAMEMBED_SIMD: level } });
    const report = JSON.parse(out.toString());
    expect(report.simd).toBe(level);
    expect(report.poolMaxDiff).toBe(0);
    expect(report.topkIndexMismatches).toBe(0);
    expect(report.topkMaxScoreDiff).toBeLessThanOrEqual(1e-5);
    expect(report.batchMismatches).toBe(0);
    expect(report.tieFailures).toBe(0);
    expect(report.nanMissed).toBe(0);
    expect(report.unitMaxUlp).toBeLessThanOrEqual(1);
    expect(report.unitHalfMismatches).toBe(0);
    expect(report.unitBadRow).toBe('rows row 123 contains NaN or infinite values');
    expect(report.normCheckFailures).toEqual([]);
  });

  test('a CAMEMBED_SIMD value the addon does not read is a warning, not silence', () => {
    const run = (value: string) => spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(dist)}).devices().cpu.simd)`],
      { env: { ...process.env, CAMEMBED_SIMD: value } });
    const typo = run('AVX2');
    expect(typo.stderr.toString()).toContain('CAMEMBED_SIMD="AVX2" is not avx512, avx2 or scalar: ignored');
    expect(typo.stdout.toString().trim()).toBe(run('avx512').stdout.toString().trim());  // the best level, as with no setting
    expect(run('scalar').stderr.toString()).not.toContain('CAMEMBED_SIMD');
    expect(run('scalar').stdout.toString().trim()).toBe('scalar');
  });

  test('a CAMEMBED_SIMD level the CPU lacks is a warning naming the level run instead (it was silent)', () => {
    const run = (value: string) => spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(dist)}).devices().cpu.simd)`],
      { env: { ...process.env, CAMEMBED_SIMD: value } });
    const best = run('avx512').stdout.toString().trim() as SimdLevel;
    for (const level of SIMD_LEVELS) {
      const { stdout, stderr } = run(level);
      const above = SIMD_LEVELS.indexOf(level) > SIMD_LEVELS.indexOf(best);
      expect(stdout.toString().trim()).toBe(above ? best : level);
      if (above) expect(stderr.toString()).toContain(`CAMEMBED_SIMD=${level}: this CPU lacks ${level}; the kernels run ${best}, the best it has`);
      else expect(stderr.toString()).not.toContain('CAMEMBED_SIMD');
    }
  });
});

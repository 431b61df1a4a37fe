// The batch planner: every row once, within the limits, longest first, and long outliers split
// off instead of padding a batch of short texts to their length.
import { planBatches } from '../lib/encoder';
import { makeRandom } from './helpers/random';

describe('planBatches', () => {
  test('covers every row once, within batchSize and maxBatchTokens, each batch padded to its longest row', () => {
    const random = makeRandom(7);
    for (const [count, batchSize, maxBatchTokens] of [[0, 32, 4096], [1, 1, 128], [500, 32, 4096], [300, 64, 300], [77, 8, 1024]]) {
      const lengths = Array.from({ length: count }, () => 2 + Math.floor(random() * random() * 127));
      const plan = planBatches(lengths, batchSize, maxBatchTokens);
      const seen = plan.flatMap((b) => b.rows).sort((a, b) => a - b);
      expect(seen).toEqual(lengths.map((_, i) => i));
      let previous = Infinity;
      for (const b of plan) {
        expect(b.rows.length).toBeLessThanOrEqual(batchSize);
        expect(b.rows.length * b.seq).toBeLessThanOrEqual(maxBatchTokens);
        expect(b.seq).toBe(Math.max(...b.rows.map((r) => lengths[r])));
        expect(b.seq).toBeLessThanOrEqual(previous);
        previous = Math.min(...b.rows.map((r) => lengths[r]));
      }
    }
  });

  test('gives two long texts their own batch rather than padding 30 short ones to them', () => {
    const lengths = [...Array<number>(15).fill(10), 56, ...Array<number>(15).fill(10), 40];
    const plan = planBatches(lengths, 32, 32 * 128);
    const short = plan.filter((b) => b.rows.some((r) => lengths[r] === 10));
    expect(short).toHaveLength(1);
    expect(short[0].seq).toBe(10);
    expect(short[0].rows).toHaveLength(30);
  });

  test('full batches when all texts have the same length', () => {
    const plan = planBatches(Array<number>(100).fill(128), 32, 32 * 128);
    expect(plan.map((b) => b.rows.length)).toEqual([32, 32, 32, 4]);
  });
});

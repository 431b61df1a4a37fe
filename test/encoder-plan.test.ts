// The batch planner: every row once, within the limits, longest first, and long outliers split
// off instead of padding a batch of short texts to their length.
import { Batch, planBatches } from '../lib/encoder';
import { makeRandom } from './helpers/random';

const CALL_COST_TOKENS = 16;

/** Each row once, within batchSize and maxBatchTokens, longest first, each batch padded to its longest row. */
function expectValid(plan: Batch[], lengths: number[], batchSize: number, maxBatchTokens: number): void {
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

const costOf = (plan: Batch[]) => plan.reduce((sum, b) => sum + b.rows.length * b.seq + CALL_COST_TOKENS, 0);

/** The cheapest plan's cost, trying every start of the last batch (the planner tries one per run of equal lengths). */
function cheapestCost(lengths: number[], batchSize: number, maxBatchTokens: number): number {
  const sorted = [...lengths].sort((a, b) => b - a);
  const cost = [0];
  for (let j = 1; j <= sorted.length; j++) {
    cost.push(Infinity);
    for (let i = j - 1; i >= 0 && j - i <= batchSize && (j - i) * sorted[i] <= maxBatchTokens; i--) {
      const c = cost[i] + (j - i) * sorted[i] + CALL_COST_TOKENS;
      if (c < cost[j]) cost[j] = c;
    }
  }
  return cost[sorted.length];
}

describe('planBatches', () => {
  test('covers every row once, within batchSize and maxBatchTokens, each batch padded to its longest row', () => {
    const random = makeRandom(7);
    for (const [count, batchSize, maxBatchTokens] of [[0, 32, 4096], [1, 1, 128], [500, 32, 4096], [300, 64, 300], [77, 8, 1024]]) {
      const lengths = Array.from({ length: count }, () => 2 + Math.floor(random() * random() * 127));
      const plan = planBatches(lengths, batchSize, maxBatchTokens);
      expectValid(plan, lengths, batchSize, maxBatchTokens);
      // Longest first, equal lengths in input order, as a stable comparison sort puts them (the plan is deterministic).
      expect(plan.flatMap((b) => b.rows)).toEqual(lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b));
    }
  });

  test('costs as little as the cheapest plan found by trying every batch start', () => {
    const random = makeRandom(11);
    for (let round = 0; round < 300; round++) {
      // Few distinct lengths (long runs of ties) or many; limits from one row a batch to none.
      const spread = [2, 5, 127][round % 3];
      const lengths = Array.from({ length: Math.floor(random() * 200) }, () => 2 + Math.floor(random() * random() * spread));
      const batchSize = [1, 3, 7, 32, 2 ** 53][Math.floor(random() * 5)];
      const maxBatchTokens = [128, 300, 4096, 2 ** 53][Math.floor(random() * 4)];
      const plan = planBatches(lengths, batchSize, maxBatchTokens);
      expectValid(plan, lengths, batchSize, maxBatchTokens);
      expect({ round, cost: costOf(plan) }).toEqual({ round, cost: cheapestCost(lengths, batchSize, maxBatchTokens) });
    }
  });

  test('no limits: 200,000 texts get one batch per length (the planner tried every start: 2 x 10^10 steps)', () => {
    const random = makeRandom(3);
    const lengths = Array.from({ length: 200_000 }, () => 2 + Math.floor(random() * 127));
    const plan = planBatches(lengths, 2 ** 53, 2 ** 53);
    expect(plan.map((b) => b.seq)).toEqual(Array.from({ length: 127 }, (_, i) => 128 - i));
    expect(plan.every((b) => b.rows.every((r) => lengths[r] === b.seq))).toBe(true);
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
    // As cheap in any order: the last batch of a run takes all that fit, so the remainder comes first.
    expect(plan.map((b) => b.rows.length)).toEqual([4, 32, 32, 32]);
  });
});

import { DEFAULT_METRICS, evaluate, evaluatedQueries, parseMetric, rankDocuments, Qrels, Run } from '../lib/eval/metrics';
import { makeRandom } from './helpers/random';

// Four evaluated queries (q1, q2, q4, q5); q3 has no relevant document and is left out; q6 is
// only in the run and is ignored.
const qrels: Qrels = {
  q1: { d1: 1, d3: 2, d5: 1, d9: 0, dneg: -1 }, // relevant: d3 (2), d1 (1), d5 (1) -> 3 relevant
  q2: { d2: 1 },
  q3: { dx: 0 },
  q4: { d7: 1 }, // absent from the run
  q5: { d8: 1 }, // in the run with no documents
};
const run: Run = {
  // Ranked: d3 0.9, d2 0.8, d1 0.8 (tie: docid descending, as trec_eval), d9 0.7, d4 0.5, d5 0.1 -> gains [2, 0, 1, 0, 0, 1]
  q1: { d2: 0.8, d9: 0.7, d5: 0.1, d3: 0.9, d4: 0.5, d1: 0.8 },
  // All tied: docid descending as strings: d2, d10, d0 -> the relevant d2 is at rank 1 (ascending would put it 3rd)
  q2: { d2: 0.5, d10: 0.5, d0: 0.5 },
  q5: {},
  q6: { d1: 1 },
};

const log2 = Math.log2;
// q1 nDCG: DCG@3 = 2/log2(2) + 1/log2(4); IDCG@3 = 2/log2(2) + 1/log2(3) + 1/log2(4)
const q1Ndcg3 = (2 + 1 / log2(4)) / (2 + 1 / log2(3) + 1 / log2(4)); // = 0.79848...
// DCG@10 adds d5 (gain 1) at rank 6: 1/log2(7); the ideal stays [2, 1, 1]
const q1Ndcg10 = (2 + 1 / log2(4) + 1 / log2(7)) / (2 + 1 / log2(3) + 1 / log2(4)); // = 0.91226...
// q2: its one relevant document at rank 1: nDCG 1

describe('evaluate: hand-computed values', () => {
  const metrics = ['MRR@10', 'MRR@1', 'nDCG@1', 'nDCG@3', 'nDCG@10', 'MAP@10', 'MAP@2',
    'Recall@1', 'Recall@5', 'Recall@10', 'P@2', 'P@10'];

  test('per query', () => {
    const { perQuery } = evaluate(run, qrels, metrics, { perQuery: true });
    expect(Object.keys(perQuery).sort()).toEqual(['q1', 'q2', 'q4', 'q5']);
    const q1 = perQuery.q1;
    expect(q1['MRR@10']).toBe(1); // first relevant at rank 1
    expect(q1['MRR@1']).toBe(1);
    expect(q1['nDCG@1']).toBe(1); // 2/1 over the ideal 2/1
    expect(q1['nDCG@3']).toBeCloseTo(q1Ndcg3, 12);
    expect(q1['nDCG@3']).toBeCloseTo(0.7985, 4);
    expect(q1['nDCG@10']).toBeCloseTo(q1Ndcg10, 12);
    expect(q1['nDCG@10']).toBeCloseTo(0.9123, 4);
    expect(q1['MAP@10']).toBeCloseTo((1 / 1 + 2 / 3 + 3 / 6) / 3, 12); // relevant at ranks 1, 3, 6
    expect(q1['MAP@2']).toBeCloseTo((1 / 1) / 3, 12); // divided by all 3 relevant
    expect(q1['Recall@1']).toBeCloseTo(1 / 3, 12);
    expect(q1['Recall@5']).toBeCloseTo(2 / 3, 12);
    expect(q1['Recall@10']).toBe(1);
    expect(q1['P@2']).toBe(0.5);
    expect(q1['P@10']).toBeCloseTo(3 / 10, 12);

    const q2 = perQuery.q2;
    expect(q2['MRR@10']).toBe(1);
    expect(q2['MRR@1']).toBe(1);
    expect(q2['nDCG@1']).toBe(1);
    expect(q2['nDCG@3']).toBe(1);
    expect(q2['nDCG@10']).toBe(1);
    expect(q2['MAP@10']).toBe(1);
    expect(q2['MAP@2']).toBe(1);
    expect(q2['Recall@1']).toBe(1);
    expect(q2['Recall@5']).toBe(1);
    expect(q2['P@2']).toBe(0.5);
    expect(q2['P@10']).toBeCloseTo(1 / 10, 12); // a 3-document run still divides by 10

    for (const q of ['q4', 'q5']) for (const m of metrics) expect(perQuery[q][m]).toBe(0);
  });

  test('means over the four evaluated queries; without a list, the model card\'s metrics', () => {
    const mean = evaluate(run, qrels, metrics);
    const byDefault = evaluate(run, qrels);
    expect(Object.keys(byDefault)).toEqual(DEFAULT_METRICS);
    for (const m of DEFAULT_METRICS) expect(byDefault[m]).toBe(evaluate(run, qrels, [m])[m]);
    expect(mean['MRR@10']).toBeCloseTo((1 + 1) / 4, 12);
    expect(mean['MRR@1']).toBeCloseTo(2 / 4, 12);
    expect(mean['nDCG@1']).toBeCloseTo(2 / 4, 12);
    expect(mean['nDCG@3']).toBeCloseTo((q1Ndcg3 + 1) / 4, 12);
    expect(mean['nDCG@10']).toBeCloseTo((q1Ndcg10 + 1) / 4, 12);
    expect(mean['MAP@10']).toBeCloseTo((13 / 18 + 1) / 4, 12); // q1: (1 + 2/3 + 1/2) / 3 = 13/18
    expect(mean['MAP@2']).toBeCloseTo((1 / 3 + 1) / 4, 12);
    expect(mean['Recall@1']).toBeCloseTo((1 / 3 + 1) / 4, 12);
    expect(mean['Recall@5']).toBeCloseTo((2 / 3 + 1) / 4, 12);
    expect(mean['Recall@10']).toBeCloseTo((1 + 1) / 4, 12);
    expect(mean['P@2']).toBeCloseTo((0.5 + 0.5) / 4, 12);
    expect(mean['P@10']).toBeCloseTo((0.3 + 0.1) / 4, 12);
  });

  test('graded gains: swapping a relevance-2 and a relevance-1 document changes nDCG only', () => {
    const swapped: Run = { ...run, q1: { ...run.q1, d3: 0.85, d1: 0.9 } }; // gains [1, 2, 0, 0, 0, 1]
    const { perQuery } = evaluate(swapped, qrels, ['nDCG@3', 'MRR@10', 'MAP@10'], { perQuery: true });
    // DCG@3 = 1/log2(2) + 2/log2(3) over the same ideal 2 + 1/log2(3) + 1/log2(4)
    expect(perQuery.q1['nDCG@3']).toBeCloseTo((1 + 2 / log2(3)) / (2 + 1 / log2(3) + 0.5), 12);
    expect(perQuery.q1['MRR@10']).toBe(1);
    expect(perQuery.q1['MAP@10']).toBeCloseTo((1 + 1 + 0.5) / 3, 12);
  });

  test('an empty run scores 0 on every query', () => {
    const mean = evaluate({}, qrels, ['MRR@10', 'nDCG@10', 'Recall@100']);
    expect(mean).toEqual({ 'MRR@10': 0, 'nDCG@10': 0, 'Recall@100': 0 });
  });

  test('a perfect run scores 1', () => {
    const perfect: Run = { a: { x: 3, y: 2, z: 1 }, b: { w: 1 } };
    const judged: Qrels = { a: { x: 1, y: 1, z: 1 }, b: { w: 2 } };
    const mean = evaluate(perfect, judged, ['MRR@10', 'nDCG@10', 'MAP@10', 'Recall@3']);
    expect(mean).toEqual({ 'MRR@10': 1, 'nDCG@10': 1, 'MAP@10': 1, 'Recall@3': 1 });
  });

  test('per query, a qid such as __proto__ is an ordinary key (as readQrels keeps it)', () => {
    const judged: Qrels = JSON.parse('{"__proto__": {"d1": 1}, "constructor": {"d2": 1}}');
    const ranked: Run = JSON.parse('{"__proto__": {"d0": 0.9, "d1": 0.8}, "constructor": {"d2": 0.5}}');
    const { mean, perQuery } = evaluate(ranked, judged, ['MRR@10'], { perQuery: true });
    expect(Object.getPrototypeOf(perQuery)).toBe(Object.prototype);
    expect(Object.entries(perQuery)).toEqual([['__proto__', { 'MRR@10': 0.5 }], ['constructor', { 'MRR@10': 1 }]]);
    expect(mean).toEqual({ 'MRR@10': 0.75 });
  });

  test('metric names are case-insensitive and keyed as given; duplicates collapse', () => {
    const mean = evaluate(run, qrels, ['mrr@10', 'NDCG@3', 'mrr@10']);
    expect(Object.keys(mean)).toEqual(['mrr@10', 'NDCG@3']);
    expect(mean['mrr@10']).toBeCloseTo(1 / 2, 12);
  });
});

describe('minRelevance (trec_eval -l): binary metrics count relevance >= the level, nDCG keeps graded gains', () => {
  // a ranks y (1), w (0), x (2), u (unjudged), z (2): gains [1, 0, 2, 0, 2].
  // c ranks m (1), n (2): gains [1, 2].
  const graded: Qrels = { a: { x: 2, y: 1, z: 2, w: 0 }, c: { m: 1, n: 2 } };
  const gradedRun: Run = { a: { y: 5, w: 4, x: 3, u: 2, z: 1 }, c: { m: 2, n: 1 } };
  const metrics = ['MRR@10', 'MAP@10', 'Recall@1', 'Recall@3', 'Recall@10', 'P@5', 'nDCG@5'];
  const aNdcg5 = (1 + 2 / log2(4) + 2 / log2(6)) / (2 + 2 / log2(3) + 1 / log2(4));
  const cNdcg5 = (1 + 2 / log2(3)) / (2 + 1 / log2(3));

  test('levels 1 and 2 by hand: MRR, MAP, Recall and P differ, nDCG does not', () => {
    const one = evaluate(gradedRun, graded, metrics, { perQuery: true, minRelevance: 1 }).perQuery;
    const two = evaluate(gradedRun, graded, metrics, { perQuery: true, minRelevance: 2 }).perQuery;
    // Level 1: a's relevant are y, x, z (R = 3) at ranks 1, 3, 5; c's are m, n (R = 2) at 1, 2.
    expect(one.a['MRR@10']).toBe(1);
    expect(one.a['MAP@10']).toBeCloseTo((1 / 1 + 2 / 3 + 3 / 5) / 3, 12);
    expect(one.a['Recall@1']).toBeCloseTo(1 / 3, 12);
    expect(one.a['Recall@3']).toBeCloseTo(2 / 3, 12);
    expect(one.a['P@5']).toBeCloseTo(3 / 5, 12);
    expect(one.c).toEqual({ 'MRR@10': 1, 'MAP@10': 1, 'Recall@1': 0.5, 'Recall@3': 1, 'Recall@10': 1, 'P@5': 2 / 5, 'nDCG@5': expect.any(Number) });
    // Level 2: a's relevant are x, z (R = 2) at ranks 3, 5; c's is n (R = 1) at 2.
    expect(two.a['MRR@10']).toBeCloseTo(1 / 3, 12);
    expect(two.a['MAP@10']).toBeCloseTo((1 / 3 + 2 / 5) / 2, 12);
    expect(two.a['Recall@1']).toBe(0);
    expect(two.a['Recall@3']).toBe(0.5);
    expect(two.a['P@5']).toBeCloseTo(2 / 5, 12);
    expect(two.c).toEqual({ 'MRR@10': 0.5, 'MAP@10': 0.5, 'Recall@1': 0, 'Recall@3': 1, 'Recall@10': 1, 'P@5': 1 / 5, 'nDCG@5': expect.any(Number) });
    // Recall@10 finds everything either way; nDCG's gains are the relevances at both levels.
    expect(one.a['Recall@10']).toBe(1);
    expect(two.a['Recall@10']).toBe(1);
    for (const perQuery of [one, two]) {
      expect(perQuery.a['nDCG@5']).toBeCloseTo(aNdcg5, 12);
      expect(perQuery.c['nDCG@5']).toBeCloseTo(cNdcg5, 12);
    }
    const [mean1, mean2] = [1, 2].map((minRelevance) => evaluate(gradedRun, graded, metrics, { minRelevance }));
    expect(mean1['nDCG@5']).toBe(mean2['nDCG@5']);
    expect(mean1['MAP@10']).toBeCloseTo(((1 + 2 / 3 + 3 / 5) / 3 + 1) / 2, 12);
    expect(mean2['MAP@10']).toBeCloseTo(((1 / 3 + 2 / 5) / 2 + 0.5) / 2, 12);
    expect(evaluate(gradedRun, graded, metrics)).toEqual(mean1); // the default level is 1
  });

  test('a query with no judgement at the level is left out; none left is an error', () => {
    const withLow: Qrels = { ...graded, b: { p: 1, q: 0 } };
    const run2: Run = { ...gradedRun, b: { p: 1 } };
    expect(evaluatedQueries(withLow, 1)).toEqual(['a', 'c', 'b']);
    expect(evaluatedQueries(withLow, 2)).toEqual(['a', 'c']);
    expect(Object.keys(evaluate(run2, withLow, ['MRR@10'], { perQuery: true, minRelevance: 2 }).perQuery)).toEqual(['a', 'c']);
    expect(evaluate(run2, withLow, ['MRR@10'], { minRelevance: 2 })['MRR@10']).toBeCloseTo((1 / 3 + 1 / 2) / 2, 12);
    expect(() => evaluate(run2, withLow, ['MRR@10'], { minRelevance: 3 }))
      .toThrow('qrels has no query with a relevant document (relevance >= 3): nothing to evaluate');
  });

  test('random graded qrels and runs agree with a direct oracle at levels 1 to 3', () => {
    // The oracle: for each query, the ranks (1-based) of the documents at the level, and the
    // definitions of docs/eval.md written over them.
    const oracle = (ranked: string[], judged: Record<string, number>, level: number, name: string, k: number): number => {
      const rel = (d: string) => judged[d] ?? 0;
      const ranks = ranked.slice(0, k).flatMap((d, i) => (rel(d) >= level ? [i + 1] : []));
      const R = Object.values(judged).filter((r) => r >= level).length;
      if (name === 'MRR') return ranks.length === 0 ? 0 : 1 / ranks[0];
      if (name === 'MAP') return ranks.reduce((sum, rank, j) => sum + (j + 1) / rank, 0) / R;
      if (name === 'Recall') return ranks.length / R;
      if (name === 'P') return ranks.length / k;
      let dcg = 0, idcg = 0;
      ranked.slice(0, k).forEach((d, i) => { dcg += Math.max(rel(d), 0) / log2(i + 2); });
      Object.values(judged).filter((r) => r > 0).sort((x, y) => y - x).slice(0, k).forEach((r, i) => { idcg += r / log2(i + 2); });
      return dcg / idcg;
    };
    const random = makeRandom(42);
    const qrelsR: Qrels = {};
    const runR: Run = {};
    for (let q = 0; q < 40; q++) {
      qrelsR[`q${q}`] = {};
      runR[`q${q}`] = {};
      for (let d = 0; d < 30; d++) {
        // Scores from a small set, so that ties (broken by docid, descending) occur.
        if (random() < 0.7) runR[`q${q}`][`d${d}`] = Math.floor(random() * 8);
        if (random() < 0.3) qrelsR[`q${q}`][`d${d}`] = Math.floor(random() * 5) - 1; // -1 to 3
      }
    }
    const names = ['MRR@10', 'MAP@5', 'MAP@100', 'Recall@3', 'Recall@20', 'P@1', 'P@10', 'nDCG@3', 'nDCG@15'];
    for (const level of [1, 2, 3]) {
      const { mean, perQuery } = evaluate(runR, qrelsR, names, { perQuery: true, minRelevance: level });
      const expected = Object.keys(qrelsR).filter((q) => Object.values(qrelsR[q]).some((r) => r >= level));
      expect(Object.keys(perQuery).sort()).toEqual(expected.sort());
      expect(expected.length).toBeGreaterThan(5);
      for (const m of names) {
        const [name, k] = m.split('@');
        let sum = 0;
        for (const q of expected) {
          const ranked = Object.keys(runR[q]).sort((x, y) => runR[q][y] - runR[q][x] || (x < y ? 1 : x > y ? -1 : 0));
          const value = oracle(ranked, qrelsR[q], level, name, Number(k));
          expect(perQuery[q][m]).toBeCloseTo(value, 12);
          sum += value;
        }
        expect(mean[m]).toBeCloseTo(sum / expected.length, 12);
      }
    }
  });
});

describe('rankDocuments', () => {
  test('score descending, then docid descending by UTF-8 bytes (trec_eval\'s order)', () => {
    expect(rankDocuments({ b: 1, a: 1, c: 2, B: 1, '10': 0, '9': 0 })).toEqual(['c', 'b', 'a', 'B', '9', '10']);
    // UTF-8 byte order, not UTF-16's: U+FF21 (EF BC A1) sorts below U+1F600 (F0 9F 98 80).
    expect(rankDocuments({ '\uff21': 1, '\u{1F600}': 1 })).toEqual(['\u{1F600}', '\uff21']);
  });
});

describe('evaluate: bad input', () => {
  test('unknown or malformed metric names', () => {
    expect(() => evaluate(run, qrels, ['MRR'])).toThrow(/unknown metric 'MRR': expected NAME@k/);
    expect(() => evaluate(run, qrels, ['ERR@10'])).toThrow(/unknown metric 'ERR@10'.*MRR, nDCG, MAP, Recall, P/);
    expect(() => evaluate(run, qrels, ['nDCG@0'])).toThrow(RangeError);
    expect(() => evaluate(run, qrels, ['nDCG@-1'])).toThrow(/unknown metric/);
    expect(() => evaluate(run, qrels, [])).toThrow(/non-empty array/);
    expect(() => evaluate(run, qrels, 'MRR@10' as unknown as string[])).toThrow(TypeError);
    expect(() => parseMetric(10)).toThrow(/must be strings/);
  });

  test('malformed run and qrels', () => {
    expect(() => evaluate(null as unknown as Run, qrels, ['P@1'])).toThrow(/run must be an object/);
    expect(() => evaluate({ q1: [] } as unknown as Run, qrels, ['P@1'])).toThrow(/run\["q1"\] must be an object/);
    expect(() => evaluate({ q1: { d1: NaN } }, qrels, ['P@1'])).toThrow(/run\["q1"\]\["d1"\] must be a finite number/);
    expect(() => evaluate({ q1: { d1: '1' as unknown as number } }, qrels, ['P@1'])).toThrow(TypeError);
    expect(() => evaluate(run, { q1: { d1: 0.5 } }, ['P@1'])).toThrow(/qrels\["q1"\]\["d1"\] must be an integer/);
    expect(() => evaluate(run, [] as unknown as Qrels, ['P@1'])).toThrow(/qrels must be an object/);
    expect(() => evaluate(run, qrels, ['P@1'], { perQuery: 'yes' as unknown as boolean })).toThrow(/perQuery/);
    expect(() => evaluate(run, qrels, ['P@1'], null as unknown as object)).toThrow(new TypeError('options must be an object, got null'));
    expect(() => evaluate(run, qrels, ['P@1'], { perquery: true } as object)).toThrow(/options.perquery is not known \(did you mean perQuery\?\)/);
    expect(() => evaluate(run, qrels, ['P@1'], { minRelevance: 0 })).toThrow(new RangeError('options.minRelevance must be an integer >= 1, got 0'));
    expect(() => evaluate(run, qrels, ['P@1'], { minRelevance: 1.5 })).toThrow(RangeError);
    expect(() => evaluate(run, qrels, ['P@1'], { minRelevance: '2' as unknown as number })).toThrow(new TypeError('options.minRelevance must be a number, got string'));
  });

  test('qrels without any relevant document', () => {
    expect(() => evaluate(run, { q3: { dx: 0 } }, ['P@1'])).toThrow(/no query with a relevant document/);
  });
});

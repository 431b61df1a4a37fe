import { DEFAULT_METRICS, evaluate, parseMetric, rankDocuments, Qrels, Run } from '../lib/eval/metrics';

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

  test('metric names are case-insensitive and keyed as given; duplicates collapse', () => {
    const mean = evaluate(run, qrels, ['mrr@10', 'NDCG@3', 'mrr@10']);
    expect(Object.keys(mean)).toEqual(['mrr@10', 'NDCG@3']);
    expect(mean['mrr@10']).toBeCloseTo(1 / 2, 12);
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
  });

  test('qrels without any relevant document', () => {
    expect(() => evaluate(run, { q3: { dx: 0 } }, ['P@1'])).toThrow(/no query with a relevant document/);
  });
});

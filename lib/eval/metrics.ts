// Standard IR metrics over pytrec_eval-shaped runs and qrels, defined as trec_eval defines them
// (usnistgov/trec_eval: m_recip_rank.c, m_ndcg_cut.c, m_map_cut.c, m_recall.c, m_P.c), with the
// MS MARCO conventions for queries the run lacks, and trec_eval's relevance level (`-l`) as
// `minRelevance`. docs/eval.md states every definition.
import { describeValue, namesOf, optionalBoolean, requireObject, typeName } from '../validate';

/** `run[qid][docid] = score`; higher is better. */
export type Run = Record<string, Record<string, number>>;
/** `qrels[qid][docid] = relevance`; an integer, relevant from `minRelevance` (default 1) up. */
export type Qrels = Record<string, Record<string, number>>;

/** The metrics evaluate() computes, each at a cutoff (`'nDCG@10'`); docs/eval.md defines them. */
export type MetricName = 'MRR' | 'nDCG' | 'MAP' | 'Recall' | 'P';
const METRIC_NAMES: readonly MetricName[] = ['MRR', 'nDCG', 'MAP', 'Recall', 'P'];

/** Options of evaluate(). */
export interface EvaluateOptions {
  /** Also return each query's values (default false). */
  perQuery?: boolean | undefined;
  /**
   * The relevance from which a judgement counts as relevant for the binary metrics (MRR, MAP,
   * Recall, P) and for which queries are evaluated: trec_eval's `-l` (default 1). nDCG keeps the
   * graded gains of every judgement > 0.
   */
  minRelevance?: number | undefined;
}

/** `{ [metric]: value }`, keyed by the metric names as given. */
export type MetricValues = Record<string, number>;

/** evaluate()'s result with `{ perQuery: true }`. */
export interface PerQueryEvaluation {
  /** Mean over the evaluated queries (those of the qrels with a relevant document). */
  mean: MetricValues;
  /** `perQuery[qid][metric]`, pytrec_eval's shape, for every evaluated query. */
  perQuery: Record<string, MetricValues>;
}

interface MetricSpec { key: string; name: MetricName; k: number }

/** Parses 'nDCG@10' and the like (names are case-insensitive; k a positive integer). */
export function parseMetric(text: unknown): { name: MetricName; k: number } {
  if (typeof text !== 'string') throw new TypeError(`metric names must be strings, got ${typeName(text)}`);
  const match = /^([A-Za-z]+)@(\d+)$/.exec(text);
  const name = match ? METRIC_NAMES.find((n) => n.toLowerCase() === match[1].toLowerCase()) : undefined;
  if (!match || name === undefined) {
    throw new RangeError(`unknown metric '${text}': expected NAME@k with NAME one of ${METRIC_NAMES.join(', ')} (e.g. 'nDCG@10')`);
  }
  const k = Number(match[2]);
  if (!Number.isSafeInteger(k) || k < 1) throw new RangeError(`metric '${text}': k must be a positive integer`);
  return { name, k };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value);
}

/** One query's `{ [docid]: number }`: scores (finite numbers) of a run, or relevances (integers) of qrels. */
function checkDocs(name: string, docs: unknown, kind: 'score' | 'relevance'): Record<string, number> {
  if (!isPlainObject(docs)) throw new TypeError(`${name} must be an object { [docid]: number }, got ${typeName(docs)}`);
  for (const [docid, v] of Object.entries(docs)) {
    const ok = kind === 'score' ? typeof v === 'number' && Number.isFinite(v) : Number.isInteger(v);
    if (!ok) {
      const expected = kind === 'score' ? 'a finite number (score)' : 'an integer (relevance)';
      throw new TypeError(`${name}[${JSON.stringify(docid)}] must be ${expected}, got ${describeValue(v)}`);
    }
  }
  return docs as Record<string, number>;
}

function checkNested(what: 'run' | 'qrels', value: unknown): Record<string, Record<string, number>> {
  if (!isPlainObject(value)) throw new TypeError(`${what} must be an object { [qid]: { [docid]: number } }, got ${typeName(value)}`);
  for (const [qid, docs] of Object.entries(value)) checkDocs(`${what}[${JSON.stringify(qid)}]`, docs, what === 'run' ? 'score' : 'relevance');
  return value as Record<string, Record<string, number>>;
}

/**
 * The order of documents with equal scores: docid descending by bytes, as trec_eval orders them
 * (form_res_rels.c, comp_sim_docno: strcmp of the docnos, reversed).
 */
export function compareTiedDocids(a: string, b: string): number {
  return Buffer.compare(Buffer.from(b), Buffer.from(a));
}

/** Document ids of one query's run, best first: score descending, then compareTiedDocids. */
export function rankDocuments(scores: Record<string, number>): string[] {
  return rankChecked(checkDocs('scores', scores, 'score'));
}

// rankDocuments once the scores are checked (evaluate checks the whole run first).
function rankChecked(scores: Record<string, number>): string[] {
  return Object.keys(scores).sort((a, b) => scores[b] - scores[a] || compareTiedDocids(a, b));
}

const EVALUATE_OPTIONS = namesOf<EvaluateOptions>({ perQuery: true, minRelevance: true });

/** `options.minRelevance` checked: an integer >= 1 (default 1). */
export function checkMinRelevance(value: unknown): number {
  if (value === undefined) return 1;
  if (typeof value !== 'number') throw new TypeError(`options.minRelevance must be a number, got ${typeName(value)}`);
  // Below 1 a query judged only 0 would be evaluated with an ideal nDCG of 0.
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`options.minRelevance must be an integer >= 1, got ${value}`);
  return value;
}

/** The queries evaluate() averages over: those with a judgement >= minRelevance. */
export function evaluatedQueries(qrels: Qrels, minRelevance = 1): string[] {
  return Object.keys(qrels).filter((qid) => Object.values(qrels[qid]).some((rel) => rel >= minRelevance));
}

// One query's values. `gains[i]` is the qrels relevance of the document at rank i + 1 (0 when
// unjudged), only the first maxK ranks; `judged` holds the qrels relevances of the query.
// As trec_eval -l (form_res_rels.c counts num_rel from relevance_level up; m_recip_rank.c,
// m_map_cut.c, m_recall.c and m_P.c test `rel >= relevance_level`), the binary metrics count a
// document relevant from minRelevance up; nDCG (m_ndcg_cut.c) ignores the level: every gain > 0.
function scoreQuery(gains: number[], judged: number[], specs: MetricSpec[], minRelevance: number): number[] {
  const ideal = judged.filter((r) => r > 0).sort((a, b) => b - a); // relevances of the ideal ranking
  const numRelevant = judged.filter((r) => r >= minRelevance).length;
  const relevant = (g: number) => g >= minRelevance;
  return specs.map(({ name, k }) => {
    const top = gains.slice(0, k);
    switch (name) {
      case 'MRR': {
        const first = top.findIndex(relevant);
        return first < 0 ? 0 : 1 / (first + 1);
      }
      case 'nDCG': {
        // Gain = relevance, discount log2(rank + 1); the ideal ranking is the qrels' own
        // relevant documents by decreasing relevance, cut at k (trec_eval >= 9.0 ndcg_cut).
        const dcg = (g: number[]) => g.reduce((sum, gain, i) => (gain > 0 ? sum + gain / Math.log2(i + 2) : sum), 0);
        return dcg(top) / dcg(ideal.slice(0, k));
      }
      case 'MAP': {
        // Precision at each relevant rank within k, summed, divided by all relevant documents.
        let found = 0, sum = 0;
        top.forEach((g, i) => { if (relevant(g)) sum += ++found / (i + 1); });
        return sum / numRelevant;
      }
      case 'Recall':
        return top.filter(relevant).length / numRelevant;
      case 'P':
        // A run shorter than k is padded with non-relevant documents: always divide by k.
        return top.filter(relevant).length / k;
    }
  });
}

/** The model card's table (mMARCO-fr dev small). */
export const DEFAULT_METRICS: readonly string[] = Object.freeze(['MRR@10', 'nDCG@10', 'MAP@10', 'Recall@10', 'Recall@100', 'Recall@500']);

/**
 * Scores `run` against `qrels` on `metrics` (default DEFAULT_METRICS): `{ [metric]: mean }`, or
 * `{ mean, perQuery }` with `{ perQuery: true }`. Only queries of the qrels with a relevant document
 * (relevance >= options.minRelevance, default 1) count; such a query missing from the run scores
 * 0 on every metric (MS MARCO convention); run queries absent from the qrels are ignored.
 */
export function evaluate(run: Run, qrels: Qrels, metrics: readonly string[] | undefined, options: EvaluateOptions & { perQuery: true }): PerQueryEvaluation;
export function evaluate(run: Run, qrels: Qrels, metrics?: readonly string[], options?: EvaluateOptions & { perQuery?: false }): MetricValues;
/** As above, with `perQuery` known only at run time (a boolean): either shape. */
export function evaluate(run: Run, qrels: Qrels, metrics: readonly string[] | undefined, options: EvaluateOptions): MetricValues | PerQueryEvaluation;
export function evaluate(
  run: Run, qrels: Qrels, metrics: readonly string[] = DEFAULT_METRICS, options: EvaluateOptions = {},
): MetricValues | PerQueryEvaluation {
  const r = checkNested('run', run);
  const q = checkNested('qrels', qrels);
  if (!Array.isArray(metrics) || metrics.length === 0) {
    throw new TypeError(`metrics must be a non-empty array of names such as ['MRR@10', 'nDCG@10'], got ${describeValue(metrics)}`);
  }
  requireObject('options', options, EVALUATE_OPTIONS);
  optionalBoolean('options.perQuery', options.perQuery, false);
  const minRelevance = checkMinRelevance(options.minRelevance);
  const specs: MetricSpec[] = [...new Set(metrics)].map((key) => ({ key, ...parseMetric(key) }));
  const maxK = Math.max(...specs.map((s) => s.k));

  const sums = new Array<number>(specs.length).fill(0);
  const perQuery: Array<[string, MetricValues]> = [];
  const queries = evaluatedQueries(q, minRelevance);
  if (queries.length === 0) {
    throw new RangeError(`qrels has no query with a relevant document (relevance >= ${minRelevance}): nothing to evaluate`);
  }
  for (const qid of queries) {
    const judgements = q[qid];
    const ranked = Object.prototype.hasOwnProperty.call(r, qid) ? rankChecked(r[qid]).slice(0, maxK) : [];
    const gains = ranked.map((docid) => (Object.prototype.hasOwnProperty.call(judgements, docid) ? judgements[docid] : 0));
    const values = scoreQuery(gains, Object.values(judgements), specs, minRelevance);
    values.forEach((v, i) => { sums[i] += v; });
    if (options.perQuery) perQuery.push([qid, Object.fromEntries(specs.map((s, i) => [s.key, values[i]]))]);
  }
  const mean = Object.fromEntries(specs.map((s, i) => [s.key, sums[i] / queries.length]));
  // fromEntries, not assignment: a qid such as '__proto__' stays an ordinary key (readQrels keeps it).
  return options.perQuery ? { mean, perQuery: Object.fromEntries(perQuery) } : mean;
}

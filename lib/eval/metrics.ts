// Standard IR metrics over pytrec_eval-shaped runs and qrels, defined as trec_eval defines them
// (usnistgov/trec_eval: m_recip_rank.c, m_ndcg_cut.c, m_map_cut.c, m_recall.c, m_P.c), with the
// MS MARCO conventions for queries the run lacks. docs/eval.md states every definition.

/** `run[qid][docid] = score`; higher is better. */
export type Run = Record<string, Record<string, number>>;
/** `qrels[qid][docid] = relevance`; an integer, > 0 is relevant, <= 0 is judged non-relevant. */
export type Qrels = Record<string, Record<string, number>>;

export type MetricName = 'MRR' | 'nDCG' | 'MAP' | 'Recall' | 'P';
export const METRIC_NAMES: readonly MetricName[] = ['MRR', 'nDCG', 'MAP', 'Recall', 'P'];

export interface EvaluateOptions {
  /** Also return each query's values (default false). */
  perQuery?: boolean;
}

/** `{ [metric]: value }`, keyed by the metric names as given. */
export type MetricValues = Record<string, number>;

export interface PerQueryEvaluation {
  /** Mean over the evaluated queries (those of the qrels with a relevant document). */
  mean: MetricValues;
  /** `perQuery[qid][metric]`, pytrec_eval's shape, for every evaluated query. */
  perQuery: Record<string, MetricValues>;
}

interface MetricSpec { key: string; name: MetricName; k: number }

/** Parses 'nDCG@10' and the like (names are case-insensitive; k a positive integer). */
export function parseMetric(text: unknown): { name: MetricName; k: number } {
  if (typeof text !== 'string') throw new TypeError(`metric names must be strings, got ${typeof text}`);
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

function checkNested(what: 'run' | 'qrels', value: unknown): Record<string, Record<string, number>> {
  if (!isPlainObject(value)) throw new TypeError(`${what} must be an object { [qid]: { [docid]: number } }`);
  for (const [qid, docs] of Object.entries(value)) {
    if (!isPlainObject(docs)) throw new TypeError(`${what}[${JSON.stringify(qid)}] must be an object { [docid]: number }`);
    for (const [docid, v] of Object.entries(docs)) {
      const ok = what === 'run' ? typeof v === 'number' && Number.isFinite(v) : Number.isInteger(v);
      if (!ok) {
        const expected = what === 'run' ? 'a finite number (score)' : 'an integer (relevance)';
        throw new TypeError(`${what}[${JSON.stringify(qid)}][${JSON.stringify(docid)}] must be ${expected}, got ${String(v)}`);
      }
    }
  }
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
  return Object.keys(scores).sort((a, b) => scores[b] - scores[a] || compareTiedDocids(a, b));
}

// One query's values. `gains[i]` is the qrels relevance of the document at rank i + 1 (0 when
// unjudged), only the first maxK ranks; `judged` holds the qrels relevances of the query.
function scoreQuery(gains: number[], judged: number[], specs: MetricSpec[]): number[] {
  const ideal = judged.filter((r) => r > 0).sort((a, b) => b - a); // relevances of the ideal ranking
  const numRelevant = ideal.length;
  return specs.map(({ name, k }) => {
    const top = gains.slice(0, k);
    switch (name) {
      case 'MRR': {
        const first = top.findIndex((g) => g > 0);
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
        top.forEach((g, i) => { if (g > 0) sum += ++found / (i + 1); });
        return sum / numRelevant;
      }
      case 'Recall':
        return top.filter((g) => g > 0).length / numRelevant;
      case 'P':
        // A run shorter than k is padded with non-relevant documents: always divide by k.
        return top.filter((g) => g > 0).length / k;
    }
  });
}

/** The model card's table (mMARCO-fr dev small). */
export const DEFAULT_METRICS = ['MRR@10', 'nDCG@10', 'MAP@10', 'Recall@10', 'Recall@100', 'Recall@500'];

/**
 * Scores `run` against `qrels` on `metrics` (default DEFAULT_METRICS): `{ [metric]: mean }`, or
 * `{ mean, perQuery }` with `{ perQuery: true }`. Only queries of the qrels with a relevant document count; such a query
 * missing from the run scores 0 on every metric (MS MARCO convention); run queries absent from
 * the qrels are ignored.
 */
export function evaluate(run: Run, qrels: Qrels, metrics: readonly string[] | undefined, options: { perQuery: true }): PerQueryEvaluation;
export function evaluate(run: Run, qrels: Qrels, metrics?: readonly string[], options?: EvaluateOptions): MetricValues;
export function evaluate(
  run: Run, qrels: Qrels, metrics: readonly string[] = DEFAULT_METRICS, options: EvaluateOptions = {},
): MetricValues | PerQueryEvaluation {
  const r = checkNested('run', run);
  const q = checkNested('qrels', qrels);
  if (!Array.isArray(metrics) || metrics.length === 0) {
    throw new TypeError("metrics must be a non-empty array of names such as ['MRR@10', 'nDCG@10']");
  }
  if (!isPlainObject(options)) throw new TypeError('options must be an object');
  if (options.perQuery !== undefined && typeof options.perQuery !== 'boolean') {
    throw new TypeError(`options.perQuery must be a boolean, got ${typeof options.perQuery}`);
  }
  const specs: MetricSpec[] = [...new Set(metrics)].map((key) => ({ key, ...parseMetric(key) }));
  const maxK = Math.max(...specs.map((s) => s.k));

  const sums = new Array<number>(specs.length).fill(0);
  const perQuery: Record<string, MetricValues> = {};
  let queries = 0;
  for (const [qid, judgements] of Object.entries(q)) {
    const judged = Object.values(judgements);
    if (!judged.some((rel) => rel > 0)) continue;
    queries++;
    const ranked = Object.prototype.hasOwnProperty.call(r, qid) ? rankDocuments(r[qid]).slice(0, maxK) : [];
    const gains = ranked.map((docid) => (Object.prototype.hasOwnProperty.call(judgements, docid) ? judgements[docid] : 0));
    const values = scoreQuery(gains, judged, specs);
    values.forEach((v, i) => { sums[i] += v; });
    if (options.perQuery) perQuery[qid] = Object.fromEntries(specs.map((s, i) => [s.key, values[i]]));
  }
  if (queries === 0) throw new RangeError('qrels has no query with a relevant document (relevance > 0): nothing to evaluate');
  const mean = Object.fromEntries(specs.map((s, i) => [s.key, sums[i] / queries]));
  return options.perQuery ? { mean, perQuery } : mean;
}

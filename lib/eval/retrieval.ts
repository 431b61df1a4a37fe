// End-to-end retrieval evaluation, the `camembed eval` pipeline:
// collection.tsv ─encodeCollection (cached, resumable)─> VectorIndex ─┐
// queries.tsv ─Encoder.encode─────────────────────────────────────────┴─search top-k─> run ─evaluate(qrels)─> metrics
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Encoder } from '../encoder';
import { camembedCacheDir } from '../model/hub';
import { Device, parseDevice } from '../devices';
import { Dtype, DTYPES } from '../kernels';
import { externalDataLocations } from '../model/onnx-reader';
import { createProgressBar, ProgressBar } from '../progress';
import {
  counted, describeValue, namesOf, optionalAbortSignal, optionalBoolean, optionalFunction, optionalOneOf, optionalPositiveInteger, optionalString, requireObject,
  requireString,
} from '../validate';
import { INDEX_CUDA_MAX_K, VectorIndex } from '../vector-index';
import { encodeCollection, EncodedCollection, EncodeProgress, fileIdentity, FileIdentity } from './embedding-cache';
import { readQrels, readTsvEntries, requireToken, TrecRunWriter } from './formats';
import { checkMinRelevance, compareTiedDocids, DEFAULT_METRICS, evaluate, evaluatedQueries, parseMetric, Run } from './metrics';

/** Options of evaluateRetrieval: the files, as `camembed eval` takes them, and how to encode and search. */
export interface RetrievalEvaluationOptions {
  /** Model folder or Hub id, as for `Encoder.load`. */
  model: string;
  /** The passages: `id<TAB>text` per line (MS MARCO collection.tsv, or a BEIR corpus in that form). */
  collection: string;
  /** The queries: `id<TAB>text` per line. */
  queries: string;
  /** Relevance judgements: TREC (`qid 0 docid rel`), `qid<TAB>docid`, or BEIR's qrels TSV. */
  qrels: string;
  /** Passages retrieved per query (default 1000); at least the largest metric cutoff. */
  k?: number | undefined;
  /** Metric names such as 'MRR@10', 'nDCG@10' (default DEFAULT_METRICS, the model card's table). */
  metrics?: readonly string[] | undefined;
  /** Relevance from which a judgement counts as relevant, as trec_eval's `-l` (default 1); see evaluate(). */
  minRelevance?: number | undefined;
  /** Encoder and index device (default 'cpu'). */
  device?: Device | undefined;
  /** Index storage (default float32 on the CPU, float16 on CUDA). */
  dtype?: Dtype | undefined;
  /** Encoder batch size (texts per ONNX Runtime call). */
  batchSize?: number | undefined;
  /** ONNX Runtime threads and Hub access, as for `Encoder.load`. */
  threads?: number | undefined;
  /** Never touch the network, as for `Encoder.load`. */
  offline?: boolean | undefined;
  /** Hub revision of the model, as for `Encoder.load`. */
  revision?: string | undefined;
  /** Root of the embedding cache (default: `embeddings` in $CAMEMBED_CACHE, else $XDG_CACHE_HOME/camembed, else ~/.cache/camembed). */
  cacheDir?: string | undefined;
  /** Passages per cache chunk (default 16,384). */
  chunkRows?: number | undefined;
  /** Also write the run here in TREC format. */
  runFile?: string | undefined;
  /** The run file's tag column (default 'camembed'). */
  runTag?: string | undefined;
  /** Stops after the encoder's batch, the index's chunk or the query batch in progress (rejecting); a later call resumes from the cache. */
  signal?: AbortSignal | undefined;
  /** Draw progress bars on stderr (only when it is a TTY). */
  progress?: boolean | undefined;
  /** Called as passages are encoded (after each cache chunk). */
  onEncodeProgress?: ((progress: EncodeProgress) => void) | undefined;
}

/** What evaluateRetrieval measured. */
export interface RetrievalEvaluation {
  /** `{ [metric]: mean }` over the qrels queries with a relevant passage. */
  metrics: Record<string, number>;
  /** The relevance from which a passage counted as relevant. */
  minRelevance: number;
  /** Passages in the collection. */
  passages: number;
  /** Passages whose vectors came from the cache. */
  cachedPassages: number;
  /** Queries in the queries file. */
  queries: number;
  /** Queries the metrics average over: those of the qrels with a relevant passage. */
  evaluatedQueries: number;
  /** Queries of the qrels (with a relevant passage) that have no text in the queries file: they score 0. */
  queriesWithoutText: number;
  /** Passages retrieved per query: the k asked for, or the passages in the collection where fewer. */
  k: number;
  /** The k asked for (options.k, else its default). */
  requestedK: number;
  /** Wall-clock seconds of each stage. */
  seconds: { checkCollection: number; encodeCollection: number; buildIndex: number; encodeQueries: number; search: number; total: number };
  /** Passages encoded per second in this call (null when all came from the cache). */
  passagesPerSecond: number | null;
  /** The embedding cache folder of this collection and model; null for a pipe's, whose folder is removed before this returns. */
  cacheDir: string | null;
  /** Where the encoder and index ran: 'cpu' or 'cuda:<index>'. */
  device: Device;
}

export function defaultEmbeddingCacheDir(): string {
  return path.join(camembedCacheDir(), 'embeddings');
}

const QUERY_BATCH = 256;

/**
 * sha256 of the model folder's JSON files, at its root and in its module folders (1_Pooling/...):
 * the tokenizer, the default prompt and the pooling settings change the vectors without touching
 * the ONNX graph, so they belong in the cache's key. Not the converter's record beside its graph
 * (onnx/model.onnx.source.json): it holds its inputs' modification times, which a copied folder
 * changes, and the graph is keyed by its content (graphIdentity).
 */
async function modelSettingsDigest(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const jsonFiles = async (folder: string) => (await fs.promises.readdir(folder)).filter((f) => f.endsWith('.json') && !f.endsWith('.source.json')).sort();
  const folders = ['', ...(await fs.promises.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort()];
  for (const folder of folders) {
    for (const name of await jsonFiles(path.join(dir, folder))) {
      const file = path.join(folder, name);
      hash.update(`${file}\0`).update(await fs.promises.readFile(path.join(dir, file))).update('\0');
    }
  }
  return hash.digest('hex');
}

/**
 * The ONNX graph and the external data files it names (camembed's converter keeps every weight in
 * one) by content, as fileIdentity sees files: a moved or copied model keeps its cache, and other
 * weights under the same graph (a graph names its data file, not what it holds) get a fresh one.
 * 0.5 s for CamemBERT-base's 440 MB here (bench/RESULTS-eval.md), against hours of encoding.
 */
async function graphIdentity(graph: string): Promise<FileIdentity[]> {
  const files = [graph, ...externalDataLocations(graph).map((location) => path.resolve(path.dirname(graph), location))];
  const identities: FileIdentity[] = [];
  for (const file of files) identities.push(await fileIdentity(file));
  return identities;
}

/**
 * Reorders, in place, each run of equal scores of a search's ranking (ties by collection row) as
 * trec_eval and evaluate() order them (compareTiedDocids: docid descending), so that the run file, the
 * metrics printed and trec_eval on the run file all rank alike.
 */
function tiesAsTrecEval(docids: string[], scores: ArrayLike<number>): void {
  for (let start = 0; start < docids.length;) {
    let end = start + 1;
    while (end < docids.length && scores[end] === scores[start]) end++;
    if (end - start > 1) docids.splice(start, end - start, ...docids.slice(start, end).sort(compareTiedDocids));
    start = end;
  }
}

const RETRIEVAL_OPTIONS = namesOf<RetrievalEvaluationOptions>({
  model: true, collection: true, queries: true, qrels: true, k: true, metrics: true, minRelevance: true, device: true, dtype: true,
  batchSize: true, threads: true, offline: true, revision: true, cacheDir: true, chunkRows: true, runFile: true, runTag: true,
  signal: true, progress: true, onEncodeProgress: true,
});

/**
 * `camembed eval` in code: encodes the collection (cached on disk, resumable), searches every query
 * with exact top-k and scores the run against the qrels (see evaluate()).
 */
export async function evaluateRetrieval(options: RetrievalEvaluationOptions): Promise<RetrievalEvaluation> {
  requireObject('options', options, RETRIEVAL_OPTIONS);
  const signal = optionalAbortSignal('options.signal', options.signal);
  const started = Date.now();
  const metrics = options.metrics === undefined ? DEFAULT_METRICS : options.metrics;
  if (!Array.isArray(metrics) || metrics.length === 0) {
    throw new TypeError(`options.metrics must be a non-empty array of metric names such as 'MRR@10', got ${describeValue(metrics)}`);
  }
  const maxCutoff = Math.max(...metrics.map((m) => parseMetric(m).k));
  const k = optionalPositiveInteger('options.k', options.k) ?? Math.max(1000, maxCutoff);
  if (k < maxCutoff) throw new RangeError(`options.k (${k}) must be at least the largest metric cutoff (${maxCutoff})`);
  const minRelevance = checkMinRelevance(options.minRelevance);
  // Every option's type now: the encoder, the index and the run file take theirs only after the
  // files are read, the model is loaded, or (dtype, onEncodeProgress) the collection is encoded.
  requireString('options.model', options.model);
  // A search on CUDA takes k <= INDEX_CUDA_MAX_K: found at the first search, after the whole collection was encoded.
  if (parseDevice(options.device) >= 0 && k > INDEX_CUDA_MAX_K) {
    throw new RangeError(options.k !== undefined ? `options.k must be <= ${INDEX_CUDA_MAX_K} on CUDA, got ${k}`
      : `options.metrics: a cutoff of ${maxCutoff} needs k >= ${maxCutoff}, but a search on CUDA takes k <= ${INDEX_CUDA_MAX_K}`);
  }
  optionalOneOf('options.dtype', options.dtype, DTYPES);
  for (const key of ['batchSize', 'threads', 'chunkRows'] as const) optionalPositiveInteger(`options.${key}`, options[key]);
  for (const key of ['offline', 'progress'] as const) optionalBoolean(`options.${key}`, options[key], false);
  for (const key of ['revision', 'cacheDir', 'runFile'] as const) optionalString(`options.${key}`, options[key]);
  if (options.runTag !== undefined) {
    requireToken('options.runTag', options.runTag);  // TrecRunWriter's rule, under this option's name
    if (options.runFile === undefined) throw new TypeError('options.runTag names the run in options.runFile, which is not given');
  }
  optionalFunction('options.onEncodeProgress', options.onEncodeProgress);
  for (const key of ['collection', 'queries', 'qrels'] as const) {
    if (!fs.existsSync(requireString(`options.${key}`, options[key]))) throw new Error(`${key} file not found: ${options[key]}`);
  }
  // Read the small inputs first: a malformed qrels file should not wait for hours of encoding.
  const qrels = await readQrels(options.qrels);
  const evaluatedQids = evaluatedQueries(qrels, minRelevance);
  if (evaluatedQids.length === 0) {
    throw new RangeError(`${options.qrels}: no query with a relevant document (relevance >= ${minRelevance}): nothing to evaluate`);
  }
  const queries = await readTsvEntries(options.queries);
  if (queries.length === 0) throw new Error(`${options.queries}: no queries`);
  // Files that do not go together (train qrels, dev queries) would score 0 after days of encoding.
  const queryIds = new Set(queries.map(([id]) => id));
  if (!evaluatedQids.some((qid) => queryIds.has(qid))) {
    throw new Error(`none of the ${counted(evaluatedQids.length, 'query', 'queries')} ${options.qrels} judges relevant is among the ` +
      `${queries.length} of ${options.queries} (ids such as ${JSON.stringify(evaluatedQids[0])} and ${JSON.stringify(queries[0][0])}): ` +
      'are these files of the same dataset and split?');
  }

  const encoder = await Encoder.load(options.model, {
    device: options.device, batchSize: options.batchSize, threads: options.threads, offline: options.offline, revision: options.revision,
    signal,
  });
  const bar = (label: string, unit: 'bytes' | 'items', initial = 0) => (options.progress ? createProgressBar({ label, unit, initial }) : null);
  let index: VectorIndex | null = null;
  let toRelease: EncodedCollection | null = null;  // a pipe's vectors: removed whatever happens
  let writer: TrecRunWriter | null = null;
  try {
    // Opened first: a run file that cannot be written fails now, not after the collection is encoded.
    writer = options.runFile !== undefined ? await TrecRunWriter.open(options.runFile, { tag: options.runTag }) : null;

    // 1. Passages -> cached embedding chunks.
    const identity = {  // before the clock starts: the graph's hash is no part of the collection's check
      format: 1, onnx: await graphIdentity(encoder.onnxPath), settings: await modelSettingsDigest(encoder.modelDir), maxLength: encoder.maxLength,
    };
    let t = Date.now();
    // The collection is checked through, then encoded: a bar and a time each.
    const stage = { name: null as EncodeProgress['stage'] | null, bar: null as ProgressBar | null, checkSeconds: 0 };
    const encoded = toRelease = await encodeCollection({
      collection: options.collection,
      cacheDir: options.cacheDir ?? defaultEmbeddingCacheDir(),
      identity,
      encoder,
      chunkRows: options.chunkRows,
      signal,
      onProgress: (p) => {
        if (p.stage !== stage.name) {
          stage.bar?.finish();
          if (stage.name === 'check') {  // a finished cache reports 'encode' only: nothing was checked
            stage.checkSeconds = (Date.now() - t) / 1000;
            t = Date.now();
          }
          stage.name = p.stage;
          stage.bar = bar(p.stage === 'check' ? 'check collection' : 'encode passages', 'bytes', p.bytes);  // a resume starts past 0
        }
        stage.bar?.update(p.bytes, p.totalBytes);
        options.onEncodeProgress?.(p);
      },
    });
    stage.bar?.finish();
    const encodeSeconds = (Date.now() - t) / 1000;

    // 2. Chunks -> index; index ids are row numbers into encoded.ids.
    signal?.throwIfAborted();
    t = Date.now();
    index = new VectorIndex({ dim: encoded.dim, dtype: options.dtype, device: options.device });
    for await (const chunk of encoded.chunks()) {
      signal?.throwIfAborted();  // between chunks, not once all are read (27.2 GB for mMARCO-fr)
      index.add({ data: chunk.vectors, rows: chunk.rows, dim: encoded.dim });
    }
    const indexSeconds = (Date.now() - t) / 1000;
    const retrieved = Math.min(k, index.size);  // what each search returns: a small collection clamps k

    // 3. Queries, a batch at a time: encode, search, record the run.
    const run: Run = Object.create(null);
    const keep = Math.min(retrieved, maxCutoff); // evaluate() looks no deeper than the largest cutoff
    let encodeQueriesSeconds = 0, searchSeconds = 0;
    const searchBar = bar('search queries', 'items');
    for (let first = 0; first < queries.length; first += QUERY_BATCH) {
      signal?.throwIfAborted();
      const batch = queries.slice(first, first + QUERY_BATCH);
      t = Date.now();
      const embedded = await encoder.encode(batch.map(([, text]) => text), { signal });
      encodeQueriesSeconds += (Date.now() - t) / 1000;
      t = Date.now();
      const found = await index.search(embedded, { k, signal });
      searchSeconds += (Date.now() - t) / 1000;
      for (let q = 0; q < batch.length; q++) {
        const scores = found.scores.subarray(q * found.k, (q + 1) * found.k);
        const docids = Array.from(found.ids.subarray(q * found.k, (q + 1) * found.k), (row) => encoded.ids[Number(row)]);
        tiesAsTrecEval(docids, scores);
        await writer?.write(batch[q][0], docids, scores);
        const ranked: Record<string, number> = Object.create(null);
        for (let r = 0; r < keep; r++) ranked[docids[r]] = scores[r];
        run[batch[q][0]] = ranked;
      }
      searchBar?.update(Math.min(first + QUERY_BATCH, queries.length), queries.length);
    }
    searchBar?.finish();
    await writer?.close();
    writer = null;

    const encodedRows = encoded.rows - encoded.cachedRows;
    return {
      metrics: evaluate(run, qrels, metrics, { minRelevance }),
      minRelevance,
      passages: encoded.rows,
      cachedPassages: encoded.cachedRows,
      queries: queries.length,
      evaluatedQueries: evaluatedQids.length,
      queriesWithoutText: evaluatedQids.filter((qid) => !(qid in run)).length,
      k: retrieved,
      requestedK: k,
      seconds: {
        checkCollection: stage.checkSeconds, encodeCollection: encodeSeconds, buildIndex: indexSeconds, encodeQueries: encodeQueriesSeconds,
        search: searchSeconds, total: (Date.now() - started) / 1000,
      },
      passagesPerSecond: encodedRows > 0 ? encodedRows / encodeSeconds : null,
      cacheDir: encoded.kept ? encoded.dir : null,
      device: encoder.device,
    };
  } finally {
    await writer?.abort();  // a run that failed leaves no .partial file
    await toRelease?.release();
    index?.dispose();
    await encoder.dispose();
  }
}

// `camembed eval`: retrieval quality of a model on MS MARCO-format data (the model card's table).
import * as fs from 'fs';

import { followLinks } from '../atomic-file';
import { resolveDevice } from '../devices';
import { checkOnnxRuntimeDevice, DEFAULT_MODEL } from '../encoder';
import { EncodeInterrupted } from '../eval/embedding-cache';
import { DEFAULT_METRICS, parseMetric } from '../eval/metrics';
import { defaultEmbeddingCacheDir, evaluateRetrieval, RetrievalEvaluation } from '../eval/retrieval';
import { counted } from '../validate';
import { holdsLock, LockHeld } from '../lock-file';
import { INDEX_CUDA_MAX_K } from '../vector-index';
import {
  CliInterrupted, CliUsageError, ENCODER_BATCH_SIZE_OPTION, helpText, modelFilesAt, namesStandardOutput, onInterrupt, OptionSpec, parseCommand, requireDevice, requireFileOption,
  requireIndexK, requireModel, requireNotAnInput, requireOutputFile, THREADS_OPTION,
} from './args';

export const summary = 'score a model on MS MARCO- or BEIR-format data: MRR@10, nDCG@10, MAP@10, Recall@k';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model folder or Hub id', default: DEFAULT_MODEL },
  collection: { type: 'string', help: 'passages, id<TAB>text per line (required)' },
  queries: { type: 'string', help: 'queries, id<TAB>text per line (required)' },
  qrels: { type: 'string', help: "judgements: TREC 'qid 0 docid rel', 'qid<TAB>docid', or BEIR's qrels/*.tsv (required)" },
  k: { type: 'integer', help: 'passages retrieved per query (default: 1000, or the largest metric cutoff above that)' },
  metrics: { type: 'string', help: 'comma-separated metrics (MRR, nDCG, MAP, Recall, P at a cutoff)', default: DEFAULT_METRICS.join(',') },
  'min-relevance': { type: 'integer', help: "relevance from which a judgement is relevant for MRR, MAP, Recall, P (trec_eval's -l; nDCG keeps graded gains)", default: 1 },
  device: { type: 'device', help: "'cpu', 'cuda' or 'cuda:N' for the encoder and the index", default: 'cpu' },
  dtype: { type: 'string', help: "index storage, 'float32' or 'float16' (default: float32 on cpu, float16 on cuda)" },
  'batch-size': ENCODER_BATCH_SIZE_OPTION,
  threads: THREADS_OPTION,
  offline: { type: 'boolean', help: 'use only the local Hugging Face cache' },
  revision: { type: 'string', help: 'branch, tag or commit hash of a Hub model (default: main)' },
  cache: { type: 'string', help: 'embedding cache folder (an interrupted run resumes from it)', default: defaultEmbeddingCacheDir() },
  run: { type: 'string', help: 'also write the run in TREC format to this file' },
  json: { type: 'boolean', help: 'print only the JSON result' },
  help: { type: 'boolean', help: 'show this help' },
};

const USAGE = 'camembed eval --collection collection.tsv --queries queries.tsv --qrels qrels.tsv [options]';

function formatTable(result: RetrievalEvaluation): string {
  const names = Object.keys(result.metrics);
  const width = Math.max(6, ...names.map((n) => n.length));
  const rows = names.map((n) => `${n.padEnd(width)}  ${(100 * result.metrics[n]).toFixed(2).padStart(6)}`);
  const s = result.seconds;
  const k = result.k < result.requestedK ? `${result.k} (${result.requestedK} asked, clamped to the ${counted(result.passages, 'passage')})` : result.k;
  return [
    `${'metric'.padEnd(width)}  ${'x 100'.padStart(6)}`,
    ...rows,
    '',
    `${counted(result.queries, 'query', 'queries')} searched, ${result.evaluatedQueries} evaluated (judged with a passage of relevance >= ${result.minRelevance}), ` +
      `${counted(result.passages, 'passage')} (${result.cachedPassages} from the cache), k = ${k}, device ${result.device}`,
    `time: check passages ${s.checkCollection.toFixed(1)} s, encode passages ${s.encodeCollection.toFixed(1)} s` +
      (result.passagesPerSecond === null ? '' : ` (${result.passagesPerSecond.toFixed(1)} passages/s)`) +
      `, index ${s.buildIndex.toFixed(1)} s, encode queries ${s.encodeQueries.toFixed(1)} s, search ${s.search.toFixed(1)} s, total ${s.total.toFixed(1)} s`,
  ].join('\n');
}

export async function run(argv: string[]): Promise<void> {
  const parsed = parseCommand(argv, spec, USAGE);
  if (parsed === null) return;
  const { options, positional } = parsed;
  if (positional.length > 0) throw new CliUsageError(`unexpected argument '${positional[0]}'`);
  const inputs = ['collection', 'queries', 'qrels'];
  for (const name of inputs) {
    if (options[name] === undefined) throw new CliUsageError(`--${name} is required\n\n${helpText(USAGE, spec)}`);
  }
  const device = options.device as string;
  const dtype = options.dtype as string | undefined;
  if (dtype !== undefined && dtype !== 'float32' && dtype !== 'float16') {
    throw new CliUsageError(`--dtype must be float32 or float16, got '${dtype}'`);
  }
  const metrics = (options.metrics as string).split(',').map((m) => m.trim()).filter((m) => m !== '');
  if (metrics.length === 0) throw new CliUsageError('--metrics needs at least one metric');
  let maxCutoff = 0;
  for (const m of metrics) {
    try {
      maxCutoff = Math.max(maxCutoff, parseMetric(m).k);
    } catch (err) {
      throw new CliUsageError(`--metrics: ${(err as Error).message}`);
    }
  }
  // Not given: evaluateRetrieval's default, enough for every metric.
  const k = options.k as number | undefined;
  if (k !== undefined && k < maxCutoff) throw new CliUsageError(`--k (${k}) must be at least the largest metric cutoff (${maxCutoff})`);
  // A search on CUDA takes k <= INDEX_CUDA_MAX_K (evaluateRetrieval checks it too, naming its options).
  if (k !== undefined) requireIndexK(k, device);
  else if (device !== 'cpu' && maxCutoff > INDEX_CUDA_MAX_K) {
    throw new CliUsageError(`--metrics: a cutoff of ${maxCutoff} needs k >= ${maxCutoff}, but a search with --device ${device} takes k <= ${INDEX_CUDA_MAX_K}`);
  }
  await requireDevice(device, resolveDevice, checkOnnxRuntimeDevice);  // as the index and the encoder check it
  for (const name of inputs) requireFileOption(name, options[name] as string, 'eval reads files, not standard input', true);
  // The table appended to the collection (`>> collection.tsv`) would change it: a fresh cache, days of encoding.
  requireNotAnInput('standard output', fs.fstatSync(1), inputs.map((name) => options[name] as string));
  requireModel(options.model as string, options.revision as string | undefined);
  const cache = options.cache as string;
  if (fs.existsSync(cache) && !fs.statSync(cache).isDirectory()) throw new CliUsageError(`--cache ${cache} is a file, not a folder`);
  // Before hours of encoding: the run file can be written.
  if (options.run !== undefined) {
    // Standard output carries the table and the JSON: not the run too, by '-' (a file '-' otherwise) or another name.
    if (namesStandardOutput(options.run as string)) {
      throw new CliUsageError(`--run must be a file, not standard output (${options.run as string}): the table and the JSON go there`);
    }
    requireOutputFile('run', options.run as string, [...inputs.map((name) => options[name] as string), ...modelFilesAt(options.model as string)],
      'a run file replaces only a file');
  }

  // Ctrl-C or SIGTERM: finish the encoder's batch and save what is encoded, so that the next run
  // resumes from it; a second one: quit now, leaving no temporary file (nor the run's .partial).
  const controller = new AbortController();
  let stoppedBy: NodeJS.Signals = 'SIGINT';
  // The file a link names (a run is written through links, as TrecRunWriter does): its .partial is removed on a second Ctrl-C.
  const runFile = options.run === undefined ? undefined : await followLinks(options.run as string);
  // Only this run's .partial: another run's (that holds the lock of the same run file) is its own.
  const endInterrupt = onInterrupt(() => { if (runFile !== undefined && holdsLock(`${runFile}.lock`)) fs.rmSync(`${runFile}.partial`, { force: true }); }, (signal) => {
    process.stderr.write(`\ncamembed eval: stopping after the current step (${signal === 'SIGINT' ? 'Ctrl-C' : signal} again to quit now)\n`);
    stoppedBy = signal;
    controller.abort();
  });
  let result: RetrievalEvaluation;
  let encodedRows = 0;  // passages in the cache, as last reported
  try {
    result = await evaluateRetrieval({
      model: options.model as string,
      collection: options.collection as string,
      queries: options.queries as string,
      qrels: options.qrels as string,
      k,
      metrics,
      minRelevance: options['min-relevance'] as number,
      device: device as 'cpu',
      dtype: dtype as 'float32' | 'float16' | undefined,
      batchSize: options['batch-size'] as number | undefined,
      threads: options.threads as number | undefined,
      offline: options.offline === true,
      revision: options.revision as string | undefined,
      cacheDir: cache,
      runFile,
      signal: controller.signal,
      progress: !options.json,
      onEncodeProgress: ({ rows }) => { encodedRows = rows; },
    });
  } catch (err) {
    // Another eval writes the same run file, or encodes the same collection into the same cache.
    if (err instanceof LockHeld) throw new CliUsageError(err.message);
    if (controller.signal.aborted) {
      // After the encoding (the index, the queries): a pipe's passages went with its temporary folder (lib/eval/embedding-cache.ts).
      const cached = fs.statSync(options.collection as string, { throwIfNoEntry: false })?.isFile() ?? true;
      throw new CliInterrupted(err instanceof EncodeInterrupted ? `${err.message}${err.kept ? '; run the same command again to continue' : ''}`
        : encodedRows === 0 ? 'interrupted before any passage was encoded'
        : cached ? 'interrupted (the encoded passages are cached: the same command starts again from them)'
          : "interrupted (a pipe's passages are not kept, as no later run could find them: the next run encodes them again)", stoppedBy);
    }
    throw err;
  } finally {
    await endInterrupt();
  }
  if (result.queriesWithoutText > 0) {
    const [have, score] = result.queriesWithoutText === 1 ? ['has', 'it scores'] : ['have', 'they score'];
    process.stderr.write(`camembed eval: ${counted(result.queriesWithoutText, 'judged query', 'judged queries')} ${have} no text in ${options.queries as string}; ${score} 0\n`);
  }
  const json = JSON.stringify(result, null, 2);
  process.stdout.write(options.json ? `${json}\n` : `${formatTable(result)}\n\n${json}\n`);
}

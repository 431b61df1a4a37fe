// The sentence encoder: what sentence-transformers' `model.encode(texts, normalize_embeddings=True)`
// returns, computed by one ONNX Runtime session and the native mean-pool + L2-normalise kernel.
//
// texts ─tokenizer─> ids ─sort by length, split with the least padding (planBatches)─> padded batches
//       ─ONNX Runtime (in a worker thread)─> last_hidden_state ─native mean pool + normalise─> rows, put back in caller order
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import * as util from 'util';
import * as ort from 'onnxruntime-node';
import { watchAbort } from './abort';
import { Device, onnxRuntimeDevice } from './devices';
import { HiddenStates, MAX_RESULT_VALUES, meanPoolNormalize, meanPoolNormalizeAsync } from './kernels';
import { convertedGraph, convertToOnnx, defaultGraphPath, requireModelSource, resolveModel } from './model';
import type { DownloadProgress } from './model';
import { POOLING_MODULE as POOLING, PROMPTS_FILE, ST_CONFIG_FILES } from './model/local';
import { DataType, encodeModel } from './model/onnx-writer';
import { requireStringArray, SentenceTokenizer } from './tokenizer';
import {
  namesOf, optionalAbortSignal, optionalBoolean, optionalFunction, optionalObject, optionalPositiveInteger, optionalString, optionalThreads,
  requireInteger, requirePositiveInteger, requireTypedArray, typeName,
} from './validate';
import { readJsonFile, readJsonValue } from './json-file';
import { configInteger, readModelConfig } from './model/config';
import { OnnxWorker, WorkerTensor } from './onnx-worker';

/** The model Encoder.load loads when given none (a Hub id). */
export const DEFAULT_MODEL = 'antoinelouis/biencoder-camembert-base-mmarcoFR';

/**
 * `work`, or a rejection with the reason of the first of `signals` to abort, as soon as it does (the
 * work itself goes on to its next check); the call stops watching them all when either comes first
 * (work that never ends, a source waiting for ever, leaves no listener on the signals that did not abort).
 */
function rejectOnAbort<T>(work: Promise<T>, signals: readonly AbortSignal[]): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const stops: (() => void)[] = [];
    let watching = true;
    const stopWatching = () => {
      watching = false;
      for (const stop of stops.splice(0)) stop();  // each once
    };
    for (const signal of signals) {
      if (watching) stops.push(watchAbort(signal, () => {  // at once for a signal that has aborted
        stopWatching();
        reject(signal.reason);
      }));
    }
    work.then(resolve, reject).finally(stopWatching);
  });
}

/**
 * The items of `source`, ending with the reason of the first of `signals` to abort as soon as it does,
 * also while the source is making its next item (standard input or a socket can wait for ever): the
 * source is then closed without waiting (an async generator busy making an item closes once it has made it).
 */
async function* untilAborted<T>(source: AsyncIterable<T> | Iterable<T>, signals: readonly AbortSignal[]): AsyncGenerator<T, void, undefined> {
  // A sync iterable as for-await takes it (its values awaited).
  const iterator = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : (async function* () { yield* source; })();
  let reading = false;  // the source is making an item
  let ended = false;
  try {
    for (;;) {
      for (const signal of signals) signal.throwIfAborted();
      reading = true;
      // Watched only while reading: a stream dropped between items holds no listener on a long-lived signal.
      const step = await rejectOnAbort(Promise.resolve(iterator.next()), signals);
      reading = false;
      if (step.done === true) {
        ended = true;
        return;
      }
      yield step.value;
    }
  } finally {
    // Stopped between items: closed as for-await closes it. A source that threw is left, as for-await leaves it.
    if (!ended && !reading) await iterator.return?.();
    else if (!ended && signals.some((signal) => signal.aborted)) void Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
}

const disposedError = () => new Error('this Encoder has been disposed');

/** Options of Encoder.load. */
export interface EncoderOptions {
  /** 'cpu' (default), or 'cuda' / 'cuda:<n>' through onnxruntime-node's CUDA execution provider. */
  device?: Device | undefined;
  /** ONNX Runtime intra-op threads, at most 1024 (default: all cores, os.availableParallelism()). */
  threads?: number | undefined;
  /** Truncation length in tokens, `<s>`/`</s>` included (default: max_seq_length, 128 here). */
  maxLength?: number | undefined;
  /** Most texts per ONNX Runtime call (default 32). */
  batchSize?: number | undefined;
  /** Most padded tokens (rows x longest row) per call (default batchSize x maxLength). */
  maxBatchTokens?: number | undefined;
  /** Hugging Face cache folder for Hub ids (default: the standard HF cache). */
  cacheDir?: string | undefined;
  /** Never touch the network; use only the cache. */
  offline?: boolean | undefined;
  /** Hub ids: the branch, tag or commit hash to load (default 'main'); pin a commit in production. */
  revision?: string | undefined;
  /**
   * Called as a Hub model's files download (resolveModel's `onProgress`): for logs where stderr is
   * no terminal, which gets no progress bar. Not called for a local folder or a model already cached.
   */
  onProgress?: ((progress: DownloadProgress) => void) | undefined;
  /**
   * ONNX Runtime's worker threads spin-wait between operators (default false; ORT's own default is
   * true). Spinning threads take the cores this thread tokenizes, plans and pools on: on a 2-core
   * machine batches and concurrent queries were slower with it (bench/RESULTS-encoder.md, 2026-11-30).
   * `true` can lower one query's latency on cores that nothing else uses.
   */
  spinWait?: boolean | undefined;
  /**
   * Stops the load: a Hub download at once (its partial file stays in the cache, to resume from);
   * a conversion to ONNX or ONNX Runtime's session creation once it is done. Rejects with `signal.reason`.
   */
  signal?: AbortSignal | undefined;
}

/** Options of Encoder.encode. */
export interface EncodeOptions {
  /** L2-normalise each vector (default true), as `normalize_embeddings=True`. */
  normalize?: boolean | undefined;
  /** Called after each batch with the number of texts done so far. */
  onProgress?: ((progress: { done: number; total: number }) => void) | undefined;
  /**
   * Rejects the call with `signal.reason` as soon as it aborts; no later batch of it runs (the one
   * ONNX Runtime is running, if any, finishes: an inference cannot be interrupted).
   */
  signal?: AbortSignal | undefined;
}

/** Options of Encoder.encodeStream. */
export interface EncodeStreamOptions {
  /** L2-normalise each vector (default true), as `normalize_embeddings=True`. */
  normalize?: boolean | undefined;
  /** Texts encoded together (sorted by length within the chunk); default 4096. */
  chunkSize?: number | undefined;
  /** Called after each batch with the number of texts done since the stream began. */
  onProgress?: ((progress: { done: number }) => void) | undefined;
  /** Ends the stream with `signal.reason` (as encode's `signal`), closing the source iterator. */
  signal?: AbortSignal | undefined;
}

const ENCODER_OPTIONS = namesOf<EncoderOptions>({
  device: true, threads: true, maxLength: true, batchSize: true, maxBatchTokens: true, cacheDir: true, offline: true, revision: true,
  onProgress: true, spinWait: true, signal: true,
});
const ENCODE_OPTIONS = namesOf<EncodeOptions>({ normalize: true, onProgress: true, signal: true });
const ENCODE_STREAM_OPTIONS = namesOf<EncodeStreamOptions>({ normalize: true, chunkSize: true, onProgress: true, signal: true });

/** `rows` vectors of `dim` float32, row-major, in the order of the input texts. */
export interface Embeddings {
  /** rows x dim values, row-major. */
  data: Float32Array;
  /** Vectors (one per text). */
  rows: number;
  /** Values per vector. */
  dim: number;
}

/** similarity()'s result: a rows x cols matrix of cosines, row-major. */
export interface SimilarityMatrix {
  /** rows x cols cosines: data[i * cols + j] compares a's row i with b's row j. */
  data: Float32Array;
  /** a.rows */
  rows: number;
  /** b.rows */
  cols: number;
}

/** A padded batch: rows of the caller's input, padded to `seq` tokens (the longest of them). */
export interface Batch {
  rows: number[];
  seq: number;
}

/**
 * What one ONNX Runtime call costs beyond its padded tokens, in tokens. On CamemBERT-base with 2
 * threads 8 to 64 gave the same queries/s and 0 (one call per text) half (bench/RESULTS-encoder.md).
 */
const CALL_COST_TOKENS = 16;

/**
 * Up to this many hidden-state floats (4 MiB, ~0.08 ms of pooling: bench/RESULTS.md) the pool runs inline, saving the
 * libuv thread-pool hop (10-40 us here); larger batches are pooled off the event loop.
 */
const INLINE_POOL_FLOATS = 1 << 20;

/**
 * Characters tokenized per event-loop turn, all calls together (~2 us a character: ~9 ms; 28-75 ms on our loaded VM). A
 * count of texts bounded nothing (64 passages held the loop 0.24 s: bench/RESULTS-encoder.md); a time budget split the
 * small calls of one moment into several turns, and so into several batches, when the machine was slow. A text whose
 * tokenizing would take more at once (a word that long; French text needs its first 1,024) is tokenized in the worker
 * thread (one word of 1M characters held the loop 4-7 s).
 */
const TOKENIZE_TURN_CHARS = 4096;

/**
 * Splits the rows, sorted longest first, into runs of at most batchSize texts and maxBatchTokens
 * padded tokens (rows x longest row), choosing the boundaries that cost the fewest padded tokens
 * plus CALL_COST_TOKENS per call (dynamic programming over the sorted lengths): a few long texts
 * get a batch of their own instead of 31 short ones being padded to their length.
 * O(texts x distinct lengths within one batch's reach), whatever batchSize. Exported for the benchmark's padding figures.
 */
export function planBatches(lengths: readonly number[], batchSize: number, maxBatchTokens: number): Batch[] {
  const n = lengths.length;
  // Longest first, equal lengths in input order: a counting sort of the token counts (integers up to
  // maxLength), where a comparison sort took most of the plan's time (bench/RESULTS-encoder.md).
  let longest = 0;
  for (const length of lengths) longest = Math.max(longest, length);
  // firstOf[longest - length]: where the next row of that length goes (at first, how many rows are longer).
  const firstOf = new Int32Array(longest + 2);
  for (const length of lengths) firstOf[longest - length + 1]++;
  for (let k = 1; k < firstOf.length; k++) firstOf[k] += firstOf[k - 1];
  const order = new Array<number>(n);
  for (let row = 0; row < n; row++) order[firstOf[longest - lengths[row]]++] = row;
  const sorted = order.map((row) => lengths[row]);
  // For each sorted row: the first row of its run of equal lengths, and how many rows of its length fit one batch.
  const runStart = new Int32Array(n);
  const fits = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    runStart[i] = i > 0 && sorted[i] === sorted[i - 1] ? runStart[i - 1] : i;
    fits[i] = Math.min(batchSize, Math.floor(maxBatchTokens / sorted[i]));
  }
  // cost[j]: the cheapest plan for the first j sorted rows; start[j]: where its last batch begins.
  const cost = new Float64Array(n + 1).fill(Infinity);
  const start = new Int32Array(n + 1);
  cost[0] = 0;
  for (let j = 1; j <= n; j++) {
    // The last batch [i, j) is padded to sorted[i]. Within a run of equal lengths the earliest start
    // that fits is as cheap as any later one (dropping the shortest row saves at least its length:
    // cost[i - 1] + sorted[i - 1] <= cost[i]), so each run offers one start.
    for (let i = j - 1; i >= 0; i = runStart[i] - 1) {
      const first = j - fits[i] > runStart[i] ? j - fits[i] : runStart[i];  // the earliest start in i's run that fits
      if (first > i) break;  // rows i..j-1 do not fit, nor do longer rows with them
      const c = cost[first] + (j - first) * sorted[i] + CALL_COST_TOKENS;
      if (c < cost[j]) {
        cost[j] = c;
        start[j] = first;
      }
    }
  }
  const batches: Batch[] = [];
  for (let j = n; j > 0; j = start[j]) {
    const rows = order.slice(start[j], j);
    batches.push({ rows, seq: lengths[rows[0]] });
  }
  return batches.reverse();
}

const TRANSFORMER = 'sentence_transformers.models.Transformer';
const NORMALIZE = 'sentence_transformers.models.Normalize';

/** What a model's modules set (readModules). */
interface ModuleSettings {
  /** The Transformer's max_seq_length (undefined or null: the model's limit). */
  maxSeqLength: unknown;
  /** Where maxSeqLength comes from, for messages. */
  maxSeqLengthSource: string;
  dim: number;
  /** Where dim comes from, for messages. */
  dimSource: string;
  /** modules.json ends in Normalize: vectors are unit length whatever `normalize` says. */
  normalizeModule: boolean;
  /** config_sentence_transformers.json's default prompt, put before every text ('' for none). */
  prompt: string;
  /** The pooling config's include_prompt: false leaves the prompt's tokens out of the mean. */
  includePrompt: boolean;
}

interface ModelLayout extends ModuleSettings {
  maxSeqLength: number;
  /** Longest input the position table allows (RoBERTa positions start after the padding id). */
  maxPositions: number;
}

/**
 * Reads modules.json (Transformer at the root, then Pooling, optionally Normalize), the Transformer's
 * settings file, the pooling config and config_sentence_transformers.json. Only mean pooling is implemented.
 */
function readModules(dir: string): ModuleSettings {
  const modulesFile = path.join(dir, 'modules.json');
  const modules = readJsonValue(modulesFile);
  if (!Array.isArray(modules)) throw new Error(`${modulesFile} must hold an array of modules`);
  const bad = modules.findIndex((m) => typeof m !== 'object' || m === null || Array.isArray(m));
  if (bad >= 0) throw new Error(`${modulesFile}: module ${bad} must be an object, got ${JSON.stringify(modules[bad])}`);
  const types = modules.map((m: Record<string, unknown>) => String(m.type));
  // sentence-transformers runs the modules in the order listed: another order (Normalize before Pooling) is no model it runs.
  const supported = [TRANSFORMER, POOLING, NORMALIZE];
  if (types.length < 2 || types.length > 3 || types.some((t, i) => t !== supported[i])) {
    throw new Error(`${modulesFile}: unsupported module list [${types.join(', ')}]; ` +
      `camembed supports a Transformer followed by mean Pooling (and optionally Normalize)`);
  }
  const [transformer, pooling] = modules as Record<string, unknown>[];
  if ((transformer.path ?? '') !== '') throw new Error(`${modulesFile}: the Transformer module must be at the model root`);

  // As sentence-transformers' Transformer.load: the first settings file present, else defaults.
  const stConfigFile = ST_CONFIG_FILES.map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
  const stConfig = stConfigFile === undefined ? {} : readJsonFile(stConfigFile);
  if (stConfig.do_lower_case === true) throw new Error(`${stConfigFile}: do_lower_case is not supported`);

  if (typeof pooling.path !== 'string') throw new Error(`${modulesFile}: the Pooling module has no path (the folder of its config.json)`);
  const poolingFile = path.join(dir, pooling.path, 'config.json');
  const poolingConfig = readJsonFile(poolingFile);
  // As sentence-transformers' Pooling(**config): pooling_mode_mean_tokens is true unless set, and a
  // pooling_mode string ('mean', 'cls', ...) replaces every pooling_mode_* flag. A flag that is not
  // false counts as set (shown with its value unless true), so only plain mean pooling passes.
  const poolingMode = poolingConfig.pooling_mode;
  const modes = poolingMode !== undefined && poolingMode !== null
    ? [typeof poolingMode === 'string' && poolingMode.toLowerCase() === 'mean'
      ? 'pooling_mode_mean_tokens' : `pooling_mode ${JSON.stringify(poolingMode)}`]
    : Object.entries({ pooling_mode_mean_tokens: true, ...poolingConfig })
      .filter(([key, value]) => key.startsWith('pooling_mode_') && value !== false)
      .map(([key, value]) => (value === true ? key : `${key} ${JSON.stringify(value)}`));
  if (modes.length !== 1 || modes[0] !== 'pooling_mode_mean_tokens') {
    throw new Error(`${poolingFile}: pooling [${modes.join(', ')}] is unsupported; camembed implements ` +
      `pooling_mode_mean_tokens only`);
  }
  // sentence-transformers reads include_prompt as a Python truth value (0 and null leave the prompt out,
  // the string "false" keeps it in): only true and false are taken here.
  const includePrompt = 'include_prompt' in poolingConfig ? poolingConfig.include_prompt : true;
  if (typeof includePrompt !== 'boolean') {
    throw new Error(`${poolingFile}: include_prompt must be true or false, got ${JSON.stringify(includePrompt)}`);
  }
  const dim = poolingConfig.word_embedding_dimension;
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 1) {
    throw new Error(`${poolingFile}: word_embedding_dimension must be a positive integer`);
  }
  const promptsFile = path.join(dir, PROMPTS_FILE);
  const promptConfig = fs.existsSync(promptsFile) ? readJsonFile(promptsFile) : {};
  const promptName = promptConfig.default_prompt_name;
  let prompt = '';
  if (promptName !== undefined && promptName !== null) {
    const prompts = promptConfig.prompts as Record<string, unknown> | undefined;
    const text = typeof promptName === 'string' ? prompts?.[promptName] : undefined;
    if (typeof text !== 'string') throw new Error(`${promptsFile}: default_prompt_name ${JSON.stringify(promptName)} is not one of its prompts`);
    prompt = text;
  }
  return {
    maxSeqLength: stConfig.max_seq_length, maxSeqLengthSource: `${stConfigFile}: max_seq_length`,
    dim, dimSource: `${poolingFile}: word_embedding_dimension`, normalizeModule: types.includes(NORMALIZE), prompt, includePrompt,
  };
}

/**
 * The model's settings: its modules' (readModules), or for a folder without modules.json (a plain
 * transformers model such as camembert-base) what sentence-transformers builds for one
 * (SentenceTransformer._load_auto_model): its Transformer with no settings file, then mean Pooling of
 * hidden_size values, no Normalize, no prompt. Then config.json's position table and the length limit.
 */
function readModelLayout(dir: string): ModelLayout {
  const config = readModelConfig(dir);  // its integers checked as the converter takes them (a fraction bounded maxLength by a fraction)
  const configFile = config.file;
  const modules: ModuleSettings = fs.existsSync(path.join(dir, 'modules.json')) ? readModules(dir) : {
    maxSeqLength: undefined, maxSeqLengthSource: '', dim: configInteger(config, 'hidden_size'),
    dimSource: `${configFile}: hidden_size`, normalizeModule: false, prompt: '', includePrompt: true,
  };
  const positions = (config.settings.max_position_embeddings ?? null) === null ? null : configInteger(config, 'max_position_embeddings');
  const padId = configInteger(config, 'pad_token_id', 1);
  // RoBERTa's positions start after the padding id: a text of n tokens takes pad_token_id + 1 .. pad_token_id + n.
  // BERT's (model_type 'bert', as the converter reads it) take 0 .. n - 1: the whole table.
  const firstPosition = config.settings.model_type === 'bert' ? 0 : padId + 1;
  const maxPositions = positions === null ? Number.MAX_SAFE_INTEGER : positions - firstPosition;
  if (maxPositions < 2) {
    throw new Error(firstPosition === 0 ? `${configFile}: max_position_embeddings ${positions} leaves no position for [CLS] and [SEP]` :
      `${configFile}: max_position_embeddings ${positions} leaves no position for <s> and </s> after pad_token_id ` +
      `${padId} (positions start after the padding id): pad_token_id must be at most max_position_embeddings - 3`);
  }

  // No max_seq_length (or null): sentence-transformers takes min(max_position_embeddings, the tokenizer's
  // model_max_length), kept to the position table: without model_max_length (no tokenizer_config.json) a RoBERTa's
  // 514 would be 2 more tokens than its table holds, which sentence-transformers fails on only when a text is that long.
  let { maxSeqLength, maxSeqLengthSource } = modules;
  if (maxSeqLength === undefined || maxSeqLength === null) {
    const tokenizerConfigFile = path.join(dir, 'tokenizer_config.json');
    const modelMax = fs.existsSync(tokenizerConfigFile) ? readJsonFile(tokenizerConfigFile).model_max_length : undefined;
    const limits = [positions, modelMax].filter((v): v is number => typeof v === 'number' && Number.isInteger(v));
    if (limits.length === 0) throw new Error(`${dir}: no max_seq_length (sentence_bert_config.json), max_position_embeddings or model_max_length`);
    maxSeqLength = Math.min(...limits, maxPositions);
    maxSeqLengthSource = `${dir}: min(max_position_embeddings, model_max_length)`;
  }
  if (typeof maxSeqLength !== 'number' || !Number.isInteger(maxSeqLength) || maxSeqLength < 2) {
    throw new Error(`${maxSeqLengthSource} must be an integer >= 2, got ${JSON.stringify(maxSeqLength)}`);
  }
  return { ...modules, maxSeqLength, maxSeqLengthSource, maxPositions };
}

/** ONNX Runtime's execution providers for a device index (-1: the CPU). */
const executionProviders = (index: number) => (index < 0 ? ['cpu'] : [{ name: 'cuda', deviceId: index }]);

/** CUDA devices whose ONNX Runtime provider started in this process. */
const cudaProvidersStarted = new Set<number>();

/**
 * The device index (-1: the CPU) for ONNX Runtime, `name` being the option that gave it (errors
 * name it: the CLI's --device). A CUDA device is checked as camembed can tell (onnxRuntimeDevice),
 * then its provider is started once per process on a one-node graph, so that one that cannot start
 * (onnxruntime-node without its CUDA binaries, no CUDA 12 or cuDNN 9) is an error before a model is
 * fetched, converted or loaded.
 */
export async function checkOnnxRuntimeDevice(device: unknown, name = 'options.device'): Promise<number> {
  const index = onnxRuntimeDevice(device, name);
  if (index < 0 || cudaProvidersStarted.has(index)) return index;
  const identity = encodeModel({
    irVersion: 8, opsets: [{ domain: '', version: 17 }], producerName: 'camembed', producerVersion: '0.1.0',
    graph: {
      name: 'provider-check', nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'] }], initializers: [],
      inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: [1] }], outputs: [{ name: 'y', elemType: DataType.FLOAT, shape: [1] }],
    },
  });
  try {
    await (await ort.InferenceSession.create(identity, { executionProviders: executionProviders(index) })).release();
  } catch (err) {
    throw new Error(`${name} is '${device}' but onnxruntime-node's CUDA execution provider could not start (it needs CUDA 12, cuDNN 9 ` +
      `and a GPU): ${(err as Error).message}. Install onnxruntime-node with its CUDA binaries (allow its install script, and leave ` +
      `out ONNXRUNTIME_NODE_INSTALL=skip), or set ${name} to 'cpu'.`);
  }
  cudaProvidersStarted.add(index);
  return index;
}

/**
 * Where the ONNX graph is: the model's own, else one camembed converted from its weights (at
 * defaultGraphPath, where `camembed convert` writes it too), converted again (same dtype and graph
 * kind) once the weights or config have changed (convertedGraph).
 */
async function onnxGraphOf(model: { dir: string; onnxPath: string | null; weightsPath: string | null }): Promise<string> {
  const stale = (graph: string) => model.weightsPath !== null && convertedGraph(graph, model.dir)?.current === false;
  if (model.onnxPath !== null && !stale(model.onnxPath)) return model.onnxPath;
  const output = defaultGraphPath(model.dir);  // for a Hub snapshot, in camembed's cache: never into the snapshot
  if (output !== model.onnxPath && fs.existsSync(output) && !stale(output)) return output;  // converted by an earlier load
  const before = [model.onnxPath, output].find((g): g is string => g !== null && fs.existsSync(g));
  const previous = before === undefined ? null : convertedGraph(before, model.dir);
  try {
    return await convertToOnnx(model.dir, { output, dtype: previous?.dtype, graph: previous?.graph });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
      const why = before === undefined ? `${model.dir} has weights but no ONNX graph`
        : `${before} was converted from other weights or another config.json than ${model.dir} holds now`;
      throw new Error(`${why}, and the converted graph cannot be written to ` +
        `${path.dirname(output)}: make that writable (for a Hub model: set CAMEMBED_CACHE to a writable folder), or ` +
        `convert it once with \`camembed convert\` into a writable folder and load that. (${(err as Error).message})`);
    }
    throw err;
  }
}

/** An encode() call, tokenized, whose rows wait for ONNX Runtime (Encoder.waiting). */
interface WaitingCall {
  texts: string[];
  ids: number[][];
  normalize: boolean;
  out: Float32Array;
  /** Its rows not run yet, batched by its own plan; the first batch may have lost rows to other calls' batches. */
  batches: number[][];
  /** Rows done. */
  done: number;
  onProgress: EncodeOptions['onProgress'];
  signal: AbortSignal | undefined;
  resolve: (result: Embeddings) => void;
  reject: (reason: unknown) => void;
}

/** A row of a batch: row `row` of `call`. */
interface BatchRow {
  call: WaitingCall;
  row: number;
}

/**
 * A sentence-transformers model (CamemBERT-base bi-encoder by default) on ONNX Runtime: texts in,
 * the vectors sentence-transformers' `encode(texts, normalize_embeddings=True)` gives out.
 * Make one with Encoder.load; dispose() releases it.
 */
export class Encoder {
  /** Vector length (768 for CamemBERT-base). */
  readonly dim: number;
  /** Truncation length in tokens. */
  readonly maxLength: number;
  /** The model's local folder (a snapshot folder of the Hub cache for a Hub id). */
  readonly modelDir: string;
  /** The ONNX graph ONNX Runtime runs (the model's own, or the one converted from its weights). */
  readonly onnxPath: string;
  /** Where the transformer runs: 'cpu' or 'cuda:<index>'. */
  readonly device: Device;
  /** Most texts per ONNX Runtime call. */
  readonly batchSize: number;
  /** Most padded tokens (rows x longest row) per ONNX Runtime call. */
  readonly maxBatchTokens: number;
  private readonly tokenizer: SentenceTokenizer;
  /** The ONNX Runtime session, in a worker thread: an inference would otherwise hold the event loop. */
  private session: OnnxWorker | null;
  private readonly inputType: 'int64' | 'int32';
  private readonly outputName: string;
  private readonly normalizeModule: boolean;
  private readonly prompt: string;
  /** Leading tokens left out of the mean (include_prompt: false): <s> and the prompt's. */
  private readonly promptTokens: number;
  /**
   * The tokenized encode() calls with rows left to run, in turn order. ONNX Runtime runs one batch at a
   * time (runBatches): the call at the front gets the next batch, then goes to the back, so a query made
   * during a large encode() waits for one batch of it, not for all of it.
   */
  private readonly waiting: WaitingCall[] = [];
  /** runBatches is running or about to: it takes the calls queued meanwhile too. */
  private runningBatches = false;
  /**
   * Tokenizing runs in event-loop turns of TOKENIZE_TURN_CHARS, shared by the calls waiting (calls tokenizing in turns of
   * their own would run back to back in one setImmediate phase: 50 calls of 64 texts stalled the loop 639 ms). Small
   * calls share a turn, so that their texts are ready together for one batch.
   */
  private tokenizingTurn: Promise<void> | null = null;
  /** Characters the current turn can still tokenize. */
  private tokenizingRoom = 0;
  /** encode() calls not finished yet: dispose() waits for them. */
  private readonly running = new Set<Promise<Embeddings>>();
  /** Set by dispose(): later encode() calls are refused; a second dispose() gets the same promise. */
  private disposing: Promise<void> | null = null;
  /** Aborted by dispose(): streams end at once, even while their source waits for its next text. */
  private readonly disposal = new AbortController();

  private constructor(fields: {
    dim: number; maxLength: number; modelDir: string; onnxPath: string; device: Device; batchSize: number;
    maxBatchTokens: number; tokenizer: SentenceTokenizer; session: OnnxWorker;
    inputType: 'int64' | 'int32'; outputName: string; normalizeModule: boolean; prompt: string; promptTokens: number;
  }) {
    this.dim = fields.dim;
    this.maxLength = fields.maxLength;
    this.modelDir = fields.modelDir;
    this.onnxPath = fields.onnxPath;
    this.device = fields.device;
    this.batchSize = fields.batchSize;
    this.maxBatchTokens = fields.maxBatchTokens;
    this.tokenizer = fields.tokenizer;
    this.session = fields.session;
    this.inputType = fields.inputType;
    this.outputName = fields.outputName;
    this.normalizeModule = fields.normalizeModule;
    this.prompt = fields.prompt;
    this.promptTokens = fields.promptTokens;
  }

  /** Loads a sentence-transformers folder or Hub id (default: antoinelouis/biencoder-camembert-base-mmarcoFR). */
  static async load(source: string = DEFAULT_MODEL, options: EncoderOptions = {}): Promise<Encoder> {
    requireModelSource(source);  // before the options: a bad source is the first thing to hear about
    const o = optionalObject('options', options, ENCODER_OPTIONS) as EncoderOptions;
    const deviceIndex = await checkOnnxRuntimeDevice(o.device);
    const label: Device = deviceIndex < 0 ? 'cpu' : `cuda:${deviceIndex}`;
    const threads = o.threads === undefined ? os.availableParallelism() : optionalThreads(o.threads);  // at most 1024, as the kernels' threads
    const batchSize = optionalPositiveInteger('options.batchSize', o.batchSize) ?? 32;
    // Their defaults and bounds come from the model, but their types (and maxLength's lower bound) are
    // checked before it is fetched.
    const maxLengthOption = o.maxLength === undefined ? undefined : requireInteger('options.maxLength', o.maxLength, -Infinity);
    if (maxLengthOption !== undefined && maxLengthOption < 2) {
      throw new RangeError(`options.maxLength must be between 2 (room for <s> and </s>) and the model's position table, got ${maxLengthOption}`);
    }
    const maxBatchTokensOption = o.maxBatchTokens === undefined ? undefined : requireInteger('options.maxBatchTokens', o.maxBatchTokens, -Infinity);
    // What no model can allow (its dim is at least 1, its maxLength at least 2 or the one given) is refused now, before
    // a download or a conversion, in the words the model's numbers fill in below.
    const leastMaxLength = maxLengthOption ?? 2;
    if (maxBatchTokensOption !== undefined && (maxBatchTokensOption < leastMaxLength || maxBatchTokensOption > MAX_RESULT_VALUES)) {
      throw new RangeError('options.maxBatchTokens must be between maxLength (one text must fit) and 2^32 / the model\'s dim ' +
        `(a batch's hidden states are one Float32Array), got ${maxBatchTokensOption}`);
    }
    if (maxBatchTokensOption === undefined && batchSize * leastMaxLength > MAX_RESULT_VALUES) {
      throw new RangeError(`options.batchSize must be <= 2^32 / (maxLength x the model's dim) (batchSize x maxLength, the default maxBatchTokens: ` +
        `a batch's hidden states are one Float32Array), got ${batchSize}, too many at ${maxLengthOption === undefined ? 'any maxLength' : `maxLength ${maxLengthOption}`}`);
    }
    const cacheDir = optionalString('options.cacheDir', o.cacheDir);
    const offline = optionalBoolean('options.offline', o.offline, false);
    const spinWait = optionalBoolean('options.spinWait', o.spinWait, false);
    const signal = optionalAbortSignal('options.signal', o.signal);
    const onProgress = optionalFunction<(p: DownloadProgress) => void>('options.onProgress', o.onProgress);

    const model = await resolveModel(source, { cacheDir, offline, revision: o.revision, onProgress, signal });
    const layout = readModelLayout(model.dir);
    const maxLength = maxLengthOption ?? layout.maxSeqLength;
    if (maxLength < 2 || maxLength > layout.maxPositions) {
      throw new RangeError(`${o.maxLength === undefined ? layout.maxSeqLengthSource : 'options.maxLength'} must be between 2 ` +
        `(room for <s> and </s>) and ${layout.maxPositions} (the model's position table), got ${maxLength}`);
    }
    // ONNX Runtime gives a batch's hidden states (padded tokens x dim floats) as one typed array.
    const tokenLimit = Math.floor(MAX_RESULT_VALUES / layout.dim);
    const hiddenStates = `a batch's ${layout.dim}-d hidden states are one Float32Array`;
    if (maxBatchTokensOption === undefined && batchSize * maxLength > tokenLimit) {
      throw new RangeError(`options.batchSize must be <= ${Math.floor(tokenLimit / maxLength)} at maxLength ${maxLength} (batchSize x maxLength, ` +
        `the default maxBatchTokens, must be <= ${tokenLimit}: ${hiddenStates}), got ${batchSize}`);
    }
    const maxBatchTokens = maxBatchTokensOption ?? batchSize * maxLength;
    if (maxBatchTokens < maxLength || maxBatchTokens > tokenLimit) {
      throw new RangeError(`options.maxBatchTokens must be between ${maxLength} (maxLength: one text must fit) and ${tokenLimit} ` +
        `(${hiddenStates}), got ${maxBatchTokens}`);
    }
    const tokenizer = SentenceTokenizer.load(model.dir, { maxLength });
    // As sentence-transformers: <s> and the prompt's tokens (the prompt tokenized alone, without its </s>).
    const promptTokens = layout.prompt !== '' && !layout.includePrompt ? tokenizer.encode(layout.prompt).length - 1 : 0;
    const onnxPath = await onnxGraphOf(model);
    signal?.throwIfAborted();  // before the session, which takes seconds at full size

    let session: OnnxWorker;
    try {
      session = await OnnxWorker.create({ onnxPath, tokenizer: { dir: model.dir, maxLength }, options: {
        executionProviders: executionProviders(deviceIndex),
        graphOptimizationLevel: 'all',
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        enableCpuMemArena: true,
        // Shapes change with every batch: a memory pattern planned for one shape would be redone.
        enableMemPattern: false,
        extra: { session: { intra_op: { allow_spinning: spinWait ? '1' : '0' } } },
      } });
    } catch (err) {
      throw new Error(`cannot load the ONNX graph ${onnxPath}${label === 'cpu' ? '' : ` on ${label}`}: ${(err as Error).message}`);
    }
    if (signal?.aborted) {
      await session.release();
      throw signal.reason;
    }

    const inputs = session.inputMetadata;
    const known = ['input_ids', 'attention_mask', 'token_type_ids'];
    const unknown = inputs.map((m) => m.name).filter((n) => !known.includes(n));
    const idsInput = inputs.find((m) => m.name === 'input_ids');
    if (unknown.length > 0 || idsInput === undefined) {
      await session.release();
      throw new Error(`${onnxPath}: inputs [${session.inputNames.join(', ')}] are unsupported; ` +
        `expected input_ids, attention_mask and optionally token_type_ids`);
    }
    const inputType = idsInput.isTensor && idsInput.type === 'int32' ? 'int32' : 'int64';
    const outputName = session.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : session.outputNames[0];
    // A graph that gives no token vectors [batch, tokens, dim] (a pooled sentence_embedding [batch, dim]), or whose
    // token vectors are not word_embedding_dimension long, fails every encode(): say so now. [] is an unknown shape.
    const output = session.outputMetadata.find((m) => m.name === outputName);
    const shape = output?.isTensor ? output.shape : [];
    if (shape.length > 0 && shape.length !== 3) {
      await session.release();
      throw new Error(`${onnxPath}: output ${outputName} has shape [${shape.join(', ')}], but camembed pools token vectors itself: ` +
        `it expects last_hidden_state (else the first output) of shape [batch, tokens, ${layout.dim}]`);
    }
    const tokenDim = shape.at(-1);
    if (typeof tokenDim === 'number' && tokenDim !== layout.dim) {
      await session.release();
      throw new Error(`${onnxPath}: output ${outputName} has ${tokenDim} values per token, but ${layout.dimSource} is ${layout.dim}`);
    }
    return new Encoder({
      dim: layout.dim, maxLength, modelDir: model.dir, onnxPath, device: label, batchSize, maxBatchTokens, tokenizer,
      session, inputType, outputName, normalizeModule: layout.normalizeModule, prompt: layout.prompt, promptTokens,
    });
  }

  /** Token ids (stripped, `<s>`…`</s>`, truncated) and attention masks of each text, unpadded. */
  tokenize(texts: readonly string[]): { ids: number[][]; attentionMask: number[][] } {
    requireStringArray('texts', texts);
    return this.tokenizer.tokenize(texts.map((t) => this.prompt + t));
  }

  /** One vector per text, in the order given. */
  encode(texts: readonly string[], options: EncodeOptions = {}): Promise<Embeddings> {
    requireStringArray('texts', texts);
    const o = optionalObject('options', options, ENCODE_OPTIONS) as EncodeOptions;
    const normalize = optionalBoolean('options.normalize', o.normalize, true);
    optionalFunction('options.onProgress', o.onProgress);
    const signal = optionalAbortSignal('options.signal', o.signal);
    if (this.disposing !== null) return Promise.reject(disposedError());
    if (signal?.aborted) return Promise.reject(signal.reason);
    // A Normalize module in the model normalises whatever the caller asks, as in sentence-transformers.
    const run = this.encodeNow(texts.slice(), normalize || this.normalizeModule, o.onProgress, signal);
    // dispose() waits for the work itself, which an abort stops only at its next check.
    this.running.add(run);
    const finished = () => this.running.delete(run);
    run.then(finished, finished);
    return signal === undefined ? run : rejectOnAbort(run, [signal]);
  }

  /**
   * Encodes a stream of texts `chunkSize` at a time (default 4096), yielding each chunk's
   * vectors in input order; memory stays at one chunk of texts and vectors. Bad arguments throw
   * here, not at the first step (a server can still answer 400 before it starts streaming); an
   * item that is not a string fails the step that reads it.
   */
  encodeStream(texts: AsyncIterable<string> | Iterable<string>, options: EncodeStreamOptions = {}): AsyncGenerator<Embeddings, void, undefined> {
    if (texts === null || typeof texts !== 'object' ||
      (typeof (texts as AsyncIterable<string>)[Symbol.asyncIterator] !== 'function' &&
        typeof (texts as Iterable<string>)[Symbol.iterator] !== 'function')) {
      throw new TypeError(`texts must be an iterable or async iterable of strings, got ${typeName(texts)}`);
    }
    // fs.createReadStream(file, 'utf8') or process.stdin would otherwise give one text per 64 KiB chunk.
    if (texts instanceof Readable && !texts.readableObjectMode) {
      throw new TypeError('texts is a stream of bytes or characters (a file or standard input as read), not of texts: ' +
        'pass readTexts(file) for one text per line, or an object-mode stream of strings');
    }
    const o = optionalObject('options', options, ENCODE_STREAM_OPTIONS) as EncodeStreamOptions;
    const chunkSize = optionalPositiveInteger('options.chunkSize', o.chunkSize) ?? 4096;
    // Told now, not when the chunk fills (as encode()'s "use encodeStream()").
    if (chunkSize * this.dim > MAX_RESULT_VALUES) {
      throw new RangeError(`options.chunkSize must be <= ${Math.floor(MAX_RESULT_VALUES / this.dim)} (a chunk's ${this.dim}-d vectors are one Float32Array), got ${chunkSize}`);
    }
    const normalize = optionalBoolean('options.normalize', o.normalize, true);
    optionalFunction('options.onProgress', o.onProgress);
    const signal = optionalAbortSignal('options.signal', o.signal);
    // The options as checked now: the caller's object may change while the stream runs.
    return this.streamChunks(texts, chunkSize, normalize, o.onProgress, signal);
  }

  private async *streamChunks(texts: AsyncIterable<string> | Iterable<string>, chunkSize: number, normalize: boolean,
    onProgress: EncodeStreamOptions['onProgress'], signal: AbortSignal | undefined): AsyncGenerator<Embeddings, void, undefined> {
    let chunk: string[] = [];
    let seen = 0;
    const encodeChunk = (texts: string[]) => {
      const before = seen - texts.length;
      return this.encode(texts, { normalize, onProgress: onProgress && (({ done }) => onProgress({ done: before + done })), signal });
    };
    // The caller's signal or dispose() ends the stream before it reads its source, before each text and while the
    // source waits for one (not once a chunk has been read: that is an encode() call).
    for await (const text of untilAborted(texts, signal === undefined ? [this.disposal.signal] : [signal, this.disposal.signal])) {
      if (typeof text !== 'string') throw new TypeError(`texts item ${seen} must be a string, got ${typeName(text)}`);
      seen++;
      chunk.push(text);
      if (chunk.length === chunkSize) {
        yield await encodeChunk(chunk);
        chunk = [];
      }
    }
    if (chunk.length > 0) yield await encodeChunk(chunk);
  }

  /** What console.log shows: the public facts, not the ONNX Runtime session and the tokenizer. */
  [util.inspect.custom](_depth: number, options: util.InspectOptions, inspect: typeof util.inspect): string {
    const facts = {
      modelDir: this.modelDir, device: this.device, dim: this.dim, maxLength: this.maxLength, batchSize: this.batchSize,
      maxBatchTokens: this.maxBatchTokens, ...(this.disposing === null ? {} : { disposed: true }),
    };
    return `Encoder ${inspect(facts, options)}`;
  }

  /**
   * Releases the ONNX Runtime session once the encode() calls made before it have finished; later
   * calls are refused, and a stream fails at once (after the chunk it is encoding, if any).
   */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.disposal.abort(disposedError());
      await Promise.allSettled(this.running);
      await this.session!.release();
      this.session = null;
    })();
    return this.disposing;
  }

  private async encodeNow(texts: string[], normalize: boolean,
    onProgress: EncodeOptions['onProgress'], signal: AbortSignal | undefined): Promise<Embeddings> {
    let out: Float32Array;
    try {
      out = new Float32Array(texts.length * this.dim);  // before hours of tokenizing, not after
    } catch {
      throw new RangeError(`texts: ${texts.length} texts of ${this.dim} floats do not fit one Float32Array; use encodeStream()`);
    }
    // Tokenizing costs up to ~0.8 ms a passage: in turns of TOKENIZE_TURN_CHARS, letting the event loop run between them.
    // The first text waits for a turn, as the other calls made meanwhile do (their texts are ready together).
    const ids: number[][] = [];
    for (let i = 0; i < texts.length; i++) {
      const text = this.prompt + texts[i];
      if (i === 0 || text.length > this.tokenizingRoom) {
        do {
          await this.nextTokenizingTurn();
          signal?.throwIfAborted();
          // Taken by the calls before it in that turn; a text longer than a turn's room gets a turn of its own.
        } while (text.length > this.tokenizingRoom && this.tokenizingRoom < TOKENIZE_TURN_CHARS);
      }
      this.tokenizingRoom -= text.length;
      ids.push(this.tokenizer.encodeWithin(text, TOKENIZE_TURN_CHARS) ?? await this.session!.tokenize(text));
    }
    if (texts.length === 0) return { data: out, rows: 0, dim: this.dim };
    const batches = planBatches(ids.map((r) => r.length), this.batchSize, this.maxBatchTokens).map((b) => b.rows);
    return new Promise<Embeddings>((resolve, reject) => {
      this.waiting.push({ texts, ids, normalize, out, batches, done: 0, onProgress, signal, resolve, reject });
      if (!this.runningBatches) {
        this.runningBatches = true;
        // Started after the other calls tokenized in this turn are queued too (their continuations come first).
        queueMicrotask(() => void this.runBatches());
      }
    });
  }

  /** The next event-loop turn, which gives the calls resumed in it TOKENIZE_TURN_CHARS to tokenize between them. */
  private nextTokenizingTurn(): Promise<void> {
    this.tokenizingTurn ??= new Promise<void>((resolve) => setImmediate(() => {
      this.tokenizingTurn = null;
      this.tokenizingRoom = TOKENIZE_TURN_CHARS;
      resolve();
    }));
    return this.tokenizingTurn;
  }

  /** Takes `call` out of the queue: its promise is settled, or about to be. */
  private leave(call: WaitingCall): void {
    const at = this.waiting.indexOf(call);
    if (at >= 0) this.waiting.splice(at, 1);
  }

  /**
   * Runs the waiting calls' batches, one ONNX Runtime run at a time, until none is left. The call at the
   * front of the queue gets the next batch: its own next batch, shared with the next rows of the other
   * waiting calls (same normalize) where planning them together puts them in one batch, so concurrent
   * small calls fill one another's batches (64 one-text queries: a few runs, not 64).
   */
  private async runBatches(): Promise<void> {
    const session = this.session!;  // dispose() waits for the waiting calls before it drops the session
    for (;;) {
      // A call aborted while it waited leaves the queue (it has rejected already): none of its rows runs.
      for (const call of this.waiting.filter((c) => c.signal?.aborted)) {
        this.leave(call);
        call.reject(call.signal!.reason);
      }
      const first = this.waiting[0];
      if (first === undefined) break;
      const { rows, seq } = this.takeBatch(first);
      const calls = [...new Set(rows.map((r) => r.call))];
      let pooled: Float32Array;
      try {
        pooled = await this.runBatch(session, rows.map((r) => r.call.ids[r.row]), seq, first.normalize);
      } catch (err) {
        const batchRow = (err as { batchRow?: number }).batchRow;
        const culprit = batchRow === undefined ? undefined : rows[batchRow];
        for (const call of calls) {
          if (culprit !== undefined && call !== culprit.call) {
            // Its rows run again in a later batch: NaN in another call's text is no error of this call.
            call.batches.unshift(rows.filter((r) => r.call === call).map((r) => r.row));
            continue;
          }
          this.leave(call);
          call.reject(culprit === undefined ? err : this.nonFiniteError(culprit));
        }
        this.rotate(first);
        continue;
      }
      rows.forEach(({ call, row }, i) => call.out.set(pooled.subarray(i * this.dim, (i + 1) * this.dim), row * this.dim));
      for (const call of calls) {
        if (call.signal?.aborted) {  // aborted while its rows ran: the call has rejected, so no progress after that
          this.leave(call);
          call.reject(call.signal.reason);
          continue;
        }
        call.done += rows.filter((r) => r.call === call).length;
        try {
          call.onProgress?.({ done: call.done, total: call.texts.length });
        } catch (err) {
          this.leave(call);
          call.reject(err);
          continue;
        }
        if (call.done === call.texts.length) {
          this.leave(call);
          call.resolve({ data: call.out, rows: call.texts.length, dim: this.dim });
        }
      }
      this.rotate(first);
    }
    this.runningBatches = false;
  }

  /** `call`, if still at the front of the queue, goes to the back: the others' turn. */
  private rotate(call: WaitingCall): void {
    if (this.waiting[0] === call) this.waiting.push(this.waiting.shift()!);
  }

  /**
   * The next batch of `first` (the front of the queue): planBatches over its next batch's rows and those of
   * the other waiting calls that pool alike, the batch that holds its first row; its rows leave their calls.
   */
  private takeBatch(first: WaitingCall): { rows: BatchRow[]; seq: number } {
    const calls = this.waiting.filter((c) => c.normalize === first.normalize && c.batches.length > 0);
    const candidates = calls.flatMap((call) => call.batches[0].map((row) => ({ call, row })));
    const plan = planBatches(candidates.map(({ call, row }) => call.ids[row].length), this.batchSize, this.maxBatchTokens);
    const batch = plan.find((b) => b.rows.includes(0))!;  // candidates[0] is first's (calls[0] is first)
    const taken = new Uint8Array(candidates.length);
    for (const i of batch.rows) taken[i] = 1;
    let i = 0;
    for (const call of calls) {
      const left = call.batches[0].filter((_, k) => taken[i + k] === 0);
      i += call.batches[0].length;
      if (left.length > 0) call.batches[0] = left;
      else call.batches.shift();
    }
    return { rows: batch.rows.map((k) => candidates[k]), seq: batch.seq };
  }

  /** The error for NaN or infinity in the pooled vector of `row`: its index in its call, and the text's start. */
  private nonFiniteError({ call, row }: BatchRow): Error {
    const text = call.texts[row].length > 60 ? `${JSON.stringify(call.texts[row].slice(0, 60))}...` : JSON.stringify(call.texts[row]);
    return new Error(`${this.onnxPath} gave NaN or infinite values for texts[${row}] (${text}): its weights are damaged, ` +
      'or a float16 graph overflowed (convert the model to float32)');
  }

  /**
   * Pads the rows' token ids to `seq`, runs the graph and pools its hidden states (rows in the order given).
   * A row whose vector holds NaN or infinity throws the kernel's error, its `batchRow` naming it.
   */
  private async runBatch(session: OnnxWorker, ids: number[][], seq: number, normalize: boolean): Promise<Float32Array> {
    const n = ids.length;
    const int64 = this.inputType === 'int64';
    const inputIds = int64 ? new BigInt64Array(n * seq) : new Int32Array(n * seq);
    const mask = int64 ? new BigInt64Array(n * seq) : new Int32Array(n * seq);
    // The tokens the mean takes: the transformer sees the prompt, the mean may not (promptTokens).
    const poolMask = new Uint8Array(n * seq);
    const pad = this.tokenizer.padTokenId;
    ids.forEach((r, i) => {
      for (let t = 0; t < seq; t++) {
        const real = t < r.length;
        if (int64) {
          (inputIds as BigInt64Array)[i * seq + t] = BigInt(real ? r[t] : pad);
          (mask as BigInt64Array)[i * seq + t] = real ? 1n : 0n;
        } else {
          (inputIds as Int32Array)[i * seq + t] = real ? r[t] : pad;
          (mask as Int32Array)[i * seq + t] = real ? 1 : 0;
        }
        poolMask[i * seq + t] = real && t >= this.promptTokens ? 1 : 0;
      }
    });
    const feeds: Record<string, WorkerTensor> = {};
    for (const name of session.inputNames) {
      const data = name === 'input_ids' ? inputIds : name === 'attention_mask' ? mask : (int64 ? new BigInt64Array(n * seq) : new Int32Array(n * seq));
      feeds[name] = { type: this.inputType, data, dims: [n, seq] };
    }
    const hidden = await session.run(feeds, this.outputName);
    const dims = hidden.dims;
    if (dims.length !== 3 || dims[0] !== n || dims[1] !== seq || dims[2] !== this.dim) {
      throw new Error(`${this.onnxPath}: output ${this.outputName} has shape [${dims.join(', ')}], expected [${n}, ${seq}, ${this.dim}]`);
    }
    if (hidden.type !== 'float32' && hidden.type !== 'float16') {
      throw new Error(`${this.onnxPath}: output ${this.outputName} is ${hidden.type}, expected float32 or float16`);
    }
    // The hidden states are in host memory, so the CPU kernel pools them: a GPU pool would
    // first copy the whole [n, seq, dim] tensor back to the device.
    // float16 comes as its bits (a Uint16Array), which the kernels take.
    const data = hidden.data as HiddenStates;
    const shape = { batch: n, seq, hidden: this.dim };
    return data.length <= INLINE_POOL_FLOATS ? meanPoolNormalize(data, poolMask, shape, { normalize })
      : await meanPoolNormalizeAsync(data, poolMask, shape, { normalize });
  }
}

/**
 * Cosine similarity of every row of `a` with every row of `b`: an a.rows x b.rows matrix, row-major
 * (at most 2^32 values, else a RangeError: VectorIndex or cosineTopK find the top k instead). NaN or
 * infinity in a row is a RangeError naming it.
 */
export function similarity(a: Embeddings, b: Embeddings): SimilarityMatrix {
  for (const [name, e] of [['a', a], ['b', b]] as const) {
    // A bare Float32Array has no row count: name the shape encode() returns.
    if (typeof e !== 'object' || e === null || ArrayBuffer.isView(e) || Array.isArray(e)) {
      throw new TypeError(`${name} must be { data, rows, dim } (what encode() returns), got ${typeName(e)}`);
    }
    requireTypedArray(`${name}.data`, e.data, ['Float32Array']);
    const rows = requireInteger(`${name}.rows`, e.rows, 0);
    const dim = requirePositiveInteger(`${name}.dim`, e.dim);
    if (e.data.length !== rows * dim) throw new RangeError(`${name}.data has ${e.data.length} values but ${name}.rows x ${name}.dim is ${rows} x ${dim}`);
  }
  if (a.dim !== b.dim) throw new RangeError(`a and b must have the same dim, got ${a.dim} and ${b.dim}`);
  if (a.rows * b.rows > MAX_RESULT_VALUES) {
    throw new RangeError(`similarity() of ${a.rows} x ${b.rows} rows would be ${a.rows * b.rows} cosines, more than a result holds ` +
      '(2^32): for the best matches of each row, search with a VectorIndex or cosineTopK, which keep only the top k');
  }
  const dim = a.dim;
  // A float64 sum of float32 squares is finite unless a value is NaN or infinite: refused, as
  // cosineTopK refuses them, rather than filling the matrix with NaN.
  const norms = (name: string, e: Embeddings) => Float64Array.from({ length: e.rows }, (_, r) => {
    let s = 0;
    for (let k = 0; k < dim; k++) s += e.data[r * dim + k] ** 2;
    if (!Number.isFinite(s)) throw new RangeError(`${name}.data row ${r} contains NaN or infinite values`);
    return Math.max(Math.sqrt(s), 1e-12);
  });
  const na = norms('a', a);
  const nb = norms('b', b);
  const data = new Float32Array(a.rows * b.rows);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < b.rows; j++) {
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += a.data[i * dim + k] * b.data[j * dim + k];
      data[i * b.rows + j] = dot / (na[i] * nb[j]);
    }
  }
  return { data, rows: a.rows, cols: b.rows };
}

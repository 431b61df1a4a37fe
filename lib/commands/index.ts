// `camembed index build`: encode a text file (one passage per line) into a VectorIndex file.
// The id of each passage is its line number (0-based), so search results point back to lines;
// or store vectors already made (.npy or raw float32), with row numbers as ids.
// `camembed index info`: what an index file holds.
// `camembed index neighbors`: every vector's nearest stored vectors (near-duplicates, clustering).
import * as fs from 'fs';

import { resolveDevice } from '../devices';
import { checkOnnxRuntimeDevice, DEFAULT_MODEL, Encoder } from '../encoder';
import { MAX_DIM } from '../index/format';
import { flatten, LineFile } from '../lines';
import { createProgressBar, ProgressBar } from '../progress';
import { errorAtFileRow, readVectorRows, vectorFileLayout } from '../vector-file';
import { VectorIndex } from '../vector-index';
import {
  checkTextFile, CliUsageError, ENCODER_BATCH_SIZE_OPTION, helpText, modelFilesAt, namesStandardOutput, onInterrupt, OptionSpec, parseCommand, requiredString, requireDevice,
  requireExists, requireFileOption, requireModel, requireIndexK, requireNotAnInput, requireOutputFile, requireWritableFolder, textsWithProgress,
  THREADS_OPTION, withFileProgress, writeStdout,
} from './args';
import { counted, suggestion } from '../validate';

export const summary = 'index build: encode a text file (one passage per line) into an index file (.cmbd); index info; index neighbors';

const INFO_SPEC: OptionSpec = {
  verify: { type: 'boolean', help: 'also read the whole file: checksum, ids and vector norms (as a load does)' },
  help: { type: 'boolean', help: 'show this help' },
};

/** `camembed index info FILE`: the header and metadata as JSON on standard output. */
async function runInfo(argv: string[]): Promise<void> {
  const parsed = parseCommand(argv, INFO_SPEC, 'camembed index info corpus.cmbd [--verify]');
  if (parsed === null) return;
  const { options, positional } = parsed;
  if (positional.length !== 1) throw new CliUsageError(`expected one index file, got ${positional.length}`);
  const file = positional[0];
  requireIndexFile(file);
  requireNotAnInput('standard output', fs.fstatSync(1), [file]);  // `>> corpus.cmbd` would corrupt the index
  const description = await VectorIndex.describe(file);
  if (options.verify === true) (await withFileProgress('verify', (onProgress) => VectorIndex.load(file, { mmap: true, onProgress }))).dispose();
  const report = { file, ...description, ...(options.verify === true ? { verified: true } : {}) };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}

/** Why `search --index` and `index info|neighbors` take no '-' (Node would open a file named '-') nor a pipe. */
export const INDEX_FROM_FILE = 'an index file is read in place, not streamed';

/** The index file named by `index info` or `index neighbors` (an argument, not an option). */
function requireIndexFile(file: string): void {
  if (file === '-') throw new CliUsageError(`expected an index file, got '-': ${INDEX_FROM_FILE}`);
  if (!fs.existsSync(file)) throw new CliUsageError(`${file} does not exist`);
  const stat = fs.statSync(file);
  if (stat.isDirectory()) throw new CliUsageError(`${file} is a folder, not an index file`);
  if (!stat.isFile()) throw new CliUsageError(`${file} is not a regular file: ${INDEX_FROM_FILE}`);
}

const NEIGHBORS_SPEC: OptionSpec = {
  k: { type: 'integer', help: 'neighbours per vector', default: 10 },
  'min-score': { type: 'string', help: 'print only neighbours with at least this cosine (e.g. 0.95 for near-duplicates)' },
  'include-self': { type: 'boolean', help: "keep each vector in its own list (it is left out by default)" },
  format: { type: 'string', help: "'tsv' (id, rank, neighbour id, score) or 'jsonl' ({id, neighbors, scores})", default: 'tsv' },
  passages: {
    type: 'string',
    help: "the file the index was built from: the texts too (TSV: the vector's and the neighbour's line as 5th and 6th columns, tabs and carriage returns as spaces; JSON: 'text' and 'passages')",
  },
  device: { type: 'device', help: "'cpu', 'cuda' or 'cuda:N'", default: 'cpu' },
  mmap: { type: 'boolean', help: 'map the index file instead of reading it (cpu)' },
  'batch-size': { type: 'integer', help: 'vectors searched together', default: 1024 },
  help: { type: 'boolean', help: 'show this help' },
};

/**
 * `camembed index neighbors FILE`: each stored vector's k nearest stored vectors, best first, as
 * TSV lines or one JSON line per vector; with --min-score only those scoring at least that (a
 * vector left with none is not printed).
 */
async function runNeighbors(argv: string[]): Promise<void> {
  const parsed = parseCommand(argv, NEIGHBORS_SPEC, 'camembed index neighbors corpus.cmbd [--k 10] [--min-score 0.95] [--format tsv|jsonl]');
  if (parsed === null) return;
  const { options, positional } = parsed;
  if (positional.length !== 1) throw new CliUsageError(`expected one index file, got ${positional.length}`);
  const file = positional[0];
  requireIndexFile(file);
  const format = options.format as string;
  if (format !== 'tsv' && format !== 'jsonl') throw new CliUsageError(`--format must be 'tsv' or 'jsonl', got '${format}'`);
  const rawMin = options['min-score'] as string | undefined;
  const minScore = rawMin === undefined ? -Infinity : Number(rawMin);
  if (rawMin !== undefined && !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(rawMin)) {  // decimal only: not 0x1, not ' 1 '
    throw new CliUsageError(`--min-score must be a number, got '${rawMin}'`);
  }
  const passagesFile = options.passages as string | undefined;
  requireFileOption('passages', passagesFile, 'its lines are read by number');
  requireNotAnInput('standard output', fs.fstatSync(1), [file, passagesFile]);  // `>> corpus.cmbd` would corrupt the index
  requireIndexK(options.k as number, options.device as string);
  await requireDevice(options.device as string, resolveDevice);  // as VectorIndex.load checks it

  const index = await withFileProgress('load', (onProgress) => VectorIndex.load(file, { device: options.device as 'cpu', mmap: options.mmap === true, onProgress }));
  const bar = createProgressBar({ label: 'neighbors', unit: 'items', total: index.size });
  let passages: LineFile | null = null;
  try {
    if (passagesFile !== undefined) passages = await LineFile.open(passagesFile);
    const tsvText = (id: bigint) => `\t${passages!.line(id).replace(/[\t\r]/g, ' ')}`;
    const walk = index.neighbors({
      k: options.k as number, excludeSelf: options['include-self'] !== true, batchSize: options['batch-size'] as number,
    });
    let done = 0;
    for await (const { ids, neighbors, scores, k } of walk) {
      const lines: string[] = [];
      for (let r = 0; r < ids.length; r++) {
        let kept = 0;  // scores are sorted: those >= minScore come first
        while (kept < k && scores[r * k + kept] >= minScore) kept++;
        if (kept === 0 && rawMin !== undefined) continue;
        const hitIds = neighbors.subarray(r * k, r * k + kept);
        const hits = Array.from(hitIds, String);
        const hitScores = Array.from(scores.subarray(r * k, r * k + kept));
        if (format === 'tsv') {
          const own = passages === null ? '' : tsvText(ids[r]);
          hits.forEach((id, rank) => lines.push(`${ids[r]}\t${rank + 1}\t${id}\t${hitScores[rank]}` +
            (passages === null ? '' : own + tsvText(hitIds[rank]))));
        } else {
          const texts = passages === null ? ''
            : `,"text":${JSON.stringify(passages.line(ids[r]))},"passages":${JSON.stringify(Array.from(hitIds, (id) => passages!.line(id)))}`;
          lines.push(`{"id":${ids[r]},"neighbors":[${hits.join(',')}],"scores":${JSON.stringify(hitScores)}${texts}}`);
        }
      }
      if (lines.length > 0) await writeStdout(lines.join('\n') + '\n');
      done += ids.length;
      bar.update(done);
    }
  } finally {
    passages?.close();
    bar.finish();
    index.dispose();
  }
}

const SPEC: OptionSpec = {
  model: {
    type: 'string',
    help: `model folder or Hub id, recorded in the index for \`camembed search\` (default: ${DEFAULT_MODEL}; with --vectors: none recorded)`,
  },
  input: { type: 'string', help: "UTF-8 text file ('-': standard input), one passage per line; the id of a passage is its line number from 0" },
  vectors: {
    type: 'string',
    help: 'instead of --input: vectors already made, a .npy file [rows, dim] of float32 or float16, or raw float32 with --dim; ids are row numbers from 0',
  },
  dim: { type: 'integer', help: `vector length of a raw float32 --vectors file, at most ${MAX_DIM}`, max: MAX_DIM },
  output: { type: 'string', help: 'index file to write (replaced atomically)' },
  dtype: { type: 'string', help: "vector storage: 'float32' or 'float16' (default: float32 on cpu, float16 on cuda)" },
  device: { type: 'device', help: "'cpu', 'cuda' or 'cuda:N' (the encoder and the index)", default: 'cpu' },
  'batch-size': { ...ENCODER_BATCH_SIZE_OPTION, default: 32 },
  threads: THREADS_OPTION,
  offline: { type: 'boolean', help: 'use only the local Hugging Face cache' },
  revision: { type: 'string', help: 'branch, tag or commit hash of a Hub model (default: main)' },
  help: { type: 'boolean', help: 'show this help' },
};

/**
 * The model as the index records it: a folder as its real absolute path (a search may run
 * elsewhere, and a link to the same folder is the same model), else the Hub id.
 */
export function modelSource(model: string): string {
  return fs.existsSync(model) ? fs.realpathSync(model) : model;
}

export async function run(argv: string[]): Promise<void> {
  if (argv[0] === 'info') return runInfo(argv.slice(1));
  if (argv[0] === 'neighbors') return runNeighbors(argv.slice(1));
  const usage = 'camembed index build (--input passages.txt | --vectors passages.npy) --output corpus.cmbd [--model M] [--dtype float16] [--device cuda]\n' +
    '       camembed index info corpus.cmbd [--verify]   (what a file holds; camembed index info --help)\n' +
    '       camembed index neighbors corpus.cmbd [--k 10] [--min-score 0.95]   (near-duplicates; --help)';
  const parsed = parseCommand(argv, SPEC, usage);
  if (parsed === null) return;
  const { options, positional, given } = parsed;
  if (positional.length === 0) {
    throw new CliUsageError(`missing subcommand: 'camembed index build', 'index info' or 'index neighbors'\n\n${helpText(usage, SPEC)}`);
  }
  if (positional[0] !== 'build') {
    throw new CliUsageError(`expected 'index build', 'index info' or 'index neighbors', got 'index ${positional[0]}'` +
      suggestion(`index ${positional[0]}`, ['index build', 'index info', 'index neighbors']));
  }
  if (positional.length > 1) throw new CliUsageError(`unexpected argument '${positional[1]}'`);
  const vectorsFile = options.vectors as string | undefined;
  if ((vectorsFile === undefined) === (options.input === undefined)) {
    throw new CliUsageError('give --input (texts to encode) or --vectors (vectors already made)');
  }
  const output = requiredString(options, 'output');
  if (namesStandardOutput(output)) throw new CliUsageError(`--output must be a file, not standard output (${output}): an index is not written there`);
  const model = options.model as string | undefined;
  requireOutputFile('output', output, [options.input as string | undefined, vectorsFile, ...modelFilesAt(model ?? DEFAULT_MODEL)], 'an index replaces only a file');
  const dtype = options.dtype as string | undefined;
  if (dtype !== undefined && dtype !== 'float32' && dtype !== 'float16') {
    throw new CliUsageError(`--dtype must be 'float32' or 'float16', got '${dtype}'`);
  }
  const device = options.device as 'cpu';
  await requireDevice(device, resolveDevice);  // as VectorIndex checks it (and Encoder.load, below)
  // With --vectors too: search would fail on a folder recorded with a revision.
  requireModel(model ?? DEFAULT_MODEL, options.revision as string | undefined);
  await requireWritableFolder(output);  // the save comes after the encoding, possibly hours of it

  // Rows come from the encoder (texts) or straight from a vector file; either way row i gets id i.
  let source: { dim: number; chunks: AsyncIterable<{ data: Float32Array; rows: number; dim: number }>; bar: ProgressBar;
    advance(rowsAdded: number): void; close(): Promise<void> };
  if (vectorsFile !== undefined) {
    requireFileOption('vectors', vectorsFile, 'its size is checked against its header first');
    const encoderOption = ['batch-size', 'threads', 'offline'].find((name) => given.has(name));
    if (encoderOption !== undefined) throw new CliUsageError(`--${encoderOption} goes with --input (it sets up the encoder), not --vectors`);
    if (given.has('revision') && model === undefined) throw new CliUsageError('--revision goes with --model (the model the index records)');
    const layout = vectorFileLayout(vectorsFile, options.dim as number | undefined);
    const bar = createProgressBar({ label: 'index build', unit: 'items', total: layout.rows });
    source = { dim: layout.dim, chunks: readVectorRows(vectorsFile, layout), bar, advance: (n) => bar.update(n), close: async () => {} };
  } else {
    if (options.dim !== undefined) throw new CliUsageError('--dim goes with a raw float32 --vectors file');
    const input = options.input as string;
    requireExists('input', input);
    await requireDevice(device, checkOnnxRuntimeDevice);  // as Encoder.load checks it
    await checkTextFile(input, 'check input');  // before the model loads
    const endLoadInterrupt = onInterrupt();  // a model converted as it loads leaves no temporary file
    const encoder = await Encoder.load(model ?? DEFAULT_MODEL, {
      device, threads: options.threads as number | undefined, batchSize: options['batch-size'] as number, offline: options.offline === true,
      revision: options.revision as string | undefined,
    }).finally(endLoadInterrupt);
    const { batches, onProgress, bar, close: closeInput } = textsWithProgress(input, 'index build');
    source = {
      dim: encoder.dim, chunks: encoder.encodeStream(flatten(batches), { onProgress }), bar, advance: () => undefined,
      close: () => { closeInput(); return encoder.dispose(); },
    };
  }
  const recorded = vectorsFile === undefined ? model ?? DEFAULT_MODEL : model;
  const revision = options.revision as string | undefined;
  const metadata = recorded === undefined ? {} : { model: modelSource(recorded), ...(revision === undefined ? {} : { revision }) };
  const index = new VectorIndex({ dim: source.dim, dtype: dtype as 'float32' | undefined, device, metadata });
  let size = 0;
  const endInterrupt = onInterrupt();  // a save cut short leaves no temporary file
  try {
    for await (const chunk of source.chunks) {
      const first = index.size;
      try {
        index.add(chunk);
      } catch (err) {
        throw vectorsFile === undefined ? err : errorAtFileRow(err, vectorsFile, first);
      }
      source.advance(index.size);
    }
    source.bar.finish();
    await withFileProgress('save', (onProgress) => index.save(output, { onProgress }));
    size = index.size;
  } finally {
    await endInterrupt();
    await source.close();
    index.dispose();
  }
  process.stderr.write(`wrote ${output}: ${counted(size, vectorsFile === undefined ? 'passage' : 'vector')}, ${source.dim}-d ${index.dtype}\n`);
}

// `camembed search`: encode one question (or a file of them) and print the top-k ids of an index
// file built by `camembed index build`, as TSV (query, rank, id, score) or JSON lines. Or search
// with query vectors already made (--query-vectors), with no model at all.

import * as fs from 'fs';
import * as path from 'path';

import { resolveDevice } from '../devices';
import { checkOnnxRuntimeDevice, DEFAULT_MODEL, Encoder } from '../encoder';
import { LineFile, readyBatches } from '../lines';
import { createProgressBar, ProgressBar } from '../progress';
import { errorAtFileRow, readVectorRows, vectorFileLayout } from '../vector-file';
import { SearchResult, VectorIndex } from '../vector-index';
import {
  CliUsageError, onInterrupt, OptionSpec, parseCommand, requiredString, requireDevice, requireExists, requireFileOption, requireModel, requireIndexK,
  requireNotAnInput, textsWithProgress, THREADS_OPTION, withFileProgress, writeStdout,
} from './args';
import { INDEX_FROM_FILE, modelSource } from './index';

export const summary = 'search an index file with a question or a file of questions (TSV or JSON lines out)';

const SPEC: OptionSpec = {
  index: { type: 'string', help: 'index file written by `camembed index build`' },
  model: { type: 'string', help: `model folder or Hub id (default: the one the index records, else ${DEFAULT_MODEL})` },
  k: { type: 'integer', help: 'results per question', default: 10 },
  queries: { type: 'string', help: "UTF-8 file ('-': standard input), one question per line (instead of a question argument)" },
  'query-vectors': {
    type: 'string',
    help: 'instead of questions: query vectors already made, a .npy [rows, dim] of float32/float16 or raw float32 (no model runs)',
  },
  format: { type: 'string', help: "'tsv' (query, rank, id, score[, passage]) or 'jsonl' ({query, text, ids, scores[, passages]})", default: 'tsv' },
  passages: {
    type: 'string',
    help: "the file the index was built from: each hit's passage (its line) is printed too (TSV: a 5th column, tabs and carriage returns as spaces; JSON: 'passages')",
  },
  device: { type: 'device', help: "'cpu', 'cuda' or 'cuda:N' (the encoder and the index)", default: 'cpu' },
  mmap: { type: 'boolean', help: 'map the index file instead of reading it (cpu)' },
  'batch-size': { type: 'integer', help: 'questions encoded and searched together (fewer when no more have come yet)', default: 256 },
  threads: THREADS_OPTION,
  offline: { type: 'boolean', help: 'use only the local Hugging Face cache' },
  revision: { type: 'string', help: 'branch, tag or commit hash of a Hub model (default: main)' },
  help: { type: 'boolean', help: 'show this help' },
};

/** Output lines for `count` queries numbered from `first`; `texts` are the questions (null for query vectors). */
function formatResult(result: SearchResult, count: number, texts: string[] | null, first: number, format: string,
  passages: LineFile | null): string {
  const lines: string[] = [];
  for (let q = 0; q < count; q++) {
    const hits = result.ids.subarray(q * result.k, (q + 1) * result.k);
    const ids = Array.from(hits, String);
    const scores = Array.from(result.scores.subarray(q * result.k, (q + 1) * result.k));
    const hitTexts = passages === null ? null : Array.from(hits, (id) => passages.line(id));
    if (format === 'tsv') {
      ids.forEach((id, rank) => lines.push(`${first + q}\t${rank + 1}\t${id}\t${scores[rank]}` +
        (hitTexts === null ? '' : `\t${hitTexts[rank].replace(/[\t\r]/g, ' ')}`)));
    } else {
      // Ids as JSON integers (exact in any parser that keeps 64-bit integers).
      const text = texts === null ? '' : `"text":${JSON.stringify(texts[q])},`;
      lines.push(`{"query":${first + q},${text}"ids":[${ids.join(',')}],"scores":${JSON.stringify(scores)}` +
        (hitTexts === null ? '' : `,"passages":${JSON.stringify(hitTexts)}`) + '}');
    }
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}

export async function run(argv: string[]): Promise<void> {
  const usage = 'camembed search --index corpus.cmbd [--k 10] [--passages passages.txt] ("une question" | --queries questions.txt | --query-vectors q.npy)';
  const parsed = parseCommand(argv, SPEC, usage);
  if (parsed === null) return;
  const { options, positional, given } = parsed;
  const queriesFile = options.queries as string | undefined;
  const vectorsFile = options['query-vectors'] as string | undefined;
  const indexFile = requiredString(options, 'index');
  requireFileOption('index', indexFile, INDEX_FROM_FILE);
  if ([queriesFile, vectorsFile, positional[0]].filter((q) => q !== undefined).length !== 1) {
    throw new CliUsageError('give one question argument, --queries FILE or --query-vectors FILE');
  }
  if (positional.length > 1) throw new CliUsageError(`unexpected argument '${positional[1]}' (quote the question)`);
  if (queriesFile !== undefined) requireExists('queries', queriesFile);
  // `--queries q.txt >> q.txt`: each result line, read back, is one more question (it ran until the disk was full).
  requireNotAnInput('standard output', fs.fstatSync(1), [queriesFile], 'the search would read its own results as questions, without end');
  requireFileOption('query-vectors', vectorsFile, 'its size is checked against its header first');
  const encoderOption = ['model', 'threads', 'offline', 'revision'].find((name) => given.has(name));
  if (vectorsFile !== undefined && encoderOption !== undefined) {
    throw new CliUsageError(`--${encoderOption} goes with questions (it sets up the encoder), not --query-vectors`);
  }
  const k = options.k as number;
  requireIndexK(k, options.device as string);
  // As VectorIndex.load checks it, and Encoder.load for questions to encode.
  await requireDevice(options.device as string, resolveDevice, ...(vectorsFile === undefined ? [checkOnnxRuntimeDevice] : []));
  const format = options.format as string;
  if (format !== 'tsv' && format !== 'jsonl') throw new CliUsageError(`--format must be 'tsv' or 'jsonl', got '${format}'`);
  const batchSize = options['batch-size'] as number;
  const passagesFile = options.passages as string | undefined;
  requireFileOption('passages', passagesFile, 'its lines are read by number');
  // `search --index corpus.cmbd "q" >> corpus.cmbd` appended its results to the index, corrupting it.
  requireNotAnInput('standard output', fs.fstatSync(1), [indexFile, passagesFile, vectorsFile]);

  // A mistyped --model is told before a load of gigabytes (a model the index records: after it).
  if (vectorsFile === undefined && options.model !== undefined) requireModel(options.model as string, options.revision as string | undefined);
  const device = options.device as 'cpu';
  const index = await withFileProgress('load', (onProgress) => VectorIndex.load(indexFile, { device, mmap: options.mmap === true, onProgress }));
  let bar: ProgressBar | undefined;
  let encoder: Encoder | null = null;
  let passages: LineFile | null = null;
  let questions: ReturnType<typeof textsWithProgress> | null = null;
  try {
    if (vectorsFile === undefined) encoder = await loadEncoder(options, index, indexFile, device);
    if (passagesFile !== undefined) passages = await LineFile.open(passagesFile);
    // A file of questions: encode's bar, its bytes searched out of its size; query vectors: their rows
    // searched out of the file's (both with an ETA). One question has no bar (it drew 'search  1' after the results).
    if (queriesFile !== undefined) questions = textsWithProgress(queriesFile, 'search');
    const layout = vectorsFile === undefined ? null : vectorFileLayout(vectorsFile, index.dim);  // raw float32 rows of the index's dim, or a .npy of it
    bar = questions?.bar ?? (layout === null ? undefined : createProgressBar({ label: 'search', unit: 'items', total: layout.rows }));
    const onSearched = questions?.onProgress ?? (({ done }: { done: number }) => bar?.update(done));
    let done = 0;
    const searchRows = async (vectors: Float32Array, count: number, texts: string[] | null) => {
      const result = await index.search({ data: vectors, rows: count, dim: index.dim }, { k });
      await writeStdout(formatResult(result, count, texts, done, format, passages));
      done += count;
      onSearched({ done });
    };
    if (encoder !== null) {
      // The questions that have come, whenever no more are there yet: someone typing them, or a program
      // that waits for each answer, gets it at once (they were answered --batch-size at a time, or at the end).
      for await (const batch of questions === null ? [[positional[0]]] : readyBatches(questions.batches, batchSize)) {
        await searchRows((await encoder.encode(batch)).data, batch.length, batch);
      }
    } else {
      for await (const chunk of readVectorRows(vectorsFile!, layout!)) {
        for (let r = 0; r < chunk.rows; r += batchSize) {
          const count = Math.min(batchSize, chunk.rows - r);
          try {
            await searchRows(chunk.data.subarray(r * index.dim, (r + count) * index.dim), count, null);
          } catch (err) {
            throw errorAtFileRow(err, vectorsFile!, done);
          }
        }
      }
    }
  } finally {
    questions?.close();
    passages?.close();
    bar?.finish();
    await encoder?.dispose();
    index.dispose();
  }
}

/**
 * The encoder for the questions: --model, else the model the index records (a recorded folder
 * that is missing here is a usage error; another model than the recorded one, or the default for an index that
 * records none, gets a note).
 */
async function loadEncoder(options: Record<string, unknown>, index: VectorIndex, indexFile: string, device: 'cpu'): Promise<Encoder> {
  const recorded = typeof index.metadata.model === 'string' ? index.metadata.model : undefined;
  const model = (options.model as string | undefined) ?? recorded ?? DEFAULT_MODEL;
  if (options.model === undefined && recorded !== undefined && path.isAbsolute(recorded) && !fs.existsSync(recorded)) {
    throw new CliUsageError(`${indexFile} was built with the model folder ${recorded}, which does not exist here: pass --model`);
  }
  if (recorded !== undefined && modelSource(model) !== modelSource(recorded)) {
    process.stderr.write(`note: ${indexFile} was built with the model ${recorded}; searching with ${model}\n`);
  } else if (recorded === undefined && options.model === undefined) {
    // Vectors stored without --model: the default may not be what made them (equal dims pass the check below).
    process.stderr.write(`note: ${indexFile} records no model; searching with ${model} (--model sets it)\n`);
  }
  if (options.model === undefined) requireModel(model, options.revision as string | undefined);  // a given one is checked before the load
  // The revision the index records goes with its model, not with one given by --model.
  const recordedRevision = options.model === undefined && recorded !== undefined && typeof index.metadata.revision === 'string'
    ? index.metadata.revision : undefined;
  const endLoadInterrupt = onInterrupt();  // a model converted as it loads leaves no temporary file
  const encoder = await Encoder.load(model, {
    device, threads: options.threads as number | undefined, offline: options.offline === true,
    revision: (options.revision as string | undefined) ?? recordedRevision,
  }).finally(endLoadInterrupt);
  if (encoder.dim !== index.dim) {
    await encoder.dispose();
    throw new Error(`the model makes ${encoder.dim}-d vectors but ${indexFile} holds ${index.dim}-d vectors: use the model the index was built with`);
  }
  return encoder;
}

// `camembed index build`: encode a text file (one passage per line) into a VectorIndex file.
// The id of each passage is its line number (0-based), so search results point back to lines.
// `camembed index info`: what an index file holds.
import * as fs from 'fs';

import { DEFAULT_MODEL, Encoder } from '../encoder';
import { VectorIndex } from '../vector-index';
import { CliUsageError, helpText, OptionSpec, parseCommand, requiredString, requireExists, textsWithProgress } from './args';

export const summary = 'index build: encode a text file (one passage per line) into an index file (.cmbd); index info';

const INFO_SPEC: OptionSpec = {
  verify: { type: 'boolean', help: 'also read the whole file: checksum and ids (as a load does)' },
  help: { type: 'boolean', help: 'show this help' },
};

/** `camembed index info FILE`: the header and metadata as JSON on standard output. */
async function runInfo(argv: string[]): Promise<void> {
  const parsed = parseCommand(argv, INFO_SPEC, 'camembed index info corpus.cmbd [--verify]');
  if (parsed === null) return;
  const { options, positional } = parsed;
  if (positional.length !== 1) throw new CliUsageError(`expected one index file, got ${positional.length}`);
  const file = positional[0];
  if (!fs.existsSync(file)) throw new CliUsageError(`${file} does not exist`);
  if (!fs.statSync(file).isFile()) throw new CliUsageError(`${file} is not a file`);
  const description = await VectorIndex.describe(file);
  if (options.verify === true) (await VectorIndex.load(file, { mmap: true })).dispose();
  const report = { file, ...description, ...(options.verify === true ? { verified: true } : {}) };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}

const SPEC: OptionSpec = {
  model: { type: 'string', help: 'model folder or Hub id (recorded in the index for `camembed search`)', default: DEFAULT_MODEL },
  input: { type: 'string', help: "UTF-8 text file ('-': standard input), one passage per line; the id of a passage is its line number from 0" },
  output: { type: 'string', help: 'index file to write (replaced atomically)' },
  dtype: { type: 'string', help: "vector storage: 'float32' or 'float16' (default: float32 on cpu, float16 on cuda)" },
  device: { type: 'string', help: "'cpu' or 'cuda' (the encoder and the index)", default: 'cpu' },
  'batch-size': { type: 'integer', help: 'texts per ONNX Runtime call', default: 32 },
  threads: { type: 'integer', help: 'ONNX Runtime threads (default: all cores)' },
  offline: { type: 'boolean', help: 'use only the local Hugging Face cache' },
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
  const usage = 'camembed index build --input passages.txt --output corpus.cmbd [--model M] [--dtype float16] [--device cuda]\n' +
    '       camembed index info corpus.cmbd [--verify]   (what a file holds; camembed index info --help)';
  const parsed = parseCommand(argv, SPEC, usage);
  if (parsed === null) return;
  const { options, positional } = parsed;
  if (positional.length === 0) {
    throw new CliUsageError(`missing subcommand: 'camembed index build' or 'camembed index info'\n\n${helpText(usage, SPEC)}`);
  }
  if (positional[0] !== 'build') throw new CliUsageError(`expected 'index build' or 'index info', got 'index ${positional[0]}'`);
  if (positional.length > 1) throw new CliUsageError(`unexpected argument '${positional[1]}'`);
  const input = requiredString(options, 'input');
  const output = requiredString(options, 'output');
  if (output === '-') throw new CliUsageError('--output must be a file: an index is not written to standard output');
  requireExists('input', input);
  const dtype = options.dtype as string | undefined;
  if (dtype !== undefined && dtype !== 'float32' && dtype !== 'float16') {
    throw new CliUsageError(`--dtype must be 'float32' or 'float16', got '${dtype}'`);
  }

  const device = options.device as 'cpu';
  const encoder = await Encoder.load(options.model as string, {
    device, threads: options.threads as number | undefined, batchSize: options['batch-size'] as number, offline: options.offline === true,
  });
  const index = new VectorIndex({
    dim: encoder.dim, dtype: dtype as 'float32' | undefined, device, metadata: { model: modelSource(options.model as string) },
  });
  const { texts, onProgress, bar } = textsWithProgress(input, 'index build');
  let size = 0;
  try {
    for await (const chunk of encoder.encodeStream(texts, { onProgress })) {
      index.add(chunk);
    }
    bar.finish();
    await index.save(output);
    size = index.size;
  } finally {
    await encoder.dispose();
    index.dispose();
  }
  process.stderr.write(`wrote ${output}: ${size} passages, ${encoder.dim}-d ${index.dtype}\n`);
}

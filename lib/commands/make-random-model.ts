// camembed make-random-model: a sentence-transformers folder with seeded random CamemBERT weights.
import * as fs from 'fs';
import * as path from 'path';
import { CliUsageError, onInterrupt, OptionSpec, parseCommand, requiredString } from './args';
import { makeRandomModel } from '../model';
import { DEFAULT_MAX_POSITIONS, MAX_SEED, maxPositionsProblem, NoPadTokenError, tokenizerFacts } from '../model/random-model';

export const summary = 'write a CamemBERT-shaped model folder with seeded random weights';

const SPEC: OptionSpec = {
  layers: { type: 'integer', help: 'transformer layers', default: 12 },
  hidden: { type: 'integer', help: 'hidden size', default: 768 },
  heads: { type: 'integer', help: 'attention heads', default: 12 },
  intermediate: { type: 'integer', help: 'feed-forward size', default: 3072 },
  'max-positions': { type: 'integer', help: 'position table size (max_position_embeddings)', default: DEFAULT_MAX_POSITIONS },
  tokenizer: { type: 'string', help: 'folder with tokenizer.json (copied into the model)' },
  out: { type: 'string', help: 'output folder' },
  seed: { type: 'integer', help: `random seed, 0 to ${MAX_SEED}`, default: 0, min: 0, max: MAX_SEED },  // makeRandomModel's bounds
  help: { type: 'boolean', help: 'show this help' },
};

/** The pad token's id of the --tokenizer folder: one naming none is a usage error. */
function padIdOf(tokenizerDir: string): number {
  try {
    return tokenizerFacts(tokenizerDir).padId;
  } catch (err) {
    if (err instanceof NoPadTokenError) throw new CliUsageError(`--tokenizer ${err.message}`);
    throw err;
  }
}

export async function run(argv: string[]): Promise<void> {
  const parsed = parseCommand(argv, SPEC, 'camembed make-random-model --tokenizer <folder> --out <folder> [options]');
  if (parsed === null) return;
  const { options, positional } = parsed;
  if (positional.length > 0) throw new CliUsageError(`unexpected argument '${positional[0]}'`);
  const tokenizerDir = requiredString(options, 'tokenizer', '<folder>');
  const out = requiredString(options, 'out', '<folder>');
  if (fs.existsSync(out) && !fs.statSync(out).isDirectory()) throw new CliUsageError(`--out ${out} is a file, not a folder`);
  // As makeRandomModel checks them, but naming the options.
  if (!fs.existsSync(path.join(tokenizerDir, 'tokenizer.json'))) throw new CliUsageError(`--tokenizer ${tokenizerDir} has no tokenizer.json`);
  if ((options.hidden as number) % (options.heads as number) !== 0) {
    throw new CliUsageError(`--hidden (${options.hidden}) must be a multiple of --heads (${options.heads})`);
  }
  const problem = maxPositionsProblem(options['max-positions'] as number, padIdOf(tokenizerDir));
  if (problem !== null) throw new CliUsageError(`--max-positions ${problem}`);
  const start = Date.now();
  // The weights are written synchronously: Ctrl-C takes effect once they are, leaving no temporary file.
  const endInterrupt = onInterrupt();
  await makeRandomModel({
    layers: options.layers as number, hidden: options.hidden as number, heads: options.heads as number,
    intermediate: options.intermediate as number, maxPositions: options['max-positions'] as number, tokenizerDir, outDir: out,
    seed: options.seed as number,
  }).finally(endInterrupt);
  process.stderr.write(`wrote ${out} in ${((Date.now() - start) / 1000).toFixed(1)} s\n`);
}

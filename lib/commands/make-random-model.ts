// camembed make-random-model: a sentence-transformers folder with seeded random CamemBERT weights.
import { parseArgs, helpText, CliUsageError, OptionSpec } from './args';
import { makeRandomModel } from '../model';

export const summary = 'write a CamemBERT-shaped model folder with seeded random weights';

const SPEC: OptionSpec = {
  layers: { type: 'number', help: 'transformer layers', default: 12 },
  hidden: { type: 'number', help: 'hidden size', default: 768 },
  heads: { type: 'number', help: 'attention heads', default: 12 },
  intermediate: { type: 'number', help: 'feed-forward size', default: 3072 },
  tokenizer: { type: 'string', help: 'folder with tokenizer.json (copied into the model)' },
  out: { type: 'string', help: 'output folder' },
  seed: { type: 'number', help: 'random seed', default: 0 },
  help: { type: 'boolean', help: 'show this help' },
};

export async function run(argv: string[]): Promise<void> {
  const { options, positional } = parseArgs(argv, SPEC);
  if (options.help === true) {
    process.stdout.write(helpText('camembed make-random-model --tokenizer <folder> --out <folder> [options]', SPEC));
    return;
  }
  if (positional.length > 0) throw new CliUsageError(`unexpected argument '${positional[0]}'`);
  if (options.tokenizer === undefined) throw new CliUsageError('--tokenizer <folder> is required');
  if (options.out === undefined) throw new CliUsageError('--out <folder> is required');
  const start = Date.now();
  await makeRandomModel({
    layers: options.layers as number, hidden: options.hidden as number, heads: options.heads as number,
    intermediate: options.intermediate as number, tokenizerDir: options.tokenizer as string,
    outDir: options.out as string, seed: options.seed as number,
  });
  process.stderr.write(`wrote ${options.out} in ${((Date.now() - start) / 1000).toFixed(1)} s\n`);
}

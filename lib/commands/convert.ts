// camembed convert <dir>: safetensors weights of a sentence-transformers folder → ONNX graph.
import { CliUsageError, OptionSpec, parseCommand } from './args';
import { convertToOnnx } from '../model';

export const summary = 'convert a model folder\'s safetensors weights to an ONNX graph';

const SPEC: OptionSpec = {
  output: { type: 'string', help: 'ONNX file to write (weights go to <output>.data); default <dir>/model.onnx' },
  dtype: { type: 'string', help: 'float32 or float16 (weights, compute and output)', default: 'float32' },
  graph: { type: 'string', help: 'fused (ONNX Runtime contrib ops) or plain (standard ops only)', default: 'fused' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function run(argv: string[]): Promise<void> {
  const parsed = parseCommand(argv, SPEC, 'camembed convert <dir> [options]');
  if (parsed === null) return;
  const { options, positional } = parsed;
  if (positional.length !== 1) throw new CliUsageError(`expected one model folder, got ${positional.length} arguments`);
  const dtype = options.dtype as string;
  if (dtype !== 'float32' && dtype !== 'float16') throw new CliUsageError(`--dtype must be float32 or float16, got '${dtype}'`);
  const graph = options.graph as string;
  if (graph !== 'fused' && graph !== 'plain') throw new CliUsageError(`--graph must be fused or plain, got '${graph}'`);
  const start = Date.now();
  const written = await convertToOnnx(positional[0], { output: options.output as string | undefined, dtype, graph });
  process.stderr.write(`wrote ${written} (+ ${written}.data) in ${((Date.now() - start) / 1000).toFixed(1)} s\n`);
}

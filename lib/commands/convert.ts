// camembed convert <dir>: safetensors weights of a sentence-transformers folder → ONNX graph.
import * as fs from 'fs';
import * as path from 'path';
import { followLinks } from '../atomic-file';
import { CliUsageError, namesStandardOutput, onInterrupt, OptionSpec, parseCommand } from './args';
import { conversionInputAt, convertedGraph, convertToOnnx, defaultGraphPath, hubCacheRefusal } from '../model';

export const summary = 'convert a model folder\'s weights (safetensors or pytorch_model.bin) to an ONNX graph';

const SPEC: OptionSpec = {
  output: {
    type: 'string',
    help: "ONNX file to write (weights go to <output>.data); default where the encoder looks: <dir>/onnx/model.onnx, or for a Hugging Face cache snapshot camembed's cache",
  },
  dtype: { type: 'string', help: 'float32 or float16 (weights, compute and output)', default: 'float32' },
  graph: { type: 'string', help: 'fused (ONNX Runtime contrib ops) or plain (standard ops only)', default: 'fused' },
  force: { type: 'boolean', help: 'replace an ONNX file that camembed did not convert (the model\'s own export)' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function run(argv: string[]): Promise<void> {
  const parsed = parseCommand(argv, SPEC, 'camembed convert <dir> [options]');
  if (parsed === null) return;
  const { options, positional } = parsed;
  if (positional.length !== 1) throw new CliUsageError(`expected one model folder, got ${positional.length} arguments`);
  if (!fs.statSync(positional[0], { throwIfNoEntry: false })?.isDirectory()) {
    throw new CliUsageError(`${positional[0]} ${fs.existsSync(positional[0]) ? 'is not a folder' : 'does not exist'}: expected a model folder`);
  }
  const dtype = options.dtype as string;
  if (dtype !== 'float32' && dtype !== 'float16') throw new CliUsageError(`--dtype must be float32 or float16, got '${dtype}'`);
  const graph = options.graph as string;
  if (graph !== 'fused' && graph !== 'plain') throw new CliUsageError(`--graph must be fused or plain, got '${graph}'`);
  const output = (options.output as string | undefined) ?? defaultGraphPath(positional[0]);
  // '-' named a file '-' (and '-.data'); `/dev/stdout > model.onnx` replaced the file the shell opened.
  if (namesStandardOutput(output)) throw new CliUsageError(`--output must be a file, not standard output (${output}): a graph and its .data are two files`);
  if (fs.statSync(output, { throwIfNoEntry: false })?.isDirectory()) {
    throw new CliUsageError(`--output ${output} is a folder: give the ONNX file to write, e.g. ${path.join(output, 'model.onnx')}`);
  }
  const input = conversionInputAt(positional[0], output);
  if (input !== undefined) throw new CliUsageError(`--output ${output} is the model's ${input}, which the conversion reads: writing it would destroy it`);
  // Before the --force check: a snapshot's own graph is there, and --force would not make it writable.
  const refusal = hubCacheRefusal(await followLinks(output));
  if (refusal !== undefined) throw new CliUsageError(refusal);
  if (fs.existsSync(output) && convertedGraph(output, positional[0]) === null && options.force !== true) {
    throw new CliUsageError(`${output} exists and camembed did not convert it (the model's own ONNX graph?): pass --force to replace it, or --output elsewhere`);
  }
  const start = Date.now();
  // The conversion runs synchronously: Ctrl-C takes effect once it returns, leaving whole files, no temporary ones.
  const endInterrupt = onInterrupt();
  const written = await convertToOnnx(positional[0], { output, dtype, graph }).finally(endInterrupt);
  process.stderr.write(`wrote ${written} (+ ${written}.data) in ${((Date.now() - start) / 1000).toFixed(1)} s\n`);
}

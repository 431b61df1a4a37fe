// `camembed encode`: one text per line in, one float32 vector per line out (raw .f32 or .npy),
// streamed in chunks so that millions of lines need only one chunk in memory.
import * as fs from 'fs';

import { followLinks } from '../atomic-file';
import { checkOnnxRuntimeDevice, DEFAULT_MODEL, Encoder } from '../encoder';
import { ioError } from '../io-error';
import { readyBatches } from '../lines';
import {
  checkTextFile, CliUsageError, ENCODER_BATCH_SIZE_OPTION, modelFilesAt, onInterrupt, OptionSpec, parseCommand, requiredString, requireDevice,
  namesStandardOutput, requireExists, requireModel, requireOutputFile, textsWithProgress, THREADS_OPTION, writeStdout,
} from './args';

export const summary = 'encode a text file (one text per line) into float32 vectors (.f32 or .npy)';

const SPEC: OptionSpec = {
  model: { type: 'string', help: 'model folder or Hub id', default: DEFAULT_MODEL },
  input: { type: 'string', help: "UTF-8 text file ('-': standard input), one text per line (\\n or \\r\\n ends a line)" },
  output: {
    type: 'string',
    help: "output file: .npy in any case (numpy array [lines, dim]) or anything else for raw little-endian float32 ('-': standard output)",
  },
  device: { type: 'device', help: "'cpu', 'cuda' or 'cuda:N'", default: 'cpu' },
  threads: THREADS_OPTION,
  'batch-size': { ...ENCODER_BATCH_SIZE_OPTION, default: 32 },
  'no-normalize': { type: 'boolean', help: 'write unnormalised mean-pooled vectors' },
  offline: { type: 'boolean', help: 'use only the local Hugging Face cache' },
  revision: { type: 'string', help: 'branch, tag or commit hash of a Hub model (default: main)' },
  help: { type: 'boolean', help: 'show this help' },
};

// Lines encoded together at most (Encoder.encodeStream's chunk): the vectors of one chunk are in memory at once.
const CHUNK_LINES = 4096;

// numpy format 1.0 header for a little-endian float32 C-order array; padded to a fixed 128 bytes
// so that the final row count can be written over it once the stream has ended.
const NPY_HEADER_BYTES = 128;
function npyHeader(rows: number, dim: number): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${dim}), }`;
  const header = Buffer.alloc(NPY_HEADER_BYTES, 0x20);
  header.write('\x93NUMPY', 0, 'latin1');
  header.writeUInt8(1, 6);
  header.writeUInt8(0, 7);
  header.writeUInt16LE(NPY_HEADER_BYTES - 10, 8);
  header.write(dict, 10, 'latin1');
  header.write('\n', NPY_HEADER_BYTES - 1, 'latin1');
  return header;
}

export async function run(argv: string[]): Promise<void> {
  const parsed = parseCommand(argv, SPEC, 'camembed encode --input texts.txt --output vectors.npy [--model M]');
  if (parsed === null) return;
  const { options, positional } = parsed;
  if (positional.length > 0) throw new CliUsageError(`unexpected argument '${positional[0]}'`);
  const input = requiredString(options, 'input');
  const output = requiredString(options, 'output');
  requireExists('input', input);
  const npy = /\.npy$/i.test(output);  // the extension in any case: vectors.NPY is no raw float32 file
  const existing = requireOutputFile('output', output, [input, ...modelFilesAt(options.model as string)]);
  // `--output /dev/stdout >> vectors.f32`: written as '-' is (opened again, the file was emptied).
  const toStdout = namesStandardOutput(output);
  if (npy && (toStdout || (existing !== undefined && !existing.isFile()))) {
    throw new CliUsageError(`--output ${output}: a .npy output must be a regular file of its own, not standard output (its header is rewritten at the end)`);
  }
  requireModel(options.model as string, options.revision as string | undefined);
  await requireDevice(options.device as string, checkOnnxRuntimeDevice);  // as Encoder.load checks it
  // As gzip: binary on a terminal is unreadable and can leave it in a strange state.
  if (toStdout && process.stdout.isTTY) throw new CliUsageError(`--output ${output}: standard output is a terminal; redirect it (> vectors.f32) or name a file`);
  await checkTextFile(input, 'check input');  // before the output is created and the model loads

  // The output is written in place, and opened before the model loads (a download or a conversion
  // can take minutes) so that one that cannot be opened fails at once. A file this run creates is
  // removed if the run fails or is interrupted, during the load too. An existing one is emptied only
  // once the model has loaded (a model that fails to load leaves it whole), then keeps what was
  // written if the run fails, and says so.
  // Through symbolic links, as index save writes: a link to nothing gets its file made (and removed
  // with it on failure), the link stays.
  const target = toStdout ? null : await followLinks(output);
  const out = target === null ? null : openOutput(output, target);
  let closed = false;
  let emptied = false;
  const closeOutput = (complete: boolean) => {
    if (out === null || closed) return;
    fs.closeSync(out.fd);
    closed = true;
    if (!complete && out.created) fs.rmSync(target!, { force: true });
    if (!complete && emptied) process.stderr.write(`camembed encode: ${output} holds a partial output\n`);
  };
  // Node's messages for a descriptor's writes name no file.
  const onOutput = (op: () => void) => {
    try {
      op();
    } catch (err) {
      throw ioError('write to', output, err);
    }
  };
  const write = async (bytes: Buffer) => {
    if (out !== null) onOutput(() => fs.writeSync(out.fd, bytes));  // where the last write ended
    else await writeStdout(bytes);
  };
  // Also while the model loads: a model converted as it loads leaves no temporary file.
  const endInterruptCleanup = onInterrupt(() => closeOutput(false));
  let encoder: Encoder | undefined;
  let progress: ReturnType<typeof textsWithProgress> | undefined;
  let rows = 0;
  let complete = false;
  try {
    encoder = await Encoder.load(options.model as string, {
      device: options.device as 'cpu',
      threads: options.threads as number | undefined,
      batchSize: options['batch-size'] as number,
      offline: options.offline === true,
      revision: options.revision as string | undefined,
    });
    progress = textsWithProgress(input, 'encode');
    const { batches, onProgress } = progress;
    if (out !== null && !out.created && fs.fstatSync(out.fd).isFile()) {  // a pipe or a device holds nothing to empty
      emptied = true;
      onOutput(() => fs.ftruncateSync(out.fd, 0));
    }
    const { dim } = encoder;
    if (npy) await write(npyHeader(0, dim));
    // The lines that have come, whenever no more are there yet (as search's questions): a program that writes
    // a line and waits for its vector gets it at once (it waited for a chunk of 4,096 lines, or the end).
    for await (const texts of readyBatches(batches, CHUNK_LINES)) {
      const before = rows;
      const chunk = await encoder.encode(texts, { normalize: options['no-normalize'] !== true, onProgress: ({ done }) => onProgress({ done: before + done }) });
      await write(Buffer.from(chunk.data.buffer, chunk.data.byteOffset, chunk.data.byteLength));
      rows += chunk.rows;
    }
    if (out !== null && npy) onOutput(() => fs.writeSync(out.fd, npyHeader(rows, dim), 0, NPY_HEADER_BYTES, 0));
    complete = true;
  } finally {
    progress?.close();
    await endInterruptCleanup();
    closeOutput(complete);
    progress?.bar.finish();
    await encoder?.dispose();
  }
  process.stderr.write(`wrote ${rows} x ${encoder.dim} float32 to ${output === '-' ? 'standard output' : output}\n`);
}

/**
 * Opens `target` (the file `output` names through its links) for writing: a new file ('wx':
 * created by this run), else the existing one, not truncated (no O_TRUNC) and not created by
 * another process meanwhile (no O_CREAT). A failure is an error naming `output`.
 */
function openOutput(output: string, target: string): { fd: number; created: boolean } {
  try {
    try {
      return { fd: fs.openSync(target, 'wx'), created: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return { fd: fs.openSync(target, fs.constants.O_WRONLY), created: false };
    }
  } catch (err) {
    throw ioError('open', output, err);
  }
}

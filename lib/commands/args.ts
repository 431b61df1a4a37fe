// A small, strict command-line parser shared by the subcommands: `--name value`,
// `--name=value`, boolean `--flag`, `-h` for `--help`, positional arguments, and `--` ending the
// options. Unknown options are errors; integer options are checked here, so each command gets
// numbers it can use.
import { once } from 'events';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { followLinks, removeTrackedTemporaries, temporaryPath } from '../atomic-file';
import { ioError } from '../io-error';
import { readTextLineBatches } from '../lines';
import { releaseHeldLocks } from '../lock-file';
import { MAX_RESULT_VALUES } from '../kernels';
import { isRevision, looksLikeHubId } from '../model/hub';
import { modelFiles } from '../model/local';
import { MAX_THREADS, suggestion } from '../validate';
import { createProgressBar, ProgressBar } from '../progress';
import { INDEX_CUDA_MAX_K, IndexFileProgress } from '../vector-index';

export class CliUsageError extends Error {}

/**
 * Writes a command's result to standard output, waiting for 'drain' when the stream's buffer is
 * full: a slow reader (a pipe to `sleep 10; cat`) then holds the command back, where otherwise
 * every line not yet read piles up in memory. A write error ends the process (cli.ts).
 */
export async function writeStdout(data: string | Uint8Array): Promise<void> {
  if (!process.stdout.write(data)) await once(process.stdout, 'drain');
}

// How messages written outside cli.ts's own start: 'camembed <command>', once cli.ts runs a command.
let messagePrefix = 'camembed';

/** Names the command that is running, for the messages written outside cli.ts (onInterrupt's). */
export function setCommandName(name: string): void {
  messagePrefix = `camembed ${name}`;
}

/** A command stopped by Ctrl-C (or SIGTERM) after cleaning up: exit status 128 + the signal's number (130, 143). */
export class CliInterrupted extends Error {
  constructor(message: string, readonly signal: NodeJS.Signals) {
    super(message);
  }
}

export interface OptionSpec {
  [name: string]: {
    /** 'device': 'cpu', 'cuda' or 'cuda:N', checked here for every command alike. */
    type: 'string' | 'integer' | 'boolean' | 'device';
    help: string;
    default?: string | number | boolean;
    /** Smallest value of an integer option (default 1). */
    min?: number;
    /** Largest value of an integer option (default: none but Number.MAX_SAFE_INTEGER). */
    max?: number;
  };
}

/** --threads of the commands that run the encoder: at most what Encoder.load takes, checked as a usage error. */
export const THREADS_OPTION: OptionSpec[string] = {
  type: 'integer', help: `ONNX Runtime threads, at most ${MAX_THREADS} (default: all cores)`, max: MAX_THREADS,
};

/**
 * --batch-size of the commands that run the encoder. Its bound is the model's, checked as the model loads
 * (Encoder.load: batchSize x maxLength <= 2^32 / dim); one past what any model takes (maxLength 2, dim 1) is
 * refused here, before any work.
 */
export const ENCODER_BATCH_SIZE_OPTION: OptionSpec[string] = { type: 'integer', help: 'texts per ONNX Runtime call', max: MAX_RESULT_VALUES / 2 };

export interface Parsed {
  options: Record<string, string | number | boolean | undefined>;
  positional: string[];
  /** The options the command line named (the others hold their defaults). */
  given: Set<string>;
}

export function parseArgs(argv: string[], spec: OptionSpec): Parsed {
  const options: Parsed['options'] = {};
  for (const [name, s] of Object.entries(spec)) options[name] = s.default;
  const positional: string[] = [];
  const given = new Set<string>();
  const known = Object.keys(spec).map((n) => `--${n}`);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {  // the end of the options: the rest are arguments, even '--foo' or '-h'
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h' && spec.help !== undefined) {
      options.help = true;
      continue;
    }
    if (/^-[A-Za-z][\w-]*$/.test(arg)) {  // '-k 3': options are long ('--' ends them: -- -text)
      throw new CliUsageError(`unknown option ${arg}${suggestion(`-${arg}`, known)}`);
    }
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const s = spec[name];
    if (s === undefined) throw new CliUsageError(`unknown option --${name}${suggestion(`--${name}`, known)}`);
    given.add(name);
    if (s.type === 'boolean') {
      const value = eq >= 0 ? arg.slice(eq + 1) : 'true';
      if (value !== 'true' && value !== 'false') throw new CliUsageError(`--${name} takes no value (or =true, =false), got '${value}'`);
      options[name] = value === 'true';
      continue;
    }
    const raw = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (raw === undefined || raw === '') throw new CliUsageError(`--${name} needs a value`);
    // `--output --no-normalize`: a forgotten value, not a file to name '--no-normalize'.
    if (eq < 0 && known.includes(raw.split('=')[0])) {
      throw new CliUsageError(`--${name} needs a value, got the option ${raw} (write --${name}=${raw} if that is the value)`);
    }
    if (s.type === 'integer') {
      const n = Number(raw);
      const min = s.min ?? 1;
      const max = s.max ?? Number.MAX_SAFE_INTEGER;
      if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {  // decimal digits only: not 0x10, 1e3
        const range = s.max !== undefined ? `an integer from ${min} to ${max}` : min === 1 ? 'a positive integer' : `an integer >= ${min}`;
        throw new CliUsageError(`--${name} must be ${range}, got '${raw}'`);
      }
      options[name] = n;
    } else {
      if (s.type === 'device' && !/^(cpu|cuda(:\d+)?)$/.test(raw)) throw new CliUsageError(`--${name} must be 'cpu', 'cuda' or 'cuda:N', got '${raw}'`);
      options[name] = raw;
    }
  }
  return { options, positional, given };
}

export function helpText(usageLine: string, spec: OptionSpec): string {
  const rows = Object.entries(spec).map(([name, s]) => {
    const def = s.default === undefined ? '' : ` (default: ${String(s.default)})`;
    return `  --${name.padEnd(18)} ${s.help}${def}`;
  });
  return `usage: ${usageLine}\n\noptions:\n${rows.join('\n')}\n`;
}

/** parseArgs, except that `--help` prints the help and returns null (the command then stops). */
export function parseCommand(argv: string[], spec: OptionSpec, usageLine: string): Parsed | null {
  const parsed = parseArgs(argv, spec);
  if (parsed.options.help !== true) return parsed;
  process.stdout.write(helpText(usageLine, spec));
  return null;
}

/** A string option that must be given; `placeholder` (e.g. '<folder>') goes into the message. */
export function requiredString(options: Parsed['options'], name: string, placeholder?: string): string {
  const value = options[name];
  if (value === undefined) throw new CliUsageError(`--${name}${placeholder === undefined ? '' : ` ${placeholder}`} is required`);
  return value as string;
}

/**
 * Usage errors before the model loads, which Encoder.load would give as runtime errors: a model that
 * is neither an existing folder nor a Hub id (a mistyped path), --revision with a model folder
 * (a folder has no revisions), and a --revision the Hub cannot have.
 */
export function requireModel(model: string, revision: string | undefined): void {
  const exists = fs.existsSync(model);
  if (!exists && !looksLikeHubId(model)) throw new CliUsageError(`--model ${model} does not exist, and is not a Hub id 'org/name' either`);
  if (revision !== undefined && exists) throw new CliUsageError(`--revision is for Hub ids, but ${model} is a folder here`);
  if (revision !== undefined && !isRevision(revision)) throw new CliUsageError(`--revision must be a branch, tag or commit hash, got '${revision}'`);
}

/**
 * --device checked against this machine by the library's own `checks` (naming the option), before any
 * work: a device this machine lacks, or whose ONNX Runtime provider cannot start, is a usage error, as
 * a --model that does not exist is.
 */
export async function requireDevice(device: string, ...checks: ((device: string, name: string) => unknown)[]): Promise<void> {
  try {
    for (const check of checks) await check(device, '--device');
  } catch (err) {
    throw new CliUsageError((err as Error).message);
  }
}

/**
 * The files of the model `model` when it is a folder here (its graph, weights, tokenizer...: lib/model/local.ts),
 * as inputs of requireOutputFile: an output written over one would destroy the model. A Hub model's
 * files, in the Hugging Face cache, are found only as it loads.
 */
export function modelFilesAt(model: string): string[] {
  return fs.statSync(model, { throwIfNoEntry: false })?.isDirectory() ? modelFiles(model) : [];
}

/** A usage error unless `file`, the value of --name, is '-' (standard input) or exists and is not a folder. */
export function requireExists(name: string, file: string): void {
  // Node reads a folder on standard input (`< /`) as empty, where `cat` says EISDIR: 0 rows, exit 0.
  if (file === '-' && fs.fstatSync(0).isDirectory()) throw new CliUsageError(`--${name} -: standard input is a folder, not a file`);
  if (file === '-') return;
  if (!fs.existsSync(file)) throw new CliUsageError(`--${name} ${file} does not exist`);
  if (fs.statSync(file).isDirectory()) throw new CliUsageError(`--${name} ${file} is a folder, not a file`);
}

/**
 * Whether the output `file` is this process's standard output: '-', or a name of what it is open on
 * (/dev/stdout, /proc/self/fd/1, the file of `> file` or `>> file`), by device and inode. Such an
 * output is written through standard output: opened again by name it would not append for `>>`,
 * and a file (or rename) of its own would replace what the shell gave.
 */
export function namesStandardOutput(file: string): boolean {
  if (file === '-') return true;
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(file, { throwIfNoEntry: false });
  } catch {
    return false;  // a path through a file (ENOTDIR), a loop: requireOutputFile says what is wrong
  }
  const stdout = fs.fstatSync(1);
  return stat !== undefined && stat.dev === stdout.dev && stat.ino === stdout.ino;
}

/**
 * A usage error unless `file`, the value of --name, can be written as an output, checked before any
 * work: its folder exists (and is one), it is not a folder, and it is not one of the `inputs` (by device and
 * inode: writing it would destroy that input; '-' is standard output and standard input, redirected
 * from or to a file); with `regularBecause`, an existing output that is not a regular file (a FIFO,
 * a device) too. Returns what is there now ('-' and new files: undefined).
 */
export function requireOutputFile(name: string, file: string, inputs: (string | undefined)[], regularBecause?: string): fs.Stats | undefined {
  if (namesStandardOutput(file)) {
    requireNotAnInput(`--${name} ${file} (standard output)`, fs.fstatSync(1), inputs);  // `--input texts.txt --output - >> texts.txt` reads back its own vectors
    return undefined;
  }
  const folder = path.dirname(path.resolve(file));
  if (!fs.existsSync(folder)) throw new CliUsageError(`--${name} ${file}: the folder ${folder} does not exist`);
  // Else ENOTDIR: from the stat below on Node 20, from the open on later Node (which stat then reads as no entry).
  if (!fs.statSync(folder).isDirectory()) throw new CliUsageError(`--${name} ${file}: ${folder} is not a folder`);
  const existing = fs.statSync(file, { throwIfNoEntry: false });
  if (existing === undefined) return undefined;
  if (existing.isDirectory()) throw new CliUsageError(`--${name} ${file} is a folder`);
  requireNotAnInput(`--${name} ${file}`, existing, inputs);
  if (regularBecause !== undefined && !existing.isFile()) throw new CliUsageError(`--${name} ${file} is not a regular file: ${regularBecause}`);
  return existing;
}

/**
 * A usage error if `output` (what `label` names: '--output x', 'standard output') is one of the
 * `inputs` ('-': standard input), by device and inode; `why` says what writing it would do.
 */
export function requireNotAnInput(label: string, output: fs.Stats, inputs: (string | undefined)[], why = 'writing it would destroy it'): void {
  // Only a regular file is destroyed by writing it (standard input and output may be one terminal).
  if (!output.isFile()) return;
  for (const input of inputs) {
    if (input === undefined) continue;
    const st = input === '-' ? fs.fstatSync(0) : fs.statSync(input, { throwIfNoEntry: false });
    if (st !== undefined && st.dev === output.dev && st.ino === output.ino) {
      throw new CliUsageError(`${label} is the input ${input === '-' ? '- (standard input)' : input}: ${why}`);
    }
  }
}

/**
 * A runtime error now, naming `output`, unless a file can be made where it is saved (through its
 * links): for an output written only at the end of a long job (an index saved after hours of
 * encoding), on a read-only file system or in a folder without write permission. Probed with a
 * file of the save's own temporary name, removed at once.
 */
export async function requireWritableFolder(output: string): Promise<void> {
  const target = await followLinks(output);
  const probe = temporaryPath(path.join(path.dirname(target), `.${path.basename(target)}`));
  try {
    fs.closeSync(fs.openSync(probe, 'wx'));
  } catch (err) {
    throw ioError('open', output, err);
  }
  fs.rmSync(probe, { force: true });
}

/** --k within what the index searches on `device` take, checked before the index loads. */
export function requireIndexK(k: number, device: string): void {
  if (device !== 'cpu' && k > INDEX_CUDA_MAX_K) throw new CliUsageError(`--k must be <= ${INDEX_CUDA_MAX_K} with --device ${device}, got ${k}`);
}

/**
 * For an option that must name a file when given (not '-': `why` says why): a usage error unless it
 * exists and, unless `pipeAllowed` (a file read once, from start to end), is a regular file.
 */
export function requireFileOption(name: string, file: string | undefined, why: string, pipeAllowed = false): void {
  if (file === undefined) return;
  if (file === '-') throw new CliUsageError(`--${name} must be a file: ${why}`);
  requireExists(name, file);
  if (!pipeAllowed && !fs.statSync(file).isFile()) throw new CliUsageError(`--${name} ${file} is not a regular file: ${why}`);
}

/**
 * `transfer` (an index file's load or save) with a bar of its bytes, drawn from its onProgress; a
 * second bar for the device copies of a load on CUDA.
 */
export async function withFileProgress<T>(label: string, transfer: (onProgress: (p: IndexFileProgress) => void) => Promise<T>): Promise<T> {
  let bar = createProgressBar({ label, unit: 'bytes' });
  let stage: IndexFileProgress['stage'] = 'file';
  const result = await transfer((p) => {
    if (p.stage !== stage) {
      bar.finish();
      stage = p.stage;
      bar = createProgressBar({ label: 'copy to GPU', unit: 'bytes' });
    }
    bar.update(p.bytes, p.totalBytes);
  });
  bar.finish();
  return result;
}

/**
 * The lines of `file` ('-': standard input) as texts, in the batches they are read in (flatten()
 * them for Encoder.encodeStream), and an onProgress for them that draws a bar of the bytes encoded
 * (a regular file's size is known before reading it, its line count is not; a pipe's or a FIFO's
 * size is not). See lib/lines.ts for what a line is. `close()`, when the command ends however it
 * ends, closes the file: a read still waiting for a line (readyBatches') would keep the process
 * until a FIFO's writer, or standard input's, wrote or closed.
 */
export function textsWithProgress(file: string, label: string):
  { batches: AsyncGenerator<string[]>; onProgress: (p: { done: number }) => void; bar: ProgressBar; close: () => void } {
  const stat = file === '-' ? undefined : fs.statSync(file);
  const bar = createProgressBar({ label, unit: 'bytes', total: stat?.isFile() ? stat.size : undefined });
  const lineEnds: number[] = [];  // the byte offset after each line read but not yet encoded
  let encoded = 0;
  const reading = new AbortController();
  async function* batches(): AsyncGenerator<string[]> {
    for await (const lines of readTextLineBatches(file, undefined, reading.signal)) {
      for (const { endOffset } of lines) lineEnds.push(endOffset);
      yield lines.map(({ text }) => text);
    }
  }
  const onProgress = ({ done }: { done: number }) => {
    bar.update(lineEnds[done - encoded - 1]);
    lineEnds.splice(0, done - encoded);
    encoded = done;
  };
  return { batches: batches(), onProgress, bar, close: () => reading.abort() };
}

/**
 * Reads a regular file of texts through once before any of it is encoded, drawing a bar labelled
 * `label`: a line that is not UTF-8 (a file partly in Latin-1) near the end of millions fails now,
 * not after hours of encoding. Standard input, pipes and FIFOs can be read only once: their lines are
 * checked as they are encoded.
 */
export async function checkTextFile(file: string, label: string): Promise<void> {
  const stat = file === '-' ? null : fs.statSync(file);
  if (stat === null || !stat.isFile()) return;
  const bar = createProgressBar({ label, unit: 'bytes', total: stat.size });
  for await (const lines of readTextLineBatches(file)) bar.update(lines[lines.length - 1].endOffset);
  bar.finish();
}

/**
 * Until the returned function is called, SIGINT (Ctrl-C) or SIGTERM runs `cleanup` (synchronous:
 * the event loop is not run again), removes the temporary files this process is writing
 * (lib/atomic-file.ts) and the locks it holds (lib/lock-file.ts), and ends the process with the status the signal would have given (128 +
 * its number), so an interrupted command does not leave a half-written file behind. With `stop`,
 * the first signal calls only `stop` (the command winds down itself) and a second one ends it so.
 * A signal that comes while synchronous code runs (a model conversion) is handled once it returns:
 * the returned function first lets the event loop deliver it, else it would be lost with the handler.
 */
export function onInterrupt(cleanup?: () => void, stop?: (signal: NodeJS.Signals) => void): () => Promise<void> {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stop !== undefined && !stopping) {
      stopping = true;
      stop(signal);
      return;
    }
    try {
      try {
        cleanup?.();
      } finally {
        removeTrackedTemporaries();  // even when the command's own clean-up failed
        releaseHeldLocks();  // a run file's, an embedding cache's (lib/lock-file.ts)
      }
    } finally {
      process.stderr.write(`\n${messagePrefix}: interrupted (${signal})\n`);
      process.exit(128 + os.constants.signals[signal]);
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return async () => {
    // Two turns: one setImmediate called from an I/O callback (an fs Promise just settled) runs
    // before the loop next polls for the signal, which the handler removed below would then lose.
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

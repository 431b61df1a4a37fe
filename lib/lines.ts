// The package's one line reader, for every text file it takes (CLI inputs, TSV collections,
// qrels). '\n' ends a line and a '\r' before it is dropped, so CRLF files read the same; a lone
// '\r' stays in the text, so line numbers (the CLI's passage ids) agree with `wc -l`, `sed -n`
// and `cut`. Lines must be UTF-8 (an error names file and line); a byte order mark is dropped.
import * as fs from 'fs';
import * as net from 'net';

import { ioError } from './io-error';
import { describeValue, requireInteger, requireObject } from './validate';

/** A text file that is not as expected (not UTF-8, a malformed TSV or qrels line): `file:line: message`. */
export class FormatError extends Error {
  constructor(
    /** The file (as given). */
    readonly file: string,
    /** The 1-based line number. */
    readonly line: number,
    message: string,
  ) {
    super(`${file}:${line}: ${message}`);
    this.name = 'FormatError';
  }
}

/** One line of readTextLines. */
export interface TextLine {
  /** The line, without its '\n' (or '\r\n'). */
  text: string;
  /** 1-based line number. */
  line: number;
  /** Byte offset just past the line: pass it (with `line`) as `from` to resume after it. */
  endOffset: number;
}

/** How messages name `file`: '-' is standard input. */
const nameOf = (file: string) => (file === '-' ? 'standard input' : file);

interface RawLine { bytes: Buffer; line: number; startOffset: number; endOffset: number }

// The chunks of `input`, a failed read naming `file`.
async function* chunksOf(input: AsyncIterable<Buffer>, file: string): AsyncGenerator<Buffer> {
  try {
    yield* input;
  } catch (err) {
    throw ioError('read', nameOf(file), err);
  }
}

// At most this many lines a batch: a read (1 MiB) of short lines held all of its lines at once, a
// million for empty ones (64 MiB of them peaked at 1,517 MiB resident; 146-148 MiB in batches of
// 4,096: bench/RESULTS-eval.md).
const BATCH_LINES = 4096;

// The lines ended in each read, in batches: on short lines, one await per line cost more than all
// the rest of the reading.
async function* rawLineBatches(input: AsyncIterable<Buffer>, file: string, startOffset: number, startLine: number): AsyncGenerator<RawLine[]> {
  // The pieces of a line that spans reads, joined once at its end (joining at each read copied a
  // long line once per read: 45 s for a 300 MB line).
  let pending: Buffer[] = [];
  let offset = startOffset;
  let line = startLine;
  for await (const chunk of chunksOf(input, file)) {
    let batch: RawLine[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(0x0a, start); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      let bytes = chunk.subarray(start, nl);
      if (pending.length > 0) { bytes = Buffer.concat([...pending, bytes]); pending = []; }
      const lineStart = offset;
      offset += bytes.length + 1;
      batch.push({ bytes, line: ++line, startOffset: lineStart, endOffset: offset });
      start = nl + 1;
      if (batch.length === BATCH_LINES) {
        yield batch;
        batch = [];
      }
    }
    if (start < chunk.length) pending.push(chunk.subarray(start));
    if (batch.length > 0) yield batch;
  }
  const bytes = Buffer.concat(pending);
  // A file that is only a BOM holds no line, as an empty one holds none (`wc -l`, Python's splitlines).
  if (bytes.length > 0 && !(offset === 0 && bytes.equals(UTF8_BOM))) {
    yield [{ bytes, line: line + 1, startOffset: offset, endOffset: offset + bytes.length }];
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** A line's text from its bytes (without the '\n'): UTF-8, a final '\r' dropped, and the file's BOM. */
function lineText(bytes: Uint8Array, startOffset: number, file: string, line: number): string {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_ENCODING_INVALID_ENCODED_DATA') throw new FormatError(nameOf(file), line, 'is not valid UTF-8');
    // V8 holds at most 2^29 - 24 characters in a string.
    throw new FormatError(nameOf(file), line, `is too long to be one text (${bytes.length} bytes; ${(err as Error).message}): split it into lines`);
  }
  if (text.endsWith('\r')) text = text.slice(0, -1);
  return startOffset === 0 && text.startsWith('\ufeff') ? text.slice(1) : text;
}

/**
 * The lines of `file` ('-': standard input), streamed; `from` resumes a file after a line already
 * read (its `endOffset` and `line`). Pipes and FIFOs are read from where they are. Stopping early
 * (`break`, or `return()`) closes the file; a reader dropped midway closes it once collected.
 * Bad arguments throw here, not at the first next(); a missing file fails the first next().
 */
export function readTextLines(file: string, from = { offset: 0, line: 0 }): AsyncGenerator<TextLine, void, undefined> {
  return flatten(readTextLineBatches(file, from));
}

/**
 * readTextLines' lines, in batches (arrays) of up to 4,096 lines of a read: for readers that would otherwise await each line.
 * Aborting `signal` closes the file at once, even while a read waits for a line (a FIFO's or standard
 * input's): return() cannot, as it waits for that read to end first.
 */
export function readTextLineBatches(file: string, from = { offset: 0, line: 0 }, signal?: AbortSignal): AsyncGenerator<TextLine[], void, undefined> {
  if (typeof file !== 'string' || file === '') throw new TypeError(`file must be a non-empty path string (or '-'), got ${describeValue(file)}`);
  requireObject('from', from, ['offset', 'line']);
  const start = { offset: requireInteger('from.offset', from.offset, 0), line: requireInteger('from.line', from.line, 0) };
  if (start.offset > 0 && file === '-') throw notResumable(file);
  return textLines(file, start, signal);
}

/**
 * Each batch with `f` applied to its items (an undefined result dropped, an empty batch not
 * yielded). When `f` throws, the items before the bad one are yielded first, then the error, as a
 * stream of single items would give them.
 */
export async function* mapBatches<T, U>(batches: AsyncIterable<T[]>, f: (item: T) => U | undefined): AsyncGenerator<U[], void, undefined> {
  for await (const batch of batches) {
    const out: U[] = [];
    try {
      for (const item of batch) {
        const mapped = f(item);
        if (mapped !== undefined) out.push(mapped);
      }
    } catch (err) {
      if (out.length > 0) yield out;
      throw err;
    }
    if (out.length > 0) yield out;
  }
}

/**
 * The items of `batches` in batches of `size`, and in a shorter one whenever the next of `batches`
 * is not there yet: a person typing, or a program that writes a line and waits for its answer, gets
 * it at once, while items already read (a file's) still go `size` at a time.
 */
export async function* readyBatches<T>(batches: AsyncIterable<T[]>, size: number): AsyncGenerator<T[], void, undefined> {
  const input = batches[Symbol.asyncIterator]();
  let pending: T[] = [];
  try {
    for (;;) {
      const next = input.next();
      next.catch(() => {});  // awaited below: not an unhandled rejection while a batch is out
      // Ready means settled within a turn of the event loop (a read already done, a batch of the same read).
      if (pending.length > 0 && !(await Promise.race([next.then(() => true, () => true), new Promise<boolean>((r) => setImmediate(r, false))]))) {
        yield pending;
        pending = [];
      }
      const { done, value } = await next;
      if (done) break;
      for (const item of value) pending.push(item);  // not push(...): a batch may hold more than a call takes arguments
      while (pending.length >= size) yield pending.splice(0, size);
    }
    if (pending.length > 0) yield pending;
  } finally {
    // Stopped early: the input closes once a read in flight (a line not typed yet) ends, which is not waited for.
    input.return?.().catch(() => {});
  }
}

/** The items of `batches`, one at a time. */
export async function* flatten<T>(batches: AsyncIterable<T[]>): AsyncGenerator<T, void, undefined> {
  for await (const batch of batches) yield* batch;
}

const notResumable = (file: string) => new RangeError(`${nameOf(file)} is not a regular file: it cannot be resumed from a byte offset`);

async function* textLines(file: string, from: { offset: number; line: number }, signal?: AbortSignal): AsyncGenerator<TextLine[], void, undefined> {
  if (signal?.aborted) return;
  // What the file is, like opening it, is found out when reading starts.
  if (from.offset > 0 && !fs.statSync(file).isFile()) throw notResumable(file);
  // A start position, even 0, makes every read positioned, which a pipe refuses (ESPIPE).
  const input = file === '-' ? process.stdin : isFifo(file) ? openFifo(file)
    : fs.createReadStream(file, { highWaterMark: 1 << 20, ...(from.offset > 0 ? { start: from.offset } : {}) });
  // A caller that drops this generator midway without return() (a server whose client went away)
  // would leave the file open for good: `walk` lives as long as the generator's frame, and its
  // collection closes the file.
  const walk = {};
  if (input !== process.stdin) openFiles.register(walk, input, walk);
  const close = () => input.destroy();
  signal?.addEventListener('abort', close);
  try {
    yield* mapBatches(rawLineBatches(input as AsyncIterable<Buffer>, file, from.offset, from.line),
      ({ bytes, line, startOffset, endOffset }) => ({ text: lineText(bytes, startOffset, file, line), line, endOffset }));
  } finally {
    signal?.removeEventListener('abort', close);
    openFiles.unregister(walk);
  }
}

const openFiles = new FinalizationRegistry<fs.ReadStream | net.Socket>((input) => input.destroy());

/** Whether `file` is a named pipe (what else it is, or that it is missing, the read tells). */
function isFifo(file: string): boolean {
  try {
    return process.platform !== 'win32' && fs.statSync(file).isFIFO();
  } catch {
    return false;
  }
}

// A FIFO read as Node reads a piped standard input, by the event loop: fs's open and reads wait in a
// libuv thread (the open until a writer comes), and a Ctrl-C handler's process.exit() waited for that
// thread, so `camembed encode --input FIFO` could not be interrupted until a writer came.
function openFifo(file: string): net.Socket {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);  // at once, writer or not
  } catch (err) {
    throw ioError('read', file, err);
  }
  return new net.Socket({ fd, readable: true, writable: false });
}

/** The texts of readTextLines (a bad `file` throws here too). */
export function readTexts(file: string): AsyncGenerator<string, void, undefined> {
  return textsOf(readTextLines(file));
}

async function* textsOf(lines: AsyncIterable<TextLine>): AsyncGenerator<string, void, undefined> {
  for await (const { text } of lines) yield text;
}

/**
 * Lines of a file by number (0-based, as `camembed index build` numbers passages), read on
 * demand: opening makes one pass that keeps where each line starts (8 bytes a line).
 */
export class LineFile {
  private closed = false;

  private constructor(readonly file: string, private readonly fd: number, private readonly stat: fs.Stats,
    private readonly starts: Float64Array, readonly count: number) {}

  static async open(file: string): Promise<LineFile> {
    const fd = fs.openSync(file, 'r');
    try {
      const stat = fs.fstatSync(fd);
      if (!stat.isFile()) throw new RangeError(`${file} is not a regular file: its lines cannot be read by number`);
      let starts = new Float64Array(1024);
      let count = 0;
      // Through the descriptor the lines are read from, so that a file replaced meanwhile is not mixed in.
      const input = fs.createReadStream('', { fd, autoClose: false, start: 0, highWaterMark: 1 << 20 });
      for await (const batch of rawLineBatches(input as AsyncIterable<Buffer>, file, 0, 0)) {
        for (const { bytes, line, startOffset, endOffset } of batch) {
          lineText(bytes, startOffset, file, line);  // checks the UTF-8 now rather than at some hit
          if (count + 2 > starts.length) {
            const grown = new Float64Array(starts.length * 2);
            grown.set(starts);
            starts = grown;
          }
          starts[++count] = endOffset;  // line i spans [starts[i], starts[i + 1])
        }
      }
      return new LineFile(file, fd, stat, starts, count);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Line `n` (a number or a bigint id) as readTextLines gives it. */
  line(id: number | bigint): string {
    if (typeof id === 'number' ? !Number.isSafeInteger(id) || id < 0 || id >= this.count : id < 0n || id >= BigInt(this.count)) {
      throw new RangeError(`${this.file} has no line ${id} (it has ${this.count}, numbered from 0)`);
    }
    const n = Number(id);
    const bytes = Buffer.alloc(this.starts[n + 1] - this.starts[n]);
    const now = fs.fstatSync(this.fd);
    if (now.size !== this.stat.size || now.mtimeMs !== this.stat.mtimeMs ||
        fs.readSync(this.fd, bytes, 0, bytes.length, this.starts[n]) !== bytes.length) {
      throw new Error(`${this.file} changed since it was opened`);
    }
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 0x0a ? bytes.length - 1 : bytes.length;
    return lineText(bytes.subarray(0, end), this.starts[n], this.file, n + 1);
  }

  close(): void {
    if (!this.closed) fs.closeSync(this.fd);
    this.closed = true;
  }
}

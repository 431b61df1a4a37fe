// The package's one line reader, for every text file it takes (CLI inputs, TSV collections,
// qrels). '\n' ends a line and a '\r' before it is dropped, so CRLF files read the same; a lone
// '\r' stays in the text, so line numbers (the CLI's passage ids) agree with `wc -l`, `sed -n`
// and `cut`. Lines must be UTF-8 (an error names file and line); a byte order mark is dropped.
import * as fs from 'fs';

import { typeName } from './validate';

export class FormatError extends Error {
  constructor(readonly file: string, readonly line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.name = 'FormatError';
  }
}

export interface TextLine {
  text: string;
  /** 1-based line number. */
  line: number;
  /** Byte offset just past the line: pass it (with `line`) as `from` to resume after it. */
  endOffset: number;
}

interface RawLine { bytes: Buffer; line: number; startOffset: number; endOffset: number }

async function* readRawLines(input: AsyncIterable<Buffer>, startOffset: number, startLine: number): AsyncGenerator<RawLine> {
  let pending: Buffer | null = null;
  let offset = startOffset;
  let line = startLine;
  for await (const chunk of input) {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a, start); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      let bytes = chunk.subarray(start, nl);
      if (pending !== null) { bytes = Buffer.concat([pending, bytes]); pending = null; }
      const lineStart = offset;
      offset += bytes.length + 1;
      yield { bytes, line: ++line, startOffset: lineStart, endOffset: offset };
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      pending = pending === null ? Buffer.from(rest) : Buffer.concat([pending, rest]);
    }
  }
  if (pending !== null) yield { bytes: pending, line: line + 1, startOffset: offset, endOffset: offset + pending.length };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The lines of `file` ('-': standard input), streamed; `from` resumes a file after a line already
 * read (its `endOffset` and `line`). Pipes and FIFOs are read from where they are.
 */
export async function* readTextLines(file: string, from = { offset: 0, line: 0 }): AsyncGenerator<TextLine> {
  if (typeof file !== 'string' || file === '') throw new TypeError(`file must be a non-empty path string (or '-'), got ${typeName(file)}`);
  for (const key of ['offset', 'line'] as const) {
    if (!Number.isSafeInteger(from[key]) || from[key] < 0) throw new RangeError(`from.${key} must be an integer >= 0, got ${from[key]}`);
  }
  if (from.offset > 0 && (file === '-' || !fs.statSync(file).isFile())) {
    throw new RangeError(`${file === '-' ? 'standard input' : file} is not a regular file: it cannot be resumed from a byte offset`);
  }
  // A start position, even 0, makes every read positioned, which a pipe refuses (ESPIPE).
  const input = file === '-' ? process.stdin
    : fs.createReadStream(file, { highWaterMark: 1 << 20, ...(from.offset > 0 ? { start: from.offset } : {}) });
  for await (const { bytes, line, startOffset, endOffset } of readRawLines(input as AsyncIterable<Buffer>, from.offset, from.line)) {
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      throw new FormatError(file === '-' ? 'standard input' : file, line, 'is not valid UTF-8');
    }
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (startOffset === 0 && text.startsWith('\ufeff')) text = text.slice(1);
    yield { text, line, endOffset };
  }
}

/** The texts of readTextLines. */
export async function* readTexts(file: string): AsyncGenerator<string> {
  for await (const { text } of readTextLines(file)) yield text;
}

// The one line reader (lib/lines.ts): what a line is, byte offsets, resuming, standard input.
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PassThrough, Readable } from 'stream';

import * as camembed from '../lib';
import { readTsv } from '../lib/eval/formats';
import { FormatError, LineFile, readTextLineBatches, readTextLines, readTexts, readyBatches, TextLine } from '../lib/lines';

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-lines-')); });
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

async function collect(lines: AsyncIterable<TextLine>): Promise<TextLine[]> {
  const out: TextLine[] = [];
  for await (const l of lines) out.push(l);
  return out;
}

function withStdin<T>(bytes: Buffer, body: () => Promise<T>): Promise<T> {
  const spy = jest.spyOn(process, 'stdin', 'get').mockReturnValue(Readable.from([bytes]) as unknown as typeof process.stdin);
  return body().finally(() => spy.mockRestore());
}

// Lines as `wc -l` and `sed -n Np` count them: '\n' ends a line; a lone '\r' is text.
const content = '\ufeffun été\r\nmac\rline\n\n\u2028sep\nlast';
const expected = [
  { text: 'un été', line: 1 }, { text: 'mac\rline', line: 2 }, { text: '', line: 3 },
  { text: '\u2028sep', line: 4 }, { text: 'last', line: 5 },
];

test('a line ends at \\n (CRLF read the same, a lone \\r kept); BOM dropped; byte offsets; resume', async () => {
  const file = path.join(dir, 'a.txt');
  fs.writeFileSync(file, content);
  const lines = await collect(readTextLines(file));
  expect(lines.map(({ text, line }) => ({ text, line }))).toEqual(expected);
  const bytes = Buffer.from(content);
  let at = 0;
  for (const l of lines.slice(0, -1)) {
    at = bytes.indexOf(0x0a, at) + 1;
    expect(l.endOffset).toBe(at);
  }
  expect(lines[4].endOffset).toBe(bytes.length);
  const resumed = await collect(readTextLines(file, { offset: lines[1].endOffset, line: lines[1].line }));
  expect(resumed).toEqual(lines.slice(2));
});

test('a file that is only a BOM holds no line, as an empty file; a BOM and a newline hold one empty line', async () => {
  for (const [bytes, texts] of [[[], []], [[0xef, 0xbb, 0xbf], []], [[0xef, 0xbb, 0xbf, 0x0a], ['']], [[0xef, 0xbb, 0xbf, 0x61], ['a']]] as const) {
    const file = path.join(dir, 'bom.txt');
    fs.writeFileSync(file, Buffer.from(bytes));
    expect((await collect(readTextLines(file))).map((l) => l.text)).toEqual(texts);
    expect(await withStdin(Buffer.from(bytes), async () => (await collect(readTextLines('-'))).map((l) => l.text))).toEqual(texts);
  }
});

test('a line longer than a read (1 MiB) is copied once, not again with each read (a 300 MB line took 45 s)', async () => {
  const file = path.join(dir, 'long.txt');
  const bytes = 16 << 20;
  fs.writeFileSync(file, Buffer.alloc(bytes, 'a'));
  const concat = jest.spyOn(Buffer, 'concat');
  try {
    const lines = await collect(readTextLines(file));
    expect(lines.map((l) => [l.text.length, l.endOffset])).toEqual([[bytes, bytes]]);
    expect(concat.mock.results.reduce((copied, r) => copied + (r.value as Buffer).length, 0)).toBeLessThanOrEqual(bytes);
  } finally {
    concat.mockRestore();
  }
});

test('a line too long for a JavaScript string says so, not that it is not UTF-8', async () => {
  const file = path.join(dir, 'huge.txt');
  fs.writeFileSync(file, 'un\ndeux\n');
  // How V8 refuses a line of 2^29 characters or more: a file that size is too big for a unit test.
  const tooLong = new Error('Cannot create a string longer than 0x1fffffe8 characters');
  const decode = jest.spyOn(TextDecoder.prototype, 'decode').mockImplementation(() => { throw tooLong; });
  try {
    await expect(collect(readTextLines(file))).rejects.toThrow(new FormatError(file, 1,
      `is too long to be one text (2 bytes; ${tooLong.message}): split it into lines`));
  } finally {
    decode.mockRestore();
  }
});

test("standard input ('-') reads the same; bad UTF-8 names the file (or standard input) and line", async () => {
  const file = path.join(dir, 'a.txt');
  expect(await withStdin(Buffer.from(content), () => collect(readTextLines('-')))).toEqual(await collect(readTextLines(file)));
  const bad = Buffer.concat([Buffer.from('ok\nbad '), Buffer.from([0xc3, 0x28]), Buffer.from('\n')]);
  const badFile = path.join(dir, 'bad.txt');
  fs.writeFileSync(badFile, bad);
  await expect(collect(readTextLines(badFile))).rejects.toThrow(new FormatError(badFile, 2, 'is not valid UTF-8'));
  await expect(withStdin(bad, () => collect(readTextLines('-')))).rejects.toThrow('standard input:2: is not valid UTF-8');
});

test('a failed read names the file (or standard input) and keeps its code: Node names neither', async () => {
  await expect(collect(readTextLines(dir))).rejects.toMatchObject({ message: `cannot read ${dir}: EISDIR: illegal operation on a directory, read`, code: 'EISDIR' });
  // An open's error names its file already: once, not twice.
  const missing = path.join(dir, 'missing.txt');
  await expect(collect(readTextLines(missing))).rejects.toMatchObject({ message: `ENOENT: no such file or directory, open '${missing}'`, code: 'ENOENT' });
  const failing = new Readable({ read() { this.destroy(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })); } });
  const spy = jest.spyOn(process, 'stdin', 'get').mockReturnValue(failing as unknown as typeof process.stdin);
  try {
    await expect(collect(readTextLines('-'))).rejects.toMatchObject({ message: 'cannot read standard input: EIO: i/o error, read', code: 'EIO' });
  } finally {
    spy.mockRestore();
  }
});

test('LineFile gives line n (from 0) as the reader gives it; other numbers, pipes and bad UTF-8 are errors', async () => {
  const file = path.join(dir, 'a.txt');
  const lines = await LineFile.open(file);
  try {
    expect(lines.count).toBe(expected.length);
    for (const n of [3, 0, 4, 1, 2]) expect(lines.line(n)).toBe(expected[n].text);
    for (const n of [-1, 5, 1.5, 2n ** 53n + 1n]) expect(() => lines.line(n)).toThrow(new RangeError(`${file} has no line ${n} (it has 5, numbered from 0)`));
    expect(lines.line(4n)).toBe(expected[4].text);
  } finally {
    lines.close();
    lines.close();  // twice is fine
  }
  // A file that changes after it was opened is an error, not a mix of two files.
  const changing = path.join(dir, 'changing.txt');
  fs.writeFileSync(changing, 'un\ndeux\n');
  const opened = await LineFile.open(changing);
  try {
    fs.writeFileSync(changing, 'XX\nYYYYYYYY\n');
    expect(() => opened.line(0)).toThrow(`${changing} changed since it was opened`);
  } finally {
    opened.close();
  }
  const bad = path.join(dir, 'bad-lines.txt');
  fs.writeFileSync(bad, Buffer.concat([Buffer.from('ok\n'), Buffer.from([0xc3, 0x28])]));
  await expect(LineFile.open(bad)).rejects.toThrow(`${bad}:2: is not valid UTF-8`);
  await expect(LineFile.open(dir)).rejects.toThrow(`${dir} is not a regular file`);
});

test('the package exports the reader, and readTexts gives the texts alone', async () => {
  expect(camembed.readTextLines).toBe(readTextLines);
  const file = path.join(dir, 'a.txt');
  const texts: string[] = [];
  for await (const text of camembed.readTexts(file)) texts.push(text);
  expect(texts).toEqual(expected.map((e) => e.text));
  expect(camembed.readTexts).toBe(readTexts);
});

test('a FIFO (or /dev/stdin, <(...)) reads like a file; standard input cannot resume from an offset', async () => {
  const fifo = path.join(dir, 'fifo');
  try {
    execFileSync('mkfifo', [fifo]);
  } catch {
    console.log('lines.test: FIFO case skipped: mkfifo is missing');
  }
  if (fs.existsSync(fifo)) {
    spawn('sh', ['-c', `printf '%s' "$0" > "$1"`, content, fifo], { stdio: 'ignore' });
    expect((await collect(readTextLines(fifo))).map(({ text, line }) => ({ text, line }))).toEqual(expected);
  }
  expect(() => readTextLines('-', { offset: 8, line: 1 })).toThrow(
    new RangeError('standard input is not a regular file: it cannot be resumed from a byte offset'));
  if (fs.existsSync(fifo)) {
    await expect(collect(readTextLines(fifo, { offset: 8, line: 1 }))).rejects.toThrow(`${fifo} is not a regular file`);
  }
  const file = path.join(dir, 'a.txt');
  // Bad arguments throw at the call, not at the first next().
  expect(() => readTextLines(file, { offset: -5, line: 0 })).toThrow(new RangeError('from.offset must be >= 0, got -5'));
  expect(() => readTextLines(file, { offset: 1.5, line: 0 })).toThrow(new TypeError('from.offset must be an integer, got 1.5'));
  expect(() => readTextLines(file, { offset: '5' as unknown as number, line: 0 })).toThrow(new TypeError('from.offset must be an integer, got "5"'));
  expect(() => readTextLines(file, { offset: 0, line: NaN })).toThrow(/from.line must be/);
  expect(() => readTextLines(42 as unknown as string)).toThrow(TypeError);
});

test('the lines (and TSV records) before a bad one come out before its error, as from a stream', async () => {
  const file = path.join(dir, 'late-bad.tsv');
  fs.writeFileSync(file, Buffer.concat([Buffer.from('a\tun\nb\tdeux\nc\ttrois\nd\t'), Buffer.from([0xc3, 0x28]), Buffer.from('\ne\tcinq\n')]));
  const seen: string[] = [];
  await expect((async () => { for await (const l of readTextLines(file)) seen.push(l.text); })()).rejects.toThrow(`${file}:4: is not valid UTF-8`);
  expect(seen).toEqual(['a\tun', 'b\tdeux', 'c\ttrois']);
  const ids: string[] = [];
  await expect((async () => { for await (const r of readTsv(file)) ids.push(r.id); })()).rejects.toThrow(`${file}:4: is not valid UTF-8`);
  expect(ids).toEqual(['a', 'b', 'c']);
  fs.writeFileSync(file, 'a\tun\nb\tdeux\nsans tabulation\n');
  ids.length = 0;
  await expect((async () => { for await (const r of readTsv(file)) ids.push(r.id); })()).rejects.toThrow(`${file}:3: expected 'id<TAB>text' but found no tab`);
  expect(ids).toEqual(['a', 'b']);
});

test('short lines come in batches of at most 4,096, not a read (1 MiB) at a time: 64 MiB of empty lines took 1.5 GB', async () => {
  // A read of empty lines, then a line across two reads.
  const file = path.join(dir, 'newlines.txt');
  const last = 'à cheval sur deux lectures';
  fs.writeFileSync(file, `début${'\n'.repeat((1 << 20) - 10)}${last}\n`);
  const sizes: number[] = [];
  const lines: TextLine[] = [];
  for await (const batch of readTextLineBatches(file)) {
    sizes.push(batch.length);
    for (const l of batch) lines.push(l);
  }
  expect(Math.max(...sizes)).toBe(4096);
  const n = (1 << 20) - 9;
  expect(lines.length).toBe(n);
  expect(lines[0]).toEqual({ text: 'début', line: 1, endOffset: 7 });
  expect(lines.every((l, i) => l.line === i + 1 && (i === 0 || i === n - 1 || (l.text === '' && l.endOffset === i + 7)))).toBe(true);
  expect(lines[n - 1]).toEqual({ text: last, line: n, endOffset: fs.statSync(file).size });
  const lineFile = await LineFile.open(file);
  try {
    expect([lineFile.count, lineFile.line(1), lineFile.line(n - 1)]).toEqual([n, '', last]);
  } finally {
    lineFile.close();
  }
});

test('readyBatches: lines already read go `size` at a time; what has come goes out as soon as no more is there', async () => {
  const file = path.join(dir, 'thousand.txt');
  fs.writeFileSync(file, Array.from({ length: 1000 }, (_, i) => `question ${i}\n`).join(''));
  const sizes: number[] = [];
  const texts: string[] = [];
  for await (const batch of readyBatches(readTextLineBatches(file), 256)) {
    sizes.push(batch.length);
    for (const { text } of batch) texts.push(text);
  }
  expect(sizes).toEqual([256, 256, 256, 232]);
  expect(texts).toEqual(Array.from({ length: 1000 }, (_, i) => `question ${i}`));

  // Two lines, then a third only once the first two are answered: they are not held back for it.
  const input = new PassThrough();
  const stdin = jest.spyOn(process, 'stdin', 'get').mockReturnValue(input as unknown as typeof process.stdin);
  const got: string[][] = [];
  try {
    input.write('un\ndeux\n');
    for await (const batch of readyBatches(readTextLineBatches('-'), 256)) {
      got.push(batch.map(({ text }) => text));
      if (got.length === 1) input.end('trois\n');
    }
  } finally {
    stdin.mockRestore();
  }
  expect(got).toEqual([['un', 'deux'], ['trois']]);
});

// `camembed index build` and `camembed search` give what Encoder + VectorIndex give in-process.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';

import { main } from '../lib/cli';
import { Encoder } from '../lib/encoder';
import { VectorIndex } from '../lib/vector-index';
import { float16ToFloat32Array, float32ToFloat16Array } from '../lib/float16';
import { cliCoprocess } from './helpers/coprocess';
import { makeRandom, randomSignedArray } from './helpers/random';
import { npyBytes } from './helpers/npy';
import { withTerminalStderr } from './helpers/terminal';

const SHARED = path.resolve(__dirname, '../../shared');
const MODEL = path.join(SHARED, 'models/tiny-random-camembert');
const PASSAGES = path.join(SHARED, 'corpus/fr-passages.dev.txt');
const haveFiles = fs.existsSync(path.join(MODEL, 'model.onnx')) && fs.existsSync(PASSAGES);
if (!haveFiles) console.warn(`index/search CLI tests skipped: ${MODEL} or ${PASSAGES} is missing`);
const describeFiles = haveFiles ? describe : describe.skip;

async function captureStdout(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    return { code: await main(argv), out };
  } finally {
    spy.mockRestore();
  }
}

/**
 * Runs a command whose standard output is always full (write() returns false): it must wait for
 * 'drain' after each write, not pile up every line in memory for a slow reader (`| (sleep 10; cat)`).
 * Returns the writes made before the first wait, and the whole output once drained each time.
 */
async function withFullStdout(argv: string[]): Promise<{ code: number; beforeFirstDrain: number; out: string }> {
  const writes: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    writes.push(String(chunk));
    return false;
  });
  const listeners = process.stdout.listenerCount('drain');
  try {
    let finished = false;
    const running = main(argv).finally(() => { finished = true; });
    let beforeFirstDrain = -1;
    while (!finished) {
      await new Promise(setImmediate);
      if (process.stdout.listenerCount('drain') > listeners) {
        if (beforeFirstDrain < 0) beforeFirstDrain = writes.length;
        process.stdout.emit('drain');
      }
    }
    return { code: await running, beforeFirstDrain, out: writes.join('') };
  } finally {
    spy.mockRestore();
  }
}

describeFiles('camembed index build / search', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-index-cli-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const passages = haveFiles ? fs.readFileSync(PASSAGES, 'utf8').split('\n').filter((l) => l.length > 0).slice(0, 120) : [];
  const questions = ['Quelle est la capitale de la France ?', 'Comment fonctionne un moteur électrique ?', 'où trouver une pharmacie'];
  const input = path.join(dir, 'passages.txt');
  const queriesFile = path.join(dir, 'questions.txt');
  const indexFile = path.join(dir, 'corpus.cmbd');
  fs.writeFileSync(input, passages.join('\n') + '\n');
  fs.writeFileSync(queriesFile, questions.join('\r\n') + '\r\n');

  async function expected(dtype: 'float32' | 'float16'): Promise<{ ids: bigint[][]; scores: number[][] }> {
    const encoder = await Encoder.load(MODEL);
    const index = new VectorIndex({ dim: encoder.dim, dtype });
    index.add(await encoder.encode(passages));
    const result = await index.search(await encoder.encode(questions), { k: 5 });
    await encoder.dispose();
    const rows = (q: number) => [q * 5, (q + 1) * 5];
    return {
      ids: questions.map((_, q) => [...result.ids.subarray(...rows(q))]),
      scores: questions.map((_, q) => [...result.scores.subarray(...rows(q))]),
    };
  }

  test.each(['float32', 'float16'] as const)('build (%s), then search a file of questions (jsonl) and one question (tsv)', async (dtype) => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['index', 'build', '--model', MODEL, '--input', input, '--output', indexFile, '--dtype', dtype])).toBe(0);
    } finally {
      stderr.mockRestore();
    }
    const built = await VectorIndex.load(indexFile);
    expect(built.size).toBe(passages.length);
    expect(built.dtype).toBe(dtype);
    expect(built.metadata).toEqual({ model: fs.realpathSync(MODEL) });
    const want = await expected(dtype);

    // No --model: the one the index records.
    const jsonl = await captureStdout(['search', '--index', indexFile, '--k', '5', '--queries', queriesFile, '--format', 'jsonl', '--batch-size', '2']);
    expect(jsonl.code).toBe(0);
    const records = jsonl.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(records.map((r) => r.text)).toEqual(questions);
    records.forEach((r, q) => {
      expect(r.query).toBe(q);
      expect(r.ids.map(BigInt)).toEqual(want.ids[q]);
      r.scores.forEach((s: number, i: number) => expect(s).toBeCloseTo(want.scores[q][i], 6));
    });

    // The same questions from standard input.
    const stdin = jest.spyOn(process, 'stdin', 'get').mockReturnValue(
      Readable.from([fs.readFileSync(queriesFile)], { objectMode: false }) as unknown as typeof process.stdin);
    try {
      const piped = await captureStdout(['search', '--index', indexFile, '--model', MODEL, '--k', '5', '--queries', '-', '--format', 'jsonl']);
      expect(piped).toEqual(jsonl);
    } finally {
      stdin.mockRestore();
    }

    // --passages: each hit's line of the input, the exact text in JSON, tabs as spaces in TSV.
    const withText = await captureStdout(['search', '--index', indexFile, '--k', '5', '--queries', queriesFile, '--format', 'jsonl', '--passages', input]);
    withText.out.trim().split('\n').map((l) => JSON.parse(l)).forEach((r, q) => {
      expect(r.ids).toEqual(records[q].ids);
      expect(r.passages).toEqual(r.ids.map((id: number) => passages[id]));
    });
    const tsvText = await captureStdout(['search', '--index', indexFile, '--k', '5', '--passages', input, questions[1]]);
    expect(tsvText.out.trim().split('\n').map((l) => l.split('\t')[4])).toEqual(want.ids[1].map((id) => passages[Number(id)].replace(/[\t\r]/g, ' ')));

    const tsv = await captureStdout(['search', '--index', indexFile, '--model', MODEL, '--k', '5', '--mmap', questions[1]]);
    expect(tsv.code).toBe(0);
    const lines = tsv.out.trim().split('\n').map((l) => l.split('\t'));
    expect(lines.map((l) => l.slice(0, 2))).toEqual([1, 2, 3, 4, 5].map((r) => ['0', String(r)]));
    expect(lines.map((l) => BigInt(l[2]))).toEqual(want.ids[1]);
    // The ids are line numbers of the input: the top passage is that line.
    expect(Number(lines[0][2])).toBeLessThan(passages.length);
  });

  test('search --queries FILE: the bar shows the bytes of the file searched out of its size, with an ETA, as encode\'s does; one question has none', async () => {
    const size = fs.statSync(queriesFile).size;
    const searchBars = async (question: string[]) => {
      const err = await withTerminalStderr(async (written) => {
        expect((await captureStdout(['search', '--index', indexFile, '--k', '5', ...question, '--batch-size', '1'])).code).toBe(0);
        return written;
      });
      return err.join('').split('\n').map((line) => line.slice(line.lastIndexOf('\r') + 1)).filter((draw) => draw.startsWith('search '));
    };
    expect(await searchBars(['--queries', queriesFile])).toEqual([expect.stringMatching(new RegExp(`^search  \\[#{24}\\] 100\\.0%  ${size} B/${size} B  ETA 0:00  `))]);
    // Was 'search  1  167/s' after the results: a count of the one question.
    expect(await searchBars([questions[0]])).toEqual([]);
  });

  /** `camembed search --queries -` as a coprocess: its standard input stays open until `stdin.end()`. */
  const coprocess = (args: string[]) => cliCoprocess(['search', '--index', indexFile, '--k', '5', '--queries', '-', '--threads', '1', ...args]);
  /** Standard output holds `n` whole lines. */
  const lines = (n: number) => (out: Buffer) => String(out).split('\n').length > n;

  test('search --queries - answers each question as it comes (a coprocess writes one and waits), not --batch-size at a time or at the end', async () => {
    const search = coprocess([]);
    try {
      search.stdin.write(`${questions[1]}\n`);
      await search.answered(lines(5), '5 lines');
      search.stdin.write(`${questions[2]}\n`);
      await search.answered(lines(10), '10 lines');
    } finally {
      search.stdin.end();
    }
    expect(await search.exited).toBe(0);
    // The same lines as each question given as an argument (query 0 there; the second is query 1 here).
    const asArgument = async (q: number) => (await captureStdout(['search', '--index', indexFile, '--k', '5', questions[q]])).out;
    expect(String(search.out)).toBe(await asArgument(1) + (await asArgument(2)).replace(/^0\t/gm, '1\t'));
  }, 120_000);

  test('search --queries - that fails between two questions ends at once (exit 1), not when its standard input closes', async () => {
    const changing = path.join(dir, 'changing-passages.txt');
    fs.copyFileSync(input, changing);
    const search = coprocess(['--passages', changing]);
    try {
      search.stdin.write(`${questions[1]}\n`);
      await search.answered(lines(5), '5 lines');
      fs.appendFileSync(changing, 'une ligne de plus\n');
      search.stdin.write(`${questions[2]}\n`);
      const ended = await Promise.race([search.exited, new Promise((r) => setTimeout(r, 20_000, 'still running'))]);
      expect({ ended, err: search.err }).toEqual({ ended: 1, err: `camembed search: ${changing} changed since it was opened\n` });
    } finally {
      search.stdin.end();
    }
  }, 120_000);

  test("`camembed encode`'s .npy, built with --vectors, is the index `index build --input` makes (the model recorded when given)", async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const npyFile = path.join(dir, 'passages.npy');
    const fromVectors = path.join(dir, 'from-vectors.cmbd');
    try {
      expect(await main(['index', 'build', '--model', MODEL, '--input', input, '--output', indexFile])).toBe(0);
      expect(await main(['encode', '--model', MODEL, '--input', input, '--output', npyFile])).toBe(0);
      expect(await main(['index', 'build', '--model', MODEL, '--vectors', npyFile, '--output', fromVectors])).toBe(0);
    } finally {
      stderr.mockRestore();
    }
    const search = ['search', '--k', '5', '--queries', queriesFile, '--format', 'jsonl'];
    expect(await captureStdout([...search, '--index', fromVectors])).toEqual(await captureStdout([...search, '--index', indexFile]));
  });

  test('--revision is recorded with a Hub model and searched with when no --model is given', async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const written = () => stderr.mock.calls.map((c) => String(c[0])).join('');
    const npyFile = path.join(dir, 'revision.npy');
    const pinned = path.join(dir, 'pinned.cmbd');
    const saved = { offline: process.env.HF_HUB_OFFLINE, cache: process.env.HF_HUB_CACHE };
    try {
      expect(await main(['encode', '--model', MODEL, '--input', input, '--output', npyFile])).toBe(0);
      expect(await main(['index', 'build', '--vectors', npyFile, '--revision', 'v3', '--output', pinned])).toBe(2);
      expect(written()).toContain('--revision goes with --model');
      expect(await main(['index', 'build', '--model', 'org/absent', '--revision', 'v3', '--vectors', npyFile, '--output', pinned])).toBe(0);
      expect((await VectorIndex.load(pinned)).metadata).toEqual({ model: 'org/absent', revision: 'v3' });
      process.env.HF_HUB_OFFLINE = '1';
      process.env.HF_HUB_CACHE = dir;  // holds no model: the error names what was asked for
      expect((await captureStdout(['search', '--index', pinned, questions[0]])).code).toBe(1);
      expect(written()).toMatch(/org\/absent at revision 'v3' is not in the Hugging Face cache/);
      // A folder has no revisions: recording one would make every later search fail.
      expect(await main(['index', 'build', '--model', MODEL, '--revision', 'v3', '--vectors', npyFile, '--output', pinned])).toBe(2);
      expect(written()).toContain(`--revision is for Hub ids, but ${MODEL} is a folder here`);
      // A 'revision' in metadata without a recorded model (written by an application) is not the default model's.
      const noModel = path.join(dir, 'no-model.cmbd');
      const index = new VectorIndex({ dim: 4, metadata: { revision: 'corpus v3' } });
      index.add(new Float32Array([1, 0, 0, 0]));
      await index.save(noModel);
      expect((await captureStdout(['search', '--index', noModel, questions[0]])).code).toBe(1);
      expect(written()).toMatch(/antoinelouis\/biencoder-camembert-base-mmarcoFR at revision 'main' is not in the Hugging Face cache/);
      // The default model may not be what made vectors stored without --model: said, unless --model is given.
      const note = `note: ${noModel} records no model; searching with antoinelouis/biencoder-camembert-base-mmarcoFR (--model sets it)\n`;
      expect(written()).toContain(note);
      stderr.mockClear();
      expect((await captureStdout(['search', '--index', noModel, '--model', MODEL, questions[0]])).code).toBe(1);  // 32-d model, 4-d index
      expect(written()).not.toContain('note:');
    } finally {
      for (const [name, value] of [['HF_HUB_OFFLINE', saved.offline], ['HF_HUB_CACHE', saved.cache]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      stderr.mockRestore();
    }
  });

  test('a model folder is recorded as its real absolute path; searching with another model says so', async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const written = () => stderr.mock.calls.map((c) => String(c[0])).join('');
    const link = path.join(dir, 'same-model-elsewhere');
    fs.symlinkSync(MODEL, link);
    const real = fs.realpathSync(MODEL);
    const cwd = process.cwd();
    try {
      process.chdir(path.dirname(MODEL));
      expect(await main(['index', 'build', '--model', path.basename(MODEL), '--input', input, '--output', indexFile])).toBe(0);
      expect((await VectorIndex.load(indexFile)).metadata).toEqual({ model: real });
      const relative = await captureStdout(['search', '--index', indexFile, '--model', path.basename(MODEL), questions[0]]);
      expect(await captureStdout(['search', '--index', indexFile, '--model', link, questions[0]])).toEqual(relative);
      expect(written()).not.toContain('note:');
      // Another folder (not even a model: the search then fails) gets the note first.
      expect((await captureStdout(['search', '--index', indexFile, '--model', dir, questions[0]])).code).toBe(1);
      expect(written()).toContain(`note: ${indexFile} was built with the model ${real}; searching with ${dir}\n`);
    } finally {
      process.chdir(cwd);
      stderr.mockRestore();
    }
  });

  test('usage errors exit with code 2, other failures with 1', async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['index', 'make', '--input', input, '--output', indexFile])).toBe(2);
      expect(await main(['index', 'build', '--input', input])).toBe(2);
      expect(await main(['index', 'build', '--model', MODEL, '--input', input, '--output', '-'])).toBe(2);
      expect(fs.existsSync('-')).toBe(false);
      expect(await main(['index', 'build', '--input', input, '--output', indexFile, '--dtype', 'int8'])).toBe(2);
      expect(await main(['search', '--index', indexFile, '--model', MODEL])).toBe(2);
      expect(await main(['search', '--index', indexFile, '--model', MODEL, '--k', '0', 'x'])).toBe(2);
      expect(await main(['search', '--index', path.join(dir, 'none.cmbd'), 'x'])).toBe(2);
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(`camembed search: --index ${path.join(dir, 'none.cmbd')} does not exist\n`);
      fs.writeFileSync(path.join(dir, 'bad.cmbd'), 'not an index');
      expect(await main(['search', '--index', path.join(dir, 'bad.cmbd'), '--model', MODEL, 'x'])).toBe(1);
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toMatch(/is not a camembed index file/);
      // A mistyped --model is a usage error before the index loads (here the load would fail first).
      expect(await main(['search', '--index', path.join(dir, 'bad.cmbd'), '--model', './modle', 'x'])).toBe(2);
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain("--model ./modle does not exist, and is not a Hub id 'org/name' either");
    } finally {
      stderr.mockRestore();
    }
  });
});

// Needs no model: the index is made here, with ten planted near-duplicate pairs.
describe('camembed index neighbors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-neighbors-cli-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dim = 24;
  const rows = 300;
  const file = path.join(dir, 'pairs.cmbd');
  const vectors = randomSignedArray(makeRandom(7), rows * dim);
  for (let i = 0; i < 10; i++) {  // row 10 + i: row i plus a little noise (cosine > 0.999)
    for (let c = 0; c < dim; c++) vectors[(10 + i) * dim + c] = vectors[i * dim + c] * (1 + 0.01 * Math.sin(i + c));
  }
  const ids = BigInt64Array.from({ length: rows }, (_, i) => 1000n + 3n * BigInt(i));  // ids are not positions
  const index = new VectorIndex({ dim });
  index.add(vectors, ids);
  beforeAll(() => index.save(file));

  test('TSV lists what VectorIndex.neighbors gives; --min-score keeps the near-duplicates (JSON lines)', async () => {
    const tsv = await captureStdout(['index', 'neighbors', file, '--k', '4', '--batch-size', '64']);
    expect(tsv.code).toBe(0);
    const want: string[] = [];
    for await (const chunk of index.neighbors({ k: 4 })) {
      chunk.ids.forEach((id, r) => {
        for (let i = 0; i < chunk.k; i++) want.push(`${id}\t${i + 1}\t${chunk.neighbors[r * 4 + i]}\t${chunk.scores[r * 4 + i]}`);
      });
    }
    expect(tsv.out).toBe(want.join('\n') + '\n');
    expect(await withFullStdout(['index', 'neighbors', file, '--k', '4', '--batch-size', '64'])).toEqual({ code: 0, beforeFirstDrain: 1, out: tsv.out });

    const dup = await captureStdout(['index', 'neighbors', file, '--k', '4', '--min-score', '0.99', '--format', 'jsonl']);
    const records = dup.out.trim().split('\n').map((l) => JSON.parse(l));
    const partner = (i: number) => Number(ids[i < 10 ? i + 10 : i - 10]);
    expect(records.map((r) => r.id)).toEqual([...Array(20).keys()].map((i) => Number(ids[i])));
    records.forEach((r, i) => {
      expect(r.neighbors).toEqual([partner(i)]);
      expect(r.scores[0]).toBeGreaterThan(0.999);
    });

    const withSelf = await captureStdout(['index', 'neighbors', file, '--k', '2', '--include-self', '--min-score', '0.99', '--mmap']);
    const first = withSelf.out.split('\n')[0].split('\t');
    expect(first.slice(0, 3)).toEqual(['1000', '1', '1000']);
    expect(Number(first[3])).toBeCloseTo(1, 6);
  });

  test('--passages adds the texts: both lines in TSV (tabs as spaces), text and passages in JSON lines', async () => {
    const byLine = new VectorIndex({ dim });  // ids 0..299: line numbers of the passages file
    byLine.add(vectors);
    const lineFile = path.join(dir, 'lines.cmbd');
    await byLine.save(lineFile);
    const texts = Array.from({ length: rows }, (_, i) => `passage ${i}\tcolonne`);
    const passagesFile = path.join(dir, 'passages.txt');
    fs.writeFileSync(passagesFile, texts.join('\n') + '\n');
    const tsv = await captureStdout(['index', 'neighbors', lineFile, '--k', '2', '--passages', passagesFile]);
    const cells = tsv.out.trim().split('\n').map((l) => l.split('\t'));
    expect(cells).toHaveLength(rows * 2);
    for (const [id, , neighbor, , own, other] of cells) {
      expect([own, other]).toEqual([texts[Number(id)], texts[Number(neighbor)]].map((t) => t.replace('\t', ' ')));
    }
    const jsonl = await captureStdout(['index', 'neighbors', lineFile, '--k', '1', '--min-score', '0.99', '--format', 'jsonl', '--passages', passagesFile]);
    const records = jsonl.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(records).toHaveLength(20);
    for (const r of records) expect([r.text, r.passages]).toEqual([texts[r.id], [texts[r.neighbors[0]]]]);
    byLine.dispose();
  });

  test('a reader that stops early (| head) ends the command quietly with the SIGPIPE status, 141', async () => {
    // 300 x 299 lines, megabytes: far more than a pipe holds, so the writer meets the closed pipe.
    const child = spawn(process.execPath, [path.resolve(__dirname, '..', 'dist', 'cli.js'), 'index', 'neighbors', file, '--k', '300'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += String(d); });
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect({ code, stderr }).toEqual({ code: 141, stderr: '' });
  });

  test('usage errors exit with code 2', async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['index', 'neighbors', file, '--min-score', 'abc'])).toBe(2);
      expect(await main(['index', 'neighbors', file, '--min-score', ''])).toBe(2);
      expect(await main(['index', 'neighbors', file, '--min-score', '0x1'])).toBe(2);
      expect(await main(['index', 'neighbors', file, '--format', 'csv'])).toBe(2);
      expect(await main(['index', 'neighbors'])).toBe(2);
      expect(await main(['index', 'neighbors', path.join(dir, 'none.cmbd')])).toBe(2);
      // '-' is no index file (it was opened as a file named '-': ENOENT, exit 1).
      expect(await main(['index', 'neighbors', '-'])).toBe(2);
      expect(await main(['search', '--index', '-', 'une question'])).toBe(2);
      // A k the CUDA searches cannot give is refused before the index loads (here, with no GPU, the load would fail instead).
      expect(await main(['index', 'neighbors', file, '--device', 'cuda', '--k', '2047'])).toBe(2);
      expect(await main(['search', '--index', file, '--device', 'cuda:0', '--k', '5000', '--query-vectors', file])).toBe(2);
      const messages = stderr.mock.calls.map((c) => String(c[0])).join('');
      expect(messages).toContain('camembed index: --k must be <= 2046 with --device cuda, got 2047');
      expect(messages).toContain('camembed search: --k must be <= 2046 with --device cuda:0, got 5000');
      expect(messages).toMatch(/--min-score must be a number, got 'abc'/);
      expect(messages).toContain('camembed search: --index must be a file: an index file is read in place, not streamed');
      expect(messages).not.toContain('ENOENT');
    } finally {
      stderr.mockRestore();
    }
  });
});

// `index build --vectors`: files written here by the test's own .npy writer (numpy's format 1.0 / 2.0).
describe('camembed index build --vectors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-vectors-cli-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dim = 20;
  const rows = 150;
  const vectors = randomSignedArray(makeRandom(11), rows * dim);
  const queries = randomSignedArray(makeRandom(12), 4 * dim);
  function npy(name: string, descr: string, shape: string, body: Uint8Array, version = 1, fortran = 'False'): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, npyBytes(descr, shape, body, version, fortran));
    return file;
  }
  const bytes = (a: Float32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  async function searchOf(file: string) {
    const index = await VectorIndex.load(file);
    try {
      return { metadata: index.metadata, dtype: index.dtype, ...(await index.search(queries, { k: 7 })) };
    } finally {
      index.dispose();
    }
  }
  async function expected(data: Float32Array, dtype: 'float32' | 'float16') {
    const index = new VectorIndex({ dim, dtype });
    index.add(data);
    return { metadata: {}, dtype, ...(await index.search(queries, { k: 7 })) };
  }

  test('a float32 .npy (format 1.0 and 2.0), a float16 .npy and raw float32 give the index VectorIndex.add gives', async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const out = path.join(dir, 'v.cmbd');
    const build = (...args: string[]) => main(['index', 'build', '--output', out, ...args]);
    try {
      const want32 = await expected(vectors, 'float32');
      for (const version of [1, 2]) {
        expect(await build('--vectors', npy(`v${version}.npy`, '<f4', `(${rows}, ${dim})`, bytes(vectors), version))).toBe(0);
        expect(await searchOf(out)).toEqual(want32);
      }
      const raw = path.join(dir, 'v.f32');
      fs.writeFileSync(raw, bytes(vectors));
      expect(await build('--vectors', raw, '--dim', String(dim), '--dtype', 'float16', '--model', 'org/name')).toBe(0);
      expect(await searchOf(out)).toEqual({ ...(await expected(vectors, 'float16')), metadata: { model: 'org/name' } });
      const halves = float32ToFloat16Array(vectors);
      expect(await build('--vectors', npy('h.npy', '<f2', `(${rows}, ${dim})`, bytes(halves)))).toBe(0);
      expect(await searchOf(out)).toEqual(await expected(float16ToFloat32Array(halves), 'float32'));
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(`wrote ${out}: ${rows} vectors, ${dim}-d float32`);
    } finally {
      stderr.mockRestore();
    }
  });

  test('search --query-vectors (.npy or raw float32, no model) prints what VectorIndex.search gives', async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const indexFile = path.join(dir, 'q.cmbd');
    try {
      expect(await main(['index', 'build', '--vectors', npy('rows.npy', '<f4', `(${rows}, ${dim})`, bytes(vectors)), '--output', indexFile])).toBe(0);
    } finally {
      stderr.mockRestore();
    }
    const want = await expected(vectors, 'float32');
    const rawQueries = path.join(dir, 'queries.f32');
    fs.writeFileSync(rawQueries, bytes(queries));
    const npyQueries = npy('queries.npy', '<f4', `(4, ${dim})`, bytes(queries));
    const jsonl = await captureStdout(['search', '--index', indexFile, '--k', '7', '--query-vectors', npyQueries, '--format', 'jsonl', '--batch-size', '3']);
    expect(jsonl.code).toBe(0);
    const records = jsonl.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(records.map((r) => r.query)).toEqual([0, 1, 2, 3]);
    records.forEach((r, q) => {
      expect(r.text).toBeUndefined();
      expect(r.ids.map(BigInt)).toEqual([...want.ids.subarray(q * 7, (q + 1) * 7)]);
      expect(r.scores).toEqual([...want.scores.subarray(q * 7, (q + 1) * 7)]);
    });
    const tsv = await captureStdout(['search', '--index', indexFile, '--k', '7', '--query-vectors', rawQueries]);
    expect(tsv.out.trim().split('\n').map((l) => l.split('\t').slice(0, 3).join(' '))).toEqual(
      [...want.ids].map((id, i) => `${Math.floor(i / 7)} ${(i % 7) + 1} ${id}`));
    // A slow reader: one batch written, then a wait for 'drain' (all 4 batches were written at once).
    expect(await withFullStdout(['search', '--index', indexFile, '--k', '7', '--query-vectors', rawQueries, '--batch-size', '1']))
      .toEqual({ code: 0, beforeFirstDrain: 1, out: tsv.out });
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const other = npy('other.npy', '<f4', `(1, ${dim + 1})`, new Uint8Array((dim + 1) * 4));
      expect(await main(['search', '--index', indexFile, '--query-vectors', other])).toBe(1);
      expect(await main(['search', '--index', indexFile, '--query-vectors', rawQueries, 'une question'])).toBe(2);
      expect(await main(['search', '--index', indexFile, '--query-vectors', rawQueries, '--threads', '2'])).toBe(2);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toContain('--threads goes with questions (it sets up the encoder), not --query-vectors');
      const withNaN = new Float32Array(8 * dim).fill(0.25);
      withNaN[5 * dim + 1] = NaN;
      const nanQueries = path.join(dir, 'nan-queries.f32');
      fs.writeFileSync(nanQueries, bytes(withNaN));
      expect((await captureStdout(['search', '--index', indexFile, '--query-vectors', nanQueries, '--batch-size', '4'])).code).toBe(1);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toContain(`${nanQueries}: row 5 contains NaN or infinite values`);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toMatch(new RegExp(`holds ${dim + 1}-d vectors, not ${dim}-d[\\s\\S]*give one question argument`));
    } finally {
      err.mockRestore();
    }
  });

  test('a file that is not rows of float32/float16 is an error naming it; option mistakes are usage errors', async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const out = path.join(dir, 'bad.cmbd');
    const messages = () => stderr.mock.calls.map((c) => String(c[0])).join('');
    try {
      const cases: [string, string][] = [
        // Each says how to convert the array: numpy's default dtype is float64 (np.random.rand,
        // arrays of Python floats), and one vector (sentence-transformers' encode('a text')) is 1-D.
        [npy('f8.npy', '<f8', `(${rows}, ${dim})`, new Uint8Array(rows * dim * 8)), "holds '<f8' values: expected little-endian float32 ('<f4') or float16 ('<f2'): save np.ascontiguousarray(a, dtype='<f4')"],
        [npy('be.npy', '>f4', `(${rows}, ${dim})`, bytes(vectors)), "holds '>f4' values: expected little-endian float32 ('<f4') or float16 ('<f2'): save np.ascontiguousarray(a, dtype='<f4')"],
        [npy('fortran.npy', '<f4', `(${rows}, ${dim})`, bytes(vectors), 1, 'True'), 'is in Fortran order: save a C-order array (np.ascontiguousarray)'],
        [npy('flat.npy', '<f4', `(${rows * dim},)`, bytes(vectors)), `has shape (${rows * dim},): expected (rows, dim): save a 2-D array (one vector: a.reshape(1, -1))`],
        [npy('cut.npy', '<f4', `(${rows + 1}, ${dim})`, bytes(vectors)), `but its header says ${128 + (rows + 1) * dim * 4}`],
      ];
      for (const [file, message] of cases) {
        expect(await main(['index', 'build', '--vectors', file, '--output', out])).toBe(1);
        expect(messages()).toContain(message);
      }
      const raw = path.join(dir, 'raw.f32');
      fs.writeFileSync(raw, bytes(vectors));
      expect(await main(['index', 'build', '--vectors', raw, '--output', out])).toBe(1);
      expect(await main(['index', 'build', '--vectors', raw, '--dim', '7', '--output', out])).toBe(1);
      expect(messages()).toMatch(/raw float32 vectors need their dimension[\s\S]*not a whole number of 7-d float32 rows/);
      // A NaN past the first 16 MiB read is named by its row of the file.
      const wide = new Float32Array(1030 * 4096).fill(0.5);
      wide[1027 * 4096 + 5] = NaN;
      const nanFile = path.join(dir, 'nan.f32');
      fs.writeFileSync(nanFile, bytes(wide));
      expect(await main(['index', 'build', '--vectors', nanFile, '--dim', '4096', '--output', out])).toBe(1);
      expect(messages()).toContain(`${nanFile}: row 1027 contains NaN or infinite values`);
      // No rows, but a dimension no index takes.
      expect(await main(['index', 'build', '--vectors', npy('empty.npy', '<f4', '(0, 1000000000000)', new Uint8Array(0)), '--output', out])).toBe(1);
      expect(messages()).toContain('options.dim must be at most 16777216, got 1000000000000');
      expect(fs.existsSync(out)).toBe(false);
      expect(await main(['index', 'build', '--vectors', raw, '--input', raw, '--output', out])).toBe(2);
      expect(await main(['index', 'build', '--output', out])).toBe(2);
      expect(await main(['index', 'build', '--input', raw, '--dim', '7', '--output', out])).toBe(2);
      expect(await main(['index', 'build', '--vectors', '-', '--output', out])).toBe(2);
      // Encoder options would be silently unused with vectors: refused.
      expect(await main(['index', 'build', '--vectors', raw, '--dim', '7', '--batch-size', '32', '--output', out])).toBe(2);
      expect(messages()).toContain('--batch-size goes with --input (it sets up the encoder), not --vectors');
      expect(await main(['index', 'build', '--vectors', raw, '--dim', '7', '--offline', '--output', out])).toBe(2);
      expect(messages()).toContain('--offline goes with --input');
    } finally {
      stderr.mockRestore();
    }
  });

  test('on a terminal, index build draws a save bar, search and index neighbors a load bar, info --verify a verify bar, each to the file size', async () => {
    const raw = path.join(dir, 'bars.f32');
    fs.writeFileSync(raw, bytes(vectors));
    const file = path.join(dir, 'bars.cmbd');
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    // The last draw of each bar (finish() draws it whole): its label and its bytes done of the total.
    const barsOf = (argv: string[]) => withTerminalStderr(async (err) => {
      expect(await main(argv)).toBe(0);
      return err.join('').split('\n').map((line) => line.slice(line.lastIndexOf('\r') + 1))
        .filter((draw) => /^(save|load|verify) /.test(draw)).map((draw) => draw.split('  ').filter((_, i) => i !== 3 && i !== 4).join('  '));
    });
    try {
      const built = await barsOf(['index', 'build', '--vectors', raw, '--dim', String(dim), '--output', file]);
      const size = `${(fs.statSync(file).size / 1024).toFixed(1)} KiB`;
      const whole = `[${'#'.repeat(24)}] 100.0%  ${size}/${size}`;
      expect(built).toEqual([`save  ${whole}`]);
      const query = path.join(dir, 'bars-query.f32');
      fs.writeFileSync(query, bytes(queries));
      expect(await barsOf(['search', '--index', file, '--query-vectors', query, '--k', '3'])).toEqual([`load  ${whole}`]);
      expect(await barsOf(['index', 'neighbors', file, '--k', '2', '--mmap'])).toEqual([`load  ${whole}`]);
      expect(await barsOf(['index', 'info', file, '--verify'])).toEqual([`verify  ${whole}`]);
    } finally {
      stdout.mockRestore();
    }
  });

  test("search --query-vectors FILE: the bar shows the rows searched out of the file's, with an ETA, as --queries shows its bytes", async () => {
    const index = new VectorIndex({ dim });
    index.add(vectors);
    const file = path.join(dir, 'rows-bar.cmbd');
    await index.save(file);
    index.dispose();
    const query = npy('rows-bar.npy', '<f4', `(4, ${dim})`, bytes(queries));
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const err = await withTerminalStderr(async (written) => {
        expect(await main(['search', '--index', file, '--query-vectors', query, '--k', '3', '--batch-size', '1'])).toBe(0);
        return written;
      });
      const draws = err.join('').split('\n').map((line) => line.slice(line.lastIndexOf('\r') + 1)).filter((draw) => draw.startsWith('search '));
      expect(draws).toEqual([expect.stringMatching(/^search  \[#{24}\] 100\.0%  4\/4  ETA 0:00  /)]);
    } finally {
      stdout.mockRestore();
    }
  });
});

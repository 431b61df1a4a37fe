// ONNX Runtime runs in the Encoder's worker thread: the event loop turns while a batch infers, the worker's
// hidden states are bit for bit what ONNX Runtime gives on the calling thread, and dispose() and abort still hold.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Worker } from 'worker_threads';
import * as ort from 'onnxruntime-node';
import { Embeddings, Encoder } from '../lib/encoder';
import { OnnxWorker, workerScript } from '../lib/onnx-worker';
import type { WorkerTensor } from '../lib/onnx-worker';

const SHARED = path.resolve(__dirname, '../../shared');
const MODEL = path.join(SHARED, 'models/tiny-random-camembert');
const haveModel = fs.existsSync(path.join(MODEL, 'config.json'));
if (!haveModel) console.warn(`encoder worker tests skipped: ${MODEL} (tiny random model, ../shared) is missing`);
const describeModel = haveModel ? describe : describe.skip;

/** Long texts: batches of 16 rows of 128 tokens. */
const TEXTS = Array.from({ length: 48 }, (_, i) => `Le passage ${i} parle de la ville, de la mer et des montagnes. `.repeat(12));

const bytes = (t: { data: ArrayBufferView }) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

describeModel('the Encoder\'s ONNX Runtime worker thread', () => {
  let encoder: Encoder;
  beforeAll(async () => {
    encoder = await Encoder.load(MODEL, { threads: 2, batchSize: 16 });
  });
  afterAll(async () => {
    await encoder.dispose();
  });
  const session = () => encoder['session'] as OnnxWorker;

  test('the event loop turns while a batch infers', async () => {
    // Event-loop turns (setImmediate) counted from each run's start to its answer: on the calling
    // thread ONNX Runtime infers in a setImmediate callback, holding the loop, and answers within 1 turn.
    const original = session().run.bind(session());
    const turns: number[] = [];
    const spy = jest.spyOn(session(), 'run').mockImplementation((feeds, output) => {
      let answered = false;
      let count = 0;
      const turn = () => {
        if (answered) return;
        count++;
        setImmediate(turn);
      };
      setImmediate(turn);
      const run = original(feeds, output);
      void run.finally(() => {
        answered = true;
        turns.push(count);
      });
      return run;
    });
    try {
      await encoder.encode(TEXTS);
    } finally {
      spy.mockRestore();
    }
    expect(turns).toHaveLength(3);
    for (const count of turns) expect(count).toBeGreaterThanOrEqual(2);
  });

  test('its hidden states are bit for bit ONNX Runtime\'s on this thread, with the same session options', async () => {
    const original = session().run.bind(session());
    const runs: { feeds: Record<string, WorkerTensor>; hidden: WorkerTensor }[] = [];
    const spy = jest.spyOn(session(), 'run').mockImplementation(async (feeds, output) => {
      // Copied before the run: the feeds' buffers move to the worker.
      const copies = Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, { ...t, data: t.data.slice() }]));
      const hidden = await original(feeds, output);
      runs.push({ feeds: copies, hidden });
      return hidden;
    });
    try {
      await encoder.encode([...TEXTS.slice(0, 20), 'Bonjour.', 'Où est la gare ?']);
    } finally {
      spy.mockRestore();
    }
    const here = await ort.InferenceSession.create(encoder.onnxPath, {
      executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 2, interOpNumThreads: 1,
      executionMode: 'sequential', enableCpuMemArena: true, enableMemPattern: false,
    });
    try {
      expect(runs.length).toBeGreaterThanOrEqual(2);
      for (const { feeds, hidden } of runs) {
        const tensors = Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, new ort.Tensor(t.type, t.data, t.dims)]));
        const expected = (await here.run(tensors)).last_hidden_state;
        expect(hidden.dims).toEqual(expected.dims);
        expect(bytes(hidden).equals(bytes(expected as { data: ArrayBufferView }))).toBe(true);
      }
    } finally {
      await here.release();
    }
  });

  test('aborted while its batch infers, a call rejects; the worker answers the next call as before', async () => {
    const alone = await encoder.encode(TEXTS);
    const controller = new AbortController();
    const reason = new Error('client went away');
    const original = session().run.bind(session());
    const spy = jest.spyOn(session(), 'run').mockImplementation((feeds, output) => {
      const run = original(feeds, output);
      controller.abort(reason);  // the worker is inferring
      return run;
    });
    try {
      await expect(encoder.encode(TEXTS, { signal: controller.signal })).rejects.toBe(reason);
    } finally {
      spy.mockRestore();
    }
    expect(await encoder.encode(TEXTS)).toEqual(alone);
  });

  test('an error thrown in the worker keeps its class; its stack is this thread\'s path to the run (Encoder.runBatch), the worker\'s is its cause', async () => {
    const original = session().run.bind(session());
    // ort.Tensor refuses integer data labelled float32: a TypeError in the worker.
    const spy = jest.spyOn(session(), 'run').mockImplementation((feeds, output) =>
      original({ ...feeds, input_ids: { ...feeds.input_ids, type: 'float32' } }, output));
    let err: Error;
    try {
      err = await encoder.encode(['Bonjour.']).then(() => new Error('resolved'), (e: Error) => e);
    } finally {
      spy.mockRestore();
    }
    // Made from the structured clone, in Node.js's realm, not the test's: their classes are told by name.
    expect(err.constructor.name).toBe('TypeError');
    expect(err.message).toMatch(/^A float32 tensor's data must be type of /);
    expect(err.stack).toMatch(/^TypeError: A float32 tensor's data[^]*\n +at (async )?Encoder\.runBatch /);  // "async" as Node.js prints it
    expect((err.cause as Error).constructor.name).toBe('TypeError');
    expect((err.cause as Error).stack).toMatch(/\n +at new Tensor [^]*\n +at .*dist[/\\]onnx-worker\.js:\d+/);  // the worker's own frames
    expect((await encoder.encode(['Bonjour.'])).rows).toBe(1);  // the worker goes on answering
  });

  test('a text too long to tokenize on the event loop (a word of 50,000 characters) is tokenized in the worker, to the same ids', async () => {
    const word = 'anticonstitutionnellement'.repeat(2000);
    const texts = ['Bonjour.', word, `Un début. ${word}`, `${'Un long passage de mots courts. '.repeat(2000)}${word}`];
    // The main thread's tokenizers.js: the characters of each text it tokenized.
    const tokenizersJs = encoder['tokenizer']['tokenizer'];
    const onMain = jest.spyOn(tokenizersJs, 'encode');
    const inWorker = jest.spyOn(session(), 'tokenize');
    let result: Embeddings;
    let mainLengths: number[];
    let workerTexts: string[];
    let workerIds: number[][];
    try {
      result = await encoder.encode(texts);
      mainLengths = onMain.mock.calls.map(([text]) => (text as string).length);
      workerTexts = inWorker.mock.calls.map(([text]) => text);
      workerIds = await Promise.all(inWorker.mock.results.map((r) => r.value));
    } finally {
      onMain.mockRestore();
      inWorker.mockRestore();
    }
    expect(Math.max(...mainLengths)).toBeLessThanOrEqual(4096);
    // The last text's first 128 tokens come before its long word: its prefix is tokenized here.
    expect(workerTexts.length).toBe(2);
    expect(workerTexts[0] === texts[1] && workerTexts[1] === texts[2]).toBe(true);
    const ids = encoder.tokenize(texts).ids;  // on this thread, whole
    expect(workerIds).toEqual([ids[1], ids[2]]);
    const alone = await Promise.all(texts.map((t) => encoder.encode([t])));
    expect(Array.from(result.data)).toEqual(alone.flatMap((r) => Array.from(r.data)));
  });

  test('a compiled worker older than its TypeScript source (ts-jest without `npm run build:ts`) is refused, not run', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-worker-'));
    try {
      const source = path.join(dir, 'onnx-worker.ts');
      const compiled = path.join(dir, 'onnx-worker.js');
      fs.writeFileSync(source, '');
      expect(() => workerScript(source, compiled)).toThrow(`${compiled} is missing: run \`npm run build:ts\``);
      fs.writeFileSync(compiled, '');
      fs.utimesSync(source, 2000, 2000);
      fs.utimesSync(compiled, 1000, 1000);
      expect(() => workerScript(source, compiled)).toThrow(`${compiled} is older than ${source}: run \`npm run build:ts\``);
      expect(workerScript(compiled, compiled)).toBe(compiled);  // running as JavaScript (the package): nothing to compare
      fs.utimesSync(compiled, 3000, 3000);
      expect(workerScript(source, compiled)).toBe(compiled);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // These tests ran lib/onnx-worker.ts's current code: `npm test` compiled it first.
    expect(workerScript()).toBe(path.resolve(__dirname, '../dist/onnx-worker.js'));
  });

  test('dispose() ends the worker thread after the calls made before it', async () => {
    const e = await Encoder.load(MODEL, { threads: 1 });
    const worker = (e['session'] as OnnxWorker)['worker'] as Worker;
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    let ended = false;
    void exited.then(() => (ended = true));
    const encoding = e.encode(TEXTS.slice(0, 4));
    const disposing = e.dispose();
    expect((await encoding).rows).toBe(4);
    await disposing;
    await exited;
    expect(ended).toBe(true);
    await expect(e.encode(['a'])).rejects.toThrow('this Encoder has been disposed');
  });

  test('a worker thread that has stopped fails the calls after it instead of leaving them waiting; dispose() still resolves', async () => {
    const e = await Encoder.load(MODEL, { threads: 1 });
    await ((e['session'] as OnnxWorker)['worker'] as Worker).terminate();
    await expect(e.encode(['Bonjour.'])).rejects.toThrow(new Error('the ONNX Runtime worker thread stopped (exit code 1)'));
    await e.dispose();
  });

  test('ONNX Runtime\'s threads sleep between operators unless spinWait is true', async () => {
    // Spinning threads take the cores the main thread tokenizes on (bench/RESULTS-encoder.md, 2026-11-30).
    const create = jest.spyOn(OnnxWorker, 'create');
    try {
      for (const options of [{}, { spinWait: false }, { spinWait: true }]) await (await Encoder.load(MODEL, { threads: 1, ...options })).dispose();
      expect(create.mock.calls.map(([setup]) => setup.options.extra)).toEqual(['0', '0', '1'].map(
        (allow_spinning) => ({ session: { intra_op: { allow_spinning } } })));
    } finally {
      create.mockRestore();
    }
  });

  test('a process that never disposes of its Encoder still exits, after its encode() has answered', () => {
    const script = `const { Encoder } = require(${JSON.stringify(path.resolve(__dirname, '../dist/index.js'))});
      Encoder.load(${JSON.stringify(MODEL)}, { threads: 1 }).then((e) => e.encode(['Bonjour.'])).then((r) => console.log(r.rows, r.dim));`;
    expect(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 })).toBe('1 32\n');
  });
});

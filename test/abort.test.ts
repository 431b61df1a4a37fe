// The `signal` option (an AbortSignal) of the long-running calls: each rejects with signal.reason
// when aborted before it starts and when aborted midway (deterministically: right after the call
// has started its first step, or from a progress callback), leaves what it works on as it was,
// and leaves no listener on the signal. Hub downloads: test/model-hub.test.ts.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { getEventListeners } from 'events';
import { Readable } from 'stream';
import { Encoder, Embeddings } from '../lib/encoder';
import { resolveModel } from '../lib/model';
import type { OnnxWorker } from '../lib/onnx-worker';
import { VectorIndex } from '../lib/vector-index';
import { makeRandom } from './helpers/random';

const SHARED = path.resolve(__dirname, '../../shared');
const MODEL = path.join(SHARED, 'models/tiny-random-camembert');
const haveModel = fs.existsSync(path.join(MODEL, 'config.json'));
if (!haveModel) console.warn(`abort tests of the encoder skipped: ${MODEL} (tiny random model, ../shared) is missing`);
const describeModel = haveModel ? describe : describe.skip;

const BAD_SIGNALS: unknown[] = [null, 'abort', 1, {}, { aborted: true, reason: 'x' }, new AbortController()];
const listeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

/** A controller whose abort reason is an object of ours, to check that the call rejects with exactly it. */
function aborter(): { controller: AbortController; reason: Error } {
  return { controller: new AbortController(), reason: new Error('client went away') };
}

function randomRows(seed: number, rows: number, dim: number): Float32Array {
  const random = makeRandom(seed);
  return Float32Array.from({ length: rows * dim }, () => random() * 2 - 1);
}

describe('VectorIndex', () => {
  // dim 1024: a CPU search tile holds 256 queries (1 MiB of them), so 600 queries take 3 kernel calls.
  const DIM = 1024;
  const ROWS = 600;
  const queries = randomRows(2, ROWS, DIM);
  let dir: string;
  let index: VectorIndex;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-abort-'));
    index = new VectorIndex({ dim: DIM });
    index.add(randomRows(1, ROWS, DIM));
  });
  afterEach(() => {
    index.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a bad signal is a TypeError naming options.signal', async () => {
    const file = path.join(dir, 'a.cmbd');
    await index.save(file);
    for (const signal of BAD_SIGNALS) {
      const message = /options\.signal must be an AbortSignal/;
      await expect(index.search(queries, { k: 3, signal } as never)).rejects.toThrow(TypeError);
      await expect(index.search(queries, { k: 3, signal } as never)).rejects.toThrow(message);
      expect(() => index.neighbors({ k: 3, signal } as never)).toThrow(message);
      await expect(index.save(file, { signal } as never)).rejects.toThrow(message);
      await expect(VectorIndex.load(file, { signal } as never)).rejects.toThrow(message);
    }
    await expect(index.save(file, 'x' as never)).rejects.toThrow(/options must be an object/);
  });

  test('search: aborted before, or between query tiles, rejects with the reason; the index answers as before', async () => {
    const expected = await index.search(queries, { k: 5 });
    await expect(index.search(queries, { k: 5, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    const { controller, reason } = aborter();
    const running = index.search(queries, { k: 5, signal: controller.signal });
    controller.abort(reason);  // the first tile's kernel call has started: the second is not made
    await expect(running).rejects.toBe(reason);
    expect(listeners(controller.signal)).toBe(0);
    expect(await index.search(queries, { k: 5 })).toEqual(expected);
    index.add(randomRows(3, 1, DIM));  // no search is left holding the index
    // An empty index has nothing to search, but an aborted signal still rejects.
    const empty = new VectorIndex({ dim: DIM });
    await expect(empty.search(queries, { k: 5, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  test('neighbors: aborted before, between chunks or within one, ends the walk with the reason', async () => {
    const expected: bigint[] = [];
    for await (const chunk of index.neighbors({ k: 3, batchSize: 300 })) expected.push(...chunk.neighbors);

    await expect(index.neighbors({ k: 3, signal: AbortSignal.abort() }).next()).rejects.toMatchObject({ name: 'AbortError' });

    const between = aborter();
    const walk = index.neighbors({ k: 3, batchSize: 300, signal: between.controller.signal });
    const first = await walk.next();
    expect(Array.from((first.value as { neighbors: BigInt64Array }).neighbors)).toEqual(expected.slice(0, 300 * 3));
    between.controller.abort(between.reason);
    await expect(walk.next()).rejects.toBe(between.reason);
    expect(await walk.next()).toEqual({ done: true, value: undefined });

    // One chunk of 600 vectors is 3 tiles of queries: abort once the first tile is running.
    const within = aborter();
    const step = index.neighbors({ k: 3, batchSize: 600, signal: within.controller.signal }).next();
    within.controller.abort(within.reason);
    await expect(step).rejects.toBe(within.reason);

    const again: bigint[] = [];
    for await (const chunk of index.neighbors({ k: 3, batchSize: 300 })) again.push(...chunk.neighbors);
    expect(again).toEqual(expected);
    index.remove([0n]);  // no step is left holding the index
  });

  test('save: aborted before or midway leaves the previous file intact and no temporary file', async () => {
    const file = path.join(dir, 'a.cmbd');
    await index.save(file);
    const before = fs.readFileSync(file);
    index.add(randomRows(4, 10, DIM));  // the next save would write another file
    await expect(index.save(file, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    const { controller, reason } = aborter();
    const saving = index.save(file, { signal: controller.signal });
    controller.abort(reason);  // the save has started: it stops before its next write
    await expect(saving).rejects.toBe(reason);
    expect(fs.readdirSync(dir)).toEqual(['a.cmbd']);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    // Saved again without a signal, the file holds the index now.
    await index.save(file);
    const loaded = await VectorIndex.load(file);
    expect(loaded.size).toBe(ROWS + 10);
    expect(await loaded.search(queries, { k: 5 })).toEqual(await index.search(queries, { k: 5 }));
    loaded.dispose();
  });

  test.each([false, true])('load (mmap: %s): aborted before or midway rejects with the reason; the file still loads', async (mmap) => {
    const file = path.join(dir, 'a.cmbd');
    await index.save(file);
    await expect(VectorIndex.load(file, { mmap, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    const { controller, reason } = aborter();
    const loading = VectorIndex.load(file, { mmap, signal: controller.signal });
    controller.abort(reason);  // before its first piece is read
    await expect(loading).rejects.toBe(reason);
    const loaded = await VectorIndex.load(file, { mmap });
    expect(await loaded.search(queries, { k: 5 })).toEqual(await index.search(queries, { k: 5 }));
    loaded.dispose();
  });

  test('one long-lived signal shared by many calls keeps no listener', async () => {
    const { signal } = new AbortController();
    const file = path.join(dir, 'a.cmbd');
    for (let i = 0; i < 20; i++) {
      await index.search(queries.subarray(0, DIM), { k: 2, signal });
      for await (const chunk of index.neighbors({ k: 1, batchSize: 300, signal })) expect(chunk.k).toBe(1);
    }
    await index.save(file, { signal });
    (await VectorIndex.load(file, { signal })).dispose();
    expect(listeners(signal)).toBe(0);
  });
});

describe('resolveModel', () => {
  test('a bad signal is a TypeError; an aborted one rejects with its reason, also for a local folder', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-abort-'));
    try {
      fs.writeFileSync(path.join(dir, 'model.safetensors'), '');
      for (const signal of BAD_SIGNALS) {
        await expect(resolveModel(dir, { signal } as never)).rejects.toThrow(/options\.signal must be an AbortSignal/);
      }
      const reason = new Error('stop');
      await expect(resolveModel(dir, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
      await expect(resolveModel(dir, { signal: new AbortController().signal })).resolves.toMatchObject({ dir: path.resolve(dir) });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describeModel('Encoder', () => {
  const TEXTS = Array.from({ length: 40 }, (_, i) => `Texte numéro ${i} : ${'mot '.repeat(i % 7)}fin.`);
  let encoder: Encoder;
  let alone: Embeddings;  // TEXTS encoded by a call of their own
  beforeAll(async () => {
    encoder = await Encoder.load(MODEL, { threads: 1, batchSize: 4 });
    alone = await encoder.encode(TEXTS);
  });
  afterAll(async () => {
    await encoder.dispose();
  });

  test('bad signals are TypeErrors naming options.signal', async () => {
    for (const signal of BAD_SIGNALS) {
      const message = /options\.signal must be an AbortSignal/;
      expect(() => encoder.encode(TEXTS, { signal } as never)).toThrow(message);
      expect(() => encoder.encodeStream(TEXTS, { signal } as never)).toThrow(message);
      await expect(Encoder.load(MODEL, { signal } as never)).rejects.toThrow(message);
    }
  });

  test('load: aborted before or midway rejects with the reason', async () => {
    const reason = new Error('stop');
    await expect(Encoder.load(MODEL, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    const controller = new AbortController();
    const loading = Encoder.load(MODEL, { signal: controller.signal });
    controller.abort(reason);  // the load has started: it stops before making the session
    await expect(loading).rejects.toBe(reason);
    expect(listeners(controller.signal)).toBe(0);
  });

  test('encode: aborted before rejects at once; aborted after a batch, no later batch runs; the encoder goes on', async () => {
    const progress: number[] = [];
    await expect(encoder.encode(TEXTS, { signal: AbortSignal.abort(), onProgress: (p) => progress.push(p.done) }))
      .rejects.toMatchObject({ name: 'AbortError' });
    expect(progress).toEqual([]);
    const { controller, reason } = aborter();
    const encoding = encoder.encode(TEXTS, {
      signal: controller.signal,
      onProgress: (p) => {
        progress.push(p.done);
        controller.abort(reason);
      },
    });
    await expect(encoding).rejects.toBe(reason);
    expect(listeners(controller.signal)).toBe(0);
    expect(await encoder.encode(TEXTS)).toEqual(alone);  // queued after what is left of the aborted call
    expect(progress).toHaveLength(1);  // one batch, then none
  });

  test('encode: aborted while ONNX Runtime runs one of its batches, it reports no progress after it has rejected', async () => {
    const events: string[] = [];
    const { controller, reason } = aborter();
    // Aborted once the worker thread has its second batch: ONNX Runtime is running it.
    const session = encoder['session'] as OnnxWorker;
    const run = session.run.bind(session);
    let runs = 0;
    const spy = jest.spyOn(session, 'run').mockImplementation((feeds, output) => {
      const running = run(feeds, output);
      if (++runs === 2) controller.abort(reason);
      return running;
    });
    const encoding = encoder.encode(TEXTS, { signal: controller.signal, onProgress: (p) => events.push(`progress ${p.done}`) });
    await encoding.catch((err) => events.push(err === reason ? 'rejected' : `${err}`)).finally(() => spy.mockRestore());
    expect(await encoder.encode(TEXTS)).toEqual(alone);  // queued behind the batch that was running
    expect(events).toEqual(['progress 4', 'rejected']);
  });

  test.each(['before it starts', 'after a batch of the call before it'])(
    'a call aborted %s rejects at once and leaves the calls around it unchanged', async (when) => {
      const others = TEXTS.slice(10, 30);
      const othersAlone = await encoder.encode(others);
      const events: string[] = [];
      const { controller, reason } = aborter();
      // The tick after the abort comes before any event-loop phase: no batch nor tokenizer slice runs before it.
      const abort = () => {
        controller.abort(reason);
        process.nextTick(() => events.push('tick after the abort'));
      };
      const a = encoder.encode(TEXTS, {
        onProgress: (p) => {
          events.push(`a ${p.done}`);
          if (when !== 'before it starts' && !controller.signal.aborted) abort();
        },
      });
      const b = encoder.encode(others, { signal: controller.signal, onProgress: (p) => events.push(`b ${p.done}`) });
      b.catch((err) => events.push(err === reason ? 'b rejected' : `b: ${err}`));
      const c = encoder.encode(others);
      if (when === 'before it starts') abort();
      const [resultA, resultC] = await Promise.all([a, c]);
      await expect(b).rejects.toBe(reason);
      expect(resultA).toEqual(alone);
      expect(resultC).toEqual(othersAlone);
      // b ran no batch and was rejected at once, while a still had batches to run.
      expect(events.filter((e) => e.startsWith('b'))).toEqual(['b rejected']);
      expect(events.indexOf('b rejected')).toBeLessThan(events.indexOf('tick after the abort'));
      expect(events.indexOf('tick after the abort')).toBeLessThan(events.indexOf(`a ${TEXTS.length}`));
      expect(listeners(controller.signal)).toBe(0);
    });

  test('encodeStream: aborted before reads nothing; aborted midway ends the stream with the reason and closes the source', async () => {
    let read = 0;  // items the source gave
    let closed = false;
    async function* source() {
      try {
        for (const text of TEXTS) {
          read++;
          yield text;
        }
      } finally {
        closed = true;
      }
    }
    await expect(encoder.encodeStream(source(), { signal: AbortSignal.abort() }).next()).rejects.toMatchObject({ name: 'AbortError' });
    expect(read).toBe(0);

    const between = aborter();
    const stream = encoder.encodeStream(source(), { chunkSize: 8, signal: between.controller.signal });
    const first = await stream.next();
    expect((first.value as Embeddings).data).toEqual(alone.data.subarray(0, 8 * alone.dim));
    between.controller.abort(between.reason);
    await expect(stream.next()).rejects.toBe(between.reason);
    expect(closed).toBe(true);
    expect(read).toBe(8);  // no item is read after the abort

    // Aborted from the progress of a chunk's first batch: its encode rejects, the source is closed.
    closed = false;
    const within = aborter();
    const progress: number[] = [];
    const chunks = encoder.encodeStream(source(), {
      chunkSize: 16, signal: within.controller.signal,
      onProgress: (p) => {
        progress.push(p.done);
        within.controller.abort(within.reason);
      },
    });
    await expect(chunks.next()).rejects.toBe(within.reason);
    expect(closed).toBe(true);
    expect(progress).toHaveLength(1);
    expect(listeners(within.controller.signal)).toBe(0);
  });

  test('encodeStream: aborted while its source has no next text yet (standard input, a socket), it ends at once; the source closes once it gives one', async () => {
    // An object-mode stream that gives 8 texts, then waits (read() pushes nothing).
    const source = new Readable({ objectMode: true, read() {} });
    for (const text of TEXTS.slice(0, 8)) source.push(text);
    const { controller, reason } = aborter();
    const stream = encoder.encodeStream(source, { chunkSize: 8, signal: controller.signal });
    expect((await stream.next()).value).toEqual({ data: alone.data.subarray(0, 8 * alone.dim), rows: 8, dim: alone.dim });
    const next = stream.next();
    setTimeout(() => controller.abort(reason), 20);  // the stream is waiting for the 9th text
    // It waited for a text that never came, whatever the signal.
    let timer: NodeJS.Timeout | undefined;
    const stillWaiting = new Promise((resolve) => { timer = setTimeout(() => resolve('still waiting 2 s after the abort'), 2000); });
    await expect(Promise.race([next, stillWaiting])).rejects.toBe(reason);
    clearTimeout(timer);
    expect(listeners(controller.signal)).toBe(0);
    // A Readable's iterator (an async generator) closes once it has given the text it is waiting for.
    expect(source.destroyed).toBe(false);
    source.push(TEXTS[8]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(source.destroyed).toBe(true);
  });

  test('one long-lived signal shared by many calls keeps no listener', async () => {
    const { signal } = new AbortController();
    for (let i = 0; i < 200; i++) await encoder.encode([TEXTS[i % TEXTS.length]], { signal });
    for await (const chunk of encoder.encodeStream(TEXTS, { chunkSize: 8, signal })) expect(chunk.rows).toBe(8);
    await (await Encoder.load(MODEL, { signal, threads: 1 })).dispose();
    expect(listeners(signal)).toBe(0);
  });

  test('one signal shared by many calls at once holds one listener (Node.js warns of a leak past 10), and aborts them all', async () => {
    const { controller, reason } = aborter();
    const calls = Array.from({ length: 30 }, (_, i) => encoder.encode(TEXTS.slice(i, i + 10), { signal: controller.signal }));
    expect(listeners(controller.signal)).toBe(1);
    const results = await Promise.all(calls);
    results.forEach((e, i) => expect(e.data).toEqual(alone.data.subarray(i * alone.dim, (i + 10) * alone.dim)));
    expect(listeners(controller.signal)).toBe(0);
    const aborted = Array.from({ length: 30 }, () => encoder.encode(TEXTS, { signal: controller.signal }));
    controller.abort(reason);
    for (const call of aborted) await expect(call).rejects.toBe(reason);
    expect(listeners(controller.signal)).toBe(0);
  });
});

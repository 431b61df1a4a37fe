// Concurrent encode() calls share ONNX Runtime runs: each call still gets bit for bit what it gets alone,
// its own progress, abort and dispose() semantics. Runs are counted on the session (its `run`, each a request to its worker thread).
import * as fs from 'fs';
import * as path from 'path';
import type { OnnxWorker } from '../lib/onnx-worker';
import { Encoder, Embeddings } from '../lib/encoder';
import { makeRandom } from './helpers/random';

const SHARED = path.resolve(__dirname, '../../shared');
const MODEL = path.join(SHARED, 'models/tiny-random-camembert');
const haveModel = fs.existsSync(path.join(MODEL, 'config.json'));
if (!haveModel) console.warn(`shared batch tests skipped: ${MODEL} (tiny random model, ../shared) is missing`);
const describeModel = haveModel ? describe : describe.skip;

/** The vectors' bits: equal only if every float is the same float. */
const bits = (e: Embeddings) => new Uint32Array(e.data.buffer, e.data.byteOffset, e.data.length);

/**
 * What `work` gives, and the [rows, tokens] of each ONNX Runtime run of `encoder` meanwhile; each run `slower` ms
 * slower (as a real model's runs are than the tiny one's, which would otherwise take turns with tokenizing).
 */
async function withRuns<T>(encoder: Encoder, work: () => Promise<T>, slower = 0): Promise<{ result: T; runs: number[][] }> {
  const session = encoder['session'] as OnnxWorker;
  const run = session.run.bind(session);
  const spy = jest.spyOn(session, 'run').mockImplementation(async (...args) => {
    await new Promise((resolve) => setTimeout(resolve, slower));
    return run(...args);
  });
  try {
    const result = await work();
    return { result, runs: spy.mock.calls.map(([feeds]) => [...feeds.input_ids.dims]) };
  } finally {
    spy.mockRestore();
  }
}

describeModel('concurrent encode() calls share batches', () => {
  const texts = ['queries', 'passages', 'edge'].flatMap((set) => {
    const golden = JSON.parse(fs.readFileSync(path.join(MODEL, 'golden/index.json'), 'utf8')).sets[set];
    return golden.texts.map((t: { text: string; raw: string | null }) => t.raw ?? t.text) as string[];
  });
  let encoder: Encoder;
  beforeAll(async () => {
    encoder = await Encoder.load(MODEL, { threads: 2 });
  });
  afterAll(async () => {
    await encoder.dispose();
  });

  test('calls of random sizes, normalized or not, get bit for bit what each gets alone, in a few runs', async () => {
    const random = makeRandom(11);
    const calls = Array.from({ length: 40 }, () => ({
      texts: Array.from({ length: 1 + Math.floor(random() * 8) }, () => texts[Math.floor(random() * texts.length)]),
      normalize: random() < 0.7,
    }));
    const alone: Embeddings[] = [];
    const separate = await withRuns(encoder, async () => {
      for (const c of calls) alone.push(await encoder.encode(c.texts, { normalize: c.normalize }));
    });
    const progress = calls.map(() => [] as number[]);
    // Runs of 100 ms: the texts tokenized meanwhile (in event-loop turns of 4,096 characters) wait for the next.
    const { result: shared, runs } = await withRuns(encoder, () => Promise.all(calls.map((c, i) =>
      encoder.encode(c.texts, { normalize: c.normalize, onProgress: ({ done, total }) => progress[i].push(done / total) }))), 100);
    shared.forEach((e, i) => {
      expect([e.rows, e.dim]).toEqual([calls[i].texts.length, 32]);
      expect(bits(e)).toEqual(bits(alone[i]));
      expect(progress[i].at(-1)).toBe(1);  // each call's own progress, up to its total
    });
    // Every row ran once, in far fewer runs than the calls one by one (calls taking turns batch by batch ran as many).
    expect(runs.reduce((n, [rows]) => n + rows, 0)).toBe(calls.reduce((n, c) => n + c.texts.length, 0));
    expect(runs.length).toBeLessThan(separate.runs.length / 2);
  });

  test('a call aborted while its rows are in a running batch rejects, reports nothing, and its rows are dropped', async () => {
    const [p, q, r] = texts.slice(0, 3);
    const [pAlone, rAlone] = [await encoder.encode([p]), await encoder.encode([r])];
    const events: string[] = [];
    const controller = new AbortController();
    const reason = new Error('client went away');
    const { result, runs } = await withRuns(encoder, () => Promise.allSettled([
      encoder.encode([p], { onProgress: () => { events.push('p'); controller.abort(reason); } }),
      encoder.encode([q], { signal: controller.signal, onProgress: () => events.push('q') }),
      encoder.encode([r], { onProgress: () => events.push('r') }),
    ]));
    expect(runs.map(([rows]) => rows)).toEqual([3]);  // one batch held the three
    expect(result[1]).toEqual({ status: 'rejected', reason });
    expect(events).toEqual(['p', 'r']);
    expect(bits((result[0] as PromiseFulfilledResult<Embeddings>).value)).toEqual(bits(pAlone));
    expect(bits((result[2] as PromiseFulfilledResult<Embeddings>).value)).toEqual(bits(rAlone));
  });

  test('a call aborted while it waits leaves the queue: none of its rows rides in another call\'s batch', async () => {
    const small = await Encoder.load(MODEL, { threads: 2, batchSize: 8 });
    try {
      // a: 4 long texts; c: 1 text almost as long, cheaper in a's batch than in a run of its own; b: 3 short ones.
      const long = 'Une phrase assez longue pour que les autres textes soient plus courts qu\'elle.';
      const a = [long, long, long, long];
      const c = ['Une phrase assez longue pour que les autres textes soient plus courts.'];
      const b = ['a', 'b', 'c'];
      const [aAlone, cAlone] = [await small.encode(a), await small.encode(c)];
      const controller = new AbortController();
      const { result, runs } = await withRuns(small, () => Promise.allSettled([
        small.encode(a, { onProgress: () => controller.abort() }),
        small.encode(b, { signal: controller.signal }),
        small.encode(c),
      ]));
      expect(runs).toEqual([[5, small.tokenize(a).ids[0].length]]);  // a's batch took c; b, aborted then, never ran
      expect(result[1]).toMatchObject({ status: 'rejected', reason: { name: 'AbortError' } });
      expect(bits((result[0] as PromiseFulfilledResult<Embeddings>).value)).toEqual(bits(aAlone));
      expect(bits((result[2] as PromiseFulfilledResult<Embeddings>).value)).toEqual(bits(cAlone));
    } finally {
      await small.dispose();
    }
  });

  test('dispose() lets the calls made before it finish, in shared batches, then releases the session', async () => {
    const e = await Encoder.load(MODEL, { threads: 2 });
    const queries = texts.slice(0, 10);
    const alone: Embeddings[] = [];
    for (const q of queries) alone.push(await encoder.encode([q]));
    const oneCall = await withRuns(encoder, () => encoder.encode(queries));
    const { result, runs } = await withRuns(e, async () => {
      const pending = queries.map((q) => e.encode([q]));
      const disposed = e.dispose();
      await expect(e.encode(['a'])).rejects.toThrow(/disposed/);
      const results = await Promise.all(pending);
      await disposed;
      return results;
    });
    expect(runs).toEqual(oneCall.runs);  // the batches of one call of the 10 texts
    result.forEach((got, i) => expect(bits(got)).toEqual(bits(alone[i])));
  });
});

// Encoder parity with the golden outputs of an independent float64 PyTorch CamemBERT
// (../shared/models/tiny-random-camembert/golden), plus batching, order, concurrency, streaming.
import { getEventListeners } from 'events';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import * as util from 'util';
import * as ort from 'onnxruntime-node';
import { devices } from '../lib/devices';
import { checkOnnxRuntimeDevice, Encoder, Embeddings, similarity } from '../lib/encoder';
import { main } from '../lib/cli';
import { convertToOnnx } from '../lib/model';
import { DataType, encodeModel } from '../lib/model/onnx-writer';
import { loadAddon } from '../lib/native';
import type { OnnxWorker } from '../lib/onnx-worker';
import { readNpy } from './helpers/npy';
import { makeRandom } from './helpers/random';

const SHARED = path.resolve(__dirname, '../../shared');
const MODEL = path.join(SHARED, 'models/tiny-random-camembert');
const haveModel = fs.existsSync(path.join(MODEL, 'golden/index.json'));
if (!haveModel) console.warn(`encoder tests skipped: ${MODEL} (tiny random model with golden outputs) is missing`);
const describeModel = haveModel ? describe : describe.skip;

interface GoldenSet {
  embeddings: string;
  texts: { text: string; raw: string | null; ids: number[] }[];
  batches: { rows: number[]; seq_len: number; input_ids: string; attention_mask: string }[];
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number> | BigInt64Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - Number(b[i])));
  return m;
}

// The tiny model's files (weights, no ONNX graph) in a Hugging Face cache under <root>/hub as huggingface_hub lays
// it out: blobs, a snapshot of relative links to them, and refs/main naming its commit, with camembed's cache
// (CAMEMBED_CACHE) at <root>/camembed while `run` runs, given the root and the snapshot folder.
const HUB_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'modules.json',
  'sentence_bert_config.json', '1_Pooling/config.json', 'model.safetensors'];
async function withHubCache(commit: string, run: (root: string, snapshot: string) => Promise<void>): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-hub-'));
  const saved = process.env.CAMEMBED_CACHE;
  process.env.CAMEMBED_CACHE = path.join(root, 'camembed');
  try {
    await run(root, writeHubCache(root, commit));
  } finally {
    if (saved === undefined) delete process.env.CAMEMBED_CACHE; else process.env.CAMEMBED_CACHE = saved;
    fs.rmSync(root, { recursive: true, force: true });
  }
}
function writeHubCache(root: string, commit: string): string {
  const repo = path.join(root, 'hub', 'models--org--tiny');
  const snapshot = path.join(repo, 'snapshots', commit);
  for (const [i, f] of HUB_FILES.entries()) {
    const blob = path.join(repo, 'blobs', `blob${i}`);
    fs.mkdirSync(path.dirname(blob), { recursive: true });
    fs.copyFileSync(path.join(MODEL, f), blob);
    fs.mkdirSync(path.dirname(path.join(snapshot, f)), { recursive: true });
    fs.symlinkSync(path.relative(path.dirname(path.join(snapshot, f)), blob), path.join(snapshot, f));
  }
  fs.mkdirSync(path.join(repo, 'refs'));
  fs.writeFileSync(path.join(repo, 'refs', 'main'), commit);
  return snapshot;
}

function rowsOf(e: Embeddings, rows: number[]): Float32Array {
  const out = new Float32Array(rows.length * e.dim);
  rows.forEach((r, i) => out.set(e.data.subarray(r * e.dim, (r + 1) * e.dim), i * e.dim));
  return out;
}

describeModel('Encoder on the tiny random CamemBERT', () => {
  const index = haveModel ? JSON.parse(fs.readFileSync(path.join(MODEL, 'golden/index.json'), 'utf8')) : null;
  const sets: [string, GoldenSet][] = haveModel ? Object.entries(index.sets) : [];
  const textsOf = (set: GoldenSet) => set.texts.map((t) => t.raw ?? t.text);
  let encoder: Encoder;
  beforeAll(async () => {
    encoder = await Encoder.load(MODEL, { threads: 2 });
  });
  afterAll(async () => {
    await encoder.dispose();
  });

  test('reads the sentence-transformers configuration', () => {
    expect(encoder.dim).toBe(32);
    expect(encoder.maxLength).toBe(128);
    expect(encoder.onnxPath).toBe(path.join(MODEL, 'model.onnx'));
  });

  test.each(sets)('%s: token ids and padded masks equal the golden batches', (_name, set) => {
    const tokens = encoder.tokenize(textsOf(set));
    for (const batch of set.batches) {
      const ids = readNpy(path.join(MODEL, 'golden', batch.input_ids));
      const mask = readNpy(path.join(MODEL, 'golden', batch.attention_mask));
      expect(ids.shape).toEqual([batch.rows.length, batch.seq_len]);
      batch.rows.forEach((row, i) => {
        const want = Array.from(ids.data.slice(i * batch.seq_len, (i + 1) * batch.seq_len), Number);
        const wantMask = Array.from(mask.data.slice(i * batch.seq_len, (i + 1) * batch.seq_len), Number);
        const got = tokens.ids[row];
        expect([...got, ...new Array(batch.seq_len - got.length).fill(1)]).toEqual(want);
        expect([...tokens.attentionMask[row], ...new Array(batch.seq_len - got.length).fill(0)]).toEqual(wantMask);
        expect(got).toEqual(set.texts[row].ids);
      });
    }
  });

  test.each(sets)('%s: pooled normalised embeddings within 1e-5 of the golden float64 values', async (_name, set) => {
    const golden = readNpy(path.join(MODEL, 'golden', set.embeddings));
    const e = await encoder.encode(textsOf(set));
    expect([e.rows, e.dim]).toEqual(golden.shape);
    expect(maxAbsDiff(e.data, golden.data)).toBeLessThan(1e-5);
  });

  test('keeps the caller order for shuffled lengths; batch size 1 and a small token budget agree', async () => {
    const all = sets.flatMap(([, set]) => textsOf(set));
    const random = makeRandom(42);
    const order = all.map((_, i) => i).sort(() => random() - 0.5);
    const shuffled = order.map((i) => all[i]);
    const reference = await encoder.encode(all);
    const got = await encoder.encode(shuffled);
    expect(maxAbsDiff(got.data, rowsOf(reference, order))).toBeLessThan(1e-6);

    const one = await Encoder.load(MODEL, { threads: 1, batchSize: 1, spinWait: false });
    const budget = await Encoder.load(MODEL, { batchSize: 64, maxBatchTokens: 300 });
    try {
      expect(maxAbsDiff((await one.encode(shuffled)).data, got.data)).toBeLessThan(1e-6);
      expect(maxAbsDiff((await budget.encode(shuffled)).data, got.data)).toBeLessThan(1e-6);
    } finally {
      await one.dispose();
      await budget.dispose();
    }
  });

  test('concurrent encode() calls each get their own texts back', async () => {
    const [, queries] = sets.find(([name]) => name === 'queries')!;
    const [, passages] = sets.find(([name]) => name === 'passages')!;
    const q = textsOf(queries);
    const p = textsOf(passages);
    const [eq, ep, eq2] = await Promise.all([encoder.encode(q), encoder.encode(p), encoder.encode(q.slice(5, 9))]);
    expect(maxAbsDiff(eq.data, readNpy(path.join(MODEL, 'golden', queries.embeddings)).data)).toBeLessThan(1e-5);
    expect(maxAbsDiff(ep.data, readNpy(path.join(MODEL, 'golden', passages.embeddings)).data)).toBeLessThan(1e-5);
    expect(maxAbsDiff(eq2.data, eq.data.subarray(5 * 32, 9 * 32))).toBe(0);
  });

  test('a query made while a large encode() runs waits for one of its batches, not for all of it', async () => {
    const [, passages] = sets.find(([name]) => name === 'passages')!;
    const bulk = Array.from({ length: 8 }, () => textsOf(passages)).flat();
    let bulkDone = 0;
    const running = encoder.encode(bulk, { onProgress: ({ done }) => { bulkDone = done; } });
    await new Promise<void>((resolve) => { const poll = () => (bulkDone > 0 ? resolve() : setImmediate(poll)); poll(); });
    const query = await encoder.encode(['Comment installer un paquet Debian ?']);
    const doneWhenQueryReturned = bulkDone;
    const all = await running;
    expect(doneWhenQueryReturned).toBeLessThan(bulk.length);
    // Taking turns changes no row: each call gets its own vectors, as when run alone.
    expect(maxAbsDiff(query.data, (await encoder.encode(['Comment installer un paquet Debian ?'])).data)).toBe(0);
    expect(maxAbsDiff(all.data.subarray(0, passages.texts.length * 32), readNpy(path.join(MODEL, 'golden', passages.embeddings)).data)).toBeLessThan(1e-5);
  });

  test('concurrent calls tokenize 4,096 characters per event-loop turn between them', async () => {
    const passages = textsOf(sets.find(([name]) => name === 'passages')![1]);
    const texts = [...passages, ...passages, ...passages];
    const spy = jest.spyOn(encoder['tokenizer'], 'encodeWithin');
    const chars = () => spy.mock.calls.reduce((n, [text]) => n + text.length, 0);
    let most = 0;
    let running = true;
    const probe = (before: number) => {
      most = Math.max(most, chars() - before);
      if (running) setImmediate(probe, chars());
    };
    setImmediate(probe, 0);
    let results: Embeddings[];
    try {
      results = await Promise.all(Array.from({ length: 20 }, () => encoder.encode(texts)));
    } finally {
      running = false;
      spy.mockRestore();
    }
    // 64 texts a turn: 64 passages held the event loop 0.24 s on CamemBERT-base's tokenizer; turns of each call's own
    // ran back to back.
    expect(texts.reduce((n, t) => n + t.length, 0)).toBeGreaterThan(3 * 4096);
    expect(most).toBeGreaterThan(4096 - Math.max(...texts.map((t) => t.length)));
    expect(most).toBeLessThanOrEqual(4096);
    const alone = await encoder.encode(texts);
    for (const r of results) expect(r).toEqual(alone);
  });

  test('normalize: false gives the plain mean (same direction, golden norms differ from 1)', async () => {
    const texts = textsOf(sets[0][1]).slice(0, 4);
    const raw = await encoder.encode(texts, { normalize: false });
    const unit = await encoder.encode(texts);
    for (let r = 0; r < 4; r++) {
      const row = raw.data.subarray(r * 32, (r + 1) * 32);
      const norm = Math.hypot(...row);
      expect(Math.abs(norm - 1)).toBeGreaterThan(1e-3);
      expect(maxAbsDiff(row.map((v) => v / norm), unit.data.subarray(r * 32, (r + 1) * 32))).toBeLessThan(1e-6);
    }
  });

  test('onProgress reports every batch up to the total; empty input gives zero rows', async () => {
    const seen: number[] = [];
    const texts = textsOf(sets[0][1]);
    await encoder.encode(texts, { onProgress: ({ done, total }) => { expect(total).toBe(texts.length); seen.push(done); } });
    expect(seen[seen.length - 1]).toBe(texts.length);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    const empty = await encoder.encode([]);
    expect([empty.rows, empty.dim, empty.data.length]).toEqual([0, 32, 0]);
  });

  test('similarity() is the cosine matrix', async () => {
    const a = await encoder.encode(['Bonjour', 'Au revoir']);
    const b = await encoder.encode(['Bonjour', 'Salut', 'Merci']);
    const s = similarity(a, b);
    expect([s.rows, s.cols]).toEqual([2, 3]);
    expect(s.data[0]).toBeCloseTo(1, 6);
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 3; j++) {
        let dot = 0;
        for (let k = 0; k < 32; k++) dot += a.data[i * 32 + k] * b.data[j * 32 + k];
        expect(s.data[i * 3 + j]).toBeCloseTo(dot, 6);
      }
    }
    expect(() => similarity(a, { data: new Float32Array(3), rows: 1, dim: 3 })).toThrow(RangeError);
  });

  test('encodeStream yields chunks in order equal to encode()', async () => {
    const texts = sets.flatMap(([, set]) => textsOf(set));
    async function* lines() {
      for (const t of texts) yield t;
    }
    const chunks: Embeddings[] = [];
    // The options as they were at the call: changing the object afterwards changes nothing.
    const options = { chunkSize: 30, normalize: true };
    const stream = encoder.encodeStream(lines(), options);
    Object.assign(options, { chunkSize: 7, normalize: false });
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.rows)).toEqual([30, 30, 30, texts.length - 90]);
    // A chunk too large for one Float32Array is refused at the call (2^32 / 32 = 134,217,728 texts).
    expect(() => encoder.encodeStream(texts, { chunkSize: 2 ** 27 + 1 })).toThrow(
      new RangeError(`options.chunkSize must be <= ${2 ** 27} (a chunk's 32-d vectors are one Float32Array), got ${2 ** 27 + 1}`));
    const joined = new Float32Array(texts.length * 32);
    let offset = 0;
    for (const c of chunks) { joined.set(c.data, offset); offset += c.data.length; }
    expect(maxAbsDiff(joined, (await encoder.encode(texts)).data)).toBeLessThan(1e-6);
  });

  test('console.log shows the public facts, not the ONNX Runtime session', async () => {
    const facts = `modelDir: '${MODEL}', device: 'cpu', dim: 32, maxLength: ${encoder.maxLength}, batchSize: ${encoder.batchSize}, maxBatchTokens: ${encoder.maxBatchTokens}`;
    expect(util.inspect(encoder, { breakLength: Infinity })).toBe(`Encoder { ${facts} }`);
    const disposed = await Encoder.load(MODEL);
    await disposed.dispose();
    expect(util.inspect(disposed, { breakLength: Infinity })).toBe(`Encoder { ${facts}, disposed: true }`);
  });

  test('bad input and options get clear errors', async () => {
    expect(() => encoder.encode('texte' as unknown as string[])).toThrow(TypeError);
    expect(() => encoder.encode(['a', 42 as unknown as string])).toThrow(new TypeError('texts[1] must be a string, got number'));
    expect(() => encoder.encode(['a'], { normalize: 'yes' as unknown as boolean })).toThrow(TypeError);
    await expect(Encoder.load(MODEL, { batchSize: 0 })).rejects.toThrow(RangeError);
    // ONNX Runtime took 3e9 threads silently, failed 2**31 - 1 as 'cannot load the ONNX graph ...: std::bad_alloc' and
    // spun 5,000 for minutes: capped as the kernels' threads are.
    await expect(Encoder.load(MODEL, { threads: 3e9 })).rejects.toThrow(new RangeError('options.threads must be <= 1024, got 3000000000'));
    await expect(Encoder.load(MODEL, { maxLength: 513 })).rejects.toThrow(/between 2 .* and 512/);
    // 0 said 'must be >= 1', then 1 said 'between 2 and 512': both get the range (its top is the model's, unknown before it loads).
    for (const maxLength of [0, 1]) {
      await expect(Encoder.load(MODEL, { maxLength })).rejects.toThrow(
        new RangeError(`options.maxLength must be between 2 (room for <s> and </s>) and the model's position table, got ${maxLength}`));
    }
    // 0 said 'must be >= 1', then 1 said 'between 128 and 134217728': one rule, one message (its numbers are the model's).
    for (const maxBatchTokens of [0, 1]) {
      await expect(Encoder.load(MODEL, { maxBatchTokens })).rejects.toThrow(new RangeError('options.maxBatchTokens must be between maxLength ' +
        `(one text must fit) and 2^32 / the model's dim (a batch's hidden states are one Float32Array), got ${maxBatchTokens}`));
    }
    await expect(Encoder.load(MODEL, { maxBatchTokens: 10 })).rejects.toThrow(
      new RangeError("options.maxBatchTokens must be between 128 (maxLength: one text must fit) and 134217728 (a batch's 32-d hidden states are one Float32Array), got 10"));
    // A batch's hidden states come back from ONNX Runtime as one Float32Array: batchSize up to 2^53 was taken (one too many for
    // any model is refused before the model is read: model-hub.test.ts).
    await expect(Encoder.load(MODEL, { batchSize: 2 ** 20 + 1 })).rejects.toThrow(new RangeError('options.batchSize must be <= 1048576 ' +
      "at maxLength 128 (batchSize x maxLength, the default maxBatchTokens, must be <= 134217728: a batch's 32-d hidden states are one Float32Array), " +
      `got ${2 ** 20 + 1}`));
    await expect(Encoder.load(MODEL, { maxBatchTokens: 2 ** 27 + 1 })).rejects.toThrow(/^options.maxBatchTokens must be between 128 .* and 134217728 .*, got 134217729$/);
    const largest = await Encoder.load(MODEL, { batchSize: 2 ** 20, threads: 1 });
    expect((await largest.encode(['un', 'deux trois'])).rows).toBe(2);
    await largest.dispose();
    // One name per device: 'cuda:00' was device 0.
    await expect(Encoder.load(MODEL, { device: 'cuda:00' as 'cuda' })).rejects.toThrow(new TypeError('options.device must be written \'cuda:0\', got "cuda:00"'));
    await expect(Encoder.load(MODEL, { device: 'tpu' as 'cpu' })).rejects.toThrow(TypeError);
    // A device that is not here is refused before onnxruntime starts, naming the option, when
    // camembed's CUDA build can tell; otherwise onnxruntime's CUDA provider fails to start
    // (encoder-cli.test, in a process of its own: ONNX Runtime logs why on its stderr).
    const gpus = devices().cuda.length;
    if (loadAddon().info().cudaCompiledIn) {
      await expect(Encoder.load(MODEL, { device: gpus === 0 ? 'cuda' : `cuda:${gpus}` })).rejects.toThrow(
        gpus === 0 ? /^options.device is 'cuda' but no CUDA device is available: .+/ : RangeError);
    }
    await expect(Encoder.load(path.join(os.tmpdir(), 'camembed-no-such-model'))).rejects.toThrow(/neither an existing folder|does not exist/);
    const stream = encoder.encodeStream((async function* () { yield 'a'; yield 3 as unknown as string; })());
    await expect(stream.next()).rejects.toThrow(/texts item 1 must be a string/);
    // Bad arguments throw when encodeStream is called, as for encode(), not at the first step.
    expect(() => encoder.encodeStream(null as unknown as string[])).toThrow(new TypeError('texts must be an iterable or async iterable of strings, got null'));
    expect(() => encoder.encodeStream(['a'], { chunkSize: 0 })).toThrow(new RangeError('options.chunkSize must be >= 1, got 0'));
    // A file or standard input read as a stream yields chunks cut anywhere (64 KiB each), not texts: with
    // an encoding set, each chunk was encoded as one text. An object-mode stream of strings is fine.
    const file = fs.createReadStream(path.join(MODEL, 'config.json'), 'utf8');
    expect(() => encoder.encodeStream(file)).toThrow(new TypeError('texts is a stream of bytes or characters (a file or standard ' +
      'input as read), not of texts: pass readTexts(file) for one text per line, or an object-mode stream of strings'));
    file.destroy();
    expect((await encoder.encodeStream(Readable.from(['a', 'b'])).next()).value?.rows).toBe(2);
    expect(() => encoder.encodeStream(['a'], { normalize: 'no' as unknown as boolean })).toThrow(TypeError);
    expect(() => encoder.encode(['a'], { normalise: false } as object)).toThrow(new TypeError('options.normalise is not known (did you mean normalize?): expected normalize, onProgress, signal'));
    expect(() => encoder.encodeStream(['a'], { chunksize: 8 } as object)).toThrow('options.chunksize is not known (did you mean chunkSize?)');
    expect(() => encoder.encodeStream(['a'], { onProgress: 1 as unknown as () => void })).toThrow(/options.onProgress must be a function/);
  });

  test('a folder with safetensors only is converted to ONNX once, next to the weights; other pooling is refused', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-encoder-'));
    try {
      for (const f of fs.readdirSync(MODEL)) {
        if (f !== 'model.onnx' && f !== 'golden') fs.symlinkSync(path.join(MODEL, f), path.join(dir, f));
      }
      const converted = await Encoder.load(dir);
      try {
        expect(converted.onnxPath).toBe(path.join(dir, 'onnx', 'model.onnx'));
        const [, queries] = sets[0];
        const e = await converted.encode(textsOf(queries));
        expect(maxAbsDiff(e.data, readNpy(path.join(MODEL, 'golden', queries.embeddings)).data)).toBeLessThan(1e-5);
      } finally {
        await converted.dispose();
      }
      // New weights (other values, same size) make the converted graph stale: it is converted again.
      const weights = fs.readFileSync(path.join(MODEL, 'model.safetensors'));
      const headerEnd = 8 + Number(weights.readBigUInt64LE(0));
      for (let i = headerEnd; i < weights.length; i += 4) weights.writeFloatLE(weights.readFloatLE(i) * 0.5, i);
      fs.rmSync(path.join(dir, 'model.safetensors'));
      fs.writeFileSync(path.join(dir, 'model.safetensors'), weights);
      const copy = `${dir}-copy`;  // the same files, converted for the first time
      fs.cpSync(dir, copy, { recursive: true, dereference: true, filter: (f) => path.basename(f) !== 'onnx' });
      const again = await Encoder.load(dir);
      const fresh = await Encoder.load(copy);
      try {
        const texts = textsOf(sets[0][1]);
        const reconverted = await again.encode(texts);
        expect(reconverted.data).toEqual((await fresh.encode(texts)).data);
        expect(maxAbsDiff(reconverted.data, readNpy(path.join(MODEL, 'golden', sets[0][1].embeddings)).data)).toBeGreaterThan(1e-3);
      } finally {
        await again.dispose();
        await fresh.dispose();
        fs.rmSync(copy, { recursive: true, force: true });
      }
      // A copy (new modification times, same bytes) uses its graph as it is.
      const copied = `${dir}-copied`;
      fs.cpSync(dir, copied, { recursive: true, dereference: true });
      const graphFile = () => fs.statSync(path.join(copied, 'onnx', 'model.onnx')).ino;  // a conversion renames a new file in
      const before = graphFile();
      const fromCopy = await Encoder.load(copied);
      await fromCopy.dispose();
      expect(graphFile()).toBe(before);
      // A float16 graph is converted again as float16 when config.json changes.
      fs.rmSync(copied, { recursive: true, force: true });
      fs.cpSync(dir, copied, { recursive: true, dereference: true, filter: (f) => path.basename(f) !== 'onnx' });
      await convertToOnnx(copied, { dtype: 'float16' });
      const config = JSON.parse(fs.readFileSync(path.join(copied, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(copied, 'config.json'), JSON.stringify({ ...config, layer_norm_eps: config.layer_norm_eps * 2 }));
      const halfBytes = fs.statSync(path.join(copied, 'onnx', 'model.onnx.data')).size;
      const reconvertedHalf = await Encoder.load(copied);
      await reconvertedHalf.dispose();
      const source = JSON.parse(fs.readFileSync(path.join(copied, 'onnx', 'model.onnx.source.json'), 'utf8'));
      expect({ dtype: source.dtype, graph: source.graph }).toEqual({ dtype: 'float16', graph: 'fused' });
      expect(fs.statSync(path.join(copied, 'onnx', 'model.onnx.data')).size).toBe(halfBytes);
      expect(source.files.find((f: { file: string }) => f.file.endsWith('config.json')).bytes).toBe(fs.statSync(path.join(copied, 'config.json')).size);
      fs.rmSync(copied, { recursive: true, force: true });
      fs.rmSync(path.join(dir, '1_Pooling'));
      fs.mkdirSync(path.join(dir, '1_Pooling'));
      fs.writeFileSync(path.join(dir, '1_Pooling', 'config.json'),
        JSON.stringify({ word_embedding_dimension: 32, pooling_mode_cls_token: true, pooling_mode_mean_tokens: false }));
      await expect(Encoder.load(dir)).rejects.toThrow(/pooling \[pooling_mode_cls_token\] is unsupported/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a Hub model with weights only is converted into camembed\'s cache, leaving the Hugging Face snapshot as it was', async () => {
    // A cache as huggingface_hub lays it out (blobs and relative links), loaded offline.
    const commit = 'c'.repeat(40);
    await withHubCache(commit, async (root, snapshot) => {
      const graph = path.join(root, 'camembed', 'onnx', 'models--org--tiny', commit, 'model.onnx');
      const [, queries] = sets[0];
      fs.symlinkSync('hub', path.join(root, 'hub-link'));  // the same cache reached by another path
      for (let load = 0; load < 3; load++) {
        const cacheDir = path.join(root, load === 2 ? 'hub-link' : 'hub');
        const encoder = await Encoder.load('org/tiny', { cacheDir, offline: true, threads: 1 });
        try {
          expect(encoder.onnxPath).toBe(graph);
          const e = await encoder.encode(textsOf(queries));
          expect(maxAbsDiff(e.data, readNpy(path.join(MODEL, 'golden', queries.embeddings)).data)).toBeLessThan(1e-5);
        } finally {
          await encoder.dispose();
        }
        if (load === 0) fs.utimesSync(graph, 1, 1);  // a second conversion would renew the time
      }
      expect(fs.statSync(graph).mtimeMs).toBe(1000);  // converted once, for both paths
      expect(fs.readdirSync(snapshot).sort()).toEqual([...new Set(HUB_FILES.map((f) => f.split('/')[0]))].sort());
    });
  });

  test("`camembed convert` of a Hub snapshot writes where Encoder.load looks, camembed's cache; never into the snapshot", async () => {
    const commit = 'd'.repeat(40);
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await withHubCache(commit, async (root, snapshot) => {
      const listing = fs.readdirSync(snapshot).sort();
      const graph = path.join(root, 'camembed', 'onnx', 'models--org--tiny', commit, 'model.onnx');
      const link = path.join(root, 'my-model');  // the snapshot by another path
      fs.symlinkSync(snapshot, link);
      expect(await main(['convert', link, '--dtype', 'float16'])).toBe(0);
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(`wrote ${graph} `);
      fs.utimesSync(graph, 1, 1);
      // Loaded by its id or its folder: that graph (float16: within float16's precision of float32's), not converted again.
      const golden = readNpy(path.join(MODEL, 'golden', sets[0][1].embeddings)).data;
      for (const source of ['org/tiny', link]) {
        const encoder = await Encoder.load(source, { cacheDir: path.join(root, 'hub'), offline: true, threads: 1 });
        try {
          expect(encoder.onnxPath).toBe(graph);
          const e = await encoder.encode(textsOf(sets[0][1]));
          expect(maxAbsDiff(e.data, golden)).toBeGreaterThan(1e-6);
          expect(maxAbsDiff(e.data, golden)).toBeLessThan(2e-3);
        } finally {
          await encoder.dispose();
        }
      }
      expect(fs.statSync(graph).mtimeMs).toBe(1000);
      // Told to write into the snapshot (by any path, --force or not): a usage error, before anything is written there.
      for (const [dir, force] of [[snapshot, []], [link, ['--force']]] as const) {
        const inside = path.join(dir, 'onnx', 'model.onnx');
        stderr.mockClear();
        expect(await main(['convert', snapshot, '--output', inside, ...force])).toBe(2);
        expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(`cannot write ${inside}: it is in ${dir}, ` +
          "a snapshot of the Hugging Face cache, which holds the repository's files only; leave out the output");
      }
      expect(fs.readdirSync(snapshot).sort()).toEqual(listing);
    }).finally(() => stderr.mockRestore());
  });

  test('dispose() lets the calls made before it finish, then refuses work', async () => {
    const e = await Encoder.load(MODEL, { threads: 1 });
    const [, queries] = sets.find(([name]) => name === 'queries')!;
    const pending = [e.encode(textsOf(queries)), e.encode(textsOf(queries).slice(0, 3))];
    const disposed = e.dispose();
    expect(e.dispose()).toBe(disposed);  // a second call waits for the same release
    await expect(e.encode(['a'])).rejects.toThrow(/disposed/);
    const [all, first3] = await Promise.all(pending);
    await disposed;
    expect(maxAbsDiff(all.data, readNpy(path.join(MODEL, 'golden', queries.embeddings)).data)).toBeLessThan(1e-5);
    expect(maxAbsDiff(first3.data, all.data.subarray(0, 3 * 32))).toBe(0);
    await expect(e.encode(['a'])).rejects.toThrow(/disposed/);
    // A stream fails before it reads its source (not after a whole chunk of it), and one running
    // when the encoder is disposed fails before reading another text, its source closed.
    let read = 0;
    const source = function* () { for (;;) { read++; yield 'a'; } };
    await expect(e.encodeStream(source()).next()).rejects.toThrow(/disposed/);
    expect(read).toBe(0);
    const f = await Encoder.load(MODEL, { threads: 1 });
    let closed = false;
    const running = f.encodeStream((function* () { try { yield* source(); } finally { closed = true; } })(), { chunkSize: 2 });
    expect((await running.next()).value?.rows).toBe(2);
    await f.dispose();
    const readBefore = read;
    await expect(running.next()).rejects.toThrow(/disposed/);
    expect([read - readBefore, closed]).toEqual([0, true]);
  });

  test('dispose() ends a stream whose source is waiting for its next text (standard input, a socket) at once', async () => {
    const e = await Encoder.load(MODEL, { threads: 1 });
    const source = new Readable({ objectMode: true, read() {} });  // gives 2 texts, then waits
    source.push('un');
    source.push('deux');
    const { signal } = new AbortController();  // long-lived: it must keep no listener of the stream
    const stream = e.encodeStream(source, { chunkSize: 2, signal });
    expect((await stream.next()).value?.rows).toBe(2);
    const next = stream.next();
    setTimeout(() => void e.dispose(), 20);  // the stream is waiting for the 3rd text
    let timer: NodeJS.Timeout | undefined;
    const stillWaiting = new Promise((resolve) => { timer = setTimeout(() => resolve('still waiting 2 s after dispose()'), 2000); });
    await expect(Promise.race([next, stillWaiting])).rejects.toThrow('this Encoder has been disposed');
    clearTimeout(timer);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    source.destroy();
  });
});

describeModel('model settings read as sentence-transformers reads them', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-settings-'));
    fs.cpSync(MODEL, dir, { recursive: true, filter: (f) => !f.includes('golden') });
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const edit = (file: string, change: (json: Record<string, unknown>) => unknown) =>
    fs.writeFileSync(path.join(dir, file), JSON.stringify(change(JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')))));
  const norms = (e: Embeddings) => Array.from({ length: e.rows }, (_, r) => Math.hypot(...e.data.subarray(r * e.dim, (r + 1) * e.dim)));
  const texts = ['Bonjour le monde', 'Une autre phrase, plus longue que la première.'];

  test('a Normalize module normalises even with normalize: false', async () => {
    const plain = await Encoder.load(dir, { threads: 1 });
    const raw = await plain.encode(texts, { normalize: false });
    const unit = await plain.encode(texts);
    await plain.dispose();
    expect(norms(raw).some((n) => Math.abs(n - 1) > 0.01)).toBe(true);
    edit('modules.json', (m) => [...(m as unknown as object[]), { idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' }]);
    const withNormalize = await Encoder.load(dir, { threads: 1 });
    expect((await withNormalize.encode(texts, { normalize: false })).data).toEqual(unit.data);
    await withNormalize.dispose();
  });

  test('modules.json: a Transformer, then Pooling, then optionally Normalize, and nothing else, as the docs say', async () => {
    const [T, P, N] = ['Transformer', 'Pooling', 'Normalize'].map((name, idx) =>
      ({ idx, name: String(idx), path: ['', '1_Pooling', '2_Normalize'][idx], type: `sentence_transformers.models.${name}` }));
    const dense = { idx: 2, name: '2', path: '2_Dense', type: 'sentence_transformers.models.Dense' };
    // Normalize before Pooling, or Pooling before the Transformer, is no model sentence-transformers runs; they loaded as T, P.
    for (const modules of [[T, N, P], [P, T], [N, T, P], [T, P, P], [T, T, P], [T, P, N, N], [T, P, dense], [T], []]) {
      fs.writeFileSync(path.join(dir, 'modules.json'), JSON.stringify(modules));
      await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(new Error(`${path.join(dir, 'modules.json')}: unsupported module list ` +
        `[${modules.map((m) => m.type).join(', ')}]; camembed supports a Transformer followed by mean Pooling (and optionally Normalize)`));
    }
    for (const modules of [[T, P], [T, P, N]]) {
      fs.writeFileSync(path.join(dir, 'modules.json'), JSON.stringify(modules));
      await (await Encoder.load(dir, { threads: 1 })).dispose();
    }
  });

  test('the default prompt goes before every text', async () => {
    const plain = await Encoder.load(dir, { threads: 1 });
    const prefixed = await plain.encode(texts.map((t) => `query: ${t}`));
    await plain.dispose();
    edit('config_sentence_transformers.json', (c) => ({ ...c, prompts: { query: 'query: ', passage: 'passage: ' }, default_prompt_name: 'query' }));
    const prompted = await Encoder.load(dir, { threads: 1 });
    expect((await prompted.encode(texts)).data).toEqual(prefixed.data);
    expect(prompted.tokenize(texts).ids[0].length).toBe(plain.tokenize(texts.map((t) => `query: ${t}`)).ids[0].length);
    await prompted.dispose();
    edit('config_sentence_transformers.json', (c) => ({ ...c, default_prompt_name: 'missing' }));
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(/default_prompt_name "missing" is not one of its prompts/);
  });

  test('max_seq_length: another settings file name, null (the model limits), beyond the position table', async () => {
    fs.renameSync(path.join(dir, 'sentence_bert_config.json'), path.join(dir, 'sentence_camembert_config.json'));
    edit('sentence_camembert_config.json', (c) => ({ ...c, max_seq_length: 16 }));
    let e = await Encoder.load(dir, { threads: 1 });
    expect(e.maxLength).toBe(16);
    await e.dispose();
    edit('sentence_camembert_config.json', (c) => ({ ...c, max_seq_length: null }));
    edit('tokenizer_config.json', (c) => ({ ...c, model_max_length: 40 }));
    e = await Encoder.load(dir, { threads: 1 });
    expect(e.maxLength).toBe(40);  // min(max_position_embeddings 514, model_max_length 40)
    await e.dispose();
    edit('sentence_camembert_config.json', (c) => ({ ...c, max_seq_length: 514 }));
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(
      /sentence_camembert_config\.json: max_seq_length must be between 2 \(room for <s> and <\/s>\) and 512 \(the model's position table\), got 514/);
  });

  test('a plain transformers folder (no modules.json) loads as sentence-transformers builds it: mean pooling, the model\'s length limit', async () => {
    // Was "cannot read <dir>/modules.json: ENOENT". sentence-transformers reads no settings file or prompt without
    // modules.json: the ones left here (max_seq_length 16, a default prompt) must be ignored.
    fs.rmSync(path.join(dir, 'modules.json'));
    fs.rmSync(path.join(dir, '1_Pooling'), { recursive: true });
    edit('sentence_bert_config.json', (c) => ({ ...c, max_seq_length: 16 }));
    edit('config_sentence_transformers.json', (c) => ({ ...c, prompts: { query: 'query: ' }, default_prompt_name: 'query' }));
    const [, queries] = Object.entries(JSON.parse(fs.readFileSync(path.join(MODEL, 'golden/index.json'), 'utf8')).sets)[0] as [string, GoldenSet];
    let e = await Encoder.load(dir, { threads: 1 });
    expect([e.dim, e.maxLength]).toEqual([32, 128]);  // config.json's hidden_size; min(max_position_embeddings 514, model_max_length 128)
    const golden = readNpy(path.join(MODEL, 'golden', queries.embeddings));
    expect(maxAbsDiff((await e.encode(queries.texts.map((t) => t.raw ?? t.text))).data, golden.data)).toBeLessThan(1e-5);
    expect(norms(await e.encode(texts, { normalize: false })).some((n) => Math.abs(n - 1) > 0.01)).toBe(true);  // no Normalize module
    await e.dispose();
    edit('tokenizer_config.json', (c) => ({ ...c, model_max_length: 40 }));
    e = await Encoder.load(dir, { threads: 1 });
    expect(e.maxLength).toBe(40);
    await e.dispose();
    edit('config.json', (c) => ({ ...c, hidden_size: 64 }));
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(`${path.join(dir, 'model.onnx')}: output last_hidden_state has ` +
      `32 values per token, but ${path.join(dir, 'config.json')}: hidden_size is 64`);
  });

  test('a pad_token_id that leaves the position table no room is an error saying so', async () => {
    // Was "options.maxLength must be between 2 (room for <s> and </s>) and -87 (the model's position table)".
    edit('config.json', (c) => ({ ...c, max_position_embeddings: 514, pad_token_id: 600 }));
    await expect(Encoder.load(dir, { threads: 1, maxLength: 16 })).rejects.toThrow(new Error(`${path.join(dir, 'config.json')}: ` +
      'max_position_embeddings 514 leaves no position for <s> and </s> after pad_token_id 600 (positions start after the padding id): ' +
      'pad_token_id must be at most max_position_embeddings - 3'));
    edit('config.json', (c) => ({ ...c, pad_token_id: 511 }));
    const e = await Encoder.load(dir, { threads: 1, maxLength: 2 });
    expect(e.maxLength).toBe(2);
    await e.dispose();
  });

  test('a BERT model (model_type bert) takes positions 0 .. n - 1: its whole position table', async () => {
    // The RoBERTa offset (pad_token_id + 1) was applied to BERT too: 512 refused on a 512-row table.
    edit('config.json', (c) => ({ ...c, model_type: 'bert', max_position_embeddings: 512, pad_token_id: 0 }));
    const e = await Encoder.load(dir, { threads: 1, maxLength: 512 });
    expect(e.maxLength).toBe(512);
    await e.dispose();
    await expect(Encoder.load(dir, { threads: 1, maxLength: 513 })).rejects.toThrow(/and 512 \(the model's position table\), got 513/);
    edit('config.json', (c) => ({ ...c, max_position_embeddings: 1 }));
    await expect(Encoder.load(dir, { threads: 1, maxLength: 2 })).rejects.toThrow(
      new Error(`${path.join(dir, 'config.json')}: max_position_embeddings 1 leaves no position for [CLS] and [SEP]`));
  });

  test('config.json\'s integers must be in range, as the converter takes them, and are refused as the file is read', async () => {
    // -1 let maxLength reach 514 on a 514-row table; the fractions bounded maxLength by 511.5 or 512.5.
    const cases = [['pad_token_id', -1, 'non-negative'], ['pad_token_id', 1.5, 'non-negative'], ['max_position_embeddings', 514.5, 'positive'],
      ['max_position_embeddings', '514', 'positive'], ['max_position_embeddings', 0, 'positive'], ['vocab_size', 0, 'positive']] as const;
    for (const [key, value, range] of cases) {
      edit('config.json', (c) => ({ ...c, max_position_embeddings: 514, pad_token_id: 1, vocab_size: 32005, [key]: value }));
      await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(
        new Error(`${path.join(dir, 'config.json')}: ${key} must be a ${range} integer, got ${JSON.stringify(value)}`));
    }
    // transformers' padding row must be one of the vocabulary's (nn.Embedding refuses another).
    edit('config.json', (c) => ({ ...c, vocab_size: 32005, pad_token_id: 32005 }));
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(
      new Error(`${path.join(dir, 'config.json')}: pad_token_id 32005 must be a token id, below vocab_size 32005`));
    // A plain folder's dim: hidden_size 0 passed, then failed the graph's width check ("32 values per token, but ... hidden_size is 0").
    fs.rmSync(path.join(dir, 'modules.json'));
    for (const value of [0, -32, 32.5, null]) {
      edit('config.json', (c) => ({ ...c, pad_token_id: 1, hidden_size: value }));
      await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(new Error(`${path.join(dir, 'config.json')}: hidden_size ` +
        (value === null ? 'is missing (a positive integer)' : `must be a positive integer, got ${value}`)));
    }
    fs.copyFileSync(path.join(MODEL, 'modules.json'), path.join(dir, 'modules.json'));
    edit('config.json', (c) => ({ ...c, hidden_size: 32 }));
    edit('config.json', (c) => ({ ...c, max_position_embeddings: null, pad_token_id: null }));  // absent: no bound, and HF's default 1
    const e = await Encoder.load(dir, { threads: 1, maxLength: 514 });
    expect(e.maxLength).toBe(514);
    await e.dispose();
  });

  test('include_prompt must be true or false (sentence-transformers took 0 and null as false, "false" as true)', async () => {
    for (const value of ['false', 0, null]) {
      edit('1_Pooling/config.json', (c) => ({ ...c, include_prompt: value }));
      await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(
        new Error(`${path.join(dir, '1_Pooling', 'config.json')}: include_prompt must be true or false, got ${JSON.stringify(value)}`));
    }
  });

  test('a settings file holding null or a list is an error naming it, not a TypeError', async () => {
    for (const [file, value, got] of [['sentence_bert_config.json', null, 'null'], ['1_Pooling/config.json', [], 'an array'],
      ['config_sentence_transformers.json', 'x', 'string']] as const) {
      const saved = fs.readFileSync(path.join(dir, file));
      fs.writeFileSync(path.join(dir, file), JSON.stringify(value));
      await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(`${path.join(dir, file)} must hold a JSON object, got ${got}`);
      fs.writeFileSync(path.join(dir, file), saved);
    }
    fs.writeFileSync(path.join(dir, 'modules.json'), 'null');
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(`${path.join(dir, 'modules.json')} must hold an array of modules`);
    // Were "Cannot read properties of null (reading 'type')" and "cannot read <dir>/undefined/config.json".
    fs.writeFileSync(path.join(dir, 'modules.json'), '[null]');
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(`${path.join(dir, 'modules.json')}: module 0 must be an object, got null`);
    fs.writeFileSync(path.join(dir, 'modules.json'), JSON.stringify([
      { type: 'sentence_transformers.models.Transformer', path: '' }, { type: 'sentence_transformers.models.Pooling' }]));
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(
      `${path.join(dir, 'modules.json')}: the Pooling module has no path (the folder of its config.json)`);
  });

  test('a tokenizer.json that tokenizers.js cannot read is an error naming the file', async () => {
    // Was 'Tokenizer must contain a "decoder" property', and a TypeError for a missing vocabulary, naming no file.
    edit('tokenizer.json', ({ decoder, ...rest }) => rest);
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(`${path.join(dir, 'tokenizer.json')}: Tokenizer must contain a "decoder" property`);
  });

  test('the pooling config as sentence-transformers reads it: mean unless set, a pooling_mode string over the flags', async () => {
    const plain = await Encoder.load(dir, { threads: 1 });
    const mean = await plain.encode(texts);
    await plain.dispose();
    const poolingFile = path.join(dir, '1_Pooling', 'config.json');
    // Pooling(**config): pooling_mode_mean_tokens defaults to true; pooling_mode replaces every pooling_mode_* flag.
    for (const config of [{ word_embedding_dimension: 32 }, { word_embedding_dimension: 32, pooling_mode: 'MEAN', pooling_mode_cls_token: true }]) {
      fs.writeFileSync(poolingFile, JSON.stringify(config));
      const e = await Encoder.load(dir, { threads: 1 });
      expect((await e.encode(texts)).data).toEqual(mean.data);
      await e.dispose();
    }
    for (const [config, modes] of [
      // CLS pooling in sentence-transformers, which camembed encoded as mean.
      [{ word_embedding_dimension: 32, pooling_mode: 'cls', pooling_mode_mean_tokens: true }, 'pooling_mode "cls"'],
      // Mean and max concatenated (1 is true to Python), which camembed encoded as mean.
      [{ word_embedding_dimension: 32, pooling_mode_mean_tokens: true, pooling_mode_max_tokens: 1 }, 'pooling_mode_mean_tokens, pooling_mode_max_tokens 1'],
      [{ word_embedding_dimension: 32, pooling_mode_mean_tokens: false }, ''],
    ] as const) {
      fs.writeFileSync(poolingFile, JSON.stringify(config));
      await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(
        `${poolingFile}: pooling [${modes}] is unsupported; camembed implements pooling_mode_mean_tokens only`);
    }
  });

  test('a word_embedding_dimension other than the graph\'s fails the load, not every encode() after it', async () => {
    edit('1_Pooling/config.json', (c) => ({ ...c, word_embedding_dimension: 64 }));
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(`${path.join(dir, 'model.onnx')}: output last_hidden_state has ` +
      `32 values per token, but ${path.join(dir, '1_Pooling', 'config.json')}: word_embedding_dimension is 64`);
  });

  test('a graph whose output is a pooled sentence_embedding [batch, dim] fails the load, not every encode() after it', async () => {
    // Was "output sentence_embedding has shape [2, 32], expected [2, 4, 32]" at each encode(). This graph gives
    // [batch, 32] (each row: the token count, 32 times).
    const int64 = (values: number[]) => new Uint8Array(BigInt64Array.from(values, BigInt).buffer);
    fs.writeFileSync(path.join(dir, 'model.onnx'), encodeModel({
      irVersion: 8, opsets: [{ domain: '', version: 17 }], producerName: 'test', producerVersion: '1',
      graph: {
        name: 'pooled',
        nodes: [
          { opType: 'Cast', inputs: ['attention_mask'], outputs: ['mask'], attributes: { to: { i: DataType.FLOAT } } },
          { opType: 'ReduceSum', inputs: ['mask', 'axes'], outputs: ['count'], attributes: { keepdims: { i: 1 } } },
          { opType: 'Expand', inputs: ['count', 'width'], outputs: ['sentence_embedding'] },
        ],
        initializers: [{ name: 'axes', dataType: DataType.INT64, dims: [1], raw: int64([1]) },
          { name: 'width', dataType: DataType.INT64, dims: [2], raw: int64([1, 32]) }],
        inputs: ['input_ids', 'attention_mask'].map((name) => ({ name, elemType: DataType.INT64, shape: ['batch', 'tokens'] })),
        outputs: [{ name: 'sentence_embedding', elemType: DataType.FLOAT, shape: ['batch', 32] }],
      },
    }));
    await expect(Encoder.load(dir, { threads: 1 })).rejects.toThrow(new Error(`${path.join(dir, 'model.onnx')}: output sentence_embedding ` +
      'has shape [batch, 32], but camembed pools token vectors itself: it expects last_hidden_state (else the first output) of shape [batch, tokens, 32]'));
  });

  test('NaN or infinity in the model output names the text (not a row of a sorted batch) and what to do', async () => {
    // Damaged weights: the embedding of token 1011 ('b') is NaN, so a text that holds it gives NaN.
    fs.rmSync(path.join(dir, 'model.onnx'));
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
    const [start] = JSON.parse(bytes.toString('utf8', 8, headerEnd))['embeddings.word_embeddings.weight'].data_offsets;
    for (let i = 0; i < 32; i++) bytes.writeFloatLE(NaN, headerEnd + start + (1011 * 32 + i) * 4);
    fs.writeFileSync(file, bytes);
    const e = await Encoder.load(dir, { threads: 1 });
    expect(e.tokenize(['a b']).ids[0]).toContain(1011);
    await expect(e.encode([...texts, 'ok', 'a b'])).rejects.toThrow(new Error(`${path.join(dir, 'onnx', 'model.onnx')} gave NaN or ` +
      'infinite values for texts[3] ("a b"): its weights are damaged, or a float16 graph overflowed (convert the model to float32)'));
    // Calls sharing its batch get their own vectors (their rows run again without it); the error names the text
    // in the call it belongs to.
    const alone = await e.encode(['a c', 'c a']);
    const run = jest.spyOn(e['session'] as OnnxWorker, 'run');
    const [bad, good] = await Promise.allSettled([e.encode(['a b']), e.encode(['a c', 'c a'])]);
    expect(run.mock.calls.map(([feeds]) => feeds.input_ids.dims[0])).toEqual([3, 2]);
    expect(bad).toMatchObject({ status: 'rejected', reason: { message: expect.stringContaining('for texts[0] ("a b")') } });
    expect((good as PromiseFulfilledResult<Embeddings>).value).toEqual(alone);
    await e.dispose();
  });

  test('a folder without tokenizer_config.json loads, its pad token from special_tokens_map.json', async () => {
    fs.rmSync(path.join(dir, 'tokenizer_config.json'));
    const e = await Encoder.load(dir, { threads: 1 });
    const [set] = Object.values(JSON.parse(fs.readFileSync(path.join(MODEL, 'golden/index.json'), 'utf8')).sets) as GoldenSet[];
    expect(maxAbsDiff((await e.encode(set.texts.map((t) => t.raw ?? t.text))).data, readNpy(path.join(MODEL, 'golden', set.embeddings)).data)).toBeLessThan(1e-5);
    await e.dispose();
  });

  test('a pad token written as an AddedToken object', async () => {
    edit('tokenizer_config.json', (c) => ({ ...c, pad_token: { content: '<pad>', lstrip: false, rstrip: false, normalized: false, single_word: false } }));
    const e = await Encoder.load(dir, { threads: 1 });
    const [set] = Object.values(JSON.parse(fs.readFileSync(path.join(MODEL, 'golden/index.json'), 'utf8')).sets) as GoldenSet[];
    const golden = readNpy(path.join(MODEL, 'golden', set.embeddings));
    expect(maxAbsDiff((await e.encode(set.texts.map((t) => t.raw ?? t.text))).data, golden.data)).toBeLessThan(1e-5);
    await e.dispose();
  });
});

test('a CUDA device\'s ONNX Runtime provider is started on a one-node graph that ONNX Runtime runs (checked here on the CPU)', async () => {
  // On a GPU a graph ONNX Runtime refuses would fail every load on CUDA: the graph the check hands over runs y = x.
  const addon = loadAddon();
  const info = jest.spyOn(addon, 'info').mockReturnValue({ ...addon.info(), cudaCompiledIn: false });  // the device is then not checked by camembed
  const create = jest.spyOn(ort.InferenceSession, 'create').mockRejectedValue(new Error('no CUDA here'));
  try {
    await expect(checkOnnxRuntimeDevice('cuda:1', '--device')).rejects.toThrow(/^--device is 'cuda:1' but .*: no CUDA here\. .*, or set --device to 'cpu'\.$/);
    expect(create).toHaveBeenCalledTimes(1);
    const [graph, options] = create.mock.calls[0] as unknown as [Uint8Array, ort.InferenceSession.SessionOptions];
    expect(options.executionProviders).toEqual([{ name: 'cuda', deviceId: 1 }]);
    create.mockRestore();
    const session = await ort.InferenceSession.create(graph, { executionProviders: ['cpu'] });
    const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.of(2.5), [1]) });
    expect(Array.from(y.data as Float32Array)).toEqual([2.5]);
    await session.release();
  } finally {
    create.mockRestore();
    info.mockRestore();
  }
});

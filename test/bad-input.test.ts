import {
  convertToOnnx, cosineTopK, cosineTopKAsync, CudaMatrix, devices, Encoder, encodeCollection, evaluate, evaluateRetrieval, float16ToFloat32Array,
  float32ToFloat16Array, makeRandomModel, meanPoolNormalize, meanPoolNormalizeAsync, parseMetric, rankDocuments, readTextLines, readTexts, readTsv,
  reference, resolveModel, similarity, TrecRunWriter, VectorIndex,
} from '../lib';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileBindings } from '../lib/index/format';
import { loadAddon } from '../lib/native';

const hidden = new Float32Array(2 * 3 * 4).fill(0.5);
const mask = new BigInt64Array(6).fill(1n);
const shape = { batch: 2, seq: 3, hidden: 4 };
const db = new Float32Array(10 * 4).fill(0.25);
const q = new Float32Array(4).fill(1);

// [description, call, error class, text the message must contain]
type Case = [string, () => unknown, ErrorConstructor, string | RegExp];
const poolCases: Case[] = [
  ['hidden as a plain array', () => meanPoolNormalize([1, 2] as unknown as Float32Array, mask, shape), TypeError, 'hidden must be'],
  ['hidden as Float64Array', () => meanPoolNormalize(new Float64Array(24) as unknown as Float32Array, mask, shape), TypeError, 'hidden must be'],
  ['mask as Float32Array', () => meanPoolNormalize(hidden, new Float32Array(6) as unknown as Int32Array, shape), TypeError, 'mask must be'],
  ['hidden too short', () => meanPoolNormalize(hidden.subarray(1), mask, shape), RangeError, 'hidden has 23 elements'],
  ['mask too long', () => meanPoolNormalize(hidden, new BigInt64Array(7), shape), RangeError, 'mask has 7 elements'],
  ['batch 0 (empty batch)', () => meanPoolNormalize(new Float32Array(0), new Int32Array(0), { batch: 0, seq: 3, hidden: 4 }), RangeError, 'shape.batch must be >= 1'],
  ['negative seq', () => meanPoolNormalize(hidden, mask, { batch: 2, seq: -3, hidden: 4 }), RangeError, 'shape.seq'],
  ['NaN hidden size', () => meanPoolNormalize(hidden, mask, { batch: 2, seq: 3, hidden: NaN }), TypeError, 'shape.hidden must be an integer'],
  ['fractional batch', () => meanPoolNormalize(hidden, mask, { batch: 1.5, seq: 3, hidden: 4 }), TypeError, 'shape.batch must be an integer'],
  ['shape missing', () => meanPoolNormalize(hidden, mask, undefined as unknown as typeof shape), TypeError, 'shape must be an object'],
  ['dtype disagrees with the array', () => meanPoolNormalize(hidden, mask, shape, { dtype: 'float16' }), TypeError, "options.dtype is 'float16'"],
  ['unknown dtype', () => meanPoolNormalize(hidden, mask, shape, { dtype: 'int8' as 'float16' }), TypeError, 'options.dtype must be'],
  ['normalize not boolean', () => meanPoolNormalize(hidden, mask, shape, { normalize: 1 as unknown as boolean }), TypeError, 'options.normalize'],
  // @ts-expect-error: a device name the type refuses too (plain JavaScript gets the TypeError)
  ['bad device', () => meanPoolNormalize(hidden, mask, shape, { device: 'gpu' }), TypeError, 'options.device'],
  ['NaN in hidden states', () => meanPoolNormalize(new Float32Array(24).fill(NaN), mask, shape), RangeError, 'NaN or infinite'],
  // The docs' own spelling (normalised) is a few edits from the option's: it is suggested, as the CLI suggests a flag.
  ['a misspelt option', () => meanPoolNormalize(hidden, mask, shape, { normalise: false } as object), TypeError,
    'options.normalise is not known (did you mean normalize?): expected normalize, dtype, device, threads'],
  ['a misspelt shape member', () => meanPoolNormalize(hidden, mask, { ...shape, seqLen: 3 } as typeof shape), TypeError, 'shape.seqLen is not known'],
];
const topkCases: Case[] = [
  ['queries as Float64Array', () => cosineTopK(new Float64Array(4) as unknown as Float32Array, db, { dim: 4, k: 1 }), TypeError, 'queries must be'],
  ['database as Int32Array', () => cosineTopK(q, new Int32Array(40) as unknown as Float32Array, { dim: 4, k: 1 }), TypeError, 'database must be'],
  ['k = 0', () => cosineTopK(q, db, { dim: 4, k: 0 }), RangeError, 'options.k must be >= 1'],
  ['k negative', () => cosineTopK(q, db, { dim: 4, k: -2 }), RangeError, 'options.k'],
  ['k fractional', () => cosineTopK(q, db, { dim: 4, k: 2.5 }), TypeError, 'options.k must be an integer'],
  ['dim mismatch (queries)', () => cosineTopK(new Float32Array(5), db, { dim: 4, k: 1 }), RangeError, 'queries has 5 elements'],
  ['dim mismatch (database)', () => cosineTopK(q, new Float32Array(42), { dim: 4, k: 1 }), RangeError, 'database has 42 elements'],
  ['empty queries', () => cosineTopK(new Float32Array(0), db, { dim: 4, k: 1 }), RangeError, 'queries has 0 elements'],
  ['empty database', () => cosineTopK(q, new Float32Array(0), { dim: 4, k: 1 }), RangeError, 'database has 0 elements'],
  ['dim NaN', () => cosineTopK(q, db, { dim: NaN, k: 1 }), TypeError, 'options.dim'],
  ['options missing', () => cosineTopK(q, db, undefined as unknown as { dim: number; k: number }), TypeError, 'options must be an object'],
  ['NaN in the database', () => cosineTopK(q, new Float32Array(40).fill(NaN), { dim: 4, k: 1 }), Error, 'NaN'],
  // 70,000 x 70,000 results: past a typed array's 2^32 values (it was 'Invalid typed array length: 4900000000').
  ['results too many', () => cosineTopK(new Float32Array(70000).fill(1), new Float32Array(70000).fill(1), { dim: 1, k: 70000 }), RangeError,
    /^70000 queries x k = 70000 would be 4900000000 results, more than a result holds \(2\^32\): lower options.k, or search the queries in batches$/],
  ['threads 0', () => cosineTopK(q, db, { dim: 4, k: 1, threads: 0 }), RangeError, 'options.threads'],
  ['threads too many', () => cosineTopK(q, db, { dim: 4, k: 1, threads: 100000 }), RangeError, 'options.threads must be <= 1024'],
  ['an option in the wrong case', () => cosineTopK(q, db, { dim: 4, k: 1, Normalized: true } as { dim: number; k: number }), TypeError,
    'options.Normalized is not known (did you mean normalized?)'],
];
// NaN or infinity gave a matrix of NaN without a word; cosineTopK refuses them too.
const similarityCases: Case[] = [
  ['similarity with NaN in b', () => similarity({ data: Float32Array.of(0, 0, 0, 1), rows: 1, dim: 4 },
    { data: Float32Array.of(1, 0, 0, 0, 0, NaN, 0, 0), rows: 2, dim: 4 }), RangeError, /^b\.data row 1 contains NaN or infinite values$/],
  ['similarity with infinity in a', () => similarity({ data: Float32Array.of(1, 2, 3, 4, 0, 0, -Infinity, 0), rows: 2, dim: 4 },
    { data: Float32Array.of(0, 0, 0, 1), rows: 1, dim: 4 }), RangeError, /^a\.data row 1 contains NaN or infinite values$/],
];

// Wrong types on the public entry points: [description, call, error class, text the message must contain].
// Sync calls throw; async ones reject, before any file is read or written (missing paths show that).
const any = <T>(value: unknown) => value as T;
const embeddings = { data: new Float32Array(4), rows: 1, dim: 4 };
const tall = { data: new Float32Array(70000), rows: 70000, dim: 1 };
const typeCases: Case[] = [
  ['dtype a bigint', () => meanPoolNormalize(hidden, mask, shape, { dtype: any(1n) }), TypeError, "options.dtype must be 'float32' or 'float16', got 1n"],
  ['device a bigint', () => cosineTopK(q, db, { dim: 4, k: 1, device: any(1n) }), TypeError, "options.device must be 'cpu', 'cuda' or 'cuda:<index>', got 1n"],
  ['device a function', () => cosineTopK(q, db, { dim: 4, k: 1, device: any(() => 'cuda') }), TypeError, "'cuda:<index>', got function"],
  // One name per device, for every part of the API: 'cuda:00' and 'cuda:01' were devices 0 and 1.
  ['device cuda:00', () => cosineTopK(q, db, { dim: 4, k: 1, device: any('cuda:00') }), TypeError, /^options.device must be written 'cuda:0', got "cuda:00"$/],
  ['VectorIndex device cuda:01', () => new VectorIndex({ dim: 4, device: any('cuda:01') }), TypeError, /^options.device must be written 'cuda:1', got "cuda:01"$/],
  ['CudaMatrix device cuda:007', () => CudaMatrix.create(db, { rows: 10, dim: 4, device: any('cuda:007') }), TypeError, "must be written 'cuda:7'"],
  ['device past a C int', () => cosineTopK(q, db, { dim: 4, k: 1, device: any('cuda:4294967296') }), RangeError,
    /^options.device is "cuda:4294967296", past any CUDA device index \(at most 2147483647\)$/],
  ['VectorIndex dtype a symbol', () => new VectorIndex({ dim: 4, dtype: any(Symbol('f')) }), TypeError, "options.dtype must be 'float32' or 'float16', got symbol"],
  ['VectorIndex device a bigint', () => new VectorIndex({ dim: 4, device: any(0n) }), TypeError, 'options.device must be'],
  ['CudaMatrix device NaN (no cuda:NaN advice)', () => CudaMatrix.create(db, { rows: 10, dim: 4, device: any(NaN) }), TypeError,
    /^options.device must be 'cuda' or 'cuda:<index>', got the number NaN$/],
  ['CudaMatrix device a bigint', () => CudaMatrix.create(db, { rows: 10, dim: 4, device: any(0n) }), TypeError, 'got 0n'],
  // A bigint k (ids are bigints, so 10n comes easily) is shown as written, not as 'bigint'.
  ['k a bigint', () => cosineTopK(q, db, { dim: 4, k: any(10n) }), TypeError, /^options.k must be an integer, got 10n$/],
  ['float32ToFloat16Array(null)', () => float32ToFloat16Array(any(null)), TypeError, 'src must be a Float32Array, got null'],
  ['float32ToFloat16Array of a string', () => float32ToFloat16Array(any('abc')), TypeError, 'src must be a Float32Array, got string'],
  ['float16ToFloat32Array of a Float32Array', () => float16ToFloat32Array(any(new Float32Array(2))), TypeError, 'src must be a Uint16Array or Float16Array, got Float32Array'],
  ['similarity(null)', () => similarity(any(null), embeddings), TypeError, 'a must be { data, rows, dim } (what encode() returns), got null'],
  ['similarity of bare Float32Arrays', () => similarity(embeddings, any(new Float32Array(4))), TypeError,
    /^b must be \{ data, rows, dim \} \(what encode\(\) returns\), got Float32Array$/],
  ['similarity rows negative', () => similarity({ data: new Float32Array(4), rows: -2, dim: -2 }, embeddings), RangeError, 'a.rows must be >= 0, got -2'],
  ['similarity data a plain array', () => similarity(embeddings, { ...embeddings, data: any([0, 0, 0, 1]) }), TypeError, 'b.data must be a Float32Array, got Array'],
  // 70,000 x 70,000 cosines: past a Float32Array's 2^32 values (it was 'Invalid typed array length: 4900000000').
  ['similarity too large a result', () => similarity(tall, tall),
    RangeError, /^similarity\(\) of 70000 x 70000 rows would be 4900000000 cosines, more than a result holds \(2\^32\): .* VectorIndex or cosineTopK/],
  ['rankDocuments(null)', () => rankDocuments(any(null)), TypeError, 'scores must be an object { [docid]: number }, got null'],
  ['rankDocuments of a string', () => rankDocuments(any('ab')), TypeError, 'scores must be an object { [docid]: number }, got string'],
  ['rankDocuments with a NaN score', () => rankDocuments({ a: 1, b: NaN }), TypeError, 'scores["b"] must be a finite number (score), got NaN'],
  ['parseMetric(null)', () => parseMetric(null), TypeError, 'metric names must be strings, got null'],
  ['evaluate metrics a string', () => evaluate({}, { q: { d: 1 } }, any('MRR@10')), TypeError, 'got "MRR@10"'],
  ['evaluate minRelevance an array', () => evaluate({}, { q: { d: 1 } }, undefined, { minRelevance: any([1]) }), TypeError,
    'options.minRelevance must be a number, got Array'],
  // The line readers are generators: their checks run at the call, not at the first next().
  ['readTsv startOffset a string', () => readTsv(none, { startOffset: any('5') }), TypeError, 'options.startOffset must be an integer, got "5"'],
  ['readTsv file a bigint', () => readTsv(any(1n)), TypeError, 'file must be a non-empty string, got 1n'],
  ['readTsv options a string', () => readTsv(none, any('5')), TypeError, 'options must be an object, got string'],
  ['readTsv from standard input at an offset', () => readTsv('-', { startOffset: 8 }), RangeError, 'standard input is not a regular file'],
  ['readTextLines file a number', () => readTextLines(any(5)), TypeError, "file must be a non-empty path string (or '-'), got 5"],
  ['readTextLines from.line negative', () => readTextLines(none, { offset: 0, line: -1 }), RangeError, 'from.line must be >= 0, got -1'],
  ['readTextLines from a misspelt member', () => readTextLines(none, any({ offset: 0, lines: 1 })), TypeError, 'from.lines is not known'],
  ['readTexts file empty', () => readTexts(''), TypeError, `file must be a non-empty path string (or '-'), got ""`],
];
const none = '/nonexistent-camembed';
const files = { model: none, collection: `${none}/c.tsv`, queries: `${none}/q.tsv`, qrels: `${none}/r.txt` };
type Options<F extends (...args: never[]) => unknown> = Parameters<F>[0];
const retrieval = (options: object) => evaluateRetrieval({ ...files, ...options } as Options<typeof evaluateRetrieval>);
const collectionWith = (identity: object) => encodeCollection(any({ collection: none, cacheDir: none, identity, encoder: { encodeStream() {} } }));
const randomModel = (options: object) => makeRandomModel({ layers: 1, hidden: 8, heads: 2, intermediate: 8, tokenizerDir: none, outDir: none, ...options });
const asyncTypeCases: Case[] = [
  ['Encoder.load maxLength a string', () => Encoder.load(none, { maxLength: any('128') }), TypeError, 'options.maxLength must be an integer, got "128"'],
  ['Encoder.load maxBatchTokens 0', () => Encoder.load(none, { maxBatchTokens: 0 }), RangeError, 'options.maxBatchTokens must be between maxLength (one text must fit)'],
  ['Encoder.load cacheDir empty', () => Encoder.load(none, { cacheDir: '' }), TypeError, 'options.cacheDir must be a non-empty string, got ""'],
  ['resolveModel source a bigint', () => resolveModel(any(1n)), TypeError, "source must be a model folder or a Hub id 'org/name', got 1n"],
  // An empty environment variable (MODEL_DIR= in a .env file): the message shows "", not "got string".
  ['Encoder.load source empty', () => Encoder.load(''), TypeError, `source must be a model folder or a Hub id 'org/name', got ""`],
  ['convertToOnnx output a number', () => convertToOnnx(none, { output: any(5) }), TypeError, 'options.output must be a non-empty string, got 5'],
  ['convertToOnnx dtype unknown', () => convertToOnnx(none, { dtype: any('int8') }), TypeError, "options.dtype must be 'float32' or 'float16', got \"int8\""],
  ['convertToOnnx graph a bigint', () => convertToOnnx(none, { graph: any(1n) }), TypeError, "options.graph must be 'fused' or 'plain', got 1n"],
  ['makeRandomModel layers NaN', () => randomModel({ layers: NaN }), TypeError, 'options.layers must be an integer, got NaN'],
  ['makeRandomModel seed a string', () => randomModel({ seed: '1' }), TypeError, 'options.seed must be an integer, got "1"'],
  ['makeRandomModel tokenizerDir a number', () => randomModel({ tokenizerDir: 5 }), TypeError, 'options.tokenizerDir must be a non-empty string, got 5'],
  ['makeRandomModel outDir empty', () => randomModel({ outDir: '' }), TypeError, 'options.outDir must be a non-empty string, got ""'],
  ['TrecRunWriter tag a bigint', () => TrecRunWriter.open(`${none}/run`, { tag: any(1n) }), TypeError, 'options.tag must be a non-empty string without whitespace or control characters, got 1n'],
  ['encodeCollection collection a number', () => encodeCollection(any({ collection: 5, cacheDir: none, identity: {}, encoder: {} })), TypeError,
    'options.collection must be a non-empty string, got 5'],
  // The identity is hashed and stored as JSON: checked before the collection is looked at (it does not exist here).
  ['encodeCollection identity with a bigint', () => collectionWith({ model: { revision: 1n } }), TypeError,
    'options.identity.model.revision must be JSON data (objects, arrays, strings, finite numbers, booleans, null), got 1n'],
  ['encodeCollection identity with a symbol', () => collectionWith({ tags: ['a', Symbol('b')] }), TypeError, 'options.identity.tags[1] must be JSON data'],
  ['encodeCollection identity with a function', () => collectionWith({ 'max-length': () => 128 }), TypeError,
    'options.identity["max-length"] must be JSON data (objects, arrays, strings, finite numbers, booleans, null), got function'],
  ['encodeCollection identity with NaN', () => collectionWith({ maxLength: NaN }), TypeError, 'options.identity.maxLength must be JSON data'],
  ['encodeCollection identity with a Map', () => collectionWith({ settings: new Map([['a', 1]]) }), TypeError,
    'options.identity.settings must be JSON data (objects, arrays, strings, finite numbers, booleans, null), got Map'],
  ['encodeCollection identity a cycle', () => {
    const identity: Record<string, unknown> = { a: {} };
    (identity.a as Record<string, unknown>).up = identity;
    return collectionWith(identity);
  }, TypeError, 'options.identity.a.up contains itself (a cycle), which JSON cannot hold'],
  ['encodeCollection chunkRows a string', () => encodeCollection(any({ collection: none, cacheDir: none, identity: {}, encoder: { encodeStream() {} }, chunkRows: '8' })),
    TypeError, 'options.chunkRows must be an integer, got "8"'],
  ['evaluateRetrieval model a number', () => retrieval({ model: 5 }), TypeError, 'options.model must be a non-empty string, got 5'],
  ['evaluateRetrieval collection a number', () => retrieval({ collection: 5 }), TypeError, 'options.collection must be a non-empty string, got 5'],
  ['evaluateRetrieval k a string', () => retrieval({ k: '10' }), TypeError, 'options.k must be an integer, got "10"'],
  ['evaluateRetrieval k below a cutoff', () => retrieval({ k: 5, metrics: ['MRR@10'] }), RangeError, 'options.k (5) must be at least the largest metric cutoff (10)'],
  ['evaluateRetrieval dtype unknown', () => retrieval({ dtype: 'int8' }), TypeError, "options.dtype must be 'float32' or 'float16', got \"int8\""],
  ['evaluateRetrieval device a bigint', () => retrieval({ device: 1n }), TypeError, 'options.device must be'],
  ['evaluateRetrieval chunkRows null', () => retrieval({ chunkRows: null }), TypeError, 'options.chunkRows must be an integer, got null'],
  ['evaluateRetrieval runFile NaN', () => retrieval({ runFile: NaN }), TypeError, 'options.runFile must be a non-empty string, got NaN'],
  ['evaluateRetrieval runTag a number', () => retrieval({ runTag: 7 }), TypeError, 'options.runTag must be a non-empty string without whitespace or control characters, got 7'],
  // Checked before any file is read or the model loaded, under its own name (TrecRunWriter's is options.tag).
  ['evaluateRetrieval runTag with a space', () => retrieval({ runTag: 'my run' }), TypeError,
    'options.runTag must be a non-empty string without whitespace or control characters, got "my run"'],
  ['evaluateRetrieval runTag without runFile', () => retrieval({ runTag: 'mine' }), TypeError, 'options.runTag names the run in options.runFile, which is not given'],
  ['evaluateRetrieval progress a string', () => retrieval({ progress: 'yes' }), TypeError, 'options.progress must be a boolean, got string'],
  ['evaluateRetrieval onEncodeProgress a number', () => retrieval({ onEncodeProgress: 5 }), TypeError, 'options.onEncodeProgress must be a function, got number'],
  ['evaluateRetrieval metrics a bigint', () => retrieval({ metrics: 1n }), TypeError, 'options.metrics must be a non-empty array of metric names such as'],
];

describe('a value of the wrong type is a clear error naming the option', () => {
  test.each(typeCases)('%s', (_name, call, kind, text) => {
    expect(call).toThrow(kind);
    expect(call).toThrow(text);
  });

  test.each(asyncTypeCases)('%s (rejects)', async (_name, call, kind, text) => {
    const settled = call() as Promise<unknown>;
    await expect(settled).rejects.toThrow(kind);
    await expect(settled).rejects.toThrow(text);
  });

  test('nothing is written: encodeCollection checks its encoder and identity before making its cache folder, TrecRunWriter its tag before its file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-types-'));
    try {
      const collection = path.join(dir, 'c.tsv');
      fs.writeFileSync(collection, 'p1\tun texte\n');
      const cacheDir = path.join(dir, 'cache');
      const run = (options: object) => encodeCollection({ collection, cacheDir, identity: {}, encoder: any(undefined), ...options });
      await expect(run({ encoder: {} })).rejects.toThrow(new TypeError('options.encoder.encodeStream must be a function (pass an Encoder), got undefined'));
      await expect(run({ encoder: null })).rejects.toThrow(new TypeError('options.encoder must be an object, got null'));
      await expect(run({ identity: 'model-a', encoder: { encodeStream() {} } })).rejects.toThrow(new TypeError('options.identity must be an object, got string'));
      await expect(run({ cacheDir: 5, encoder: { encodeStream() {} } })).rejects.toThrow(new TypeError('options.cacheDir must be a non-empty string, got 5'));
      await expect(run({ identity: { model: 1n }, encoder: { encodeStream() {} } })).rejects.toThrow(new TypeError(
        'options.identity.model must be JSON data (objects, arrays, strings, finite numbers, booleans, null), got 1n'));
      // JSON.stringify would drop the function: a cache key that ignores it.
      await expect(run({ identity: { tokenize: () => [] }, encoder: { encodeStream() {} } })).rejects.toThrow('options.identity.tokenize must be JSON data');
      expect(fs.existsSync(cacheDir)).toBe(false);
      await expect(TrecRunWriter.open(path.join(dir, 'run'), { tag: any(null) }))
        .rejects.toThrow(new TypeError('options.tag must be a non-empty string without whitespace or control characters, got null'));
      expect(fs.readdirSync(dir)).toEqual(['c.tsv']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bad input throws a clear error naming the argument', () => {
  test.each([...poolCases, ...topkCases, ...similarityCases])('%s', (_name, call, kind, text) => {
    expect(call).toThrow(kind);
    expect(call).toThrow(text);
  });

  test('similarity: finite values at the ends of the float32 range are still cosines', () => {
    const big = { data: Float32Array.of(3e38, 3e38, -3e38, 1e-45), rows: 2, dim: 2 };
    const s = similarity(big, { data: Float32Array.of(1, 1), rows: 1, dim: 2 });
    expect(Array.from(s.data)).toEqual([1, Math.fround(-Math.SQRT1_2)]);
  });

  test('a misspelt option is a TypeError naming it on every entry point, before any work (members set to undefined pass)', async () => {
    const index = new VectorIndex({ dim: 4, dtype: undefined });
    index.add(db);
    const misspelt: [() => unknown, string][] = [
      [() => new VectorIndex({ dim: 4, chunkSize: 1024 } as { dim: number }), 'options.chunkSize is not known'],
      [() => index.search(q, { k: 1, topK: 5 } as { k: number }), 'options.topK is not known'],
      [() => index.neighbors({ k: 1, batchsize: 8 } as { k: number }), 'options.batchsize is not known (did you mean batchSize?)'],
      [() => VectorIndex.load('/nonexistent.cmbd', { mmaped: true } as object), 'options.mmaped is not known (did you mean mmap?)'],
      [() => CudaMatrix.create(db, { rows: 10, dim: 4, storage: 'float16' } as { rows: number; dim: number }), 'options.storage is not known: expected rows, dim, dtype, device'],
      [() => Encoder.load('/nonexistent-model', { batchsize: 8 } as object), 'options.batchsize is not known (did you mean batchSize?)'],
      [() => evaluate({}, { q: { d: 1 } }, ['MRR@10'], { perquery: true } as object), 'options.perquery is not known (did you mean perQuery?)'],
      [() => resolveModel('org/name', { offLine: true } as object), 'options.offLine is not known (did you mean offline?)'],
      [() => convertToOnnx('/nonexistent-model', { out: 'x.onnx' } as object), 'options.out is not known'],
      [() => makeRandomModel({ layers: 1, hidden: 8, heads: 2, intermediate: 8, tokenizerDir: 't', outDir: 'o', maxPosition: 8 } as unknown as
        Parameters<typeof makeRandomModel>[0]), 'options.maxPosition is not known'],
      [() => evaluateRetrieval({ model: 'm', collection: 'c', queries: 'q', qrels: 'r', topK: 10 } as unknown as Parameters<typeof evaluateRetrieval>[0]),
        'options.topK is not known'],
    ];
    for (const [call, text] of misspelt) {
      // A rejected promise or a throw, both a TypeError with that text.
      await expect((async () => call())()).rejects.toThrow(TypeError);
      await expect((async () => call())()).rejects.toThrow(text);
    }
    expect((await index.search(q, { k: 1 })).k).toBe(1);
  });

  test('a number where options holding k go shows the object form; other options do not suggest k', async () => {
    const index = new VectorIndex({ dim: 4 });
    index.add(db);
    const hint = 'options must be an object such as { k: 10 }, got number 10';
    const calls: [() => unknown, string][] = [
      [() => index.search(q, any(10)), hint],
      [() => index.search(q, any(3)), 'options must be an object such as { k: 3 }, got number 3'],  // the k given
      [() => index.neighbors(any(10)), hint],
      [() => cosineTopK(q, db, any(10)), hint],
      [() => cosineTopKAsync(q, db, any(10)), hint],
      [() => index.save('/nonexistent/x.cmbd', any(10)), 'options must be an object, got number 10'],
      [() => evaluate({}, { q: { d: 1 } }, ['MRR@10'], any(10)), 'options must be an object, got number 10'],
    ];
    for (const [call, text] of calls) await expect((async () => call())()).rejects.toThrow(new TypeError(text));
  });

  test('resolveModel and encodeCollection check their options\' types before any work', async () => {
    const wrong: [object, string, ErrorConstructor?][] = [
      [{ onProgress: 5 }, 'options.onProgress must be a function, got number'],
      [{ token: 5 }, 'options.token must be a string, got number'],
      [{ cacheDir: ['/tmp'] }, 'options.cacheDir must be a non-empty string, got Array'],
      [{ cacheDir: '' }, 'options.cacheDir must be a non-empty string, got ""'],  // not the current folder as the Hub cache
      [{ endpoint: new URL('https://example.com') }, 'options.endpoint must be a non-empty string, got'],
      [{ endpoint: '', offline: false }, 'options.endpoint must be a non-empty string, got ""'],
      [{ revision: 1 }, 'options.revision must be a string, got number'],
      [{ offline: 'yes' }, 'options.offline must be a boolean, got string'],
      [{ retries: -1 }, 'options.retries must be >= 0, got -1', RangeError],
      [{ retries: 1.5 }, 'options.retries must be an integer, got 1.5'],
      [{ retryDelayMs: NaN }, 'options.retryDelayMs must be >= 0 and finite, got NaN', RangeError],
      [{ retryDelayMs: -1 }, 'options.retryDelayMs must be >= 0 and finite, got -1', RangeError],
      [{ retryDelayMs: '5' }, 'options.retryDelayMs must be a number of milliseconds, got string'],
    ];
    for (const [options, text, kind = TypeError] of wrong) {
      // No network: a check made only once a download began would fail otherwise (no endpoint answers).
      await expect(resolveModel('org/name', { ...options, offline: (options as { offline?: boolean }).offline ?? true }))
        .rejects.toMatchObject({ name: kind.name, message: expect.stringContaining(text) });
    }
    await expect(encodeCollection({ collection: '/nonexistent.tsv', cacheDir: '/nonexistent', identity: {}, encoder: { encodeStream() {} },
      onProgress: {} } as unknown as Parameters<typeof encodeCollection>[0]))
      .rejects.toMatchObject({ name: 'TypeError', message: expect.stringContaining('options.onProgress must be a function, got') });
  });

  test('Encoder.load passes revision to the Hub and refuses it for a folder (it would be dropped)', async () => {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-revision-'));
    try {
      await expect(Encoder.load(cacheDir, { revision: 'v1.0' })).rejects.toThrow(new TypeError(`options.revision is for Hub ids, but ${cacheDir} is a folder here`));
      await expect(Encoder.load('org/absent', { revision: 'v2.0', offline: true, cacheDir }))
        .rejects.toThrow(/org\/absent at revision 'v2\.0' is not in the Hugging Face cache/);
    } finally {
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test('the reference path validates the same way', () => {
    expect(() => reference.cosineTopK(q, db, { dim: 4, k: 0 })).toThrow(RangeError);
    expect(() => reference.meanPoolNormalize(hidden.subarray(1), mask, shape)).toThrow('hidden has 23 elements');
    // NaN and infinity are errors there too (they gave NaN vectors and an unsorted top k), as native ones.
    const badStates = hidden.slice();
    badStates[13] = NaN;  // batch row 1
    for (const pool of [meanPoolNormalize, reference.meanPoolNormalize]) {
      expect(() => pool(badStates, mask, shape)).toThrow(new RangeError('hidden contains NaN or infinite values (batch row 1)'));
    }
    const badRows = db.slice();
    badRows[14] = -Infinity;  // row 3
    const badHalves = float32ToFloat16Array(db);
    badHalves[29] = 0xfe01;  // a NaN in row 7
    for (const normalized of [false, true]) {
      expect(() => reference.cosineTopK(q, badRows, { dim: 4, k: 2, normalized })).toThrow(new RangeError('database row 3 contains NaN or infinite values'));
      expect(() => reference.cosineTopK(q, badHalves, { dim: 4, k: 2, normalized })).toThrow(new RangeError('database row 7 contains NaN or infinite values'));
      expect(() => cosineTopK(q, badRows, { dim: 4, k: 2, normalized })).toThrow(new RangeError('database row 3 contains NaN or infinite values'));
      expect(() => cosineTopK(q, badHalves, { dim: 4, k: 2, normalized })).toThrow(new RangeError('database row 7 contains NaN or infinite values'));
    }
  });

  test('async twins reject instead of throwing later', async () => {
    await expect(meanPoolNormalizeAsync(hidden, mask, { batch: 3, seq: 3, hidden: 4 })).rejects.toThrow(RangeError);
    await expect(cosineTopKAsync(q, new Float32Array(40).fill(NaN), { dim: 4, k: 1 })).rejects.toThrow('NaN');
  });

  test("device 'cuda' without a GPU says why", () => {
    if (devices().cuda.length > 0) {
      console.log('skipped: this machine has a CUDA device, so the no-GPU error cannot be observed');
      return;
    }
    expect(() => meanPoolNormalize(hidden, mask, shape, { device: 'cuda' })).toThrow(/no CUDA device is available: .+/);
  });

  test('the raw addon rejects malformed arguments without crashing', () => {
    const addon = loadAddon();
    const good = { queries: q, numQueries: 1, segments: [{ rows: db, numRows: 10 }], databaseType: 'float32', dim: 4, k: 1,
      normalized: false, outIndices: new Int32Array(1), outScores: new Float32Array(1), threads: 0 };
    expect(() => addon.cosineTopK({ ...good, segments: [{ rows: db, numRows: 1000 }] } as never, false)).toThrow('shorter than its shape');
    expect(() => addon.cosineTopK({ ...good, segments: db } as never, false)).toThrow("'segments' must be an array");
    expect(() => addon.cosineTopK({ ...good, dim: 2 ** 62 } as never, false)).toThrow('up to 2^53');
    expect(() => addon.cosineTopK({ ...good, numQueries: 2 ** 40, dim: 2 ** 40 } as never, false)).toThrow('too large');
    expect(() => addon.cosineTopK({ ...good, segments: [{ rows: db, numRows: 10, ids: new Int32Array(10) }] } as never, false))
      .toThrow('wrong typed-array type');
    expect(() => addon.cosineTopK({ ...good, segments: [{ rows: db, numRows: 10, ids: new BigInt64Array(9) }] } as never, false))
      .toThrow('shorter than its shape');
    expect(() => addon.cosineTopK({ ...good, queries: new Uint8Array(16) } as never, false)).toThrow('wrong typed-array type');
    expect(() => addon.cosineTopK({ ...good, k: -1 } as never, false)).toThrow('non-negative integer');
    expect(() => addon.cosineTopK({ ...good, k: 11, outIndices: new Int32Array(11), outScores: new Float32Array(11) } as never, false))
      .toThrow('invalid shape');
    // threads and device were cut to an int32: 2^32 + 1 threads ran as 1, 2^31 as all cores, and a
    // missing or NaN device pooled on CUDA device 0 instead of the CPU.
    for (const threads of [2 ** 32 + 1, 2 ** 31, 1025]) {
      expect(() => addon.cosineTopK({ ...good, threads } as never, false)).toThrow("native: 'threads' must be at most 1024");
    }
    const pool = { hidden: new Float32Array(8), hiddenType: 'float32', mask: new Uint8Array(2), maskType: 'uint8', batch: 1, seq: 2,
      hiddenSize: 4, normalize: true, out: new Float32Array(4), threads: 0, device: -1 };
    addon.meanPoolNormalize(pool as never, false);
    expect(() => addon.meanPoolNormalize({ ...pool, batch: 0, seq: 2 ** 40, hiddenSize: 2 ** 40 } as never, false))
      .toThrow("native: the shape given for 'hidden' is too large");
    expect(() => addon.meanPoolNormalize({ ...pool, threads: 2 ** 32 } as never, false)).toThrow("native: 'threads' must be at most 1024");
    for (const device of [undefined, NaN, 0.5, -2, 2 ** 31, '0']) {
      expect(() => addon.meanPoolNormalize({ ...pool, device } as never, false)).toThrow("native: 'device' must be -1 (CPU) or a CUDA device index");
    }
    const cuda = addon as unknown as { cudaMatrixCreate?: (opts: object) => unknown };
    if (cuda.cudaMatrixCreate !== undefined) {  // CUDA compiled in (a GPU or not): 2^32 was device 0
      expect(() => cuda.cudaMatrixCreate!({ rows: 1, dim: 4, storage: 'float32', device: 2 ** 32 }))
        .toThrow("native: 'device' must be -1 (CPU) or a CUDA device index");
    }
    addon.cosineTopK(good as never, false);
    expect(good.outIndices[0]).toBe(0);  // all rows tie: the lowest index wins
    const f32 = new Float32Array(8);
    expect(() => addon.float32ToFloat16({ input: new Uint16Array(8), output: new Uint16Array(8) } as never)).toThrow('wrong typed-array type');
    expect(() => addon.float32ToFloat16({ input: f32, output: new Int16Array(8) } as never)).toThrow('wrong typed-array type');
    expect(() => addon.float32ToFloat16({ input: f32, output: new Uint16Array(7) })).toThrow('shorter than its shape');
    expect(() => addon.float32ToFloat16({ input: 'x' } as never)).toThrow("'input' must be a Float32Array");
    const unit = (args: object) => () => addon.unitRows(args as never);
    expect(unit({ input: f32, output: new Float32Array(8), dim: 0 })).toThrow("whole rows of 'dim' values");
    expect(unit({ input: f32, output: new Float32Array(8), dim: 3 })).toThrow("whole rows of 'dim' values");
    expect(unit({ input: f32, output: new Float32Array(8), dim: 1.5 })).toThrow('non-negative integer');
    expect(unit({ input: f32, output: new Float32Array(8), dim: -4 })).toThrow('non-negative integer');
    expect(unit({ input: f32, output: new Float32Array(7), dim: 4 })).toThrow('shorter than its shape');
    expect(unit({ input: f32, output: new Uint16Array(7), dim: 4 })).toThrow('shorter than its shape');
    expect(unit({ input: f32, output: new Int32Array(8), dim: 4 })).toThrow('wrong typed-array type');
    expect(unit({ input: new Float64Array(8), output: new Float32Array(8), dim: 4 })).toThrow('wrong typed-array type');
    expect(unit({ output: new Float32Array(8), dim: 4 })).toThrow("'input' must be a Float32Array");
    const out16 = new Uint16Array(8);
    expect(addon.unitRows({ input: Float32Array.of(3, 4, 0, 0, 0, 0, 0, 0), output: out16, dim: 4 })).toBe(-1);
    expect(Array.from(out16.subarray(0, 2))).toEqual([0x38cd, 0x3a66]);  // 0.6 and 0.8 as float16
    // The checksum and the load's norm check (one kernel): a state or rows it cannot take.
    const update = (args: object) => () => fileBindings().checksumUpdate(args as never, false);
    const state = () => new BigUint64Array(9);
    const rows = { dtype: 'float32', dim: 4, maxSumSquares: 1, result: new Float64Array(2) };
    const bytes = new Uint8Array(f32.buffer);
    update({ state: state(), bytes, rows })();
    expect(update({ state: new BigUint64Array(8), bytes })).toThrow('shorter than its shape');
    expect(update({ state: new BigInt64Array(9), bytes })).toThrow('wrong typed-array type');
    expect(update({ state: BigUint64Array.of(0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 32n), bytes })).toThrow("native: 'state' is not a checksum state (more than 31 pending bytes)");
    expect(update({ state: state(), bytes: f32 })).toThrow('wrong typed-array type');
    expect(update({ state: state(), bytes: undefined })).toThrow("native: 'bytes' must be a Uint8Array");
    expect(update({ state: state(), bytes, rows: 5 })).toThrow("native: 'rows' must be an object");
    expect(update({ state: state(), bytes, rows: { ...rows, dtype: 'int8' } })).toThrow("native: 'dtype' must be 'float32' or 'float16'");
    expect(update({ state: state(), bytes, rows: { ...rows, dim: 3 } })).toThrow("whole rows of 'dim' values");
    expect(update({ state: state(), bytes, rows: { ...rows, dim: 0 } })).toThrow("whole rows of 'dim' values");
    expect(update({ state: state(), bytes: bytes.subarray(2, 18), rows: { ...rows, dim: 2 } })).toThrow("native: 'bytes' of float32 rows must start at a multiple of 4");
    expect(update({ state: state(), bytes, rows: { ...rows, maxSumSquares: '1' } })).toThrow("'maxSumSquares' must be a number");
    expect(update({ state: state(), bytes, rows: { ...rows, result: new Float64Array(1) } })).toThrow('shorter than its shape');
    expect(update({ state: state(), bytes, rows: { ...rows, result: new Float32Array(4) } })).toThrow('wrong typed-array type');
  });

  test('the raw addon refuses to map bytes past the end of a file (reading them would end the process with SIGBUS)', () => {
    const addon = loadAddon() as unknown as { mapFileRange(fd: number, offset: number, length: number): ArrayBuffer; releaseMapping(b: ArrayBuffer): void };
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-map-')), 'small');
    fs.writeFileSync(file, Buffer.alloc(10, 7));
    const fd = fs.openSync(file, 'r');
    try {
      const whole = addon.mapFileRange(fd, 0, 10);
      expect(Array.from(new Uint8Array(whole))).toEqual(new Array(10).fill(7));
      addon.releaseMapping(whole);
      expect(() => addon.mapFileRange(fd, 0, 65536)).toThrow('native: mapFileRange: bytes 0 to 65536 are past the end of the file (10 bytes)');
      expect(() => addon.mapFileRange(fd, 5, 6)).toThrow('native: mapFileRange: bytes 5 to 11 are past the end of the file (10 bytes)');
    } finally {
      fs.closeSync(fd);
      fs.rmSync(path.dirname(file), { recursive: true });
    }
  });

  test('an allocation failure in a synchronous binding (unitRows) is a JS error, not an abort', () => {
    const script = path.join(__dirname, 'helpers', 'unit-rows-oom.js');
    const native = path.resolve(__dirname, '..', 'dist', 'native.js');
    const out = execFileSync(process.execPath, [script, native], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    expect(out.trim()).toBe('out of memory: the kernel could not allocate its working memory');
  });

  test('releaseMapping refuses to unmap storage that an async kernel is reading (it was a SIGSEGV)', () => {
    const script = path.join(__dirname, 'helpers', 'release-during-kernel.js');
    const native = path.resolve(__dirname, '..', 'dist', 'native.js');
    const out = execFileSync(process.execPath, [script, native], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    expect(out.trim().split('\n')).toEqual([
      'native: releaseMapping: the buffer is in use by a kernel (wait for its promise)', 'search done: 0 1 2', 'released after: 0 values left',
    ]);
  });

  test('tens of thousands of bad calls leave the process alive and its memory flat', () => {
    const script = path.join(__dirname, 'helpers', 'bad-call-loop.js');
    const dist = path.resolve(__dirname, '..', 'dist', 'index.js');
    const out = execFileSync(process.execPath, ['--expose-gc', script, dist]);
    const report = JSON.parse(out.toString()) as { calls: number; rss: number[] };
    expect(report.calls).toBe(56000);
    // After warm-up (rounds 0-1), a leak of even 100 bytes per call would add ~2 MB a round.
    const growth = report.rss[report.rss.length - 1] - report.rss[2];
    expect(growth).toBeLessThan(8 * 1024 * 1024);
  });
});

test('a worker thread that ends while its async kernels run leaves the process alive and usable', () => {
  // node-addon-api cannot settle the promises of a worker being torn down; that error must not end the process.
  const script = path.join(__dirname, 'helpers', 'worker-exit.js');
  const dist = path.resolve(__dirname, '..', 'dist', 'index.js');
  const out = JSON.parse(execFileSync(process.execPath, [script, dist], { stdio: ['ignore', 'pipe', 'pipe'] }).toString()) as
    { codes: number[]; indices: number[] };
  expect(out.codes).toEqual([0, 1, 0]);
  const rows = 100000;
  const dim = 256;
  const noise = (i: number) => (Math.sin(i * 12.9898) * 43758.5453) % 1;  // as the script makes them
  const database = new Float32Array(rows * dim).map((_, i) => noise(i));
  const query = new Float32Array(dim).map((_, i) => noise(-1 - i));
  expect(out.indices).toEqual(Array.from(reference.cosineTopK(query, database, { dim, k: 3 }).indices));
});

test('input buffers transferred away and collected while async kernels run: the kernels finish on the data as it was', () => {
  // A child process: before the kernels pinned their inputs' memory this read freed memory (a segfault),
  // as did a resizable buffer shrunk under a raw async call.
  const script = path.join(__dirname, 'helpers', 'detach-during-kernel.js');
  const dist = path.resolve(__dirname, '..', 'dist', 'index.js');
  const report = JSON.parse(execFileSync(process.execPath, ['--expose-gc', script, dist], { stdio: ['ignore', 'pipe', 'pipe'] }).toString());
  expect(report).toEqual({
    'cosineTopKAsync database structuredClone': true,
    'cosineTopKAsync queries structuredClone': true,
    'cosineTopKAsync database postMessage': true,
    'cosineTopKAsync queries postMessage': true,
    'meanPoolNormalizeAsync hidden structuredClone': true,
    'raw addon: resizable buffer': "native: 'rows' is backed by a SharedArrayBuffer or a resizable ArrayBuffer",
    'raw addon: queries transferred by a getter (sync)': true,
    'raw addon: queries transferred by a getter (async)': true,
  });
});

test('an option getter that empties an array after its first read is caught before native code', async () => {
  // Options are read before the arrays' lengths are checked; the native check was the only one left.
  const emptying = (array: ArrayBufferView<ArrayBuffer>) => {
    let reads = 0;
    return { get() { if (++reads === 2) structuredClone(array.buffer, { transfer: [array.buffer] }); return undefined; }, enumerable: true };
  };
  const database = new Float32Array(40).fill(1);
  const options = Object.defineProperty({ dim: 4, k: 2 }, 'threads', emptying(database));
  await expect(cosineTopKAsync(q, database, options)).rejects.toThrow(new RangeError('database has 0 elements: expected a non-zero multiple of options.dim (4)'));
  const states = hidden.slice();
  expect(() => meanPoolNormalize(states, mask, shape, Object.defineProperty({}, 'device', emptying(states))))
    .toThrow(new RangeError('hidden has 0 elements but shape 2x3x4 needs 24'));
});

describe('typed arrays from another realm or shared memory', () => {
  test('arrays made in a vm context compute the same as local ones', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const vm = require('vm') as typeof import('vm');
    const foreign = vm.runInNewContext(
      '({ h: new Float32Array([1, 2, 3, 6, 100, 100]), m: new BigInt64Array([1n, 1n, 0n]), db: new Float32Array([1, 0, 0, 1, 0.6, 0.8]) })',
    ) as { h: Float32Array; m: BigInt64Array; db: Float32Array };
    const shape = { batch: 1, seq: 3, hidden: 2 };
    const want = meanPoolNormalize(new Float32Array([1, 2, 3, 6, 100, 100]), new BigInt64Array([1n, 1n, 0n]), shape);
    expect(Array.from(meanPoolNormalize(foreign.h, foreign.m, shape))).toEqual(Array.from(want));
    expect(Array.from(reference.meanPoolNormalize(foreign.h, foreign.m, shape))).toEqual(Array.from(want));
    const q = new Float32Array([1, 0]);
    expect(Array.from(cosineTopK(q, foreign.db, { dim: 2, k: 2 }).indices)).toEqual([0, 2]);
    expect(Array.from(reference.cosineTopK(q, foreign.db, { dim: 2, k: 2 }).indices)).toEqual([0, 2]);
  });

  test('a SharedArrayBuffer-backed array is a clear TypeError', () => {
    const shared = new Float32Array(new SharedArrayBuffer(48));
    expect(() => cosineTopK(new Float32Array(4), shared, { dim: 4, k: 1 })).toThrow(/database is backed by a SharedArrayBuffer/);
  });

  test('an array whose buffer was transferred away is a clear TypeError, not an empty batch', async () => {
    const detached = new Float32Array(8);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expect(() => cosineTopK(new Float32Array(4), detached, { dim: 4, k: 1 })).toThrow(/database is backed by a detached ArrayBuffer/);
    await expect(cosineTopKAsync(detached, new Float32Array(8), { dim: 4, k: 1 })).rejects.toThrow(/queries is backed by a detached ArrayBuffer/);
    const index = new VectorIndex({ dim: 4 });
    expect(() => index.add(detached, [1])).toThrow(/vectors is backed by a detached ArrayBuffer/);
    await expect(index.search(detached, { k: 1 })).rejects.toThrow(/queries is backed by a detached ArrayBuffer/);
    // An empty array is still an empty batch.
    index.add(new Float32Array([1, 0, 0, 0]), [7]);
    index.add(new Float32Array(0), []);
    expect(await index.search(new Float32Array(0), { k: 1 })).toEqual({ ids: new BigInt64Array(0), scores: new Float32Array(0), k: 1 });
    expect(index.size).toBe(1);
  });

  test('VectorIndex.search with more than 2^32 results is a clear RangeError (it was V8\'s "Invalid typed array length")', async () => {
    const index = new VectorIndex({ dim: 1 });
    index.add(new Float32Array(70000).fill(1));
    await expect(index.search(new Float32Array(70000).fill(1), { k: 70000 })).rejects.toThrow(
      /^70000 queries x k = 70000 would be 4900000000 results, more than a result holds \(2\^32\): lower options.k, or search the queries in batches$/);
  });

  test('a resizable-ArrayBuffer-backed array is a clear TypeError (it could shrink while an async kernel reads it)', async () => {
    const Resizable = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer;
    const resizable = new Float32Array(new Resizable(160, { maxByteLength: 160 }));
    await expect(cosineTopKAsync(new Float32Array(4), resizable, { dim: 4, k: 1 })).rejects.toThrow(/database is backed by a resizable ArrayBuffer/);
    expect(() => meanPoolNormalize(resizable.subarray(0, 24), mask, shape)).toThrow(/hidden is backed by a resizable ArrayBuffer/);
  });
});

// Conversion parity: the tiny random CamemBERT's safetensors → ONNX, run in onnxruntime-node,
// against golden last_hidden_state computed in float64 by an independent PyTorch implementation.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vm from 'vm';
import type * as Ort from 'onnxruntime-node';
import { convertedGraph, convertToOnnx, makeRandomModel } from '../lib/model';
import { readSafetensorsHeader, readTensorAsFloat32, writeSafetensors } from '../lib/model/safetensors';
import { readTorchCheckpointTensors } from '../lib/model/torch-checkpoint';
import { float16ToFloat32Array, float32ToFloat16Array } from '../lib/float16';
import { readNpy } from './helpers/npy';

// Jest gives each test file its own typed-array constructors, but onnxruntime-node creates its
// output tensors with Node's, and onnxruntime-common checks `instanceof`: use Node's here.
for (const name of ['Float32Array', 'Uint16Array', 'Int32Array', 'BigInt64Array', 'Uint8Array'] as const) {
  (globalThis as Record<string, unknown>)[name] = vm.runInThisContext(name);
}
// Loaded after the swap: onnxruntime-common keeps the constructors it sees at load time.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ort: typeof Ort = require('onnxruntime-node');

const TINY = path.resolve(__dirname, '../../shared/models/tiny-random-camembert');
const haveShared = fs.existsSync(path.join(TINY, 'golden/index.json'));
if (!haveShared) console.warn(`skipping conversion parity tests: ${TINY} is missing`);
const describeShared = haveShared ? describe : describe.skip;

interface Batch { input_ids: string; attention_mask: string; last_hidden_state: string }
const golden = haveShared ? JSON.parse(fs.readFileSync(path.join(TINY, 'golden/index.json'), 'utf8')) : { sets: {} };
const batches: [string, Batch][] = Object.entries(golden.sets as Record<string, { batches: Batch[] }>)
  .flatMap(([set, s]) => s.batches.map((b): [string, Batch] => [set, b]));

// A folder with only what conversion needs: config.json and model.safetensors.
function copyWeightsOnly(dir: string): void {
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY, f), path.join(dir, f));
}

async function run(session: Ort.InferenceSession, b: Batch): Promise<{ values: Float32Array; dims: readonly number[] }> {
  const ids = readNpy(path.join(TINY, 'golden', b.input_ids));
  const mask = readNpy(path.join(TINY, 'golden', b.attention_mask));
  const out = await session.run({
    input_ids: new ort.Tensor('int64', ids.data as BigInt64Array, ids.shape),
    attention_mask: new ort.Tensor('int64', mask.data as BigInt64Array, mask.shape),
  });
  const hidden = out.last_hidden_state;
  // float16 comes as a Float16Array where the runtime has one (Node >= 24), else as a Uint16Array of its bits: both taken.
  const values = hidden.type === 'float16' ? float16ToFloat32Array(hidden.data as Uint16Array) : hidden.data as Float32Array;
  return { values, dims: hidden.dims };
}

async function maxAbsError(session: Ort.InferenceSession, b: Batch): Promise<number> {
  const expected = readNpy(path.join(TINY, 'golden', b.last_hidden_state));
  const { values, dims } = await run(session, b);
  expect(dims).toEqual(expected.shape);
  let worst = 0;
  for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(values[i] - (expected.data as Float64Array)[i]));
  return worst;
}

describeShared('convertToOnnx parity with golden last_hidden_state', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-convert-'));
    copyWeightsOnly(dir);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  // float16 keeps ~3 significant digits; hidden states are LayerNorm outputs of order 1
  // (measured worst case 6.0e-3, bench/RESULTS-model.md).
  const cases: { graph: 'fused' | 'plain'; dtype: 'float32' | 'float16'; tolerance: number }[] = [
    { graph: 'fused', dtype: 'float32', tolerance: 1e-5 },
    { graph: 'plain', dtype: 'float32', tolerance: 1e-5 },
    { graph: 'fused', dtype: 'float16', tolerance: 1e-2 },
  ];
  for (const { graph, dtype, tolerance } of cases) {
    test(`${graph} graph, ${dtype}: every golden batch within ${tolerance}`, async () => {
      const output = await convertToOnnx(dir, { output: path.join(dir, `${graph}-${dtype}/model.onnx`), graph, dtype });
      expect(fs.existsSync(`${output}.data`)).toBe(true);
      const session = await ort.InferenceSession.create(output, { intraOpNumThreads: 1 });
      for (const [set, b] of batches) {
        const err = await maxAbsError(session, b);
        if (err > tolerance) throw new Error(`${set} ${b.last_hidden_state}: max abs error ${err} > ${tolerance}`);
      }
      await session.release();
    });
  }
});

describeShared('convertToOnnx on other layouts', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-convert-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const edge = () => batches.find(([set]) => set === 'edge')![1];

  test('sharded weights (model.safetensors.index.json) give the golden output', async () => {
    fs.copyFileSync(path.join(TINY, 'config.json'), path.join(dir, 'config.json'));
    const tensors = [...readSafetensorsHeader(path.join(TINY, 'model.safetensors')).values()];
    const half = Math.floor(tensors.length / 2);
    const shards: Record<string, string> = {};
    [tensors.slice(0, half), tensors.slice(half)].forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(path.join(dir, file), part.map((t) => ({ name: t.name, shape: t.shape })),
        (name) => readTensorAsFloat32(part.find((t) => t.name === name)!));
      for (const t of part) shards[t.name] = file;
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: shards }));
    const graph = await convertToOnnx(dir);
    const session = await ort.InferenceSession.create(graph, { intraOpNumThreads: 1 });
    expect(await maxAbsError(session, edge())).toBeLessThan(1e-5);
    await session.release();
    // The shards are recorded: a model.safetensors appearing beside them (preferred) makes the graph stale.
    expect(convertedGraph(graph, dir)).toEqual({ current: true, dtype: 'float32', graph: 'fused' });
    fs.copyFileSync(path.join(TINY, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    expect(convertedGraph(graph, dir)!.current).toBe(false);
  });

  test('a masked-LM checkpoint (base-model prefix, lm_head, LayerNorm gamma/beta) gives the golden output, with a warning', async () => {
    fs.copyFileSync(path.join(TINY, 'config.json'), path.join(dir, 'config.json'));
    const tensors = [...readSafetensorsHeader(path.join(TINY, 'model.safetensors')).values()];
    const renamed = (name: string) => `camembert.${name.replace(/^embeddings\.LayerNorm\.weight$/, 'embeddings.LayerNorm.gamma').replace(/^embeddings\.LayerNorm\.bias$/, 'embeddings.LayerNorm.beta')}`;
    const hidden = tensors.find((t) => t.name === 'embeddings.LayerNorm.weight')!.shape[0];
    writeSafetensors(path.join(dir, 'model.safetensors'),
      [...tensors.map((t) => ({ name: renamed(t.name), shape: t.shape })), { name: 'lm_head.dense.weight', shape: [hidden, hidden] }],
      (name) => name === 'lm_head.dense.weight' ? new Float32Array(hidden * hidden) : readTensorAsFloat32(tensors.find((t) => renamed(t.name) === name)!));
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const session = await ort.InferenceSession.create(await convertToOnnx(dir), { intraOpNumThreads: 1 });
      expect(await maxAbsError(session, edge())).toBeLessThan(1e-5);
      await session.release();
      expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([expect.stringMatching(/1 tensors outside the camembert encoder are not used \(a task head: lm_head\.dense\.weight\)/)]);
    } finally {
      warn.mockRestore();
    }
  });

  test('a row whose attention mask is all zeros attends to every token equally, as Hugging Face\'s finfo.min mask makes it', async () => {
    // Uniform attention in every layer is what zero query weights give with a full mask: that model is the oracle.
    fs.copyFileSync(path.join(TINY, 'config.json'), path.join(dir, 'config.json'));
    const tensors = [...readSafetensorsHeader(path.join(TINY, 'model.safetensors')).values()];
    fs.mkdirSync(path.join(dir, 'uniform'));
    fs.copyFileSync(path.join(TINY, 'config.json'), path.join(dir, 'uniform/config.json'));
    writeSafetensors(path.join(dir, 'uniform/model.safetensors'), tensors.map((t) => ({ name: t.name, shape: t.shape })),
      (name) => /attention\.self\.query\./.test(name) ? new Float32Array(tensors.find((t) => t.name === name)!.shape.reduce((a, b) => a * b, 1))
        : readTensorAsFloat32(tensors.find((t) => t.name === name)!));
    fs.copyFileSync(path.join(TINY, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    const ids = BigInt64Array.from([5n, 1017n, 2311n, 98n, 6n]);
    const hiddenOf = async (model: string, graph: 'fused' | 'plain', mask: bigint) => {
      const session = await ort.InferenceSession.create(await convertToOnnx(model, { output: path.join(model, `${graph}/model.onnx`), graph }), { intraOpNumThreads: 1 });
      const out = await session.run({
        input_ids: new ort.Tensor('int64', ids, [1, ids.length]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(mask), [1, ids.length]),
      });
      await session.release();
      return out.last_hidden_state.data as Float32Array;
    };
    for (const graph of ['fused', 'plain'] as const) {
      const masked = await hiddenOf(dir, graph, 0n);
      const uniform = await hiddenOf(path.join(dir, 'uniform'), graph, 1n);
      expect(Math.max(...masked.map((v, i) => Math.abs(v - uniform[i])))).toBeLessThan(1e-5);
      const unmasked = await hiddenOf(dir, graph, 1n);  // what a -10000 mask gave
      expect(Math.max(...masked.map((v, i) => Math.abs(v - unmasked[i])))).toBeGreaterThan(1e-3);
    }
  });

  // The checkpoint is written by Python's own pickler in torch.save's layout, without torch
  // (test/helpers/write-torch-checkpoint.py).
  const havePython = spawnSync('python3', ['--version']).status === 0;
  if (!havePython) console.warn('PyTorch checkpoint tests skipped: python3 is missing (it writes the test checkpoint)');
  (havePython ? test : test.skip)('a PyTorch checkpoint (pytorch_model.bin) holds the safetensors tensors and converts to the golden output', async () => {
    fs.copyFileSync(path.join(TINY, 'config.json'), path.join(dir, 'config.json'));
    const bin = path.join(dir, 'pytorch_model.bin');
    execFileSync('python3', [path.join(__dirname, 'helpers/write-torch-checkpoint.py'), path.join(TINY, 'model.safetensors'), bin]);
    const fromTorch = readTorchCheckpointTensors(bin);
    const fromSafetensors = readSafetensorsHeader(path.join(TINY, 'model.safetensors'));
    expect([...fromTorch.keys()].sort()).toEqual([...fromSafetensors.keys()].sort());
    const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const dtypes: string[] = [];
    for (const [name, info] of fromSafetensors) {
      const t = fromTorch.get(name)!;
      expect(t.shape).toEqual(info.shape);
      dtypes.push(t.dtype);
      const want = readTensorAsFloat32(info);
      const expected = t.dtype === 'F16' ? float16ToFloat32Array(float32ToFloat16Array(want)) : want;
      if (!bytes(readTensorAsFloat32(t)).equals(bytes(expected))) throw new Error(`tensor ${name} differs`);
    }
    expect(dtypes.filter((d) => d === 'F16')).toHaveLength(1);  // one tensor stored as float16
    // The fixture stores two tensors in one storage, the second at an offset inside it (the byte
    // comparison above checks both); no two tensors were placed at the same bytes.
    expect(new Set([...fromTorch.values()].map((t) => t.offset)).size).toBe(fromTorch.size);
    const session = await ort.InferenceSession.create(await convertToOnnx(dir), { intraOpNumThreads: 1 });
    expect(await maxAbsError(session, edge())).toBeLessThan(1e-2);  // float16 rounding of one weight table
    await session.release();
  });

  (havePython ? test : test.skip)('a checkpoint that is not a plain state dict is refused before anything runs', async () => {
    const bin = path.join(dir, 'pytorch_model.bin');
    fs.writeFileSync(bin, 'not a zip');
    expect(() => readTorchCheckpointTensors(bin)).toThrow(/is not a readable PyTorch zip checkpoint: no end-of-central-directory record/);
    // The format before PyTorch 1.6 begins as torch's _legacy_save begins it: pickles of its magic number and protocol version.
    execFileSync('python3', ['-c', `
import pickle, sys
with open(sys.argv[1], 'wb') as f:
    for value in (0x1950a86a20f9469cfc6c, 1001, {'protocol_version': 1001, 'little_endian': True}): pickle.dump(value, f, protocol=2)
`, bin]);
    expect(() => readTorchCheckpointTensors(bin)).toThrow(new Error(`${bin} was saved by PyTorch before 1.6 (torch.save's legacy format), ` +
      'which camembed does not read: save it again with PyTorch 1.6 or later (torch.save(torch.load(f), f)), or convert it to model.safetensors'));
    // A pickle that would call os.system: the reader names the call and never runs anything.
    execFileSync('python3', ['-c', `
import os, pickle, zipfile, sys
class Evil:
    def __reduce__(self): return (os.system, ('echo pwned',))
with zipfile.ZipFile(sys.argv[1], 'w') as z: z.writestr('archive/data.pkl', pickle.dumps({'w': Evil()}, protocol=2))
`, bin]);
    expect(() => readTorchCheckpointTensors(bin)).toThrow(/unsupported pickle call posix\.system/);
    // One list shared at each of 60 levels (2^60 elements written out) as a persistent id: refused
    // at once, without writing the value into the message.
    execFileSync('python3', ['-c', `
import sys, zipfile
ops = bytearray(b'\\x80\\x02]q\\x00')
for i in range(60): ops += bytes([0x68, i, 0x68, i, 0x86, 0x71, i + 1])
with zipfile.ZipFile(sys.argv[1], 'w') as z: z.writestr('archive/data.pkl', bytes(ops + b'Q.'))
`, bin]);
    expect(() => readTorchCheckpointTensors(bin)).toThrow(/unsupported persistent id \(a sequence of 2\)/);
    // A tensor at a negative offset of its storage (it would read the zip's own bytes as weights).
    execFileSync('python3', ['-c', `
import collections, importlib.util, io, sys, zipfile
spec = importlib.util.spec_from_file_location('w', sys.argv[2]); w = importlib.util.module_from_spec(spec); spec.loader.exec_module(w)
state = collections.OrderedDict(w=w.Tensor(w.Storage('0', w.FloatStorage, bytes(16)), -2, [4]))
out = io.BytesIO(); w.Pickler(out, protocol=2).dump(state)
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    z.writestr('archive/data.pkl', out.getvalue()); z.writestr('archive/data/0', bytes(16))
`, bin, path.join(__dirname, 'helpers/write-torch-checkpoint.py')]);
    expect(() => readTorchCheckpointTensors(bin)).toThrow(/a tensor whose storage, offset, sizes or strides are not what torch writes/);
    // A list of 300,000 items in one APPENDS (it overflowed the stack) is read, then refused as not a state dict.
    execFileSync('python3', ['-c', `
import pickle, sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w') as z: z.writestr('archive/data.pkl', pickle.dumps(list(range(300000)), protocol=2))
`, bin]);
    expect(() => readTorchCheckpointTensors(bin)).toThrow(/does not hold a state dict \(a dict of tensors\)/);
    // A zip64 locator pointing far past the end of the file.
    const zip = fs.readFileSync(bin);
    const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(2n ** 62n, 8);
    const forged = Buffer.concat([zip.subarray(0, eocd), locator, zip.subarray(eocd)]);
    forged.writeUInt32LE(0xffffffff, eocd + 20 + 16);  // the central directory offset: "see zip64"
    fs.writeFileSync(bin, forged);
    expect(() => readTorchCheckpointTensors(bin)).toThrow(/zip64 end record past the end of the file/);
  });

  // BERT positions are 0..seq-1; RoBERTa's are padding_idx + 1 + t for a text without literal
  // <pad>. So BERT with the tiny position table shifted by padding_idx + 1 rows must give the
  // golden output on every attended token of the rows without a literal <pad>.
  test('BERT (absolute positions) matches the golden output through a shifted position table', async () => {
    const config = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'));
    const shift = config.pad_token_id + 1;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'bert', max_position_embeddings: config.max_position_embeddings - shift }));
    const tensors = readSafetensorsHeader(path.join(TINY, 'model.safetensors'));
    writeSafetensors(path.join(dir, 'model.safetensors'),
      [...tensors.values()].map((t) => ({ name: `bert.${t.name}`, shape: t.name === 'embeddings.position_embeddings.weight' ? [t.shape[0] - shift, t.shape[1]] : t.shape })),
      (name) => {
        const values = readTensorAsFloat32(tensors.get(name.slice('bert.'.length))!);
        return name === 'bert.embeddings.position_embeddings.weight' ? values.subarray(shift * config.hidden_size) : values;
      });
    const session = await ort.InferenceSession.create(await convertToOnnx(dir, { output: path.join(dir, 'bert.onnx') }));
    let compared = 0;
    for (const [, b] of batches) {
      const ids = readNpy(path.join(TINY, 'golden', b.input_ids));
      const mask = readNpy(path.join(TINY, 'golden', b.attention_mask)).data as BigInt64Array;
      const expected = readNpy(path.join(TINY, 'golden', b.last_hidden_state)).data as Float64Array;
      const { values } = await run(session, b);
      const [rows, seq] = ids.shape;
      for (let r = 0; r < rows; r++) {
        const row = Array.from((ids.data as BigInt64Array).subarray(r * seq, (r + 1) * seq), Number);
        const length = Array.from(mask.subarray(r * seq, (r + 1) * seq)).filter((m) => m === 1n).length;
        if (row.slice(0, length).includes(config.pad_token_id)) continue;  // literal <pad>: RoBERTa-only semantics
        for (let i = r * seq * config.hidden_size; i < (r * seq + length) * config.hidden_size; i++) {
          if (Math.abs(values[i] - expected[i]) > 1e-5) throw new Error(`${b.last_hidden_state} row ${r}: ${values[i]} vs ${expected[i]}`);
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(100_000);
    await session.release();
  });

  test('a random model of another shape: fused and plain graphs agree', async () => {
    const tokenizerDir = path.resolve(TINY, '../camembert-base-tokenizer');
    await makeRandomModel({ layers: 2, hidden: 48, heads: 3, intermediate: 96, tokenizerDir, outDir: dir, seed: 3 });
    const outputs = [];
    for (const graph of ['fused', 'plain'] as const) {
      const session = await ort.InferenceSession.create(await convertToOnnx(dir, { graph, output: path.join(dir, graph, 'model.onnx') }));
      outputs.push((await run(session, edge())).values);
      await session.release();
    }
    expect(outputs[0].length).toBe(8 * 128 * 48);
    let worst = 0, scale = 0;
    for (let i = 0; i < outputs[0].length; i++) {
      worst = Math.max(worst, Math.abs(outputs[0][i] - outputs[1][i]));
      scale = Math.max(scale, Math.abs(outputs[1][i]));
    }
    expect(scale).toBeGreaterThan(0.5);  // LayerNorm outputs, not zeros
    expect(worst).toBeLessThan(1e-5);
  });
});

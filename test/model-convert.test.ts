// Conversion parity: the tiny random CamemBERT's safetensors → ONNX, run in onnxruntime-node,
// against golden last_hidden_state computed in float64 by an independent PyTorch implementation.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vm from 'vm';
import type * as Ort from 'onnxruntime-node';
import { convertToOnnx } from '../lib/model';
import { float16ToFloat32Array } from '../lib/float16';

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

// Minimal .npy reader (format 1.0, little-endian, C order): the dtypes golden/ uses.
function readNpy(file: string): { shape: number[]; data: Float64Array | BigInt64Array } {
  const buf = fs.readFileSync(file);
  const headerLength = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + headerLength).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)![1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)![1].split(',').filter((s) => s.trim() !== '').map(Number);
  const body = buf.subarray(10 + headerLength);
  const aligned = new Uint8Array(body).buffer;  // copy: typed arrays need aligned offsets
  if (descr === '<f8') return { shape, data: new Float64Array(aligned) };
  if (descr === '<i8') return { shape, data: new BigInt64Array(aligned) };
  throw new Error(`${file}: unexpected dtype ${descr}`);
}

interface Batch { input_ids: string; attention_mask: string; last_hidden_state: string }
const golden = haveShared ? JSON.parse(fs.readFileSync(path.join(TINY, 'golden/index.json'), 'utf8')) : { sets: {} };
const batches: [string, Batch][] = Object.entries(golden.sets as Record<string, { batches: Batch[] }>)
  .flatMap(([set, s]) => s.batches.map((b): [string, Batch] => [set, b]));

// A folder with only what conversion needs: config.json and model.safetensors.
function copyWeightsOnly(dir: string): void {
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY, f), path.join(dir, f));
}

async function maxAbsError(session: Ort.InferenceSession, b: Batch): Promise<number> {
  const ids = readNpy(path.join(TINY, 'golden', b.input_ids));
  const mask = readNpy(path.join(TINY, 'golden', b.attention_mask));
  const expected = readNpy(path.join(TINY, 'golden', b.last_hidden_state)).data as Float64Array;
  const out = await session.run({
    input_ids: new ort.Tensor('int64', ids.data as BigInt64Array, ids.shape),
    attention_mask: new ort.Tensor('int64', mask.data as BigInt64Array, mask.shape),
  });
  const hidden = out.last_hidden_state;
  expect(hidden.dims).toEqual([...ids.shape, golden.hidden_size]);
  const values = hidden.type === 'float16' ? float16ToFloat32Array(hidden.data as Uint16Array) : hidden.data as Float32Array;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(values[i] - expected[i]));
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
  // (measured worst case 5.6e-3 on the edge set).
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

// A float16 graph on a runtime with Float16Array (Node >= 24): onnxruntime-common then hands float16
// outputs back as Float16Array, not the Uint16Array of bits our kernels take. Simulated here with a
// stand-in class, installed before any tensor exists (onnxruntime-common looks for it once, lazily).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import { Encoder } from '../lib/encoder';
import { convertToOnnx } from '../lib/model';
import { readNpy } from './helpers/npy';

const globals = globalThis as { Float16Array?: unknown };
if (globals.Float16Array === undefined) {
  class Float16Array extends Uint16Array {}
  Object.defineProperty(Float16Array.prototype, Symbol.toStringTag, { get: () => 'Float16Array' });
  globals.Float16Array = Float16Array;
}

const MODEL = path.resolve(__dirname, '../../shared/models/tiny-random-camembert');
const haveModel = fs.existsSync(path.join(MODEL, 'golden/index.json'));
if (!haveModel) console.warn(`float16 encoder test skipped: ${MODEL} (tiny random model with golden outputs) is missing`);

(haveModel ? test : test.skip)('a float16 graph encodes as the golden values when the runtime has Float16Array', async () => {
  expect(Object.prototype.toString.call(new ort.Tensor('float16', new Uint16Array(1), [1]).data)).toBe('[object Float16Array]');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-f16-'));
  try {
    fs.cpSync(MODEL, dir, { recursive: true, filter: (f) => !f.endsWith('model.onnx') && !f.includes('golden') });
    await convertToOnnx(dir, { dtype: 'float16' });
    const encoder = await Encoder.load(dir, { threads: 1 });
    const index = JSON.parse(fs.readFileSync(path.join(MODEL, 'golden/index.json'), 'utf8'));
    const [set] = Object.values(index.sets) as { embeddings: string; texts: { text: string; raw: string | null }[] }[];
    const golden = readNpy(path.join(MODEL, 'golden', set.embeddings));
    const e = await encoder.encode(set.texts.map((t) => t.raw ?? t.text));
    await encoder.dispose();
    expect([e.rows, e.dim]).toEqual(golden.shape);
    expect(Math.max(...Array.from(e.data, (v, i) => Math.abs(v - Number(golden.data[i]))))).toBeLessThan(2e-3);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

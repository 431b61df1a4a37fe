// A default prompt with include_prompt: false (sentence-transformers' Pooling): the transformer
// sees the prompt, the mean leaves out <s> and the prompt's tokens. Oracle: the tiny model's
// hidden states from ONNX Runtime, averaged here over the positions after the prompt, whose
// length comes from the Rust tokenizer.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vm from 'vm';
import type * as Ort from 'onnxruntime-node';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { Encoder } from '../lib/encoder';

// onnxruntime-node makes its outputs with Node's typed-array constructors; jest gives each test
// file its own: use Node's (as test/model-convert.test.ts does).
for (const name of ['Float32Array', 'BigInt64Array'] as const) (globalThis as Record<string, unknown>)[name] = vm.runInThisContext(name);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ort: typeof Ort = require('onnxruntime-node');

const MODEL = path.resolve(__dirname, '../../shared/models/tiny-random-camembert');
const haveModel = fs.existsSync(path.join(MODEL, 'model.onnx'));
if (!haveModel) console.warn(`prompt pooling test skipped: ${MODEL} (tiny random model) is missing`);

(haveModel ? test : test.skip)('include_prompt: false leaves the prompt out of the mean, as sentence-transformers does', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-prompt-'));
  try {
    fs.cpSync(MODEL, dir, { recursive: true, filter: (f) => !f.includes('golden') });
    const edit = (file: string, change: (json: Record<string, unknown>) => object) =>
      fs.writeFileSync(path.join(dir, file), JSON.stringify(change(JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')))));
    edit('config_sentence_transformers.json', (c) => ({ ...c, prompts: { query: 'query: ' }, default_prompt_name: 'query' }));
    edit('1_Pooling/config.json', (c) => ({ ...c, include_prompt: false }));
    const texts = ['Bonjour le monde', 'Une autre phrase, plus longue que la première.'];
    const encoder = await Encoder.load(dir, { threads: 1 });
    const got = await encoder.encode(texts);
    const { ids } = encoder.tokenize(texts);
    await encoder.dispose();

    const rust = RustTokenizer.fromFile(path.join(MODEL, 'tokenizer.json'));
    const promptLength = (await rust.encode('query:')).getIds().length - 1;  // <s> + the prompt's pieces, as ST counts them
    expect(promptLength).toBeGreaterThan(1);
    const session = await ort.InferenceSession.create(path.join(MODEL, 'model.onnx'), { intraOpNumThreads: 1 });
    for (let r = 0; r < texts.length; r++) {
      const row = BigInt64Array.from(ids[r].map(BigInt));
      const out = await session.run({
        input_ids: new ort.Tensor('int64', row, [1, row.length]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(row.length).fill(1n), [1, row.length]),
      });
      const hidden = out.last_hidden_state.data as Float32Array;
      const dim = got.dim;
      const mean = new Float64Array(dim);
      for (let t = promptLength; t < row.length; t++) for (let k = 0; k < dim; k++) mean[k] += hidden[t * dim + k];
      const norm = Math.hypot(...mean);
      const want = Array.from(mean, (v) => v / norm);
      const row32 = Array.from(got.data.subarray(r * dim, (r + 1) * dim));
      expect(Math.max(...row32.map((v, k) => Math.abs(v - want[k])))).toBeLessThan(1e-5);
    }
    await session.release();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

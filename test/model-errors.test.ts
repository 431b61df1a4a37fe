// Local model folders, safetensors validation and the converter's errors: each names the file or
// tensor and what was expected, and leaves no half-written output.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import { main } from '../lib/cli';
import { Encoder } from '../lib/encoder';
import { convertedGraph, convertToOnnx, makeRandomModel, resolveModel } from '../lib/model';
import { readSafetensorsHeader, readSafetensorsTensors, readTensorAsFloat32, writeSafetensors } from '../lib/model/safetensors';

const TOKENIZER = path.resolve(__dirname, '../../shared/models/camembert-base-tokenizer');
const haveTokenizer = fs.existsSync(path.join(TOKENIZER, 'tokenizer.json'));
if (!haveTokenizer) console.warn(`skipping random-model tests: ${TOKENIZER} is missing`);
const testWithTokenizer = haveTokenizer ? test : test.skip;

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-model-')); });
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

// A safetensors file from a header object and raw data bytes.
function rawSafetensors(file: string, header: object, data: Buffer): void {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([length, json, data]));
}

// A tiny 1-layer encoder folder: config.json + model.safetensors with the given tensor edits.
const CONFIG = { model_type: 'camembert', hidden_size: 4, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 8,
  vocab_size: 10, max_position_embeddings: 12, type_vocab_size: 1, pad_token_id: 1, layer_norm_eps: 1e-5, hidden_act: 'gelu' };

function tinyShapes(): Map<string, number[]> {
  const shapes = new Map<string, number[]>([
    ['embeddings.word_embeddings.weight', [10, 4]], ['embeddings.position_embeddings.weight', [12, 4]],
    ['embeddings.token_type_embeddings.weight', [1, 4]], ['embeddings.LayerNorm.weight', [4]], ['embeddings.LayerNorm.bias', [4]],
  ]);
  const p = 'encoder.layer.0.';
  for (const proj of ['query', 'key', 'value']) {
    shapes.set(`${p}attention.self.${proj}.weight`, [4, 4]);
    shapes.set(`${p}attention.self.${proj}.bias`, [4]);
  }
  for (const [name, shape] of [['attention.output.dense.weight', [4, 4]], ['attention.output.dense.bias', [4]],
    ['attention.output.LayerNorm.weight', [4]], ['attention.output.LayerNorm.bias', [4]], ['intermediate.dense.weight', [8, 4]],
    ['intermediate.dense.bias', [8]], ['output.dense.weight', [4, 8]], ['output.dense.bias', [4]],
    ['output.LayerNorm.weight', [4]], ['output.LayerNorm.bias', [4]]] as [string, number[]][]) shapes.set(p + name, shape);
  return shapes;
}

function writeTinyModel(edit: (shapes: Map<string, number[]>) => void = () => {}, config: object = CONFIG): void {
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const shapes = tinyShapes();
  edit(shapes);
  const tensors = [...shapes].map(([name, shape]) => ({ name, shape }));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, (name) => new Float32Array(shapes.get(name)!.reduce((a, b) => a * b, 1)).fill(0.5));
}

describe('resolveModel on local folders', () => {
  test('finds the ONNX graph and the weights of a sentence-transformers folder', async () => {
    writeTinyModel();
    expect(await resolveModel(dir)).toEqual({ dir, onnxPath: null, weightsPath: path.join(dir, 'model.safetensors') });
    fs.mkdirSync(path.join(dir, 'onnx'));
    fs.writeFileSync(path.join(dir, 'onnx/model.onnx'), '');
    expect((await resolveModel(dir)).onnxPath).toBe(path.join(dir, 'onnx/model.onnx'));
  });

  test('a folder without weights, a missing folder and a bad source are errors', async () => {
    fs.writeFileSync(path.join(dir, 'config.json'), '{}');
    await expect(resolveModel(dir)).rejects.toThrow(/holds no weights: expected one of onnx\/model\.onnx, model\.onnx, model\.safetensors/);
    await expect(resolveModel(path.join(dir, 'nope', 'deeper'))).rejects.toThrow(/neither an existing folder nor a Hub id/);
    await expect(resolveModel(path.join(dir, 'config.json')))
      .rejects.toThrow(`${path.join(dir, 'config.json')} is a file: pass the model's folder (${dir}?)`);
    await expect(resolveModel('' as string)).rejects.toThrow(TypeError);
  });
});

describe('safetensors reading', () => {
  test('F16 and BF16 tensors widen exactly to float32', () => {
    const f16 = Buffer.from(Uint16Array.of(0x3c00, 0xc000, 0x3555, 0x0001).buffer);  // 1, -2, 0.333251953125, 2^-24
    const bf16 = Buffer.from(Uint16Array.of(0x3f80, 0xc040, 0x3eab).buffer);          // 1, -3, 0.333984375
    const file = path.join(dir, 'mixed.safetensors');
    rawSafetensors(file, { a: { dtype: 'F16', shape: [2, 2], data_offsets: [0, 8] }, b: { dtype: 'BF16', shape: [3], data_offsets: [8, 14] } },
      Buffer.concat([f16, bf16]));
    const tensors = readSafetensorsHeader(file);
    expect(Array.from(readTensorAsFloat32(tensors.get('a')!))).toEqual([1, -2, 0.333251953125, 2 ** -24]);
    expect(Array.from(readTensorAsFloat32(tensors.get('b')!))).toEqual([1, -3, 0.333984375]);
  });

  test('truncated and corrupt headers are errors naming the file', () => {
    const file = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    expect(() => readSafetensorsHeader(file)).toThrow(`corrupt safetensors file ${file}: 3 bytes`);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(1000n);
    fs.writeFileSync(file, Buffer.concat([length, Buffer.from('{"a":')]));
    expect(() => readSafetensorsHeader(file)).toThrow(/bad\.safetensors: header length 1000 does not fit the file size 13 \(truncated\?\)/);
    length.writeBigUInt64LE(5n);
    fs.writeFileSync(file, Buffer.concat([length, Buffer.from('{"a":')]));
    expect(() => readSafetensorsHeader(file)).toThrow(/bad\.safetensors: header is not valid JSON/);
    rawSafetensors(file, { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8));
    expect(() => readSafetensorsHeader(file)).toThrow(/tensor 'w' ends at byte 16 but the data holds 8 bytes \(truncated\?\)/);
    rawSafetensors(file, { w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, Buffer.alloc(16));
    expect(() => readSafetensorsHeader(file)).toThrow(/tensor 'w' spans 16 bytes, expected 12 for F32\[3\]/);
    for (const dtype of ['F4', 'constructor']) {
      rawSafetensors(file, { w: { dtype, shape: [3], data_offsets: [0, 16] } }, Buffer.alloc(16));
      expect(() => readSafetensorsHeader(file)).toThrow(
        new Error(`${file}: tensor 'w' is "${dtype}", a dtype camembed does not read (it converts F32, F16 and BF16 tensors)`));
    }
    rawSafetensors(file, { w: { dtype: 7, shape: [3], data_offsets: [0, 16] } }, Buffer.alloc(16));
    expect(() => readSafetensorsHeader(file)).toThrow(/corrupt safetensors file .*: tensor 'w' has no dtype \(got 7\)/);
    rawSafetensors(file, { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(16));
    const index = path.join(dir, 'model.safetensors.index.json');
    fs.writeFileSync(index, JSON.stringify({ weight_map: { w: 7 } }));
    expect(() => readSafetensorsTensors(index)).toThrow(`safetensors index ${index}: the shard of 'w' is 7, not a file name`);
  });
});

describe('convertToOnnx errors', () => {
  const noOutput = () => expect(fs.readdirSync(dir).filter((f) => f.includes('onnx'))).toEqual([]);

  test('unsupported model_type and activation', async () => {
    writeTinyModel(undefined, { ...CONFIG, model_type: 'gpt2' });
    await expect(convertToOnnx(dir)).rejects.toThrow(/config\.json: model_type "gpt2" is not supported; expected one of camembert, roberta, xlm-roberta/);
    for (const config of [null, [CONFIG]]) {
      writeTinyModel(undefined, config as object);
      await expect(convertToOnnx(dir)).rejects.toThrow(new Error(
        `${path.join(dir, 'config.json')} must hold a JSON object, got ${config === null ? 'null' : 'an array'}`));
    }
    // The sizes checked as the file is read, as the encoder checks them (hidden_size 0 passed as a multiple of the heads).
    for (const [key, value] of [['hidden_size', 0], ['num_attention_heads', 0], ['num_hidden_layers', -1], ['intermediate_size', 0],
      ['vocab_size', 0], ['max_position_embeddings', 12.5], ['type_vocab_size', 0]] as const) {
      writeTinyModel(undefined, { ...CONFIG, [key]: value });
      await expect(convertToOnnx(dir)).rejects.toThrow(new Error(`${path.join(dir, 'config.json')}: ${key} must be a positive integer, got ${value}`));
    }
    writeTinyModel(undefined, { ...CONFIG, pad_token_id: 10 });
    await expect(convertToOnnx(dir)).rejects.toThrow(new Error(`${path.join(dir, 'config.json')}: pad_token_id 10 must be a token id, below vocab_size 10`));
    const { hidden_size: _, ...withoutHidden } = CONFIG;
    writeTinyModel(undefined, withoutHidden);
    await expect(convertToOnnx(dir)).rejects.toThrow(new Error(`${path.join(dir, 'config.json')}: hidden_size is missing (a positive integer)`));
    writeTinyModel(undefined, { ...CONFIG, hidden_act: 'gelu_new' });
    await expect(convertToOnnx(dir)).rejects.toThrow(/hidden_act "gelu_new" is not supported; expected "gelu"/);
    writeTinyModel(undefined, { ...CONFIG, is_decoder: true });
    await expect(convertToOnnx(dir)).rejects.toThrow(/is_decoder is true \(a causal decoder\)/);
    writeTinyModel(undefined, { ...CONFIG, position_embedding_type: null });
    await expect(convertToOnnx(dir)).rejects.toThrow(/position_embedding_type null is not supported/);
    for (const eps of ['abc', -1]) {
      writeTinyModel(undefined, { ...CONFIG, layer_norm_eps: eps });
      await expect(convertToOnnx(dir)).rejects.toThrow(`layer_norm_eps must be a non-negative number, got ${JSON.stringify(eps)}`);
    }
    writeTinyModel(undefined, { ...CONFIG, num_hidden_layers: 1_100_000 });
    await expect(convertToOnnx(dir)).rejects.toThrow(/num_hidden_layers 1100000 needs at least 17600000 tensors; the weights hold 21/);
    noOutput();
  });

  test('type_vocab_size defaults to 2 as in Hugging Face; a float16 conversion refuses weights beyond float16', async () => {
    const { type_vocab_size: _, ...withoutTypes } = CONFIG;
    writeTinyModel((s) => s.set('embeddings.token_type_embeddings.weight', [2, 4]), withoutTypes);
    expect(await convertToOnnx(dir)).toBe(path.join(dir, 'onnx', 'model.onnx'));
    fs.rmSync(path.join(dir, 'onnx'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG));
    const shapes = tinyShapes();
    writeSafetensors(path.join(dir, 'model.safetensors'), [...shapes].map(([name, shape]) => ({ name, shape })),
      (name) => new Float32Array(shapes.get(name)!.reduce((a, b) => a * b, 1)).fill(name === 'encoder.layer.0.output.LayerNorm.weight' ? 70000 : 0.5));
    await expect(convertToOnnx(dir, { dtype: 'float16' })).rejects.toThrow(
      'weight encoder.layer.0.output.LayerNorm.weight[0] = 70000 does not fit float16 (largest 65504): convert as float32');
    noOutput();
  });

  test('missing, extra and misshapen tensors name the tensor', async () => {
    writeTinyModel((s) => s.delete('encoder.layer.0.output.dense.bias'));
    await expect(convertToOnnx(dir)).rejects.toThrow(/model\.safetensors: tensor 'encoder\.layer\.0\.output\.dense\.bias' is missing/);
    writeTinyModel((s) => s.set('encoder.layer.1.output.dense.bias', [4]));
    await expect(convertToOnnx(dir)).rejects.toThrow(/unexpected tensor 'encoder\.layer\.1\.output\.dense\.bias' \(not part of a 1-layer encoder\)/);
    writeTinyModel((s) => s.set('encoder.layer.0.intermediate.dense.weight', [4, 8]));
    await expect(convertToOnnx(dir)).rejects.toThrow(/tensor 'encoder\.layer\.0\.intermediate\.dense\.weight' has shape \[4, 8\], expected \[8, 4\]/);
    noOutput();
  });

  (fs.existsSync('/dev/full') ? test : test.skip)('a full disk is an error naming the output, and leaves no files', async () => {
    writeTinyModel();
    // Writes to /dev/full fail with ENOSPC: stand it in for the weights file being written.
    const nodeFs: typeof fs = require('fs');  // the module object itself (the import is a read-only view)
    const open = nodeFs.openSync;
    const full = jest.spyOn(nodeFs, 'openSync').mockImplementation((file, ...rest) =>
      open(/model\.onnx\.data\.tmp-/.test(String(file)) ? '/dev/full' : file, ...rest));
    try {
      await expect(convertToOnnx(dir, { output: path.join(dir, 'model.onnx') }))
        .rejects.toThrow(/disk full while writing .*model\.onnx: cannot write .*model\.onnx\.data\.tmp-\d+-[0-9a-f]{8}: ENOSPC/);
    } finally {
      full.mockRestore();
    }
    noOutput();
    // A disk so full that the file cannot even be made: the same error, and no folder left behind.
    const refused = jest.spyOn(nodeFs, 'openSync').mockImplementation((file, ...rest) => {
      if (/model\.onnx\.data\.tmp-/.test(String(file))) throw Object.assign(new Error(`ENOSPC: no space left on device, open '${file}'`), { code: 'ENOSPC' });
      return open(file, ...rest);
    });
    try {
      await expect(convertToOnnx(dir)).rejects.toThrow(/disk full while writing .*onnx.model\.onnx: ENOSPC: no space left on device, open/);
    } finally {
      refused.mockRestore();
    }
    noOutput();
  });

  test('an output that is a folder is refused before anything is written beside it', async () => {
    writeTinyModel();
    const folder = path.join(dir, 'out');
    fs.mkdirSync(folder);
    await expect(convertToOnnx(dir, { output: folder })).rejects.toThrow(
      `${folder} is a folder: the output is the ONNX file to write, e.g. ${path.join(folder, 'model.onnx')}`);
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'out']);
    expect(fs.readdirSync(folder)).toEqual([]);
  });

  test('an output over a file the conversion reads (the weights, config.json, through a link) is refused before anything is written', async () => {
    writeTinyModel();
    const weights = fs.readFileSync(path.join(dir, 'model.safetensors'));
    fs.symlinkSync('model.safetensors', path.join(dir, 'link.onnx'));
    fs.linkSync(path.join(dir, 'model.safetensors'), path.join(dir, 'graph.data'));  // the data file of output 'graph'
    const before = fs.readdirSync(dir).sort();
    for (const [output, written, input] of [
      ['model.safetensors', 'model.safetensors', 'model.safetensors'], ['config.json', 'config.json', 'config.json'],
      ['link.onnx', 'model.safetensors', 'model.safetensors'], ['graph', 'graph.data', 'model.safetensors'],
    ]) {
      await expect(convertToOnnx(dir, { output: path.join(dir, output) })).rejects.toThrow(
        `cannot write ${path.join(dir, written)}: it is the model's ${input}, which the conversion reads`);
    }
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    expect(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(weights)).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))).toEqual(CONFIG);
  });

  test('an output that is a symbolic link gets the file it names written, the link kept; the graph loads by the link', async () => {
    writeTinyModel();
    const elsewhere = fs.mkdtempSync(path.join(dir, 'elsewhere-'));
    const target = path.join(elsewhere, 'graph.onnx');
    const link = path.join(dir, 'link.onnx');
    fs.symlinkSync(path.relative(dir, target), link);  // to nothing yet, relative, as ln -s makes them
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await convertToOnnx(dir, { output: link })).toBe(link);
      // The graph is camembed's (its record is beside the link's name): the command replaces it without --force.
      expect(await main(['convert', dir, '--output', link])).toBe(0);
    } finally {
      stderr.mockRestore();
    }
    // Was: the link replaced by the graph. The data and the record are where their own names lead (a
    // data file linked beside the graph's target would be written there): ONNX Runtime finds the data
    // by its name beside the name it loads.
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readdirSync(elsewhere)).toEqual(['graph.onnx']);
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', path.basename(elsewhere), 'link.onnx', 'link.onnx.data', 'link.onnx.source.json', 'model.safetensors']);
    expect(convertedGraph(link, dir)?.current).toBe(true);
    const session = await ort.InferenceSession.create(link);
    const ids = new ort.Tensor('int64', BigInt64Array.from([0n, 5n, 2n]), [1, 3]);
    const { last_hidden_state: hidden } = await session.run({ input_ids: ids, attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n]), [1, 3]) });
    expect(hidden.dims).toEqual([1, 3, 4]);
    await session.release();
    // A Hub snapshot's link leads to a blob that other revisions share, named by its hash: never written.
    const blob = path.join(dir, 'hub', 'models--org--name', 'blobs', 'a'.repeat(64));
    const snapshotGraph = path.join(dir, 'hub', 'models--org--name', 'snapshots', 'b'.repeat(40), 'onnx', 'model.onnx');
    fs.mkdirSync(path.dirname(blob), { recursive: true });
    fs.mkdirSync(path.dirname(snapshotGraph), { recursive: true });
    fs.writeFileSync(blob, 'the repository\'s own graph');
    fs.symlinkSync(path.relative(path.dirname(snapshotGraph), blob), snapshotGraph);
    await expect(convertToOnnx(dir, { output: snapshotGraph })).rejects.toThrow(new Error(`cannot write ${blob}: it is a file of the ` +
      'Hugging Face cache (a blob its snapshots link to); convert into a folder of yours'));
    expect(fs.readFileSync(blob, 'utf8')).toBe('the repository\'s own graph');
    expect(fs.readdirSync(path.dirname(snapshotGraph))).toEqual(['model.onnx']);
  });

  test('a folder without weights, and bad options', async () => {
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG));
    await expect(convertToOnnx(dir)).rejects.toThrow(/has no weights: expected model\.safetensors or model\.safetensors\.index\.json/);
    writeTinyModel();
    await expect(convertToOnnx(dir, { dtype: 'int8' as 'float16' })).rejects.toThrow(new TypeError("options.dtype must be 'float32' or 'float16', got \"int8\""));
  });

  test('a tensor of a dtype that does not convert is an error naming it and the dtype; in a task head it is left unused', async () => {
    // The tiny model's tensors as F32, but `name` as `dtype` (its bytes zero), with a `roberta.` prefix.
    const itemBytes: Record<string, number> = { F64: 8, U16: 2, U32: 4, U64: 8, I64: 8, U8: 1, BOOL: 1, F8_E4M3: 1 };  // the format's sizes
    const withDtype = (name: string, dtype: string) => {
      const header: Record<string, object> = {};
      let offset = 0;
      for (const [tensor, shape] of [...tinyShapes(), ['lm_head.bias', [10]] as [string, number[]]]) {
        const full = tensor.startsWith('lm_head.') ? tensor : `roberta.${tensor}`;
        const bytes = shape.reduce((a, b) => a * b, 1) * (full === name ? itemBytes[dtype] : 4);
        header[full] = { dtype: full === name ? dtype : 'F32', shape, data_offsets: [offset, offset + bytes] };
        offset += bytes;
      }
      rawSafetensors(path.join(dir, 'model.safetensors'), header, Buffer.alloc(offset));
    };
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG));
    const weights = path.join(dir, 'model.safetensors');
    // U16, U32 and U64 were 'corrupt safetensors file ...: tensor ... has no known dtype'.
    for (const dtype of Object.keys(itemBytes)) {
      withDtype('roberta.embeddings.LayerNorm.weight', dtype);
      await expect(convertToOnnx(dir)).rejects.toThrow(new Error(`${weights}: tensor 'roberta.embeddings.LayerNorm.weight' is ${dtype}, expected F32, F16 or BF16`));
      noOutput();
      withDtype('lm_head.bias', dtype);
      const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
      try {
        await convertToOnnx(dir);
        expect(warn).toHaveBeenCalledWith(expect.stringContaining('1 tensors outside the roberta encoder are not used (a task head: lm_head.bias)'));
      } finally {
        warn.mockRestore();
      }
      fs.rmSync(path.join(dir, 'onnx'), { recursive: true });
    }
  });

  test('a checkpoint with the base-model prefix and an unused pooler converts', async () => {
    writeTinyModel((s) => {
      for (const [name, shape] of [...s]) {
        s.delete(name);
        s.set(`roberta.${name}`, shape);
      }
      s.set('roberta.pooler.dense.weight', [4, 4]);
    });
    const output = await convertToOnnx(dir);
    expect(output).toBe(path.join(dir, 'onnx', 'model.onnx'));
    expect(fs.readdirSync(path.join(dir, 'onnx')).sort()).toEqual(['model.onnx', 'model.onnx.data', 'model.onnx.source.json']);
  });
});

describe('makeRandomModel', () => {
  testWithTokenizer('writes a sentence-transformers folder, reproducible from the seed', async () => {
    const options = { layers: 1, hidden: 8, heads: 2, intermediate: 16, tokenizerDir: TOKENIZER, outDir: path.join(dir, 'a'), seed: 7 };
    await makeRandomModel(options);
    await makeRandomModel({ ...options, outDir: path.join(dir, 'b') });
    await makeRandomModel({ ...options, outDir: path.join(dir, 'c'), seed: 8 });
    const files = (d: string) => fs.readdirSync(path.join(dir, d), { recursive: true }).map(String).sort();
    expect(files('a')).toEqual(['1_Pooling', '1_Pooling/config.json', 'config.json', 'config_sentence_transformers.json', 'model.safetensors',
      'modules.json', 'sentence_bert_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    const read = (d: string, f: string) => fs.readFileSync(path.join(dir, d, f));
    expect(read('a', 'model.safetensors').equals(read('b', 'model.safetensors'))).toBe(true);
    expect(read('a', 'model.safetensors').equals(read('c', 'model.safetensors'))).toBe(false);
    const config = JSON.parse(read('a', 'config.json').toString());
    expect(config).toMatchObject({ model_type: 'camembert', hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
      intermediate_size: 16, vocab_size: 32005, max_position_embeddings: 514, pad_token_id: 1, bos_token_id: 5, eos_token_id: 6 });
    expect(JSON.parse(read('a', 'sentence_bert_config.json').toString()).max_seq_length).toBe(128);
    expect(JSON.parse(read('a', '1_Pooling/config.json').toString())).toMatchObject({ word_embedding_dimension: 8, pooling_mode_mean_tokens: true });
    const tensors = readSafetensorsHeader(path.join(dir, 'a', 'model.safetensors'));
    expect(tensors.get('embeddings.word_embeddings.weight')!.shape).toEqual([32005, 8]);
    const words = readTensorAsFloat32(tensors.get('embeddings.word_embeddings.weight')!);
    expect(Array.from(words.subarray(8, 16))).toEqual(new Array(8).fill(0));  // the <pad> row
    const std = Math.sqrt(words.reduce((s, v) => s + v * v, 0) / words.length);
    expect(std).toBeGreaterThan(0.018);
    expect(std).toBeLessThan(0.022);
  });

  test('a tokenizer whose vocabulary is a large token → id map (a 150,000-token BPE) sizes the embeddings from its largest id', async () => {
    const tokenizerDir = path.join(dir, 'bpe');
    fs.mkdirSync(tokenizerDir);
    const vocab: Record<string, number> = {};
    for (let i = 3; i < 150_000; i++) vocab[`t${i}`] = i;
    const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    fs.writeFileSync(path.join(tokenizerDir, 'tokenizer.json'), JSON.stringify({
      model: { type: 'BPE', vocab, merges: [] }, added_tokens: [special(0, '<s>'), special(1, '<pad>'), special(2, '</s>')],
      normalizer: null, pre_tokenizer: { type: 'Whitespace' }, decoder: { type: 'BPEDecoder' },
      post_processor: { type: 'RobertaProcessing', cls: ['<s>', 0], sep: ['</s>', 2] }, padding: { pad_token: '<pad>' },
    }));
    const outDir = path.join(dir, 'model');
    await makeRandomModel({ layers: 1, hidden: 2, heads: 1, intermediate: 2, tokenizerDir, outDir });
    expect(JSON.parse(fs.readFileSync(path.join(outDir, 'config.json'), 'utf8'))).toMatchObject({ vocab_size: 150_000, pad_token_id: 1 });
    expect(readSafetensorsHeader(path.join(outDir, 'model.safetensors')).get('embeddings.word_embeddings.weight')!.shape).toEqual([150_000, 2]);
  });

  testWithTokenizer('the padding id is the pad token the tokenizer names (it was 1 whatever the tokenizer); a tokenizer naming none is refused', async () => {
    const tokenizerDir = path.join(dir, 'tokenizer');
    fs.cpSync(TOKENIZER, tokenizerDir, { recursive: true });
    fs.chmodSync(path.join(tokenizerDir, 'tokenizer_config.json'), 0o644);
    const editJson = (file: string, change: (json: Record<string, unknown>) => void) => {
      const json = JSON.parse(fs.readFileSync(path.join(tokenizerDir, file), 'utf8'));
      change(json);
      fs.chmodSync(path.join(tokenizerDir, file), 0o644);
      fs.writeFileSync(path.join(tokenizerDir, file), JSON.stringify(json));
    };
    editJson('tokenizer_config.json', (c) => { c.pad_token = '<unk>'; });  // id 4; the first source transformers reads
    const outDir = path.join(dir, 'unk-pad');
    await makeRandomModel({ layers: 1, hidden: 8, heads: 2, intermediate: 16, tokenizerDir, outDir });
    expect(JSON.parse(fs.readFileSync(path.join(outDir, 'config.json'), 'utf8'))).toMatchObject({ pad_token_id: 4, bos_token_id: 5, eos_token_id: 6 });
    const words = readTensorAsFloat32(readSafetensorsHeader(path.join(outDir, 'model.safetensors')).get('embeddings.word_embeddings.weight')!);
    expect(Array.from(words.subarray(4 * 8, 5 * 8))).toEqual(new Array(8).fill(0));  // the padding row
    expect(words.subarray(8, 16).some((v) => v !== 0)).toBe(true);  // <pad> is an ordinary token here
    // Encoder.load pads with the same id the model's positions count from: one text alone and in a padded batch agree.
    const e = await Encoder.load(outDir, { threads: 1 });
    try {
      const texts = ['Bonjour', 'Une phrase bien plus longue que la première, pour que la première soit complétée.'];
      const [alone, batch] = [await e.encode(texts.slice(0, 1)), await e.encode(texts)];
      expect(Math.max(...batch.data.subarray(0, 8).map((v, i) => Math.abs(v - alone.data[i])))).toBeLessThan(1e-6);
    } finally {
      await e.dispose();
    }
    // None named: the folder's config.json (the tokenizer's model) does not stand in, as Encoder.load lets it for a model.
    editJson('tokenizer_config.json', (c) => { delete c.pad_token; });
    editJson('special_tokens_map.json', (c) => { delete c.pad_token; });
    editJson('tokenizer.json', (c) => { c.padding = null; });
    const noPad = path.join(dir, 'no-pad');
    await expect(makeRandomModel({ layers: 1, hidden: 8, heads: 2, intermediate: 16, tokenizerDir, outDir: noPad })).rejects.toThrow(new Error(
      `${tokenizerDir}: the tokenizer names no pad token (tokenizer_config.json's or special_tokens_map.json's pad_token, or tokenizer.json's ` +
      'padding): a model made around it needs one, its padding row'));
    // The command's usage error (exit 2, as for other bad input), naming --tokenizer: it exited 1.
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['make-random-model', '--tokenizer', tokenizerDir, '--out', noPad])).toBe(2);
      expect(stderr.mock.calls.map(([chunk]) => String(chunk)).join('')).toBe(`camembed make-random-model: --tokenizer ${tokenizerDir}: ` +
        'the tokenizer names no pad token (tokenizer_config.json\'s or special_tokens_map.json\'s pad_token, or tokenizer.json\'s padding): ' +
        'a model made around it needs one, its padding row\n');
    } finally {
      stderr.mockRestore();
    }
    expect(fs.existsSync(noPad)).toBe(false);
  });

  test('bad sizes are RangeErrors naming the option', async () => {
    const base = { layers: 1, hidden: 8, heads: 2, intermediate: 16, tokenizerDir: TOKENIZER, outDir: dir };
    await expect(makeRandomModel({ ...base, layers: 0 })).rejects.toThrow(/options.layers must be >= 1, got 0/);
    await expect(makeRandomModel({ ...base, hidden: 10, heads: 3 })).rejects.toThrow(/options.hidden \(10\) must be a multiple of options.heads \(3\)/);
    await expect(makeRandomModel({ ...base, tokenizerDir: dir })).rejects.toThrow(/tokenizer\.json is missing/);
  });

  testWithTokenizer('seeds are integers from 0 to 2^32 - 1, as the command line takes them (-1 gave seed 4294967295\'s weights)', async () => {
    const base = { layers: 1, hidden: 8, heads: 2, intermediate: 16, tokenizerDir: TOKENIZER, outDir: path.join(dir, 'seed') };
    for (const seed of [-1, 2 ** 32]) {
      await expect(makeRandomModel({ ...base, seed })).rejects.toThrow(
        new RangeError(`options.seed must be an integer from 0 to 4294967295 (the generator takes 32 bits), got ${seed}`));
    }
    await expect(makeRandomModel({ ...base, seed: 0.5 })).rejects.toThrow(new TypeError('options.seed must be an integer, got 0.5'));
    expect(fs.existsSync(base.outDir)).toBe(false);
    await makeRandomModel({ ...base, seed: 2 ** 32 - 1 });
    expect(readSafetensorsHeader(path.join(base.outDir, 'model.safetensors')).size).toBe(23);
  });

  testWithTokenizer('a position table too small for <s> and </s> is refused; a smaller one than 130 gets a max_seq_length that fits', async () => {
    // --max-positions 2 wrote a model Encoder.load refused ("leaves no position for <s> and </s> after pad_token_id 1").
    const base = { layers: 1, hidden: 8, heads: 2, intermediate: 16, tokenizerDir: TOKENIZER, outDir: path.join(dir, 'small') };
    for (const maxPositions of [1, 3]) {
      await expect(makeRandomModel({ ...base, maxPositions })).rejects.toThrow(new RangeError(
        `options.maxPositions must be at least 4 (positions start after the padding id 1, then <s> and </s>), got ${maxPositions}`));
    }
    expect(fs.existsSync(base.outDir)).toBe(false);
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['make-random-model', '--tokenizer', TOKENIZER, '--out', base.outDir, '--max-positions', '2'])).toBe(2);
      expect(stderr.mock.calls.map(([chunk]) => String(chunk)).join('')).toContain('camembed make-random-model: --max-positions must be at least 4 ' +
        '(positions start after the padding id 1, then <s> and </s>), got 2');
    } finally {
      stderr.mockRestore();
    }
    expect(fs.existsSync(base.outDir)).toBe(false);
    // The smallest table, and one under 130 (which held 128 tokens' max_seq_length), load with Encoder.load's defaults.
    for (const [maxPositions, maxLength] of [[4, 2], [40, 38]]) {
      await makeRandomModel({ ...base, maxPositions, outDir: path.join(dir, `p${maxPositions}`) });
      const e = await Encoder.load(path.join(dir, `p${maxPositions}`), { threads: 1 });
      expect(e.maxLength).toBe(maxLength);
      expect((await e.encode(['Bonjour le monde, une phrase bien plus longue que deux jetons.'])).rows).toBe(1);
      await e.dispose();
    }
  });

  testWithTokenizer('a tensor too large to write is refused before any file, naming it; no folder is left, an existing one stays as it was', async () => {
    const base = { layers: 1, hidden: 999_999_999, heads: 1, intermediate: 4, tokenizerDir: TOKENIZER };
    // Was 'Invalid typed array length: 32004999967995', after the folder, the tokenizer and the settings were written.
    const outDir = path.join(dir, 'new', 'model');
    await expect(makeRandomModel({ ...base, outDir })).rejects.toThrow(new RangeError(`cannot write ${path.join(outDir, 'model.safetensors')}: ` +
      "tensor 'embeddings.word_embeddings.weight' [32005, 999999999] would take 128019999871980 bytes, more than a tensor can (4294967296: one Buffer)"));
    expect(fs.readdirSync(dir)).toEqual([]);
    const existing = path.join(dir, 'existing');
    fs.mkdirSync(existing);
    fs.writeFileSync(path.join(existing, 'config.json'), '{"kept": true}');
    await expect(makeRandomModel({ ...base, outDir: existing })).rejects.toThrow(/would take 128019999871980 bytes/);
    expect(fs.readdirSync(existing)).toEqual(['config.json']);
    expect(fs.readFileSync(path.join(existing, 'config.json'), 'utf8')).toBe('{"kept": true}');
  });
});

describe('writeSafetensors', () => {
  test('a header past the 100 MiB readers take is refused before any file, its tensors read no further; one tensor fewer is read back', () => {
    // 100 kB names: the 100 MiB are reached after ~1,000 tensors (a model's after ~60,000 layers).
    const file = path.join(dir, 'model.safetensors');
    let listed = 0;
    function* tensors(count: number): Generator<{ name: string; shape: number[] }> {
      for (let i = 0; i < count; i++) {
        if (i === 2_000) throw new Error('listed past the refusal');  // an endless layer count was listed whole (out of memory)
        listed = i + 1;
        yield { name: `t${i}.${'x'.repeat(100_000)}`, shape: [1] };
      }
    }
    let message = '';
    try {
      writeSafetensors(file, tensors(Infinity), () => new Float32Array(1));
    } catch (err) {
      message = (err as Error).message;
    }
    const refused = /^cannot write (.+): its header would pass 104857600 bytes at tensor (\d+) \('t\2\.x{100000}'\), more than safetensors readers take$/.exec(message);
    expect(refused?.[1]).toBe(file);
    expect(listed).toBe(Number(refused![2]) + 1);
    expect(fs.readdirSync(dir)).toEqual([]);
    writeSafetensors(file, tensors(Number(refused![2])), () => new Float32Array(1));
    expect(readSafetensorsHeader(file).size).toBe(Number(refused![2]));
  });
});

describe('camembed make-random-model and convert commands', () => {
  testWithTokenizer('make a model, convert it, and report usage errors', async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const out = path.join(dir, 'random');
      expect(await main(['make-random-model', '--layers', '1', '--hidden', '8', '--heads', '2', '--intermediate', '16', '--max-positions', '200',
        '--tokenizer', TOKENIZER, '--out', out, '--seed', '5'])).toBe(0);
      expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).max_position_embeddings).toBe(200);
      expect(readSafetensorsHeader(path.join(out, 'model.safetensors')).get('embeddings.position_embeddings.weight')!.shape).toEqual([200, 8]);
      expect(await main(['convert', out, '--dtype', 'float16', '--output', path.join(out, 'f16.onnx')])).toBe(0);
      expect(fs.statSync(path.join(out, 'f16.onnx.data')).size).toBeGreaterThan(32005 * 8 * 2);
      expect(await main(['convert', out, '--dtype', 'int4'])).toBe(2);
      // A graph camembed did not make (the model's own export) is replaced only with --force.
      fs.writeFileSync(path.join(out, 'model.onnx'), 'their export');
      expect(await main(['convert', out, '--output', path.join(out, 'model.onnx')])).toBe(2);
      expect(fs.readFileSync(path.join(out, 'model.onnx'), 'utf8')).toBe('their export');
      expect(await main(['convert', out, '--output', path.join(out, 'model.onnx'), '--force'])).toBe(0);
      expect(await main(['convert', out, '--output', path.join(out, 'model.onnx')])).toBe(0);  // now camembed's own
      // Not the weights it converts, even with --force: the graph replaced them.
      const weights = fs.readFileSync(path.join(out, 'model.safetensors'));
      expect(await main(['convert', out, '--output', path.join(out, 'model.safetensors'), '--force'])).toBe(2);
      expect(fs.readFileSync(path.join(out, 'model.safetensors')).equals(weights)).toBe(true);
      // A folder given as --output: refused as a usage error, even with --force, leaving nothing beside it.
      fs.mkdirSync(path.join(out, 'as-folder'));
      const before = fs.readdirSync(out).sort();
      expect(await main(['convert', out, '--output', path.join(out, 'as-folder'), '--force'])).toBe(2);
      expect(fs.readdirSync(out).sort()).toEqual(before);
      expect(await main(['make-random-model', '--out', out])).toBe(2);
      expect(await main(['convert', path.join(dir, 'missing')])).toBe(2);
      const messages = stderr.mock.calls.map((c) => String(c[0])).join('');
      expect(messages).toMatch(/--dtype must be float32 or float16, got 'int4'/);
      expect(messages).toContain(`${path.join(out, 'model.onnx')} exists and camembed did not convert it (the model's own ONNX graph?): pass --force`);
      expect(messages).toContain(`--output ${path.join(out, 'model.safetensors')} is the model's model.safetensors, which the conversion reads: writing it would destroy it`);
      expect(messages).toContain(`--output ${path.join(out, 'as-folder')} is a folder: give the ONNX file to write, e.g. ${path.join(out, 'as-folder', 'model.onnx')}`);
      expect(messages).toMatch(/--tokenizer <folder> is required/);
      expect(messages).toContain(`${path.join(dir, 'missing')} does not exist: expected a model folder`);
    } finally {
      stderr.mockRestore();
    }
  });
});

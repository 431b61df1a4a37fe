// safetensors or a PyTorch checkpoint (+ config.json) → ONNX for CamemBERT / RoBERTa / XLM-RoBERTa (and BERT) encoders,
// computing exactly Hugging Face's RobertaModel (BertModel) forward pass without the pooler:
// last_hidden_state [batch, seq, hidden].
//
// The default graph uses ONNX Runtime's contrib ops (com.microsoft domain, CPU and CUDA kernels):
// SkipLayerNormalization (LayerNorm(x + skip + bias)), Attention (packed QKV projection +
// multi-head attention with a [batch, seq] key padding mask) and BiasGelu (erf GELU of x + bias),
// with MatMul weights stored pre-transposed. The 'plain' graph is the same maths in standard
// opset-17 ops (what torch.onnx.export produces); it exists as a baseline for benchmarks and as a
// second check of the fused graph.
// Weights go to an external data file next to the graph (`<output>.data`), one tensor at a time,
// so memory stays near the size of the largest tensor.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { FLOAT16_MAX, float32ToFloat16Array } from '../float16';
import { namesOf, optionalOneOf, optionalString, requireObject, requireString } from '../validate';
import { readSafetensorsTensors, readTensorAsFloat32, TensorInfo, writeAllSync } from './safetensors';
import { readTorchCheckpointTensors } from './torch-checkpoint';
import { DataType, encodeModel, NodeDef, TensorDef, AttributeValue } from './onnx-writer';
import { followLinks, makeFolders, removeAbandonedTemporaries, removeFoldersMade, temporaryPath, writeFileAtomic } from '../atomic-file';
import { camembedCacheDir, hubBlobOf, hubSnapshotOf } from './hub';
import { WEIGHT_FILES, weightFilesOf, weightsFileOf } from './local';
import { configInteger, IntegerSetting, readModelConfig } from './config';

/** Options of convertToOnnx. */
export interface ConvertOptions {
  /** The graph's path (default: defaultGraphPath(modelDir), where Encoder.load looks); weights go in <output>.data. */
  output?: string | undefined;
  /** 'float32' (default), or 'float16': weights, compute and output in half precision. */
  dtype?: 'float32' | 'float16' | undefined;
  /** 'fused' (default: ONNX Runtime's fused operators), or 'plain': standard ops only (a baseline for benchmarks). */
  graph?: 'fused' | 'plain' | undefined;
}

const CONVERT_OPTIONS = namesOf<ConvertOptions>({ output: true, dtype: true, graph: true });

const SUPPORTED_MODEL_TYPES = ['camembert', 'roberta', 'xlm-roberta', 'bert'];

interface EncoderConfig {
  positions: 'padding-offset' | 'absolute';  // RoBERTa family | BERT
  hidden: number;
  heads: number;
  layers: number;
  intermediate: number;
  vocab: number;
  maxPositions: number;
  typeVocab: number;
  padId: number;
  eps: number;
}

function readConfig(modelDir: string): EncoderConfig {
  const config = readModelConfig(modelDir);
  const { file, settings: c } = config;
  const modelType = c.model_type;
  if (typeof modelType !== 'string' || !SUPPORTED_MODEL_TYPES.includes(modelType)) {
    throw new Error(`${file}: model_type ${JSON.stringify(modelType)} is not supported; expected one of ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  }
  if ((c.hidden_act ?? 'gelu') !== 'gelu') {
    throw new Error(`${file}: hidden_act ${JSON.stringify(c.hidden_act)} is not supported; expected "gelu" (erf)`);
  }
  // A decoder config makes Hugging Face's model mask attention causally: not a sentence encoder.
  if (c.is_decoder === true) throw new Error(`${file}: is_decoder is true (a causal decoder); camembed converts bidirectional encoders only`);
  if ((c.position_embedding_type === undefined ? 'absolute' : c.position_embedding_type) !== 'absolute') {
    throw new Error(`${file}: position_embedding_type ${JSON.stringify(c.position_embedding_type)} is not supported; expected "absolute"`);
  }
  const int = (key: IntegerSetting, fallback?: number): number => configInteger(config, key, fallback);
  const encoder: EncoderConfig = {
    positions: modelType === 'bert' ? 'absolute' : 'padding-offset',
    hidden: int('hidden_size'), heads: int('num_attention_heads'), layers: int('num_hidden_layers'),
    intermediate: int('intermediate_size'), vocab: int('vocab_size'), maxPositions: int('max_position_embeddings'),
    typeVocab: int('type_vocab_size', 2), padId: int('pad_token_id', 1), eps: Number(c.layer_norm_eps ?? 1e-12),  // HF's config defaults
  };
  if (typeof (c.layer_norm_eps ?? 0) !== 'number' || !Number.isFinite(encoder.eps) || encoder.eps < 0) {
    throw new Error(`${file}: layer_norm_eps must be a non-negative number, got ${JSON.stringify(c.layer_norm_eps)}`);
  }
  if (encoder.hidden % encoder.heads !== 0) {
    throw new Error(`${file}: hidden_size ${encoder.hidden} must be a multiple of num_attention_heads ${encoder.heads}`);
  }
  return encoder;
}

// HF checkpoints name tensors with or without the base-model prefix. With a prefix, tensors outside
// it are a task head (lm_head., classifier., ...), which AutoModel leaves unused too.
const PREFIXES = ['roberta.', 'camembert.', 'xlm_roberta.', 'bert.', ''];
// Tensors of a checkpoint that the encoder does not use (the pooler; an old position_ids buffer).
const UNUSED = [/^pooler\./, /^embeddings\.position_ids$/];

function expectedShapes(c: EncoderConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>([
    ['embeddings.word_embeddings.weight', [c.vocab, c.hidden]],
    ['embeddings.position_embeddings.weight', [c.maxPositions, c.hidden]],
    ['embeddings.token_type_embeddings.weight', [c.typeVocab, c.hidden]],
    ['embeddings.LayerNorm.weight', [c.hidden]],
    ['embeddings.LayerNorm.bias', [c.hidden]],
  ]);
  for (let l = 0; l < c.layers; l++) {
    const p = `encoder.layer.${l}.`;
    for (const proj of ['query', 'key', 'value']) {
      shapes.set(`${p}attention.self.${proj}.weight`, [c.hidden, c.hidden]);
      shapes.set(`${p}attention.self.${proj}.bias`, [c.hidden]);
    }
    shapes.set(`${p}attention.output.dense.weight`, [c.hidden, c.hidden]);
    shapes.set(`${p}attention.output.dense.bias`, [c.hidden]);
    shapes.set(`${p}attention.output.LayerNorm.weight`, [c.hidden]);
    shapes.set(`${p}attention.output.LayerNorm.bias`, [c.hidden]);
    shapes.set(`${p}intermediate.dense.weight`, [c.intermediate, c.hidden]);
    shapes.set(`${p}intermediate.dense.bias`, [c.intermediate]);
    shapes.set(`${p}output.dense.weight`, [c.hidden, c.intermediate]);
    shapes.set(`${p}output.dense.bias`, [c.hidden]);
    shapes.set(`${p}output.LayerNorm.weight`, [c.hidden]);
    shapes.set(`${p}output.LayerNorm.bias`, [c.hidden]);
  }
  return shapes;
}

// Maps each expected tensor name to its entry in the checkpoint; missing, extra or misshapen
// tensors are errors that name the tensor and the weights file.
function matchTensors(weightsPath: string, c: EncoderConfig): Map<string, TensorInfo> {
  const found = weightsPath.endsWith('.bin') ? readTorchCheckpointTensors(weightsPath) : readSafetensorsTensors(weightsPath);
  if (c.layers * 16 > found.size) {  // each layer has 16 tensors
    throw new Error(`${weightsPath}: config.json's num_hidden_layers ${c.layers} needs at least ${c.layers * 16} tensors; the weights hold ${found.size}`);
  }
  const shapes = expectedShapes(c);
  const prefix = PREFIXES.find((p) => found.has(`${p}embeddings.word_embeddings.weight`));
  if (prefix === undefined) throw new Error(`${weightsPath}: tensor 'embeddings.word_embeddings.weight' is missing`);
  const matched = new Map<string, TensorInfo>();
  const heads: string[] = [];
  for (const [name, info] of found) {
    if (!name.startsWith(prefix)) {
      heads.push(name);
      continue;
    }
    // Old BERT checkpoints call LayerNorm's parameters gamma and beta (Hugging Face renames them on load).
    const bare = name.slice(prefix.length).replace(/LayerNorm\.gamma$/, 'LayerNorm.weight').replace(/LayerNorm\.beta$/, 'LayerNorm.bias');
    const shape = shapes.get(bare);
    if (shape === undefined) {
      if (UNUSED.some((re) => re.test(bare))) continue;
      throw new Error(`${weightsPath}: unexpected tensor '${name}' (not part of a ${c.layers}-layer encoder)`);
    }
    if (info.shape.join(',') !== shape.join(',')) {
      throw new Error(`${weightsPath}: tensor '${name}' has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}] from config.json`);
    }
    if (!['F32', 'F16', 'BF16'].includes(info.dtype)) {
      throw new Error(`${weightsPath}: tensor '${name}' is ${info.dtype}, expected F32, F16 or BF16`);
    }
    matched.set(bare, info);
  }
  for (const name of shapes.keys()) {
    if (!matched.has(name)) throw new Error(`${weightsPath}: tensor '${prefix}${name}' is missing`);
  }
  if (heads.length > 0) {
    process.emitWarning(`${weightsPath}: ${heads.length} tensors outside the ${prefix.slice(0, -1)} encoder are not used ` +
      `(a task head: ${heads.slice(0, 3).join(', ')}${heads.length > 3 ? ', ...' : ''})`);
  }
  return matched;
}

// [rows, cols] row-major → [cols, rows]: nn.Linear stores [out, in]; MatMul wants [in, out].
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const dst = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
  }
  return dst;
}

const DATA_ALIGNMENT = 4096;  // page-aligned offsets let ONNX Runtime memory-map external data
const FLOAT16_MAX_ULP = 32;
// Hugging Face masks attention with the float type's lowest value (torch.finfo(dtype).min): a row
// whose keys are all masked then attends to all of them equally (-10000 would leave it unmasked).
const MASK_VALUE = { float32: -3.4028234663852886e38, float16: -FLOAT16_MAX };

class GraphBuilder {
  readonly nodes: NodeDef[] = [];
  readonly initializers: TensorDef[] = [];
  private dataOffset = 0;
  private counter = 0;

  constructor(private readonly dataFd: number, private readonly dataFile: string,
              private readonly location: string, readonly floatType: number) {}

  get maskValue(): number {
    return this.floatType === DataType.FLOAT16 ? MASK_VALUE.float16 : MASK_VALUE.float32;
  }

  // A weight tensor in the model's float type, appended to the external data file.
  weight(name: string, values: Float32Array, dims: number[]): string {
    if (this.floatType === DataType.FLOAT16) {
      const i = values.findIndex((v) => Math.abs(v) >= FLOAT16_MAX + FLOAT16_MAX_ULP / 2);  // rounds to infinity
      if (i >= 0) throw new RangeError(`weight ${name}[${i}] = ${values[i]} does not fit float16 (largest 65504): convert as float32`);
    }
    const typed = this.floatType === DataType.FLOAT16 ? float32ToFloat16Array(values) : values;
    const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
    const padding = (DATA_ALIGNMENT - (this.dataOffset % DATA_ALIGNMENT)) % DATA_ALIGNMENT;
    if (padding > 0) writeAllSync(this.dataFd, new Uint8Array(padding), this.dataFile);
    this.dataOffset += padding;
    writeAllSync(this.dataFd, bytes, this.dataFile);
    this.initializers.push({ name, dataType: this.floatType, dims,
      external: { location: this.location, offset: this.dataOffset, length: bytes.length } });
    this.dataOffset += bytes.length;
    return name;
  }

  // A small constant stored inline.
  int64(name: string, values: number[], dims: number[] = [values.length]): string {
    this.initializers.push({ name, dataType: DataType.INT64, dims, raw: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
    return name;
  }

  float(name: string, value: number): string {
    const raw = this.floatType === DataType.FLOAT16 ? float32ToFloat16Array(Float32Array.of(value)) : Float32Array.of(value);
    this.initializers.push({ name, dataType: this.floatType, dims: [], raw: new Uint8Array(raw.buffer) });
    return name;
  }

  node(opType: string, inputs: string[], attributes?: Record<string, AttributeValue>, domain?: string, output?: string): string {
    const out = output ?? `${opType}_${this.counter++}`;
    this.nodes.push({ opType, inputs, outputs: [out], name: out, attributes, domain });
    return out;
  }
}

const MS = 'com.microsoft';

/**
 * Where a model folder's converted graph goes unless told, and where Encoder.load looks for it: next to
 * the weights (onnx/model.onnx) for a folder of the user's; for a Hugging Face cache snapshot, in camembed's
 * cache (onnx/models--org--name/<commit>/model.onnx), so that the snapshot stays as huggingface_hub wrote
 * it (Python would take our graph for the repository's onnx/model.onnx) and a read-only Hub cache works.
 */
export function defaultGraphPath(modelDir: string): string {
  const snapshot = hubSnapshotOf(modelDir);
  if (snapshot === null) return path.join(modelDir, 'onnx', 'model.onnx');
  return path.join(camembedCacheDir(), 'onnx', snapshot.repo, snapshot.commit, 'model.onnx');
}

/** The Hugging Face cache snapshot folder `file` is in (or would be written in), at any depth; else null. */
function snapshotHolding(file: string): string | null {
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (hubSnapshotOf(dir) !== null) return dir;
  }
  return null;
}

/**
 * Why a conversion must not write `file` (a path with its links followed), a place in a Hugging Face
 * cache; else undefined.
 */
export function hubCacheRefusal(file: string): string | undefined {
  // A Hub snapshot's files link to blobs named by their hash, which other revisions share.
  if (hubBlobOf(file) !== null) {
    return `cannot write ${file}: it is a file of the Hugging Face cache (a blob its snapshots link to); convert into a folder of yours`;
  }
  // huggingface_hub (and Python) would take a file there for one of the repository's.
  const snapshot = snapshotHolding(file);
  if (snapshot === null) return undefined;
  return `cannot write ${file}: it is in ${snapshot}, a snapshot of the Hugging Face cache, which holds the repository's ` +
    "files only; leave out the output (a snapshot's graph then goes to camembed's cache, where Encoder.load finds it) or write into a folder of yours";
}

/**
 * Converts a folder's model.safetensors (or sharded safetensors, or pytorch_model.bin, read without
 * Python) of camembert, roberta, xlm-roberta or bert into an ONNX graph; resolves to the path written.
 */
export async function convertToOnnx(modelDir: string, options: ConvertOptions = {}): Promise<string> {
  requireString('modelDir', modelDir);
  requireObject('options', options, CONVERT_OPTIONS);
  const dtype = optionalOneOf('options.dtype', options.dtype, ['float32', 'float16'] as const) ?? 'float32';
  const graphKind = optionalOneOf('options.graph', options.graph, ['fused', 'plain'] as const) ?? 'fused';
  const outputOption = optionalString('options.output', options.output);
  const output = path.resolve(outputOption ?? defaultGraphPath(modelDir));
  // Found only at the graph's rename, a folder there left the data file and a record beside it.
  if (fs.statSync(output, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`${output} is a folder: the output is the ONNX file to write, e.g. ${path.join(output, 'model.onnx')}`);
  }
  const config = readConfig(modelDir);
  const weightsPath = weightsFileOf(modelDir);
  if (weightsPath === null) throw new Error(`model folder ${modelDir} has no weights: expected ${WEIGHT_FILES.join(' or ')}`);
  const tensors = matchTensors(weightsPath, config);

  // The graph, its data (found by ONNX Runtime by its name beside the graph's name) and camembed's
  // record are each written where their name leads through symbolic links, as index save and the
  // shell's `>` write: a link stays (it was replaced), and a graph and data file linked to another
  // disk get their files there.
  const dataName = `${output}.data`;
  const files = await Promise.all([output, dataName, `${output}${SOURCE_SUFFIX}`].map((f) => followLinks(f)));
  const [graphFile, dataFile, sourceFile] = files;
  for (const written of files) {
    // `--output model.safetensors --force` wrote the graph over the weights it was made from.
    const input = conversionInputAt(modelDir, written);
    if (input !== undefined) throw new Error(`cannot write ${written}: it is the model's ${input}, which the conversion reads`);
    const refusal = hubCacheRefusal(written);
    if (refusal !== undefined) throw new Error(refusal);
  }
  const tmpOutput = temporaryPath(graphFile);
  const tmpData = temporaryPath(dataFile);
  const tmpSource = temporaryPath(sourceFile);
  const createdDirs = files.map((f) => makeFolders(path.dirname(f)));  // removed again on failure, when empty
  for (const dir of new Set(files.map((f) => path.dirname(f)))) {
    await removeAbandonedTemporaries(dir, files.filter((f) => path.dirname(f) === dir).map((f) => path.basename(f)));
  }
  let dataFd = -1;
  let dataClosed = false;
  try {
    dataFd = fs.openSync(tmpData, 'w');  // inside: a full disk may refuse the file itself (btrfs, ZFS, no inodes left)
    const g = new GraphBuilder(dataFd, tmpData, path.basename(dataName), dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT);
    const build = graphKind === 'fused' ? buildFused : buildPlain;
    build(g, config, (name) => readTensorAsFloat32(tensors.get(name)!));
    fs.closeSync(dataFd);
    dataClosed = true;
    const model = encodeModel({
      irVersion: 8,
      opsets: [{ domain: '', version: 17 }, { domain: MS, version: 1 }],
      producerName: 'camembed',
      producerVersion: '0.1.0',
      graph: {
        name: `${graphKind}-encoder`,
        nodes: g.nodes,
        initializers: g.initializers,
        inputs: [
          { name: 'input_ids', elemType: DataType.INT64, shape: ['batch', 'sequence'] },
          { name: 'attention_mask', elemType: DataType.INT64, shape: ['batch', 'sequence'] },
        ],
        outputs: [{ name: 'last_hidden_state', elemType: g.floatType, shape: ['batch', 'sequence', config.hidden] }],
      },
    });
    fs.writeFileSync(tmpOutput, model);
    const relative = (f: string) => path.relative(modelDir, f);
    const source: GraphSource = {
      weights: relative(weightsPath), dtype, graph: graphKind,
      files: conversionInputs(modelDir).map((f) => ({ file: relative(f), ...fileStamp(f) })),
    };
    fs.writeFileSync(tmpSource, JSON.stringify(source));
    // The record last: in the other order, a process killed between the renames left a new record
    // vouching for the old graph. And first a record that matches no folder (files: null), with
    // this dtype and graph kind to convert again with: an older record of the same weights and
    // config (another dtype or graph kind) would vouch for its graph beside this data file.
    writeFileAtomic(sourceFile, JSON.stringify({ ...source, files: null }));
    fs.renameSync(tmpData, dataFile);
    fs.renameSync(tmpOutput, graphFile);
    fs.renameSync(tmpSource, sourceFile);
    return output;
  } catch (err) {
    if (dataFd >= 0 && !dataClosed) fs.closeSync(dataFd);
    for (const tmp of [tmpData, tmpOutput, tmpSource]) fs.rmSync(tmp, { force: true });
    files.forEach((f, i) => removeFoldersMade(path.dirname(f), createdDirs[i]));
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new Error(`disk full while writing ${output}: ${(err as Error).message}`);
    throw err;
  }
}

// Next to a converted graph, `<graph>.source.json` records what it came from: the weights file
// chosen and every file read (weights, shards, config.json; paths relative to the model folder, so
// a copied folder or another path to the same snapshot still matches) with size, modification time
// and sha256, and the conversion's dtype and graph kind.
const SOURCE_SUFFIX = '.source.json';
interface FileStamp { bytes: number; mtimeMs: number; sha256: string }
interface GraphSource {
  weights: string;
  files: ({ file: string } & FileStamp)[];
  dtype: 'float32' | 'float16';
  graph: 'fused' | 'plain';
}

// The whole file: a fine-tune may change a few tensors only (LoRA on query/value), which no sample
// of blocks is sure to see; sha256Of reads a 440 MB file in 0.26 s from the page cache (2-core VM,
// median of 5, 2026-11-27).
function sha256Of(file: string): string {
  const hash = crypto.createHash('sha256');
  const buffer = Buffer.alloc(8 * 1024 * 1024);
  const fd = fs.openSync(file, 'r');
  try {
    for (let n; (n = fs.readSync(fd, buffer, 0, buffer.length, null)) > 0;) hash.update(buffer.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

function fileStamp(file: string): FileStamp {
  const st = fs.statSync(file);
  return { bytes: st.size, mtimeMs: st.mtimeMs, sha256: sha256Of(file) };
}

/** The files a conversion of `modelDir` reads: the weights (every shard), then config.json. */
function conversionInputs(modelDir: string): string[] {
  return [...weightFilesOf(modelDir), path.join(modelDir, 'config.json')];
}

/**
 * Which of the files a conversion of `modelDir` reads `file` is (by device and inode: a link to it
 * too), relative to the folder; undefined when none (or `file` does not exist).
 */
export function conversionInputAt(modelDir: string, file: string): string | undefined {
  const st = fs.statSync(file, { throwIfNoEntry: false });
  if (st === undefined) return undefined;
  const input = conversionInputs(modelDir).find((f) => {
    const inputStat = fs.statSync(f, { throwIfNoEntry: false });
    return inputStat !== undefined && inputStat.dev === st.dev && inputStat.ino === st.ino;
  });
  return input === undefined ? undefined : path.relative(modelDir, input);
}

/**
 * What camembed recorded of the graph `graph` converted from the model in `modelDir`: whether that
 * folder would still give it (the same weights file chosen, every file read with the same bytes:
 * a new modification time costs one sha256, then is recorded), and the dtype and graph kind to
 * convert it again with. Null when camembed did not convert it (a model's own graph).
 */
export function convertedGraph(graph: string, modelDir: string): { current: boolean; dtype: 'float32' | 'float16'; graph: 'fused' | 'plain' } | null {
  const sourceFile = `${graph}${SOURCE_SUFFIX}`;
  let source: GraphSource;
  try {
    source = JSON.parse(fs.readFileSync(sourceFile, 'utf8')) as GraphSource;
  } catch {
    return null;
  }
  const chosen = weightsFileOf(modelDir);
  let touched = false;
  const unchanged = (f: { file: string } & FileStamp) => {
    const file = path.join(modelDir, String(f.file));
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (st === undefined || st.size !== f.bytes) return false;
    if (st.mtimeMs === f.mtimeMs) return true;
    if (sha256Of(file) !== f.sha256) return false;
    f.mtimeMs = st.mtimeMs;
    touched = true;
    return true;
  };
  const current = chosen !== null && path.relative(modelDir, chosen) === source.weights && Array.isArray(source.files) && source.files.every(unchanged);
  if (current && touched) {
    try {
      // Whole or not at all: a record cut short (a full disk, a kill) would read as no record,
      // and a graph without one is taken for the model's own and never converted again.
      writeFileAtomic(sourceFile, JSON.stringify(source));  // the next load skips the hash
    } catch {
      // a read-only or full folder: the hash is paid again next time
    }
  }
  return { current, dtype: source.dtype === 'float16' ? 'float16' : 'float32', graph: source.graph === 'plain' ? 'plain' : 'fused' };
}

type Load = (name: string) => Float32Array;

// RoBERTa family: position ids as in HF's create_position_ids_from_input_ids, a running count of
// the non-padding tokens, zero on padding tokens, offset by the padding id. A literal <pad> inside
// a text (attention mask 1) therefore gets the padding position too.
// BERT: 0, 1, ..., seq - 1 on every row.
function positionIds(g: GraphBuilder, c: EncoderConfig): string {
  if (c.positions === 'absolute') {
    const shape = g.node('Shape', ['input_ids']);
    const seq = g.node('Gather', [shape, g.int64('index_1', [1], [])]);
    const range = g.node('Range', [g.int64('zero', [0], []), seq, g.int64('one_step', [1], [])]);
    return g.node('Expand', [range, shape]);
  }
  const notPad = g.node('Cast', [g.node('Not', [g.node('Equal', ['input_ids', g.int64('pad_id', [c.padId], [])])])], { to: { i: DataType.INT64 } });
  const count = g.node('CumSum', [notPad, g.int64('axis_1', [1], [])]);
  return g.node('Add', [g.node('Mul', [count, notPad]), 'pad_id']);
}

function embeddings(g: GraphBuilder, c: EncoderConfig, load: Load): { words: string; positions: string; tokenType: string } {
  const words = g.node('Gather', [g.weight('word_embeddings', load('embeddings.word_embeddings.weight'), [c.vocab, c.hidden]), 'input_ids']);
  const positionTable = g.weight('position_embeddings', load('embeddings.position_embeddings.weight'), [c.maxPositions, c.hidden]);
  const positions = g.node('Gather', [positionTable, positionIds(g, c)]);
  // token_type_ids are all 0 for these models: row 0 is a constant bias.
  const tokenType = g.weight('token_type_embedding_0', load('embeddings.token_type_embeddings.weight').subarray(0, c.hidden), [c.hidden]);
  return { words, positions, tokenType };
}

function linearWeight(g: GraphBuilder, load: Load, name: string, rows: number, cols: number): string {
  return g.weight(`${name}.weight_t`, transpose(load(`${name}.weight`), rows, cols), [cols, rows]);
}

function buildFused(g: GraphBuilder, c: EncoderConfig, load: Load): void {
  const H = c.hidden;
  const eps = { epsilon: { f: c.eps } };
  const e = embeddings(g, c, load);
  let h = g.node('SkipLayerNormalization', [e.words, e.positions,
    g.weight('embeddings.LayerNorm.weight', load('embeddings.LayerNorm.weight'), [H]),
    g.weight('embeddings.LayerNorm.bias', load('embeddings.LayerNorm.bias'), [H]), e.tokenType], eps, MS);
  // Attention's raw key padding mask: int32 [batch, seq], 0 = ignore the key.
  const mask = g.node('Cast', ['attention_mask'], { to: { i: DataType.INT32 } });
  for (let l = 0; l < c.layers; l++) {
    const p = `encoder.layer.${l}.`;
    // Packed projection [H, 3H]: columns are Q | K | V, each the transposed nn.Linear weight.
    const qkv = new Float32Array(H * 3 * H);
    const bias = new Float32Array(3 * H);
    ['query', 'key', 'value'].forEach((proj, k) => {
      const w = load(`${p}attention.self.${proj}.weight`);
      for (let o = 0; o < H; o++) {
        for (let i = 0; i < H; i++) qkv[i * 3 * H + k * H + o] = w[o * H + i];
      }
      bias.set(load(`${p}attention.self.${proj}.bias`), k * H);
    });
    const attention = g.node('Attention', [h, g.weight(`${p}attention.qkv.weight`, qkv, [H, 3 * H]),
      g.weight(`${p}attention.qkv.bias`, bias, [3 * H]), mask], { num_heads: { i: c.heads }, mask_filter_value: { f: g.maskValue } }, MS);
    const projected = g.node('MatMul', [attention, linearWeight(g, load, `${p}attention.output.dense`, H, H)]);
    h = g.node('SkipLayerNormalization', [projected, h,
      g.weight(`${p}attention.output.LayerNorm.weight`, load(`${p}attention.output.LayerNorm.weight`), [H]),
      g.weight(`${p}attention.output.LayerNorm.bias`, load(`${p}attention.output.LayerNorm.bias`), [H]),
      g.weight(`${p}attention.output.dense.bias`, load(`${p}attention.output.dense.bias`), [H])], eps, MS);
    const inner = g.node('MatMul', [h, linearWeight(g, load, `${p}intermediate.dense`, c.intermediate, H)]);
    const act = g.node('BiasGelu', [inner, g.weight(`${p}intermediate.dense.bias`, load(`${p}intermediate.dense.bias`), [c.intermediate])], undefined, MS);
    const out = g.node('MatMul', [act, linearWeight(g, load, `${p}output.dense`, H, c.intermediate)]);
    h = g.node('SkipLayerNormalization', [out, h,
      g.weight(`${p}output.LayerNorm.weight`, load(`${p}output.LayerNorm.weight`), [H]),
      g.weight(`${p}output.LayerNorm.bias`, load(`${p}output.LayerNorm.bias`), [H]),
      g.weight(`${p}output.dense.bias`, load(`${p}output.dense.bias`), [H])], eps, MS,
      l === c.layers - 1 ? 'last_hidden_state' : undefined);
  }
}

function buildPlain(g: GraphBuilder, c: EncoderConfig, load: Load): void {
  const H = c.hidden, D = H / c.heads;
  const layerNorm = (x: string, name: string, output?: string) => g.node('LayerNormalization',
    [x, g.weight(`${name}.weight`, load(`${name}.weight`), [H]), g.weight(`${name}.bias`, load(`${name}.bias`), [H])],
    { axis: { i: -1 }, epsilon: { f: c.eps } }, undefined, output);
  const linear = (x: string, name: string, rows: number, cols: number) =>
    g.node('Add', [g.node('MatMul', [x, linearWeight(g, load, name, rows, cols)]), g.weight(`${name}.bias`, load(`${name}.bias`), [rows])]);
  const e = embeddings(g, c, load);
  let h = layerNorm(g.node('Add', [g.node('Add', [e.words, e.positions]), e.tokenType]), 'embeddings.LayerNorm');
  // Additive key mask [batch, 1, 1, seq]: 0 where attended, the type's lowest value where padded.
  const maskFloat = g.node('Cast', ['attention_mask'], { to: { i: g.floatType } });
  const one = g.float('one', 1);
  const maskBias = g.node('Unsqueeze', [g.node('Mul', [g.node('Sub', [one, maskFloat]), g.float('mask_value', g.maskValue)]), g.int64('axes_1_2', [1, 2])]);
  const headShape = g.int64('head_shape', [0, 0, c.heads, D]);
  const hiddenShape = g.int64('hidden_shape', [0, 0, H]);
  const scale = g.float('attention_scale', 1 / Math.sqrt(D));
  const sqrt2 = g.float('sqrt2', Math.SQRT2), half = g.float('half', 0.5);
  const heads = (x: string, perm: number[]) => g.node('Transpose', [g.node('Reshape', [x, headShape])], { perm: { ints: perm } });
  for (let l = 0; l < c.layers; l++) {
    const p = `encoder.layer.${l}.`;
    const q = heads(linear(h, `${p}attention.self.query`, H, H), [0, 2, 1, 3]);
    const k = heads(linear(h, `${p}attention.self.key`, H, H), [0, 2, 3, 1]);
    const v = heads(linear(h, `${p}attention.self.value`, H, H), [0, 2, 1, 3]);
    const scores = g.node('Add', [g.node('Mul', [g.node('MatMul', [q, k]), scale]), maskBias]);
    const context = g.node('MatMul', [g.node('Softmax', [scores], { axis: { i: -1 } }), v]);
    const merged = g.node('Reshape', [g.node('Transpose', [context], { perm: { ints: [0, 2, 1, 3] } }), hiddenShape]);
    h = layerNorm(g.node('Add', [linear(merged, `${p}attention.output.dense`, H, H), h]), `${p}attention.output.LayerNorm`);
    const x = linear(h, `${p}intermediate.dense`, c.intermediate, H);
    const gelu = g.node('Mul', [g.node('Mul', [x, half]), g.node('Add', [g.node('Erf', [g.node('Div', [x, sqrt2])]), one])]);
    h = layerNorm(g.node('Add', [linear(gelu, `${p}output.dense`, H, c.intermediate), h]), `${p}output.LayerNorm`,
      l === c.layers - 1 ? 'last_hidden_state' : undefined);
  }
}

// A complete sentence-transformers folder with seeded random CamemBERT weights: it costs exactly
// what a real model of the same shape costs to run, so tests and benchmarks need no download.
import * as fs from 'fs';
import * as path from 'path';
import { makeFolders, removeFoldersMade } from '../atomic-file';
import { namesOf, optionalPositiveInteger, requireInteger, requireObject, requirePositiveInteger, requireString } from '../validate';
import { readJsonFile } from '../json-file';
import { tokenizerSpecialTokens } from '../tokenizer';
import { writeSafetensors } from './safetensors';

/** Options of makeRandomModel: the model's shape (CamemBERT-base: 12 layers, 768 hidden, 12 heads, 3072 intermediate). */
export interface RandomModelOptions {
  /** Transformer layers. */
  layers: number;
  /** Hidden size: the vectors' dim (a multiple of `heads`). */
  hidden: number;
  /** Attention heads. */
  heads: number;
  /** Feed-forward size. */
  intermediate: number;
  /** Folder whose tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) is copied. */
  tokenizerDir: string;
  /** Folder to write the model into. */
  outDir: string;
  /** Seed of the random weights (default 0): the same seed gives the same files. */
  seed?: number | undefined;
  /** Position table size (default 514, CamemBERT's). */
  maxPositions?: number | undefined;
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'sentencepiece.bpe.model'];
const MAX_SEQ_LENGTH = 128;
const INIT_STD = 0.02;  // HF's initializer_range for RoBERTa-family models
/** The generator takes 32 bits: seeds are 0 to 2^32 - 1 (2^32 would give seed 0's weights, -1 seed 2^32 - 1's). */
export const MAX_SEED = 2 ** 32 - 1;
/** CamemBERT's position table: 512 tokens after the padding id 1 (RoBERTa's positions start at 2). */
export const DEFAULT_MAX_POSITIONS = 514;

// mulberry32 + Box-Muller: standard normal values, reproducible from the seed.
function normalGenerator(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const v = spare;
      spare = null;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(1 - uniform()));
    const theta = 2 * Math.PI * uniform();
    spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  };
}

interface TokenizerFacts { vocab: number; padId: number; bosId: number; eosId: number }

/** A tokenizer whose files name no pad token: no model can be made around it (a usage error for the command). */
export class NoPadTokenError extends Error {}

/**
 * What is wrong with a position table of `maxPositions` (null: nothing), for a message naming the option: RoBERTa's
 * positions start after the padding id, and <s> and </s> need two (Encoder.load refuses less whatever its maxLength).
 */
export function maxPositionsProblem(maxPositions: number, padId: number): string | null {
  return maxPositions < padId + 3 ? `must be at least ${padId + 3} (positions start after the padding id ${padId}, ` +
    `then <s> and </s>), got ${maxPositions}` : null;
}

/**
 * The vocabulary size and special tokens of the tokenizer in `dir`, as its own files give them: the pad token they
 * name (none is an error: the model's padding row and position offset are the pad token's, which Encoder.load pads
 * with), `<s>` and `</s>` as its post-processor adds them.
 */
export function tokenizerFacts(dir: string): TokenizerFacts {
  const file = path.join(dir, 'tokenizer.json');
  const t = readJsonFile(file) as { model?: { vocab?: unknown }; added_tokens?: { id: number }[] };
  const vocab = t.model?.vocab;
  let size = Array.isArray(vocab) ? vocab.length : 0;
  if (!Array.isArray(vocab) && vocab !== null && typeof vocab === 'object') {
    // A loop: Math.max(...ids) overflowed the call stack past ~120,000 tokens (large BPE vocabularies).
    for (const id of Object.values(vocab as Record<string, number>)) size = Math.max(size, id + 1);
  }
  for (const a of t.added_tokens ?? []) size = Math.max(size, a.id + 1);
  if (size === 0) throw new Error(`tokenizer ${file} has no vocabulary`);
  const { padId, startId, endId } = tokenizerSpecialTokens(dir);
  if (padId === null) {
    throw new NoPadTokenError(`${dir}: the tokenizer names no pad token (tokenizer_config.json's or special_tokens_map.json's pad_token, ` +
      'or tokenizer.json\'s padding): a model made around it needs one, its padding row');
  }
  return { vocab: size, padId, bosId: startId, eosId: endId };
}

const RANDOM_MODEL_OPTIONS = namesOf<RandomModelOptions>({
  layers: true, hidden: true, heads: true, intermediate: true, tokenizerDir: true, outDir: true, seed: true, maxPositions: true,
});

/** Writes a complete sentence-transformers folder (safetensors weights, seeded random) of the given shape. */
export async function makeRandomModel(options: RandomModelOptions): Promise<void> {
  requireObject('options', options, RANDOM_MODEL_OPTIONS);
  const layers = requirePositiveInteger('options.layers', options.layers);
  const hidden = requirePositiveInteger('options.hidden', options.hidden);
  const heads = requirePositiveInteger('options.heads', options.heads);
  const intermediate = requirePositiveInteger('options.intermediate', options.intermediate);
  const maxPositions = optionalPositiveInteger('options.maxPositions', options.maxPositions) ?? DEFAULT_MAX_POSITIONS;
  const seed = options.seed === undefined ? 0 : requireInteger('options.seed', options.seed, -Infinity);
  if (seed < 0 || seed > MAX_SEED) throw new RangeError(`options.seed must be an integer from 0 to ${MAX_SEED} (the generator takes 32 bits), got ${seed}`);
  if (hidden % heads !== 0) throw new RangeError(`options.hidden (${hidden}) must be a multiple of options.heads (${heads})`);
  const out = requireString('options.outDir', options.outDir);
  const tokenizerJson = path.join(requireString('options.tokenizerDir', options.tokenizerDir), 'tokenizer.json');
  if (!fs.existsSync(tokenizerJson)) throw new Error(`tokenizerDir must hold tokenizer.json; ${tokenizerJson} is missing`);
  const tok = tokenizerFacts(options.tokenizerDir);
  const problem = maxPositionsProblem(maxPositions, tok.padId);
  if (problem !== null) throw new RangeError(`options.maxPositions ${problem}`);

  // Tensor names and shapes of HF's CamembertModel state dict (with its unused pooler), listed as
  // the writer reads them: it stops at the first it refuses (an absurd layer count is never listed whole).
  function* tensors(): Generator<{ name: string; shape: number[] }> {
    yield { name: 'embeddings.word_embeddings.weight', shape: [tok.vocab, hidden] };
    yield { name: 'embeddings.position_embeddings.weight', shape: [maxPositions, hidden] };
    yield { name: 'embeddings.token_type_embeddings.weight', shape: [1, hidden] };
    yield { name: 'embeddings.LayerNorm.weight', shape: [hidden] };
    yield { name: 'embeddings.LayerNorm.bias', shape: [hidden] };
    for (let l = 0; l < layers; l++) {
      const p = `encoder.layer.${l}.`;
      for (const proj of ['query', 'key', 'value']) {
        yield { name: `${p}attention.self.${proj}.weight`, shape: [hidden, hidden] };
        yield { name: `${p}attention.self.${proj}.bias`, shape: [hidden] };
      }
      yield* [
        { name: `${p}attention.output.dense.weight`, shape: [hidden, hidden] }, { name: `${p}attention.output.dense.bias`, shape: [hidden] },
        { name: `${p}attention.output.LayerNorm.weight`, shape: [hidden] }, { name: `${p}attention.output.LayerNorm.bias`, shape: [hidden] },
        { name: `${p}intermediate.dense.weight`, shape: [intermediate, hidden] }, { name: `${p}intermediate.dense.bias`, shape: [intermediate] },
        { name: `${p}output.dense.weight`, shape: [hidden, intermediate] }, { name: `${p}output.dense.bias`, shape: [hidden] },
        { name: `${p}output.LayerNorm.weight`, shape: [hidden] }, { name: `${p}output.LayerNorm.bias`, shape: [hidden] },
      ];
    }
    yield { name: 'pooler.dense.weight', shape: [hidden, hidden] };
    yield { name: 'pooler.dense.bias', shape: [hidden] };
  }

  // The weights first: a size the writer refuses, or a failure writing them (memory, disk), leaves
  // no folder without weights (those this call made are removed) and an existing one as it was.
  const made = makeFolders(out);
  const normal = normalGenerator(seed);
  try {
    writeSafetensors(path.join(out, 'model.safetensors'), tensors(), (name, shape) => {
      const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
      // LayerNorm scales near 1, everything else small as in a trained checkpoint.
      const isScale = name.endsWith('LayerNorm.weight');
      for (let i = 0; i < values.length; i++) values[i] = (isScale ? 1 : 0) + INIT_STD * normal();
      if (name === 'embeddings.word_embeddings.weight') values.fill(0, tok.padId * hidden, (tok.padId + 1) * hidden);  // HF zeroes the padding row
      return values;
    });
  } catch (err) {
    removeFoldersMade(out, made);
    throw err;
  }

  makeFolders(path.join(out, '1_Pooling'));
  for (const f of TOKENIZER_FILES) {
    const src = path.join(options.tokenizerDir, f);
    if (!fs.existsSync(src)) continue;
    fs.copyFileSync(src, path.join(out, f));
    fs.chmodSync(path.join(out, f), 0o644);  // the source may be read-only; the copy is ours
  }
  const writeJson = (file: string, value: unknown) => fs.writeFileSync(path.join(out, file), JSON.stringify(value, null, 2) + '\n');
  // model_type camembert whatever the tokenizer: the weights are a CamembertModel's (one token type, RoBERTa's positions
  // after the padding id, as maxSeqLength counts them); 'bert' would have the converter take positions from 0.
  writeJson('config.json', {
    architectures: ['CamembertModel'], model_type: 'camembert', attention_probs_dropout_prob: 0.1,
    bos_token_id: tok.bosId, eos_token_id: tok.eosId, pad_token_id: tok.padId, hidden_act: 'gelu',
    hidden_dropout_prob: 0.1, hidden_size: hidden, initializer_range: INIT_STD, intermediate_size: intermediate,
    layer_norm_eps: 1e-5, max_position_embeddings: maxPositions, num_attention_heads: heads,
    num_hidden_layers: layers, position_embedding_type: 'absolute', type_vocab_size: 1, vocab_size: tok.vocab,
    torch_dtype: 'float32',
  });
  writeJson('modules.json', [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
  ]);
  // As many tokens as the position table holds, up to 128: the folder loads with Encoder.load's defaults.
  const maxSeqLength = Math.min(MAX_SEQ_LENGTH, maxPositions - tok.padId - 1);
  writeJson('sentence_bert_config.json', { max_seq_length: maxSeqLength, do_lower_case: false });
  writeJson('config_sentence_transformers.json', { prompts: {}, default_prompt_name: null, similarity_fn_name: 'cosine' });
  writeJson('1_Pooling/config.json', {
    word_embedding_dimension: hidden, pooling_mode_cls_token: false, pooling_mode_mean_tokens: true,
    pooling_mode_max_tokens: false, pooling_mode_mean_sqrt_len_tokens: false,
    pooling_mode_weightedmean_tokens: false, pooling_mode_lasttoken: false, include_prompt: true,
  });
}

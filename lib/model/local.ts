// What a local sentence-transformers folder holds: the ONNX graph and/or the safetensors weights.
import * as fs from 'fs';
import * as path from 'path';
import { readJsonFile } from '../json-file';
import { externalDataLocations } from './onnx-reader';

/** A model found by resolveModel. */
export interface ResolvedModel {
  /** The local folder (a snapshot folder when it came from the Hub cache). */
  dir: string;
  /** onnx/model.onnx or model.onnx when present, else null. */
  onnxPath: string | null;
  /** model.safetensors, model.safetensors.index.json or pytorch_model.bin when present, else null. */
  weightsPath: string | null;
}

// The names sentence-transformers' Transformer module reads its settings from, first found wins.
export const ST_CONFIG_FILES = ['sentence_bert_config.json', 'sentence_roberta_config.json', 'sentence_distilbert_config.json',
  'sentence_camembert_config.json', 'sentence_albert_config.json', 'sentence_xlm-roberta_config.json', 'sentence_xlnet_config.json'];
export const POOLING_MODULE = 'sentence_transformers.models.Pooling';
// The settings and tokenizer files of any model folder, as a Hub download fetches them; modules.json makes it a
// sentence-transformers folder, whose files (PROMPTS_FILE, the first of ST_CONFIG_FILES, the pooling configs
// modules.json names) are read, and fetched, only then.
export const REQUIRED_FILES = ['config.json', 'tokenizer.json'];
export const OPTIONAL_FILES = ['tokenizer_config.json', 'special_tokens_map.json', 'modules.json'];
export const PROMPTS_FILE = 'config_sentence_transformers.json';

const ONNX_FILES = ['onnx/model.onnx', 'model.onnx'];
export const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin'];

function firstExisting(dir: string, names: readonly string[]): string | null {
  for (const name of names) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return file;
  }
  return null;
}

/** The weights file a folder's model is read from (the first of WEIGHT_FILES there), or null. */
export function weightsFileOf(dir: string): string | null {
  return firstExisting(dir, WEIGHT_FILES);
}

/** The weights file a folder's model is read from and, for a sharded index, the shards it names; none without weights. */
export function weightFilesOf(dir: string): string[] {
  const weights = weightsFileOf(dir);
  if (weights === null) return [];
  if (!weights.endsWith('.index.json')) return [weights];
  const map = (readJsonFile(weights).weight_map ?? {}) as Record<string, unknown>;
  return [weights, ...new Set(Object.values(map).map((shard) => path.join(dir, String(shard))))];
}

/**
 * The files a model folder's model is made of (those there may be fewer): what loading it reads, its
 * settings, tokenizer, weights (every shard) and ONNX graphs with their external data. An output
 * written over one of them destroys the model.
 */
export function modelFiles(dir: string): string[] {
  const graphs = ONNX_FILES.map((f) => path.join(dir, f)).filter((f) => fs.existsSync(f));
  return [
    ...[...REQUIRED_FILES, ...OPTIONAL_FILES, PROMPTS_FILE, '1_Pooling/config.json', ...ST_CONFIG_FILES].map((f) => path.join(dir, f)),
    ...weightFilesOf(dir),
    ...graphs.flatMap((graph) => [graph, ...externalDataLocations(graph).map((location) => path.join(path.dirname(graph), location))]),
  ];
}

export function describeLocalModel(dir: string): ResolvedModel {
  const resolved = path.resolve(dir);
  if (!fs.existsSync(resolved)) throw new Error(`model folder ${resolved} does not exist`);
  if (!fs.statSync(resolved).isDirectory()) {
    throw new Error(`${resolved} is a file: pass the model's folder (${path.dirname(resolved)}?), ` +
      'the sentence-transformers folder that holds config.json');
  }
  const model = {
    dir: resolved,
    onnxPath: firstExisting(resolved, ONNX_FILES),
    weightsPath: weightsFileOf(resolved),
  };
  if (model.onnxPath === null && model.weightsPath === null) {
    throw new Error(`model folder ${resolved} holds no weights: expected one of ` +
      `${[...ONNX_FILES, ...WEIGHT_FILES].join(', ')}`);
  }
  return model;
}

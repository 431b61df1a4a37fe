// What a local sentence-transformers folder holds: the ONNX graph and/or the safetensors weights.
import * as fs from 'fs';
import * as path from 'path';

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

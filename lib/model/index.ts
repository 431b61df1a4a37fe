// The model pipeline: find a model (local folder or Hugging Face Hub id, through the standard
// HF cache), convert safetensors weights to an ONNX graph, and make random-weight models.
import * as fs from 'fs';
import { describeLocalModel, ResolvedModel } from './local';
import { resolveHubModel, HubOptions, looksLikeHubId } from './hub';

export { ResolvedModel } from './local';
export { convertToOnnx, ConvertOptions } from './convert';
export { makeRandomModel, RandomModelOptions } from './random-model';

export type ResolveOptions = HubOptions;

// `source` is a local folder, or a Hub id 'org/name' when no such folder exists.
export async function resolveModel(source: string, options: ResolveOptions = {}): Promise<ResolvedModel> {
  if (typeof source !== 'string' || source.length === 0) {
    throw new TypeError(`source must be a model folder or a Hub id 'org/name', got ${JSON.stringify(source)}`);
  }
  if (fs.existsSync(source)) return describeLocalModel(source);
  if (!looksLikeHubId(source)) {
    throw new Error(`model ${JSON.stringify(source)} is neither an existing folder nor a Hub id 'org/name'`);
  }
  return resolveHubModel(source, options);
}

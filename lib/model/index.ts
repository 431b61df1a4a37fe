// The model pipeline: find a model (local folder or Hugging Face Hub id, through the standard
// HF cache), convert safetensors or PyTorch weights to an ONNX graph, and make random-weight models.
import * as fs from 'fs';
import { describeValue, namesOf, optionalAbortSignal, optionalBoolean, optionalFunction, optionalString, requireInteger, requireObject, typeName } from '../validate';
import { describeLocalModel, ResolvedModel } from './local';
import { HubError, resolveHubModel, ResolveOptions, looksLikeHubId } from './hub';

export type { ResolvedModel } from './local';
export { conversionInputAt, convertedGraph, convertToOnnx, defaultGraphPath, hubCacheRefusal } from './convert';
export type { ConvertOptions } from './convert';
export { makeRandomModel } from './random-model';
export type { RandomModelOptions } from './random-model';
export { defaultCacheDir, HubError } from './hub';
export { ProxyError } from './http-request';

export type { DownloadProgress, ResolveOptions } from './hub';
const RESOLVE_OPTIONS = namesOf<ResolveOptions>({
  revision: true, cacheDir: true, offline: true, onProgress: true, endpoint: true, token: true, retries: true, retryDelayMs: true, signal: true,
});

/** The types of resolveModel's options (revision's form is checked where it is used). */
function checkResolveOptions(options: ResolveOptions): void {
  // '' would be the current folder: the Hub cache in whatever folder the process runs (Encoder.load
  // refuses it too); an endpoint '' would make every URL relative. A token '' means no token given.
  optionalString('options.cacheDir', options.cacheDir);
  optionalString('options.endpoint', options.endpoint);
  for (const key of ['revision', 'token'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'string') throw new TypeError(`options.${key} must be a string, got ${typeName(options[key])}`);
  }
  optionalBoolean('options.offline', options.offline, false);
  optionalFunction('options.onProgress', options.onProgress);
  if (options.retries !== undefined) requireInteger('options.retries', options.retries, 0);
  const delay = options.retryDelayMs;
  if (delay !== undefined) {
    if (typeof delay !== 'number') throw new TypeError(`options.retryDelayMs must be a number of milliseconds, got ${typeName(delay)}`);
    if (!(Number.isFinite(delay) && delay >= 0)) throw new RangeError(`options.retryDelayMs must be >= 0 and finite, got ${delay}`);
  }
}

/** `source` of resolveModel and Encoder.load: a non-empty string (an empty one is shown as "", e.g. an empty env variable). */
export function requireModelSource(source: unknown): asserts source is string {
  if (typeof source !== 'string' || source.length === 0) {
    throw new TypeError(`source must be a model folder or a Hub id 'org/name', got ${describeValue(source)}`);
  }
}

/**
 * Finds a sentence-transformers model: `source` is a local folder, or a Hub id ('org/name', or a
 * legacy 'name') when no such folder exists, downloaded into the Hub cache (resumable, hash-checked)
 * unless already there. Rejects with a HubError for the Hub's refusals (err.status: 401, 404...).
 */
export async function resolveModel(source: string, options: ResolveOptions = {}): Promise<ResolvedModel> {
  requireModelSource(source);
  requireObject('options', options, RESOLVE_OPTIONS);
  checkResolveOptions(options);
  optionalAbortSignal('options.signal', options.signal)?.throwIfAborted();
  if (fs.existsSync(source)) {
    // A folder has no revisions: a pinned revision must not be dropped without a word.
    if (options.revision !== undefined) throw new TypeError(`options.revision is for Hub ids, but ${source} is a folder here`);
    return describeLocalModel(source);
  }
  if (!looksLikeHubId(source)) {
    throw new Error(`model ${JSON.stringify(source)} is neither an existing folder nor a Hub id 'org/name'`);
  }
  try {
    return await resolveHubModel(source, options);
  } catch (err) {
    // A mistyped folder name is a valid Hub id too: say that both were tried.
    if (err instanceof HubError && (err.status === 401 || err.status === 404)) err.message += `; there is no folder ${source} here either`;
    throw err;
  }
}

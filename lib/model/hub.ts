// Hugging Face Hub downloads into the standard HF cache, shared with Python's huggingface_hub.
// Cache layout (https://huggingface.co/docs/hub/local-cache and huggingface_hub's "Understand
// caching" guide):
//   <cache>/models--<org>--<name>/blobs/<etag>            file contents, named by their ETag
//                                                         (sha256 for LFS files, git blob sha1 otherwise)
//   <cache>/models--<org>--<name>/snapshots/<commit>/<file> relative symlink to ../../blobs/<etag>
//   <cache>/models--<org>--<name>/refs/<revision>         the commit a branch or tag pointed to
//   <cache>/models--<org>--<name>/.no_exist/<commit>/<file> empty marker: the file is not in the repo
//   <cache>/.locks/models--<org>--<name>/<etag>.lock      flock held while that blob downloads
// <cache> is $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
// ~/.cache/huggingface/hub (~ and $VARS expanded), as huggingface_hub's constants.py reads them.
// Protocol facts: GET/HEAD <endpoint>/<id>/resolve/<revision>/<file>; the answer carries
// X-Repo-Commit, ETag, and for LFS files a redirect to a CDN with X-Linked-Etag / X-Linked-Size
// describing the real file. Partial downloads live in blobs/<etag>.incomplete and resume with Range.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { watchAbort } from '../abort';
import { tryLockDescriptor } from '../lock-file';
import { createProgressBar } from '../progress';
import { destroyOnAbort, ProxyError, request, Response } from './http-request';
import { makeFolders, removeAbandonedTemporaries, replaceAtomically, writeFileAtomic } from '../atomic-file';
import { externalDataLocations } from './onnx-reader';
import { describeLocalModel, OPTIONAL_FILES, POOLING_MODULE, PROMPTS_FILE, REQUIRED_FILES, ResolvedModel, ST_CONFIG_FILES } from './local';
import { readJsonValue } from '../json-file';
import { counted } from '../validate';

/** What resolveModel's `onProgress` is told as a file downloads. */
export interface DownloadProgress {
  /** The file's path in the repository, e.g. 'model.safetensors'. */
  file: string;
  /** Bytes of it downloaded so far (a resumed download counts its earlier part). */
  bytes: number;
  /** Its size in bytes, or null when the Hub did not say. */
  totalBytes: number | null;
}

/** Options of resolveModel (Hub ids; a local folder takes none but `signal`). */
export interface ResolveOptions {
  /** Branch, tag or commit hash (default 'main'); pin a commit in production. */
  revision?: string | undefined;
  /** The Hub cache (default defaultCacheDir(): $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub, as Python's). */
  cacheDir?: string | undefined;
  /** true: use the cache only (default false; also when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set true). */
  offline?: boolean | undefined;
  /** Called as each file downloads. */
  onProgress?: ((progress: DownloadProgress) => void) | undefined;
  /** The Hub's URL (default $HF_ENDPOINT or https://huggingface.co). */
  endpoint?: string | undefined;
  /** Access token, sent to the endpoint only (default $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN or the file `hf auth login` writes). */
  token?: string | undefined;
  /** Extra attempts after a network error, a 5xx or a 429 (default 4). */
  retries?: number | undefined;
  /** First backoff delay in milliseconds, doubled each retry up to 60 s (default 500). */
  retryDelayMs?: number | undefined;
  /**
   * Aborts the request in progress (or a received file's checksum) and rejects with signal.reason;
   * a partial download stays in blobs/<etag>.incomplete, to resume from, as after a cut connection.
   */
  signal?: AbortSignal | undefined;
}

// Files of a model repo (lib/model/local.ts); all but config.json and tokenizer.json may be absent. A sentence-transformers
// repo's (one with modules.json) settings file is the first of ST_CONFIG_FILES it has, and its pooling config the one in
// the folder modules.json names (1_Pooling in a repo sentence-transformers saved). An absent file is remembered as
// huggingface_hub remembers it (file_download.py, _get_metadata_or_catch_error): an empty .no_exist/<commit>/<file>.
// Weights, in order of preference. ONNX files are fetched only when a repo has no weights the
// converter reads (safetensors, else a PyTorch checkpoint): its fused graph is faster than a
// generic export.
const WEIGHT_CHOICES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'onnx/model.onnx', 'model.onnx'];

// huggingface_hub's validate_repo_id: 'name' or 'namespace/name' (one-part ids are the legacy
// models the Hub redirects, e.g. 'camembert-base'), of letters, digits, '-', '_', '.', the name at
// most 96 characters; no '--' or '..'; no part starting or ending with '-' or '.'; not ending in '.git'.
export function looksLikeHubId(source: string): boolean {
  const part = '[A-Za-z0-9_](?:[\\w.-]*[A-Za-z0-9_])?';
  return new RegExp(`^(?:${part}/)?${part}$`).test(source) && source.split('/').pop()!.length <= 96 &&
    !/--|\.\./.test(source) && !source.endsWith('.git');
}

// A leading ~ and $VAR / ${VAR} expanded, as Python's os.path.expanduser and expandvars do
// (an unset variable is left as written).
export function expandPath(p: string): string {
  const home = p === '~' || p.startsWith('~/') ? os.homedir() + p.slice(1) : p;
  return home.replace(/\$(\w+)|\$\{(\w+)\}/g, (whole, a, b) => process.env[a ?? b] ?? whole);
}

function hfHome(): string {
  return expandPath(process.env.HF_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface'));
}

/** The Hugging Face Hub cache Python uses: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function defaultCacheDir(): string {
  return expandPath(process.env.HF_HUB_CACHE || process.env.HUGGINGFACE_HUB_CACHE || path.join(hfHome(), 'hub'));
}

/** camembed's own cache: $CAMEMBED_CACHE, else $XDG_CACHE_HOME/camembed, else ~/.cache/camembed (~ and $VARS expanded). */
export function camembedCacheDir(): string {
  return expandPath(process.env.CAMEMBED_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'camembed'));
}

const isTrue = (value: string | undefined) => ['1', 'true', 'yes', 'on'].includes((value ?? '').toLowerCase());

// huggingface_hub's token lookup: options.token, HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the file
// `hf auth login` writes ($HF_TOKEN_PATH, default $HF_HOME/token); surrounding whitespace dropped,
// empty = none.
function findToken(given: string | undefined): string | undefined {
  const file = expandPath(process.env.HF_TOKEN_PATH ?? path.join(hfHome(), 'token'));
  const sources: [string, () => string | undefined][] = [['options.token', () => given], ['HF_TOKEN', () => process.env.HF_TOKEN],
    ['HUGGING_FACE_HUB_TOKEN', () => process.env.HUGGING_FACE_HUB_TOKEN], [`the token file ${file}`, () => readIfExists(file)]];
  for (const [from, read] of sources) {
    const token = read()?.trim();
    if (!token) continue;
    // A character an HTTP header cannot carry (a zero-width space pasted with the token, a line
    // break inside it) failed every request, which was retried and reported as a network failure.
    const bad = token.search(/[^\t\x20-\x7e\x80-\xff]/);
    if (bad >= 0) {
      const code = token.codePointAt(bad)!.toString(16).toUpperCase().padStart(4, '0');
      throw new Error(`the Hub token from ${from} holds U+${code} at index ${bad}, which an HTTP header cannot carry: copy the token again`);
    }
    return token;
  }
  return undefined;
}

const isCommitHash = (revision: string) => /^[0-9a-f]{40}$/.test(revision);

/**
 * The repository folder (models--org--name) and commit of `dir` when it is a snapshot folder of a Hugging
 * Face cache, <cache>/models--org--name/snapshots/<commit>, by whatever path (links followed); else null.
 */
export function hubSnapshotOf(dir: string): { repo: string; commit: string } | null {
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch {
    return null;  // no such folder (yet)
  }
  const [repo, snapshots, commit] = real.split(path.sep).slice(-3);
  return repo?.startsWith('models--') && snapshots === 'snapshots' && isCommitHash(commit) ? { repo, commit } : null;
}

/**
 * The repository folder (models--org--name) and blob name of `file` when its path is a blob of a Hugging
 * Face cache, <cache>/models--org--name/blobs/<etag> (where a snapshot's links lead); else null.
 */
export function hubBlobOf(file: string): { repo: string; etag: string } | null {
  const match = /[\\/](models--[^\\/]+)[\\/]blobs[\\/]([^\\/]+)$/.exec(file);
  return match === null ? null : { repo: match[1], etag: match[2] };
}

/** The Hub answered with an error: `status` is its HTTP status (401, 403, 404, 5xx...) when there was one. */
export class HubError extends Error {
  constructor(
    message: string,
    /** A 5xx or 429: worth trying again later. */
    readonly retryable: boolean,
    /** The HTTP status, when the Hub answered (a network failure has none). */
    readonly status?: number,
    /** How long the Hub asked us to wait before trying again (its Retry-After), in milliseconds. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'HubError';
  }
}

interface Context {
  id: string;
  repoDir: string;
  endpoint: string;
  token: string | undefined;
  retries: number;
  retryDelayMs: number;
  onProgress?: ResolveOptions['onProgress'];
  signal?: AbortSignal;
}

/** Whether `value` can name a branch, tag or commit hash: a path of the cache is made from it. */
export const isRevision = (value: unknown): value is string => typeof value === 'string' && value !== '' && !value.includes('..');

export async function resolveHubModel(id: string, options: ResolveOptions): Promise<ResolvedModel> {
  const revision = options.revision ?? 'main';
  if (!isRevision(revision)) {
    throw new TypeError(`options.revision must be a branch, tag or commit hash, got ${JSON.stringify(revision)}`);
  }
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const repoDir = path.join(cacheDir, `models--${id.replace('/', '--')}`);
  // The environment wins, as in huggingface_hub: a deployment set offline stays offline.
  const offline = options.offline === true || isTrue(process.env.HF_HUB_OFFLINE) || isTrue(process.env.TRANSFORMERS_OFFLINE);
  if (offline) return resolveFromCache(id, revision, repoDir);

  const ctx: Context = {
    id, repoDir,
    endpoint: (options.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    token: findToken(options.token),
    retries: options.retries ?? 4,
    retryDelayMs: options.retryDelayMs ?? 500,
    onProgress: options.onProgress,
    signal: options.signal,
  };
  // The first answer fixes the commit; the other files are asked for at that commit, so a push
  // during the download cannot mix two versions.
  let first: { path: string | null; commit: string };
  try {
    first = await fetchFile(ctx, revision, REQUIRED_FILES[0], false);
  } catch (err) {
    // No usable answer (no network, a 5xx, 429 or 401, an answer without the commit): use the
    // cache when it holds the model, as huggingface_hub does. A 404 (no such repo, revision or
    // file) is an answer, and an abort is the caller's.
    if ((err instanceof HubError && err.status === 404) || ctx.signal?.aborted) throw err;
    try {
      const cached = resolveFromCache(id, revision, repoDir);
      process.emitWarning(`${(err as Error).message}; using the cached ${id}@${revision}`);
      return cached;
    } catch {
      throw err;
    }
  }
  const commit = first.commit;
  for (const file of REQUIRED_FILES.slice(1)) await fetchFile(ctx, commit, file, false);
  let modulesPath: string | null = null;
  for (const file of OPTIONAL_FILES) {
    const { path: found } = await fetchFile(ctx, commit, file, true);
    if (file === 'modules.json') modulesPath = found;
  }
  // A plain transformers repo (no modules.json, as camembert-base) has none of sentence-transformers' other files,
  // and the encoder reads none there: asked for, each was a 404.
  if (modulesPath !== null) {
    await fetchFile(ctx, commit, PROMPTS_FILE, true);
    for (const file of ST_CONFIG_FILES) {
      if ((await fetchFile(ctx, commit, file, true)).path !== null) break;
    }
    for (const file of poolingConfigFiles(modulesPath)) {
      if (![...REQUIRED_FILES, ...OPTIONAL_FILES].includes(file)) await fetchFile(ctx, commit, file, true);
    }
  }
  let weights: string | null = null;
  for (const file of WEIGHT_CHOICES) {
    if ((await fetchFile(ctx, commit, file, true)).path !== null) {
      weights = file;
      break;
    }
  }
  if (weights === null) throw new Error(`Hub repo ${id}@${revision} has none of ${WEIGHT_CHOICES.join(', ')}`);
  const snapshot = path.join(repoDir, 'snapshots', commit);
  if (weights.endsWith('.index.json')) {
    for (const shard of shardFiles(path.join(snapshot, weights))) await fetchFile(ctx, commit, shard, false);
  }
  const model = describeLocalModel(snapshot);
  for (const file of externalDataFiles(snapshot, model.onnxPath)) {
    try {
      await fetchFile(ctx, commit, file, false);
    } catch (err) {
      if (!(err instanceof HubError && err.status === 404)) throw err;
      throw new HubError(`${err.message}; the ONNX graph ${path.relative(snapshot, model.onnxPath!)} keeps its tensors in it`, false, 404);
    }
  }
  // Written only when it changes, so that a read-only cache that holds the model still loads.
  const ref = path.join(repoDir, 'refs', revision);
  if (revision !== commit && readIfExists(ref) !== commit) writeFileAtomic(ref, commit);
  return model;
}

// A file a repo's JSON names, which must stay inside the snapshot.
const outsideSnapshot = (file: unknown) => typeof file !== 'string' || path.isAbsolute(file) || file.split(/[/\\]/).includes('..');

// The external data files (repo paths) of an ONNX graph in a snapshot: ONNX Runtime reads them
// from the graph's folder, so they come with it (optimum writes model.onnx_data for models over
// 2 GB, camembed's converter model.onnx.data).
function externalDataFiles(snapshot: string, graph: string | null): string[] {
  if (graph === null) return [];
  const graphFile = path.relative(snapshot, graph).split(path.sep).join('/');
  const locations = externalDataLocations(graph);
  const bad = locations.find((location) => location === '' || outsideSnapshot(location));
  if (bad !== undefined) {
    throw new Error(`ONNX graph ${graph} keeps tensors in ${JSON.stringify(bad)}, outside its folder: refused (not a file of the repository)`);
  }
  return locations.map((location) => path.posix.join(path.posix.dirname(graphFile), location));
}

// The shard files a model.safetensors.index.json names.
function shardFiles(indexPath: string): string[] {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read safetensors index ${indexPath}: ${(err as Error).message}`);
  }
  const shards = [...new Set(Object.values(index.weight_map ?? {}))];
  const bad = shards.find(outsideSnapshot);
  if (bad !== undefined) throw new Error(`safetensors index ${indexPath} names shard ${JSON.stringify(bad)} outside the model folder`);
  return shards;
}

// The config files of the Pooling modules a fetched modules.json names (none without one: the
// encoder then says what is missing).
function poolingConfigFiles(modulesPath: string): string[] {
  let modules: unknown;
  try {
    modules = readJsonValue(modulesPath);
  } catch {
    return [];
  }
  return (Array.isArray(modules) ? modules : [])
    .filter((m) => m?.type === POOLING_MODULE && !outsideSnapshot(m.path))
    .map((m) => path.posix.join(m.path, 'config.json'));
}

function resolveFromCache(id: string, revision: string, repoDir: string): ResolvedModel {
  const howToGet = `run once with network access (HF_HUB_OFFLINE unset, offline: false) to download it, ` +
    `or pass a local model folder`;
  let commit = revision;
  if (!isCommitHash(revision)) {
    const ref = path.join(repoDir, 'refs', revision);
    if (!fs.existsSync(ref)) {
      throw new Error(`offline mode: ${id} at revision '${revision}' is not in the Hugging Face cache (${ref} is missing); ${howToGet}`);
    }
    commit = fs.readFileSync(ref, 'utf8').trim();
    // huggingface_hub writes refs in place (file_download.py, _cache_commit_hash_for_specific_revision:
    // ref_path.write_text): a write cut short (a kill, a full disk) leaves the ref empty.
    if (!isCommitHash(commit)) {
      throw new Error(`offline mode: ${ref} holds ${JSON.stringify(commit.slice(0, 80))}, not a commit hash ` +
        `(a write cut short?), so the cached revision '${revision}' of ${id} is unknown; ${howToGet}`);
    }
  }
  const snapshot = path.join(repoDir, 'snapshots', commit);
  for (const file of REQUIRED_FILES) {
    const p = path.join(snapshot, file);
    if (!fs.existsSync(p)) throw new Error(`offline mode: ${file} of ${id}@${revision} is not in the cache (${p}); ${howToGet}`);
  }
  let model: ResolvedModel;
  try {
    model = describeLocalModel(snapshot);
  } catch (err) {
    throw new Error(`offline mode: ${(err as Error).message}; ${howToGet}`);
  }
  if (model.weightsPath !== null && model.weightsPath.endsWith('.index.json')) {
    for (const shard of shardFiles(model.weightsPath)) {
      const p = path.join(snapshot, shard);
      if (!fs.existsSync(p)) throw new Error(`offline mode: weight shard ${shard} of ${id}@${revision} is not in the cache (${p}); ${howToGet}`);
    }
  }
  for (const file of externalDataFiles(snapshot, model.onnxPath)) {
    const p = path.join(snapshot, file);
    if (!fs.existsSync(p)) {
      throw new Error(`offline mode: ${file} of ${id}@${revision}, the external data of its ONNX graph, is not in the cache (${p}); ${howToGet}`);
    }
  }
  return model;
}

const header = (h: http.IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

// An ETag without its weak prefix and quotes.
const normalizeEtag = (etag: string | undefined) => etag?.replace(/^W\//, '').replace(/^"|"$/g, '');

// At most this long a wait between attempts is worth it: a rate limit asking for longer fails at
// once (with the cache as fallback), and the doubling backoff stops growing there.
const MAX_RETRY_AFTER_MS = 60_000;

function statusError(ctx: Context, file: string, revision: string, res: { status: number; headers?: http.IncomingHttpHeaders }): HubError {
  const { status } = res;
  const what = `${file} of ${ctx.id}@${revision} from ${ctx.endpoint}`;
  const said = res.headers === undefined ? undefined : header(res.headers, 'x-error-message');
  const hubSays = said === undefined ? '' : ` (the Hub says: ${said})`;
  if (status === 401 || status === 403) {
    const advice = ctx.token === undefined
      ? 'set HF_TOKEN to a token that can read it'
      : 'the token given (HF_TOKEN, HUGGING_FACE_HUB_TOKEN or the token file) is invalid or cannot read it';
    return new HubError(`Hub refused ${what} (${status})${hubSays}: the repository is private or gated, or does not exist; ${advice}`, false, status);
  }
  if (status === 404) return new HubError(`Hub has no ${what} (404)${hubSays}: check the model id, revision and file name`, false, status);
  if (status === 429) {
    // Retry-After (seconds), or the RateLimit header's t=<seconds until the window resets>.
    const retryAfter = res.headers === undefined ? undefined
      : header(res.headers, 'retry-after') ?? /(?:^|[;,\s])t=(\d+)/.exec(header(res.headers, 'ratelimit') ?? '')?.[1];
    const waitMs = retryAfter !== undefined && /^\d+$/.test(retryAfter.trim()) ? Number(retryAfter) * 1000 : undefined;
    if (waitMs !== undefined && waitMs > MAX_RETRY_AFTER_MS) {
      return new HubError(`Hub rate-limited ${what} for ${waitMs / 1000} s${hubSays}; try later, or set HF_TOKEN (higher limits)`, false, status);
    }
    return new HubError(`Hub rate-limited ${what} (429)${hubSays}`, true, status, waitMs);
  }
  return new HubError(`Hub answered ${status} for ${what}${hubSays}`, status >= 500, status);
}

// Local file errors (permissions, a read-only or full disk) are reported as they are, never retried
// as if the network had failed.
const LOCAL_FILE_ERRORS = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'EISDIR', 'ENOTDIR', 'EMFILE', 'ENFILE']);

async function withRetries<T>(ctx: Context, what: string, attempt: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      // Whatever an abort broke (a request destroyed, a body cut) is the caller's abort, not retried.
      ctx.signal?.throwIfAborted();
      const retryable = err instanceof HubError || err instanceof ProxyError ? err.retryable
        : !LOCAL_FILE_ERRORS.has((err as NodeJS.ErrnoException).code ?? '');
      if (!retryable) throw err;
      if (i >= ctx.retries) {
        const message = `${(err as Error).message} (gave up on ${what} after ${counted(i + 1, 'attempt')})`;
        if (err instanceof HubError) throw new HubError(message, false, err.status, err.retryAfterMs);
        throw new Error(`cannot reach the Hub at ${ctx.endpoint}: ${message}. Check the network (or HF_ENDPOINT); ` +
          'or load a local model folder, or a model already in the cache with offline: true (HF_HUB_OFFLINE=1)');
      }
      const asked = err instanceof HubError ? err.retryAfterMs : undefined;
      // Doubling up to a minute (past ~22 doublings a wait would exceed what a timer takes, 2^31 - 1 ms, and end at once).
      await sleep(asked ?? Math.min(ctx.retryDelayMs * 2 ** i, Math.max(ctx.retryDelayMs, MAX_RETRY_AFTER_MS)), ctx.signal);
    }
  }
}

// Ends early with signal.reason. Not timers/promises' setTimeout: each of its waits adds a listener
// of its own to the signal (20 downloads of one model at once wait for its lock together).
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stopWatching();
      resolve();
    }, ms);
    const stopWatching = signal === undefined ? () => undefined : watchAbort(signal, () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

// `location`: the Hub URL to GET the file from. For an LFS file that is the URL answering with the
// CDN redirect, not the CDN link itself: the link is signed and expires, so each attempt asks anew.
interface FileMeta { etag: string; commit: string; size: number | null; location: string }

// HEAD request, following same-host redirects only (renamed repos); the redirect to the CDN is
// where an LFS file's X-Linked-Etag and X-Linked-Size are.
async function fetchMeta(ctx: Context, revision: string, file: string): Promise<FileMeta | null> {
  let url = `${ctx.endpoint}/${ctx.id}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
  const auth: Record<string, string> = ctx.token ? { authorization: `Bearer ${ctx.token}` } : {};
  for (let hops = 0; hops < 5; hops++) {
    const res = await request(url, 'HEAD', { ...auth, 'accept-encoding': 'identity' }, ctx.signal);
    res.body.resume();
    const location = header(res.headers, 'location');
    if (res.status >= 300 && res.status < 400 && location !== undefined) {
      const next = new URL(location, url);
      if (next.origin === new URL(ctx.endpoint).origin && header(res.headers, 'x-linked-etag') === undefined) {
        url = next.toString();
        continue;
      }
    } else if (res.status === 404) {
      return null;
    } else if (res.status !== 200) {
      throw statusError(ctx, file, revision, res);
    }
    const etag = normalizeEtag(header(res.headers, 'x-linked-etag') ?? header(res.headers, 'etag'));
    const commit = header(res.headers, 'x-repo-commit');
    if (etag === undefined || commit === undefined || !/^[\w.-]+$/.test(etag) || !isCommitHash(commit)) {
      throw new HubError(`Hub answer for ${file} of ${ctx.id} lacks a usable ETag or X-Repo-Commit header`, false);
    }
    const size = Number(header(res.headers, 'x-linked-size') ?? header(res.headers, 'content-length'));
    return { etag, commit, size: Number.isFinite(size) ? size : null, location: url };
  }
  throw new HubError(`too many redirects for ${file} of ${ctx.id}`, false);
}

async function fetchFile(ctx: Context, revision: string, file: string, optional: boolean): Promise<{ path: string | null; commit: string }> {
  ctx.signal?.throwIfAborted();
  const meta = await withRetries(ctx, `${file} of ${ctx.id}@${revision}`, () => fetchMeta(ctx, revision, file));
  if (meta === null) {
    if (!optional) throw statusError(ctx, file, revision, { status: 404 });
    if (isCommitHash(revision)) {
      const marker = path.join(ctx.repoDir, '.no_exist', revision, file);
      try {
        makeFolders(path.dirname(marker));
        fs.writeFileSync(marker, '');
      } catch {
        // Only a hint for later lookups: a read-only cache goes without it, as in huggingface_hub.
      }
    }
    return { path: null, commit: revision };
  }
  const blob = path.join(ctx.repoDir, 'blobs', meta.etag);
  if (!fs.existsSync(blob)) {
    await withBlobLock(ctx, meta.etag, file, async () => {
      if (!fs.existsSync(blob)) await downloadBlob(ctx, file, meta, blob);  // else another process just finished it
    });
  }
  const link = path.join(ctx.repoDir, 'snapshots', meta.commit, file);
  if (!fs.existsSync(link)) {
    makeFolders(path.dirname(link));
    try {
      fs.symlinkSync(path.relative(path.dirname(link), blob), link);
    } catch (err) {
      // EEXIST: another process made the link meanwhile. Otherwise no symlinks (Windows without
      // developer mode, SMB volumes): a copy, as huggingface_hub makes, but under a temporary name,
      // since a copy cut short (a kill, a full disk) or still running in another process would pass
      // for the file.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        // A copy killed an hour or more ago (as large as the file; a replica killed at start-up
        // each time leaves one more) goes now.
        await removeAbandonedTemporaries(path.dirname(link), [path.basename(link)]);
        replaceAtomically(link, (tmp) => fs.copyFileSync(blob, tmp));
      }
    }
  }
  return { path: link, commit: meta.commit };
}

const LOCK_POLL_MS = 200;
const LOCK_NOTICE_MS = 2_000;

// The lock huggingface_hub takes around a blob's download (an exclusive flock, as Python's
// filelock takes it), so that two processes, Python's included, never append to the same
// .incomplete file. Waits as long as the other download takes; a warning says so after 2 s.
async function withBlobLock(ctx: Context, etag: string, file: string, work: () => Promise<void>): Promise<void> {
  const lockFile = path.join(path.dirname(ctx.repoDir), '.locks', path.basename(ctx.repoDir), `${etag}.lock`);
  makeFolders(path.dirname(lockFile));
  const fd = fs.openSync(lockFile, 'w');
  try {
    for (let waitedMs = 0; !tryLockDescriptor(fd, lockFile, `downloading ${file} without the lock`); waitedMs += LOCK_POLL_MS) {
      if (waitedMs === LOCK_NOTICE_MS) process.emitWarning(`waiting for another process downloading ${file} of ${ctx.id} (${lockFile})`);
      await sleep(LOCK_POLL_MS, ctx.signal);
    }
    await work();
  } finally {
    fs.closeSync(fd);
  }
}

async function downloadBlob(ctx: Context, file: string, meta: FileMeta, blob: string): Promise<void> {
  const partial = `${blob}.incomplete`;
  makeFolders(path.dirname(blob));
  const bar = createProgressBar({ label: file, total: meta.size ?? undefined, unit: 'bytes' });
  try {
    await withRetries(ctx, `${file} of ${ctx.id}`, () => downloadOnce(ctx, file, meta, partial, (bytes) => {
      bar.update(bytes);
      ctx.onProgress?.({ file, bytes, totalBytes: meta.size });
    }));
  } finally {
    bar.finish();
  }
  // Blobs are named by their hash: sha256 for LFS files, the git blob sha1 for the others (what
  // `hf cache verify` checks). Checked before the file enters the cache.
  const size = fs.statSync(partial).size;
  const kind = /^[0-9a-f]{64}$/.test(meta.etag) ? 'sha256' : /^[0-9a-f]{40}$/.test(meta.etag) ? 'git sha1' : null;
  const actual = kind === null ? null : await hashFile(partial, kind, size, ctx.signal);
  if ((meta.size !== null && size !== meta.size) || actual !== (kind === null ? null : meta.etag)) {
    fs.rmSync(partial, { force: true });
    throw new Error(`checksum mismatch for ${file} of ${ctx.id}: the Hub announced ${meta.size ?? '?'} bytes` +
      (kind === null ? '' : ` with ${kind} ${meta.etag}`) + `, the download has ${size}` +
      (actual === null ? '' : ` hashing to ${actual}`) + '; nothing was cached, try again');
  }
  fs.renameSync(partial, blob);
}

// One GET, appending to `partial` from where it stopped (HTTP Range).
async function downloadOnce(ctx: Context, file: string, meta: FileMeta, partial: string, progress: (bytes: number) => void): Promise<void> {
  let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
  if (meta.size !== null && have > meta.size) {
    fs.rmSync(partial);
    have = 0;
  }
  let url = meta.location;
  let res: Response;
  for (let hops = 0; ; hops++) {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    // The token goes to the Hub only, never to the CDN a redirect points at.
    if (ctx.token && new URL(url).origin === new URL(ctx.endpoint).origin) headers.authorization = `Bearer ${ctx.token}`;
    if (have > 0) headers.range = `bytes=${have}-`;
    res = await request(url, 'GET', headers, ctx.signal);
    const location = header(res.headers, 'location');
    if (res.status < 300 || res.status >= 400 || location === undefined || hops >= 5) break;
    res.body.resume();
    url = new URL(location, url).toString();
  }
  if (res.status === 416 && have > 0 && have === meta.size) return;  // already complete
  if (res.status === 200) {
    have = 0;  // the server sent the whole file
  } else if (res.status === 206) {
    const start = Number(/bytes (\d+)-/.exec(header(res.headers, 'content-range') ?? '')?.[1]);
    if (start !== have) {
      res.body.resume();
      fs.rmSync(partial, { force: true });
      throw new HubError(`Hub sent bytes from ${start} for ${file}, expected ${have}; restarting`, true);
    }
  } else {
    res.body.resume();
    if (res.status === 416) fs.rmSync(partial, { force: true });
    throw statusError(ctx, file, meta.commit, res);
  }
  const out = fs.createWriteStream(partial, { flags: have > 0 ? 'a' : 'w' });
  let bytes = have;
  progress(bytes);
  // An abort cuts the body as a lost connection would (what arrived is kept); withRetries then gives the reason.
  const stopWatching = destroyOnAbort(res.body, ctx.signal);
  try {
    await new Promise<void>((resolve, reject) => {
      res.body.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        progress(bytes);
        if (!out.write(chunk)) {
          res.body.pause();
          out.once('drain', () => res.body.resume());
        }
      });
      res.body.on('aborted', () => reject(new Error(`connection closed during ${file} after ${bytes} bytes`)));
      res.body.on('error', reject);
      res.body.on('end', () => out.end());
      out.on('finish', resolve);
      out.on('error', reject);
    });
  } catch (err) {
    res.body.destroy();  // a body left paused (a full disk stopped the writes) held its socket until the timeout
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
      out.destroy();
      fs.rmSync(partial, { force: true });
      throw new HubError(`disk full while downloading ${file} to ${partial}; nothing was cached`, false);
    }
    await new Promise((resolve) => out.end(resolve));  // keep what arrived: the next attempt resumes after it
    throw err;
  } finally {
    stopWatching();
  }
  if (meta.size !== null && bytes !== meta.size) {
    throw new Error(`connection closed during ${file} after ${bytes} of ${meta.size} bytes`);
  }
}

// An abort stops the reading (0.8 s for 440 MB here) with signal.reason; the complete
// .incomplete file stays, so the next call checks it without downloading it again.
function hashFile(file: string, kind: 'sha256' | 'git sha1', size: number, signal: AbortSignal | undefined): Promise<string> {
  const hash = crypto.createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git sha1') hash.update(`blob ${size}\0`);
  const input = fs.createReadStream(file);
  const stopWatching = destroyOnAbort(input, signal);
  return new Promise<string>((resolve, reject) => {
    input
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  }).finally(stopWatching);
}

function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

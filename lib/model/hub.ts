// Hugging Face Hub downloads into the standard HF cache, shared with Python's huggingface_hub.
// Cache layout (https://huggingface.co/docs/hub/local-cache and huggingface_hub's "Understand
// caching" guide):
//   <cache>/models--<org>--<name>/blobs/<etag>            file contents, named by their ETag
//                                                         (sha256 for LFS files, git blob sha1 otherwise)
//   <cache>/models--<org>--<name>/snapshots/<commit>/<file> relative symlink to ../../blobs/<etag>
//   <cache>/models--<org>--<name>/refs/<revision>         the commit a branch or tag pointed to
//   <cache>/models--<org>--<name>/.no_exist/<commit>/<file> empty marker: the file is not in the repo
// <cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
// Protocol facts: GET/HEAD <endpoint>/<id>/resolve/<revision>/<file>; the answer carries
// X-Repo-Commit, ETag, and for LFS files a redirect to a CDN with X-Linked-Etag / X-Linked-Size
// describing the real file. Partial downloads live in blobs/<etag>.incomplete and resume with Range.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as os from 'os';
import * as path from 'path';
import { createProgressBar } from '../progress';
import { describeLocalModel, ResolvedModel } from './local';

export interface HubOptions {
  revision?: string;        // branch, tag or commit; default 'main'
  cacheDir?: string;        // default $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub
  offline?: boolean;        // default: HF_HUB_OFFLINE=1
  onProgress?: (p: { file: string; bytes: number; totalBytes: number | null }) => void;
  endpoint?: string;        // default $HF_ENDPOINT or https://huggingface.co
  token?: string;           // default $HF_TOKEN; sent as a bearer token to the endpoint only
  retries?: number;         // extra attempts after a network error or 5xx; default 4
  retryDelayMs?: number;    // first backoff delay, doubled each retry; default 500
}

// Files of a sentence-transformers repo; all but config.json and tokenizer.json may be absent.
const REQUIRED_FILES = ['config.json', 'tokenizer.json'];
const OPTIONAL_FILES = ['tokenizer_config.json', 'special_tokens_map.json', 'modules.json',
  'sentence_bert_config.json', 'config_sentence_transformers.json', '1_Pooling/config.json'];
// Weights, in order of preference. ONNX files are fetched only when a repo has no safetensors:
// the converter's fused graph is faster than a generic export.
const WEIGHT_CHOICES = ['model.safetensors', 'model.safetensors.index.json', 'onnx/model.onnx', 'model.onnx'];

export function looksLikeHubId(source: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(source);
}

export function defaultCacheDir(): string {
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  const home = process.env.HF_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
  return path.join(home, 'hub');
}

const isCommitHash = (revision: string) => /^[0-9a-f]{40}$/.test(revision);

class HubError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
  }
}

interface Context {
  id: string;
  repoDir: string;
  endpoint: string;
  token: string | undefined;
  retries: number;
  retryDelayMs: number;
  onProgress?: HubOptions['onProgress'];
}

export async function resolveHubModel(id: string, options: HubOptions): Promise<ResolvedModel> {
  const revision = options.revision ?? 'main';
  if (typeof revision !== 'string' || revision === '' || revision.includes('..')) {
    throw new TypeError(`revision must be a branch, tag or commit hash, got ${JSON.stringify(revision)}`);
  }
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const repoDir = path.join(cacheDir, `models--${id.replace('/', '--')}`);
  const offline = options.offline ?? ['1', 'true', 'yes', 'on'].includes((process.env.HF_HUB_OFFLINE ?? '').toLowerCase());
  if (offline) return resolveFromCache(id, revision, repoDir);

  const ctx: Context = {
    id, repoDir,
    endpoint: (options.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    token: options.token ?? process.env.HF_TOKEN,
    retries: options.retries ?? 4,
    retryDelayMs: options.retryDelayMs ?? 500,
    onProgress: options.onProgress,
  };
  // The first answer fixes the commit; the other files are asked for at that commit, so a push
  // during the download cannot mix two versions.
  let first: { path: string | null; commit: string };
  try {
    first = await fetchFile(ctx, revision, REQUIRED_FILES[0], false);
  } catch (err) {
    // No answer at all (as opposed to an HTTP error): use the cache when it holds the model,
    // as huggingface_hub does.
    if (err instanceof HubError) throw err;
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
  for (const file of OPTIONAL_FILES) await fetchFile(ctx, commit, file, true);
  let weights: string | null = null;
  for (const file of WEIGHT_CHOICES) {
    if ((await fetchFile(ctx, commit, file, true)).path !== null) {
      weights = file;
      break;
    }
  }
  if (weights === null) throw new Error(`Hub repo ${id}@${revision} has none of ${WEIGHT_CHOICES.join(', ')}`);
  if (weights.endsWith('.index.json')) {
    for (const shard of shardFiles(path.join(repoDir, 'snapshots', commit, weights))) await fetchFile(ctx, commit, shard, false);
  }
  if (revision !== commit) writeFileAtomic(path.join(repoDir, 'refs', revision), commit);
  return describeLocalModel(path.join(repoDir, 'snapshots', commit));
}

// The shard files a model.safetensors.index.json names; each must stay inside the snapshot.
function shardFiles(indexPath: string): string[] {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read safetensors index ${indexPath}: ${(err as Error).message}`);
  }
  const shards = [...new Set(Object.values(index.weight_map ?? {}))];
  const bad = shards.find((s) => typeof s !== 'string' || path.isAbsolute(s) || s.split(/[/\\]/).includes('..'));
  if (bad !== undefined) throw new Error(`safetensors index ${indexPath} names shard ${JSON.stringify(bad)} outside the model folder`);
  return shards;
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
  return model;
}

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

function request(url: string, method: 'HEAD' | 'GET', headers: Record<string, string>): Promise<Response> {
  return new Promise((resolve, reject) => {
    const client = url.startsWith('https:') ? https : http;
    const req = client.request(url, { method, headers }, (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res }));
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer from ${url} for 30 s`)));
    req.on('error', reject);
    req.end();
  });
}

const header = (h: http.IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

// An ETag without its weak prefix and quotes.
const normalizeEtag = (etag: string | undefined) => etag?.replace(/^W\//, '').replace(/^"|"$/g, '');

function statusError(ctx: Context, file: string, revision: string, status: number): HubError {
  const what = `${file} of ${ctx.id}@${revision} from ${ctx.endpoint}`;
  if (status === 401 || status === 403) {
    return new HubError(`Hub refused ${what} (${status}): the repository is private or gated, or does not exist; ` +
      `set HF_TOKEN to a token that can read it`, false);
  }
  if (status === 404) return new HubError(`Hub has no ${what} (404): check the model id, revision and file name`, false);
  return new HubError(`Hub answered ${status} for ${what}`, status >= 500 || status === 429);
}

async function withRetries<T>(ctx: Context, what: string, attempt: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      const retryable = !(err instanceof HubError) || err.retryable;
      if (!retryable) throw err;
      if (i >= ctx.retries) {
        const message = `${(err as Error).message} (gave up on ${what} after ${i + 1} attempts)`;
        if (err instanceof HubError) throw new HubError(message, false);
        throw new Error(`cannot reach the Hub at ${ctx.endpoint}: ${message}. Check the network (or HF_ENDPOINT); ` +
          'or load a local model folder, or a model already in the cache with offline: true (HF_HUB_OFFLINE=1)');
      }
      await new Promise((r) => setTimeout(r, ctx.retryDelayMs * 2 ** i));
    }
  }
}

interface FileMeta { etag: string; commit: string; size: number | null; location: string }

// HEAD request, following same-host redirects only (renamed repos); the redirect to the CDN is
// where an LFS file's X-Linked-Etag and X-Linked-Size are.
async function fetchMeta(ctx: Context, revision: string, file: string): Promise<FileMeta | null> {
  let url = `${ctx.endpoint}/${ctx.id}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
  const auth: Record<string, string> = ctx.token ? { authorization: `Bearer ${ctx.token}` } : {};
  for (let hops = 0; hops < 5; hops++) {
    const res = await request(url, 'HEAD', { ...auth, 'accept-encoding': 'identity' });
    res.body.resume();
    const location = header(res.headers, 'location');
    if (res.status >= 300 && res.status < 400 && location !== undefined) {
      const next = new URL(location, url);
      if (next.origin === new URL(ctx.endpoint).origin && header(res.headers, 'x-linked-etag') === undefined) {
        url = next.toString();
        continue;
      }
      url = next.toString();
    } else if (res.status === 404) {
      return null;
    } else if (res.status !== 200) {
      throw statusError(ctx, file, revision, res.status);
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
  const meta = await withRetries(ctx, `${file} of ${ctx.id}@${revision}`, () => fetchMeta(ctx, revision, file));
  if (meta === null) {
    if (!optional) throw statusError(ctx, file, revision, 404);
    if (isCommitHash(revision)) {
      const marker = path.join(ctx.repoDir, '.no_exist', revision, file);
      fs.mkdirSync(path.dirname(marker), { recursive: true });
      fs.writeFileSync(marker, '');
    }
    return { path: null, commit: revision };
  }
  const blob = path.join(ctx.repoDir, 'blobs', meta.etag);
  if (!fs.existsSync(blob)) await downloadBlob(ctx, file, meta, blob);
  const link = path.join(ctx.repoDir, 'snapshots', meta.commit, file);
  if (!fs.existsSync(link)) {
    fs.mkdirSync(path.dirname(link), { recursive: true });
    try {
      fs.symlinkSync(path.relative(path.dirname(link), blob), link);
    } catch {
      fs.copyFileSync(blob, link);  // no symlinks (e.g. Windows without developer mode): copy, as huggingface_hub does
    }
  }
  return { path: link, commit: meta.commit };
}

async function downloadBlob(ctx: Context, file: string, meta: FileMeta, blob: string): Promise<void> {
  const partial = `${blob}.incomplete`;
  fs.mkdirSync(path.dirname(blob), { recursive: true });
  const bar = createProgressBar({ label: file, total: meta.size ?? undefined, unit: 'bytes' });
  try {
    await withRetries(ctx, `${file} of ${ctx.id}`, () => downloadOnce(ctx, file, meta, partial, (bytes) => {
      bar.update(bytes);
      ctx.onProgress?.({ file, bytes, totalBytes: meta.size });
    }));
  } finally {
    bar.finish();
  }
  // LFS files are named by their sha256 (the linked ETag): check it before the file enters the cache.
  if (/^[0-9a-f]{64}$/.test(meta.etag)) {
    const actual = await sha256File(partial);
    if (actual !== meta.etag) {
      fs.rmSync(partial, { force: true });
      throw new Error(`checksum mismatch for ${file} of ${ctx.id}: the Hub announced sha256 ${meta.etag}, ` +
        `the download hashes to ${actual}; nothing was cached, try again`);
    }
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
    res = await request(url, 'GET', headers);
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
    throw statusError(ctx, file, meta.commit, res.status);
  }
  const out = fs.createWriteStream(partial, { flags: have > 0 ? 'a' : 'w' });
  let bytes = have;
  progress(bytes);
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
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
      out.destroy();
      fs.rmSync(partial, { force: true });
      throw new HubError(`disk full while downloading ${file} to ${partial}; nothing was cached`, false);
    }
    await new Promise((resolve) => out.end(resolve));  // keep what arrived: the next attempt resumes after it
    throw err;
  }
  if (meta.size !== null && bytes !== meta.size) {
    throw new Error(`connection closed during ${file} after ${bytes} of ${meta.size} bytes`);
  }
}

function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  return new Promise((resolve, reject) => {
    fs.createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

function writeFileAtomic(file: string, content: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, file);
}

// resolveModel on Hub ids against a fake Hub on 127.0.0.1 (test/helpers/fake-hub.ts).
import { execFile, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import { getEventListeners } from 'events';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { Encoder } from '../lib/encoder';
import { convertToOnnx, HubError, ProxyError, resolveModel } from '../lib/model';
import { proxyFor } from '../lib/model/http-request';
import { defaultCacheDir, looksLikeHubId } from '../lib/model/hub';
import { loadAddon } from '../lib/native';
import { DataType, encodeModel } from '../lib/model/onnx-writer';
import { maxAbsDifference } from './helpers/compare';
import { makeRandom } from './helpers/random';
import { FakeHub, FakeRepo, startFakeHub } from './helpers/fake-hub';
import { startFakeProxy } from './helpers/fake-proxy';

const COMMIT = 'a'.repeat(40);
const OTHER_COMMIT = 'b'.repeat(40);
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

function randomBytes(seed: number, length: number): Buffer {
  const random = makeRandom(seed);
  return Buffer.from(Array.from({ length }, () => Math.floor(random() * 256)));
}

function repoFiles(seed: number): Record<string, Buffer> {
  return {
    'config.json': Buffer.from(JSON.stringify({ model_type: 'camembert', seed })),
    'tokenizer.json': Buffer.from(JSON.stringify({ model: { vocab: [['a', 0]] }, seed })),
    'tokenizer_config.json': Buffer.from('{}'),
    'modules.json': Buffer.from(JSON.stringify([{ idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
      { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' }])),
    'sentence_bert_config.json': Buffer.from('{"max_seq_length": 128}'),
    '1_Pooling/config.json': Buffer.from('{"pooling_mode_mean_tokens": true}'),
    'model.safetensors': randomBytes(seed, 300_000),
  };
}

const REPOS: Record<string, FakeRepo> = {
  'org/public': { commit: COMMIT, files: repoFiles(1), lfs: ['model.safetensors'] },
  'org/private': { commit: OTHER_COMMIT, files: repoFiles(2), lfs: ['model.safetensors'], token: 'hf_secret' },
  'org/torch': {
    commit: COMMIT,
    files: { ...Object.fromEntries(Object.entries(repoFiles(6)).filter(([f]) => f !== 'model.safetensors')), 'pytorch_model.bin': randomBytes(6, 5000), 'onnx/model.onnx': randomBytes(7, 100) },
    lfs: ['pytorch_model.bin', 'onnx/model.onnx'],
  },
  // Saved by an older sentence-transformers: its settings in sentence_camembert_config.json, its
  // pooling module in a folder of another name.
  'org/older': {
    commit: COMMIT,
    files: {
      ...Object.fromEntries(Object.entries(repoFiles(8)).filter(([f]) => !['sentence_bert_config.json', '1_Pooling/config.json'].includes(f))),
      'modules.json': Buffer.from(JSON.stringify([{ idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
        { idx: 1, name: '1', path: 'pooling', type: 'sentence_transformers.models.Pooling' }])),
      'sentence_camembert_config.json': Buffer.from('{"max_seq_length": 128}'),
      'pooling/config.json': Buffer.from('{"pooling_mode_mean_tokens": true}'),
    },
    lfs: ['model.safetensors'],
  },
  'org/sharded': {
    commit: COMMIT,
    files: {
      ...Object.fromEntries(Object.entries(repoFiles(3)).filter(([f]) => f !== 'model.safetensors')),
      'model.safetensors.index.json': Buffer.from(JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } })),
      'model-00001-of-00002.safetensors': randomBytes(4, 1000),
      'model-00002-of-00002.safetensors': randomBytes(5, 1000),
    },
    lfs: ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'],
  },
};

// A repo holding only an ONNX graph (no weights the converter reads), whose one tensor is in the
// external data file `location`.
function onnxOnlyRepo(seed: number, location: string): FakeRepo {
  const graph = encodeModel({
    irVersion: 8, opsets: [{ domain: '', version: 17 }], producerName: 'test', producerVersion: '1',
    graph: {
      name: 'g', nodes: [{ opType: 'Identity', inputs: ['w'], outputs: ['y'] }],
      initializers: [{ name: 'w', dataType: DataType.FLOAT, dims: [1], external: { location, offset: 0, length: 4 } }],
      inputs: [], outputs: [{ name: 'y', elemType: DataType.FLOAT, shape: [1] }],
    },
  });
  const files = Object.fromEntries(Object.entries(repoFiles(seed)).filter(([f]) => f !== 'model.safetensors'));
  return { commit: COMMIT, files: { ...files, 'onnx/model.onnx': graph }, lfs: ['onnx/model.onnx'] };
}
REPOS['org/onnx-outside'] = onnxOnlyRepo(9, '../outside.bin');
REPOS['org/onnx-absolute'] = onnxOnlyRepo(10, '/etc/outside.bin');
REPOS['org/onnx-no-data'] = onnxOnlyRepo(11, 'model.onnx_data');  // names a file the repo lacks
REPOS['org/onnx-truncated'] = onnxOnlyRepo(12, 'model.onnx_data');
REPOS['org/onnx-truncated'].files['onnx/model.onnx'] = REPOS['org/onnx-truncated'].files['onnx/model.onnx'].subarray(0, 50);

// The tiny random model, for repos holding only its ONNX graph (added in beforeAll).
const MODEL = path.resolve(__dirname, '../../shared/models/tiny-random-camembert');
const haveModel = fs.existsSync(path.join(MODEL, 'model.safetensors'));
const testWithModel = haveModel ? test : test.skip;
const TINY_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'modules.json',
  'config_sentence_transformers.json', 'sentence_bert_config.json', '1_Pooling/config.json'];

// The fake Hub is on 127.0.0.1: a proxy set in the environment running the tests must not apply
// (jest gives each test file its own copy of process.env).
const PROXY_VARIABLES = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy'];
for (const name of PROXY_VARIABLES) delete process.env[name];

let hub: FakeHub;
let cacheDir: string;
const fast = () => ({ cacheDir, endpoint: hub.endpoint, retryDelayMs: 1 });

beforeAll(async () => {
  if (haveModel) {
    const tiny = Object.fromEntries(TINY_FILES.map((f) => [f, fs.readFileSync(path.join(MODEL, f))]));
    // As camembed's converter writes it: the graph in onnx/model.onnx, its tensors in onnx/model.onnx.data.
    const converted = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-hub-onnx-'));
    try {
      const graph = await convertToOnnx(MODEL, { output: path.join(converted, 'model.onnx') });
      REPOS['org/onnx-external'] = {
        commit: COMMIT,
        files: { ...tiny, 'onnx/model.onnx': fs.readFileSync(graph), 'onnx/model.onnx.data': fs.readFileSync(`${graph}.data`) },
        lfs: ['onnx/model.onnx', 'onnx/model.onnx.data'],
      };
    } finally {
      fs.rmSync(converted, { recursive: true, force: true });
    }
    // A graph holding its tensors inline (raw_data), as the shared tiny model's export does.
    REPOS['org/onnx-inline'] = { commit: COMMIT, files: { ...tiny, 'model.onnx': fs.readFileSync(path.join(MODEL, 'model.onnx')) }, lfs: ['model.onnx'] };
    // A plain transformers repo, as camembert-base: no modules.json or other sentence-transformers file, no tokenizer_config.json.
    REPOS['org/plain'] = {
      commit: COMMIT, files: { 'config.json': tiny['config.json'], 'tokenizer.json': tiny['tokenizer.json'], 'model.onnx': fs.readFileSync(path.join(MODEL, 'model.onnx')) },
      lfs: ['model.onnx'],
    };
  }
  hub = await startFakeHub(REPOS);
});
afterAll(() => hub.close());
beforeEach(() => {
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-hub-'));
  hub.requests.length = 0;
});
afterEach(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

/** Runs `body` with these environment variables set (undefined: unset), restoring them after. */
async function withEnv<T>(vars: Record<string, string | undefined>, body: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  };
  set(vars);
  try {
    return await body();
  } finally {
    set(saved);
  }
}

/** `body`'s result and the warnings it emitted. */
async function warningsOf<T>(body: () => Promise<T>): Promise<{ result: T; warnings: string[] }> {
  const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
  try {
    const result = await body();
    return { result, warnings: warn.mock.calls.map((c) => String(c[0])) };
  } finally {
    warn.mockRestore();
  }
}

const repoDir = (id: string) => path.join(cacheDir, `models--${id.replace('/', '--')}`);
const listFiles = (dir: string): string[] => fs.existsSync(dir)
  ? fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort()
  : [];

describe('resolveModel from the Hub', () => {
  test('downloads into the HF cache layout: blobs by ETag, snapshot symlinks, refs', async () => {
    const progress: { file: string; bytes: number; totalBytes: number | null }[] = [];
    const model = await resolveModel('org/public', { ...fast(), onProgress: (p) => progress.push(p) });
    const snapshot = path.join(repoDir('org/public'), 'snapshots', COMMIT);
    expect(model).toEqual({ dir: snapshot, onnxPath: null, weightsPath: path.join(snapshot, 'model.safetensors') });
    for (const [file, data] of Object.entries(REPOS['org/public'].files)) {
      expect(sha256(fs.readFileSync(path.join(snapshot, file)))).toBe(sha256(data));
      expect(fs.lstatSync(path.join(snapshot, file)).isSymbolicLink()).toBe(true);
    }
    const weights = REPOS['org/public'].files['model.safetensors'];
    expect(fs.readlinkSync(path.join(snapshot, 'model.safetensors'))).toBe(`../../blobs/${sha256(weights)}`);
    expect(fs.readlinkSync(path.join(snapshot, '1_Pooling/config.json'))).toMatch(/^\.\.\/\.\.\/\.\.\/blobs\/[0-9a-f]{40}$/);
    expect(fs.readFileSync(path.join(repoDir('org/public'), 'refs/main'), 'utf8')).toBe(COMMIT);
    // Absent optional files are remembered as huggingface_hub does, and nothing partial remains.
    expect(fs.existsSync(path.join(repoDir('org/public'), '.no_exist', COMMIT, 'special_tokens_map.json'))).toBe(true);
    expect(listFiles(repoDir('org/public')).filter((f) => f.includes('.incomplete') || f.includes('.tmp'))).toEqual([]);
    expect(progress.filter((p) => p.file === 'model.safetensors').at(-1)).toEqual({ file: 'model.safetensors', bytes: weights.length, totalBytes: weights.length });
    // The LFS file came from the CDN after a redirect.
    expect(hub.requests.some((r) => r.server === 'cdn' && r.method === 'GET')).toBe(true);
  });

  test('a cached model is not downloaded again, and offline mode needs no network', async () => {
    await resolveModel('org/public', fast());
    hub.requests.length = 0;
    const again = await resolveModel('org/public', fast());
    expect(hub.requests.filter((r) => r.method === 'GET')).toEqual([]);
    const offline = await resolveModel('org/public', { cacheDir, endpoint: 'http://127.0.0.1:1', offline: true });
    expect(offline).toEqual(again);
    const previous = process.env.HF_HUB_OFFLINE;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      expect(await resolveModel('org/public', { cacheDir, endpoint: 'http://127.0.0.1:1' })).toEqual(again);
    } finally {
      if (previous === undefined) delete process.env.HF_HUB_OFFLINE; else process.env.HF_HUB_OFFLINE = previous;
    }
  });

  test('an unreachable Hub falls back to the cache, and fails clearly without one', async () => {
    const unreachable = { cacheDir, endpoint: 'http://127.0.0.1:1', retries: 1, retryDelayMs: 1 };
    await expect(resolveModel('org/public', unreachable)).rejects.toThrow(
      /^cannot reach the Hub at http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED.*gave up on config\.json of org\/public@main after 2 attempts\)\. Check the network .*offline: true/);
    await expect(resolveModel('org/public', { ...unreachable, retries: 0 })).rejects.toThrow(/gave up on config\.json of org\/public@main after 1 attempt\)/);
    const online = await resolveModel('org/public', fast());
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
    let warnings: string[];
    try {
      expect(await resolveModel('org/public', unreachable)).toEqual(online);
      warnings = warn.mock.calls.map((c) => String(c[0]));
    } finally {
      warn.mockRestore();
    }
    expect(warnings).toEqual([expect.stringMatching(/using the cached org\/public@main/)]);
  });

  test('the wait between attempts doubles up to a minute (40 retries: no wait past what a timer takes)', async () => {
    // Every wait recorded and skipped: 40 doublings of 500 ms would pass 2^31 - 1 ms, which a timer ends at once.
    const waits: number[] = [];
    const skip = jest.spyOn(global, 'setTimeout').mockImplementation(((run: () => void, ms: number) => {
      waits.push(ms);
      setImmediate(run);
    }) as typeof setTimeout);
    try {
      await expect(resolveModel('org/public', { cacheDir: path.join(cacheDir, 'backoff'), endpoint: 'http://127.0.0.1:1', retries: 40 }))
        .rejects.toThrow(/after 41 attempts/);
    } finally {
      skip.mockRestore();
    }
    expect(waits).toEqual(Array.from({ length: 40 }, (_, i) => Math.min(500 * 2 ** i, 60_000)));
  });

  test('offline mode finds a cache laid out by Python huggingface_hub', async () => {
    const dir = repoDir('org/python');
    const config = Buffer.from('{"model_type": "camembert"}');
    const weights = Buffer.from('weights');
    for (const [file, data] of [['config.json', config], ['tokenizer.json', Buffer.from('{}')], ['model.safetensors', weights]] as const) {
      const blob = path.join(dir, 'blobs', sha256(data));
      fs.mkdirSync(path.dirname(blob), { recursive: true });
      fs.writeFileSync(blob, data);
      fs.mkdirSync(path.join(dir, 'snapshots', OTHER_COMMIT), { recursive: true });
      fs.symlinkSync(`../../blobs/${sha256(data)}`, path.join(dir, 'snapshots', OTHER_COMMIT, file));
    }
    fs.mkdirSync(path.join(dir, 'refs'));
    fs.writeFileSync(path.join(dir, 'refs', 'v1.0'), OTHER_COMMIT);
    const model = await resolveModel('org/python', { cacheDir, revision: 'v1.0', offline: true });
    expect(sha256(fs.readFileSync(model.weightsPath!))).toBe(sha256(weights));
  });

  test('offline mode names what is missing and how to get it', async () => {
    await expect(resolveModel('org/public', { cacheDir, offline: true }))
      .rejects.toThrow(/offline mode: org\/public at revision 'main' is not in the Hugging Face cache.*HF_HUB_OFFLINE unset/);
    await resolveModel('org/public', fast());
    fs.rmSync(path.join(repoDir('org/public'), 'snapshots', COMMIT, 'tokenizer.json'));
    await expect(resolveModel('org/public', { cacheDir, offline: true })).rejects.toThrow(/tokenizer\.json of org\/public@main is not in the cache/);
    // A ref left empty (huggingface_hub writes refs in place) or holding something else names itself.
    for (const content of ['', '../../../elsewhere']) {
      fs.writeFileSync(path.join(repoDir('org/public'), 'refs', 'main'), content);
      await expect(resolveModel('org/public', { cacheDir, offline: true }))
        .rejects.toThrow(`refs/main holds ${JSON.stringify(content)}, not a commit hash (a write cut short?), so the cached revision 'main' of org/public is unknown; run once`);
    }
  });

  test('a pinned commit is fetched at that commit and writes no ref', async () => {
    const model = await resolveModel('org/public', { ...fast(), revision: COMMIT });
    expect(model.dir).toBe(path.join(repoDir('org/public'), 'snapshots', COMMIT));
    expect(fs.existsSync(path.join(repoDir('org/public'), 'refs'))).toBe(false);
    const missing = await resolveModel('org/public', { ...fast(), revision: 'no-such-branch' }).catch((err: unknown) => err);
    expect(missing).toBeInstanceOf(HubError);
    expect(missing).toMatchObject({ name: 'HubError', status: 404, retryable: false, message: expect.stringMatching(/404/) });
  });

  test('HF_ENDPOINT and HF_TOKEN: a private repo needs the bearer token, which never reaches the CDN', async () => {
    await expect(resolveModel('org/private', fast())).rejects.toThrow(/401.*HF_TOKEN/);
    const saved = { endpoint: process.env.HF_ENDPOINT, token: process.env.HF_TOKEN };
    process.env.HF_ENDPOINT = hub.endpoint;
    process.env.HF_TOKEN = 'hf_secret';
    try {
      const model = await resolveModel('org/private', { cacheDir, retryDelayMs: 1 });
      expect(sha256(fs.readFileSync(model.weightsPath!))).toBe(sha256(REPOS['org/private'].files['model.safetensors']));
    } finally {
      for (const [key, value] of [['HF_ENDPOINT', saved.endpoint], ['HF_TOKEN', saved.token]] as const) {
        if (value === undefined) delete process.env[key]; else process.env[key] = value;
      }
    }
    const cdn = hub.requests.filter((r) => r.server === 'cdn');
    expect(cdn.length).toBeGreaterThan(0);
    expect(cdn.filter((r) => r.authorization !== undefined)).toEqual([]);
  });

  test('an unknown repo (401, as the real Hub answers) is an error naming it and saying it may not exist', async () => {
    await expect(resolveModel('org/nothing', fast())).rejects.toThrow(
      /config\.json of org\/nothing@main .*\(401\) \(the Hub says: Repository not found\): the repository is private or gated, or does not exist.*; there is no folder org\/nothing here either$/);
  });

  test('a legacy one-part id (the Hub redirects it to the repo it became) downloads, cached under that id as huggingface_hub does', async () => {
    hub.moved.set('legacy-model', 'org/public');
    try {
      const model = await resolveModel('legacy-model', fast());
      expect(model.dir).toBe(path.join(repoDir('legacy-model'), 'snapshots', COMMIT));
      for (const [file, data] of Object.entries(REPOS['org/public'].files)) expect(fs.readFileSync(path.join(model.dir, file))).toEqual(data);
      expect(await resolveModel('legacy-model', { ...fast(), offline: true })).toEqual(model);
    } finally {
      hub.moved.clear();
    }
    // huggingface_hub's validate_repo_id rules: these are neither folders nor ids, and reach no server.
    hub.requests.length = 0;
    expect(looksLikeHubId(`antoinelouis/${'b'.repeat(96)}`)).toBe(true);  // the 96-character limit is the name's
    for (const bad of ['a--b', 'a..b', '-a', 'a.', 'org/name/extra', 'org/', `org/${'x'.repeat(97)}`, 'with space', 'org/name.git']) {
      await expect(resolveModel(bad, fast())).rejects.toThrow(`model ${JSON.stringify(bad)} is neither an existing folder nor a Hub id`);
    }
    expect(hub.requests).toEqual([]);
  });

  test('a connection cut mid-file resumes with an HTTP Range request', async () => {
    hub.cutAfterBytes.set('model.safetensors', 100_000);
    const model = await resolveModel('org/public', fast());
    expect(sha256(fs.readFileSync(model.weightsPath!))).toBe(sha256(REPOS['org/public'].files['model.safetensors']));
    expect(hub.requests.filter((r) => r.server === 'cdn').map((r) => r.range)).toEqual([undefined, expect.stringMatching(/^bytes=[1-9][0-9]*-$/)]);
  });

  test('a wrong checksum is an error and leaves nothing in the cache', async () => {
    hub.corrupt.add('model.safetensors');
    try {
      await expect(resolveModel('org/public', fast())).rejects.toThrow(/checksum mismatch for model\.safetensors of org\/public.*nothing was cached/);
    } finally {
      hub.corrupt.delete('model.safetensors');
    }
    const files = listFiles(repoDir('org/public'));
    expect(files.filter((f) => f.includes('blobs/') && !f.startsWith('.no_exist'))).toHaveLength(6);  // the small files only
    expect(files.some((f) => f.includes('model.safetensors') || f.includes('.incomplete'))).toBe(false);
  });

  (fs.existsSync('/dev/full') ? test : test.skip)('a full disk is an error naming the file, and leaves nothing in the cache', async () => {
    // Writes to /dev/full fail with ENOSPC: stand it in for the partial download.
    const weights = REPOS['org/public'].files['model.safetensors'];
    const partial = path.join(repoDir('org/public'), 'blobs', `${sha256(weights)}.incomplete`);
    fs.mkdirSync(path.dirname(partial), { recursive: true });
    fs.symlinkSync('/dev/full', partial);
    await expect(resolveModel('org/public', fast())).rejects.toThrow(/disk full while downloading model\.safetensors .*nothing was cached/);
    expect(listFiles(repoDir('org/public')).some((f) => f.includes(sha256(weights)) || f.includes('model.safetensors'))).toBe(false);
  });

  test('5xx answers are retried with backoff, then reported', async () => {
    hub.failures.set('config.json', 2);
    await expect(resolveModel('org/public', fast())).resolves.toMatchObject({ onnxPath: null });
    hub.failures.set('tokenizer.json', 10);
    await expect(resolveModel('org/public', { ...fast(), cacheDir: path.join(cacheDir, 'other'), retries: 2 }))
      .rejects.toMatchObject({ name: 'HubError', status: 503, message: expect.stringMatching(/503 for tokenizer\.json of org\/public.*after 3 attempts/) });
    hub.failures.delete('tokenizer.json');
  });

  test('a repo without safetensors: its PyTorch checkpoint is fetched (for the converter), not its ONNX export', async () => {
    const model = await resolveModel('org/torch', fast());
    expect(model.weightsPath).toBe(path.join(model.dir, 'pytorch_model.bin'));
    expect(model.onnxPath).toBeNull();
    expect(hub.requests.some((r) => r.url.includes('onnx'))).toBe(false);
  });

  test('the files the encoder reads in an older layout: another settings file name, the pooling folder modules.json names', async () => {
    const model = await resolveModel('org/older', fast());
    expect(listFiles(model.dir)).toEqual(Object.keys(REPOS['org/older'].files).sort());
    for (const [file, data] of Object.entries(REPOS['org/older'].files)) expect(sha256(fs.readFileSync(path.join(model.dir, file)))).toBe(sha256(data));
    // The first settings file found ends the search, as in sentence-transformers.
    expect(hub.requests.filter((r) => r.method === 'HEAD' && r.url.includes('/sentence_')).map((r) => r.url.replace(/.*\//, ''))).toEqual(
      ['sentence_bert_config.json', 'sentence_roberta_config.json', 'sentence_distilbert_config.json', 'sentence_camembert_config.json']);
  });

  test('sharded weights: the index and every shard it names', async () => {
    const model = await resolveModel('org/sharded', fast());
    expect(path.basename(model.weightsPath!)).toBe('model.safetensors.index.json');
    for (const shard of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      expect(sha256(fs.readFileSync(path.join(model.dir, shard)))).toBe(sha256(REPOS['org/sharded'].files[shard]));
    }
  });

  testWithModel('a repo with only an ONNX graph whose tensors are in an external data file: the file comes with it, and the encoder gives the local model\'s vectors', async () => {
    const model = await resolveModel('org/onnx-external', fast());
    const snapshot = path.join(repoDir('org/onnx-external'), 'snapshots', COMMIT);
    expect(model).toEqual({ dir: snapshot, onnxPath: path.join(snapshot, 'onnx/model.onnx'), weightsPath: null });
    expect(listFiles(snapshot)).toEqual(Object.keys(REPOS['org/onnx-external'].files).sort());
    const data = REPOS['org/onnx-external'].files['onnx/model.onnx.data'];
    expect(sha256(fs.readFileSync(path.join(snapshot, 'onnx/model.onnx.data')))).toBe(sha256(data));
    const texts = ['Comment installer un paquet Debian ?', 'Le noyau gère la mémoire.', 'apt install télécharge et installe un paquet.'];
    const local = await Encoder.load(MODEL, { threads: 1 });
    const fromHub = await Encoder.load('org/onnx-external', { cacheDir, offline: true, threads: 1 });
    try {
      expect(fromHub.onnxPath).toBe(model.onnxPath);
      const [expected, actual] = [await local.encode(texts), await fromHub.encode(texts)];
      expect([actual.rows, actual.dim]).toEqual([expected.rows, expected.dim]);
      expect(maxAbsDifference(actual.data, expected.data)).toBeLessThan(1e-5);
    } finally {
      await Promise.all([local.dispose(), fromHub.dispose()]);
    }
    // Offline, a cache that lacks the data file says so (ONNX Runtime failed later); online, it is fetched again.
    fs.rmSync(path.join(snapshot, 'onnx/model.onnx.data'));
    await expect(resolveModel('org/onnx-external', { cacheDir, offline: true })).rejects.toThrow(
      'offline mode: onnx/model.onnx.data of org/onnx-external@main, the external data of its ONNX graph, is not in the cache');
    expect(await resolveModel('org/onnx-external', fast())).toEqual(model);
    expect(fs.existsSync(path.join(snapshot, 'onnx/model.onnx.data'))).toBe(true);
  });

  testWithModel('a repo with only an ONNX graph holding its tensors inline: the graph alone', async () => {
    const model = await resolveModel('org/onnx-inline', fast());
    expect(model.onnxPath).toBe(path.join(model.dir, 'model.onnx'));
    expect(listFiles(model.dir)).toEqual(Object.keys(REPOS['org/onnx-inline'].files).sort());
  });

  testWithModel('a plain transformers repo (no modules.json, no tokenizer_config.json) loads as sentence-transformers builds it', async () => {
    // Was "cannot read <snapshot>/modules.json: ENOENT", once the weights had been downloaded.
    const texts = ['Comment installer un paquet Debian ?', 'Le noyau gère la mémoire.', 'apt install télécharge et installe un paquet.'];
    const local = await Encoder.load(MODEL, { threads: 1 });
    const fromHub = await withEnv({ HF_ENDPOINT: hub.endpoint }, () => Encoder.load('org/plain', { cacheDir, threads: 1 }));
    try {
      // min(max_position_embeddings 514, no model_max_length), kept to the 512 positions after the padding id.
      expect([fromHub.dim, fromHub.maxLength]).toEqual([32, 512]);
      const [expected, actual] = [await local.encode(texts), await fromHub.encode(texts)];
      expect(maxAbsDifference(actual.data, expected.data)).toBeLessThan(1e-5);
    } finally {
      await Promise.all([local.dispose(), fromHub.dispose()]);
    }
  });

  test('Encoder.load refuses options no model allows before asking the Hub anything (they were refused after the download)', async () => {
    const refusals: [object, string][] = [
      [{ batchSize: 2 ** 31 + 1 }, "options.batchSize must be <= 2^32 / (maxLength x the model's dim) (batchSize x maxLength, the default " +
        `maxBatchTokens: a batch's hidden states are one Float32Array), got ${2 ** 31 + 1}, too many at any maxLength`],
      [{ batchSize: 2 ** 24 + 1, maxLength: 256 }, "options.batchSize must be <= 2^32 / (maxLength x the model's dim) (batchSize x maxLength, " +
        `the default maxBatchTokens: a batch's hidden states are one Float32Array), got ${2 ** 24 + 1}, too many at maxLength 256`],
      ...[[{ maxBatchTokens: 2 ** 32 + 1 }, 2 ** 32 + 1], [{ maxLength: 256, maxBatchTokens: 255 }, 255]].map(([options, got]) => [options as object,
        "options.maxBatchTokens must be between maxLength (one text must fit) and 2^32 / the model's dim (a batch's hidden states are one " +
        `Float32Array), got ${got}`] as [object, string]),
    ];
    for (const [options, message] of refusals) {
      await expect(withEnv({ HF_ENDPOINT: hub.endpoint }, () => Encoder.load('org/public', { cacheDir, ...options }))).rejects.toThrow(new RangeError(message));
    }
    expect(hub.requests).toEqual([]);
    expect(fs.readdirSync(cacheDir)).toEqual([]);
  });

  testWithModel('a plain transformers repo: no sentence-transformers file is asked for, the absent ones are remembered as huggingface_hub does, and it loads offline', async () => {
    const model = await resolveModel('org/plain', fast());
    // Were also asked for, each a 404: config_sentence_transformers.json, 1_Pooling/config.json and the 7 settings file names.
    const asked = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'modules.json',
      'model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'onnx/model.onnx', 'model.onnx'];
    expect(hub.requests.filter((r) => r.server === 'hub' && r.method === 'HEAD').map((r) => r.url.replace(`/org/plain/resolve/${COMMIT}/`, '')
      .replace('/org/plain/resolve/main/', ''))).toEqual(asked);
    // huggingface_hub's .no_exist/<commit>/<file> markers (file_download.py, _get_metadata_or_catch_error), which its
    // try_to_load_from_cache reads as "not in the repo".
    expect(listFiles(path.join(repoDir('org/plain'), '.no_exist', COMMIT))).toEqual(asked.slice(2, 9).sort());
    // Offline, with no Hub to ask: the same model, and the encoder's vectors.
    expect(await resolveModel('org/plain', { cacheDir, endpoint: 'http://127.0.0.1:1', offline: true })).toEqual(model);
    const texts = ['Comment installer un paquet Debian ?', 'Le noyau gère la mémoire.'];
    const [local, offline] = await Promise.all([Encoder.load(MODEL, { threads: 1 }), Encoder.load('org/plain', { cacheDir, offline: true, threads: 1 })]);
    try {
      expect(maxAbsDifference((await offline.encode(texts)).data, (await local.encode(texts)).data)).toBeLessThan(1e-5);
    } finally {
      await Promise.all([local.dispose(), offline.dispose()]);
    }
  });

  testWithModel('Encoder.load reports a Hub download through onProgress (a server logging it has no progress bar)', async () => {
    const progress: { file: string; bytes: number; totalBytes: number | null }[] = [];
    const encoder = await withEnv({ HF_ENDPOINT: hub.endpoint }, () =>
      Encoder.load('org/onnx-inline', { cacheDir, threads: 1, onProgress: (p) => progress.push(p) }));
    await encoder.dispose();
    const graph = REPOS['org/onnx-inline'].files['model.onnx'];
    expect(progress.filter((p) => p.file === 'model.onnx').at(-1)).toEqual({ file: 'model.onnx', bytes: graph.length, totalBytes: graph.length });
    expect(new Set(progress.map((p) => p.file))).toEqual(new Set(Object.keys(REPOS['org/onnx-inline'].files)));
    // Cached: nothing to report.
    progress.length = 0;
    await (await Encoder.load('org/onnx-inline', { cacheDir, offline: true, threads: 1, onProgress: (p) => progress.push(p) })).dispose();
    expect(progress).toEqual([]);
    await expect(Encoder.load('org/onnx-inline', { cacheDir, onProgress: 'log' as never })).rejects.toThrow('options.onProgress must be a function, got string');
  });

  test('an ONNX graph whose external data is outside its folder is refused, one naming a file the repo lacks is a 404 naming it, a damaged one is named', async () => {
    for (const [id, location] of [['org/onnx-outside', '../outside.bin'], ['org/onnx-absolute', '/etc/outside.bin']]) {
      await expect(resolveModel(id, fast())).rejects.toThrow(
        `ONNX graph ${path.join(repoDir(id), 'snapshots', COMMIT, 'onnx/model.onnx')} keeps tensors in "${location}", outside its folder: refused`);
    }
    expect(hub.requests.some((r) => r.url.endsWith('outside.bin'))).toBe(false);
    await expect(resolveModel('org/onnx-no-data', fast())).rejects.toMatchObject({ name: 'HubError', status: 404,
      message: expect.stringMatching(/^Hub has no onnx\/model\.onnx_data of org\/onnx-no-data@a{40} .*; the ONNX graph onnx\/model\.onnx keeps its tensors in it;/) });
    // Offline too: the graph is in the cache, its data is not.
    await expect(resolveModel('org/onnx-no-data', { cacheDir, offline: true, revision: COMMIT })).rejects.toThrow(
      /offline mode: onnx\/model\.onnx_data of org\/onnx-no-data@a{40}, the external data of its ONNX graph, is not in the cache/);
    await expect(resolveModel('org/onnx-truncated', fast())).rejects.toThrow(new RegExp(
      `^${path.join(repoDir('org/onnx-truncated'), 'snapshots', COMMIT, 'onnx/model.onnx')} is not a valid ONNX graph: field 7 of \\d+ bytes runs past its message at byte \\d+$`));
  });

  test('two downloads of one model at once: the second waits for the blob lock, then uses the first one\'s file', async () => {
    const weights = REPOS['org/public'].files['model.safetensors'];
    const { result: [a, b] } = await warningsOf(() => Promise.all([resolveModel('org/public', fast()), resolveModel('org/public', fast())]));
    expect(a).toEqual(b);
    expect(sha256(fs.readFileSync(a.weightsPath!))).toBe(sha256(weights));
    expect(hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET')).toHaveLength(1);
    // huggingface_hub's lock file, left in place as Python's filelock leaves it.
    expect(fs.existsSync(path.join(cacheDir, '.locks', 'models--org--public', `${sha256(weights)}.lock`))).toBe(true);
  });

  test('a file system without flock (ENOLCK) downloads without the lock, with a warning', async () => {
    const addon = loadAddon();
    const lock = jest.spyOn(addon, 'tryLockFile').mockImplementation(() => {
      throw Object.assign(new Error('cannot lock file descriptor 99: No locks available'), { errno: os.constants.errno.ENOLCK });
    });
    try {
      const { result, warnings } = await warningsOf(() => resolveModel('org/public', fast()));
      expect(sha256(fs.readFileSync(result.weightsPath!))).toBe(sha256(REPOS['org/public'].files['model.safetensors']));
      expect(warnings.some((w) => /has no flock \(cannot lock file descriptor 99: No locks available\); downloading model\.safetensors without the lock/.test(w))).toBe(true);
    } finally {
      lock.mockRestore();
    }
  });

  test('an expired CDN link is asked for anew through the Hub after a cut connection', async () => {
    hub.cutAfterBytes.set('model.safetensors', 100_000);
    hub.expireOnCut.add('model.safetensors');
    const model = await resolveModel('org/public', fast());
    expect(sha256(fs.readFileSync(model.weightsPath!))).toBe(sha256(REPOS['org/public'].files['model.safetensors']));
    const gets = hub.requests.filter((r) => r.method === 'GET' && (r.server === 'cdn' || r.url.endsWith('/model.safetensors')));
    expect(gets.map((r) => r.server)).toEqual(['hub', 'cdn', 'hub', 'cdn']);  // each attempt gets a fresh signed link
  });

  test('HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE hold even when a caller passes offline: false', async () => {
    const online = await resolveModel('org/public', fast());
    for (const name of ['HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE']) {
      hub.requests.length = 0;
      expect(await withEnv({ [name]: 'YES' }, () => resolveModel('org/public', { ...fast(), offline: false }))).toEqual(online);
      expect(hub.requests).toEqual([]);
    }
  });

  test('an HTTP error other than 404 falls back to a cached model; a 404 does not', async () => {
    const online = await resolveModel('org/public', fast());
    hub.failures.set('config.json', 10);
    const { result, warnings } = await warningsOf(() => resolveModel('org/public', { ...fast(), retries: 1 }));
    hub.failures.delete('config.json');
    expect(result).toEqual(online);
    expect(warnings).toEqual([expect.stringMatching(/Hub answered 503 for config\.json .*; using the cached org\/public@main/)]);
    await expect(resolveModel('org/public', { ...fast(), revision: 'no-such-branch' })).rejects.toThrow(/404/);
  });

  test('a rate limit (429) waits the Retry-After it is given, or fails at once when that is long', async () => {
    hub.rateLimits.set('config.json', { times: 1, retryAfter: '0' });
    await expect(resolveModel('org/public', { ...fast(), retries: 1 })).resolves.toMatchObject({ onnxPath: null });
    hub.rateLimits.set('tokenizer.json', { times: 1, retryAfter: '3600' });
    hub.requests.length = 0;
    const fresh = { ...fast(), cacheDir: path.join(cacheDir, 'fresh') };
    await expect(resolveModel('org/public', fresh)).rejects.toThrow(/Hub rate-limited tokenizer\.json .* for 3600 s \(the Hub says: rate limited\); try later, or set HF_TOKEN/);
    expect(hub.requests.filter((r) => r.url.endsWith('/tokenizer.json'))).toHaveLength(1);
    // Still limited after the retries: the error keeps the status and the wait the Hub asked for.
    hub.rateLimits.set('tokenizer.json', { times: 5, retryAfter: '0' });
    await expect(resolveModel('org/public', { ...fresh, retries: 1 }))
      .rejects.toMatchObject({ name: 'HubError', status: 429, retryAfterMs: 0 });
    hub.rateLimits.delete('tokenizer.json');
  });

  test('a model updated on the Hub: the new commit beside the old one, unchanged files shared, refs/main moved last', async () => {
    const repo = REPOS['org/public'];
    const before = await resolveModel('org/public', fast());
    const saved = { commit: repo.commit, config: repo.files['config.json'] };
    const NEW_COMMIT = 'd'.repeat(40);
    Object.assign(repo, { commit: NEW_COMMIT });
    repo.files['config.json'] = Buffer.from(JSON.stringify({ model_type: 'camembert', seed: 99 }));
    try {
      // Cut off while fetching the new commit (the weights fail): main still names the old one, offline too.
      hub.failures.set('model.safetensors', 99);
      await expect(resolveModel('org/public', { ...fast(), retries: 0 })).rejects.toThrow(/503/);
      expect(fs.readFileSync(path.join(repoDir('org/public'), 'refs', 'main'), 'utf8')).toBe(COMMIT);
      expect(await resolveModel('org/public', { cacheDir, offline: true })).toEqual(before);
      hub.failures.clear();
      const after = await resolveModel('org/public', fast());
      expect(after.dir).toBe(path.join(repoDir('org/public'), 'snapshots', NEW_COMMIT));
      expect(fs.readFileSync(path.join(after.dir, 'config.json'))).toEqual(repo.files['config.json']);
      expect(fs.readFileSync(path.join(before.dir, 'config.json'))).toEqual(saved.config);
      expect(fs.realpathSync(after.weightsPath!)).toBe(fs.realpathSync(before.weightsPath!));
      expect(await resolveModel('org/public', { cacheDir, offline: true })).toEqual(after);
      expect(await resolveModel('org/public', { cacheDir, offline: true, revision: COMMIT })).toEqual(before);
    } finally {
      Object.assign(repo, { commit: saved.commit });
      repo.files['config.json'] = saved.config;
    }
  });

  test('a cache it cannot write to still serves a cached model: the ref is rewritten only when it changes, markers are optional', async () => {
    await resolveModel('org/public', fast());
    const ref = path.join(repoDir('org/public'), 'refs', 'main');
    const inode = fs.statSync(ref).ino;
    // A .no_exist that cannot hold markers (here a file where the folder would be).
    fs.rmSync(path.join(repoDir('org/public'), '.no_exist'), { recursive: true });
    fs.writeFileSync(path.join(repoDir('org/public'), '.no_exist'), '');
    await expect(resolveModel('org/public', fast())).resolves.toMatchObject({ onnxPath: null });
    expect(fs.statSync(ref).ino).toBe(inode);
  });

  test('a local file error (here the partial download is a folder) is reported at once, not as a network failure', async () => {
    const weights = REPOS['org/public'].files['model.safetensors'];
    fs.mkdirSync(path.join(repoDir('org/public'), 'blobs', `${sha256(weights)}.incomplete`), { recursive: true });
    await expect(resolveModel('org/public', fast())).rejects.toThrow(/EISDIR/);
    expect(hub.requests.filter((r) => r.server === 'cdn')).toHaveLength(1);
  });

  test('tokens as huggingface_hub finds them: whitespace dropped, HUGGING_FACE_HUB_TOKEN, the token file; a rejected token is named', async () => {
    const tokenFile = path.join(cacheDir, 'token');
    const env = { HF_ENDPOINT: hub.endpoint, HF_TOKEN: undefined, HUGGING_FACE_HUB_TOKEN: undefined, HF_TOKEN_PATH: tokenFile };
    const load = (sub: string) => resolveModel('org/private', { cacheDir: path.join(cacheDir, sub), retryDelayMs: 1 });
    await withEnv({ ...env, HF_TOKEN: ' hf_secret\n' }, () => load('a'));
    await withEnv({ ...env, HUGGING_FACE_HUB_TOKEN: 'hf_secret' }, () => load('b'));
    fs.writeFileSync(tokenFile, 'hf_secret\n');
    await withEnv(env, () => load('c'));
    fs.writeFileSync(tokenFile, 'hf_wrong\n');
    await expect(withEnv(env, () => load('d'))).rejects.toThrow(
      /\(401\) \(the Hub says: Invalid credentials in Authorization header\): .* the token given .* is invalid or cannot read it/);
    fs.rmSync(tokenFile);
    await expect(withEnv(env, () => load('e'))).rejects.toThrow(/\(401\) \(the Hub says: Repository not found\): .* set HF_TOKEN/);
  });
});

describe('a token HTTP cannot carry', () => {
  test('is named with where it came from, before any request (it was retried, then reported as a network failure)', async () => {
    const env = { HF_TOKEN: undefined, HUGGING_FACE_HUB_TOKEN: undefined, HF_TOKEN_PATH: path.join(cacheDir, 'token') };
    await expect(withEnv(env, () => resolveModel('org/private', { ...fast(), token: 'hf_sec\u200bret' }))).rejects.toThrow(
      new Error('the Hub token from options.token holds U+200B at index 6, which an HTTP header cannot carry: copy the token again'));
    await expect(withEnv({ ...env, HF_TOKEN: 'hf_secret\nhf_other' }, () => resolveModel('org/private', fast()))).rejects.toThrow(
      new Error('the Hub token from HF_TOKEN holds U+000A at index 9, which an HTTP header cannot carry: copy the token again'));
    fs.writeFileSync(env.HF_TOKEN_PATH, '\ufeffhf_s\u00e9cr\u2026\n');  // é is latin-1, which a header carries; … is not
    await expect(withEnv(env, () => resolveModel('org/private', fast()))).rejects.toThrow(
      new Error(`the Hub token from the token file ${env.HF_TOKEN_PATH} holds U+2026 at index 7, which an HTTP header cannot carry: copy the token again`));
    expect(hub.requests).toEqual([]);
  });
});

describe('a signal (AbortSignal) stops a download', () => {
  const weights = REPOS['org/public'].files['model.safetensors'];
  const abortListeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

  test('aborted before: rejects with the reason and asks the Hub nothing', async () => {
    const reason = new Error('client went away');
    await expect(resolveModel('org/public', { ...fast(), signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await expect(resolveModel('org/public', { ...fast(), signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    expect(hub.requests).toEqual([]);
  });

  test.each([4, 0])('aborted mid-file (retries: %d): the request ends, nothing is retried, the partial file stays and the next call resumes it', async (retries) => {
    const controller = new AbortController();
    const reason = new Error('client went away');
    const downloading = resolveModel('org/public', {
      ...fast(), retries, signal: controller.signal,
      onProgress: (p) => { if (p.file === 'model.safetensors' && p.bytes > 0) controller.abort(reason); },
    });
    await expect(downloading).rejects.toBe(reason);
    expect(abortListeners(controller.signal)).toBe(0);
    expect(hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET')).toHaveLength(1);
    // Only the resume logic's partial download: no blob, no snapshot entry for the weights.
    const partial = `blobs/${sha256(weights)}.incomplete`;
    expect(listFiles(repoDir('org/public')).filter((f) => f.includes(sha256(weights)) || f.endsWith('model.safetensors'))).toEqual([partial]);
    const kept = fs.statSync(path.join(repoDir('org/public'), partial)).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(weights.length);

    hub.requests.length = 0;
    const model = await resolveModel('org/public', fast());
    expect(sha256(fs.readFileSync(model.weightsPath!))).toBe(sha256(weights));
    expect(hub.requests.filter((r) => r.server === 'cdn').map((r) => r.range)).toEqual([`bytes=${kept}-`]);
  });

  test('aborted during the checksum of a received file: the reading stops, the file stays and the next call checks it without downloading it again', async () => {
    const controller = new AbortController();
    const reason = new Error('client went away');
    // Aborted as the first chunk of the received weights is read back for their sha256.
    const nodeFs: typeof fs = require('fs');  // the module object itself (the import is a read-only view)
    const open = nodeFs.createReadStream;
    let chunksRead = 0;
    const read = jest.spyOn(nodeFs, 'createReadStream').mockImplementation((file, ...rest) => {
      const stream = open(file, ...rest);
      if (String(file).endsWith(`${sha256(weights)}.incomplete`)) {
        stream.on('data', () => chunksRead++).once('data', () => controller.abort(reason));
      }
      return stream;
    });
    try {
      await expect(resolveModel('org/public', { ...fast(), signal: controller.signal })).rejects.toBe(reason);
    } finally {
      read.mockRestore();
    }
    expect(chunksRead).toBe(1);  // of 5 (64 KiB each)
    expect(abortListeners(controller.signal)).toBe(0);
    // As after an abort during the body: only the partial download, here complete.
    const partial = `blobs/${sha256(weights)}.incomplete`;
    expect(listFiles(repoDir('org/public')).filter((f) => f.includes(sha256(weights)) || f.endsWith('model.safetensors'))).toEqual([partial]);
    expect(fs.statSync(path.join(repoDir('org/public'), partial)).size).toBe(weights.length);

    hub.requests.length = 0;
    const model = await resolveModel('org/public', fast());
    expect(sha256(fs.readFileSync(model.weightsPath!))).toBe(sha256(weights));
    expect(hub.requests.filter((r) => r.server === 'cdn').map((r) => r.range)).toEqual([`bytes=${weights.length}-`]);  // answered 416: nothing left to send
  });

  test('aborted while waiting for another download\'s lock: the wait ends with the reason', async () => {
    // Another download holds the blob's lock (flock locks of two descriptors conflict within a process too).
    const lockFile = path.join(cacheDir, '.locks', 'models--org--public', `${sha256(weights)}.lock`);
    fs.mkdirSync(path.dirname(lockFile), { recursive: true });
    const fd = fs.openSync(lockFile, 'w');
    const controller = new AbortController();
    const reason = new Error('client went away');
    // Aborted when the wait's notice comes (after 2 s): the lock is never released.
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => controller.abort(reason));
    try {
      expect(loadAddon().tryLockFile(fd)).toBe(true);
      await expect(resolveModel('org/public', { ...fast(), signal: controller.signal })).rejects.toBe(reason);
      expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([expect.stringMatching(/^waiting for another process downloading model\.safetensors/)]);
      expect(abortListeners(controller.signal)).toBe(0);
    } finally {
      warn.mockRestore();
      fs.closeSync(fd);
    }
  }, 20_000);  // the notice comes after 2 s; a wait the signal could not end would run into this

  test('a long-lived signal shared by many downloads keeps no listener', async () => {
    const { signal } = new AbortController();
    for (let i = 0; i < 5; i++) {
      const model = await resolveModel('org/sharded', { ...fast(), cacheDir: path.join(cacheDir, String(i)), signal });
      await resolveModel('org/sharded', { ...fast(), cacheDir: path.join(cacheDir, String(i)), signal });  // cached: HEAD requests only
      expect(sha256(fs.readFileSync(path.join(model.dir, 'model-00001-of-00002.safetensors'))))
        .toBe(sha256(REPOS['org/sharded'].files['model-00001-of-00002.safetensors']));
    }
    expect(abortListeners(signal)).toBe(0);
  });

  test('one signal shared by 20 downloads at once: no leak warning from Node.js (past 10 listeners), none left after', async () => {
    const { signal } = new AbortController();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      // At once on the signal: 20 HEAD requests, 20 waits before a retry (a 503 each), 19 waits for the blob lock.
      hub.failures.set('config.json', 20);
      const models = await Promise.all(Array.from({ length: 20 }, () => resolveModel('org/public', { ...fast(), signal })));
      await new Promise(setImmediate);  // Node.js emits its warnings on the next tick
      models.forEach((m) => expect(m).toEqual(models[0]));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings).toEqual([]);
    expect(abortListeners(signal)).toBe(0);
  });

  test('an abort stops the download even when an earlier listener of the signal stops the event\'s propagation', async () => {
    const controller = new AbortController();
    controller.signal.addEventListener('abort', (event) => event.stopImmediatePropagation());
    const reason = new Error('client went away');
    await expect(resolveModel('org/public', {
      ...fast(), signal: controller.signal,
      onProgress: (p) => { if (p.file === 'model.safetensors' && p.bytes > 0) controller.abort(reason); },
    })).rejects.toBe(reason);
    // Cut mid-file: not downloaded to the end and then refused.
    expect(fs.statSync(path.join(repoDir('org/public'), `blobs/${sha256(weights)}.incomplete`)).size).toBeLessThan(weights.length);
  });
});

describe('the cache folder', () => {
  test('HF_HUB_CACHE, then HUGGINGFACE_HUB_CACHE, then HF_HOME/hub, with ~ and $VARS expanded as Python does', async () => {
    const none = { HF_HUB_CACHE: undefined, HUGGINGFACE_HUB_CACHE: undefined, HF_HOME: undefined, XDG_CACHE_HOME: undefined };
    await withEnv(none, async () => expect(defaultCacheDir()).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'hub')));
    await withEnv({ ...none, HF_HOME: '~/hf' }, async () => expect(defaultCacheDir()).toBe(path.join(os.homedir(), 'hf', 'hub')));
    await withEnv({ ...none, HF_HOME: '$CAMEMBED_T/x', CAMEMBED_T: '/data' }, async () => expect(defaultCacheDir()).toBe('/data/x/hub'));
    await withEnv({ ...none, HF_HOME: '/h', HUGGINGFACE_HUB_CACHE: '${CAMEMBED_T}/old', CAMEMBED_T: '/d' },
      async () => expect(defaultCacheDir()).toBe('/d/old'));
    await withEnv({ ...none, HUGGINGFACE_HUB_CACHE: '/old', HF_HUB_CACHE: '~/new' }, async () => expect(defaultCacheDir()).toBe(path.join(os.homedir(), 'new')));
  });
});

describe('downloads through a proxy (HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as Python reads them)', () => {
  test('http: requests go to the proxy in absolute form, with its credentials; NO_PROXY bypasses it', async () => {
    const proxy = await startFakeProxy();
    try {
      const withCredentials = proxy.url.replace('http://', 'http://user:p%40ss@');
      const model = await withEnv({ HTTP_PROXY: withCredentials }, () => resolveModel('org/public', fast()));
      expect(sha256(fs.readFileSync(model.weightsPath!))).toBe(sha256(REPOS['org/public'].files['model.safetensors']));
      const basic = `Basic ${Buffer.from('user:p@ss').toString('base64')}`;
      expect(proxy.log).toContain(`HEAD ${hub.endpoint}/org/public/resolve/main/config.json ${basic}`);
      expect(proxy.log.some((l) => /^GET http:\/\/127\.0\.0\.1:\d+\/blobs\//.test(l) && l.endsWith(basic))).toBe(true);  // the CDN too
      proxy.log.length = 0;
      await withEnv({ http_proxy: proxy.url, NO_PROXY: 'example.com, 127.0.0.1' },
        () => resolveModel('org/public', { ...fast(), cacheDir: path.join(cacheDir, 'direct') }));
      expect(proxy.log).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  test('NO_PROXY forms (names and subdomains, ports, IPv4/IPv6 addresses, CIDR networks), ALL_PROXY, and only http(s) proxies', async () => {
    const via = (url: string, noProxy: string | undefined, extra: Record<string, string | undefined> = {}) =>
      withEnv({ HTTPS_PROXY: 'http://p:1', HTTP_PROXY: 'http://p:1', NO_PROXY: noProxy, ...extra }, async () => proxyFor(new URL(url))?.host ?? null);
    const cases: [string, string | undefined, string | null][] = [
      ['https://huggingface.co/x', undefined, 'p:1'],
      ['https://huggingface.co/x', 'example.com', 'p:1'],
      ['https://cdn.example.com/x', '.example.com', null],
      ['https://cdn.example.com/x', '*.example.com', null],
      ['https://cdn.example.com/x', 'localhost, example.com', null],
      ['https://badexample.com/x', 'example.com', 'p:1'],
      ['https://example.com/x', 'example.com:443', null],
      ['https://example.com:8443/x', 'example.com:443', 'p:1'],
      ['http://[::1]:8080/x', 'localhost,127.0.0.1,::1', null],
      ['http://[::1]:8080/x', '[::1]:8080', null],
      ['http://[::1]:8080/x', '[::1]:9', 'p:1'],
      ['http://10.1.2.3/x', '10.0.0.0/8', null],
      ['http://11.1.2.3/x', '10.0.0.0/8', 'p:1'],
      ['http://[2001:db8::5]/x', '2001:db8::/32', null],
      ['https://anything.org/x', '*', null],
    ];
    for (const [url, noProxy, expected] of cases) expect([url, noProxy, await via(url, noProxy)]).toEqual([url, noProxy, expected]);
    expect(await via('https://huggingface.co/x', undefined, { HTTPS_PROXY: undefined, all_proxy: 'http://a:2' })).toBe('a:2');
    await expect(via('https://huggingface.co/x', undefined, { HTTPS_PROXY: 'socks5://s:1080' })).rejects.toThrow(/only http:\/\/ and https:\/\/ proxies/);
  });

  test('a proxy that refuses the tunnel (407) is reported at once, with what to check, not retried as a network failure', async () => {
    const proxy = await startFakeProxy();
    proxy.refuseConnect = 407;
    try {
      const refused = withEnv({ HTTPS_PROXY: proxy.url }, () => resolveModel('org/public', { ...fast(), endpoint: 'https://localhost:1' }));
      await expect(refused).rejects.toThrow(/the proxy 127\.0\.0\.1:\d+ refused a tunnel to localhost:1 \(407\): check the credentials in the proxy URL/);
      await expect(refused).rejects.toMatchObject({ name: 'ProxyError' });
      await expect(refused).rejects.toBeInstanceOf(ProxyError);
      expect(proxy.log.filter((l) => l.startsWith('CONNECT '))).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });

  test('an abort while the proxy has not answered the tunnel (CONNECT) ends it at once', async () => {
    // A proxy that takes the connection and never answers: only the abort can end the wait (the
    // request's own timeout comes after 30 s, past this test's).
    const sockets: net.Socket[] = [];
    const closed: Array<Promise<void>> = [];
    const silent = net.createServer((socket) => {
      sockets.push(socket);
      closed.push(new Promise((resolve) => socket.on('close', () => resolve())));
      socket.on('error', () => undefined);
      socket.once('data', () => controller.abort(reason));  // the CONNECT request has come
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const controller = new AbortController();
    const reason = new Error('client went away');
    try {
      const proxy = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      await expect(withEnv({ HTTPS_PROXY: proxy }, () => resolveModel('org/public', {
        ...fast(), endpoint: 'https://localhost:1', signal: controller.signal,
      }))).rejects.toBe(reason);
      expect(sockets).toHaveLength(1);
      await Promise.all(closed);  // the tunnel's connection is closed, not left to its timeout
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  }, 10_000);

  // https through a CONNECT tunnel, in a child process that trusts the test's own certificate
  // (NODE_EXTRA_CA_CERTS is read at start-up); the certificate is made with openssl.
  const haveOpenssl = spawnSync('openssl', ['version']).status === 0;
  if (!haveOpenssl) console.warn('https proxy test skipped: openssl is missing (it makes the test certificate)');
  (haveOpenssl ? test : test.skip)('https: a CONNECT tunnel per host, TLS checked end to end', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-tls-'));
    const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost']);
    expect(made.status).toBe(0);
    const tlsHub = await startFakeHub(REPOS, { key: fs.readFileSync(key), cert: fs.readFileSync(cert) });
    const proxy = await startFakeProxy();
    const load = (extraCa: string | undefined, endpoint = tlsHub.endpoint) => new Promise<{ code: number; out: string }>((resolve) => {
      const script = `require(${JSON.stringify(path.resolve(__dirname, '..', 'dist', 'model'))}).resolveModel('org/public', ` +
        `{ cacheDir: ${JSON.stringify(path.join(dir, 'cache'))}, endpoint: ${JSON.stringify(endpoint)}, retries: 0 })` +
        '.then((m) => console.log(m.weightsPath), (e) => { console.log(e.message); process.exitCode = 1; })';
      const env = { ...process.env, HTTPS_PROXY: proxy.url.replace('http://', 'http://user:secret@'), NODE_EXTRA_CA_CERTS: extraCa };
      if (extraCa === undefined) delete env.NODE_EXTRA_CA_CERTS;
      execFile(process.execPath, ['-e', script], { env }, (err, stdout) => resolve({ code: err === null ? 0 : 1, out: stdout.trim() }));
    });
    try {
      const untrusted = await load(undefined);
      expect(untrusted).toEqual({ code: 1, out: expect.stringMatching(/self-signed certificate/) });
      // The certificate names localhost only: reached as 127.0.0.1, it must not pass.
      const wrongHost = await load(cert, tlsHub.endpoint.replace('localhost', '127.0.0.1'));
      expect(wrongHost).toEqual({ code: 1, out: expect.stringMatching(/IP: 127\.0\.0\.1 is not in the cert's list/) });
      const trusted = await load(cert);
      expect(trusted.code).toBe(0);
      expect(sha256(fs.readFileSync(trusted.out))).toBe(sha256(REPOS['org/public'].files['model.safetensors']));
      const connects = new Set(proxy.log.filter((l) => l.startsWith('CONNECT ')).map((l) => l.split(' ')[1]));
      const port = (origin: string) => new URL(origin).port;
      expect(connects).toContain(`localhost:${port(tlsHub.endpoint)}`);
      expect(connects.size).toBe(3);  // the hub (by name and by address) and its CDN
      const basic = `Basic ${Buffer.from('user:secret').toString('base64')}`;
      expect(proxy.log.filter((l) => l.startsWith('CONNECT ') && !l.endsWith(basic))).toEqual([]);
      expect(proxy.log.filter((l) => !l.startsWith('CONNECT '))).toEqual([]);
    } finally {
      await proxy.close();
      await tlsHub.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// resolveModel on Hub ids against a fake Hub on 127.0.0.1 (test/helpers/fake-hub.ts).
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveModel } from '../lib/model';
import { makeRandom } from './helpers/random';
import { FakeHub, FakeRepo, startFakeHub } from './helpers/fake-hub';

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
    'modules.json': Buffer.from('[]'),
    'sentence_bert_config.json': Buffer.from('{"max_seq_length": 128}'),
    '1_Pooling/config.json': Buffer.from('{"pooling_mode_mean_tokens": true}'),
    'model.safetensors': randomBytes(seed, 300_000),
  };
}

const REPOS: Record<string, FakeRepo> = {
  'org/public': { commit: COMMIT, files: repoFiles(1), lfs: ['model.safetensors'] },
  'org/private': { commit: OTHER_COMMIT, files: repoFiles(2), lfs: ['model.safetensors'], token: 'hf_secret' },
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

let hub: FakeHub;
let cacheDir: string;
const fast = () => ({ cacheDir, endpoint: hub.endpoint, retryDelayMs: 1 });

beforeAll(async () => {
  hub = await startFakeHub(REPOS);
});
afterAll(() => hub.close());
beforeEach(() => {
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-hub-'));
  hub.requests.length = 0;
});
afterEach(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

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
  });

  test('a pinned commit is fetched at that commit and writes no ref', async () => {
    const model = await resolveModel('org/public', { ...fast(), revision: COMMIT });
    expect(model.dir).toBe(path.join(repoDir('org/public'), 'snapshots', COMMIT));
    expect(fs.existsSync(path.join(repoDir('org/public'), 'refs'))).toBe(false);
    await expect(resolveModel('org/public', { ...fast(), revision: 'no-such-branch' })).rejects.toThrow(/404/);
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

  test('an unknown repo is a 404 error naming it', async () => {
    await expect(resolveModel('org/nothing', fast())).rejects.toThrow(/config\.json of org\/nothing@main.*404/);
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
      .rejects.toThrow(/503 for tokenizer\.json of org\/public.*after 3 attempts/);
    hub.failures.delete('tokenizer.json');
  });

  test('sharded weights: the index and every shard it names', async () => {
    const model = await resolveModel('org/sharded', fast());
    expect(path.basename(model.weightsPath!)).toBe('model.safetensors.index.json');
    for (const shard of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      expect(sha256(fs.readFileSync(path.join(model.dir, shard)))).toBe(sha256(REPOS['org/sharded'].files[shard]));
    }
  });
});

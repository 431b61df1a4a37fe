// Several processes on one model, as in a deployment whose replicas share a cache volume (and,
// in containers, all run as PID 1), and processes killed or out of disk half way. The other
// processes are real ones (test/helpers/model-worker.js, on the compiled dist/), stopped at a
// chosen rename so that the interleaving is the same on every run.
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { convertedGraph, convertToOnnx, makeRandomModel, resolveModel } from '../lib/model';
import { FakeHub, startFakeHub } from './helpers/fake-hub';

const TINY = path.resolve(__dirname, '../../shared/models/tiny-random-camembert');
const haveShared = fs.existsSync(path.join(TINY, 'model.safetensors'));
if (!haveShared) console.warn(`skipping conversion tests with several processes: ${TINY} is missing`);
const testShared = haveShared ? test : test.skip;
const WORKER = path.join(__dirname, 'helpers/model-worker.js');

// The fake Hub is on 127.0.0.1: a proxy set in the environment running the tests must not apply
// (jest gives each test file its own copy of process.env).
for (const name of ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy']) delete process.env[name];

interface Outcome { code: number | null; signal: string | null; out: string }
function worker(args: string[], hooks: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [WORKER, ...args], { env: { ...process.env, ...hooks } }, (_err, stdout) => {
      resolve({ code: child.exitCode, signal: child.signalCode, out: stdout.trim() });
    });
  });
}

async function waitFor(file: string): Promise<void> {
  while (!fs.existsSync(file)) await new Promise((r) => setTimeout(r, 10));
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-processes-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function copyTiny(to: string): string {
  fs.mkdirSync(to, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY, f), path.join(to, f));
  return to;
}

const CONVERTED = ['model.onnx', 'model.onnx.data', 'model.onnx.source.json'];
const bytesOf = (d: string) => ['model.onnx', 'model.onnx.data'].map((f) => fs.readFileSync(path.join(d, f)));

describe('converting one model from several processes', () => {
  testShared('two PID-1 processes converting into one folder at once both succeed, with a complete graph', async () => {
    const model = copyTiny(path.join(dir, 'model'));
    const reference = path.dirname(await convertToOnnx(model, { output: path.join(dir, 'reference', 'model.onnx') }));
    const output = path.join(dir, 'shared', 'model.onnx');
    // Both have written their temporary files before either renames one.
    const [a, b] = await Promise.all(['a', 'b'].map((name) => worker(['convert', model, output], {
      FAKE_PID: '1', READY: path.join(dir, name), WAIT_FOR: path.join(dir, name === 'a' ? 'b' : 'a'),
    })));
    expect([a, b]).toEqual([{ code: 0, signal: null, out: output }, { code: 0, signal: null, out: output }]);
    expect(fs.readdirSync(path.dirname(output)).sort()).toEqual(CONVERTED);
    const [made, expected] = [bytesOf(path.dirname(output)), bytesOf(reference)];
    expect(made.map((b, i) => b.equals(expected[i]))).toEqual([true, true]);  // toEqual itself is slow on MBs
  });

  testShared('a process that created the folder and then fails leaves the graph another process finished there', async () => {
    const model = copyTiny(path.join(dir, 'model'));
    const output = path.join(dir, 'out', 'nested', 'model.onnx');
    // A makes out/nested/, then stops before its first rename until B has finished, then finds the disk full.
    const a = worker(['convert', model, output], { READY: path.join(dir, 'a-ready'), WAIT_FOR: path.join(dir, 'b-done'), FAIL: '1' });
    await waitFor(path.join(dir, 'a-ready'));
    const b = await worker(['convert', model, output]);
    fs.writeFileSync(path.join(dir, 'b-done'), '');
    expect(b).toEqual({ code: 0, signal: null, out: output });
    expect(await a).toEqual({ code: 1, signal: null, out: expect.stringMatching(/^disk full while writing .*model\.onnx: ENOSPC/) });
    expect(fs.readdirSync(path.dirname(output)).sort()).toEqual(CONVERTED);
  });

  testShared('a process killed while renaming a new conversion into place never leaves a record vouching for the old graph', async () => {
    for (const killedBefore of ['onnx/model\\.onnx$', 'model\\.onnx\\.source\\.json$']) {
      const model = copyTiny(path.join(dir, killedBefore.length.toString()));
      const graph = await convertToOnnx(model);
      // Another epsilon: only the graph changes, the weights file stays the same.
      const config = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify({ ...config, layer_norm_eps: 1e-3 }));
      expect(convertedGraph(graph, model)?.current).toBe(false);
      const killed = await worker(['convert', model, graph], { AT: killedBefore, KILL: '1' });
      expect(killed.signal).toBe('SIGKILL');
      // Whatever the kill left, it is not taken as current: Encoder.load converts it again.
      expect(convertedGraph(graph, model)?.current).toBe(false);
    }
  });

  testShared('a process killed between the renames of a conversion to another dtype leaves a graph converted again', async () => {
    const model = copyTiny(path.join(dir, 'model'));
    const graph = await convertToOnnx(model, { dtype: 'float16' });
    // The worker converts to float32 from the same weights and config, and is killed once its data
    // file is in place: the float16 graph now reads float32 data.
    const killed = await worker(['convert', model, graph], { AT: 'onnx/model\\.onnx$', KILL: '1' });
    expect(killed.signal).toBe('SIGKILL');
    expect(convertedGraph(graph, model)).toEqual({ current: false, dtype: 'float32', graph: 'fused' });
  });

  testShared('what a conversion killed an hour ago left is removed by the next one; a live one\'s files and others\' are not', async () => {
    const model = copyTiny(path.join(dir, 'model'));
    const graph = path.join(model, 'onnx', 'model.onnx');
    const killed = await worker(['convert', model, graph], { AT: 'model\\.onnx\\.data$', KILL: '1' });
    expect(killed.signal).toBe('SIGKILL');
    // Its temporary files, and the record that says its graph is not there yet.
    const left = fs.readdirSync(path.dirname(graph)).filter((f) => f.includes('.tmp-')).sort();
    expect(left.map((f) => f.replace(/\.tmp-\d+-[0-9a-f]{8}$/, '.tmp')).sort()).toEqual(CONVERTED.map((f) => `${f}.tmp`).sort());
    expect(convertedGraph(graph, model)?.current).toBe(false);
    const hourAgo = new Date(Date.now() - 61 * 60_000);
    for (const f of left) fs.utimesSync(path.join(path.dirname(graph), f), hourAgo, hourAgo);
    // Kept: a live conversion's file, and a file of someone else's.
    const live = 'model.onnx.data.tmp-999-0123abcd';
    fs.writeFileSync(path.join(path.dirname(graph), live), '');
    const mine = 'model.onnx.tmp-backup';
    fs.writeFileSync(path.join(path.dirname(graph), mine), '');
    fs.utimesSync(path.join(path.dirname(graph), mine), hourAgo, hourAgo);
    expect(await convertToOnnx(model)).toBe(graph);
    expect(fs.readdirSync(path.dirname(graph)).sort()).toEqual([...CONVERTED, live, mine].sort());
  });

  const TOKENIZER = path.resolve(__dirname, '../../shared/models/camembert-base-tokenizer');
  (fs.existsSync(TOKENIZER) ? test : test.skip)('two processes making one random model into one folder at once both succeed', async () => {
    const out = path.join(dir, 'random');
    const [a, b] = await Promise.all(['a', 'b'].map((name) => worker(['make', TOKENIZER, out], {
      AT: 'model\\.safetensors$', READY: path.join(dir, name), WAIT_FOR: path.join(dir, name === 'a' ? 'b' : 'a'),
    })));
    expect([a, b]).toEqual([{ code: 0, signal: null, out }, { code: 0, signal: null, out }]);
    expect(fs.readdirSync(out).filter((f) => f.includes('.tmp'))).toEqual([]);
    await makeRandomModel({ layers: 1, hidden: 8, heads: 2, intermediate: 16, tokenizerDir: TOKENIZER, outDir: path.join(dir, 'one'), seed: 1 });
    expect(fs.readFileSync(path.join(out, 'model.safetensors')).equals(fs.readFileSync(path.join(dir, 'one', 'model.safetensors')))).toBe(true);
  });

  testShared('a full disk while refreshing the record keeps the record', async () => {
    const model = copyTiny(path.join(dir, 'model'));
    const graph = await convertToOnnx(model);
    // A copy of config.json with a new modification time: the record is rewritten with it.
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(model, 'config.json'), later, later);
    // As writeFileSync on a full disk: the file is opened (truncated), then the write fails.
    const nodeFs: typeof fs = require('fs');  // the module object itself (the import is a read-only view)
    const write = nodeFs.writeFileSync;
    const full = jest.spyOn(nodeFs, 'writeFileSync').mockImplementation((file, ...rest) => {
      if (!String(file).includes('.source.json')) return write(file, ...rest);
      fs.closeSync(fs.openSync(file as string, 'w'));
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    });
    try {
      expect(convertedGraph(graph, model)?.current).toBe(true);
    } finally {
      full.mockRestore();
    }
    const config = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify({ ...config, layer_norm_eps: 1e-3 }));
    expect(convertedGraph(graph, model)).toEqual({ current: false, dtype: 'float32', graph: 'fused' });
    expect(fs.readdirSync(path.dirname(graph)).sort()).toEqual(CONVERTED);
  });
});

describe('downloading one model from several processes', () => {
  const COMMIT = 'c'.repeat(40);
  const files: Record<string, Buffer> = {
    'config.json': Buffer.from('{"model_type": "camembert"}'),
    'tokenizer.json': Buffer.from('{}'),
    'model.safetensors': Buffer.from(Array.from({ length: 3_000_000 }, (_, i) => (i * 7919) % 251)),
  };
  let hub: FakeHub;
  beforeAll(async () => {
    hub = await startFakeHub({ 'org/model': { commit: COMMIT, files, lfs: ['model.safetensors'] } });
  });
  afterAll(() => hub.close());

  test('two PID-1 processes writing refs/main at once both succeed', async () => {
    const cache = path.join(dir, 'cache');
    const [a, b] = await Promise.all(['a', 'b'].map((name) => worker(['resolve', 'org/model', cache, hub.endpoint], {
      FAKE_PID: '1', AT: 'refs/main$', READY: path.join(dir, name), WAIT_FOR: path.join(dir, name === 'a' ? 'b' : 'a'),
    })));
    const snapshot = path.join(cache, 'models--org--model', 'snapshots', COMMIT);
    expect([a, b]).toEqual([{ code: 0, signal: null, out: snapshot }, { code: 0, signal: null, out: snapshot }]);
    const refs = path.join(cache, 'models--org--model', 'refs');
    expect(fs.readdirSync(refs)).toEqual(['main']);
    expect(fs.readFileSync(path.join(refs, 'main'), 'utf8')).toBe(COMMIT);
  });

  test('a process killed mid-download leaves a partial blob under its lock; the next start resumes it with a Range request', async () => {
    const cache = path.join(dir, 'cache');
    const killed = await worker(['resolve', 'org/model', cache, hub.endpoint], { KILL_AFTER_BYTES: '1000000' });
    expect(killed.signal).toBe('SIGKILL');
    const blobs = path.join(cache, 'models--org--model', 'blobs');
    const partial = fs.readdirSync(blobs).find((f) => f.endsWith('.incomplete'));
    expect(partial).toBeDefined();
    const have = fs.statSync(path.join(blobs, partial!)).size;
    expect(have).toBeGreaterThan(0);
    expect(have).toBeLessThan(files['model.safetensors'].length);
    hub.requests.length = 0;
    const model = await resolveModel('org/model', { cacheDir: cache, endpoint: hub.endpoint, retries: 0 });
    expect(fs.readFileSync(model.weightsPath!).equals(files['model.safetensors'])).toBe(true);  // toEqual is slow on MBs
    expect(hub.requests.filter((r) => r.server === 'cdn').map((r) => r.range)).toEqual([`bytes=${have}-`]);
  });

  test('without symlinks, a process killed while copying a blob into the snapshot leaves no half file that passes for it', async () => {
    const cache = path.join(dir, 'cache');
    const killed = await worker(['resolve', 'org/model', cache, hub.endpoint], { NO_SYMLINKS: '1', COPY_KILL: 'model\\.safetensors' });
    expect(killed.signal).toBe('SIGKILL');
    const model = await resolveModel('org/model', { cacheDir: cache, endpoint: hub.endpoint, retries: 0 });
    expect(fs.readFileSync(model.weightsPath!).equals(files['model.safetensors'])).toBe(true);  // toEqual is slow on MBs
  });

  test('without symlinks, the copy a killed process left in the snapshot is removed by the next copy once untouched for an hour', async () => {
    const cache = path.join(dir, 'cache');
    const killed = await worker(['resolve', 'org/model', cache, hub.endpoint], { NO_SYMLINKS: '1', COPY_KILL: 'model\\.safetensors' });
    expect(killed.signal).toBe('SIGKILL');
    const snapshot = path.join(cache, 'models--org--model', 'snapshots', COMMIT);
    const temporaries = () => fs.readdirSync(snapshot).filter((f) => f.includes('.tmp-'));
    const [left] = temporaries();
    expect(left).toMatch(/^model\.safetensors\.tmp-\d+-[0-9a-f]{8}$/);  // as large as the weights
    const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    fs.utimesSync(path.join(snapshot, left), twoHoursAgo, twoHoursAgo);
    expect(await worker(['resolve', 'org/model', cache, hub.endpoint], { NO_SYMLINKS: '1' })).toEqual({ code: 0, signal: null, out: snapshot });
    expect(temporaries()).toEqual([]);
  });
});

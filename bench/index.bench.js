// VectorIndex search throughput: camembed CPU (float32, float16) against FAISS IndexFlatIP and
// numpy matmul + argpartition (bench/index_baseline.py, Debian's python3-faiss) on the same
// vectors, queries and thread count, with the machine's measured read bandwidth and sgemm rate.
//   node bench/run.js index            N = 1,000,000 x 768 (needs ~12 GB free memory, 5-20 min)
//   CAMEMBED_BENCH_N=100000 node bench/run.js index       a smaller run
//   CAMEMBED_BENCH_BASELINE=0 ...                          camembed only
//   CAMEMBED_BENCH_ONLY=persistence ...                    only save / load / mmap load of the float32 index
// A paired part then alternates numpy and camembed float32 (with the baselines), and camembed
// float32 and float16 (same Q, k = 10) in rounds: this VM's memory speed drifts by up to 1.5x
// within minutes, so only times taken side by side compare fairly.
// The vectors are written once to bench/out/ (3 GB at N = 1M) and reused by later runs.
const Benchmark = require('benchmark');
const { spawn, spawnSync } = require('child_process');
const readline = require('readline');
const fs = require('fs');
const path = require('path');
const { cosineTopKAsync, devices } = require('../dist/index');
const { VectorIndex } = require('../dist/vector-index');

const N = Number(process.env.CAMEMBED_BENCH_N || 1000000);
const DIM = 768;
const QUERY_COUNTS = [1, 16, 256];
const KS = [10, 100];
const BATCH_ROWS = 32768;
const OUT = path.join(__dirname, 'out');
const DB_FILE = path.join(OUT, `index-db-${N}x${DIM}.f32`);
const QUERIES_FILE = path.join(OUT, `index-queries-${DIM}.f32`);

// Uniform values in [-1, 1) from xorshift32: fast, seeded, the same on every run.
function fillRandom(array, seed) {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < array.length; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    array[i] = s / 2147483648 - 1;
  }
  return array;
}

function writeData() {
  fs.mkdirSync(OUT, { recursive: true });
  if (!fs.existsSync(QUERIES_FILE)) fs.writeFileSync(QUERIES_FILE, fillRandom(new Float32Array(256 * DIM), 7));
  if (fs.existsSync(DB_FILE) && fs.statSync(DB_FILE).size === N * DIM * 4) return;
  const fd = fs.openSync(DB_FILE + '.tmp', 'w');
  for (let start = 0, b = 0; start < N; start += BATCH_ROWS, b++) {
    fs.writeSync(fd, fillRandom(new Float32Array(Math.min(BATCH_ROWS, N - start) * DIM), 1000 + b));
  }
  fs.closeSync(fd);
  fs.renameSync(DB_FILE + '.tmp', DB_FILE);
}

function runBaselines(threads) {
  if (process.env.CAMEMBED_BENCH_BASELINE === '0') return null;
  const env = baselineEnv(threads);
  const run = spawnSync('/usr/bin/python3', [path.join(__dirname, 'index_baseline.py'), DB_FILE, QUERIES_FILE, String(DIM), String(threads)],
    { env, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  if (run.status !== 0) {
    console.log(`baselines skipped: index_baseline.py failed (${run.error ? run.error.message : `exit ${run.status}`}); ` +
      `install them with 'apt-get install -y python3-faiss python3-threadpoolctl libopenblas0-pthread'`);
    return null;
  }
  const lines = run.stdout.toString().trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

function baselineEnv(threads) {
  const env = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  // Set here for old OpenBLAS builds on some CPUs; they slow a current one (see the env notes).
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

// index_baseline.py --serve: numpy kept loaded in a child process, answering "Q K REPEATS" lines.
async function startNumpyServer(threads) {
  const child = spawn('/usr/bin/python3', [path.join(__dirname, 'index_baseline.py'), DB_FILE, QUERIES_FILE, String(DIM), String(threads), '--serve'],
    { env: baselineEnv(threads), stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error('index_baseline.py --serve exited');
    return value;
  };
  if ((await next()) !== 'ready') throw new Error('index_baseline.py --serve did not start');
  return {
    times: async (q, k, repeats) => {
      child.stdin.write(`${q} ${k} ${repeats}\n`);
      return JSON.parse(await next());
    },
    close: () => child.stdin.end(),
  };
}

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];

// Times three searches in this process (after the warm-up the caller did).
async function timeThree(search) {
  const times = [];
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    await search();
    times.push((performance.now() - start) / 1000);
  }
  return times;
}

// Rounds of (baseline x3, contender x3) per Q, k = 10: each round's ratio (baseline time /
// contender time) compares times taken a second apart. `baseline` and `contender` map Q to a
// function returning three times in seconds.
async function pairedRounds(label, baseline, contender, queryCounts, rounds = 5) {
  const results = [];
  for (const q of queryCounts) {
    const base = [], mine = [];
    for (let round = 0; round < rounds; round++) {
      base.push(median(await baseline(q)));
      mine.push(median(await contender(q)));
    }
    const ratios = base.map((t, i) => t / mine[i]);
    results.push({ label, q, k: 10, rounds, baselineMs: base.map((t) => +(t * 1e3).toFixed(1)),
      contenderMs: mine.map((t) => +(t * 1e3).toFixed(1)), ratios: ratios.map((r) => +r.toFixed(2)),
      medianRatio: +median(ratios).toFixed(2) });
  }
  return results;
}

function indexContender(index, queries) {
  let warm = false;
  return async (q) => {
    const search = () => index.search(queries.subarray(0, q * DIM), { k: 10 });
    if (!warm) await search();
    warm = true;
    return timeThree(search);
  };
}

// rssGrowthBytes is meaningful for the first index built only (later ones overlap garbage collection).
function buildIndex(dtype) {
  const before = process.memoryUsage().rss;
  const index = new VectorIndex({ dim: DIM, dtype });
  const fd = fs.openSync(DB_FILE, 'r');
  const batch = new Float32Array(BATCH_ROWS * DIM);
  const start = Date.now();
  for (let row = 0; row < N; row += BATCH_ROWS) {
    const rows = Math.min(BATCH_ROWS, N - row);
    fs.readSync(fd, new Uint8Array(batch.buffer, 0, rows * DIM * 4), 0, rows * DIM * 4, row * DIM * 4);
    index.add(batch.subarray(0, rows * DIM));
  }
  fs.closeSync(fd);
  const payload = N * (DIM * (dtype === 'float32' ? 4 : 2) + 8);
  return {
    index,
    build: { dtype, seconds: (Date.now() - start) / 1000, bytes: index.bytes, payloadBytes: payload,
      overhead: index.bytes / payload - 1, rssGrowthBytes: process.memoryUsage().rss - before },
  };
}

function timeSearch(search) {
  return new Promise((resolve, reject) => {
    new Benchmark({
      defer: true, minSamples: 3, maxTime: 1, initCount: 1,
      fn: (deferred) => search().then(() => deferred.resolve(), reject),
      onComplete: function () { resolve(this.stats.mean); },
      onError: (e) => reject(e.target.error),
    }).run();
  });
}

// One load in a fresh node process: seconds, and the anonymous memory it added (a mapping is
// file-backed: its pages belong to the page cache, not to the process).
function loadInChild(file, mmap) {
  const script = `
    const fs = require('fs');
    const { VectorIndex } = require(${JSON.stringify(path.join(__dirname, '../dist/vector-index'))});
    const anon = () => Number(/RssAnon:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
    (async () => {
      const before = anon();
      const start = performance.now();
      const index = await VectorIndex.load(${JSON.stringify(file)}, { mmap: ${mmap} });
      console.log(JSON.stringify({ seconds: (performance.now() - start) / 1000, rssAnonGrowthBytes: anon() - before, size: index.size }));
    })();`;
  const run = spawnSync(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(run.stdout.toString());
}

async function timePersistence(index) {
  const file = path.join(OUT, `index-${N}x${DIM}.cmbd`);
  const start = performance.now();
  await index.save(file);
  const result = { fileBytes: fs.statSync(file).size, saveSeconds: (performance.now() - start) / 1000,
    mmapLoad: loadInChild(file, true), readLoad: loadInChild(file, false) };
  fs.unlinkSync(file);
  return result;
}

async function run() {
  const threads = devices().cpu.threads;
  writeData();
  if (process.env.CAMEMBED_BENCH_ONLY === 'persistence') {
    const { index } = buildIndex('float32');
    const persistence = await timePersistence(index);
    console.log(`N = ${N}, d = ${DIM}, float32: file ${persistence.fileBytes} B; save ${persistence.saveSeconds.toFixed(2)} s; ` +
      `load with mmap ${persistence.mmapLoad.seconds.toFixed(2)} s (+${persistence.mmapLoad.rssAnonGrowthBytes} B anonymous memory); ` +
      `load by reading ${persistence.readLoad.seconds.toFixed(2)} s (+${persistence.readLoad.rssAnonGrowthBytes} B)`);
    fs.writeFileSync(path.join(OUT, 'index-persistence.json'), JSON.stringify({ n: N, dim: DIM, date: new Date().toISOString(), persistence }, null, 2));
    return;
  }
  const baseline = runBaselines(threads);
  const queries = new Float32Array(fs.readFileSync(QUERIES_FILE).buffer.slice(0));
  const rows = [];
  const builds = [];
  const paired = [];
  const indexes = {};
  for (const dtype of ['float32', 'float16']) {
    const { index, build } = buildIndex(dtype);
    indexes[dtype] = index;
    builds.push(build);
    for (const q of QUERY_COUNTS) {
      for (const k of KS) {
        const seconds = await timeSearch(() => index.search(queries.subarray(0, q * DIM), { k }));
        rows.push({ tool: `camembed ${dtype}`, q, k, seconds });
      }
    }
  }
  if (baseline !== null) {
    const server = await startNumpyServer(threads);
    try {
      paired.push(...await pairedRounds('numpy vs camembed float32', (q) => server.times(q, 10, 3),
        indexContender(indexes.float32, queries), QUERY_COUNTS));
    } finally {
      server.close();
    }
  }
  paired.push(...await pairedRounds('camembed float32 vs float16', indexContender(indexes.float32, queries),
    indexContender(indexes.float16, queries), [1, 16]));
  indexes.float32.dispose();
  indexes.float16.dispose();
  // The kernel alone, one call over one contiguous array: what VectorIndex's chunking and merging cost.
  const db = new Float32Array(N * DIM);
  const fd = fs.openSync(DB_FILE, 'r');
  for (let at = 0; at < db.byteLength; at += 1 << 30) {
    fs.readSync(fd, new Uint8Array(db.buffer, at, Math.min(1 << 30, db.byteLength - at)), 0, Math.min(1 << 30, db.byteLength - at), at);
  }
  fs.closeSync(fd);
  for (const q of QUERY_COUNTS) {
    for (const k of KS) {
      const seconds = await timeSearch(() => cosineTopKAsync(queries.subarray(0, q * DIM), db, { dim: DIM, k, normalized: true }));
      rows.push({ tool: 'cosineTopKAsync float32 (one call)', q, k, seconds });
    }
  }
  if (baseline !== null) rows.push(...baseline.rows);

  const bytesOf = (tool) => N * DIM * (tool.includes('float16') ? 2 : 4);
  const isBaseline = (r) => r.tool.startsWith('numpy') || r.tool.startsWith('faiss');
  const bestBaseline = (q, k) => Math.min(...rows.filter((r) => isBaseline(r) && r.q === q && r.k === k).map((r) => r.seconds));
  const table = rows.map((r) => ({
    tool: r.tool, Q: r.q, k: r.k, ms: +(r.seconds * 1e3).toFixed(1), QPS: +(r.q / r.seconds).toFixed(1),
    'GB/s': +(bytesOf(r.tool) / r.seconds / 1e9).toFixed(1), 'GFLOP/s': +(2 * r.q * N * DIM / r.seconds / 1e9).toFixed(1),
    'vs best baseline': baseline === null ? '' : +(bestBaseline(r.q, r.k) / r.seconds).toFixed(2),
  }));
  console.log(`N = ${N}, d = ${DIM}, ${threads} threads, CPU SIMD ${devices().cpu.simd}`);
  console.table(table);
  if (baseline !== null) {
    console.log(`measured: read bandwidth ${(baseline.readBandwidth1 / 1e9).toFixed(1)} GB/s (1 thread), ` +
      `${(baseline.readBandwidthAll / 1e9).toFixed(1)} GB/s (${threads} threads); ` +
      `sgemm ${(baseline.sgemmFlops / 1e9).toFixed(0)} GFLOP/s (${threads} threads, OpenBLAS)`);
  }
  console.log('paired rounds, k = 10 (ratio = first time / second time, per round):');
  console.table(paired.map((p) => ({ pair: p.label, Q: p.q, 'first ms': p.baselineMs.join(' '), 'second ms': p.contenderMs.join(' '),
    ratios: p.ratios.join(' '), 'median ratio': p.medianRatio })));
  console.table(builds.map((b) => ({ dtype: b.dtype, 'build s': b.seconds, 'index bytes': b.bytes,
    'vectors+ids bytes': b.payloadBytes, overhead: `${(b.overhead * 100).toFixed(2)}%`,
    'RSS growth': b.dtype === 'float32' ? b.rssGrowthBytes : '' })));
  fs.writeFileSync(path.join(OUT, 'index.json'), JSON.stringify({ n: N, dim: DIM, threads, date: new Date().toISOString(), rows, paired, builds, baseline }, null, 2));
}

module.exports = { run };
if (require.main === module) run().catch((e) => { console.error(e); process.exit(1); });

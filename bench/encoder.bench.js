// Encoder throughput on a full-size (CamemBERT-base shape, random weights) model: camembed vs
// transformers.js feature-extraction (mean pooling + normalize) vs plain onnxruntime-node with a
// JavaScript pooling loop, all on the same ONNX file, interleaved, same process.
//
// One encode of 256 passages takes tens of seconds on 2 cores, so each configuration is timed as a
// whole pass (hrtime) instead of benchmark.js's many-cycle sampling; ROUNDS passes are interleaved.
//
// Environment: CAMEMBED_BENCH_MODEL (folder; default /tmp/camembed-models/camembert-base-random,
// made with the model pipeline when missing), BENCH_QUERIES (512), BENCH_PASSAGES (256),
// BENCH_BATCH_SIZES (1,8,32), BENCH_ROUNDS (1), BENCH_LATENCY_RUNS (50), BENCH_THREADS (all cores).
const fs = require('fs');
const os = require('os');
const path = require('path');
const ort = require('onnxruntime-node');
const { Encoder } = require('../dist/encoder');
const { meanPoolNormalizeAsync } = require('../dist/kernels');

const SHARED = path.resolve(__dirname, '../../shared');
const MODEL_DIR = process.env.CAMEMBED_BENCH_MODEL || '/tmp/camembed-models/camembert-base-random';
const N_QUERIES = Number(process.env.BENCH_QUERIES || 512);
const N_PASSAGES = Number(process.env.BENCH_PASSAGES || 256);
const BATCH_SIZES = (process.env.BENCH_BATCH_SIZES || '1,8,32').split(',').map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 1);
const LATENCY_RUNS = Number(process.env.BENCH_LATENCY_RUNS || 50);
const THREADS = Number(process.env.BENCH_THREADS || os.availableParallelism());

async function ensureModel() {
  if (fs.existsSync(path.join(MODEL_DIR, 'onnx', 'model.onnx'))) return;
  const { makeRandomModel, convertToOnnx } = require('../dist/model');
  const c = { layers: 12, hidden: 768, heads: 12, intermediate: 3072 };
  console.log(`making a full-size random model in ${MODEL_DIR} ...`);
  await makeRandomModel({ ...c, tokenizerDir: path.join(SHARED, 'models/camembert-base-tokenizer'), outDir: MODEL_DIR, seed: 1 });
  await convertToOnnx(MODEL_DIR, { output: path.join(MODEL_DIR, 'onnx', 'model.onnx') });
}

/** Nominal fp32 FMA peak: cores x clock x 2 FMA pipes x SIMD lanes x 2 FLOPs (from /proc/cpuinfo). */
function fmaPeakGflops() {
  const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const mhz = Number(/cpu MHz\s*:\s*([\d.]+)/.exec(info)[1]);
  const lanes = /\bavx512f\b/.test(info) ? 16 : /\bavx2\b/.test(info) ? 8 : 4;
  return { gflops: (THREADS * mhz / 1000) * 2 * lanes * 2, mhz, lanes };
}

/** Multiply-adds x 2 of one text of `len` real tokens through the encoder (no padding counted). */
function usefulFlops(len, cfg) {
  const H = cfg.hidden_size, I = cfg.intermediate_size;
  const perLayer = 2 * len * (4 * H * H + 2 * H * I) + 2 * 2 * len * len * H;
  return cfg.num_hidden_layers * perLayer;
}

/** camembed's batch plan (longest first, at most `b` rows and b x maxLength padded tokens). */
function sortedBatches(lengths, b, maxTokens) {
  const order = lengths.map((_, i) => i).sort((x, y) => lengths[y] - lengths[x] || x - y);
  const batches = [];
  let cur = null;
  for (const i of order) {
    if (cur === null || cur.rows.length === b || (cur.rows.length + 1) * cur.seq > maxTokens) {
      cur = { rows: [], seq: lengths[i] };
      batches.push(cur);
    }
    cur.rows.push(i);
  }
  return batches;
}

function paddingEfficiency(lengths, batches) {
  const real = lengths.reduce((a, b) => a + b, 0);
  const padded = batches.reduce((a, bt) => a + bt.rows.length * bt.seq, 0);
  return real / padded;
}

/** Plain onnxruntime-node: default session, sorted batches, pooling in a JavaScript loop. */
async function plainOrt(session, ids, b, dim) {
  const out = new Float32Array(ids.length * dim);
  for (const batch of sortedBatches(ids.map((r) => r.length), b, b * 128)) {
    const n = batch.rows.length, seq = batch.seq;
    const inputIds = new BigInt64Array(n * seq).fill(1n);
    const mask = new BigInt64Array(n * seq);
    batch.rows.forEach((row, i) => ids[row].forEach((id, t) => { inputIds[i * seq + t] = BigInt(id); mask[i * seq + t] = 1n; }));
    const res = await session.run({
      input_ids: new ort.Tensor('int64', inputIds, [n, seq]),
      attention_mask: new ort.Tensor('int64', mask, [n, seq]),
    });
    const h = res.last_hidden_state.data;
    batch.rows.forEach((row, i) => {
      const v = new Float64Array(dim);
      let count = 0;
      for (let t = 0; t < seq; t++) {
        if (mask[i * seq + t] === 0n) continue;
        count++;
        for (let k = 0; k < dim; k++) v[k] += h[(i * seq + t) * dim + k];
      }
      let norm = 0;
      for (let k = 0; k < dim; k++) { v[k] /= Math.max(count, 1e-9); norm += v[k] * v[k]; }
      norm = Math.max(Math.sqrt(norm), 1e-12);
      for (let k = 0; k < dim; k++) out[row * dim + k] = v[k] / norm;
    });
  }
  return out;
}

const seconds = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;

function maxAbsDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function run() {
  await ensureModel();
  const cfg = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'config.json'), 'utf8'));
  const onnxPath = path.join(MODEL_DIR, 'onnx', 'model.onnx');
  const lines = (f) => fs.readFileSync(path.join(SHARED, 'corpus', f), 'utf8').split('\n').filter((l) => l.length > 0);

  const probe = await Encoder.load(MODEL_DIR, { threads: THREADS });
  const queries = lines('fr-queries.dev.txt').slice(0, N_QUERIES);
  // Passages that fill the 128-token window.
  const allPassages = lines('fr-passages.dev.txt');
  const passageIds = probe.tokenize(allPassages).ids;
  const passages = allPassages.filter((_, i) => passageIds[i].length === 128).slice(0, N_PASSAGES);
  await probe.dispose();

  const { pipeline, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = path.dirname(path.resolve(MODEL_DIR));
  const extractor = await pipeline('feature-extraction', path.basename(MODEL_DIR), {
    dtype: 'fp32', session_options: { intraOpNumThreads: THREADS },
  });
  const plainSession = await ort.InferenceSession.create(onnxPath, { intraOpNumThreads: THREADS });
  const peak = fmaPeakGflops();
  const rows = [];

  for (const [setName, texts] of [['queries', queries], ['passages', passages]]) {
    for (const b of BATCH_SIZES) {
      const encoder = await Encoder.load(MODEL_DIR, { threads: THREADS, batchSize: b });
      let t0 = process.hrtime.bigint();
      const ids = encoder.tokenize(texts).ids;
      const tokenizeS = seconds(t0);
      const lengths = ids.map((r) => r.length);
      const plan = sortedBatches(lengths, b, encoder.maxBatchTokens);
      // Pool time: the native kernel on the same batch shapes (random hidden states).
      let poolS = 0;
      for (const bt of plan) {
        const n = bt.rows.length;
        const hidden = new Float32Array(n * bt.seq * encoder.dim).map(() => Math.random());
        const mask = new BigInt64Array(n * bt.seq).fill(1n);
        t0 = process.hrtime.bigint();
        await meanPoolNormalizeAsync(hidden, mask, { batch: n, seq: bt.seq, hidden: encoder.dim });
        poolS += seconds(t0);
      }
      const unsortedPlan = [];
      for (let i = 0; i < lengths.length; i += b) {
        const chunk = lengths.slice(i, i + b);
        unsortedPlan.push({ rows: chunk, seq: Math.max(...chunk) });
      }
      const flops = lengths.reduce((a, l) => a + usefulFlops(l, cfg), 0);
      const times = { camembed: [], 'transformers.js': [], 'ort+js': [] };
      let results = {};
      for (let round = 0; round < ROUNDS; round++) {
        t0 = process.hrtime.bigint();
        results.camembed = (await encoder.encode(texts)).data;
        times.camembed.push(seconds(t0));

        t0 = process.hrtime.bigint();
        const tjs = new Float32Array(texts.length * encoder.dim);
        for (let i = 0; i < texts.length; i += b) {
          const out = await extractor(texts.slice(i, i + b), { pooling: 'mean', normalize: true });
          tjs.set(out.data, i * encoder.dim);
        }
        results['transformers.js'] = tjs;
        times['transformers.js'].push(seconds(t0));

        t0 = process.hrtime.bigint();
        results['ort+js'] = await plainOrt(plainSession, ids, b, encoder.dim);
        times['ort+js'].push(seconds(t0));
      }
      const best = (k) => Math.min(...times[k]);
      const base = best('transformers.js');
      for (const impl of Object.keys(times)) {
        const s = best(impl);
        rows.push({
          set: setName, batch: b, impl, texts: texts.length,
          textsPerS: texts.length / s,
          vsTransformersJs: base / s,
          usefulGflops: flops / s / 1e9,
          ofFmaPeak: flops / s / 1e9 / peak.gflops,
          paddingEfficiency: impl === 'transformers.js' ? paddingEfficiency(lengths, unsortedPlan) : paddingEfficiency(lengths, plan),
          maxAbsDiffVsCamembed: maxAbsDiff(results[impl], results.camembed),
          split: impl === 'camembed' ? { tokenizeS, ortS: s - tokenizeS - poolS, poolS } : undefined,
        });
      }
      await encoder.dispose();
    }
  }

  // Latency of one query at a time.
  const encoder = await Encoder.load(MODEL_DIR, { threads: THREADS });
  const latency = { camembed: [], 'transformers.js': [] };
  for (let i = 0; i < LATENCY_RUNS; i++) {
    const q = [queries[i % queries.length]];
    let t0 = process.hrtime.bigint();
    await encoder.encode(q);
    latency.camembed.push(seconds(t0) * 1000);
    t0 = process.hrtime.bigint();
    await extractor(q, { pooling: 'mean', normalize: true });
    latency['transformers.js'].push(seconds(t0) * 1000);
  }
  await encoder.dispose();
  const latencyRows = Object.entries(latency).map(([impl, ms]) => {
    const sorted = [...ms].sort((a, b) => a - b);
    return { impl, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99) };
  });

  console.log(`model ${MODEL_DIR} (${cfg.num_hidden_layers} layers, hidden ${cfg.hidden_size}), ${THREADS} threads, ` +
    `nominal FMA peak ${peak.gflops.toFixed(0)} GFLOP/s (${THREADS} x ${peak.mhz} MHz x 2 x ${peak.lanes} lanes x 2)`);
  console.table(rows.map((r) => ({
    set: r.set, batch: r.batch, impl: r.impl, 'texts/s': r.textsPerS.toFixed(2), 'x tjs': r.vsTransformersJs.toFixed(2),
    'GFLOP/s': r.usefulGflops.toFixed(1), '% peak': (100 * r.ofFmaPeak).toFixed(1), 'pad eff': r.paddingEfficiency.toFixed(3),
    'max|diff|': r.maxAbsDiffVsCamembed.toExponential(1),
    'tok/ort/pool s': r.split ? `${r.split.tokenizeS.toFixed(3)}/${r.split.ortS.toFixed(2)}/${r.split.poolS.toFixed(3)}` : '',
  })));
  console.table(latencyRows.map((r) => ({ impl: r.impl, 'p50 ms': r.p50Ms.toFixed(1), 'p99 ms': r.p99Ms.toFixed(1) })));
  fs.mkdirSync(path.join(__dirname, 'out'), { recursive: true });
  fs.writeFileSync(path.join(__dirname, 'out', 'encoder.json'), JSON.stringify({
    date: new Date().toISOString(), cpu: os.cpus()[0].model, threads: THREADS, peak, model: MODEL_DIR,
    queries: queries.length, passages: passages.length, rounds: ROUNDS, rows, latency: latencyRows,
  }, null, 2));
}

module.exports = { run };
if (require.main === module) run().catch((err) => { console.error(err); process.exit(1); });

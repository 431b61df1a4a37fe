#!/usr/bin/env node
// Soak runs: repeats camembed's operations thousands of times, as a long-lived backend does, and
// prints the process's counters every so often, so that a leak (memory, file descriptors, memory
// mappings, threads, libuv handles) shows as a column that keeps growing. Needs Linux (/proc) and
// the compiled package (npm ci); docs/soak.md has the measured numbers.
//
//   node --expose-gc scripts/soak.js [scenario ...] [--scale N]    (no scenario: all of them)
//
// Each scenario ends with every counter's peak in the earlier and in the later half of its run;
// a scale of 2 doubles every count. The process must also exit by itself when done.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Worker } = require('worker_threads');

const dist = path.resolve(__dirname, '..', 'dist');
const c = require(dist);
const native = require(path.join(dist, 'native')).loadAddon();
const TINY_MODEL = path.resolve(__dirname, '..', '..', 'shared', 'models', 'tiny-random-camembert');

if (typeof global.gc !== 'function') throw new Error('run with node --expose-gc');
const args = process.argv.slice(2);
const scaleAt = args.indexOf('--scale');
const scale = scaleAt < 0 ? 1 : Number(args.splice(scaleAt, 2)[1]);

/** Counters after a full collection: what stays is what leaks. */
function counters() {
  global.gc();
  const m = process.memoryUsage();
  return {
    rssMB: m.rss / 2 ** 20, externalMB: m.external / 2 ** 20, arrayBuffersMB: m.arrayBuffers / 2 ** 20,
    fds: fs.readdirSync('/proc/self/fd').length,
    maps: fs.readFileSync('/proc/self/maps', 'utf8').split('\n').length - 1,
    threads: Number(/Threads:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]),
    handles: process._getActiveHandles().length,
  };
}

/** Longest event-loop stall (ms) since the last take(), from a 10 ms timer's lateness. */
function stallMonitor() {
  let worst = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 10);
    last = now;
  }, 10).unref();
  return { take() { const w = worst; worst = 0; last = performance.now(); return w; }, stop() { clearInterval(timer); } };
}

const format = (row) => Object.entries(row).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(1)}`).join('  ');

async function soak(name, iterations, step) {
  const n = Math.round(iterations * scale);
  const every = Math.max(1, Math.round(n / 10));
  const stalls = stallMonitor();
  const rows = [];
  const started = Date.now();
  for (let i = 1; i <= n; i++) {
    await step(i);
    if (i % every === 0) {
      const row = { it: i, ...counters(), stallMs: stalls.take() };
      rows.push(row);
      console.log(`${name}: ${format(row)}`);
    }
  }
  stalls.stop();
  // Counters wander (allocator arenas, collections still to come): a leak makes the later half's
  // peak pass the earlier half's, where a bounded counter peaks alike in both.
  const half = Math.ceil(rows.length / 2);
  const peaks = (part) => Object.fromEntries(Object.keys(rows[0]).filter((k) => k !== 'it').map((k) => [k, Math.max(...part.map((r) => r[k]))]));
  const [early, late] = [peaks(rows.slice(1, half)), peaks(rows.slice(half))];  // the first checkpoint is warm-up
  const summary = Object.keys(early).map((k) => `${k} ${+early[k].toFixed(1)} -> ${+late[k].toFixed(1)}`).join('  ');
  console.log(`${name}: ${n} iterations in ${((Date.now() - started) / 1000).toFixed(1)} s; peaks, earlier half -> later half: ${summary}\n`);
}

async function expectThrow(f) {
  try {
    await f();
  } catch {
    return;
  }
  throw new Error('expected an error');
}

/** Deterministic values in [-0.5, 0.5). */
function values(n, seed) {
  const a = new Float32Array(n);
  for (let i = 0, x = seed; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    a[i] = x / 2147483648 - 0.5;
  }
  return a;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-soak-'));
const dim = 64;
const vectors = values(3000 * dim, 3);
const queries = values(8 * dim, 5);
const large = values(70000 * dim, 11);  // 17.9 MB: chunks on allocateLargePages
const texts = ['Bonjour le monde', 'Comment installer un paquet Debian ?', 'Le noyau gère la mémoire. '.repeat(20), 'a'];
const collection = path.join(dir, 'collection.tsv');
fs.writeFileSync(collection, Array.from({ length: 200 }, (_, i) => `p${i}\tLe passage ${i} parle de ${i % 7 ? 'mémoire' : 'paquets'}.\n`).join(''));

const scenarios = {
  async kernels() {
    const hidden = values(2 * 8 * 16, 1);
    const mask = new BigInt64Array(16).fill(1n);
    const shape = { batch: 2, seq: 8, hidden: 16 };
    const withNaN = hidden.slice();
    withNaN[3] = NaN;
    const medium = { hidden: values(32 * 128 * 768, 2), mask: new Int32Array(32 * 128).fill(1), shape: { batch: 32, seq: 128, hidden: 768 } };
    await soak('meanPoolNormalize(Async), with bad input', 20000, async (i) => {
      c.meanPoolNormalize(hidden, mask, shape);
      await c.meanPoolNormalizeAsync(hidden, mask, shape);
      if (i % 10 === 0) await c.meanPoolNormalizeAsync(medium.hidden, medium.mask, medium.shape);
      await expectThrow(() => c.meanPoolNormalize(withNaN, mask, shape));
      await expectThrow(() => c.meanPoolNormalizeAsync(withNaN, mask, shape));
      await expectThrow(() => c.meanPoolNormalize(hidden, mask, { batch: 3, seq: 8, hidden: 16 }));
    });
    const database = values(20000 * dim, 7);
    const database16 = c.float32ToFloat16Array(database);
    const queriesNaN = queries.slice();
    queriesNaN[5] = NaN;
    await soak('cosineTopK(Async), with bad input', 5000, async () => {
      c.cosineTopK(queries.subarray(0, dim), database.subarray(0, 10 * dim), { dim, k: 3 });
      await c.cosineTopKAsync(queries, database, { dim, k: 10 });
      await c.cosineTopKAsync(queries, database16, { dim, k: 100, normalized: true });
      await expectThrow(() => c.cosineTopKAsync(queriesNaN, database, { dim, k: 10 }));
      await expectThrow(() => c.cosineTopK(queries, database, { dim, k: 0 }));
    });
    await soak('cosineTopKAsync x16 at once', 500, () =>
      Promise.all(Array.from({ length: 16 }, () => c.cosineTopKAsync(queries, database, { dim, k: 10 }))));
    await soak('cosineTopKAsync, database transferred away while it runs', 2000, async () => {
      const db = new Float32Array(16384 * dim).fill(0.5);
      const running = c.cosineTopKAsync(queries.subarray(0, dim), db, { dim, k: 3 });
      structuredClone(db.buffer, { transfer: [db.buffer] });
      await running;
    });
  },

  async cuda() {
    // On a machine without a GPU: the error paths.
    await soak('CUDA error paths', 20000, async () => {
      await expectThrow(() => c.CudaMatrix.create(vectors.subarray(0, 10 * dim), { rows: 10, dim }));
      await expectThrow(() => new c.VectorIndex({ dim, device: 'cuda' }));
      await expectThrow(() => c.cosineTopKAsync(queries, vectors, { dim, k: 1, device: 'cuda' }));
      await expectThrow(() => native.cudaMatrixCreate({ rows: 10, dim, storage: 'float16', device: 0 }));
    });
  },

  async index() {
    await soak('VectorIndex new/add/search/remove/dispose', 3000, async (i) => {
      const index = new c.VectorIndex({ dim, dtype: i % 2 ? 'float32' : 'float16' });
      index.add(vectors.subarray(0, 1000 * dim));
      index.add(vectors.subarray(1000 * dim));
      await index.search(queries, { k: 5 });
      index.remove([0, 5, 2999]);
      await expectThrow(() => index.add(new Float32Array(dim).fill(NaN)));
      index.dispose();
    });
    await soak('VectorIndex on large pages, dropped without dispose', 300, async (i) => {
      const index = new c.VectorIndex({ dim, chunkBytes: 8 << 20 });
      index.add(large);
      await index.search(queries, { k: 5 });
      if (i % 2) index.dispose();
    });
    const resident = new c.VectorIndex({ dim });
    resident.add(vectors.subarray(0, 500 * dim));
    let nextId = 1000000n;
    await soak('one index, add/remove churn', 20000, async () => {
      const ids = new BigInt64Array(100).map((_, j) => nextId + BigInt(j));
      nextId += 100n;
      resident.add(vectors.subarray(0, 100 * dim), ids);
      resident.remove(ids);
    });
    await soak('neighbors() walks abandoned midway', 2000, async (i) => {
      const walk = resident.neighbors({ k: 3, batchSize: 100 });
      if (i % 2) {
        for await (const chunk of walk) if (chunk.ids[0] >= 200n) break;
      } else {
        await walk.next();  // never finished, never returned
      }
    });
    resident.dispose();
  },

  async files() {
    const file = path.join(dir, 'index.cmbd');
    const source = new c.VectorIndex({ dim, metadata: { model: 'soak' } });
    source.add(large);
    await source.save(file);
    source.dispose();
    const corrupt = path.join(dir, 'corrupt.cmbd');
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 100] ^= 1;
    fs.writeFileSync(corrupt, bytes);
    await soak('VectorIndex save/load (mmap and not)/describe/dispose', 200, async (i) => {
      const index = await c.VectorIndex.load(file, { mmap: i % 2 === 0 });
      await index.search(queries, { k: 3 });
      if (i % 4 === 0) {
        index.add(vectors.subarray(0, dim));
        index.remove([5n]);
      }
      await index.save(`${file}.copy`);
      await c.VectorIndex.describe(file);
      await expectThrow(() => c.VectorIndex.load(corrupt, { mmap: i % 2 === 0 }));
      await expectThrow(() => c.VectorIndex.load(dir));
      if (i % 3) index.dispose();
    });
  },

  async encoder() {
    await soak('Encoder load/encode/dispose', 200, async () => {
      const encoder = await c.Encoder.load(TINY_MODEL, { threads: 1 });
      await encoder.encode(texts);
      await encoder.dispose();
    });
    const encoder = await c.Encoder.load(TINY_MODEL, { threads: 1 });
    await soak('encode, with calls refused by validation', 3000, async () => {
      await encoder.encode(texts);
      await expectThrow(() => encoder.encode([1, 2]));
      await expectThrow(() => encoder.encode(texts, { bogus: true }));
    });
    // Texts never seen before (words, accents, emoji, combining marks, any code point): the tokenizer's caches stay bounded.
    const pieces = [...'abcdefghijklmnopqrstuvwxyzéèêàçôûïœ', '😀', '👍🏽', '中', 'e\u0301', 'क्ष', '\u200d', '🇫🇷'];
    const unit = values(1 << 16, 13).map((v) => v + 0.5);
    let u = 0;
    const next = () => unit[u++ % unit.length];
    const word = () => Array.from({ length: 1 + Math.floor(next() * 12) }, () => pieces[Math.floor(next() * pieces.length)]).join('');
    const codePoints = () => String.fromCodePoint(...Array.from({ length: 30 }, () => 0x20 + Math.floor(next() * 0xd7e0)));
    await soak('encode never-seen texts', 3000, () =>
      encoder.encode(Array.from({ length: 8 }, () => `${Array.from({ length: 20 }, word).join(' ')} ${codePoints()}`)));
    await soak('32 concurrent encodes', 300, () =>
      Promise.all(Array.from({ length: 32 }, (_, j) => encoder.encode(texts.slice(0, 1 + (j % 4))))));
    await soak('encodeStream of a file abandoned midway', 1000, async (i) => {
      const stream = encoder.encodeStream(c.readTexts(collection), { chunkSize: 8 });
      if (i % 2) {
        let n = 0;
        for await (const chunk of stream) if (++n === 3 && chunk.rows === 8) break;
      } else {
        await stream.next();  // dropped without return()
      }
    });
    await encoder.dispose();
  },

  async eval() {
    const queriesFile = path.join(dir, 'queries.tsv');
    const qrelsFile = path.join(dir, 'qrels.tsv');
    const badQrels = path.join(dir, 'bad-qrels.tsv');
    fs.writeFileSync(queriesFile, Array.from({ length: 20 }, (_, i) => `q${i}\tQuestion ${i} sur les paquets\n`).join(''));
    fs.writeFileSync(qrelsFile, Array.from({ length: 20 }, (_, i) => `q${i} 0 p${i * 7} 1\n`).join(''));
    fs.writeFileSync(badQrels, 'q1 0 p1 1\nq1 0 p2\n');
    const run = Object.fromEntries(Array.from({ length: 20 }, (_, q) =>
      [`q${q}`, Object.fromEntries(Array.from({ length: 100 }, (_, p) => [`p${p}`, Math.sin(q * 100 + p)]))]));
    const qrels = await c.readQrels(qrelsFile);
    await soak('evaluate, readQrels, readTsvEntries, TrecRunWriter', 3000, async (i) => {
      c.evaluate(run, qrels, ['MRR@10', 'nDCG@10', 'Recall@100']);
      await c.readQrels(qrelsFile);
      await c.readTsvEntries(queriesFile);
      await expectThrow(() => c.readQrels(badQrels));
      const writer = await c.TrecRunWriter.open(path.join(dir, 'run.trec'));
      await writer.write('q1', ['p1', 'p2'], [0.5, 0.25]);
      await (i % 2 ? writer.close() : writer.abort());
    });
    await soak('readTsv/readTextLines abandoned midway', 3000, async (i) => {
      const reader = i % 2 ? c.readTsv(collection) : c.readTextLines(collection);
      if (i % 4 < 2) {
        for await (const record of reader) if (record.line === 3) break;
      } else {
        await reader.next();  // dropped without return()
      }
    });
    await soak('evaluateRetrieval (tiny model)', 40, async () => {
      await c.evaluateRetrieval({ model: TINY_MODEL, collection, queries: queriesFile, qrels: qrelsFile, k: 100, metrics: ['MRR@10'],
        threads: 1, cacheDir: path.join(dir, 'embeddings') });
    });
  },

  async workers() {
    // A worker pool recycling its workers: each loads camembed, uses large-page storage and ends.
    const body = `const { parentPort } = require('worker_threads');
      const c = require(${JSON.stringify(dist)});
      (async () => {
        const index = new c.VectorIndex({ dim: 64, chunkBytes: 8 << 20 });
        index.add(new Float32Array(40000 * 64).map((_, i) => Math.sin(i)));
        await index.search(new Float32Array(64).fill(1), { k: 3 });
        parentPort.postMessage('done');  // left for the worker's exit to free
      })();`;
    await soak('worker threads using camembed, ended', 150, async (i) => {
      const worker = new Worker(body, { eval: true });
      const exited = new Promise((resolve) => worker.once('exit', resolve));  // before the message: it may follow at once
      await new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject));
      if (i % 2) await worker.terminate();
      await exited;
    });
  },
};

(async () => {
  const chosen = args.length > 0 ? args : Object.keys(scenarios);
  for (const name of chosen) {
    if (!(name in scenarios)) throw new Error(`unknown scenario '${name}'; scenarios: ${Object.keys(scenarios).join(', ')}`);
    if ((name === 'encoder' || name === 'eval') && !fs.existsSync(TINY_MODEL)) {
      console.log(`${name}: skipped: ${TINY_MODEL} is missing\n`);
      continue;
    }
    await scenarios[name]();
  }
  fs.rmSync(dir, { recursive: true, force: true });
})().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

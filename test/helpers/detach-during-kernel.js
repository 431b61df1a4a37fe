// Run with --expose-gc: `node --expose-gc detach-during-kernel.js <dist/index.js>`. Starts async
// kernels, transfers their input buffers away (the arrays become empty, the memory goes with the
// transfer), collects what the transfer made, and prints as JSON whether each result equals a
// synchronous run on a copy. A kernel reading the transferred memory after it was freed crashed here.
// Then hands the raw addon a resizable buffer for async work (printing what it said), and arrays
// that a getter it reads later transfers away.
'use strict';
const path = require('path');
const { cosineTopK, cosineTopKAsync, meanPoolNormalize, meanPoolNormalizeAsync } = require(process.argv[2]);

const noise = (i) => ((i * 2654435761) % 1000) / 1000 - 0.5;
const transfers = {
  structuredClone: (buffer) => structuredClone(buffer, { transfer: [buffer] }),
  postMessage: (buffer) => {
    const channel = new MessageChannel();
    channel.port1.postMessage(null, [buffer]);
    channel.port1.close();
  },
};
const equal = (a, b) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

async function main() {
  const report = {};
  // 48 MiB of rows: above glibc's largest mmap threshold (32 MiB), so freeing them unmaps them.
  const dim = 768, rows = 16384, numQueries = 256;
  const database = new Float32Array(rows * dim).map((_, i) => noise(i));
  const queries = database.slice(0, numQueries * dim).map((x) => x + 0.01);
  const want = cosineTopK(queries, database, { dim, k: 3, threads: 1 });
  for (const [name, transfer] of Object.entries(transfers)) {
    for (const which of ['database', 'queries']) {
      const args = { database: database.slice(), queries: queries.slice() };
      const pending = cosineTopKAsync(args.queries, args.database, { dim, k: 3, threads: 1 });
      transfer(args[which].buffer);
      global.gc();
      const got = await pending;
      report[`cosineTopKAsync ${which} ${name}`] =
        args[which].length === 0 && equal(got.indices, want.indices) && equal(got.scores, want.scores);
    }
  }
  const shape = { batch: 64, seq: 128, hidden: dim };
  const hidden = new Float32Array(shape.batch * shape.seq * dim).map((_, i) => noise(i));
  const mask = new Int32Array(shape.batch * shape.seq).map((_, i) => (i % 7 === 6 ? 0 : 1));
  const pooled = meanPoolNormalize(hidden, mask, shape, { threads: 1 });
  const copy = hidden.slice();
  const pending = meanPoolNormalizeAsync(copy, mask, shape, { threads: 1 });
  transfers.structuredClone(copy.buffer);
  global.gc();
  report['meanPoolNormalizeAsync hidden structuredClone'] = copy.length === 0 && equal(await pending, pooled);
  // The raw addon (TypeScript refuses these first): a resizable buffer shrunk under an async
  // kernel made its pages inaccessible (a segfault), so async work refuses one.
  const { loadAddon } = require(path.join(path.dirname(process.argv[2]), 'native.js'));
  const resizable = new ArrayBuffer(database.byteLength, { maxByteLength: database.byteLength });
  const shrinking = new Float32Array(resizable);
  shrinking.set(database);
  const raw = { queries, numQueries, segments: [{ rows: shrinking, numRows: rows }], databaseType: 'float32', dim, k: 3,
    normalized: false, outIndices: new Int32Array(numQueries * 3), outScores: new Float32Array(numQueries * 3), threads: 1 };
  try {
    const pendingRaw = loadAddon().cosineTopK(raw, true);
    resizable.resize(0);
    await pendingRaw;
    report['raw addon: resizable buffer'] = 'accepted';
  } catch (err) {
    report['raw addon: resizable buffer'] = err.message;
  }
  // The raw addon reads 'normalized' after it checked 'queries': a getter there transfers the
  // queries away and collects them, before a synchronous kernel runs too (it read freed memory).
  for (const async of [false, true]) {
    const gone = new Float32Array(16384 * dim).fill(0.5);  // 48 MiB again
    const args = { queries: gone, numQueries: gone.length / dim, segments: [{ rows: new Float32Array(64 * dim).fill(1), numRows: 64 }],
      databaseType: 'float32', dim, k: 1, outIndices: new Int32Array(16384), outScores: new Float32Array(16384), threads: 1 };
    Object.defineProperty(args, 'normalized', {
      get() { structuredClone(gone.buffer, { transfer: [gone.buffer] }); global.gc(); return false; },
    });
    await loadAddon().cosineTopK(args, async);
    report[`raw addon: queries transferred by a getter (${async ? 'async' : 'sync'})`] = args.outScores.every((s) => Math.abs(s - 1) < 1e-5);
  }
  process.stdout.write(JSON.stringify(report));
}
main();

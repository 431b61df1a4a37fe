// Run with `node --expose-gc`: makes thousands of bad calls (each rejected with an error) and
// prints the resident memory after a full GC at each round, to show it stays flat.
const c = require(process.argv[2]);
const q = new Float32Array(4).fill(1);
const db = new Float32Array(40).fill(0.25);
const nanDb = new Float32Array(40).fill(NaN);
const hidden = new Float32Array(24).fill(0.5);
const mask = new BigInt64Array(6).fill(1n);
const calls = [
  () => c.cosineTopK(q, db, { dim: 4, k: 0 }),
  () => c.cosineTopK(q, new Float32Array(42), { dim: 4, k: 1 }),
  () => c.cosineTopK(q, nanDb, { dim: 4, k: 3 }),  // fails inside the native kernel
  () => c.cosineTopK(new Float64Array(4), db, { dim: 4, k: 1 }),
  () => c.meanPoolNormalize(hidden.subarray(1), mask, { batch: 2, seq: 3, hidden: 4 }),
  () => c.meanPoolNormalize(new Float32Array(24).fill(NaN), mask, { batch: 2, seq: 3, hidden: 4 }),
  () => c.meanPoolNormalize(hidden, mask, { batch: 2, seq: 3, hidden: 4 }, { device: 'cuda:7' }),
];
const rss = [];
for (let round = 0; round < 8; round++) {
  for (let i = 0; i < 1000; i++) {
    for (const call of calls) {
      let threw = false;
      try { call(); } catch { threw = true; }
      if (!threw) throw new Error('a bad call did not throw');
    }
  }
  global.gc();
  rss.push(process.memoryUsage().rss);
}
process.stdout.write(JSON.stringify({ calls: 8 * 1000 * calls.length, rss }));

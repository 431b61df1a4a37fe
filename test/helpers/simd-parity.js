// Run in a child process (CAMEMBED_SIMD is read once per process): compares the native kernels
// at the SIMD level in force with the reference and prints a JSON report.
const c = require(process.argv[2]);

let seed = 12345;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const floats = (n) => Float32Array.from({ length: n }, () => random() * 2 - 1);

const [batch, seq, hidden] = [5, 19, 203];
const h = floats(batch * seq * hidden);
const mask = Int32Array.from({ length: batch * seq }, (_, i) => (i % seq < 3 + (i % 7) ? 1 : 0));
const poolH16 = c.float32ToFloat16Array(h);
let poolMaxDiff = 0;
for (const input of [h, poolH16]) {
  const got = c.meanPoolNormalize(input, mask, { batch, seq, hidden });
  const want = c.reference.meanPoolNormalize(input, mask, { batch, seq, hidden });
  for (let i = 0; i < got.length; i++) poolMaxDiff = Math.max(poolMaxDiff, Math.abs(got[i] - want[i]));
}

const dim = 37;
const db = floats(301 * dim);
const queries = floats(33 * dim);  // 12+ queries (32+ on float16): the packed kernel on AVX-512
let topkIndexMismatches = 0;
let topkMaxScoreDiff = 0;
for (const database of [db, c.float32ToFloat16Array(db)]) {
  const got = c.cosineTopK(queries, database, { dim, k: 13 });
  const want = c.reference.cosineTopK(queries, database, { dim, k: 13 });
  for (let i = 0; i < got.indices.length; i++) {
    if (got.indices[i] !== want.indices[i]) topkIndexMismatches++;
    topkMaxScoreDiff = Math.max(topkMaxScoreDiff, Math.abs(got.scores[i] - want.scores[i]));
  }
}
process.stdout.write(JSON.stringify({ simd: c.devices().cpu.simd, poolMaxDiff, topkIndexMismatches, topkMaxScoreDiff }));

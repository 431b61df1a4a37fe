// Run in a child process (CAMEMBED_SIMD is read once per process): compares the native kernels
// at the SIMD level in force with the reference and prints a JSON report.
const path = require('path');
const c = require(process.argv[2]);
const { storeUnitRows, UNIT_NORM_SLACK } = require(path.join(path.dirname(process.argv[2]), 'kernels.js'));
const { Checksum } = require(path.join(path.dirname(process.argv[2]), 'index', 'format.js'));

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
const queries = floats(33 * dim);  // queries in the vector lanes on AVX-512 (12+ queries, 32+ on float16) and AVX2 (8+, 14+)
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
// A query's scores do not depend on the batch around it: each of the 33 queries alone, and in
// batches of 7 and 16 (rows in the vector lanes, or queries), scores every row bit for bit as in the
// whole batch (both kernel layouts sum each score in one order).
let batchMismatches = 0;
for (const database of [db, c.float32ToFloat16Array(db)]) {
  for (const normalized of [false, true]) {
    const options = { dim, k: 301, normalized };
    const all = c.cosineTopK(queries, database, options);
    for (const size of [1, 7, 16]) {
      for (let q0 = 0; q0 < 33; q0 += size) {
        const q1 = Math.min(33, q0 + size);
        const part = c.cosineTopK(queries.subarray(q0 * dim, q1 * dim), database, options);
        for (let i = 0; i < part.indices.length; i++) {
          const j = q0 * 301 + i;
          if (part.indices[i] !== all.indices[j] || !Object.is(part.scores[i], all.scores[j])) batchMismatches++;
        }
      }
    }
  }
}
// Both top-k kernels (1 and 20 queries): 17 identical rows must tie exactly, lowest index first,
// and a NaN row must be reported.
let tieFailures = 0;
let nanMissed = 0;
const row = floats(dim);
const copies = new Float32Array(17 * dim);
for (let r = 0; r < 17; r++) copies.set(row, r * dim);
for (const count of [1, 20]) {
  const got = c.cosineTopK(floats(count * dim), copies, { dim, k: 17, threads: 1 });
  for (let q = 0; q < count; q++) {
    const scores = new Set(got.scores.subarray(q * 17, (q + 1) * 17));
    const inOrder = got.indices.subarray(q * 17, (q + 1) * 17).every((index, i) => index === i);
    if (scores.size !== 1 || !inOrder) tieFailures++;
  }
  const nanDb = db.slice();
  nanDb[5 * dim + 2] = NaN;
  try {
    c.cosineTopK(floats(count * dim), nanDb, { dim, k: 3 });
    nanMissed++;
  } catch {
    // expected: "a score is not finite"
  }
}
// VectorIndex's unit rows: within 1 float32 ulp of x * (1 / max(||x||, 1e-12)) in float64 (the norm
// may sum in another order), rows of all magnitudes and a zero row; float16 storage gets the float16
// rounding of the float32 values; a NaN row is found.
let unitMaxUlp = 0;
let unitHalfMismatches = 0;
const unitDim = 37;
const unitIn = floats(40 * unitDim);
for (let r = 0; r < 40; r++) for (let i = 0; i < unitDim; i++) unitIn[r * unitDim + i] *= r === 7 ? 0 : 10 ** (r - 20);
const unit32 = new Float32Array(unitIn.length);
const unit16 = new Uint16Array(unitIn.length);
storeUnitRows('rows', unitIn, unit32, unitDim);
storeUnitRows('rows', unitIn, unit16, unitDim);
const halves = c.float32ToFloat16Array(unit32);
for (let r = 0; r < 40; r++) {
  let sum = 0;
  for (let i = 0; i < unitDim; i++) sum += unitIn[r * unitDim + i] ** 2;
  const scale = 1 / Math.max(Math.sqrt(sum), 1e-12);
  for (let i = r * unitDim; i < (r + 1) * unitDim; i++) {
    const want = Math.fround(unitIn[i] * scale);
    const ulp = want === 0 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(Math.abs(want))) - 23);
    unitMaxUlp = Math.max(unitMaxUlp, Math.abs(unit32[i] - want) / ulp);
    if (unit16[i] !== halves[i]) unitHalfMismatches++;
  }
}
let unitBadRow = null;
unitIn[23 * unitDim + 36] = NaN;
try {
  storeUnitRows('rows', unitIn, unit32, unitDim, 100);
} catch (err) {
  unitBadRow = err.message;
}
// VectorIndex.load's norm check, in the checksum's pass: unit rows as stored pass; a row scaled by
// 1.01 is found, its norm within 2^-21 of the float64 norm of its stored values (float16: blocks of
// 64 values and a tail); an earlier row with a NaN in its first block is found before it. The
// checksum is the one of the same bytes without the check, also when the rows start 7 bytes into a
// 32-byte word and a row's bytes are no multiple of 32 (200 float16 values: 400 bytes).
const normCheckFailures = [];
const checkDim = 200;
const checkIn = floats(50 * checkDim);
/** The first row above unit norm (or null), checked as `load` does, after `lead` bytes; fails on a checksum that differs. */
async function firstLongRow(rows, dtype, lead) {
  const bytes = new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
  const maxSumSquares = (1 + UNIT_NORM_SLACK[dtype]) ** 2;
  const checked = new Checksum();
  const plain = new Checksum();
  const tail = new Uint8Array(32 - ((lead + bytes.length) % 32));  // to a whole number of words
  for (const c of [checked, plain]) await c.update(new Uint8Array(lead).fill(7));
  const found = await checked.update(bytes, { dtype, dim: checkDim, maxSumSquares });
  await plain.update(bytes);
  for (const c of [checked, plain]) await c.update(tail);
  if (checked.digest() !== plain.digest()) normCheckFailures.push(`${dtype}, ${lead} bytes before: the checksum differs with the norm check`);
  return found;
}
(async () => {
  for (const stored of [new Float32Array(checkIn.length), new Uint16Array(checkIn.length)]) {
    const dtype = stored instanceof Float32Array ? 'float32' : 'float16';
    storeUnitRows('rows', checkIn, stored, checkDim);
    for (const lead of [0, 7]) {
      if ((await firstLongRow(stored, dtype, lead)) !== null) normCheckFailures.push(`${dtype}: a unit row refused`);
    }
    const values = dtype === 'float32' ? stored.slice() : c.float16ToFloat32Array(stored);
    for (let i = 31 * checkDim; i < 32 * checkDim; i++) values[i] *= 1.01;
    const bad = dtype === 'float32' ? values : c.float32ToFloat16Array(values);
    const badValues = dtype === 'float32' ? bad : c.float16ToFloat32Array(bad);  // as stored
    let sum = 0;
    for (let i = 31 * checkDim; i < 32 * checkDim; i++) sum += badValues[i] ** 2;
    for (const lead of [0, 7]) {
      const found = await firstLongRow(bad, dtype, lead);
      if (found === null || found.row !== 31 || Math.abs(found.norm - Math.sqrt(sum)) > 2 ** -21) {
        normCheckFailures.push(`${dtype}: found ${JSON.stringify(found)}, expected row 31 of norm ${Math.sqrt(sum)}`);
      }
    }
    bad[12 * checkDim + 5] = dtype === 'float32' ? NaN : 0x7e00;
    const nan = await firstLongRow(bad, dtype, 7);
    if (nan === null || nan.row !== 12 || !Number.isNaN(nan.norm)) normCheckFailures.push(`${dtype}: found ${JSON.stringify(nan)}, expected row 12 (NaN)`);
  }
  process.stdout.write(JSON.stringify({
    simd: c.devices().cpu.simd, poolMaxDiff, topkIndexMismatches, topkMaxScoreDiff, batchMismatches, tieFailures, nanMissed, unitMaxUlp, unitHalfMismatches, unitBadRow,
    normCheckFailures,
  }));
})();

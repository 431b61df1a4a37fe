// Run under `qemu-x86_64 -cpu <model>` (an older CPU than this one): exercises every native path
// (pooling, top-k with both kernels and both dtypes, float16 conversion, a VectorIndex and its
// load's checksum and norm check) against the reference and prints a JSON report. A wrong-ISA instruction kills the process (SIGILL).
const fs = require('fs');
const os = require('os');
const path = require('path');
const dist = process.argv[2];
const c = require(path.join(dist, 'index.js'));
const { float32ToFloat16Fast, storeUnitRows } = require(path.join(dist, 'kernels.js'));
const { VectorIndex } = require(path.join(dist, 'vector-index.js'));

let seed = 777;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const floats = (n) => Float32Array.from({ length: n }, () => random() * 2 - 1);

let mismatches = 0;
const [batch, seq, hidden] = [3, 7, 37];
const h = floats(batch * seq * hidden);
const mask = Int32Array.from({ length: batch * seq }, (_, i) => (i % seq < 2 + (i % 5) ? 1 : 0));
for (const input of [h, c.float32ToFloat16Array(h)]) {
  const got = c.meanPoolNormalize(input, mask, { batch, seq, hidden });
  const want = c.reference.meanPoolNormalize(input, mask, { batch, seq, hidden });
  for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) mismatches++;  // bit for bit (README)
}
const dim = 37, rows = 301;
const db = floats(rows * dim);
for (const queries of [1, 9, 20, 40]) {
  const q = floats(queries * dim);
  for (const data of [db, c.float32ToFloat16Array(db)]) {
    for (const normalized of [false, true]) {
      const got = c.cosineTopK(q, data, { dim, k: 7, normalized });
      const want = c.reference.cosineTopK(q, data, { dim, k: 7, normalized });
      for (let i = 0; i < got.indices.length; i++) {
        if (got.indices[i] !== want.indices[i] || Math.abs(got.scores[i] - want.scores[i]) > 1e-5) mismatches++;
      }
    }
  }
}
const halves = float32ToFloat16Fast(db);
const reference = c.float32ToFloat16Array(db);
for (let i = 0; i < halves.length; i++) if (halves[i] !== reference[i]) mismatches++;
const unit = new Float32Array(db.length);
storeUnitRows('rows', db, unit, dim);
for (let r = 0; r < rows; r++) {
  let sum = 0;
  for (let i = r * dim; i < (r + 1) * dim; i++) sum += db[i] ** 2;
  for (let i = r * dim; i < (r + 1) * dim; i++) if (Math.abs(unit[i] - db[i] / Math.sqrt(sum)) > 1e-7) mismatches++;
}

(async () => {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-emulated-'));
  for (const dtype of ['float16', 'float32']) {
    const index = new VectorIndex({ dim, dtype });
    index.add(db);
    const found = await index.search(db.subarray(0, 20 * dim), { k: 1 });
    for (let i = 0; i < 20; i++) if (found.ids[i] !== BigInt(i)) mismatches++;
    // Saved and loaded: the checksum and the norm check in one pass.
    const file = path.join(folder, `${dtype}.cmbd`);
    await index.save(file);
    const loaded = await VectorIndex.load(file, { mmap: true });
    const again = await loaded.search(db.subarray(0, 20 * dim), { k: 3 });
    const want = await index.search(db.subarray(0, 20 * dim), { k: 3 });
    for (let i = 0; i < want.scores.length; i++) if (again.ids[i] !== want.ids[i] || again.scores[i] !== want.scores[i]) mismatches++;
    loaded.dispose();
  }
  fs.rmSync(folder, { recursive: true });
  process.stdout.write(JSON.stringify({ simd: c.devices().cpu.simd, mismatches }));
})();

// Kernel accuracy against the float64 reference (bench/RESULTS.md, 'Accuracy'): values of pooling
// that differ from the reference's, and how far top-1 cosines are from float64 ones where they are
// high (2,000 random rows of 768 values each searched for itself, and noisy copies). Run from the
// repository root after `npm run build`: node bench/accuracy.js; CAMEMBED_SIMD=scalar for that level.
const c = require('../dist');
let seed = 1;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
// Pooling: values that differ from the reference's (float32 and float16, random shapes and scales).
let differing = 0, values = 0;
for (let it = 0; it < 300; it++) {
  const [batch, seq, hidden] = [1 + (it % 6), 1 + (it * 7) % 40, 1 + (it * 13) % 200];
  const scale = [1, 1e-30, 1e30, 1e-40][it % 4];
  const h = Float32Array.from({ length: batch * seq * hidden }, () => random() * scale);
  const input = it % 3 === 0 ? c.float32ToFloat16Array(h.map((x) => (x / scale) * 100)) : h;
  const mask = Int32Array.from({ length: batch * seq }, () => (random() < 0.4 ? 1 : 0));
  for (const normalize of [true, false]) {
    const got = c.meanPoolNormalize(input, mask, { batch, seq, hidden }, { normalize });
    const want = c.reference.meanPoolNormalize(input, mask, { batch, seq, hidden }, { normalize });
    for (let i = 0; i < got.length; i++, values++) if (!Object.is(got[i], want[i])) differing++;
  }
}
console.log(`${c.devices().cpu.simd}: pooling ${differing} of ${values} values differ from the reference`);
// Top-k cosines of 2,000 random rows of 768 values each searched for itself, and of noisy copies.
const dim = 768, rows = 2000;
const data = Float32Array.from({ length: rows * dim }, random);
for (const dtype of ['float32', 'float16']) {
  const database = dtype === 'float16' ? c.float32ToFloat16Array(data) : data;
  const exact = dtype === 'float16' ? c.float16ToFloat32Array(database) : data;
  for (const noise of [0, 0.3, 1]) {
    const queries = exact.map((x) => x + noise * random());
    const got = c.cosineTopK(queries, database, { dim, k: 1 });
    let worst = 0, above = 0, highest = -1;
    for (let q = 0; q < rows; q++) {
      const row = got.indices[q];
      let dot = 0, qq = 0, rr = 0;
      for (let i = 0; i < dim; i++) {
        const a = queries[q * dim + i], b = exact[row * dim + i];
        dot += a * b; qq += a * a; rr += b * b;
      }
      worst = Math.max(worst, Math.abs(got.scores[q] - dot / Math.sqrt(qq * rr)));
      if (got.scores[q] > 1) above++;
      highest = Math.max(highest, got.scores[q]);
    }
    console.log(`${dtype} noise ${noise}: top-1 scores off by at most ${worst.toExponential(2)}; ${above} above 1 (highest ${highest})`);
  }
}

// Kernel benchmark: native vs the TypeScript reference, same inputs, same process.
// Pooling: B=64, T=128, H=768 (float32 and float16). Top-k: N=200,000, d=768, Q in {1,16,256}, k=10.
// Prints time, GB/s (bytes the kernel must read) and GFLOP/s, and the speed-up over the reference.
const fs = require('fs');
const path = require('path');
const Benchmark = require('benchmark');
const camembed = require('../dist');

function seededArray(length, seed) {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}

// Runs fn until ~maxTime seconds have passed (at least minSamples times); returns the mean seconds.
function measure(name, fn, { maxTime = 3, minSamples = 5 } = {}) {
  return new Promise((resolve) => {
    new Benchmark(name, fn, { maxTime, minSamples, initCount: 1, onComplete: (e) => resolve(e.target.stats.mean) }).run();
  });
}

async function run() {
  const rows = [];
  const info = camembed.devices().cpu;
  const [B, T, H] = [64, 128, 768];
  const hidden32 = seededArray(B * T * H, 1);
  const hidden16 = camembed.float32ToFloat16Array(hidden32);
  const mask = new BigInt64Array(B * T).fill(1n);
  for (const [dtype, hidden] of [['float32', hidden32], ['float16', hidden16]]) {
    const shape = { batch: B, seq: T, hidden: H };
    const bytes = hidden.byteLength + mask.byteLength + B * H * 4;
    const nativeS = await measure(`pool ${dtype}`, () => camembed.meanPoolNormalize(hidden, mask, shape));
    const refS = await measure(`pool ${dtype} ref`, () => camembed.reference.meanPoolNormalize(hidden, mask, shape), { maxTime: 2, minSamples: 2 });
    rows.push({ kernel: `meanPoolNormalize ${dtype} B=${B} T=${T} H=${H}`, ms: nativeS * 1e3, refMs: refS * 1e3,
      gbPerS: bytes / nativeS / 1e9, gflopPerS: (B * T * H) / nativeS / 1e9, speedup: refS / nativeS });
  }

  const [N, d, k] = [200000, 768, 10];
  const database = seededArray(N * d, 2);
  for (const Q of [1, 16, 256]) {
    const queries = seededArray(Q * d, 3 + Q);
    const options = { dim: d, k, normalized: true };
    const bytes = database.byteLength + queries.byteLength;
    const flops = 2 * Q * N * d;
    const nativeS = await measure(`topk Q=${Q}`, () => camembed.cosineTopK(queries, database, options));
    // The reference takes ~0.3 s per query here: one or two samples are enough for the ratio.
    const refS = await measure(`topk Q=${Q} ref`, () => camembed.reference.cosineTopK(queries, database, options), { maxTime: 1, minSamples: 1 });
    rows.push({ kernel: `cosineTopK float32 N=${N} d=${d} Q=${Q} k=${k}`, ms: nativeS * 1e3, refMs: refS * 1e3,
      gbPerS: bytes / nativeS / 1e9, gflopPerS: flops / nativeS / 1e9, speedup: refS / nativeS });
  }

  console.log(`CPU: simd ${info.simd}, ${info.threads} threads`);
  console.log('kernel'.padEnd(48) + 'native ms'.padStart(11) + 'ref ms'.padStart(11) + 'GB/s'.padStart(8) + 'GFLOP/s'.padStart(9) + 'x ref'.padStart(8));
  for (const r of rows) {
    console.log(r.kernel.padEnd(48) + r.ms.toFixed(2).padStart(11) + r.refMs.toFixed(1).padStart(11) +
      r.gbPerS.toFixed(2).padStart(8) + r.gflopPerS.toFixed(1).padStart(9) + r.speedup.toFixed(1).padStart(8));
  }
  const outDir = path.join(__dirname, 'out');
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'kernels.json'), JSON.stringify({ date: new Date().toISOString(), cpu: info, rows }, null, 2));
}

module.exports = { run };

#!/usr/bin/env bash
# Builds the CPU-only addon from binding.gyp.reference with node-gyp in a scratch folder and
# checks that it loads and computes. Run through `npm run check:node-gyp` (npm puts its bundled
# node-gyp on PATH for scripts).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp "$root/binding.gyp.reference" "$scratch/binding.gyp"
ln -s "$root/native" "$scratch/native"
ln -s "$root/node_modules" "$scratch/node_modules"
(cd "$scratch" && node-gyp rebuild --jobs max >"$scratch/build.log" 2>&1) || { cat "$scratch/build.log"; exit 1; }
node -e "
const a = require('$scratch/build/Release/camembed.node');
const info = a.info();
if (info.cudaCompiledIn) throw new Error('the node-gyp build must be CPU-only');
const out = new Float32Array(2);
a.meanPoolNormalize({ hidden: new Float32Array([3, 4, 9, 9]), hiddenType: 'float32', mask: new Uint8Array([1, 0]),
  maskType: 'uint8', batch: 1, seq: 2, hiddenSize: 2, normalize: true, out, threads: 0, device: -1 }, false);
if (Math.abs(out[0] - 0.6) > 1e-7 || Math.abs(out[1] - 0.8) > 1e-7) throw new Error('wrong pooling: ' + out);
console.log('binding.gyp.reference: built and loaded (simd ' + info.simd + ')');
"

#!/usr/bin/env bash
# The published-package path as a user meets it: packs this repository (npm pack, which compiles
# dist/ through `prepare`), installs the tarball into a fresh project (so without devDependencies;
# CPU-only unless CAMEMBED_CUDA says otherwise, for speed), and from there: require() (CommonJS),
# import (ESM), tsc --strict on a TypeScript consumer (module node16, and moduleResolution bundler),
# the kernels, a VectorIndex, the encoder on the tiny shared model (when ../shared has it), and
# every CLI command's --help. Needs the npm registry (the package's dependencies, and typescript
# and @types/node for the consumer); 28 to 66 s with a warm npm cache on 2 cores (2026-11-28, the longer with other jobs running). Run: npm run check:package
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
app="$scratch/app"
mkdir "$app"

(cd "$root" && npm pack --pack-destination "$scratch" > "$scratch/pack.log" 2>&1) || { cat "$scratch/pack.log"; exit 1; }
dev() { node -p "require('$root/package.json').devDependencies['$1']"; }
cd "$app"
# A fresh project, not this repository: `npm run` exported our .npmrc's key, which every npm
# below would warn about as unknown.
unset npm_config_onnxruntime_node_install
# The install-script policy README's Install section asks for (npm >= 11.16: allowScripts): camembed's
# allowed (a tarball is named by its file: path), onnxruntime-node's denied; strict-allow-scripts makes
# any dependency script left unreviewed fail the install. Older npm has no policy: the variable does it.
tarball="$(echo "$scratch"/camembed-*.tgz)"
node -e "
require('fs').writeFileSync('package.json', JSON.stringify({ name: 'consumer', version: '1.0.0', private: true,
  allowScripts: { ['file:' + process.argv[1]]: true, 'onnxruntime-node': false } }));" "$tarball"
if node -e "const [a, b] = process.argv[1].split('.').map(Number); process.exit(a > 11 || (a === 11 && b >= 16) ? 0 : 1)" "$(npm --version)"; then
  policy=(env npm_config_strict_allow_scripts=true)
else
  policy=(env ONNXRUNTIME_NODE_INSTALL=skip)
fi
"${policy[@]}" CAMEMBED_CUDA="${CAMEMBED_CUDA:-OFF}" npm install --no-audit --no-fund \
  "$tarball" "typescript@$(dev typescript)" "@types/node@$(dev @types/node)" > install.log 2>&1 ||
  { cat install.log; exit 1; }
if compgen -G 'node_modules/onnxruntime-node/bin/napi-v*/linux/x64/*cuda*' > /dev/null; then
  echo "check-package: onnxruntime-node's install script ran (it fetched CUDA binaries)"; exit 1
fi

node -e "
const assert = require('assert');
const { meanPoolNormalize, cosineTopK, devices } = require('camembed');
const pooled = meanPoolNormalize(new Float32Array([1, 2, 3, 6, 100, 100]), new BigInt64Array([1n, 1n, 0n]), { batch: 1, seq: 3, hidden: 2 });
assert.deepStrictEqual([...pooled].map((x) => x.toFixed(6)), ['0.447214', '0.894427']);
const top = cosineTopK(new Float32Array([1, 0]), new Float32Array([1, 0, 0, 1, 0.6, 0.8]), { dim: 2, k: 2 });
assert.deepStrictEqual([...top.indices], [0, 2]);
assert.throws(() => require('camembed/dist/cuda'), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
assert.strictEqual(require('camembed/package.json').name, 'camembed');
console.log('CommonJS: kernels right, simd ' + devices().cpu.simd + '; only the root and package.json are exported');
"

cat > esm.mjs <<'EOF'
import assert from 'assert';
import { VectorIndex, Encoder, similarity } from 'camembed';
const index = new VectorIndex({ dim: 2, dtype: 'float16' });
index.add(new Float32Array([0, 1, 1, 0, 0.6, 0.8]));
const { ids, k } = await index.search(new Float32Array([1, 0]), { k: 2 });
assert.deepStrictEqual([...ids], [1n, 2n]);
assert.strictEqual(k, 2);
const model = process.argv[2];
if (model) {
  const encoder = await Encoder.load(model);
  const a = await encoder.encode(['Le chat dort.', 'Bonjour.']);
  const s = similarity(a, a).data;
  assert.ok(Math.abs(s[0] - 1) < 1e-5 && Math.abs(s[3] - 1) < 1e-5, `self-similarity ${s}`);
  await encoder.dispose();
}
console.log('ESM: VectorIndex right' + (model ? ', encoder ran on ' + model : ''));
EOF
tiny="$root/../shared/models/tiny-random-camembert"
if [ -f "$tiny/config.json" ]; then
  HF_HOME="$scratch/hf" node esm.mjs "$tiny"
else
  echo "ESM: skipping the encoder: no tiny model at $tiny (../shared)"
  node esm.mjs
fi

# A backend written against the types alone, every option, result and error by its exported name
# (no import from camembed/dist/...); main.ts is also compiled as ESM (.mts) and CommonJS (.cts).
cat > main.ts <<'EOF'
import {
  cosineTopK, CudaMatrix, devices, Encoder, evaluate, FormatError, HubError, ProxyError, reference, resolveModel, similarity,
  VectorIndex,
} from 'camembed';
import type {
  CudaDevice, CudaMatrixOptions, CudaSearchResult, Device, DownloadProgress, Embeddings, EncodeOptions, EncoderOptions,
  MetricValues, NeighborsChunk, PerQueryEvaluation, RowData, SearchOptions, SearchResult, SimilarityMatrix, TopKResult,
} from 'camembed';
const device: Device = 'cpu';
const top: TopKResult = cosineTopK(new Float32Array([1, 0]), new Float32Array([1, 0]), { dim: 2, k: 1, device });
const same: TopKResult = reference.cosineTopK(new Float32Array([1, 0]), new Float32Array([1, 0]), { dim: 2, k: 1 });
const gpus: CudaDevice[] = devices().cuda;
export async function search(index: VectorIndex, query: Embeddings, signal: AbortSignal): Promise<SearchResult> {
  const options: SearchOptions = { k: top.k + same.k, signal };
  return index.search(query, options);
}
export const load: typeof Encoder.load = (source, options) => Encoder.load(source, options);
export async function encode(model: string, texts: readonly string[]): Promise<SimilarityMatrix> {
  const options: EncoderOptions = { device, threads: 1, offline: true, cacheDir: process.env.MODEL_CACHE };
  const encoder = await Encoder.load(model, options);
  try {
    const encodeOptions: EncodeOptions = { signal: AbortSignal.timeout(1000), onProgress: ({ done, total }) => console.log(done, total) };
    const vectors = await encoder.encode(texts, encodeOptions);
    return similarity(vectors, vectors);
  } finally {
    await encoder.dispose();
  }
}
export async function walk(index: VectorIndex): Promise<bigint[]> {
  const out: bigint[] = [];
  for await (const chunk of index.neighbors({ k: 1 })) out.push(...(chunk satisfies NeighborsChunk).neighbors);
  return out;
}
export function gpuSearch(rows: RowData, options: CudaMatrixOptions, queries: Float32Array): CudaSearchResult {
  const matrix = CudaMatrix.create(rows, options);
  try {
    return matrix.search(queries, { k: 10, normalized: true });
  } finally {
    matrix.free();
  }
}
export async function fetchModel(id: string, onProgress: (p: DownloadProgress) => void): Promise<string | number> {
  try {
    return (await resolveModel(id, { onProgress, revision: 'main' })).dir;
  } catch (err) {
    if (err instanceof HubError) return err.status ?? (err.retryable ? 'retry' : 'failed');
    if (err instanceof ProxyError || err instanceof FormatError) return err.message;
    throw err;
  }
}
export const scores: MetricValues = evaluate({ q: { d: 1 } }, { q: { d: 1 } }, ['MRR@10']);
export const perQuery: PerQueryEvaluation = evaluate({ q: { d: 1 } }, { q: { d: 1 } }, undefined, { perQuery: true });
console.log(gpus.length);
EOF
cp main.ts main.mts
cp main.ts main.cts
echo '{ "compilerOptions": { "strict": true, "exactOptionalPropertyTypes": true, "module": "node16", "target": "ES2022", "noEmit": true }, "files": ["main.ts", "main.mts", "main.cts"] }' > tsconfig.json
echo '{ "compilerOptions": { "strict": true, "module": "esnext", "moduleResolution": "bundler", "target": "ES2022", "noEmit": true }, "files": ["main.ts"] }' > tsconfig.bundler.json
npx tsc -p tsconfig.json
npx tsc -p tsconfig.bundler.json
echo 'TypeScript: tsc --strict passes (node16 with exactOptionalPropertyTypes: CommonJS .ts/.cts and ESM .mts; bundler)'

npx camembed --help > help.txt
commands=$(sed -n 's/^  \([a-z-]*\)  .*/\1/p' help.txt)
[ -n "$commands" ] || { cat help.txt; echo 'camembed --help lists no commands' >&2; exit 1; }
for c in $commands; do npx camembed "$c" --help > /dev/null; done
for c in build info neighbors; do npx camembed index "$c" --help > /dev/null; done
echo "CLI: --help of" $commands "and index build/info/neighbors"
echo "check-package: the packed camembed installs and works from a fresh project"

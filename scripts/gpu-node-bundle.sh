#!/usr/bin/env bash
# Packs what the GPU machine lacks to run the jest CUDA tests there (it has no Node.js): this
# machine's node binary, node_modules without the packages those tests never load (benchmark
# baselines, other platforms' onnxruntime binaries), and the addon built here, CUDA included,
# into .gpu/node-bundle.tar.xz (~46 MB, under the device tool's 64 MiB carry limit), with a hash of
# the native sources it was built from (.gpu/native.sha256). scripts/gpu-check.sh unpacks it when
# present, and refuses it when the tree's native sources differ:
#
#   npm ci && bash scripts/gpu-node-bundle.sh
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
addon=build/Release/camembed.node
npm run --silent build:native > /dev/null  # the addon of these sources (incremental)
if ! node -e "process.exit(require('./$addon').info().cudaCompiledIn ? 0 : 1)" 2> /dev/null; then
  echo "$addon is missing or built without CUDA: run npm ci with nvcc on PATH first" >&2
  exit 1
fi
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/.gpu/bin" .gpu
cp "$(command -v node)" "$staging/.gpu/bin/node"
bin=node_modules/onnxruntime-node/bin/napi-v6
tar cf - --exclude=node_modules/onnxruntime-web --exclude=node_modules/tokenizers \
  --exclude=node_modules/@huggingface/transformers --exclude=node_modules/@img \
  --exclude=$bin/darwin --exclude=$bin/win32 --exclude=$bin/linux/arm64 node_modules "$addon" |
  tar xf - -C "$staging"
tar cf - -C "$staging" . | xz -T0 -6 > .gpu/node-bundle.tar.xz
bash scripts/gpu-check.sh --native-hash > .gpu/native.sha256
ls -l .gpu/node-bundle.tar.xz

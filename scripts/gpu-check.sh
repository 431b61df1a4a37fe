#!/usr/bin/env bash
# One command for the lent GPU machine (H100/H200: nvcc 13, cmake, ninja, python3 + torch,
# compute-sanitizer; no Node needed). Within DEADLINE seconds (default 480) it builds the kernels
# and the C++ tests for this GPU, counts the score kernels' SASS instructions, runs the parity
# tests (ctest), the kernel benchmarks, the torch baselines, compute-sanitizer memcheck and
# racecheck on small cases (API errors not reported: the tests provoke out-of-memory on purpose),
# the jest CUDA tests when Node was carried (see scripts/gpu-node-bundle.sh), the top-k parity
# test and a quick benchmark once more with the portable (sm_70, V100) kernel path forced, and (in the time left)
# Nsight Compute on one full-size score launch and one compaction of a Q = 1024, k = 100 search,
# and prints a short table last. Every step's timeout comes from the time left, so a hang costs that
# step only and the table always prints. It fails (exit 1) if CUDA was not compiled in or the
# tests skipped (no usable device). $OUT (the device tool's output folder; ./build/gpu-out when
# unset) gets bench.txt, baselines.txt, summary.txt and logs.tar.gz (every other log: the tool
# returns at most 8 files).
#
#   bash scripts/gpu-check.sh            # device tool: run(command="bash scripts/gpu-check.sh", carry=[".gpu"], timeout_s=540)
#   ARCH=80 bash scripts/gpu-check.sh    # another GPU (default 90: H100/H200)
set -uo pipefail
cd "$(dirname "$0")/.."
# The hash of the native sources, which scripts/gpu-node-bundle.sh records with its addon.
nativeHash() { find native CMakeLists.txt -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1; }
if [ "${1:-}" = --native-hash ]; then
  nativeHash
  exit 0
fi
OUT=${OUT:-$PWD/build/gpu-out}
ARCH=${ARCH:-90}
BUILD=build/gpu
DEADLINE=${DEADLINE:-480}
# The device tool returns at most 8 files from $OUT: bench.txt, baselines.txt and summary.txt go
# there; every other log goes to $LOGS, packed into $OUT/logs.tar.gz at each step.
LOGS=build/gpu-logs
rm -rf "$LOGS"
mkdir -p "$OUT" "$LOGS"
packLogs() { tar czf "$OUT/logs.tar.gz" -C "$LOGS" . 2> /dev/null; }
trap packLogs EXIT
begin=$SECONDS
step() { packLogs; echo "[$((SECONDS - begin))s] $*"; }
status=0
# capped SECONDS CMD...: runs CMD with a timeout of SECONDS, or less to keep 15 s for the table.
capped() {
  local cap=$1 left=$((DEADLINE - 15 - (SECONDS - begin)))
  shift
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -lt 5 ]; then
    echo "  skipped: out of time" >&2
    return 124
  fi
  timeout -k 10 "$cap" "$@"
}

nvcc_path=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2> /dev/null)
[ -n "$nvcc_path" ] && PATH="$(dirname "$nvcc_path"):$PATH"  # compute-sanitizer and ncu live beside nvcc
step "environment -> $LOGS/env.txt"
{
  date -u; uname -r; nvidia-smi; nvcc --version; g++ --version | head -1; cmake --version | head -1
  command -v ninja python3 compute-sanitizer ncu node
} > "$LOGS/env.txt" 2>&1
grep -E "UTC|H100|H200|NVIDIA|release" "$LOGS/env.txt" | head -5
if [ -z "$nvcc_path" ]; then
  echo "NO NVCC: neither on PATH nor in /usr/local/cuda/bin"
  exit 1
fi

step "configure + build (sm_$ARCH) -> $LOGS/build.log"
generator=$(command -v ninja > /dev/null && echo Ninja || echo "Unix Makefiles")
if ! { cmake -S . -B "$BUILD" -G "$generator" -DCMAKE_BUILD_TYPE=Release -DCAMEMBED_CUDA_ARCHITECTURES="$ARCH" \
         -DCMAKE_CUDA_COMPILER="$nvcc_path" -DCAMEMBED_TESTS=ON -DCMAKE_CUDA_FLAGS="-Xptxas -v" &&
       capped 240 cmake --build "$BUILD" -j "$(nproc)"; } > "$LOGS/build.log" 2>&1; then
  tail -40 "$LOGS/build.log"
  echo "BUILD FAILED"
  exit 1
fi
if ! grep -q "camembed: CUDA" "$LOGS/build.log"; then
  grep "camembed:" "$LOGS/build.log"
  echo "CUDA NOT COMPILED IN: the tests would only skip"
  exit 1
fi
grep -E "spill stores" "$LOGS/build.log" | sort | uniq -c | sort -rn | head -5

step "instruction mix of the tensor-core kernels (cuobjdump -sass) -> $LOGS/sass.txt"
# How WMMA was lowered (HMMA per LDSM / LDS, cp.async as LDGSTS): what a faster kernel would change.
if capped 30 cuobjdump -sass "$BUILD/cuda_bench" > "$LOGS/sass.txt" 2>&1; then
  awk '/Function :/ { name = $3 } name ~ /scoreHalf/ && /HMMA/ { h[name]++ } name ~ /scoreHalf/ && /LDSM/ { m[name]++ }
       name ~ /scoreHalf/ && /LDS[.U ]/ { l[name]++ } name ~ /scoreHalf/ && /LDGSTS/ { g[name]++ }
       END { for (n in h) printf "  %s: HMMA %d, LDSM %d, LDS %d, LDGSTS %d\n", n, h[n], m[n], l[n], g[n] }' "$LOGS/sass.txt"
else
  echo "  no SASS (see $LOGS/sass.txt)"
fi

step "ctest (parity with the CPU kernels) -> $LOGS/ctest.log"
(cd "$BUILD" && capped 150 ctest -V) > "$LOGS/ctest.log" 2>&1 || status=1
grep -E "PASS|FAIL|SKIP|tests passed|failures" "$LOGS/ctest.log" | head -30
if grep -q "SKIP" "$LOGS/ctest.log"; then
  echo "  the CUDA tests skipped: no usable device (see $LOGS/ctest.log); counted as a failure"
  status=1
fi

step "kernel benchmarks -> $OUT/bench.txt"
capped 150 "$BUILD/cuda_bench" > "$OUT/bench.txt" 2>&1 || status=1
grep -vE "^csv," "$OUT/bench.txt"

step "torch baselines (issue 5's target shape first) -> $OUT/baselines.txt"
capped 150 python3 scripts/gpu_baselines.py --time-budget 100 > "$OUT/baselines.txt" 2>&1 || status=1
tail -3 "$OUT/baselines.txt"

step "compute-sanitizer memcheck + racecheck (small cases) -> $LOGS/sanitizer-*.log"
sanitizerRuns="memcheck:cuda_pool_test memcheck:cuda_topk_test racecheck:cuda_topk_test"
if ! command -v compute-sanitizer > /dev/null; then
  echo "  compute-sanitizer is not installed (not beside nvcc, not on PATH): memcheck and racecheck not run, not a failure"
  sanitizerRuns=""
fi
for run in $sanitizerRuns; do
  tool=${run%%:*} test=${run#*:}
  {
    capped 60 compute-sanitizer --tool "$tool" --report-api-errors no --error-exitcode 9 "$BUILD/$test" --small > "$LOGS/sanitizer-$tool-$test.log" 2>&1
    rc=$?
    if grep -q "Device not supported" "$LOGS/sanitizer-$tool-$test.log"; then
      # gVisor machines: the device tool's KINDS.md records compute-sanitizer refusing the device there.
      echo "  $tool $test: compute-sanitizer is unavailable on this machine (Device not supported), not a failure"
      continue
    fi
    echo "  $tool $test: exit $rc ($(grep -cE '^=+ (Invalid|Race|Error)' "$LOGS/sanitizer-$tool-$test.log") reports)"
    [ $rc -eq 0 ] || status=1
  }
done

step "jest CUDA tests on this GPU (Node from .gpu/node-bundle.tar.xz; optional) -> $LOGS/jest.log"
# The addon built on the development machine (what npm install builds), loaded by the package's
# TypeScript through the GPU parts of test/cuda.test.ts and test/vector-index.test.ts.
if [ -f .gpu/node-bundle.tar.xz ] && [ "$(cat .gpu/native.sha256 2> /dev/null)" != "$(nativeHash)" ]; then
  echo "  the bundle's addon was built from other native sources: rerun scripts/gpu-node-bundle.sh; counted as a failure"
  status=1
elif [ -f .gpu/node-bundle.tar.xz ]; then
  if ! {
    capped 40 python3 -c $'import sys, tarfile\nt = tarfile.open(sys.argv[1])\ntry:\n    t.extractall(".", filter="fully_trusted")\nexcept TypeError:  # Python before 3.12 (or an old patch release)\n    t.extractall(".")' .gpu/node-bundle.tar.xz &&
      PATH="$PWD/.gpu/bin:$PATH" capped 90 node node_modules/jest/bin/jest.js test/cuda.test.ts test/vector-index.test.ts
  } > "$LOGS/jest.log" 2>&1; then
    status=1
    tail -5 "$LOGS/jest.log"
  fi
  grep -E "^(PASS|FAIL) |Tests:|✕|skipped: no CUDA|skipping|Error: " "$LOGS/jest.log" | head -12
  if grep -q "no CUDA device" "$LOGS/jest.log"; then
    echo "  the jest GPU tests skipped: the addon found no usable device (see $LOGS/jest.log); counted as a failure"
    status=1
  fi
else
  echo "  skipped: no .gpu/node-bundle.tar.xz (bash scripts/gpu-node-bundle.sh makes it; carry .gpu)"
fi

step "portable (sm_70) path: build, top-k parity, quick bench -> $LOGS/portable.log"
{
  capped 60 cmake -S . -B "$BUILD-portable" -G "$generator" -DCMAKE_BUILD_TYPE=Release -DCAMEMBED_CUDA_ARCHITECTURES="$ARCH" \
    -DCMAKE_CUDA_COMPILER="$nvcc_path" -DCAMEMBED_TESTS=ON -DCAMEMBED_CUDA_PORTABLE=ON &&
    capped 120 cmake --build "$BUILD-portable" -j "$(nproc)" --target cuda_topk_test cuda_bench &&
    capped 90 "$BUILD-portable/cuda_topk_test" && capped 60 "$BUILD-portable/cuda_bench" --quick
} > "$LOGS/portable.log" 2>&1 || status=1
grep -E "PASS|FAIL|SKIP|failures|topk f16" "$LOGS/portable.log" | head -12

step "kernel profile (ncu: one full-size score launch, one compaction; optional) -> $LOGS/ncu-*.log"
# Launches 1-6 of a tile are the short first ones (4,096 rows, doubling): the 7th is full size.
for kernel in scoreHalfKernel:6 compactCandidatesKernel:6; do
  name=${kernel%%:*}
  # MemoryWorkloadAnalysis_Tables shows shared-memory bank conflicts; WarpStateStats, what warps wait on.
  capped 30 ncu --clock-control none --section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy \
    --section MemoryWorkloadAnalysis_Tables --section WarpStateStats \
    -k "regex:$name" --launch-skip "${kernel#*:}" --launch-count 1 "$BUILD/cuda_bench" --profile > "$LOGS/ncu-$name.log" 2>&1 ||
    echo "  $name: no profile (see $LOGS/ncu-$name.log$(grep -q LibraryNotLoaded "$LOGS/ncu-$name.log" && echo '; ncu reads no counters on gVisor machines'))"
  grep -E "^  [a-zA-Z_]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Bank Conflicts" \
    "$LOGS/ncu-$name.log" | head -10
done

step "done (exit $status)"
touch "$OUT/bench.txt" "$OUT/baselines.txt"  # a step skipped for time leaves none
if ! python3 scripts/gpu_baselines.py --summary "$OUT/bench.txt" "$OUT/baselines.txt" > "$OUT/summary.txt" 2>&1; then
  # No python3 (or it failed): the benchmark's own table, so that the numbers still come back.
  { cat "$OUT/summary.txt"; echo "(no Markdown summary: python3 failed above; cuda_bench's table instead)"
    grep -vE "^csv," "$OUT/bench.txt"; } > "$OUT/summary.txt.new" 2>&1
  mv "$OUT/summary.txt.new" "$OUT/summary.txt"
fi
cat "$OUT/summary.txt"
exit $status

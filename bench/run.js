#!/usr/bin/env node
// `npm run bench` runs the kernel suite; `npm run bench -- <name> ...` runs bench/<name>.bench.js.
// Benchmarks require the compiled library in dist/ (built by `npm ci` / `npm run build`).
const fs = require('fs');
const path = require('path');

const available = fs.readdirSync(__dirname).filter((f) => f.endsWith('.bench.js')).map((f) => f.slice(0, -9));
const names = process.argv.slice(2);
const chosen = names.length > 0 ? names : ['kernels'];
for (const name of chosen) {
  if (!available.includes(name)) {
    console.error(`unknown benchmark '${name}'; available: ${available.join(', ')}`);
    process.exit(2);
  }
}
(async () => {
  for (const name of chosen) {
    console.log(`\n=== ${name} ===`);
    await require(path.join(__dirname, `${name}.bench.js`)).run();
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});

// `node release-during-kernel.js <dist/native.js>`: starts an async search over storage from the raw
// addon's allocateLargePages, asks releaseMapping to unmap that storage while the search runs, then
// again once it is done. Prints what each step said. The kernel read the unmapped pages: SIGSEGV.
'use strict';
const addon = require(process.argv[2]).loadAddon();
const dim = 384, rows = 50000;
const buffer = addon.allocateLargePages(rows * dim * 4);
const database = new Float32Array(buffer).fill(0.5);
const outIndices = new Int32Array(3);
const search = addon.cosineTopK({ queries: new Float32Array(dim).fill(1), numQueries: 1, segments: [{ rows: database, numRows: rows }],
  databaseType: 'float32', dim, k: 3, normalized: false, outIndices, outScores: new Float32Array(3), threads: 1 }, true);
try {
  addon.releaseMapping(buffer);
  console.log('released during the search');
} catch (err) {
  console.log(err.message);
}
search.then(() => {
  console.log(`search done: ${Array.from(outIndices).join(' ')}`);
  addon.releaseMapping(buffer);
  console.log(`released after: ${database.length} values left`);
});

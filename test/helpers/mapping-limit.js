// `node --jitless --no-lazy --no-flush-bytecode --expose-gc mapping-limit.js <dist> <file>` fills this
// process's memory mappings up to the kernel's limit (vm.max_map_count) with mappings of <file>,
// then prints, one per line, the error of one more mapping and that of an add that needs a chunk
// on large pages. In a child process, its code all compiled
// and its garbage collected before the limit: there, anything else that needs a mapping fails too,
// V8's compilers and collector included.
'use strict';
const fs = require('fs');
const path = require('path');
const { VectorIndex } = require(path.join(process.argv[2], 'vector-index.js'));
const { fileBindings } = require(path.join(process.argv[2], 'index', 'format.js'));

const bindings = fileBindings();
const dim = 1024;
const rows = new Float32Array(1024 * dim).fill(1);  // a chunk of 4 MiB
const index = new VectorIndex({ dim, chunkBytes: 4 * 1024 * 1024 });
index.add(rows);  // its code run once before the limit
index.remove(index.ids());
const fd = fs.openSync(process.argv[3], 'r');
const limit = Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8'));
const room = limit - fs.readFileSync('/proc/self/maps', 'utf8').split('\n').length;
const held = new Array(limit);  // no growth at the limit
let count = 0;
let mapFailure = null;
for (; mapFailure === null; count++) {
  if (count === room - 1000) gc();  // none due in the last thousand
  try {
    held[count] = bindings.mapFileRange(fd, 0, 64);
  } catch (err) {
    mapFailure = err.message;
  }
}
count--;
let addFailure = 'added';
try {
  index.add(rows);
} catch (err) {
  addFailure = err.message;
}
while (count > 0) bindings.releaseMapping(held[--count]);
fs.closeSync(fd);
console.log(`${mapFailure}\n${addFailure}`);

// Run with --expose-gc: `node --expose-gc abandoned-readers.js <dist/index.js> <text file>`. Starts
// line readers (readTextLines, readTsv) on the file, reads one line from each and drops them without
// return(), as a server does whose client went away; collects them and prints as JSON the open file
// descriptors before, with the readers open, and once collected (waiting up to 5 s for the
// finalizers and the closes they start).
'use strict';
const fs = require('fs');
const { readTextLines, readTsv } = require(process.argv[2]);
const file = process.argv[3];
const READERS = 200;

const openFds = () => fs.readdirSync('/proc/self/fd').length;

/** Readers that have each read one line; the caller drops them. */
async function openReaders() {
  const readers = [];
  for (let i = 0; i < READERS; i++) {
    const reader = i % 2 === 0 ? readTextLines(file) : readTsv(file);
    await reader.next();
    readers.push(reader);
  }
  return readers;
}

(async () => {
  const before = openFds();
  let readers = await openReaders();
  const open = openFds();
  readers = null;  // dropped without return()
  let after = open;
  for (const deadline = Date.now() + 5000; Date.now() < deadline && after - before >= 10;) {
    global.gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
    after = openFds();
  }
  console.log(JSON.stringify({ before, open, after }));
})();

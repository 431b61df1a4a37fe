// Run with --expose-gc: `node --expose-gc abandoned-files.js <dist/index.js> <text file> <run folder>`.
// Opens line readers (readTextLines, readTsv) on the text file, each having read one line, and TREC
// run writers in the folder, each having written one query, and drops them all without return(),
// close() or abort(), as a server does whose client went away; collects them and prints as JSON the
// open file descriptors before, with the files open, and once collected (waiting up to 5 s for the
// finalizers and the closes they start).
'use strict';
const fs = require('fs');
const path = require('path');
const { readTextLines, readTsv, TrecRunWriter } = require(process.argv[2]);
const [file, runFolder] = process.argv.slice(3);
const READERS = 100;
const WRITERS = 100;

const openFds = () => fs.readdirSync('/proc/self/fd').length;

/** Readers and writers that have each done one step; the caller drops them. */
async function openFiles() {
  const opened = [];
  for (let i = 0; i < READERS; i++) {
    const reader = i % 2 === 0 ? readTextLines(file) : readTsv(file);
    await reader.next();
    opened.push(reader);
  }
  for (let i = 0; i < WRITERS; i++) {
    const writer = await TrecRunWriter.open(path.join(runFolder, `run${i}.trec`));
    await writer.write('q1', ['d1'], [1]);
    opened.push(writer);
  }
  return opened;
}

(async () => {
  const before = openFds();
  let opened = await openFiles();
  const open = openFds();
  opened = null;  // dropped without return(), close() or abort()
  let after = open;
  for (const deadline = Date.now() + 5000; Date.now() < deadline && after - before >= 10;) {
    global.gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
    after = openFds();
  }
  console.log(JSON.stringify({ before, open, after }));
})();

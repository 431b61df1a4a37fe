// `node unit-rows-oom.js <dist/native.js>`: lowers this process's address-space limit (prlimit) to
// 32 MiB above what it uses once its arrays exist, then asks the raw addon for unit rows stored as
// float16, whose kernel needs a 64 MiB row buffer. Prints the error it threw, or 'no error'. An
// allocation failure in a synchronous binding escaped as std::bad_alloc: the process aborted.
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const addon = require(process.argv[2]).loadAddon();
const dim = 16 * 1024 * 1024;
const input = new Float32Array(dim).fill(1), output = new Uint16Array(dim);
const usedKiB = Number(fs.readFileSync('/proc/self/status', 'utf8').match(/VmSize:\s+(\d+)/)[1]);
execFileSync('prlimit', ['--pid', String(process.pid), `--as=${(usedKiB + 32 * 1024) * 1024}`]);
try {
  addon.unitRows({ input, output, dim });
  console.log('no error');
} catch (err) {
  console.log(err.message);
}

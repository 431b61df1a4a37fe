// Another process using the model pipeline, for tests of what several processes (or a killed one)
// leave behind. `node model-worker.js convert <modelDir> <output>` or
// `node model-worker.js resolve <id> <cacheDir> <endpoint>` or
// `node model-worker.js make <tokenizerDir> <outDir>` (a 1-layer random model, seed 1); prints the path, or the error message
// (exit code 1). Environment, each hook applying to the first rename onto a path matching AT
// (a regex; default any):
//   FAKE_PID=n                process.pid reads n (containers where every process is PID 1)
//   READY=file WAIT_FOR=file  write READY, then wait until WAIT_FOR exists, then go on
//   FAIL=1                    throw ENOSPC instead of renaming (a full disk)
//   KILL=1                    SIGKILL itself instead of renaming
// and to every call:
//   NO_SYMLINKS=1             fs.symlinkSync fails with EPERM (Windows, SMB volumes)
//   COPY_KILL=regex           a copyFileSync onto a matching path copies half of the file, then SIGKILLs itself
//   KILL_AFTER_BYTES=n        resolve: SIGKILL itself once a download has passed n bytes
const fs = require('fs');
const path = require('path');

const realPid = process.pid;
if (process.env.FAKE_PID) Object.defineProperty(process, 'pid', { value: Number(process.env.FAKE_PID) });
const { READY, WAIT_FOR, AT, FAIL, KILL } = process.env;
const rename = fs.renameSync;
let hooked = false;
fs.renameSync = (from, to) => {
  if (!hooked && new RegExp(AT ?? '').test(String(to))) {
    hooked = true;
    if (READY) fs.writeFileSync(READY, '');
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    while (WAIT_FOR && !fs.existsSync(WAIT_FOR)) Atomics.wait(sleeper, 0, 0, 5);
    if (KILL) process.kill(realPid, 'SIGKILL');
    if (FAIL) throw Object.assign(new Error(`ENOSPC: no space left on device, rename '${from}' -> '${to}'`), { code: 'ENOSPC' });
  }
  return rename(from, to);
};
if (process.env.NO_SYMLINKS) {
  fs.symlinkSync = (target, file) => {
    throw Object.assign(new Error(`EPERM: operation not permitted, symlink '${target}' -> '${file}'`), { code: 'EPERM' });
  };
}
const copy = fs.copyFileSync;
fs.copyFileSync = (from, to, mode) => {
  if (process.env.COPY_KILL && new RegExp(process.env.COPY_KILL).test(String(to))) {
    const data = fs.readFileSync(from);
    fs.writeFileSync(to, data.subarray(0, data.length >> 1));
    process.kill(realPid, 'SIGKILL');
  }
  return copy(from, to, mode);
};
const model = require(path.resolve(__dirname, '../../dist/model'));
const [command, ...args] = process.argv.slice(2);
const work = command === 'convert' ? model.convertToOnnx(args[0], { output: args[1] })
  : command === 'make' ? model.makeRandomModel({ layers: 1, hidden: 8, heads: 2, intermediate: 16, tokenizerDir: args[0], outDir: args[1], seed: 1 })
    .then(() => args[1])
  : model.resolveModel(args[0], {
    cacheDir: args[1], endpoint: args[2], retries: 0,
    onProgress: ({ bytes }) => {
      if (process.env.KILL_AFTER_BYTES && bytes > Number(process.env.KILL_AFTER_BYTES)) process.kill(realPid, 'SIGKILL');
    },
  }).then((m) => m.dir);
work.then((p) => console.log(p), (err) => {
  console.log(err.message);
  process.exitCode = 1;
});

// Run in a child process: two worker threads (each with its own Node-API env) allocate and release
// huge-page buffers at the same time; prints "ok" if the process survives and the addon is still
// loaded once both have ended (the main thread never loads it): its unmapping thread may still run.
const fs = require('fs');
const { Worker, isMainThread, workerData } = require('worker_threads');
if (isMainThread) {
  const addon = fs.realpathSync(process.argv[2]);
  let done = 0;
  for (let w = 0; w < 2; w++) {
    new Worker(__filename, { workerData: addon }).on('exit', (code) => {
      if (code !== 0) process.exit(code);
      if (++done < 2) return;
      // A worker's end dlclose()s its addons; the last one unloads it unless it is linked -z nodelete.
      setImmediate(() => process.stdout.write(fs.readFileSync('/proc/self/maps', 'utf8').includes(addon) ? 'ok' : 'unloaded'));
    });
  }
} else {
  const a = require(workerData);
  for (let i = 0; i < 5000; i++) {
    const buffers = [];
    for (let j = 0; j < 4; j++) buffers.push(a.allocateLargePages(4096 + j));
    for (const b of buffers) a.releaseMapping(b);
  }
}

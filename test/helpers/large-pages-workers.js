// Run in a child process: two worker threads (each with its own Node-API env) allocate and release
// huge-page buffers at the same time; prints "ok" if the process survives.
const { Worker, isMainThread, workerData } = require('worker_threads');
if (isMainThread) {
  const addon = process.argv[2];
  let done = 0;
  for (let w = 0; w < 2; w++) {
    new Worker(__filename, { workerData: addon }).on('exit', (code) => {
      if (code !== 0) process.exit(code);
      if (++done === 2) process.stdout.write('ok');
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

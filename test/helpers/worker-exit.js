// Worker threads that end (process.exit in the worker, or terminate() from the main thread)
// while their async kernels still run; then the main thread searches. Prints the exit codes and
// the main thread's result as JSON. Run as: node worker-exit.js <path to dist/index.js>
const { Worker, isMainThread, workerData } = require('worker_threads');

const dim = 256;
const rows = 100000;
const noise = (i) => (Math.sin(i * 12.9898) * 43758.5453) % 1;  // deterministic, spread out
const database = () => new Float32Array(rows * dim).map((_, i) => noise(i));
const queries = () => new Float32Array(64 * dim).map((_, i) => noise(-1 - i));

if (isMainThread) {
  const dist = process.argv[2];
  const ended = ['exit', 'terminate', 'exit-on-error'].map((how) => new Promise((resolve) => {
    const worker = new Worker(__filename, { workerData: { dist, how } });
    worker.on('message', () => { if (how === 'terminate') worker.terminate(); });
    worker.on('error', () => {});
    worker.on('exit', (code) => resolve(code));
  }));
  Promise.all(ended).then((codes) => {
    const c = require(dist);
    const { indices } = c.cosineTopK(queries().subarray(0, dim), database(), { dim, k: 3 });
    process.stdout.write(JSON.stringify({ codes, indices: Array.from(indices) }));
  });
} else {
  const c = require(workerData.dist);
  const { parentPort } = require('worker_threads');
  // 'exit-on-error': the call fails in native code (a NaN), so the work ends with a rejection.
  const db = database();
  if (workerData.how === 'exit-on-error') db[rows * dim - 1] = NaN;
  c.cosineTopKAsync(queries(), db, { dim, k: 5 }).catch(() => {});
  const hidden = new Float32Array(64 * 128 * 256).fill(0.5);
  c.meanPoolNormalizeAsync(hidden, new Int32Array(64 * 128).fill(1), { batch: 64, seq: 128, hidden: 256 });
  if (workerData.how === 'terminate') parentPort.postMessage('started');
  else setImmediate(() => process.exit(0));
}

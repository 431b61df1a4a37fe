// Calls that start onnxruntime-node's CUDA provider where it cannot start, in a process of their own:
// ONNX Runtime then logs why on the process's stderr (its own writes to fd 2, past process.stderr),
// which the test captures and checks instead of leaving it in the test run's output.
// `node cuda-provider-probe.js <build> <model folder> <calls JSON>`, on the compiled dist/: `build` is
// 'gpu' (camembed's CUDA build sees a device 0, as on a GPU without onnxruntime-node's CUDA binaries)
// or 'cpu' (camembed built without CUDA); a call is ['load'] (Encoder.load(model, { device: 'cuda' }))
// or a `camembed` command line. Prints as JSON, for each call, its exit status (a load: its error's
// message) and what it wrote to process.stderr.
'use strict';
const path = require('path');

const dist = path.resolve(__dirname, '../../dist');
const [build, model, calls] = process.argv.slice(2);
const addon = require(path.join(dist, 'native')).loadAddon();
const real = addon.info();
addon.info = () => ({
  ...real,
  ...(build === 'gpu'
    ? { cudaCompiledIn: true, cudaDevices: [{ index: 0, name: 'a GPU', totalMemoryBytes: 2 ** 34, computeCapability: '9.0', multiprocessors: 132 }], cudaUnavailableReason: null }
    : { cudaCompiledIn: false, cudaDevices: [], cudaUnavailableReason: 'built without CUDA' }),
});
const { main } = require(path.join(dist, 'cli'));
const { Encoder } = require(path.join(dist, 'encoder'));

(async () => {
  const results = [];
  for (const call of JSON.parse(calls)) {
    let written = '';
    process.stderr.write = (chunk) => { written += String(chunk); return true; };
    const result = call[0] === 'load'
      ? await Encoder.load(model, { device: 'cuda' }).then(() => 'loaded', (err) => err.message)
      : await main(call);
    results.push({ call, result, stderr: written });
  }
  process.stdout.write(JSON.stringify(results));
})();

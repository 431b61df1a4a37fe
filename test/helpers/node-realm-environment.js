// Jest runs tests in a separate V8 context whose Float32Array, BigInt64Array, ... differ from the
// ones native addons create. onnxruntime-node's output tensors are made by its addon (main realm)
// and then checked with `instanceof` in onnxruntime-common (test realm), which fails
// (microsoft/onnxruntime#16622). Sharing the main realm's typed-array constructors fixes it.
// The test realm's `process` is a copy of the real one: Node.js emits its own warnings (e.g.
// MaxListenersExceededWarning) on the real one, and they are passed on, so that a test's
// process.on('warning') sees them as a program would.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer', 'SharedArrayBuffer', 'DataView', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array',
  'Uint16Array', 'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
];

class NodeRealmEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
    this.passWarning = (warning) => this.global.process.emit('warning', warning);
  }

  async setup() {
    await super.setup();
    process.on('warning', this.passWarning);
  }

  async teardown() {
    process.off('warning', this.passWarning);
    await super.teardown();
  }
}

module.exports = NodeRealmEnvironment;

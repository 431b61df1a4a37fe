// Run in a child process with CAMEMBED_SIMD set (it is read once per process): converts the
// float32 values in argv[3] with the native float32 -> float16 conversion, writes the halves to
// argv[4] and prints the SIMD level used.
const fs = require('fs');
const kernels = require(process.argv[2]);
const { devices } = require(require('path').join(require('path').dirname(process.argv[2]), 'index.js'));
const input = new Float32Array(new Uint8Array(fs.readFileSync(process.argv[3])).buffer);
fs.writeFileSync(process.argv[4], kernels.float32ToFloat16Fast(input));
process.stdout.write(devices().cpu.simd);

// The run-time SIMD choice on CPUs older than this one: the whole native path under QEMU's user-mode
// emulation of a Haswell (AVX2, no AVX-512) and a Nehalem (no AVX: the scalar level). CAMEMBED_SIMD
// lowers the level on this CPU too (pool.test.ts), but only a CPU without the instructions shows
// an instruction of a wider ISA slipping into shared code (SIGILL). Needs qemu-user
// (`apt-get install qemu-user`); skips with a message without it.
import { execFileSync } from 'child_process';
import * as path from 'path';

function qemu(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v qemu-x86_64'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() || null;
  } catch {
    return null;
  }
}

const emulator = qemu();
if (emulator === null) console.log('emulated-cpu tests skipped: qemu-x86_64 (qemu-user) is not installed');

(emulator === null ? test.skip : test).each([['Haswell', 'avx2'], ['Nehalem', 'scalar']])('on an emulated %s the %s kernels match the reference', (cpu, level) => {
  const script = path.join(__dirname, 'helpers', 'emulated-cpu.js');
  const dist = path.resolve(__dirname, '..', 'dist');
  const out = execFileSync(emulator!, ['-cpu', cpu, process.execPath, script, dist], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 120000 });
  const report = JSON.parse(out.toString()) as { simd: string; mismatches: number };
  expect(report.simd).toBe(level);
  expect(report.mismatches).toBe(0);
});

// Users may have only AVX2 (or neither): every instruction of a wider ISA in our native code must
// sit in a function made for that ISA (named ...Avx2 / ...Avx512, or in namespace avx2 / avx512),
// which runs only after the run-time check chose that level. No machine here lacks AVX-512, so
// this reads the built addon's machine code instead (objdump), where a stray vector instruction in
// shared code (an inlined helper, a template instantiated under `#pragma GCC target`) would show.
import { execFileSync } from 'child_process';
import { addonPath } from '../lib/native';

function disassembly(): string | null {
  try {
    return execFileSync('objdump', ['-d', '--no-show-raw-insn', '-C', addonPath], { maxBuffer: 1 << 30 }).toString();
  } catch {
    return null;
  }
}

/** The functions (ours, and any library code linked in) that use registers matching `registers`. */
function functionsUsing(text: string, registers: RegExp): Set<string> {
  const found = new Set<string>();
  let current = '';
  for (const line of text.split('\n')) {
    const header = /^[0-9a-f]+ <(.*)>:$/.exec(line);
    if (header) current = header[1];
    else if (registers.test(line)) found.add(current);
  }
  return found;
}

const text = disassembly();
if (text === null) console.log('simd-isolation test skipped: objdump (binutils) is not installed, so the addon cannot be disassembled');

(text === null ? test.skip : test)('AVX-512 and AVX2 instructions appear only in functions for those levels', () => {
  const avx512 = functionsUsing(text!, /%zmm|%k[1-7]|%[xy]mm(1[6-9]|2\d|3[01])\b|\{1to\d+\}/);
  const avx2 = functionsUsing(text!, /%ymm/);
  expect(avx512.size).toBeGreaterThan(10);  // the check sees the AVX-512 kernels at all
  expect([...avx512].filter((f) => !/avx512/i.test(f))).toEqual([]);
  expect([...avx2].filter((f) => !/avx2|avx512/i.test(f))).toEqual([]);
});

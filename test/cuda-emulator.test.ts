// The CUDA code run on the CPU by the emulator of native/tests/emulator (see its README), so that
// it is tested on every machine, not only in the rare sessions with a GPU: the C++ parity tests
// (built with AddressSanitizer) on an emulated sm_90 (cp.async path) and sm_75 (portable path),
// the GPU check's benchmark and summary at tiny sizes, and the jest CUDA tests (cuda.test.ts,
// VectorIndex on CUDA) on an addon built against the emulator. Skips with a message off Linux x86-64 (the emulator's fiber switch is x86-64 code).
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const testsBuild = path.join(root, 'build', 'emulator');
const addonBuild = path.join(root, 'build', 'emulator-addon');
const supported = process.platform === 'linux' && process.arch === 'x64';
if (!supported) {
  // eslint-disable-next-line no-console
  console.log(`cuda-emulator.test: skipped: the CUDA emulator needs Linux x86-64, this is ${process.platform} ${process.arch}`);
}

/** Runs a command; a failure is an error carrying the end of its output. */
function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: root, env, maxBuffer: 1 << 28 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${path.basename(file)} ${args.join(' ')}: ${error.message}\n${(stdout + stderr).slice(-4000)}`));
      else resolve(stdout);
    });
  });
}

const parityTests = [90, 75].flatMap((sm) => ['cuda_pool_test', 'cuda_topk_test'].map((name) => ({ sm, name })));

(supported ? describe : describe.skip)('the CUDA code on the CPU emulator', () => {
  // The C++ parity tests (single-threaded: up to ~45 s each on the AVX-512 VM, 220 s for
  // cuda_topk_test on sm_90 on an AVX2 VM with other jobs running, 2026-11-28) start together once
  // built, and each test below waits for its own.
  const parityRuns = new Map<string, Promise<string>>();
  beforeAll(async () => {
    await run('cmake', ['-S', root, '-B', testsBuild, '-DCAMEMBED_CUDA_EMULATOR=ON']);
    await run('cmake', ['--build', testsBuild, '-j', String(os.cpus().length)]);
    for (const { sm, name } of parityTests) {
      const output = run(path.join(testsBuild, `${name}_emulated_sm${sm}`), []);
      output.catch(() => undefined);  // reported by its test
      parityRuns.set(`${name}_sm${sm}`, output);
    }
    // Configured every time (as build:native is), so that a build left by another Node.js is rebuilt for this one.
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
    await run(process.execPath, [cmakeJs, 'configure', '--out', addonBuild, '--CDCAMEMBED_CUDA_EMULATOR=ON']);
    await run(process.execPath, [cmakeJs, 'build', '--out', addonBuild, '--target', 'camembed']);
  }, 600_000);

  for (const { sm, name } of parityTests) {
    test(`${name} on an emulated sm_${sm}`, async () => {
      const output = await parityRuns.get(`${name}_sm${sm}`)!;
      expect(output).toContain(`on camembed CUDA emulator (sm_${sm})`);
      expect(output).toContain(`PASS ${name}`);
    }, 600_000);  // a guard against a hang: 300 s was too short for cuda_topk_test on a loaded 2-core VM
  }

  // scripts/gpu-check.sh's benchmark and final table, which otherwise first run in a GPU session.
  test('cuda_bench --tiny and the summary of gpu_baselines.py run end to end', async () => {
    const bench = await run(path.join(testsBuild, 'cuda_bench_emulated_sm90'), ['--tiny']);
    const rows = bench.split('\n').filter((line) => line.startsWith('csv,')).map((line) => line.split(','));
    expect(rows.map((r) => r[1])).toEqual(['copy', 'pool_f32', 'pool_f16', ...Array(6).fill('topk')]);
    for (const r of rows) expect(Number(r[6])).toBeGreaterThan(0);  // milliseconds
    let python = true;
    try {
      await run('python3', ['--version']);
    } catch {
      python = false;
      // eslint-disable-next-line no-console
      console.log('cuda-emulator.test: summary check skipped: no python3');
    }
    if (!python) return;
    // A torch row at twice our time for one shape: the table must join it and show 2.00x.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-bench-'));
    const ours = rows.find((r) => r[1] === 'topk' && r[3] === '17' && r[4] === '100')!;
    fs.writeFileSync(path.join(dir, 'bench.txt'), bench);
    fs.writeFileSync(path.join(dir, 'baselines.txt'), `csv,torch_topk,1100,17,100,768,${2 * Number(ours[6])},1,1\n`);
    const summary = await run('python3', ['scripts/gpu_baselines.py', '--summary', path.join(dir, 'bench.txt'), path.join(dir, 'baselines.txt')]);
    expect(summary).toContain('pooling f16 B=4 T=16 H=768');
    for (const among of [4, 130]) {
      expect(summary).toContain(`\n- verified N=1100: 4 queries' top-1000 (searched among ${among}) against the CPU's: `);
    }
    expect(summary).toContain("\n- verified N=1100: 4 queries' top-1000 by cosine (searched among 4) against the CPU's: ");
    expect(summary).toContain("\n- verified N=1100: query 17 of the timed 17-query search's top-1000 against the CPU's: ");
    expect(summary).not.toContain('FAIL');
    // A Markdown table: N, Q, k, ours ms, GB/s, TFLOP/s, torch mm+topk ms, torch mm ms, x torch.
    const row = /\n\| 1100 \| 17 \| 100 \| ([^|]+) \|(?: [^|]+ \|){2} ([^|]+) \| [^|]+ \| 2\.00x \|\n/.exec(summary);
    expect(row).not.toBeNull();
    // Ours and torch's times, to 3 decimals (Python rounds a tie like 587.3125 to even, toFixed up: compare the numbers).
    expect(Math.abs(Number(row![1]) - Number(ours[6]))).toBeLessThanOrEqual(0.0005 + 1e-9);
    expect(Math.abs(Number(row![2]) - 2 * Number(ours[6]))).toBeLessThanOrEqual(0.0005 + 1e-9);
    expect(summary.split('\n').filter((line) => line.startsWith('| 1100 |'))).toHaveLength(6);
    expect(summary).toContain('targets (issue 5):');
  }, 300_000);

  test('the jest CUDA tests pass on an addon built against the emulator', async () => {
    const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-emulator-')), 'report.json');
    const env = { ...process.env, CAMEMBED_ADDON: path.join(addonBuild, 'Release', 'camembed.node') };
    await run(process.execPath, [require.resolve('jest/bin/jest'), 'test/cuda.test.ts', 'test/vector-index.test.ts',
      '--testNamePattern', 'CUDA|GPU|cuda', '--json', `--outputFile=${report}`], env);
    const results = JSON.parse(fs.readFileSync(report, 'utf8')) as {
      testResults: { assertionResults: { ancestorTitles: string[]; status: string }[] }[];
    };
    const passedIn = new Map<string, number>();
    for (const file of results.testResults) {
      for (const t of file.assertionResults) {
        expect(t.status).not.toBe('failed');
        if (t.status === 'passed' && t.ancestorTitles.length > 0) {
          passedIn.set(t.ancestorTitles[0], (passedIn.get(t.ancestorTitles[0]) ?? 0) + 1);
        }
      }
    }
    // The GPU-only groups ran (they skip where no CUDA device is seen).
    expect(passedIn.get('CudaMatrix on the GPU')).toBeGreaterThanOrEqual(20);
    expect(passedIn.get("one-shot cosineTopK / meanPoolNormalize with device: 'cuda'")).toBeGreaterThanOrEqual(1);
    expect(passedIn.get('VectorIndex on CUDA')).toBeGreaterThanOrEqual(1);
  }, 300_000);
});

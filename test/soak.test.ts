// Resources that must not pile up in a long-lived process (docs/soak.md: the soak runs that found them).
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const dist = path.resolve(__dirname, '..', 'dist', 'index.js');
const hasProcFd = fs.existsSync('/proc/self/fd');
if (!hasProcFd) {
  // eslint-disable-next-line no-console
  console.log('soak.test: skipped: counting open files needs /proc/self/fd (Linux)');
}

(hasProcFd ? test : test.skip)('line readers and run writers dropped midway (no return(), close() or abort()) close their files once collected', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-soak-'));
  try {
    const file = path.join(dir, 'passages.tsv');
    fs.writeFileSync(file, Array.from({ length: 100 }, (_, i) => `p${i}\tpassage ${i}\n`).join(''));
    const script = path.join(__dirname, 'helpers', 'abandoned-files.js');
    const out = execFileSync(process.execPath, ['--expose-gc', script, dist, file, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const { before, open, after } = JSON.parse(out.toString()) as { before: number; open: number; after: number };
    expect(open - before).toBeGreaterThanOrEqual(190);  // the 100 readers and 100 writers did hold their files open
    expect(after - before).toBeLessThan(10);            // and collecting them closed those files
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

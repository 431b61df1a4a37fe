// The README's code examples run as written, against this build: each ```js block whose first
// line names a file (`// kernels.js`, `// encode.mjs`) is written to a temporary folder with
// 'camembed' pointing at this repository and the Hub model replaced by the tiny shared one, run
// with node, and its printed values checked against what the README's comments say.
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const TINY = path.resolve(root, '../shared/models/tiny-random-camembert');
const haveModel = fs.existsSync(path.join(TINY, 'config.json'));

const examples = [...fs.readFileSync(path.join(root, 'README.md'), 'utf8').matchAll(/```js\n\/\/ (\S+\.m?js)\b.*\n([\s\S]*?)```/g)]
  .map(([, file, body]) => ({ file, body }));

function runExample(file: string, body: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-readme-'));
  const source = body
    .replace(/from 'camembed'/g, `from ${JSON.stringify(path.join(root, 'dist/index.js'))}`)
    .replace(/require\('camembed'\)/g, `require(${JSON.stringify(root)})`)
    .replace(/Encoder\.load\(\)/g, `Encoder.load(${JSON.stringify(TINY)})`);
  fs.writeFileSync(path.join(dir, file), source);
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [file], { cwd: dir }, (error, stdout, stderr) => {
      fs.rmSync(dir, { recursive: true, force: true });
      if (error) reject(new Error(`${file}: ${error.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

const needsModel = (body: string) => body.includes('Encoder');
const checks: Record<string, (stdout: string) => void> = {
  'kernels.js': (out) => {
    expect(out).toMatch(/Float32Array\(2\) \[ 0\.447213\d+, 0\.894427\d+ \]/);
    expect(out).toMatch(/Int32Array\(2\) \[ 0, 2 \] Float32Array\(2\) \[ 1, 0\.6\d* \] 2/);
  },
  'encode.mjs': (out) => expect(out).toMatch(/^Float32Array\(2\) \[ -?\d\.\d+, -?\d\.\d+ \]$/m),
  'search.mjs': (out) => {
    expect(out).toMatch(/^BigInt64Array\(2\) \[ [01]n, [01]n \] Float32Array\(2\) \[ .+ \] 2$/m);
    expect(out).toContain('BigInt64Array(2) [ 0n, 1n ] BigInt64Array(2) [ 1n, 0n ]');
  },
};

test('the README has the runnable examples this test checks', () => {
  expect(examples.map((e) => e.file).sort()).toEqual(Object.keys(checks).sort());
});

for (const { file, body } of examples) {
  const run = haveModel || !needsModel(body) ? test : test.skip;
  if (run === test.skip) {
    // eslint-disable-next-line no-console
    console.log(`readme-examples: skipping ${file}: no tiny model at ${TINY} (../shared)`);
  }
  run(`README example ${file} runs and prints what its comments say`, async () => {
    checks[file](await runExample(file, body));
  }, 60_000);
}

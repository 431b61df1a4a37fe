// The code examples of README.md and docs/*.md run as written, against this build. A ```js or
// ```ts block whose first line names a file (`// encode.mjs`, `// evaluate.ts`) is a whole program
// (other blocks are fragments, not run): it is written to a temporary folder whose
// node_modules/camembed is this repository (TypeScript is type-checked, then transpiled: .mts to an
// ES module, .ts to CommonJS), run with node, and what it prints is checked against what its
// comments say. What the harness changes so that they run here, and nothing else:
// - The Hub model (antoinelouis/biencoder-camembert-base-mmarcoFR) is the tiny shared one
//   (../shared/models/tiny-random-camembert: 32 dimensions where the docs say 768, random scores),
//   put in a Hugging Face cache of the test's own under that id's 'main', with HF_HUB_OFFLINE=1;
//   weights only, as the Hub model would be resolved (converted to ONNX into a CAMEMBED_CACHE of
//   the test's own). Paths under /tmp/ that an example writes are made relative to its folder.
// - Each folder starts with the files examples read: passages.txt (3 lines) and corpus.cmbd (their
//   3 random 32-d vectors).
// - `shrink` makes sizes beyond this machine smaller, per example (cuda.md's 8.8M rows).
// - An example with `serve` (a server) listens on a free port instead of 8080, is asked that URL
//   once, and is stopped; the answer is what it "prints".
// - Examples marked `gpu` are skipped, with a message, where no CUDA device is present.
// The ```sh blocks run too, command by command, each block in a folder of its own, `camembed` and
// `npx camembed` being this build's CLI, except those that need what no test has here (the network,
// the repository's npm scripts, a BEIR dataset, an app of yours). A command must exit with the status
// its comment gives, `(exit N)`, else 0, and a comment that starts with `camembed` is the start of its
// error message (up to '...'). Besides the rewrites above, placeholders become files of the folder
// (`M`, `<model folder>`: my-model, the tiny model's files; a `--tokenizer` folder: ../shared's
// camembert-base tokenizer), an optional `[--option]` is left out, and make-random-model makes a model
// of the tiny one's size instead of CamemBERT-base's.
import { execFile, spawn } from 'child_process';
import { once } from 'events';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';

import { devices, VectorIndex } from '../lib';
import { npyBytes } from './helpers/npy';

const root = path.resolve(__dirname, '..');
const TINY = path.resolve(root, '../shared/models/tiny-random-camembert');
const haveModel = fs.existsSync(path.join(TINY, 'config.json'));
const haveGpu = devices().cuda.length > 0;

const TOKENIZER = path.resolve(root, '../shared/models/camembert-base-tokenizer');
const haveTokenizer = fs.existsSync(path.join(TOKENIZER, 'tokenizer.json'));

const docs = ['README.md', ...fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const examples = docs.flatMap((doc) => [...fs.readFileSync(path.join(root, doc), 'utf8')
  .matchAll(/```(?:js|ts)\n\/\/ (\S+\.[mc]?[jt]s)\b.*\n([\s\S]*?)```/g)].map(([, file, body]) => ({ doc, file, body })));

// The commands of the ```sh blocks that can run here: one line each (continuations joined), with its comment.
const needsMore = /\bcurl |\bnpm |my-app\.js|my-beir-dataset/;
const shellExamples = docs.flatMap((doc) => [...fs.readFileSync(path.join(root, doc), 'utf8').matchAll(/```sh\n([\s\S]*?)```/g)]
  .filter(([, body]) => !needsMore.test(body))
  .map(([, body]) => ({
    doc,
    commands: body.replace(/\\\n\s*/g, '').split('\n').filter((line) => /^[^#\s]/.test(line)).map((line) => {
      const [, command, comment = ''] = /^(.*?)(?:\s+# (.*))?$/.exec(line)!;
      return { command, comment };
    }),
  })));

/** A shell example's command as it runs here (see the header). */
function asRunHere(command: string): string {
  const tiny = '--layers 2 --hidden 32 --heads 2 --intermediate 64';
  return command
    .replace(/ \/tmp\//g, ' tmp/')
    .replace(/ \[[^\]]*\]/g, '')
    .replace(/--model M\b/g, '--model my-model')
    .replace(/<model folder>/g, 'my-model')
    .replace(/--tokenizer \S*camembert-base-tokenizer|--tokenizer <[^>]*>/g, `--tokenizer ${TOKENIZER}`)
    .replace(/--out <folder>/g, '--out random-model')
    .replace(/ --(layers|hidden|heads|intermediate) \d+/g, '')
    .replace(/make-random-model/g, `make-random-model ${tiny}`);
}

interface Spec {
  check?: (stdout: string, dir: string, body: string) => void;
  shrink?: [string, string][];
  serve?: string;
  gpu?: true;
}

// The values an example's comments give for what it prints: the comment below each console.log
// line, else the one ending it, up to two spaces; '...' stands for more digits. Whitespace is
// compared loosely (node breaks long objects into lines).
function expectPrintsAsCommented(stdout: string, _dir: string, body: string): void {
  const lines = body.split('\n');
  const expected = lines.flatMap((line, i) => {
    if (!line.includes('console.log(')) return [];
    const comment = (/^\s*\/\/ (.*)/.exec(lines[i + 1] ?? '') ?? / \/\/ (.*)/.exec(line))?.[1];
    return comment === undefined ? [] : [comment.split(/\s{2,}/)[0]];
  });
  const pattern = expected.map((e) => e.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\\\.\\\.\\\./g, '\\d*')).join(' ');
  expect(expected.length).toBeGreaterThan(0);
  expect(stdout.replace(/\s+/g, ' ').trim()).toMatch(new RegExp(`^${pattern}$`));
}

const specs: Record<string, Spec> = {
  // README.md
  'encode.mjs': { check: (out) => expect(out).toMatch(/^Float32Array\(2\) \[ -?\d\.\d+, -?\d\.\d+ \]$/m) },
  'search.mjs': {
    check: (out) => {
      expect(out).toMatch(/^BigInt64Array\(2\) \[ [01]n, [01]n \] Float32Array\(2\) \[ .+ \] 2$/m);
      expect(out).toContain('BigInt64Array(2) [ 0n, 1n ] BigInt64Array(2) [ 1n, 0n ]');
    },
  },
  'kernels.js': {
    check: (out) => {
      expect(out).toMatch(/Float32Array\(2\) \[ 0\.447213\d+, 0\.894427\d+ \]/);
      expect(out).toMatch(/Int32Array\(2\) \[ 0, 2 \] Float32Array\(2\) \[ 1, 0\.6\d* \] 2/);
    },
  },
  'typed.mts': { check: (out) => expect(out).toBe('32\n') },  // 768 with the real model
  // docs/encoder.md ('1 768' with the real model; which passage scores higher is random here)
  'compare.js': { check: (out) => expect(out).toMatch(/^1 32\n\[ -?\d\.\d+, -?\d\.\d+ \]\n$/) },
  'server.mjs': {
    serve: '/search?q=une%20question',
    check: (out) => expect(JSON.parse(out)).toEqual({ ids: expect.arrayContaining(['0', '1', '2']), scores: [expect.any(Number), expect.any(Number), expect.any(Number)] }),
  },
  'encode-stream.mjs': { check: (_, dir) => expect(fs.statSync(path.join(dir, 'vectors.f32')).size).toBe(3 * 32 * 4) },
  // docs/index.md
  'index.mjs': { check: expectPrintsAsCommented },
  'index-encoder.mjs': {},
  // docs/eval.md, docs/model.md ('[1, 4, 768]' with the real model), docs/lifetime.md
  'evaluate.ts': { check: expectPrintsAsCommented },
  'onnx-session.ts': { check: (out) => expect(out).toBe('[ 1, 4, 32 ]\n') },
  'transfer.js': { check: expectPrintsAsCommented },
  // docs/cuda.md
  'cuda-matrix.mts': {
    gpu: true,
    shrink: [['const rows = 8841823, perChunk = 3000000;', 'const rows = 8841, perChunk = 3000;']],
    check: (out) => expect(Number(out)).toBeGreaterThanOrEqual(1000 * 768 * 2),
  },
};

// The tiny model as the Hub model's 'main' in a Hugging Face cache, and the environment of every run.
let hub = '';
let env: NodeJS.ProcessEnv = {};
beforeAll(() => {
  hub = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-doc-hub-'));
  env = { ...process.env, HF_HUB_CACHE: hub, HF_HUB_OFFLINE: '1', CAMEMBED_CACHE: path.join(hub, 'camembed') };
  if (!haveModel) return;
  const snapshot = path.join(hub, 'models--antoinelouis--biencoder-camembert-base-mmarcoFR', 'snapshots', 'c'.repeat(40));
  fs.mkdirSync(snapshot, { recursive: true });
  for (const f of fs.readdirSync(TINY)) if (f !== 'model.onnx' && f !== 'golden') fs.symlinkSync(path.join(TINY, f), path.join(snapshot, f));
  fs.mkdirSync(path.join(snapshot, '../../refs'));
  fs.writeFileSync(path.join(snapshot, '../../refs/main'), 'c'.repeat(40));
});
afterAll(() => hub !== '' && fs.rmSync(hub, { recursive: true, force: true }));

/** A folder with node_modules/camembed (this repository) and the files the examples read. */
async function exampleFolder(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-doc-'));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules', 'camembed'));
  fs.symlinkSync(path.join(root, 'node_modules', 'onnxruntime-node'), path.join(dir, 'node_modules', 'onnxruntime-node'));
  const passages = ['Paris est la capitale de la France.', 'Le noyau gère la mémoire.', 'apt install installe un paquet.'];
  const questions = ['Quelle est la capitale de la France ?', 'Comment installer un paquet ?'];
  const tsv = (prefix: string, texts: string[]) => texts.map((t, i) => `${prefix}${i}\t${t}\n`).join('');
  fs.writeFileSync(path.join(dir, 'passages.txt'), passages.map((t) => `${t}\n`).join(''));
  for (const file of ['texts.txt', 'queries.txt', 'questions.txt']) fs.writeFileSync(path.join(dir, file), questions.map((t) => `${t}\n`).join(''));
  fs.writeFileSync(path.join(dir, 'collection.tsv'), tsv('p', passages));
  fs.writeFileSync(path.join(dir, 'queries.tsv'), tsv('q', questions));
  fs.writeFileSync(path.join(dir, 'qrels.tsv'), 'q0 0 p0 1\nq1 0 p2 1\n');
  const random = (rows: number) => Float32Array.from({ length: rows * 32 }, () => Math.random() - 0.5);
  const float32Npy = (rows: number) => npyBytes('<f4', `(${rows}, 32)`, new Uint8Array(random(rows).buffer));
  fs.writeFileSync(path.join(dir, 'passages.npy'), float32Npy(3));
  fs.writeFileSync(path.join(dir, 'queries.npy'), float32Npy(2));
  // A model folder of yours: the tiny model's files, its weights converted where they lie when used.
  fs.mkdirSync(path.join(dir, 'my-model'));
  for (const f of haveModel ? fs.readdirSync(TINY) : []) {
    if (f !== 'model.onnx' && f !== 'golden') fs.symlinkSync(path.join(TINY, f), path.join(dir, 'my-model', f));
  }
  const index = new VectorIndex({ dim: 32 });
  index.add(random(3));
  await index.save(path.join(dir, 'corpus.cmbd'));
  return dir;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Starts the server, asks it `url` once it answers, stops it: its answer. */
async function serve(script: string, dir: string, port: number, url: string): Promise<string> {
  const child = spawn(process.execPath, [script], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  try {
    for (let tries = 0; ; tries++) {
      const answer = await fetch(`http://127.0.0.1:${port}${url}`).then((r) => r.text(), (err: Error) => err);
      if (typeof answer === 'string') return answer;
      if (child.exitCode !== null || tries === 300) throw new Error(`${script} did not answer: ${answer.message}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    if (child.exitCode === null && child.kill()) await once(child, 'exit');
  }
}

async function runExample(file: string, body: string, spec: Spec): Promise<void> {
  const dir = await exampleFolder();
  try {
    let source = body.replaceAll("'/tmp/", "'tmp/");
    for (const [from, to] of spec.shrink ?? []) {
      expect(source).toContain(from);
      source = source.replaceAll(from, to);
    }
    const port = spec.serve === undefined ? 0 : await freePort();
    if (spec.serve !== undefined) {
      expect(source).toContain('.listen(8080)');
      source = source.replace('.listen(8080)', `.listen(${port})`);
    }
    let script = file;
    if (/\.[mc]?ts$/.test(file)) {
      const esm = file.endsWith('.mts');
      script = file.replace(/\.[mc]?ts$/, esm ? '.mjs' : '.cjs');
      const module = esm ? ts.ModuleKind.ESNext : ts.ModuleKind.CommonJS;
      source = ts.transpileModule(source, { compilerOptions: { module, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText;
    }
    fs.writeFileSync(path.join(dir, script), source);
    const stdout = spec.serve !== undefined ? await serve(script, dir, port, spec.serve) : await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [script], { cwd: dir, env }, (error, out, stderr) => {
        if (error) reject(new Error(`${file}: ${error.message}\n${out}${stderr}`));
        else resolve(out);
      });
    });
    spec.check?.(stdout, dir, body);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('the docs have the runnable examples this test checks, each once', () => {
  expect(examples.map((e) => e.file).sort()).toEqual(Object.keys(specs).sort());
});

test('the TypeScript examples compile (strict, every local used)', async () => {
  const dir = await exampleFolder();
  try {
    const files = examples.filter((e) => /\.[mc]?ts$/.test(e.file)).map((e) => {
      fs.writeFileSync(path.join(dir, e.file), e.body);
      return path.join(dir, e.file);
    });
    const program = ts.createProgram(files, {
      strict: true, exactOptionalPropertyTypes: true, noUnusedLocals: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.Node16,
      moduleResolution: ts.ModuleResolutionKind.Node16, types: ['node'], typeRoots: [path.join(root, 'node_modules/@types')], skipLibCheck: true,
    });
    const errors = ts.getPreEmitDiagnostics(program).map((d) => `${path.basename(d.file?.fileName ?? '')}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    expect(errors).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

for (const { doc, file, body } of examples) {
  const spec = specs[file] ?? {};
  const needsModel = /Encoder|resolveModel/.test(body);
  const missing = spec.gpu && !haveGpu ? `no CUDA device (${devices().cudaUnavailableReason})` : needsModel && !haveModel ? `no tiny model at ${TINY} (../shared)` : null;
  if (missing !== null) {
    // eslint-disable-next-line no-console
    console.log(`doc-examples: skipping ${doc}'s ${file}: ${missing}`);
  }
  (missing === null ? test : test.skip)(`${doc}: ${file} runs and prints what its comments say`, () => runExample(file, body, spec), 60_000);
}

/** Runs one shell command in `dir`, `camembed` and `npx camembed` being this build's CLI. */
function runShell(command: string, dir: string): Promise<{ status: number; stderr: string }> {
  const cli = `camembed() { node ${JSON.stringify(path.join(root, 'dist/cli.js'))} "$@"; }
npx() { if [ "$1" = camembed ]; then shift; camembed "$@"; else command npx "$@"; fi; }
`;
  return new Promise((resolve) => {
    execFile('bash', ['-c', cli + command], { cwd: dir, env }, (error, _out, stderr) => {
      resolve({ status: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stderr });
    });
  });
}

test('the shell examples that run here are found', () => {
  expect(shellExamples.map((e) => `${e.doc}: ${e.commands[0].command.split(' ').slice(0, 3).join(' ')}`)).toEqual([
    'README.md: camembed encode --model',
    'docs/cli.md: camembed index neighbors',
    'docs/encoder.md: npx camembed make-random-model',
    'docs/encoder.md: camembed encode --model',
    'docs/eval.md: camembed eval --model',
    'docs/index.md: camembed index build',
    'docs/model.md: npx camembed make-random-model',
    'docs/model.md: npx camembed convert',
  ]);
});

for (const { doc, commands } of shellExamples) {
  const missing = !haveModel || !haveTokenizer ? `no tiny model or tokenizer under ${path.dirname(TINY)} (../shared)` : null;
  if (missing !== null) {
    // eslint-disable-next-line no-console
    console.log(`doc-examples: skipping ${doc}'s shell example ${commands[0].command}: ${missing}`);
  }
  (missing === null ? test : test.skip)(`${doc}: the shell example ${commands[0].command.slice(0, 60)} runs as its comments say`, async () => {
    const dir = await exampleFolder();
    try {
      for (const { command, comment } of commands) {
        const { status, stderr } = await runShell(asRunHere(command), dir);
        const message = /^camembed.*?:.*?(?= \.\.\.| \(exit|$)/.exec(comment)?.[0];
        expect({ command, status, stderr: message === undefined ? '' : stderr.slice(0, message.length) }).toEqual(
          { command, status: Number(/\(exit (\d+)\)/.exec(comment)?.[1] ?? 0), stderr: message ?? '' });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
}

// `camembed` as a Unix tool, run as a child process (dist/cli.js, built by `npm test`'s pretest):
// what it does with standard output that fails, signals, exit statuses and mistyped names.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VectorIndex } from '../lib/vector-index';

const CLI = path.resolve(__dirname, '..', 'dist', 'cli.js');

/** Runs the CLI to the end; `stdout` is a file descriptor to write to instead of a pipe. */
function camembed(args: string[], options: { stdout?: number; input?: string } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input: options.input ?? '', stdio: ['pipe', options.stdout ?? 'pipe', 'pipe'], encoding: 'utf8', timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr };
}

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-cli-unix-')); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function smallIndex(): Promise<string> {
  const file = path.join(dir, 'small.cmbd');
  const index = new VectorIndex({ dim: 2 });
  index.add(new Float32Array([1, 0, 0, 1, 0.6, 0.8]));
  await index.save(file);
  index.dispose();
  return file;
}

const haveDevFull = fs.existsSync('/dev/full');
(haveDevFull ? test : test.skip)('a full disk on standard output is a runtime error that says so (exit 1), without a stack trace', async () => {
  const file = await smallIndex();
  const queries = path.join(dir, 'q.f32');
  fs.writeFileSync(queries, Buffer.from(new Float32Array([1, 0, 0, 1]).buffer));
  const full = fs.openSync('/dev/full', 'w');
  try {
    for (const args of [['--version'], ['search', '--help'], ['index', 'info', file], ['search', '--index', file, '--query-vectors', queries]]) {
      const { status, stderr } = camembed(args, { stdout: full });
      expect({ args, status, stderr }).toEqual({ args, status: 1, stderr: 'camembed: cannot write to standard output: ENOSPC: no space left on device, write\n' });
    }
  } finally {
    fs.closeSync(full);
  }
});

test('--revision with a model folder is a usage error (exit 2) in every command that loads a model, before it loads', async () => {
  const file = await smallIndex();
  const model = fs.mkdtempSync(path.join(dir, 'model-'));  // a folder: no model needs to be in it
  const input = path.join(dir, 'texts.txt');
  fs.writeFileSync(input, 'un\n');
  const evalFiles = ['--collection', input, '--queries', input, '--qrels', input, '--cache', path.join(dir, 'cache')];
  for (const args of [
    ['encode', '--input', input, '--output', path.join(dir, 'out.f32')],
    ['index', 'build', '--input', input, '--output', path.join(dir, 'out.cmbd')],
    ['search', '--index', file, 'une question'],
    ['eval', ...evalFiles],
  ]) {
    const { status, stderr } = camembed([...args, '--model', model, '--revision', 'v1.0']);
    expect({ args, status, stderr }).toEqual({ args, status: 2, stderr: `camembed ${args[0]}: --revision is for Hub ids, but ${model} is a folder here\n` });
  }
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('out'))).toEqual([]);
});

test('a mistyped option, command or index subcommand is a usage error (exit 2) that suggests the nearest name', () => {
  const cases: [string[], string][] = [
    [['encode', '--modle', 'x'], 'camembed encode: unknown option --modle (did you mean --model?)'],
    [['encode', '--batch', '3'], 'camembed encode: unknown option --batch (did you mean --batch-size?)'],
    [['search', '--query-vector', 'q.npy'], 'camembed search: unknown option --query-vector (did you mean --query-vectors?)'],
    [['search', '--index', 'x.cmbd', '-k', '3', 'q'], 'camembed search: unknown option -k (did you mean --k?)'],
    [['encode', '--xyzzy'], 'camembed encode: unknown option --xyzzy'],
    [['encod'], "camembed: unknown command 'encod' (did you mean encode?)"],
    [['index', 'bulid'], "camembed index: expected 'index build', 'index info' or 'index neighbors', got 'index bulid' (did you mean index build?)"],
  ];
  for (const [args, message] of cases) {
    const { status, stderr } = camembed(args);
    expect({ args, status, line: stderr.split('\n')[0] }).toEqual({ args, status: 2, line: message });
  }
});

test("'camembed help <command>' prints that command's help; 'camembed' alone is a usage error (usage on stderr, exit 2)", () => {
  for (const command of [['encode'], ['index', 'info'], ['search']]) {
    expect(camembed(['help', ...command])).toEqual({ status: 0, stdout: camembed([...command, '--help']).stdout, stderr: '' });
  }
  const bare = camembed([]);
  expect(bare.status).toBe(2);
  expect(bare.stdout).toBe('');
  expect(bare.stderr).toBe(camembed(['--help']).stdout);
  expect(bare.stderr).toMatch(/^usage: camembed <command> \[options\]\n/);
});

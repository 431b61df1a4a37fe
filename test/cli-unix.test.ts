// `camembed` as a Unix tool, run as a child process (dist/cli.js, built by `npm test`'s pretest):
// what it does with standard output that fails, signals, exit statuses and mistyped names.
import { execFileSync, spawn, spawnSync } from 'child_process';
import { once } from 'events';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { main, onStdoutError, onWarning } from '../lib/cli';
import { createProgressBar } from '../lib/progress';
import { VectorIndex } from '../lib/vector-index';
import { withTerminalStderr } from './helpers/terminal';

const CLI = path.resolve(__dirname, '..', 'dist', 'cli.js');
const SHARED = path.resolve(__dirname, '../../shared');
const MODEL = path.join(SHARED, 'models/tiny-random-camembert');
const TOKENIZER = path.join(SHARED, 'models/camembert-base-tokenizer');
const haveModels = fs.existsSync(path.join(MODEL, 'model.onnx')) && fs.existsSync(path.join(TOKENIZER, 'tokenizer.json'));
if (!haveModels) console.warn(`CLI signal tests skipped: ${MODEL} or ${TOKENIZER} is missing`);

/**
 * Runs the CLI to the end (killed after `timeout` ms, with SIGKILL: a CLI stuck in synchronous code
 * never runs its SIGTERM handler; status null); `stdin` and `stdout` are file descriptors to use
 * instead of pipes.
 */
function camembed(args: string[], options: { stdin?: number; stdout?: number; timeout?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input: '', stdio: [options.stdin ?? 'pipe', options.stdout ?? 'pipe', 'pipe'], encoding: 'utf8', timeout: options.timeout ?? 60_000, killSignal: 'SIGKILL',
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

test('--revision with a model folder, and a model path that does not exist, are usage errors (exit 2) in every command that loads a model, before it loads', async () => {
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
    // A mistyped path was a runtime error (exit 1) from Encoder.load, a documented usage error.
    for (const missing of ['./no-such-model', path.join(dir, 'no', 'such-model')]) {
      const typo = camembed([...args, '--model', missing]);
      expect({ args, status: typo.status, stderr: typo.stderr })
        .toEqual({ args, status: 2, stderr: `camembed ${args[0]}: --model ${missing} does not exist, and is not a Hub id 'org/name' either\n` });
    }
  }
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('out'))).toEqual([]);
});

test('a mistyped option, command or index subcommand is a usage error (exit 2) that suggests the nearest name; so is a flag given a value', () => {
  const cases: [string[], string][] = [
    [['encode', '--modle', 'x'], 'camembed encode: unknown option --modle (did you mean --model?)'],
    [['encode', '--batch', '3'], 'camembed encode: unknown option --batch (did you mean --batch-size?)'],
    [['search', '--query-vector', 'q.npy'], 'camembed search: unknown option --query-vector (did you mean --query-vectors?)'],
    [['search', '--index', 'x.cmbd', '-k', '3', 'q'], 'camembed search: unknown option -k (did you mean --k?)'],
    [['encode', '--input-file', 'x'], 'camembed encode: unknown option --input-file (did you mean --input?)'],
    [['encode', '--xyzzy'], 'camembed encode: unknown option --xyzzy'],
    [['encod'], "camembed: unknown command 'encod' (did you mean encode?)"],
    [['index', 'bulid'], "camembed index: expected 'index build', 'index info' or 'index neighbors', got 'index bulid' (did you mean index build?)"],
    // A flag's value other than true or false was taken as true: --offline=no went online.
    [['encode', '--offline=no'], "camembed encode: --offline takes no value (or =true, =false), got 'no'"],
    // An empty value (--model= or --model '') reached the library, which failed at run time.
    [['encode', '--model=', '--input', 'x'], 'camembed encode: --model needs a value'],
    [['encode', '--model', '', '--input', 'x'], 'camembed encode: --model needs a value'],
    // A forgotten value took the next option as one: encode wrote its vectors to a file named '--no-normalize'.
    [['encode', '--output', '--no-normalize', '--input', 'x'],
      'camembed encode: --output needs a value, got the option --no-normalize (write --output=--no-normalize if that is the value)'],
    [['search', '--index', '--k=3', 'q'], 'camembed search: --index needs a value, got the option --k=3 (write --index=--k=3 if that is the value)'],
    // Nothing typed is near nothing: no suggestion of the first name in the list.
    [[''], "camembed: unknown command ''"],
    [['encode', '--=x'], 'camembed encode: unknown option --'],
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

test("a folder on standard input ('< /') is a usage error (exit 2), not an empty input", async () => {
  const file = await smallIndex();
  const folder = fs.openSync(dir, 'r');
  try {
    for (const args of [
      ['encode', '--input', '-', '--output', path.join(dir, 'stdin.f32')],
      ['index', 'build', '--input', '-', '--output', path.join(dir, 'stdin.cmbd')],
      ['search', '--index', file, '--queries', '-'],
    ]) {
      const { status, stderr } = camembed([...args, '--model', dir], { stdin: folder });
      const option = args[0] === 'search' ? 'queries' : 'input';
      expect({ args, status, stderr }).toEqual({ args, status: 2, stderr: `camembed ${args[0]}: --${option} -: standard input is a folder, not a file\n` });
    }
  } finally {
    fs.closeSync(folder);
  }
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('stdin'))).toEqual([]);
});

test('an output that is the input through a redirection (< texts.txt, >> texts.txt) is a usage error (exit 2) that leaves it whole', async () => {
  const index = await smallIndex();
  const input = path.join(dir, 'redirected.txt');
  fs.writeFileSync(input, 'un\ndeux\n');
  const read = fs.openSync(input, 'r');
  const append = fs.openSync(input, 'a');
  try {
    const destroy = 'writing it would destroy it';
    // search read each result line it appended as one more question, until the disk was full.
    const endless = 'the search would read its own results as questions, without end';
    const cases: [string[], { stdin?: number; stdout?: number }, string][] = [
      [['encode', '--input', '-', '--output', input], { stdin: read }, `--output ${input} is the input - (standard input): ${destroy}`],
      [['index', 'build', '--input', '-', '--output', input], { stdin: read }, `--output ${input} is the input - (standard input): ${destroy}`],
      [['encode', '--input', input, '--output', '-'], { stdout: append }, `--output - (standard output) is the input ${input}: ${destroy}`],
      [['search', '--index', index, '--queries', input], { stdout: append }, `standard output is the input ${input}: ${endless}`],
      [['search', '--index', index, '--queries', '-'], { stdin: read, stdout: append }, `standard output is the input - (standard input): ${endless}`],
    ];
    for (const [args, fds, message] of cases) {
      const { status, stderr } = camembed([...args, '--model', dir], fds);
      expect({ args, status, stderr }).toEqual({ args, status: 2, stderr: `camembed ${args[0]}: ${message}\n` });
    }
  } finally {
    fs.closeSync(read);
    fs.closeSync(append);
  }
  expect(fs.readFileSync(input, 'utf8')).toBe('un\ndeux\n');
});

test('standard output appended to any input (>> corpus.cmbd, >> qrels.tsv) is a usage error (exit 2) that leaves it whole', async () => {
  // `search --index corpus.cmbd "q" >> corpus.cmbd` appended its results to the index: "corpus.cmbd is corrupt" ever after.
  const index = await smallIndex();
  const passages = path.join(dir, 'appended-passages.txt');
  fs.writeFileSync(passages, 'un\ndeux\ntrois\n');
  const qrels = path.join(dir, 'appended-qrels.tsv');
  fs.writeFileSync(qrels, 'q1\td1\n');
  const queries = path.join(dir, 'appended-queries.tsv');
  fs.writeFileSync(queries, 'q1\tun\n');
  const before = [index, passages, qrels].map((f) => fs.readFileSync(f));
  const cases: [string[], string][] = [
    [['search', '--index', index, 'une question'], index],
    [['search', '--index', index, '--passages', passages, 'une question'], passages],
    [['index', 'info', index], index],
    [['index', 'neighbors', index, '--passages', passages], passages],
    [['eval', '--collection', queries, '--queries', queries, '--qrels', qrels, '--model', dir], qrels],
  ];
  for (const [args, appended] of cases) {
    const append = fs.openSync(appended, 'a');
    try {
      const { status, stderr } = camembed(args, { stdout: append });
      expect({ args, status, stderr }).toEqual({ args, status: 2, stderr: `camembed ${args[0]}: standard output is the input ${appended}: writing it would destroy it\n` });
    } finally {
      fs.closeSync(append);
    }
  }
  expect([index, passages, qrels].map((f) => fs.readFileSync(f))).toEqual(before);
});

(haveModels ? test : test.skip)("an output named as standard output (/dev/stdout, /proc/self/fd/1, the file of `>>`) is written through it as '-' is; the commands that write only files refuse it (exit 2)", () => {
  const input = path.join(dir, 'to-stdout.txt');
  fs.writeFileSync(input, 'un\ndeux\n');
  const out = path.join(dir, 'to-stdout.f32');
  // `encode ... --output X >> out`: what was in the file stays, the vectors come after it.
  const appended = (output: string) => {
    fs.writeFileSync(out, 'kept\n');
    const append = fs.openSync(out, 'a');
    try {
      const { status, stderr } = camembed(['encode', '--model', MODEL, '--input', input, '--output', output, '--threads', '1'], { stdout: append });
      expect({ output, status, stderr }).toEqual({ output, status: 0, stderr: `wrote 2 x 32 float32 to ${output === '-' ? 'standard output' : output}\n` });
    } finally {
      fs.closeSync(append);
    }
    return fs.readFileSync(out);
  };
  const viaDash = appended('-');
  expect(viaDash.length).toBe(5 + 2 * 32 * 4);
  for (const output of ['/dev/stdout', '/proc/self/fd/1', out]) expect(appended(output).equals(viaDash)).toBe(true);  // was emptied first

  fs.writeFileSync(input, 'q1\tun\n');
  const model = fs.mkdtempSync(path.join(dir, 'to-stdout-model-'));
  const cases: [string[], string][] = [
    [['eval', '--model', model, '--collection', input, '--queries', input, '--qrels', input, '--run'],
      'camembed eval: --run must be a file, not standard output (X): the table and the JSON go there'],
    [['index', 'build', '--model', model, '--input', input, '--output'], 'camembed index: --output must be a file, not standard output (X): an index is not written there'],
    [['convert', model, '--output'], 'camembed convert: --output must be a file, not standard output (X): a graph and its .data are two files'],
    [['encode', '--model', model, '--input', input, '--output'],
      'camembed encode: --output X: a .npy output must be a regular file of its own, not standard output (its header is rewritten at the end)'],
  ];
  const npyOut = path.join(dir, 'to-stdout.npy');
  for (const [args, message] of cases) {
    for (const output of args[0] === 'encode' ? [npyOut] : ['-', '/dev/stdout', out]) {
      const file = output === npyOut ? npyOut : out;
      fs.writeFileSync(file, 'kept\n');
      const append = fs.openSync(file, 'a');
      try {
        const { status, stderr } = camembed([...args, output], { stdout: append });
        expect({ args, status, stderr }).toEqual({ args, status: 2, stderr: `${message.replace('X', output)}\n` });
      } finally {
        fs.closeSync(append);
      }
      expect(fs.readFileSync(file, 'utf8')).toBe('kept\n');
    }
  }
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('-'))).toEqual([]);
});

test('a pipe for an option whose file is read by size or by line number is a usage error naming it (exit 2)', async () => {
  const file = await smallIndex();
  const fifo = path.join(dir, 'options.fifo');
  execFileSync('mkfifo', [fifo]);
  const cases: [string[], string, string][] = [
    [['search', '--index', file, '--passages', fifo, 'q'], 'passages', 'its lines are read by number'],
    [['search', '--index', file, '--query-vectors', fifo], 'query-vectors', 'its size is checked against its header first'],
    [['index', 'build', '--vectors', fifo, '--output', path.join(dir, 'fifo.cmbd')], 'vectors', 'its size is checked against its header first'],
    [['index', 'neighbors', file, '--passages', fifo], 'passages', 'its lines are read by number'],
    [['search', '--index', fifo, 'q'], 'index', 'an index file is read in place, not streamed'],
  ];
  for (const [args, option, why] of cases) {
    const { status, stderr } = camembed(args);
    expect({ args, status, stderr }).toEqual({ args, status: 2, stderr: `camembed ${args[0]}: --${option} ${fifo} is not a regular file: ${why}\n` });
  }
  // The index file of 'index info' and 'index neighbors' is an argument, not an option.
  for (const args of [['index', 'neighbors', fifo], ['index', 'info', fifo]]) {
    expect({ args, ...camembed(args) }).toEqual({ args, status: 2, stdout: '', stderr: `camembed index: ${fifo} is not a regular file: an index file is read in place, not streamed\n` });
  }
  for (const args of [['index', 'neighbors', '-'], ['index', 'info', '-']]) {
    expect({ args, ...camembed(args) }).toEqual({ args, status: 2, stdout: '', stderr: "camembed index: expected an index file, got '-': an index file is read in place, not streamed\n" });
  }
});

test('eval --cache naming a file is a usage error (exit 2), before the model loads', () => {
  const input = path.join(dir, 'texts.txt');
  fs.writeFileSync(input, 'un\n');
  const { status, stderr } = camembed(['eval', '--model', dir, '--collection', input, '--queries', input, '--qrels', input, '--cache', input]);
  expect({ status, stderr }).toEqual({ status: 2, stderr: `camembed eval: --cache ${input} is a file, not a folder\n` });
});

test('convert and make-random-model: a missing model folder, a tokenizer folder without tokenizer.json, sizes that do not fit are usage errors naming the option (exit 2)', () => {
  const file = path.join(dir, 'not-a-folder.txt');
  fs.writeFileSync(file, 'x');
  const out = path.join(dir, 'never-made');
  const cases: [string[], string][] = [
    [['convert', path.join(dir, 'nope')], `${path.join(dir, 'nope')} does not exist: expected a model folder`],
    [['convert', file], `${file} is not a folder: expected a model folder`],
    [['make-random-model', '--tokenizer', dir, '--out', out], `--tokenizer ${dir} has no tokenizer.json`],
  ];
  if (haveModels) cases.push([['make-random-model', '--tokenizer', TOKENIZER, '--out', out, '--hidden', '30', '--heads', '4'], '--hidden (30) must be a multiple of --heads (4)']);
  for (const [args, message] of cases) {
    const { status, stderr } = camembed(args);
    expect({ args, status, stderr }).toEqual({ args, status: 2, stderr: `camembed ${args[0]}: ${message}\n` });
  }
  expect(fs.existsSync(out)).toBe(false);
});

// procfs answers mkdir in /proc with ENOENT: Node's recursive mkdir made /proc again and retried
// for ever, at full CPU and deaf to Ctrl-C (the loop is synchronous native code).
(haveModels && fs.existsSync('/proc/self') ? test : test.skip)('a folder that cannot be made in /proc is a runtime error at once (exit 1), not an endless loop', () => {
  const texts = path.join(dir, 'texts.tsv');
  fs.writeFileSync(texts, 'q1\tun\n');
  const qrels = path.join(dir, 'qrels.trec');
  fs.writeFileSync(qrels, 'q1 0 q1 1\n');
  const missing = `/proc/camembed-test-${process.pid}`;
  for (const args of [
    ['make-random-model', '--tokenizer', TOKENIZER, '--out', missing, '--layers', '1', '--hidden', '8', '--heads', '2', '--intermediate', '8'],
    ['convert', MODEL, '--output', path.join(missing, 'model.onnx')],
    ['eval', '--model', MODEL, '--collection', texts, '--queries', texts, '--qrels', qrels, '--cache', missing, '--k', '1', '--metrics', 'MRR@1'],
  ]) {
    const { status, stderr } = camembed(args, { timeout: 20_000 });
    expect({ args, status, stderr }).toEqual({ args, status: 1, stderr: expect.stringMatching(new RegExp(`^camembed ${args[0]}: E[A-Z]+: .*, mkdir '${missing}'\n$`)) });
  }
});

// As root, only a folder of another file system refuses files: /proc (a read-only mount alike says EROFS).
(fs.existsSync('/proc/self') ? test : test.skip)('index build: a folder no file can be made in is a runtime error before the model loads, not after the encoding', () => {
  const input = path.join(dir, 'texts.txt');
  fs.writeFileSync(input, 'un\n');
  // An empty model folder: the load would fail, so an error about the output shows it came first.
  const model = fs.mkdtempSync(path.join(dir, 'model-'));
  const output = `/proc/camembed-test-${process.pid}.cmbd`;
  const { status, stderr } = camembed(['index', 'build', '--model', model, '--input', input, '--output', output]);
  expect({ status, stderr }).toEqual({ status: 1, stderr: expect.stringMatching(new RegExp(`^camembed index: cannot open ${output}: E[A-Z]+: [^,]+\n$`)) });
});

test('encode --output - refuses to write binary vectors to a terminal (exit 2)', async () => {
  const input = path.join(dir, 'one.txt');
  fs.writeFileSync(input, 'un\n');
  const tty = Object.getOwnPropertyDescriptor(process.stdout, 'isTTY');
  Object.defineProperty(process.stdout, 'isTTY', { value: true, configurable: true });
  const err: string[] = [];
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((c) => { err.push(String(c)); return true; });
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    expect(await main(['encode', '--model', dir, '--input', input, '--output', '-'])).toBe(2);
  } finally {
    stderr.mockRestore();
    stdout.mockRestore();
    if (tty === undefined) delete (process.stdout as { isTTY?: boolean }).isTTY;
    else Object.defineProperty(process.stdout, 'isTTY', tty);
  }
  expect(err.join('')).toBe('camembed encode: --output -: standard output is a terminal; redirect it (> vectors.f32) or name a file\n');
  expect(stdout).not.toHaveBeenCalled();
});

test('a progress bar fits the width of its terminal (a line that wraps is not redrawn: each draw would leave one)', () => {
  const out: string[] = [];
  const stream = { isTTY: true, columns: 60, write: (s: string) => { out.push(s); return true; } } as unknown as NodeJS.WriteStream;
  const bar = createProgressBar({ label: 'index build', unit: 'bytes', total: 15_000_000, stream });
  bar.update(7_000_000);
  bar.finish();
  expect(out.join('').split('\r').slice(1)).toEqual([
    'index build  [###########.............] 46.7%\x1b[K',  // the bytes, the ETA and the rate did not fit
    'index build  [###########.............] 46.7%\x1b[K\n',
  ]);
});

test('a signal that comes during synchronous work right after an fs Promise settled is handled when onInterrupt ends, not lost', () => {
  // A model converted as it loads: the signal waits for the conversion, and the handler must still be there when it is delivered.
  const args = path.resolve(__dirname, '..', 'dist', 'commands', 'args.js');
  const script = `const fs = require('fs');
    (async () => {
      const end = require(${JSON.stringify(args)}).onInterrupt(() => fs.writeSync(1, 'cleanup\\n'));
      await fs.promises.readFile(${JSON.stringify(args)});
      process.kill(process.pid, 'SIGINT');
      for (const until = Date.now() + 50; Date.now() < until;);  // the synchronous work
      await end();
      fs.writeSync(1, 'not interrupted\\n');
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 130, stdout: 'cleanup\n', stderr: '\ncamembed: interrupted (SIGINT)\n' });
});

/**
 * Starts the CLI; `signals` are sent one by one, each once `ready(stderr so far)` says so (polled),
 * and the exit status comes back (null when a signal killed it).
 */
async function interrupted(args: string[], signals: [NodeJS.Signals, (stderr: string) => boolean][]):
  Promise<{ status: number | null; killedBy: NodeJS.Signals | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += String(d); });
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
  for (const [signal, ready] of signals) {
    for (let waited = 0; !ready(stderr); waited += 10) {
      if (waited > 60_000 || child.exitCode !== null) throw new Error(`never ready for ${signal}; stderr: ${stderr}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill(signal);
  }
  const [status, killedBy] = await exited;
  return { status, killedBy, stderr };
}

const haveProc = fs.existsSync('/proc/self/task');

/** Saves at `file` an index of one vector of the test model's 32 dimensions; returns `file`. */
async function oneVectorIndex(file: string): Promise<string> {
  const index = new VectorIndex({ dim: 32 });
  index.add(new Float32Array(32).fill(1));
  await index.save(file);
  index.dispose();
  return file;
}

/** Waits until `child` has `fifo` open, or waits in open(2) for a writer of a FIFO (Linux's /proc tells). */
async function waitUntilWaitingOn(child: ReturnType<typeof spawn>, fifo: string): Promise<void> {
  const proc = path.join('/proc', String(child.pid));
  const waiting = () => {
    try {
      return fs.readdirSync(path.join(proc, 'fd')).some((fd) => fs.readlinkSync(path.join(proc, 'fd', fd)) === fifo) ||
        fs.readdirSync(path.join(proc, 'task')).some((task) => fs.readFileSync(path.join(proc, 'task', task, 'wchan'), 'utf8') === 'wait_for_partner');
    } catch {
      return false;  // a descriptor or a thread gone meanwhile: looked at again
    }
  };
  for (let waited = 0; !waiting(); waited += 10) {
    if (waited > 60_000 || child.exitCode !== null) throw new Error(`never waited on ${fifo}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

(haveModels ? describe : describe.skip)('signals', () => {
  /** An eval's files in `dir`, names starting with `prefix`: a collection of `passages` passages, one query, one judgement. */
  const evalFiles = (prefix: string, passages: number) => {
    const [collection, queries, qrels, run] = ['collection.tsv', 'queries.tsv', 'qrels.trec', 'run.trec'].map((name) => path.join(dir, prefix + name));
    fs.writeFileSync(collection, Array.from({ length: passages }, (_, i) => `d${i}\tpassage numéro ${i} sur le noyau Linux\n`).join(''));
    fs.writeFileSync(queries, 'q1\tle noyau\n');
    fs.writeFileSync(qrels, 'q1 0 d7 1\n');
    return { collection, queries, qrels, run };
  };

  test('eval stops on SIGTERM as on Ctrl-C (exit 143, the encoded passages cached); a second signal quits at once, leaving no .partial run file', async () => {
    const { collection, queries, qrels, run } = evalFiles('', 40_000);
    const args = (cache: string) => ['eval', '--model', MODEL, '--collection', collection, '--queries', queries, '--qrels', qrels,
      '--k', '500', '--cache', path.join(dir, cache), '--run', run, '--threads', '1'];
    const encoding = () => fs.existsSync(`${run}.partial`);  // opened just before the passages are encoded

    // Once the first chunk (16,384 passages) is written, so that passages are encoded when it comes
    // (a signal before the first batch encodes none).
    const termCache = path.join(dir, 'cache-term');
    const chunkWritten = () => fs.existsSync(termCache) && fs.readdirSync(termCache).some((key) => fs.existsSync(path.join(termCache, key, 'manifest.json')));
    const term = await interrupted(args('cache-term'), [['SIGTERM', chunkWritten]]);
    expect({ status: term.status, killedBy: term.killedBy }).toEqual({ status: 143, killedBy: null });
    expect(term.stderr).toContain('stopping after the current step (SIGTERM again to quit now)');
    const encoded = Number(/encoding interrupted after (\d+) passages; the cache in .* keeps them/.exec(term.stderr)?.[1]);
    const [key] = fs.readdirSync(termCache);
    const manifest = JSON.parse(fs.readFileSync(path.join(termCache, key, 'manifest.json'), 'utf8')) as { complete: boolean; chunks: Array<{ rows: number }> };
    // Every passage it says it encoded is in the cache: the first chunk's and any encoded since.
    expect({ complete: manifest.complete, rows: manifest.chunks.reduce((sum, c) => sum + c.rows, 0) }).toEqual({ complete: false, rows: encoded });
    expect(encoded).toBeGreaterThanOrEqual(16_384);

    // Right after the first, so that it comes before the eval has wound down; another signal, as two
    // of one kind may reach the process as one. Either may be handled first: that one stops the eval,
    // the other quits.
    const twice = await interrupted(args('cache-twice'), [['SIGINT', encoding], ['SIGTERM', () => true]]);
    const quitBy = /\ncamembed eval: interrupted \((SIGINT|SIGTERM)\)\n/.exec(twice.stderr)?.[1];
    expect({ quitBy, status: twice.status, killedBy: twice.killedBy }).toEqual({ quitBy, status: quitBy === 'SIGINT' ? 130 : 143, killedBy: null });
    expect(quitBy).toBeDefined();
    expect(twice.stderr).toContain('stopping after the current step');
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('run.trec'))).toEqual([]);
    const cache = path.join(dir, 'cache-twice');  // made once the collection is read: maybe not yet
    const leftovers = fs.existsSync(cache) ? fs.readdirSync(cache, { recursive: true }).map(String).filter((f) => f.includes('.tmp-')) : [];
    expect(leftovers).toEqual([]);
  }, 120_000);

  test("eval interrupted while it searches, its collection through a pipe: it says the passages are not kept (it said they were cached)", async () => {
    const { queries, qrels } = evalFiles('pipe-', 0);
    fs.writeFileSync(queries, Array.from({ length: 30_000 }, (_, i) => `q${i + 1}\tle noyau numéro ${i}\n`).join(''));  // seconds of searching
    const fifo = path.join(dir, 'pipe-collection.fifo');
    execFileSync('mkfifo', [fifo]);
    const writer = fs.createWriteStream(fifo).on('error', () => undefined);
    writer.end(Array.from({ length: 2000 }, (_, i) => `d${i}\tpassage numéro ${i} sur le noyau Linux\n`).join(''));
    const cache = path.join(dir, 'pipe-cache');
    // The pipe's folder records the collection complete once encoded; the index and the queries come next.
    const manifest = (key: string) => { try { return fs.readFileSync(path.join(cache, key, 'manifest.json'), 'utf8'); } catch { return ''; } };
    const encoded = () => fs.existsSync(cache) && fs.readdirSync(cache).some((key) => manifest(key).includes('"complete":true'));
    try {
      const { status, stderr } = await interrupted(['eval', '--model', MODEL, '--collection', fifo, '--queries', queries, '--qrels', qrels,
        '--k', '10', '--metrics', 'MRR@10', '--cache', cache, '--threads', '1'], [['SIGINT', encoded]]);
      expect({ status, message: stderr.split('\n').filter((line) => line.startsWith('camembed eval: interrupted')) }).toEqual({
        status: 130,
        message: ["camembed eval: interrupted (a pipe's passages are not kept, as no later run could find them: the next run encodes them again)"],
      });
    } finally {
      writer.destroy();
    }
    expect(fs.readdirSync(cache)).toEqual([]);
  }, 120_000);

  test('eval with a --run file another eval is writing is a usage error (exit 2) that leaves its .partial alone', async () => {
    // The first eval's collection is a FIFO with no writer yet: it waits there, its run file open.
    const { queries, qrels, run } = evalFiles('locked-', 0);
    const collection = path.join(dir, 'locked-collection.fifo');
    execFileSync('mkfifo', [collection]);
    const args = (from: string) => ['eval', '--model', MODEL, '--collection', from, '--queries', queries, '--qrels', qrels,
      '--k', '10', '--metrics', 'MRR@10', '--cache', path.join(dir, 'locked-cache'), '--run', run, '--threads', '1', '--json'];
    const first = spawn(process.execPath, [CLI, ...args(collection)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    first.stderr.on('data', (d) => { stderr += String(d); });
    const exited = new Promise<number | null>((resolve) => first.on('exit', (code) => resolve(code)));
    const passages = Array.from({ length: 20 }, (_, i) => `d${i}\tpassage numéro ${i} sur le noyau Linux\n`).join('');
    try {
      for (let waited = 0; !fs.existsSync(`${run}.partial`); waited += 10) {
        if (waited > 60_000 || first.exitCode !== null) throw new Error(`the first eval never opened its run file; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      const regular = path.join(dir, 'locked-collection.tsv');
      fs.writeFileSync(regular, passages);
      const second = camembed(args(regular));
      expect(second).toEqual({
        status: 2, stdout: '',
        stderr: `camembed eval: the run file ${run} is in use by another run (process ${first.pid}): wait for it to end\n`,
      });
      expect(fs.existsSync(`${run}.partial`)).toBe(true);
    } finally {
      fs.writeFileSync(collection, passages);  // opens the FIFO, writes, closes: the first eval goes on
    }
    expect({ status: await exited, stderr }).toEqual({ status: 0, stderr: '' });
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('locked-run'))).toEqual(['locked-run.trec']);
  }, 120_000);

  (haveProc ? test : test.skip)('eval interrupted before any passage was encoded says so (it said the encoded passages were cached)', async () => {
    // Its qrels are a FIFO with no writer yet: Ctrl-C comes while it waits there, then the qrels come.
    const { collection, queries } = evalFiles('early-', 20);
    const qrels = path.join(dir, 'early-qrels.fifo');
    execFileSync('mkfifo', [qrels]);
    const child = spawn(process.execPath, [CLI, 'eval', '--model', MODEL, '--collection', collection, '--queries', queries, '--qrels', qrels,
      '--k', '10', '--metrics', 'MRR@10', '--cache', path.join(dir, 'early-cache'), '--threads', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += String(d); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitUntilWaitingOn(child, qrels);
      child.kill('SIGINT');
      for (let waited = 0; !stderr.includes('stopping after the current step'); waited += 10) {
        if (waited > 20_000) throw new Error(`no stop; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      fs.writeFileSync(qrels, 'q1 0 d7 1\n');
    }
    expect(await exited).toBe(130);
    expect(stderr.split('\n').filter((line) => line.startsWith('camembed eval: interrupted'))).toEqual(['camembed eval: interrupted before any passage was encoded']);
  }, 120_000);

  (haveProc ? test : test.skip)('encode and index build reading a FIFO no writer has opened yet stop on Ctrl-C (exit 130, a new output removed), as search does', async () => {
    // A FIFO was opened and read by libuv threads, and the Ctrl-C handler's process.exit() waited
    // for them: until a writer came. (search has no handler then: Ctrl-C ended it at once.)
    const fifo = path.join(dir, 'no-writer.fifo');
    execFileSync('mkfifo', [fifo]);
    const file = await oneVectorIndex(path.join(dir, 'no-writer.cmbd'));
    for (const [args, output] of [
      [['encode', '--input', fifo, '--output', path.join(dir, 'fifo.f32')], path.join(dir, 'fifo.f32')],
      [['index', 'build', '--input', fifo, '--output', path.join(dir, 'fifo.cmbd')], path.join(dir, 'fifo.cmbd')],
      [['search', '--index', file, '--queries', fifo], null],
    ] as const) {
      const child = spawn(process.execPath, [CLI, ...args, '--model', MODEL, '--threads', '1'], { stdio: ['ignore', 'ignore', 'ignore'] });
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
      await waitUntilWaitingOn(child, fifo);
      child.kill('SIGINT');
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([exited, new Promise((r) => { timer = setTimeout(r, 10_000, 'still running'); })]);
      clearTimeout(timer);
      child.kill('SIGKILL');
      // search ends as Ctrl-C ends a program without a handler: by the signal.
      expect({ args, ended }).toEqual({ args, ended: output === null ? [null, 'SIGINT'] : [130, null] });
      if (output !== null) expect(fs.existsSync(output)).toBe(false);
    }
  }, 120_000);

  test('eval killed outright (SIGKILL) leaves its .partial run file (and its lock file, unlocked), which the next run with that --run replaces', async () => {
    const { collection, queries, qrels, run } = evalFiles('killed-', 3000);
    const args = ['eval', '--model', MODEL, '--collection', collection, '--queries', queries, '--qrels', qrels,
      '--k', '10', '--metrics', 'MRR@10', '--cache', path.join(dir, 'killed-cache'), '--run', run, '--threads', '1', '--json'];
    const killed = await interrupted(args, [['SIGKILL', () => fs.existsSync(`${run}.partial`)]]);
    expect(killed.killedBy).toBe('SIGKILL');
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('killed-run')).sort()).toEqual(['killed-run.trec.lock', 'killed-run.trec.partial']);
    fs.appendFileSync(`${run}.partial`, 'q0 Q0 d1 1 0.5 killed\n'.repeat(20));  // as if it had written part of a run
    expect(camembed(args).status).toBe(0);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('killed-run'))).toEqual(['killed-run.trec']);
    // The query's 10 lines, ranked 1 to 10: nothing of the killed run's file is left in it.
    const lines = fs.readFileSync(run, 'utf8').trimEnd().split('\n').map((line) => line.split(' '));
    expect(lines.map(([qid, q0, , rank]) => `${qid} ${q0} ${rank}`)).toEqual(Array.from({ length: 10 }, (_, r) => `q1 Q0 ${r + 1}`));
  }, 120_000);

  test('standard error whose reader left (`2>&1 | tee log`, Ctrl-C ending tee too) loses the messages, not the run: its own status, eval still stops gracefully', async () => {
    // An unhandled 'error' of process.stderr ended the process at once with status 1: eval kept none of
    // the passages it had encoded, and left its .partial run file.
    const start = (args: string[]) => {
      const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      child.stderr.destroy();  // before the child writes anything
      return { child, exited: new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code))) };
    };
    expect(await start(['encode', '--modle', 'x']).exited).toBe(2);

    const { collection, queries, qrels, run } = evalFiles('no-stderr-', 20_000);
    const { child, exited } = start(['eval', '--model', MODEL, '--collection', collection, '--queries', queries, '--qrels', qrels,
      '--cache', path.join(dir, 'no-stderr-cache'), '--run', run, '--threads', '1']);
    for (let waited = 0; !fs.existsSync(`${run}.partial`); waited += 10) {  // opened just before the passages are encoded
      if (waited > 60_000 || child.exitCode !== null) throw new Error('eval never started encoding');
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('no-stderr-run'))).toEqual([]);
  }, 120_000);

  test('make-random-model interrupted while it writes the weights leaves no temporary file (exit 130)', async () => {
    const out = path.join(dir, 'random-model');
    const writing = () => fs.existsSync(out) && fs.readdirSync(out).some((f) => f.startsWith('model.safetensors.tmp-'));
    const { status, killedBy } = await interrupted(['make-random-model', '--tokenizer', TOKENIZER, '--out', out, '--layers', '1'], [['SIGINT', writing]]);
    expect({ status, killedBy }).toEqual({ status: 130, killedBy: null });
    expect(fs.readdirSync(out).filter((f) => f.includes('.tmp-'))).toEqual([]);
  }, 120_000);
});

(haveModels && haveProc && haveDevFull ? test : test.skip)('encode and search reading a FIFO whose writer stays exit as soon as they fail, not when the writer writes or closes', async () => {
  // Their reads of the next line (readyBatches) held the FIFO open, and the process, until then: only standard input was closed.
  const fifo = path.join(dir, 'failing.fifo');
  execFileSync('mkfifo', [fifo]);
  const passages = path.join(dir, 'failing-passages.txt');
  fs.writeFileSync(passages, 'un\n');
  const file = await oneVectorIndex(path.join(dir, 'failing.cmbd'));
  for (const [args, message] of [
    [['encode', '--input', fifo, '--output', '/dev/full'], 'camembed encode: cannot write to /dev/full: ENOSPC: no space left on device, write\n'],
    // Its passages changed once open: the first answer fails.
    [['search', '--index', file, '--queries', fifo, '--passages', passages], `camembed search: ${passages} changed since it was opened\n`],
  ] as const) {
    const child = spawn(process.execPath, [CLI, ...args, '--model', MODEL, '--threads', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += String(d); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitUntilWaitingOn(child, fifo);
    fs.appendFileSync(passages, 'deux\n');
    const writer = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);  // the child has it open for reading
    try {
      fs.writeSync(writer, 'bonjour\n');
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([exited, new Promise((r) => { timer = setTimeout(r, 10_000, 'still running'); })]);
      clearTimeout(timer);
      expect({ args, ended, stderr }).toEqual({ args, ended: 1, stderr: message });
    } finally {
      fs.closeSync(writer);
      child.kill('SIGKILL');
    }
  }
}, 60_000);

(haveModels ? test : test.skip)("encode to a pipe named by path whose reader leaves ends quietly (141) as '-' does; a device that fails gets no 'partial output' note", async () => {
  const input = path.join(dir, 'many.txt');
  fs.writeFileSync(input, 'bonjour\n'.repeat(5000));  // 640 KB of vectors: more than a pipe holds
  const fifo = path.join(dir, 'vectors.fifo');
  execFileSync('mkfifo', [fifo]);
  const child = spawn(process.execPath, [CLI, 'encode', '--model', MODEL, '--input', input, '--output', fifo, '--threads', '1'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += String(d); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const reader = fs.createReadStream(fifo);
  await once(reader, 'data');
  reader.destroy();
  expect({ status: await exited, stderr }).toEqual({ status: 141, stderr: '' });
  if (haveDevFull) {
    expect(camembed(['encode', '--model', MODEL, '--input', input, '--output', '/dev/full', '--threads', '1']))
      .toEqual({ status: 1, stdout: '', stderr: 'camembed encode: cannot write to /dev/full: ENOSPC: no space left on device, write\n' });
  }
}, 60_000);

(haveModels ? test : test.skip)("a warning (a run id holding '#') is a line 'camembed: warning: ...', not Node's '(node:PID) Warning:' with its hint", () => {
  const file = (name: string, text: string) => { fs.writeFileSync(path.join(dir, name), text); return path.join(dir, name); };
  const run = path.join(dir, 'hash.trec');
  const { status, stderr } = camembed(['eval', '--model', MODEL, '--collection', file('hash-collection.tsv', 'd#1\tle chat dort\nd2\tle chien\n'),
    '--queries', file('hash-queries.tsv', 'q1\tle chat\n'), '--qrels', file('hash-qrels.tsv', 'q1\td#1\n'), '--metrics', 'MRR@10',
    '--cache', path.join(dir, 'hash-cache'), '--run', run, '--json', '--threads', '1']);
  expect({ status, stderr }).toEqual({
    status: 0,
    stderr: `camembed: warning: ${run}: the lines of query 'q1' hold '#', which trec_eval misreads (a comment mark to it): ` +
      'score this run with pytrec_eval, or map such ids first\n',
  });
});

test('a warning while a progress bar is drawn on a terminal starts a line of its own', async () => {
  await withTerminalStderr(async (err) => {
    createProgressBar({ label: 'search queries', unit: 'items', total: 10 }).update(1);
    onWarning(new Error('something to know'));
    const text = err.join('');
    expect(text.slice(text.lastIndexOf('\x1b[K'))).toBe('\x1b[K\ncamembed: warning: something to know\n');
  });
});

(haveModels ? test : test.skip)('a standard stream open the wrong way (0> file, 1< file) is a runtime error naming it (exit 1)', () => {
  const file = path.join(dir, 'wrong-way.txt');
  fs.writeFileSync(file, 'un\n');
  const writeOnly = fs.openSync(file, 'a');
  const readOnly = fs.openSync(file, 'r');
  try {
    for (const args of [['encode', '--output', path.join(dir, 'wrong-way.f32')], ['index', 'build', '--output', path.join(dir, 'wrong-way.cmbd')]]) {
      const { status, stderr } = camembed([...args, '--model', MODEL, '--input', '-', '--threads', '1'], { stdin: writeOnly });
      expect({ args, status, stderr }).toEqual({ args, status: 1, stderr: `camembed ${args[0]}: cannot read standard input: EBADF: bad file descriptor, read\n` });
    }
    const { status, stderr } = camembed(['--version'], { stdout: readOnly });
    expect({ status, stderr }).toEqual({ status: 1, stderr: 'camembed: cannot write to standard output: EBADF: bad file descriptor, write\n' });
  } finally {
    fs.closeSync(writeOnly);
    fs.closeSync(readOnly);
  }
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('wrong-way.') && f !== 'wrong-way.txt')).toEqual([]);
});

(haveModels ? test : test.skip)('an error that stops a progress bar on a terminal starts a line of its own', async () => {
  const input = path.join(dir, 'bad-late.txt');
  fs.writeFileSync(input, Buffer.concat([Buffer.from('bonjour\n'.repeat(5000)), Buffer.from([0xff, 0x0a])]));
  await withTerminalStderr(async (err) => {
    for (const args of [['encode', '--output', path.join(dir, 'late.f32')], ['index', 'build', '--output', path.join(dir, 'late.cmbd')]]) {
      err.length = 0;
      expect(await main([...args, '--model', MODEL, '--input', input, '--threads', '1'])).toBe(1);
      const text = err.join('');
      expect(text).toContain('\r');  // the bar was drawn
      const fromLastBar = text.slice(text.lastIndexOf('\r')).split('\n');
      expect(fromLastBar).toEqual([expect.stringMatching(/^\r/), `camembed ${args[0]}: ${input}:5001: is not valid UTF-8`, '']);
    }
  });
});

test('standard output failing while a progress bar is drawn on a terminal ends its line first (quietly for EPIPE)', async () => {
  // `camembed search --queries q.txt | head -1`: the shell's prompt, or the ENOSPC message, came after the bar on its line.
  const exit = jest.spyOn(process, 'exit').mockImplementation((code) => { throw new Error(`exit ${code}`); });
  try {
    await withTerminalStderr(async (err) => {
      for (const [code, status, message] of [['EPIPE', 141, ''], ['ENOSPC', 1, 'camembed: cannot write to standard output: ENOSPC: no space left\n']] as const) {
        err.length = 0;
        createProgressBar({ label: 'search', unit: 'items', total: 10 }).update(1);
        expect(() => onStdoutError(Object.assign(new Error(`${code}: no space left`), { code }))).toThrow(`exit ${status}`);
        const text = err.join('');
        expect(text.slice(text.lastIndexOf('\x1b[K'))).toBe(`\x1b[K\n${message}`);
      }
    });
  } finally {
    exit.mockRestore();
  }
});

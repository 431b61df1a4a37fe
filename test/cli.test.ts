// The `camembed` command line shared by every subcommand: help, version, numeric flags, the
// progress bar's text. Nothing here loads a model.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { main } from '../lib/cli';
import { parseArgs } from '../lib/commands/args';
import { DEFAULT_MODEL, Encoder } from '../lib/encoder';
import { createProgressBar } from '../lib/progress';
import { VectorIndex } from '../lib/vector-index';

async function runCli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const err: string[] = [], out: string[] = [];
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((c) => { err.push(String(c)); return true; });
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((c) => { out.push(String(c)); return true; });
  try {
    const code = await main(args);
    return { code, stderr: err.join(''), stdout: out.join('') };
  } finally {
    e.mockRestore();
    o.mockRestore();
  }
}

const COMMANDS = ['convert', 'encode', 'eval', 'index', 'make-random-model', 'search'];

test.each(COMMANDS)('camembed %s -h prints the same help as --help', async (command) => {
  const long = await runCli([command, '--help']);
  const short = await runCli([command, '-h']);
  expect(short.code).toBe(0);
  expect(short.stdout).toMatch(/^usage: camembed /);
  expect(short.stdout).toBe(long.stdout);
});

test.each(['--version', '-v'])('camembed %s prints the version of package.json', async (flag) => {
  const { version } = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../package.json'), 'utf8'));
  expect(await runCli([flag])).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
});

test('camembed index without a subcommand prints the usage of index build (exit 2)', async () => {
  const { code, stderr } = await runCli(['index']);
  expect(code).toBe(2);
  expect(stderr).toMatch(/^camembed index: missing subcommand: 'camembed index build', 'index info' or 'index neighbors'\n/);
  expect(stderr).toContain('usage: camembed index build (--input passages.txt | --vectors passages.npy)');
  expect(stderr).toContain('--output');
});

describe('integer flags are checked before any model is loaded (exit 2, naming the flag)', () => {
  test.each([
    [['encode', '--batch-size', '0'], "--batch-size must be an integer from 1 to 2147483648, got '0'"],
    // Past what any model takes (Encoder.load: batchSize x maxLength <= 2^32 / dim, at maxLength 2 and dim 1);
    // below it, the model's own bound, a runtime error (exit 1) as it loads.
    [['encode', '--batch-size', '2147483649'], "--batch-size must be an integer from 1 to 2147483648, got '2147483649'"],
    [['index', 'build', '--batch-size', '100000000000'], "--batch-size must be an integer from 1 to 2147483648, got '100000000000'"],
    [['eval', '--batch-size', '4294967296'], "--batch-size must be an integer from 1 to 2147483648, got '4294967296'"],
    [['encode', '--threads', '1.5'], "--threads must be an integer from 1 to 1024, got '1.5'"],
    [['index', 'build', '--threads', '0'], "--threads must be an integer from 1 to 1024, got '0'"],
    // Encoder.load's limit: past it, a runtime error (exit 1) after the checks, naming options.threads.
    [['encode', '--threads', '1025'], "--threads must be an integer from 1 to 1024, got '1025'"],
    [['index', 'build', '--threads', '4096'], "--threads must be an integer from 1 to 1024, got '4096'"],
    [['search', '--threads', '4294967297', 'x'], "--threads must be an integer from 1 to 1024, got '4294967297'"],
    [['eval', '--threads', '2000'], "--threads must be an integer from 1 to 1024, got '2000'"],
    // VectorIndex's limit: past it, a runtime error (exit 1) naming options.dim.
    [['index', 'build', '--dim', '16777217'], "--dim must be an integer from 1 to 16777216, got '16777217'"],
    [['search', '--k', '-3', 'x'], "--k must be a positive integer, got '-3'"],
    [['eval', '--batch-size', '0'], "--batch-size must be an integer from 1 to 2147483648, got '0'"],
    [['make-random-model', '--layers', '0'], "--layers must be a positive integer, got '0'"],
    [['make-random-model', '--max-positions', '0'], "--max-positions must be a positive integer, got '0'"],
    [['make-random-model', '--seed', '-1'], "--seed must be an integer from 0 to 4294967295, got '-1'"],
    // The generator takes 32 bits: --seed 4294967296 wrote seed 0's weights.
    [['make-random-model', '--seed', '4294967296'], "--seed must be an integer from 0 to 4294967295, got '4294967296'"],
    [['encode', '--batch-size', 'many'], "--batch-size must be an integer from 1 to 2147483648, got 'many'"],
    [['search', '--k', '0x10', 'x'], "--k must be a positive integer, got '0x10'"],
    [['search', '--k', '1e3', 'x'], "--k must be a positive integer, got '1e3'"],
  ])('%j', async (args, message) => {
    const { code, stderr } = await runCli(args);
    expect(stderr).toContain(message);
    expect(code).toBe(2);
  });
});

test('eval and search pass --threads and --offline to Encoder.load like encode and index build', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-cli-'));
  const load = jest.spyOn(Encoder, 'load').mockRejectedValue(new Error('stop here'));
  try {
    const write = (name: string, text: string) => { const f = path.join(dir, name); fs.writeFileSync(f, text); return f; };
    const input = write('texts.txt', 'un\n');
    const indexFile = path.join(dir, 'x.cmbd');
    const index = new VectorIndex({ dim: 2 });
    index.add(new Float32Array([1, 0]));
    await index.save(indexFile);
    index.dispose();
    const files = ['--collection', write('c.tsv', 'd1\tun\n'), '--queries', write('q.tsv', 'q1\tun\n'), '--qrels', write('r.trec', 'q1 0 d1 1\n')];
    for (const args of [
      ['eval', ...files, '--cache', path.join(dir, 'cache')],
      ['encode', '--input', input, '--output', path.join(dir, 'out.f32')],
      ['index', 'build', '--input', input, '--output', path.join(dir, 'out.cmbd')],
      ['search', '--index', indexFile, 'une question'],
    ]) {
      load.mockClear();
      const { code, stderr } = await runCli([...args, '--model', 'org/model', '--threads', '3', '--offline']);
      expect(stderr).toContain('stop here');
      expect(code).toBe(1);
      expect(load).toHaveBeenCalledWith('org/model', expect.objectContaining({ threads: 3, offline: true }));
    }
  } finally {
    load.mockRestore();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('search without --model loads the model the index records (else the default); a recorded folder that is gone is a usage error', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-cli-'));
  const load = jest.spyOn(Encoder, 'load').mockRejectedValue(new Error('stop here'));
  try {
    const indexWith = async (name: string, metadata: Record<string, unknown>) => {
      const index = new VectorIndex({ dim: 2, metadata });
      index.add(new Float32Array([1, 0]));
      await index.save(path.join(dir, name));
      index.dispose();
      return path.join(dir, name);
    };
    for (const [metadata, expected] of [[{ model: 'org/recorded' }, 'org/recorded'], [{}, DEFAULT_MODEL]] as const) {
      load.mockClear();
      expect((await runCli(['search', '--index', await indexWith('a.cmbd', metadata), 'q'])).code).toBe(1);
      expect(load).toHaveBeenCalledWith(expected, expect.anything());
    }
    load.mockClear();
    const gone = path.join(dir, 'no-such-model');
    const indexFile = await indexWith('b.cmbd', { model: gone });
    expect(await runCli(['search', '--index', indexFile, 'q'])).toEqual({
      code: 2, stdout: '', stderr: expect.stringContaining(`${indexFile} was built with the model folder ${gone}, which does not exist here: pass --model`),
    });
    expect(load).not.toHaveBeenCalled();
    // A recorded path through a link (an older camembed, or metadata set in code) is the same model.
    const folder = path.join(dir, 'model');
    fs.mkdirSync(folder);
    fs.symlinkSync(folder, path.join(dir, 'model-link'));
    const linked = await indexWith('c.cmbd', { model: path.join(dir, 'model-link') });
    expect((await runCli(['search', '--index', linked, '--model', folder, 'q'])).stderr).not.toContain('note:');
    expect((await runCli(['search', '--index', linked, '--model', dir, 'q'])).stderr).toContain('note:');
  } finally {
    load.mockRestore();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('search --passages prints each hit\'s line, and says when an id is not a line of the file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-cli-'));
  // A stand-in encoder: every question is the vector (1, 0).
  const load = jest.spyOn(Encoder, 'load').mockResolvedValue({
    dim: 2, encode: async (texts: string[]) => ({ data: new Float32Array(texts.length * 2).map((_, i) => (i % 2 === 0 ? 1 : 0)), rows: texts.length, dim: 2 }),
    dispose: async () => undefined,
  } as unknown as Encoder);
  try {
    const passages = path.join(dir, 'p.txt');
    fs.writeFileSync(passages, 'zéro\r\nun\tdeux\rtrois\nquatre');
    const index = new VectorIndex({ dim: 2 });
    index.add(new Float32Array([0, 1, 1, 0.5, 1, 0]));  // ids 0, 1, 2: best for (1, 0) are 2, then 1
    await index.save(path.join(dir, 'a.cmbd'));
    index.add(new Float32Array([1, 0.01]), [1000]);
    await index.save(path.join(dir, 'b.cmbd'));
    const tsv = await runCli(['search', '--index', path.join(dir, 'a.cmbd'), '--k', '2', '--passages', passages, 'q']);
    expect(tsv.stdout.trim().split('\n').map((l) => l.split('\t').slice(2).filter((_, i) => i !== 1))).toEqual([['2', 'quatre'], ['1', 'un deux trois']]);
    const json = JSON.parse((await runCli(['search', '--index', path.join(dir, 'a.cmbd'), '--k', '3', '--passages', passages, '--format', 'jsonl', 'q'])).stdout);
    expect(json.passages).toEqual(['quatre', 'un\tdeux\rtrois', 'zéro']);
    const wrong = await runCli(['search', '--index', path.join(dir, 'b.cmbd'), '--k', '4', '--passages', passages, 'q']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`${passages} has no line 1000 (it has 3, numbered from 0)`);
    expect((await runCli(['search', '--index', path.join(dir, 'a.cmbd'), '--passages', '-', 'q'])).code).toBe(2);
  } finally {
    load.mockRestore();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('camembed index info prints what a file holds (quickly; --verify reads it all)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-cli-'));
  try {
    const file = path.join(dir, 'a.cmbd');
    const index = new VectorIndex({ dim: 3, dtype: 'float16', metadata: { model: 'org/m', note: 'été' } });
    index.add(new Float32Array([1, 2, 3, 4, 5, 6]));
    await index.save(file);
    index.dispose();
    const fileBytes = fs.statSync(file).size;
    const want = { file, dtype: 'float16', dim: 3, size: 2, metadata: { model: 'org/m', note: 'été' }, fileBytes };
    const info = await runCli(['index', 'info', file]);
    expect(info.code).toBe(0);
    expect(JSON.parse(info.stdout)).toEqual(want);
    expect(JSON.parse((await runCli(['index', 'info', file, '--verify'])).stdout)).toEqual({ ...want, verified: true });
    // A damaged vector: the header is still fine, the full read is not.
    const bytes = fs.readFileSync(file);
    bytes[fileBytes - 20] ^= 1;
    fs.writeFileSync(file, bytes);
    expect((await runCli(['index', 'info', file])).code).toBe(0);
    const verify = await runCli(['index', 'info', file, '--verify']);
    expect(verify.code).toBe(1);
    expect(verify.stderr).toContain(`${file} is corrupt: checksum mismatch`);
    expect((await runCli(['index', 'info', path.join(dir, 'none.cmbd')])).stderr).toContain('none.cmbd does not exist');
    expect((await runCli(['index', 'info'])).code).toBe(2);
    expect((await runCli(['index', 'info', dir])).stderr).toContain(`${dir} is a folder, not an index file`);
    expect((await runCli(['index', '--help'])).stdout).toContain('camembed index info corpus.cmbd [--verify]');
    expect((await runCli(['index', 'info', file, file])).stderr).toContain('expected one index file, got 2');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('progress bar text', () => {
  function drawn(unit: 'items' | 'bytes', done: number, seconds: number, total?: number, initial?: number): string {
    let clock = 1_000_000;
    const now = jest.spyOn(Date, 'now').mockImplementation(() => clock);
    const out: string[] = [];
    const stream = { isTTY: true, write: (s: string) => { out.push(s); return true; } } as unknown as NodeJS.WriteStream;
    try {
      const bar = createProgressBar({ label: 'encode', unit, total, stream, initial });
      clock += seconds * 1000;
      bar.update(done);
      bar.finish();
    } finally {
      now.mockRestore();
    }
    return out.join('');
  }

  test.each([
    [2561, 16.1, '159/s'],  // 159.07...
    [16000, 10, '1.6k/s'],
    [25, 10, '2.5/s'],
    [3_000_000, 2, '1.50M/s'],
    // Rounded into the next unit: the unit follows the rounding.
    [999_960, 1, '1.00M/s'],
    [9996, 10, '1.0k/s'],
    [996, 100, '10/s'],
  ])('%d items in %d s: %s', (done, seconds, rate) => {
    const line = drawn('items', done, seconds);
    expect(line).toContain(`  ${rate}`);
    expect(line).not.toMatch(/\d\.\d{3,}/);
  });

  test('with a total: percentage, amount of the total and ETA', () => {
    expect(drawn('bytes', 512, 1, 2048)).toContain('[######..................] 25.0%  512 B/2.0 KiB  ETA 0:03  512 B/s');
    expect(drawn('bytes', 1_048_570, 1, 4 << 20)).toContain('  1.0 MiB/4.0 MiB  ETA 0:03  1.0 MiB/s');
    expect(drawn('bytes', 1_047_000, 1, 4 << 20)).toContain('  1022.5 KiB/4.0 MiB');
    // Past the total (an input file that grew while read): a full bar and no time left.
    expect(drawn('bytes', 3072, 1, 2048)).toContain('[########################] 100.0%  3.0 KiB/2.0 KiB  ETA 0:00  3.0 KiB/s');
  });

  test('the rate and the ETA show once measured over a second (a save draws first after its 64-byte header), or at the end', () => {
    let clock = 1_000_000;
    const now = jest.spyOn(Date, 'now').mockImplementation(() => clock);
    const out: string[] = [];
    const stream = { isTTY: true, write: (s: string) => { out.push(s); return true; } } as unknown as NodeJS.WriteStream;
    try {
      const save = createProgressBar({ label: 'save', unit: 'bytes', total: 3 * 2 ** 30, stream });
      clock += 2;
      save.update(64);
      clock += 998;
      save.update(1 << 30);
      const quick = createProgressBar({ label: 'load', unit: 'bytes', total: 512, stream });
      clock += 500;
      quick.update(512);
      quick.finish();
    } finally {
      now.mockRestore();
    }
    expect(out.join('').split('\r').slice(1)).toEqual([
      'save  [........................] 0.0%  64 B/3.0 GiB  ETA --:--  --/s\x1b[K',  // was ETA 27h57m  31.3 KiB/s
      'save  [########................] 33.3%  1.0 GiB/3.0 GiB  ETA 0:02  1.0 GiB/s\x1b[K',
      'load  [########################] 100.0%  512 B/512 B  ETA 0:00  --/s\x1b[K',  // nothing left: no rate needed
      'load  [########################] 100.0%  512 B/512 B  ETA 0:00  1.0 KiB/s\x1b[K\n',
    ]);
  });

  test('a resumed job: the work done before counts in the bar, not in the rate and the ETA', () => {
    // 1,536 of 2,048 bytes were done before; 256 more in 1 s: 256 B/s, and the last 256 take 1 s.
    expect(drawn('bytes', 1792, 1, 2048, 1536)).toContain('[#####################...] 87.5%  1.8 KiB/2.0 KiB  ETA 0:01  256 B/s');
  });

  test('nothing done in this run (all of it done before, an empty input): no rate, where it showed 0 B/s', () => {
    expect(drawn('bytes', 2048, 1, 2048, 2048)).toBe(
      `\rencode  [${'#'.repeat(24)}] 100.0%  2.0 KiB/2.0 KiB  ETA 0:00\x1b[K`.repeat(2) + '\n');
    expect(drawn('items', 0, 2)).toBe('\rencode  0\x1b[K'.repeat(2) + '\n');
  });
});

test('outputs and inputs are checked before any model is loaded: a missing folder, a folder, the input itself (exit 2)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-cli-'));
  const load = jest.spyOn(Encoder, 'load').mockRejectedValue(new Error('the model was loaded'));
  try {
    const input = path.join(dir, 'texts.txt');
    fs.writeFileSync(input, 'un\ndeux\n');
    const files = ['--collection', input, '--queries', input, '--qrels', input];
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const cases: [string[], string][] = [
      [['encode', '--input', input, '--output', input], `--output ${input} is the input ${input}: writing it would destroy it`],
      [['index', 'build', '--input', input, '--output', input], `--output ${input} is the input ${input}: writing it would destroy it`],
      [['index', 'build', '--input', input, '--output', path.join(dir, 'no/x.cmbd')], `the folder ${path.join(dir, 'no')} does not exist`],
      [['index', 'build', '--input', input, '--output', dir], `--output ${dir} is a folder`],
      [['eval', ...files, '--run', dir], `--run ${dir} is a folder`],
      [['eval', ...files, '--run', input], `--run ${input} is the input ${input}`],
      [['eval', ...files, '--run', fifo], `--run ${fifo} is not a regular file`],
      [['eval', ...files.slice(0, 4), '--qrels', '-'], "--qrels must be a file: eval reads files, not standard input"],
      [['encode', '--input', dir, '--output', path.join(dir, 'o.f32')], `--input ${dir} is a folder, not a file`],
      [['make-random-model', '--tokenizer', dir, '--out', input], `--out ${input} is a file, not a folder`],
      [['search', '--index', input, '--device', 'gpu', 'x'], "--device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"],
      // Refused by the library's own checks, which named options.device and options.revision (exit 1).
      [['encode', '--input', input, '--output', path.join(dir, 'o.f32'), '--device', 'cuda:00'], `--device must be written 'cuda:0', got "cuda:00"`],
      [['index', 'neighbors', input, '--device', 'cuda:99999999999'], '--device is "cuda:99999999999", past any CUDA device index'],
      [['encode', '--input', input, '--output', path.join(dir, 'o.f32'), '--model', 'org/name', '--revision', '../main'],
        "--revision must be a branch, tag or commit hash, got '../main'"],
    ];
    for (const [args, message] of cases) {
      const { code, stderr } = await runCli(args);
      expect({ args, stderr: stderr.includes(message) ? message : stderr, code }).toEqual({ args, stderr: message, code: 2 });
    }
    expect(load).not.toHaveBeenCalled();
    expect(fs.readFileSync(input, 'utf8')).toBe('un\ndeux\n');
  } finally {
    load.mockRestore();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("'--' ends the options: what follows is an argument even when it starts with '-'", () => {
  const spec = { k: { type: 'integer' as const, help: 'k', default: 10 }, help: { type: 'boolean' as const, help: 'help' } };
  expect(parseArgs(['--k', '3', '--', '--foo', '-h'], spec)).toEqual({ options: { k: 3, help: undefined }, positional: ['--foo', '-h'], given: new Set(['k']) });
  expect(() => parseArgs(['--foo'], spec)).toThrow('unknown option --foo');
});

// `camembed encode`: the .npy and raw .f32 files hold exactly what Encoder.encode returns.
import { execFileSync, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import { main } from '../lib/cli';
import { devices } from '../lib/devices';
import { Encoder } from '../lib/encoder';
import { convertToOnnx } from '../lib/model';
import { loadAddon } from '../lib/native';
import * as progress from '../lib/progress';
import { cliCoprocess } from './helpers/coprocess';
import { withTerminalStderr } from './helpers/terminal';

const MODEL = path.resolve(__dirname, '../../shared/models/tiny-random-camembert');
const PROVIDER_PROBE = path.join(__dirname, 'helpers/cuda-provider-probe.js');
const haveModel = fs.existsSync(path.join(MODEL, 'model.onnx'));
if (!haveModel) console.warn(`encode CLI tests skipped: ${MODEL} is missing`);
const describeModel = haveModel ? describe : describe.skip;

describeModel('camembed encode', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-encode-cli-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  // CRLF and LF line ends, an empty line, and a Unicode line separator kept inside a text.
  const texts = ['Bonjour le monde', 'Deuxième ligne', '', 'Quatrième\u2028avec séparateur', 'Où est la gare\u00a0?'];
  const input = path.join(dir, 'texts.txt');
  fs.writeFileSync(input, `${texts[0]}\r\n${texts.slice(1).join('\n')}\n`);

  // `camembed encode ARGS --output OUTPUT`, which must succeed and say what it wrote (stderr kept from the test log).
  const encodeTo = async (output: string, ...args: string[]) => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['encode', '--model', MODEL, '--input', input, '--output', output, '--threads', '1', ...args])).toBe(0);
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(`wrote ${texts.length} x 32 float32 to ${output}\n`);
    } finally {
      stderr.mockRestore();
    }
  };

  test.each(['vectors.npy', 'vectors.NPY', 'vectors.f32'])('writes %s equal to Encoder.encode', async (name) => {
    const output = path.join(dir, name);
    await encodeTo(output);
    const encoder = await Encoder.load(MODEL);
    const want = await encoder.encode(texts);
    await encoder.dispose();
    let bytes = fs.readFileSync(output);
    if (/\.npy$/i.test(name)) {
      expect(bytes.subarray(0, 6).toString('latin1')).toBe('\x93NUMPY');
      const headerLength = bytes.readUInt16LE(8);
      expect(bytes.toString('latin1', 10, 10 + headerLength)).toMatch(/'descr': '<f4', 'fortran_order': False, 'shape': \(5, 32\)/);
      expect((10 + headerLength) % 64).toBe(0);
      bytes = bytes.subarray(10 + headerLength);
    }
    const got = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    expect(Array.from(got)).toEqual(Array.from(want.data));
  });

  test('a regular input file is checked through before the model loads: a bad last line fails at once, with nothing written', async () => {
    const late = path.join(dir, 'late-bad.txt');
    fs.writeFileSync(late, Buffer.concat([Buffer.from('bonjour\n'.repeat(5000)), Buffer.from([0x61, 0xff, 0x0a])]));
    const notAModel = fs.mkdtempSync(path.join(dir, 'not-a-model-'));  // would fail the load, which must not come first
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      for (const command of [['encode', '--output', path.join(dir, 'late.f32')], ['index', 'build', '--output', path.join(dir, 'late.cmbd')]]) {
        stderr.mockClear();
        expect(await main([...command, '--model', notAModel, '--input', late])).toBe(1);
        expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(`${late}:5001: is not valid UTF-8`);
        expect(fs.existsSync(command[command.indexOf('--output') + 1])).toBe(false);
      }
    } finally {
      stderr.mockRestore();
    }
  });

  test('a failed run (invalid UTF-8 on standard input, named by line) removes an output it created; an existing one says it is partial', async () => {
    // More lines before the bad one than a chunk (4,096 texts): vectors are written before it fails.
    // Standard input, read only once, is checked as it is encoded (a regular file before: above).
    const bad = Buffer.concat([Buffer.from('bonjour\n'.repeat(5000)), Buffer.from([0x61, 0xff, 0x0a])]);
    const encodeBad = async (output: string) => {
      const stdin = jest.spyOn(process, 'stdin', 'get').mockReturnValue(Readable.from([bad], { objectMode: false }) as unknown as typeof process.stdin);
      try {
        return await main(['encode', '--model', MODEL, '--input', '-', '--output', output, '--threads', '1']);
      } finally {
        stdin.mockRestore();
      }
    };
    const old = path.join(dir, 'old.f32');
    const link = path.join(dir, 'link.f32');
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const written = () => stderr.mock.calls.map((c) => String(c[0])).join('');
    try {
      for (const name of ['new.npy', 'new.f32']) {
        expect(await encodeBad(path.join(dir, name))).toBe(1);
        expect(fs.existsSync(path.join(dir, name))).toBe(false);
      }
      expect(written()).toContain('standard input:5001: is not valid UTF-8');
      expect(written()).not.toContain('partial');
      // A link to nothing: the file made through it is removed, the link stays.
      const dangling = path.join(dir, 'dangling-bad.f32');
      fs.symlinkSync('made-bad.f32', dangling);
      expect(await encodeBad(dangling)).toBe(1);
      expect(fs.existsSync(path.join(dir, 'made-bad.f32'))).toBe(false);
      expect(fs.readlinkSync(dangling)).toBe('made-bad.f32');
      expect(written()).not.toContain('partial');
      // An existing file, and a link to it (written through, never removed): both hold the partial output.
      fs.writeFileSync(old, 'old contents');
      fs.symlinkSync(old, link);
      for (const output of [old, link]) {
        stderr.mockClear();
        expect(await encodeBad(output)).toBe(1);
        expect(written()).toContain(`camembed encode: ${output} holds a partial output`);
        expect(fs.statSync(old).size).toBe(4096 * 32 * 4);  // the first chunk of vectors
      }
      expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
      expect(await main(['encode', '--input', input, '--output', path.join(dir, 'no', 'such', 'x.f32')])).toBe(2);
      expect(await main(['encode', '--input', input, '--output', dir])).toBe(2);
      fs.symlinkSync('/dev/null', path.join(dir, 'device.npy'));
      expect(await main(['encode', '--input', input, '--output', path.join(dir, 'device.npy')])).toBe(2);
    } finally {
      stderr.mockRestore();
    }
  });

  test('an interrupted run (SIGINT, SIGTERM) removes an output it created; an existing one says it is partial', async () => {
    // Standard input stays open after 5,000 lines, so the run waits for more after writing their
    // vectors (a chunk of 4,096, then the 904 that came); the signal comes once those are in the file.
    const cli = path.resolve(__dirname, '..', 'dist', 'cli.js');
    const chunkBytes = 5000 * 32 * 4;
    const interrupt = async (output: string, signal: NodeJS.Signals, fullSize: number) => {
      const child = spawn(process.execPath, [cli, 'encode', '--model', MODEL, '--input', '-', '--output', output, '--threads', '1'],
        { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => { stderr += String(d); });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.stdin.write('bonjour\n'.repeat(5000));
      for (let waited = 0; fs.statSync(output, { throwIfNoEntry: false })?.size !== fullSize; waited += 50) {
        if (waited > 60_000) throw new Error(`${output} never reached ${fullSize} bytes; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill(signal);
      const code = await exited;
      child.stdin.destroy();
      return { code, stderr };
    };
    const created = path.join(dir, 'interrupted.f32');
    const existing = path.join(dir, 'existing.npy');
    fs.writeFileSync(existing, 'old contents');
    const [first, second] = await Promise.all([
      interrupt(created, 'SIGINT', chunkBytes),
      interrupt(existing, 'SIGTERM', 128 + chunkBytes),
    ]);
    expect(first.code).toBe(130);
    expect(first.stderr).toContain('\ncamembed encode: interrupted (SIGINT)\n');
    expect(fs.existsSync(created)).toBe(false);
    expect(second.code).toBe(143);
    expect(second.stderr).toContain(`camembed encode: ${existing} holds a partial output`);
    expect(fs.statSync(existing).size).toBe(128 + chunkBytes);
  }, 120_000);

  /** `camembed encode --input - ARGS` as a coprocess: its standard input stays open until `stdin.end()`. */
  const coprocess = (args: string[]) => cliCoprocess(['encode', '--model', MODEL, '--input', '-', '--threads', '1', ...args]);

  test('--input - writes each vector as its line comes (a coprocess writes one and waits), not 4,096 at a time or at the end', async () => {
    const encode = coprocess(['--output', '-']);
    try {
      encode.stdin.write(`${texts[0]}\n`);
      await encode.answered((out) => out.length >= 1 * 32 * 4, '1 vector');
      encode.stdin.write(`${texts[1]}\n`);
      await encode.answered((out) => out.length >= 2 * 32 * 4, '2 vectors');
    } finally {
      encode.stdin.end();
    }
    expect(await encode.exited).toBe(0);
    const encoder = await Encoder.load(MODEL);
    const want = [...(await encoder.encode([texts[0]])).data, ...(await encoder.encode([texts[1]])).data];
    await encoder.dispose();
    expect(Array.from(new Float32Array(encode.out.buffer.slice(encode.out.byteOffset, encode.out.byteOffset + encode.out.length)))).toEqual(want);
  }, 120_000);

  (fs.existsSync('/dev/full') ? test : test.skip)('--input - that fails between two lines (a write error) ends at once (exit 1), not when its standard input closes', async () => {
    const encode = coprocess(['--output', '/dev/full']);
    try {
      encode.stdin.write(`${texts[0]}\n`);
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([encode.exited, new Promise((r) => { timer = setTimeout(r, 20_000, 'still running'); })]);
      clearTimeout(timer);
      expect({ ended, err: encode.err }).toEqual({ ended: 1, err: 'camembed encode: cannot write to /dev/full: ENOSPC: no space left on device, write\n' });
    } finally {
      encode.stdin.end();
    }
  }, 120_000);

  test('the output is opened before the model loads: one that cannot be, fails at once naming it; a failed or interrupted load leaves an existing one whole and removes a new one', async () => {
    const notModel = path.join(dir, 'not-a-model');  // a folder without weights: its load fails
    fs.mkdirSync(notModel);
    const socket = path.join(dir, 'socket.f32');  // open(2) of a socket fails (ENXIO), even as root
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const written = () => stderr.mock.calls.map((c) => String(c[0])).join('');
    const kept = path.join(dir, 'kept.npy');
    const fresh = path.join(dir, 'fresh.f32');
    try {
      expect(await main(['encode', '--model', notModel, '--input', input, '--output', socket])).toBe(1);
      expect(written()).toBe(`camembed encode: cannot open ${socket}: ENXIO: no such device or address\n`);
      stderr.mockClear();
      expect(await main(['encode', '--model', notModel, '--input', input, '--output', path.join(input, 'x.f32')])).toBe(2);
      expect(written()).toBe(`camembed encode: --output ${path.join(input, 'x.f32')}: ${input} is not a folder\n`);
      fs.writeFileSync(kept, 'old contents');
      for (const output of [kept, fresh]) {
        stderr.mockClear();
        expect(await main(['encode', '--model', notModel, '--input', input, '--output', output])).toBe(1);
        expect(written()).toMatch(/^camembed encode: model folder .* holds no weights/);
        expect(written()).not.toContain('partial');
      }
    } finally {
      stderr.mockRestore();
      server.close();
    }
    expect(fs.readFileSync(kept, 'utf8')).toBe('old contents');
    expect(fs.existsSync(fresh)).toBe(false);

    // Interrupted while the model downloads (from a Hub that never answers): the new file goes.
    const hub = net.createServer();
    const connections: net.Socket[] = [];
    const asked = new Promise<void>((resolve) => hub.on('connection', (c) => { connections.push(c); resolve(); }));
    await new Promise<void>((resolve) => hub.listen(0, '127.0.0.1', resolve));
    const { port } = hub.address() as net.AddressInfo;
    const cli = path.resolve(__dirname, '..', 'dist', 'cli.js');
    const child = spawn(process.execPath, [cli, 'encode', '--model', 'org/name', '--input', input, '--output', fresh], {
      stdio: 'ignore', env: { ...process.env, HF_HOME: path.join(dir, 'hf'), HF_ENDPOINT: `http://127.0.0.1:${port}`, HF_HUB_OFFLINE: '' },
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await Promise.race([asked, exited.then((code) => { throw new Error(`exited (${code}) before asking the Hub`); })]);
      expect(fs.existsSync(fresh)).toBe(true);
      child.kill('SIGINT');
      expect(await exited).toBe(130);
    } finally {
      child.kill();
      for (const c of connections) c.destroy();
      hub.close();
    }
    expect(fs.existsSync(fresh)).toBe(false);
  }, 60_000);

  test('an output that is a symbolic link to nothing (through a chain of links) gets its file written, as index save does; the links stay', async () => {
    const direct = path.join(dir, 'direct.f32');
    const link = path.join(dir, 'dangling.f32');
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.symlinkSync('sub/middle.f32', link);
    fs.symlinkSync('../made.f32', path.join(dir, 'sub', 'middle.f32'));  // relative to the link's own folder
    for (const output of [direct, link]) await encodeTo(output);
    expect(fs.readlinkSync(link)).toBe('sub/middle.f32');
    expect(fs.readFileSync(path.join(dir, 'made.f32')).equals(fs.readFileSync(direct))).toBe(true);
    expect(fs.statSync(direct).size).toBe(texts.length * 32 * 4);
  });

  test('--output /dev/stdout (or /dev/fd/N, as `>(gzip)` gives) on a pipe writes the vectors into the pipe', async () => {
    // Their /proc links read 'pipe:[123]', no path: followed by their text, the output was 'cannot open /dev/stdout: ENOENT'.
    const cli = path.resolve(__dirname, '..', 'dist', 'cli.js');
    for (const output of ['/dev/stdout', '/dev/fd/1']) {
      // Through the shell: Node's own child pipes are sockets, which /proc cannot open again (ENXIO).
      const r = spawnSync('bash', ['-o', 'pipefail', '-c', '"$@" | cat', 'bash',
        process.execPath, cli, 'encode', '--model', MODEL, '--input', input, '--output', output, '--threads', '1']);
      expect({ status: r.status, stderr: String(r.stderr) }).toEqual({ status: 0, stderr: `wrote ${texts.length} x 32 float32 to ${output}\n` });
      expect(r.stdout.equals(await expectedBytes())).toBe(true);
    }
  });

  async function expectedBytes(): Promise<Buffer> {
    const encoder = await Encoder.load(MODEL);
    const want = await encoder.encode(texts);
    await encoder.dispose();
    return Buffer.from(want.data.buffer, want.data.byteOffset, want.data.byteLength);
  }

  test("'-' reads the texts from standard input and writes raw float32 to standard output", async () => {
    // Two pieces of standard input, the second starting inside a line.
    const bytes = fs.readFileSync(input);
    const stdin = jest.spyOn(process, 'stdin', 'get').mockReturnValue(
      Readable.from([bytes.subarray(0, 20), bytes.subarray(20)], { objectMode: false }) as unknown as typeof process.stdin);
    const out: Buffer[] = [];
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((c) => { out.push(Buffer.from(c as Uint8Array)); return true; });
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    // jest run in a terminal: standard output is one, which encode refuses for binary output.
    const tty = Object.getOwnPropertyDescriptor(process.stdout, 'isTTY');
    Object.defineProperty(process.stdout, 'isTTY', { value: false, configurable: true });
    try {
      expect(await main(['encode', '--model', MODEL, '--input', '-', '--output', '-', '--threads', '1'])).toBe(0);
    } finally {
      stdin.mockRestore();
      stdout.mockRestore();
      stderr.mockRestore();
      if (tty === undefined) delete (process.stdout as { isTTY?: boolean }).isTTY;
      else Object.defineProperty(process.stdout, 'isTTY', tty);
    }
    expect(Buffer.concat(out).equals(await expectedBytes())).toBe(true);
    expect(fs.existsSync('-')).toBe(false);
  });

  test('the progress bar shows the bytes of the input file read so far, out of its size', async () => {
    const size = fs.statSync(input).size;
    const err = await withTerminalStderr(async (written) => {
      expect(await main(['encode', '--model', MODEL, '--input', input, '--output', path.join(dir, 'bar.f32'), '--batch-size', '2'])).toBe(0);
      return written;
    });
    const lines = err.join('').split('\r');
    expect(lines[lines.length - 1]).toMatch(new RegExp(`^encode  \\[#{24}\\] 100\\.0%  ${size} B/${size} B  ETA 0:00  `));
  });

  (process.platform === 'win32' ? test.skip : test)("a FIFO's bar is a pipe's: the bytes read, with no total (the size stat gives a FIFO says nothing of what comes)", async () => {
    const fifo = path.join(dir, 'bar.fifo');
    execFileSync('mkfifo', [fifo]);
    fs.createWriteStream(fifo).end(fs.readFileSync(input));
    const size = fs.statSync(input).size;
    const bars = jest.spyOn(progress, 'createProgressBar');
    try {
      const err = await withTerminalStderr(async (written) => {
        expect(await main(['encode', '--model', MODEL, '--input', fifo, '--output', path.join(dir, 'fifo-bar.f32'), '--batch-size', '2'])).toBe(0);
        return written;
      });
      // Its total was the FIFO's stat size, 0 on Linux (drawn as no total) and what the pipe holds elsewhere.
      expect(bars.mock.calls).toEqual([[{ label: 'encode', unit: 'bytes', total: undefined }]]);
      const lines = err.join('').split('\r');
      expect(lines[lines.length - 1]).toMatch(new RegExp(`^encode  ${size} B  [0-9.]+ \\S+/s\x1b\\[K\n`));
    } finally {
      bars.mockRestore();
    }
  });

  test("an output that is one of the model's files (its graph, weights, tokenizer: through a link too) is a usage error; the model stays whole", async () => {
    const model = path.join(dir, 'own-model');
    fs.cpSync(MODEL, model, { recursive: true, filter: (f) => !f.includes('golden') });
    await convertToOnnx(model);  // onnx/model.onnx, its tensors in onnx/model.onnx.data
    const link = path.join(dir, 'graph-link.onnx');
    fs.symlinkSync(path.join(model, 'model.onnx'), link);
    const before = fs.readFileSync(path.join(model, 'model.onnx'));
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      for (const [output, file] of [...['model.onnx', 'onnx/model.onnx.data', 'model.safetensors', 'config.json', 'tokenizer.json', '1_Pooling/config.json'].map((f) => [path.join(model, f), f]),
        [link, 'model.onnx']]) {
        const modelFile = path.join(model, file);
        for (const command of [['encode'], ['index', 'build']]) {
          stderr.mockClear();
          // Was written over once the model had loaded: model.onnx held the vectors, exit 0.
          expect({ command, output, status: await main([...command, '--model', model, '--input', input, '--output', output]) }).toEqual({ command, output, status: 2 });
          expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toBe(
            `camembed ${command[0]}: --output ${output} is the input ${modelFile}: writing it would destroy it\n`);
        }
      }
      expect(fs.readFileSync(path.join(model, 'model.onnx')).equals(before)).toBe(true);
    } finally {
      stderr.mockRestore();
    }
  });

  test('a --device this machine lacks is a usage error (exit 2) naming --device (the API\'s options.device was named), before any work', async () => {
    const gpus = devices().cuda.length;
    const device = gpus === 0 ? 'cuda' : `cuda:${gpus}`;
    const file = input;  // an index file is only checked to be a file before the device is
    const commands = [
      ['index', 'build', '--input', input, '--output', path.join(dir, 'device.cmbd'), '--model', MODEL],
      ['search', '--index', file, '--model', MODEL, 'question'],
      ['index', 'neighbors', file],
      ['eval', '--collection', input, '--queries', input, '--qrels', input, '--model', MODEL],
      // Without camembed's CUDA build, the encoder's device is ONNX Runtime's to check (encoder.test).
      ...(loadAddon().info().cudaCompiledIn ? [['encode', '--input', input, '--output', path.join(dir, 'device.f32'), '--model', MODEL]] : []),
    ];
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      for (const command of commands) {
        stderr.mockClear();
        expect({ command, status: await main([...command, '--device', device]) }).toEqual({ command, status: 2 });
        expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toMatch(new RegExp(`^camembed ${command[0]}: --device is '${device}' but `));
      }
      expect(fs.existsSync(path.join(dir, 'device.f32'))).toBe(false);
    } finally {
      stderr.mockRestore();
    }
  });

  // As on a GPU without onnxruntime-node's CUDA binaries (camembed's kernels see a device 0), and as with camembed
  // built without its CUDA kernels (encode only: the other commands need them); here the provider cannot start.
  // The library's words ("or use device 'cpu'") were printed, and only once the input was read and the model loaded.
  // In a process of its own (test/helpers/cuda-provider-probe.js): ONNX Runtime logs why on its stderr.
  (devices().cuda.length === 0 ? test : test.skip)('a CUDA device whose ONNX Runtime provider cannot start is a usage error (exit 2) naming --device, before any work', () => {
    const late = path.join(dir, 'provider-late-bad.txt');  // read through before the model loads: its error would come first
    fs.writeFileSync(late, Buffer.concat([Buffer.from('bonjour\n'), Buffer.from([0x61, 0xff, 0x0a])]));
    const commands = [
      ['encode', '--input', late, '--output', path.join(dir, 'provider.f32'), '--model', MODEL],
      ['index', 'build', '--input', late, '--output', path.join(dir, 'provider.cmbd'), '--model', MODEL],
      ['search', '--index', input, '--model', MODEL, 'question'],
      ['eval', '--collection', late, '--queries', late, '--qrels', late, '--model', MODEL],
    ].map((command) => [...command, '--device', 'cuda']);
    const notStarted = (name: string) => `${name} is 'cuda' but onnxruntime-node's CUDA execution provider could not start ` +
      `\\(it needs CUDA 12, cuDNN 9 and a GPU\\): .+, or set ${name} to 'cpu'\\.`;
    const builds = [
      { build: 'gpu', calls: commands },
      { build: 'cpu', calls: [commands[0], ['load']] },  // Encoder.load itself: onnxruntime decides there too
    ];
    for (const { build, calls } of builds) {
      const child = spawnSync(process.execPath, [PROVIDER_PROBE, build, MODEL, JSON.stringify(calls)], { encoding: 'utf8' });
      // ONNX Runtime's error lines (here "Failed to load library ...libonnxruntime_providers_shared.so"), and nothing else.
      const otherLines = child.stderr.split('\n').filter((line) => !/^(\x1b\[1;31m)?.*\[[EW]:onnxruntime:.*$|^(\x1b\[m)?$/.test(line));
      expect({ build, status: child.status, otherLines }).toEqual({ build, status: 0, otherLines: [] });
      expect(child.stderr).toMatch(/\[E:onnxruntime:/);
      const results = JSON.parse(child.stdout) as { call: string[]; result: number | string; stderr: string }[];
      expect(results.map(({ call }) => call)).toEqual(calls);
      for (const { call, result, stderr } of results) {
        if (call[0] === 'load') {
          expect(result).toMatch(new RegExp(`^${notStarted('options.device')}$`));
        } else {
          expect({ call, result }).toEqual({ call, result: 2 });
          expect(stderr).toMatch(new RegExp(`^camembed ${call[0]}: ${notStarted('--device')}\\n$`));
        }
      }
    }
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('provider.'))).toEqual([]);
  });

  test('usage errors exit with code 2', async () => {
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['encode', '--model', MODEL, '--output', path.join(dir, 'x.f32')])).toBe(2);
      expect(await main(['encode', '--input', path.join(dir, 'missing.txt'), '--output', path.join(dir, 'x.f32')])).toBe(2);
      expect(String(stderr.mock.calls.map((c) => c[0]).join(''))).toMatch(/--input is required[\s\S]*does not exist/);
    } finally {
      stderr.mockRestore();
    }
  });
});

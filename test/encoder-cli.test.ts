// `camembed encode`: the .npy and raw .f32 files hold exactly what Encoder.encode returns.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { main } from '../lib/cli';
import { Encoder } from '../lib/encoder';

const MODEL = path.resolve(__dirname, '../../shared/models/tiny-random-camembert');
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

  test.each(['vectors.npy', 'vectors.f32'])('writes %s equal to Encoder.encode', async (name) => {
    const output = path.join(dir, name);
    expect(await main(['encode', '--model', MODEL, '--input', input, '--output', output, '--threads', '1'])).toBe(0);
    const encoder = await Encoder.load(MODEL);
    const want = await encoder.encode(texts);
    await encoder.dispose();
    let bytes = fs.readFileSync(output);
    if (name.endsWith('.npy')) {
      expect(bytes.subarray(0, 6).toString('latin1')).toBe('\x93NUMPY');
      const headerLength = bytes.readUInt16LE(8);
      expect(bytes.toString('latin1', 10, 10 + headerLength)).toMatch(/'descr': '<f4', 'fortran_order': False, 'shape': \(5, 32\)/);
      expect((10 + headerLength) % 64).toBe(0);
      bytes = bytes.subarray(10 + headerLength);
    }
    const got = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    expect(Array.from(got)).toEqual(Array.from(want.data));
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

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as v8 from 'v8';
import * as vm from 'vm';
import { readQrels, readTsv, readTsvEntries, TextRecord, TrecRunWriter } from '../lib/eval/formats';
import { FormatError } from '../lib/lines';
import { LockHeld } from '../lib';
import { makeRandom } from './helpers/random';

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-formats-')); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, content: string | Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('readTsv', () => {
  test('ids, texts, line numbers; CRLF, BOM, extra tabs, empty lines, no final newline', async () => {
    const file = write('a.tsv', '\ufeff1\tUn été\r\n\n2\ttexte\tavec tab\n3\t\n4\tfin');
    const records = await collect(readTsv(file));
    expect(records.map((r) => [r.id, r.text, r.line])).toEqual([
      ['1', 'Un été', 1], ['2', 'texte\tavec tab', 3], ['3', '', 4], ['4', 'fin', 5],
    ]);
    // endOffset counts bytes: BOM (3) + '1\tUn été\r\n' (11 bytes: é is 2 bytes each)
    expect(records[0].endOffset).toBe(3 + Buffer.byteLength('1\tUn été\r\n'));
    expect(records[3].endOffset).toBe(fs.statSync(file).size);
  });

  test('an id does not keep its line alive (long ids of millions of passages would hold every text)', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const heapAfterGc = () => { for (let i = 0; i < 4; i++) gc(); return process.memoryUsage().heapUsed; };
    // 5,000 lines of 36-character ids and 3,840 characters of text (two bytes each in V8: '’'): 37 MiB of lines.
    const file = write('long-ids.tsv', Array.from({ length: 5000 }, (_, i) => `passage-${String(i).padStart(28, '0')}\t${'l’été à Paris, '.repeat(256)}\n`).join(''));
    for await (const _ of readTsv(file)) { /* the reader's own first-use allocations */ }
    const before = heapAfterGc();
    const ids: string[] = [];
    for await (const { id } of readTsv(file)) ids.push(id);
    const grown = heapAfterGc() - before;
    expect(ids[4999]).toBe(`passage-${String(4999).padStart(28, '0')}`);
    expect(grown).toBeLessThan(4 * 2 ** 20); // the ids themselves: 5,000 x 36 characters
  });

  test('resumes after a record from its endOffset and line', async () => {
    const file = write('b.tsv', 'a\tpremier\nb\tdeuxième\nc\ttroisième\nd\tquatrième\n');
    const all = await collect(readTsv(file));
    const rest = await collect(readTsv(file, { startOffset: all[1].endOffset, startLine: all[1].line }));
    expect(rest).toEqual(all.slice(2));
  });

  test('lines spanning the 1 MiB read chunks, multi-byte text', async () => {
    const random = makeRandom(7);
    const expected: Array<[string, string]> = [];
    let content = '';
    for (let i = 0; content.length < 2_500_000; i++) {
      const text = 'é€x '.repeat(1 + Math.floor(random() * 400));
      expected.push([`doc${i}`, text]);
      content += `doc${i}\t${text}\n`;
    }
    const file = write('big.tsv', content);
    const records: TextRecord[] = await collect(readTsv(file));
    expect(records.map((r) => [r.id, r.text])).toEqual(expected);
    let offset = 0;
    records.forEach((r, i) => {
      offset += Buffer.byteLength(`${expected[i][0]}\t${expected[i][1]}\n`);
      expect(r.endOffset).toBe(offset);
    });
  });

  test('errors name the file and the line', async () => {
    const noTab = write('notab.tsv', '1\tok\n2 pas de tab\n');
    await expect(collect(readTsv(noTab))).rejects.toThrow(`${noTab}:2: expected 'id<TAB>text' but found no tab`);
    const noId = write('noid.tsv', '\tsans id\n');
    await expect(collect(readTsv(noId))).rejects.toThrow(`${noId}:1: expected 'id<TAB>text' but the id is empty`);
    const bad = write('bad.tsv', Buffer.concat([Buffer.from('1\tok\n2\t'), Buffer.from([0xc3, 0x28]), Buffer.from('\n')]));
    await expect(collect(readTsv(bad))).rejects.toThrow(`${bad}:2: is not valid UTF-8`);
    await expect(collect(readTsv(bad))).rejects.toBeInstanceOf(FormatError);
    await expect(collect(readTsv(path.join(dir, 'missing.tsv')))).rejects.toThrow(/ENOENT/);
    expect(() => readTsv(noTab, { startOffset: -1 })).toThrow(new RangeError('options.startOffset must be >= 0, got -1'));  // at the call
  });

  test('readTsvEntries rejects duplicate ids', async () => {
    const file = write('dup.tsv', 'q1\tun\nq2\tdeux\nq1\ttrois\n');
    await expect(readTsvEntries(file)).rejects.toThrow(`${file}:3: duplicate id 'q1' (first on line 1)`);
    expect(await readTsvEntries(write('ok.tsv', 'q1\tun\nq2\tdeux\n'))).toEqual([['q1', 'un'], ['q2', 'deux']]);
  });
});

describe('readQrels', () => {
  test('TREC form, tabs or spaces, graded and non-relevant', async () => {
    const file = write('q.trec', '1 0 10 1\n1\t0\t11\t2\n\n2 Q0 20 0\n3 0 30 -1\n');
    expect(await readQrels(file)).toEqual({ 1: { 10: 1, 11: 2 }, 2: { 20: 0 }, 3: { 30: -1 } });
  });

  test('two-column TSV means relevance 1', async () => {
    expect(await readQrels(write('q2.tsv', 'a\tx\na\ty\nb\tz\n'))).toEqual({ a: { x: 1, y: 1 }, b: { z: 1 } });
  });

  test('ids such as __proto__ stay ordinary keys', async () => {
    const qrels = await readQrels(write('proto.tsv', '__proto__\tconstructor\n'));
    expect(Object.keys(qrels)).toEqual(['__proto__']);
    expect(qrels['__proto__']['constructor']).toBe(1);
  });

  test('BEIR qrels/dev.tsv: header skipped, query-id, corpus-id, integer score; CRLF, BOM, a score of 0', async () => {
    // As BEIR's own files: tab-separated, the header first; here with Windows line ends and a BOM.
    const file = write('beir-dev.tsv', '\ufeffquery-id\tcorpus-id\tscore\r\nq1\tdoc3\t2\r\nq1\tdoc7\t0\r\n\r\nq2\tdoc1\t1\r\nq3\tdoc9\t0');
    const qrels = await readQrels(file);
    expect(qrels).toEqual({ q1: { doc3: 2, doc7: 0 }, q2: { doc1: 1 }, q3: { doc9: 0 } });
    expect(qrels.q1.doc7).toBe(0); // judged non-relevant, kept (not dropped, not 1)
  });

  test('a 3-field line starts a file only as BEIR\'s exact header', async () => {
    // trec_eval's 4 columns and the 2-column form are still told apart by their first line.
    expect(await readQrels(write('beir-like-trec.tsv', 'query-id 0 corpus-id 1\n'))).toEqual({ 'query-id': { 'corpus-id': 1 } });
    const expected = "expected 'qid 0 docid relevance' (4 fields), 'qid<TAB>docid' (2 fields) or BEIR's header 'query-id<TAB>corpus-id<TAB>score' followed by 3-field lines";
    const noHeader = write('beir-no-header.tsv', 'q1\tdoc3\t2\nq2\tdoc1\t1\n');
    await expect(readQrels(noHeader)).rejects.toThrow(`${noHeader}:1: ${expected}; found "q1\\tdoc3\\t2"`);
    const badHeader = write('beir-bad-header.tsv', '\nquery_id\tcorpus_id\tscore\nq1\tdoc3\t2\n');
    await expect(readQrels(badHeader)).rejects.toThrow(`${badHeader}:2: ${expected}; found "query_id\\tcorpus_id\\tscore"`);
    await expect(readQrels(badHeader)).rejects.toBeInstanceOf(FormatError);
    const one = write('one-field.tsv', 'q1\n');
    await expect(readQrels(one)).rejects.toThrow(`${one}:1: ${expected}; found "q1"`);
  });

  test('BEIR errors name the file and the line', async () => {
    const header = 'query-id\tcorpus-id\tscore\n';
    const four = write('beir-four.tsv', `${header}q1\tdoc3\t2\nq1\t0\tdoc4\t1\n`);
    await expect(readQrels(four)).rejects.toThrow(`${four}:3: has 4 fields but the file is BEIR 'query-id<TAB>corpus-id<TAB>score', 3 fields a line`);
    const two = write('beir-two.tsv', `${header}q1\tdoc3\n`);
    await expect(readQrels(two)).rejects.toThrow(`${two}:2: has 2 fields but the file is BEIR 'query-id<TAB>corpus-id<TAB>score', 3 fields a line`);
    const real = write('beir-real.tsv', `${header}q1\tdoc3\t1.0\n`);
    await expect(readQrels(real)).rejects.toThrow(`${real}:2: relevance must be an integer, got '1.0'`);
    const twoHeaders = write('beir-two-headers.tsv', `${header}q1\tdoc3\t1\n${header}`);
    await expect(readQrels(twoHeaders)).rejects.toThrow(`${twoHeaders}:3: relevance must be an integer, got 'score'`);
    const onlyHeader = write('beir-only-header.tsv', header);
    await expect(readQrels(onlyHeader)).rejects.toThrow(`${onlyHeader}:1: no judgements found (the file is empty but for its header)`);
  });

  test('errors name the file and the line', async () => {
    const three = write('three.tsv', '1 0 10 1\n1 10 1\n');
    await expect(readQrels(three)).rejects.toThrow(`${three}:2: has 3 fields but the file is TREC 'qid iter docid relevance', 4 fields a line`);
    const mixed = write('mixed.tsv', '1 0 10 1\n1\t11\n');
    await expect(readQrels(mixed)).rejects.toThrow(`${mixed}:2: has 2 fields but the file is TREC 'qid iter docid relevance', 4 fields a line`);
    const pairs = write('pairs.tsv', '1\t10\n1 0 11 1\n');
    await expect(readQrels(pairs)).rejects.toThrow(`${pairs}:2: has 4 fields but the file is 'qid<TAB>docid', 2 fields a line`);
    const single = write('single.tsv', '1\t10\n1\n');
    await expect(readQrels(single)).rejects.toThrow(`${single}:2: has 1 field but the file is 'qid<TAB>docid', 2 fields a line`);  // was '1 fields'
    const real = write('real.tsv', '1 0 10 0.5\n');
    await expect(readQrels(real)).rejects.toThrow(`${real}:1: relevance must be an integer, got '0.5'`);
    const dup = write('dupq.tsv', '1 0 10 1\n1 0 10 2\n');
    await expect(readQrels(dup)).rejects.toThrow(`${dup}:2: duplicate judgement for query '1', document '10'`);
    const empty = write('empty.tsv', '\n\n');
    await expect(readQrels(empty)).rejects.toThrow(`${empty}:1: no judgements found (the file is empty)`);
  });
});

describe('TrecRunWriter', () => {
  test('writes qid Q0 docid rank score tag; the file appears on close', async () => {
    const file = path.join(dir, 'run.trec');
    const writer = await TrecRunWriter.open(file, { tag: 'test-run' });
    const scores = Float32Array.from([0.912345678, 0.5, 0.5]);
    await writer.write('q1', ['d3', 'd1', 'd2'], scores);
    await writer.write('q2', [], []);
    await writer.write('q3', ['d9'], [-0.25]);
    expect(fs.existsSync(file)).toBe(false);
    await writer.close();
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines).toEqual([
      `q1 Q0 d3 1 ${scores[0].toPrecision(9)} test-run`,
      'q1 Q0 d1 2 0.500000000 test-run',
      'q1 Q0 d2 3 0.500000000 test-run',
      'q3 Q0 d9 1 -0.250000000 test-run',
    ]);
    expect(Math.fround(Number(lines[0].split(' ')[4]))).toBe(scores[0]); // float32 round trip
    expect(fs.existsSync(`${file}.partial`)).toBe(false);
  });

  test('a run file another writer holds is refused with a LockHeld error, which the package root exports (its message was all a user could match)', async () => {
    const file = path.join(dir, 'locked.trec');
    const first = await TrecRunWriter.open(file);
    try {
      const refused = await TrecRunWriter.open(file).then(() => { throw new Error('opened twice'); }, (err: unknown) => err as LockHeld);
      expect([refused instanceof LockHeld, refused.name, refused.file, refused.message]).toEqual([true, 'LockHeld', `${file}.lock`,
        `the run file ${file} is in use by another run (process ${process.pid}): wait for it to end`]);
    } finally {
      await first.abort();
    }
  });

  test("ids holding '#' are written as given, with one warning a run: trec_eval misreads them", async () => {
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const file = path.join(dir, 'hash.trec');
      const writer = await TrecRunWriter.open(file);
      await writer.write('q1', ['d1'], [1]);
      await writer.write('q#2', ['d2'], [1]);
      await writer.write('q3', ['page#section'], [1]);
      await writer.close();
      expect(fs.readFileSync(file, 'utf8').split('\n').map((line) => line.split(' ').slice(0, 3).join(' ')))
        .toEqual(['q1 Q0 d1', 'q#2 Q0 d2', 'q3 Q0 page#section', '']);
      expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([`${file}: the lines of query 'q#2' hold '#', which trec_eval misreads ` +
        '(a comment mark to it): score this run with pytrec_eval, or map such ids first']);
      warn.mockClear();
      const plain = await TrecRunWriter.open(path.join(dir, 'plain.trec'));
      await plain.write('q1', ['d1'], [1]);
      await plain.close();
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  test('a run named by a symbolic link (to nothing yet, then to the run) is written to the file it names; the link stays', async () => {
    const link = path.join(dir, 'latest.trec');
    fs.symlinkSync('linked.trec', link);
    for (const score of [1, 2]) {
      const writer = await TrecRunWriter.open(link);
      await writer.write('q1', ['d'], [score]);
      await writer.close();
      expect(fs.readlinkSync(link)).toBe('linked.trec');
      expect(fs.readFileSync(path.join(dir, 'linked.trec'), 'utf8')).toBe(`q1 Q0 d 1 ${score.toPrecision(9)} camembed\n`);
    }
  });

  test('bad input', async () => {
    await expect(TrecRunWriter.open(path.join(dir, 'x.trec'), { tag: 'a b' })).rejects.toThrow(/options.tag must be a non-empty string without whitespace/);
    const writer = await TrecRunWriter.open(path.join(dir, 'y.trec'));
    await expect(writer.write('q 1', ['d'], [1])).rejects.toThrow(/qid must be/);
    await expect(writer.write('q1', ['d', 'e'], [1])).rejects.toThrow(/scores must be an array of 2 numbers/);
    await expect(writer.write('q1', ['d', 'e'], [1, 2])).rejects.toThrow(/scores must not increase: scores\[1\] = 2 > scores\[0\] = 1/);
    await expect(writer.write('q1', ['d', ''], [2, 1])).rejects.toThrow(/docids\[1\] must be/);
    await expect(writer.write('q1', ['d'], [NaN])).rejects.toThrow(/scores\[0\] must be a finite number/);
    // trec_eval refuses a document twice in a query's ranking; a query written twice would be merged.
    await expect(writer.write('q1', ['d', 'e', 'd'], [3, 2, 1])).rejects.toThrow("docids[2] is 'd' again (docids[0]): a ranking holds each document once");
    await writer.write('q1', ['d'], [1]);
    await expect(writer.write('q1', ['e'], [1])).rejects.toThrow("query 'q1' is already in the run: write each query's ranking once");
    await writer.close();
    expect(fs.readFileSync(path.join(dir, 'y.trec'), 'utf8')).toBe('q1 Q0 d 1 1.00000000 camembed\n');
    // Used after close or abort: an error naming the run (Node's said 'Cannot call end after a stream was finished').
    const y = path.join(dir, 'y.trec');
    await expect(writer.close()).rejects.toThrow(`TrecRunWriter.close: the run ${y} is already closed`);
    await expect(writer.write('q2', ['d'], [1])).rejects.toThrow(`TrecRunWriter.write: the run ${y} is already closed`);
    await writer.abort();  // a closed run stays
    expect(fs.readFileSync(y, 'utf8')).toBe('q1 Q0 d 1 1.00000000 camembed\n');
    const z = path.join(dir, 'z.trec');
    const aborted = await TrecRunWriter.open(z);
    await aborted.abort();
    await expect(aborted.write('q1', ['d'], [1])).rejects.toThrow(`TrecRunWriter.write: the run ${z} is already aborted`);
    await expect(aborted.close()).rejects.toThrow(`TrecRunWriter.close: the run ${z} is already aborted`);
    expect(fs.existsSync(z)).toBe(false);
  });
});

test('an id with whitespace or a control character is an error naming the file, line and id (qrels and runs could never hold it)', async () => {
  const file = write('spaced-id.tsv', 'q1\tun\nq 2\tdeux\n');
  await expect(readTsvEntries(file)).rejects.toThrow(`${file}:2: the id "q 2" contains whitespace or a control character`);
  // A NUL ends trec_eval's text; Python's split() splits at \x1f and \x85.
  for (const [i, id] of ['d\u00001', 'd\u001f1', 'd\u00851', 'd\u007f1'].entries()) {
    const bad = write(`control-id-${i}.tsv`, `d0\tun\n${id}\tdeux\n`);
    await expect(readTsvEntries(bad)).rejects.toThrow(`${bad}:2: the id ${JSON.stringify(id)} contains whitespace or a control character`);
  }
});

test('a run refuses a qid or docid holding NUL or a control character, naming it, and writes nothing of that query', async () => {
  const file = path.join(dir, 'control.trec');
  const writer = await TrecRunWriter.open(file);
  await expect(writer.write('q1', ['d0', 'd\u00001'], [2, 1])).rejects.toThrow(
    'docids[1] must be a non-empty string without whitespace or control characters, got "d\\u00001"');
  await expect(writer.write('q\u001f2', ['d0'], [1])).rejects.toThrow('qid must be a non-empty string without whitespace or control characters, got "q\\u001f2"');
  await writer.write('q1', ['d0'], [1]);
  await writer.close();
  expect(fs.readFileSync(file, 'utf8')).toBe('q1 Q0 d0 1 1.00000000 camembed\n');
});

test('a run whose close fails (the name is a folder) rejects, and abort() then removes the .partial file', async () => {
  const target = path.join(dir, 'run-is-a-folder');
  fs.mkdirSync(path.join(target, 'inside'), { recursive: true });
  const writer = await TrecRunWriter.open(target);
  await writer.write('q1', ['d1'], [0.5]);
  await expect(writer.close()).rejects.toThrow();
  await writer.abort();  // it hung: the stream had already closed
  expect(fs.existsSync(`${target}.partial`)).toBe(false);
});

(fs.existsSync('/dev/full') ? test : test.skip)('a write that fails between two writes (disk full) fails the next write, not silently', async () => {
  const target = path.join(dir, 'full.trec');
  fs.symlinkSync('/dev/full', `${target}.partial`);  // every write fails with ENOSPC
  const writer = await TrecRunWriter.open(target);
  await writer.write('q1', ['d1'], [0.5]);          // buffered: its failure comes later
  await new Promise((resolve) => setTimeout(resolve, 50));
  const failure = `cannot write to ${target}.partial: ENOSPC: no space left on device, write`;  // Node's message names no file
  await expect(writer.write('q2', ['d1'], [0.5])).rejects.toThrow(failure);
  await expect(writer.close()).rejects.toThrow(failure);
  await writer.abort();
  expect(fs.existsSync(`${target}.partial`)).toBe(false);
});

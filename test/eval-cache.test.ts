// The resumable embedding cache, with a deterministic stand-in encoder (vectors derived from the
// text) so that every resumed result can be compared with an uninterrupted one exactly.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  encodeCollection, EncodedCollection, EncodeInterrupted, EncodeProgress, EmbeddingBatch, fileIdentity, StreamEncoder,
} from '../lib/eval/embedding-cache';
import { removeTrackedTemporaries, temporaryPath, trackTemporaries } from '../lib/atomic-file';
import { LockHeld } from '../lib/lock-file';
import { makeRandom } from './helpers/random';

const DIM = 5;

// Vectors from a seeded generator keyed by the text; yields batches of 3 (not a divisor of the
// chunk size) and counts the texts it was asked to encode.
class HashEncoder implements StreamEncoder {
  encoded = 0;
  async *encodeStream(texts: AsyncIterable<string>): AsyncGenerator<EmbeddingBatch> {
    let batch: string[] = [];
    const emit = (): EmbeddingBatch => {
      const data = new Float32Array(batch.length * DIM);
      batch.forEach((text, row) => {
        let seed = 0;
        for (const c of text) seed = (seed * 31 + c.codePointAt(0)!) >>> 0;
        const random = makeRandom(seed);
        for (let j = 0; j < DIM; j++) data[row * DIM + j] = random();
      });
      this.encoded += batch.length;
      const out = { data, rows: batch.length, dim: DIM };
      batch = [];
      return out;
    };
    for await (const text of texts) {
      batch.push(text);
      if (batch.length === 3) yield emit();
    }
    if (batch.length > 0) yield emit();
  }
}

let dir: string;
let collection: string;
const N = 50;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-cache-'));
  collection = path.join(dir, 'collection.tsv');
  fs.writeFileSync(collection, Array.from({ length: N }, (_, i) => `p${i}\tpassage numéro ${i}\n`).join(''));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function allVectors(encoded: EncodedCollection): Promise<Float32Array> {
  const out = new Float32Array(encoded.rows * encoded.dim);
  for await (const { firstRow, vectors } of encoded.chunks()) out.set(vectors, firstRow * encoded.dim);
  return out;
}

const identity = { model: 'hash', maxLength: 128 };

describe('encodeCollection', () => {
  let reference: { ids: string[]; vectors: Float32Array };
  beforeAll(async () => {
    const encoder = new HashEncoder();
    const encoded = await encodeCollection({ collection, cacheDir: path.join(dir, 'ref'), identity, encoder, chunkRows: 8 });
    reference = { ids: encoded.ids, vectors: await allVectors(encoded) };
    expect(encoder.encoded).toBe(N);
    await encoded.release();  // a file's cache stays
    expect([encoded.kept, fs.existsSync(path.join(encoded.dir, 'manifest.json'))]).toEqual([true, true]);
  });

  test('ids and vectors in file order', () => {
    expect(reference.ids).toEqual(Array.from({ length: N }, (_, i) => `p${i}`));
    expect(reference.vectors.length).toBe(N * DIM);
  });

  test('an interrupted encode resumes where it stopped and gives the same result', async () => {
    // Stopped as chunk 1 fills at row 16, inside the batch of rows 16-18: the rest of that batch is kept too.
    const cacheDir = path.join(dir, 'resume');
    const controller = new AbortController();
    const first = new HashEncoder();
    await expect(encodeCollection({
      collection, cacheDir, identity, encoder: first, chunkRows: 8, signal: controller.signal,
      onProgress: (p) => { if (p.chunks === 2) controller.abort(); },
    })).rejects.toMatchObject({ name: 'EncodeInterrupted', rows: 18 });

    const progress: number[] = [];
    const second = new HashEncoder();
    const resumed = await encodeCollection({
      collection, cacheDir, identity, encoder: second, chunkRows: 8, onProgress: (p) => progress.push(p.rows),
    });
    expect(resumed.cachedRows).toBe(18); // two chunks of 8, and a short one of 2
    expect(second.encoded).toBe(N - 18); // only the rest was encoded again
    expect(progress[0]).toBe(18);
    expect(progress[progress.length - 1]).toBe(N);
    expect(resumed.ids).toEqual(reference.ids);
    expect(await allVectors(resumed)).toEqual(reference.vectors);

    const third = new HashEncoder();
    const cached = await encodeCollection({ collection, cacheDir, identity, encoder: third, chunkRows: 8 });
    expect(third.encoded).toBe(0);
    expect(cached.cachedRows).toBe(N);
    expect(await allVectors(cached)).toEqual(reference.vectors);
  });

  test('a signal aborted before the call encodes nothing (not a first batch of the encoder)', async () => {
    const cacheDir = path.join(dir, 'aborted-before');
    const encoder = new HashEncoder();
    await expect(encodeCollection({ collection, cacheDir, identity, encoder, chunkRows: 8, signal: AbortSignal.abort() }))
      .rejects.toMatchObject({ name: 'EncodeInterrupted', rows: 0 });
    expect(encoder.encoded).toBe(0);
  });

  test('stopped inside a chunk, it keeps the passages encoded so far (a short chunk), not only whole chunks', async () => {
    const cacheDir = path.join(dir, 'stop-mid-chunk');
    const controller = new AbortController();
    await expect(encodeCollection({
      collection, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8, signal: controller.signal,
      onProgress: (p) => { if (p.rows === 12) controller.abort(); }, // after a batch: 8 in chunk 0, 4 towards chunk 1
    })).rejects.toMatchObject({ name: 'EncodeInterrupted', rows: 12 });
    const encoder = new HashEncoder();
    const resumed = await encodeCollection({ collection, cacheDir, identity, encoder, chunkRows: 8 });
    expect(resumed.cachedRows).toBe(12);
    expect(encoder.encoded).toBe(N - 12);
    expect(resumed.ids).toEqual(reference.ids);
    expect(await allVectors(resumed)).toEqual(reference.vectors);
  });

  // A damaged chunk is encoded again, with the chunks after it. An ids file short of its rows
  // (emptied by a crash) is damage too, not a shift of every later id onto another vector.
  test.each([
    ['vectors truncated', 'vectors-000002.f32', null, 16],
    ['ids emptied', 'ids-000001.txt', '', 8],
    ['ids short of rows', 'ids-000001.txt', 'p8\np9', 8],
  ])('a damaged chunk (%s) is encoded again, with the chunks after it', async (name, file, content, redoneFrom) => {
    const cacheDir = path.join(dir, `damaged-${name.replace(/ /g, '-')}`);
    const encoded = await encodeCollection({ collection, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8 });
    if (content === null) fs.truncateSync(path.join(encoded.dir, file), 10);
    else fs.writeFileSync(path.join(encoded.dir, file), content);
    const encoder = new HashEncoder();
    const again = await encodeCollection({ collection, cacheDir, identity, encoder, chunkRows: 8 });
    expect(encoder.encoded).toBe(N - redoneFrom);
    expect(again.ids).toEqual(reference.ids);
    expect(await allVectors(again)).toEqual(reference.vectors);
  });

  test('of two runs at once on one cache, the second is refused while the first encodes, then finds every passage cached; no temporary file outlives its writer', async () => {
    // Each wrote chunks of the same names: one that had resumed from a short chunk (an interrupted run's)
    // read on from another offset than the other, and a chunk's vectors could be one run's, its ids the other's.
    const cacheDir = path.join(dir, 'concurrent');
    const [first, second] = await Promise.allSettled([1, 2].map(() => encodeCollection({ collection, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8 })));
    expect(first.status).toBe('fulfilled');
    const encoded = (first as PromiseFulfilledResult<EncodedCollection>).value;
    const refused = (second as PromiseRejectedResult).reason as Error;
    expect([refused instanceof LockHeld, refused.message])
      .toEqual([true, `the embedding cache ${encoded.dir} is in use by another run (process ${process.pid}): wait for it to end`]);
    const encoder = new HashEncoder();
    const again = await encodeCollection({ collection, cacheDir, identity, encoder, chunkRows: 8 });
    expect(encoder.encoded).toBe(0);
    for (const run of [encoded, again]) {
      expect(run.ids).toEqual(reference.ids);
      expect(await allVectors(run)).toEqual(reference.vectors);
    }
    const runs = [encoded];
    expect(fs.readdirSync(encoded.dir).filter((f) => f === 'lock')).toEqual([]);  // released
    const temporaries = () => fs.readdirSync(runs[0].dir).filter((f) => f.includes('.tmp-')).sort();
    expect(temporaries()).toEqual([]);
    // A writer killed mid-write leaves its temporary file: the next run removes it once it has been
    // untouched for an hour (a live writer's file changes as it is written). The same pid as ours:
    // in containers every writer may be PID 1.
    const abandoned = `vectors-000001.f32.tmp-${process.pid}-0123abcd`;
    const live = `vectors-000001.f32.tmp-${process.pid}-89abcdef`;
    for (const name of [abandoned, live]) fs.writeFileSync(path.join(runs[0].dir, name), 'partial');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    fs.utimesSync(path.join(runs[0].dir, abandoned), twoHoursAgo, twoHoursAgo);
    await encodeCollection({ collection, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8 });
    expect(temporaries()).toEqual([live]);
  });

  test('the collection is checked through before any of it is encoded: a bad last line fails with nothing encoded', async () => {
    const body = Array.from({ length: 40 }, (_, i) => `c${i}\tpassage ${i}\n`).join('');
    const cases: Array<[string, string]> = [
      ['no tab', `${body}c40 sans tabulation\n`], ['duplicate id', `${body}c3\tencore\n`], ['bad UTF-8', `${body}c40\tcaf\xe9\n`],
    ];
    const messages = ["expected 'id<TAB>text' but found no tab", "duplicate passage id 'c3' (first on line 4)", 'is not valid UTF-8'];
    for (const [i, [name, content]] of cases.entries()) {
      const file = path.join(dir, `late-${name.replace(/ /g, '-')}.tsv`);
      fs.writeFileSync(file, content, name === 'bad UTF-8' ? 'latin1' : 'utf8');
      const encoder = new HashEncoder();
      await expect(encodeCollection({ collection: file, cacheDir: path.join(dir, 'late'), identity, encoder, chunkRows: 8 }))
        .rejects.toThrow(`${file}:41: ${messages[i]}`);
      expect(encoder.encoded).toBe(0);
    }
  });

  test('progress: the check, then the encoding, each up to the whole file; a finished cache reports one encode stage', async () => {
    const cacheDir = path.join(dir, 'stages');
    const size = fs.statSync(collection).size;
    const reports: Array<[string, number, number]> = [];
    await encodeCollection({
      collection, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8, onProgress: (p) => reports.push([p.stage, p.bytes, p.rows]),
    });
    const checks = reports.filter(([stage]) => stage === 'check');
    expect(checks).toEqual([['check', 0, 0], ['check', size, 0]]);
    expect(reports.slice(0, 2)).toEqual(checks);  // all before the first encode report
    expect(reports[2]).toEqual(['encode', 0, 0]);
    expect(reports[reports.length - 1]).toEqual(['encode', size, N]);
    const again: typeof reports = [];
    await encodeCollection({ collection, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8, onProgress: (p) => again.push([p.stage, p.bytes, p.rows]) });
    expect(again).toEqual([['encode', size, N]]);
  });

  test('progress of a collection ending in empty lines (no passage after the last) also reaches the whole file', async () => {
    const file = path.join(dir, 'trailing-empty.tsv');
    fs.writeFileSync(file, 'a\tun\nb\tdeux\n\n\r\n\n');
    const size = fs.statSync(file).size;
    const cacheDir = path.join(dir, 'trailing-empty');
    for (const expected of [[['check', size], ['encode', size]], [['encode', size]]]) {  // encoded, then from the cache
      const last = new Map<string, number>();
      await encodeCollection({ collection: file, cacheDir, identity, encoder: new HashEncoder(), onProgress: (p) => last.set(p.stage, p.bytes) });
      expect([...last]).toEqual(expected);
    }
  });

  test('stopped while it checks (past 64k lines), nothing is encoded and the next call does it all', async () => {
    const file = path.join(dir, 'long-check.tsv');
    fs.writeFileSync(file, Array.from({ length: 70_000 }, (_, i) => `l${i}\t${i}\n`).join(''));
    const cacheDir = path.join(dir, 'long-check');
    const controller = new AbortController();
    const checked: number[] = [];
    const first = new HashEncoder();
    await expect(encodeCollection({
      collection: file, cacheDir, identity, encoder: first, signal: controller.signal,
      onProgress: (p) => { if (p.stage === 'check' && p.bytes > 0) { checked.push(p.bytes); controller.abort(); } },
    })).rejects.toMatchObject({ name: 'EncodeInterrupted', rows: 0 });
    expect(first.encoded).toBe(0);
    expect(checked).toHaveLength(1);
    expect(checked[0]).toBeLessThan(fs.statSync(file).size);  // the first 64k-line report, mid-file
    const second = new HashEncoder();
    const encoded = await encodeCollection({ collection: file, cacheDir, identity, encoder: second });
    expect([second.encoded, encoded.rows, encoded.cachedRows]).toEqual([70_000, 70_000, 0]);
  });

  // `camembed eval --collection <(zcat collection.tsv.gz)`: a pipe can be read only once, so it is
  // checked as it is encoded. A second open of the FIFO would wait for a writer for good: one that
  // writes nothing comes every 2 s, so that such a reader fails rather than hangs.
  test('a collection through a FIFO (read once) gives the same ids and vectors; a duplicate there is still an error', async () => {
    const throughFifo = async (name: string, content: string, cacheDir: string) => {
      const fifo = path.join(dir, name);
      execFileSync('mkfifo', [fifo]);
      fs.createWriteStream(fifo).end(content);
      const unblock = setInterval(() => {
        try {
          fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
        } catch {
          // no reader waiting
        }
      }, 2000);
      try {
        return await encodeCollection({ collection: fifo, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8 });
      } finally {
        clearInterval(unblock);
      }
    };
    const encoded = await throughFifo('collection.fifo', fs.readFileSync(collection, 'utf8'), path.join(dir, 'fifo'));
    expect(encoded.ids).toEqual(reference.ids);
    expect(await allVectors(encoded)).toEqual(reference.vectors);
    // No later run could find a pipe's cache (its modification time is new at each run): its
    // folder is temporary, and release() removes it. A failed run leaves none either.
    expect([encoded.kept, path.relative(path.join(dir, 'fifo'), encoded.dir)]).toEqual([false, expect.stringMatching(/^pipe\.tmp-\d+-[0-9a-f]{8}$/)]);
    await encoded.release();
    expect(fs.readdirSync(path.join(dir, 'fifo'))).toEqual([]);
    await expect(throughFifo('dup.fifo', 'z\tzéro\n\na\tun\nb\tdeux\na\ttrois\n', path.join(dir, 'fifo-dup')))
      .rejects.toThrow(`${path.join(dir, 'dup.fifo')}:5: duplicate passage id 'a'`);
    expect(fs.readdirSync(path.join(dir, 'fifo-dup'))).toEqual([]);
  });

  test("the command line's second Ctrl-C (removeTrackedTemporaries) removes a pipe's temporary folder too", () => {
    trackTemporaries();  // as the command line does
    const folder = temporaryPath(path.join(dir, 'pipe'));
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'vectors-000000.f32'), new Uint8Array(20));
    removeTrackedTemporaries();  // it was an EISDIR error
    expect(fs.existsSync(folder)).toBe(false);
  });

  test('chunks of more rows than a call takes arguments (200,000)', async () => {
    const big = path.join(dir, 'big.tsv');
    fs.writeFileSync(big, Array.from({ length: 200_001 }, (_, i) => `b${i}\t${i}\n`).join(''));
    const cacheDir = path.join(dir, 'big-chunks');
    for (const expected of [0, 200_001]) {
      const encoded = await encodeCollection({ collection: big, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 200_000 });
      expect(encoded.cachedRows).toBe(expected);
      expect(encoded.rows).toBe(200_001);
      expect(encoded.ids[199_999]).toBe('b199999');
    }
  });

  test('past 2^24 passages (the most one JavaScript Set holds), a resume reads on and still finds duplicates', async () => {
    // A cache of 2^24 passages written here (encoding them would take minutes), then the two
    // lines after them: a new passage (it was 'Set maximum size exceeded') and a duplicate of the first one.
    const rows = 2 ** 24;
    const big = path.join(dir, 'past-2-24.tsv');
    const ids = Array.from({ length: rows }, (_, i) => i.toString(36));
    const head = `${ids.join('\tx\n')}\tx\n`;
    fs.writeFileSync(big, `${head}p-last\tx\n0\tx\n`);
    const oneDim: StreamEncoder = {
      async *encodeStream(texts) { for await (const _ of texts) yield { data: new Float32Array([1]), rows: 1, dim: 1 }; },
    };
    const cacheDir = path.join(dir, 'past-2-24');
    // A call stopped before it starts names the cache folder of this collection, where the chunk goes.
    const stopped = await encodeCollection({ collection: big, cacheDir, identity, encoder: oneDim, signal: AbortSignal.abort() })
      .catch((err: unknown) => err as EncodeInterrupted);
    expect(stopped).toMatchObject({ name: 'EncodeInterrupted', rows: 0 });
    const chunk = { rows, vectors: 'vectors-000000.f32', ids: 'ids-000000.txt', endOffset: Buffer.byteLength(head), endLine: rows };
    fs.writeFileSync(path.join(stopped.dir, chunk.ids), ids.join('\n'));
    fs.writeFileSync(path.join(stopped.dir, chunk.vectors), new Uint8Array(rows * 4));
    const manifest = {
      format: 'camembed-embedding-cache', version: 1, dim: 1, chunks: [chunk], complete: false,
      identity: { ...identity, collection: await fileIdentity(big) },
    };
    fs.writeFileSync(path.join(stopped.dir, 'manifest.json'), JSON.stringify(manifest));
    const progress: EncodeProgress[] = [];
    await expect(encodeCollection({ collection: big, cacheDir, identity, encoder: oneDim, onProgress: (p) => progress.push(p) }))
      .rejects.toThrow(`${big}:${rows + 2}: duplicate passage id '0' (first on line 1)`);
    expect(progress[0]).toMatchObject({ stage: 'check', cachedRows: rows });  // resumed from the chunk written here
  });

  test('another model or an edited collection gets its own cache', async () => {
    const cacheDir = path.join(dir, 'keys');
    const a = await encodeCollection({ collection, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8 });
    const b = await encodeCollection({ collection, cacheDir, identity: { ...identity, model: 'other' }, encoder: new HashEncoder(), chunkRows: 8 });
    expect(b.dir).not.toBe(a.dir);
    expect(b.cachedRows).toBe(0);
    const edited = path.join(dir, 'edited.tsv');
    fs.copyFileSync(collection, edited);
    const c1 = await encodeCollection({ collection: edited, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8 });
    fs.appendFileSync(edited, 'extra\tun passage de plus\n');
    const encoder = new HashEncoder();
    const c2 = await encodeCollection({ collection: edited, cacheDir, identity, encoder, chunkRows: 8 });
    expect(c2.dir).not.toBe(c1.dir);
    expect(encoder.encoded).toBe(N + 1);
  });

  test('a touched, moved or copied collection keeps its cache (keyed by content, not by name or date)', async () => {
    const cacheDir = path.join(dir, 'by-content');
    const file = path.join(dir, 'kept.tsv');
    fs.copyFileSync(collection, file);
    const first = await encodeCollection({ collection: file, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8 });
    const moved = path.join(dir, 'moved.tsv');
    const copied = path.join(dir, 'copied.tsv');
    const later = new Date(Date.now() + 3600_000);
    const changes: Array<[string, () => string]> = [
      ['touched', () => { fs.utimesSync(file, later, later); return file; }],
      ['moved', () => { fs.renameSync(file, moved); return moved; }],
      ['copied', () => { fs.copyFileSync(moved, copied); return copied; }],
    ];
    for (const [what, change] of changes) {
      const encoder = new HashEncoder();
      const again = await encodeCollection({ collection: change(), cacheDir, identity, encoder, chunkRows: 8 });
      expect({ what, dir: again.dir, cachedRows: again.cachedRows, encoded: encoder.encoded }).toEqual({ what, dir: first.dir, cachedRows: N, encoded: 0 });
      expect(await allVectors(again)).toEqual(reference.vectors);
    }
  });

  test('a collection rewritten in place at the same size and modification time gets its own cache', async () => {
    // As two writes within one tick of the clock that stamps files (or FAT's 2 s) leave it.
    const cacheDir = path.join(dir, 'same-stat');
    const file = path.join(dir, 'same-stat.tsv');
    const stamp = new Date('2026-01-01T00:00:00Z');
    fs.copyFileSync(collection, file);
    fs.utimesSync(file, stamp, stamp);
    const before = await encodeCollection({ collection: file, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 8 });
    const text = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, text.replace('passage numéro 7\n', 'passage numéro 8\n'), { flag: 'r+' });
    fs.utimesSync(file, stamp, stamp);
    expect(fs.statSync(file).size).toBe(Buffer.byteLength(text));
    const encoder = new HashEncoder();
    const after = await encodeCollection({ collection: file, cacheDir, identity, encoder, chunkRows: 8 });
    expect(after.dir).not.toBe(before.dir);
    expect(encoder.encoded).toBe(N);
    const vectors = await allVectors(after);
    expect(vectors.subarray(7 * DIM, 8 * DIM)).toEqual(reference.vectors.subarray(8 * DIM, 9 * DIM));
  });

  test('bad collections and encoders', async () => {
    const cacheDir = path.join(dir, 'bad');
    const dup = path.join(dir, 'dup.tsv');
    fs.writeFileSync(dup, 'z\tzéro\n\na\tun\nb\tdeux\na\ttrois\n');
    await expect(encodeCollection({ collection: dup, cacheDir, identity, encoder: new HashEncoder() }))
      .rejects.toThrow(`${dup}:5: duplicate passage id 'a' (first on line 3)`);
    const empty = path.join(dir, 'empty.tsv');
    fs.writeFileSync(empty, '');
    await expect(encodeCollection({ collection: empty, cacheDir, identity, encoder: new HashEncoder() }))
      .rejects.toThrow(/the collection has no passages/);
    const dropping: StreamEncoder = {
      async *encodeStream(texts) { for await (const _ of texts) { /* returns nothing */ } },
    };
    await expect(encodeCollection({ collection, cacheDir, identity, encoder: dropping }))
      .rejects.toThrow(/returned 50 fewer vectors than it was given texts/);
    await expect(encodeCollection({ collection, cacheDir, identity, encoder: new HashEncoder(), chunkRows: 0 }))
      .rejects.toThrow(RangeError);
  });
});

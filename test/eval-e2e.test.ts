// `camembed eval` end to end with the tiny random-weight model: passages of ../shared/corpus
// are the collection, and some of them are also the queries. A query's own passage has the same
// text, hence the same vector (cosine 1), so with the true qrels every metric must be 1.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { main } from '../lib/cli';
import { EncodeInterrupted, EncodeProgress } from '../lib/eval/embedding-cache';
import { readQrels } from '../lib/eval/formats';
import { evaluate, Run } from '../lib/eval/metrics';
import { evaluateRetrieval } from '../lib/eval/retrieval';
import { VectorIndex } from '../lib/vector-index';
import { makeRandom } from './helpers/random';
import { withTerminalStderr } from './helpers/terminal';

const shared = path.resolve(__dirname, '../../shared');
const model = path.join(shared, 'models/tiny-random-camembert');
const passagesFile = path.join(shared, 'corpus/fr-passages.dev.txt');
const available = fs.existsSync(model) && fs.existsSync(passagesFile);
if (!available) console.warn(`skipping eval end-to-end tests: ${model} or ${passagesFile} is missing (../shared not present)`);
const describeShared = available ? describe : describe.skip;

/** `camembed eval` with these arguments: its exit code and standard output. */
async function evalCli(args: string[]): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => { out.push(String(chunk)); return true; });
  try {
    return { code: await main(['eval', ...args]), out: out.join('') };
  } finally {
    spy.mockRestore();
  }
}

const PASSAGES = 1000;
const QUERY_EVERY = 5; // 200 queries
const METRICS = ['MRR@10', 'nDCG@10', 'MAP@10', 'Recall@10', 'Recall@100', 'Recall@500'];

describeShared('camembed eval with the tiny random model', () => {
  let dir: string;
  let files: { collection: string; queries: string; qrels: string };  // evaluateRetrieval's options
  let shuffledQrels: string;
  let beirQrels: string;
  let queryIds: string[];

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-eval-e2e-'));
    // Distinct texts only: two identical passages would tie at cosine 1 and one of them would lose.
    const texts = [...new Set(fs.readFileSync(passagesFile, 'utf8').split('\n').filter((t) => t !== ''))].slice(0, PASSAGES);
    expect(texts.length).toBe(PASSAGES);
    const ids = texts.map((_, i) => `doc${i}`);
    queryIds = ids.filter((_, i) => i % QUERY_EVERY === 0).map((id) => `q-${id}`);
    const queryDocs = queryIds.map((q) => q.slice(2));
    // Control: each query judged against another query's passage (a seeded derangement: a
    // shuffle, then every query takes the passage of the next one in shuffled order).
    const random = makeRandom(2024);
    const order = queryDocs.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const shuffledDoc = new Map(order.map((q, n) => [q, queryDocs[order[(n + 1) % order.length]]]));
    files = {
      collection: path.join(dir, 'collection.tsv'),
      queries: path.join(dir, 'queries.tsv'),
      qrels: path.join(dir, 'qrels.trec'),
    };
    shuffledQrels = path.join(dir, 'qrels-shuffled.tsv');
    fs.writeFileSync(files.collection, texts.map((t, i) => `${ids[i]}\t${t}\n`).join(''));
    fs.writeFileSync(files.queries, queryIds.map((q, n) => `${q}\t${texts[n * QUERY_EVERY]}\n`).join(''));
    fs.writeFileSync(files.qrels, queryIds.map((q, n) => `${q} 0 ${queryDocs[n]} 1\n`).join(''));
    fs.writeFileSync(shuffledQrels, queryIds.map((q, n) => `${q}\t${shuffledDoc.get(n)}\n`).join(''));
    // BEIR form, graded: the query's own passage 2, another query's 1, a third one judged 0.
    beirQrels = path.join(dir, 'qrels-beir.tsv');
    fs.writeFileSync(beirQrels, 'query-id\tcorpus-id\tscore\r\n' + queryIds.map((q, n) =>
      `${q}\t${queryDocs[n]}\t2\r\n${q}\t${shuffledDoc.get(n)}\t1\r\n${q}\tdoc${n * QUERY_EVERY + 1}\t0\r\n`).join(''));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('each query finds its own passage first: every metric is 1; the TREC run says so', async () => {
    const runFile = path.join(dir, 'run.trec');
    const result = await evaluateRetrieval({
      model, ...files, k: 500, metrics: METRICS, cacheDir: path.join(dir, 'cache-main'), runFile,
    });
    expect(result.metrics).toEqual(Object.fromEntries(METRICS.map((m) => [m, 1])));
    expect(result).toMatchObject({ passages: PASSAGES, cachedPassages: 0, queries: queryIds.length, queriesWithoutText: 0, k: 500 });
    expect(fs.readdirSync(path.join(dir, 'cache-main')).map((key) => path.join(dir, 'cache-main', key))).toEqual([result.cacheDir]);

    const lines = fs.readFileSync(runFile, 'utf8').trimEnd().split('\n').map((l) => l.split(' '));
    expect(lines.length).toBe(queryIds.length * 500);
    queryIds.forEach((q, n) => {
      const block = lines.slice(n * 500, (n + 1) * 500);
      expect(block[0].slice(0, 4)).toEqual([q, 'Q0', q.slice(2), '1']);
      expect(Number(block[0][4])).toBeCloseTo(1, 5);
      expect(block.map((l) => Number(l[3]))).toEqual(Array.from({ length: 500 }, (_, r) => r + 1));
      expect(new Set(block.map((l) => l[2])).size).toBe(500);
    });
  });

  test('shuffled qrels score near chance', async () => {
    const result = await evaluateRetrieval({
      model, ...files, qrels: shuffledQrels, k: 500, metrics: METRICS, cacheDir: path.join(dir, 'cache-main'),
    });
    expect(result.cachedPassages).toBe(PASSAGES); // the collection came from the cache
    // Chance: a query's own passage takes rank 1, so a judged passage (another query's) lands
    // at a rank uniform over 2..1000 when the model knows nothing: P(rank <= 100) = 99/999 =
    // 0.099 (binomial sd over 200 queries: 0.021) and E[MRR@10] = (H(10) - 1)/999 = 0.0019.
    // A random-weight model is not uniform (some passages are near every query), so the bounds
    // allow about 5 sd on each side: Recall@100 in [0.02, 0.2], MRR@10 < 0.05 — both far from
    // the 1.0 of the true qrels.
    expect(result.metrics['Recall@100']).toBeGreaterThan(0.02);
    expect(result.metrics['Recall@100']).toBeLessThan(0.2);
    expect(result.metrics['MRR@10']).toBeLessThan(0.05);
    expect(result.metrics['Recall@500']).toBeGreaterThan(0.3); // chance 499/999 = 0.5
    expect(result.metrics['Recall@500']).toBeLessThan(0.7);
  });

  test('seconds.checkCollection is 0 when every passage comes from the cache (nothing is checked)', async () => {
    // A clock that moves a second a call: the time until encodeCollection's first report (the
    // cache read) would show as a check that never ran.
    let clock = Date.now();
    const now = jest.spyOn(Date, 'now').mockImplementation(() => (clock += 1000));
    try {
      const result = await evaluateRetrieval({ model, ...files, k: 500, metrics: ['MRR@10'], cacheDir: path.join(dir, 'cache-main') });
      expect(result.cachedPassages).toBe(PASSAGES);
      expect(result.seconds.checkCollection).toBe(0);
      expect(result.seconds.encodeCollection).toBeGreaterThan(0);
    } finally {
      now.mockRestore();
    }
  });

  test('a collection all in the cache: on a terminal its encode bar is full, with no rate (it showed 0 B/s); off one, nothing is drawn', async () => {
    const options = { model, ...files, k: 500, metrics: ['MRR@10'], cacheDir: path.join(dir, 'cache-main'), progress: true };
    const draws = await withTerminalStderr(async (written) => {
      expect((await evaluateRetrieval(options)).cachedPassages).toBe(PASSAGES);
      return written.join('').split('\n').map((line) => line.slice(line.lastIndexOf('\r') + 1));
    });
    const size = fs.statSync(files.collection).size;
    const amount = `${(size / 1024).toFixed(1)} KiB`;
    expect(draws.filter((draw) => draw.startsWith('encode passages'))).toEqual([`encode passages  [${'#'.repeat(24)}] 100.0%  ${amount}/${amount}  ETA 0:00\x1b[K`]);
    expect(draws.filter((draw) => draw.startsWith('search queries'))).toEqual([expect.stringMatching(/ETA 0:00  \S+\/s\x1b\[K$/)]);  // work done: a rate

    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await evaluateRetrieval(options);
      expect(stderr).not.toHaveBeenCalled();
    } finally {
      stderr.mockRestore();
    }
  });

  test('an interrupted encode resumes from the cache and gives the same table', async () => {
    const cacheDir = path.join(dir, 'cache-resume');
    const controller = new AbortController();
    await expect(evaluateRetrieval({
      model, ...files, k: 500, metrics: METRICS, cacheDir, chunkRows: 128, signal: controller.signal,
      onEncodeProgress: (p) => { if (p.chunks === 3) controller.abort(); },
    })).rejects.toBeInstanceOf(EncodeInterrupted);
    // Stopped as chunk 3 is written: the rest of the encoder's batch in progress (4,096 texts,
    // here the whole collection) is written too.

    const encoded: number[] = [];
    const result = await evaluateRetrieval({
      model, ...files, k: 500, metrics: METRICS, cacheDir, chunkRows: 128, onEncodeProgress: (p) => encoded.push(p.rows),
    });
    expect(result.cachedPassages).toBe(PASSAGES);
    expect(encoded[0]).toBe(PASSAGES);
    expect(result.passages).toBe(PASSAGES);
    expect(result.metrics).toEqual(Object.fromEntries(METRICS.map((m) => [m, 1])));
    // Interrupted with nothing left to encode: it stops before the search, leaving no run file.
    const runFile = path.join(dir, 'interrupted.trec');
    await expect(evaluateRetrieval({
      model, ...files, k: 500, metrics: METRICS, cacheDir, chunkRows: 128, signal: AbortSignal.abort(), runFile,
    })).rejects.toMatchObject({ name: 'AbortError' });
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('interrupted'))).toEqual([]);
    // Interrupted while the index is built from the cache's chunks: it stops at the next chunk, not once all are read.
    const stopping = new AbortController();
    const add = jest.spyOn(VectorIndex.prototype, 'add').mockImplementation(() => stopping.abort());
    try {
      await expect(evaluateRetrieval({ model, ...files, k: 500, metrics: METRICS, cacheDir, chunkRows: 128, signal: stopping.signal }))
        .rejects.toMatchObject({ name: 'AbortError' });
      expect(add).toHaveBeenCalledTimes(1);
    } finally {
      add.mockRestore();
    }
  });

  test('a collection through a pipe leaves no cache behind (none could be found again), after a run or an interrupted one', async () => {
    const cacheDir = path.join(dir, 'cache-pipe');
    const throughFifo = async (name: string, options: { signal?: AbortSignal; onEncodeProgress?: (p: EncodeProgress) => void } = {}) => {
      const fifo = path.join(dir, name);
      execFileSync('mkfifo', [fifo]);
      const writer = fs.createWriteStream(fifo).on('error', () => undefined);  // an interrupted run stops reading
      writer.end(fs.readFileSync(files.collection));
      try {
        return await evaluateRetrieval({ model, ...files, collection: fifo, k: 500, metrics: METRICS, cacheDir, chunkRows: 128, ...options });
      } finally {
        writer.destroy();
      }
    };
    const result = await throughFifo('collection.fifo');
    expect([result.passages, result.cachedPassages, result.metrics]).toEqual([PASSAGES, 0, Object.fromEntries(METRICS.map((m) => [m, 1]))]);
    expect(fs.readdirSync(cacheDir)).toEqual([]);
    expect(result.cacheDir).toBeNull();  // it named the folder just removed
    const controller = new AbortController();
    await expect(throughFifo('interrupted.fifo', { signal: controller.signal, onEncodeProgress: (p) => { if (p.chunks === 3) controller.abort(); } }))
      .rejects.toThrow(new EncodeInterrupted(PASSAGES, 'unused', false));
    expect(fs.readdirSync(cacheDir)).toEqual([]);
  });

  test('equal scores are ranked as trec_eval ranks them (docid descending), in the run file as in the metrics', async () => {
    // Two identical passages tie at cosine 1 with the query; 'd5' > 'd10' as strings, so d5 comes
    // first and the relevant d10 second: MRR@3 = 0.5 (ascending order would have said 1).
    const tie = path.join(dir, 'tie');
    fs.mkdirSync(tie);
    const [text, other] = fs.readFileSync(files.collection, 'utf8').split('\n').map((l) => l.split('\t')[1]);
    const write = (name: string, body: string) => { fs.writeFileSync(path.join(tie, name), body); return path.join(tie, name); };
    const runFile = path.join(tie, 'run.trec');
    const result = await evaluateRetrieval({
      model, collection: write('c.tsv', `d10\t${text}\nd7\t${other}\nd5\t${text}\n`), queries: write('q.tsv', `q0\t${text}\n`),
      qrels: write('r.trec', 'q0 0 d10 1\n'), k: 3, metrics: ['MRR@3', 'nDCG@3'], cacheDir: path.join(tie, 'cache'), runFile,
    });
    const ranked = fs.readFileSync(runFile, 'utf8').trimEnd().split('\n').map((l) => l.split(' ').slice(2, 4).join(' '));
    expect(ranked).toEqual(['d5 1', 'd10 2', 'd7 3']);
    expect(result.metrics).toEqual({ 'MRR@3': 0.5, 'nDCG@3': 1 / Math.log2(3) });
  });

  test('a run file that cannot be written fails before any passage is encoded', async () => {
    let reports = 0;
    await expect(evaluateRetrieval({
      model, ...files, k: 500, metrics: METRICS, cacheDir: path.join(dir, 'cache-no-run'),
      runFile: path.join(dir, 'no-such-folder', 'run.trec'), onEncodeProgress: () => { reports++; },
    })).rejects.toThrow(/ENOENT/);
    expect(reports).toBe(0);
  });

  test('a model folder whose prompt or pooling settings changed gets a fresh cache (same ONNX graph, other vectors)', async () => {
    const edited = path.join(dir, 'edited-model');
    fs.cpSync(model, edited, { recursive: true, filter: (f) => !f.includes('golden') });
    const small = path.join(dir, 'small');
    fs.mkdirSync(small);
    const write = (name: string, body: string) => { fs.writeFileSync(path.join(small, name), body); return path.join(small, name); };
    const texts = fs.readFileSync(files.collection, 'utf8').split('\n').slice(0, 20).map((l) => l.split('\t')[1]);
    const options = {
      model: edited, collection: write('c.tsv', texts.map((t, i) => `d${i}\t${t}\n`).join('')),
      queries: write('q.tsv', `q0\t${texts[0]}\n`), qrels: write('r.trec', 'q0 0 d0 1\n'),
      k: 10, metrics: ['MRR@10'], cacheDir: path.join(small, 'cache'),
    };
    const first = await evaluateRetrieval(options);
    expect(await evaluateRetrieval(options)).toMatchObject({ cachedPassages: 20, cacheDir: first.cacheDir });
    const edit = (file: string, change: (json: Record<string, unknown>) => object) =>
      fs.writeFileSync(path.join(edited, file), JSON.stringify(change(JSON.parse(fs.readFileSync(path.join(edited, file), 'utf8')))));
    edit('config_sentence_transformers.json', (c) => ({ ...c, prompts: { passage: 'passage : ' }, default_prompt_name: 'passage' }));
    const prompted = await evaluateRetrieval(options);
    expect(prompted.cachedPassages).toBe(0);
    edit('1_Pooling/config.json', (c) => ({ ...c, include_prompt: false }));
    expect((await evaluateRetrieval(options)).cachedPassages).toBe(0);
  });

  test('the model is keyed by its graph and weights: a moved or copied folder keeps the cache, other weights under the same graph do not', async () => {
    // Without its model.onnx, the folder's weights are converted to onnx/model.onnx + model.onnx.data (every weight).
    const converted = path.join(dir, 'converted-model');
    fs.cpSync(model, converted, { recursive: true, filter: (f) => !f.includes('golden') && path.basename(f) !== 'model.onnx' });
    const small = path.join(dir, 'small-key');
    fs.mkdirSync(small);
    const write = (name: string, body: string) => { fs.writeFileSync(path.join(small, name), body); return path.join(small, name); };
    const texts = fs.readFileSync(files.collection, 'utf8').split('\n').slice(0, 20).map((l) => l.split('\t')[1]);
    const options = {
      collection: write('c.tsv', texts.map((t, i) => `d${i}\t${t}\n`).join('')),
      queries: write('q.tsv', `q0\t${texts[0]}\n`), qrels: write('r.trec', 'q0 0 d0 1\n'),
      k: 10, metrics: ['MRR@10'], cacheDir: path.join(small, 'cache'),
    };
    const first = await evaluateRetrieval({ ...options, model: converted });
    expect(first.cachedPassages).toBe(0);
    const moved = path.join(dir, 'moved-model');
    fs.renameSync(converted, moved);
    expect(await evaluateRetrieval({ ...options, model: moved })).toMatchObject({ cachedPassages: 20, cacheDir: first.cacheDir });
    const copied = path.join(dir, 'copied-model');
    fs.cpSync(moved, copied, { recursive: true });
    expect(await evaluateRetrieval({ ...options, model: copied })).toMatchObject({ cachedPassages: 20, cacheDir: first.cacheDir });
    // Every weight negated (the sign bit of each float32): the graph file is the same bytes.
    const data = path.join(copied, 'onnx', 'model.onnx.data');
    const weights = fs.readFileSync(data);
    for (let i = 3; i < weights.length; i += 4) weights[i] ^= 0x80;
    fs.writeFileSync(data, weights);
    const negated = await evaluateRetrieval({ ...options, model: copied });
    expect(negated.cachedPassages).toBe(0);
    expect(negated.cacheDir).not.toBe(first.cacheDir);
  });

  test('BEIR graded qrels: --min-relevance 2 counts only the own passage; nDCG is the same at both levels', async () => {
    const runFile = path.join(dir, 'run-beir.trec');
    const { code, out } = await evalCli(['--model', model, '--collection', files.collection, '--queries', files.queries,
      '--qrels', beirQrels, '--k', '100', '--metrics', 'MRR@10,Recall@100,nDCG@10', '--min-relevance', '2', '--json',
      '--run', runFile, '--cache', path.join(dir, 'cache-main')]);
    expect(code).toBe(0);
    const two = JSON.parse(out);
    expect(two.minRelevance).toBe(2);
    // At level 2 the own passage (rank 1) is the only relevant one.
    expect(two.metrics['MRR@10']).toBe(1);
    expect(two.metrics['Recall@100']).toBe(1);
    // The run file scored by evaluate() gives the same numbers.
    const run: Run = {};
    for (const [q, , d, , score] of fs.readFileSync(runFile, 'utf8').trimEnd().split('\n').map((l) => l.split(' '))) {
      (run[q] ??= {})[d] = Number(score);
    }
    const qrels = await readQrels(beirQrels);
    expect(two.metrics).toEqual(evaluate(run, qrels, ['MRR@10', 'Recall@100', 'nDCG@10'], { minRelevance: 2 }));

    const one = await evaluateRetrieval({
      model, ...files, qrels: beirQrels, k: 100, metrics: ['MRR@10', 'Recall@100', 'nDCG@10'], cacheDir: path.join(dir, 'cache-main'),
    });
    expect(one.minRelevance).toBe(1);
    expect(one.metrics).toEqual(evaluate(run, qrels, ['MRR@10', 'Recall@100', 'nDCG@10']));
    // At level 1 another query's passage is relevant too: found by chance only (about 10% within 100, see above).
    expect(one.metrics['MRR@10']).toBe(1);
    expect(one.metrics['Recall@100']).toBeLessThan(0.7);
    expect(one.metrics['nDCG@10']).toBe(two.metrics['nDCG@10']);
  });

  test('without --k the CLI retrieves enough for every metric, as evaluateRetrieval does (1000, or a larger cutoff)', async () => {
    const { code, out } = await evalCli(['--model', model, '--collection', files.collection, '--queries', files.queries,
      '--qrels', shuffledQrels, '--metrics', 'MRR@10,Recall@1500', '--json', '--cache', path.join(dir, 'cache-main')]);
    expect(code).toBe(0);  // it was a usage error: '--k (1000) must be at least the largest metric cutoff (1500)'
    const json = JSON.parse(out);
    const library = await evaluateRetrieval({ model, ...files, qrels: shuffledQrels, metrics: ['MRR@10', 'Recall@1500'], cacheDir: path.join(dir, 'cache-main') });
    expect({ requestedK: json.requestedK, metrics: json.metrics }).toEqual({ requestedK: 1500, metrics: library.metrics });
    expect(library.requestedK).toBe(1500);
  });

  test("a count of one takes the singular: '1 judged query has no text', '1 query searched', '1 passage', 'clamped to the 1 passage'", async () => {
    const file = (name: string, text: string) => { fs.writeFileSync(path.join(dir, name), text); return path.join(dir, name); };
    const stderr: string[] = [];
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => { stderr.push(String(chunk)); return true; });
    let result: { code: number; out: string };
    try {
      result = await evalCli(['--model', model, '--collection', file('one-collection.tsv', 'd1\tle chat dort\n'),
        '--queries', file('one-queries.tsv', 'q1\tle chat\n'), '--qrels', file('one-qrels.trec', 'q1 0 d1 1\nq2 0 d1 1\n'),
        '--k', '10', '--metrics', 'MRR@10', '--cache', path.join(dir, 'cache-one')]);
    } finally {
      spy.mockRestore();
    }
    expect(result.code).toBe(0);
    expect(stderr.join('')).toBe(`camembed eval: 1 judged query has no text in ${path.join(dir, 'one-queries.tsv')}; it scores 0\n`);
    expect(result.out).toContain('\n1 query searched, 2 evaluated (judged with a passage of relevance >= 1), 1 passage (0 from the cache), ' +
      'k = 1 (10 asked, clamped to the 1 passage), device cpu\n');
  });

  test('k above the collection size: the table, the JSON and the run file all give the k the search used', async () => {
    const runFile = path.join(dir, 'clamped.trec');
    const { code, out: text } = await evalCli(['--model', model, '--collection', files.collection, '--queries', files.queries,
      '--qrels', files.qrels, '--k', '1500', '--metrics', 'MRR@10,Recall@100', '--run', runFile, '--cache', path.join(dir, 'cache-main')]);
    expect(code).toBe(0);
    expect(text).toContain(`${PASSAGES} passages (${PASSAGES} from the cache), k = ${PASSAGES} (1500 asked, clamped to the ${PASSAGES} passages), device`);
    const json = JSON.parse(text.slice(text.indexOf('{')));
    expect({ k: json.k, requestedK: json.requestedK }).toEqual({ k: PASSAGES, requestedK: 1500 });
    const lines = fs.readFileSync(runFile, 'utf8').trimEnd().split('\n');
    expect(lines.length).toBe(queryIds.length * PASSAGES);
    expect(lines.filter((line) => line.startsWith(`${queryIds[0]} `)).map((line) => Number(line.split(' ')[3])))
      .toEqual(Array.from({ length: PASSAGES }, (_, i) => i + 1));
    // Within the collection nothing is clamped, nor said to be.
    const { out: exact } = await evalCli(['--model', model, '--collection', files.collection, '--queries', files.queries,
      '--qrels', files.qrels, '--k', String(PASSAGES), '--metrics', 'MRR@10', '--cache', path.join(dir, 'cache-main')]);
    expect(exact).toContain(`k = ${PASSAGES}, device`);
  });

  test('the CLI prints the table and the JSON', async () => {
    const { code, out: text } = await evalCli(['--model', model, '--collection', files.collection, '--queries', files.queries,
      '--qrels', shuffledQrels, '--k', '100', '--metrics', 'MRR@10,Recall@100', '--cache', path.join(dir, 'cache-main')]);
    expect(code).toBe(0);
    const json = JSON.parse(text.slice(text.indexOf('{')));
    expect(Object.keys(json.metrics)).toEqual(['MRR@10', 'Recall@100']);
    expect(json.cachedPassages).toBe(PASSAGES);
    const row = /^Recall@100\s+(\d+\.\d\d)$/m.exec(text);
    expect(row).not.toBeNull();
    expect(Number(row![1])).toBeCloseTo(100 * json.metrics['Recall@100'], 2);
  });
});

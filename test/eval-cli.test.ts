// `camembed eval` argument errors: all caught before any model is loaded.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { main } from '../lib/cli';
import { evaluateRetrieval } from '../lib/eval/retrieval';

async function runCli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const err: string[] = [], out: string[] = [];
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((c) => { err.push(String(c)); return true; });
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((c) => { out.push(String(c)); return true; });
  try {
    const code = await main(['eval', ...args]);
    return { code, stderr: err.join(''), stdout: out.join('') };
  } finally {
    e.mockRestore();
    o.mockRestore();
  }
}

let dir: string;
let files: string[];
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-eval-cli-'));
  const write = (name: string, text: string) => { const f = path.join(dir, name); fs.writeFileSync(f, text); return f; };
  files = ['--collection', write('c.tsv', 'd1\tun\n'), '--queries', write('q.tsv', 'q1\tun\n'), '--qrels', write('r.trec', 'q1 0 d1 1\n')];
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('camembed eval usage errors (exit code 2)', () => {
  test.each([
    [['--collection', 'c.tsv'], /--queries is required/],
    [['--metrics', 'MRR@10,ERR@5'], /--metrics: unknown metric 'ERR@5'/],
    [['--k', '50'], /--k \(50\) must be at least the largest metric cutoff \(500\)/],
    [['--k', '0', '--metrics', 'P@1'], /--k must be a positive integer/],
    [['--device', 'gpu'], /--device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'/],
    [['--dtype', 'int8'], /--dtype must be float32 or float16/],
    [['--frobnicate'], /unknown option --frobnicate/],
    [['extra'], /unexpected argument 'extra'/],
    [['--run', '-'], /--run must be a file/],
    [['--min-relevance', '0'], /--min-relevance must be a positive integer, got '0'/],
    [['--min-relevance', 'high'], /--min-relevance must be a positive integer, got 'high'/],
    // A search on CUDA takes k <= 2046: it failed after the whole collection was encoded.
    [['--device', 'cuda', '--k', '3000'], /^camembed eval: --k must be <= 2046 with --device cuda, got 3000\n$/],
    [['--device', 'cuda:1', '--metrics', 'Recall@5000'],
      /^camembed eval: --metrics: a cutoff of 5000 needs k >= 5000, but a search with --device cuda:1 takes k <= 2046\n$/],
  ])('%j', async (args, message) => {
    const base = args[0] === '--collection' ? [] : files;
    const { code, stderr } = await runCli([...base, ...args]);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });

  test('--help lists the options', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    for (const option of ['--collection', '--queries', '--qrels', '--k', '--device', '--run', '--cache', '--batch-size', '--json', '--min-relevance']) {
      expect(stdout).toContain(option);
    }
  });
});

describe('evaluateRetrieval input errors', () => {
  test('missing files and malformed qrels are reported before loading the model', async () => {
    const [c, q, r] = [files[1], files[3], files[5]];
    await expect(evaluateRetrieval({ model: 'unused', collection: path.join(dir, 'none.tsv'), queries: q, qrels: r }))
      .rejects.toThrow(/collection file not found: .*none\.tsv/);
    const bad = path.join(dir, 'bad.trec');
    fs.writeFileSync(bad, 'q1 0 d1\n');
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: bad }))
      .rejects.toThrow(`${bad}:1: expected 'qid 0 docid relevance'`);
    // Judgements without a relevant document would otherwise fail only after the whole collection is encoded.
    const unjudged = path.join(dir, 'zeros.trec');
    fs.writeFileSync(unjudged, 'q1 0 d1 0\n');
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: unjudged }))
      .rejects.toThrow(`${unjudged}: no query with a relevant document (relevance >= 1)`);
    // Likewise at a relevance level that no judgement reaches (r.trec judges q1/d1 at 1).
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: r, minRelevance: 2 }))
      .rejects.toThrow(`${r}: no query with a relevant document (relevance >= 2)`);
    // Qrels of other queries (another split): an error before days of encoding, not a table of zeros.
    const otherSplit = path.join(dir, 'other-split.trec');
    fs.writeFileSync(otherSplit, 'q999 0 d1 1\n');
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: otherSplit }))
      .rejects.toThrow(`none of the 1 query ${otherSplit} judges relevant is among the`);
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: r, minRelevance: 0 }))
      .rejects.toThrow('options.minRelevance must be an integer >= 1, got 0');
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: r, k: 5, metrics: ['nDCG@10'] }))
      .rejects.toThrow(RangeError);
    // A search on CUDA takes k <= 2046: found at the first search, after the whole collection was encoded.
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: r, device: 'cuda', k: 3000 }))
      .rejects.toThrow(new RangeError('options.k must be <= 2046 on CUDA, got 3000'));
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: r, device: 'cuda:0', metrics: ['Recall@5000'] }))
      .rejects.toThrow(new RangeError('options.metrics: a cutoff of 5000 needs k >= 5000, but a search on CUDA takes k <= 2046'));
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: r, metrics: [] }))
      .rejects.toThrow(/metrics must be a non-empty array/);
    await expect(evaluateRetrieval({ model: 'unused', collection: c, queries: q, qrels: r, metrics: 'MRR@10' as unknown as string[] }))
      .rejects.toThrow(/metrics must be a non-empty array/);
  });
});

// Files of the MS MARCO / ir_datasets world: `id<TAB>text` collections and queries (read as a
// stream, resumable from a byte offset), qrels (TREC `qid iter docid rel`, `qid<TAB>docid`, or
// BEIR's `query-id<TAB>corpus-id<TAB>score` after its header), and TREC run files
// (`qid Q0 docid rank score tag`). Every format error names file and line.
import * as fs from 'fs';
import { followLinks } from '../atomic-file';
import { ioError } from '../io-error';
import { takeLock } from '../lock-file';
import { flatten, FormatError, mapBatches, readTextLineBatches, readTextLines } from '../lines';
import { counted, describeValue, requireInteger, requireObject, requireString } from '../validate';
import type { Qrels } from './metrics';

/** One `id<TAB>text` line of a TSV file (readTsv). */
export interface TextRecord {
  /** Everything before the first tab. */
  id: string;
  /** Everything after the first tab. */
  text: string;
  /** 1-based line number in the file. */
  line: number;
  /** Byte offset just past this record's line: pass it as `startOffset` to resume after it. */
  endOffset: number;
}

/**
 * Reads an MS MARCO / ir_datasets TSV file (`id<TAB>text` per line; empty lines are skipped) as
 * a stream. `startOffset`/`startLine` resume after a record already read (its `endOffset`/`line`).
 * Bad arguments throw here, not at the first next().
 */
export function readTsv(file: string, options: { startOffset?: number | undefined; startLine?: number | undefined } = {}):
  AsyncGenerator<TextRecord, void, undefined> {
  return flatten(readTsvBatches(file, options));
}

/** readTsv's records in batches (arrays), as readTextLineBatches gives the lines: for readers that would otherwise await each record. */
export function readTsvBatches(file: string, options: { startOffset?: number | undefined; startLine?: number | undefined } = {}):
  AsyncGenerator<TextRecord[], void, undefined> {
  requireString('file', file);
  requireObject('options', options, ['startOffset', 'startLine']);
  const startOffset = options.startOffset === undefined ? 0 : requireInteger('options.startOffset', options.startOffset, 0);
  const startLine = options.startLine === undefined ? 0 : requireInteger('options.startLine', options.startLine, 0);
  return mapBatches(readTextLineBatches(file, { offset: startOffset, line: startLine }),
    ({ text, line, endOffset }) => (text === '' ? undefined : tsvRecord(file, text, line, endOffset)));
}

// qrels and TREC runs separate their fields by whitespace (Python's split() also at \x1c-\x1f and
// \x85), and trec_eval reads a NUL as the end of its text ("may contain no NULL characters"): an
// id holding one could never be judged, and written in a run it would break the file's lines.
const NOT_IN_ID = /[\s\p{Cc}]/u;

function tsvRecord(file: string, text: string, line: number, endOffset: number): TextRecord {
  const tab = text.indexOf('\t');
  if (tab < 0) throw new FormatError(file, line, "expected 'id<TAB>text' but found no tab");
  if (tab === 0) throw new FormatError(file, line, "expected 'id<TAB>text' but the id is empty");
  if (NOT_IN_ID.test(text.slice(0, tab))) {
    throw new FormatError(file, line, `the id ${JSON.stringify(text.slice(0, tab))} contains whitespace or a control character`);
  }
  // A copy of a long id, not a slice: V8 makes a slice of 13 characters or more point into its whole
  // line, so the ids eval keeps (one per passage, to the end) would hold every passage's text too:
  // gigabytes, past V8's heap limit, for millions of passages with UUID-like ids. Shorter slices
  // are copies already (the copy cost a third of reading MS MARCO-like lines).
  const id = text.slice(0, tab);
  return { id: tab < 13 ? id : Buffer.from(id).toString(), text: text.slice(tab + 1), line, endOffset };
}

/** Reads a whole TSV file into `[id, text]` pairs, rejecting duplicate ids. */
export async function readTsvEntries(file: string): Promise<Array<[string, string]>> {
  const entries: Array<[string, string]> = [];
  const seen = new Map<string, number>();
  for await (const { id, text, line } of readTsv(file)) {
    const first = seen.get(id);
    if (first !== undefined) throw new FormatError(file, line, `duplicate id '${id}' (first on line ${first})`);
    seen.set(id, line);
    entries.push([id, text]);
  }
  return entries;
}

// The qrels forms, told apart once by the first non-empty line; every line after it is read the
// same way. BEIR's form (qrels/<split>.tsv) is read as BEIR's GenericDataLoader._load_qrels reads
// it (beir-cellar/beir, beir/datasets/data_loader.py): the header line skipped, then query-id,
// corpus-id and an integer score per line.
interface QrelsForm {
  name: string;
  fields: number;
  /** Field indices of the query id, the document id and the relevance (null: relevance 1). */
  qid: number; docid: number; relevance: number | null;
  /** The first line, when the form has a header. */
  header?: readonly string[];
}
const QRELS_FORMS: readonly QrelsForm[] = [
  { name: "TREC 'qid iter docid relevance'", fields: 4, qid: 0, docid: 2, relevance: 3 },
  { name: "'qid<TAB>docid'", fields: 2, qid: 0, docid: 1, relevance: null },
  { name: "BEIR 'query-id<TAB>corpus-id<TAB>score'", fields: 3, qid: 0, docid: 1, relevance: 2, header: ['query-id', 'corpus-id', 'score'] },
];
const EXPECTED_QRELS = "expected 'qid 0 docid relevance' (4 fields), 'qid<TAB>docid' (2 fields) " +
  "or BEIR's header 'query-id<TAB>corpus-id<TAB>score' followed by 3-field lines";

/**
 * Reads qrels in one of three forms, the same for every line of a file: TREC
 * `qid iter docid relevance` (iter ignored); two columns `qid docid` meaning relevance 1; or
 * BEIR's `qrels/*.tsv`, a header line `query-id<TAB>corpus-id<TAB>score` then
 * `qid docid relevance`. Fields are separated by spaces or tabs. Relevance is an integer.
 */
export async function readQrels(file: string): Promise<Qrels> {
  requireString('file', file);
  // Null-prototype objects: an id such as '__proto__' stays an ordinary key.
  const qrels: Qrels = Object.create(null);
  let form: QrelsForm | undefined;
  let judgements = 0;
  for await (const { text, line } of readTextLines(file)) {
    const fields = text.trim().split(/\s+/);
    if (fields[0] === '') continue;
    if (form === undefined) {
      form = QRELS_FORMS.find((f) => f.fields === fields.length);
      const header = form?.header;
      if (form === undefined || (header !== undefined && fields.some((field, i) => field !== header[i]))) {
        throw new FormatError(file, line, `${EXPECTED_QRELS}; found ${JSON.stringify(text)}`);
      }
      if (header !== undefined) continue;
    }
    if (fields.length !== form.fields) {
      throw new FormatError(file, line, `has ${counted(fields.length, 'field')} but the file is ${form.name}, ${form.fields} fields a line`);
    }
    const [qid, docid] = [fields[form.qid], fields[form.docid]];
    const rel = form.relevance === null ? '1' : fields[form.relevance];
    if (!/^[+-]?\d+$/.test(rel)) throw new FormatError(file, line, `relevance must be an integer, got '${rel}'`);
    const judged = qrels[qid] ?? (qrels[qid] = Object.create(null) as Record<string, number>);
    if (docid in judged) throw new FormatError(file, line, `duplicate judgement for query '${qid}', document '${docid}'`);
    judged[docid] = Number(rel);
    judgements++;
  }
  if (judgements === 0) throw new FormatError(file, 1, `no judgements found (the file is empty${form?.header ? ' but for its header' : ''})`);
  return qrels;
}

/** A run file's column value (a tag, a qid, a docid): as an id of a TSV file (NOT_IN_ID). */
export function requireToken(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '' || NOT_IN_ID.test(value)) {
    throw new TypeError(`${name} must be a non-empty string without whitespace or control characters, got ${describeValue(value)}`);
  }
  return value;
}

/** A writer dropped without close() or abort() closes its file and releases its lock when collected (its `.partial` stays). */
const unclosedWriters = new FinalizationRegistry<{ out: fs.WriteStream; release: () => void }>(({ out, release }) => {
  out.destroy();
  release();
});

/**
 * Writes a TREC run file, `qid Q0 docid rank score tag` per line, ranks from 1. The file appears
 * under its name only on `close()` (written beside it, then renamed), so a run cut short never
 * looks complete.
 */
export class TrecRunWriter {
  /**
   * The stream's first error: it may come between two writes, and fails the next one (and close()).
   * Kept apart from `this` so that the stream's listener doesn't keep a dropped writer alive.
   */
  private readonly failure: { error: Error | null } = { error: null };
  /** Set by close() and abort(): the stream is then ended, and Node's messages for it name no file. */
  private ended: 'closed' | 'aborted' | null = null;
  /** Queries written: trec_eval would merge a second ranking of one into the first. */
  private readonly qids = new Set<string>();
  /** Whether a line written held '#' (the warning comes once). */
  private holdsHash = false;

  private constructor(private readonly file: string, private readonly tag: string, private readonly out: fs.WriteStream,
    /** Releases the lock on the file (takeLock's). */
    private readonly release: () => void) {
    const failure = this.failure;
    out.on('error', (err) => { failure.error ??= ioError('write to', `${file}.partial`, err); });
    unclosedWriters.register(this, { out, release }, this);
  }

  /** Opens a writer; the run appears as `file` on close() (`options.tag`: the tag column, default 'camembed'). */
  static async open(file: string, options: { tag?: string | undefined } = {}): Promise<TrecRunWriter> {
    requireString('file', file);
    const { tag: given } = requireObject('options', options, ['tag']);
    const tag = given === undefined ? 'camembed' : requireToken('options.tag', given);
    // Through symbolic links, as index save writes: the rename replaces the file a link names, not the link.
    const target = await followLinks(file);
    // Two runs of one file each truncated and wrote the other's .partial: the second is refused (LockHeld).
    const release = takeLock(`${target}.lock`, `the run file ${file}`);
    try {
      const out = fs.createWriteStream(`${target}.partial`);
      await new Promise<void>((resolve, reject) => out.once('open', () => resolve()).once('error', reject));
      return new TrecRunWriter(target, tag, out, release);
    } catch (err) {
      release();
      throw err;
    }
  }

  /** One query's ranking, best first, each document once; `scores` must not increase. */
  async write(qid: string, docids: readonly string[], scores: ArrayLike<number>): Promise<void> {
    this.assertOpen('write');
    requireToken('qid', qid);
    if (this.qids.has(qid)) throw new Error(`query '${qid}' is already in the run: write each query's ranking once`);
    if (!Array.isArray(docids)) throw new TypeError('docids must be an array of strings');
    if (scores === null || typeof scores !== 'object' || scores.length !== docids.length) {
      throw new TypeError(`scores must be an array of ${counted(docids.length, 'number')} (one per docid)`);
    }
    // trec_eval refuses a run that ranks a document twice for one query ('duplicate docs').
    const first = new Map<string, number>();
    const lines: string[] = [];
    for (let i = 0; i < docids.length; i++) {
      const seen = first.get(docids[i]);
      if (seen !== undefined) throw new RangeError(`docids[${i}] is '${docids[i]}' again (docids[${seen}]): a ranking holds each document once`);
      first.set(docids[i], i);
      const score = scores[i];
      if (typeof score !== 'number' || !Number.isFinite(score)) throw new TypeError(`scores[${i}] must be a finite number, got ${score}`);
      if (i > 0 && score > scores[i - 1]) throw new RangeError(`scores must not increase: scores[${i}] = ${score} > scores[${i - 1}] = ${scores[i - 1]}`);
      // 9 significant digits: every float32 score reads back exactly.
      lines.push(`${qid} Q0 ${requireToken(`docids[${i}]`, docids[i])} ${i + 1} ${score.toPrecision(9)} ${this.tag}\n`);
    }
    if (this.failure.error !== null) throw this.failure.error;
    this.qids.add(qid);
    const text = lines.join('');
    // A valid run, which pytrec_eval's parse_run reads as written; trec_eval (get_trec_results.c)
    // takes a line starting with '#' for a comment and leaves every line holding one out of its count.
    if (!this.holdsHash && text.includes('#')) {
      this.holdsHash = true;
      process.emitWarning(`${this.file}: the lines of query '${qid}' hold '#', which trec_eval misreads (a comment mark ` +
        'to it): score this run with pytrec_eval, or map such ids first');
    }
    if (!this.out.write(text)) {
      // A write that fails (disk full, file too large) ends the stream ('error', then 'close'), never in 'drain'.
      await new Promise<void>((resolve, reject) => {
        const settle = () => {
          this.out.off('drain', settle).off('close', settle);
          if (this.failure.error !== null) reject(this.failure.error); else if (this.out.destroyed) reject(new Error(`${this.file}.partial was closed`)); else resolve();
        };
        if (this.out.destroyed) settle(); else this.out.once('drain', settle).once('close', settle);
      });
    }
  }

  private assertOpen(operation: string): void {
    if (this.ended !== null) throw new Error(`TrecRunWriter.${operation}: the run ${this.file} is already ${this.ended}`);
  }

  /** Finishes the file and renames it into place (`file`). */
  async close(): Promise<void> {
    this.assertOpen('close');
    if (this.failure.error !== null) throw this.failure.error;
    this.ended = 'closed';
    unclosedWriters.unregister(this);
    await new Promise<void>((resolve, reject) => this.out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    await fs.promises.rename(`${this.file}.partial`, this.file);
    this.release();
  }

  /** Drops the run written so far (the `.partial` file): for a run that failed, also in close(). */
  async abort(): Promise<void> {
    this.ended ??= 'aborted';  // after close(): its file stays, only a leftover .partial goes
    unclosedWriters.unregister(this);
    if (!this.out.closed) await new Promise<void>((resolve) => this.out.once('close', () => resolve()).destroy());
    await fs.promises.rm(`${this.file}.partial`, { force: true });
    this.release();
  }
}

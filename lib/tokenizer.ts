// Sentence tokenization as sentence-transformers does it for CamemBERT: strip surrounding
// whitespace (Python's str.strip), encode with tokenizer.json (special tokens added), and
// truncate to max_seq_length keeping `</s>` last.
//
// Tokenizers.js (@huggingface/tokenizers) approximates SentencePiece's `Precompiled`
// normalizer with String.prototype.normalize('NFKC'); the Rust library (the oracle) applies
// the charsmap stored in tokenizer.json. The two disagree on combining-mark stacks, C1
// controls and characters newer than the charsmap, so we install our own `Precompiled`
// normalizer that reads the charsmap exactly as the Rust `spm_precompiled` crate does.
import * as fs from 'fs';
import * as path from 'path';
import type { Tokenizer as TokenizersJs } from '@huggingface/tokenizers' with { 'resolution-mode': 'require' };
import { readJsonFile } from './json-file';
import { configInteger, readModelConfig } from './model/config';

// The package is an ES module with a CommonJS build behind its `require` export condition;
// requiring it works from our CommonJS output and from ts-jest alike.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const tokenizersJs = require('@huggingface/tokenizers') as { Tokenizer: typeof TokenizersJs };

const SINGLE_CODE_POINT_GRAPHEMES = /^[\u0020-\u007e\u00a0-\u02ff\u2010-\u2027\u2030-\u205e\u20a0-\u20c0]*$/;

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * Whether a grapheme boundary falls at text[i] whatever comes before text[i - 2] or after
 * text[i + 2]. Only asked where no rule looks further back than the
 * code point before (see graphemeCutFrom), so segmenting five code units around it decides.
 */
function boundaryAt(text: string, i: number): boolean {
  const start = Math.max(0, i - 2);
  const cuts = new Set<number>();
  for (const { index } of graphemes.segment(text.slice(start, i + 3))) cuts.add(start + index);
  return cuts.has(i);
}

const SEGMENT_WINDOW = 4096;  // Intl.Segmenter's time grows faster than the text: segment in windows of about this

/** The code point that ends just before text[i] (two code units for a surrogate pair). */
function codePointBefore(text: string, i: number): string {
  const low = text.charCodeAt(i - 1);
  return low >= 0xdc00 && low < 0xe000 && i >= 2 ? text.slice(i - 2, i) : text[i - 1];
}

const REGIONAL_INDICATOR = /^\p{Regional_Indicator}$/u;
const PICTOGRAPHIC = /^\p{Extended_Pictographic}$/u;
// What the left side of an Indic conjunct (UAX #29 GB9c) can end with: a virama or another
// extending character (Grapheme_Cluster_Break=Extend is Grapheme_Extend plus the emoji skin-tone
// modifiers, UAX #29 table 2), or a joiner.
const EXTENDING = /^[\p{M}\p{Grapheme_Extend}\p{Emoji_Modifier}\p{Cf}]$/u;
const joinsAfterViramaCache = new Map<string, boolean>();

/** Whether a code point is an Indic conjunct consonant (InCB=Consonant) to this runtime's ICU. */
function joinsAfterVirama(char: string): boolean {
  let joins = joinsAfterViramaCache.get(char);
  if (joins === undefined) {
    // DEVANAGARI KA + VIRAMA: GB9c keeps a following consonant in the same grapheme.
    joins = [...graphemes.segment(`\u0915\u094d${char}`)].length === 1;
    if (joinsAfterViramaCache.size < 65536) joinsAfterViramaCache.set(char, joins);
  }
  return joins;
}

/**
 * How many regional indicators run back from text[i - 1], counted no further back than `floor`, a
 * grapheme boundary: one inside a run has an even number before it, so the parity is the same.
 */
function regionalIndicatorsBefore(text: string, i: number, floor: number): number {
  let count = 0;
  for (let j = i; j - 2 >= floor && REGIONAL_INDICATOR.test(text.slice(j - 2, j)); j -= 2) count++;
  return count;
}

/**
 * The first index at or after `from` (and after 0) where a grapheme boundary is certain, else the
 * text's length; `floor` (before `from`) is a boundary already known. Only three UAX #29 rules look
 * further back than the code point before a position: flag pairs (GB12-13, counted here), emoji
 * joined by ZWJ (GB11) and Indic conjuncts (GB9c). At any other pair, segmenting a few code units
 * around it decides.
 */
function graphemeCutFrom(text: string, from: number, floor: number): number {
  for (let i = Math.max(from, 1); i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xdc00 && unit < 0xe000) continue;  // inside a surrogate pair
    const before = codePointBefore(text, i);
    const here = String.fromCodePoint(text.codePointAt(i)!);
    if (REGIONAL_INDICATOR.test(before) && REGIONAL_INDICATOR.test(here)) {
      if (regionalIndicatorsBefore(text, i, floor) % 2 === 0) return i;
      continue;
    }
    const farReaching = (before === '\u200d' && PICTOGRAPHIC.test(here)) || (EXTENDING.test(before) && joinsAfterVirama(here));
    if (!farReaching && boundaryAt(text, i)) return i;
  }
  return text.length;
}

/** The grapheme clusters of `text`, segmented in windows of about `window` code units. */
export function* graphemeSegments(text: string, window = SEGMENT_WINDOW): Generator<string> {
  for (let start = 0; start < text.length;) {
    const end = graphemeCutFrom(text, start + window, start);
    for (const { segment } of graphemes.segment(text.slice(start, end))) yield segment;
    start = end;
  }
}

/**
 * SentencePiece's precompiled normalization map: a darts-clone double-array trie over UTF-8
 * byte strings whose values are offsets into a blob of NUL-terminated replacement strings.
 * Layout (sentencepiece normalizer.cc): uint32 LE trie size in bytes, the trie units, the blob.
 */
class PrecompiledCharsmap {
  private readonly units: Uint32Array;
  private readonly replacements: Buffer;
  private readonly cache = new Map<string, string | null>();

  constructor(base64: string) {
    const blob = Buffer.from(base64, 'base64');
    if (blob.length < 4) throw new Error('precompiled_charsmap is truncated');
    const trieBytes = blob.readUInt32LE(0);
    if (trieBytes % 4 !== 0 || 4 + trieBytes > blob.length) throw new Error('precompiled_charsmap has a bad trie size');
    this.units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = blob.readUInt32LE(4 + 4 * i);
    this.replacements = blob.subarray(4 + trieBytes);
  }

  /** The replacement of the shortest key that prefixes `chunk`, as spm_precompiled's transform. */
  private transform(chunk: string): string | null {
    const cached = this.cache.get(chunk);
    if (cached !== undefined) return cached;
    const key = Buffer.from(chunk, 'utf8');
    const u = this.units;
    // darts-clone unit fields: offset, label, has_leaf, value.
    const offset = (unit: number) => (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
    let node = offset(u[0]);
    let result: string | null = null;
    for (const byte of key) {
      if (byte === 0) break;
      node ^= byte;
      const unit = u[node];
      if (unit === undefined || (unit & 0x800000ff) >>> 0 !== byte) break;
      node ^= offset(unit);
      if ((unit >>> 8) & 1) {
        const start = u[node] & 0x7fffffff;
        let end = start;
        while (end < this.replacements.length && this.replacements[end] !== 0) end++;
        result = this.replacements.toString('utf8', start, end);
        break; // the shortest match wins
      }
    }
    if (this.cache.size < 65536) this.cache.set(chunk, result);
    return result;
  }

  /** Whole graphemes under 6 UTF-8 bytes are looked up first, then each code point. */
  normalize(text: string): string {
    let out = '';
    // Fast path: in these ranges every code point is a grapheme of its own (no combining marks,
    // joiners, CR LF or emoji), so segmenting would give single code points anyway.
    if (SINGLE_CODE_POINT_GRAPHEMES.test(text)) {
      for (const char of text) out += this.transform(char) ?? char;
      return out;
    }
    for (const segment of graphemeSegments(text)) {
      if (Buffer.byteLength(segment, 'utf8') < 6) {
        const whole = this.transform(segment);
        if (whole !== null) {
          out += whole;
          continue;
        }
      }
      for (const char of segment) out += this.transform(char) ?? char;
    }
    return out;
  }
}

// Python's str.isspace() characters (bidi classes WS, B, S and category Zs), which
// sentencepiece-transformers' `text.strip()` removes; JS's trim() differs (it strips U+FEFF but
// not U+001C..U+001F or U+0085).
const PY_WHITESPACE = '\t\n\u000b\u000c\r\u001c\u001d\u001e\u001f \u0085\u00a0\u1680' +
  '\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';
const WHITESPACE_UNITS = new Set(Array.from(PY_WHITESPACE, (c) => c.charCodeAt(0)));

// Two index scans (all those characters are single UTF-16 units): linear in the text, where an
// end-anchored regular expression rescans every inner run of spaces.
export function pythonStrip(text: string): string {
  let start = 0, end = text.length;
  while (start < end && WHITESPACE_UNITS.has(text.charCodeAt(start))) start++;
  while (end > start && WHITESPACE_UNITS.has(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

export interface TokenizerOptions {
  /** Truncate to this many tokens, `<s>` and `</s>` included (default: the model's max_seq_length). */
  maxLength: number;
}

/**
 * The pad token's id as a tokenizer's own files name it, as transformers' fast tokenizers find it: tokenizer_config.json's
 * pad_token, else special_tokens_map.json's, else tokenizer.json's padding (PreTrainedTokenizerFast); null when none does.
 */
function namedPadTokenId(dir: string, config: Record<string, unknown>, json: Record<string, unknown>, tokenizer: TokenizersJs): number | null {
  const mapFile = path.join(dir, 'special_tokens_map.json');
  const padding = json.padding as { pad_token?: unknown } | null | undefined;
  const sources: [string, () => unknown][] = [
    [`${path.join(dir, 'tokenizer_config.json')}: pad_token`, () => config.pad_token],
    [`${mapFile}: pad_token`, () => (fs.existsSync(mapFile) ? readJsonFile(mapFile).pad_token : undefined)],
    [`${path.join(dir, 'tokenizer.json')}: padding.pad_token`, () => padding?.pad_token],
  ];
  for (const [source, read] of sources) {
    const token = read();
    if (token === undefined || token === null) continue;
    // A plain string, or an AddedToken written out as { content, ... } by older transformers.
    const content = typeof token === 'object' ? (token as { content?: unknown }).content : token;
    const id = typeof content === 'string' ? tokenizer.token_to_id(content) : undefined;
    if (id === undefined) throw new Error(`${source} ${JSON.stringify(content)} is not in the vocabulary`);
    return id;
  }
  return null;
}

/**
 * The pad token's id: the one the tokenizer's files name (namedPadTokenId). transformers would next take the tokenizer
 * class's default ('<pad>', BERT's '[PAD]'), which camembed does not know: config.json's pad_token_id (the model's
 * padding index, which those defaults are) stands for it.
 */
function padTokenOf(dir: string, config: Record<string, unknown>, json: Record<string, unknown>, tokenizer: TokenizersJs): number {
  const named = namedPadTokenId(dir, config, json, tokenizer);
  if (named !== null) return named;
  // Read and checked as the encoder reads the model's config (lib/model/config.ts).
  const model = fs.existsSync(path.join(dir, 'config.json')) ? readModelConfig(dir) : null;
  if (model === null || (model.settings.pad_token_id ?? null) === null) {
    throw new Error(`${dir}: no pad token: none of tokenizer_config.json, special_tokens_map.json, tokenizer.json's padding ` +
      'or config.json\'s pad_token_id names one');
  }
  const id = configInteger(model, 'pad_token_id');
  if (tokenizer.id_to_token(id) === undefined) throw new Error(`${model.file}: pad_token_id ${id} is not a token id of the vocabulary`);
  return id;
}

/** A folder's tokenizer.json and, when there, tokenizer_config.json, read by tokenizers.js. */
function readTokenizer(dir: string): { file: string; json: Record<string, unknown>; config: Record<string, unknown>; tokenizer: TokenizersJs } {
  const file = path.join(dir, 'tokenizer.json');
  const json = readJsonFile(file);
  const configFile = path.join(dir, 'tokenizer_config.json');
  const config = fs.existsSync(configFile) ? readJsonFile(configFile) : {};  // a plain transformers model may have none
  try {
    // Truncation and padding are ours to do (per batch); the JS library ignores these keys anyway.
    return { file, json, config, tokenizer: new tokenizersJs.Tokenizer({ ...json, truncation: null, padding: null }, config) };
  } catch (err) {
    // tokenizers.js says what is wrong ('Tokenizer must contain a "decoder" property'), not in which file.
    throw new Error(`${file}: ${(err as Error).message}`);
  }
}

/** The tokens the post-processor puts around a text (`<s>` and `</s>`, BERT's [CLS] and [SEP]): their ids. */
function boundaryTokenIds(file: string, tokenizer: TokenizersJs): { startId: number; endId: number } {
  const ids = tokenizer.encode('').ids;
  if (ids.length === 0) throw new Error(`${file}: its post-processor adds no special tokens (<s> and </s>, or [CLS] and [SEP])`);
  return { startId: ids[0], endId: ids[ids.length - 1] };
}

/**
 * The special tokens of a tokenizer folder, from its own files only (for a model made around it): its pad token
 * (null when its files name none) and the first and last tokens its post-processor adds.
 */
export function tokenizerSpecialTokens(dir: string): { padId: number | null; startId: number; endId: number } {
  const { file, json, config, tokenizer } = readTokenizer(dir);
  return { padId: namedPadTokenId(dir, config, json, tokenizer), ...boundaryTokenIds(file, tokenizer) };
}

export class SentenceTokenizer {
  readonly maxLength: number;
  readonly padTokenId: number;
  /** The token the post-processor puts last, which truncation keeps: `</s>`, BERT's `[SEP]`. */
  readonly endTokenId: number;
  private readonly tokenizer: TokenizersJs;

  private constructor(tokenizer: TokenizersJs, maxLength: number, padTokenId: number, endTokenId: number,
    private readonly wordSeparators: ReadonlySet<string> | null) {
    this.tokenizer = tokenizer;
    this.maxLength = maxLength;
    this.padTokenId = padTokenId;
    this.endTokenId = endTokenId;
  }

  /** Reads tokenizer.json and, when there, tokenizer_config.json from a model folder (padTokenId: see padTokenOf). */
  static load(dir: string, options: TokenizerOptions): SentenceTokenizer {
    const { file, json, config, tokenizer } = readTokenizer(dir);
    const normalizer = json.normalizer as { type?: string; precompiled_charsmap?: string } | null;
    let charsmap: PrecompiledCharsmap | null;
    try {
      charsmap = normalizer?.type === 'Precompiled' && typeof normalizer.precompiled_charsmap === 'string'
        ? new PrecompiledCharsmap(normalizer.precompiled_charsmap) : null;
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message}`);
    }
    let precompiled: ((text: string) => string) | null = null;
    if (charsmap !== null) {
      // The library calls `this.normalizer(text)`; a plain function is a valid callable there.
      // Rust's WhitespaceSplit splits on Unicode White_Space, which includes U+0085 (NEL) that
      // the JS one (/\S+/) keeps; turning it into a space before the split gives the same pieces.
      precompiled = (text) => charsmap.normalize(text).replace(/\u0085/g, ' ');
      (tokenizer as unknown as { normalizer: (text: string) => string }).normalizer = precompiled;
    }
    const maxLength = options.maxLength;
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new RangeError(`maxLength must be an integer >= 2 (room for <s> and </s>), got ${maxLength}`);
    }
    // tokenizers.js's Unigram appends each word's pieces with push(...pieces), which overflows the
    // stack for a word of ~100k pieces (a long base64 string): append them one by one.
    const model = (tokenizer as unknown as { model: { tokenize?: (word: string) => string[]; encode: (words: string[]) => string[] } }).model;
    const { tokenize } = model;
    if (typeof tokenize === 'function') {
      model.encode = (words) => {
        const pieces: string[] = [];
        for (const word of words) for (const piece of tokenize.call(model, word)) pieces.push(piece);
        return pieces;
      };
    }
    // Where a word can end: a space, and the whitespace graphemes SentencePiece's map turns into one
    // (it maps a grapheme alone as in any text), e.g. \n, \t, \r\n; not \u000b, which it removes.
    const separators = splitsAtSpaces(json)
      ? new Set([' ', ...(precompiled === null ? [] : [...PY_WHITESPACE, '\r\n'].filter((g) => precompiled(g) === ' '))]) : null;
    // Read off the post-processor, not tokenizer_config.json's eos_token, which BERT's lacks (its texts end in [SEP]).
    const { endId } = boundaryTokenIds(file, tokenizer);
    return new SentenceTokenizer(tokenizer, maxLength, padTokenOf(dir, config, json, tokenizer), endId, separators);
  }

  /** Token ids of one text: stripped, with `<s>`/`</s>`, truncated to maxLength with `</s>` (endTokenId) last. */
  encode(text: string): number[] {
    if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${text === null ? 'null' : typeof text}`);
    return this.encodeWithin(text, Infinity)!;
  }

  /**
   * encode(text), or null where that would tokenize more than `maxChars` characters at once (a text without a word end
   * for that long: tokenizing costs up to ~6 us a character), having tokenized less than 2 x `maxChars` to find out.
   */
  encodeWithin(text: string, maxChars: number): number[] | null {
    const stripped = pythonStrip(text);
    // Only the first maxLength - 2 pieces are kept, and with a whitespace pre-tokenizer no piece
    // spans a word boundary: a prefix cut at one gives the same first pieces. Tokenize doubling
    // prefixes until one gives more than are kept (a long text costs what its start costs).
    let ids: number[];
    for (let chars = PREFIX_CHARS_PER_TOKEN * this.maxLength; ; chars *= 2) {
      const cut = this.wordSeparators === null ? stripped.length : wordBoundaryFrom(stripped, chars, this.wordSeparators);
      if (cut > maxChars) return null;
      ids = this.tokenizer.encode(stripped.slice(0, cut)).ids;
      if (cut === stripped.length || ids.length > this.maxLength) break;
    }
    if (ids.length <= this.maxLength) return ids;
    // LongestFirst truncation of a single sequence keeps the first maxLength-2 content tokens.
    const kept = ids.slice(0, this.maxLength - 1);
    kept.push(this.endTokenId);
    return kept;
  }

  /** Token ids and attention masks (all ones: padding is added per batch) of each text. */
  tokenize(texts: readonly string[]): { ids: number[][]; attentionMask: number[][] } {
    requireStringArray('texts', texts);
    const ids = texts.map((t) => this.encode(t));
    return { ids, attentionMask: ids.map((row) => row.map(() => 1)) };
  }
}

// The first prefix's characters per kept token: French text has at most 6.8 per token (the corpus's
// texts of 20 tokens or more), so one pass suffices for almost any text.
const PREFIX_CHARS_PER_TOKEN = 8;

/**
 * The first index at or after `from` where a word ends: one of `separators` that is a grapheme of
 * its own (so the normalizer treats both sides as it does in the whole text) after a character that
 * is not whitespace; else the text's length.
 */
function wordBoundaryFrom(text: string, from: number, separators: ReadonlySet<string>): number {
  for (let i = Math.max(from, 1); i < text.length; i++) {
    if (!WHITESPACE_UNITS.has(text.charCodeAt(i)) || WHITESPACE_UNITS.has(text.charCodeAt(i - 1))) continue;
    const end = text.startsWith('\r\n', i) ? i + 2 : i + 1;  // CR LF is one grapheme
    if (separators.has(text.slice(i, end)) && boundaryAt(text, i) && (end === text.length || boundaryAt(text, end))) return i;
  }
  return text.length;
}

/**
 * Whether tokens never span a space: a Unigram model after a whitespace pre-tokenizer
 * (WhitespaceSplit, or Metaspace splitting), and no added token with a space inside.
 */
function splitsAtSpaces(json: Record<string, unknown>): boolean {
  type Pre = { type?: string; split?: boolean; pretokenizers?: Pre[] } | null | undefined;
  const pre = json.pre_tokenizer as Pre;
  const steps = pre?.type === 'Sequence' ? pre.pretokenizers ?? [] : [pre];
  const splits = steps.some((p) => p?.type === 'WhitespaceSplit' || (p?.type === 'Metaspace' && p.split !== false));
  const added = (json.added_tokens ?? []) as { content?: unknown }[];
  return splits && (json.model as { type?: string } | undefined)?.type === 'Unigram' &&
    added.every((t) => typeof t.content === 'string' && !/\s/.test(t.content));
}

export function requireStringArray(name: string, texts: unknown): asserts texts is readonly string[] {
  if (!Array.isArray(texts)) throw new TypeError(`${name} must be an array of strings, got ${texts === null ? 'null' : typeof texts}`);
  for (let i = 0; i < texts.length; i++) {
    if (typeof texts[i] !== 'string') {
      throw new TypeError(`${name}[${i}] must be a string, got ${texts[i] === null ? 'null' : typeof texts[i]}`);
    }
  }
}

// Tokenizer parity: our wrapper over tokenizers.js against the Rust Hugging Face tokenizer (npm
// `tokenizers`, the oracle) and against the golden ids it produced for ../shared/corpus.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { graphemeSegments, pythonStrip, SentenceTokenizer } from '../lib/tokenizer';

const SHARED = path.resolve(__dirname, '../../shared');
const TOKENIZER_DIR = path.join(SHARED, 'models/camembert-base-tokenizer');
const CORPUS = path.join(SHARED, 'corpus');
const haveShared = fs.existsSync(TOKENIZER_DIR) && fs.existsSync(CORPUS);
if (!haveShared) console.warn(`tokenizer tests skipped: ${SHARED} (shared tokenizer and corpus) is missing`);
const describeShared = haveShared ? describe : describe.skip;

interface GoldenRecord { corpus: string; text: string; ids: number[] }

function readJsonl<T>(file: string): T[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as T);
}

/** Rows whose ids or masks differ, with the first few for the failure message. */
function mismatches(texts: string[], expected: number[][], actual: { ids: number[][]; attentionMask: number[][] }) {
  const bad: string[] = [];
  texts.forEach((text, i) => {
    const ids = actual.ids[i];
    const mask = actual.attentionMask[i];
    const same = ids.length === expected[i].length && ids.every((v, k) => v === expected[i][k]) &&
      mask.length === ids.length && mask.every((m) => m === 1);
    if (!same) bad.push(`${JSON.stringify(text).slice(0, 80)}: got [${ids.slice(0, 12)}] want [${expected[i].slice(0, 12)}]`);
  });
  return bad;
}

describeShared('SentenceTokenizer', () => {
  const full = () => SentenceTokenizer.load(TOKENIZER_DIR, { maxLength: 1_000_000 });
  const at128 = () => SentenceTokenizer.load(TOKENIZER_DIR, { maxLength: 128 });

  // The corpus texts, tokenized once at 128 tokens and once untruncated (the slow part).
  let records: GoldenRecord[];
  let records128: GoldenRecord[];
  let at128Result: { ids: number[][]; attentionMask: number[][] };
  beforeAll(() => {
    records = readJsonl<GoldenRecord>(path.join(CORPUS, 'tokens.dev.jsonl'));
    records128 = readJsonl<GoldenRecord>(path.join(CORPUS, 'tokens128.dev.jsonl'));
    at128Result = at128().tokenize(records128.map((r) => r.text));
  });

  test('matches the golden untruncated Rust ids and masks on every record of tokens.dev.jsonl', () => {
    expect(records.length).toBe(7318);
    expect(new Set(records.map((r) => r.corpus))).toEqual(new Set(['queries', 'passages', 'edge']));
    const texts = records.map((r) => r.text);
    expect(mismatches(texts, records.map((r) => r.ids), full().tokenize(texts))).toEqual([]);
  });

  test('matches the golden truncated Rust ids and masks on every record of tokens128.dev.jsonl', () => {
    expect(records128.length).toBe(7318);
    expect(records128.filter((r) => r.ids.length === 128 && r.ids[127] === 6).length).toBeGreaterThanOrEqual(604);
    expect(mismatches(records128.map((r) => r.text), records128.map((r) => r.ids), at128Result)).toEqual([]);
  });

  test('matches the live Rust tokenizer on the raw corpus files (queries, passages, edge cases), stripped and truncated at 128', async () => {
    const lines = (f: string) => fs.readFileSync(path.join(CORPUS, f), 'utf8').split('\n').filter((l) => l.length > 0);
    const texts = [
      ...lines('fr-queries.dev.txt'),
      ...lines('fr-passages.dev.txt'),
      ...readJsonl<{ text: string }>(path.join(CORPUS, 'fr-edge.dev.jsonl')).map((r) => r.text),
    ];
    // The golden records follow the same texts in the same order.
    expect(texts).toEqual(records128.map((r) => r.text));
    const rust = RustTokenizer.fromFile(path.join(TOKENIZER_DIR, 'tokenizer.json'));
    rust.setTruncation(128);
    rust.disablePadding();
    // sentence-transformers strips each text (Python str.strip) before its tokenizer sees it.
    const encodings = await rust.encodeBatch(texts.map(pythonStrip));
    expect(mismatches(texts, encodings.map((e) => e.getIds()), at128Result)).toEqual([]);
    expect(encodings.every((e) => e.getAttentionMask().every((m) => m === 1))).toBe(true);
  });

  test('matches the Rust tokenizer on every BMP code point and a sample of the other planes', async () => {
    // Eight probes per text keep the run short; each probe puts the code point after a letter,
    // alone, doubled, before a combining accent and at the end.
    const texts: string[] = [];
    let probes: string[] = [];
    for (let c = 0; c < 0x30000; c += c < 0x10000 ? 1 : 7) {
      if (c >= 0xd800 && c < 0xe000) continue; // lone surrogates are not valid text
      const s = String.fromCodePoint(c);
      probes.push(`é${s}a ${s}${s}\u0301 x${s}`);
      if (probes.length === 8) {
        texts.push(probes.join(' ; '));
        probes = [];
      }
    }
    const rust = RustTokenizer.fromFile(path.join(TOKENIZER_DIR, 'tokenizer.json'));
    rust.disableTruncation();
    rust.disablePadding();
    const encodings = await rust.encodeBatch(texts);
    expect(mismatches(texts, encodings.map((e) => e.getIds()), full().tokenize(texts))).toEqual([]);
  });

  test('long texts (only a prefix is tokenized) and a 200,000-character word match the Rust tokenizer', async () => {
    const passages = fs.readFileSync(path.join(CORPUS, 'fr-passages.dev.txt'), 'utf8');
    const random = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const next = random(7);
    // Spaces after non-ASCII characters, combining marks after spaces, tabs, newlines, emoji, CJK.
    const odd = ['é ', ' \u0301', '\t', '\n', ' \u{1F469}\u200D\u{1F4BB} ', '漢字 ', '\u0600 ', 'a\u00a0b ', '<mask> ', ' \r\n '];
    const texts: string[] = [];
    for (const length of [1000, 4095, 4096, 4097, 5000, 20000, 100000]) {
      const start = Math.floor(next() * (passages.length - length));
      let text = passages.slice(start, start + length);
      for (let i = 0; i < 40; i++) {
        const at = Math.floor(next() * text.length);
        text = text.slice(0, at) + odd[i % odd.length] + text.slice(at);
      }
      texts.push(text);
    }
    texts.push(`Bonjour ${'QUJD'.repeat(50000)} fin`);  // one word of ~100k pieces: the library's push(...) overflowed the stack
    // Words of ~100 pieces each.
    texts.push(Array.from({ length: 400 }, (_, i) => Buffer.from(passages.slice(i * 150, i * 150 + 150)).toString('base64')).join(' '));
    // Words ending in non-ASCII letters (Cyrillic), and 30,000 characters without a space (Han with
    // Hangul jamo, combining marks, emoji and flags mixed in): cut points other than "ASCII + space".
    texts.push('привет мир '.repeat(6000));
    // Digits and astral letters (mathematical bold) without spaces, a combining mark now and then.
    texts.push(Array.from({ length: 25000 }, (_, i) => (i % 97 === 0 ? '\u0301' : i % 3 === 0 ? String.fromCodePoint(0x1d400 + (i % 26)) : String(i % 10))).join(''));
    const pieces = ['\u1100\u1161', '\u0301', '\u{1F1EB}\u{1F1F7}', '\u{1F469}\u200D\u{1F4BB}', '\u0915\u094D\u0937', 'ﾊﾞ'];
    texts.push(Array.from({ length: 30000 }, () => {
      const r = next();
      return r < 0.05 ? pieces[Math.floor(next() * pieces.length)] : String.fromCodePoint(0x4e00 + Math.floor(next() * 0x5000));
    }).join(''));
    // No letter, digit or space at all: emoji, flags and combining marks (cut by other rules).
    texts.push(Array.from({ length: 8000 }, (_, i) => ['\u{1F600}', '\u{1F1EB}\u{1F1F7}', '\u{1F1EB}', 'e\u0301', '\u{1F469}\u200D\u{1F4BB}'][(i * i) % 5]).join(''));
    for (const maxLength of [128, 2000]) {
      const rust = RustTokenizer.fromFile(path.join(TOKENIZER_DIR, 'tokenizer.json'));
      rust.setTruncation(maxLength);
      rust.disablePadding();
      const encodings = await rust.encodeBatch(texts.map(pythonStrip));
      const ours = SentenceTokenizer.load(TOKENIZER_DIR, { maxLength }).tokenize(texts);
      expect(mismatches(texts, encodings.map((e) => e.getIds()), ours)).toEqual([]);
    }
  });

  test('words separated by newlines, tabs or other spaces but no U+0020: only a prefix is tokenized too', async () => {
    const passages = fs.readFileSync(path.join(CORPUS, 'fr-passages.dev.txt'), 'utf8');
    const words = passages.slice(0, 200000).split(/\s+/).filter((w) => w.length > 0);
    // \u000b is whitespace that the normalizer removes (it joins words): never a place to cut.
    const separators = ['\n', '\t', '\u00a0', '\u3000', '\u0085', '\r\n', '\u000b', '\n\u0301'];
    const texts = separators.map((sep) => words.slice(0, 20000).join(sep));
    texts.push(words.slice(0, 20000).map((w, i) => w + separators[i % separators.length]).join(''));
    for (const maxLength of [128, 2000]) {
      const rust = RustTokenizer.fromFile(path.join(TOKENIZER_DIR, 'tokenizer.json'));
      rust.setTruncation(maxLength);
      rust.disablePadding();
      const encodings = await rust.encodeBatch(texts.map(pythonStrip));
      const ours = SentenceTokenizer.load(TOKENIZER_DIR, { maxLength });
      const inner = (ours as unknown as { tokenizer: { encode: (text: string) => unknown } }).tokenizer;
      const encode = jest.spyOn(inner, 'encode');
      expect(mismatches(texts, encodings.map((e) => e.getIds()), ours.tokenize(texts))).toEqual([]);
      // Of each text (about 130,000 characters) a prefix of 8 x maxLength characters (or twice that,
      // and so on, a word more) was tokenized, but the one with no place to cut.
      expect(encode.mock.calls.map(([text]) => text.length).filter((n) => n > 20000)).toEqual([texts[6].length]);
    }
  });

  test('the first prefix is 8 x maxLength characters: a long French text costs about 1,000 of them at 128 tokens', async () => {
    const passages = fs.readFileSync(path.join(CORPUS, 'fr-passages.dev.txt'), 'utf8');
    const texts = [0, 1, 2, 3].map((i) => passages.slice(i * 20000, i * 20000 + 20000));
    const rust = RustTokenizer.fromFile(path.join(TOKENIZER_DIR, 'tokenizer.json'));
    rust.setTruncation(128);
    rust.disablePadding();
    const encodings = await rust.encodeBatch(texts.map(pythonStrip));
    const ours = at128();
    const encode = jest.spyOn((ours as unknown as { tokenizer: { encode: (text: string) => unknown } }).tokenizer, 'encode');
    expect(mismatches(texts, encodings.map((e) => e.getIds()), ours.tokenize(texts))).toEqual([]);
    // One pass each, on 1,024 characters up to the end of a word (it was 4,096).
    const lengths = encode.mock.calls.map(([text]) => text.length);
    expect(lengths).toHaveLength(texts.length);
    for (const n of lengths) expect(n >= 1024 && n < 1100).toBe(true);
  });

  test('prefix cuts: odd characters where the first cut is sought, and texts too sparse for the first prefix', async () => {
    const passages = fs.readFileSync(path.join(CORPUS, 'fr-passages.dev.txt'), 'utf8').replace(/\n/g, ' ');
    // A cut only shows when the last word of the prefix is among the tokens kept: k one-token words
    // ('le') first, then a word whose character `at` lies where the cut is sought (8 x maxLength).
    // 'anticonst' gives ▁anti con st, the whole word ▁anti c onstitutionnelle ment: a cut inside it
    // changes the kept ids. Around that character: \u000b (removed: it joins the halves), a space or
    // newline carrying a combining mark, CR LF, a run of spaces, no-break and ideographic spaces, a
    // combining mark or an emoji ZWJ sequence or a flag pair before the space, a non-Latin word.
    const words: [string, number][] = [['anticonstitutionnellement', 6], ['anticonst\u000bitutionnellement', 9],
      ['anticonst \u0301itutionnellement', 9], ['anticonst\n\u0301itutionnellement', 9], ['anticonst\r\nitutionnellement', 10],
      ['anticonst     itutionnellement', 11], ['anticonst\u00a0itution', 9], ['anticonst\u3000itution', 9],
      ['anticonst\u0301 itution', 10], ['anticonst\u{1F469}\u200D\u{1F4BB} itution', 14], ['anticonst\u{1F1EB}\u{1F1F7} itution', 13],
      ['противоконституционный', 8]];
    const cases: { text: string; maxLength: number; passes: number }[] = [];
    const maxLengths = [8, 16, 32];
    for (const maxLength of maxLengths) {
      const cutAt = 8 * maxLength;
      for (let k = maxLength - 6; k < maxLength; k++) {
        for (const [word, at] of words) {
          for (const shift of [-2, -1, 0, 1, 2]) {
            const head = 'le '.repeat(k).padEnd(cutAt + shift - at);
            cases.push({ text: `${head}${word} ${passages.slice(cases.length * 37, cases.length * 37 + 2 * cutAt)}`, maxLength, passes: 1 });
          }
        }
      }
      // About 40 characters a token (words of two): the first prefix holds too few tokens.
      for (const gap of [' '.repeat(80), '\n \t'.repeat(20)]) {
        cases.push({ text: Array.from({ length: 8 * maxLength }, (_, i) => `m${i % 10}${gap}`).join(''), maxLength, passes: 2 });
      }
    }
    for (const maxLength of maxLengths) {
      const mine = cases.filter((c) => c.maxLength === maxLength);
      const texts = mine.map((c) => c.text);
      const rust = RustTokenizer.fromFile(path.join(TOKENIZER_DIR, 'tokenizer.json'));
      rust.setTruncation(maxLength);
      rust.disablePadding();
      const encodings = await rust.encodeBatch(texts.map(pythonStrip));
      const ours = SentenceTokenizer.load(TOKENIZER_DIR, { maxLength });
      const encode = jest.spyOn((ours as unknown as { tokenizer: { encode: (text: string) => unknown } }).tokenizer, 'encode');
      const passes: number[][] = [];
      const ids = texts.map((text) => {
        encode.mockClear();
        const row = ours.encode(text);
        passes.push(encode.mock.calls.map(([prefix]) => prefix.length));
        return row;
      });
      expect(mismatches(texts, encodings.map((e) => e.getIds()), { ids, attentionMask: ids.map((r) => r.map(() => 1)) })).toEqual([]);
      // Each was cut (tokenized from a prefix first); the sparse ones took more than one prefix.
      mine.forEach((c, i) => {
        expect({ i, cut: passes[i][0] < pythonStrip(c.text).length, passes: passes[i].length >= c.passes }).toEqual({ i, cut: true, passes: true });
      });
    }
  });

  test('strips surrounding whitespace as Python str.strip does, not as String.trim does', () => {
    expect(pythonStrip('\u0085\u001c  mot \u00a0\u3000')).toBe('mot');
    expect(pythonStrip('\ufeffmot')).toBe('\ufeffmot'); // BOM is not whitespace for Python
    expect(pythonStrip(' a b ')).toBe('a b');
  });

  test('truncates at maxLength keeping <s> first and </s> last', () => {
    const tk = SentenceTokenizer.load(TOKENIZER_DIR, { maxLength: 8 });
    const ids = tk.encode('un deux trois quatre cinq six sept huit neuf dix onze douze');
    const untruncated = full().encode('un deux trois quatre cinq six sept huit neuf dix onze douze');
    expect(ids).toEqual([...untruncated.slice(0, 7), 6]);
    expect(tk.encode('')).toEqual([5, 6]);
  });

  test('rejects bad input and bad options with clear errors', () => {
    const tk = at128();
    expect(() => tk.tokenize(['ok', 3 as unknown as string])).toThrow(new TypeError('texts[1] must be a string, got number'));
    expect(() => tk.tokenize('abc' as unknown as string[])).toThrow(TypeError);
    expect(() => tk.encode(null as unknown as string)).toThrow(TypeError);
    expect(() => SentenceTokenizer.load(TOKENIZER_DIR, { maxLength: 1 })).toThrow(RangeError);
    expect(() => SentenceTokenizer.load(path.join(SHARED, 'no-such-folder'), { maxLength: 128 })).toThrow(/cannot read/);
  });
});

describe('graphemeSegments (the normalizer segments long texts in windows)', () => {
  test('gives the grapheme clusters of the whole text, cut wherever a window ends', () => {
    // The pieces the UAX #29 rules treat specially: flags and lone regional indicators (GB12-13),
    // emoji joined by ZWJ (GB11), Indic consonants, viramas and nuktas (GB9c), extending and spacing
    // marks, prepended concatenation marks, Hangul jamo, CR LF and controls, halfwidth voiced marks.
    const pieces = ['\u{1F1EB}\u{1F1F7}', '\u{1F1EB}', '\u{1F1F7}', '\u{1F600}', '\u{1F469}', '\u200d', '\u200c',
      '\u{1F3FB}', '\ufe0f', '\u0915', '\u0937', '\u094d', '\u093c', '\u0995', '\u09cd', '\u0301', '\u0903', '\u0600',
      '\u1100', '\u1161', '\u11a8', '\uac00', '\r', '\n', '\u0007', 'e', '7', ' ', '\uff8a', '\uff9e', '\u4e2d'];
    const random = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const next = random(11);
    for (let t = 0; t < 150; t++) {
      // Runs of one piece now and then (long flag sequences, conjunct chains, mark stacks).
      const parts: string[] = [];
      while (parts.length < 600) {
        const piece = pieces[Math.floor(next() * pieces.length)];
        const repeat = next() < 0.1 ? 1 + Math.floor(next() * 12) : 1;
        for (let r = 0; r < repeat; r++) parts.push(piece);
      }
      const text = parts.join('');
      const whole = Array.from(new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(text), (s) => s.segment);
      const window = 1 + (t % 16);
      expect({ window, text, segments: [...graphemeSegments(text, window)] }).toEqual({ window, text, segments: whole });
    }
  });

  test('keeps an Indic conjunct whole across an emoji modifier (Grapheme_Cluster_Break=Extend, not a mark)', () => {
    // KA VIRAMA, a skin-tone modifier, KA: one cluster by GB9c, cut by no window end.
    const text = '\u0915\u094d\u{1F3FB}\u0915 \u0995\u09cd\u{1F3FF}\u0995';
    const whole = Array.from(new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(text), (s) => s.segment);
    for (let window = 1; window <= text.length; window++) {
      expect({ window, segments: [...graphemeSegments(text, window)] }).toEqual({ window, segments: whole });
    }
  });
});

describe('a BERT tokenizer (WordPiece, [CLS] text [SEP])', () => {
  // The tokenizer.json of a BERT model as transformers writes it, over a small vocabulary; its
  // tokenizer_config.json names no eos_token (BERT's texts end in [SEP]), as all-MiniLM-L6-v2's.
  const special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  const letters = [...'abcdefghijklmnopqrstuvwxyz0123456789'];
  const vocabList = [...special, 'le', 'chat', 'est', 'sur', 'la', 'table', 'bonjour', 'monde', '.', ',', "'", ...letters, ...letters.map((c) => `##${c}`), '##s'];
  const vocab = Object.fromEntries(vocabList.map((token, id) => [token, id]));
  const tokenizerJson = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: special.map((content) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: Object.fromEntries(['[CLS]', '[SEP]'].map((t) => [t, { id: t, ids: [vocab[t]], tokens: [t] }])),
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-bert-tokenizer-'));
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({
      do_lower_case: true, unk_token: '[UNK]', sep_token: '[SEP]', pad_token: '[PAD]', cls_token: '[CLS]', mask_token: '[MASK]', model_max_length: 512,
    }));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('truncates keeping [SEP] last, as the Rust tokenizer (it needed an eos_token: "no eos token in the vocabulary")', async () => {
    const texts = ['  Le chat est sur la table.  ', "Bonjour le monde, le chat n'est pas sur la table, la table est sur le chat.", '', 'Élève ÇA'];
    for (const maxLength of [2, 8, 128]) {
      const rust = RustTokenizer.fromFile(path.join(dir, 'tokenizer.json'));
      rust.setTruncation(maxLength);
      rust.disablePadding();
      const encodings = await rust.encodeBatch(texts.map(pythonStrip));
      const ours = SentenceTokenizer.load(dir, { maxLength });
      expect(mismatches(texts, encodings.map((e) => e.getIds()), ours.tokenize(texts))).toEqual([]);
      expect(ours.tokenize(texts).ids.map((ids) => ids.at(-1))).toEqual(texts.map(() => vocab['[SEP]']));
    }
  });

  test('a tokenizer.json whose post-processor adds no special tokens is refused, naming the file', () => {
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ ...tokenizerJson, post_processor: null }));
    try {
      expect(() => SentenceTokenizer.load(dir, { maxLength: 8 })).toThrow(
        new Error(`${path.join(dir, 'tokenizer.json')}: its post-processor adds no special tokens (<s> and </s>, or [CLS] and [SEP])`));
    } finally {
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    }
  });

  test('the pad token: tokenizer_config.json, else special_tokens_map.json, else tokenizer.json\'s padding, else config.json\'s pad_token_id', () => {
    // tokenizer_config.json was required ("cannot read .../tokenizer_config.json: ENOENT"). A different token in each
    // place shows which one is read.
    const padDir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-pad-token-'));
    const write = (file: string, json: unknown) => fs.writeFileSync(path.join(padDir, file), JSON.stringify(json));
    const padOf = () => SentenceTokenizer.load(padDir, { maxLength: 8 }).padTokenId;
    try {
      write('tokenizer.json', { ...tokenizerJson, padding: { strategy: 'BatchLongest', direction: 'Right', pad_id: 1, pad_type_id: 0, pad_token: '[UNK]' } });
      write('tokenizer_config.json', { pad_token: '[PAD]' });
      write('special_tokens_map.json', { pad_token: { content: '[MASK]', lstrip: false } });
      write('config.json', { pad_token_id: vocab['[SEP]'] });
      expect(padOf()).toBe(vocab['[PAD]']);
      write('tokenizer_config.json', { do_lower_case: true });
      expect(padOf()).toBe(vocab['[MASK]']);
      fs.rmSync(path.join(padDir, 'tokenizer_config.json'));
      expect(padOf()).toBe(vocab['[MASK]']);
      fs.rmSync(path.join(padDir, 'special_tokens_map.json'));
      expect(padOf()).toBe(vocab['[UNK]']);
      write('tokenizer.json', tokenizerJson);  // padding: null
      expect(padOf()).toBe(vocab['[SEP]']);
      write('config.json', { pad_token_id: 100000 });
      expect(padOf).toThrow(new Error(`${path.join(padDir, 'config.json')}: pad_token_id 100000 is not a token id of the vocabulary`));
      // Checked as the encoder checks config.json (readModelConfig): 1.5 was 'not a token id of the vocabulary'.
      for (const bad of [1.5, -1, '1']) {
        write('config.json', { pad_token_id: bad });
        expect(padOf).toThrow(new Error(`${path.join(padDir, 'config.json')}: pad_token_id must be a non-negative integer, got ${JSON.stringify(bad)}`));
      }
      write('config.json', {});
      expect(padOf).toThrow(new Error(`${padDir}: no pad token: none of tokenizer_config.json, special_tokens_map.json, ` +
        'tokenizer.json\'s padding or config.json\'s pad_token_id names one'));
      write('special_tokens_map.json', { pad_token: '<pad>' });
      expect(padOf).toThrow(new Error(`${path.join(padDir, 'special_tokens_map.json')}: pad_token "<pad>" is not in the vocabulary`));
    } finally {
      fs.rmSync(padDir, { recursive: true, force: true });
    }
  });
});

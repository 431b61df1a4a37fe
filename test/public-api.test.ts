// The published declarations as an editor shows them to a user of the package: everything the
// root (dist/index.d.ts) exports, and every member of its option, result and error types, carries
// a doc comment (hover docs), and every type a public signature names is exported from the root
// by name (no `Parameters<typeof f>[1]`, no import from camembed/dist/...). Reads the d.ts files
// that `npm test`'s pretest has just compiled.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';
import { DEFAULT_METRICS, evaluate, VectorIndex } from '../lib';
import type { CudaMatrixOptions, EvaluateOptions, MetricValues, PerQueryEvaluation, VectorIndexOptions } from '../lib';

const dist = path.resolve(__dirname, '..', 'dist');
const program = ts.createProgram([path.join(dist, 'index.d.ts')], { strict: true, skipLibCheck: true, types: [] });
const checker = program.getTypeChecker();
const root = checker.getSymbolAtLocation(program.getSourceFile(path.join(dist, 'index.d.ts'))!)!;
const exported = checker.getExportsOfModule(root);

const ours = (d: ts.Declaration) => path.resolve(d.getSourceFile().fileName).startsWith(dist + path.sep);
const resolved = (s: ts.Symbol) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
const hasDoc = (s: ts.Symbol) => s.getDocumentationComment(checker).length > 0 ||
  (s.declarations ?? []).some((d) => ts.getJSDocCommentsAndTags(d).length > 0);
const isPrivate = (d: ts.Declaration) =>
  (ts.getCombinedModifierFlags(d) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) !== 0 ||
  (ts.isClassElement(d) && d.name !== undefined && ts.isPrivateIdentifier(d.name));

/** The public members of a class or interface (the class's static side too), with their qualified names. */
function membersOf(name: string, symbol: ts.Symbol): Array<[string, ts.Symbol]> {
  const members: Array<[string, ts.Symbol]> = [];
  for (const table of [symbol.members, symbol.exports]) {
    table?.forEach((member, key) => {
      const decls = member.declarations ?? [];
      if (key === '__constructor' || key === 'prototype' || decls.length === 0 || decls.every(isPrivate)) return;
      members.push([`${name}.${String(key)}`, member]);
    });
  }
  return members;
}

const publicSymbols: Array<[string, ts.Symbol]> = [];
for (const s of exported) {
  const target = resolved(s);
  if (target.flags & ts.SymbolFlags.Module) {
    // `reference`: a namespace of functions.
    for (const inner of checker.getExportsOfModule(target)) publicSymbols.push([`${s.name}.${inner.name}`, resolved(inner)]);
    continue;
  }
  publicSymbols.push([s.name, target]);
  if (target.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Interface)) publicSymbols.push(...membersOf(s.name, target));
}

test('every root export, and every public member of its classes and interfaces, has a doc comment', () => {
  const undocumented = publicSymbols.filter(([, s]) => !hasDoc(s)).map(([name]) => name);
  expect(undocumented).toEqual([]);
});

test('every type a public signature names is exported from the root by name', () => {
  const exportedTargets = new Set(exported.map(resolved));
  const missing = new Set<string>();
  const visit = (node: ts.Node, where: string) => {
    if (ts.isTypeReferenceNode(node) || ts.isExpressionWithTypeArguments(node)) {
      const name = ts.isTypeReferenceNode(node) ? node.typeName : node.expression;
      const symbol = checker.getSymbolAtLocation(name);
      const target = symbol === undefined ? undefined : resolved(symbol);
      // Type parameters and the standard library's types (Float32Array, AbortSignal) need no export.
      if (target !== undefined && !(target.flags & ts.SymbolFlags.TypeParameter) &&
        (target.declarations ?? []).some(ours) && !exportedTargets.has(target)) {
        missing.add(`${target.name} (in ${where})`);
      }
    }
    ts.forEachChild(node, (child) => visit(child, where));
  };
  // A class exported only as a type (`export type { EncodedCollection }`) cannot be constructed by a user.
  const typeOnly = new Set(exported.filter((s) => (s.declarations ?? []).some((d) => ts.isTypeOnlyExportDeclaration(d) ||
    (ts.isExportSpecifier(d) && d.parent.parent.isTypeOnly))).map(resolved));
  const constructible = (d: ts.Declaration) => !(ts.isConstructorDeclaration(d) && typeOnly.has(checker.getSymbolAtLocation(d.parent.name!)!));
  for (const [name, s] of publicSymbols) {
    for (const d of s.declarations ?? []) {
      if (isPrivate(d)) continue;
      if (ts.isClassDeclaration(d)) d.members.filter((m) => !isPrivate(m) && constructible(m)).forEach((m) => visit(m, name));
      else visit(d, name);
    }
  }
  expect([...missing].sort()).toEqual([]);
});

test("every optional option admits undefined, as the run time does (exactOptionalPropertyTypes: { cacheDir: process.env.X })", () => {
  const strict: string[] = [];
  let checked = 0;
  for (const [name, s] of publicSymbols) {
    if (!/Options$/.test(name) || !(s.flags & ts.SymbolFlags.Interface)) continue;
    s.members?.forEach((member, key) => {
      const d = member.declarations?.[0];
      if (d === undefined || !ts.isPropertySignature(d) || d.questionToken === undefined) return;
      const admitsUndefined = d.type !== undefined && ts.isUnionTypeNode(d.type) &&
        d.type.types.some((t) => t.kind === ts.SyntaxKind.UndefinedKeyword);
      if (!admitsUndefined) strict.push(`${name}.${String(key)}`);
      checked++;
    });
  }
  expect(strict).toEqual([]);
  expect(checked).toBeGreaterThan(60);  // the scan finds them (EncoderOptions alone has 10)
});

// Type-level checks against lib/ (tsc -p test/tsconfig.json, npm test's pretest, compiles them):
// a `@ts-expect-error` with no error under it fails that compile.
test('evaluate() with a perQuery known only at run time is typed as either shape, as it returns', () => {
  const options: EvaluateOptions = { perQuery: process.env.NO_SUCH_VARIABLE === undefined };
  const result = evaluate({ q: { d: 1 } }, { q: { d: 1 } }, ['MRR@10'], options);
  // @ts-expect-error: it may be { mean, perQuery } (it is here), so not MetricValues
  const values: MetricValues = result;
  const perQuery = result as PerQueryEvaluation;
  expect(perQuery.mean['MRR@10']).toBe(1);
  expect(values).toBe(result);
});

test('DEFAULT_METRICS is read-only: no caller can change the defaults of every later evaluate()', () => {
  // @ts-expect-error: readonly string[]
  expect(() => DEFAULT_METRICS.push('P@5')).toThrow(TypeError);
  expect(Object.keys(evaluate({ q: { d: 1 } }, { q: { d: 1 } }))).toEqual(['MRR@10', 'nDCG@10', 'MAP@10', 'Recall@10', 'Recall@100', 'Recall@500']);
});

test('ids may be a readonly array (as const), as the run time accepts', async () => {
  const index = new VectorIndex({ dim: 2 });
  index.add(new Float32Array([1, 0, 0, 1]), [7, 9n] as const);
  expect([...(await index.search(new Float32Array([0, 1]), { k: 1 })).ids]).toEqual([9n]);
});

test("CudaMatrixOptions names the element type and device as the rest of the API does (dtype, device: 'cuda:N')", () => {
  const options: CudaMatrixOptions = { rows: 1, dim: 2, dtype: 'float32', device: 'cuda:1' };
  const index: VectorIndexOptions = { dim: 2, dtype: options.dtype, device: options.device };
  // @ts-expect-error: a device index is written 'cuda:0'
  const numbered: CudaMatrixOptions = { rows: 1, dim: 2, device: 0 };
  // @ts-expect-error: the element type is `dtype`
  const storage: CudaMatrixOptions = { rows: 1, dim: 2, storage: 'float16' };
  // @ts-expect-error: a CudaMatrix lives on a GPU
  const cpu: CudaMatrixOptions = { rows: 1, dim: 2, device: 'cpu' };
  expect([index.device, numbered.device, storage.dtype, cpu.device]).toEqual(['cuda:1', 0, undefined, 'cpu']);
});

test('metadata may be a value of an interface type (an interface is no Record<string, unknown>), as the run time accepts', () => {
  // Compiled against the published declarations: a type error here is one every user would get.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-types-'));
  try {
    const file = path.join(dir, 'metadata.ts');
    fs.writeFileSync(file, `import { VectorIndex } from ${JSON.stringify(path.join(dist, 'index'))};
      interface IndexFacts { model: string; builtAt: string }
      const facts: IndexFacts = { model: 'm', builtAt: '2026-11-28' };
      const index = new VectorIndex({ dim: 2, metadata: facts });
      index.metadata = facts;\n`);
    const snippet = ts.createProgram([file], { strict: true, noEmit: true, skipLibCheck: true, types: [] });
    const errors = ts.getPreEmitDiagnostics(snippet, snippet.getSourceFile(file)).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    expect(errors).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  interface IndexFacts { model: string }
  const facts: IndexFacts = { model: 'm' };
  expect(new VectorIndex({ dim: 2, metadata: facts }).metadata).toEqual({ model: 'm' });
});

test('a Float16Array (lib esnext) is admitted where float16 bits are, and the declarations need no Float16Array in the lib', () => {
  // Compiled against the published declarations: with TypeScript's Float16Array, and (checking
  // the declarations themselves) with Node.js 20's types and the ES2022 lib, which have none.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-types-'));
  const compile = (lib: string, source: string) => {
    const file = path.join(dir, `${lib}.ts`);
    fs.writeFileSync(file, `import { CudaMatrix, cosineTopK, float16ToFloat32Array, meanPoolNormalize, reference } from ${JSON.stringify(path.join(dist, 'index'))};\n${source}`);
    const snippet = ts.createProgram([file], { strict: true, noEmit: true, types: ['node'], lib: [`lib.${lib}.d.ts`], skipLibCheck: lib !== 'es2022' });
    return ts.getPreEmitDiagnostics(snippet).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  };
  try {
    expect(compile('esnext', `const h = new Float16Array(4);
      meanPoolNormalize(h, new Uint8Array(2), { batch: 1, seq: 2, hidden: 2 });
      reference.cosineTopK(new Float32Array(2), h, { dim: 2, k: 1 });
      cosineTopK(new Float32Array(2), h.subarray(2), { dim: 2, k: 1 });
      const rows: Float32Array = float16ToFloat32Array(h);
      CudaMatrix.create([h, new Uint16Array(2)], { rows: 3, dim: 2 }).setRows(0, h);
      // @ts-expect-error: queries are float32
      cosineTopK(h, h, { dim: 2, k: 1 });
      // @ts-expect-error: src is float16
      float16ToFloat32Array(rows);\n`)).toEqual([]);
    expect(compile('es2022', 'float16ToFloat32Array(new Uint16Array(2));\n')).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

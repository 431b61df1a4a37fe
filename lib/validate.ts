// Argument checks shared by the public functions: every bad argument becomes a TypeError or
// RangeError that names the argument and says what was expected, before native code runs.

export type TypedArrayName =
  | 'Float32Array' | 'Uint16Array' | 'BigInt64Array' | 'Int32Array' | 'Uint8Array' | 'Float64Array';

/** The typed-array kind ('Float32Array', ...) of a value, also for arrays made in another realm
 * (vm contexts, jest), where instanceof fails. */
export function typedArrayKind(value: unknown): string | null {
  return ArrayBuffer.isView(value) ? Object.prototype.toString.call(value).slice(8, -1) : null;
}

/** What a Float32Array or a Uint16Array (float16 bits) holds. */
export function elementTypeOf(array: Float32Array | Uint16Array): 'float32' | 'float16' {
  return typedArrayKind(array) === 'Float32Array' ? 'float32' : 'float16';
}

export function typeName(value: unknown): string {
  if (value === null) return 'null';
  const kind = typedArrayKind(value);
  if (kind !== null) return kind;
  if (Array.isArray(value)) return 'Array';
  return typeof value;
}

/**
 * `value` if it is one of `allowed` (else a TypeError naming `name`), not detached, and for
 * `reader` 'native' (native code reads it) over memory that is neither shared nor resizable;
 * 'javascript' (a plain loop reads it once, synchronously) takes those. Where 'Uint16Array'
 * (float16 bits) is allowed, a Float16Array (Node.js 24+) is taken too and returned as a
 * Uint16Array over the same memory, its bits: the rest of the code and the native side see only
 * Uint16Array.
 */
export function requireTypedArray<T extends ArrayBufferView>(
  name: string, value: unknown, allowed: TypedArrayName[], reader: 'native' | 'javascript' = 'native',
): T {
  const kind = typedArrayKind(value);
  const halfBits = kind === 'Float16Array' && allowed.includes('Uint16Array');
  if (kind === null || !(halfBits || allowed.includes(kind as TypedArrayName))) {
    const names = allowed.includes('Uint16Array') ? [...allowed, 'Float16Array'] : allowed;
    throw new TypeError(`${name} must be a ${names.join(' or ')}, got ${typeName(value)}`);
  }
  if (reader === 'native' && Object.prototype.toString.call((value as ArrayBufferView).buffer) === '[object SharedArrayBuffer]') {
    throw new TypeError(`${name} is backed by a SharedArrayBuffer, which the native kernels cannot take: copy it into a ${kind}`);
  }
  // A buffer transferred away (postMessage, structuredClone) reads as empty: say so rather than
  // take an empty batch. Only a detached buffer refuses a view.
  if ((value as ArrayBufferView).byteLength === 0) {
    try {
      new Uint8Array((value as ArrayBufferView).buffer, 0, 0);
    } catch {
      throw new TypeError(`${name} is backed by a detached ArrayBuffer (transferred by postMessage or structuredClone): pass the ${kind} that received it`);
    }
  }
  // A resizable buffer could shrink under native code that is reading it (async calls).
  if (reader === 'native' && (value as ArrayBufferView & { buffer: { resizable?: boolean } }).buffer.resizable === true) {
    throw new TypeError(`${name} is backed by a resizable ArrayBuffer, which the native kernels cannot take: copy it into a ${kind}`);
  }
  if (halfBits) {
    const { buffer, byteOffset, length } = value as ArrayBufferView & { length: number };
    return new Uint16Array(buffer, byteOffset, length) as unknown as T;
  }
  return value as T;
}

/** A count and its noun, as messages write them: '1 passage', '2 passages' (`plural` where not noun + 's'). */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

/**
 * A value as an error message shows it: strings quoted, numbers, booleans and bigints as written,
 * anything else by its type (JSON.stringify throws on a bigint and gives undefined for a function).
 */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined) return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  return typeName(value);
}

/** A safe integer >= min. */
export function requireInteger(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${describeValue(value)}`);
  }
  if (value < min) throw new RangeError(`${name} must be >= ${min}, got ${value}`);
  if (value > Number.MAX_SAFE_INTEGER) throw new RangeError(`${name} is too large: ${value}`);
  return value;
}

export function requirePositiveInteger(name: string, value: unknown): number {
  return requireInteger(name, value, 1);
}

/** An optional count: undefined (the caller's default applies) or a positive integer. */
export function optionalPositiveInteger(name: string, value: unknown): number | undefined {
  return value === undefined ? undefined : requirePositiveInteger(name, value);
}

/** A non-empty string (a path, a model id, a tag). */
export function requireString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`${name} must be a non-empty string, got ${describeValue(value)}`);
  return value;
}

export function optionalString(name: string, value: unknown): string | undefined {
  return value === undefined ? undefined : requireString(name, value);
}

/** One of a few names ('float32' or 'float16'...), or undefined. */
export function optionalOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value !== undefined && !allowed.includes(value as T)) {
    throw new TypeError(`${name} must be ${allowed.map((a) => `'${a}'`).join(' or ')}, got ${describeValue(value)}`);
  }
  return value as T | undefined;
}

export function optionalBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeName(value)}`);
  return value;
}

/** The most threads a native kernel or ONNX Runtime is given (options.threads, the CLI's --threads). */
export const MAX_THREADS = 1024;

export function optionalThreads(value: unknown): number {
  if (value === undefined) return 0;
  const threads = requirePositiveInteger('options.threads', value);
  if (threads > MAX_THREADS) throw new RangeError(`options.threads must be <= ${MAX_THREADS}, got ${threads}`);
  return threads;
}

/** The member names of T, all of them: the compiler checks the list against T both ways. */
export function namesOf<T>(names: Record<keyof T, true>): readonly string[] {
  return Object.keys(names);
}

/** Levenshtein distance (insertions, deletions, substitutions). */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

/**
 * ` (did you mean X?)` for a mistyped `word`: the nearest of `known` if it is a few edits away
 * (a third of the word, at least 2), or starts with the word, or begins it (--input-file); else ''.
 * Case is ignored (`batchsize`, `Normalized`).
 */
export function suggestion(word: string, known: readonly string[]): string {
  if (word.replace(/^-+/, '') === '') return '';  // nothing typed, nothing to be near
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of known) {
    const [w, n] = [word.toLowerCase(), name.toLowerCase()];
    const d = n.startsWith(w) || w.startsWith(n) ? 0 : editDistance(w, n);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? ` (did you mean ${best}?)` : '';
}

/**
 * An object argument. With `known`, a member it does not name is a TypeError: a misspelt option
 * (`batchsize`) would otherwise be ignored without a word. Members set to undefined are let through.
 * A number where options holding `k` go is most likely k itself (`search(queries, 10)`): the
 * message shows the object form.
 */
export function requireObject(name: string, value: unknown, known?: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value)) {
    const hint = typeof value === 'number' && known?.includes('k') ? ` such as { k: ${value} }` : '';
    const got = typeof value === 'number' ? `number ${value}` : typeName(value);
    throw new TypeError(`${name} must be an object${hint}, got ${got}`);
  }
  const object = value as Record<string, unknown>;
  for (const key of known === undefined ? [] : Object.keys(object)) {
    if (object[key] === undefined || known!.includes(key)) continue;
    throw new TypeError(`${name}.${key} is not known${suggestion(key, known!)}: ` +
      `expected ${known!.length === 0 ? 'no members' : known!.join(', ')}`);
  }
  return object;
}

export function optionalObject(name: string, value: unknown, known?: readonly string[]): Record<string, unknown> {
  return value === undefined ? {} : requireObject(name, value, known);
}

export function requireLength(name: string, array: ArrayBufferView & { length: number }, expected: number, why: string): void {
  if (array.length !== expected) {
    throw new RangeError(`${name} has ${array.length} elements but ${why} needs ${expected}`);
  }
}

/**
 * The `signal` option of the long-running calls. Checked by its tag rather than instanceof, as
 * typed arrays are, so that a signal made in another realm (a vm context, jest) is accepted.
 */
export function optionalAbortSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (Object.prototype.toString.call(value) !== '[object AbortSignal]') {
    throw new TypeError(`${name} must be an AbortSignal, got ${typeName(value)}`);
  }
  return value as AbortSignal;
}

/** A callback option such as `onProgress`: a function or undefined. */
export function optionalFunction<F extends (...args: never[]) => unknown>(name: string, value: unknown): F | undefined {
  if (value !== undefined && typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${typeName(value)}`);
  return value as F | undefined;
}

/**
 * JSON data (plain objects, arrays, strings, finite numbers, booleans, null; undefined members
 * dropped as absent), such as a cache key's parts. JSON.stringify throws on a bigint or a cycle
 * in its own words, and turns a function, NaN or a Map into nothing, null or {}: different keys
 * that would read the same.
 */
export function requireJson(name: string, value: unknown, ancestors: object[] = []): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) return;
  const proto: unknown = typeof value === 'object' ? Object.getPrototypeOf(value) : undefined;
  // A plain object's prototype is Object.prototype (of any realm) or null.
  if (typeof value !== 'object' || !(Array.isArray(value) || proto === null || Object.getPrototypeOf(proto) === null)) {
    const kind = typeof value === 'object' ? (value as { constructor?: { name?: unknown } }).constructor?.name : undefined;
    throw new TypeError(`${name} must be JSON data (objects, arrays, strings, finite numbers, booleans, null), ` +
      `got ${typeof kind === 'string' && kind !== '' ? kind : describeValue(value)}`);
  }
  if (ancestors.includes(value)) throw new TypeError(`${name} contains itself (a cycle), which JSON cannot hold`);
  ancestors.push(value);
  // entries() visits an array's holes too, which JSON would write as null.
  for (const [key, member] of Array.isArray(value) ? value.entries() : Object.entries(value)) {
    if (typeof key === 'number') requireJson(`${name}[${key}]`, member, ancestors);
    else if (member !== undefined) requireJson(/^[A-Za-z_$][\w$]*$/.test(key) ? `${name}.${key}` : `${name}[${JSON.stringify(key)}]`, member, ancestors);
  }
  ancestors.pop();
}

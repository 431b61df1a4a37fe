// id -> row position, an open-addressing hash table (linear probing, load <= 1/2) over one typed
// array: 12 bytes a slot, no per-entry objects, so a million ids cost ~24-48 MB, not a JS Map's
// ~100 MB of small heap objects. A slot's three words (id's low and high halves, position) sit
// together: a probe of a table larger than the caches misses once, not once per word.

import { randomBytes } from 'crypto';

const scratch = new BigInt64Array(1);
const scratchHalves = new Int32Array(scratch.buffer);
const LOW = 0, HIGH = 1, POSITION = 2, WORDS = 3;  // slot s's words at WORDS * s + ...

/**
 * The most entries a table holds: 2^29 at load 1/2 is 2^30 slots, 3 x 2^30 words, and a typed array
 * holds at most 2^32 elements in Node 20 (2^31 slots would not fit).
 */
export const MAX_ENTRIES = 2 ** 29;

export class IdTable {
  private slots: Int32Array;  // position -1: empty slot
  private mask: number;
  private used = 0;
  // Mixed into every home slot: with a fixed hash, ids chosen to share one home (a server that
  // stores its clients' ids) made each add probe every entry before it (40,000 ids: 1.2 s, not 15 ms).
  private readonly seed = randomBytes(4).readInt32LE(0);

  constructor(expected = 0) {
    const capacity = IdTable.capacityFor(expected);
    this.slots = new Int32Array(capacity * WORDS);
    for (let s = 0; s < capacity; s++) this.slots[s * WORDS + POSITION] = -1;
    this.mask = capacity - 1;
  }

  private static capacityFor(count: number): number {
    let capacity = 16;
    while (capacity < count * 2) capacity *= 2;
    return capacity;
  }

  get size(): number { return this.used; }
  get bytes(): number { return this.slots.byteLength; }

  /** The word index of the id's slot, or of the empty slot where it would go. */
  private find(lo: number, hi: number): number {
    const slots = this.slots;
    let slot = this.homeOf(lo, hi);
    for (;;) {
      const at = slot * WORDS;
      if (slots[at + POSITION] === -1 || (slots[at + LOW] === lo && slots[at + HIGH] === hi)) return at;
      slot = (slot + 1) & this.mask;
    }
  }

  private findId(id: bigint): number {
    scratch[0] = id;
    return this.find(scratchHalves[0], scratchHalves[1]);
  }

  get(id: bigint): number {
    return this.slots[this.findId(id) + POSITION];
  }

  has(id: bigint): boolean {
    return this.get(id) !== -1;
  }

  /** A table holding the same entries with room for `count` entries, or this one if it has room. */
  withRoomFor(count: number): IdTable {
    if (count * WORDS * 2 <= this.slots.length) return this;
    const grown = new IdTable(count);
    const slots = this.slots;
    for (let at = 0; at < slots.length; at += WORDS) {
      if (slots[at + POSITION] !== -1) grown.place(grown.find(slots[at + LOW], slots[at + HIGH]), slots[at + LOW], slots[at + HIGH], slots[at + POSITION]);
    }
    return grown;
  }

  /** Inserts or updates. The caller keeps the load at most 1/2 (withRoomFor). */
  set(id: bigint, position: number): void {
    const at = this.findId(id);
    this.place(at, scratchHalves[0], scratchHalves[1], position);
  }

  /** The index of the first of `ids` in the table, or -1. */
  firstPresent(ids: BigInt64Array): number {
    const halves = halvesOf(ids);
    for (let i = 0; i < ids.length; i++) {
      if (this.slots[this.find(halves[2 * i], halves[2 * i + 1]) + POSITION] !== -1) return i;
    }
    return -1;
  }

  /**
   * Inserts ids[i] at position `first + i`, in order, up to the first id already present: returns
   * its index in `ids`, or -1 when all were new. The caller keeps the load at most 1/2 (withRoomFor).
   */
  insertNew(ids: BigInt64Array, first: number): number {
    const halves = halvesOf(ids);
    for (let i = 0; i < ids.length; i++) {
      const lo = halves[2 * i], hi = halves[2 * i + 1];
      const at = this.find(lo, hi);
      if (this.slots[at + POSITION] !== -1) return i;
      this.place(at, lo, hi, first + i);
    }
    return -1;
  }

  private place(at: number, lo: number, hi: number, position: number): void {
    if (this.slots[at + POSITION] === -1) this.used++;
    this.slots[at + LOW] = lo;
    this.slots[at + HIGH] = hi;
    this.slots[at + POSITION] = position;
  }

  delete(id: bigint): void {
    const slots = this.slots;
    let hole = this.findId(id) / WORDS;
    if (slots[hole * WORDS + POSITION] === -1) return;
    this.used--;
    // Backward-shift deletion: pull later entries of the probe run into the hole so that
    // every entry stays reachable from its home slot without tombstones.
    let slot = hole;
    for (;;) {
      slots[hole * WORDS + POSITION] = -1;
      for (;;) {
        slot = (slot + 1) & this.mask;
        if (slots[slot * WORDS + POSITION] === -1) return;
        const home = this.homeOf(slots[slot * WORDS + LOW], slots[slot * WORDS + HIGH]);
        // Move the entry if its home is not cyclically within (hole, slot].
        const between = hole <= slot ? home > hole && home <= slot : home > hole || home <= slot;
        if (!between) break;
      }
      slots.copyWithin(hole * WORDS, slot * WORDS, slot * WORDS + WORDS);
      hole = slot;
    }
  }

  // The low half mixed with the seed before the high half joins it: ids cannot be chosen to meet
  // before the seed does (lo ^ f(hi) could: any hi, with lo = target ^ f(hi)).
  private homeOf(lo: number, hi: number): number {
    return fmix32(fmix32(lo ^ this.seed) ^ hi) & this.mask;
  }
}

/** The largest of `ids` (-2^63 for none). */
export function maxId(ids: BigInt64Array): bigint {
  const halves = halvesOf(ids);
  let best = -1;
  for (let i = 0; i < ids.length; i++) {
    // Signed high halves, then unsigned low ones.
    if (best === -1 || halves[2 * i + 1] > halves[2 * best + 1] ||
        (halves[2 * i + 1] === halves[2 * best + 1] && halves[2 * i] >>> 0 > halves[2 * best] >>> 0)) best = i;
  }
  return best === -1 ? -(1n << 63n) : ids[best];
}

// Ids as 32-bit halves (little-endian: low first), read without making a bigint for each id
// (VectorIndex.load's table of 1M ids through has() and set(): 211-213 ms best, through
// insertNew: 116-118; bench/RESULTS-index.md).
function halvesOf(ids: BigInt64Array): Int32Array {
  return new Int32Array(ids.buffer, ids.byteOffset, ids.length * 2);
}

/** murmur3's 32-bit finaliser: spreads sequential ids over the table. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * The mutation engine: a seeded PRNG and byte-level mutators. Input `i` of a run depends only on
 * (seed, target name, i), so any failure is reproduced from those three values alone, and a run
 * restarted after a hang continues where it stopped.
 */

/** mulberry32: small, fast, good enough to drive mutations (not for anything secret). */
export class Prng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** Uniform in [0, 2^32). */
  u32(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Uniform in [0, n) for n >= 1. */
  below(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
}

/** FNV-1a over a string: the per-target part of an input's PRNG seed. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

/** The PRNG for input `iteration` of `target` in a run seeded with `seed`. */
export function inputPrng(seed: number, target: string, iteration: number): Prng {
  const p = new Prng((seed ^ hashString(target)) >>> 0);
  for (let k = 0; k < 3; k++) p.u32();
  return new Prng((p.u32() ^ Math.imul(iteration + 1, 0x9e3779b1)) >>> 0);
}

/** What a target tells the engine about its format. */
export interface FormatHints {
  /** Offsets of integer fields (struct members, length prefixes) worth hitting with interesting values. */
  offsets?: readonly number[];
  /** Offsets of big-endian u16/u32 length fields (TPM2B sizes, table lengths). */
  lengthFields?: readonly { at: number; width: 1 | 2 | 4; endian: 'le' | 'be' }[];
  /** Tokens to splice in (JSON/YAML keys, PEM armour, URL escapes...). */
  dictionary?: readonly string[];
  /** Largest input produced; default 64 KiB. */
  maxBytes?: number;
}

const INTERESTING: readonly bigint[] = [
  0n, 1n, 2n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n,
  0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x1fffffffffffffn, 0x20000000000000n,
  0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn,
];
const WIDTHS = [1, 2, 4, 8] as const;

function writeInt(b: Uint8Array, at: number, width: number, value: bigint, le: boolean): void {
  for (let k = 0; k < width && at + k < b.length; k++) {
    const byte = Number((value >> BigInt(8 * k)) & 0xffn);
    b[le ? at + k : at + width - 1 - k] = byte;
  }
}

function readInt(b: Uint8Array, at: number, width: number, le: boolean): bigint {
  let v = 0n;
  for (let k = 0; k < width; k++) v = (v << 8n) | BigInt(b[le ? at + width - 1 - k : at + k] ?? 0);
  return v;
}

type Mutator = (b: Uint8Array, p: Prng, h: FormatHints, corpus: readonly Uint8Array[]) => Uint8Array;

const concat = (...parts: Uint8Array[]): Uint8Array => Buffer.concat(parts);

/** The mutators, as data: each takes the current bytes and returns the next. */
export const MUTATORS: Readonly<Record<string, Mutator>> = {
  bitFlip: (b, p) => {
    if (b.length === 0) return b;
    const i = p.below(b.length);
    b[i]! ^= 1 << p.below(8);
    return b;
  },
  randomByte: (b, p) => {
    if (b.length > 0) b[p.below(b.length)] = p.below(256);
    return b;
  },
  insertBytes: (b, p) => {
    const at = p.below(b.length + 1);
    const n = 1 + p.below(16);
    const ins = new Uint8Array(n);
    const fill = p.chance(0.5) ? p.below(256) : -1;
    for (let k = 0; k < n; k++) ins[k] = fill >= 0 ? fill : p.below(256);
    return concat(b.subarray(0, at), ins, b.subarray(at));
  },
  deleteRange: (b, p) => {
    if (b.length === 0) return b;
    const at = p.below(b.length);
    const n = 1 + p.below(Math.min(64, b.length - at));
    return concat(b.subarray(0, at), b.subarray(at + n));
  },
  truncate: (b, p) => b.subarray(0, p.below(b.length + 1)),
  duplicateRange: (b, p) => {
    if (b.length === 0) return b;
    const at = p.below(b.length);
    const n = 1 + p.below(Math.min(256, b.length - at));
    return concat(b.subarray(0, at + n), b.subarray(at, at + n), b.subarray(at + n));
  },
  splice: (b, p, _h, corpus) => {
    const other = p.pick(corpus);
    if (other.length === 0) return b;
    const from = p.below(other.length);
    const n = 1 + p.below(other.length - from);
    const at = p.below(b.length + 1);
    const replace = p.chance(0.5) ? Math.min(n, b.length - at) : 0;
    return concat(b.subarray(0, at), other.subarray(from, from + n), b.subarray(at + replace));
  },
  interestingInt: (b, p, h) => {
    if (b.length === 0) return b;
    const width = p.pick(WIDTHS);
    const at = h.offsets?.length && p.chance(0.7) ? p.pick(h.offsets) : p.below(b.length);
    writeInt(b, at, width, p.pick(INTERESTING), p.chance(0.5));
    return b;
  },
  lengthField: (b, p, h) => {
    const f = h.lengthFields?.length ? p.pick(h.lengthFields) : { at: p.below(Math.max(1, b.length)), width: p.pick([1, 2, 4] as const), endian: p.chance(0.5) ? ('le' as const) : ('be' as const) };
    if (f.at + f.width > b.length) return b;
    const le = f.endian === 'le';
    const cur = readInt(b, f.at, f.width, le);
    const max = (1n << BigInt(8 * f.width)) - 1n;
    const choices = [cur + 1n, cur - 1n, cur + BigInt(1 + p.below(64)), cur > 0n ? cur / 2n : 0n, cur * 2n, max, 0n, BigInt(b.length - f.at)];
    const v = p.pick(choices);
    writeInt(b, f.at, f.width, ((v % (max + 1n)) + (max + 1n)) % (max + 1n), le);
    return b;
  },
  dictionary: (b, p, h) => {
    if (!h.dictionary?.length) return b;
    const tok = Buffer.from(p.pick(h.dictionary), 'utf8');
    const at = p.below(b.length + 1);
    const replace = p.chance(0.3) ? Math.min(tok.length, b.length - at) : 0;
    return concat(b.subarray(0, at), tok, b.subarray(at + replace));
  },
};
const MUTATOR_LIST = Object.values(MUTATORS);

/**
 * Input `iteration`: a corpus entry (unchanged for the first pass over the corpus, so every
 * seed itself is run), then 1-8 stacked mutations.
 */
export function makeInput(corpus: readonly Uint8Array[], hints: FormatHints, seed: number, target: string, iteration: number): Uint8Array {
  if (corpus.length === 0) return new Uint8Array(0);
  if (iteration < corpus.length) return Uint8Array.from(corpus[iteration]!);
  const p = inputPrng(seed, target, iteration);
  let b: Uint8Array = Uint8Array.from(p.pick(corpus));
  const rounds = 1 + p.below(8);
  const max = hints.maxBytes ?? 64 * 1024;
  for (let r = 0; r < rounds; r++) {
    b = p.pick(MUTATOR_LIST)(b, p, hints, corpus);
    if (b.length > max) b = b.subarray(0, max);
  }
  return Uint8Array.from(b);
}

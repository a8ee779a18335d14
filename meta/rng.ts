// Seeded randomness for everything in metatrain: no Math.random anywhere; every stream derives
// from an explicit seed, and per-task streams from (runSeed, iteration, taskIndex) alone.

/** murmur3's 32-bit finaliser: a bijective mix of one uint32. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Derive a uint32 seed from a list of non-negative integers (e.g. runSeed, purpose tag, iteration,
 * taskIndex). Order matters; equal lists give equal seeds on every machine and backend.
 */
export function deriveSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    if (!Number.isInteger(p) || p < 0 || p > 0xffffffff) {
      throw new RangeError(`deriveSeed: part ${p} is not an integer in [0, 2^32)`);
    }
    h = fmix32((h ^ p) + 0x7f4a7c15 + Math.imul(h, 31));
  }
  return h >>> 0;
}

/** Purpose tags, so streams for different uses of the same (iteration, task) never coincide. */
export const Stream = {
  init: 1,
  trainTask: 2,
  evalTask: 3,
  valTask: 4,
  /** Randomness inside one task's adaptation (minibatch order), beside its draw. */
  adaptation: 5,
} as const;

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator), seeded from one uint32 through
 * splitmix-style mixing. Passes PractRand to many TB; fast in plain JS integer arithmetic.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spareNormal: number | undefined;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`Rng: seed ${seed} is not an integer in [0, 2^32)`);
    }
    this.a = fmix32(seed ^ 0x243f6a88);
    this.b = fmix32(seed ^ 0x85a308d3);
    this.c = fmix32(seed ^ 0x13198a2e);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** Uniform uint32. */
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n), without modulo bias. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 0x100000000) throw new RangeError(`Rng.int: bad n ${n}`);
    const limit = 0x100000000 - (0x100000000 % n);
    let x = this.nextUint32();
    while (x >= limit) x = this.nextUint32();
    return x % n;
  }

  /** Standard normal (Box–Muller, polar form avoided so the stream length is fixed per pair). */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const s = this.spareNormal;
      this.spareNormal = undefined;
      return s;
    }
    const u1 = 1 - this.next(); // (0, 1], so log is finite
    const u2 = this.next();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spareNormal = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }

  /** k distinct integers from [0, n), in random order (partial Fisher–Yates). */
  sample(n: number, k: number): number[] {
    if (k > n) throw new RangeError(`Rng.sample: cannot draw ${k} distinct values from ${n}`);
    const pool = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < k; i++) {
      const j = i + this.int(n - i);
      const t = pool[i]!;
      pool[i] = pool[j]!;
      pool[j] = t;
    }
    return pool.slice(0, k);
  }

  /** In-place Fisher–Yates shuffle; returns the array. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = xs[i]!;
      xs[i] = xs[j]!;
      xs[j] = t;
    }
    return xs;
  }
}

// A bounded per-worker LRU of parameter tensors by storage key, reference-counted so eviction never frees tensors in use.
import { dispose, type Params } from "../meta/params.js";

interface Entry {
  /** Resolves to the tensors; shared by concurrent loads of one key. */
  loading: Promise<Params>;
  params?: Params;
  /** Activities holding the tensors now. */
  refs: number;
  /** Dropped from the cache while in use: dispose when the last holder releases. */
  evicted: boolean;
}

/** A lease on cached parameters: use `params` until `release()`, never dispose them yourself. */
export interface ParamsLease {
  params: Params;
  release(): void;
}

export interface ParamsCacheOptions {
  /** Parameter sets kept when not in use (default 4). Sets in use are kept regardless. */
  capacity?: number;
  /** Reads and deserializes a key (the cache owns what it returns). */
  load: (key: string) => Promise<Params>;
  /** Told about each eviction, for logs and metrics. */
  onEvict?: (key: string) => void;
  /** Told about each `acquire`: a hit (cached, or a load already under way) or a miss (a store read), for metrics. */
  onLookup?: (hit: boolean) => void;
}

/**
 * Keys are content addresses (or fixed by run and iteration), so a cached value never goes stale.
 * Least recently used entries beyond `capacity` are evicted and their tensors disposed, at once
 * when unused, else when their last lease is released.
 */
export class ParamsCache {
  private readonly entries = new Map<string, Entry>();
  private readonly capacity: number;

  constructor(private readonly opts: ParamsCacheOptions) {
    this.capacity = opts.capacity ?? 4;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) throw new RangeError(`params cache capacity must be an integer ≥ 1, got ${this.capacity}`);
  }

  /** Keys cached now, least recently used first. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** Lease the parameters at `key`, loading them on a miss. A failed load is not cached. */
  async acquire(key: string): Promise<ParamsLease> {
    let entry = this.entries.get(key);
    this.opts.onLookup?.(entry !== undefined);
    if (entry) {
      this.entries.delete(key);
      this.entries.set(key, entry); // most recently used
    } else {
      const e: Entry = { loading: this.opts.load(key), refs: 0, evicted: false };
      e.loading.then(
        (p) => (e.params = p),
        () => this.entries.get(key) === e && this.entries.delete(key),
      );
      this.entries.set(key, e);
      entry = e;
    }
    entry.refs++;
    let params: Params;
    try {
      params = await entry.loading;
    } catch (err) {
      entry.refs--;
      throw err;
    }
    this.trim();
    const e = entry;
    let released = false;
    return {
      params,
      release: () => {
        if (released) return;
        released = true;
        e.refs--;
        if (e.evicted && e.refs === 0) dispose(e.params);
        else this.trim();
      },
    };
  }

  /**
   * Hand tensors just computed for `key` to the cache (the cache now owns them). When the key is
   * already cached the given tensors are disposed: equal keys hold equal values.
   */
  put(key: string, params: Params): void {
    if (this.entries.has(key)) {
      dispose(params);
      return;
    }
    this.entries.set(key, { loading: Promise.resolve(params), params, refs: 0, evicted: false });
    this.trim();
  }

  /** Evict unused entries, least recently used first, until at most `capacity` remain (in-use ones stay). */
  private trim(): void {
    if (this.entries.size <= this.capacity) return;
    for (const [key, e] of this.entries) {
      if (this.entries.size <= this.capacity) break;
      // Loading or leased entries stay: someone waits on them; `release` trims again.
      if (e.params === undefined || e.refs > 0) continue;
      this.entries.delete(key);
      e.evicted = true;
      this.opts.onEvict?.(key);
      dispose(e.params);
    }
  }

  /** Dispose everything not in use and forget all entries (in-use tensors are freed on release). */
  clear(): void {
    for (const [key, e] of this.entries) {
      this.entries.delete(key);
      e.evicted = true;
      if (e.refs === 0) dispose(e.params);
    }
  }
}

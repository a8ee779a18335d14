// Shard results read ahead on the coordinator: the workflow names each result as its shard
// completes (a sink, run after the activation), so the round's outer step finds most of its reads
// already done instead of starting them all once the last shard is in.
import type { InjectedSinks } from "@temporalio/worker";
import type { PrefetchSinks } from "../contracts/activities.js";
import type { BlobStore } from "../storage/blobstore.js";

export interface ResultPrefetchOptions {
  /** Bytes of read-ahead results kept (default 256 MiB). Beyond it the oldest are dropped: the outer step reads those itself. */
  maxBytes?: number;
  /** Results kept or in flight (default 4,096). */
  maxEntries?: number;
  /** A result not taken within this long is dropped (default 120 s): its run moved, or never needed it. */
  ttlMs?: number;
  now?: () => number;
}

interface Entry {
  bytes: Promise<Uint8Array>;
  /** Known once read. */
  size: number;
  at: number;
}

/**
 * Read-ahead of shard results by key. A result key is fixed by (run, iteration, shard) and every
 * attempt writes the same bytes, and `store.get` verifies the blob it returns; so bytes read ahead
 * are the bytes the outer step would read. `take` hands an entry over once: a retried outer step
 * (after a result failed verification, say) reads the store again. A failed read is forgotten, and
 * the outer step's own read then meets the error as it would have.
 */
export class ResultPrefetch {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  /** Reads in flight, taken or not. */
  private readonly pending = new Set<Promise<unknown>>();
  private readonly maxBytes: number;
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly store: BlobStore,
    opts: ResultPrefetchOptions = {},
  ) {
    this.maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    this.maxEntries = opts.maxEntries ?? 4096;
    this.ttlMs = opts.ttlMs ?? 120_000;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Keys held now (read or in flight), oldest first. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** Bytes held by results already read. */
  heldBytes(): number {
    return this.bytes;
  }

  /** Resolves once every read started so far has finished (or failed). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  /** Start reading `key` unless it is held already. */
  start(key: string): void {
    if (this.entries.has(key)) return;
    this.expire();
    const entry: Entry = { bytes: this.store.get(key), size: 0, at: this.now() };
    this.entries.set(key, entry);
    const done = entry.bytes.then(
      (b) => {
        if (this.entries.get(key) !== entry) return; // taken or dropped meanwhile
        entry.size = b.byteLength;
        this.bytes += entry.size;
        this.trim();
      },
      () => this.drop(key, entry),
    );
    this.pending.add(done);
    void done.finally(() => this.pending.delete(done));
    this.trim();
  }

  /** The read of `key` if one was started (and not dropped): handed over once, then forgotten. */
  take(key: string): Promise<Uint8Array> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.drop(key, entry);
    return entry.bytes;
  }

  private drop(key: string, entry: Entry): void {
    if (this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    this.bytes -= entry.size;
  }

  private expire(): void {
    const cutoff = this.now() - this.ttlMs;
    for (const [key, e] of this.entries) {
      if (e.at > cutoff) break; // oldest first
      this.drop(key, e);
    }
  }

  /** Drop the oldest entries until within both bounds. */
  private trim(): void {
    for (const [key, e] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.drop(key, e);
    }
  }
}

/** The coordinator's side of the sink: `Worker.create({ sinks: { ...metricsSinks(m), ...prefetchSinks(p) } })`; none given, a no-op. */
export function prefetchSinks(prefetch?: ResultPrefetch): InjectedSinks<PrefetchSinks> {
  return {
    metatrainPrefetch: {
      // Not on replay: a replayed shard's result was read (or not needed) by the execution that ran it.
      shardResult: { fn: (_info, key) => prefetch?.start(key), callDuringReplay: false },
    },
  };
}

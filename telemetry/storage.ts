// A blob store wrapper that times every operation and counts bytes into the MetricsPort; the worker wraps its store once.
import type { MetricsPort, StorageOperation } from "./metrics.js";

/**
 * The blob store methods timed (structurally `BlobStore` of storage/blobstore.ts, so telemetry
 * needs no import of storage; any BlobStore passes and the result is a BlobStore).
 */
export interface InstrumentableStore {
  put(key: string, bytes: Uint8Array, opts?: { contentType?: string }): Promise<void>;
  get(key: string): Promise<Uint8Array>;
  exists(key: string): Promise<boolean>;
  list(prefix: string): Promise<string[]>;
  delete(key: string): Promise<void>;
  describe(): string;
}

/** Store kind label from a store URI: `s3`, `fs` (file:), else `other`. */
export function storeKindOf(uri: string): string {
  if (uri.startsWith("s3://")) return "s3";
  if (uri.startsWith("file:")) return "fs";
  return "other";
}

/**
 * Wrap `store` so that each operation reports `observeStorage(op, bytes, seconds, { store: kind, ok })`:
 * bytes read by `get`, written by `put`, 0 otherwise. Errors pass through unchanged (and are counted).
 */
export function instrumentStore<S extends InstrumentableStore>(store: S, metrics: MetricsPort, kind: string): InstrumentableStore {
  async function timed<T>(op: StorageOperation, fn: () => Promise<T>, bytesOf: (v: T) => number): Promise<T> {
    const start = performance.now();
    try {
      const v = await fn();
      metrics.observeStorage(op, bytesOf(v), (performance.now() - start) / 1000, { store: kind });
      return v;
    } catch (e) {
      metrics.observeStorage(op, 0, (performance.now() - start) / 1000, { store: kind, ok: false });
      throw e;
    }
  }
  return {
    put: (key, bytes, opts) => timed("put", () => store.put(key, bytes, opts), () => bytes.byteLength),
    get: (key) => timed("get", () => store.get(key), (b) => b.byteLength),
    exists: (key) => timed("exists", () => store.exists(key), () => 0),
    list: (prefix) => timed("list", () => store.list(prefix), () => 0),
    delete: (key) => timed("delete", () => store.delete(key), () => 0),
    describe: () => store.describe(),
  };
}

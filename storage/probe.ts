// A worker's check of its store before it says ready: write a probe blob, read it back, delete it.
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { isStoreError, type BlobStore } from "./blobstore.js";

/** Options of `probeStore`. */
export interface ProbeOptions {
  /** Who probes (a worker name); part of the probe's key, so workers never race on one key. */
  name: string;
  /** Keep retrying retryable store errors (an S3 server still starting) this long, ms. Default 30000. */
  deadlineMs?: number;
  /** Pause between tries, ms. Default 1000. */
  retryMs?: number;
}

/**
 * Prove the store takes a write and gives back the same bytes (so credentials, bucket, permissions
 * and the endpoint all work) — before any shard depends on it. Retryable errors are retried until
 * the deadline; a final one (access denied, bad bucket) or the last retryable one is thrown as is.
 */
export async function probeStore(store: BlobStore, opts: ProbeOptions): Promise<void> {
  const key = `probes/${opts.name.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 100) || "worker"}-${process.pid}`;
  const deadline = performance.now() + (opts.deadlineMs ?? 30_000);
  for (;;) {
    try {
      const bytes = new Uint8Array(randomBytes(32));
      await store.put(key, bytes);
      const back = await store.get(key);
      if (back.length !== bytes.length || back.some((b, i) => b !== bytes[i])) {
        throw new Error(`the store at ${store.describe()} gave back other bytes than were written to ${key}`);
      }
      await store.delete(key);
      return;
    } catch (e) {
      if (!isStoreError(e) || !e.retryable || performance.now() >= deadline) throw e;
      await sleep(opts.retryMs ?? 1000);
    }
  }
}
